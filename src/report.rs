//! The service report card (`triaged report`): what became of the tickets
//! opened in a period, and how much mail arrived each day.
//!
//! The store counts ([`crate::store::ReportData`]); this module, pure, turns
//! the counts into the card: the period and its bounds in the desk's time
//! zone, the time to the initial response in the desk's business hours
//! ([`Calendar::elapsed`]) with its median and 90th percentile, totals per
//! queue and per priority, and counts per local day. `output` makes it an
//! aligned text table or CSV, `mail` a mail to a desk's managers; the
//! command line prints it (or its JSON) or queues the mail.
//!
//! What the figures mean (README, "The report card"):
//! - The tickets of the card are those *opened* in the period (in its
//!   current queue); what became of them is counted as it stands at the time
//!   of the report: answered within target (initial response at or before
//!   the due time), late (answered after it, or unanswered and past it),
//!   unanswered, without a due time, escalations sent about them (events
//!   `escalation` whose `level` is not `warning`), open (not resolved),
//!   resolved.
//! - The response time is business time from the ticket's creation to its
//!   initial response, over the answered tickets; the median of an even
//!   count is the mean of the middle two, the 90th percentile is the nearest
//!   rank (the smallest time at or above which 10 % of the tickets lie).
//! - Days are local days of the desk's time zone, or UTC when the card
//!   covers several desks.

mod mail;
mod output;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Serialize;

use crate::calendar::Calendar;
use crate::config::Config;
use crate::priority::Priority;
use crate::store::{ReportData, ReportQuery};

pub use mail::{CardMail, MAIL_KIND, compose_mail};
pub use output::{CSV_COLUMNS, csv_text, to_csv, to_text};

/// The name of a total in the desk, queue or priority column.
pub const ALL: &str = "(all)";
/// The priority of tickets that have none.
pub const NONE: &str = "(none)";
/// The longest period a card covers, in days (every day is listed).
pub const MAX_DAYS: i32 = 366;
/// The default period: this many days, ending today.
pub const DEFAULT_DAYS: i32 = 7;
/// A response later than this many days after creation is measured as if it
/// came then (a stored time that far off is an error, and measuring it in
/// business hours would walk the calendar day by day for ever).
const MAX_RESPONSE_DAYS: i64 = 3653;

/// A `YYYY-MM-DD` date of flag `flag`, or why not.
pub fn parse_date(flag: &str, s: &str) -> Result<Date, String> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(format!(
            "{flag} {s:?} is not a date like 2026-11-09 (YYYY-MM-DD)"
        ));
    }
    s.parse::<Date>()
        .map_err(|_| format!("{flag} {s:?} is not a date of the calendar"))
}

/// The days a card covers, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
}

impl Period {
    /// The period of `--from` and `--to`; a missing end is filled in from
    /// the default: the [`DEFAULT_DAYS`] days ending `today` (or ending
    /// `--to`, or starting `--from`).
    pub fn new(from: Option<&str>, to: Option<&str>, today: Date) -> Result<Period, String> {
        let span = (DEFAULT_DAYS - 1).days();
        let from_date = from.map(|s| parse_date("--from", s)).transpose()?;
        let to_date = to.map(|s| parse_date("--to", s)).transpose()?;
        let out_of_range = |_| "the period is out of range".to_string();
        let (from, to) = match (from_date, to_date) {
            (Some(f), Some(t)) => (f, t),
            (Some(f), None) => (f, f.checked_add(span).map_err(out_of_range)?),
            (None, Some(t)) => (t.checked_sub(span).map_err(out_of_range)?, t),
            (None, None) => (today.checked_sub(span).map_err(out_of_range)?, today),
        };
        if from > to {
            return Err(format!("--from {from} is after --to {to}"));
        }
        let period = Period { from, to };
        if period.len() > i64::from(MAX_DAYS) {
            return Err(format!(
                "the period {from} to {to} has {} days; a report covers at most {MAX_DAYS}",
                period.len()
            ));
        }
        Ok(period)
    }

    /// Its number of days.
    pub fn len(&self) -> i64 {
        i64::from((self.to - self.from).get_days()) + 1
    }

    /// Never: a period has at least one day.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every day, in order.
    pub fn days(&self) -> Vec<Date> {
        let mut out = Vec::new();
        let mut d = self.from;
        while d <= self.to {
            out.push(d);
            match d.tomorrow() {
                Ok(next) => d = next,
                Err(_) => break,
            }
        }
        out
    }

