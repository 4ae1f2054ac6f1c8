//! Classify: which desk, queue and kind a new message belongs to, its urgency,
//! impact, priority and response-due time, its recipient list, and why.
//!
//! Pure. A [`Classifier`] is built once from the configuration and a rule set
//! (`routing-rules/`, see `rules`); the pipeline holds the current one and swaps
//! it whole when the rules are reloaded, so every message is routed by exactly
//! one rule set.

pub mod cases;

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Mailbox};
use crate::parse::ParsedMessage;
use crate::priority::{Impact, Kind, Priority, Urgency};
use crate::problem::Problems;
use crate::rules::{Evaluation, RuleSet};

/// The routing decision for one message, with the reasons for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub desk: String,
    pub desk_tag: String,
    pub queue: String,
    pub kind: Kind,
    pub urgency: Urgency,
    pub impact: Impact,
    pub priority: Priority,
    /// When the initial response is due, ms since the epoch (business hours counted).
    pub due_ms: Option<i64>,
    /// The ticket's own recipient list: addresses told of urgent events.
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// No acknowledgement to the sender (a rule said so).
    #[serde(default)]
    pub suppress_ack: bool,
    /// Repeated alerts with the same key belong on one open ticket.
    #[serde(default)]
    pub alert_key: Option<String>,
    /// A recovery (a rule said so): the problem of its alert key is over, and
    /// the open ticket of that key is resolved. Never without an alert key.
    #[serde(default)]
    pub recovery: bool,
    /// One line per reason, in the order they applied.
    pub explanation: Vec<String>,
}

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../routing-rules/", $name)))),*]
    };
}

/// The shipped rules, compiled in: used when the rules folder does not exist.
pub const BUILTIN_RULES: &[(&str, &str)] = builtin!(
    "00-lists.toml",
    "10-monitoring.toml",
    "20-automated.toml",
    "25-nonproduction.toml",
    "30-urgent.toml",
    "40-deploy.toml",
    "50-bugs.toml",
    "60-impact.toml",
    "70-database.toml",
    "80-admin.toml",
    "90-mailboxes.toml",
);

/// Loads the rule set the configuration names, or the built-in one when the
/// folder does not exist. Every problem is returned as `file:line: reason`.
pub fn load_rules(config: &Config) -> Result<RuleSet, Problems> {
    load_rules_from(&config.paths.rules, config)
}

/// Loads the rules in `dir` (or the built-in ones if `dir` does not exist),
/// checked against the queues and mailboxes of `config`.
pub fn load_rules_from(dir: &Path, config: &Config) -> Result<RuleSet, Problems> {
    let known = config.known_names();
    if dir.is_dir() {
        RuleSet::load_dir(dir, &known).map_err(Problems)
    } else {
        let files: Vec<(String, String)> = BUILTIN_RULES
            .iter()
            .map(|(n, s)| (format!("<built-in routing-rules>/{n}"), s.to_string()))
            .collect();
        RuleSet::from_sources(&files, &known).map_err(Problems)
    }
}

/// Everything classification needs, built once.
#[derive(Debug)]
pub struct Classifier {
    rules: RuleSet,
}

impl Classifier {
    pub fn new(rules: RuleSet) -> Classifier {
        Classifier { rules }
    }

    /// Loads the configured rules.
    pub fn load(config: &Config) -> Result<Classifier, Problems> {
        load_rules(config).map(Classifier::new)
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Decides everything about a message that arrived in `mailbox` at
    /// `arrival` (ms since the epoch).
    pub fn classify(
        &self,
        msg: &ParsedMessage,
        mailbox: &Mailbox,
        arrival_ms: i64,
        config: &Config,
    ) -> Decision {
        let ev = self.rules.evaluate(&mailbox.name, msg);
        complete(&ev, msg, mailbox, arrival_ms, config)
    }
}

/// Completes what the rules decided into the full decision: the mailbox's
/// default queue, the queue's default kind, priority defaults and matrix, the
/// response target and the desk's calendar, the initiator on an incident's
/// list. Shared by the pipeline and `triaged rules test`, so a rule test checks
/// exactly what a live message would get.
pub fn complete(
    ev: &Evaluation,
    msg: &ParsedMessage,
    mailbox: &Mailbox,
    arrival_ms: i64,
    config: &Config,
) -> Decision {
    let mut explanation = ev.explanation();

    let queue = match &ev.queue {
        Some(q) => q.clone(),
        None => {
            let q = mailbox.default_queue.clone();
            explanation.push(format!("queue {q}: default of mailbox {}", mailbox.name));
            q
        }
    };
    let queue_config = config.queues.iter().find(|q| q.name.get_ref() == &queue);
    let desk = config
        .queue_desk(&queue)
        .or_else(|| config.desk(&mailbox.desk));
    let desk_name = desk
        .map(|d| d.name.get_ref().clone())
        .unwrap_or_else(|| mailbox.desk.clone());
    let desk_tag = desk
        .map(|d| d.tag.clone())
        .unwrap_or_else(|| desk_name.to_ascii_uppercase());

    let kind = match ev.kind {
        Some(k) => k,
        None => {
            let from_queue = queue_config
                .and_then(|q| q.default_kind.as_ref())
                .and_then(|k| Kind::from_str(k.get_ref()).ok());
            match from_queue {
                Some(k) => {
                    explanation.push(format!("kind {k}: default of queue {queue}"));
                    k
                }
                None => {
                    explanation.push(format!("kind {}: default", Kind::DEFAULT));
                    Kind::DEFAULT
                }
            }
        }
    };

    let a = assess(
        config, &desk_name, &queue, kind, ev.urgency, ev.impact, arrival_ms,
    );
    explanation.extend(a.explanation);
    let (resolved, due_ms) = (a.resolved, a.due_ms);

    // An urgent response's list starts with its initiator (DOMAIN.md).
    let mut recipients = Vec::new();
    if kind.is_urgent()
        && let Some(r) = msg.requester()
    {
        recipients.push(r.address.to_ascii_lowercase());
    }
    for r in &ev.recipients {
        if !recipients.contains(r) {
            recipients.push(r.clone());
        }
    }

    Decision {
        desk: desk_name,
        desk_tag,
        queue,
        kind,
        urgency: resolved.urgency,
        impact: resolved.impact,
        priority: resolved.priority,
        due_ms,
        recipients,
        tags: ev.tags.clone(),
        suppress_ack: ev.suppress_ack.unwrap_or(false),
        alert_key: ev.alert_key.clone(),
        recovery: ev.recovery.unwrap_or(false) && ev.alert_key.is_some(),
        explanation,
    }
}

/// A ticket's priority and response-due time, from its queue, kind and
/// (when set) urgency and impact: the priority defaults and matrix, the
/// response target, and the desk's calendar counted from `arrival_ms`.
/// Shared by [`complete`] and a transfer or `/urgency` on an existing
/// ticket, so both compute them the same way.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub resolved: crate::priority::Resolved,
    pub due_ms: Option<i64>,
    /// One line per reason.
    pub explanation: Vec<String>,
}

