//! Mail of the SLA clock (`crate::sla` decides when): the escalation
//! warning, the escalation and its further levels, the on-call page, and the
//! daily status of an urgent ticket. Rendered through the same templates
//! (overrides per desk and queue) and the same checks as every other mail.
//!
//! Warnings, escalations and pages are internal: they go to the owner, the
//! team, managers or on-call, never to the requester. The daily status goes
//! to the ticket's recipient list and the desk's managers: internal
//! addresses share one mail that names the owner and carries the latest
//! message; anyone else gets their own copy without either.

use std::collections::BTreeMap;

use minijinja::Value;

use super::templates::{REFLECTED_NAME_CHARS, REFLECTED_SUBJECT_CHARS, reflect_line, reflect_text};
use super::{Notifier, Outgoing, TicketEvent};
use crate::classify::Decision;
use crate::parse::ParsedMessage;
use crate::priority::{Impact, Priority, Urgency};
use crate::store::{LatestMessage, SlaTicket};

/// The longest latest message a daily status carries, in characters.
pub const STATUS_TEXT_CHARS: usize = 4_000;

/// One warning, escalation or page to compose.
#[derive(Debug, Clone, Copy)]
pub struct SlaNotice<'a> {
    pub ticket: &'a SlaTicket,
    /// The ticket's first message (threading, and what the templates show
    /// of it).
    pub first: &'a ParsedMessage,
    /// `response` or `resolution`.
    pub clock: &'a str,
    /// `warning`, `escalation`, `level2`, ..., `oncall`.
    pub level: &'a str,
    /// When this level fell due (ms).
    pub due_at: i64,
    /// When the clock's target falls due (ms).
    pub target_due_at: i64,
    /// Its recipients (internal addresses).
    pub to: &'a [String],
    pub now: i64,
}

