//! `triaged tickets list` and `tickets show`.

use std::io::Write;
use std::process::ExitCode;

use super::TicketsCommand;
use super::text::{
    format_duration, format_ms, format_time, json_visible, parse_number, truncate, vis, visible,
};
use crate::calendar::Calendar;
use crate::config::Config;
use crate::store::{MessageRow, Status, Store, TicketDetail, TicketFilter, TimelineEntry};

type Out<'a> = std::io::StdoutLock<'a>;

pub(super) async fn tickets(
    store: &Store,
    config: &Config,
    command: TicketsCommand,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        TicketsCommand::List {
            queue,
            status,
            limit,
            json,
        } => {
            if let Some(s) = status.as_deref()
                && !Status::ALL.iter().any(|k| k.as_str() == s)
            {
                let valid: Vec<&str> = Status::ALL.iter().map(|k| k.as_str()).collect();
                eprintln!(
                    "triaged: unknown status {:?}; valid: {}",
                    visible(s, false),
                    valid.join(", ")
                );
                return Ok(ExitCode::from(2));
            }
            if let Some(q) = queue.as_deref()
                && !config.queues.iter().any(|k| k.name.get_ref() == q)
            {
                let valid: Vec<&str> = config
                    .queues
                    .iter()
                    .map(|k| k.name.get_ref().as_str())
                    .collect();
                eprintln!(
                    "triaged: unknown queue {:?}; valid: {}",
                    visible(q, false),
                    valid.join(", ")
                );
                return Ok(ExitCode::from(2));
            }
            let filter = TicketFilter {
                queue,
                status,
                limit,
            };
            list(&mut out, store, &filter, json).await
        }
        TicketsCommand::Show { number, json } => show(&mut out, store, config, &number, json).await,
        // Steering goes through the pipeline (`super::steer`).
        TicketsCommand::Reply { .. }
        | TicketsCommand::Comment { .. }
        | TicketsCommand::Set { .. }
        | TicketsCommand::Recipients { .. } => {
            anyhow::bail!("internal: steering commands are dispatched to cli::steer")
        }
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

/// `tickets show`: the fields, each message, then one timeline of the
/// history and the mail. `--json`: the detail's fields as before, plus
/// `ticket` and `timeline` (`[{at, actor, kind, details}]`).
async fn show(
    out: &mut Out<'_>,
    store: &Store,
    config: &Config,
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
    let timeline = t.timeline();
    if json {
        writeln!(
            out,
            "{}",
            json_visible(&ShowJson {
                detail: &t,
                ticket: &t.ticket,
                timeline: &timeline,
            })?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let business = config.calendars.get(&t.ticket.desk);
    show_fields(out, &t, business)?;
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
    show_timeline(out, &timeline)?;
    Ok(ExitCode::SUCCESS)
}

/// `tickets show --json`: the fields every earlier version printed (the
/// ticket's own at the top level, `messages`, `events`, `mail`, `links`,
/// `recipients`), and the stable `{ticket, timeline}`.
#[derive(serde::Serialize)]
struct ShowJson<'a> {
    #[serde(flatten)]
    detail: &'a TicketDetail,
    ticket: &'a crate::store::TicketSummary,
    timeline: &'a [TimelineEntry],
}

/// How much of one value from mail a line shows.
const VALUE_CHARS: usize = 200;

/// How much of one header of a message `tickets show` prints (the body is
/// printed whole; the raw message is kept).
const HEADER_CHARS: usize = 998;

/// One value for a line: bounded, controls escaped.
fn bounded(s: &str) -> String {
    vis(&truncate(s, VALUE_CHARS)).into_owned()
}

/// A message's header for its line: bounded, controls escaped.
fn header(s: &str) -> String {
    vis(&truncate(s, HEADER_CHARS)).into_owned()
}

/// The ticket's own fields, one per line.
fn show_fields(
    out: &mut Out<'_>,
    t: &TicketDetail,
    business: Option<&Calendar>,
) -> std::io::Result<()> {
    let k = &t.ticket;
    writeln!(out, "{} {}", vis(&k.tag), bounded(&k.subject))?;
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
    writeln!(
        out,
        "  owner:     {}",
        k.owner
            .as_deref()
            .map(bounded)
            .unwrap_or_else(|| "(nobody)".to_string())
    )?;
    if let Some(due) = k.due_at {
        writeln!(out, "  due:       {}", format_ms(due))?;
    }
    match k.first_response_at {
        Some(at) => writeln!(
            out,
            "  responded: {} ({} after arrival{}{})",
            format_ms(at),
            format_duration(at - k.created_at),
            business_delay(business, k.created_at, at)
                .map(|d| format!(", {} of business hours", format_duration(d)))
                .unwrap_or_default(),
            match k.due_at {
                Some(due) if at <= due => ", in time",
                Some(_) => ", late",
                None => "",
            }
        )?,
        None => writeln!(out, "  responded: not yet")?,
    }
    if !k.tags.is_empty() {
        writeln!(out, "  tags:      {}", bounded(&k.tags.join(", ")))?;
    }
    if let Some(key) = &k.alert_key {
        writeln!(out, "  alert key: {}", bounded(key))?;
    }
    match &k.requester_name {
        Some(n) => writeln!(
            out,
            "  requester: {} <{}>",
            bounded(n),
            bounded(&k.requester)
        )?,
        None => writeln!(out, "  requester: {}", bounded(&k.requester))?,
    }
    writeln!(out, "  mailbox:   {}", vis(&k.mailbox))?;
    if !t.recipients.is_empty() {
        writeln!(out, "  recipients: {}", bounded(&t.recipients.join(", ")))?;
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
            bounded(&l.reason)
        )?;
    }
    writeln!(out, "  created:   {}", format_ms(k.created_at))?;
    writeln!(out, "  updated:   {}", format_ms(k.updated_at))?;
    Ok(())
}

/// The business time between two instants (ms) by the desk's calendar,
/// when it has opening hours.
fn business_delay(calendar: Option<&Calendar>, from: i64, to: i64) -> Option<i64> {
    let calendar = calendar.filter(|c| c.has_hours())?;
    let from = jiff::Timestamp::from_millisecond(from).ok()?;
    let to = jiff::Timestamp::from_millisecond(to).ok()?;
    let d = calendar.elapsed(from, to).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// One message of the ticket: its headers, attachments, problems and body.
fn show_message(out: &mut Out<'_>, m: &MessageRow) -> std::io::Result<()> {
    writeln!(
        out,
        "From:       {}",
        header(m.from.as_deref().unwrap_or("(none)"))
    )?;
    let list = |v: &[crate::parse::MailAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !m.to.is_empty() {
        writeln!(out, "To:         {}", header(&list(&m.to)))?;
    }
    if !m.cc.is_empty() {
        writeln!(out, "Cc:         {}", header(&list(&m.cc)))?;
    }
    writeln!(
        out,
        "Subject:    {}",
        header(m.subject.as_deref().unwrap_or("(none)"))
    )?;
    writeln!(
        out,
        "Message-ID: {}",
        header(m.message_id.as_deref().unwrap_or("(none)"))
    )?;
    if let Some(d) = m.date {
        writeln!(out, "Date:       {}", format_ms(d * 1000))?;
    }
    writeln!(
        out,
        "Received:   {} via {} ({})",
        format_ms(m.received_at),
        vis(&m.mailbox),
        header(&m.origin)
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

/// The timeline: one line per entry (time, actor, what happened), and an
/// indented line of details where there are some.
fn show_timeline(out: &mut Out<'_>, timeline: &[TimelineEntry]) -> std::io::Result<()> {
    writeln!(out, "\n--- history (UTC) ---")?;
    for e in timeline {
        let (what, more) = describe(e);
        writeln!(
            out,
            "{}  {:<24}  {}",
            format_time(e.at),
            bounded(&e.actor),
            what
        )?;
        for line in more {
            writeln!(out, "    {line}")?;
        }
    }
    Ok(())
}

/// A string field of an event's details, bounded and escaped; `-` if absent.
fn field(d: &serde_json::Value, name: &str) -> String {
    match d.get(name) {
        Some(serde_json::Value::String(s)) => bounded(s),
        Some(serde_json::Value::Null) | None => "-".to_string(),
        Some(v) => bounded(&v.to_string()),
    }
}

/// A list field (`rcpt`) as `a, b`, bounded and escaped.
fn list_field(d: &serde_json::Value, name: &str) -> String {
    let items: Vec<&str> = d
        .get(name)
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "-".to_string()
    } else {
        bounded(&items.join(", "))
    }
}

/// Whether a details field holds a non-empty string.
fn has(d: &serde_json::Value, name: &str) -> bool {
    d.get(name)
        .and_then(|v| v.as_str())
        .is_some_and(|s| !s.is_empty())
}

/// The readable phrase of an entry, and its detail lines (already bounded
/// and escaped). Unknown kinds show their name and their details as
/// compact JSON.
fn describe(e: &TimelineEntry) -> (String, Vec<String>) {
    let d = &e.details;
    let mut more = Vec::new();
    let why = |more: &mut Vec<String>, name: &str| {
        if has(d, name) {
            more.push(format!("why: {}", field(d, name)));
        }
    };
    let what = match e.kind.as_str() {
        "created" => {
            why(&mut more, "thread");
            format!(
                "ticket created  (queue {}, kind {}, via {}, {})",
                field(d, "queue"),
                field(d, "kind"),
                field(d, "mailbox"),
                field(d, "origin")
            )
        }
        "reply" => {
            more.push(format!(
                "via {}, {}",
                field(d, "mailbox"),
                field(d, "origin")
            ));
            format!("message added  (reply, {})", field(d, "reason"))
        }
        "duplicate" => format!(
            "duplicate delivery, not recorded again  (via {}, {})",
            field(d, "mailbox"),
            field(d, "origin")
        ),
        "message-id collision" => {
            more.push(format!(
                "Message-ID <{}> was used earlier by {}",
                field(d, "message_id"),
                compact(d.get("earlier").unwrap_or(&serde_json::Value::Null))
            ));
            "message added with a reused Message-ID  (different content, kept apart)".to_string()
        }
        "linked" => {
            why(&mut more, "detail");
            format!(
                "linked with ticket #{}  ({})",
                field(d, "ticket"),
                field(d, "reason")
            )
        }
        "reopened" => {
            why(&mut more, "reason");
            "reopened".to_string()
        }
        "own mail seen" => {
            why(&mut more, "reason");
            format!(
                "our own mail came back, ignored  (via {})",
                field(d, "mailbox")
            )
        }
        "status" => {
            why(&mut more, "reason");
            format!("status {} -> {}", field(d, "from"), field(d, "to"))
        }
        "initial response" => format!("initial response  (message <{}>)", field(d, "message_id")),
        "owner" => match d.get("owner").and_then(|v| v.as_str()) {
            Some(o) => format!("owner set to {}", bounded(o)),
            None => "owner cleared".to_string(),
        },
        "mail queued" => {
            more.push(format!("subject: {}", field(d, "subject")));
            let status = field(d, "status");
            if status != "pending" {
                more.push(format!("now {status}"));
            }
            if has(d, "last_error") {
                more.push(format!("last error: {}", field(d, "last_error")));
            }
            format!(
                "mail queued: {} to {}",
                field(d, "kind"),
                list_field(d, "rcpt")
            )
        }
        "mail sent" => {
            if has(d, "response") {
                more.push(format!("server said: {}", field(d, "response")));
            }
            format!(
                "mail sent: {} to {}",
                field(d, "kind"),
                list_field(d, "rcpt")
            )
        }
        "mail failed" => {
            more.push(format!("error: {}", field(d, "error")));
            format!(
                "mail failed: {} to {}",
                field(d, "kind"),
                list_field(d, "rcpt")
            )
        }
        "mail suppressed" => {
            why(&mut more, "reason");
            format!("mail not sent: {}", field(d, "kind"))
        }
        "escalation" => {
            if let Some(due) = d.get("due_at").and_then(|v| v.as_i64()) {
                more.push(format!("{} target due {}", field(d, "clock"), utc(due)));
            }
            if has(d, "suppressed") {
                more.push(format!("not sent: {}", field(d, "suppressed")));
            }
            let level = field(d, "level");
            let what = match level.as_str() {
                "warning" => "SLA warning".to_string(),
                "escalation" => "SLA escalation".to_string(),
                "oncall" => "SLA on-call page (Critical, out of hours)".to_string(),
                other => format!("SLA escalation, {other}"),
            };
            format!(
                "{what}: {} overdue{} to {}",
                field(d, "clock"),
                if level == "warning" { " soon" } else { "" },
                list_field(d, "to")
            )
        }
        "escalation skipped" => {
            why(&mut more, "reason");
            format!("SLA {} {} skipped", field(d, "clock"), field(d, "level"))
        }
        "daily status" => format!(
            "daily status for {} to {}",
            field(d, "day"),
            list_field(d, "to")
        ),
        other => {
            if !d.is_null() && d.as_object().is_none_or(|o| !o.is_empty()) {
                more.push(compact(d));
            }
            bounded(other)
        }
    };
    (what, more)
}

/// A time in ms as `YYYY-MM-DD HH:MM UTC`.
fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Details as one line of compact JSON, bounded and escaped.
fn compact(v: &serde_json::Value) -> String {
    bounded(&v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, details: serde_json::Value) -> TimelineEntry {
        TimelineEntry {
            at: 0,
            actor: "triaged".to_string(),
            kind: kind.to_string(),
            details,
        }
    }

    #[test]
    fn known_kinds_read_as_phrases() {
        let (what, more) = describe(&entry(
            "status",
            serde_json::json!({"from": "new", "to": "open", "reason": "first correspondence"}),
        ));
        assert_eq!(what, "status new -> open");
        assert_eq!(more, ["why: first correspondence"]);
        let (what, _) = describe(&entry("owner", serde_json::json!({"owner": null})));
        assert_eq!(what, "owner cleared");
        let (what, more) = describe(&entry(
            "mail failed",
            serde_json::json!({"kind": "correspondence", "rcpt": ["a@x", "b@x"], "error": "550 no"}),
        ));
        assert_eq!(what, "mail failed: correspondence to a@x, b@x");
        assert_eq!(more, ["error: 550 no"]);
        let (what, more) = describe(&entry(
            "escalation",
            serde_json::json!({"level": "escalation", "clock": "response",
                               "to": ["isda-managers@example.edu"], "due_at": 1_795_000_000_000_i64}),
        ));
        assert_eq!(
            what,
            "SLA escalation: response overdue to isda-managers@example.edu"
        );
        assert_eq!(more, ["response target due 2026-11-18 11:06 UTC"]);
        let (what, _) = describe(&entry(
            "escalation",
            serde_json::json!({"level": "warning", "clock": "resolution", "to": ["a@x"], "due_at": 0}),
        ));
        assert_eq!(what, "SLA warning: resolution overdue soon to a@x");
        let (what, _) = describe(&entry(
            "daily status",
            serde_json::json!({"day": "2026-11-17", "to": ["a@x", "b@x"]}),
        ));
        assert_eq!(what, "daily status for 2026-11-17 to a@x, b@x");
    }

    #[test]
    fn unknown_kinds_and_hostile_details_are_escaped_and_bounded() {
        let hostile = format!("\x1b]0;owned\x07\u{9b}2J\u{202e}{}", "x".repeat(1 << 20));
        let (what, more) = describe(&entry(
            &format!("command refused\x1b[31m{hostile}"),
            serde_json::json!({"reason": hostile, "line": "/take"}),
        ));
        assert!(what.starts_with("command refused\\x1b[31m\\x1b]0;owned\\x07\\u{9b}2J\\u{202e}x"));
        assert_eq!(more.len(), 1);
        for line in std::iter::once(&what).chain(&more) {
            assert!(
                !line.chars().any(super::super::text::needs_escape),
                "{line:.80}"
            );
            assert!(line.chars().count() < 4 * VALUE_CHARS, "{}", line.len());
        }
        assert!(more[0].contains("/take"), "{}", more[0]);
        // A known kind's fields from mail, likewise.
        let (what, more) = describe(&entry(
            "linked",
            serde_json::json!({"ticket": 7, "reason": hostile, "detail": hostile}),
        ));
        for line in std::iter::once(&what).chain(&more) {
            assert!(!line.chars().any(super::super::text::needs_escape));
            assert!(line.chars().count() < 4 * VALUE_CHARS);
        }
    }
}
