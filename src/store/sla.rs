//! What the SLA scheduler reads and writes: the deadline index
//! (`tickets.sla_next_at`), a due ticket's clock facts, and the once-only
//! marks of what was sent (`sla_sent`).
//!
//! The store decides nothing about deadlines: every change to a ticket's
//! clocks (a new ticket, a status change, the initial response, a transfer)
//! sets `sla_next_at` to 0 ("look at once") in the statement that makes it,
//! and the scheduler computes the rest.

use sqlx::Row;

use super::{Backend, Status, Store, StoreError, Tx, text};
use crate::priority::{Impact, Kind, Priority, Urgency};

/// A ticket as the SLA clock sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaTicket {
    pub number: i64,
    pub desk: String,
    pub desk_tag: String,
    pub queue: String,
    pub kind: Kind,
    pub status: Status,
    pub urgency: Option<Urgency>,
    pub impact: Option<Impact>,
    pub priority: Option<Priority>,
    pub requester: String,
    pub requester_name: Option<String>,
    pub subject: String,
    pub mailbox: String,
    pub owner: Option<String>,
    /// An alert ticket: its requester is a monitoring system, never mailed.
    pub alert: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The initial response's due time (no pauses counted).
    pub due_at: Option<i64>,
    pub first_response_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// Its recipient list (lower-case).
    pub recipients: Vec<String>,
}

/// One status change of a ticket (a `status` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    pub at: i64,
    pub from: Status,
    pub to: Status,
}

/// A level marked for a ticket (`sla_sent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaMark {
    pub clock: String,
    pub level: String,
    /// `sent`, `skipped` or `suppressed`.
    pub outcome: String,
    pub due_at: i64,
    pub at: i64,
}

/// The newest message of a ticket, for the daily status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestMessage {
    pub from: Option<String>,
    pub body: String,
    pub received_at: i64,
}

fn parsed<T: std::str::FromStr>(v: Option<String>) -> Option<T> {
    v.and_then(|s| s.parse().ok())
}

impl Store {
    /// Tickets whose next SLA look is due at `now`, earliest first, at most
    /// `limit`. An index range scan: never every ticket.
    pub async fn sla_due(&self, now: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT number FROM tickets WHERE sla_next_at <= $1 ORDER BY sla_next_at, number LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("number").map_err(StoreError::from))
            .collect()
    }

    /// The earliest pending SLA look of any ticket.
    pub async fn sla_next(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MIN(sla_next_at) AS next FROM tickets")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("next")?)
    }

    /// Makes every unresolved ticket due for a look when the SLA settings'
    /// `fingerprint` differs from the one recorded (a changed target, level,
    /// calendar or daily status time moves deadlines the index already
    /// holds), and records it. Whether they changed. One statement over the
    /// tickets, only when the settings changed.
    pub async fn sla_settings(&self, fingerprint: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'sla_settings'")
            .fetch_optional(&mut *tx.tx)
            .await?;
        let known: Option<i64> = match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        };
        if known == Some(fingerprint) {
            tx.commit().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE tickets SET sla_next_at = 0 WHERE status <> 'resolved'")
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "INSERT INTO counters (name, value) VALUES ('sla_settings', $1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(fingerprint)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every level marked for a ticket, in the order marked (for tests and
    /// the command line).
    pub async fn sla_marks(&self, number: i64) -> Result<Vec<SlaMark>, StoreError> {
        let mut tx = self.begin().await?;
        let marks = tx.sla_marks(number).await?;
        tx.commit().await?;
        Ok(marks)
    }
}

