//! The outbox: a claimed queue of composed mail.
//!
//! Rows are written by [`Tx::queue_mail`] in the transaction of their cause.
//! A sender claims due rows before it sends them ([`Store::claim_outbox`]):
//! the claim names the sender and expires (`claimed_until`), so two daemons
//! on one PostgreSQL database never send the same mail twice (`FOR UPDATE
//! SKIP LOCKED`; SQLite has one writer), and the mail a crashed sender had
//! claimed is sent by another once its claim has expired.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::deferred::{OutboxBody, OutboxRow};
use super::write::insert_event;
use super::{Backend, Store, StoreError, Tx, from_json, json, text};
use crate::clock::now_ms;

/// The columns of an [`OutboxMail`].
const MAIL_COLUMNS: &str =
    "id, ticket_number, kind, mail_from, rcpt, raw, raw_codec, attempts, created_at";

/// The columns of an [`OutboxSummary`].
const SUMMARY_COLUMNS: &str =
    "id, ticket_number, kind, rcpt, subject, message_id, status, attempts, next_attempt_at,
   last_error, created_at, sent_at";

/// One mail to queue (see [`Tx::queue_mail`]).
#[derive(Debug, Clone, Copy)]
pub struct NewMail<'a> {
    /// The template kind: `acknowledgement`, `queue_notification`, ...
    pub kind: &'a str,
    /// Envelope sender.
    pub from: &'a str,
    /// Envelope recipients.
    pub rcpt: &'a [String],
    pub subject: &'a str,
    /// Without angle brackets.
    pub message_id: &'a str,
    /// The whole RFC 5322 message (stored compressed, [`super::codec`]; the
    /// sender gets these very bytes back).
    pub raw: &'a [u8],
}

/// A mail whose recipients are decided and whose bytes are being composed
/// elsewhere (see [`Tx::queue_pending_mail`]): everything the caps and the
/// transaction's bookkeeping need is here; the rest arrives on `body`.
#[derive(Debug)]
pub struct PendingMail {
    pub kind: String,
    pub from: String,
    pub rcpt: Vec<String>,
    /// Without angle brackets.
    pub message_id: String,
    /// The composed mail, or why it could not be composed.
    pub body: tokio::sync::oneshot::Receiver<Result<ComposedMail, String>>,
}

/// The composed part of a [`PendingMail`].
#[derive(Debug)]
pub struct ComposedMail {
    pub subject: String,
    /// How `stored` is stored ([`super::codec::encode_mail`]).
    pub codec: &'static str,
    pub stored: Vec<u8>,
}

impl ComposedMail {
    /// `raw` with its subject, encoded for the outbox.
    pub fn encode(subject: &str, raw: &[u8]) -> ComposedMail {
        let (codec, stored) = super::codec::encode_mail(raw);
        ComposedMail {
            subject: text(subject),
            codec,
            stored,
        }
    }
}

/// One outbox row, for the sender.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    pub id: i64,
    pub ticket_number: Option<i64>,
    pub kind: String,
    pub from: String,
    pub rcpt: Vec<String>,
    pub raw: Vec<u8>,
    pub attempts: i64,
    pub created_at: i64,
}

impl OutboxMail {
    /// The row, or (its id and) why its stored mail cannot be decoded.
    fn from_row(
        r: &AnyRow,
        max_message: usize,
    ) -> Result<Result<OutboxMail, (i64, StoreError)>, StoreError> {
        let id = r.try_get("id")?;
        let raw = match super::mail_raw_of(r, max_message) {
            Ok(raw) => raw,
            Err(e @ StoreError::Codec(_)) => return Ok(Err((id, e))),
            Err(e) => return Err(e),
        };
        Ok(Ok(OutboxMail {
            id,
            ticket_number: r.try_get("ticket_number")?,
            kind: r.try_get("kind")?,
            from: r.try_get("mail_from")?,
            rcpt: from_json(r, "rcpt")?,
            raw,
            attempts: r.try_get("attempts")?,
            created_at: r.try_get("created_at")?,
        }))
    }
}

/// One outbox row, for people.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxSummary {
    pub id: i64,
    pub ticket_number: Option<i64>,
    pub kind: String,
    pub rcpt: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub status: String,
    pub attempts: i64,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::clock::json_time::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::clock::json_time::opt_ms")]
    pub sent_at: Option<i64>,
}

