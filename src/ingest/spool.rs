//! The daemon's side of the spool (`sources::spool`): messages that
//! `triaged deliver` wrote into a mailbox's Maildir `new/` are prepared,
//! committed in batches, and only then removed (and the removal synced).
//! A crash between the commit and the removal leaves the file, which is
//! taken again at the next look and recognised as a duplicate: nothing is
//! lost and nothing makes a second ticket.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{READ_AHEAD_BYTES, commit_with_retry};
use crate::pipeline::{Origin, Pipeline, Prepared};
use crate::sources::spool::{ensure_maildir, sync_dir};

/// How often `new/` is looked at when it was empty.
const POLL: Duration = Duration::from_millis(100);
/// The wait after a failure (the folder unreadable, the store refusing).
const RETRY: Duration = Duration::from_secs(2);

/// Ingests the spool `dir` of `mailbox` until `shutdown`; a batch in hand is
/// finished first.
pub async fn watch(pipeline: Pipeline, mailbox: String, dir: PathBuf, shutdown: CancellationToken) {
    info!(mailbox, spool = %dir.display(), "watching the spool");
    let batch_size = pipeline.config().ingest.batch_size.max(1);
    let max_bytes = pipeline.config().ingest.max_message_bytes;
    // Files that could not be read: left in place and not tried again by
    // this run (logged once), so that one of them does not stop the rest.
    let mut unreadable: HashSet<PathBuf> = HashSet::new();
    let mut store_down = false;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let listed = {
            let dir = dir.clone();
            let skip = unreadable.clone();
            tokio::task::spawn_blocking(move || list_new(&dir, batch_size, &skip)).await
        };
        let files = match listed {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                error!(mailbox, spool = %dir.display(), error = %e, "cannot read the spool; retrying");
                if pause(&shutdown, RETRY).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                error!(mailbox, error = %e, "spool reader failed; retrying");
                if pause(&shutdown, RETRY).await {
                    return;
                }
                continue;
            }
        };
        if files.is_empty() {
            if pause(&shutdown, POLL).await {
                return;
            }
            continue;
        }
        let prepared = {
            let (pipeline, mailbox) = (pipeline.clone(), mailbox.clone());
            tokio::task::spawn_blocking(move || {
                prepare_files(files, max_bytes, READ_AHEAD_BYTES, |m| {
                    m.prepare(&pipeline, &mailbox)
                })
            })
            .await
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                error!(mailbox, error = %e, "spool reader failed; retrying");
                if pause(&shutdown, RETRY).await {
                    return;
                }
                continue;
            }
        };
        let mut batch: Vec<Prepared> = Vec::with_capacity(prepared.len());
        let mut paths = Vec::with_capacity(prepared.len());
        for (path, p) in prepared {
            match p {
                Ok(p) => {
                    batch.push(p);
                    paths.push(path);
                }
                Err(e) => {
                    error!(mailbox, file = %path.display(), error = %e,
                        "cannot read a spooled message; left in the spool");
                    unreadable.insert(path);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        match commit_with_retry(&pipeline, &batch, &mut store_down).await {
            Ok(outcomes) => {
                for (p, o) in paths.iter().zip(&outcomes) {
                    debug!(mailbox, file = %p.display(), outcome = ?o, "spooled message committed");
                }
                let new_dir = dir.join("new");
                let removed = tokio::task::spawn_blocking(move || {
                    for p in &paths {
                        if let Err(e) = std::fs::remove_file(p) {
                            warn!(file = %p.display(), error = %e, "committed, but cannot remove it from the spool (it will be seen as a duplicate)");
                        }
                    }
                    sync_dir(&new_dir)
                })
                .await;
                match removed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!(mailbox, error = %e, "cannot sync the spool after removing committed messages")
                    }
                    Err(e) => warn!(mailbox, error = %e, "spool cleaner failed"),
                }
            }
            Err(e) => {
                error!(mailbox, size = batch.len(), error = %e,
                    "cannot commit spooled messages; they stay in the spool and are retried");
                if pause(&shutdown, RETRY).await {
                    return;
                }
            }
        }
    }
}

/// Reads and prepares `files` in order until `budget` bytes of mail are
/// prepared ([`Prepared::held_bytes`]; the first file is always taken): a
/// batch is counted in files, and 64 messages at the size limit must not be
/// in hand at once. The files left wait in the spool for the next look.
fn prepare_files(
    files: Vec<PathBuf>,
    max_bytes: u64,
    budget: usize,
    prepare: impl Fn(Spooled) -> Prepared,
) -> Vec<(PathBuf, std::io::Result<Prepared>)> {
    let mut held = 0usize;
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        if held >= budget {
            break;
        }
        let p = read_message(&f, max_bytes).map(&prepare);
        if let Ok(p) = &p {
            held = held.saturating_add(p.held_bytes());
        }
        out.push((f, p));
    }
    out
}

