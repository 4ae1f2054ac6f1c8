//! The sender: delivers the outbox over SMTP (`notify::smtp`: lettre's SMTP
//! connection, one kept connection per lane).
//!
//! It claims due rows oldest first (a claim names this sender's run and
//! expires, see `store::outbox`), so that two daemons on one database never
//! send the same mail twice; a mail is started only while enough of its claim
//! is left to finish it. It sends each as the bytes that were composed
//! (so a retry sends exactly the same mail, Message-ID included), and records
//! the result right after the server's answer:
//! - accepted: `sent`. The at-least-once window is the time between the
//!   server's acceptance and that update; a crash inside it sends the mail once
//!   more after restart. Lanes share these updates' commits (`Recorder`: a
//!   group commit), and a lane takes its next mail only after its update.
//! - 5xx: `failed`, with the server's words, never retried on its own
//!   (`triaged outbox retry ID` puts it back).
//! - anything else (4xx, connection refused, timeout): retried with exponential
//!   backoff, and given up as `failed` after `give_up_after_secs`.
//!
//! It wakes when a transaction queues mail (a `Notify`), when a retry falls
//! due, and at least every few seconds.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::smtp::{Lane, SendError};
use crate::clock::now_ms;
use crate::config::{Security, SmtpConfig};
use crate::store::{OutboxMail, Store};

/// Longest sleep between looks at the outbox.
const IDLE_WAIT: Duration = Duration::from_secs(5);
const BATCH: i64 = 200;
/// The shortest claim on a batch of mail.
/// (With the default 30 s SMTP timeout a claim lasts 244 s; a dead
/// daemon's claimed mail waits that long for another sender.)
const MIN_CLAIM: Duration = Duration::from_secs(60);

pub type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// lettre's whole transport, for `triaged check --connect` (EHLO, AUTH, NOOP).
pub fn transport(c: &SmtpConfig) -> Result<Transport, String> {
    let mut b = Transport::builder_dangerous(&c.host).port(c.port());
    b = match c.security {
        Security::Tls => b.tls(Tls::Wrapper(super::smtp::tls_parameters(c)?)),
        Security::Starttls => b.tls(Tls::Required(super::smtp::tls_parameters(c)?)),
        Security::Plain => b.tls(Tls::None),
    };
    if let (Some(user), Some(pw)) = (&c.username, c.password()?) {
        b = b.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
    }
    Ok(b.timeout(Some(Duration::from_secs(c.timeout_secs)))
        .pool_config(PoolConfig::new().max_size(1))
        .build())
}

/// One lane per `concurrency`: each lane sends its share of a batch in order
/// over its own kept connection (see `notify::smtp`).
pub fn transports(c: &SmtpConfig) -> Result<Vec<Lane>, String> {
    super::smtp::lanes(c, c.concurrency.max(1))
}

/// The sender task.
pub struct Sender {
    pub store: Store,
    /// One per lane, from [`transports`].
    pub transports: Vec<Lane>,
    pub config: SmtpConfig,
    /// Poked after every commit that queued mail.
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// Group commit of outcomes: a lane queues its mail's outcome, then waits
/// for the right to write; whoever gets it writes every queued outcome in
/// one transaction. A lane goes on to its next mail only once its outcome is
/// committed (by itself or by the lane before it), so the at-least-once
/// window stays "acceptance to the update"; lanes just share the commits.
#[derive(Default)]
struct Recorder {
    done: std::sync::Mutex<Vec<(i64, bool, String)>>,
    writer: tokio::sync::Mutex<()>,
}

impl Recorder {
    async fn record(&self, store: &Store, id: i64, sent: bool, words: String) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, sent, words));
        let _writer = self.writer.lock().await;
        let batch = std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()));
        if let Err(e) = store.outbox_finish_many(&batch).await {
            let ids: Vec<i64> = batch.iter().map(|(id, _, _)| *id).collect();
            warn!(outbox = ?ids, error = %e, "could not record the outcome of mails; they are sent again when their claim expires");
        }
    }
}

enum Delivery {
    Sent(String),
    Retry(String),
    Failed(String),
}

