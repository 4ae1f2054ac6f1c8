//! Metrics: one process-wide Prometheus registry (`prometheus-client`) that
//! every layer reports to, and the state of each mailbox's IMAP session, which
//! `/readyz` judges.
//!
//! It sits low (beside `telemetry`) and imports nothing of the crate, so the
//! sources, notify and the pipeline can report to it; the HTTP listener
//! (`http`) encodes it, after setting the gauges it reads from the store at
//! scrape time ([`set_store`]).
//!
//! Names (all prefixed `triaged_`): `messages_ingested_total{mailbox,outcome}`
//! (outcome `created`, `reply`, `duplicate`, `quarantined`),
//! `ingest_lag_seconds{mailbox}` (arrival on the server to commit),
//! `imap_session_state{mailbox,state}` (1 for the current state),
//! `imap_reconnects_total{mailbox}`, `mailbox_lease_held{mailbox}`,
//! `mails_sent_total{kind}`, `mails_failed_total{kind}`,
//! `auto_replies_suppressed_total{kind}`, `outbox_mails{status}`,
//! `tickets_open{queue,priority}`, `tickets_past_due`,
//! `store_failed_commits_total`, `store_resource_errors_total`,
//! `store_discarded_connections_total`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The state of one mailbox's IMAP session, as its watcher reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Not watched by this daemon (another daemon holds its lease, or none
    /// was taken yet).
    Standby,
    /// Connecting and logging in.
    Connecting,
    /// Logged in, folder selected: taking mail or waiting for it.
    Up,
    /// The session ended (server unreachable, connection lost); reconnecting
    /// with backoff.
    Retrying,
    /// The server refused the login: a wrong password or user. Retried with
    /// backoff, but reported as a failure at once.
    AuthFailed,
    /// The store cannot commit (disk full, read-only): paused, retrying.
    StorePaused,
}

impl SessionState {
    pub const ALL: [SessionState; 6] = [
        SessionState::Standby,
        SessionState::Connecting,
        SessionState::Up,
        SessionState::Retrying,
        SessionState::AuthFailed,
        SessionState::StorePaused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Standby => "standby",
            SessionState::Connecting => "connecting",
            SessionState::Up => "up",
            SessionState::Retrying => "retrying",
            SessionState::AuthFailed => "auth_failed",
            SessionState::StorePaused => "store_paused",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxLabel {
    mailbox: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    mailbox: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    mailbox: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
    priority: String,
}

/// One session's state and since when it has not been up.
#[derive(Debug, Clone, Copy)]
struct Session {
    state: SessionState,
    /// When the current run of states other than `Up` began (`None` while
    /// up or on standby).
    down_since: Option<Instant>,
}

struct Metrics {
    registry: Registry,
    ingested: Family<OutcomeLabels, Counter>,
    lag: Family<MailboxLabel, Histogram>,
    session_state: Family<StateLabels, Gauge>,
    reconnects: Family<MailboxLabel, Counter>,
    lease_held: Family<MailboxLabel, Gauge>,
    sent: Family<KindLabel, Counter>,
    failed: Family<KindLabel, Counter>,
    suppressed: Family<KindLabel, Counter>,
    outbox: Family<StatusLabel, Gauge>,
    open: Family<QueueLabels, Gauge>,
    past_due: Gauge,
    failed_commits: Counter<u64, AtomicU64>,
    resource_errors: Counter<u64, AtomicU64>,
    discarded_connections: Counter<u64, AtomicU64>,
    sessions: Mutex<BTreeMap<String, Session>>,
}

fn lag_histogram() -> Histogram {
    // 50 ms to about 1.8 hours.
    Histogram::new(exponential_buckets(0.05, 2.0, 18))
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let mut registry = Registry::with_prefix("triaged");
        let m = Metrics {
            registry: Registry::default(),
            ingested: Family::default(),
            lag: Family::new_with_constructor(lag_histogram),
            session_state: Family::default(),
            reconnects: Family::default(),
            lease_held: Family::default(),
            sent: Family::default(),
            failed: Family::default(),
            suppressed: Family::default(),
            outbox: Family::default(),
            open: Family::default(),
            past_due: Gauge::default(),
            failed_commits: Counter::default(),
            resource_errors: Counter::default(),
            discarded_connections: Counter::default(),
            sessions: Mutex::new(BTreeMap::new()),
        };
        registry.register(
            "messages_ingested",
            "Messages committed from a mailbox, by outcome (created, reply, duplicate, quarantined)",
            m.ingested.clone(),
        );
        registry.register(
            "ingest_lag_seconds",
            "Time from a message's arrival on the IMAP server to its commit",
            m.lag.clone(),
        );
        registry.register(
            "imap_session_state",
            "State of each mailbox's IMAP session: 1 for the current state",
            m.session_state.clone(),
        );
        registry.register(
            "imap_reconnects",
            "IMAP sessions started again after one ended",
            m.reconnects.clone(),
        );
        registry.register(
            "mailbox_lease_held",
            "1 when this daemon holds the mailbox's lease and watches it",
            m.lease_held.clone(),
        );
        registry.register(
            "mails_sent",
            "Mails the SMTP server accepted",
            m.sent.clone(),
        );
        registry.register(
            "mails_failed",
            "Mails given up as failed (5xx, or temporary failures past the give-up time)",
            m.failed.clone(),
        );
        registry.register(
            "auto_replies_suppressed",
            "Automatic mails not sent (auto-generated sender, rule, limit), by kind",
            m.suppressed.clone(),
        );
        registry.register(
            "outbox_mails",
            "Outbox rows by status, read from the store",
            m.outbox.clone(),
        );
        registry.register(
            "tickets_open",
            "Tickets not resolved, by queue and priority, read from the store",
            m.open.clone(),
        );
        registry.register(
            "tickets_past_due",
            "Tickets not resolved whose initial response is overdue, read from the store",
            m.past_due.clone(),
        );
        registry.register(
            "store_failed_commits",
            "Write transactions that did not commit",
            m.failed_commits.clone(),
        );
        registry.register(
            "store_resource_errors",
            "Failed commits for want of a resource (disk full, I/O error, read-only)",
            m.resource_errors.clone(),
        );
        registry.register(
            "store_discarded_connections",
            "Database connections closed because a transaction on them did not end cleanly",
            m.discarded_connections.clone(),
        );
        Metrics { registry, ..m }
    })
}

