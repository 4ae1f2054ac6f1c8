//! The daemon: one watcher task per IMAP mailbox, a shared store, the
//! outbox sender (woken by the pipeline's commits that queue mail), the SLA
//! scheduler (`sla::Scheduler`: warnings, escalations, daily status), and a
//! designed shutdown (cancel, let each watcher finish the chunk in hand, join
//! every task against a deadline).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::notify::sender::Sender;
use crate::pipeline::Pipeline;
use crate::sla::Scheduler;
use crate::sources::imap::Watcher;
use crate::store::Store;

/// How long shutdown waits for watchers to finish their chunk in hand.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(60);
/// How long shutdown lets due mail go out before stopping the sender.
const OUTBOX_FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(
    config: Arc<Config>,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let wake = Arc::new(tokio::sync::Notify::new());
    let notifier =
        crate::notify::notifier(&config).map_err(|p| anyhow::anyhow!("templates:\n{p}"))?;
    // The sender has its own token: it stops after the watchers, once the
    // outbox has had a chance to flush.
    let sender_stop = CancellationToken::new();
    let sender = match &config.smtp {
        Some(smtp) => {
            let transport = crate::notify::sender::transports(smtp)
                .map_err(anyhow::Error::msg)
                .context("smtp")?;
            info!(host = %smtp.host, port = smtp.port(), security = ?smtp.security, "outbox sender started");
            Some(tokio::spawn(
                Sender {
                    store: store.clone(),
                    transports: transport,
                    config: smtp.clone(),
                    wake: wake.clone(),
                    shutdown: sender_stop.clone(),
                }
                .run(),
            ))
        }
        None => {
            warn!(
                "no [smtp] configured: mail is queued in the outbox but not sent (see `triaged outbox list`)"
            );
            None
        }
    };
    let pipeline = {
        let (config, store) = (config.clone(), store.clone());
        off_runtime(move || Pipeline::new(config, store))
            .await?
            .map_err(|p| anyhow::anyhow!("invalid routing rules:\n{p}"))?
            .with_notifier(notifier, wake.clone())
    };
    let mut tasks = JoinSet::new();
    for mailbox in &config.mailboxes {
        let watcher = Watcher::new(pipeline.clone(), mailbox, shutdown.clone())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("mailbox {:?}", mailbox.name))?;
        let Some(watcher) = watcher else {
            info!(mailbox = %mailbox.name, "mailbox has no [mailboxes.imap]; not watched");
            continue;
        };
        tasks.spawn(watcher.run());
    }
    if tasks.is_empty() {
        bail!(
            "no mailbox has an [mailboxes.imap] table in {}: nothing to watch",
            config.source
        );
    }
    let reloader = tokio::spawn(watch_rules(pipeline.clone(), shutdown.clone()));
    // The SLA clock: its own notifier (the same templates), the same wake.
    let sla_notifier =
        crate::notify::notifier(&config).map_err(|p| anyhow::anyhow!("templates:\n{p}"))?;
    let scheduler = tokio::spawn(
        Scheduler {
            config: config.clone(),
            store: store.clone(),
            notifier: Arc::new(sla_notifier),
            clock: crate::clock::system(),
            wake: wake.clone(),
        }
        .run(shutdown.clone()),
    );
    info!(mailboxes = tasks.len(), database = %crate::config::redact_url(&config.store.database_url), "triaged running");

    shutdown.cancelled().await;
    info!("shutting down: finishing messages in hand");
    let joined = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                error!(error = %e, "watcher task failed");
            }
        }
    })
    .await;
    if joined.is_err() {
        warn!("watchers did not stop within {SHUTDOWN_DEADLINE:?}; aborting them");
        tasks.abort_all();
    }
    if let Err(e) = scheduler.await {
        error!(error = %e, "SLA scheduler task failed");
    }
    if let Some(sender) = sender {
        // Let mail that is due now go out, within a deadline; the rest waits
        // in the outbox for the next start.
        let flush_until = tokio::time::Instant::now() + OUTBOX_FLUSH_DEADLINE;
        while tokio::time::Instant::now() < flush_until
            && store
                .due_outbox(crate::clock::now_ms(), 1)
                .await
                .map(|d| !d.is_empty())
                .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sender_stop.cancel();
        if let Err(e) = sender.await {
            error!(error = %e, "sender task failed");
        }
    }
    let _ = reloader.await;
    store.close().await;
    info!("stopped");
    Ok(())
}

/// How often the rules folder is looked at for changes.
const RULES_POLL: Duration = Duration::from_secs(2);

/// Reloads the routing rules on SIGHUP and whenever a file in the rules folder
/// changes. A set with problems is refused (each logged as `file:line: reason`)
/// and the daemon goes on with the last good one.
async fn watch_rules(pipeline: Pipeline, shutdown: CancellationToken) {
    let dir = pipeline.config().paths.rules.clone();
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; rules reload on file changes only");
            None
        }
    };
    let mut seen = fingerprint(&dir);
    loop {
        let why = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = async {
                match hup.as_mut() {
                    Some(h) => { h.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => "SIGHUP",
            _ = tokio::time::sleep(RULES_POLL) => {
                let now = fingerprint(&dir);
                if now == seen {
                    continue;
                }
                seen = now;
                "files changed"
            }
        };
        let fresh = pipeline.clone();
        let reloaded = match off_runtime(move || fresh.reload_rules()).await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "routing rules reload failed; keeping the last good rules");
                continue;
            }
        };
        match reloaded {
            Ok(count) => {
                info!(rules = count, reason = why, dir = %dir.display(), "routing rules reloaded")
            }
            Err(problems) => {
                for p in &problems.0 {
                    error!(problem = %p, "routing rules refused");
                }
                warn!(reason = why, "keeping the last good routing rules");
            }
        }
    }
}

/// Runs `f` (compiling rules: up to seconds of CPU for a large set) on the
/// blocking pool, never on a runtime worker, so that watchers and the sender
/// go on meanwhile.
pub async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("the rules loader stopped")
}

/// Names, sizes and modification times of the rule files: changes when any file does.
fn fingerprint(
    dir: &std::path::Path,
) -> Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    Some((e.path(), meta.len(), meta.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    /// On a single-threaded runtime, work run inline would starve every task:
    /// the closure waits for a task of the runtime, which only runs if the
    /// closure is elsewhere.
    #[tokio::test(flavor = "current_thread")]
    async fn rules_load_off_the_runtime() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let ticker = tokio::spawn(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(());
        });
        let got =
            super::off_runtime(move || rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok())
                .await
                .expect("joined");
        assert!(got, "the closure ran on the runtime thread");
        ticker.await.expect("ticker");
    }
}
