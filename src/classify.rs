//! Classify: which desk, queue and kind a new message belongs to, and why.
//!
//! Pure. Until routing rules exist, a message goes to its mailbox's default
//! queue; the explanation says so, so every stored decision can be read back.

use serde::{Deserialize, Serialize};

use crate::config::{Config, MailboxConfig};
use crate::parse::ParsedMessage;

/// The routing decision for one message, with the reasons for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub desk: String,
    pub desk_tag: String,
    pub queue: String,
    pub kind: String,
    pub urgency: Option<String>,
    pub impact: Option<String>,
    pub priority: Option<String>,
    /// When the initial response is due, ms since the epoch (business hours counted).
    pub due_ms: Option<i64>,
    /// The ticket's own recipient list: addresses told of urgent events.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// No acknowledgement to the sender (a rule said so).
    #[serde(default)]
    pub suppress_ack: bool,
    /// One line per reason, in the order they applied.
    pub explanation: Vec<String>,
}

/// The kind given when nothing says otherwise: routine work.
pub const DEFAULT_KIND: &str = "service";

/// Decides the queue and kind of a message that arrived in `mailbox`.
pub fn classify(_msg: &ParsedMessage, mailbox: &MailboxConfig, config: &Config) -> Decision {
    let desk_name = mailbox.desk.get_ref();
    let desk_tag = config
        .desk(desk_name)
        .map(|d| d.tag.clone())
        .unwrap_or_else(|| desk_name.to_ascii_uppercase());
    Decision {
        desk: desk_name.clone(),
        desk_tag,
        queue: mailbox.default_queue.get_ref().clone(),
        kind: DEFAULT_KIND.to_string(),
        urgency: None,
        impact: None,
        priority: None,
        due_ms: None,
        recipients: Vec::new(),
        suppress_ack: false,
        explanation: vec![
            format!(
                "queue {}: default of mailbox {}",
                mailbox.default_queue.get_ref(),
                mailbox.name.get_ref()
            ),
            format!("kind {DEFAULT_KIND}: default"),
        ],
    }
}
