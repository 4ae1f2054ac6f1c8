//! Files as a source: `.eml` files, Maildir folders, mbox files, folders of
//! messages, and stdin. Streams one message at a time, so memory stays flat
//! however many messages there are.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::store::Origin;

/// One item read from the inputs.
#[derive(Debug)]
pub enum Item {
    /// A whole message.
    Message { origin: Origin, raw: Vec<u8> },
    /// A message larger than the limit: only its head was read.
    Oversized {
        origin: Origin,
        head: Vec<u8>,
        size: u64,
    },
    /// An input that could not be read at all.
    Error { origin: Origin, error: String },
}

/// Reads every message under `paths` (`-` is stdin), lazily, in a stable order.
pub struct Walker {
    pending: Vec<PathBuf>,
    mbox: Option<(MboxReader<Box<dyn BufRead>>, String)>,
    max_bytes: u64,
}

impl Walker {
    pub fn new(paths: &[PathBuf], max_bytes: u64) -> Walker {
        let mut pending: Vec<PathBuf> = paths.to_vec();
        pending.reverse();
        Walker {
            pending,
            mbox: None,
            max_bytes,
        }
    }

    fn next_from_mbox(&mut self) -> Option<Item> {
        let (reader, name) = self.mbox.as_mut()?;
        match reader.next_message() {
            Ok(Some((index, raw))) => {
                let origin = if name == "-" {
                    Origin::Stdin { index }
                } else {
                    Origin::File {
                        path: format!("{name}#{index}"),
                    }
                };
                Some(Item::Message { origin, raw })
            }
            Ok(None) => {
                self.mbox = None;
                None
            }
            Err(e) => {
                let origin = Origin::File { path: name.clone() };
                self.mbox = None;
                Some(Item::Error {
                    origin,
                    error: e.to_string(),
                })
            }
        }
    }

    fn open(&mut self, path: PathBuf) -> Option<Item> {
        let shown = path.display().to_string();
        if shown == "-" {
            let reader: Box<dyn BufRead> = Box::new(BufReader::new(io::stdin()));
            let mut peek = MboxReader::new(reader);
            match peek.starts_with_envelope() {
                Ok(true) => {
                    self.mbox = Some((peek, shown));
                    return None;
                }
                Ok(false) => {
                    let mut raw = Vec::new();
                    return Some(match peek.inner.read_to_end(&mut raw) {
                        Ok(_) => Item::Message {
                            origin: Origin::Stdin { index: 1 },
                            raw,
                        },
                        Err(e) => Item::Error {
                            origin: Origin::Stdin { index: 1 },
                            error: e.to_string(),
                        },
                    });
                }
                Err(e) => {
                    return Some(Item::Error {
                        origin: Origin::Stdin { index: 1 },
                        error: e.to_string(),
                    });
                }
            }
        }
        let origin = Origin::File {
            path: shown.clone(),
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                return Some(Item::Error {
                    origin,
                    error: e.to_string(),
                });
            }
        };
        if meta.is_dir() {
            match children(&path) {
                Ok(mut list) => {
                    list.reverse();
                    self.pending.extend(list);
                    None
                }
                Err(e) => Some(Item::Error {
                    origin,
                    error: e.to_string(),
                }),
            }
        } else if is_eml_name(&path) {
            Some(self.read_one(&path, origin, meta.len()))
        } else {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    return Some(Item::Error {
                        origin,
                        error: e.to_string(),
                    });
                }
            };
            let mut reader = MboxReader::new(Box::new(BufReader::new(file)) as Box<dyn BufRead>);
            match reader.starts_with_envelope() {
                Ok(true) => {
                    self.mbox = Some((reader, shown));
                    None
                }
                Ok(false) => Some(self.read_one(&path, origin, meta.len())),
                Err(e) => Some(Item::Error {
                    origin,
                    error: e.to_string(),
                }),
            }
        }
    }

    fn read_one(&self, path: &Path, origin: Origin, size: u64) -> Item {
        if size > self.max_bytes {
            let mut head = Vec::new();
            let read = File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
            return match read {
                Ok(_) => Item::Oversized { origin, head, size },
                Err(e) => Item::Error {
                    origin,
                    error: e.to_string(),
                },
            };
        }
        match std::fs::read(path) {
            Ok(raw) => Item::Message { origin, raw },
            Err(e) => Item::Error {
                origin,
                error: e.to_string(),
            },
        }
    }
}

impl Iterator for Walker {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if self.mbox.is_some() {
                if let Some(item) = self.next_from_mbox() {
                    return Some(item);
                }
                continue;
            }
            let path = self.pending.pop()?;
            if let Some(item) = self.open(path) {
                return Some(item);
            }
        }
    }
}

