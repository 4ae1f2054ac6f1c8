//! Mail from steering a ticket (commands by mail, later `triaged tickets
//! set`): the transfer notice and the new queue's notification, the reply
//! to a team member whose commands were refused, and an internal comment
//! relayed to the team. None of it ever goes to the customer.

use minijinja::Value;

use super::templates::{REFLECTED_NAME_CHARS, reflect_line, reflect_text};
use super::{Notifier, Outgoing, TicketEvent, policy};
use crate::commands::Refused;

/// How many refused commands a `command_refused` mail lists.
pub const REFUSALS_LISTED: usize = 20;
/// The longest note a `comment` mail carries, in characters.
pub const NOTE_CHARS: usize = 20_000;

/// What steering a ticket did that mail is about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steering<'a> {
    /// A queue transfer: (from, to).
    pub transfer: Option<(&'a str, &'a str)>,
    /// The commands refused, and the team member to tell (`None`: nobody,
    /// as `commands::authorize` says for a sender outside the team).
    pub refused: &'a [Refused],
    pub answer_to: Option<&'a str>,
    /// An internal note, and its author's display name.
    pub note: Option<&'a str>,
    pub note_author: Option<&'a str>,
    /// Who steered (lower-case address): never sent their own note.
    pub sender: Option<&'a str>,
    /// `command_refused` mails queued to `answer_to` within the cap window:
    /// at `[notify] ack_limit_per_hour` no more are sent (a client that
    /// resends, or a loop, cannot make the desk mail without end).
    pub recent_refusals: i64,
}

impl Notifier {
    /// The mail for `s`. `ev` is the ticket as it is now (`ev.decision`
    /// holds its routing after the commands, `ev.parsed` the message that
    /// steered it, `ev.ticket` its conversation state); `first` is the
    /// ticket's first message (what a queue notification shows).
    pub fn compose_steering(
        &self,
        ev: &TicketEvent<'_>,
        first: Option<&crate::parse::ParsedMessage>,
        s: &Steering<'_>,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let d = ev.decision;
        let desk_address = self.desk_address(ev.mailbox, &d.desk);
        let state = ev.ticket;
        let render = |kind: &str, ev: &TicketEvent<'_>, to: &[String], extra: Value| {
            let base = self.context(ev, &desk_address, to);
            let ctx = minijinja::context! { ..extra, ..base };
            match self.render(kind, ev, &ctx) {
                Ok(r) => self.build(kind, ev, &desk_address, to, r, None),
                Err(reason) => Outgoing::Suppressed {
                    kind: kind.to_string(),
                    reason,
                },
            }
        };

        if let Some((from_queue, to_queue)) = s.transfer {
            // The queue's view is of the ticket's first message.
            let first_ev = TicketEvent {
                parsed: first.unwrap_or(ev.parsed),
                ..*ev
            };
            let transfer = minijinja::context! {
                transfer => minijinja::context! {
                    from_queue => from_queue, to_queue => to_queue, note => "",
                },
            };
            // 1. The transfer notice: the recipient list, never the
            // requester; internal addresses share one mail.
            let requester = state.map(|t| t.requester.as_str()).unwrap_or("");
            let mut internal = Vec::new();
            let mut groups: Vec<Vec<String>> = Vec::new();
            for r in state.map(|t| t.recipients.as_slice()).unwrap_or(&[]) {
                let r = r.to_ascii_lowercase();
                if r == requester || is_robot(&r) {
                    continue;
                }
                if self.is_internal_anywhere(&r) {
                    internal.push(r);
                } else {
                    groups.push(vec![r]);
                }
            }
            if !internal.is_empty() {
                groups.insert(0, internal);
            }
            if groups.is_empty() {
                out.push(Outgoing::Suppressed {
                    kind: "transfer_notice".to_string(),
                    reason: "the ticket's recipient list names nobody but the requester"
                        .to_string(),
                });
            }
            for group in groups {
                out.push(render(
                    "transfer_notice",
                    &first_ev,
                    &group,
                    transfer.clone(),
                ));
            }
            // 2. The new queue's notification, as for a new ticket there.
            let notify: Vec<String> = self
                .config
                .queues
                .iter()
                .find(|q| q.name.get_ref() == to_queue)
                .map(|q| q.notify.clone())
                .unwrap_or_default();
            if !notify.is_empty() {
                out.push(render(
                    "queue_notification",
                    &first_ev,
                    &notify,
                    transfer.clone(),
                ));
            }
        }

