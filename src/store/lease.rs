//! Leases: a named piece of work held by one daemon run at a time.
//!
//! A lease (`leases(name, holder, expires_at)`) names the work (`mailbox:NAME`
//! for a watched mailbox, `daemon:HOLDER` for a daemon's own liveness,
//! `scheduler` for the one leader that runs the SLA scheduler) and the run
//! that holds it until `expires_at` (ms since the epoch). Every statement is
//! one atomic row operation, the same on SQLite and PostgreSQL:
//!
//! - [`Store::try_lease_at`] takes a lease that is free, expired or already
//!   ours (`INSERT ... ON CONFLICT DO UPDATE ... WHERE`);
//! - [`Store::renew_lease_at`] extends it while we still hold it (a holder
//!   that finds it taken has lost it and stops the work at once);
//! - [`Store::release_lease`] gives it up (at shutdown), for another to take
//!   at once;
//! - [`Store::take_over_lease_at`] takes a lease from a named holder known to
//!   be dead (a run of this host whose process is gone), without waiting for
//!   it to expire.
//!
//! Times come from the caller's clock (`now`), like the outbox's claims: the
//! hosts of a fleet keep their clocks in step (NTP), well within a lease.

use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, text};
use crate::clock::now_ms;

/// One lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Ms since the epoch.
    pub expires_at: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Store {
    /// Takes lease `name` for `holder` for `ttl` from now, if nobody else
    /// holds it unexpired. True when `holder` holds it now.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.try_lease_at(name, holder, now_ms(), ttl).await
    }

    /// [`Store::try_lease`] at a given time (ms since the epoch).
    pub async fn try_lease_at(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $4
             RETURNING holder",
        )
        .bind(text(name))
        .bind(text(holder))
        .bind(now.saturating_add(ms(ttl)))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Extends `holder`'s lease `name` to `ttl` from now. False when it is
    /// not (or no longer) held by `holder`: another took it after it
    /// expired, or it was released. A holder that gets false has lost the
    /// lease and must stop the work at once.
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.renew_lease_at(name, holder, now_ms(), ttl).await
    }

    /// [`Store::renew_lease`] at a given time (ms since the epoch).
    pub async fn renew_lease_at(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE leases SET expires_at = $1 WHERE name = $2 AND holder = $3")
            .bind(now.saturating_add(ms(ttl)))
            .bind(text(name))
            .bind(text(holder))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives up `holder`'s lease `name`; anyone may take it at once.
    /// Nothing happens if `holder` does not hold it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(text(name))
            .bind(text(holder))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes lease `name` from `dead` (a holder known to be gone) for
    /// `holder`, expired or not. False when `dead` no longer holds it.
    pub async fn take_over_lease_at(
        &self,
        name: &str,
        dead: &str,
        holder: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE leases SET holder = $1, expires_at = $2 WHERE name = $3 AND holder = $4",
        )
        .bind(text(holder))
        .bind(now.saturating_add(ms(ttl)))
        .bind(text(name))
        .bind(text(dead))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every lease whose name starts with `prefix`, expired or not, by name.
    pub async fn leases(&self, prefix: &str) -> Result<Vec<Lease>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, holder, expires_at FROM leases
             WHERE substr(name, 1, CAST($1 AS INTEGER)) = $2 ORDER BY name",
        )
        .bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
        .bind(text(prefix))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(Lease {
                    name: r.try_get("name")?,
                    holder: r.try_get("holder")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// Deletes the leases starting with `prefix` that expired before
    /// `before` (ms since the epoch): the traces of daemons long gone.
    pub async fn forget_expired_leases(
        &self,
        prefix: &str,
        before: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM leases WHERE substr(name, 1, CAST($1 AS INTEGER)) = $2 AND expires_at < $3",
        )
        .bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
        .bind(text(prefix))
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
