//! `triaged quarantine`: messages set aside instead of ticketed.

use std::io::Write;
use std::process::ExitCode;

use super::QuarantineCommand;
use super::text::{format_ms, json_visible, truncate, vis, visible};
use crate::store::Store;

pub(super) async fn quarantine(
    store: &Store,
    command: QuarantineCommand,
) -> anyhow::Result<ExitCode> {
    let list = store.list_quarantine().await?;
    let mut out = std::io::stdout().lock();
    match command {
        QuarantineCommand::List { json } => {
            if json {
                writeln!(out, "{}", json_visible(&list)?)?;
            } else {
                for q in &list {
                    writeln!(
                        out,
                        "{:>5}  {}  {:<14} {}  {}",
                        q.id,
                        format_ms(q.created_at),
                        vis(&q.mailbox),
                        vis(&truncate(
                            q.subject.as_deref().unwrap_or("(no subject)"),
                            40
                        )),
                        vis(&q.reason)
                    )?;
                }
                writeln!(out, "{} quarantined", list.len())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show { id } => {
            let Some(q) = list.iter().find(|q| q.id == id) else {
                eprintln!("triaged: no quarantine entry {id}");
                return Ok(ExitCode::from(1));
            };
            writeln!(out, "id:         {}", q.id)?;
            writeln!(out, "mailbox:    {}", vis(&q.mailbox))?;
            writeln!(out, "origin:     {}", vis(&q.origin))?;
            writeln!(out, "reason:     {}", vis(&q.reason))?;
            writeln!(out, "size:       {} bytes", q.size)?;
            writeln!(
                out,
                "from:       {}",
                vis(q.from.as_deref().unwrap_or("(none)"))
            )?;
            writeln!(
                out,
                "subject:    {}",
                vis(q.subject.as_deref().unwrap_or("(none)"))
            )?;
            writeln!(
                out,
                "message-id: {}",
                vis(q.message_id.as_deref().unwrap_or("(none)"))
            )?;
            writeln!(out, "created:    {}\n", format_ms(q.created_at))?;
            writeln!(
                out,
                "{}",
                visible(&String::from_utf8_lossy(&q.headers), true)
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
