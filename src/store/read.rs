//! Read models: what the command line shows of tickets, messages,
//! history, quarantine and cursors. Each row type has one column list, and
//! columns are read by name.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Cursor, OutboxSummary, Status, Store, StoreError, from_json};
use crate::parse::MailAddr;

/// The columns of a [`TicketSummary`].
const TICKET_COLUMNS: &str =
    "number, desk_tag, desk, queue, kind, status, requester, requester_name, subject, mailbox,
   created_at, updated_at, urgency, impact, priority, due_at, tags, alert_key, first_response_at, owner";

/// The columns of a [`MessageRow`] (attachments apart).
const MESSAGE_COLUMNS: &str = "id, message_id, mailbox, origin, from_addr, from_name, to_addrs, cc_addrs, reply_to, subject,
   sent_date, in_reply_to, refs, auto_signals, body_text, body_source, problems, raw_size, sha256, received_at,
   raw, raw_codec";

/// The columns of an [`AttachmentRow`].
const ATTACHMENT_COLUMNS: &str = "name, content_type, size, sha256";

/// The columns of an [`EventRow`].
const EVENT_COLUMNS: &str = "at, kind, actor, detail";

/// The columns of a [`QuarantineRow`].
const QUARANTINE_COLUMNS: &str =
    "id, mailbox, origin, reason, message_id, from_addr, subject, size, created_at, headers";

#[derive(Debug, Clone, Serialize)]
pub struct TicketSummary {
    pub number: i64,
    pub tag: String,
    pub desk: String,
    pub queue: String,
    pub kind: String,
    pub status: Status,
    pub requester: String,
    pub requester_name: Option<String>,
    pub subject: String,
    pub mailbox: String,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub updated_at: i64,
    pub urgency: Option<String>,
    pub impact: Option<String>,
    pub priority: Option<String>,
    /// Initial response due, ms since the epoch (RFC 3339 in JSON).
    #[serde(serialize_with = "crate::clock::json_time::opt_ms")]
    pub due_at: Option<i64>,
    pub tags: Vec<String>,
    pub alert_key: Option<String>,
    /// When the desk first answered (the first correspondence), ms (RFC 3339 in JSON).
    #[serde(serialize_with = "crate::clock::json_time::opt_ms")]
    pub first_response_at: Option<i64>,
    /// Who holds the ticket (its tech lead), if anyone.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttachmentRow {
    pub name: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    pub id: i64,
    pub message_id: Option<String>,
    pub mailbox: String,
    pub origin: String,
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<MailAddr>,
    pub cc: Vec<MailAddr>,
    pub reply_to: Vec<MailAddr>,
    pub subject: Option<String>,
    #[serde(serialize_with = "crate::clock::json_time::opt_secs")]
    pub date: Option<i64>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub auto_signals: serde_json::Value,
    pub body: String,
    pub body_source: String,
    pub problems: Vec<String>,
    pub size: i64,
    pub sha256: String,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub received_at: i64,
    pub attachments: Vec<AttachmentRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketDetail {
    #[serde(flatten)]
    pub ticket: TicketSummary,
    /// The ticket's own recipient list.
    pub recipients: Vec<String>,
    /// Mail about this ticket: queued, sent or failed.
    pub mail: Vec<OutboxSummary>,
    pub messages: Vec<MessageRow>,
    pub events: Vec<EventRow>,
    /// Tickets linked to this one (either way), with the reason.
    pub links: Vec<LinkRow>,
}

/// One entry of a ticket's timeline: an event of its history, or a mail
/// queued about it (from the outbox), in one machine format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// ms since the epoch.
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub at: i64,
    /// Who did it: an address, or `triaged` for the system.
    pub actor: String,
    /// The event's kind (`created`, `reply`, `status`, ...), or `mail queued`.
    pub kind: String,
    pub details: serde_json::Value,
}

/// The actor of what the system does by itself.
pub const SYSTEM_ACTOR: &str = "triaged";

