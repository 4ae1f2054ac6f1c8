//! Store: the only module that speaks SQL.
//!
//! One [`Store`] over sqlx's `Any` driver, so the same statements run on the
//! embedded SQLite (default, WAL) and on PostgreSQL. Migrations for each backend
//! live in `migrations/<backend>/` and run when the store opens.
//!
//! - [`conn`]: connecting, the pool's clean-connection rules, migrations.
//! - [`write`]: [`Tx`], the write transaction and its primitives (tickets,
//!   messages, events, quarantine, cursors, outbox rows). The pipeline opens
//!   it, records a batch through it and commits it; the store decides nothing
//!   about what a message means.
//! - [`read`]: read models for the command line.
//! - [`outbox`]: the outbox as a claimed queue, for the sender.
//! - [`in_flight`]: markers of IMAP messages in hand.
//! - [`lease`]: named leases with expiry (a mailbox watched by one daemon,
//!   a daemon's liveness, the scheduler's leader).
//! - [`ops`]: reachability, the gauges of a metrics scrape, SQLite backup.
//! - [`report`]: the report card's aggregates (`triaged report`).
//! - [`sla`]: the SLA deadline index and the once-only marks of what the
//!   scheduler sent.
//! - [`codec`]: how stored mail bytes are kept (zstd), decoded with a bound.
//!
//! The store knows the pure types (`parse`, `classify`, `thread`) and nothing
//! of sources, the pipeline, notify or the command line.

pub mod codec;
mod conn;
mod conversation;
mod deferred;
mod in_flight;
mod lease;
mod lookahead;
mod ops;
mod outbox;
mod read;
mod report;
mod sla;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

pub use conversation::{Routing, RoutingUpdate, ThreadMail, TicketState};
pub use in_flight::InFlight;
pub use lease::Lease;
pub use lookahead::Probes;
pub use ops::Gauges;
pub use outbox::{ComposedMail, NewMail, OutboxMail, OutboxSummary, PendingMail};
pub use read::{
    AttachmentRow, Counts, EventRow, LinkRow, MailboxActivity, MessageRow, OldestOpen,
    QuarantineRow, QueueCount, SYSTEM_ACTOR, StatusCount, Summary, TicketDetail, TicketFilter,
    TicketSummary, TimelineEntry,
};
pub use report::{
    BUCKET_MS, BucketCount, EscalationRows, GroupCounts, ReportData, ReportQuery, ResponseTimes,
};
pub use sla::{LatestMessage, SlaMark, SlaTicket, StatusChange};
pub use write::{MessageBytes, NewMessage, NewQuarantine, RecentCaps, Seen, Tx};

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
    /// Stored mail bytes that cannot be decoded (corrupt, unknown codec, or
    /// over the size limit).
    #[error("{0}")]
    Codec(#[from] codec::CodecError),
    /// An error whose words held a secret of the database URL, redacted.
    #[error("{message}")]
    Redacted { message: String, retryable: bool },
    /// A mail queued while it was composed on another thread
    /// ([`Tx::queue_pending_mail`]) could not be composed: the transaction
    /// is void, and is done again composing in order.
    #[error("composing a queued mail: {0}")]
    Composing(String),
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
                    // SQLite: BUSY and LOCKED, with their extended codes.
                    || self.sqlite_code().is_some_and(|n| matches!(n, 5 | 6))
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
            StoreError::Migrate(_) | StoreError::Url(_) | StoreError::Codec(_) => false,
            StoreError::Redacted { retryable, .. } => *retryable,
            // Done again composing in order, the work succeeds.
            StoreError::Composing(_) => true,
        }
    }

    /// SQLite's primary result code, if this is a SQLite database error.
    fn sqlite_code(&self) -> Option<u32> {
        match self {
            StoreError::Db(e) => sqlite_code(e),
            _ => None,
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
        match self.sqlite_code() {
            // SQLite (with their extended codes): NOMEM, READONLY, IOERR,
            // FULL, CANTOPEN, PROTOCOL.
            Some(n) => matches!(n, 7 | 8 | 10 | 13 | 14 | 15),
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

/// SQLite's primary result code of a database error (its extended code
/// with the extension masked off); `None` for anything else, PostgreSQL's
/// five-character SQLSTATEs included (SQLite's codes are numbers of at most
/// four digits).
fn sqlite_code(e: &sqlx::Error) -> Option<u32> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    let code = db.code()?;
    if code.len() >= 5 {
        return None;
    }
    code.parse::<u32>().ok().map(|n| n & 0xff)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A ticket's status. Stored as its lower-case name (the only place the
/// names are strings, with JSON and templates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Just made from a message.
    New,
    /// Being worked on (the desk has answered), or reopened by a reply.
    Open,
    /// Waiting on the customer; their reply makes it open again.
    Stalled,
    /// Done; a reply reopens it, and a repeated alert makes a new ticket.
    Resolved,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::New, Status::Open, Status::Stalled, Status::Resolved];

    /// The name stored in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Open => "open",
            Status::Stalled => "stalled",
            Status::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown ticket status {s:?}"))
    }
}

/// The highest IMAP UID done in a folder, committed with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub mailbox: String,
    pub uidvalidity: u32,
    pub last_uid: u32,
}

