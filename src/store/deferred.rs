//! Rows a write transaction defers and then writes as multi-row INSERTs:
//! new tickets, their messages (with ids taken ahead: [`Tx::next_message_id`])
//! and recipient lists, history events, attachments and outbox mail, and
//! the ticket counter's new value. They are held in memory and written when
//! the transaction next runs a statement they could matter to ([`Tx::db`]:
//! every statement but the few the pipeline's path makes, which are written
//! not to need them, or to count the rows held here), and always before
//! COMMIT ([`Tx::commit`]). The pipeline's lookups that could find a held
//! row go through [`Tx::db`] too; the batch's look-ahead spares the rest.
//!
//! On SQLite every statement is a round trip to sqlx's worker thread, on
//! PostgreSQL one to the server; a batch of new tickets writes its events,
//! attachments and mail in a few statements instead of one per row.
//! Rows keep their order within each table, and every statement of another
//! module runs after the rows deferred before it, so ids and history order
//! are those of writing them one by one.

use std::sync::Arc;

use sqlx::AnyConnection;

use super::outbox::ComposedMail;
use super::{Backend, StoreError, Tx};

/// At most this many rows per INSERT; fewer rows go in chunks of a power of
/// two, so a table has at most 6 statement shapes (each prepared once per
/// connection and reused).
const MAX_ROWS: usize = 32;

/// Held messages are written once their stored bytes pass this, so that a
/// batch of large messages does not hold a second, compressed copy of all
/// of them until COMMIT.
pub(super) const MAX_HELD_BYTES: usize = 16 << 20;

/// One new ticket (`tickets`), status new, SLA look due at once.
#[derive(Debug)]
pub(super) struct TicketRow {
    pub number: i64,
    pub desk: String,
    pub desk_tag: String,
    pub queue: String,
    pub kind: &'static str,
    pub requester: String,
    pub requester_name: Option<String>,
    pub subject: String,
    pub mailbox: String,
    pub at: i64,
    pub urgency: &'static str,
    pub impact: &'static str,
    pub priority: &'static str,
    pub due_ms: Option<i64>,
    pub tags: String,
    pub alert_key: Option<String>,
}

/// One message row (`messages`) with the id taken for it.
#[derive(Debug)]
pub(super) struct MessageRow {
    pub id: i64,
    pub number: i64,
    pub key: String,
    pub message_id: Option<String>,
    pub mailbox: String,
    pub origin: String,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    pub to: String,
    pub cc: String,
    pub reply_to: String,
    pub subject: Option<String>,
    pub date: Option<i64>,
    pub in_reply_to: String,
    pub refs: String,
    pub auto: String,
    pub body_source: String,
    pub problems: String,
    pub raw: Arc<Vec<u8>>,
    pub raw_size: i64,
    pub sha256: String,
    pub at: i64,
    pub content_hash: Option<String>,
    pub codec: &'static str,
}

