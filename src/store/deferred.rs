//! Rows a write transaction defers and then writes as multi-row INSERTs:
//! history events, attachments and outbox mail, and the ticket counter's
//! new value. Nothing in the transaction reads them back by id, so they are
//! held in memory and written when the transaction next runs a statement
//! they could matter to ([`Tx::db`]: every statement but the few the
//! pipeline's path makes, which are written not to need them, or to count
//! the rows held here), and always before COMMIT ([`Tx::commit`]).
//!
//! On SQLite every statement is a round trip to sqlx's worker thread, on
//! PostgreSQL one to the server; a batch of new tickets writes its events,
//! attachments and mail in a few statements instead of one per row.
//! Rows keep their order within each table, and every statement of another
//! module runs after the rows deferred before it, so ids and history order
//! are those of writing them one by one.

use sqlx::AnyConnection;

use super::{StoreError, Tx};

/// At most this many rows per INSERT; fewer rows go in chunks of a power of
/// two, so a table has at most 6 statement shapes (each prepared once per
/// connection and reused).
const MAX_ROWS: usize = 32;

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
    pub subject: String,
    pub message_id: String,
    pub raw: Vec<u8>,
    /// How `raw` is stored (`store::codec`).
    pub codec: &'static str,
    pub created_at: i64,
}

/// What a transaction holds back.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    pub events: Vec<EventRow>,
    pub attachments: Vec<AttachmentRow>,
    pub outbox: Vec<OutboxRow>,
    /// The ticket counter's value to write (numbers after the first taken
    /// in this transaction are counted here).
    pub counter: Option<i64>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.attachments.is_empty()
            && self.outbox.is_empty()
            && self.counter.is_none()
    }
}

/// Row counts per statement for `n` rows: chunks of [`MAX_ROWS`], then the
/// rest as powers of two, largest first.
fn chunks(mut n: usize) -> Vec<usize> {
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
fn values_sql(head: &str, row: &str, per_row: usize, rows: usize) -> String {
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
            sql.push('$');
            sql.push_str(&(r * per_row + k).to_string());
            rest = &rest[at + 1 + digits..];
        }
        sql.push_str(rest);
        sql.push(')');
    }
    sql
}

/// Writes what `d` holds on `conn`, emptying it.
pub(super) async fn flush(conn: &mut AnyConnection, d: &mut Deferred) -> Result<(), StoreError> {
    if let Some(value) = d.counter.take() {
        sqlx::query("UPDATE counters SET value = $1 WHERE name = 'ticket'")
            .bind(value)
            .execute(&mut *conn)
            .await?;
    }
    let events = std::mem::take(&mut d.events);
    let mut rows = events.into_iter();
    for n in chunks(rows.len()) {
        let sql = values_sql(
            "events (ticket_number, at, kind, actor, detail)",
            "?1, ?2, ?3, ?4, ?5",
            5,
            n,
        );
        let mut q = sqlx::query(&sql);
        for e in rows.by_ref().take(n) {
            q = q
                .bind(e.number)
                .bind(e.at)
                .bind(e.kind)
                .bind(e.actor)
                .bind(e.detail);
        }
        q.execute(&mut *conn).await?;
    }
    let attachments = std::mem::take(&mut d.attachments);
    let mut rows = attachments.into_iter();
    for n in chunks(rows.len()) {
        let sql = values_sql(
            "attachments (message, name, content_type, size, sha256)",
            "?1, ?2, ?3, ?4, ?5",
            5,
            n,
        );
        let mut q = sqlx::query(&sql);
        for a in rows.by_ref().take(n) {
            q = q
                .bind(a.message)
                .bind(a.name)
                .bind(a.content_type)
                .bind(a.size)
                .bind(a.sha256);
        }
        q.execute(&mut *conn).await?;
    }
    let outbox = std::mem::take(&mut d.outbox);
    let mut rows = outbox.into_iter();
    for n in chunks(rows.len()) {
        let sql = values_sql(
            "outbox (ticket_number, kind, mail_from, rcpt, first_rcpt, subject, message_id, raw,
               raw_codec, status, attempts, next_attempt_at, created_at)",
            "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?10",
            10,
            n,
        );
        let mut q = sqlx::query(&sql);
        for m in rows.by_ref().take(n) {
            q = q
                .bind(m.number)
                .bind(m.kind)
                .bind(m.from)
                .bind(m.rcpt)
                .bind(m.first_rcpt)
                .bind(m.subject)
                .bind(m.message_id)
                .bind(m.raw)
                .bind(m.codec)
                .bind(m.created_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Tx {
    /// The transaction's connection, for a statement that may read or
    /// follow deferred rows: what is deferred is written first.
    pub(super) async fn db(&mut self) -> Result<&mut AnyConnection, StoreError> {
        if !self.deferred.is_empty() {
            flush(&mut self.tx, &mut self.deferred).await?;
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
        assert_eq!(
            values_sql("t (a, b, c)", "?1, 'x', ?2, ?2", 2, 2),
            "INSERT INTO t (a, b, c) VALUES ($1, 'x', $2, $2), ($3, 'x', $4, $4)"
        );
        let sql = values_sql("t (a)", "?10, ?1", 10, 2);
        assert!(sql.ends_with("($10, $1), ($20, $11)"), "{sql}");
    }
}