/// Sleeps `d`; true if `shutdown` came first.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// Up to `limit` files of `new/`, oldest name first (Maildir names start
/// with the time), leaving out `skip`. Creates the Maildir when missing.
fn list_new(dir: &Path, limit: usize, skip: &HashSet<PathBuf>) -> std::io::Result<Vec<PathBuf>> {
    ensure_maildir(dir).map_err(std::io::Error::other)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("new"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| !skip.contains(p))
        .collect();
    files.sort();
    files.truncate(limit);
    Ok(files)
}

/// One spooled message as read: whole, or only its head when it is over
/// the size limit (another tool may have put it there).
enum Spooled {
    Whole(PathBuf, Vec<u8>),
    Oversized(PathBuf, Vec<u8>, u64),
}

impl Spooled {
    fn prepare(self, pipeline: &Pipeline, mailbox: &str) -> Prepared {
        let origin = |p: PathBuf| Origin::File {
            path: p.display().to_string(),
        };
        match self {
            Spooled::Whole(p, raw) => pipeline.prepare(mailbox, origin(p), raw),
            Spooled::Oversized(p, head, size) => {
                pipeline.prepare_oversized(mailbox, origin(p), head, size)
            }
        }
    }
}

/// Reads one spooled file as one message. A leading mbox envelope line
/// (`From sender date`, which some MTAs write in front of what they pipe)
/// is dropped; nothing else is split or unquoted.
fn read_message(path: &Path, max_bytes: u64) -> std::io::Result<Spooled> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut raw = Vec::new();
    // At most one byte past the limit: enough to know it is over.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut raw)?;
    let over = raw.len() as u64 > max_bytes;
    if raw.starts_with(b"From ") {
        let end = raw
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| i + 1);
        raw.drain(..end);
    }
    if over {
        raw.truncate(HEAD_BYTES);
        return Ok(Spooled::Oversized(
            path.to_path_buf(),
            raw,
            size.max(max_bytes + 1),
        ));
    }
    Ok(Spooled::Whole(path.to_path_buf(), raw))
}

/// What is kept of an oversized message (its header section is within it).
const HEAD_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_line_dropped_and_oversize_kept_as_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("m");
        std::fs::write(
            &p,
            b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nFrom here\n",
        )
        .expect("write");
        match read_message(&p, 1000).expect("read") {
            Spooled::Whole(_, raw) => assert_eq!(raw, b"Subject: x\n\nFrom here\n"),
            Spooled::Oversized(..) => panic!("not oversized"),
        }
        match read_message(&p, 10).expect("read") {
            Spooled::Oversized(_, _, size) => assert!(size > 10),
            Spooled::Whole(..) => panic!("oversized"),
        }
    }

    #[test]
    fn a_batch_stops_taking_files_at_its_byte_budget() {
        use crate::pipeline::{Action, Origin};
        let dir = tempfile::tempdir().expect("tempdir");
        let files: Vec<PathBuf> = (0..5)
            .map(|i| {
                let p = dir.path().join(format!("{i}"));
                std::fs::write(&p, vec![b'x'; 1000]).expect("write");
                p
            })
            .collect();
        // Stands for `Pipeline::prepare`: a message holding what was read.
        let prepare = |m: Spooled| {
            let Spooled::Whole(path, raw) = m else {
                panic!("oversized")
            };
            Prepared {
                mailbox: "m".into(),
                origin: Origin::File {
                    path: path.display().to_string(),
                },
                dedupe_key: "sha256:x".into(),
                action: Action::Quarantine {
                    reason: "test".into(),
                    size: raw.len() as u64,
                    headers: raw,
                    message_id: None,
                    from: None,
                    subject: None,
                },
            }
        };
        let taken = prepare_files(files.clone(), 10_000, 2_500, prepare);
        let paths: Vec<_> = taken.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(paths, files[..3], "up to the budget, in order");
        // The first file is taken whatever its size.
        assert_eq!(prepare_files(files.clone(), 10_000, 10, prepare).len(), 1);
        assert_eq!(
            prepare_files(files.clone(), 10_000, 1 << 20, prepare).len(),
            5
        );
    }
}