impl TicketDetail {
    /// The history and the mail in one list, oldest first: each event, and
    /// each outbox row as a `mail queued` entry at its creation (after the
    /// events of the same moment, which queued it). `mail sent` and `mail
    /// failed` events gain the mail's recipients and subject.
    pub fn timeline(&self) -> Vec<TimelineEntry> {
        let mail_by_id = |id: Option<i64>| id.and_then(|id| self.mail.iter().find(|m| m.id == id));
        let mut entries: Vec<(i64, u8, TimelineEntry)> =
            Vec::with_capacity(self.events.len() + self.mail.len());
        for e in &self.events {
            let mut details = e.detail.clone();
            if (e.kind == "mail sent" || e.kind == "mail failed")
                && let Some(m) = mail_by_id(details.get("outbox").and_then(|v| v.as_i64()))
                && let Some(obj) = details.as_object_mut()
            {
                obj.entry("rcpt")
                    .or_insert_with(|| serde_json::json!(m.rcpt));
                obj.entry("subject")
                    .or_insert_with(|| serde_json::json!(m.subject));
            }
            let actor = if e.actor.trim().is_empty() {
                SYSTEM_ACTOR.to_string()
            } else {
                e.actor.clone()
            };
            entries.push((
                e.at,
                0,
                TimelineEntry {
                    at: e.at,
                    actor,
                    kind: e.kind.clone(),
                    details,
                },
            ));
        }
        for m in &self.mail {
            entries.push((
                m.created_at,
                1,
                TimelineEntry {
                    at: m.created_at,
                    actor: SYSTEM_ACTOR.to_string(),
                    kind: "mail queued".to_string(),
                    details: serde_json::json!({
                        "outbox": m.id,
                        "kind": m.kind,
                        "rcpt": m.rcpt,
                        "subject": m.subject,
                        "message_id": m.message_id,
                        "status": m.status,
                        "attempts": m.attempts,
                        "last_error": m.last_error,
                        "sent_at": m.sent_at.and_then(crate::clock::rfc3339),
                    }),
                },
            ));
        }
        // Stable: events keep their recorded order within one moment.
        entries.sort_by_key(|(at, src, _)| (*at, *src));
        entries.into_iter().map(|(_, _, e)| e).collect()
    }
}

/// A link between two tickets, seen from one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkRow {
    /// The other ticket.
    pub ticket: i64,
    /// `from`: this ticket was opened because of the other; `to`: the other
    /// was opened because of this one.
    pub direction: &'static str,
    pub reason: String,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineRow {
    pub id: i64,
    pub mailbox: String,
    pub origin: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub size: i64,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub created_at: i64,
    #[serde(skip)]
    pub headers: Vec<u8>,
}

/// `triaged stats`: the totals, and where the work stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub counts: Counts,
    /// Tickets per queue and status, by queue then status.
    pub queues: Vec<QueueCount>,
    /// The open (not resolved) ticket that has waited longest.
    pub oldest_open: Option<OldestOpen>,
    /// Mail in the outbox per status (`pending`, `sent`, `failed`).
    pub outbox: Vec<StatusCount>,
    /// Per mailbox: messages recorded and when the last one arrived.
    pub mailboxes: Vec<MailboxActivity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueCount {
    pub queue: String,
    pub status: String,
    pub tickets: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OldestOpen {
    pub number: i64,
    pub queue: String,
    pub status: String,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    pub status: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxActivity {
    pub mailbox: String,
    pub messages: i64,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub last_received_at: i64,
}

/// Totals, for summaries and for waiting on the daemon in tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tickets: i64,
    /// Messages recorded on tickets (first messages and replies).
    pub messages: i64,
    /// Deliveries recognised as already recorded.
    pub duplicates: i64,
    pub quarantined: i64,
}

impl Counts {
    /// Every delivery accounted for: recorded, recognised as duplicate, or set aside.
    pub fn deliveries(&self) -> i64 {
        self.messages + self.duplicates + self.quarantined
    }
}

/// Filters for [`Store::list_tickets`].
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub queue: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
}

