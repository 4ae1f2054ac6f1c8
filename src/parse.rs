//! Parse: raw RFC 5322 bytes in, a [`ParsedMessage`] out.
//!
//! Pure and infallible: whatever the input, the result is a value plus a list of
//! problems. A message mail-parser cannot read at all still yields a
//! `ParsedMessage` whose body is the raw text, so that it can become a ticket.
//!
//! Before mail-parser sees a message, [`prescan`] bounds its MIME structure in
//! one linear pass: mail-parser builds one nested `Message` per
//! `message/rfc822` level and drops it recursively, so 50,000 nested levels
//! overflow the thread's stack (an abort no `catch_unwind` contains). A message
//! beyond the bounds is read from its headers alone, its body kept as raw text.
//!
//! Debug builds only: `TRIAGED_FAULT_ABORT_ON_SUBJECT=<text>` makes the process
//! abort (as a stack overflow would) after parsing a message whose Subject
//! contains `<text>`. The end-to-end tests use it to play a poison message.

use std::borrow::Cow;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One address as written in a header: optional display name, address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailAddr {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    pub address: String,
}

impl MailAddr {
    /// The domain part, lower-cased, if the address has one.
    pub fn domain(&self) -> Option<String> {
        domain_of(&self.address)
    }
}

/// An address's local part and domain, split at the last `@`; the domain is
/// empty when there is no `@`. Case is kept.
pub fn split_address(address: &str) -> (&str, &str) {
    address.rsplit_once('@').unwrap_or((address, ""))
}

/// The domain of an address (after its last `@`, a trailing `>` dropped),
/// lower-case; `None` without an `@`. The one domain extraction: rules,
/// priority and notify all read domains through it.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
}

/// Why `raw` is not mail at all, or `None` when it is: mail starts with a
/// header block, so its first line is a header field (`Name: value`, the
/// name printable ASCII without `:`, RFC 5322 section 2.2; white space
/// before the colon is the obsolete syntax, still mail). A message with
/// broken headers is still mail, and so is one behind what tools put before
/// it: a UTF-8 byte-order mark, blank lines, an mbox `From ` line, white
/// space before the first field. A text file, a picture or an empty file is
/// not.
pub fn not_mail_reason(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw);
    let blank = |l: &[u8]| l.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'));
    let mut lines = raw.split(|&b| b == b'\n').skip_while(|l| blank(l));
    let mut first = lines.next().unwrap_or(&[]);
    if first.starts_with(b"From ") {
        first = lines.next().unwrap_or(&[]);
    }
    if blank(first) {
        return Some("not mail: no header block (the file is empty or blank)".to_string());
    }
    let line = first.trim_ascii_start();
    let name_len = line
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && b != b':')
        .count();
    let after = line[name_len..].trim_ascii_start();
    if name_len > 0 && after.first() == Some(&b':') {
        return None;
    }
    let shown: String = String::from_utf8_lossy(&first[..first.len().min(40)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Some(format!(
        "not mail: no header block (the first line, {:?}, is not a header field such as \"From: ...\")",
        shown.trim()
    ))
}

/// The longest address accepted in configuration and rules (RFC 5321's
/// 256-octet path, less the angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Why `address` is not a plain address (`local@domain`) we could send mail
/// to, or `None` when it is one. Used for every address an operator writes
/// (the config, the rules): a dot-atom local part of at most 64 octets, a
/// domain of dot-separated labels (letters, digits, `-`; not at a label's
/// ends), 254 octets in all. No display names, comments or quoted strings.
pub fn address_problem(address: &str) -> Option<String> {
    if address.len() > MAX_ADDRESS_LEN {
        return Some(format!(
            "is {} bytes long; an address has at most {MAX_ADDRESS_LEN}",
            address.len()
        ));
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Some("has no '@'".to_string());
    };
    if local.is_empty() || local.len() > 64 {
        return Some("needs a local part of 1 to 64 characters before the '@'".to_string());
    }
    let atom_char = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if local
        .split('.')
        .any(|a| a.is_empty() || !a.chars().all(atom_char))
    {
        return Some(format!(
            "has a local part {:?} with more than letters, digits, dots between words and !#$%&'*+-/=?^_`{{|}}~",
            crate::text::truncate(local, 64)
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if domain.is_empty() || !domain.split('.').all(label_ok) {
        return Some(format!(
            "has a domain {:?} that is not a host name (labels of letters, digits and '-', separated by dots)",
            crate::text::truncate(domain, 64)
        ));
    }
    None
}

impl std::fmt::Display for MailAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) if !n.is_empty() => write!(f, "{n} <{}>", self.address),
            _ => f.write_str(&self.address),
        }
    }
}

/// The signals that tell an automated message from a person's (RFC 3834 and
/// common practice). Kept raw; deciding what they mean is classification's job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoSignals {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auto_submitted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub precedence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub list_id: Option<String>,
    /// `Some("")` is the null reverse path `<>` of bounces.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub return_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x_auto_response_suppress: Option<String>,
    /// The first vendor auto-reply marker (`X-Autoreply`, `X-Autorespond`,
    /// `X-Autoresponder`, `X-Auto-Reply`, `X-Mail-Autoreply`,
    /// `X-Autoreply-From`), as `Name: value`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub autoreply: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub list_unsubscribe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x_loop: Option<String>,
    /// Bulk senders' `Feedback-ID`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback_id: Option<String>,
}