    /// Its bounds in `tz`, ms since the epoch: the first day's midnight
    /// (inclusive) and the midnight after the last day (exclusive).
    pub fn bounds(&self, tz: &TimeZone) -> Result<(i64, i64), String> {
        let start = midnight(self.from, tz)?;
        let after = self
            .to
            .tomorrow()
            .map_err(|_| "the period is out of range".to_string())?;
        Ok((start, midnight(after, tz)?))
    }
}

/// The start of `date` in `tz` (a midnight skipped by a change of offset is
/// the first instant of the day), ms since the epoch.
fn midnight(date: Date, tz: &TimeZone) -> Result<i64, String> {
    tz.to_ambiguous_timestamp(date.to_datetime(Time::midnight()))
        .compatible()
        .map(|t| t.as_millisecond())
        .map_err(|_| format!("{date} is out of range"))
}

/// Which desks a card covers and the time zone of its days.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The desk of `--desk`, if one was asked for.
    pub desk: Option<String>,
    /// The desks covered, in configuration order.
    pub desks: Vec<String>,
    pub tz: TimeZone,
    /// The time zone's name: the desk's, or `UTC`.
    pub tz_name: String,
}

impl Scope {
    /// The scope of `--desk` (`None`: every configured desk). One desk's
    /// days are in its time zone; several desks' in UTC.
    pub fn new(config: &Config, desk: Option<&str>) -> Result<Scope, String> {
        let configured: Vec<String> = config
            .desks
            .iter()
            .map(|d| d.name.get_ref().clone())
            .collect();
        let desks = match desk {
            Some(d) if configured.iter().any(|c| c == d) => vec![d.to_string()],
            Some(d) => {
                return Err(format!(
                    "unknown desk {d:?} (configured: {})",
                    configured.join(", ")
                ));
            }
            None => configured,
        };
        let (tz, tz_name) = match desks.as_slice() {
            [one] => match (config.calendars.get(one), config.desk(one)) {
                (Some(cal), Some(d)) => (cal.time_zone().clone(), d.time_zone.get_ref().clone()),
                _ => (TimeZone::UTC, "UTC".to_string()),
            },
            _ => (TimeZone::UTC, "UTC".to_string()),
        };
        Ok(Scope {
            desk: desk.map(str::to_string),
            desks,
            tz,
            tz_name,
        })
    }

    /// The store's query for `period` at `now_ms`.
    pub fn query(&self, period: &Period, now_ms: i64) -> Result<ReportQuery, String> {
        let (from_ms, to_ms) = period.bounds(&self.tz)?;
        Ok(ReportQuery {
            from_ms,
            to_ms,
            desk: self.desk.clone(),
            now_ms,
        })
    }
}

/// The median of sorted values: the middle one, or the mean of the middle
/// two (rounded down); `None` for none.
pub fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    if n % 2 == 1 {
        return Some(sorted[n / 2]);
    }
    let (a, b) = (sorted[n / 2 - 1], sorted[n / 2]);
    Some(a + (b - a).div_euclid(2))
}

/// The `pct` percentile of sorted values by nearest rank: the value at rank
/// ceil(pct/100 * n); `None` for none.
pub fn percentile(sorted: &[i64], pct: u32) -> Option<i64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let pct = pct.clamp(1, 100) as usize;
    let rank = (pct * n).div_ceil(100).clamp(1, n);
    Some(sorted[rank - 1])
}

/// One row of the card: a queue and a priority, a queue's total
/// (`priority` = `(all)`), a priority's total over the queues (`queue` =
/// `(all)`), or the grand total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRow {
    pub desk: String,
    pub queue: String,
    pub priority: String,
    pub opened: i64,
    pub within_target: i64,
    /// `within_target` of `opened`, in percent to one decimal; `None` when
    /// nothing was opened.
    pub within_target_percent: Option<f64>,
    pub late: i64,
    pub unanswered: i64,
    pub no_target: i64,
    /// Business time to the initial response, in minutes to one decimal;
    /// `None` when no ticket was answered.
    pub median_response_minutes: Option<f64>,
    pub p90_response_minutes: Option<f64>,
    /// The same, in ms (exact; for the text table).
    #[serde(skip)]
    pub median_response_ms: Option<i64>,
    #[serde(skip)]
    pub p90_response_ms: Option<i64>,
    pub escalations: i64,
    pub open: i64,
    pub resolved: i64,
}

