//! A cache of the load-time size checks of rule regexes, so that a process
//! that starts for one message (`triaged ingest -` from an MTA alias) does
//! not compile every regex's NFAs again only to learn that it fits.
//!
//! An entry says, for one pattern and case sensitivity, what
//! `compile::check_regex` found: its named groups and the size class it fits.
//! Only successes are kept (a refused regex is checked, and refused, every
//! time). The file is tied to the binary that wrote it (its version, size and
//! modification time): another build may size NFAs differently, so its
//! entries are ignored. The cache is off unless the command line turns it on
//! ([`enable`]); library users and tests compile as before.
//!
//! What a forged entry could do is bounded: the regex itself is still parsed
//! (a syntax error is still refused), each rule's own regex is built on use
//! with the full per-regex limit, and each field's set with its own limit. A
//! forged class or group list changes only the budget count and the groups
//! an alert-key template is checked against. The file lives in the user's
//! own cache folder.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The file's name in the cache folder.
const FILE: &str = "rule-checks.json";
/// The largest cache file read (ten thousand generated rules need ~1 MB).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The most entries kept: beyond it only the current rule set's are written.
const MAX_ENTRIES: usize = 50_000;

/// What the check of one regex found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Checked {
    pub names: Vec<String>,
    pub class: usize,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    stamp: String,
    entries: Vec<(String, Checked)>,
}

struct Cache {
    path: PathBuf,
    stamp: String,
    entries: HashMap<String, Checked>,
    /// Entries found by checking since the last save.
    new: usize,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Turns the cache on for this process, kept in `dir` (created when first
/// written). Without a way to identify the running binary it stays off.
pub fn enable(dir: &Path) {
    let Some(stamp) = binary_stamp() else {
        return;
    };
    let path = dir.join(FILE);
    let entries = read(&path, &stamp).unwrap_or_default();
    if let Ok(mut c) = CACHE.lock() {
        *c = Some(Cache {
            path,
            stamp,
            entries,
            new: 0,
        });
    }
}

/// The folder the command line uses: `TRIAGED_CACHE_DIR` (empty: none),
/// else `$XDG_CACHE_HOME/triaged`, else `$HOME/.cache/triaged`.
pub fn default_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(v) = std::env::var_os("TRIAGED_CACHE_DIR") {
        return (!v.is_empty()).then(|| PathBuf::from(v));
    }
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("triaged"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("triaged"))
}

fn key(source: &str, case_sensitive: bool) -> String {
    format!("{}:{source}", if case_sensitive { 's' } else { 'i' })
}

/// The cached check of `source`, if the cache is on and holds one of a
/// class that exists (`classes`).
pub(super) fn lookup(source: &str, case_sensitive: bool, classes: &[usize]) -> Option<Checked> {
    let guard = CACHE.lock().ok()?;
    let c = guard.as_ref()?.entries.get(&key(source, case_sensitive))?;
    classes.contains(&c.class).then(|| c.clone())
}

/// Keeps what checking `source` found.
pub(super) fn record(source: &str, case_sensitive: bool, checked: Checked) {
    if let Ok(mut guard) = CACHE.lock()
        && let Some(c) = guard.as_mut()
    {
        c.entries.insert(key(source, case_sensitive), checked);
        c.new += 1;
    }
}

/// Writes the cache if checks were added since it was read (a rule set
/// compiled without problems). Failing to write is not an error: the next
/// process checks again.
pub(super) fn save(current: &[String]) {
    let Ok(mut guard) = CACHE.lock() else {
        return;
    };
    let Some(c) = guard.as_mut() else {
        return;
    };
    if c.new == 0 {
        return;
    }
    c.new = 0;
    if c.entries.len() > MAX_ENTRIES {
        c.entries.retain(|k, _| current.contains(k));
    }
    let file = FileFormat {
        stamp: c.stamp.clone(),
        entries: c
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    if let Err(e) = write(&c.path, &file) {
        tracing::debug!(path = %c.path.display(), error = %e, "rule check cache not written");
    }
}

/// The keys of a rule set's regexes, for [`save`].
pub(super) fn keys<'a>(regexes: impl Iterator<Item = (&'a str, bool)>) -> Vec<String> {
    regexes.map(|(s, cs)| key(s, cs)).collect()
}

fn read(path: &Path, stamp: &str) -> Option<HashMap<String, Checked>> {
    let mut text = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut text)
        .ok()?;
    let file: FileFormat = serde_json::from_slice(&text).ok()?;
    (file.stamp == stamp).then(|| file.entries.into_iter().collect())
}

fn write(path: &Path, file: &FileFormat) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
    let body = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&body))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The running binary: version, size and modification time.
fn binary_stamp() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(exe).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "triaged {} {} {}",
        env!("CARGO_PKG_VERSION"),
        meta.len(),
        modified.as_nanos()
    ))
}