        // 3. Refused commands: the team member alone.
        if let (false, Some(to)) = (s.refused.is_empty(), s.answer_to) {
            let listed: Vec<Value> = s
                .refused
                .iter()
                .take(REFUSALS_LISTED)
                .map(|r| {
                    minijinja::context! {
                        line => reflect_line(&r.line, 200),
                        reason => reflect_line(&r.reason, 400),
                    }
                })
                .collect();
            let extra = minijinja::context! {
                refused => listed,
                refused_more => s.refused.len().saturating_sub(REFUSALS_LISTED),
            };
            let to = vec![to.to_ascii_lowercase()];
            let limit = self.config.notify.ack_limit_per_hour;
            out.push(if policy::no_reply_reason(ev.parsed, &self.own).is_some() {
                Outgoing::Suppressed {
                    kind: "command_refused".to_string(),
                    reason: "the sender must not get an automatic reply".to_string(),
                }
            } else if s.recent_refusals >= limit {
                Outgoing::Suppressed {
                    kind: "command_refused".to_string(),
                    reason: format!(
                        "{} refusals already sent to this sender within the hour (limit {limit})",
                        s.recent_refusals
                    ),
                }
            } else {
                render("command_refused", ev, &to, extra)
            });
        }

        // 4. An internal note: the team and the owner, never the author.
        if let Some(note) = s.note {
            let author = s.note_author.or(s.sender).unwrap_or("");
            let sender = s.sender.unwrap_or("").to_ascii_lowercase();
            let mut to: Vec<String> = Vec::new();
            let team = self.config.desk_team(&d.desk).iter();
            let owner = state.and_then(|t| t.owner.as_ref());
            for a in team.chain(owner) {
                let a = a.to_ascii_lowercase();
                if a.contains('@') && a != sender && !to.contains(&a) {
                    to.push(a);
                }
            }
            if to.is_empty() {
                out.push(Outgoing::Suppressed {
                    kind: "comment".to_string(),
                    reason: "nobody on the team to tell".to_string(),
                });
            } else {
                let extra = minijinja::context! {
                    relay => minijinja::context! {
                        author => reflect_line(author, REFLECTED_NAME_CHARS),
                        text => reflect_text(note, NOTE_CHARS),
                    },
                };
                out.push(render("comment", ev, &to, extra));
            }
        }
        out
    }
}