/// Vendor headers that mark an automatic reply (not in RFC 3834).
pub const AUTOREPLY_HEADERS: &[&str] = &[
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponder",
    "X-Auto-Reply",
    "X-Mail-Autoreply",
    "X-Autoreply-From",
];

/// Metadata of one attachment; the bytes stay in the raw message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// Where the body text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodySource {
    Plain,
    Html,
    Raw,
    None,
}

/// Everything the later stages need from one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedMessage {
    pub message_id: Option<String>,
    pub from: Option<MailAddr>,
    pub sender: Option<MailAddr>,
    pub to: Vec<MailAddr>,
    pub cc: Vec<MailAddr>,
    pub reply_to: Vec<MailAddr>,
    pub subject: Option<String>,
    /// Seconds since the epoch, from the Date header.
    pub date: Option<i64>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub auto: AutoSignals,
    /// Every header as (name, unfolded raw value), in order, for rules on any header.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub body_source: BodySource,
    /// The HTML the body was read from, when there was no text part
    /// (`body_source` is `Html`): its quote markup (`blockquote`, Gmail's and
    /// Outlook's containers) is what separates a reply from its history
    /// (`reply::split`), and the text reduction loses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    pub attachments: Vec<AttachmentMeta>,
    /// SHA-256 of the raw bytes, hex.
    pub sha256: String,
    pub size: u64,
    /// What could not be read, in words. Empty for a clean message.
    pub problems: Vec<String>,
}

impl ParsedMessage {
    /// The person who wrote: From, else the first Reply-To, else Sender.
    pub fn requester(&self) -> Option<&MailAddr> {
        self.from
            .as_ref()
            .or_else(|| self.reply_to.first())
            .or(self.sender.as_ref())
    }

    /// Case-insensitive lookup of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// SHA-256 of bytes as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Removes an mbox `From ` envelope line, if the message starts with one.
pub fn strip_envelope(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(i) => &raw[i + 1..],
            None => &[],
        }
    } else {
        raw
    }
}

thread_local! {
    static IN_PARSER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside mail-parser, where a panic is contained and
/// handled (the panic hook logs it as a warning instead of a crash report).
pub fn in_contained_parser() -> bool {
    IN_PARSER.with(|c| c.get())
}

/// Runs `f` with panics contained and marked as parser failures.
fn contained<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    IN_PARSER.with(|c| c.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_PARSER.with(|c| c.set(false));
    r
}

/// Parses one raw message. Never fails and never panics on input.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    let parsed = parse_bounded(raw);
    #[cfg(debug_assertions)]
    fault::abort_if_subject_matches(&parsed);
    parsed
}

fn parse_bounded(raw: &[u8]) -> ParsedMessage {
    let sha256 = sha256_hex(raw);
    let size = raw.len() as u64;
    let body_bytes = strip_envelope(raw);
    let parser = MessageParser::default();
    // A structure mail-parser could not hold on the stack (or would spend too
    // long on) never reaches its body parser.
    if let Err(beyond) = prescan(body_bytes) {
        return headers_only(
            raw,
            sha256,
            size,
            &format!("MIME structure not parsed: {beyond}"),
        );
    }
    // mail-parser promises not to panic, but some malformed input makes it
    // (mail-parser 0.11.2, corpus malformed-019 and -022): contain it, then fall
    // back to the headers alone with the body kept as raw text.
    let full = contained(|| {
        parser
            .parse(body_bytes)
            .map(|msg| extract(&msg, sha256.clone(), size))
    });
    match full {
        Ok(Some(parsed)) => parsed,
        Ok(None) => unreadable(raw, sha256, size),
        Err(_) => headers_only(raw, sha256, size, "MIME structure could not be parsed"),
    }
}

/// At most this much of a message's head is kept where only the head is
/// kept (an oversized or quarantined message) or read (a head fetched alone):
/// enough for any header section mail in the wild has.
pub const HEAD_LIMIT: usize = 64 * 1024;

/// The header section of a raw message (up to and with the first empty
/// line), capped at [`HEAD_LIMIT`]; all of it when it has no empty line.
pub fn head_of(raw: &[u8]) -> &[u8] {
    let capped = &raw[..raw.len().min(HEAD_LIMIT)];
    let end = find(capped, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| find(capped, b"\n\n").map(|i| i + 2))
        .unwrap_or(capped.len());
    &capped[..end]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The message read from its header section alone, the rest kept as raw text,
/// with `why` recorded as a problem.
fn headers_only(raw: &[u8], sha256: String, size: u64, why: &str) -> ParsedMessage {
    let body_bytes = strip_envelope(raw);
    let headers_only = contained(|| {
        MessageParser::default()
            .parse_headers(body_bytes)
            .map(|msg| extract(&msg, sha256.clone(), size))
    });
    match headers_only {
        Ok(Some(mut parsed)) => {
            let head = head_of(body_bytes).len();
            parsed.body = String::from_utf8_lossy(&body_bytes[head..])
                .trim()
                .to_string();
            parsed.body_source = BodySource::Raw;
            parsed.html = None;
            parsed.attachments.clear();
            parsed
                .problems
                .push(format!("{why}; body kept as raw text"));
            parsed
        }
        _ => unreadable(raw, sha256, size),
    }
}

/// At most this many nested-message entities (`message/rfc822`, `message/global`,
/// the parts of a `multipart/digest`). mail-parser nests one `Message` per
/// level and drops them recursively: about 300 bytes of stack per level in a
/// debug build, so a 2 MiB thread overflows near 7,000 levels.
pub const MAX_MESSAGE_PARTS: usize = 1_000;
/// At most this many MIME parts in all.
pub const MAX_PARTS: usize = 10_000;
/// At most this many distinct multipart boundaries (each one a nesting level).
pub const MAX_BOUNDARIES: usize = 1_000;
/// A nested message that is itself base64 or quoted-printable encoded (RFC
/// 2046 allows neither) is parsed by mail-parser recursively from its decoded
/// bytes, which this scan does not see; it is accepted only in a message this
/// small, which cannot hold a nesting deep enough to matter.
pub const MAX_ENCODED_NESTED_BYTES: usize = 64 * 1024;
/// Listed attachments per message; the bytes stay in the raw message.
pub const MAX_ATTACHMENTS: usize = 1_000;

/// Upper bounds of a message's MIME structure, from [`prescan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Entities mail-parser may read as nested messages.
    pub message_parts: usize,
    /// Parts in all.
    pub parts: usize,
    /// Distinct multipart boundaries.
    pub boundaries: usize,
    /// Nested messages that are transfer-encoded.
    pub encoded_messages: usize,
}

