//! The report card's queries (`triaged report`): what the tickets opened in
//! a period became, and how much mail arrived, aggregated in SQL.
//!
//! Counts are grouped in the database. Two things are not: the time to the
//! initial response, which is measured in the desk's business hours (a
//! calendar the database does not know), so the answered tickets of the
//! period come back as two numbers each, streamed and grouped (no message
//! is read); and the day of a count, which depends on a time zone, so
//! counts per day come back per 15-minute bucket (every time zone offset and
//! every change of offset in use is a multiple of 15 minutes), for
//! `crate::report` to put on the right local day.
//!
//! Every query runs in one read transaction (REPEATABLE READ on PostgreSQL),
//! so the figures agree with each other.

use futures::TryStreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, NewMail, Store, StoreError, json, text};
use crate::clock::now_ms;

/// The width of a per-day bucket, ms: 15 minutes.
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// What to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// Start of the period, ms since the epoch (inclusive).
    pub from_ms: i64,
    /// End of the period, ms since the epoch (exclusive).
    pub to_ms: i64,
    /// Only this desk's tickets; `None`: every desk.
    pub desk: Option<String>,
    /// The time of the report: an unanswered ticket is late once its due
    /// time is before it.
    pub now_ms: i64,
}

/// The counts of one (desk, queue, priority) group of tickets opened in the
/// period, as they stand now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCounts {
    pub desk: String,
    pub queue: String,
    /// `None`: the ticket has no priority (made before priorities existed).
    pub priority: Option<String>,
    pub opened: i64,
    /// Answered at or before the due time.
    pub within_target: i64,
    /// Answered after the due time, or unanswered and past it.
    pub late: i64,
    /// No initial response yet.
    pub unanswered: i64,
    /// No due time at all (neither within target nor late).
    pub no_target: i64,
    pub resolved: i64,
}

/// The answered tickets of one (desk, queue, priority) group of the
/// period: when each was opened and first answered, ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTimes {
    pub desk: String,
    pub queue: String,
    pub priority: Option<String>,
    /// (created_at, first_response_at) per ticket.
    pub times: Vec<(i64, i64)>,
}

/// Escalation events on the period's tickets of one group that share one
/// detail text (`detail` says whether each is a warning or an escalation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRows {
    pub desk: String,
    pub queue: String,
    pub priority: Option<String>,
    /// The event's detail, JSON as stored.
    pub detail: String,
    pub count: i64,
}

/// A count in one 15-minute bucket of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCount {
    /// The mailbox (messages) or the queue (tickets).
    pub key: String,
    /// The desk of the tickets counted (tickets only; empty for messages).
    pub desk: String,
    /// Start of the bucket, ms since the epoch.
    pub start_ms: i64,
    pub count: i64,
}

/// Everything the report card is computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportData {
    pub groups: Vec<GroupCounts>,
    pub responses: Vec<ResponseTimes>,
    pub escalations: Vec<EscalationRows>,
    /// Messages received per mailbox and bucket (every mailbox: the caller
    /// keeps those of the desks it reports).
    pub messages: Vec<BucketCount>,
    /// Tickets opened per queue and bucket.
    pub tickets: Vec<BucketCount>,
}

/// Tickets opened in the period (`$1` to `$2`), of desk `$3` unless it is
/// empty. `t` is the tickets table.
const IN_PERIOD: &str = "t.created_at >= $1 AND t.created_at < $2 AND ($3 = '' OR t.desk = $3)";

impl Store {
    /// The figures of the report card for `q`, from one snapshot.
    pub async fn report_data(&self, q: &ReportQuery) -> Result<ReportData, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let desk = q.desk.clone().unwrap_or_default();