/// One history row (`events`).
#[derive(Debug)]
pub(super) struct EventRow {
    pub number: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

/// One attachment row (`attachments`).
#[derive(Debug)]
pub(super) struct AttachmentRow {
    pub message: i64,
    pub name: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

/// One outbox row (`outbox`), pending, due at `created_at`.
#[derive(Debug)]
pub(super) struct OutboxRow {
    pub number: i64,
    pub kind: String,
    pub from: String,
    /// JSON array.
    pub rcpt: String,
    /// Lower-case.
    pub first_rcpt: String,
    pub message_id: String,
    pub created_at: i64,
}

/// An outbox row's subject and stored mail: composed, or on their way.
#[derive(Debug)]
pub(super) enum OutboxBody {
    Ready(ComposedMail),
    Pending(tokio::sync::oneshot::Receiver<Result<ComposedMail, String>>),
}

impl OutboxBody {
    /// The composed mail, waited for if need be.
    async fn ready(self) -> Result<ComposedMail, StoreError> {
        match self {
            OutboxBody::Ready(m) => Ok(m),
            OutboxBody::Pending(rx) => match rx.await {
                Ok(Ok(m)) => Ok(m),
                Ok(Err(reason)) => Err(StoreError::Composing(reason)),
                Err(_) => Err(StoreError::Composing(
                    "the composing thread ended before the mail was composed".to_string(),
                )),
            },
        }
    }
}

/// What a transaction holds back.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    pub tickets: Vec<TicketRow>,
    pub messages: Vec<MessageRow>,
    /// The stored bytes of `messages` (see [`MAX_HELD_BYTES`]).
    pub message_bytes: usize,
    /// (ticket number, lower-cased address), added if not there.
    pub recipients: Vec<(i64, String)>,
    pub events: Vec<EventRow>,
    pub attachments: Vec<AttachmentRow>,
    pub outbox: Vec<(OutboxRow, OutboxBody)>,
    /// The ticket counter's value to write (numbers after the first taken
    /// in this transaction are counted here).
    pub counter: Option<i64>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
            && self.messages.is_empty()
            && self.recipients.is_empty()
            && self.events.is_empty()
            && self.attachments.is_empty()
            && self.outbox.is_empty()
            && self.counter.is_none()
    }
}

/// Row counts per statement for `n` rows: chunks of [`MAX_ROWS`], then the
/// rest as powers of two, largest first.
pub(super) fn chunks(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while n >= MAX_ROWS {
        out.push(MAX_ROWS);
        n -= MAX_ROWS;
    }
    let mut size = MAX_ROWS / 2;
    while n > 0 {
        if n >= size {
            out.push(size);
            n -= size;
        }
        size /= 2;
    }
    out
}

/// `INSERT INTO <head> VALUES (<row>), ...` for `rows` rows of `row`, where
/// `row` is a template in which `?k` (k from 1 to `per_row`) stands for the
/// row's k-th parameter.
///
/// On SQLite a template that names each parameter once, in order, is
/// written with anonymous `?` parameters: sqlx looks every numbered one up
/// by name (`sqlite3_bind_parameter_name`, a linear scan), which made
/// binding a statement of a few hundred parameters quadratic, 15 % of an
/// ingest's CPU.
pub(super) fn values_sql(
    head: &str,
    row: &str,
    per_row: usize,
    rows: usize,
    backend: Backend,
) -> String {
    let anonymous = backend == Backend::Sqlite && in_order(row, per_row);
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 16));
    sql.push_str("INSERT INTO ");
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        let mut rest = row;
        while let Some(at) = rest.find('?') {
            sql.push_str(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(rest.len() - at - 1, |d| d);
            let k: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or(1);
            if anonymous {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&(r * per_row + k).to_string());
            }
            rest = &rest[at + 1 + digits..];
        }
        sql.push_str(rest);
        sql.push(')');
    }
    sql
}

/// Whether `row` names its parameters `?1` to `?per_row`, each once, in order.
fn in_order(row: &str, per_row: usize) -> bool {
    let mut next = 1;
    let mut rest = row;
    while let Some(at) = rest.find('?') {
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest.len() - at - 1, |d| d);
        if rest[at + 1..at + 1 + digits].parse::<usize>() != Ok(next) {
            return false;
        }
        next += 1;
        rest = &rest[at + 1 + digits..];
    }
    next == per_row + 1
}