/// Messages received in one mailbox on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessagesDay {
    pub day: String,
    pub desk: String,
    pub mailbox: String,
    pub messages: i64,
}

/// Tickets opened in one queue on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketsDay {
    pub day: String,
    pub desk: String,
    pub queue: String,
    pub opened: i64,
}

/// The report card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day (included).
    pub to: String,
    /// The time zone of the days.
    pub time_zone: String,
    pub desks: Vec<String>,
    /// When it was made, ms since the epoch (what "late" and "open" are
    /// counted against); RFC 3339 in JSON.
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub generated_at: i64,
    pub queues: Vec<QueueRow>,
    pub messages_per_day: Vec<MessagesDay>,
    pub tickets_per_day: Vec<TicketsDay>,
    /// What the figures could not take into account (a desk without a
    /// calendar, a time out of range).
    pub notes: Vec<String>,
}

/// Sums of one group of tickets, and their response times.
#[derive(Debug, Clone, Default)]
struct Acc {
    opened: i64,
    within_target: i64,
    late: i64,
    unanswered: i64,
    no_target: i64,
    resolved: i64,
    escalations: i64,
    responses_ms: Vec<i64>,
}

impl Acc {
    fn add(&mut self, other: &Acc) {
        self.opened += other.opened;
        self.within_target += other.within_target;
        self.late += other.late;
        self.unanswered += other.unanswered;
        self.no_target += other.no_target;
        self.resolved += other.resolved;
        self.escalations += other.escalations;
        self.responses_ms.extend_from_slice(&other.responses_ms);
    }

    fn row(&self, desk: &str, queue: &str, priority: &str) -> QueueRow {
        let mut sorted = self.responses_ms.clone();
        sorted.sort_unstable();
        let median_ms = median(&sorted);
        let p90_ms = percentile(&sorted, 90);
        let minutes = |ms: i64| (ms as f64 / 6000.0).round() / 10.0;
        QueueRow {
            desk: desk.to_string(),
            queue: queue.to_string(),
            priority: priority.to_string(),
            opened: self.opened,
            within_target: self.within_target,
            within_target_percent: (self.opened > 0)
                .then(|| (self.within_target as f64 * 1000.0 / self.opened as f64).round() / 10.0),
            late: self.late,
            unanswered: self.unanswered,
            no_target: self.no_target,
            median_response_minutes: median_ms.map(minutes),
            p90_response_minutes: p90_ms.map(minutes),
            median_response_ms: median_ms,
            p90_response_ms: p90_ms,
            escalations: self.escalations,
            open: self.opened - self.resolved,
            resolved: self.resolved,
        }
    }
}

/// A group's key: desk, queue, priority (`None`: no priority).
type Key = (String, String, Option<String>);

/// The place of a priority in the card: the matrix's order, then names it
/// does not know, then none.
fn priority_rank(p: Option<&str>) -> (u8, String) {
    match p {
        Some(name) => match name.parse::<Priority>() {
            Ok(known) => (
                Priority::ALL.iter().position(|x| *x == known).unwrap_or(0) as u8,
                String::new(),
            ),
            Err(_) => (100, name.to_string()),
        },
        None => (200, String::new()),
    }
}

/// Whether an escalation event's detail is a real escalation: anything but
/// `level = "warning"` (malformed details included: better counted once
/// too often than lost).
fn is_escalation(detail: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(v) => v.get("level").and_then(|l| l.as_str()) != Some("warning"),
        Err(_) => true,
    }
}