impl OutboxSummary {
    fn from_row(r: &AnyRow) -> Result<OutboxSummary, sqlx::Error> {
        Ok(OutboxSummary {
            id: r.try_get("id")?,
            ticket_number: r.try_get("ticket_number")?,
            kind: r.try_get("kind")?,
            rcpt: from_json(r, "rcpt")?,
            subject: r.try_get("subject")?,
            message_id: r.try_get("message_id")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            last_error: r.try_get("last_error")?,
            created_at: r.try_get("created_at")?,
            sent_at: r.try_get("sent_at")?,
        })
    }
}

impl Tx {
    /// Queues one mail about ticket `number`, due now. The row is written
    /// with the transaction's other deferred rows (`deferred`), before any
    /// statement that could read it and before COMMIT.
    pub async fn queue_mail(&mut self, number: i64, m: &NewMail<'_>) -> Result<(), StoreError> {
        let composed = ComposedMail::encode(m.subject, m.raw);
        self.hold_mail(
            number,
            m.kind,
            m.from,
            m.rcpt,
            m.message_id,
            OutboxBody::Ready(composed),
        );
        Ok(())
    }

    /// Queues one mail about ticket `number` whose bytes are still being
    /// composed: it counts for the caps at once, and its row waits for
    /// them when it is written (with the other deferred rows, before any
    /// statement that could read it and before COMMIT). A mail that could
    /// not be composed fails that write with [`StoreError::Composing`], and
    /// with it the transaction.
    pub fn queue_pending_mail(&mut self, number: i64, m: PendingMail) {
        self.hold_mail(
            number,
            &m.kind,
            &m.from,
            &m.rcpt,
            &m.message_id,
            OutboxBody::Pending(m.body),
        );
    }

    fn hold_mail(
        &mut self,
        number: i64,
        kind: &str,
        from: &str,
        rcpt: &[String],
        message_id: &str,
        body: OutboxBody,
    ) {
        let first = rcpt
            .first()
            .map(|r| r.to_ascii_lowercase())
            .unwrap_or_default();
        let created_at = self.now();
        self.known.wrote(format!("m:{}", text(message_id)));
        self.known
            .queued(number, kind == "acknowledgement", &text(&first), created_at);
        let row = OutboxRow {
            number,
            kind: kind.to_string(),
            from: text(from),
            rcpt: json(&rcpt),
            first_rcpt: text(&first),
            message_id: text(message_id),
            created_at,
        };
        self.deferred.outbox.push((row, body));
    }
}