fn mailbox(name: &str) -> MailboxLabel {
    MailboxLabel {
        mailbox: name.to_string(),
    }
}

/// A message from `mailbox` committed with `outcome`.
pub fn ingested(mailbox: &str, outcome: &str) {
    metrics()
        .ingested
        .get_or_create(&OutcomeLabels {
            mailbox: mailbox.to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
}

/// The time from a message's arrival to its commit.
pub fn ingest_lag(mailbox_name: &str, lag: Duration) {
    metrics()
        .lag
        .get_or_create(&mailbox(mailbox_name))
        .observe(lag.as_secs_f64());
}

/// A session of `mailbox` is being started again after one ended.
pub fn reconnect(mailbox_name: &str) {
    metrics()
        .reconnects
        .get_or_create(&mailbox(mailbox_name))
        .inc();
}

/// Whether this daemon holds `mailbox`'s lease.
pub fn lease_held(mailbox_name: &str, held: bool) {
    metrics()
        .lease_held
        .get_or_create(&mailbox(mailbox_name))
        .set(i64::from(held));
}

/// The session of `mailbox` is now in `state`.
pub fn session(mailbox_name: &str, state: SessionState) {
    let m = metrics();
    for s in SessionState::ALL {
        m.session_state
            .get_or_create(&StateLabels {
                mailbox: mailbox_name.to_string(),
                state: s.as_str().to_string(),
            })
            .set(i64::from(s == state));
    }
    let mut sessions = match m.sessions.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let entry = sessions.entry(mailbox_name.to_string()).or_insert(Session {
        state,
        down_since: None,
    });
    entry.down_since = match state {
        SessionState::Up | SessionState::Standby => None,
        _ => entry.down_since.or_else(|| Some(Instant::now())),
    };
    entry.state = state;
}

/// The state each known mailbox's session is in now.
pub fn sessions() -> Vec<(String, SessionState)> {
    let sessions = match metrics().sessions.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    sessions
        .iter()
        .map(|(name, s)| (name.clone(), s.state))
        .collect()
}

/// Why this daemon is not ready, one reason per mailbox, given how long a
/// session may be retrying (`budget`): a refused login at once; connecting,
/// retrying or paused for longer than `budget`. Empty: ready.
pub fn unready_mailboxes(budget: Duration) -> Vec<String> {
    let sessions = match metrics().sessions.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let now = Instant::now();
    sessions
        .iter()
        .filter_map(|(name, s)| {
            let down = s.down_since.map(|t| now.saturating_duration_since(t));
            match s.state {
                SessionState::Up | SessionState::Standby => None,
                SessionState::AuthFailed => Some(format!("mailbox {name}: login refused")),
                state => down
                    .filter(|d| *d > budget)
                    .map(|d| format!("mailbox {name}: {} for {} s", state.as_str(), d.as_secs())),
            }
        })
        .collect()
}

/// A mail of `kind` accepted by the SMTP server.
pub fn mail_sent(kind: &str) {
    metrics()
        .sent
        .get_or_create(&KindLabel {
            kind: kind.to_string(),
        })
        .inc();
}

/// A mail of `kind` given up as failed.
pub fn mail_failed(kind: &str) {
    metrics()
        .failed
        .get_or_create(&KindLabel {
            kind: kind.to_string(),
        })
        .inc();
}

/// An automatic mail of `kind` not sent (recorded as `mail suppressed`).
pub fn suppressed(kind: &str) {
    metrics()
        .suppressed
        .get_or_create(&KindLabel {
            kind: kind.to_string(),
        })
        .inc();
}

/// What a scrape read from the store: the gauges, and the store's own
/// counters since the process started.
#[derive(Debug, Clone, Default)]
pub struct StoreReading {
    pub outbox: Vec<(String, i64)>,
    pub open: Vec<(String, String, i64)>,
    pub past_due: i64,
    pub failed_commits: u64,
    pub resource_errors: u64,
    pub discarded_connections: u64,
}

/// Sets the gauges read from the store (label sets no longer present are
/// dropped) and the store's counters.
pub fn set_store(r: &StoreReading) {
    let m = metrics();
    m.outbox.clear();
    for (status, n) in &r.outbox {
        m.outbox
            .get_or_create(&StatusLabel {
                status: status.clone(),
            })
            .set(*n);
    }
    m.open.clear();
    for (queue, priority, n) in &r.open {
        m.open
            .get_or_create(&QueueLabels {
                queue: queue.clone(),
                priority: priority.clone(),
            })
            .set(*n);
    }
    m.past_due.set(r.past_due);
    m.failed_commits
        .inner()
        .store(r.failed_commits, Ordering::Relaxed);
    m.resource_errors
        .inner()
        .store(r.resource_errors, Ordering::Relaxed);
    m.discarded_connections
        .inner()
        .store(r.discarded_connections, Ordering::Relaxed);
}

/// The registry in the OpenMetrics text format.
pub fn encode() -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &metrics().registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_readiness() {
        session("unit-a", SessionState::Connecting);
        session("unit-a", SessionState::Up);
        session("unit-b", SessionState::AuthFailed);
        session("unit-c", SessionState::Retrying);
        let unready = unready_mailboxes(Duration::from_secs(3600));
        assert!(unready.iter().any(|r| r == "mailbox unit-b: login refused"));
        assert!(!unready.iter().any(|r| r.contains("unit-a")));
        // Retrying within its budget is ready; past it (a zero budget) not.
        assert!(!unready.iter().any(|r| r.contains("unit-c")));
        std::thread::sleep(Duration::from_millis(5));
        let strict = unready_mailboxes(Duration::ZERO);
        assert!(
            strict
                .iter()
                .any(|r| r.starts_with("mailbox unit-c: retrying"))
        );
        session("unit-b", SessionState::Standby);
        session("unit-c", SessionState::Up);
        let after = unready_mailboxes(Duration::ZERO);
        assert!(!after.iter().any(|r| r.contains("unit-")), "{after:?}");

        ingested("unit-a", "created");
        ingested("unit-a", "created");
        ingest_lag("unit-a", Duration::from_millis(120));
        set_store(&StoreReading {
            outbox: vec![("pending".to_string(), 3)],
            open: vec![("Q".to_string(), "P2".to_string(), 4)],
            past_due: 1,
            failed_commits: 7,
            ..StoreReading::default()
        });
        let text = encode().unwrap_or_default();
        assert!(
            text.contains(
                "triaged_messages_ingested_total{mailbox=\"unit-a\",outcome=\"created\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("triaged_imap_session_state{mailbox=\"unit-a\",state=\"up\"} 1"));
        assert!(text.contains("triaged_outbox_mails{status=\"pending\"} 3"));
        assert!(text.contains("triaged_tickets_open{queue=\"Q\",priority=\"P2\"} 4"));
        assert!(text.contains("triaged_tickets_past_due 1"));
        assert!(text.contains("triaged_store_failed_commits_total 7"));
        assert!(text.contains("triaged_ingest_lag_seconds_count{mailbox=\"unit-a\"} 1"));
        // A label set gone from the store is gone from the exposition.
        set_store(&StoreReading::default());
        let text = encode().unwrap_or_default();
        assert!(!text.contains("status=\"pending\""), "{text}");
    }
}