/// One linear pass over the raw message that bounds, from above, what
/// mail-parser would build from it: how many nested messages, how many parts,
/// how many multipart levels. `Err` says which bound the message is beyond.
///
/// Every count errs on the high side. mail-parser finds a boundary anywhere in
/// a line and may start a part's headers right after it, so the scan does not
/// follow lines: it counts every `Content-Type` header field anywhere in the
/// message (with `message` in its value, every occurrence counts) and every
/// occurrence of `--` followed by a declared boundary.
pub fn prescan(raw: &[u8]) -> Result<Shape, String> {
    static FIELDS: OnceLock<regex::bytes::Regex> = OnceLock::new();
    let fields = FIELDS.get_or_init(|| {
        regex::bytes::RegexBuilder::new(r"(?i)content-type|content-transfer-encoding|\n\r?\n")
            .unicode(false)
            .build()
            .unwrap_or_else(|_| unreachable!("constant pattern"))
    });

    let mut shape = Shape::default();
    let mut boundaries: HashSet<&[u8]> = HashSet::new();
    let mut digest = false;
    // The current header block (text between blank lines).
    let mut block = Block::default();
    let mut encoded_plain_blocks = 0usize;
    // Content-Type fields: each one may open a part.
    let mut types = 0usize;
    // End of the last header value read: field names inside it are not fields.
    let mut covered = 0usize;
    for m in fields.find_iter(raw) {
        if m.as_bytes().first() == Some(&b'\n') {
            block.close(&mut shape, &mut encoded_plain_blocks);
            continue;
        }
        if m.start() < covered {
            continue;
        }
        let Some((value, end)) = field_value(raw, m.end()) else {
            continue;
        };
        covered = end;
        let lower = value.to_ascii_lowercase();
        if m.len() == "content-type".len() {
            block.has_type = true;
            types += 1;
            if types > MAX_PARTS {
                return Err(format!("more than {MAX_PARTS} MIME parts"));
            }
            let messages = count(&lower, b"message");
            shape.message_parts += messages;
            if messages > 0 && (contains(&lower, b"rfc822") || contains(&lower, b"global")) {
                block.message = true;
            }
            if contains(&lower, b"digest") {
                digest = true;
                block.message = true;
            }
            for b in boundary_params(value, &lower) {
                boundaries.insert(b);
                if boundaries.len() > MAX_BOUNDARIES {
                    return Err(format!("more than {MAX_BOUNDARIES} multipart boundaries"));
                }
            }
            if shape.message_parts > MAX_MESSAGE_PARTS {
                return Err(format!(
                    "more than {MAX_MESSAGE_PARTS} nested message parts"
                ));
            }
        }
        if contains(&lower, b"base64") || contains(&lower, b"quoted-printable") {
            block.encoded = true;
        }
    }
    block.close(&mut shape, &mut encoded_plain_blocks);
    shape.boundaries = boundaries.len();

    // In a digest a part without Content-Type is a message: every boundary
    // occurrence may open one.
    let delimiters = count_delimiters(raw, &boundaries, MAX_PARTS + 1)?;
    shape.parts = 1 + shape.message_parts + delimiters;
    if digest {
        shape.message_parts += delimiters;
        shape.encoded_messages += encoded_plain_blocks;
    }
    if shape.parts > MAX_PARTS {
        return Err(format!("more than {MAX_PARTS} MIME parts"));
    }
    if shape.message_parts > MAX_MESSAGE_PARTS {
        return Err(format!(
            "more than {MAX_MESSAGE_PARTS} nested message parts"
        ));
    }
    if shape.encoded_messages > 0 && raw.len() > MAX_ENCODED_NESTED_BYTES {
        return Err(format!(
            "a transfer-encoded message/rfc822 part in a message over {MAX_ENCODED_NESTED_BYTES} bytes"
        ));
    }
    Ok(shape)
}

/// What one header block (the text between two blank lines) declares.
#[derive(Default)]
struct Block {
    has_type: bool,
    message: bool,
    encoded: bool,
}

impl Block {
    fn close(&mut self, shape: &mut Shape, encoded_plain: &mut usize) {
        if self.encoded {
            if self.message {
                shape.encoded_messages += 1;
            } else if !self.has_type {
                *encoded_plain += 1;
            }
        }
        *self = Block::default();
    }
}