impl TicketSummary {
    fn from_row(r: &AnyRow) -> Result<TicketSummary, sqlx::Error> {
        let number: i64 = r.try_get("number")?;
        let tag: String = r.try_get("desk_tag")?;
        let status: String = r.try_get("status")?;
        Ok(TicketSummary {
            number,
            tag: crate::thread::format_tag(&tag, number),
            desk: r.try_get("desk")?,
            queue: r.try_get("queue")?,
            kind: r.try_get("kind")?,
            status: status
                .parse()
                .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
            requester: r.try_get("requester")?,
            requester_name: r.try_get("requester_name")?,
            subject: r.try_get("subject")?,
            mailbox: r.try_get("mailbox")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            urgency: r.try_get("urgency")?,
            impact: r.try_get("impact")?,
            priority: r.try_get("priority")?,
            due_at: r.try_get("due_at")?,
            tags: from_json(r, "tags")?,
            alert_key: r.try_get("alert_key")?,
            first_response_at: r.try_get("first_response_at")?,
            owner: r.try_get("owner")?,
        })
    }
}

impl AttachmentRow {
    fn from_row(r: &AnyRow) -> Result<AttachmentRow, sqlx::Error> {
        Ok(AttachmentRow {
            name: r.try_get("name")?,
            content_type: r.try_get("content_type")?,
            size: r.try_get("size")?,
            sha256: r.try_get("sha256")?,
        })
    }
}

impl MessageRow {
    /// A message row without its attachments; its body decoded with
    /// `max_message` as the bound (see [`super::codec`]).
    fn from_row(r: &AnyRow, max_message: usize) -> Result<MessageRow, StoreError> {
        Ok(MessageRow {
            id: r.try_get("id")?,
            message_id: r.try_get("message_id")?,
            mailbox: r.try_get("mailbox")?,
            origin: r.try_get("origin")?,
            from: r.try_get("from_addr")?,
            from_name: r.try_get("from_name")?,
            to: from_json(r, "to_addrs")?,
            cc: from_json(r, "cc_addrs")?,
            reply_to: from_json(r, "reply_to")?,
            subject: r.try_get("subject")?,
            date: r.try_get("sent_date")?,
            in_reply_to: from_json(r, "in_reply_to")?,
            references: from_json(r, "refs")?,
            auto_signals: from_json(r, "auto_signals")?,
            body: super::message_body_of(r, max_message)?,
            body_source: r.try_get("body_source")?,
            problems: from_json(r, "problems")?,
            size: r.try_get("raw_size")?,
            sha256: r.try_get("sha256")?,
            received_at: r.try_get("received_at")?,
            attachments: Vec::new(),
        })
    }
}

impl EventRow {
    fn from_row(r: &AnyRow) -> Result<EventRow, sqlx::Error> {
        Ok(EventRow {
            at: r.try_get("at")?,
            kind: r.try_get("kind")?,
            actor: r.try_get("actor")?,
            detail: from_json(r, "detail")?,
        })
    }
}

impl QuarantineRow {
    fn from_row(r: &AnyRow) -> Result<QuarantineRow, sqlx::Error> {
        Ok(QuarantineRow {
            id: r.try_get("id")?,
            mailbox: r.try_get("mailbox")?,
            origin: r.try_get("origin")?,
            reason: r.try_get("reason")?,
            message_id: r.try_get("message_id")?,
            from: r.try_get("from_addr")?,
            subject: r.try_get("subject")?,
            size: r.try_get("size")?,
            created_at: r.try_get("created_at")?,
            headers: r.try_get("headers")?,
        })
    }
}

