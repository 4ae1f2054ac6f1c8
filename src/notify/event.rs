//! What notify is asked about (a [`TicketEvent`]) and what it answers
//! ([`Outgoing`]: a composed [`OutboundMail`], or why none).

use crate::classify::Decision;
use crate::parse::ParsedMessage;
use crate::store::{NewMail, TicketState};

/// A ticket event, as the composer of outgoing mail sees it. The pipeline
/// builds it inside the event's transaction, with the counts for the caps
/// read in that transaction.
#[derive(Debug)]
pub struct TicketEvent<'a> {
    /// A new ticket (else a reply on an existing one).
    pub created: bool,
    pub number: i64,
    pub mailbox: &'a str,
    pub decision: &'a Decision,
    pub parsed: &'a ParsedMessage,
    /// Acknowledgements queued to this message's sender within [`super::CAP_WINDOW_MS`].
    pub recent_acks: i64,
    /// Tickets from this message's sender that had notifications (anything
    /// but an acknowledgement) queued within the window.
    pub recent_notified_sender: i64,
    /// Tickets with this message's alert key that had notifications queued
    /// within the window (0 without an alert key).
    pub recent_notified_alert: i64,
    /// Milliseconds since the epoch.
    pub now: i64,
    /// The message as received: a reply's attachments are relayed from it,
    /// and nothing else reads it, so the pipeline gives it only for a reply
    /// with attachments (empty otherwise: `pipeline::record`).
    pub raw: &'a [u8],
    /// A reply: the ticket's conversation state, read in the transaction
    /// before this message was added (`None` for a new ticket).
    pub ticket: Option<&'a TicketState>,
}

/// One mail to queue, fully formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMail {
    /// The template kind: `acknowledgement`, `queue_notification`, ...
    pub kind: String,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub rcpt: Vec<String>,
    pub subject: String,
    /// Without angle brackets.
    pub message_id: String,
    /// The whole RFC 5322 message.
    pub raw: Vec<u8>,
}

impl OutboundMail {
    /// The outbox row this mail is queued as (`Tx::queue_mail`).
    pub fn to_new_mail(&self) -> NewMail<'_> {
        NewMail {
            kind: &self.kind,
            from: &self.from,
            rcpt: &self.rcpt,
            subject: &self.subject,
            message_id: &self.message_id,
            raw: &self.raw,
        }
    }
}

/// What the composer decided for one kind of mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Mail(OutboundMail),
    /// Not sent, and why (recorded in the ticket's history).
    Suppressed {
        kind: String,
        reason: String,
    },
}