/// The value of a header field whose name ends at `from`: optional blanks, a
/// colon, then up to the end of the (folded) field. Also where it ends.
fn field_value(raw: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let mut i = from;
    while i < raw.len() && matches!(raw[i], b' ' | b'\t') {
        i += 1;
    }
    if raw.get(i) != Some(&b':') {
        return None;
    }
    let start = i + 1;
    let mut end = start;
    loop {
        match raw[end..].iter().position(|&b| b == b'\n') {
            Some(nl) => {
                end += nl + 1;
                if !matches!(raw.get(end), Some(b' ' | b'\t')) {
                    break;
                }
            }
            None => {
                end = raw.len();
                break;
            }
        }
    }
    Some((&raw[start..end], end))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The `boundary` parameters of a Content-Type value (`lower` is its lower
/// case), each cut to its leading RFC 2046 boundary characters, so that it is
/// a prefix of whatever mail-parser reads (quoting, RFC 2231 continuations).
fn boundary_params<'a>(value: &'a [u8], lower: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..]
        .windows(8)
        .position(|w| w == b"boundary")
        .map(|i| i + at)
    {
        at = i + 8;
        let mut j = at;
        // `boundary*0*=` and `boundary = "x"`.
        while j < value.len() && matches!(value[j], b'*' | b'0'..=b'9' | b' ' | b'\t') {
            j += 1;
        }
        if value.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while j < value.len() && matches!(value[j], b' ' | b'\t' | b'"' | b'\'') {
            j += 1;
        }
        let len = value[j..]
            .iter()
            .take(70)
            .take_while(|&&b| b.is_ascii_alphanumeric() || b"()+_,-./:=?".contains(&b))
            .count();
        out.push(&value[j..j + len]);
    }
    out
}

/// Occurrences of `--` followed by any of `boundaries`, counted up to `limit`.
fn count_delimiters(
    raw: &[u8],
    boundaries: &HashSet<&[u8]>,
    limit: usize,
) -> Result<usize, String> {
    if boundaries.is_empty() {
        return Ok(0);
    }
    let alternatives: Vec<String> = boundaries
        .iter()
        .map(|b| regex::escape(&String::from_utf8_lossy(b)))
        .collect();
    let pattern = format!("--(?:{})", alternatives.join("|"));
    let re = regex::bytes::RegexBuilder::new(&pattern)
        .unicode(false)
        .size_limit(64 << 20)
        .build()
        .map_err(|e| format!("its multipart boundaries could not be searched for: {e}"))?;
    Ok(re.find_iter(raw).take(limit).count())
}

/// A few fields of a header section, read without mail-parser: for a message
/// that must not be parsed again. Values are unfolded, undecoded, and cut to
/// RFC 5322's 998 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFields {
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

/// The first Message-ID, From and Subject of `head`, read line by line.
pub fn raw_fields(head: &[u8]) -> RawFields {
    let mut out = RawFields::default();
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut()
                && value.len() < 998
            {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let pick = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.chars().take(998).collect::<String>())
            .filter(|v| !v.is_empty())
    };
    out.message_id = pick("message-id")
        .map(|v| clean_id(&v))
        .filter(|v| !v.is_empty());
    out.from = pick("from");
    out.subject = pick("subject");
    out
}

/// Debug builds only: a poison message on demand, for the end-to-end tests of
/// what happens when the daemon dies while a message is in hand.
#[cfg(debug_assertions)]
mod fault {
    /// Aborts the process (as a stack overflow would) when the message's
    /// Subject contains the text in `TRIAGED_FAULT_ABORT_ON_SUBJECT`.
    pub fn abort_if_subject_matches(parsed: &super::ParsedMessage) {
        static NEEDLE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let needle = NEEDLE.get_or_init(|| {
            std::env::var("TRIAGED_FAULT_ABORT_ON_SUBJECT")
                .ok()
                .filter(|s| !s.is_empty())
        });
        if let (Some(needle), Some(subject)) = (needle, &parsed.subject)
            && subject.contains(needle.as_str())
        {
            eprintln!("TRIAGED_FAULT_ABORT_ON_SUBJECT: aborting on {subject:?}");
            std::process::abort();
        }
    }
}

