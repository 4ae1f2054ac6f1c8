//! Store: the only module that speaks SQL.
//!
//! One [`Store`] over sqlx's `Any` driver, so the same statements run on the
//! embedded SQLite (default, WAL) and on PostgreSQL. Migrations for each backend
//! live in `migrations/<backend>/` and run when the store opens.
//!
//! The unit of work is a batch of prepared messages committed in one
//! transaction together with the mailbox cursor (highest UID done). A message is
//! either wholly recorded (ticket or reply, message row, attachments, events) or
//! not at all, and the caller only acknowledges it at its source after commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row, Transaction};

use crate::classify::Decision;
use crate::parse::{MailAddr, ParsedMessage};
use crate::thread::ThreadKeys;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Process-wide counts of store trouble, for logs now and for a metrics
/// endpoint later (see [`metrics`]).
static FAILED_COMMITS: AtomicU64 = AtomicU64::new(0);
static RESOURCE_ERRORS: AtomicU64 = AtomicU64::new(0);
static DISCARDED_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Counts of store trouble since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreMetrics {
    /// Batches whose transaction did not commit (any reason).
    pub failed_commits: u64,
    /// Of those, the ones refused for want of a resource: disk full, I/O
    /// error, read-only database ([`StoreError::is_resource`]).
    pub resource_errors: u64,
    /// Connections closed instead of reused because a transaction on them
    /// did not end cleanly.
    pub discarded_connections: u64,
}

/// The store's counters, process-wide.
pub fn metrics() -> StoreMetrics {
    StoreMetrics {
        failed_commits: FAILED_COMMITS.load(Ordering::Relaxed),
        resource_errors: RESOURCE_ERRORS.load(Ordering::Relaxed),
        discarded_connections: DISCARDED_CONNECTIONS.load(Ordering::Relaxed),
    }
}

/// Errors of the store, marked as worth retrying or not.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://...")]
    Url(String),
    /// An error whose words held a secret of the database URL, redacted.
    #[error("{message}")]
    Redacted { message: String, retryable: bool },
}

impl StoreError {
    /// Whether trying the same work again later may succeed.
    ///
    /// Connection trouble, lock contention and a concurrent insert of the same
    /// message (unique violation) are worth retrying; a statement the database
    /// refuses for its content is not, and retrying it would block a mailbox.
    ///
    /// Every [resource](StoreError::is_resource) error is retryable: a full
    /// disk says nothing about the message.
    pub fn is_retryable(&self) -> bool {
        if self.is_resource() {
            return true;
        }
        match self {
            StoreError::Db(sqlx::Error::Database(db)) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                db.is_unique_violation()
                    // PostgreSQL: serialization failure, deadlock, connection
                    // exceptions, admin shutdown, too many connections.
                    || code == "40001"
                    || code == "40P01"
                    || code.starts_with("08")
                    || code.starts_with("57P")
                    || code == "53300"
                    // SQLite (numeric codes, never five characters like a
                    // SQLSTATE): BUSY and LOCKED, with their extended codes.
                    || (code.len() < 5 && code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)))
            }
            StoreError::Db(e) => !matches!(
                e,
                sqlx::Error::ColumnDecode { .. }
                    | sqlx::Error::Decode(_)
                    | sqlx::Error::ColumnNotFound(_)
                    | sqlx::Error::ColumnIndexOutOfBounds { .. }
                    | sqlx::Error::TypeNotFound { .. }
                    | sqlx::Error::Encode(_)
                    | sqlx::Error::Configuration(_)
                    | sqlx::Error::RowNotFound
            ),
            StoreError::Migrate(_) | StoreError::Url(_) => false,
            StoreError::Redacted { retryable, .. } => *retryable,
        }
    }

    /// This error with every secret of `url` hidden from its words (and
    /// those of its sources): drivers quote the URL they could not use.
    fn redacted(self, url: &str) -> StoreError {
        let mut words = self.to_string();
        let mut source = std::error::Error::source(&self);
        while let Some(s) = source {
            let more = s.to_string();
            if !words.contains(&more) {
                words = format!("{words}: {more}");
            }
            source = s.source();
        }
        let clean = crate::config::redact_text(&words, url);
        match self {
            StoreError::Url(u) => StoreError::Url(crate::config::redact_url(&u)),
            e if clean == words => e,
            e => StoreError::Redacted {
                message: clean,
                retryable: e.is_retryable(),
            },
        }
    }

    /// Whether the database lacks a resource to do any work: disk full, I/O
    /// error, read-only database or transaction, out of memory. Such an error
    /// is never the message's fault: the work waits (mailbox paused, retried
    /// with backoff) and is never split or quarantined for it.
    pub fn is_resource(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        match code.parse::<u32>() {
            // SQLite's numeric codes (with their extended codes): NOMEM,
            // READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
            Ok(n) if code.len() < 5 => matches!(n & 0xff, 7 | 8 | 10 | 13 | 14 | 15),
            // PostgreSQL SQLSTATE: class 53 (insufficient resources: disk
            // full 53100, out of memory 53200, ...; too many connections,
            // 53300, is contention and retryable), read-only transaction
            // 25006 (a hot standby, default_transaction_read_only), class 58
            // (system error: I/O error 58030, ...).
            _ => {
                (code.starts_with("53") && code != "53300")
                    || code == "25006"
                    || code.starts_with("58")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a message came from, for audit and for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Imap { uidvalidity: u32, uid: u32 },
    File { path: String },
    Stdin { index: usize },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Imap { uidvalidity, uid } => {
                write!(f, "imap uidvalidity={uidvalidity} uid={uid}")
            }
            Origin::File { path } => write!(f, "file {path}"),
            Origin::Stdin { index } => write!(f, "stdin #{index}"),
        }
    }
}

