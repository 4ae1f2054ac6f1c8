//! Steering a ticket from the command line (`triaged tickets reply`,
//! `comment`, `set`, `recipients`), for admins and scripts, through exactly
//! the code a team member's mail goes through: a reply is written as a mail
//! from the given address and recorded, threaded, relayed and steered as
//! one ([`Pipeline::reply`]); commands are parsed by `commands::parse`,
//! applied by [`steer::apply`] with the same events, and their mail
//! (transfer notice, queue notification, the note to the team) composed by
//! the same `steering_mail` ([`Pipeline::steer`]).
//!
//! Whoever runs these has the store in hand, so no `Authentication-Results`
//! is asked for: the origin vouches ([`Origin::vouched`]). A reply's sender
//! must still be on the desk's team for its command lines to count.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MessageBuilder};

use super::record::{self, Steerer};
use super::steer::{self, ByMail};
use super::{Origin, Outcome, Pipeline};
use crate::commands::CommandBlock;
use crate::parse;
use crate::store::{StoreError, TicketState};
use crate::thread::format_tag;

/// The evidence recorded for steering from the command line.
pub const VOUCHED: &str = "given on the command line by someone with the store in hand";

/// Why a command-line reply could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ByHandError {
    #[error("there is no ticket {0}")]
    NoTicket(i64),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Origin {
    /// The evidence a message's origin gives for its sender, when the origin
    /// itself is trusted (the command line); `None` for mail.
    pub fn vouched(&self) -> Option<&'static str> {
        match self {
            Origin::CommandLine { .. } => Some(VOUCHED),
            _ => None,
        }
    }
}

impl Pipeline {
    /// Applies `block` (parsed by `commands::parse`) to ticket `number` as
    /// `actor`, with the same events and mail as the same lines in a team
    /// member's reply; `author` names the author of a note to the team.
    /// `None`: no such ticket.
    pub async fn steer(
        &self,
        number: i64,
        block: CommandBlock,
        actor: &str,
        author: Option<String>,
    ) -> Result<Option<ByMail>, StoreError> {
        match self.steer_once(number, block, actor, author).await {
            Ok((done, queued)) => {
                if let Some(wake) = &self.outbox_wake
                    && queued > 0
                {
                    wake.notify_one();
                }
                Ok(done)
            }
            Err(e) => Err(self.store.failed(e).await),
        }
    }

    async fn steer_once(
        &self,
        number: i64,
        block: CommandBlock,
        actor: &str,
        author: Option<String>,
    ) -> Result<(Option<ByMail>, usize), StoreError> {
        let mut tx = self.store.begin().await?;
        let Some(state) = tx.ticket_state(number).await? else {
            return Ok((None, 0));
        };
        let steered = steer::apply(&mut tx, &self.config, number, &block.commands, actor).await?;
        if block.comment {
            steer::note(&mut tx, number, actor, &block.text, None, Some(VOUCHED)).await?;
        }
        let done = ByMail {
            block,
            steered,
            unauthorized: None,
            // The command line prints what was refused; nobody is mailed.
            answer: false,
            sender: actor.to_ascii_lowercase(),
        };
        let mut queued = 0;
        if let Some(notifier) = self.notifier() {
            // What the mail shows of "the message": the ticket's first.
            let raw = tx.first_message_raw(number).await?.unwrap_or_default();
            let parsed = parse::parse(&raw);
            let by = Steerer {
                mailbox: &state.mailbox,
                parsed: &parsed,
                raw: &raw,
                author,
            };
            queued = record::steering_mail(&mut tx, &notifier, number, &by, &done).await?;
        }
        tx.commit().await?;
        Ok((Some(done), queued))
    }

    /// Writes `text` as a reply on ticket `number` from `from` (`Name
    /// <address>` or an address) and records it as if it had come in by
    /// mail to the ticket's mailbox, threaded under the ticket's newest mail
    /// (`user` is who ran the command, for the message's origin). A team
    /// member's reply is correspondence (relayed to the customer, the
    /// initial response) and may begin with command lines; anyone else's is
    /// relayed to the team.
    pub async fn reply(
        &self,
        number: i64,
        from: &str,
        text: &str,
        user: &str,
    ) -> Result<Outcome, ByHandError> {
        let state = {
            let mut tx = self.store.begin().await?;
            tx.ticket_state(number).await?
        };
        let state = state.ok_or(ByHandError::NoTicket(number))?;
        let from: Mailbox = from
            .trim()
            .parse()
            .map_err(|e| ByHandError::Invalid(format!("--from {from:?}: {e}")))?;
        let to = self
            .config
            .mailbox(&state.mailbox)
            .map(|m| m.address.clone())
            .or_else(|| self.config.desk(&state.desk)?.addresses.first().cloned())
            .ok_or_else(|| {
                ByHandError::Invalid(format!(
                    "ticket {number}'s mailbox {:?} is no longer configured",
                    state.mailbox
                ))
            })?;
        let raw = reply_message(&state, &from, &to, text)?;
        let origin = Origin::CommandLine {
            user: user.to_string(),
        };
        let prepared = self.prepare(&state.mailbox, origin, raw);
        let outcomes = self.commit(std::slice::from_ref(&prepared), None).await?;
        outcomes
            .into_iter()
            .next()
            .ok_or_else(|| ByHandError::Invalid("nothing was recorded".to_string()))
    }
}