impl Sender {
    /// Runs until shutdown. At shutdown the mail in hand is finished first.
    pub async fn run(self) {
        let sender = Arc::new(self);
        let recorder = Arc::new(Recorder::default());
        let claimer = claimer_name();
        // The longest one mail can take (two tries, each bounded by the
        // timeout): a mail is started only with this much of its claim left.
        let one_mail = 2 * sender.config.timeout_secs.max(1) as i64 * 1000 + 1000;
        let claim = (MIN_CLAIM.as_millis() as i64).max(4 * one_mail);
        loop {
            if sender.shutdown.is_cancelled() {
                return;
            }
            let now = now_ms();
            let until = now + claim;
            let due = match sender.store.claim_outbox(&claimer, now, until, BATCH).await {
                Ok(d) => d,
                Err(e) => {
                    warn!(error = %e, "outbox unreadable; retrying");
                    Vec::new()
                }
            };
            let full = due.len() as i64 == BATCH;
            let mut any_retry = false;
            if !due.is_empty() {
                // Lanes take the next mail from one queue, so a slow server
                // answer holds up one lane, not a share of the batch.
                let queue = std::sync::Mutex::new(std::collections::VecDeque::from(due));
                let next = || queue.lock().ok().and_then(|mut q| q.pop_front());
                let results =
                    futures::future::join_all((0..sender.transports.len().max(1)).map(|lane| {
                        let s = sender.clone();
                        let recorder = recorder.clone();
                        let next = &next;
                        async move {
                            let mut all_done = true;
                            let mut unsent = Vec::new();
                            while let Some(mail) = next() {
                                if now_ms() + one_mail > until {
                                    // Too little of the claim is left: another
                                    // sender may take this mail before we are done.
                                    unsent.push(mail.id);
                                    continue;
                                }
                                all_done &= s.deliver(mail, lane, &recorder).await;
                            }
                            (all_done, unsent)
                        }
                    }))
                    .await;
                any_retry = results.iter().any(|(ok, _)| !ok);
                let unsent: Vec<i64> = results.into_iter().flat_map(|(_, u)| u).collect();
                if !unsent.is_empty()
                    && let Err(e) = sender.store.release_outbox(&claimer, &unsent).await
                {
                    warn!(error = %e, "could not release unsent mail; it is sent when its claim expires");
                }
            }
            if full && !any_retry {
                continue;
            }
            let wait = match sender.store.next_outbox_due().await {
                Ok(Some(at)) => Duration::from_millis(
                    (at - now_ms()).clamp(0, IDLE_WAIT.as_millis() as i64) as u64,
                ),
                _ => IDLE_WAIT,
            };
            tokio::select! {
                _ = sender.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = sender.shutdown.cancelled() => return,
            }
        }
    }

    /// Sends one mail and records the outcome; false when it is to be retried.
    async fn deliver(&self, mail: OutboxMail, lane: usize, recorder: &Recorder) -> bool {
        let result = self.send(&mail, lane).await;
        let recorded = match &result {
            Delivery::Sent(response) => {
                info!(outbox = mail.id, ticket = ?mail.ticket_number, kind = %mail.kind, to = ?mail.rcpt, "mail sent");
                crate::metrics::mail_sent(&mail.kind);
                recorder
                    .record(&self.store, mail.id, true, response.clone())
                    .await;
                Ok(())
            }
            Delivery::Failed(error) => {
                warn!(outbox = mail.id, ticket = ?mail.ticket_number, error = %error, "mail failed for good");
                crate::metrics::mail_failed(&mail.kind);
                recorder
                    .record(&self.store, mail.id, false, error.clone())
                    .await;
                Ok(())
            }
            Delivery::Retry(error) => {
                let age = now_ms() - mail.created_at;
                if age > self.config.give_up_after_secs as i64 * 1000 {
                    let why = format!(
                        "gave up after {} attempts over {} s: {error}",
                        mail.attempts + 1,
                        age / 1000
                    );
                    warn!(outbox = mail.id, error = %why, "mail failed for good");
                    crate::metrics::mail_failed(&mail.kind);
                    recorder.record(&self.store, mail.id, false, why).await;
                    Ok(())
                } else {
                    let delay = backoff(&self.config, mail.attempts);
                    warn!(outbox = mail.id, error = %error, retry_in_s = delay.as_secs(), "mail not sent; will retry");
                    self.store
                        .outbox_retry(mail.id, now_ms() + delay.as_millis() as i64, error)
                        .await
                }
            }
        };
        if let Err(e) = recorded {
            warn!(outbox = mail.id, error = %e, "could not record the outcome of a mail");
        }
        matches!(result, Delivery::Sent(_) | Delivery::Failed(_))
    }

    async fn send(&self, mail: &OutboxMail, lane: usize) -> Delivery {
        let Some(transport) = self.transports.get(lane).or(self.transports.first()) else {
            return Delivery::Retry("no SMTP transport".to_string());
        };
        let from = match Address::from_str(&mail.from) {
            Ok(a) => a,
            Err(e) => return Delivery::Failed(format!("sender {:?}: {e}", mail.from)),
        };
        let mut rcpt = Vec::with_capacity(mail.rcpt.len());
        for r in &mail.rcpt {
            match Address::from_str(r) {
                Ok(a) => rcpt.push(a),
                Err(e) => return Delivery::Failed(format!("recipient {r:?}: {e}")),
            }
        }
        let envelope = match Envelope::new(Some(from), rcpt) {
            Ok(e) => e,
            Err(e) => return Delivery::Failed(format!("envelope: {e}")),
        };
        // A temporary failure is often about the connection, not the mail (a
        // server's per-session message limit, a connection it dropped, a
        // greeting that never came): one more try, on a fresh connection (a
        // failed try never keeps its connection), before backing off. Each try
        // is bounded by `timeout_secs` in all (`Lane::send`).
        let mut last = String::new();
        for _ in 0..2 {
            match transport.send(&envelope, &mail.raw).await {
                Ok(response) => {
                    return Delivery::Sent(format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    ));
                }
                Err(SendError::Permanent(e)) => return Delivery::Failed(e),
                Err(SendError::Temporary(e)) => last = e,
            }
        }
        Delivery::Retry(last)
    }
}

/// A name for this sender's claims, unique across processes and runs.
fn claimer_name() -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}:{}:{}:{}",
        host.trim(),
        std::process::id(),
        now_ms(),
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// `retry_initial_secs * 2^attempts`, at most `retry_max_secs`.
pub fn backoff(c: &SmtpConfig, attempts: i64) -> Duration {
    let exp = attempts.clamp(0, 20) as u32;
    let secs = c.retry_initial_secs.saturating_mul(1u64 << exp);
    Duration::from_secs(secs.min(c.retry_max_secs).max(1))
}
