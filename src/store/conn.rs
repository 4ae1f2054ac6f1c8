//! Connecting: the pool, its clean-connection rules, SQLite's settings, and
//! the migrations of each backend.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, Connection, Executor};

use super::{Backend, DISCARDED_CONNECTIONS, Store, StoreError};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Pages the write-ahead log grows to before a commit copies them into the
/// database (SQLite's default is 1,000). A page the log holds several times
/// (an index's leaf, written by every batch that touches it) is copied
/// once per checkpoint, and the database file is synced once per
/// checkpoint: at 100,000 messages, 10,000 pages (40 MiB) took the ingest
/// from 5,297-6,566 to 6,128-7,483 msg/s (`benches/README.md`, session 10).
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// Bytes the log file is cut back to once it starts over after a
/// checkpoint (a large transaction can grow it past the checkpoint's size).
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// The settings of every SQLite connection. `synchronous = FULL`: in WAL
/// mode every COMMIT syncs the log before it returns, so a commit that
/// returned survives a power loss; messages are acknowledged at their source
/// (flagged, moved) and mail is sent only after such a commit. Checkpoints
/// (which sync the database file) come every [`WAL_CHECKPOINT_PAGES`].
async fn sqlite_setup(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    // The busy timeout first: the journal mode statement takes a lock, and a
    // command opening the store while the daemon writes (or retries on a
    // full disk) must wait for it rather than fail with "database is locked".
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = FULL").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    // Statement journals in memory: a multi-row INSERT (`deferred`) that may
    // abort on a constraint keeps the pages it changes until it ends, and
    // past 64 KiB SQLite moved them to a temporary file made, written and
    // deleted per statement (an inode created and evicted each time). At
    // 100,000 messages that was 6-7 % of the ingest's CPU (benches/README.md,
    // session 12). The journal lives only as long as its statement.
    conn.execute("PRAGMA temp_store = MEMORY").await?;
    conn.execute(format!("PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}").as_str())
        .await?;
    conn.execute(format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}").as_str())
        .await?;
    Ok(())
}

/// The settings of every PostgreSQL connection. Custom plans only: sqlx
/// prepares every statement, and after five executions PostgreSQL may keep
/// one generic plan for it, made with the statistics of that moment. A
/// fresh store filling fast (a backfill) would then keep plans made for
/// empty tables (sequential scans) until an ANALYZE invalidates them, and
/// forever where autovacuum is off: the dedupe and caps lookups grew with
/// the table (`bench ingest`, 10,000 messages: 462 msg/s generic, 778
/// custom). Servers before 12 have no such setting and keep their default.
async fn postgres_setup(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute(
        "SELECT set_config('plan_cache_mode', 'force_custom_plan', false)
           WHERE current_setting('server_version_num')::int >= 120000",
    )
    .await?;
    Ok(())
}

/// Pool options that never hand out or keep a connection with a transaction
/// still open. sqlx tracks transactions itself; when a COMMIT fails and the
/// database has already rolled back (SQLite on SQLITE_FULL), its ROLLBACK
/// fails too and it still counts one transaction open, after which every
/// "transaction" on that connection would be a SAVEPOINT inside it, never
/// committed. Such a connection is closed when released, and checked again
/// before it is handed out.
fn with_clean_connections(options: AnyPoolOptions) -> AnyPoolOptions {
    options
        .after_release(|conn, _meta| {
            Box::pin(async move {
                // Runs the rollback a dropped transaction queued.
                if conn.ping().await.is_err() || conn.is_in_transaction() {
                    DISCARDED_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("closing a database connection left inside a transaction");
                    return Ok(false);
                }
                Ok(true)
            })
        })
        .before_acquire(|conn, _meta| {
            Box::pin(async move {
                if conn.is_in_transaction() {
                    DISCARDED_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                    return Ok(false);
                }
                Ok(true)
            })
        })
}

/// Tries to open a SQLite store this many times more when it is busy.
const OPEN_ATTEMPTS: u32 = 8;