/// `3d 4h`, `2h 5m`, `12m`: an age for people.
pub fn age(ms: i64) -> String {
    let mins = ms.max(0) / 60_000;
    let (d, h, m) = (mins / 1440, (mins / 60) % 24, mins % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

impl Notifier {
    /// The ticket as a routing decision, for the shared template context.
    fn sla_decision(t: &SlaTicket, due: Option<i64>) -> Decision {
        Decision {
            desk: t.desk.clone(),
            desk_tag: t.desk_tag.clone(),
            queue: t.queue.clone(),
            kind: t.kind,
            urgency: t.urgency.unwrap_or(Urgency::Medium),
            impact: t.impact.unwrap_or(Impact::Minor),
            priority: t.priority.unwrap_or(Priority::Medium),
            due_ms: due,
            recipients: t.recipients.clone(),
            tags: Vec::new(),
            suppress_ack: false,
            alert_key: None,
            recovery: false,
            explanation: Vec::new(),
        }
    }

    /// The shared context with the ticket's own values (status, subject,
    /// creation time, owner when `internal`) and `extra` on top.
    fn sla_context(
        &self,
        ev: &TicketEvent<'_>,
        t: &SlaTicket,
        desk_address: &str,
        to: &[String],
        internal: bool,
        extra: Value,
    ) -> Value {
        let base = self.context(ev, desk_address, to);
        let mut ticket: BTreeMap<String, Value> = BTreeMap::new();
        if let Ok(old) = base.get_attr("ticket")
            && let Ok(keys) = old.try_iter()
        {
            for k in keys {
                if let (Some(name), Ok(v)) = (k.as_str(), old.get_item(&k)) {
                    ticket.insert(name.to_string(), v);
                }
            }
        }
        let subject = reflect_line(&t.subject, REFLECTED_SUBJECT_CHARS);
        ticket.insert("subject".into(), Value::from(subject));
        ticket.insert("status".into(), Value::from(t.status.as_str()));
        if t.alert {
            for k in ["requester", "requester_name", "requester_display"] {
                ticket.remove(k);
            }
        }
        ticket.insert(
            "owner".into(),
            match (&t.owner, internal) {
                (Some(o), true) => Value::from(reflect_line(o, REFLECTED_NAME_CHARS)),
                _ => Value::from(()),
            },
        );
        let ticket = Value::from(ticket);
        let top = minijinja::context! { ticket => ticket };
        minijinja::context! { ..top, ..extra, ..base }
    }

    /// A warning, escalation or page: one mail to its recipients, or why
    /// not.
    pub fn compose_sla(&self, n: &SlaNotice<'_>) -> Outgoing {
        let kind = if n.level == "warning" {
            "escalation_warning"
        } else {
            "escalation"
        };
        let t = n.ticket;
        if n.to.is_empty() {
            return Outgoing::Suppressed {
                kind: kind.to_string(),
                reason: format!(
                    "nobody to send the {} {} to (configure the desk's {})",
                    n.clock,
                    n.level,
                    match n.level {
                        "warning" => "integrators or team",
                        "oncall" => "oncall",
                        "escalation" => "managers",
                        _ => "sla.levels",
                    }
                ),
            };
        }
        let decision = Self::sla_decision(t, Some(n.target_due_at));
        let ev = event(t, &decision, n.first);
        let desk_address = self.desk_address(&t.mailbox, &t.desk);
        let when = self.when(&t.desk);
        let extra = minijinja::context! {
            sla => minijinja::context! {
                clock => n.clock,
                level => n.level,
                oncall => n.level == "oncall",
                resolution => n.clock == "resolution",
                level_due => when(n.due_at),
                due => when(n.target_due_at),
                age => age(n.now - t.created_at),
            },
        };
        let ctx = self.sla_context(&ev, t, &desk_address, n.to, true, extra);
        match self.render(kind, &ev, &ctx) {
            Ok(r) => self.build(kind, &ev, &desk_address, n.to, r, None),
            Err(reason) => Outgoing::Suppressed {
                kind: kind.to_string(),
                reason,
            },
        }
    }

    /// The daily status of an urgent ticket: its recipient list and
    /// `managers`; internal addresses share one mail (with the owner and
    /// the latest message), anyone else gets their own without them.
    /// Never to robots, nor to an alert ticket's requester.
    pub fn compose_daily_status(
        &self,
        t: &SlaTicket,
        first: &ParsedMessage,
        latest: Option<&LatestMessage>,
        managers: &[String],
        now: i64,
    ) -> Vec<Outgoing> {
        let kind = "daily_status";
        let mut internal: Vec<String> = Vec::new();
        let mut groups: Vec<Vec<String>> = Vec::new();
        for r in t.recipients.iter().chain(managers) {
            let r = r.to_ascii_lowercase();
            if (t.alert && r == t.requester) || super::steering::is_robot(&r) {
                continue;
            }
            if self.is_internal_anywhere(&r) || managers.iter().any(|m| m.eq_ignore_ascii_case(&r))
            {
                if !internal.contains(&r) {
                    internal.push(r);
                }
            } else if !groups.iter().any(|g| g.contains(&r)) {
                groups.push(vec![r]);
            }
        }
        let has_internal = !internal.is_empty();
        if has_internal {
            groups.insert(0, internal);
        }
        if groups.is_empty() {
            return vec![Outgoing::Suppressed {
                kind: kind.to_string(),
                reason: "the ticket's recipient list and the desk's managers name nobody"
                    .to_string(),
            }];
        }
        let decision = Self::sla_decision(t, t.due_at);
        let ev = event(t, &decision, first);
        let desk_address = self.desk_address(&t.mailbox, &t.desk);
        let when = self.when(&t.desk);
        let mut out = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            let inside = has_internal && i == 0;
            let latest = latest.filter(|_| inside).map(|m| {
                minijinja::context! {
                    from => m.from.as_deref().map(|f| reflect_line(f, REFLECTED_NAME_CHARS)),
                    at => when(m.received_at),
                    text => reflect_text(&m.body, STATUS_TEXT_CHARS),
                }
            });
            let extra = minijinja::context! {
                status => minijinja::context! {
                    age => age(now - t.created_at),
                    last_activity => when(t.updated_at),
                    latest => latest,
                    responded => t.first_response_at.map(&when),
                },
            };
            let ctx = self.sla_context(&ev, t, &desk_address, group, inside, extra);
            out.push(match self.render(kind, &ev, &ctx) {
                Ok(r) => self.build(kind, &ev, &desk_address, group, r, None),
                Err(reason) => Outgoing::Suppressed {
                    kind: kind.to_string(),
                    reason,
                },
            });
        }
        out
    }

    /// Formats ms as a time in the desk's zone.
    fn when(&self, desk: &str) -> impl Fn(i64) -> String + use<> {
        let tz = self
            .config
            .calendars
            .get(desk)
            .map(|c| c.time_zone().clone())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        move |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| {
                    t.to_zoned(tz.clone())
                        .strftime("%Y-%m-%d %H:%M %Z")
                        .to_string()
                })
                .unwrap_or_default()
        }
    }
}

