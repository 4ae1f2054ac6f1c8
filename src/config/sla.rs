//! `[sla]`: the SLA clock's settings (see `crate::sla`): when the warning
//! goes out, further escalation levels, resolution targets, the daily status
//! of urgent tickets, and how often the scheduler looks.

use std::time::Duration;

use jiff::civil::Time;
use serde::Deserialize;

use crate::priority::{BusinessTime, Kind, Priority, TargetOverride};

/// The `[sla]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// The warning goes out when this share of a target has passed (0 to 1).
    #[serde(default = "default_warning_share")]
    pub warning_share: f64,
    /// How often the scheduler looks for due deadlines, in seconds. It also
    /// wakes for the next deadline it knows of.
    #[serde(default = "default_tick_secs")]
    pub tick_secs: u64,
    /// A ticket waiting on the customer (stalled) stops its clocks; the due
    /// times move by the business time it waited.
    #[serde(default = "default_true")]
    pub pause_when_stalled: bool,
    /// Further escalation levels after the escalation (share 1.0), each at a
    /// larger share of the target, to its own list: `level2`, `level3`, ...
    #[serde(default)]
    pub levels: Vec<SlaLevelConfig>,
    /// Optional resolution targets (business time from arrival to
    /// resolution), with the same warning and escalation levels.
    #[serde(default)]
    pub resolution: ResolutionTargets,
    /// The time of day (`HH:MM` or `HH:MM:SS`, the desk's time zone) of the daily status
    /// mail about unresolved urgent tickets, on business days.
    #[serde(default = "default_daily_status_at")]
    pub daily_status_at: String,
    /// Which tickets are urgent (get the daily status): any of these kinds,
    /// or any of these priorities.
    #[serde(default)]
    pub urgent: UrgentConfig,
}

/// One further escalation level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaLevelConfig {
    /// Share of the target (more than 1.0, and more than the level before).
    pub at_share: f64,
    /// Internal addresses that get this level's escalation.
    pub to: Vec<String>,
}

/// Resolution targets per priority, each optional, with overrides tried
/// first (as in `[targets]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolutionTargets {
    pub critical: Option<BusinessTime>,
    pub high: Option<BusinessTime>,
    pub medium: Option<BusinessTime>,
    pub low: Option<BusinessTime>,
    #[serde(default)]
    pub overrides: Vec<TargetOverride>,
}

impl ResolutionTargets {
    /// The resolution target of a ticket, if it has one.
    pub fn target(
        &self,
        desk: &str,
        queue: &str,
        kind: Kind,
        priority: Priority,
    ) -> Option<Duration> {
        if let Some(o) = self
            .overrides
            .iter()
            .find(|o| o.selects(desk, queue, kind, priority))
        {
            return Some(o.target.0);
        }
        match priority {
            Priority::Critical => self.critical,
            Priority::High => self.high,
            Priority::Medium => self.medium,
            Priority::Low => self.low,
        }
        .map(|t| t.0)
    }
}

/// `[sla.urgent]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrgentConfig {
    #[serde(default = "default_urgent_kinds")]
    pub kinds: Vec<Kind>,
    #[serde(default = "default_urgent_priorities")]
    pub priorities: Vec<Priority>,
}

impl Default for UrgentConfig {
    fn default() -> Self {
        UrgentConfig {
            kinds: default_urgent_kinds(),
            priorities: default_urgent_priorities(),
        }
    }
}

impl UrgentConfig {
    /// Whether a ticket of this kind and priority is urgent.
    pub fn is_urgent(&self, kind: Kind, priority: Option<Priority>) -> bool {
        self.kinds.contains(&kind) || priority.is_some_and(|p| self.priorities.contains(&p))
    }
}

fn default_urgent_kinds() -> Vec<Kind> {
    vec![Kind::Incident]
}
fn default_urgent_priorities() -> Vec<Priority> {
    vec![Priority::Critical, Priority::High]
}
fn default_warning_share() -> f64 {
    0.75
}
fn default_tick_secs() -> u64 {
    30
}
fn default_true() -> bool {
    true
}
fn default_daily_status_at() -> String {
    "09:00".to_string()
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            warning_share: default_warning_share(),
            tick_secs: default_tick_secs(),
            pause_when_stalled: true,
            levels: Vec::new(),
            resolution: ResolutionTargets::default(),
            daily_status_at: default_daily_status_at(),
            urgent: UrgentConfig::default(),
        }
    }
}

