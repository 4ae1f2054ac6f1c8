//! `triaged outbox`: the mail queue, and retrying a failed mail.

use std::io::Write;
use std::process::ExitCode;

use super::OutboxCommand;
use super::text::{format_ms, json_visible, truncate, vis};
use crate::store::Store;

/// The states of a mail in the outbox.
const OUTBOX_STATUSES: [&str; 3] = ["pending", "sent", "failed"];

pub(super) async fn outbox(store: &Store, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        OutboxCommand::List {
            status,
            limit,
            json,
        } => {
            if let Some(s) = status.as_deref()
                && !OUTBOX_STATUSES.contains(&s)
            {
                eprintln!(
                    "triaged: unknown status {:?}; valid: {}",
                    super::visible(s, false),
                    OUTBOX_STATUSES.join(", ")
                );
                return Ok(ExitCode::from(2));
            }
            let list = store.list_outbox(status.as_deref(), limit).await?;
            if json {
                writeln!(out, "{}", json_visible(&list)?)?;
            } else {
                for m in &list {
                    let when = m
                        .sent_at
                        .map(format_ms)
                        .unwrap_or_else(|| format!("next {}", format_ms(m.next_attempt_at)));
                    writeln!(
                        out,
                        "{:>6} {:<8} {:<20} #{:<6} {:<30} {}  {}",
                        m.id,
                        vis(&m.status),
                        vis(&m.kind),
                        m.ticket_number.map(|n| n.to_string()).unwrap_or_default(),
                        vis(&truncate(&m.rcpt.join(","), 30)),
                        when,
                        vis(m.last_error.as_deref().unwrap_or(""))
                    )?;
                }
                writeln!(out, "{} mails", list.len())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Retry { id } => {
            if store.outbox_requeue(id).await? {
                writeln!(out, "mail {id} queued for an attempt now")?;
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("triaged: no unsent mail {id}");
                Ok(ExitCode::from(1))
            }
        }
    }
}
