//! The business-hours clock: when a response target counted in business time
//! falls due.
//!
//! Pure: a [`Calendar`] is built once from a desk's [`CalendarConfig`] (time
//! zone, weekly opening hours, holidays) and then answers [`Calendar::due`] and
//! [`Calendar::elapsed`] without IO. Business time is measured in real elapsed
//! time while the desk is open, so an interval that spans a daylight-saving
//! change is as long as the clock on the wall says it lasted, not as long as its
//! label.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// The furthest `due` looks ahead, in days. A calendar with some weekly hours
/// always reaches its target eventually (holidays are a finite list), so this
/// only bounds absurd targets such as years of business time.
const MAX_DAYS: u32 = 366 * 100;

/// Seconds in a civil day; an interval may end at 24:00, this value.
const DAY_SECS: u32 = 24 * 60 * 60;

/// The system's zoneinfo folders, in the order jiff looks at them.
const ZONEINFO_DIRS: [&str; 3] = [
    "/usr/share/zoneinfo",
    "/usr/share/lib/zoneinfo",
    "/etc/zoneinfo",
];

/// The most read of one zoneinfo file (they are a few KB).
const MAX_TZIF: u64 = 1 << 20;

/// The time zone called `name`, as [`TimeZone::get`] finds it, but read from
/// its one file when that file is there. `TimeZone::get` first lists the
/// whole zoneinfo folder (some 600 files) to know every name, which cost
/// every process about a millisecond at start (half of `triaged deliver`'s own
/// work). The folder is the one jiff would use: `TZDIR` when it is a folder,
/// else the first of the usual places that exists. A name that is not a plain
/// relative path, a file that is missing or not TZif (a name in another case,
/// `zone.tab`), and `UTC` go to `TimeZone::get`, which decides as always.
pub fn time_zone(name: &str) -> Result<TimeZone, jiff::Error> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.eq_ignore_ascii_case("utc")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b))
        && name
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.'));
    if plain {
        let dir = std::env::var_os("TZDIR")
            .map(std::path::PathBuf::from)
            .filter(|d| d.is_dir())
            .or_else(|| {
                ZONEINFO_DIRS
                    .iter()
                    .map(std::path::PathBuf::from)
                    .find(|d| d.is_dir())
            });
        if let Some(dir) = dir
            && let Some(data) = read_bounded(&dir.join(name))
            && let Ok(tz) = TimeZone::tzif(name, &data)
        {
            return Ok(tz);
        }
    }
    TimeZone::get(name)
}

fn read_bounded(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_TZIF)
        .read_to_end(&mut data)
        .ok()?;
    Some(data)
}

/// Why a due time cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The calendar has no business hours on any weekday, so no positive target
    /// can ever be reached.
    #[error("the calendar has no business hours, so a response target never falls due")]
    NoBusinessHours,
    /// The answer lies beyond the range of dates the clock handles (about a
    /// hundred years ahead, or past the year 9999).
    #[error("the due time lies too far in the future to compute")]
    OutOfRange,
}

/// A desk's calendar as written in the configuration.
///
/// ```toml
/// time_zone = "America/Chicago"
/// holidays = ["2026-11-26", "2026-12-25"]
/// [hours]
/// mon = ["08:00-12:00", "13:00-17:00"]
/// tue = ["08:00-17:00"]
/// ```
///
/// Without an `[hours]` table the desk is open Monday to Friday, 08:00 to
/// 17:00. With one, a weekday it does not name is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// An IANA time zone name.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    #[serde(default)]
    pub hours: WeeklyHoursConfig,
    /// Dates (`YYYY-MM-DD`, in the desk's time zone) on which the desk is closed.
    #[serde(default)]
    pub holidays: Vec<String>,
}

fn default_time_zone() -> String {
    "America/Chicago".to_string()
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            time_zone: default_time_zone(),
            hours: WeeklyHoursConfig::default(),
            holidays: Vec::new(),
        }
    }
}

/// Opening hours per weekday, each a list of `"HH:MM-HH:MM"` intervals. An end
/// of `24:00` means midnight at the end of the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklyHoursConfig {
    #[serde(default)]
    pub mon: Vec<String>,
    #[serde(default)]
    pub tue: Vec<String>,
    #[serde(default)]
    pub wed: Vec<String>,
    #[serde(default)]
    pub thu: Vec<String>,
    #[serde(default)]
    pub fri: Vec<String>,
    #[serde(default)]
    pub sat: Vec<String>,
    #[serde(default)]
    pub sun: Vec<String>,
}

