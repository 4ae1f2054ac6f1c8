//! Several daemons on one database: each mailbox is watched by exactly one
//! `triaged run` at a time, under a lease (`store::lease`).
//!
//! Every third of `[cluster] lease_secs` the fleet task of each daemon
//! - renews its own liveness lease `daemon:HOLDER` (how many daemons are
//!   alive decides each one's fair share of the mailboxes);
//! - renews the lease `mailbox:NAME` of each mailbox it watches; a renewal
//!   that fails (the lease was taken, or the database did not answer) stops
//!   that watcher at once, well before the lease could expire (it finishes
//!   the chunk in hand and takes no new work);
//! - gives up mailboxes beyond its share (a daemon joined), stopping the
//!   watcher first and releasing the lease after;
//! - takes free or expired leases up to its share and starts their watchers.
//!   A lease held by a run of this host whose process is gone (a restart
//!   after kill -9) is taken over at once; on SQLite, where the daemon holds
//!   the database's lock file, every other holder is gone.
//!
//! At shutdown the watchers stop and every lease is released, so another
//! daemon takes the mailboxes over at once.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::now_ms;
use crate::config::Mailbox;
use crate::metrics::{self, SessionState};
use crate::pipeline::Pipeline;
use crate::sources::imap::Watcher;
use crate::store::{Lease, Store};

/// The lease name of a mailbox.
pub fn mailbox_lease(mailbox: &str) -> String {
    format!("mailbox:{mailbox}")
}

const DAEMON_PREFIX: &str = "daemon:";

/// This process's holder id: `host:pid:random`. Unique across hosts,
/// processes and runs; the same for every lease this process takes (the
/// scheduler's leader lease included). `$TRIAGED_NODE_NAME` stands for the
/// host name when set (containers whose host names repeat, or tests that
/// play several hosts on one).
pub fn holder() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = std::env::var("TRIAGED_NODE_NAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let mut random = std::collections::hash_map::RandomState::new().build_hasher();
        random.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        format!(
            "{}:{}:{:016x}",
            host.replace(':', "_"),
            std::process::id(),
            random.finish()
        )
    })
}

/// Whether `other` is a holder id of a run of this host whose process is
/// gone: an earlier run with our pid (a container's pid 1 restarted), or a
/// pid that no longer exists. A pid reused by another process counts as
/// alive: the lease then simply expires.
pub fn is_dead_local(other: &str, me: &str) -> bool {
    let parts = |id: &str| -> Option<(String, String)> {
        let mut it = id.rsplitn(3, ':');
        let _random = it.next()?;
        let pid = it.next()?.to_string();
        let host = it.next()?.to_string();
        Some((host, pid))
    };
    let (Some((host, pid)), Some((my_host, my_pid))) = (parts(other), parts(me)) else {
        return false;
    };
    if other == me || host != my_host || pid.parse::<u32>().is_err() {
        return false;
    }
    pid == my_pid
        || (std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new("/proc").join(&pid).exists())
}

/// How many of `n` mailboxes each of `daemons` live daemons watches at most.
pub fn fair_share(n: usize, daemons: usize) -> usize {
    n.div_ceil(daemons.max(1))
}

/// One mailbox and its watcher, if this daemon runs one.
struct Slot {
    mailbox: Mailbox,
    lease: String,
    term: Option<Term>,
}

/// One run of a watcher under the lease.
struct Term {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// Stopping to give the mailbox up: release the lease once stopped.
    release: bool,
}

/// The fleet task's settings.
pub struct Fleet {
    pub pipeline: Pipeline,
    pub mailboxes: Vec<Mailbox>,
    pub ttl: Duration,
    /// This daemon holds the database alone (SQLite and its lock file):
    /// every other holder is a dead run.
    pub exclusive: bool,
    pub shutdown: CancellationToken,
    /// How long shutdown waits for the watchers to finish the chunk in hand.
    pub deadline: Duration,
}

