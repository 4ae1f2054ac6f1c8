//! Ingest from files: the engine of `triaged ingest` and of the ingest benchmark.
//!
//! A blocking reader thread walks the inputs, parses and classifies each message
//! and sends batches down a bounded channel; the async side commits each batch
//! in one transaction, or the batches waiting when it is ready in one (a group
//! commit). Reading and parsing overlap with committing, and memory is
//! bounded by the channel, not by the number of messages.

pub mod spool;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::pipeline::{Outcome, Pipeline, Prepared, Summary};
use crate::sources::files::{Item, Walker};

/// Batches in flight between the reader and the committer. A backlog is
/// committed in groups of what the reader has ready (below), so this sets
/// the size of a backlog's transactions: 10 batches of 64 are about 700
/// messages each, against about 320 with 4 (100,000 messages: 7,700-8,200
/// against 6,500-7,500 msg/s, peak 61.3-61.7 against 54.9-55.0 MiB;
/// `benches/README.md`, session 13). Each message read ahead holds its
/// compressed copy, its parse and its decision (`Prepared`).
const CHANNEL_BATCHES: usize = 10;
/// At most this many messages in one transaction: batches the reader has
/// ready when the committer comes back for more are committed together.
const MAX_GROUP: usize = 1024;
/// At most this many bytes of mail prepared and not yet committed
/// ([`Prepared::held_bytes`]), whatever the count: batches are counted in
/// messages, and 640 messages of 25 MiB each must not be read ahead. A
/// message larger than this goes alone.
const READ_AHEAD_BYTES: usize = 32 << 20;
/// Attempts at a batch refused for contention or a lost connection.
const COMMIT_ATTEMPTS: u32 = 5;
/// Attempts at a batch refused for want of a resource (disk full, I/O error,
/// read-only): backoff from 250 ms doubling to 8 s, about 16 s in all.
const RESOURCE_ATTEMPTS: u32 = 7;
const MAX_RESOURCE_DELAY: Duration = Duration::from_secs(8);

/// One message's result, as reported to the caller.
#[derive(Debug, Clone)]
pub struct Report {
    pub origin: String,
    pub result: Result<Outcome, String>,
}

/// Ingests every message under `paths` as if it had arrived in `mailbox`.
/// `on_report` sees each message's outcome in order.
pub async fn ingest_paths(
    pipeline: &Pipeline,
    mailbox: &str,
    paths: Vec<PathBuf>,
    on_report: impl FnMut(&Report),
) -> Summary {
    let budget = Arc::new(ReadAhead::new(READ_AHEAD_BYTES));
    ingest_within(pipeline, mailbox, paths, budget, on_report).await
}

