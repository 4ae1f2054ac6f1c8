//! The spool: a Maildir that `triaged deliver` (run by an MTA, one process
//! per message) writes to, and that the daemon ingests from
//! (`ingest::spool`). Writing follows the Maildir protocol: the message is
//! written to `tmp/`, synced, renamed into `new/`, and `new/` is synced, so
//! a message is either wholly in `new/` after a crash or not there at all.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Why a message could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("no message on standard input")]
    Empty,
    #[error("the message is larger than [ingest] max_message_bytes ({limit} bytes)")]
    TooBig { limit: u64 },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl SpoolError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError + use<> {
        let path = path.to_path_buf();
        move |source| SpoolError::Io { what, path, source }
    }
}

/// Creates `tmp/`, `new/` and `cur/` under `spool` if they are missing.
pub fn ensure_maildir(spool: &Path) -> Result<(), SpoolError> {
    for sub in ["tmp", "new", "cur"] {
        let dir = spool.join(sub);
        std::fs::create_dir_all(&dir).map_err(SpoolError::io("cannot create", &dir))?;
    }
    Ok(())
}

/// Writes the message read from `input` into the Maildir `spool` and
/// returns its path in `new/` once it is durable (file and folder synced).
/// An empty input or one over `max_bytes` leaves nothing behind.
pub fn deliver(spool: &Path, input: &mut dyn Read, max_bytes: u64) -> Result<PathBuf, SpoolError> {
    ensure_maildir(spool)?;
    let name = unique_name();
    let tmp = spool.join("tmp").join(&name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(SpoolError::io("cannot create", &tmp))?;
    let written = write_bounded(input, &mut file, max_bytes, &tmp).and_then(|n| {
        file.sync_all()
            .map_err(SpoolError::io("cannot sync", &tmp))?;
        Ok(n)
    });
    drop(file);
    match written {
        Ok(0) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(SpoolError::Empty);
        }
        Ok(_) => {}
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    let new_dir = spool.join("new");
    let dest = new_dir.join(&name);
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        let _ = std::fs::remove_file(&tmp);
        return Err(SpoolError::io("cannot move the message into", &new_dir)(e));
    }
    sync_dir(&new_dir)?;
    Ok(dest)
}

/// Syncs a folder, making the names created or removed in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SpoolError::io("cannot sync", dir))
}

/// Copies `input` to `out`, at most `max_bytes` of it; more is refused.
fn write_bounded(
    input: &mut dyn Read,
    out: &mut File,
    max_bytes: u64,
    path: &Path,
) -> Result<u64, SpoolError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(SpoolError::Io {
                    what: "cannot read the message for",
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        };
        total += n as u64;
        if total > max_bytes {
            return Err(SpoolError::TooBig { limit: max_bytes });
        }
        out.write_all(buf.get(..n).unwrap_or_default())
            .map_err(SpoolError::io("cannot write", path))?;
    }
}

/// A Maildir file name unique on this host: time, process, a counter and
/// the host name (`TIME.MmicrosPpidQn.HOST`).
fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_else(|_| "localhost".to_string())
        .trim()
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        if host.is_empty() { "localhost" } else { &host }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_lands_in_new_and_nothing_is_left_in_tmp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool");
        let path = deliver(&spool, &mut &b"Subject: x\n\nhi\n"[..], 100).expect("delivered");
        assert_eq!(std::fs::read(&path).expect("read"), b"Subject: x\n\nhi\n");
        assert!(path.starts_with(spool.join("new")));
        assert_eq!(
            std::fs::read_dir(spool.join("tmp")).expect("tmp").count(),
            0
        );
        let second = deliver(&spool, &mut &b"Subject: y\n\n"[..], 100).expect("delivered");
        assert_ne!(path, second);
    }

    #[test]
    fn empty_and_oversized_input_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool");
        assert!(matches!(
            deliver(&spool, &mut &b""[..], 100),
            Err(SpoolError::Empty)
        ));
        let big = [b'a'; 101];
        assert!(matches!(
            deliver(&spool, &mut &big[..], 100),
            Err(SpoolError::TooBig { limit: 100 })
        ));
        // Exactly at the limit is kept.
        deliver(&spool, &mut &big[..100], 100).expect("at the limit");
        for sub in ["tmp", "new"] {
            let n = std::fs::read_dir(spool.join(sub)).expect("dir").count();
            assert_eq!(n, usize::from(sub == "new"), "{sub}");
        }
    }
}