/// The database, SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    first_number: i64,
    /// `ingest.max_message_bytes`: bounds what stored mail may decode to.
    max_message: usize,
}

/// `ingest.max_message_bytes` until [`Store::with_message_limit`] says otherwise.
pub const DEFAULT_MESSAGE_LIMIT: u64 = 25 * 1024 * 1024;

/// What a stored message may decode to at most: the size limit and a margin.
fn message_cap(max_message: usize) -> usize {
    max_message.saturating_add(codec::MARGIN)
}

/// What a composed mail may decode to at most: the attachments it relays
/// from one message (base64, under 1.4 times their size) and its text.
fn mail_cap(max_message: usize) -> usize {
    max_message.saturating_mul(2).saturating_add(codec::MARGIN)
}

impl Store {
    /// Opens (creating if needed) the database at `url` and migrates it.
    /// `first_number` is the number the first ticket gets.
    /// Errors never show the URL's password or secret parameters.
    pub async fn open(url: &str, first_number: i64) -> Result<Store, StoreError> {
        conn::connect(url, first_number)
            .await
            .map_err(|e| e.redacted(url))
    }

    /// The message size limit (`ingest.max_message_bytes`) reads of stored
    /// mail are bounded by (a row decoding to more is an error, not an
    /// allocation). Default [`DEFAULT_MESSAGE_LIMIT`].
    pub fn with_message_limit(mut self, bytes: u64) -> Store {
        self.max_message = usize::try_from(bytes).unwrap_or(usize::MAX);
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Accounts for a write transaction that did not commit, and makes sure
    /// nothing runs on the connection it failed on: counted in [`metrics`],
    /// and on SQLite the pool's only connection (the one the transaction
    /// failed on, released by now or being released) is closed so that the
    /// next transaction starts on a fresh one.
    ///
    /// Whoever runs a [`Tx`] calls this with the error of any step of it or
    /// of its commit, after the `Tx` is dropped.
    pub async fn failed(&self, e: StoreError) -> StoreError {
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

    /// Records a cursor on its own (a new UIDVALIDITY, or an empty folder).
    pub async fn set_cursor(&self, cursor: &Cursor) -> Result<(), StoreError> {
        let once = async {
            let mut tx = self.begin().await?;
            tx.set_cursor(cursor).await?;
            tx.commit().await
        };
        match once.await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(e).await),
        }
    }
}

/// The file of a SQLite URL (`sqlite://PATH` or `sqlite:PATH`, without its
/// `?options`); `None` for other backends and in-memory databases.
pub fn sqlite_file(url: &str) -> Option<&str> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// SQLite finds a message by its Message-ID through the dedupe key's
/// index: a message with an ID is stored under `mid:<id>` (the first with
/// it) or `mid:<id>#<content hash>` (one that reuses it with other
/// content), and both sort in `["mid:<id>", "mid:<id>$")` (`#` is the byte
/// before `$`). The range can hold other IDs too (`<id>!x`), so each match
/// is checked on `message_id`. SQLite keeps no index of its own on
/// `messages.message_id` (migration 0015): one random-place index fewer to
/// write per message. The bounds of `id`, as the pipeline has it.
pub(super) fn mid_range(id: &str) -> (String, String) {
    (format!("mid:{id}"), format!("mid:{id}$"))
}

/// The SQL term matching the messages stored with one Message-ID (joined
/// with OR for several), its three parameters bound in order: the bounds
/// of [`mid_range`], then the ID as stored ([`text`]).
pub(super) const MID_RANGE_SQL: &str = "(dedupe_key >= ? AND dedupe_key < ? AND message_id = ?)";

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

/// The JSON text in column `column`, decoded.
fn from_json<T: serde::de::DeserializeOwned>(r: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    let s: String = r.try_get(column)?;
    serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The raw message of a `messages` row (columns `raw`, `raw_codec`), decoded.
fn message_raw_of(r: &AnyRow, max_message: usize) -> Result<Vec<u8>, StoreError> {
    let codec: String = r.try_get("raw_codec")?;
    let stored: Vec<u8> = r.try_get("raw")?;
    Ok(codec::decode(&codec, stored, message_cap(max_message))?)
}

/// The composed mail of an `outbox` row (columns `raw`, `raw_codec`), decoded:
/// the very bytes that were queued.
fn mail_raw_of(r: &AnyRow, max_message: usize) -> Result<Vec<u8>, StoreError> {
    let codec: String = r.try_get("raw_codec")?;
    let stored: Vec<u8> = r.try_get("raw")?;
    Ok(codec::decode(&codec, stored, mail_cap(max_message))?)
}

/// The decoded body of a `messages` row (columns `body_text`, `raw`,
/// `raw_codec`): rows written since migration 0014 keep no `body_text` and
/// derive it from their raw message (the same `parse` that made it), older
/// rows kept it.
fn message_body_of(r: &AnyRow, max_message: usize) -> Result<String, StoreError> {
    let codec: String = r.try_get("raw_codec")?;
    if codec == codec::NONE {
        return Ok(r.try_get("body_text")?);
    }
    let raw = message_raw_of(r, max_message)?;
    Ok(text(&crate::parse::parse(&raw).body))
}
