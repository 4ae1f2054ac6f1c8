//! `triaged tickets list` and `tickets show`.

use std::io::Write;
use std::process::ExitCode;

use super::TicketsCommand;
use super::text::{format_ms, json_visible, parse_number, truncate, vis, visible};
use crate::store::{MessageRow, Store, TicketDetail, TicketFilter};

type Out<'a> = std::io::StdoutLock<'a>;

pub(super) async fn tickets(store: &Store, command: TicketsCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        TicketsCommand::List {
            queue,
            status,
            limit,
            json,
        } => {
            let filter = TicketFilter {
                queue,
                status,
                limit,
            };
            list(&mut out, store, &filter, json).await
        }
        TicketsCommand::Show { number, json } => show(&mut out, store, &number, json).await,
    }
}

/// `tickets list`: one line per ticket, newest first, and the count.
async fn list(
    out: &mut Out<'_>,
    store: &Store,
    filter: &TicketFilter,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let list = store.list_tickets(filter).await?;
    if json {
        writeln!(out, "{}", json_visible(&list)?)?;
    } else {
        for t in &list {
            writeln!(
                out,
                "{:<16} {:<9} {:<18} {:<9} {:<32} {}",
                vis(&t.tag),
                t.status.as_str(),
                vis(&t.queue),
                vis(&t.kind),
                vis(&truncate(&t.requester, 32)),
                vis(&truncate(&t.subject, 60))
            )?;
        }
        writeln!(out, "{} tickets", list.len())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `tickets show`: the fields, each message, the mail sent and the history.
async fn show(
    out: &mut Out<'_>,
    store: &Store,
    number: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(n) = parse_number(number) else {
        anyhow::bail!("not a ticket number: {number:?}");
    };
    let Some(t) = store.ticket(n).await? else {
        eprintln!("triaged: no ticket #{n}");
        return Ok(ExitCode::from(1));
    };
    if json {
        writeln!(out, "{}", json_visible(&t)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    show_fields(out, &t)?;
    for (i, m) in t.messages.iter().enumerate() {
        writeln!(
            out,
            "\n--- message {} of {} (id {}) ---",
            i + 1,
            t.messages.len(),
            m.id
        )?;
        show_message(out, m)?;
    }
    show_mail(out, &t)?;
    show_history(out, &t)?;
    Ok(ExitCode::SUCCESS)
}

/// The ticket's own fields, one per line.
fn show_fields(out: &mut Out<'_>, t: &TicketDetail) -> std::io::Result<()> {
    let k = &t.ticket;
    writeln!(out, "{} {}", vis(&k.tag), vis(&k.subject))?;
    writeln!(out, "  status:    {}", k.status)?;
    writeln!(out, "  desk:      {}", vis(&k.desk))?;
    writeln!(out, "  queue:     {}", vis(&k.queue))?;
    writeln!(out, "  kind:      {}", vis(&k.kind))?;
    writeln!(
        out,
        "  priority:  {} (urgency {}, impact {})",
        vis(k.priority.as_deref().unwrap_or("-")),
        vis(k.urgency.as_deref().unwrap_or("-")),
        vis(k.impact.as_deref().unwrap_or("-"))
    )?;
    if let Some(due) = k.due_at {
        writeln!(out, "  due:       {}", format_ms(due))?;
    }
    if !k.tags.is_empty() {
        writeln!(out, "  tags:      {}", vis(&k.tags.join(", ")))?;
    }
    if let Some(key) = &k.alert_key {
        writeln!(out, "  alert key: {}", vis(key))?;
    }
    match &k.requester_name {
        Some(n) => writeln!(out, "  requester: {} <{}>", vis(n), vis(&k.requester))?,
        None => writeln!(out, "  requester: {}", vis(&k.requester))?,
    }
    writeln!(out, "  mailbox:   {}", vis(&k.mailbox))?;
    if !t.recipients.is_empty() {
        writeln!(out, "  recipients: {}", vis(&t.recipients.join(", ")))?;
    }
    for l in &t.links {
        let arrow = if l.direction == "from" {
            "opened because of"
        } else {
            "led to"
        };
        writeln!(
            out,
            "  linked:    {arrow} ticket #{} ({})",
            l.ticket,
            vis(&l.reason)
        )?;
    }
    writeln!(out, "  created:   {}", format_ms(k.created_at))?;
    writeln!(out, "  updated:   {}", format_ms(k.updated_at))?;
    Ok(())
}

/// One message of the ticket: its headers, attachments, problems and body.
fn show_message(out: &mut Out<'_>, m: &MessageRow) -> std::io::Result<()> {
    writeln!(
        out,
        "From:       {}",
        vis(m.from.as_deref().unwrap_or("(none)"))
    )?;
    let list = |v: &[crate::parse::MailAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !m.to.is_empty() {
        writeln!(out, "To:         {}", vis(&list(&m.to)))?;
    }
    if !m.cc.is_empty() {
        writeln!(out, "Cc:         {}", vis(&list(&m.cc)))?;
    }
    writeln!(
        out,
        "Subject:    {}",
        vis(m.subject.as_deref().unwrap_or("(none)"))
    )?;
    writeln!(
        out,
        "Message-ID: {}",
        vis(m.message_id.as_deref().unwrap_or("(none)"))
    )?;
    if let Some(d) = m.date {
        writeln!(out, "Date:       {}", format_ms(d * 1000))?;
    }
    writeln!(
        out,
        "Received:   {} via {} ({})",
        format_ms(m.received_at),
        vis(&m.mailbox),
        vis(&m.origin)
    )?;
    for a in &m.attachments {
        writeln!(
            out,
            "Attachment: {} ({}, {} bytes)",
            vis(a.name.as_deref().unwrap_or("(unnamed)")),
            vis(&a.content_type),
            a.size
        )?;
    }
    for p in &m.problems {
        writeln!(out, "Problem:    {}", vis(&p.to_string()))?;
    }
    writeln!(out, "\n{}", visible(&m.body, true))?;
    Ok(())
}

/// The mail sent about the ticket, if any.
fn show_mail(out: &mut Out<'_>, t: &TicketDetail) -> std::io::Result<()> {
    if t.mail.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n--- mail ---")?;
    for m in &t.mail {
        writeln!(
            out,
            "{}  {:<7} {:<20} to {}  {}{}",
            format_ms(m.created_at),
            vis(&m.status),
            vis(&m.kind),
            vis(&m.rcpt.join(", ")),
            vis(&m.subject),
            m.last_error
                .as_deref()
                .map(|e| format!("  ({})", vis(e)))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// The ticket's events, oldest first.
fn show_history(out: &mut Out<'_>, t: &TicketDetail) -> std::io::Result<()> {
    writeln!(out, "\n--- history ---")?;
    for e in &t.events {
        writeln!(
            out,
            "{}  {:<10} {}  {}",
            format_ms(e.at),
            vis(&e.kind),
            vis(&e.actor),
            vis(&e.detail.to_string())
        )?;
        if let Some(why) = threading_reason(&e.kind, &e.detail) {
            writeln!(out, "    why: {}", vis(why))?;
        }
    }
    Ok(())
}

/// The reason of a threading decision recorded in an event, if it is one:
/// how a message joined or opened its ticket, a link, a reopening, own mail.
fn threading_reason<'a>(kind: &str, detail: &'a serde_json::Value) -> Option<&'a str> {
    let field = match kind {
        "created" => "thread",
        "linked" => "detail",
        "reply" | "reopened" | "own mail seen" => "reason",
        _ => return None,
    };
    detail.get(field).and_then(|v| v.as_str())
}