/// `HH:MM` (or `HH:MM:SS`) as a time of day.
pub fn parse_time_of_day(s: &str) -> Option<Time> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let n = |i: usize| parts.get(i).and_then(|p| p.parse::<i8>().ok()).unwrap_or(0);
    Time::new(n(0), n(1), n(2), 0).ok()
}

impl SlaConfig {
    /// The daily status time (checked when the configuration was read;
    /// 09:00 should it not parse).
    pub fn daily_time(&self) -> Time {
        parse_time_of_day(&self.daily_status_at).unwrap_or(Time::constant(9, 0, 0, 0))
    }

    /// The scheduler's period.
    pub fn tick(&self) -> Duration {
        Duration::from_secs(self.tick_secs.max(1))
    }

    /// Everything wrong with the table, as reasons; `desks` and `queues` are
    /// the known names.
    pub fn check(&self, desks: &[&str], queues: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        if !(self.warning_share > 0.0 && self.warning_share < 1.0) {
            out.push(format!(
                "sla.warning_share {} must be between 0 and 1 (exclusive)",
                self.warning_share
            ));
        }
        if self.tick_secs == 0 || self.tick_secs > 3600 {
            out.push(format!(
                "sla.tick_secs {} must be from 1 to 3600",
                self.tick_secs
            ));
        }
        if parse_time_of_day(&self.daily_status_at).is_none() {
            out.push(format!(
                "sla.daily_status_at {:?} is not a time of day like \"09:00\"",
                self.daily_status_at
            ));
        }
        let mut last = 1.0;
        for (i, l) in self.levels.iter().enumerate() {
            let name = format!("sla.levels[{i}]");
            if !(l.at_share.is_finite() && l.at_share > last) || l.at_share > 100.0 {
                out.push(format!(
                    "{name}: at_share {} must be above {last} (the level before; 1.0 is the escalation) and at most 100",
                    l.at_share
                ));
            } else {
                last = l.at_share;
            }
            if l.to.is_empty() {
                out.push(format!("{name}: `to` names nobody"));
            }
            for a in &l.to {
                if !is_address(a) {
                    out.push(format!("{name}: {a:?} is not an address"));
                }
            }
        }
        for o in &self.resolution.overrides {
            if let Some(d) = o.desk.as_deref().filter(|d| !desks.contains(d)) {
                out.push(format!("sla.resolution.overrides: unknown desk {d:?}"));
            }
            if let Some(q) = o.queue.as_deref().filter(|q| !queues.contains(q)) {
                out.push(format!("sla.resolution.overrides: unknown queue {q:?}"));
            }
        }
        out
    }
}

/// `local@domain`, without spaces.
pub fn is_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) => !l.is_empty() && !d.is_empty() && !a.contains(char::is_whitespace),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("09:00"), Some(Time::constant(9, 0, 0, 0)));
        assert_eq!(
            parse_time_of_day("23:59"),
            Some(Time::constant(23, 59, 0, 0))
        );
        for bad in ["9:00", "24:00", "09:60", "09-00", "", "0900", "+9:00"] {
            assert_eq!(parse_time_of_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn checks_say_what_is_wrong() {
        let mut c = SlaConfig {
            warning_share: 1.0,
            tick_secs: 0,
            daily_status_at: "9am".to_string(),
            levels: vec![
                SlaLevelConfig {
                    at_share: 2.0,
                    to: vec!["boss@example.edu".to_string()],
                },
                SlaLevelConfig {
                    at_share: 1.5,
                    to: vec!["nobody".to_string()],
                },
            ],
            ..SlaConfig::default()
        };
        let r = c.check(&["isda"], &["Q"]).join("\n");
        for want in [
            "warning_share 1",
            "tick_secs 0",
            "daily_status_at \"9am\"",
            "sla.levels[1]: at_share 1.5 must be above 2",
            "\"nobody\" is not an address",
        ] {
            assert!(r.contains(want), "{want} not in {r}");
        }
        assert!(!r.contains("sla.levels[0]"), "{r}");
        c = SlaConfig::default();
        assert!(c.check(&[], &[]).is_empty());
    }

    #[test]
    fn urgent_is_kind_or_priority() {
        let u = UrgentConfig::default();
        assert!(u.is_urgent(Kind::Incident, Some(Priority::Low)));
        assert!(u.is_urgent(Kind::Bug, Some(Priority::High)));
        assert!(!u.is_urgent(Kind::Bug, Some(Priority::Medium)));
        assert!(!u.is_urgent(Kind::Service, None));
    }
}
