//! Markers of IMAP messages in hand (table `imap_in_flight`), kept apart
//! from the ingest transaction.

use sqlx::Row;

use super::{Cursor, Store, StoreError};
use crate::clock::now_ms;

/// An IMAP message in hand: the row a watcher writes before parsing it (table
/// `imap_in_flight`). It counts only while its UID is above the mailbox cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub uid: u32,
    /// The daemon run that last had it in hand.
    pub run_id: String,
    /// `batch`, `parse` or `commit`.
    pub stage: String,
    /// Runs that have had it in hand, that one included.
    pub attempts: i64,
    /// Earlier runs that died while parsing it alone.
    pub parse_deaths: i64,
}

impl Store {
    /// The markers of `cursor`'s mailbox and UIDVALIDITY for UIDs in
    /// `from..=to` that are above the cursor, ascending.
    pub async fn in_flight(
        &self,
        cursor: &Cursor,
        from: u32,
        to: u32,
    ) -> Result<Vec<InFlight>, StoreError> {
        let rows = sqlx::query(
            "SELECT uid, run_id, stage, attempts, parse_deaths FROM imap_in_flight
             WHERE mailbox = $1 AND uidvalidity = $2 AND uid > $3 AND uid >= $4 AND uid <= $5
             ORDER BY uid",
        )
        .bind(&cursor.mailbox)
        .bind(i64::from(cursor.uidvalidity))
        .bind(i64::from(cursor.last_uid))
        .bind(i64::from(from))
        .bind(i64::from(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let uid: i64 = r.try_get("uid")?;
                Ok(InFlight {
                    uid: u32::try_from(uid).unwrap_or(u32::MAX),
                    run_id: r.try_get("run_id")?,
                    stage: r.try_get("stage")?,
                    attempts: r.try_get("attempts")?,
                    parse_deaths: r.try_get("parse_deaths")?,
                })
            })
            .collect()
    }

    /// Writes (inserts or replaces) these markers for `cursor`'s mailbox and
    /// UIDVALIDITY, and drops its stale ones (at or below the cursor, or of
    /// another UIDVALIDITY), in one transaction.
    pub async fn mark_in_flight(
        &self,
        cursor: &Cursor,
        marks: &[InFlight],
    ) -> Result<(), StoreError> {
        match self.mark_in_flight_once(cursor, marks).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(e).await),
        }
    }

    async fn mark_in_flight_once(
        &self,
        cursor: &Cursor,
        marks: &[InFlight],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM imap_in_flight WHERE mailbox = $1 AND (uidvalidity <> $2 OR uid <= $3)",
        )
        .bind(&cursor.mailbox)
        .bind(i64::from(cursor.uidvalidity))
        .bind(i64::from(cursor.last_uid))
        .execute(&mut *tx)
        .await?;
        // Few statement shapes, anonymous parameters on SQLite (see
        // `deferred::values_sql`: 500 rows of numbered ones took 10 % of an
        // IMAP backfill's CPU looking up their names).
        let mut at = 0;
        for n in super::deferred::chunks(marks.len()) {
            let mut sql = super::deferred::values_sql(
                "imap_in_flight (mailbox, uidvalidity, uid, run_id, stage, attempts, parse_deaths, updated_at)",
                "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8",
                8,
                n,
                self.backend,
            );
            sql.push_str(
                " ON CONFLICT (mailbox, uidvalidity, uid) DO UPDATE SET run_id = excluded.run_id,
                   stage = excluded.stage, attempts = excluded.attempts,
                   parse_deaths = excluded.parse_deaths, updated_at = excluded.updated_at",
            );
            let mut q = sqlx::query(&sql);
            for m in &marks[at..at + n] {
                q = q
                    .bind(cursor.mailbox.as_str())
                    .bind(i64::from(cursor.uidvalidity))
                    .bind(i64::from(m.uid))
                    .bind(m.run_id.as_str())
                    .bind(m.stage.as_str())
                    .bind(m.attempts)
                    .bind(m.parse_deaths)
                    .bind(now);
            }
            at += n;
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
