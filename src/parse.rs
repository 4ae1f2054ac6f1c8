//! Parse: raw RFC 5322 bytes in, a [`ParsedMessage`] out.
//!
//! Pure and infallible: whatever the input, the result is a value plus a list of
//! problems. A message mail-parser cannot read at all still yields a
//! `ParsedMessage` whose body is the raw text, so that it can become a ticket.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

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
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
    }
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
    let sha256 = sha256_hex(raw);
    let size = raw.len() as u64;
    let body_bytes = strip_envelope(raw);
    let parser = MessageParser::default();
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
        Err(_) => {
            let headers_only = contained(|| {
                parser
                    .parse_headers(body_bytes)
                    .map(|msg| extract(&msg, sha256.clone(), size))
            });
            match headers_only {
                Ok(Some(mut parsed)) => {
                    let head = crate::pipeline::head_of(body_bytes).len();
                    parsed.body = String::from_utf8_lossy(&body_bytes[head..])
                        .trim()
                        .to_string();
                    parsed.body_source = BodySource::Raw;
                    parsed.attachments.clear();
                    parsed.problems.push(
                        "MIME structure could not be parsed; body kept as raw text".to_string(),
                    );
                    parsed
                }
                _ => unreadable(raw, sha256, size),
            }
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

    let (body, body_source) = best_body(msg);

    let attachments = msg
        .attachments()
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
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        auto,
        headers,
        body,
        body_source,
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
        attachments: Vec::new(),
        sha256,
        size,
        problems: vec!["not an RFC 5322 message: no header could be read".to_string()],
    }
}

/// The best text body: the first text/plain part, else HTML reduced to text.
fn best_body(msg: &mail_parser::Message<'_>) -> (String, BodySource) {
    let is_html = msg.text_part(0).map(|p| p.is_text_html()).unwrap_or(false);
    match msg.body_text(0) {
        Some(text) => {
            let source = if is_html {
                BodySource::Html
            } else {
                BodySource::Plain
            };
            (text.trim_end().to_string(), source)
        }
        None => match msg.body_html(0) {
            Some(html) => (html_to_text(&html), BodySource::Html),
            None => (String::new(), BodySource::None),
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

    #[test]
    fn attachments_are_listed() {
        let raw = b"From: a@b.c\nSubject: log\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nsee log\n--XX\nContent-Type: text/plain; name=app.log\nContent-Disposition: attachment; filename=app.log\n\nERROR 1\n--XX--\n";
        let p = parse(raw);
        assert_eq!(p.body, "see log");
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(p.attachments[0].name.as_deref(), Some("app.log"));
        assert_eq!(p.attachments[0].content_type, "text/plain");
    }
}