/// `.eml` files are always one message, even when they start with `From `.
fn is_eml_name(path: &Path) -> bool {
    path.extension()
        .map(|e| e.eq_ignore_ascii_case("eml"))
        .unwrap_or(false)
}

/// The entries of a folder in order: a Maildir's `new/` then `cur/` (never
/// `tmp/`, where deliveries are still being written), otherwise every entry
/// but hidden ones, sorted by name.
fn children(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let is_maildir = dir.join("cur").is_dir() || dir.join("new").is_dir();
    let dirs: Vec<PathBuf> = if is_maildir {
        ["new", "cur"]
            .iter()
            .map(|d| dir.join(d))
            .filter(|d| d.is_dir())
            .collect()
    } else {
        vec![dir.to_path_buf()]
    };
    let mut out = Vec::new();
    for d in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| !(is_maildir && e.path().is_dir()))
            .map(|e| e.path())
            .collect();
        entries.sort();
        out.extend(entries);
    }
    Ok(out)
}

/// Splits an mbox stream into messages at `From ` lines that follow an empty
/// line, removing the envelope line and undoing mboxrd `>From ` quoting.
pub struct MboxReader<R: BufRead> {
    inner: R,
    /// The envelope line of the next message, already read.
    carried: Option<Vec<u8>>,
    count: usize,
}

impl<R: BufRead> MboxReader<R> {
    pub fn new(inner: R) -> Self {
        MboxReader {
            inner,
            carried: None,
            count: 0,
        }
    }

    /// Whether the stream starts with an mbox envelope line.
    pub fn starts_with_envelope(&mut self) -> io::Result<bool> {
        Ok(self.inner.fill_buf()?.starts_with(b"From "))
    }

    /// The next message as (1-based index, bytes), or `None` at the end.
    pub fn next_message(&mut self) -> io::Result<Option<(usize, Vec<u8>)>> {
        let mut msg = Vec::new();
        let mut started = self.carried.take().is_some();
        let mut prev_blank = true;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.inner.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.starts_with(b"From ") && prev_blank {
                if started && !msg.is_empty() {
                    self.carried = Some(line.clone());
                    break;
                }
                started = true;
                continue;
            }
            started = true;
            prev_blank = line == b"\n" || line == b"\r\n";
            let unquoted = if line.starts_with(b">")
                && line
                    .iter()
                    .skip_while(|&&b| b == b'>')
                    .take(5)
                    .eq(b"From ".iter())
            {
                &line[1..]
            } else {
                &line[..]
            };
            msg.extend_from_slice(unquoted);
        }
        if msg.is_empty() {
            return Ok(None);
        }
        // The empty line before the next envelope belongs to the mbox, not the message.
        if self.carried.is_some() {
            if msg.ends_with(b"\r\n\r\n") {
                msg.truncate(msg.len() - 2);
            } else if msg.ends_with(b"\n\n") {
                msg.truncate(msg.len() - 1);
            }
        }
        self.count += 1;
        Ok(Some((self.count, msg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        let mut r = MboxReader::new(s.as_bytes());
        let mut out = Vec::new();
        while let Ok(Some((_, m))) = r.next_message() {
            out.push(String::from_utf8_lossy(&m).into_owned());
        }
        out
    }

    #[test]
    fn mbox_split() {
        let m = split(
            "From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\nbody\n>From here\nFrom inside a line\n\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: two\n\nx\n",
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            m[0],
            "Subject: one\n\nbody\nFrom here\nFrom inside a line\n"
        );
        assert_eq!(m[1], "Subject: two\n\nx\n");
    }

    #[test]
    fn walker_reads_maildir_and_eml() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("md");
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(d)).unwrap();
        }
        std::fs::write(md.join("new/1"), "Subject: a\n\nx\n").unwrap();
        std::fs::write(md.join("cur/2:2,S"), "Subject: b\n\nx\n").unwrap();
        std::fs::write(md.join("tmp/3"), "Subject: partial\n").unwrap();
        let eml = dir.path().join("one.eml");
        std::fs::write(
            &eml,
            "From x Mon Jan 1 00:00:00 2024\nSubject: c\n\nFrom y\n",
        )
        .unwrap();
        let big = dir.path().join("big.eml");
        std::fs::write(&big, format!("Subject: big\n\n{}", "x".repeat(500))).unwrap();
        let items: Vec<Item> = Walker::new(&[md, eml, big], 100).collect();
        assert_eq!(items.len(), 4);
        assert!(matches!(&items[0], Item::Message { raw, .. } if raw.starts_with(b"Subject: a")));
        assert!(matches!(&items[1], Item::Message { raw, .. } if raw.starts_with(b"Subject: b")));
        assert!(matches!(&items[2], Item::Message { raw, .. } if raw.ends_with(b"From y\n")));
        assert!(matches!(&items[3], Item::Oversized { size, .. } if *size > 100));
    }
}