/// What to do with one message, decided before the transaction.
#[derive(Debug, Clone)]
pub enum Action {
    /// Make a ticket, or a reply on the ticket its thread keys name.
    Ticket {
        parsed: Box<ParsedMessage>,
        decision: Box<Decision>,
        keys: ThreadKeys,
    },
    /// Set it aside with a reason; `headers` is what was kept of it.
    Quarantine {
        reason: String,
        headers: Vec<u8>,
        message_id: Option<String>,
        from: Option<String>,
        subject: Option<String>,
        size: u64,
    },
}

/// One message ready to commit.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub mailbox: String,
    pub origin: Origin,
    /// `mid:<Message-ID>#<content hash>` or `sha256:<content hash>`: the same
    /// key never makes two tickets (see `pipeline::dedupe_key`).
    pub dedupe_key: String,
    pub raw: Vec<u8>,
    pub action: Action,
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "id", rename_all = "lowercase")]
pub enum Outcome {
    /// A new ticket with this number.
    Created(i64),
    /// A reply recorded on this ticket.
    Reply(i64),
    /// Seen before: already on this ticket.
    Duplicate(i64),
    /// Seen before: already in quarantine with this id.
    DuplicateQuarantined(i64),
    /// Set aside in quarantine with this id.
    Quarantined(i64),
}

/// The highest IMAP UID done in a folder, committed with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub mailbox: String,
    pub uidvalidity: u32,
    pub last_uid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketSummary {
    pub number: i64,
    pub tag: String,
    pub desk: String,
    pub queue: String,
    pub kind: String,
    pub status: String,
    pub requester: String,
    pub requester_name: Option<String>,
    pub subject: String,
    pub mailbox: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub urgency: Option<String>,
    pub impact: Option<String>,
    pub priority: Option<String>,
    /// Initial response due, ms since the epoch.
    pub due_at: Option<i64>,
    pub tags: Vec<String>,
    pub alert_key: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttachmentRow {
    pub name: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    pub id: i64,
    pub message_id: Option<String>,
    pub mailbox: String,
    pub origin: String,
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<MailAddr>,
    pub cc: Vec<MailAddr>,
    pub reply_to: Vec<MailAddr>,
    pub subject: Option<String>,
    pub date: Option<i64>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub auto_signals: serde_json::Value,
    pub body: String,
    pub body_source: String,
    pub problems: Vec<String>,
    pub size: i64,
    pub sha256: String,
    pub received_at: i64,
    pub attachments: Vec<AttachmentRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketDetail {
    #[serde(flatten)]
    pub ticket: TicketSummary,
    /// The ticket's own recipient list.
    pub recipients: Vec<String>,
    /// Mail about this ticket: queued, sent or failed.
    pub mail: Vec<OutboxSummary>,
    pub messages: Vec<MessageRow>,
    pub events: Vec<EventRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineRow {
    pub id: i64,
    pub mailbox: String,
    pub origin: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub size: i64,
    pub created_at: i64,
    #[serde(skip)]
    pub headers: Vec<u8>,
}

/// Totals, for summaries and for waiting on the daemon in tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tickets: i64,
    /// Messages recorded on tickets (first messages and replies).
    pub messages: i64,
    /// Deliveries recognised as already recorded.
    pub duplicates: i64,
    pub quarantined: i64,
}

impl Counts {
    /// Every delivery accounted for: recorded, recognised as duplicate, or set aside.
    pub fn deliveries(&self) -> i64 {
        self.messages + self.duplicates + self.quarantined
    }
}

/// Filters for [`Store::list_tickets`].
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub queue: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
}

/// The database, SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    first_number: i64,
    composer: Option<Arc<dyn Composer>>,
    /// Poked after a commit that queued mail, to wake the sender.
    outbox_wake: Option<Arc<tokio::sync::Notify>>,
}

/// A ticket event, as the composer of outgoing mail sees it.
#[derive(Debug)]
pub struct TicketEvent<'a> {
    /// A new ticket (else a reply on an existing one).
    pub created: bool,
    pub number: i64,
    pub mailbox: &'a str,
    pub decision: &'a Decision,
    pub parsed: &'a ParsedMessage,
    /// Acknowledgements queued to this message's sender within the composer's window.
    pub recent_acks: i64,
    /// Tickets from this message's sender that had notifications (anything
    /// but an acknowledgement) queued within the composer's window.
    pub recent_notified_sender: i64,
    /// Tickets with this message's alert key that had notifications queued
    /// within the composer's window (0 without an alert key).
    pub recent_notified_alert: i64,
    /// Milliseconds since the epoch.
    pub now: i64,
}

/// One mail to queue, fully formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMail {
    /// The template kind: `acknowledgement`, `queue_notification`, ...
    pub kind: String,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub rcpt: Vec<String>,
    pub subject: String,
    /// Without angle brackets.
    pub message_id: String,
    /// The whole RFC 5322 message.
    pub raw: Vec<u8>,
}

