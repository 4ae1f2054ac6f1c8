//! A ticket's conversation state inside a write transaction: who asked, who
//! else is on it, who holds it, its status, the mail of its thread; and the
//! changes a conversation makes (status, initial response, owner), each
//! recorded as an event.

use sqlx::Row;

use super::{Status, StoreError, Tx, opt_text, text};
use crate::priority::{Impact, Kind, Priority, Urgency};

/// One mail of a ticket's thread, oldest first (see [`TicketState::thread`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadMail {
    /// Without angle brackets.
    pub message_id: String,
    /// A message we received: its sender (lower-case); `None` for our mail.
    pub from: Option<String>,
    /// Mail we sent: its kind (`acknowledgement`, `correspondence`, ...).
    pub kind: Option<String>,
}

/// What a reply on a ticket needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketState {
    pub number: i64,
    pub desk: String,
    pub desk_tag: String,
    pub queue: String,
    pub status: Status,
    /// Lower-case address of who opened it.
    pub requester: String,
    pub requester_name: Option<String>,
    /// The subject of its first message.
    pub subject: String,
    /// The mailbox its first message arrived in.
    pub mailbox: String,
    /// Who holds it (lower-case address), if anyone.
    pub owner: Option<String>,
    /// When the desk first answered (ms), if it has.
    pub first_response_at: Option<i64>,
    /// Its recipient list (lower-case).
    pub recipients: Vec<String>,
    /// An alert ticket (it has an alert key): its requester is a monitoring
    /// system, never mailed.
    pub alert: bool,
    /// The newest mails of its thread with a Message-ID (at most
    /// [`THREAD_MAILS`]), oldest first: received messages and our mail.
    pub thread: Vec<ThreadMail>,
}

/// Where a ticket is routed and how it is weighed (what a transfer or a
/// `/urgency` recomputes from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub desk: String,
    pub queue: String,
    pub kind: Kind,
    /// `None` on tickets recorded before urgency was kept.
    pub urgency: Option<Urgency>,
    pub impact: Option<Impact>,
    pub priority: Option<Priority>,
    pub due_at: Option<i64>,
    pub status: Status,
    /// When it was made (ms): due times count from here.
    pub created_at: i64,
}

/// What [`Tx::set_routing`] writes.
#[derive(Debug, Clone, Copy)]
pub struct RoutingUpdate<'a> {
    pub queue: &'a str,
    pub kind: Kind,
    pub urgency: Urgency,
    pub impact: Impact,
    pub priority: Priority,
    pub due_at: Option<i64>,
}

fn parsed<T: std::str::FromStr>(v: Option<String>) -> Option<T> {
    v.and_then(|s| s.parse().ok())
}

/// How many of a thread's mails [`Tx::ticket_state`] reads.
pub const THREAD_MAILS: i64 = 50;

