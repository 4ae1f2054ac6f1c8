//! The write transaction: [`Tx`] and the primitives the pipeline records a
//! batch with. Each primitive is one statement (or one small group); what a
//! message means (duplicate, reply, new ticket, which mail) is decided by
//! the caller.

use std::sync::Arc;

use sqlx::{Any, Row, Transaction};

use super::deferred::{AttachmentRow, Deferred, EventRow, MessageRow, TicketRow};
use super::{Cursor, Status, Store, StoreError, json, opt_text, text};
use crate::classify::Decision;
use crate::clock::now_ms;
use crate::parse::ParsedMessage;
use crate::thread::{Candidate, Found, ThreadKeys};

/// One write transaction. Dropped without [`Tx::commit`], it rolls back.
/// Whoever runs it hands any error of it to [`Store::failed`] (after dropping it).
#[derive(Debug)]
pub struct Tx {
    pub(super) tx: Transaction<'static, Any>,
    first_number: i64,
    pub(super) now: i64,
    pub(super) backend: super::Backend,
    /// Rows held back until the next statement that may need them, and COMMIT.
    pub(super) deferred: Deferred,
    /// The last ticket number taken in this transaction: the next ones are
    /// counted in memory (the counter row is this transaction's, locked on
    /// PostgreSQL, until it ends).
    last_number: Option<i64>,
    /// Tickets made in this transaction: requester and alert key, as stored
    /// (what [`Tx::recent_notified`] matches on).
    made: std::collections::HashMap<i64, (String, Option<String>)>,
    /// Message ids taken ahead and not used yet (PostgreSQL: from the
    /// sequence, a block at a time), or the next one (SQLite: counted on
    /// from the largest, under the transaction's write lock).
    message_ids: std::collections::VecDeque<i64>,
    pub(super) max_message: usize,
    /// What the batch's look-ahead found absent, and what this transaction
    /// wrote since (`lookahead`).
    pub(super) known: super::lookahead::Known,
}

/// An earlier holder of a dedupe key (see [`Tx::seen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// In `quarantine` (else in `messages`).
    pub in_quarantine: bool,
    /// The ticket number of a message, or the id of a quarantine row.
    pub id: i64,
    /// The id of the row itself (`messages.id` or `quarantine.id`).
    pub row: i64,
    /// The key it was stored under.
    pub key: String,
    pub content_hash: Option<String>,
}

/// The counts the caps of a new ticket's mail are decided on (see
/// [`Tx::recent_caps`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentCaps {
    /// Acknowledgements to the sender in the window.
    pub acks: i64,
    /// The sender's tickets notified in the window.
    pub by_sender: i64,
    /// The alert key's tickets notified in the window.
    pub by_alert: i64,
}

/// A message row to insert (see [`Tx::insert_message`]).
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    pub key: &'a str,
    pub content_hash: Option<&'a str>,
    pub mailbox: &'a str,
    pub origin: &'a str,
    pub parsed: &'a ParsedMessage,
    pub bytes: MessageBytes<'a>,
}

/// The raw message of a row to insert.
#[derive(Debug, Clone, Copy)]
pub enum MessageBytes<'a> {
    /// As received: encoded here.
    Raw(&'a [u8]),
    /// Already encoded for the store ([`super::codec::encode`]) by the
    /// caller, off the committing thread: shared, not copied, until the
    /// row is written.
    Encoded(&'static str, &'a Arc<Vec<u8>>),
}

/// A quarantine row to insert (see [`Tx::quarantine`]).
#[derive(Debug, Clone, Copy)]
pub struct NewQuarantine<'a> {
    pub key: &'a str,
    pub content_hash: Option<&'a str>,
    pub mailbox: &'a str,
    pub origin: &'a str,
    pub reason: &'a str,
    pub message_id: Option<&'a str>,
    pub from: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub size: u64,
    pub headers: &'a [u8],
}

