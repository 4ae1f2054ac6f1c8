//! Ingest from files: the engine of `triaged ingest` and of the ingest benchmark.
//!
//! A blocking reader thread walks the inputs, parses and classifies each message
//! and sends batches down a bounded channel; the async side commits each batch
//! in one transaction, or the batches waiting when it is ready in one (a group
//! commit). Reading and parsing overlap with committing, and memory is
//! bounded by the channel, not by the number of messages.

pub mod spool;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::pipeline::{Outcome, Pipeline, Prepared, Summary};
use crate::sources::files::{Item, Walker};

/// Batches in flight between the reader and the committer.
const CHANNEL_BATCHES: usize = 4;
/// At most this many messages in one transaction: batches the reader has
/// ready when the committer comes back for more are committed together.
const MAX_GROUP: usize = 1024;
/// And at most this many bytes of mail (batches are counted in messages).
const MAX_GROUP_BYTES: usize = 32 << 20;
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
    mut on_report: impl FnMut(&Report),
) -> Summary {
    let batch_size = pipeline.config().ingest.batch_size.max(1);
    let max_bytes = pipeline.config().ingest.max_message_bytes;
    let (tx, mut rx) = mpsc::channel::<Vec<Result<Prepared, (String, String)>>>(CHANNEL_BATCHES);
    let reader_pipeline = pipeline.clone();
    let reader_mailbox = mailbox.to_string();
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
        let mut bytes = raw_bytes(&batch);
        while batch.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(more) => {
                    bytes += raw_bytes(&more);
                    batch.extend(more);
                }
                Err(_) => break,
            }
        }
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

/// The bytes of mail a batch stands for (see [`Prepared::held_bytes`]).
fn raw_bytes(batch: &[Result<Prepared, (String, String)>]) -> usize {
    batch
        .iter()
        .map(|e| e.as_ref().map_or(0, Prepared::held_bytes))
        .sum()
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