/// Builds the card of `scope` and `period` from the store's `data`, made at
/// `now_ms`.
pub fn build(
    config: &Config,
    scope: &Scope,
    period: &Period,
    now_ms: i64,
    data: &ReportData,
) -> Report {
    let mut notes = BTreeSet::new();
    let mut groups: BTreeMap<Key, Acc> = BTreeMap::new();
    for g in &data.groups {
        let acc = groups
            .entry((g.desk.clone(), g.queue.clone(), g.priority.clone()))
            .or_default();
        acc.opened += g.opened;
        acc.within_target += g.within_target;
        acc.late += g.late;
        acc.unanswered += g.unanswered;
        acc.no_target += g.no_target;
        acc.resolved += g.resolved;
    }
    for r in &data.responses {
        let calendar = config.calendars.get(&r.desk);
        let acc = groups
            .entry((r.desk.clone(), r.queue.clone(), r.priority.clone()))
            .or_default();
        acc.responses_ms
            .extend(r.times.iter().map(|&(created, responded)| {
                response_ms(calendar, &r.desk, created, responded, &mut notes)
            }));
    }
    for e in &data.escalations {
        if is_escalation(&e.detail) {
            groups
                .entry((e.desk.clone(), e.queue.clone(), e.priority.clone()))
                .or_default()
                .escalations += e.count;
        }
    }

    let queues = queue_list(config, scope, data);
    let total_desk = match scope.desks.as_slice() {
        [one] => one.clone(),
        _ => ALL.to_string(),
    };
    let mut rows = Vec::new();
    let mut per_priority: BTreeMap<(u8, String, Option<String>), Acc> = BTreeMap::new();
    for p in Priority::ALL {
        let name = p.as_str().to_string();
        per_priority.insert(
            (priority_rank(Some(&name)).0, String::new(), Some(name)),
            Acc::default(),
        );
    }
    let mut total = Acc::default();
    for (desk, queue) in &queues {
        let mut mine: Vec<(&Option<String>, &Acc)> = groups
            .range((desk.clone(), queue.clone(), None)..)
            .take_while(|((d, q, _), _)| d == desk && q == queue)
            .map(|((_, _, p), acc)| (p, acc))
            .collect();
        mine.sort_by_key(|(p, _)| priority_rank(p.as_deref()));
        let mut queue_total = Acc::default();
        for (p, acc) in mine {
            rows.push(acc.row(desk, queue, p.as_deref().unwrap_or(NONE)));
            queue_total.add(acc);
            let (rank, unknown) = priority_rank(p.as_deref());
            per_priority
                .entry((rank, unknown, p.clone()))
                .or_default()
                .add(acc);
        }
        rows.push(queue_total.row(desk, queue, ALL));
        total.add(&queue_total);
    }
    for ((_, _, p), acc) in &per_priority {
        rows.push(acc.row(&total_desk, ALL, p.as_deref().unwrap_or(NONE)));
    }
    rows.push(total.row(&total_desk, ALL, ALL));

    let days = period.days();
    let day_of = |ms: i64| -> Option<Date> {
        Timestamp::from_millisecond(ms)
            .ok()
            .map(|t| scope.tz.to_datetime(t).date())
    };

    // Messages per mailbox and day: the mailboxes of the covered desks (all
    // of them, and any no longer configured, when no desk was asked for).
    let mailbox_desk: HashMap<&str, &str> = config
        .mailboxes
        .iter()
        .map(|m| (m.name.as_str(), m.desk.as_str()))
        .collect();
    let mut mailboxes: Vec<(String, String)> = config
        .mailboxes
        .iter()
        .filter(|m| scope.desks.contains(&m.desk))
        .map(|m| (m.desk.clone(), m.name.clone()))
        .collect();
    let mut message_counts: HashMap<(String, Date), i64> = HashMap::new();
    for b in &data.messages {
        let desk = mailbox_desk.get(b.key.as_str()).copied();
        let covered = match desk {
            Some(d) => scope.desks.iter().any(|s| s == d),
            None => scope.desk.is_none(),
        };
        if !covered {
            continue;
        }
        if !mailboxes.iter().any(|(_, m)| *m == b.key) {
            mailboxes.push((desk.unwrap_or(NONE).to_string(), b.key.clone()));
        }
        if let Some(day) = day_of(b.start_ms) {
            *message_counts.entry((b.key.clone(), day)).or_default() += b.count;
        }
    }
    let mut messages_per_day = Vec::with_capacity(days.len() * mailboxes.len());
    for day in &days {
        for (desk, mailbox) in &mailboxes {
            messages_per_day.push(MessagesDay {
                day: day.to_string(),
                desk: desk.clone(),
                mailbox: mailbox.clone(),
                messages: message_counts
                    .get(&(mailbox.clone(), *day))
                    .copied()
                    .unwrap_or(0),
            });
        }
    }

    let mut ticket_counts: HashMap<(String, String, Date), i64> = HashMap::new();
    for b in &data.tickets {
        if let Some(day) = day_of(b.start_ms) {
            *ticket_counts
                .entry((b.desk.clone(), b.key.clone(), day))
                .or_default() += b.count;
        }
    }
    let mut tickets_per_day = Vec::with_capacity(days.len() * queues.len());
    for day in &days {
        for (desk, queue) in &queues {
            tickets_per_day.push(TicketsDay {
                day: day.to_string(),
                desk: desk.clone(),
                queue: queue.clone(),
                opened: ticket_counts
                    .get(&(desk.clone(), queue.clone(), *day))
                    .copied()
                    .unwrap_or(0),
            });
        }
    }

    Report {
        from: period.from.to_string(),
        to: period.to.to_string(),
        time_zone: scope.tz_name.clone(),
        desks: scope.desks.clone(),
        generated_at: now_ms,
        queues: rows,
        messages_per_day,
        tickets_per_day,
        notes: notes.into_iter().collect(),
    }
}