/// Every row, decoded with `decode`.
fn all<T>(
    rows: &[AnyRow],
    decode: impl Fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, StoreError> {
    Ok(rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?)
}

impl Store {
    /// The cursor of a watched folder, if any batch was committed there.
    pub async fn cursor(&self, mailbox: &str) -> Result<Option<Cursor>, StoreError> {
        let row = sqlx::query("SELECT uidvalidity, last_uid FROM mailbox_state WHERE mailbox = $1")
            .bind(mailbox)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(Cursor {
                mailbox: mailbox.to_string(),
                uidvalidity: u32::try_from(r.try_get::<i64, _>("uidvalidity")?).unwrap_or(0),
                last_uid: u32::try_from(r.try_get::<i64, _>("last_uid")?).unwrap_or(0),
            }),
            None => None,
        })
    }

    pub async fn list_tickets(
        &self,
        filter: &TicketFilter,
    ) -> Result<Vec<TicketSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets
             WHERE ($1 = '' OR queue = $1) AND ($2 = '' OR status = $2)
             ORDER BY number DESC LIMIT $3"
        ))
        .bind(filter.queue.clone().unwrap_or_default())
        .bind(filter.status.clone().unwrap_or_default())
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        all(&rows, TicketSummary::from_row)
    }

    pub async fn count_tickets(&self) -> Result<i64, StoreError> {
        Ok(self.counts().await?.tickets)
    }

    /// How many of each thing the store holds.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM tickets) AS tickets, (SELECT COUNT(*) FROM messages) AS messages,
                    (SELECT COUNT(*) FROM events WHERE kind = 'duplicate') AS duplicates,
                    (SELECT COUNT(*) FROM quarantine) AS quarantined",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            tickets: row.try_get("tickets")?,
            messages: row.try_get("messages")?,
            duplicates: row.try_get("duplicates")?,
            quarantined: row.try_get("quarantined")?,
        })
    }

    /// The totals and where the work stands (`triaged stats`): four
    /// grouped reads, no transaction needed (a summary, not a ledger).
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let counts = self.counts().await?;
        let rows = sqlx::query(
            "SELECT queue, status, COUNT(*) AS n FROM tickets GROUP BY queue, status ORDER BY queue, status",
        )
        .fetch_all(&self.pool)
        .await?;
        let queues = all(&rows, |r| {
            Ok(QueueCount {
                queue: r.try_get("queue")?,
                status: r.try_get("status")?,
                tickets: r.try_get("n")?,
            })
        })?;
        let oldest_open = sqlx::query(
            "SELECT number, queue, status, created_at FROM tickets WHERE status <> $1
             ORDER BY created_at, number LIMIT 1",
        )
        .bind(Status::Resolved.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok::<_, sqlx::Error>(OldestOpen {
                number: r.try_get("number")?,
                queue: r.try_get("queue")?,
                status: r.try_get("status")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()?;
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        let outbox = all(&rows, |r| {
            Ok(StatusCount {
                status: r.try_get("status")?,
                count: r.try_get("n")?,
            })
        })?;
        let rows = sqlx::query(
            "SELECT mailbox, COUNT(*) AS n, MAX(received_at) AS last FROM messages
             GROUP BY mailbox ORDER BY mailbox",
        )
        .fetch_all(&self.pool)
        .await?;
        let mailboxes = all(&rows, |r| {
            Ok(MailboxActivity {
                mailbox: r.try_get("mailbox")?,
                messages: r.try_get("n")?,
                last_received_at: r.try_get("last")?,
            })
        })?;
        Ok(Summary {
            counts,
            queues,
            oldest_open,
            outbox,
            mailboxes,
        })
    }

    /// A ticket with its messages, history, recipients and mail.
    pub async fn ticket(&self, number: i64) -> Result<Option<TicketDetail>, StoreError> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE number = $1"
        ))
        .bind(number)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let ticket = TicketSummary::from_row(&row)?;
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE ticket_number = $1 ORDER BY id"
        ))
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        let mut messages = rows
            .iter()
            .map(|r| MessageRow::from_row(r, self.max_message))
            .collect::<Result<Vec<_>, _>>()?;
        for m in &mut messages {
            let rows = sqlx::query(&format!(
                "SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE message = $1 ORDER BY id"
            ))
            .bind(m.id)
            .fetch_all(&self.pool)
            .await?;
            m.attachments = all(&rows, AttachmentRow::from_row)?;
        }
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE ticket_number = $1 ORDER BY id"
        ))
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        let events = all(&rows, EventRow::from_row)?;
        Ok(Some(TicketDetail {
            recipients: self.recipients(number).await?,
            mail: self.ticket_outbox(number).await?,
            ticket,
            messages,
            events,
            links: self.links(number).await?,
        }))
    }

    /// The links of a ticket, either way, oldest first.
    pub async fn links(&self, number: i64) -> Result<Vec<LinkRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT other AS ticket, CAST(0 AS BIGINT) AS dir, reason, created_at FROM ticket_links WHERE ticket = $1
             UNION ALL
             SELECT ticket, CAST(1 AS BIGINT), reason, created_at FROM ticket_links WHERE other = $1
             ORDER BY created_at, ticket",
        )
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LinkRow {
                    ticket: r.try_get("ticket")?,
                    direction: if r.try_get::<i64, _>("dir")? == 0 {
                        "from"
                    } else {
                        "to"
                    },
                    reason: r.try_get("reason")?,
                    at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The raw bytes of a stored message, for audit and re-processing.
    pub async fn raw_message(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT raw, raw_codec FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(super::message_raw_of(&r, self.max_message)?),
            None => None,
        })
    }

    /// A ticket's recipient list.
    pub async fn recipients(&self, number: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT address FROM ticket_recipients WHERE ticket_number = $1 ORDER BY address",
        )
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, |r| r.try_get("address"))
    }

    /// Stored messages with ids above `after`, oldest first: (id, mailbox, raw).
    pub async fn raw_messages_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, mailbox, raw, raw_codec FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("mailbox")?,
                    super::message_raw_of(r, self.max_message)?,
                ))
            })
            .collect()
    }

    pub async fn list_quarantine(&self) -> Result<Vec<QuarantineRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {QUARANTINE_COLUMNS} FROM quarantine ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        all(&rows, QuarantineRow::from_row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detail(events: Vec<EventRow>, mail: Vec<OutboxSummary>) -> TicketDetail {
        TicketDetail {
            ticket: TicketSummary {
                number: 1000,
                tag: "[ISDA #1000]".into(),
                desk: "isda".into(),
                queue: "Customer-Support".into(),
                kind: "bug".into(),
                status: Status::Open,
                requester: "ann@customer.example".into(),
                requester_name: None,
                subject: "Map broken".into(),
                mailbox: "isda-support".into(),
                created_at: 10,
                updated_at: 30,
                urgency: None,
                impact: None,
                priority: None,
                due_at: None,
                tags: Vec::new(),
                alert_key: None,
                first_response_at: None,
                owner: None,
            },
            recipients: Vec::new(),
            mail,
            messages: Vec::new(),
            events,
            links: Vec::new(),
        }
    }

    fn event(at: i64, kind: &str, actor: &str, detail: serde_json::Value) -> EventRow {
        EventRow {
            at,
            kind: kind.into(),
            actor: actor.into(),
            detail,
        }
    }

    #[test]
    fn timeline_merges_events_and_mail_in_time_order() {
        let mail = OutboxSummary {
            id: 7,
            ticket_number: Some(1000),
            kind: "acknowledgement".into(),
            rcpt: vec!["ann@customer.example".into()],
            subject: "[ISDA #1000] Map broken".into(),
            message_id: "m@example.edu".into(),
            status: "sent".into(),
            attempts: 1,
            next_attempt_at: 10,
            last_error: None,
            created_at: 10,
            sent_at: Some(20),
        };
        let t = detail(
            vec![
                event(10, "created", "ann@customer.example", json!({})),
                event(
                    10,
                    "mail suppressed",
                    "",
                    json!({"kind": "queue notification"}),
                ),
                event(
                    20,
                    "mail sent",
                    "triaged",
                    json!({"outbox": 7, "kind": "acknowledgement"}),
                ),
                event(30, "reply", "ann@customer.example", json!({})),
            ],
            vec![mail],
        );
        let timeline = t.timeline();
        let kinds: Vec<(i64, &str, &str)> = timeline
            .iter()
            .map(|e| (e.at, e.kind.as_str(), e.actor.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (10, "created", "ann@customer.example"),
                (10, "mail suppressed", SYSTEM_ACTOR),
                (10, "mail queued", SYSTEM_ACTOR),
                (20, "mail sent", "triaged"),
                (30, "reply", "ann@customer.example"),
            ]
        );
        assert_eq!(timeline[2].details["rcpt"], json!(["ann@customer.example"]));
        assert_eq!(timeline[2].details["status"], "sent");
        // The sent event names its recipients and subject.
        assert_eq!(timeline[3].details["rcpt"], json!(["ann@customer.example"]));
        assert_eq!(timeline[3].details["subject"], "[ISDA #1000] Map broken");
    }
}
