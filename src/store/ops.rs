//! What an operator asks of the store itself: is it reachable, the gauges a
//! metrics scrape reads (outbox depth, open tickets, tickets past due), and an
//! online backup of a SQLite database.

use std::path::Path;

use serde::Serialize;
use sqlx::Row;

use super::{Backend, Store, StoreError};

/// Gauges read from the store at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Gauges {
    /// Outbox rows per status (`pending`, `sent`, `failed`).
    pub outbox: Vec<(String, i64)>,
    /// Tickets not resolved, per queue and priority (`""` when none).
    pub open: Vec<(String, String, i64)>,
    /// Tickets not resolved whose initial response is due before now and
    /// has not been given.
    pub past_due: i64,
}

impl Store {
    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 AS one").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// SQLite: moves the WAL into the database file and empties it
    /// (`wal_checkpoint(TRUNCATE)`), so that the file's size is the store's
    /// (the benchmark's store-size figure). PostgreSQL: nothing.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_all(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The gauges at `now` (ms since the epoch).
    pub async fn gauges(&self, now: i64) -> Result<Gauges, StoreError> {
        let outbox =
            sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let open = sqlx::query(
            "SELECT queue, COALESCE(priority, '') AS priority, COUNT(*) AS n FROM tickets
             WHERE status <> 'resolved' GROUP BY queue, COALESCE(priority, '')
             ORDER BY queue, priority",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("queue")?, r.try_get("priority")?, r.try_get("n")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let past_due: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM tickets
             WHERE status <> 'resolved' AND first_response_at IS NULL
               AND due_at IS NOT NULL AND due_at < $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(Gauges {
            outbox,
            open,
            past_due,
        })
    }

    /// Writes a consistent copy of a SQLite database to `target` while it is
    /// in use (`VACUUM INTO`). The target must not exist. On PostgreSQL this
    /// is not the store's job (`pg_dump` is): an error says so.
    pub async fn backup_to(&self, target: &Path) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Redacted {
                message: "backup of a PostgreSQL database: use pg_dump (see deploy/scaling.md)"
                    .to_string(),
                retryable: false,
            });
        }
        if target.exists() {
            return Err(StoreError::Redacted {
                message: format!("{} exists; a backup never overwrites", target.display()),
                retryable: false,
            });
        }
        let Some(path) = target.to_str() else {
            return Err(StoreError::Redacted {
                message: format!("{}: not a UTF-8 path", target.display()),
                retryable: false,
            });
        };
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
