//! The sender: delivers the outbox over SMTP with lettre.
//!
//! It claims due rows oldest first (a claim names this sender's run and
//! expires, see `store::outbox`), so that two daemons on one database never
//! send the same mail twice; a mail is started only while enough of its claim
//! is left to finish it. It sends each as the bytes that were composed
//! (so a retry sends exactly the same mail, Message-ID included), and records
//! the result right after the server's answer:
//! - accepted: `sent`. The at-least-once window is the time between the
//!   server's acceptance and that update; a crash inside it sends the mail once
//!   more after restart.
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

use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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

/// Builds the SMTP transport from the configuration.
pub fn transport(c: &SmtpConfig) -> Result<Transport, String> {
    let tls = |host: &str| -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(host.to_string());
        if let Some(file) = &c.ca_file {
            let pem =
                std::fs::read(file).map_err(|e| format!("ca_file {}: {e}", file.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {}: {e}", file.display()))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map_err(|e| format!("TLS: {e}"))
    };
    let mut b = Transport::builder_dangerous(&c.host).port(c.port());
    b = match c.security {
        Security::Tls => b.tls(Tls::Wrapper(tls(&c.host)?)),
        Security::Starttls => b.tls(Tls::Required(tls(&c.host)?)),
        Security::Plain => b.tls(Tls::None),
    };
    if let (Some(user), Some(pw)) = (&c.username, c.password()?) {
        b = b.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
    }
    // One kept-alive connection per transport; the sender runs one transport
    // per lane (see `transports`).
    let pool = PoolConfig::new().max_size(1);
    Ok(b.timeout(Some(Duration::from_secs(c.timeout_secs)))
        .pool_config(pool)
        .build())
}

/// One transport per lane of `concurrency`: each lane sends its share of a
/// batch in order over its own connection.
pub fn transports(c: &SmtpConfig) -> Result<Vec<Transport>, String> {
    (0..c.concurrency.max(1)).map(|_| transport(c)).collect()
}

/// The sender task.
pub struct Sender {
    pub store: Store,
    /// One per lane, from [`transports`].
    pub transports: Vec<Transport>,
    pub config: SmtpConfig,
    /// Poked after every commit that queued mail.
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
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
                                all_done &= s.deliver(mail, lane).await;
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
    async fn deliver(&self, mail: OutboxMail, lane: usize) -> bool {
        let result = self.send(&mail, lane).await;
        let recorded = match &result {
            Delivery::Sent(response) => {
                info!(outbox = mail.id, ticket = ?mail.ticket_number, kind = %mail.kind, to = ?mail.rcpt, "mail sent");
                crate::metrics::mail_sent(&mail.kind);
                self.store.outbox_sent(mail.id, response).await
            }
            Delivery::Failed(error) => {
                warn!(outbox = mail.id, ticket = ?mail.ticket_number, error = %error, "mail failed for good");
                crate::metrics::mail_failed(&mail.kind);
                self.store.outbox_failed(mail.id, error).await
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
                    self.store.outbox_failed(mail.id, &why).await
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
        // A temporary refusal is often about the connection, not the mail (a
        // server's per-session message limit, an idle connection it dropped):
        // one more try, on a fresh connection, before backing off.
        let mut last = None;
        for _ in 0..2 {
            // A guard above lettre's own timeouts: no mail may hold a slot forever.
            let limit = Duration::from_secs(self.config.timeout_secs.max(1));
            let sent =
                match tokio::time::timeout(limit, transport.send_raw(&envelope, &mail.raw)).await {
                    Ok(r) => r,
                    Err(_) => {
                        last = Some(format!("no answer from the SMTP server within {limit:?}"));
                        continue;
                    }
                };
            match sent {
                Ok(response) => {
                    return Delivery::Sent(format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    ));
                }
                Err(e) if e.is_permanent() => return Delivery::Failed(e.to_string()),
                Err(e) => last = Some(e.to_string()),
            }
        }
        Delivery::Retry(last.unwrap_or_default())
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
