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
                Ok(r) => self.build(kind, ev, &desk_address, to, r),
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
            out.push(if policy::no_reply_reason(ev.parsed, &self.own).is_some() {
                Outgoing::Suppressed {
                    kind: "command_refused".to_string(),
                    reason: "the sender must not get an automatic reply".to_string(),
                }
            } else {
                render("command_refused", ev, &to, extra)
            });
        }

        // 4. An internal note: the team and the owner, never the author.
        if let Some(note) = s.note {
            let author = s.note_author.unwrap_or("");
            let mut to: Vec<String> = Vec::new();
            let team = self.config.desk_team(&d.desk).iter();
            let owner = state.and_then(|t| t.owner.as_ref());
            for a in team.chain(owner) {
                let a = a.to_ascii_lowercase();
                if a.contains('@') && a != author && !to.contains(&a) {
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

fn is_robot(address: &str) -> bool {
    let probe = crate::parse::parse(format!("From: {address}\n\n").as_bytes());
    policy::no_reply_reason(&probe, &[]).is_some()
}