/// [`ingest_paths`] with the read-ahead bounded by `budget`.
async fn ingest_within(
    pipeline: &Pipeline,
    mailbox: &str,
    paths: Vec<PathBuf>,
    budget: Arc<ReadAhead>,
    mut on_report: impl FnMut(&Report),
) -> Summary {
    let batch_size = pipeline.config().ingest.batch_size.max(1);
    let max_bytes = pipeline.config().ingest.max_message_bytes;
    let (tx, mut rx) = mpsc::channel::<Vec<Result<Prepared, (String, String)>>>(CHANNEL_BATCHES);
    let reader_pipeline = pipeline.clone();
    let reader_mailbox = mailbox.to_string();
    let reader_budget = Arc::clone(&budget);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(batch_size);
        for item in Walker::new(&paths, max_bytes) {
            let entry = match item {
                Item::Message { origin, raw } => {
                    Ok(reader_pipeline.prepare(&reader_mailbox, origin, raw))
                }
                Item::Oversized { origin, head, size } => {
                    Ok(reader_pipeline.prepare_oversized(&reader_mailbox, origin, head, size))
                }
                Item::Error { origin, error } => Err((origin.to_string(), error)),
            };
            let bytes = held_bytes(&entry);
            if !reader_budget.try_take(bytes) {
                // Over the budget: what is in hand goes first (the
                // committer gives bytes back only for what it received),
                // then this message waits for room.
                if !batch.is_empty() {
                    let part = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                    if tx.blocking_send(part).is_err() {
                        return;
                    }
                }
                if !reader_budget.take(bytes, || tx.is_closed()) {
                    return;
                }
            }
            batch.push(entry);
            if batch.len() >= batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                if tx.blocking_send(full).is_err() {
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
    });

    let mut summary = Summary::default();
    let mut store_down = false;
    while let Some(mut batch) = rx.recv().await {
        // A backlog (the reader ahead of the committer) is committed in
        // fewer, larger transactions: one sync of the store per group, not
        // per batch. Without a backlog a batch goes alone, as soon as it
        // is ready.
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        // Given back once the group is done with, committed or not.
        let _release = Release {
            budget: &budget,
            bytes: batch.iter().map(held_bytes).sum(),
        };
        let mut ready = Vec::with_capacity(batch.len());
        for entry in batch {
            match entry {
                Ok(p) => ready.push(p),
                Err((origin, error)) => {
                    warn!(origin, error, "input could not be read");
                    summary.errors += 1;
                    on_report(&Report {
                        origin,
                        result: Err(error),
                    });
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        match commit_with_retry(pipeline, &ready, &mut store_down).await {
            Ok(outcomes) => {
                for (p, o) in ready.iter().zip(outcomes) {
                    summary.add(&o);
                    on_report(&Report {
                        origin: p.origin.to_string(),
                        result: Ok(o),
                    });
                }
            }
            Err(e) => {
                for p in &ready {
                    summary.errors += 1;
                    on_report(&Report {
                        origin: p.origin.to_string(),
                        result: Err(e.clone()),
                    });
                }
            }
        }
    }
    if let Err(e) = reader.await {
        warn!(error = %e, "input reader failed");
        summary.errors += 1;
    }
    info!(%summary, "ingest finished");
    summary
}

/// The bytes of mail an entry stands for (see [`Prepared::held_bytes`]).
fn held_bytes(entry: &Result<Prepared, (String, String)>) -> usize {
    entry.as_ref().map_or(0, Prepared::held_bytes)
}

/// Bytes of mail read ahead and not yet committed, at most a limit: the
/// reader takes a message's bytes before it hands the message on, the
/// committer gives them back once the message's group is done with. One
/// message larger than the limit is taken when nothing else is held, so
/// it goes alone rather than never.
#[derive(Debug)]
struct ReadAhead {
    limit: usize,
    held: Mutex<Held>,
    given: Condvar,
}

#[derive(Debug, Default)]
struct Held {
    now: usize,
    /// The most held at once, for tests.
    most: usize,
}

impl ReadAhead {
    fn new(limit: usize) -> ReadAhead {
        ReadAhead {
            limit,
            held: Mutex::new(Held::default()),
            given: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fits(&self, held: &Held, bytes: usize) -> bool {
        held.now == 0 || held.now.saturating_add(bytes) <= self.limit
    }

    fn add(held: &mut Held, bytes: usize) {
        held.now = held.now.saturating_add(bytes);
        held.most = held.most.max(held.now);
    }

    /// Takes `bytes` if they fit now.
    fn try_take(&self, bytes: usize) -> bool {
        let mut held = self.lock();
        let fits = self.fits(&held, bytes);
        if fits {
            Self::add(&mut held, bytes);
        }
        fits
    }

    /// Takes `bytes`, waiting until they fit (blocking: the reader's
    /// thread); false, taking nothing, once `gone` says no one will give
    /// bytes back (the committer stopped, dropping what it had not received).
    fn take(&self, bytes: usize, gone: impl Fn() -> bool) -> bool {
        let mut held = self.lock();
        while !self.fits(&held, bytes) {
            if gone() {
                return false;
            }
            held = match self.given.wait_timeout(held, Duration::from_millis(100)) {
                Ok((held, _)) => held,
                Err(p) => p.into_inner().0,
            };
        }
        Self::add(&mut held, bytes);
        true
    }

    fn give(&self, bytes: usize) {
        let mut held = self.lock();
        held.now = held.now.saturating_sub(bytes);
        drop(held);
        self.given.notify_all();
    }
}

/// Gives a group's bytes back when dropped.
struct Release<'a> {
    budget: &'a ReadAhead,
    bytes: usize,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

/// Commits one batch, retrying with backoff what may succeed later. Outcomes
/// are returned only for a batch whose commit succeeded; an error means
/// nothing of it is reported as done (some of its messages may have been
/// committed one by one, and are recognised as duplicates next time).
///
/// When the store lacks a resource (disk full) the batch is retried for about
/// 16 s; if it still fails, `store_down` is set and later batches get one
/// attempt each until one succeeds, so a full disk does not make every batch
/// wait its full backoff.
async fn commit_with_retry(
    pipeline: &Pipeline,
    batch: &[Prepared],
    store_down: &mut bool,
) -> Result<Vec<Outcome>, String> {
    let mut delay = Duration::from_millis(100);
    let mut resource_delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match pipeline.commit(batch, None).await {
            Ok(o) => {
                *store_down = false;
                return Ok(o);
            }
            Err(e) if e.is_resource() => {
                let counts = crate::store::metrics();
                if *store_down || attempt >= RESOURCE_ATTEMPTS {
                    *store_down = true;
                    error!(error = %e, size = batch.len(), store_resource_errors = counts.resource_errors,
                        "store cannot commit (disk full, I/O error or read-only); batch not ingested");
                    return Err(e.to_string());
                }
                error!(error = %e, attempt, retry_in_ms = resource_delay.as_millis() as u64,
                    store_resource_errors = counts.resource_errors,
                    "store cannot commit (disk full, I/O error or read-only); retrying");
                tokio::time::sleep(resource_delay).await;
                resource_delay = (resource_delay * 2).min(MAX_RESOURCE_DELAY);
                attempt += 1;
            }
            Err(e) if e.is_retryable() && attempt < COMMIT_ATTEMPTS => {
                warn!(error = %e, attempt, "commit failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_CONFIG};
    use crate::store::Store;

    #[test]
    fn read_ahead_takes_what_fits_and_one_large_message_alone() {
        let b = ReadAhead::new(100);
        assert!(b.try_take(60));
        assert!(b.try_take(40));
        assert!(!b.try_take(1), "over the limit");
        b.give(100);
        // Larger than the whole limit: only when nothing else is held.
        assert!(b.try_take(500));
        assert!(!b.try_take(1));
        b.give(500);
        assert!(b.try_take(1));
        assert!(!b.try_take(500));
        assert_eq!(b.lock().most, 500);
    }

    #[test]
    fn read_ahead_waits_for_bytes_given_back_and_stops_when_no_one_will() {
        let b = Arc::new(ReadAhead::new(100));
        assert!(b.try_take(80));
        let giver = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                b.give(80);
            })
        };
        assert!(b.take(50, || false));
        giver.join().expect("giver");
        assert_eq!(b.lock().now, 50);
        // Nothing will be given back: the wait ends, taking nothing.
        assert!(!b.take(60, || true));
        assert_eq!(b.lock().now, 50);
    }

    /// Messages larger than a batch's share of the budget: the reader sends
    /// what it has before it waits (no deadlock), every message is
    /// ingested, and no more than the budget is ever held.
    #[tokio::test(flavor = "multi_thread")]
    async fn ingest_holds_no_more_than_its_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = dir.path().join("Maildir");
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(d)).expect("maildir");
        }
        let line = "The nightly export stopped with a timeout again.\r\n";
        for i in 0..30 {
            let raw = format!(
                "From: user{i}@customer.example\r\nTo: isda-support@example.edu\r\n\
                 Subject: Export {i}\r\nMessage-ID: <export-{i}@customer.example>\r\n\
                 Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n{}",
                line.repeat(400)
            );
            std::fs::write(maildir.join("new").join(format!("{i}.eml")), raw).expect("write");
        }
        let config = Config::parse(DEFAULT_CONFIG, "default").expect("config");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, 1000).await.expect("store");
        let pipeline = Pipeline::new(Arc::new(config), store.clone()).expect("rules");
        // About three of these 20 KB messages at a time.
        let budget = Arc::new(ReadAhead::new(64 * 1024));
        let summary = tokio::time::timeout(
            Duration::from_secs(60),
            ingest_within(
                &pipeline,
                "isda-support",
                vec![maildir],
                Arc::clone(&budget),
                |_| {},
            ),
        )
        .await
        .expect("no deadlock");
        assert_eq!(summary.new_tickets, 30, "{summary}");
        assert_eq!(summary.errors, 0, "{summary}");
        let (now, most) = {
            let held = budget.lock();
            (held.now, held.most)
        };
        assert_eq!(now, 0, "every byte given back");
        assert!(most > 40_000 && most <= 64 * 1024, "{most}");
        store.close().await;
    }
}