impl Default for WeeklyHoursConfig {
    /// Monday to Friday, 08:00 to 17:00 (DOMAIN.md).
    fn default() -> Self {
        let day = || vec!["08:00-17:00".to_string()];
        WeeklyHoursConfig {
            mon: day(),
            tue: day(),
            wed: day(),
            thu: day(),
            fri: day(),
            sat: Vec::new(),
            sun: Vec::new(),
        }
    }
}

impl WeeklyHoursConfig {
    /// The days in Monday-first order, with their names for messages.
    fn days(&self) -> [(&'static str, &[String]); 7] {
        [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ]
    }
}

/// One opening interval of a day, in seconds after local midnight, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    start: u32,
    end: u32,
}

impl Interval {
    /// An interval from `start` to `end` seconds after midnight; `None` unless
    /// `start < end <= 24:00`.
    pub fn new(start: u32, end: u32) -> Option<Interval> {
        (start < end && end <= DAY_SECS).then_some(Interval { start, end })
    }
}

/// A validated business-hours calendar.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    /// Sorted, non-overlapping intervals per weekday, Monday first.
    week: [Vec<Interval>; 7],
    holidays: BTreeSet<Date>,
}

impl Calendar {
    /// A calendar from parts. Intervals are sorted; overlapping ones are the
    /// caller's mistake and are merged rather than counted twice.
    pub fn new(tz: TimeZone, week: [Vec<Interval>; 7], holidays: BTreeSet<Date>) -> Calendar {
        let week = week.map(|mut day| {
            day.sort();
            let mut merged: Vec<Interval> = Vec::with_capacity(day.len());
            for iv in day {
                match merged.last_mut() {
                    Some(last) if iv.start <= last.end => last.end = last.end.max(iv.end),
                    _ => merged.push(iv),
                }
            }
            merged
        });
        Calendar { tz, week, holidays }
    }

    /// Builds a calendar from its configuration, or every reason it is wrong.
    pub fn from_config(config: &CalendarConfig) -> Result<Calendar, Vec<String>> {
        let mut problems = Vec::new();
        let tz = match time_zone(&config.time_zone) {
            Ok(tz) => Some(tz),
            Err(_) => {
                problems.push(format!("unknown time zone {:?}", config.time_zone));
                None
            }
        };
        let mut week: [Vec<Interval>; 7] = Default::default();
        for (slot, (name, specs)) in week.iter_mut().zip(config.hours.days()) {
            for spec in specs {
                match parse_interval(spec) {
                    Ok(iv) => slot.push(iv),
                    Err(reason) => problems.push(format!("hours.{name}: {reason}")),
                }
            }
            let mut sorted = slot.clone();
            sorted.sort();
            if sorted.windows(2).any(|w| w[1].start < w[0].end) {
                problems.push(format!("hours.{name}: intervals overlap"));
            }
        }
        let mut holidays = BTreeSet::new();
        for h in &config.holidays {
            match h.parse::<Date>() {
                Ok(d) => {
                    holidays.insert(d);
                }
                Err(_) => problems.push(format!("holiday {h:?} is not a date like 2026-12-25")),
            }
        }
        match tz {
            Some(tz) if problems.is_empty() => Ok(Calendar::new(tz, week, holidays)),
            _ => Err(problems),
        }
    }

    /// The desk's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// Whether the desk has any business hours at all.
    pub fn has_hours(&self) -> bool {
        self.week.iter().any(|d| !d.is_empty())
    }