impl Store {
    /// Pending mail whose next attempt is due, oldest first, claimed or not:
    /// for looking, not for sending (see [`Store::claim_outbox`]).
    pub async fn due_outbox(&self, now: i64, limit: i64) -> Result<Vec<OutboxMail>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MAIL_COLUMNS} FROM outbox
             WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        self.decoded(&rows).await
    }

    /// The mails of `rows`; a row whose stored mail cannot be decoded is
    /// marked failed with the reason (its bytes kept, for an operator), so
    /// that it never blocks the mail behind it.
    async fn decoded(&self, rows: &[AnyRow]) -> Result<Vec<OutboxMail>, StoreError> {
        let mut mail = Vec::with_capacity(rows.len());
        for r in rows {
            match OutboxMail::from_row(r, self.max_message)? {
                Ok(m) => mail.push(m),
                Err((id, e)) => {
                    tracing::error!(outbox = id, error = %e, "outbox mail cannot be decoded; marked failed");
                    self.outbox_failed(id, &e.to_string()).await?;
                }
            }
        }
        Ok(mail)
    }

    /// Claims for `claimer` up to `limit` pending mails that are due at `now`
    /// and not claimed by a claim still running, until `until` (ms since the
    /// epoch); oldest first. A mail is sent only by the sender that holds
    /// its claim, and only while the claim runs.
    pub async fn claim_outbox(
        &self,
        claimer: &str,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        // PostgreSQL: rows another sender is claiming right now are skipped,
        // not waited for; SQLite has one writer, so the statement is atomic.
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2
             WHERE id IN (
               SELECT id FROM outbox
               WHERE status = 'pending' AND next_attempt_at <= $3
                 AND (claimed_until IS NULL OR claimed_until <= $3)
               ORDER BY id LIMIT $4 {lock})
             RETURNING {MAIL_COLUMNS}"
        ))
        .bind(claimer)
        .bind(until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut mail = self.decoded(&rows).await?;
        mail.sort_by_key(|m| m.id);
        Ok(mail)
    }

    /// Gives up `claimer`'s claims on these mails unsent, for any sender to take.
    pub async fn release_outbox(&self, claimer: &str, ids: &[i64]) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND claimed_by = $2",
            )
            .bind(id)
            .bind(claimer)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// When the next pending mail is due (or its claim expires), if any is pending.
    pub async fn next_outbox_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_attempt_at
                             THEN claimed_until ELSE next_attempt_at END) AS due
             FROM outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("due")?)
    }

    /// Records that the server accepted a mail.
    pub async fn outbox_sent(&self, id: i64, response: &str) -> Result<(), StoreError> {
        self.outbox_finish(id, true, response).await
    }

    /// Records a permanent failure: the mail will not be tried again unless retried by hand.
    pub async fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.outbox_finish(id, false, error).await
    }

    /// Ends a mail's life as `sent` (with the server's answer) or `failed`
    /// (with the reason), and records it in its ticket's history.
    async fn outbox_finish(&self, id: i64, sent: bool, words: &str) -> Result<(), StoreError> {
        self.outbox_finish_many(&[(id, sent, words.to_string())])
            .await
    }

    /// [`Store::outbox_sent`] / [`Store::outbox_failed`] for many mails in one
    /// transaction (the sender's lanes share one commit: a group commit).
    /// Each entry: the mail, whether it was sent, the server's words or the reason.
    pub async fn outbox_finish_many(&self, done: &[(i64, bool, String)]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for (id, sent, words) in done {
            let (id, sent, words) = (*id, *sent, words.as_str());
            let row = sqlx::query(
            "UPDATE outbox SET status = $1, attempts = attempts + 1, sent_at = $2, last_error = $3,
               claimed_by = NULL, claimed_until = NULL
             WHERE id = $4 RETURNING ticket_number, kind",
        )
        .bind(if sent { "sent" } else { "failed" })
        .bind(sent.then_some(now))
        .bind((!sent).then(|| text(words)))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
            if let Some(r) = row
                && let Some(number) = r.try_get::<Option<i64>, _>("ticket_number")?
            {
                let kind: String = r.try_get("kind")?;
                let (event, detail) = if sent {
                    (
                        "mail sent",
                        serde_json::json!({"outbox": id, "kind": kind, "response": text(words)}),
                    )
                } else {
                    (
                        "mail failed",
                        serde_json::json!({"outbox": id, "kind": kind, "error": text(words)}),
                    )
                };
                insert_event(&mut tx, number, now, event, &detail).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a temporary failure; the mail is tried again at `next_at`
    /// (by any sender: the claim ends).
    pub async fn outbox_retry(&self, id: i64, next_at: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2,
               claimed_by = NULL, claimed_until = NULL
             WHERE id = $3",
        )
        .bind(next_at)
        .bind(text(error))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts a mail back in line for an attempt now. False if there is no such mail
    /// or it was already sent.
    pub async fn outbox_requeue(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $1 WHERE id = $2 AND status <> 'sent'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_outbox(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxSummary>, StoreError> {
        self.outbox_where(status, None, limit).await
    }

    /// The mail about one ticket, oldest first.
    pub async fn ticket_outbox(&self, number: i64) -> Result<Vec<OutboxSummary>, StoreError> {
        let mut all = self.outbox_where(None, Some(number), i64::MAX).await?;
        all.reverse();
        Ok(all)
    }

    async fn outbox_where(
        &self,
        status: Option<&str>,
        ticket: Option<i64>,
        limit: i64,
    ) -> Result<Vec<OutboxSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS}
             FROM outbox WHERE ($1 = '' OR status = $1) AND ($2 < 0 OR ticket_number = $2)
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(status.unwrap_or(""))
        .bind(ticket.unwrap_or(-1))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(OutboxSummary::from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }
}