/// The mail `from` writes to the ticket's address `to`: `Re:` its subject
/// with the case tag, In-Reply-To its newest mail and References its
/// thread, so that it threads as a reply from a mail client would.
fn reply_message(
    state: &TicketState,
    from: &Mailbox,
    to: &str,
    text: &str,
) -> Result<Vec<u8>, ByHandError> {
    let to: Mailbox = to
        .parse()
        .map_err(|e| ByHandError::Invalid(format!("desk address {to:?}: {e}")))?;
    let tag = format_tag(&state.desk_tag, state.number);
    let subject = if state.subject.contains(&tag) {
        format!("Re: {}", state.subject)
    } else {
        format!("Re: {tag} {}", state.subject)
    };
    let subject = crate::text::truncate(&subject.replace(['\r', '\n'], " "), 900);
    let domain = from.email.domain().to_string();
    let id = crate::notify::new_message_id(state.number, "cli", &domain);
    let mut builder: MessageBuilder = lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{id}>")))
        .header(ContentType::TEXT_PLAIN);
    if let Some(last) = state.thread.last() {
        builder = builder.in_reply_to(format!("<{}>", last.message_id));
        let refs: Vec<String> = state
            .thread
            .iter()
            .map(|m| format!("<{}>", m.message_id))
            .collect();
        builder = builder.references(refs.join(" "));
    }
    let message = builder
        .body(text.to_string())
        .map_err(|e| ByHandError::Invalid(format!("the reply cannot be written as mail: {e}")))?;
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Status, ThreadMail};

    fn state() -> TicketState {
        TicketState {
            number: 1042,
            desk: "isda".into(),
            desk_tag: "ISDA".into(),
            queue: "Customer-Support".into(),
            status: Status::New,
            requester: "ann@example.org".into(),
            requester_name: None,
            subject: "Portal down".into(),
            mailbox: "isda-support".into(),
            owner: None,
            first_response_at: None,
            recipients: Vec::new(),
            alert: false,
            thread: vec![
                ThreadMail {
                    message_id: "first@example.org".into(),
                    from: Some("ann@example.org".into()),
                    kind: None,
                },
                ThreadMail {
                    message_id: "ack@example.edu".into(),
                    from: None,
                    kind: Some("acknowledgement".into()),
                },
            ],
        }
    }

    #[test]
    fn a_reply_threads_under_the_newest_mail_with_the_tag() {
        let from: Mailbox = "Jane Lee <jlee@example.edu>".parse().unwrap();
        let raw = reply_message(
            &state(),
            &from,
            "isda-support@example.edu",
            "Restarted.\n/x",
        )
        .unwrap();
        let m = parse::parse(&raw);
        assert_eq!(m.subject.as_deref(), Some("Re: [ISDA #1042] Portal down"));
        assert_eq!(m.in_reply_to, vec!["ack@example.edu".to_string()]);
        assert_eq!(
            m.references,
            vec![
                "first@example.org".to_string(),
                "ack@example.edu".to_string()
            ]
        );
        assert_eq!(
            m.from.as_ref().map(|a| a.address.as_str()),
            Some("jlee@example.edu")
        );
        assert!(m.body.contains("Restarted."), "{}", m.body);
        assert!(m.message_id.is_some());
    }

    #[test]
    fn hostile_text_and_subjects_stay_one_mail() {
        let mut s = state();
        s.subject = format!("x\r\nBcc: evil@example.com {}", "y".repeat(5000));
        let from: Mailbox = "jlee@example.edu".parse().unwrap();
        let text = format!("{}\r\n.\r\nRCPT TO:<evil@example.com>\n", "z".repeat(5000));
        let raw = reply_message(&s, &from, "isda-support@example.edu", &text).unwrap();
        let m = parse::parse(&raw);
        assert!(m.header("Bcc").is_none());
        assert_eq!(m.to.len(), 1);
        assert!(
            raw.split(|b| *b == b'\n').all(|l| l.len() <= 1000),
            "a line over 998 octets"
        );
        assert!(m.body.contains(&"z".repeat(5000)));
    }
}