/// SQLite's BUSY, LOCKED or PROTOCOL (a read that lost its race with
/// another connection's recovery too often): another connection's work,
/// not ours.
fn lock_contention(e: &sqlx::Error) -> bool {
    super::sqlite_code(e).is_some_and(|n| matches!(n, 5 | 6 | 15))
}

/// The pool of a SQLite store, once its file has been probed: one
/// connection with [`sqlite_setup`]'s settings.
async fn sqlite_pool(url: &str) -> Result<sqlx::AnyPool, sqlx::Error> {
    let mut probe = AnyConnection::connect(url).await?;
    let probed = async {
        sqlite_setup(&mut probe).await?;
        if !url.contains(":memory:") {
            // Can this connection write at all? A read-only file
            // opens (read-only) without complaint. Busy means
            // another process is writing: not our question.
            match probe.execute("BEGIN IMMEDIATE").await {
                Ok(_) => {
                    probe.execute("ROLLBACK").await?;
                }
                Err(e) if super::sqlite_code(&e).is_some_and(|n| matches!(n, 5 | 6)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    let _ = probe.close().await;
    probed?;
    // One connection: SQLite has one writer, and a single connection
    // serialises writers without SQLITE_BUSY on lock upgrades.
    with_clean_connections(AnyPoolOptions::new())
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .after_connect(|conn, _meta| Box::pin(sqlite_setup(conn)))
        .connect(url)
        .await
}

pub(super) async fn connect(url: &str, first_number: i64) -> Result<Store, StoreError> {
    sqlx::any::install_default_drivers();
    let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Backend::Postgres
    } else if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        return Err(StoreError::Url(url.to_string()));
    };
    let pool = match backend {
        Backend::Sqlite => {
            let url = if url.contains('?') || url.contains(":memory:") {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            // The pool retries a failing connect until its acquire timeout
            // and then reports only the timeout; one direct connection first
            // gives the real reason (read-only file or directory, no space)
            // at once.
            // A file that exists but cannot be written is refused at once:
            // SQLite opens it read-only without complaint, and a probe
            // transaction on it may come back busy rather than read-only.
            if let Some(path) = super::sqlite_file(&url)
                && let Err(e) = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StoreError::Redacted {
                    message: format!("unable to open database file {path} for writing: {e}"),
                    retryable: false,
                });
            }
            // SQLite says a connection may get SQLITE_BUSY without its
            // busy handler while another process opens the store: while it
            // rebuilds the log's index after a crash, or while the last
            // connection closing cleans up ("Sometimes Queries Return
            // SQLITE_BUSY In WAL Mode", wal.html). Opening is tried again.
            let mut attempt = 0u32;
            loop {
                match sqlite_pool(&url).await {
                    Ok(pool) => break pool,
                    Err(e) if attempt < OPEN_ATTEMPTS && lock_contention(&e) => {
                        attempt += 1;
                        tracing::debug!(error = %e, attempt, "store busy while opening; trying again");
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Backend::Postgres => {
            with_clean_connections(AnyPoolOptions::new())
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _meta| Box::pin(postgres_setup(conn)))
                .connect(url)
                .await?
        }
    };
    let migrator = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    // Two processes opening a new SQLite database at once (the daemon and a
    // `triaged tickets` run) can both find a migration unapplied; the loser's
    // CREATE then fails. Looking again finds it applied.
    let mut attempt = 0;
    loop {
        match migrator.run(&pool).await {
            Ok(()) => break,
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "migration raced; looking again");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Store {
        pool,
        backend,
        first_number,
        max_message: super::DEFAULT_MESSAGE_LIMIT as usize,
    })
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    /// Every connection of the pool syncs each commit, and checkpoints in
    /// large steps with the log cut back after them.
    #[tokio::test]
    async fn sqlite_connections_sync_commits_and_checkpoint_in_large_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = connect(&url, 1000).await.expect("connect");
        let mut conn = store.pool.acquire().await.expect("connection");
        for (pragma, want) in [
            ("journal_mode", "wal".to_string()),
            ("synchronous", "2".to_string()),
            ("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string()),
            ("journal_size_limit", WAL_SIZE_LIMIT.to_string()),
            ("foreign_keys", "1".to_string()),
            ("temp_store", "2".to_string()),
        ] {
            let row = sqlx::query(&format!("PRAGMA {pragma}"))
                .fetch_one(&mut *conn)
                .await
                .expect(pragma);
            let got = row
                .try_get::<String, _>(0)
                .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
                .expect(pragma);
            assert_eq!(got, want, "PRAGMA {pragma}");
        }
        drop(conn);
        store.close().await;
    }

    /// Opening is tried again on another connection's lock (SQLite's BUSY
    /// here, as a second writer gets it), never on anything else (a store
    /// that cannot be opened at all, a pool that timed out).
    #[tokio::test]
    async fn only_lock_contention_is_tried_again_when_opening() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut writer = AnyConnection::connect(&url).await.expect("connect");
        writer
            .execute("PRAGMA journal_mode = WAL")
            .await
            .expect("wal");
        writer.execute("BEGIN IMMEDIATE").await.expect("begin");
        let mut other = AnyConnection::connect(&url).await.expect("connect");
        other
            .execute("PRAGMA busy_timeout = 0")
            .await
            .expect("timeout");
        let busy = other
            .execute("BEGIN IMMEDIATE")
            .await
            .expect_err("a second writer is refused");
        assert!(lock_contention(&busy), "{busy:?}");
        let missing = format!(
            "sqlite://{}?mode=rw",
            dir.path().join("no/such/dir/t.db").display()
        );
        let cannot = AnyConnection::connect(&missing)
            .await
            .expect_err("no such folder");
        assert!(!lock_contention(&cannot), "{cannot:?}");
        assert!(!lock_contention(&sqlx::Error::PoolTimedOut));
        writer.execute("ROLLBACK").await.expect("rollback");
    }

    /// A store whose last process died with a large log: the first process
    /// to open it rebuilds the log's index holding an exclusive lock, and
    /// the others opening it at that moment (a `triaged stats` beside a
    /// restarted daemon) must wait for it, not fail with "database is
    /// locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn opening_a_store_while_another_process_recovers_its_log_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("live.db");
        let store = connect(&format!("sqlite://{}", live.display()), 1000)
            .await
            .expect("connect");
        let blob = vec![7u8; 4000];
        let mut tx = store.pool.begin().await.expect("begin");
        sqlx::query("CREATE TABLE filler (b BLOB)")
            .execute(&mut *tx)
            .await
            .expect("create");
        for _ in 0..6000 {
            sqlx::query("INSERT INTO filler (b) VALUES ($1)")
                .bind(&blob[..])
                .execute(&mut *tx)
                .await
                .expect("insert");
        }
        tx.commit().await.expect("commit");
        for round in 0..6 {
            // The files as a process killed now leaves them: the database
            // and its log, with no index of the log.
            let crashed = dir.path().join(format!("crashed{round}.db"));
            std::fs::copy(&live, &crashed).expect("copy db");
            std::fs::copy(
                dir.path().join("live.db-wal"),
                dir.path().join(format!("crashed{round}.db-wal")),
            )
            .expect("copy wal");
            let url = format!("sqlite://{}", crashed.display());
            let opens: Vec<_> = (0..6)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move {
                        let store = connect(&url, 1000).await?;
                        let n: i64 = sqlx::query("SELECT COUNT(*) FROM filler")
                            .fetch_one(&store.pool)
                            .await?
                            .try_get(0)?;
                        store.close().await;
                        Ok::<_, StoreError>(n)
                    })
                })
                .collect();
            for open in opens {
                let n = open.await.expect("task").expect("open and read");
                assert_eq!(n, 6000);
            }
        }
        store.close().await;
    }
}
