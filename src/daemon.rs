//! The daemon: one watcher task per IMAP mailbox whose lease it holds
//! ([`fleet`]: several daemons on one database share the mailboxes), a
//! shared store, the outbox sender (woken by the pipeline's commits that
//! queue mail), the SLA scheduler (`sla::Scheduler`: warnings, escalations,
//! daily status; ticking on the daemon that holds the `scheduler` lease),
//! the optional HTTP listener (`http`: metrics and health), and a designed
//! shutdown (cancel, let each watcher finish the chunk in hand, join every
//! task against a deadline, release the leases).
//!
//! [`lock_sqlite`]: on SQLite, `triaged run` holds an exclusive lock file
//! beside the database for its whole life; a second daemon refuses to start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::notify::sender::Sender;
use crate::pipeline::Pipeline;
use crate::sla::Scheduler;
use crate::sources::imap::Watcher;
use crate::store::{Backend, Store};

pub mod fleet;

use fleet::Fleet;

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
    // The files as they are before the rules and templates are read: a
    // change made while the daemon starts (before the watcher's first look)
    // is then still a change, and is reloaded.
    let seen = (
        fingerprint(&config.paths.rules),
        fingerprint(&config.paths.templates),
    );
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
    // Every watched mailbox is checked (its password readable) before the
    // daemon starts; the fleet task then starts the watchers of the
    // mailboxes whose leases it holds.
    let mut watched = Vec::new();
    for mailbox in &config.mailboxes {
        let watcher = Watcher::new(pipeline.clone(), mailbox, CancellationToken::new())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("mailbox {:?}", mailbox.name))?;
        if watcher.is_none() {
            info!(mailbox = %mailbox.name, "mailbox has no [mailboxes.imap]; not watched");
            continue;
        }
        watched.push(mailbox.clone());
    }
    let spools: Vec<(String, std::path::PathBuf)> = config
        .mailboxes
        .iter()
        .filter_map(|m| m.spool.clone().map(|s| (m.name.clone(), s)))
        .collect();
    if watched.is_empty() && spools.is_empty() {
        bail!(
            "no mailbox has an [mailboxes.imap] table or a spool in {}: nothing to watch",
            config.source
        );
    }
    // Each spool (what `triaged deliver` writes) is ingested on this host,
    // whatever leases it holds: the spool is local to it.
    let spool_stop = shutdown.clone();
    let spool_tasks: Vec<_> = spools
        .into_iter()
        .map(|(name, dir)| {
            tokio::spawn(crate::ingest::spool::watch(
                pipeline.clone(),
                name,
                dir,
                spool_stop.clone(),
            ))
        })
        .collect();
    let http = match &config.http {
        Some(h) => Some(
            crate::http::start(h, store.clone(), shutdown.clone())
                .await
                .with_context(|| format!("[http] listen = {}", h.listen))?,
        ),
        None => None,
    };
    let mailboxes = watched.len();
    let fleet = tokio::spawn(
        Fleet {
            pipeline: pipeline.clone(),
            mailboxes: watched,
            ttl: config.cluster.lease(),
            exclusive: store.backend() == Backend::Sqlite,
            shutdown: shutdown.clone(),
            deadline: SHUTDOWN_DEADLINE,
        }
        .run(),
    );
    // The SLA clock: the templates in force (reloads swap them), the same
    // wake; on one daemon of several at a time (the `scheduler` lease).
    let current = {
        let pipeline = pipeline.clone();
        // The pipeline was given its notifier above; the templates are not
        // loaded a second time for the scheduler.
        let first = pipeline
            .notifier()
            .ok_or_else(|| anyhow::anyhow!("internal: the pipeline has no notifier"))?;
        Arc::new(move || pipeline.notifier().unwrap_or_else(|| first.clone()))
            as crate::sla::CurrentNotifier
    };
    let scheduler = tokio::spawn(
        Scheduler {
            config: config.clone(),
            store: store.clone(),
            notifier: current,
            clock: crate::clock::system(),
            wake: wake.clone(),
            leader: Some(crate::sla::Leader {
                holder: fleet::holder().to_string(),
                ttl: config.cluster.lease(),
            }),
        }
        .run(shutdown.clone()),
    );
    let reloader = tokio::spawn(watch_files(pipeline.clone(), seen, shutdown.clone()));
    info!(mailboxes, holder = fleet::holder(), database = %crate::config::redact_url(&config.store.database_url), "triaged running");
    let status = format!("watching {mailboxes} mailboxes");
    service_manager(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);

    shutdown.cancelled().await;
    service_manager(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("finishing messages in hand"),
    ]);
    info!("shutting down: finishing messages in hand");
    // The fleet task stops its watchers within SHUTDOWN_DEADLINE and
    // releases their leases.
    if let Err(e) = fleet.await {
        error!(error = %e, "fleet task failed");
    }
    for task in spool_tasks {
        if let Err(e) = task.await {
            error!(error = %e, "spool task failed");
        }
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
    if let Some(http) = http {
        let _ = http.await;
    }
    store.close().await;
    info!("stopped");
    Ok(())
}