impl Store {
    /// Opens a write transaction; its statements see one `now` ([`Tx::now`]).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        self.begin_at(now_ms()).await
    }

    /// Opens a write transaction whose `now` is `now` (ms): for work driven
    /// by an injected clock (the SLA scheduler), and tests.
    pub async fn begin_at(&self, now: i64) -> Result<Tx, StoreError> {
        Ok(Tx {
            tx: self.pool.begin().await?,
            first_number: self.first_number,
            now,
            backend: self.backend,
            deferred: Deferred::default(),
            last_number: None,
            made: std::collections::HashMap::new(),
            message_ids: std::collections::VecDeque::new(),
            max_message: self.max_message,
            known: Default::default(),
        })
    }
}

impl Tx {
    /// The time of this transaction, ms since the epoch.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Commits. `Ok` means durable: the COMMIT returned OK on a connection
    /// that was in autocommit mode before (the pool's clean-connection
    /// rules), and SQLite runs with `synchronous = FULL`. Only then may the
    /// caller acknowledge the messages at their source.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        super::deferred::flush(&mut self.tx, &mut self.deferred, self.backend).await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Every earlier holder of `key` or of `base_key` (messages and
    /// quarantine), in one round trip.
    pub async fn seen(&mut self, base_key: &str, key: &str) -> Result<Vec<Seen>, StoreError> {
        let rows = sqlx::query(
            "SELECT CAST(0 AS BIGINT) AS in_quarantine, ticket_number AS id, id AS row_id, dedupe_key, content_hash
               FROM messages WHERE dedupe_key = $1 OR dedupe_key = $2
             UNION ALL
             SELECT CAST(1 AS BIGINT), id, id, dedupe_key, content_hash
               FROM quarantine WHERE dedupe_key = $1 OR dedupe_key = $2",
        )
        .bind(base_key)
        .bind(key)
        .fetch_all(self.db().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Seen {
                    in_quarantine: r.try_get::<i64, _>("in_quarantine")? == 1,
                    id: r.try_get("id")?,
                    row: r.try_get("row_id")?,
                    key: r.try_get("dedupe_key")?,
                    content_hash: r.try_get("content_hash")?,
                })
            })
            .collect()
    }

    /// What a message's arrival is looked up by, in one round trip: the
    /// ticket of the mail we queued with `message_id` (as [`Tx::own_mail`])
    /// and every earlier holder of `key` or `base_key` (as [`Tx::seen`]).
    pub async fn arrival(
        &mut self,
        message_id: Option<&str>,
        base_key: &str,
        key: &str,
    ) -> Result<(Option<i64>, Vec<Seen>), StoreError> {
        // Found absent by the batch's look-ahead: no statement.
        if self.known.absent(&format!("d:{base_key}"))
            && self.known.absent(&format!("d:{key}"))
            && message_id.is_none_or(|m| self.known.absent(&format!("m:{}", text(m))))
        {
            return Ok((None, Vec::new()));
        }
        let rows = sqlx::query(
            "SELECT CAST(0 AS BIGINT) AS src, ticket_number AS id, id AS row_id, dedupe_key, content_hash
               FROM messages WHERE dedupe_key = $1 OR dedupe_key = $2
             UNION ALL
             SELECT CAST(1 AS BIGINT), id, id, dedupe_key, content_hash
               FROM quarantine WHERE dedupe_key = $1 OR dedupe_key = $2
             UNION ALL
             SELECT CAST(2 AS BIGINT), ticket_number, id, CAST('' AS TEXT), CAST(NULL AS TEXT)
               FROM outbox WHERE message_id = $3 AND ticket_number IS NOT NULL",
        )
        .bind(base_key)
        .bind(key)
        .bind(opt_text(message_id))
        .fetch_all(self.db().await?)
        .await?;
        let mut seen = Vec::with_capacity(rows.len());
        // The first mail we queued with that Message-ID (lowest id).
        let mut own: Option<(i64, i64)> = None;
        for r in &rows {
            let src: i64 = r.try_get("src")?;
            let id: i64 = r.try_get("id")?;
            let row: i64 = r.try_get("row_id")?;
            if src == 2 {
                if own.is_none_or(|(first, _)| row < first) {
                    own = Some((row, id));
                }
                continue;
            }
            seen.push(Seen {
                in_quarantine: src == 1,
                id,
                row,
                key: r.try_get("dedupe_key")?,
                content_hash: r.try_get("content_hash")?,
            });
        }
        let own = match (own, message_id) {
            (Some((_, number)), _) => Some(number),
            // Mail queued in this transaction, not yet written.
            (None, Some(message_id)) => {
                let message_id = text(message_id);
                self.deferred
                    .outbox
                    .iter()
                    .find(|(m, _)| m.message_id == message_id)
                    .map(|(m, _)| m.number)
            }
            (None, None) => None,
        };
        Ok((own, seen))
    }

    /// The raw bytes of a stored message.
    pub async fn message_raw(&mut self, message: i64) -> Result<Vec<u8>, StoreError> {
        let row = sqlx::query("SELECT raw, raw_codec FROM messages WHERE id = $1")
            .bind(message)
            .fetch_one(self.db().await?)
            .await?;
        super::message_raw_of(&row, self.max_message)
    }

    /// Keeps a message's content hash (one stored before hashes were kept).
    pub async fn set_content_hash(&mut self, message: i64, hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET content_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(message)
            .execute(self.db().await?)
            .await?;
        Ok(())
    }

    /// Sets a message aside; returns the quarantine row's id.
    pub async fn quarantine(&mut self, q: &NewQuarantine<'_>) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO quarantine (dedupe_key, mailbox, origin, reason, message_id, from_addr, subject, size, headers, created_at, content_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(q.key)
        .bind(q.mailbox)
        .bind(q.origin)
        .bind(text(q.reason))
        .bind(opt_text(q.message_id))
        .bind(opt_text(q.from))
        .bind(opt_text(q.subject))
        .bind(q.size as i64)
        .bind(q.headers.to_vec())
        .bind(self.now)
        .bind(q.content_hash)
        .fetch_one(&mut *self.tx)
        .await?;
        self.known.wrote(format!("d:{}", q.key));
        Ok(row.try_get("id")?)
    }

    /// What a message's thread keys name, for `thread::decide`: the open
    /// ticket of its alert, the ticket of the most specific message it refers
    /// to, and the existing tickets its case tags name within their own desk
    /// (at most `thread::MAX_TAGS`).
    pub async fn thread_found(
        &mut self,
        keys: &ThreadKeys,
        alert_key: Option<&str>,
    ) -> Result<Found, StoreError> {
        let mut found = Found::default();
        // A repeated alert lands on the open ticket of the same alert.
        if let Some(key) = alert_key
            && !self.known.absent(&format!("a:{}", text(key)))
        {
            let row = sqlx::query(
                "SELECT number FROM tickets WHERE alert_key = $1 AND status <> $2 ORDER BY number DESC LIMIT 1",
            )
            .bind(text(key))
            .bind(Status::Resolved.as_str())
            .fetch_optional(self.db().await?)
            .await?;
            if let Some(row) = row {
                found.alert = Some(row.try_get("number")?);
            }
        }
        if let Some((id, number)) = self.referenced_ticket(&keys.referenced).await? {
            found.referenced = self.candidate(number).await?.map(|c| (id, c));
        }
        // A case tag names a ticket of its own desk only.
        for tag in &keys.tagged {
            if self.known.absent(&format!("n:{}", tag.number)) {
                continue;
            }
            let row = sqlx::query(
                "SELECT number FROM tickets WHERE number = $1 AND UPPER(desk_tag) = UPPER($2)",
            )
            .bind(tag.number)
            .bind(text(&tag.desk_tag))
            .fetch_optional(self.db().await?)
            .await?;
            if row.is_some()
                && let Some(c) = self.candidate(tag.number).await?
            {
                found.tagged.push(c);
            }
        }
        Ok(found)
    }

    /// A ticket as a threading candidate: desk, requester, recipient list,
    /// and when it was resolved (`updated_at` for a resolved ticket from
    /// before `resolved_at` was kept).
    async fn candidate(&mut self, number: i64) -> Result<Option<Candidate>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT number, desk, requester, status, resolved_at, updated_at FROM tickets WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(self.db().await?)
        .await?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        let resolved_at = if status == Status::Resolved.as_str() {
            let at: Option<i64> = row.try_get("resolved_at")?;
            Some(match at {
                Some(at) => at,
                None => row.try_get("updated_at")?,
            })
        } else {
            None
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
        Ok(Some(Candidate {
            number: row.try_get("number")?,
            desk: row.try_get("desk")?,
            requester: row.try_get("requester")?,
            recipients,
            resolved_at,
        }))
    }

    /// The ticket of the mail we queued with this Message-ID: mail the desk
    /// sent itself, come back through a watched mailbox.
    pub async fn own_mail(&mut self, message_id: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT ticket_number FROM outbox WHERE message_id = $1 AND ticket_number IS NOT NULL
             ORDER BY id LIMIT 1",
        )
        .bind(text(message_id))
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some(r) = row {
            return Ok(Some(r.try_get("ticket_number")?));
        }
        // Mail queued in this transaction, not yet written (newer than any row).
        let message_id = text(message_id);
        Ok(self
            .deferred
            .outbox
            .iter()
            .find(|(m, _)| m.message_id == message_id)
            .map(|(m, _)| m.number))
    }

    /// Records that ticket `ticket` was opened because of `other`, with the
    /// reason (`ticket_links`).
    pub async fn link(&mut self, ticket: i64, other: i64, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ticket_links (ticket, other, reason, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(ticket)
        .bind(other)
        .bind(reason)
        .bind(self.now)
        .execute(self.db().await?)
        .await?;
        Ok(())
    }

    /// The ticket of the most specific Message-ID in `ids` (In-Reply-To first,
    /// then References newest first) that names one of its messages or a mail
    /// we sent about it. One query however many ids (the thread keys are bounded).
    async fn referenced_ticket(
        &mut self,
        ids: &[String],
    ) -> Result<Option<(String, i64)>, StoreError> {
        if ids
            .iter()
            .all(|id| self.known.absent(&format!("m:{}", text(id))))
        {
            // None (or found absent by the look-ahead).
            return Ok(None);
        }
        // For each id: the ticket of its first stored message (source 0), else
        // of the first mail we sent with it (source 1).
        let sql = match self.backend {
            super::Backend::Postgres => {
                let params: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
                let list = params.join(", ");
                format!(
                    "SELECT message_id, ticket_number, CAST(0 AS BIGINT) AS source, id FROM messages WHERE message_id IN ({list})
                     UNION ALL
                     SELECT message_id, ticket_number, CAST(1 AS BIGINT), id FROM outbox
                       WHERE message_id IN ({list}) AND ticket_number IS NOT NULL"
                )
            }
            // Messages through the dedupe key's index (`super::mid_range`);
            // anonymous parameters, bound in order.
            super::Backend::Sqlite => format!(
                "SELECT message_id, ticket_number, CAST(0 AS BIGINT) AS source, id FROM messages WHERE {}
                 UNION ALL
                 SELECT message_id, ticket_number, CAST(1 AS BIGINT), id FROM outbox
                   WHERE message_id IN ({}) AND ticket_number IS NOT NULL",
                vec![super::MID_RANGE_SQL; ids.len()].join(" OR "),
                vec!["?"; ids.len()].join(", ")
            ),
        };
        let mut query = sqlx::query(&sql);
        if self.backend == super::Backend::Sqlite {
            for id in ids {
                let (from, to) = super::mid_range(id);
                query = query.bind(from).bind(to).bind(text(id));
            }
        }
        for id in ids {
            query = query.bind(text(id));
        }
        let rows = query.fetch_all(self.db().await?).await?;
        let mut best: std::collections::HashMap<String, (i64, i64, i64)> =
            std::collections::HashMap::new();
        for r in &rows {
            let mid: String = r.try_get("message_id")?;
            let number: i64 = r.try_get("ticket_number")?;
            let rank = (r.try_get::<i64, _>("source")?, r.try_get::<i64, _>("id")?);
            let entry = best.entry(mid).or_insert((rank.0, rank.1, number));
            if rank < (entry.0, entry.1) {
                *entry = (rank.0, rank.1, number);
            }
        }
        Ok(ids.iter().find_map(|id| {
            best.get(text(id).as_str())
                .map(|&(_, _, number)| (id.clone(), number))
        }))
    }

    /// Makes a ticket (status new) with the next number and returns it. The
    /// SLA scheduler looks at it at its next tick (`sla_next_at` 0).
    pub async fn create_ticket(
        &mut self,
        parsed: &ParsedMessage,
        decision: &Decision,
        mailbox: &str,
    ) -> Result<i64, StoreError> {
        let number = self.next_number().await?;
        let requester = parsed.requester();
        // Written with the batch's other deferred rows (`deferred`).
        self.deferred.tickets.push(TicketRow {
            number,
            desk: decision.desk.clone(),
            desk_tag: decision.desk_tag.clone(),
            queue: decision.queue.clone(),
            kind: decision.kind.as_str(),
            requester: text(requester.map(|a| a.address.as_str()).unwrap_or("unknown")),
            requester_name: opt_text(requester.and_then(|a| a.name.as_deref())),
            subject: text(parsed.subject.as_deref().unwrap_or("(no subject)")),
            mailbox: mailbox.to_string(),
            at: self.now,
            urgency: decision.urgency.as_str(),
            impact: decision.impact.as_str(),
            priority: decision.priority.as_str(),
            due_ms: decision.due_ms,
            tags: json(&decision.tags),
            alert_key: opt_text(decision.alert_key.as_deref()),
        });
        self.known.wrote(format!("n:{number}"));
        if let Some(key) = &decision.alert_key {
            self.known.wrote(format!("a:{}", text(key)));
        }
        self.made.insert(
            number,
            (
                text(requester.map(|a| a.address.as_str()).unwrap_or("unknown")),
                opt_text(decision.alert_key.as_deref()),
            ),
        );
        Ok(number)
    }

    /// The next ticket number. A counter row, not a sequence: numbers stay
    /// gap-free across rollbacks.
    async fn next_number(&mut self) -> Result<i64, StoreError> {
        if let Some(last) = self.last_number {
            let number = last + 1;
            self.last_number = Some(number);
            self.deferred.counter = Some(number);
            return Ok(number);
        }
        let row = sqlx::query(
            "UPDATE counters SET value = value + 1 WHERE name = 'ticket' RETURNING value",
        )
        .fetch_optional(&mut *self.tx)
        .await?;
        let number = match row {
            Some(r) => r.try_get("value")?,
            None => {
                sqlx::query("INSERT INTO counters (name, value) VALUES ('ticket', $1)")
                    .bind(self.first_number)
                    .execute(&mut *self.tx)
                    .await?;
                self.first_number
            }
        };
        self.last_number = Some(number);
        Ok(number)
    }

    /// The id of the next message row. PostgreSQL: taken from the table's
    /// sequence, a block of the batch's size at a time (unused ones are a
    /// gap, as a rollback leaves). SQLite: one more than the largest ever
    /// given (`sqlite_sequence`, the table's AUTOINCREMENT), read once; the
    /// transaction writes before it commits, so a writer that committed
    /// since it read makes it fail (busy), and the batch is retried.
    async fn next_message_id(&mut self) -> Result<i64, StoreError> {
        if self.message_ids.is_empty() {
            self.take_message_ids().await?;
        }
        let id = self
            .message_ids
            .pop_front()
            // The sequence gave no rows.
            .ok_or(StoreError::Db(sqlx::Error::RowNotFound))?;
        if self.backend == super::Backend::Sqlite {
            // Counted on: the transaction holds SQLite's one write lock.
            self.message_ids.push_back(id + 1);
        }
        Ok(id)
    }

    /// Fills `message_ids`: a block of the sequence (PostgreSQL), or the
    /// next id after the largest ever given (SQLite).
    async fn take_message_ids(&mut self) -> Result<(), StoreError> {
        match self.backend {
            super::Backend::Postgres => {
                let block = self.known.batch.clamp(1, 1000) as i64;
                let rows = sqlx::query(
                    "SELECT nextval(pg_get_serial_sequence('messages', 'id')) AS id FROM generate_series(1, $1)",
                )
                .bind(block)
                .fetch_all(&mut *self.tx)
                .await?;
                let mut ids = rows
                    .iter()
                    .map(|r| r.try_get::<i64, _>("id"))
                    .collect::<Result<Vec<_>, _>>()?;
                ids.sort_unstable();
                self.message_ids.extend(ids);
            }
            super::Backend::Sqlite => {
                let row = sqlx::query(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),
                                COALESCE((SELECT MAX(id) FROM messages), 0)) + 1 AS id",
                )
                .fetch_one(&mut *self.tx)
                .await?;
                self.message_ids.push_back(row.try_get("id")?);
            }
        }
        Ok(())
    }

    /// Adds addresses (lower-cased) to a ticket's recipient list.
    pub async fn add_recipients(
        &mut self,
        number: i64,
        addresses: &[String],
    ) -> Result<(), StoreError> {
        // Written with the batch's other deferred rows (`deferred`).
        for address in addresses {
            self.deferred
                .recipients
                .push((number, text(&address.to_ascii_lowercase())));
        }
        Ok(())
    }

    /// A reply arrived: the ticket is updated now (reopening is the
    /// caller's decision: [`Tx::move_status`]).
    pub async fn touch_for_reply(&mut self, number: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET updated_at = $1 WHERE number = $2")
            .bind(self.now)
            .bind(number)
            .execute(self.db().await?)
            .await?;
        Ok(())
    }

    /// Stores a message (raw bytes kept once, compressed: [`super::codec`];
    /// its decoded body is derived from them on read) and its attachments'
    /// metadata on a ticket; returns the message row's id.
    pub async fn insert_message(
        &mut self,
        number: i64,
        msg: &NewMessage<'_>,
    ) -> Result<i64, StoreError> {
        let m = msg.parsed;
        let (codec, stored) = match msg.bytes {
            MessageBytes::Encoded(codec, bytes) => (codec, Arc::clone(bytes)),
            MessageBytes::Raw(raw) => {
                let (codec, bytes) = super::codec::encode(raw);
                (codec, Arc::new(bytes))
            }
        };
        if self.deferred.message_bytes + stored.len() > super::deferred::MAX_HELD_BYTES {
            self.db().await?;
        }
        let id = self.next_message_id().await?;
        // Written with the batch's other deferred rows (`deferred`).
        self.deferred.message_bytes += stored.len();
        self.deferred.messages.push(MessageRow {
            id,
            number,
            key: msg.key.to_string(),
            message_id: opt_text(m.message_id.as_deref()),
            mailbox: msg.mailbox.to_string(),
            origin: msg.origin.to_string(),
            from_addr: opt_text(m.from.as_ref().map(|a| a.address.as_str())),
            from_name: opt_text(m.from.as_ref().and_then(|a| a.name.as_deref())),
            to: json(&m.to),
            cc: json(&m.cc),
            reply_to: json(&m.reply_to),
            subject: opt_text(m.subject.as_deref()),
            date: m.date,
            in_reply_to: json(&m.in_reply_to),
            refs: json(&m.references),
            auto: json(&m.auto),
            // `body_text` is derived from `raw` on read (`message_body_of`).
            body_source: json(&m.body_source).trim_matches('"').to_string(),
            problems: json(&m.problems),
            raw: stored,
            raw_size: m.size as i64,
            sha256: m.sha256.clone(),
            at: self.now,
            content_hash: msg.content_hash.map(str::to_string),
            codec,
        });
        self.known.wrote(format!("d:{}", msg.key));
        if let Some(mid) = &m.message_id {
            self.known.wrote(format!("m:{}", text(mid)));
        }
        // Written with the batch's other deferred rows (`deferred`).
        for a in &m.attachments {
            self.deferred.attachments.push(AttachmentRow {
                message: id,
                name: opt_text(a.name.as_deref()),
                content_type: text(&a.content_type),
                size: a.size as i64,
                sha256: a.sha256.clone(),
            });
        }
        Ok(id)
    }

    /// Appends to a ticket's history (actor `triaged`, at this transaction's time).
    pub async fn event(
        &mut self,
        number: i64,
        kind: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.defer_event(number, kind, "triaged", detail);
        Ok(())
    }

    /// Appends a history row, written with the batch's other deferred rows.
    pub(super) fn defer_event(
        &mut self,
        number: i64,
        kind: &str,
        actor: &str,
        detail: &serde_json::Value,
    ) {
        self.deferred.events.push(EventRow {
            number,
            at: self.now,
            kind: kind.to_string(),
            actor: text(actor),
            detail: json(detail),
        });
    }

    /// Moves a watched folder's cursor (committed with the batch).
    pub async fn set_cursor(&mut self, c: &Cursor) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mailbox_state (mailbox, uidvalidity, last_uid, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity,
               last_uid = excluded.last_uid, updated_at = excluded.updated_at",
        )
        .bind(&c.mailbox)
        .bind(i64::from(c.uidvalidity))
        .bind(i64::from(c.last_uid))
        .bind(self.now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Acknowledgements queued to `sender` (lower-cased) since `since`.
    pub async fn recent_acks(&mut self, sender: &str, since: i64) -> Result<i64, StoreError> {
        self.recent_mail("acknowledgement", sender, since).await
    }

    /// Mails of `kind` queued to `rcpt` (lower-cased; the first recipient)
    /// since `since`.
    pub async fn recent_mail(
        &mut self,
        kind: &str,
        rcpt: &str,
        since: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM outbox WHERE kind = $1 AND first_rcpt = $2 AND created_at > $3",
        )
        .bind(kind)
        .bind(text(rcpt))
        .bind(since)
        .fetch_one(&mut *self.tx)
        .await?;
        let stored: i64 = row.try_get("n")?;
        // And the mail queued in this transaction, not yet written.
        let rcpt = text(rcpt);
        let held = self
            .deferred
            .outbox
            .iter()
            .filter(|(m, _)| m.kind == kind && m.first_rcpt == rcpt && m.created_at > since)
            .count() as i64;
        Ok(stored + held)
    }

    /// What the caps of a new ticket's mail count, in one statement:
    /// acknowledgements queued to `sender` (lower-cased) since `since`
    /// (as [`Tx::recent_acks`]), and tickets notified (any mail but an
    /// acknowledgement) since `since` from this sender and with this alert
    /// key; 0 for one not given.
    pub async fn recent_caps(
        &mut self,
        sender: Option<&str>,
        alert_key: Option<&str>,
        since: i64,
    ) -> Result<RecentCaps, StoreError> {
        if let Some(caps) = self.caps_in_memory(sender, alert_key, since) {
            return Ok(caps);
        }
        // Mail queued in this transaction counts only for the tickets it is
        // about; when such a ticket may be the sender's or the alert's (or
        // was not made here, so is not known), the mail is written first.
        let sender_text = sender.map(text);
        let alert_text = alert_key.map(text);
        let relevant = self.deferred.outbox.iter().any(|(m, _)| {
            m.kind != "acknowledgement"
                && match self.made.get(&m.number) {
                    None => true,
                    Some((requester, alert)) => {
                        !requester.is_ascii()
                            || sender_text
                                .as_deref()
                                .is_some_and(|s| requester.eq_ignore_ascii_case(s))
                            || (alert.is_some() && *alert == alert_text)
                    }
                }
        });
        if relevant {
            self.db().await?;
        }
        // Tickets of the sender (or the alert key), each looked for in the
        // outbox by its number: indexed both ways (`tickets_requester_lower`,
        // `outbox_ticket`), never a scan of the window's mail.
        let row = sqlx::query(
            "SELECT
               (SELECT COUNT(*) FROM outbox WHERE kind = 'acknowledgement' AND first_rcpt = $1
                  AND created_at > $3) AS acks,
               (SELECT COUNT(*) FROM tickets t WHERE LOWER(t.requester) = $1
                  AND EXISTS (SELECT 1 FROM outbox o WHERE o.ticket_number = t.number
                                AND o.created_at > $3 AND o.kind <> 'acknowledgement')) AS by_sender,
               (SELECT COUNT(*) FROM tickets t WHERE t.alert_key = $2
                  AND EXISTS (SELECT 1 FROM outbox o WHERE o.ticket_number = t.number
                                AND o.created_at > $3 AND o.kind <> 'acknowledgement')) AS by_alert",
        )
        .bind(text(sender.unwrap_or("")))
        .bind(opt_text(alert_key))
        .bind(since)
        .fetch_one(&mut *self.tx)
        .await?;
        let acks = match &sender_text {
            Some(s) => {
                // Acknowledgements queued in this transaction and not yet
                // written (none, if written just now).
                let held = self
                    .deferred
                    .outbox
                    .iter()
                    .filter(|(m, _)| {
                        m.kind == "acknowledgement" && m.first_rcpt == *s && m.created_at > since
                    })
                    .count() as i64;
                row.try_get::<i64, _>("acks")? + held
            }
            None => 0,
        };
        let by_sender: i64 = if sender.is_some() {
            row.try_get("by_sender")?
        } else {
            0
        };
        let by_alert: i64 = if alert_key.is_some() {
            row.try_get("by_alert")?
        } else {
            0
        };
        Ok(RecentCaps {
            acks,
            by_sender,
            by_alert,
        })
    }
}