        let rows = sqlx::query(&format!(
            "SELECT t.desk, t.queue, COALESCE(t.priority, '') AS priority,
                    COUNT(*) AS opened,
                    SUM(CASE WHEN t.first_response_at IS NOT NULL AND t.due_at IS NOT NULL
                              AND t.first_response_at <= t.due_at THEN 1 ELSE 0 END) AS within_target,
                    SUM(CASE WHEN t.due_at IS NOT NULL
                              AND ((t.first_response_at IS NOT NULL AND t.first_response_at > t.due_at)
                                   OR (t.first_response_at IS NULL AND t.due_at < $4))
                             THEN 1 ELSE 0 END) AS late,
                    SUM(CASE WHEN t.first_response_at IS NULL THEN 1 ELSE 0 END) AS unanswered,
                    SUM(CASE WHEN t.due_at IS NULL THEN 1 ELSE 0 END) AS no_target,
                    SUM(CASE WHEN t.status = 'resolved' THEN 1 ELSE 0 END) AS resolved
             FROM tickets t WHERE {IN_PERIOD}
             GROUP BY t.desk, t.queue, COALESCE(t.priority, '')
             ORDER BY t.desk, t.queue, COALESCE(t.priority, '')"
        ))
        .bind(q.from_ms)
        .bind(q.to_ms)
        .bind(&desk)
        .bind(q.now_ms)
        .fetch_all(&mut *tx)
        .await?;
        let groups = rows
            .iter()
            .map(|r| {
                Ok(GroupCounts {
                    desk: r.try_get("desk")?,
                    queue: r.try_get("queue")?,
                    priority: priority(r)?,
                    opened: r.try_get("opened")?,
                    within_target: r.try_get("within_target")?,
                    late: r.try_get("late")?,
                    unanswered: r.try_get("unanswered")?,
                    no_target: r.try_get("no_target")?,
                    resolved: r.try_get("resolved")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        // Streamed in group order, so that only two numbers per answered
        // ticket are held, not a decoded row.
        let mut responses: Vec<ResponseTimes> = Vec::new();
        {
            let query = format!(
                "SELECT t.desk, t.queue, COALESCE(t.priority, '') AS priority, t.created_at, t.first_response_at
                 FROM tickets t WHERE {IN_PERIOD} AND t.first_response_at IS NOT NULL
                 ORDER BY t.desk, t.queue, COALESCE(t.priority, '')"
            );
            let mut rows = sqlx::query(&query)
                .bind(q.from_ms)
                .bind(q.to_ms)
                .bind(&desk)
                .fetch(&mut *tx);
            while let Some(r) = rows.try_next().await? {
                let (d, queue, p): (String, String, Option<String>) =
                    (r.try_get("desk")?, r.try_get("queue")?, priority(&r)?);
                let times = (r.try_get("created_at")?, r.try_get("first_response_at")?);
                match responses.last_mut() {
                    Some(g) if g.desk == d && g.queue == queue && g.priority == p => {
                        g.times.push(times)
                    }
                    _ => responses.push(ResponseTimes {
                        desk: d,
                        queue,
                        priority: p,
                        times: vec![times],
                    }),
                }
            }
        }

        let rows = sqlx::query(&format!(
            "SELECT t.desk, t.queue, COALESCE(t.priority, '') AS priority, e.detail, COUNT(*) AS n
             FROM tickets t JOIN events e ON e.ticket_number = t.number
             WHERE {IN_PERIOD} AND e.kind = 'escalation'
             GROUP BY t.desk, t.queue, COALESCE(t.priority, ''), e.detail
             ORDER BY t.desk, t.queue, COALESCE(t.priority, ''), e.detail"
        ))
        .bind(q.from_ms)
        .bind(q.to_ms)
        .bind(&desk)
        .fetch_all(&mut *tx)
        .await?;
        let escalations = rows
            .iter()
            .map(|r| {
                Ok(EscalationRows {
                    desk: r.try_get("desk")?,
                    queue: r.try_get("queue")?,
                    priority: priority(r)?,
                    detail: r.try_get("detail")?,
                    count: r.try_get("n")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        // Buckets are counted from the start of the period, which is a local
        // midnight and so on a 15-minute boundary itself.
        let rows = sqlx::query(
            "SELECT m.mailbox, (m.received_at - $1) / $3 AS bucket, COUNT(*) AS n
             FROM messages m WHERE m.received_at >= $1 AND m.received_at < $2
             GROUP BY m.mailbox, (m.received_at - $1) / $3
             ORDER BY m.mailbox, bucket",
        )
        .bind(q.from_ms)
        .bind(q.to_ms)
        .bind(BUCKET_MS)
        .fetch_all(&mut *tx)
        .await?;
        let messages = rows
            .iter()
            .map(|r| {
                Ok(BucketCount {
                    key: r.try_get("mailbox")?,
                    desk: String::new(),
                    start_ms: bucket_start(q.from_ms, r.try_get("bucket")?),
                    count: r.try_get("n")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        let rows = sqlx::query(&format!(
            "SELECT t.desk, t.queue, (t.created_at - $1) / $4 AS bucket, COUNT(*) AS n
             FROM tickets t WHERE {IN_PERIOD}
             GROUP BY t.desk, t.queue, (t.created_at - $1) / $4
             ORDER BY t.desk, t.queue, bucket"
        ))
        .bind(q.from_ms)
        .bind(q.to_ms)
        .bind(&desk)
        .bind(BUCKET_MS)
        .fetch_all(&mut *tx)
        .await?;
        let tickets = rows
            .iter()
            .map(|r| {
                Ok(BucketCount {
                    key: r.try_get("queue")?,
                    desk: r.try_get("desk")?,
                    start_ms: bucket_start(q.from_ms, r.try_get("bucket")?),
                    count: r.try_get("n")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        tx.commit().await?;
        Ok(ReportData {
            groups,
            responses,
            escalations,
            messages,
            tickets,
        })
    }
}

impl Store {
    /// Queues mail about no ticket (the report card to a desk's managers) in
    /// a transaction of its own; the sender delivers it like any other.
    /// Returns the outbox id.
    pub async fn queue_mail_alone(&self, m: &NewMail<'_>) -> Result<i64, StoreError> {
        let first = m
            .rcpt
            .first()
            .map(|r| r.to_ascii_lowercase())
            .unwrap_or_default();
        let now = now_ms();
        let (codec, stored) = super::codec::encode_mail(m.raw);
        let row = sqlx::query(
            "INSERT INTO outbox (ticket_number, kind, mail_from, rcpt, first_rcpt, subject, message_id, raw,
               raw_codec, status, attempts, next_attempt_at, created_at)
             VALUES (NULL, $1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9) RETURNING id",
        )
        .bind(m.kind)
        .bind(text(m.from))
        .bind(json(&m.rcpt))
        .bind(text(&first))
        .bind(text(m.subject))
        .bind(text(m.message_id))
        .bind(stored)
        .bind(codec)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }
}

/// The priority column, `''` meaning none.
fn priority(r: &AnyRow) -> Result<Option<String>, sqlx::Error> {
    let p: String = r.try_get("priority")?;
    Ok((!p.is_empty()).then_some(p))
}

/// The start of bucket `n` of a period starting at `from_ms`.
fn bucket_start(from_ms: i64, n: i64) -> i64 {
    from_ms.saturating_add(n.saturating_mul(BUCKET_MS))
}