/// See [`Assessment`].
pub fn assess(
    config: &Config,
    desk_name: &str,
    queue: &str,
    kind: Kind,
    urgency: Option<Urgency>,
    impact: Option<Impact>,
    arrival_ms: i64,
) -> Assessment {
    let mut explanation = Vec::new();
    let resolved = config.priority.resolve(queue, kind, urgency, impact);
    explanation.extend(resolved.explanation.iter().cloned());
    let (target, why_target) = config
        .targets
        .target(desk_name, queue, kind, resolved.priority);
    explanation.push(why_target);
    let due_ms = match (
        config.calendars.get(desk_name),
        jiff::Timestamp::from_millisecond(arrival_ms),
    ) {
        (Some(calendar), Ok(arrival)) => match calendar.due(arrival, target) {
            Ok(due) => {
                explanation.push(format!(
                    "due {}: {} of business time after arrival",
                    due.to_zoned(calendar.time_zone().clone())
                        .strftime("%Y-%m-%d %H:%M %Z"),
                    humanize(target)
                ));
                Some(due.as_millisecond())
            }
            Err(e) => {
                explanation.push(format!("no due time: {e}"));
                None
            }
        },
        _ => {
            explanation.push(format!("no due time: desk {desk_name} has no calendar"));
            None
        }
    };
    Assessment {
        resolved,
        due_ms,
        explanation,
    }
}

/// `2h`, `30m`, `1h30m`.
fn humanize(d: std::time::Duration) -> String {
    let mins = d.as_secs() / 60;
    match (mins / 60, mins % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CONFIG;
    use crate::parse::parse;

    fn setup() -> (Config, Classifier) {
        let config = Config::parse(DEFAULT_CONFIG, "default").expect("config");
        let classifier = Classifier::load(&config).unwrap_or_else(|p| panic!("{p}"));
        (config, classifier)
    }

    fn decide(mailbox: &str, raw: &str, arrival: &str) -> Decision {
        let (config, c) = setup();
        let mb = config.mailbox(mailbox).expect("mailbox");
        let at: jiff::Timestamp = arrival.parse().expect("timestamp");
        c.classify(&parse(raw.as_bytes()), mb, at.as_millisecond(), &config)
    }

    #[test]
    fn builtin_rules_match_the_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("routing-rules");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("routing-rules")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let builtin: Vec<String> = BUILTIN_RULES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            builtin, on_disk,
            "BUILTIN_RULES must list every shipped rule file"
        );
    }

    #[test]
    fn urgent_outage_on_friday_afternoon() {
        // 16:30 on a Friday in Chicago (22:30 UTC); ProductionDefect incident.
        let d = decide(
            "map-support",
            "From: Lee <lee@registrar.example.edu>\nSubject: Degree audit service outage\n\nIt is down for the whole department.\n",
            "2026-11-20T22:30:00Z",
        );
        assert_eq!(d.queue, "ProductionDefect");
        assert_eq!(d.kind, Kind::Incident);
        assert_eq!(d.urgency, Urgency::High);
        assert_eq!(
            d.recipients.first().map(String::as_str),
            Some("lee@registrar.example.edu")
        );
        assert!(
            d.recipients
                .iter()
                .any(|r| r == "isda-pipeline@example.edu"),
            "{d:?}"
        );
        let due = jiff::Timestamp::from_millisecond(d.due_ms.expect("due")).expect("ts");
        let local = due.to_zoned(jiff::tz::TimeZone::get("America/Chicago").expect("tz"));
        assert_eq!(local.weekday(), jiff::civil::Weekday::Monday, "{d:#?}");
        assert!(
            d.explanation.iter().any(|l| l.contains("urgent wording")),
            "{:#?}",
            d.explanation
        );
    }

    #[test]
    fn plain_question_takes_mailbox_default() {
        let d = decide(
            "isda-support",
            "From: ann@example.org\nSubject: How do I export my grades?\n\nThanks.\n",
            "2026-11-18T15:00:00Z",
        );
        assert_eq!(d.queue, "Customer-Support");
        assert_eq!(d.desk_tag, "ISDA");
        assert!(d.due_ms.is_some());
        assert!(d.recipients.is_empty());
    }
}
