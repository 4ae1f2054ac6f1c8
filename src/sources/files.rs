//! Files as a source: `.eml` files, Maildir folders, mbox files, folders of
//! messages, and stdin. Streams one message at a time, so memory stays flat
//! however many messages there are.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::pipeline::Origin;

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
///
/// Every message is held to the same size limit, whatever it comes from: an
/// `.eml` file, a Maildir entry, one message of an mbox, or stdin. Past the
/// limit only the head is kept (an [`Item::Oversized`]). Each file and folder
/// is read once, however many links lead to it, so a symlink loop ends.
pub struct Walker {
    /// What is left to take, last first.
    pending: Vec<Pending>,
    mbox: Option<(MboxReader<Box<dyn BufRead>>, String)>,
    max_bytes: u64,
    /// (device, inode) of every file and folder already taken.
    visited: HashSet<(u64, u64)>,
}

impl Walker {
    pub fn new(paths: &[PathBuf], max_bytes: u64) -> Walker {
        let mut pending: Vec<Pending> = paths.iter().cloned().map(Pending::Path).collect();
        pending.reverse();
        Walker {
            pending,
            mbox: None,
            max_bytes,
            visited: HashSet::new(),
        }
    }

    fn next_from_mbox(&mut self) -> Option<Item> {
        let (reader, name) = self.mbox.as_mut()?;
        match reader.next_message(self.max_bytes) {
            Ok(Some((index, msg))) => {
                let origin = if name == "-" {
                    Origin::Stdin { index }
                } else {
                    Origin::File {
                        path: format!("{name}#{index}"),
                    }
                };
                Some(msg.into_item(origin))
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
                    let origin = Origin::Stdin { index: 1 };
                    return Some(match read_bounded(&mut peek.inner, self.max_bytes, 0) {
                        Ok(msg) => msg.into_item(origin),
                        Err(e) => Item::Error {
                            origin,
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
        // A second way to the same file or folder (a symlink, a loop, the
        // same path given twice) is not followed again.
        if !self.visited.insert((meta.dev(), meta.ino())) {
            tracing::debug!(path = %shown, "already read; not followed again");
            return None;
        }
        if meta.is_dir() {
            match children(&path) {
                Ok(mut lists) => {
                    lists.reverse();
                    self.pending.extend(lists.into_iter().map(Pending::Listing));
                    None
                }
                Err(e) => Some(Item::Error {
                    origin,
                    error: e.to_string(),
                }),
            }
        } else {
            // Opened once: its first bytes say whether it is an mbox, and a
            // message goes on from them.
            let read = File::open(&path).and_then(|mut file| {
                let mut first = Vec::with_capacity(5);
                if !is_eml_name(&path) {
                    Read::by_ref(&mut file).take(5).read_to_end(&mut first)?;
                }
                Ok((first, file))
            });
            match read {
                Ok((first, file)) if first.starts_with(b"From ") => {
                    let rest = io::Cursor::new(first).chain(file);
                    let reader =
                        MboxReader::new(Box::new(BufReader::new(rest)) as Box<dyn BufRead>);
                    self.mbox = Some((reader, shown));
                    None
                }
                Ok((first, file)) => Some(self.read_one(&first, file, origin, meta.len())),
                Err(e) => Some(Item::Error {
                    origin,
                    error: e.to_string(),
                }),
            }
        }
    }

    /// Reads one message: `file`, of which `first` was already read.
    fn read_one(&self, first: &[u8], file: File, origin: Origin, size: u64) -> Item {
        let mut r = first.chain(file);
        let read = if size > self.max_bytes {
            let mut head = Vec::with_capacity(HEAD_BYTES);
            r.take(HEAD_BYTES as u64)
                .read_to_end(&mut head)
                .map(|_| Bounded::Oversized { head, size })
        } else {
            // The file may have grown since it was measured (or be a FIFO):
            // the limit holds for what is actually read.
            read_bounded(&mut r, self.max_bytes, size)
        };
        match read {
            Ok(msg) => msg.into_item(origin),
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
            let path = match self.pending.pop()? {
                Pending::Path(path) => path,
                // The folder's next entry; the rest goes back on the stack.
                Pending::Listing(mut listing) => match listing.next() {
                    Some(path) => {
                        self.pending.push(Pending::Listing(listing));
                        path
                    }
                    None => continue,
                },
            };
            if let Some(item) = self.open(path) {
                return Some(item);
            }
        }
    }
}

/// How much of an oversized message is kept: enough for its header section.
const HEAD_BYTES: usize = crate::parse::HEAD_LIMIT;

/// A message read under the size limit: whole, or its head and full size.
#[derive(Debug)]
pub enum Bounded {
    Whole(Vec<u8>),
    Oversized { head: Vec<u8>, size: u64 },
}

impl Bounded {
    fn into_item(self, origin: Origin) -> Item {
        match self {
            Bounded::Whole(raw) => Item::Message { origin, raw },
            Bounded::Oversized { head, size } => Item::Oversized { origin, head, size },
        }
    }
}

/// Collects bytes up to `max` and, past it, only counts them.
struct Collector {
    buf: Vec<u8>,
    size: u64,
    max: u64,
    /// The last bytes pushed, kept also when the message is over the limit.
    tail: Vec<u8>,
}

impl Collector {
    fn new(max: u64) -> Collector {
        Collector {
            buf: Vec::new(),
            size: 0,
            max,
            tail: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.tail
            .extend_from_slice(&bytes[bytes.len().saturating_sub(4)..]);
        let excess = self.tail.len().saturating_sub(4);
        self.tail.drain(..excess);
        self.size += bytes.len() as u64;
        if self.size <= self.max {
            self.buf.extend_from_slice(bytes);
        } else if self.buf.len() < HEAD_BYTES {
            let room = HEAD_BYTES - self.buf.len();
            self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Drops `n` bytes from the end (never past what is kept).
    fn trim_end(&mut self, n: usize) {
        let keep = self.tail.len().saturating_sub(n);
        self.tail.truncate(keep);
        self.size = self.size.saturating_sub(n as u64);
        if self.size <= self.max {
            let keep = self.buf.len().saturating_sub(n);
            self.buf.truncate(keep);
        }
    }

    fn ends_with(&self, tail: &[u8]) -> bool {
        self.tail.ends_with(tail)
    }

    fn finish(mut self) -> Bounded {
        if self.size <= self.max {
            Bounded::Whole(self.buf)
        } else {
            self.buf.truncate(HEAD_BYTES);
            Bounded::Oversized {
                head: self.buf,
                size: self.size,
            }
        }
    }
}

/// Reads a whole stream as one message, keeping at most `max` bytes (past
/// that, its head and its size). `hint` is the expected size (a file's
/// length; 0 when unknown): the buffer is taken at that size once, neither
/// zeroed nor grown, and a message read from a file is never copied.
fn read_bounded(r: &mut impl Read, max: u64, hint: u64) -> io::Result<Bounded> {
    let keep = max.max(HEAD_BYTES as u64);
    let capacity = usize::try_from(hint.min(keep).saturating_add(1)).unwrap_or(usize::MAX);
    let mut buf = Vec::with_capacity(capacity);
    Read::by_ref(r)
        .take(keep.saturating_add(1))
        .read_to_end(&mut buf)?;
    if buf.len() as u64 <= max {
        return Ok(Bounded::Whole(buf));
    }
    let rest = io::copy(r, &mut io::sink())?;
    let size = (buf.len() as u64).saturating_add(rest);
    buf.truncate(HEAD_BYTES);
    buf.shrink_to_fit();
    Ok(Bounded::Oversized { head: buf, size })
}

/// `.eml` files are always one message, even when they start with `From `.
fn is_eml_name(path: &Path) -> bool {
    path.extension()
        .map(|e| e.eq_ignore_ascii_case("eml"))
        .unwrap_or(false)
}

/// What the walker has still to take: a path given or found, or the rest of
/// a folder's entries.
enum Pending {
    Path(PathBuf),
    Listing(Listing),
}

/// A folder's entries in order, their names packed one after another: a
/// Maildir of 100,000 messages held as 100,000 `PathBuf`s (about 70 bytes
/// each with their allocations) for the whole ingest raised its peak RSS by
/// about 5 MiB (`bench ingest`, 100,000 messages: 63.5-64.3 MiB, 58.9-59.3
/// packed).
struct Listing {
    dir: PathBuf,
    /// The names (bytes of the OS string), one after another.
    names: Vec<u8>,
    /// Where each name ends in `names`.
    ends: Vec<usize>,
    /// The next entry to give.
    next: usize,
}

impl Listing {
    /// The entries of `dir` but hidden ones (and, with `files_only`,
    /// folders), sorted by name.
    fn read(dir: &Path, files_only: bool) -> io::Result<Listing> {
        use std::os::unix::ffi::OsStrExt;
        let mut raw = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let bytes = name.as_bytes();
            if bytes.starts_with(b".") || (files_only && entry.path().is_dir()) {
                continue;
            }
            let start = raw.len();
            raw.extend_from_slice(bytes);
            spans.push((start, raw.len()));
        }
        spans.sort_unstable_by(|a, b| raw[a.0..a.1].cmp(&raw[b.0..b.1]));
        let mut names = Vec::with_capacity(raw.len());
        let mut ends = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            names.extend_from_slice(&raw[start..end]);
            ends.push(names.len());
        }
        Ok(Listing {
            dir: dir.to_path_buf(),
            names,
            ends,
            next: 0,
        })
    }
}

impl Iterator for Listing {
    type Item = PathBuf;

    fn next(&mut self) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let end = *self.ends.get(self.next)?;
        let start = match self.next {
            0 => 0,
            i => self.ends[i - 1],
        };
        self.next += 1;
        let name = std::ffi::OsStr::from_bytes(&self.names[start..end]);
        Some(self.dir.join(name))
    }
}

/// The entries of a folder in order: a Maildir's `new/` then `cur/` (never
/// `tmp/`, where deliveries are still being written), otherwise every entry
/// but hidden ones, sorted by name.
fn children(dir: &Path) -> io::Result<Vec<Listing>> {
    let is_maildir = dir.join("cur").is_dir() || dir.join("new").is_dir();
    if !is_maildir {
        return Ok(vec![Listing::read(dir, false)?]);
    }
    ["new", "cur"]
        .iter()
        .map(|d| dir.join(d))
        .filter(|d| d.is_dir())
        .map(|d| Listing::read(&d, true))
        .collect()
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

    /// The next message as (1-based index, message), or `None` at the end.
    /// A message over `max` bytes is not held in memory: only its head is kept.
    pub fn next_message(&mut self, max: u64) -> io::Result<Option<(usize, Bounded)>> {
        let mut msg = Collector::new(max);
        let mut started = self.carried.take().is_some();
        let mut prev_blank = true;
        let mut line = Vec::new();
        loop {
            let n = self.read_piece(&mut line)?;
            if n == 0 {
                break;
            }
            let whole_line = line.ends_with(b"\n") || n < LINE_BYTES as usize;
            if line.starts_with(b"From ") && prev_blank {
                if started && !msg.is_empty() {
                    self.carried = Some(line.clone());
                    // The rest of an over-long envelope line is still envelope.
                    if !whole_line {
                        self.skip_line()?;
                    }
                    break;
                }
                started = true;
                if !whole_line {
                    self.skip_line()?;
                }
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
            msg.push(unquoted);
            if !whole_line {
                // The rest of a long line: copied through, never an envelope.
                prev_blank = false;
                loop {
                    let m = self.read_piece(&mut line)?;
                    msg.push(&line);
                    if m == 0 || line.ends_with(b"\n") {
                        break;
                    }
                }
            }
        }
        if msg.is_empty() {
            return Ok(None);
        }
        // The empty line before the next envelope belongs to the mbox, not the message.
        if self.carried.is_some() {
            if msg.ends_with(b"\r\n\r\n") {
                msg.trim_end(2);
            } else if msg.ends_with(b"\n\n") {
                msg.trim_end(1);
            }
        }
        self.count += 1;
        Ok(Some((self.count, msg.finish())))
    }

    /// Reads the next line into `buf`, or its next [`LINE_BYTES`] if it is
    /// longer, so that a file without newlines costs no more memory than that.
    fn read_piece(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        (&mut self.inner).take(LINE_BYTES).read_until(b'\n', buf)
    }

    /// Reads and drops the rest of the current line.
    fn skip_line(&mut self) -> io::Result<()> {
        let mut rest = Vec::new();
        loop {
            let m = self.read_piece(&mut rest)?;
            if m == 0 || rest.ends_with(b"\n") {
                return Ok(());
            }
        }
    }
}

/// The longest piece of an mbox line read at once.
const LINE_BYTES: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        let mut r = MboxReader::new(s.as_bytes());
        let mut out = Vec::new();
        while let Ok(Some((_, Bounded::Whole(m)))) = r.next_message(u64::MAX) {
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

    #[test]
    fn folders_are_taken_in_name_order_packed() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::create_dir_all(plain.join("sub")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"c\xff\xfe");
        for name in [
            std::ffi::OsStr::new("b"),
            std::ffi::OsStr::new("a10"),
            std::ffi::OsStr::new("a9"),
            std::ffi::OsStr::new(".hidden"),
            odd,
        ] {
            std::fs::write(plain.join(name), b"Subject: x\n\nx\n").unwrap();
        }
        std::fs::write(plain.join("sub/inner"), b"Subject: x\n\nx\n").unwrap();
        let names: Vec<PathBuf> = Listing::read(&plain, false).unwrap().collect();
        let expected: Vec<PathBuf> = [
            std::ffi::OsStr::new("a10"),
            std::ffi::OsStr::new("a9"),
            std::ffi::OsStr::new("b"),
            odd,
            std::ffi::OsStr::new("sub"),
        ]
        .iter()
        .map(|n| plain.join(n))
        .collect();
        assert_eq!(names, expected);
        let files: Vec<PathBuf> = Listing::read(&plain, true).unwrap().collect();
        assert_eq!(files.len(), 4, "folders left out: {files:?}");
        assert_eq!(Listing::read(&plain.join("sub"), false).unwrap().count(), 1);
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(Listing::read(&empty, false).unwrap().count(), 0);
        // Through the walker: the subfolder's message after the files.
        let items: Vec<Item> = Walker::new(&[plain], 1000).collect();
        assert_eq!(items.len(), 5);
        assert!(
            matches!(&items[4], Item::Message { origin: Origin::File { path }, .. } if path.ends_with("sub/inner"))
        );
    }

    #[test]
    fn plain_files_are_messages_or_mboxes_by_their_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("1-short");
        std::fs::write(&short, "Sub").unwrap();
        let empty = dir.path().join("2-empty");
        std::fs::write(&empty, "").unwrap();
        let mbox = dir.path().join("3-mbox");
        std::fs::write(
            &mbox,
            "From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\nx\n\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: two\n\ny\n",
        )
        .unwrap();
        let almost = dir.path().join("4-almost");
        std::fs::write(&almost, "Fromage: yes\n\nbody\n").unwrap();
        let big = dir.path().join("5-big");
        let body = format!("Subject: big\n\n{}", "z".repeat(HEAD_BYTES * 2));
        std::fs::write(&big, &body).unwrap();
        let items: Vec<Item> = Walker::new(&[short, empty, mbox, almost, big], 1000).collect();
        assert_eq!(items.len(), 6, "{items:?}");
        assert!(matches!(&items[0], Item::Message { raw, .. } if raw == b"Sub"));
        assert!(matches!(&items[1], Item::Message { raw, .. } if raw.is_empty()));
        assert!(
            matches!(&items[2], Item::Message { raw, .. } if raw.starts_with(b"Subject: one") && raw.ends_with(b"x\n"))
        );
        assert!(matches!(&items[3], Item::Message { raw, .. } if raw.starts_with(b"Subject: two")));
        assert!(matches!(&items[4], Item::Message { raw, .. } if raw == b"Fromage: yes\n\nbody\n"));
        assert!(matches!(&items[5], Item::Oversized { head, size, .. }
            if *size == body.len() as u64 && head.len() == HEAD_BYTES && head.starts_with(b"Subject: big")));
    }

    #[test]
    fn mbox_messages_are_held_to_the_limit() {
        let big = "y".repeat(300_000);
        let text = format!(
            "From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\n{big}\n{big}\n\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: two\n\nx\n"
        );
        let mut r = MboxReader::new(text.as_bytes());
        match r.next_message(100_000).unwrap() {
            Some((1, Bounded::Oversized { head, size })) => {
                assert!(head.starts_with(b"Subject: one\n\nyyy"));
                assert!(head.len() <= HEAD_BYTES);
                assert_eq!(
                    size,
                    14 + 2 * 300_001,
                    "the blank line before the next envelope is not counted"
                );
            }
            other => panic!("{other:?}"),
        }
        // The next message is found intact after the oversized one.
        match r.next_message(100_000).unwrap() {
            Some((2, Bounded::Whole(m))) => assert_eq!(m, b"Subject: two\n\nx\n"),
            other => panic!("{other:?}"),
        }
        assert!(r.next_message(100_000).unwrap().is_none());
    }

    #[test]
    fn a_line_without_end_is_bounded_too() {
        // 1 MB and no newline at all: read in pieces, never whole.
        let text = format!("From a@b x\nSubject: s\n\n{}", "z".repeat(1_000_000));
        let mut r = MboxReader::new(text.as_bytes());
        match r.next_message(200_000).unwrap() {
            Some((1, Bounded::Oversized { size, .. })) => assert_eq!(size, 1_000_012),
            other => panic!("{other:?}"),
        }
        // Under the limit, a long line is kept whole and unchanged.
        let mut r = MboxReader::new(text.as_bytes());
        match r.next_message(u64::MAX).unwrap() {
            Some((1, Bounded::Whole(m))) => assert_eq!(m.len(), 1_000_012),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn streams_are_held_to_the_limit() {
        let data = vec![b'q'; 500_000];
        match read_bounded(&mut &data[..], 1000, 0).unwrap() {
            Bounded::Oversized { head, size } => {
                assert_eq!(size, 500_000);
                assert_eq!(head.len(), HEAD_BYTES);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(read_bounded(&mut &data[..], 500_000, 500_000).unwrap(), Bounded::Whole(v) if v.len() == 500_000)
        );
    }

    #[test]
    fn each_file_is_read_once_through_links_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        std::fs::create_dir_all(top.join("sub")).unwrap();
        std::fs::write(top.join("a.eml"), "Subject: a\n\nx\n").unwrap();
        std::fs::write(top.join("sub/b.eml"), "Subject: b\n\nx\n").unwrap();
        // A loop back to the top, a second link to a file, a link to a folder.
        std::os::unix::fs::symlink(&top, top.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(top.join("a.eml"), top.join("sub/again.eml")).unwrap();
        std::os::unix::fs::symlink(top.join("sub"), top.join("z-sub")).unwrap();
        let items: Vec<Item> = Walker::new(&[top.clone(), top.join("a.eml")], 1000).collect();
        let subjects: Vec<String> = items
            .iter()
            .map(|i| match i {
                Item::Message { raw, .. } => String::from_utf8_lossy(&raw[..10]).into_owned(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(subjects, vec!["Subject: a", "Subject: b"]);
    }
}