impl Tx {
    /// The caps' counts without a statement, when the batch's look-ahead
    /// counted this sender's and alert key's mail in the window: what the
    /// store held then, plus this transaction's own mail, known when every
    /// notification it queued is about a ticket it made (whose requester
    /// and alert key it knows). `None`: ask the store.
    fn caps_in_memory(
        &self,
        sender: Option<&str>,
        alert_key: Option<&str>,
        since: i64,
    ) -> Option<RecentCaps> {
        let sender = sender.map(text);
        let alert = alert_key.map(text);
        // What the store held when the transaction began (the look-ahead's
        // counts), to which this transaction's own mail is added below.
        let (stored_acks, stored_by_sender) = match &sender {
            Some(s) => {
                let asked = format!("s:{s}");
                (
                    self.known.caps_count(&asked, &format!("sa:{s}"), since)?,
                    self.known.caps_count(&asked, &format!("st:{s}"), since)?,
                )
            }
            None => (0, 0),
        };
        let stored_by_alert = match &alert {
            Some(a) => {
                let key = format!("c:{a}");
                self.known.caps_count(&key, &key, since)?
            }
            None => 0,
        };
        let mut acks = 0;
        let mut by_sender = std::collections::HashSet::new();
        let mut by_alert = std::collections::HashSet::new();
        for m in &self.known.mail {
            if m.at <= since {
                continue;
            }
            if m.acknowledgement {
                if sender.as_deref() == Some(m.first_rcpt.as_str()) {
                    acks += 1;
                }
                continue;
            }
            let (requester, key) = self.made.get(&m.number)?;
            // The store lower-cases with LOWER(), which folds more than
            // ASCII on PostgreSQL.
            if !requester.is_ascii() {
                return None;
            }
            if sender
                .as_deref()
                .is_some_and(|s| requester.eq_ignore_ascii_case(s))
            {
                by_sender.insert(m.number);
            }
            if alert.is_some() && *key == alert {
                by_alert.insert(m.number);
            }
        }
        Some(RecentCaps {
            acks: stored_acks + acks,
            by_sender: stored_by_sender + by_sender.len() as i64,
            by_alert: stored_by_alert + by_alert.len() as i64,
        })
    }
}

/// One history row.
pub(super) async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    number: i64,
    at: i64,
    kind: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (ticket_number, at, kind, actor, detail) VALUES ($1, $2, $3, 'triaged', $4)",
    )
    .bind(number)
    .bind(at)
    .bind(kind)
    .bind(json(detail))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