impl Tx {
    /// A ticket's conversation state, `None` if there is no such ticket.
    pub async fn ticket_state(&mut self, number: i64) -> Result<Option<TicketState>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT number, desk, desk_tag, queue, status, requester, requester_name, subject, mailbox, owner, first_response_at, alert_key
             FROM tickets WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(self.db().await?)
        .await?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        let requester: String = row.try_get("requester")?;
        let recipients = sqlx::query(
            "SELECT address FROM ticket_recipients WHERE ticket_number = $1 ORDER BY address",
        )
        .bind(number)
        .fetch_all(self.db().await?)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("address"))
        .collect::<Result<Vec<_>, _>>()?;
        // Received messages and our mail, by time; the newest ones.
        let rows = sqlx::query(
            "SELECT message_id, from_addr, kind, at, seq FROM (
               SELECT message_id, from_addr, CAST(NULL AS TEXT) AS kind, received_at AS at, id AS seq, 0 AS src
                 FROM messages WHERE ticket_number = $1 AND message_id IS NOT NULL
               UNION ALL
               SELECT message_id, CAST(NULL AS TEXT), kind, created_at, id, 1
                 FROM outbox WHERE ticket_number = $1
             ) t ORDER BY at DESC, src DESC, seq DESC LIMIT $2",
        )
        .bind(number)
        .bind(THREAD_MAILS)
        .fetch_all(self.db().await?)
        .await?;
        let mut thread = Vec::with_capacity(rows.len());
        for r in rows.iter().rev() {
            thread.push(ThreadMail {
                message_id: r.try_get("message_id")?,
                from: r
                    .try_get::<Option<String>, _>("from_addr")?
                    .map(|a| a.to_ascii_lowercase()),
                kind: r.try_get("kind")?,
            });
        }
        Ok(Some(TicketState {
            number,
            desk: row.try_get("desk")?,
            desk_tag: row.try_get("desk_tag")?,
            queue: row.try_get("queue")?,
            status: status.parse().unwrap_or(Status::Open),
            requester: requester.to_ascii_lowercase(),
            requester_name: row.try_get("requester_name")?,
            subject: row.try_get("subject")?,
            mailbox: row.try_get("mailbox")?,
            owner: row.try_get("owner")?,
            first_response_at: row.try_get("first_response_at")?,
            recipients,
            alert: row.try_get::<Option<String>, _>("alert_key")?.is_some(),
            thread,
        }))
    }

    /// Moves a ticket from `from` to `to` (only if it is still in `from`;
    /// `resolved_at` is now when it moves to resolved, else none) and records
    /// a `status` event with the actor and the reason. Whether it moved.
    /// Like every change to a ticket's clocks (the initial response, a
    /// transfer), it asks the SLA scheduler to look at the ticket again
    /// (`sla_next_at` 0).
    pub async fn move_status(
        &mut self,
        number: i64,
        from: Status,
        to: Status,
        actor: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let resolved_at = (to == Status::Resolved).then_some(self.now);
        let done = sqlx::query(
            "UPDATE tickets SET status = $1, resolved_at = $2, updated_at = $3, sla_next_at = 0 \
             WHERE number = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(resolved_at)
        .bind(self.now)
        .bind(number)
        .bind(from.as_str())
        .execute(self.db().await?)
        .await?
        .rows_affected()
            > 0;
        if done {
            self.event_by(
                number,
                "status",
                actor,
                &serde_json::json!({"from": from, "to": to, "reason": reason}),
            )
            .await?;
        }
        Ok(done)
    }

    /// Records the ticket's initial response (the first correspondence from
    /// the desk), once: an `initial response` event with its Message-ID and
    /// the actor. Whether this was the first.
    pub async fn set_first_response(
        &mut self,
        number: i64,
        message_id: Option<&str>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tickets SET first_response_at = $1, sla_next_at = 0 WHERE number = $2 AND first_response_at IS NULL",
        )
        .bind(self.now)
        .bind(number)
        .execute(self.db().await?)
        .await?
        .rows_affected()
            > 0;
        if done {
            self.event_by(
                number,
                "initial response",
                actor,
                &serde_json::json!({"message_id": message_id, "at": self.now}),
            )
            .await?;
        }
        Ok(done)
    }

    /// Sets (or clears) the ticket's owner and records an `owner` event.
    pub async fn set_owner(
        &mut self,
        number: i64,
        owner: Option<&str>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let owner = owner.map(str::to_ascii_lowercase);
        sqlx::query("UPDATE tickets SET owner = $1, updated_at = $2 WHERE number = $3")
            .bind(opt_text(owner.as_deref()))
            .bind(self.now)
            .bind(number)
            .execute(self.db().await?)
            .await?;
        self.event_by(number, "owner", actor, &serde_json::json!({"owner": owner}))
            .await
    }

    /// A ticket's routing, `None` if there is no such ticket.
    pub async fn routing(&mut self, number: i64) -> Result<Option<Routing>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT desk, queue, kind, urgency, impact, priority, due_at, status, created_at
             FROM tickets WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(self.db().await?)
        .await?
        else {
            return Ok(None);
        };
        let kind: String = row.try_get("kind")?;
        let status: String = row.try_get("status")?;
        Ok(Some(Routing {
            desk: row.try_get("desk")?,
            queue: row.try_get("queue")?,
            kind: kind.parse().unwrap_or(Kind::DEFAULT),
            urgency: parsed(row.try_get("urgency")?),
            impact: parsed(row.try_get("impact")?),
            priority: parsed(row.try_get("priority")?),
            due_at: row.try_get("due_at")?,
            status: status.parse().unwrap_or(Status::Open),
            created_at: row.try_get("created_at")?,
        }))
    }

    /// Sets a ticket's queue, kind, urgency, impact, priority and due time
    /// (the caller records why: a `transfer`, `urgency`, ... event).
    pub async fn set_routing(
        &mut self,
        number: i64,
        r: &RoutingUpdate<'_>,
    ) -> Result<(), StoreError> {
        let RoutingUpdate {
            queue,
            kind,
            urgency,
            impact,
            priority,
            due_at,
        } = *r;
        sqlx::query(
            "UPDATE tickets SET queue = $1, kind = $2, urgency = $3, impact = $4, priority = $5,
             due_at = $6, updated_at = $7, sla_next_at = 0 WHERE number = $8",
        )
        .bind(text(queue))
        .bind(kind.as_str())
        .bind(urgency.as_str())
        .bind(impact.as_str())
        .bind(priority.as_str())
        .bind(due_at)
        .bind(self.now)
        .bind(number)
        .execute(self.db().await?)
        .await?;
        Ok(())
    }

    /// The raw bytes of a ticket's first message, if it has one.
    pub async fn first_message_raw(&mut self, number: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "SELECT raw, raw_codec FROM messages WHERE ticket_number = $1 ORDER BY id LIMIT 1",
        )
        .bind(number)
        .fetch_optional(self.db().await?)
        .await?;
        Ok(match row {
            Some(r) => Some(super::message_raw_of(&r, self.max_message)?),
            None => None,
        })
    }

    /// Takes addresses off a ticket's recipient list; how many were on it.
    pub async fn remove_recipients(
        &mut self,
        number: i64,
        addresses: &[String],
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        for address in addresses {
            removed += sqlx::query(
                "DELETE FROM ticket_recipients WHERE ticket_number = $1 AND address = $2",
            )
            .bind(number)
            .bind(text(&address.to_ascii_lowercase()))
            .execute(self.db().await?)
            .await?
            .rows_affected();
        }
        Ok(removed)
    }

    /// Appends to a ticket's history with a named actor (an address, or
    /// `triaged`), at this transaction's time.
    pub async fn event_by(
        &mut self,
        number: i64,
        kind: &str,
        actor: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.defer_event(number, kind, actor, detail);
        Ok(())
    }
}