    /// Whether the desk is open at `t`.
    pub fn is_open(&self, t: Timestamp) -> Result<bool, CalendarError> {
        // Intervals end at the latest at the next midnight, so only the civil
        // date of `t` itself can contain it.
        let date = self.tz.to_datetime(t).date();
        for (start, end) in self.day_instants(date)? {
            if start <= t && t < end {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The instant at which `target` of business time has passed since
    /// `arrival`: the earliest instant `t >= arrival` such that the desk was
    /// open for `target` between the two.
    ///
    /// A zero target is due on arrival, even outside business hours, because no
    /// business time needs to pass. A target that runs out exactly at closing
    /// time is due at closing time, not at the next opening. A positive target
    /// on a calendar without any weekly hours is [`CalendarError::NoBusinessHours`].
    pub fn due(&self, arrival: Timestamp, target: Duration) -> Result<Timestamp, CalendarError> {
        if target.is_zero() {
            return Ok(arrival);
        }
        if !self.has_hours() {
            return Err(CalendarError::NoBusinessHours);
        }
        let mut remaining =
            SignedDuration::try_from(target).map_err(|_| CalendarError::OutOfRange)?;
        let mut date = self.tz.to_datetime(arrival).date();
        for _ in 0..MAX_DAYS {
            for (start, end) in self.day_instants(date)? {
                let from = start.max(arrival);
                if from >= end {
                    continue;
                }
                let open = end.duration_since(from);
                if remaining <= open {
                    return from
                        .checked_add(remaining)
                        .map_err(|_| CalendarError::OutOfRange);
                }
                remaining -= open;
            }
            date = date.tomorrow().map_err(|_| CalendarError::OutOfRange)?;
        }
        Err(CalendarError::OutOfRange)
    }

    /// The business time between `from` and `to` (zero when `to <= from`), for
    /// measuring how long a response took against its target.
    pub fn elapsed(&self, from: Timestamp, to: Timestamp) -> Result<Duration, CalendarError> {
        let mut total = SignedDuration::ZERO;
        if to <= from {
            return Ok(Duration::ZERO);
        }
        let mut date = self.tz.to_datetime(from).date();
        let last = self.tz.to_datetime(to).date();
        while date <= last {
            for (start, end) in self.day_instants(date)? {
                let a = start.max(from);
                let b = end.min(to);
                if a < b {
                    total += b.duration_since(a);
                }
            }
            date = date.tomorrow().map_err(|_| CalendarError::OutOfRange)?;
        }
        Duration::try_from(total).map_err(|_| CalendarError::OutOfRange)
    }

    /// Whether the desk opens at all on `date` (a weekday with hours, not a
    /// holiday): a business day.
    pub fn is_business_day(&self, date: Date) -> bool {
        let idx = usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        !self.holidays.contains(&date) && !self.week[idx].is_empty()
    }

    /// The civil date of `t` in the desk's time zone.
    pub fn date_of(&self, t: Timestamp) -> Date {
        self.tz.to_datetime(t).date()
    }

    /// The instant of the local time `time` on `date` (a time skipped by a
    /// spring-forward change is the instant after the gap; a repeated one
    /// the first).
    pub fn at(&self, date: Date, time: Time) -> Result<Timestamp, CalendarError> {
        self.tz
            .to_ambiguous_timestamp(DateTime::from_parts(date, time))
            .compatible()
            .map_err(|_| CalendarError::OutOfRange)
    }

    /// The opening intervals of one civil date as instants; none on a holiday.
    fn day_instants(&self, date: Date) -> Result<Vec<(Timestamp, Timestamp)>, CalendarError> {
        if self.holidays.contains(&date) {
            return Ok(Vec::new());
        }
        let idx = usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        self.week[idx]
            .iter()
            .map(|iv| Ok((self.instant(date, iv.start)?, self.instant(date, iv.end)?)))
            .collect()
    }

    /// The instant of `secs` after local midnight on `date`. A local time that
    /// does not exist (skipped by a spring-forward change) or exists twice
    /// (repeated by a fall-back change) is resolved the usual way: the later
    /// offset for a gap, the earlier for a fold.
    fn instant(&self, date: Date, secs: u32) -> Result<Timestamp, CalendarError> {
        let dt = if secs >= DAY_SECS {
            date.tomorrow()
                .map_err(|_| CalendarError::OutOfRange)?
                .to_datetime(Time::midnight())
        } else {
            let t = Time::new(
                (secs / 3600) as i8,
                ((secs / 60) % 60) as i8,
                (secs % 60) as i8,
                0,
            )
            .map_err(|_| CalendarError::OutOfRange)?;
            DateTime::from_parts(date, t)
        };
        self.tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map_err(|_| CalendarError::OutOfRange)
    }
}

/// Parses `"HH:MM-HH:MM"`; the end may be `24:00`.
fn parse_interval(spec: &str) -> Result<Interval, String> {
    let bad = || format!("{spec:?} is not an interval like \"08:00-17:00\"");
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start = parse_clock(a.trim()).ok_or_else(bad)?;
    let end = parse_clock(b.trim()).ok_or_else(bad)?;
    Interval::new(start, end).ok_or_else(|| format!("{spec:?} must start before it ends"))
}

/// Parses `HH:MM` (00:00 to 24:00) into seconds after midnight.
fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    let secs = h * 3600 + m * 60;
    (m < 60 && secs <= DAY_SECS).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_read_from_their_file_are_the_ones_jiff_finds() {
        let probes = [
            "America/Chicago",
            "Europe/London",
            "Australia/Lord_Howe",
            "Etc/GMT+5",
            "UTC",
            "utc",
            "america/chicago",
            "zone.tab",
            "../../etc/passwd",
            "America/../Europe/London",
            "America//Chicago",
            "",
            "Nowhere/Atlantis",
            "America/Chicago/",
        ];
        let instants: Vec<Timestamp> = [
            "2026-03-08T07:59:59Z",
            "2026-03-08T08:00:00Z",
            "2026-11-01T06:30:00Z",
            "1970-01-01T00:00:00Z",
        ]
        .iter()
        .map(|t| t.parse().expect("instant"))
        .collect();
        for name in probes {
            let ours = time_zone(name);
            let jiffs = TimeZone::get(name);
            assert_eq!(
                ours.is_ok(),
                jiffs.is_ok(),
                "{name:?}: {ours:?} / {jiffs:?}"
            );
            if let (Ok(a), Ok(b)) = (ours, jiffs) {
                for t in &instants {
                    assert_eq!(a.to_offset(*t), b.to_offset(*t), "{name:?} at {t}");
                }
            }
        }
        assert_eq!(
            time_zone("America/Chicago").expect("zone").iana_name(),
            Some("America/Chicago")
        );
    }

    use jiff::Zoned;

    const H: u64 = 3600;

    fn ts(s: &str) -> Timestamp {
        match s.parse::<Zoned>() {
            Ok(z) => z.timestamp(),
            Err(e) => panic!("bad test time {s:?}: {e}"),
        }
    }

    fn calendar(toml_text: &str) -> Calendar {
        let config: CalendarConfig = match toml::from_str(toml_text) {
            Ok(c) => c,
            Err(e) => panic!("bad test calendar: {e}"),
        };
        match Calendar::from_config(&config) {
            Ok(c) => c,
            Err(e) => panic!("bad test calendar: {e:?}"),
        }
    }

    /// The default desk calendar with the holidays used below.
    fn chicago() -> Calendar {
        calendar("holidays = [\"2026-11-26\", \"2026-12-25\"]")
    }

    /// Asserts that `target` seconds of business time after `arrival` is
    /// `expected`; times are written with their zone, e.g.
    /// `2026-11-20T16:30[America/Chicago]`.
    #[track_caller]
    fn check(cal: &Calendar, arrival: &str, target_secs: u64, expected: &str) {
        let got = cal.due(ts(arrival), Duration::from_secs(target_secs));
        let want = ts(expected);
        let shown = got
            .as_ref()
            .map(|t| t.to_zoned(cal.tz.clone()).to_string())
            .unwrap_or_else(|e| e.to_string());
        assert_eq!(
            got,
            Ok(want),
            "arrival {arrival} + {target_secs}s: got {shown}, want {expected}"
        );
        // Due and elapsed must agree: the business time from arrival to due
        // is the target.
        if let Ok(t) = got {
            assert_eq!(
                cal.elapsed(ts(arrival), t),
                Ok(Duration::from_secs(target_secs)),
                "elapsed disagrees for {arrival} + {target_secs}s"
            );
        }
    }

    #[test]
    fn inside_hours() {
        let c = chicago();
        // Wednesday 2026-11-18.
        check(
            &c,
            "2026-11-18T09:00[America/Chicago]",
            2 * H,
            "2026-11-18T11:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-18T08:00[America/Chicago]",
            9 * H,
            "2026-11-18T17:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-18T15:00[America/Chicago]",
            2 * H,
            "2026-11-18T17:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-18T15:00[America/Chicago]",
            3 * H,
            "2026-11-19T09:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-18T16:59:30[America/Chicago]",
            60,
            "2026-11-19T08:00:30[America/Chicago]",
        );
        check(
            &c,
            "2026-11-18T09:00[America/Chicago]",
            1800,
            "2026-11-18T09:30[America/Chicago]",
        );
    }

    #[test]
    fn outside_hours() {
        let c = chicago();
        // Before opening, after closing, at closing, at midnight.
        check(
            &c,
            "2026-11-18T06:15[America/Chicago]",
            2 * H,
            "2026-11-18T10:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-18T19:45[America/Chicago]",
            2 * H,
            "2026-11-19T10:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-18T17:00[America/Chicago]",
            2 * H,
            "2026-11-19T10:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-18T00:00[America/Chicago]",
            H,
            "2026-11-18T09:00[America/Chicago]",
        );
        // Saturday and Sunday wait for Monday.
        check(
            &c,
            "2026-11-21T11:00[America/Chicago]",
            2 * H,
            "2026-11-23T10:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-22T23:59[America/Chicago]",
            4 * H,
            "2026-11-23T12:00[America/Chicago]",
        );
        // The same instant written in UTC gives the same answer.
        check(
            &c,
            "2026-11-21T17:00[UTC]",
            2 * H,
            "2026-11-23T10:00[America/Chicago]",
        );
    }

    #[test]
    fn friday_afternoon() {
        let c = chicago();
        // DOMAIN.md: Friday 16:30 with a 2 h target is due Monday 09:30.
        check(
            &c,
            "2026-11-20T16:30[America/Chicago]",
            2 * H,
            "2026-11-23T09:30[America/Chicago]",
        );
        check(
            &c,
            "2026-11-20T16:30[America/Chicago]",
            1800,
            "2026-11-20T17:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-20T17:30[America/Chicago]",
            4 * H,
            "2026-11-23T12:00[America/Chicago]",
        );
    }

    #[test]
    fn holidays() {
        let c = chicago();
        // Thanksgiving, Thursday 2026-11-26: closed; arrival that day waits.
        check(
            &c,
            "2026-11-26T10:00[America/Chicago]",
            2 * H,
            "2026-11-27T10:00[America/Chicago]",
        );
        // Wednesday afternoon rolls over the holiday to Friday.
        check(
            &c,
            "2026-11-25T16:00[America/Chicago]",
            2 * H,
            "2026-11-27T09:00[America/Chicago]",
        );
        // Christmas is a Friday in 2026: Thursday 16:00 + 2 h lands on Monday.
        check(
            &c,
            "2026-12-24T16:00[America/Chicago]",
            2 * H,
            "2026-12-28T09:00[America/Chicago]",
        );
        // Without the holiday list the same arrival is due on Christmas.
        check(
            &calendar(""),
            "2026-12-24T16:00[America/Chicago]",
            2 * H,
            "2026-12-25T09:00[America/Chicago]",
        );
    }

    #[test]
    fn across_spring_forward() {
        // 2026-03-08 02:00 CST becomes 03:00 CDT in America/Chicago.
        let c = chicago();
        check(
            &c,
            "2026-03-06T16:00[America/Chicago]",
            2 * H,
            "2026-03-09T09:00[America/Chicago]",
        );
        check(
            &c,
            "2026-03-06T08:00[America/Chicago]",
            16 * H,
            "2026-03-09T15:00[America/Chicago]",
        );
        // Open around the clock: the short Sunday has only 23 hours.
        let always = calendar(
            "[hours]\nmon = [\"00:00-24:00\"]\ntue = [\"00:00-24:00\"]\nwed = [\"00:00-24:00\"]\nthu = [\"00:00-24:00\"]\nfri = [\"00:00-24:00\"]\nsat = [\"00:00-24:00\"]\nsun = [\"00:00-24:00\"]\n",
        );
        check(
            &always,
            "2026-03-07T12:00[America/Chicago]",
            24 * H,
            "2026-03-08T13:00[America/Chicago]",
        );
        check(
            &always,
            "2026-03-08T01:30[America/Chicago]",
            H,
            "2026-03-08T03:30[America/Chicago]",
        );
        // A night shift across the change counts real time: 00:00 to 04:00
        // local is three hours on that night.
        let night = calendar("[hours]\nsun = [\"00:00-04:00\"]\nmon = [\"00:00-04:00\"]\n");
        check(
            &night,
            "2026-03-08T00:00[America/Chicago]",
            3 * H,
            "2026-03-08T04:00[America/Chicago]",
        );
        check(
            &night,
            "2026-03-08T00:00[America/Chicago]",
            4 * H,
            "2026-03-09T01:00[America/Chicago]",
        );
    }

    #[test]
    fn across_fall_back() {
        // 2026-11-01 02:00 CDT becomes 01:00 CST in America/Chicago.
        let c = chicago();
        check(
            &c,
            "2026-10-30T16:00[America/Chicago]",
            2 * H,
            "2026-11-02T09:00[America/Chicago]",
        );
        check(
            &c,
            "2026-10-30T12:00[America/Chicago]",
            9 * H,
            "2026-11-02T12:00[America/Chicago]",
        );
        let always = calendar(
            "[hours]\nmon = [\"00:00-24:00\"]\ntue = [\"00:00-24:00\"]\nwed = [\"00:00-24:00\"]\nthu = [\"00:00-24:00\"]\nfri = [\"00:00-24:00\"]\nsat = [\"00:00-24:00\"]\nsun = [\"00:00-24:00\"]\n",
        );
        // The long Sunday has 25 hours.
        check(
            &always,
            "2026-10-31T12:00[America/Chicago]",
            24 * H,
            "2026-11-01T11:00-06:00[America/Chicago]",
        );
        let night = calendar("[hours]\nsun = [\"00:00-04:00\"]\n");
        check(
            &night,
            "2026-11-01T00:00[America/Chicago]",
            5 * H,
            "2026-11-01T04:00[America/Chicago]",
        );
        check(
            &night,
            "2026-11-01T00:00[America/Chicago]",
            2 * H,
            "2026-11-01T01:00-06:00[America/Chicago]",
        );
    }

    #[test]
    fn long_targets() {
        let c = chicago();
        // 16 h from Monday 08:00 is Tuesday 15:00 (9 h + 7 h).
        check(
            &c,
            "2026-11-16T08:00[America/Chicago]",
            16 * H,
            "2026-11-17T15:00[America/Chicago]",
        );
        // 40 h from Monday 10:00: 7 + 9 + 9 + 9 = 34 h by Thursday close, 6 h Friday.
        check(
            &c,
            "2026-11-16T10:00[America/Chicago]",
            40 * H,
            "2026-11-20T14:00[America/Chicago]",
        );
        // 40 h from Friday 10:00 in Thanksgiving week skips the weekend and the holiday.
        check(
            &c,
            "2026-11-20T10:00[America/Chicago]",
            40 * H,
            "2026-11-27T14:00[America/Chicago]",
        );
        // One business day (9 h) from Friday 16:30.
        check(
            &c,
            "2026-11-20T16:30[America/Chicago]",
            9 * H,
            "2026-11-23T16:30[America/Chicago]",
        );
    }

    #[test]
    fn split_and_empty_days() {
        // Lunch break, a closed Wednesday (an empty list), a short Saturday.
        let c = calendar(
            "[hours]\nmon = [\"13:00-17:00\", \"08:00-12:00\"]\ntue = [\"08:00-12:00\"]\nwed = []\nthu = [\"08:00-17:00\"]\nsat = [\"10:00-11:00\"]\n",
        );
        check(
            &c,
            "2026-11-16T11:00[America/Chicago]",
            2 * H,
            "2026-11-16T14:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-16T12:30[America/Chicago]",
            30 * 60,
            "2026-11-16T13:30[America/Chicago]",
        );
        // Tuesday 11:00 + 2 h: one hour Tuesday, Wednesday closed, one hour Thursday.
        check(
            &c,
            "2026-11-17T11:00[America/Chicago]",
            2 * H,
            "2026-11-19T09:00[America/Chicago]",
        );
        // Friday is closed because the table does not name it; Saturday has one hour.
        check(
            &c,
            "2026-11-19T16:00[America/Chicago]",
            2 * H,
            "2026-11-21T11:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-20T09:00[America/Chicago]",
            2 * H,
            "2026-11-23T09:00[America/Chicago]",
        );
    }

    #[test]
    fn zero_target_is_due_on_arrival() {
        let c = chicago();
        check(
            &c,
            "2026-11-18T10:00[America/Chicago]",
            0,
            "2026-11-18T10:00[America/Chicago]",
        );
        check(
            &c,
            "2026-11-21T03:00[America/Chicago]",
            0,
            "2026-11-21T03:00[America/Chicago]",
        );
        let closed = calendar("[hours]\n");
        check(
            &closed,
            "2026-11-21T03:00[America/Chicago]",
            0,
            "2026-11-21T03:00[America/Chicago]",
        );
    }

    #[test]
    fn no_business_hours_is_an_error() {
        let closed = calendar("[hours]\nmon = []\n");
        assert!(!closed.has_hours());
        let arrival = ts("2026-11-18T10:00[America/Chicago]");
        assert_eq!(
            closed.due(arrival, Duration::from_secs(60)),
            Err(CalendarError::NoBusinessHours)
        );
        assert_eq!(
            chicago().due(arrival, Duration::from_secs(u64::MAX)),
            Err(CalendarError::OutOfRange)
        );
    }

    #[test]
    fn elapsed_business_time() {
        let c = chicago();
        let e = |a: &str, b: &str| c.elapsed(ts(a), ts(b)).map(|d| d.as_secs());
        assert_eq!(
            e(
                "2026-11-20T16:30[America/Chicago]",
                "2026-11-23T09:30[America/Chicago]"
            ),
            Ok(2 * H)
        );
        assert_eq!(
            e(
                "2026-11-21T09:00[America/Chicago]",
                "2026-11-22T09:00[America/Chicago]"
            ),
            Ok(0)
        );
        assert_eq!(
            e(
                "2026-11-23T09:00[America/Chicago]",
                "2026-11-20T09:00[America/Chicago]"
            ),
            Ok(0)
        );
    }

    #[test]
    fn is_open() {
        let c = chicago();
        for (t, want) in [
            ("2026-11-18T08:00[America/Chicago]", true),
            ("2026-11-18T16:59[America/Chicago]", true),
            ("2026-11-18T17:00[America/Chicago]", false),
            ("2026-11-21T12:00[America/Chicago]", false),
            ("2026-11-26T12:00[America/Chicago]", false),
        ] {
            assert_eq!(c.is_open(ts(t)), Ok(want), "{t}");
        }
    }

    #[test]
    fn config_problems() {
        let cases: &[(&str, &str)] = &[
            (
                "time_zone = \"Mars/Olympus\"",
                "unknown time zone \"Mars/Olympus\"",
            ),
            (
                "[hours]\nmon = [\"8-17\"]",
                "hours.mon: \"8-17\" is not an interval",
            ),
            (
                "[hours]\ntue = [\"17:00-08:00\"]",
                "hours.tue: \"17:00-08:00\" must start before it ends",
            ),
            (
                "[hours]\nwed = [\"08:00-25:00\"]",
                "hours.wed: \"08:00-25:00\" is not an interval",
            ),
            (
                "[hours]\nthu = [\"08:00-12:00\", \"11:00-13:00\"]",
                "hours.thu: intervals overlap",
            ),
            (
                "holidays = [\"Dec 25\"]",
                "holiday \"Dec 25\" is not a date",
            ),
        ];
        for (text, want) in cases {
            let config: CalendarConfig = match toml::from_str(text) {
                Ok(c) => c,
                Err(e) => panic!("{text}: {e}"),
            };
            let problems = Calendar::from_config(&config).err().unwrap_or_default();
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "{text}: want {want:?}, got {problems:?}"
            );
        }
        // A misspelt weekday is refused by the format itself.
        assert!(toml::from_str::<CalendarConfig>("[hours]\nmonday = [\"08:00-17:00\"]").is_err());
    }

    #[test]
    fn default_is_domain() {
        assert_eq!(CalendarConfig::default().time_zone, "America/Chicago");
        let c = Calendar::from_config(&CalendarConfig::default());
        assert!(c.is_ok());
        let parsed: Result<CalendarConfig, _> = toml::from_str("");
        assert_eq!(parsed.ok(), Some(CalendarConfig::default()));
    }
}