/// The queues of the card, as (desk, queue): the configured queues of the
/// covered desks in configuration order, then any other queue the period's
/// tickets are in (a queue since removed), by name.
fn queue_list(config: &Config, scope: &Scope, data: &ReportData) -> Vec<(String, String)> {
    let mut queues: Vec<(String, String)> = config
        .queues
        .iter()
        .filter(|q| scope.desks.contains(q.desk.get_ref()))
        .map(|q| (q.desk.get_ref().clone(), q.name.get_ref().clone()))
        .collect();
    let mut others: BTreeSet<(String, String)> = BTreeSet::new();
    let seen = data
        .groups
        .iter()
        .map(|g| (&g.desk, &g.queue))
        .chain(data.tickets.iter().map(|b| (&b.desk, &b.key)));
    for (desk, queue) in seen {
        if !queues.iter().any(|(d, q)| d == desk && q == queue) {
            others.insert((desk.clone(), queue.clone()));
        }
    }
    queues.extend(others);
    queues
}

/// The business time from `created` to `responded` on `desk`'s calendar,
/// ms; wall-clock time (with a note) when the desk has no calendar.
fn response_ms(
    calendar: Option<&Calendar>,
    desk: &str,
    created: i64,
    responded: i64,
    notes: &mut BTreeSet<String>,
) -> i64 {
    let cap = created.saturating_add(MAX_RESPONSE_DAYS * 86_400_000);
    let responded = responded.min(cap);
    let wall = responded.saturating_sub(created).max(0);
    let Some(calendar) = calendar else {
        notes.insert(format!(
            "desk {desk:?} is not configured: its response times are wall-clock time"
        ));
        return wall;
    };
    let business = Timestamp::from_millisecond(created)
        .and_then(|a| Timestamp::from_millisecond(responded).map(|b| (a, b)))
        .ok()
        .and_then(|(a, b)| calendar.elapsed(a, b).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok());
    match business {
        Some(ms) => ms,
        None => {
            notes.insert(format!(
                "desk {desk:?}: a response time out of the calendar's range counts as wall-clock time"
            ));
            wall
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EscalationRows, GroupCounts, ResponseTimes};

    fn date(s: &str) -> Date {
        s.parse().expect("date")
    }

    #[test]
    fn median_of_none_one_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7]), Some(7));
        assert_eq!(median(&[1, 5, 9]), Some(5));
        assert_eq!(median(&[1, 4]), Some(2), "mean of 1 and 4, rounded down");
        assert_eq!(median(&[10, 20, 30, 40]), Some(25));
        assert_eq!(median(&[i64::MAX - 1, i64::MAX]), Some(i64::MAX - 1));
    }

    #[test]
    fn p90_by_nearest_rank() {
        assert_eq!(percentile(&[], 90), None);
        assert_eq!(percentile(&[3], 90), Some(3));
        assert_eq!(percentile(&[1, 2], 90), Some(2));
        let ten: Vec<i64> = (1..=10).collect();
        // rank ceil(0.9 * 10) = 9.
        assert_eq!(percentile(&ten, 90), Some(9));
        let eleven: Vec<i64> = (1..=11).collect();
        // rank ceil(9.9) = 10.
        assert_eq!(percentile(&eleven, 90), Some(10));
        let twenty: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&twenty, 90), Some(18));
        assert_eq!(percentile(&ten, 100), Some(10));
        assert_eq!(percentile(&ten, 50), Some(5));
    }

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("--from", "2026-11-09"), Ok(date("2026-11-09")));
        for bad in [
            "",
            "2026-11-9",
            "2026/11/09",
            "09-11-2026",
            "2026-11-09T00:00",
            "2026-13-01",
            "2026-02-30",
            " 2026-11-09",
            "２０２６-11-09",
            "yesterday",
            "+2026-11-09",
        ] {
            let e = parse_date("--from", bad).expect_err(bad);
            assert!(e.starts_with("--from "), "{e}");
        }
    }

    #[test]
    fn periods_default_to_the_seven_days_ending_today() {
        let today = date("2026-11-24");
        let p = Period::new(None, None, today).expect("default");
        assert_eq!((p.from, p.to), (date("2026-11-18"), today));
        assert_eq!(p.len(), 7);
        assert_eq!(p.days().len(), 7);
        let p = Period::new(Some("2026-11-01"), None, today).expect("from");
        assert_eq!(p.to, date("2026-11-07"));
        let p = Period::new(None, Some("2026-11-07"), today).expect("to");
        assert_eq!(p.from, date("2026-11-01"));
        let p = Period::new(Some("2026-11-09"), Some("2026-11-09"), today).expect("one day");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn bad_periods_are_refused_with_a_reason() {
        let today = date("2026-11-24");
        let e = Period::new(Some("2026-11-10"), Some("2026-11-09"), today).expect_err("order");
        assert_eq!(e, "--from 2026-11-10 is after --to 2026-11-09");
        let e = Period::new(Some("2025-01-01"), Some("2026-11-09"), today).expect_err("long");
        assert!(e.contains("at most 366"), "{e}");
        assert!(Period::new(Some("2025-01-01"), Some("2025-12-31"), today).is_ok());
        let e = Period::new(Some("nope"), None, today).expect_err("bad");
        assert!(e.starts_with("--from \"nope\""), "{e}");
        // The last day jiff knows has no midnight after it.
        let edge = Period::new(None, Some("9999-12-31"), today).expect("edge");
        assert!(edge.bounds(&TimeZone::UTC).is_err());
        assert!(Period::new(Some("9999-12-31"), None, today).is_err());
    }

    #[test]
    fn bounds_are_local_midnights_across_a_dst_change() {
        let tz = TimeZone::get("America/Chicago").expect("tz");
        // 2026-11-01 is the fall-back day: 25 hours long.
        let p = Period::new(Some("2026-11-01"), Some("2026-11-01"), date("2026-11-24"))
            .expect("period");
        let (a, b) = p.bounds(&tz).expect("bounds");
        assert_eq!(a, 1_793_509_200_000, "2026-11-01T05:00Z");
        assert_eq!(b - a, 25 * 3_600_000);
    }

    #[test]
    fn escalation_levels() {
        assert!(is_escalation(r#"{"level":"escalation"}"#));
        assert!(is_escalation(r#"{"level":"second"}"#));
        assert!(is_escalation(r#"{}"#));
        assert!(is_escalation("not json"));
        assert!(!is_escalation(r#"{"level":"warning"}"#));
    }

    #[test]
    fn response_times_are_business_time_and_bounded() {
        let config = Config::parse(crate::config::DEFAULT_CONFIG, "default").expect("config");
        let cal = config.calendars.get("isda").expect("isda calendar");
        let mut notes = BTreeSet::new();
        // Friday 2026-11-13 16:00 CST (22:00Z) to Monday 2026-11-16 09:00 CST
        // (15:00Z): one hour on Friday, one on Monday.
        let fri = 1_794_607_200_000;
        let mon = 1_794_841_200_000;
        assert_eq!(
            response_ms(Some(cal), "isda", fri, mon, &mut notes),
            2 * 3_600_000
        );
        // A response before creation takes no time.
        assert_eq!(response_ms(Some(cal), "isda", mon, fri, &mut notes), 0);
        assert!(notes.is_empty());
        // A desk without a calendar: wall-clock time, and a note.
        assert_eq!(response_ms(None, "gone", fri, mon, &mut notes), mon - fri);
        assert_eq!(notes.len(), 1);
        // Centuries later is measured up to ten years, quickly.
        let far = response_ms(Some(cal), "isda", fri, i64::MAX, &mut notes);
        assert!(far > 0 && far < MAX_RESPONSE_DAYS * 86_400_000);
    }

    #[test]
    fn totals_per_queue_per_priority_and_overall() {
        let config = Config::parse(crate::config::DEFAULT_CONFIG, "default").expect("config");
        let scope = Scope::new(&config, Some("isda")).expect("scope");
        assert_eq!(scope.tz_name, "America/Chicago");
        let period = Period::new(Some("2026-11-09"), Some("2026-11-15"), date("2026-11-24"))
            .expect("period");
        let group = |queue: &str, p: Option<&str>, opened, within| GroupCounts {
            desk: "isda".into(),
            queue: queue.into(),
            priority: p.map(str::to_string),
            opened,
            within_target: within,
            late: opened - within,
            unanswered: 0,
            no_target: 0,
            resolved: 1,
        };
        // Monday 2026-11-09 09:00 CST = 15:00Z.
        let mon9 = 1_794_236_400_000;
        let resp = |queue: &str, p: Option<&str>, minutes: &[i64]| ResponseTimes {
            desk: "isda".into(),
            queue: queue.into(),
            priority: p.map(str::to_string),
            times: minutes.iter().map(|m| (mon9, mon9 + m * 60_000)).collect(),
        };
        let data = ReportData {
            groups: vec![
                group("Admin", Some("low"), 1, 1),
                group("Admin", None, 1, 0),
                group("Admin", Some("high"), 2, 1),
            ],
            responses: vec![
                resp("Admin", Some("low"), &[10]),
                resp("Admin", None, &[20]),
                resp("Admin", Some("high"), &[30, 60]),
            ],
            escalations: vec![
                EscalationRows {
                    desk: "isda".into(),
                    queue: "Admin".into(),
                    priority: Some("high".into()),
                    detail: r#"{"level":"escalation"}"#.into(),
                    count: 2,
                },
                EscalationRows {
                    desk: "isda".into(),
                    queue: "Admin".into(),
                    priority: Some("high".into()),
                    detail: r#"{"level":"warning"}"#.into(),
                    count: 5,
                },
            ],
            ..ReportData::default()
        };
        let r = build(&config, &scope, &period, mon9, &data);
        let find = |q: &str, p: &str| {
            r.queues
                .iter()
                .find(|row| row.queue == q && row.priority == p)
                .unwrap_or_else(|| panic!("no row {q} {p}"))
        };
        let admin: Vec<&str> = r
            .queues
            .iter()
            .filter(|row| row.queue == "Admin")
            .map(|row| row.priority.as_str())
            .collect();
        assert_eq!(admin, ["high", "low", NONE, ALL]);
        let high = find("Admin", "high");
        assert_eq!(high.escalations, 2);
        assert_eq!(high.median_response_minutes, Some(45.0));
        assert_eq!(high.within_target_percent, Some(50.0));
        let all = find("Admin", ALL);
        assert_eq!(
            (all.opened, all.within_target, all.resolved, all.open),
            (4, 2, 3, 1)
        );
        // 10, 20, 30, 60: median 25, p90 rank 4 = 60.
        assert_eq!(all.median_response_minutes, Some(25.0));
        assert_eq!(all.p90_response_minutes, Some(60.0));
        // Every configured queue of the desk has its total, even empty.
        let empty = find("Customer-Support", ALL);
        assert_eq!((empty.opened, empty.within_target_percent), (0, None));
        // Per priority over the queues: the four of the matrix, then none.
        let totals: Vec<&str> = r
            .queues
            .iter()
            .filter(|row| row.queue == ALL)
            .map(|row| row.priority.as_str())
            .collect();
        assert_eq!(totals, ["critical", "high", "medium", "low", NONE, ALL]);
        assert_eq!(find(ALL, ALL).opened, 4);
        assert_eq!(find(ALL, ALL).desk, "isda");
        // 7 days x the desk's mailboxes and queues.
        let isda_queues = config
            .queues
            .iter()
            .filter(|q| q.desk.get_ref() == "isda")
            .count();
        assert_eq!(r.tickets_per_day.len(), 7 * isda_queues);
    }

    #[test]
    fn several_desks_count_days_in_utc() {
        let config = Config::parse(crate::config::DEFAULT_CONFIG, "default").expect("config");
        let scope = Scope::new(&config, None).expect("scope");
        assert_eq!(scope.tz_name, "UTC");
        assert!(scope.desks.len() > 1);
        let e = Scope::new(&config, Some("nope")).expect_err("unknown desk");
        assert!(
            e.starts_with("unknown desk \"nope\" (configured: isda"),
            "{e}"
        );
    }
}