impl Fleet {
    /// Runs until shutdown; then stops every watcher (within `deadline`)
    /// and releases every lease.
    pub async fn run(self) {
        let store = self.pipeline.store().clone();
        let me = holder();
        let mut slots: Vec<Slot> = self
            .mailboxes
            .iter()
            .map(|m| {
                metrics::session(&m.name, SessionState::Standby);
                metrics::lease_held(&m.name, false);
                Slot {
                    mailbox: m.clone(),
                    lease: mailbox_lease(&m.name),
                    term: None,
                }
            })
            .collect();
        // Each daemon looks at the mailboxes from its own starting point, so
        // that daemons starting together do not all reach for the same one.
        let offset = (me.bytes().map(usize::from).sum::<usize>()) % slots.len().max(1);
        slots.rotate_left(offset);
        let every = (self.ttl / 3).max(Duration::from_millis(200));
        info!(
            holder = me,
            lease_secs = self.ttl.as_secs(),
            mailboxes = slots.len(),
            "taking mailbox leases"
        );
        loop {
            if let Err(e) = self.round(&store, me, &mut slots).await {
                warn!(error = %e, "lease round failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        // Watchers' tokens are children of shutdown: they are stopping.
        let stopped = tokio::time::timeout(self.deadline, async {
            for slot in &mut slots {
                if let Some(term) = slot.term.take() {
                    if let Err(e) = term.task.await {
                        error!(mailbox = %slot.mailbox.name, error = %e, "watcher task failed");
                    }
                    if let Err(e) = store.release_lease(&slot.lease, me).await {
                        warn!(mailbox = %slot.mailbox.name, error = %e, "could not release the mailbox lease; it expires");
                    }
                }
            }
        })
        .await;
        if stopped.is_err() {
            warn!(
                "watchers did not stop within {:?}; aborting them",
                self.deadline
            );
            for slot in &slots {
                if let Some(term) = &slot.term {
                    term.task.abort();
                }
            }
            // Their leases expire: another daemon waits for that.
        }
        let _ = store
            .release_lease(&format!("{DAEMON_PREFIX}{me}"), me)
            .await;
    }

    /// One round: liveness, renewals, share, takes.
    async fn round(
        &self,
        store: &Store,
        me: &str,
        slots: &mut [Slot],
    ) -> Result<(), crate::store::StoreError> {
        let now = now_ms();
        // Renewals come first and never wait on anything else failing: a
        // watcher whose lease cannot be renewed must stop now.
        let alive = store
            .try_lease_at(&format!("{DAEMON_PREFIX}{me}"), me, now, self.ttl)
            .await;

        // Renew what we watch; a failed renewal stops the watcher now.
        for slot in slots.iter_mut() {
            let Some(term) = &mut slot.term else { continue };
            if term.stop.is_cancelled() {
                continue;
            }
            match store.renew_lease_at(&slot.lease, me, now, self.ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(mailbox = %slot.mailbox.name, "mailbox lease lost to another daemon; stopping its watcher");
                    term.stop.cancel();
                }
                Err(e) => {
                    warn!(mailbox = %slot.mailbox.name, error = %e,
                        "mailbox lease could not be renewed; stopping its watcher (taken again when the database answers)");
                    term.stop.cancel();
                }
            }
        }

        alive?;

        // Watchers that ended: stopped for a lost or given-up lease.
        for slot in slots.iter_mut() {
            if slot.term.as_ref().is_some_and(|t| t.task.is_finished()) {
                let release = slot.term.take().is_some_and(|t| t.release);
                metrics::lease_held(&slot.mailbox.name, false);
                metrics::session(&slot.mailbox.name, SessionState::Standby);
                if release {
                    store.release_lease(&slot.lease, me).await?;
                    info!(mailbox = %slot.mailbox.name, "mailbox given up to another daemon");
                }
            }
        }

        // The share: every live daemon (dead runs of this host not counted).
        let daemons = store
            .leases(DAEMON_PREFIX)
            .await?
            .iter()
            .filter(|l| l.expires_at > now)
            .filter(|l| {
                let id = &l.name[DAEMON_PREFIX.len()..];
                id == me || !(self.exclusive || is_dead_local(id, me))
            })
            .count();
        let share = fair_share(slots.len(), daemons);
        let running = |s: &Slot| s.term.as_ref().is_some_and(|t| !t.stop.is_cancelled());
        let mut held = slots.iter().filter(|s| running(s)).count();
        if held > share {
            for slot in slots.iter_mut().rev() {
                if held <= share {
                    break;
                }
                if let Some(term) = &mut slot.term
                    && !term.stop.is_cancelled()
                {
                    info!(mailbox = %slot.mailbox.name, daemons, share, "more daemons alive; giving up a mailbox");
                    term.stop.cancel();
                    term.release = true;
                    held -= 1;
                }
            }
            return Ok(());
        }
        if held == share {
            return Ok(());
        }

        let leases: BTreeMap<String, Lease> = store
            .leases("mailbox:")
            .await?
            .into_iter()
            .map(|l| (l.name.clone(), l))
            .collect();
        for slot in slots.iter_mut() {
            if held >= share || self.shutdown.is_cancelled() {
                break;
            }
            if slot.term.is_some() {
                continue;
            }
            let taken = match leases.get(&slot.lease) {
                Some(l)
                    if l.holder != me
                        && l.expires_at > now
                        && (self.exclusive || is_dead_local(&l.holder, me)) =>
                {
                    let got = store
                        .take_over_lease_at(&slot.lease, &l.holder, me, now, self.ttl)
                        .await?;
                    if got {
                        info!(mailbox = %slot.mailbox.name, dead = %l.holder, "took over the lease of a daemon that is gone");
                    }
                    got
                }
                Some(l) if l.holder != me && l.expires_at > now => false,
                _ => store.try_lease_at(&slot.lease, me, now, self.ttl).await?,
            };
            if !taken {
                continue;
            }
            let stop = self.shutdown.child_token();
            match Watcher::new(self.pipeline.clone(), &slot.mailbox, stop.clone()) {
                Ok(Some(w)) => {
                    info!(mailbox = %slot.mailbox.name, "mailbox lease taken; watching");
                    metrics::lease_held(&slot.mailbox.name, true);
                    slot.term = Some(Term {
                        stop,
                        task: tokio::spawn(w.run()),
                        release: false,
                    });
                    held += 1;
                }
                Ok(None) => {
                    store.release_lease(&slot.lease, me).await?;
                }
                Err(e) => {
                    error!(mailbox = %slot.mailbox.name, error = %e, "cannot start the watcher");
                    store.release_lease(&slot.lease, me).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares() {
        assert_eq!(fair_share(12, 3), 4);
        assert_eq!(fair_share(12, 2), 6);
        assert_eq!(fair_share(12, 0), 12);
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(fair_share(0, 3), 0);
    }

    #[test]
    fn dead_local_holders() {
        let me = holder();
        let (host, rest) = me.split_once(':').unwrap_or(("", ""));
        let pid = rest.split(':').next().unwrap_or("");
        assert!(!is_dead_local(me, me));
        // An earlier run with our pid (a restarted container's pid 1).
        assert!(is_dead_local(&format!("{host}:{pid}:00ff"), me));
        // A pid that cannot exist.
        assert!(is_dead_local(&format!("{host}:4294967295:00ff"), me));
        // Another host, whatever its pid.
        assert!(!is_dead_local(&format!("elsewhere:{pid}:00ff"), me));
        // A live process of this host (pid 1 always runs).
        if pid != "1" {
            assert!(!is_dead_local(&format!("{host}:1:00ff"), me));
        }
        // Not a holder id.
        assert!(!is_dead_local("garbage", me));
        assert!(!is_dead_local(&format!("{host}:x:1"), me));
    }
}