/// Writes what `d` holds on `conn`, emptying it.
pub(super) async fn flush(
    conn: &mut AnyConnection,
    d: &mut Deferred,
    backend: Backend,
) -> Result<(), StoreError> {
    if let Some(value) = d.counter.take() {
        sqlx::query("UPDATE counters SET value = $1 WHERE name = 'ticket'")
            .bind(value)
            .execute(&mut *conn)
            .await?;
    }
    // Tickets first: the other rows refer to them.
    let tickets = std::mem::take(&mut d.tickets);
    let mut at = 0;
    for n in chunks(tickets.len()) {
        let sql = values_sql(
            "tickets (number, desk, desk_tag, queue, kind, status, requester, requester_name, subject, mailbox,
               created_at, updated_at, urgency, impact, priority, due_at, tags, alert_key, sla_next_at)",
            "?1, ?2, ?3, ?4, ?5, 'new', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, 0",
            17,
            n,
            backend,
        );
        let mut q = sqlx::query(&sql);
        for t in &tickets[at..at + n] {
            q = q
                .bind(t.number)
                .bind(t.desk.as_str())
                .bind(t.desk_tag.as_str())
                .bind(t.queue.as_str())
                .bind(t.kind)
                .bind(t.requester.as_str())
                .bind(t.requester_name.as_deref())
                .bind(t.subject.as_str())
                .bind(t.mailbox.as_str())
                .bind(t.at)
                .bind(t.at)
                .bind(t.urgency)
                .bind(t.impact)
                .bind(t.priority)
                .bind(t.due_ms)
                .bind(t.tags.as_str())
                .bind(t.alert_key.as_deref());
        }
        at += n;
        q.execute(&mut *conn).await?;
    }
    let messages = std::mem::take(&mut d.messages);
    d.message_bytes = 0;
    let mut at = 0;
    for n in chunks(messages.len()) {
        let sql = values_sql(
            "messages (id, ticket_number, dedupe_key, message_id, mailbox, origin, from_addr, from_name,
               to_addrs, cc_addrs, reply_to, subject, sent_date, in_reply_to, refs, auto_signals, body_text,
               body_source, problems, raw, raw_size, sha256, received_at, content_hash, raw_codec)",
            "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, '', ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24",
            24,
            n,
            backend,
        );
        let mut q = sqlx::query(&sql);
        for m in &messages[at..at + n] {
            q = q
                .bind(m.id)
                .bind(m.number)
                .bind(m.key.as_str())
                .bind(m.message_id.as_deref())
                .bind(m.mailbox.as_str())
                .bind(m.origin.as_str())
                .bind(m.from_addr.as_deref())
                .bind(m.from_name.as_deref())
                .bind(m.to.as_str())
                .bind(m.cc.as_str())
                .bind(m.reply_to.as_str())
                .bind(m.subject.as_deref())
                .bind(m.date)
                .bind(m.in_reply_to.as_str())
                .bind(m.refs.as_str())
                .bind(m.auto.as_str())
                .bind(m.body_source.as_str())
                .bind(m.problems.as_str())
                .bind(m.raw.as_slice())
                .bind(m.raw_size)
                .bind(m.sha256.as_str())
                .bind(m.at)
                .bind(m.content_hash.as_deref())
                .bind(m.codec);
        }
        at += n;
        q.execute(&mut *conn).await?;
    }
    let recipients = std::mem::take(&mut d.recipients);
    let mut at = 0;
    for n in chunks(recipients.len()) {
        let mut sql = values_sql(
            "ticket_recipients (ticket_number, address)",
            "?1, ?2",
            2,
            n,
            backend,
        );
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(&sql);
        for (number, address) in &recipients[at..at + n] {
            q = q.bind(*number).bind(address.as_str());
        }
        at += n;
        q.execute(&mut *conn).await?;
    }
    let events = std::mem::take(&mut d.events);
    let mut at = 0;
    for n in chunks(events.len()) {
        let sql = values_sql(
            "events (ticket_number, at, kind, actor, detail)",
            "?1, ?2, ?3, ?4, ?5",
            5,
            n,
            backend,
        );
        let mut q = sqlx::query(&sql);
        for e in &events[at..at + n] {
            q = q
                .bind(e.number)
                .bind(e.at)
                .bind(e.kind.as_str())
                .bind(e.actor.as_str())
                .bind(e.detail.as_str());
        }
        at += n;
        q.execute(&mut *conn).await?;
    }
    let attachments = std::mem::take(&mut d.attachments);
    let mut at = 0;
    for n in chunks(attachments.len()) {
        let sql = values_sql(
            "attachments (message, name, content_type, size, sha256)",
            "?1, ?2, ?3, ?4, ?5",
            5,
            n,
            backend,
        );
        let mut q = sqlx::query(&sql);
        for a in &attachments[at..at + n] {
            q = q
                .bind(a.message)
                .bind(a.name.as_deref())
                .bind(a.content_type.as_str())
                .bind(a.size)
                .bind(a.sha256.as_str());
        }
        at += n;
        q.execute(&mut *conn).await?;
    }
    // Mail composed on another thread is waited for here, in order.
    let mut outbox = Vec::with_capacity(d.outbox.len());
    for (row, body) in std::mem::take(&mut d.outbox) {
        outbox.push((row, body.ready().await?));
    }
    let mut at = 0;
    for n in chunks(outbox.len()) {
        let sql = values_sql(
            "outbox (ticket_number, kind, mail_from, rcpt, first_rcpt, subject, message_id, raw,
               raw_codec, status, attempts, next_attempt_at, created_at)",
            "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?11",
            11,
            n,
            backend,
        );
        let mut q = sqlx::query(&sql);
        for (m, mail) in &outbox[at..at + n] {
            q = q
                .bind(m.number)
                .bind(m.kind.as_str())
                .bind(m.from.as_str())
                .bind(m.rcpt.as_str())
                .bind(m.first_rcpt.as_str())
                .bind(mail.subject.as_str())
                .bind(m.message_id.as_str())
                .bind(mail.stored.as_slice())
                .bind(mail.codec)
                .bind(m.created_at)
                .bind(m.created_at);
        }
        at += n;
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Tx {
    /// The transaction's connection, for a statement that may read or
    /// follow deferred rows: what is deferred is written first.
    pub(super) async fn db(&mut self) -> Result<&mut AnyConnection, StoreError> {
        if !self.deferred.is_empty() {
            flush(&mut self.tx, &mut self.deferred, self.backend).await?;
        }
        Ok(&mut self.tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_in_few_shapes() {
        for n in 0..300 {
            let c = chunks(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            assert!(c.iter().all(|s| s.is_power_of_two() && *s <= MAX_ROWS));
        }
        assert_eq!(chunks(0), Vec::<usize>::new());
        assert_eq!(chunks(70), vec![32, 32, 4, 2]);
        assert_eq!(chunks(100), vec![32, 32, 32, 4]);
    }

    #[test]
    fn values_numbers_each_rows_parameters() {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            assert_eq!(
                values_sql("t (a, b, c)", "?1, 'x', ?2, ?2", 2, 2, backend),
                "INSERT INTO t (a, b, c) VALUES ($1, 'x', $2, $2), ($3, 'x', $4, $4)"
            );
            let sql = values_sql("t (a)", "?10, ?1", 10, 2, backend);
            assert!(sql.ends_with("($10, $1), ($20, $11)"), "{sql}");
        }
        // Each parameter once, in order: anonymous on SQLite.
        assert_eq!(
            values_sql("t (a, b)", "?1, 'x', ?2", 2, 2, Backend::Sqlite),
            "INSERT INTO t (a, b) VALUES (?, 'x', ?), (?, 'x', ?)"
        );
        assert_eq!(
            values_sql("t (a, b)", "?1, 'x', ?2", 2, 2, Backend::Postgres),
            "INSERT INTO t (a, b) VALUES ($1, 'x', $2), ($3, 'x', $4)"
        );
    }

    #[test]
    fn in_order_means_each_parameter_once_in_order() {
        assert!(in_order("?1, ?2, 'new', ?3", 3));
        assert!(!in_order("?1, ?3, ?2", 3));
        assert!(!in_order("?1, ?1", 2));
        assert!(!in_order("?1, ?2", 3));
        assert!(in_order("", 0));
    }
}