pub(super) fn is_robot(address: &str) -> bool {
    let probe = crate::parse::parse(format!("From: {address}\n\n").as_bytes());
    policy::no_reply_reason(&probe, &[]).is_some()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::classify::Classifier;
    use crate::config::Config;
    use crate::notify::OutboundMail;
    use crate::parse::parse;
    use crate::store::{Status, TicketState};

    fn state() -> TicketState {
        TicketState {
            number: 1042,
            desk: "isda".into(),
            desk_tag: "ISDA".into(),
            queue: "ProductionDefect".into(),
            status: Status::Open,
            requester: "ann@example.org".into(),
            requester_name: Some("Ann".into()),
            subject: "Portal down".into(),
            mailbox: "isda-support".into(),
            owner: Some("tkim@example.edu".into()),
            first_response_at: None,
            alert: false,
            recipients: vec![
                "ann@example.org".into(),
                "bob@partner.example".into(),
                "isda-pipeline@example.edu".into(),
                "mgarcia@example.edu".into(),
            ],
            thread: Vec::new(),
        }
    }

    fn compose(raw: &str, s: &Steering<'_>) -> Vec<Outgoing> {
        let config = Arc::new(Config::load(None).expect("built-in config"));
        let n = super::super::notifier(&config).expect("templates");
        let parsed = parse(raw.as_bytes());
        let first = parse(b"From: Ann <ann@example.org>\nSubject: Portal down\nMessage-ID: <f@example.org>\n\nThe portal is down.\n");
        let mailbox = config.mailbox("isda-support").expect("mailbox").clone();
        let mut decision = Classifier::load(&config)
            .expect("rules")
            .classify(&first, &mailbox, 0, &config);
        decision.queue = "ProductionDefect".into();
        let state = state();
        let ev = TicketEvent {
            created: false,
            number: 1042,
            mailbox: "isda-support",
            decision: &decision,
            parsed: &parsed,
            recent_acks: 0,
            recent_notified_sender: 0,
            recent_notified_alert: 0,
            now: 0,
            raw: raw.as_bytes(),
            ticket: Some(&state),
        };
        n.compose_steering(&ev, Some(&first), s)
    }

    fn mails(out: &[Outgoing]) -> Vec<&OutboundMail> {
        out.iter()
            .filter_map(|o| match o {
                Outgoing::Mail(m) => Some(m),
                Outgoing::Suppressed { .. } => None,
            })
            .collect()
    }

    const REPLY: &str = "From: Jane Lee <jlee@example.edu>\nSubject: Re: Portal down\nMessage-ID: <r@example.edu>\n\n/queue ProductionDefect\nOn it.\n";

    #[test]
    fn a_transfer_tells_the_list_and_the_new_queue_never_the_requester() {
        let out = compose(
            REPLY,
            &Steering {
                transfer: Some(("Customer-Support", "ProductionDefect")),
                ..Steering::default()
            },
        );
        let m = mails(&out);
        let notices: Vec<&&OutboundMail> =
            m.iter().filter(|m| m.kind == "transfer_notice").collect();
        // Internal addresses together, the partner alone, Ann never.
        assert_eq!(notices.len(), 2, "{out:#?}");
        assert_eq!(
            notices[0].rcpt,
            vec!["isda-pipeline@example.edu", "mgarcia@example.edu"]
        );
        assert_eq!(notices[1].rcpt, vec!["bob@partner.example"]);
        assert!(
            m.iter()
                .all(|m| !m.rcpt.contains(&"ann@example.org".to_string()))
        );
        let q = m
            .iter()
            .find(|m| m.kind == "queue_notification")
            .expect("queue notification");
        assert_eq!(q.rcpt, vec!["amit-auto-defect@example.edu"]);
        let text = String::from_utf8_lossy(&q.raw);
        assert!(text.contains("The portal is down."), "{text}");
        assert!(text.contains("Transferred") || q.subject.contains("ProductionDefect"));
    }

    #[test]
    fn refusals_go_to_the_team_member_alone_and_stay_bounded() {
        let refused: Vec<Refused> = (0..1000)
            .map(|i| Refused {
                line: format!("/queue {}", "Q".repeat(5000)),
                reason: format!("there is no queue number {i}\r\nBcc: evil@example.org"),
            })
            .collect();
        let out = compose(
            REPLY,
            &Steering {
                refused: &refused,
                answer_to: Some("jlee@example.edu"),
                ..Steering::default()
            },
        );
        let m = mails(&out);
        assert_eq!(m.len(), 1, "{out:#?}");
        assert_eq!(m[0].kind, "command_refused");
        assert_eq!(m[0].rcpt, vec!["jlee@example.edu"]);
        assert!(m[0].raw.len() < 40_000, "{}", m[0].raw.len());
        let text = String::from_utf8_lossy(&m[0].raw);
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("980 more"), "{text}");
        // Nobody to answer (a sender outside the team): no mail.
        let out = compose(
            REPLY,
            &Steering {
                refused: &refused,
                answer_to: None,
                ..Steering::default()
            },
        );
        assert!(mails(&out).is_empty());
        // At the hourly cap: recorded as suppressed, not mailed.
        let out = compose(
            REPLY,
            &Steering {
                refused: &refused,
                answer_to: Some("jlee@example.edu"),
                recent_refusals: 5,
                ..Steering::default()
            },
        );
        assert!(mails(&out).is_empty(), "{out:#?}");
        assert!(
            out.iter()
                .any(|o| matches!(o, Outgoing::Suppressed { kind, reason }
                if kind == "command_refused" && reason.contains("limit 5"))),
            "{out:#?}"
        );
    }

    #[test]
    fn a_note_goes_to_the_team_and_the_owner_not_the_author_nor_the_customer() {
        let out = compose(
            REPLY,
            &Steering {
                note: Some("Customer is on the old release."),
                note_author: Some("Jane Lee"),
                sender: Some("jlee@example.edu"),
                ..Steering::default()
            },
        );
        let m = mails(&out);
        assert_eq!(m.len(), 1, "{out:#?}");
        assert_eq!(m[0].kind, "comment");
        assert!(m[0].rcpt.contains(&"mgarcia@example.edu".to_string()));
        assert!(m[0].rcpt.contains(&"tkim@example.edu".to_string()));
        assert!(!m[0].rcpt.contains(&"jlee@example.edu".to_string()));
        assert!(!m[0].rcpt.contains(&"ann@example.org".to_string()));
        assert!(String::from_utf8_lossy(&m[0].raw).contains("old release"));
    }
}