/// The fields of a message mail-parser has read.
fn extract(msg: &mail_parser::Message<'_>, sha256: String, size: u64) -> ParsedMessage {
    let mut problems = Vec::new();
    let headers: Vec<(String, String)> = msg
        .headers_raw()
        .map(|(n, v)| (n.to_string(), unfold(v)))
        .collect();
    if headers.is_empty() {
        problems.push("no header could be read".to_string());
    }

    let from = msg.from().and_then(first_addr);
    if from.is_none() {
        problems.push("no usable From address".to_string());
    }
    let message_id = msg.message_id().map(clean_id).filter(|id| !id.is_empty());
    if message_id.is_none() {
        problems.push("no Message-ID".to_string());
    }
    let date = msg.date().map(|d| d.to_timestamp());
    if date.is_none() {
        problems.push("no readable Date".to_string());
    }

    let (body, body_source, html) = best_body(msg);

    let total_attachments = msg.attachment_count();
    if total_attachments > MAX_ATTACHMENTS {
        problems.push(format!(
            "{total_attachments} attachments; only the first {MAX_ATTACHMENTS} are listed"
        ));
    }
    let attachments = msg
        .attachments()
        .take(MAX_ATTACHMENTS)
        .map(|part| {
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".to_string())
                .to_ascii_lowercase();
            let contents = part.contents();
            AttachmentMeta {
                name: part.attachment_name().map(str::to_string),
                content_type,
                size: contents.len() as u64,
                sha256: sha256_hex(contents),
            }
        })
        .collect();

    let raw_header = |name: &str| msg.header_raw(name).map(|v| unfold(v).trim().to_string());
    let auto = AutoSignals {
        auto_submitted: raw_header("Auto-Submitted"),
        precedence: raw_header("Precedence"),
        list_id: raw_header("List-Id"),
        return_path: raw_header("Return-Path").map(|v| {
            v.trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
                .to_string()
        }),
        x_auto_response_suppress: raw_header("X-Auto-Response-Suppress"),
        autoreply: AUTOREPLY_HEADERS
            .iter()
            .find_map(|n| raw_header(n).map(|v| format!("{n}: {v}"))),
        list_unsubscribe: raw_header("List-Unsubscribe"),
        x_loop: raw_header("X-Loop"),
        feedback_id: raw_header("Feedback-ID"),
    };

    let in_reply_to = bounded_ids(
        id_list(msg.in_reply_to()),
        MAX_IN_REPLY_TO,
        "In-Reply-To",
        &mut problems,
    );
    let references = bounded_ids(
        id_list(msg.references()),
        MAX_REFERENCES,
        "References",
        &mut problems,
    );

    ParsedMessage {
        message_id,
        from,
        sender: msg.sender().and_then(first_addr),
        to: all_addrs(msg.to()),
        cc: all_addrs(msg.cc()),
        reply_to: all_addrs(msg.reply_to()),
        subject: msg
            .subject()
            .map(|s| unfold(s).trim().to_string())
            .filter(|s| !s.is_empty()),
        date,
        in_reply_to,
        references,
        auto,
        headers,
        body,
        body_source,
        html,
        attachments,
        sha256,
        size,
        problems,
    }
}

/// The result for bytes that are not a message at all: the text is kept as body.
fn unreadable(raw: &[u8], sha256: String, size: u64) -> ParsedMessage {
    let text = String::from_utf8_lossy(raw).trim().to_string();
    ParsedMessage {
        message_id: None,
        from: None,
        sender: None,
        to: Vec::new(),
        cc: Vec::new(),
        reply_to: Vec::new(),
        subject: None,
        date: None,
        in_reply_to: Vec::new(),
        references: Vec::new(),
        auto: AutoSignals::default(),
        headers: Vec::new(),
        body_source: if text.is_empty() {
            BodySource::None
        } else {
            BodySource::Raw
        },
        body: text,
        html: None,
        attachments: Vec::new(),
        sha256,
        size,
        problems: vec!["not an RFC 5322 message: no header could be read".to_string()],
    }
}

/// The best text body: the first text/plain part, else HTML reduced to text
/// (and then the HTML too).
fn best_body(msg: &mail_parser::Message<'_>) -> (String, BodySource, Option<String>) {
    let is_html = msg.text_part(0).map(|p| p.is_text_html()).unwrap_or(false);
    match msg.body_text(0) {
        Some(text) if is_html => (
            text.trim_end().to_string(),
            BodySource::Html,
            msg.body_html(0).map(|h| h.into_owned()),
        ),
        Some(text) => (text.trim_end().to_string(), BodySource::Plain, None),
        None => match msg.body_html(0) {
            Some(html) => (
                html_to_text(&html),
                BodySource::Html,
                Some(html.into_owned()),
            ),
            None => (String::new(), BodySource::None, None),
        },
    }
}

/// A plain reduction of HTML to text, for the rare case mail-parser offers HTML only.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_addr(addr: &Address<'_>) -> Option<MailAddr> {
    addr.iter().find_map(to_mail_addr)
}

fn all_addrs(addr: Option<&Address<'_>>) -> Vec<MailAddr> {
    addr.map(|a| a.iter().filter_map(to_mail_addr).collect())
        .unwrap_or_default()
}

fn to_mail_addr(a: &mail_parser::Addr<'_>) -> Option<MailAddr> {
    let address = a.address()?.trim();
    if address.is_empty() {
        return None;
    }
    Some(MailAddr {
        name: a
            .name()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty()),
        address: address.to_string(),
    })
}

/// At most this many Message-IDs of In-Reply-To are kept (the first ones).
pub const MAX_IN_REPLY_TO: usize = 16;
/// At most this many Message-IDs of References are kept (the newest ones, at
/// the end): threading uses fewer, and the raw message keeps them all.
pub const MAX_REFERENCES: usize = 100;

/// Keeps at most `max` ids: the first ones of In-Reply-To, the newest (last)
/// ones of References; says so in `problems` when some were dropped.
fn bounded_ids(
    mut ids: Vec<String>,
    max: usize,
    header: &str,
    problems: &mut Vec<String>,
) -> Vec<String> {
    if ids.len() <= max {
        return ids;
    }
    problems.push(format!(
        "{header} names {} Message-IDs; {max} kept",
        ids.len()
    ));
    if header == "References" {
        ids.drain(..ids.len() - max);
    } else {
        ids.truncate(max);
    }
    ids
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    let ids: Vec<Cow<'_, str>> = match value {
        HeaderValue::Text(t) => vec![t.clone()],
        HeaderValue::TextList(list) => list.clone(),
        _ => Vec::new(),
    };
    ids.iter()
        .map(|id| clean_id(id))
        .filter(|id| !id.is_empty())
        .collect()
}