impl Tx {
    /// The ticket's clock facts if its SLA look is still due at `now`; on
    /// PostgreSQL the row is locked for this transaction (`FOR UPDATE SKIP
    /// LOCKED`: a ticket another daemon is looking at is skipped, and a
    /// status change waits until this look has committed, so its "look
    /// again" is never overwritten by a look at older facts).
    pub async fn sla_ticket(
        &mut self,
        number: i64,
        now: i64,
    ) -> Result<Option<SlaTicket>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let Some(row) = sqlx::query(&format!(
            "SELECT number, desk, desk_tag, queue, kind, status, urgency, impact, priority, requester,
               requester_name, subject, mailbox, owner, alert_key, created_at, updated_at, due_at,
               first_response_at, resolved_at
             FROM tickets WHERE number = $1 AND sla_next_at <= $2{lock}"
        ))
        .bind(number)
        .bind(now)
        .fetch_optional(self.db().await?)
        .await?
        else {
            return Ok(None);
        };
        let recipients = sqlx::query(
            "SELECT address FROM ticket_recipients WHERE ticket_number = $1 ORDER BY address",
        )
        .bind(number)
        .fetch_all(self.db().await?)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("address"))
        .collect::<Result<Vec<_>, _>>()?;
        let kind: String = row.try_get("kind")?;
        let status: String = row.try_get("status")?;
        let requester: String = row.try_get("requester")?;
        Ok(Some(SlaTicket {
            number,
            desk: row.try_get("desk")?,
            desk_tag: row.try_get("desk_tag")?,
            queue: row.try_get("queue")?,
            kind: kind.parse().unwrap_or(Kind::DEFAULT),
            status: status.parse().unwrap_or(Status::Open),
            urgency: parsed(row.try_get("urgency")?),
            impact: parsed(row.try_get("impact")?),
            priority: parsed(row.try_get("priority")?),
            requester: requester.to_ascii_lowercase(),
            requester_name: row.try_get("requester_name")?,
            subject: row.try_get("subject")?,
            mailbox: row.try_get("mailbox")?,
            owner: row.try_get("owner")?,
            alert: row.try_get::<Option<String>, _>("alert_key")?.is_some(),
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            due_at: row.try_get("due_at")?,
            first_response_at: row.try_get("first_response_at")?,
            resolved_at: row.try_get("resolved_at")?,
            recipients,
        }))
    }

    /// A ticket's status changes, oldest first (its `status` events).
    pub async fn status_changes(&mut self, number: i64) -> Result<Vec<StatusChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, detail FROM events WHERE ticket_number = $1 AND kind = 'status' ORDER BY id",
        )
        .bind(number)
        .fetch_all(self.db().await?)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let detail: String = r.try_get("detail")?;
            let v: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            let status = |k: &str| {
                v.get(k)
                    .and_then(|s| s.as_str())
                    .and_then(|s| s.parse().ok())
            };
            if let (Some(from), Some(to)) = (status("from"), status("to")) {
                out.push(StatusChange {
                    at: r.try_get("at")?,
                    from,
                    to,
                });
            }
        }
        Ok(out)
    }

    /// Every level marked for a ticket, in the order marked.
    pub async fn sla_marks(&mut self, number: i64) -> Result<Vec<SlaMark>, StoreError> {
        let rows = sqlx::query(
            "SELECT clock, level, outcome, due_at, at FROM sla_sent WHERE ticket_number = $1 ORDER BY at, clock, level",
        )
        .bind(number)
        .fetch_all(self.db().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SlaMark {
                    clock: r.try_get("clock")?,
                    level: r.try_get("level")?,
                    outcome: r.try_get("outcome")?,
                    due_at: r.try_get("due_at")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    /// Marks one level of one clock (or one day's status: clock `daily`,
    /// level the date) as done for a ticket, once: `true` if this
    /// transaction marked it, `false` if it was marked already (by this
    /// daemon earlier, or another one). Whoever gets `true` queues the mail
    /// in the same transaction.
    pub async fn mark_sla(
        &mut self,
        number: i64,
        clock: &str,
        level: &str,
        outcome: &str,
        due_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO sla_sent (ticket_number, clock, level, outcome, due_at, at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(number)
        .bind(clock)
        .bind(text(level))
        .bind(outcome)
        .bind(due_at)
        .bind(self.now)
        .execute(self.db().await?)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// When the scheduler must look at the ticket next (`None`: nothing pending).
    pub async fn set_sla_next(&mut self, number: i64, next: Option<i64>) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET sla_next_at = $1 WHERE number = $2")
            .bind(next)
            .bind(number)
            .execute(self.db().await?)
            .await?;
        Ok(())
    }

    /// The newest message of a ticket (by arrival), if any.
    pub async fn latest_message(
        &mut self,
        number: i64,
    ) -> Result<Option<LatestMessage>, StoreError> {
        let row = sqlx::query(
            "SELECT from_addr, body_text, raw, raw_codec, received_at FROM messages WHERE ticket_number = $1
             ORDER BY received_at DESC, id DESC LIMIT 1",
        )
        .bind(number)
        .fetch_optional(self.db().await?)
        .await?;
        Ok(match row {
            Some(r) => Some(LatestMessage {
                from: r.try_get("from_addr")?,
                body: super::message_body_of(&r, self.max_message)?,
                received_at: r.try_get("received_at")?,
            }),
            None => None,
        })
    }
}