/// The ticket as an event of the shared context: `now` is its creation, so
/// that `ticket.created_at` is when it was opened.
fn event<'a>(t: &'a SlaTicket, d: &'a Decision, first: &'a ParsedMessage) -> TicketEvent<'a> {
    TicketEvent {
        created: false,
        number: t.number,
        mailbox: &t.mailbox,
        decision: d,
        parsed: first,
        recent_acks: 0,
        recent_notified_sender: 0,
        recent_notified_alert: 0,
        now: t.created_at,
        raw: &[],
        ticket: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, DEFAULT_CONFIG};
    use crate::notify::{OutboundMail, longest_line};
    use crate::parse::parse;
    use crate::priority::Kind;
    use crate::store::Status;

    fn notifier() -> Notifier {
        let config = Arc::new(Config::parse(DEFAULT_CONFIG, "t").expect("config"));
        crate::notify::notifier(&config).expect("templates")
    }

    fn ticket(subject: &str) -> SlaTicket {
        SlaTicket {
            number: 1042,
            desk: "isda".into(),
            desk_tag: "ISDA".into(),
            queue: "ProductionDefect".into(),
            kind: Kind::Incident,
            status: Status::Open,
            urgency: None,
            impact: None,
            priority: Some(Priority::Critical),
            requester: "ann@example.org".into(),
            requester_name: Some("Ann".into()),
            subject: subject.into(),
            mailbox: "isda-support".into(),
            owner: Some("jlee@example.edu".into()),
            alert: false,
            created_at: 1_794_844_800_000,
            updated_at: 1_794_848_400_000,
            due_at: Some(1_794_852_000_000),
            first_response_at: None,
            resolved_at: None,
            recipients: vec![
                "ann@example.org".into(),
                "isda-pipeline@example.edu".into(),
                "bob@partner.example".into(),
            ],
        }
    }

    fn mail(o: &Outgoing) -> &OutboundMail {
        match o {
            Outgoing::Mail(m) => m,
            Outgoing::Suppressed { kind, reason } => panic!("{kind} suppressed: {reason}"),
        }
    }

    fn text(m: &OutboundMail) -> String {
        String::from_utf8_lossy(&m.raw).into_owned()
    }

    #[test]
    fn escalation_names_the_level_and_due_time() {
        let n = notifier();
        let t = ticket("Portal down");
        let first = parse(b"From: Ann <ann@example.org>\nSubject: Portal down\nMessage-ID: <f@example.org>\n\nDown.\n");
        let to = vec!["isda-managers@example.edu".to_string()];
        let notice = SlaNotice {
            ticket: &t,
            first: &first,
            clock: "response",
            level: "escalation",
            due_at: 1_794_852_000_000,
            target_due_at: 1_794_852_000_000,
            to: &to,
            now: 1_794_852_060_000,
        };
        let out = n.compose_sla(&notice);
        let m = mail(&out);
        assert_eq!(m.kind, "escalation");
        assert_eq!(m.rcpt, to);
        assert_eq!(
            m.subject,
            "[ISDA #1042] ESCALATION: response overdue: Portal down"
        );
        let body = text(m);
        assert!(body.contains("In-Reply-To: <f@example.org>"), "{body}");
        let level2 = n.compose_sla(&SlaNotice {
            level: "level2",
            ..notice
        });
        assert_eq!(
            mail(&level2).subject,
            "[ISDA #1042] ESCALATION (level2): response overdue: Portal down"
        );
        let page = n.compose_sla(&SlaNotice {
            level: "oncall",
            ..notice
        });
        assert!(
            mail(&page).subject.contains("ON-CALL"),
            "{}",
            mail(&page).subject
        );
        let warning = n.compose_sla(&SlaNotice {
            level: "warning",
            clock: "resolution",
            ..notice
        });
        assert_eq!(mail(&warning).kind, "escalation_warning");
        assert!(mail(&warning).subject.contains("Resolution due soon"));
        // Nobody configured: suppressed with the reason.
        let none = n.compose_sla(&SlaNotice { to: &[], ..notice });
        assert!(
            matches!(&none, Outgoing::Suppressed { reason, .. } if reason.contains("managers")),
            "{none:?}"
        );
    }

    #[test]
    fn daily_status_keeps_internal_things_inside() {
        let n = notifier();
        let t = ticket("Portal down");
        let first = parse(b"From: Ann <ann@example.org>\nSubject: Portal down\n\nDown.\n");
        let latest = LatestMessage {
            from: Some("jlee@example.edu".into()),
            body: "Internal: restarting the db cluster.".into(),
            received_at: 1_794_848_400_000,
        };
        let managers = vec!["isda-managers@example.edu".to_string()];
        let out = n.compose_daily_status(&t, &first, Some(&latest), &managers, 1_794_931_200_000);
        let mails: Vec<&OutboundMail> = out.iter().map(mail).collect();
        assert_eq!(mails.len(), 3, "{out:?}");
        assert_eq!(
            mails[0].rcpt,
            ["isda-pipeline@example.edu", "isda-managers@example.edu"]
        );
        let inside = text(mails[0]);
        assert!(inside.contains("restarting the db cluster"), "{inside}");
        assert!(inside.contains("jlee@example.edu"), "{inside}");
        for outside in &mails[1..] {
            assert_eq!(outside.rcpt.len(), 1);
            let body = text(outside);
            for hidden in ["jlee@", "isda-managers", "isda-pipeline", "restarting"] {
                assert!(!body.contains(hidden), "{hidden} in {body}");
            }
            assert!(body.contains("Status:"), "{body}");
        }
        // An alert ticket's requester (a monitoring system) never hears.
        let mut alert = ticket("Disk full");
        alert.alert = true;
        let out = n.compose_daily_status(&alert, &first, None, &managers, 1_794_931_200_000);
        assert!(
            out.iter()
                .map(mail)
                .all(|m| !m.rcpt.contains(&"ann@example.org".to_string()))
        );
        // Nobody at all: suppressed.
        let mut lonely = ticket("x");
        lonely.recipients.clear();
        let out = n.compose_daily_status(&lonely, &first, None, &[], 1_794_931_200_000);
        assert!(
            matches!(out.as_slice(), [Outgoing::Suppressed { .. }]),
            "{out:?}"
        );
    }

    #[test]
    fn hostile_subject_and_text_stay_bounded() {
        let n = notifier();
        let huge = format!(
            "Down\r\nBcc: eve@attacker.example\r\n{}",
            "x".repeat(1 << 20)
        );
        let t = ticket(&huge);
        let first = parse(
            format!(
                "From: \"{}\" <ann@example.org>\nSubject: {huge}\n\nDown.\n",
                "N".repeat(100_000)
            )
            .as_bytes(),
        );
        let to = vec!["isda-managers@example.edu".to_string()];
        let out = n.compose_sla(&SlaNotice {
            ticket: &t,
            first: &first,
            clock: "response",
            level: "escalation",
            due_at: 0,
            target_due_at: 0,
            to: &to,
            now: 0,
        });
        let latest = LatestMessage {
            from: Some(huge.clone()),
            body: format!("{}\u{202e}\x1b[31m", "line\r\n".repeat(1 << 18)),
            received_at: 0,
        };
        let mut all = n.compose_daily_status(&t, &first, Some(&latest), &to, 0);
        all.push(out);
        for o in &all {
            let m = mail(o);
            assert!(m.raw.len() < 64 * 1024, "{} bytes", m.raw.len());
            assert!(longest_line(&m.raw).is_some_and(|l| l <= 998));
            let raw = text(m);
            assert!(!raw.contains("\nBcc:"), "header injected");
            assert!(!raw.contains('\u{202e}') && !raw.contains('\x1b'));
            assert_eq!(m.rcpt.iter().filter(|r| r.contains("attacker")).count(), 0);
        }
    }
}