/// What the composer decided for one kind of mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Mail(OutboundMail),
    /// Not sent, and why (recorded in the ticket's history).
    Suppressed {
        kind: String,
        reason: String,
    },
}

/// Turns ticket events into mail. Implemented by `notify`; the store calls it
/// inside the event's transaction so that the mail and the event commit together.
pub trait Composer: Send + Sync + std::fmt::Debug {
    fn compose(&self, event: &TicketEvent<'_>) -> Vec<Outgoing>;
    /// How far back (ms) mail is counted for the caps: acknowledgements to
    /// one sender, notifications about one sender's or one alert's tickets.
    fn ack_window_ms(&self) -> i64;
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
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// A dedupe key `mid:<id>#<content hash>` as (`mid:<id>`, the hash); any other
/// key (`sha256:...`, or `mid:<id>` alone) as itself with no hash.
fn split_dedupe_key(key: &str) -> (&str, Option<&str>) {
    match key.rsplit_once('#') {
        Some((base, hash))
            if base.starts_with("mid:")
                && hash.len() == 64
                && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            (base, Some(hash))
        }
        _ => (key, None),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// PostgreSQL text cannot hold NUL; nothing else is changed.
fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

fn opt_text(s: Option<&str>) -> Option<String> {
    s.map(text)
}

fn json<T: Serialize>(v: &T) -> String {
    text(&serde_json::to_string(v).unwrap_or_else(|_| "null".to_string()))
}

/// The settings of every SQLite connection. `synchronous = FULL`: in WAL
/// mode every COMMIT syncs the log before it returns, so a commit that
/// returned survives a power loss; messages are acknowledged at their source
/// (flagged, moved) and mail is sent only after such a commit.
async fn sqlite_setup(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = FULL").await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
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

impl Store {
    /// Opens (creating if needed) the database at `url` and migrates it.
    /// `first_number` is the number the first ticket gets.
    /// Errors never show the URL's password or secret parameters.
    pub async fn open(url: &str, first_number: i64) -> Result<Store, StoreError> {
        Store::connect(url, first_number)
            .await
            .map_err(|e| e.redacted(url))
    }

    async fn connect(url: &str, first_number: i64) -> Result<Store, StoreError> {
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
                let mut probe = AnyConnection::connect(&url).await?;
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
                            Err(sqlx::Error::Database(db))
                                if db.code().is_some_and(|c| {
                                    c.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
                                }) => {}
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
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                with_clean_connections(AnyPoolOptions::new())
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
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
            composer: None,
            outbox_wake: None,
        })
    }

    /// This store, composing outgoing mail for every ticket event with
    /// `composer`, and poking `wake` after each commit that queued mail.
    pub fn with_composer(
        mut self,
        composer: Arc<dyn Composer>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Store {
        self.composer = Some(composer);
        self.outbox_wake = Some(wake);
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Commits a batch in one transaction, with the IMAP cursor if given.
    /// Returns one outcome per prepared message, in order.
    ///
    /// `Ok` means the batch is durable: the COMMIT returned OK on a connection
    /// that was in autocommit mode before (see [`with_clean_connections`]),
    /// and SQLite runs with `synchronous = FULL`. Only then may the caller
    /// acknowledge the messages at their source. After a failed COMMIT the
    /// connection is discarded before anything else runs on it, whatever the
    /// database says its state is.
    pub async fn commit(
        &self,
        batch: &[Prepared],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Outcome>, StoreError> {
        match self.commit_once(batch, cursor).await {
            Ok(outcomes) => {
                if let Some(wake) = &self.outbox_wake
                    && outcomes.iter().any(|o| matches!(o, Outcome::Created(_)))
                {
                    wake.notify_one();
                }
                Ok(outcomes)
            }
            Err(e) => Err(self.failed(e).await),
        }
    }

    /// Accounts for a write transaction that did not commit, and makes sure
    /// nothing runs on the connection it failed on: counted in [`metrics`],
    /// and on SQLite the pool's only connection (the one the transaction
    /// failed on, released by now or being released) is closed so that the
    /// next transaction starts on a fresh one.
    async fn failed(&self, e: StoreError) -> StoreError {
        FAILED_COMMITS.fetch_add(1, Ordering::Relaxed);
        if e.is_resource() {
            RESOURCE_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        if self.backend == Backend::Sqlite {
            let acquired = tokio::time::timeout(Duration::from_secs(5), self.pool.acquire()).await;
            if let Ok(Ok(conn)) = acquired {
                DISCARDED_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                conn.close().await.ok();
            }
        }
        e
    }

    async fn commit_once(
        &self,
        batch: &[Prepared],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let now = now_ms();
        for p in batch {
            outcomes.push(self.record(&mut tx, p, now).await?);
        }
        if let Some(c) = cursor {
            sqlx::query(
                "INSERT INTO mailbox_state (mailbox, uidvalidity, last_uid, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity,
                   last_uid = excluded.last_uid, updated_at = excluded.updated_at",
            )
            .bind(&c.mailbox)
            .bind(i64::from(c.uidvalidity))
            .bind(i64::from(c.last_uid))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &Prepared,
        now: i64,
    ) -> Result<Outcome, StoreError> {
        // Seen before, as a message or in quarantine? One round trip for both.
        // A key `mid:<id>#<hash>` is looked up as itself and as `mid:<id>`
        // (the first message with that ID, stored before any collision).
        let (base_key, content_hash) = split_dedupe_key(&p.dedupe_key);
        let seen = sqlx::query(
            "SELECT CAST(0 AS BIGINT), ticket_number, dedupe_key, content_hash, id FROM messages WHERE dedupe_key = $1 OR dedupe_key = $2
             UNION ALL SELECT CAST(1 AS BIGINT), id, dedupe_key, content_hash, id FROM quarantine WHERE dedupe_key = $1 OR dedupe_key = $2",
        )
        .bind(base_key)
        .bind(&p.dedupe_key)
        .fetch_all(&mut **tx)
        .await?;
        let mut collision = None;
        for row in &seen {
            let (in_quarantine, id): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            let key: String = row.try_get(2)?;
            let mut hash: Option<String> = row.try_get(3)?;
            if hash.is_none() && in_quarantine == 0 && content_hash.is_some() {
                // Stored before content hashes were kept: its raw bytes tell
                // (once; the hash is kept for the next time).
                hash = Some(self.backfill_content_hash(tx, row.try_get(4)?).await?);
            }
            // The same message: its own key, or the first holder of the ID
            // with the same content (or of unknown content: a quarantine row
            // from before content hashes, which kept only headers).
            let same = key == p.dedupe_key
                || content_hash.is_none()
                || hash.is_none()
                || hash.as_deref() == content_hash;
            if !same {
                collision = Some((in_quarantine == 1, id, row.try_get::<i64, _>(4)?));
                continue;
            }
            if in_quarantine == 1 {
                return Ok(Outcome::DuplicateQuarantined(id));
            }
            self.event(
                tx,
                id,
                now,
                "duplicate",
                &serde_json::json!({"mailbox": p.mailbox, "origin": p.origin.to_string(), "key": p.dedupe_key}),
            )
            .await?;
            return Ok(Outcome::Duplicate(id));
        }
        // The first with this ID keeps `mid:<id>`; a message reusing it with
        // other content is a new message under its whole key.
        let key = if collision.is_some() {
            p.dedupe_key.as_str()
        } else {
            base_key
        };

        match &p.action {
            Action::Quarantine {
                reason,
                headers,
                message_id,
                from,
                subject,
                size,
            } => {
                let row = sqlx::query(
                    "INSERT INTO quarantine (dedupe_key, mailbox, origin, reason, message_id, from_addr, subject, size, headers, created_at, content_hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .bind(key)
                .bind(&p.mailbox)
                .bind(p.origin.to_string())
                .bind(text(reason))
                .bind(opt_text(message_id.as_deref()))
                .bind(opt_text(from.as_deref()))
                .bind(opt_text(subject.as_deref()))
                .bind(*size as i64)
                .bind(headers.clone())
                .bind(now)
                .bind(content_hash)
                .fetch_one(&mut **tx)
                .await?;
                Ok(Outcome::Quarantined(row.try_get(0)?))
            }
            Action::Ticket {
                parsed,
                decision,
                keys,
            } => {
                let (number, outcome) = match self
                    .find_thread(tx, keys, decision.alert_key.as_deref())
                    .await?
                {
                    Some(number) => (number, Outcome::Reply(number)),
                    None => {
                        let number = self
                            .create_ticket(tx, parsed, decision, &p.mailbox, now)
                            .await?;
                        (number, Outcome::Created(number))
                    }
                };
                let message = self
                    .insert_message(tx, number, p, (key, content_hash), parsed, now)
                    .await?;
                if let Some((in_quarantine, earlier_id, earlier_message)) = collision {
                    let earlier = if in_quarantine {
                        serde_json::json!({"quarantine": earlier_id})
                    } else {
                        serde_json::json!({"ticket": earlier_id, "message": earlier_message})
                    };
                    self.event(
                        tx,
                        number,
                        now,
                        "message-id collision",
                        &serde_json::json!({
                            "message": message,
                            "message_id": parsed.message_id,
                            "earlier": earlier,
                            "detail": "another message with this Message-ID and different content was recorded earlier; this one is kept as a new message",
                        }),
                    )
                    .await?;
                }
                match outcome {
                    Outcome::Created(_) => {
                        self.event(
                            tx,
                            number,
                            now,
                            "created",
                            &serde_json::json!({
                                "message": message,
                                "mailbox": p.mailbox,
                                "origin": p.origin.to_string(),
                                "queue": decision.queue,
                                "kind": decision.kind,
                                "explanation": decision.explanation,
                            }),
                        )
                        .await?;
                        for address in &decision.recipients {
                            sqlx::query(
                                "INSERT INTO ticket_recipients (ticket_number, address) VALUES ($1, $2)
                                 ON CONFLICT DO NOTHING",
                            )
                            .bind(number)
                            .bind(text(&address.to_ascii_lowercase()))
                            .execute(&mut **tx)
                            .await?;
                        }
                    }
                    _ => {
                        sqlx::query(
                            "UPDATE tickets SET updated_at = $1,
                               status = CASE WHEN status = 'resolved' THEN 'open' ELSE status END
                             WHERE number = $2",
                        )
                        .bind(now)
                        .bind(number)
                        .execute(&mut **tx)
                        .await?;
                        self.event(
                            tx,
                            number,
                            now,
                            "reply",
                            &serde_json::json!({
                                "message": message,
                                "mailbox": p.mailbox,
                                "origin": p.origin.to_string(),
                                "thread": if keys.tagged.iter().any(|t| t.number == number) {
                                    "subject tag"
                                } else if decision.alert_key.is_some() && keys.referenced.is_empty() {
                                    "alert key"
                                } else {
                                    "references"
                                },
                            }),
                        )
                        .await?;
                    }
                }
                if let Some(composer) = &self.composer {
                    let created = matches!(outcome, Outcome::Created(_));
                    let recent_acks = match (created, parsed.requester()) {
                        (true, Some(sender)) => {
                            let row = sqlx::query(
                                "SELECT COUNT(*) FROM outbox WHERE kind = 'acknowledgement' AND first_rcpt = $1 AND created_at > $2",
                            )
                            .bind(text(&sender.address.to_ascii_lowercase()))
                            .bind(now - composer.ack_window_ms())
                            .fetch_one(&mut **tx)
                            .await?;
                            row.try_get(0)?
                        }
                        _ => 0,
                    };
                    let (recent_notified_sender, recent_notified_alert) = if created {
                        self.recent_notified(
                            tx,
                            parsed.requester().map(|a| a.address.to_ascii_lowercase()),
                            decision.alert_key.as_deref(),
                            now - composer.ack_window_ms(),
                        )
                        .await?
                    } else {
                        (0, 0)
                    };
                    let event = TicketEvent {
                        created,
                        number,
                        mailbox: &p.mailbox,
                        decision,
                        parsed,
                        recent_acks,
                        recent_notified_sender,
                        recent_notified_alert,
                        now,
                    };
                    for out in composer.compose(&event) {
                        self.queue_mail(tx, number, out, now).await?;
                    }
                }
                Ok(outcome)
            }
        }
    }

    /// The content hash of a message stored before content hashes were kept,
    /// from its raw bytes (as `pipeline::dedupe_key` computes it); stored.
    async fn backfill_content_hash(
        &self,
        tx: &mut Transaction<'static, Any>,
        message: i64,
    ) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT raw FROM messages WHERE id = $1")
            .bind(message)
            .fetch_one(&mut **tx)
            .await?;
        let raw: Vec<u8> = row.try_get(0)?;
        let hash = crate::pipeline::content_hash(&crate::parse::parse(&raw), &raw);
        sqlx::query("UPDATE messages SET content_hash = $1 WHERE id = $2")
            .bind(&hash)
            .bind(message)
            .execute(&mut **tx)
            .await?;
        Ok(hash)
    }

    /// Tickets notified (any mail but an acknowledgement) since `since`: from
    /// this sender, and with this alert key.
    async fn recent_notified(
        &self,
        tx: &mut Transaction<'static, Any>,
        sender: Option<String>,
        alert_key: Option<&str>,
        since: i64,
    ) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT
               COUNT(DISTINCT CASE WHEN LOWER(t.requester) = $1 THEN t.number END),
               COUNT(DISTINCT CASE WHEN t.alert_key = $2 THEN t.number END)
             FROM outbox o JOIN tickets t ON t.number = o.ticket_number
             WHERE o.created_at > $3 AND o.kind <> 'acknowledgement'",
        )
        .bind(text(sender.as_deref().unwrap_or("")))
        .bind(opt_text(alert_key))
        .bind(since)
        .fetch_one(&mut **tx)
        .await?;
        let by_sender: i64 = if sender.is_some() { row.try_get(0)? } else { 0 };
        let by_alert: i64 = if alert_key.is_some() {
            row.try_get(1)?
        } else {
            0
        };
        Ok((by_sender, by_alert))
    }

    /// Writes one composed mail to the outbox, or its suppression to the history.
    async fn queue_mail(
        &self,
        tx: &mut Transaction<'static, Any>,
        number: i64,
        out: Outgoing,
        now: i64,
    ) -> Result<(), StoreError> {
        match out {
            Outgoing::Mail(m) => {
                let first = m
                    .rcpt
                    .first()
                    .map(|r| r.to_ascii_lowercase())
                    .unwrap_or_default();
                let row = sqlx::query(
                    "INSERT INTO outbox (ticket_number, kind, mail_from, rcpt, first_rcpt, subject, message_id, raw,
                       status, attempts, next_attempt_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9) RETURNING id",
                )
                .bind(number)
                .bind(&m.kind)
                .bind(text(&m.from))
                .bind(json(&m.rcpt))
                .bind(text(&first))
                .bind(text(&m.subject))
                .bind(text(&m.message_id))
                .bind(m.raw)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
                // The outbox row is the record that the mail was queued; the
                // ticket shows it beside its history (`TicketDetail::mail`).
                let _id: i64 = row.try_get(0)?;
                Ok(())
            }
            Outgoing::Suppressed { kind, reason } => {
                self.event(
                    tx,
                    number,
                    now,
                    "mail suppressed",
                    &serde_json::json!({"kind": kind, "reason": reason}),
                )
                .await
            }
        }
    }

    /// The ticket a message belongs to: a case tag naming an existing ticket,
    /// else the ticket of the newest message it refers to.
    async fn find_thread(
        &self,
        tx: &mut Transaction<'static, Any>,
        keys: &ThreadKeys,
        alert_key: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        // A repeated alert lands on the open ticket of the same alert.
        if let Some(key) = alert_key {
            let found = sqlx::query(
                "SELECT number FROM tickets WHERE alert_key = $1 AND status <> 'resolved' ORDER BY number DESC LIMIT 1",
            )
            .bind(text(key))
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(row) = found {
                return Ok(Some(row.try_get(0)?));
            }
        }
        // A case tag names a ticket of its own desk only.
        for tag in &keys.tagged {
            let found = sqlx::query(
                "SELECT number FROM tickets WHERE number = $1 AND UPPER(desk_tag) = UPPER($2)",
            )
            .bind(tag.number)
            .bind(text(&tag.desk_tag))
            .fetch_optional(&mut **tx)
            .await?;
            if found.is_some() {
                return Ok(Some(tag.number));
            }
        }
        self.referenced_ticket(tx, &keys.referenced).await
    }

    /// The ticket of the most specific Message-ID in `ids` (In-Reply-To first,
    /// then References newest first) that names one of its messages or a mail
    /// we sent about it. One query however many ids (the thread keys are bounded).
    async fn referenced_ticket(
        &self,
        tx: &mut Transaction<'static, Any>,
        ids: &[String],
    ) -> Result<Option<i64>, StoreError> {
        if ids.is_empty() {
            return Ok(None);
        }
        let params: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let list = params.join(", ");
        // For each id: the ticket of its first stored message (source 0), else
        // of the first mail we sent with it (source 1).
        let sql = format!(
            "SELECT message_id, ticket_number, CAST(0 AS BIGINT), id FROM messages WHERE message_id IN ({list})
             UNION ALL
             SELECT message_id, ticket_number, CAST(1 AS BIGINT), id FROM outbox
               WHERE message_id IN ({list}) AND ticket_number IS NOT NULL"
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(text(id));
        }
        let rows = query.fetch_all(&mut **tx).await?;
        let mut best: std::collections::HashMap<String, (i64, i64, i64)> =
            std::collections::HashMap::new();
        for r in &rows {
            let mid: String = r.try_get(0)?;
            let number: i64 = r.try_get(1)?;
            let rank = (r.try_get::<i64, _>(2)?, r.try_get::<i64, _>(3)?);
            let entry = best.entry(mid).or_insert((rank.0, rank.1, number));
            if rank < (entry.0, entry.1) {
                *entry = (rank.0, rank.1, number);
            }
        }
        Ok(ids
            .iter()
            .find_map(|id| best.get(text(id).as_str()).map(|&(_, _, number)| number)))
    }

    async fn create_ticket(
        &self,
        tx: &mut Transaction<'static, Any>,
        parsed: &ParsedMessage,
        decision: &Decision,
        mailbox: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        // A counter row, not a sequence: numbers stay gap-free across rollbacks.
        let row = sqlx::query(
            "UPDATE counters SET value = value + 1 WHERE name = 'ticket' RETURNING value",
        )
        .fetch_optional(&mut **tx)
        .await?;
        let number: i64 = match row {
            Some(r) => r.try_get(0)?,
            None => {
                sqlx::query("INSERT INTO counters (name, value) VALUES ('ticket', $1)")
                    .bind(self.first_number)
                    .execute(&mut **tx)
                    .await?;
                self.first_number
            }
        };
        let requester = parsed.requester();
        sqlx::query(
            "INSERT INTO tickets (number, desk, desk_tag, queue, kind, status, requester, requester_name, subject, mailbox, created_at, updated_at,
               urgency, impact, priority, due_at, tags, alert_key)
             VALUES ($1, $2, $3, $4, $5, 'new', $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(number)
        .bind(&decision.desk)
        .bind(&decision.desk_tag)
        .bind(&decision.queue)
        .bind(decision.kind.as_str())
        .bind(text(requester.map(|a| a.address.as_str()).unwrap_or("unknown")))
        .bind(opt_text(requester.and_then(|a| a.name.as_deref())))
        .bind(text(parsed.subject.as_deref().unwrap_or("(no subject)")))
        .bind(mailbox)
        .bind(now)
        .bind(decision.urgency.as_str())
        .bind(decision.impact.as_str())
        .bind(decision.priority.as_str())
        .bind(decision.due_ms)
        .bind(json(&decision.tags))
        .bind(opt_text(decision.alert_key.as_deref()))
        .execute(&mut **tx)
        .await?;
        Ok(number)
    }

    async fn insert_message(
        &self,
        tx: &mut Transaction<'static, Any>,
        number: i64,
        p: &Prepared,
        (key, content_hash): (&str, Option<&str>),
        m: &ParsedMessage,
        now: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO messages (ticket_number, dedupe_key, message_id, mailbox, origin, from_addr, from_name,
               to_addrs, cc_addrs, reply_to, subject, sent_date, in_reply_to, refs, auto_signals, body_text,
               body_source, problems, raw, raw_size, sha256, received_at, content_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
             RETURNING id",
        )
        .bind(number)
        .bind(key)
        .bind(opt_text(m.message_id.as_deref()))
        .bind(&p.mailbox)
        .bind(p.origin.to_string())
        .bind(opt_text(m.from.as_ref().map(|a| a.address.as_str())))
        .bind(opt_text(m.from.as_ref().and_then(|a| a.name.as_deref())))
        .bind(json(&m.to))
        .bind(json(&m.cc))
        .bind(json(&m.reply_to))
        .bind(opt_text(m.subject.as_deref()))
        .bind(m.date)
        .bind(json(&m.in_reply_to))
        .bind(json(&m.references))
        .bind(json(&m.auto))
        .bind(text(&m.body))
        .bind(json(&m.body_source).trim_matches('"').to_string())
        .bind(json(&m.problems))
        .bind(p.raw.clone())
        .bind(m.size as i64)
        .bind(&m.sha256)
        .bind(now)
        .bind(content_hash)
        .fetch_one(&mut **tx)
        .await?;
        let id: i64 = row.try_get(0)?;
        for a in &m.attachments {
            sqlx::query(
                "INSERT INTO attachments (message, name, content_type, size, sha256) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(opt_text(a.name.as_deref()))
            .bind(text(&a.content_type))
            .bind(a.size as i64)
            .bind(&a.sha256)
            .execute(&mut **tx)
            .await?;
        }
        Ok(id)
    }

    async fn event(
        &self,
        tx: &mut Transaction<'static, Any>,
        number: i64,
        at: i64,
        kind: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO events (ticket_number, at, kind, actor, detail) VALUES ($1, $2, $3, 'triaged', $4)")
            .bind(number)
            .bind(at)
            .bind(kind)
            .bind(json(detail))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The cursor of a watched folder, if any batch was committed there.
    pub async fn cursor(&self, mailbox: &str) -> Result<Option<Cursor>, StoreError> {
        let row = sqlx::query("SELECT uidvalidity, last_uid FROM mailbox_state WHERE mailbox = $1")
            .bind(mailbox)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(Cursor {
                mailbox: mailbox.to_string(),
                uidvalidity: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                last_uid: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            }),
            None => None,
        })
    }

    /// Records a cursor on its own (a new UIDVALIDITY, or an empty folder).
    pub async fn set_cursor(&self, cursor: &Cursor) -> Result<(), StoreError> {
        self.commit(&[], Some(cursor)).await.map(|_| ())
    }

    pub async fn list_tickets(
        &self,
        filter: &TicketFilter,
    ) -> Result<Vec<TicketSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, desk_tag, desk, queue, kind, status, requester, requester_name, subject, mailbox, created_at, updated_at,
               urgency, impact, priority, due_at, tags, alert_key
             FROM tickets
             WHERE ($1 = '' OR queue = $1) AND ($2 = '' OR status = $2)
             ORDER BY number DESC LIMIT $3",
        )
        .bind(filter.queue.clone().unwrap_or_default())
        .bind(filter.status.clone().unwrap_or_default())
        .bind(filter.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ticket_summary).collect()
    }

    pub async fn count_tickets(&self) -> Result<i64, StoreError> {
        Ok(self.counts().await?.tickets)
    }

    /// How many of each thing the store holds.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM tickets), (SELECT COUNT(*) FROM messages),
                    (SELECT COUNT(*) FROM events WHERE kind = 'duplicate'), (SELECT COUNT(*) FROM quarantine)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Counts {
            tickets: row.try_get(0)?,
            messages: row.try_get(1)?,
            duplicates: row.try_get(2)?,
            quarantined: row.try_get(3)?,
        })
    }

    pub async fn ticket(&self, number: i64) -> Result<Option<TicketDetail>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT number, desk_tag, desk, queue, kind, status, requester, requester_name, subject, mailbox, created_at, updated_at,
               urgency, impact, priority, due_at, tags, alert_key
             FROM tickets WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let ticket = ticket_summary(&row)?;
        let rows = sqlx::query(
            "SELECT id, message_id, mailbox, origin, from_addr, from_name, to_addrs, cc_addrs, reply_to, subject,
               sent_date, in_reply_to, refs, auto_signals, body_text, body_source, problems, raw_size, sha256, received_at
             FROM messages WHERE ticket_number = $1 ORDER BY id",
        )
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        let mut messages = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let attachments = sqlx::query(
                "SELECT name, content_type, size, sha256 FROM attachments WHERE message = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|a| {
                Ok(AttachmentRow {
                    name: a.try_get(0)?,
                    content_type: a.try_get(1)?,
                    size: a.try_get(2)?,
                    sha256: a.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            messages.push(MessageRow {
                id,
                message_id: r.try_get(1)?,
                mailbox: r.try_get(2)?,
                origin: r.try_get(3)?,
                from: r.try_get(4)?,
                from_name: r.try_get(5)?,
                to: from_json(r, 6)?,
                cc: from_json(r, 7)?,
                reply_to: from_json(r, 8)?,
                subject: r.try_get(9)?,
                date: r.try_get(10)?,
                in_reply_to: from_json(r, 11)?,
                references: from_json(r, 12)?,
                auto_signals: from_json(r, 13)?,
                body: r.try_get(14)?,
                body_source: r.try_get(15)?,
                problems: from_json(r, 16)?,
                size: r.try_get(17)?,
                sha256: r.try_get(18)?,
                received_at: r.try_get(19)?,
                attachments,
            });
        }
        let events = sqlx::query(
            "SELECT at, kind, actor, detail FROM events WHERE ticket_number = $1 ORDER BY id",
        )
        .bind(number)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|e| {
            Ok(EventRow {
                at: e.try_get(0)?,
                kind: e.try_get(1)?,
                actor: e.try_get(2)?,
                detail: from_json(e, 3)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(TicketDetail {
            recipients: self.recipients(number).await?,
            mail: self.ticket_outbox(number).await?,
            ticket,
            messages,
            events,
        }))
    }

    /// The raw bytes of a stored message, for audit and re-processing.
    pub async fn raw_message(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT raw FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Pending mail whose next attempt is due, oldest first.
    pub async fn due_outbox(&self, now: i64, limit: i64) -> Result<Vec<OutboxMail>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, ticket_number, kind, mail_from, rcpt, raw, attempts, created_at FROM outbox
             WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxMail {
                    id: r.try_get(0)?,
                    ticket_number: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    from: r.try_get(3)?,
                    rcpt: from_json(r, 4)?,
                    raw: r.try_get(5)?,
                    attempts: r.try_get(6)?,
                    created_at: r.try_get(7)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// When the next pending mail is due, if any is pending.
    pub async fn next_outbox_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
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
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE outbox SET status = $1, attempts = attempts + 1, sent_at = $2, last_error = $3
             WHERE id = $4 RETURNING ticket_number, kind",
        )
        .bind(if sent { "sent" } else { "failed" })
        .bind(sent.then_some(now))
        .bind((!sent).then(|| text(words)))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = row
            && let Some(number) = r.try_get::<Option<i64>, _>(0)?
        {
            let kind: String = r.try_get(1)?;
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
            self.event(&mut tx, number, now, event, &detail).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a temporary failure; the mail is tried again at `next_at`.
    pub async fn outbox_retry(&self, id: i64, next_at: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE id = $3",
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
        let rows = sqlx::query(
            "SELECT id, ticket_number, kind, rcpt, subject, message_id, status, attempts, next_attempt_at,
               last_error, created_at, sent_at
             FROM outbox WHERE ($1 = '' OR status = $1) AND ($2 < 0 OR ticket_number = $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(status.unwrap_or(""))
        .bind(ticket.unwrap_or(-1))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxSummary {
                    id: r.try_get(0)?,
                    ticket_number: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    rcpt: from_json(r, 3)?,
                    subject: r.try_get(4)?,
                    message_id: r.try_get(5)?,
                    status: r.try_get(6)?,
                    attempts: r.try_get(7)?,
                    next_attempt_at: r.try_get(8)?,
                    last_error: r.try_get(9)?,
                    created_at: r.try_get(10)?,
                    sent_at: r.try_get(11)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// A ticket's recipient list.
    pub async fn recipients(&self, number: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT address FROM ticket_recipients WHERE ticket_number = $1 ORDER BY address",
        )
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Stored messages with ids above `after`, oldest first: (id, mailbox, raw).
    pub async fn raw_messages_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, mailbox, raw FROM messages WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    pub async fn list_quarantine(&self) -> Result<Vec<QuarantineRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, mailbox, origin, reason, message_id, from_addr, subject, size, created_at, headers
             FROM quarantine ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantineRow {
                    id: r.try_get(0)?,
                    mailbox: r.try_get(1)?,
                    origin: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    message_id: r.try_get(4)?,
                    from: r.try_get(5)?,
                    subject: r.try_get(6)?,
                    size: r.try_get(7)?,
                    created_at: r.try_get(8)?,
                    headers: r.try_get(9)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

fn ticket_summary(r: &AnyRow) -> Result<TicketSummary, StoreError> {
    let number: i64 = r.try_get(0)?;
    let tag: String = r.try_get(1)?;
    Ok(TicketSummary {
        number,
        tag: crate::thread::format_tag(&tag, number),
        desk: r.try_get(2)?,
        queue: r.try_get(3)?,
        kind: r.try_get(4)?,
        status: r.try_get(5)?,
        requester: r.try_get(6)?,
        requester_name: r.try_get(7)?,
        subject: r.try_get(8)?,
        mailbox: r.try_get(9)?,
        created_at: r.try_get(10)?,
        updated_at: r.try_get(11)?,
        urgency: r.try_get(12)?,
        impact: r.try_get(13)?,
        priority: r.try_get(14)?,
        due_at: r.try_get(15)?,
        tags: from_json(r, 16)?,
        alert_key: r.try_get(17)?,
    })
}

fn from_json<T: serde::de::DeserializeOwned>(r: &AnyRow, i: usize) -> Result<T, sqlx::Error> {
    let s: String = r.try_get(i)?;
    serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

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

// Markers of messages in hand (IMAP), kept apart from the transaction code.
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
                let uid: i64 = r.try_get(0)?;
                Ok(InFlight {
                    uid: u32::try_from(uid).unwrap_or(u32::MAX),
                    run_id: r.try_get(1)?,
                    stage: r.try_get(2)?,
                    attempts: r.try_get(3)?,
                    parse_deaths: r.try_get(4)?,
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
        const COLUMNS: usize = 8;
        for rows in marks.chunks(500) {
            let values: Vec<String> = (0..rows.len())
                .map(|i| {
                    let cols: Vec<String> = (1..=COLUMNS)
                        .map(|c| format!("${}", i * COLUMNS + c))
                        .collect();
                    format!("({})", cols.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO imap_in_flight (mailbox, uidvalidity, uid, run_id, stage, attempts, parse_deaths, updated_at)
                 VALUES {}
                 ON CONFLICT (mailbox, uidvalidity, uid) DO UPDATE SET run_id = excluded.run_id,
                   stage = excluded.stage, attempts = excluded.attempts,
                   parse_deaths = excluded.parse_deaths, updated_at = excluded.updated_at",
                values.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for m in rows {
                q = q
                    .bind(&cursor.mailbox)
                    .bind(i64::from(cursor.uidvalidity))
                    .bind(i64::from(m.uid))
                    .bind(&m.run_id)
                    .bind(&m.stage)
                    .bind(m.attempts)
                    .bind(m.parse_deaths)
                    .bind(now);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