/// A Message-ID without angle brackets or surrounding space.
pub fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

/// Joins folded header lines into one line.
fn unfold(value: &str) -> String {
    if !value.contains(['\r', '\n']) {
        return value.to_string();
    }
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_starts_with_a_header_field() {
        for mail in [
            &b"From: a@x\r\nSubject: hi\r\n\r\nbody"[..],
            b"Received: from x\n\tby y\nFrom: a@x\n\nbody",
            b"X-Weird-Header:\n",
            b"\xef\xbb\xbfSubject: with a BOM\n\nx",
            // Broken headers are still mail.
            b"Subject: ok\nthis line is no header\n\nbody",
            b"Subject: \xff\xfe binary value\n",
            b"Fro :m obsolete white space before the colon\n",
            b" From: indented\n",
            // What tools put in front.
            b"From a@x Mon Jan  1 00:00:00 2026\nFrom: a@x\n\nbody",
            b"          \r\n\nDelivered-To: a@x\n",
        ] {
            assert_eq!(
                not_mail_reason(mail),
                None,
                "{:?}",
                String::from_utf8_lossy(mail)
            );
        }
        for (not, why) in [
            (&b""[..], "empty or blank"),
            (b"   \n\n  \r\n", "empty or blank"),
            (b"From a@x Mon Jan  1 00:00:00 2026\n", "empty or blank"),
            (
                b"Hello team, the printer is broken.\n",
                "\"Hello team, the printer is broken.\"",
            ),
            (
                b"// Not an RFC-822 Document\nFrom: a@x\n",
                "\"// Not an RFC-822 Document\"",
            ),
            (b": no name\n", "no header block"),
            (b"\x89PNG\r\n\x1a\n\x00\x00", "no header block"),
        ] {
            let r = not_mail_reason(not).unwrap_or_default();
            assert!(r.starts_with("not mail") && r.contains(why), "{r}");
        }
        // A huge first line is quoted short.
        let long = vec![b'x'; 1 << 20];
        assert!(not_mail_reason(&long).is_some_and(|r| r.len() < 200));
    }

    #[test]
    fn addresses_are_checked() {
        for ok in [
            "ann@example.org",
            "m@x",
            "first.last+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "jürgen@bücher.example",
        ] {
            assert_eq!(address_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "no '@'"),
            ("ann", "no '@'"),
            ("@example.org", "local part"),
            ("ann@", "domain"),
            ("ann@-x.org", "domain"),
            ("ann@x..org", "domain"),
            ("Ann <ann@x.org>", "local part"),
            ("ann lee@x.org", "local part"),
            ("ann.@x.org", "local part"),
            ("ann@x.org\r\nBcc: y@z", "local part"),
        ] {
            let p = address_problem(bad).unwrap_or_default();
            assert!(p.contains(why), "{bad:?}: {p}");
        }
        let huge = format!("{}@example.org", "a".repeat(100 * 1024));
        let p = address_problem(&huge).unwrap_or_default();
        assert!(p.contains("at most 254"), "{p}");
        assert!(p.len() < 100, "the problem does not repeat the address");
        assert!(address_problem(&format!("{}@x.org", "a".repeat(65))).is_some());
    }

    #[test]
    fn head_stops_at_blank_line() {
        assert_eq!(head_of(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
        assert_eq!(head_of(b"A: b\n\nbody"), b"A: b\n\n");
        assert_eq!(head_of(b"A: b"), b"A: b");
        let long = vec![b'x'; HEAD_LIMIT + 10];
        assert_eq!(head_of(&long).len(), HEAD_LIMIT);
    }

    #[test]
    fn addresses_split() {
        assert_eq!(split_address("a+b@X.org"), ("a+b", "X.org"));
        assert_eq!(split_address("nobody"), ("nobody", ""));
        assert_eq!(domain_of("a@b@Mail.X.org>").as_deref(), Some("mail.x.org"));
        assert_eq!(domain_of("nobody"), None);
    }

    #[test]
    fn plain_message_fields() {
        let raw = b"From: \"Ann Lee\" <ann@example.org>\r\nTo: isda-support@example.edu, Bob <bob@x.org>\r\nSubject: =?utf-8?q?Caf=C3=A9_down?=\r\nMessage-ID: <abc@x>\r\nIn-Reply-To: <p1@x>\r\nReferences: <p0@x> <p1@x>\r\nDate: Fri, 20 Nov 2026 16:30:00 -0600\r\nAuto-Submitted: auto-replied\r\nReturn-Path: <>\r\n\r\nHello\r\n";
        let p = parse(raw);
        assert_eq!(p.message_id.as_deref(), Some("abc@x"));
        assert_eq!(
            p.from.as_ref().map(|a| a.address.as_str()),
            Some("ann@example.org")
        );
        assert_eq!(
            p.from.as_ref().and_then(|a| a.name.as_deref()),
            Some("Ann Lee")
        );
        assert_eq!(p.to.len(), 2);
        assert_eq!(p.subject.as_deref(), Some("Café down"));
        assert_eq!(p.in_reply_to, vec!["p1@x"]);
        assert_eq!(p.references, vec!["p0@x", "p1@x"]);
        assert_eq!(p.auto.auto_submitted.as_deref(), Some("auto-replied"));
        assert_eq!(p.auto.return_path.as_deref(), Some(""));
        assert_eq!(p.body, "Hello");
        assert_eq!(p.body_source, BodySource::Plain);
        assert!(p.date.is_some());
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn html_only_becomes_text() {
        let raw = b"From: a@b.c\nSubject: x\nContent-Type: text/html\n\n<html><body><p>Server <b>down</b></p></body></html>\n";
        let p = parse(raw);
        assert!(p.body.contains("Server"), "{}", p.body);
        assert!(p.body.contains("down"));
        assert!(!p.body.contains("<b>"));
        assert_eq!(p.body_source, BodySource::Html);
    }

    #[test]
    fn garbage_is_still_a_message() {
        let p = parse(b"just one line of text");
        assert!(!p.problems.is_empty());
        assert!(p.body.contains("one line") || p.subject.is_some() || !p.headers.is_empty());
    }

    #[test]
    fn parser_panic_is_contained() {
        // Pins a mail-parser 0.11.2 panic (slice out of range) on a broken
        // message/rfc822 part: the message must still yield its headers.
        let raw = b"From: a@example.com\r\nSubject: broken rfc822 attachment\r\nContent-Type: multipart/mixed; boundary=\"BOUND\"\r\n\r\n--BOUND\r\nContent-Type: text/plain\r\n\r\nhello\r\n--BOUND\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"broken.eml\"\r\n\r\nthis attachment is not a valid eml, sorry!\r\n--BOUND--\r\n";
        let p = parse(raw);
        assert_eq!(p.subject.as_deref(), Some("broken rfc822 attachment"));
        assert_eq!(p.from.map(|a| a.address), Some("a@example.com".to_string()));
        assert!(p.body.contains("hello"));
    }

    #[test]
    fn empty_input() {
        let p = parse(b"");
        assert!(!p.problems.is_empty());
        assert_eq!(p.size, 0);
    }

    #[test]
    fn mbox_envelope_is_ignored() {
        let p = parse(b"From ann@example.org Mon Jan  1 00:00:00 2024\nFrom: ann@example.org\nSubject: hi\n\nbody\n");
        assert_eq!(p.subject.as_deref(), Some("hi"));
        assert_eq!(
            p.from.map(|a| a.address),
            Some("ann@example.org".to_string())
        );
    }

    fn nested_rfc822(levels: usize) -> Vec<u8> {
        let mut raw = b"From: a@customer.example\r\nTo: isda-support@example.edu\r\nSubject: nested\r\nMessage-ID: <n@x>\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
        for _ in 0..levels {
            raw.extend_from_slice(b"Subject: l\r\nContent-Type: message/rfc822\r\n\r\n");
        }
        raw.extend_from_slice(b"From: i@x\r\n\r\nhi\r\n");
        raw
    }

    fn nested_multipart(levels: usize) -> Vec<u8> {
        let mut raw =
            b"From: a@b.c\nSubject: deep\nContent-Type: multipart/mixed; boundary=\"b0\"\n\n"
                .to_vec();
        for i in 1..=levels {
            raw.extend_from_slice(
                format!(
                    "--b{}\nContent-Type: multipart/mixed; boundary=\"b{i}\"\n\n",
                    i - 1
                )
                .as_bytes(),
            );
        }
        raw.extend_from_slice(format!("--b{levels}\nContent-Type: text/plain\n\nhi\n").as_bytes());
        for i in (0..=levels).rev() {
            raw.extend_from_slice(format!("--b{i}--\n").as_bytes());
        }
        raw
    }

    fn flat_parts(parts: usize) -> Vec<u8> {
        let mut raw =
            b"From: a@b.c\nSubject: flat\nContent-Type: multipart/mixed; boundary=\"zz\"\n\n"
                .to_vec();
        for _ in 0..parts {
            raw.extend_from_slice(b"--zz\nContent-Type: text/plain; name=a.txt\n\nx\n");
        }
        raw.extend_from_slice(b"--zz--\n");
        raw
    }

    #[test]
    fn prescan_counts_nested_messages() {
        let shape = prescan(&nested_rfc822(10)).expect("within bounds");
        assert_eq!(shape.message_parts, 11);
        assert_eq!(shape.encoded_messages, 0);
        let err = prescan(&nested_rfc822(MAX_MESSAGE_PARTS)).expect_err("beyond");
        assert!(err.contains("nested message parts"), "{err}");
    }

    #[test]
    fn prescan_counts_boundaries_and_parts() {
        let shape = prescan(&nested_multipart(20)).expect("within bounds");
        assert_eq!(shape.boundaries, 21);
        // One opening and one closing delimiter per level, plus the text part's.
        assert_eq!(shape.parts, 1 + 2 * 21);
        let err = prescan(&nested_multipart(MAX_BOUNDARIES + 1)).expect_err("beyond");
        assert!(err.contains("boundaries"), "{err}");
        assert_eq!(prescan(&flat_parts(100)).map(|s| s.parts), Ok(102));
        let err = prescan(&flat_parts(MAX_PARTS)).expect_err("beyond");
        assert!(err.contains("MIME parts"), "{err}");
    }

    #[test]
    fn prescan_sees_boundaries_mail_parser_would_find_mid_line() {
        // mail-parser matches `--boundary` anywhere in a line and reads a part's
        // headers right after it: a message part hidden that way still counts.
        let mut raw = b"From: a@b.c\nContent-Type: multipart/mixed; boundary=q\n\n".to_vec();
        for _ in 0..(MAX_MESSAGE_PARTS + 1) {
            raw.extend_from_slice(b"x--qContent-Type: message/rfc822\n\n");
        }
        assert!(prescan(&raw).is_err());
        // Field names in folded values and odd case are still fields.
        let raw = b"From: a@b.c\nCONTENT-TYPE :\n message/RFC822\n\nSubject: in\n\nx\n";
        assert_eq!(prescan(raw).map(|s| s.message_parts), Ok(1));
    }

    #[test]
    fn prescan_digest_parts_are_messages() {
        let mut raw = b"From: a@b.c\nContent-Type: multipart/digest; boundary=\"dd\"\n\n".to_vec();
        for _ in 0..(MAX_MESSAGE_PARTS + 1) {
            raw.extend_from_slice(b"--dd\n\nSubject: x\n\nx\n");
        }
        raw.extend_from_slice(b"--dd--\n");
        let err = prescan(&raw).expect_err("beyond");
        assert!(err.contains("nested message parts"), "{err}");
    }

    #[test]
    fn prescan_encoded_nested_message_only_when_small() {
        let part = b"From: a@b.c\nContent-Type: multipart/mixed; boundary=\"e\"\n\n--e\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeAoKeAo=\n--e--\n";
        assert_eq!(prescan(part).map(|s| s.encoded_messages), Ok(1));
        let mut big = part.to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_ENCODED_NESTED_BYTES));
        assert!(prescan(&big).is_err());
        // An encoded attachment inside a plain forwarded message is fine.
        let fwd = b"From: a@b.c\nContent-Type: message/rfc822\n\nSubject: in\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nAAAA\n";
        let mut fwd = fwd.to_vec();
        fwd.extend(std::iter::repeat_n(b'A', MAX_ENCODED_NESTED_BYTES));
        assert_eq!(prescan(&fwd).map(|s| s.encoded_messages), Ok(0));
    }

    #[test]
    fn prescan_accepts_the_corpus_and_ordinary_mail() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        let mut seen = 0;
        for sub in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = f.path();
                if path.extension().is_some_and(|e| e == "eml") {
                    let raw = std::fs::read(&path).expect("read");
                    assert!(
                        prescan(strip_envelope(&raw)).is_ok(),
                        "{}: {:?}",
                        path.display(),
                        prescan(&raw)
                    );
                    seen += 1;
                }
            }
        }
        assert!(seen > 0, "no corpus in {}", dir.display());
    }

    #[test]
    fn deeply_nested_message_becomes_headers_and_raw_body() {
        // The reproduction of issue #7: 50,000 nested message/rfc822 parts
        // overflowed the stack (SIGABRT) while mail-parser's result was dropped.
        // Run on a 2 MiB thread, the size of tokio's blocking threads.
        let raw = nested_rfc822(50_000);
        let p = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse(&raw))
            .expect("spawn")
            .join()
            .expect("no crash");
        assert_eq!(p.subject.as_deref(), Some("nested"));
        assert_eq!(p.message_id.as_deref(), Some("n@x"));
        assert_eq!(p.body_source, BodySource::Raw);
        assert!(p.body.contains("Content-Type: message/rfc822"));
        assert!(
            p.problems
                .iter()
                .any(|q| q.contains("MIME structure not parsed")),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn many_attachments_are_capped() {
        let p = parse(&flat_parts(MAX_ATTACHMENTS + 10));
        assert_eq!(p.attachments.len(), MAX_ATTACHMENTS);
        assert!(
            p.problems.iter().any(|q| q.contains("attachments")),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn raw_fields_without_the_parser() {
        let f = raw_fields(b"Received: x\r\nSUBJECT: a\r\n  folded\r\nFrom: A <a@b.c>\r\nMessage-ID:\r\n <id@x>\r\n\r\nSubject: body\r\n");
        assert_eq!(f.subject.as_deref(), Some("a folded"));
        assert_eq!(f.from.as_deref(), Some("A <a@b.c>"));
        assert_eq!(f.message_id.as_deref(), Some("id@x"));
        assert_eq!(raw_fields(b""), RawFields::default());
    }

    #[test]
    fn attachments_are_listed() {
        let raw = b"From: a@b.c\nSubject: log\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nsee log\n--XX\nContent-Type: text/plain; name=app.log\nContent-Disposition: attachment; filename=app.log\n\nERROR 1\n--XX--\n";
        let p = parse(raw);
        assert_eq!(p.body, "see log");
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(p.attachments[0].name.as_deref(), Some("app.log"));
        assert_eq!(p.attachments[0].content_type, "text/plain");
    }

    #[test]
    fn long_id_lists_are_bounded() {
        let refs: Vec<String> = (0..1000).map(|i| format!("<r{i}@x>")).collect();
        let irt: Vec<String> = (0..40).map(|i| format!("<i{i}@x>")).collect();
        let raw = format!(
            "From: a@b.c\nIn-Reply-To: {}\nReferences: {}\n\nhi\n",
            irt.join(" "),
            refs.join(" ")
        );
        let p = parse(raw.as_bytes());
        assert_eq!(p.references.len(), MAX_REFERENCES);
        assert_eq!(p.references.first().map(String::as_str), Some("r900@x"));
        assert_eq!(p.references.last().map(String::as_str), Some("r999@x"));
        assert_eq!(p.in_reply_to.len(), MAX_IN_REPLY_TO);
        assert_eq!(p.in_reply_to[0], "i0@x");
        assert!(
            p.problems
                .iter()
                .any(|x| x.contains("References names 1000")),
            "{:?}",
            p.problems
        );
    }
}