/// The lock file of a SQLite database: `PATH.lock` beside `PATH`.
pub fn sqlite_lock_path(db: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{db}.lock"))
}

/// On SQLite, takes the exclusive lock (flock) on the lock file beside the
/// database, held as long as the returned file is open: one daemon per
/// database file. `None` on PostgreSQL (any number of daemons share it) and
/// for an in-memory database. Commands other than `run` never take it.
pub fn lock_sqlite(database_url: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(db) = crate::store::sqlite_file(database_url) else {
        return Ok(None);
    };
    let path = sqlite_lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `triaged run` is using the SQLite database {db} (it holds {}); \
             only one daemon may run on a SQLite database: stop the other one, or use PostgreSQL \
             to run several (see deploy/scaling.md)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("locking {}", path.display())))
        }
    }
}

/// Tells the service manager (systemd, `Type=notify`) how the daemon is:
/// ready once every watcher is started, stopping when shutdown begins. A
/// no-op without `$NOTIFY_SOCKET`; a failure to tell is logged, never fatal.
fn service_manager(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "cannot notify the service manager ($NOTIFY_SOCKET)");
    }
}

/// How often the rules and templates folders are looked at for changes.
const FILES_POLL: Duration = Duration::from_secs(2);

/// Reloads the routing rules and the mail templates on SIGHUP, and either
/// whenever a file in its folder changes. A set with problems is refused
/// (each logged as `file:line: reason`) and the daemon goes on with the last
/// good one; the rules and the templates are judged apart. `seen`: the
/// rules' and the templates' fingerprints taken before they were loaded.
async fn watch_files(
    pipeline: Pipeline,
    seen: (Fingerprint, Fingerprint),
    shutdown: CancellationToken,
) {
    let rules_dir = pipeline.config().paths.rules.clone();
    let templates_dir = pipeline.config().paths.templates.clone();
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; rules and templates reload on file changes only");
            None
        }
    };
    let (mut seen_rules, mut seen_templates) = seen;
    loop {
        let (why, rules, templates) = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = async {
                match hup.as_mut() {
                    Some(h) => { h.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => ("SIGHUP", true, true),
            _ = tokio::time::sleep(FILES_POLL) => {
                let (r, t) = (fingerprint(&rules_dir), fingerprint(&templates_dir));
                let changed = (r != seen_rules, t != seen_templates);
                (seen_rules, seen_templates) = (r, t);
                if changed == (false, false) {
                    continue;
                }
                ("files changed", changed.0, changed.1)
            }
        };
        if rules {
            let fresh = pipeline.clone();
            let reloaded = off_runtime(move || fresh.reload_rules()).await;
            report_reload("routing rules", why, &rules_dir, reloaded);
        }
        if templates {
            let fresh = pipeline.clone();
            let reloaded = off_runtime(move || fresh.reload_templates()).await;
            report_reload("templates", why, &templates_dir, reloaded);
        }
    }
}

/// Logs the outcome of one reload: the count, or every problem and that the
/// last good set stays.
fn report_reload(
    what: &str,
    why: &str,
    dir: &std::path::Path,
    reloaded: anyhow::Result<Result<usize, crate::problem::Problems>>,
) {
    match reloaded {
        Ok(Ok(count)) => {
            info!(count, reason = why, dir = %dir.display(), "{what} reloaded")
        }
        Ok(Err(problems)) => {
            for p in &problems.0 {
                error!(problem = %p, "{what} refused");
            }
            warn!(reason = why, "keeping the last good {what}");
        }
        Err(e) => error!(error = %e, "{what} reload failed; keeping the last good {what}"),
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

/// The most files a fingerprint looks at: a folder of rules or templates
/// is small; a mistake (the folder is `/`) must not cost a walk of the disk
/// every two seconds.
const FINGERPRINT_FILES: usize = 10_000;

/// What [`fingerprint`] notes of a folder.
type Fingerprint = Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)>;

/// Names, sizes and modification times of the files under `dir` (and its
/// subfolders, for templates' desk and queue overrides): changes when any
/// file does.
fn fingerprint(dir: &std::path::Path) -> Fingerprint {
    let mut out = Vec::new();
    let mut folders = vec![(dir.to_path_buf(), 0)];
    while let Some((folder, depth)) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            if out.len() >= FINGERPRINT_FILES {
                break;
            }
            let Ok(meta) = e.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if depth < 3 {
                    folders.push((e.path(), depth + 1));
                }
            } else {
                out.push((e.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
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
