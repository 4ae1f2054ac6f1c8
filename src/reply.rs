//! The new text of a reply, apart from the quoted history and the signature,
//! for display and relaying (the raw message is kept elsewhere). Pure: no IO,
//! never fails, and linear in the size of its input whatever the input (huge
//! bodies, millions of `>` lines, HTML nested without end).
//!
//! No maintained Rust crate does this: `email_reply_parser` (a one-release
//! port of Zapier's parser) knows English only and has no HTML. This module
//! is modelled on GitHub's `email_reply_parser` (fragments of quoted and
//! unquoted lines, signatures at the end), Mailgun's `talon` (attribution
//! lines, Outlook header blocks, the clients' HTML quote containers) and
//! `mailstrip` (forwarded content is the point of a message and is kept).
//! HTML is turned into text by a small bounded converter of its own
//! ([`html_to_text`]): `html2text` builds a DOM and walks it by recursion
//! (deeply nested HTML has exhausted its stack), and would bring in html5ever
//! for what needs only block breaks, entities and the quote containers.
//!
//! What is recognised:
//! - attribution lines: "On \<date\>, X wrote:" and the German ("Am ... schrieb"),
//!   French ("Le ... a écrit"), Spanish ("El ... escribió"), Dutch ("Op ...
//!   schreef"), Swedish ("Den ... skrev"), Italian and Portuguese forms, also
//!   when a client wrapped them over up to three lines;
//! - Outlook's "-----Original Message-----" (and its translations) and its
//!   "From: / Sent: / To: / Subject:" header block (also in German, French,
//!   Spanish, Dutch, Swedish), with the "____" line above it;
//! - lines quoted with `>`: top-posting (history below), bottom-posting
//!   (history above) and interleaved answers (kept whole);
//! - in HTML: Gmail's `gmail_quote`, Apple Mail's and Thunderbird's
//!   `<blockquote type="cite">`, Thunderbird's `moz-cite-prefix`, Yahoo's
//!   `yahoo_quoted`, Outlook's `divRplyFwdMsg`, `appendonsend` and its
//!   `border-top` separator (everything after is history);
//! - signatures: the RFC 3676 "-- " delimiter, and mobile lines such as
//!   "Sent from my iPhone" or "Von meinem iPhone gesendet" near the end.
//!
//! Forwarded messages ("---------- Forwarded message ---------", "Begin
//! forwarded message:", an Outlook header block whose subject is "FW: ...")
//! are not history: what follows the marker stays in `new_text`.
//! When stripping would leave nothing, the whole text is kept.
//!
//! Use: [`split`] on a [`ParsedMessage`] (its body is the text part, or the
//! HTML part reduced to text by the parser, where the quote containers are
//! lost but the attribution lines remain); [`split_bodies`] or
//! [`split_html`] when the caller has the HTML part itself (from the raw
//! message), which finds the containers too. The result's `new_text` is what
//! to relay or show; `quoted` and `signature` are what to show collapsed.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::parse::ParsedMessage;

/// A message split into what its writer wrote and what was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    /// What the writer wrote (and, for a forward, what was forwarded).
    pub new_text: String,
    /// The quoted history that was removed, as text (HTML turned to text,
    /// quoted containers with `>`), for a display that shows it collapsed.
    pub quoted: String,
    /// The signature that was removed (from its delimiter on).
    pub signature: String,
    /// How the text was split.
    pub method: Method,
    /// What marked the start of the history, when history was removed.
    pub marker: Option<Marker>,
    /// The message forwards another one; the forwarded part is in `new_text`.
    pub forwarded: bool,
}

/// How [`split`] came to its `new_text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Nothing was removed: no history, no signature.
    Whole,
    /// History and/or a signature was removed.
    Cut,
    /// The writer answered between quoted blocks: the whole text is kept.
    Interleaved,
    /// Removing history would have left nothing (a message of quotes only):
    /// the whole text is kept.
    KeptWhole,
}

/// What marked the start of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Marker {
    /// "On \<date\>, X wrote:" and its translations.
    Attribution,
    /// "-----Original Message-----" and its translations.
    OriginalMessage,
    /// Outlook's "From: / Sent: / To: / Subject:" block.
    HeaderBlock,
    /// Lines quoted with `>` (in HTML: a quote container).
    QuotedLines,
}

/// The body handed to [`split_text`] is cut to this many bytes first (on a
/// character boundary): a reply's new text is at its top, and whatever lies
/// beyond is history or attachments pasted in. The cut part goes to `quoted`.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Lines longer than this are never a marker (and are not matched).
const MAX_MARKER_LINE: usize = 600;
/// Quote depth written for nested HTML quote containers (deeper is shown as this).
const MAX_HTML_QUOTE_DEPTH: usize = 8;
/// Open HTML elements remembered; deeper ones are read but not tracked.
const MAX_HTML_STACK: usize = 256;
/// HTML quote containers looked into for a forward; later ones are not.
const MAX_FORWARD_PEEKS: usize = 16;

/// Split a parsed message: its text part, else the HTML it was read from
/// (whose quote markup marks the history).
pub fn split(msg: &ParsedMessage) -> Reply {
    match &msg.html {
        Some(html) => split_html(html),
        None => split_text(&msg.body),
    }
}

/// Split a message given its text and HTML bodies: the text when there is
/// one, else the HTML.
pub fn split_bodies(text: Option<&str>, html: Option<&str>) -> Reply {
    match (text, html) {
        (Some(t), _) if !t.trim().is_empty() => split_text(t),
        (_, Some(h)) => split_html(h),
        (Some(t), None) => split_text(t),
        (None, None) => split_text(""),
    }
}

/// Split an HTML body: it is turned into text with its quote containers
/// quoted by `>`, then split as text.
pub fn split_html(html: &str) -> Reply {
    split_text(&html_to_text(html))
}

/// Split a text body.
pub fn split_text(body: &str) -> Reply {
    let (body, overflow) = if body.len() > MAX_BODY_BYTES {
        let head = byte_prefix(body, MAX_BODY_BYTES);
        (head, &body[head.len()..])
    } else {
        (body, "")
    };
    let mut reply = split_lines(body);
    if !overflow.is_empty() {
        reply.quoted.push_str(overflow);
        if reply.method == Method::Whole {
            reply.method = Method::Cut;
        }
    }
    reply
}

fn byte_prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------- text ----

static ATTRIBUTION_STRONG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?xi)^
        (on|am|le|el|op|den|d[ée]n|p[åa]|il|em|w\s+dniu|dnia|\d{1,4}[\s./-])
        .{0,500}
        \b(wrote|schrieb|[ée]crit|escribi[óo]|escribieron|schreef|geschreven|skrev|scritto|escreveu|napisa[łl]|kirjoitti)
        \b[^:]{0,200}
        [:\u{a0}\s]*:\s*$",
    )
    .expect("attribution regex")
});

static ATTRIBUTION_WEAK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^.{1,300}\b(wrote|schrieb|[ée]crit|escribi[óo]|schreef|skrev|scritto|escreveu)[\s\u{a0}]*:\s*$",
    )
    .expect("weak attribution regex")
});

static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^[-_=\s]*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original|oorspronkelijk bericht|originalmeddelande|ursprungligt meddelande|messaggio originale|mensagem original|original meddelelse|opprinnelig melding)\s*-{2,}\s*$",
    )
    .expect("original-message regex")
});

static FORWARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(-{2,}\s*(forwarded message|weitergeleitete nachricht|message transf[ée]r[ée]|mensaje reenviado|doorgestuurd bericht|vidarebefordrat meddelande|messaggio inoltrato|mensagem encaminhada|videresendt melding)\s*-{2,}|(begin forwarded message|anfang der weitergeleiteten nachricht|d[ée]but du message r[ée]exp[ée]di[ée]|inicio del mensaje reenviado|begin doorgestuurd bericht|vidarebefordrat brev|start of forwarded message|forwarded message)\s*:)\s*$",
    )
    .expect("forward regex")
});

static HEADER_FROM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\*?(from|von|de|van|från|fra|da|od)\*?\s*:\s*\*?\s*\S").expect("from regex")
});

static HEADER_OTHER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\*?(sent|date|to|cc|subject|gesendet|datum|an|betreff|envoy[ée]|[àa]|objet|enviado|fecha|para|asunto|verzonden|aan|onderwerp|skickat|till|ämne|inviato|oggetto|data)\*?\s*:",
    )
    .expect("header regex")
});

static RAW_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(received|return-path|delivered-to|content-type|content-transfer-encoding|mime-version|message-id|dkim-signature|user-agent|x-[a-z0-9-]+)\s*:",
    )
    .expect("raw header regex")
});

static HEADER_SUBJECT_FORWARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\*?(subject|betreff|objet|asunto|onderwerp|ämne|oggetto)\*?\s*:\s*\*?\s*(fw|fwd|wg|tr|rv|vs|vb|doorst)\s*:",
    )
    .expect("forward subject regex")
});

static MOBILE_SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(sent from my .{1,40}|sent from (outlook|mail|yahoo mail|samsung|proton ?mail|gmail|my mobile).{0,40}|sent via .{1,40}|get outlook for (ios|android)|envoy[ée] (de|depuis) (mon|ma|l'application) .{1,40}|von meinem .{1,40} gesendet|gesendet (von|mit) (meinem|mein|der|dem) .{1,40}|enviado (desde|de) (mi|my) .{1,40}|verzonden (vanaf|met) (mijn|de) .{1,40}|verstuurd vanaf mijn .{1,40}|skickat från (min|mitt) .{1,40}|inviato da(l)? (mio|iphone|ipad) ?.{0,40}|obtenir outlook pour (ios|android)|outlook für (ios|android) (herunterladen|beziehen))(\s*<[^>]*>)?\.?\s*$",
    )
    .expect("mobile signature regex")
});

/// One line of the body, with its text (no line end).
fn lines_of(body: &str) -> Vec<&str> {
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// The RFC 3676 signature delimiter "-- " (also "--": many clients trim the space).
fn is_sig_delimiter(line: &str) -> bool {
    matches!(line, "-- " | "--" | "-- \u{a0}" | "--\u{a0}" | "\u{a0}-- ")
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// A line short enough to be a marker, trimmed (no-break spaces too).
fn marker_text(line: &str) -> Option<&str> {
    if line.len() > MAX_MARKER_LINE {
        return None;
    }
    let t = line.trim_matches(|c: char| c.is_whitespace() || c == '\u{a0}');
    (!t.is_empty()).then_some(t)
}

/// Attribution starting at line `i`: the number of lines it takes (1 to 3)
/// and whether it is the strong form (a language's opening word).
fn attribution_at(lines: &[&str], i: usize) -> Option<(usize, bool)> {
    let first = marker_text(lines[i])?;
    if is_quoted(first) {
        return None;
    }
    let mut joined = String::new();
    for n in 0..3 {
        let line = marker_text(lines.get(i + n)?)?;
        if n > 0 && is_quoted(line) {
            return None;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(line);
        if line.ends_with(':') {
            // The strong form carries a date or a time: prose such as "On
            // Friday, support wrote:" is not history unless quotes follow.
            if joined.bytes().any(|b| b.is_ascii_digit()) && ATTRIBUTION_STRONG.is_match(&joined) {
                return Some((n + 1, true));
            }
            if n == 0 && ATTRIBUTION_WEAK.is_match(&joined) {
                return Some((1, false));
            }
            return None;
        }
    }
    None
}

/// Outlook's header block starting at line `i` (From: then at least two of
/// Sent:/To:/Subject:... within the next lines): its length, and whether its
/// subject says it is a forward.
fn header_block_at(lines: &[&str], i: usize) -> Option<(usize, bool)> {
    let first = marker_text(lines[i])?;
    if !HEADER_FROM.is_match(first) {
        return None;
    }
    // Raw RFC 5322 headers (a message enclosed as text, a bounce) are not
    // Outlook's block, which never has these fields.
    let window = lines.iter().skip(i.saturating_sub(1)).take(10);
    if window
        .filter_map(|l| marker_text(l))
        .any(|t| RAW_HEADER.is_match(t))
    {
        return None;
    }
    let mut others = 0;
    let mut forward = false;
    let mut len = 1;
    for (k, line) in lines.iter().enumerate().skip(i + 1).take(7) {
        let Some(t) = marker_text(line) else {
            if others >= 2 {
                break;
            }
            continue;
        };
        if HEADER_OTHER.is_match(t) {
            others += 1;
            forward |= HEADER_SUBJECT_FORWARD.is_match(t);
            len = k - i + 1;
        }
    }
    (others >= 2).then_some((len, forward))
}

/// The first non-blank line at or after `i`.
fn next_non_blank(lines: &[&str], i: usize) -> Option<usize> {
    (i..lines.len()).find(|&k| !is_blank(lines[k]))
}

/// Where the unquoted history or a forward starts.
enum Stop {
    /// History from this line on (with the marker that opened it).
    History(usize, Marker),
    /// A forward from this line on.
    Forward(usize),
}

/// The first line where history (not quoted with `>`) or a forward starts.
fn find_stop(lines: &[&str]) -> Option<Stop> {
    for i in 0..lines.len() {
        let line = lines[i];
        if is_blank(line) || is_quoted(line) || line.len() > MAX_MARKER_LINE {
            continue;
        }
        let Some(t) = marker_text(line) else { continue };
        if FORWARD.is_match(t) {
            return Some(Stop::Forward(i));
        }
        if ORIGINAL_MESSAGE.is_match(t) {
            return Some(Stop::History(i, Marker::OriginalMessage));
        }
        if let Some((_, forward)) = header_block_at(lines, i) {
            // The "____" line Outlook puts above the block goes with it.
            let mut start = i;
            let mut k = i;
            while k > 0 {
                k -= 1;
                if is_blank(lines[k]) {
                    continue;
                }
                if marker_text(lines[k])
                    .is_some_and(|p| p.len() >= 8 && p.chars().all(|c| c == '_' || c == '-'))
                {
                    start = k;
                }
                break;
            }
            return Some(if forward {
                Stop::Forward(start)
            } else {
                Stop::History(start, Marker::HeaderBlock)
            });
        }
        if let Some((len, strong)) = attribution_at(lines, i) {
            let followed_by_quote =
                next_non_blank(lines, i + len).is_some_and(|k| is_quoted(lines[k]));
            if strong && !followed_by_quote {
                return Some(Stop::History(i, Marker::Attribution));
            }
        }
    }
    None
}

fn join(lines: &[&str]) -> String {
    lines.join("\n")
}

fn trim_blank_lines(s: &str) -> &str {
    // Leading blank lines and trailing whitespace go; indentation of the
    // first line stays.
    let start = s
        .char_indices()
        .take_while(|(_, c)| c.is_whitespace())
        .filter(|(_, c)| *c == '\n')
        .map(|(i, _)| i + 1)
        .last()
        .unwrap_or(0);
    s[start..].trim_end()
}

fn split_lines(body: &str) -> Reply {
    let lines = lines_of(body);
    let stop = find_stop(&lines);
    let (region_end, tail_history, forward_from, mut marker) = match stop {
        Some(Stop::History(i, m)) => (i, Some(i), None, Some(m)),
        Some(Stop::Forward(i)) => (i, None, Some(i), None),
        None => (lines.len(), None, None, None),
    };
    // A "-- " signature below the last quoted line (Thunderbird puts the
    // signature under the quote) is not the writer answering after a quote.
    let last_quoted = lines[..region_end].iter().rposition(|l| is_quoted(l));
    let sig_below = last_quoted.and_then(|z| {
        (z + 1..region_end)
            .find(|&k| is_sig_delimiter(lines[k]))
            .filter(|&d| !(z + 1..d).any(|k| !is_blank(lines[k])))
    });
    let tail_signature = sig_below.map(|d| join(&lines[d..region_end]));
    let region = &lines[..sig_below.unwrap_or(region_end)];

    // Lines quoted with `>`, and the attribution lines just above them.
    let mut quoted = vec![false; region.len()];
    let mut any_quoted = false;
    let mut i = 0;
    while i < region.len() {
        if is_quoted(region[i]) {
            quoted[i] = true;
            any_quoted = true;
        } else if let Some((len, _)) = attribution_at(region, i)
            && next_non_blank(region, i + len).is_some_and(|k| is_quoted(region[k]))
        {
            for q in quoted.iter_mut().skip(i).take(len) {
                *q = true;
            }
            // The history starts here, above any later marker.
            if !any_quoted {
                marker = Some(Marker::Attribution);
            }
            any_quoted = true;
            i += len;
            continue;
        }
        i += 1;
    }
    let first_q = quoted.iter().position(|&q| q);
    let last_q = quoted.iter().rposition(|&q| q);
    let writer =
        |r: std::ops::Range<usize>| r.into_iter().any(|k| !quoted[k] && !is_blank(region[k]));

    let mut method = Method::Cut;
    let (mut new_text, mut history) = match (first_q, last_q) {
        (Some(a), Some(z)) => {
            let before = writer(0..a);
            let between = writer(a..z + 1);
            let after = writer(z + 1..region.len());
            if marker.is_none() {
                marker = Some(Marker::QuotedLines);
            }
            if between || (before && after) {
                method = Method::Interleaved;
                (join(region), String::new())
            } else if before {
                (join(&region[..a]), join(&region[a..]))
            } else if after {
                (join(&region[z + 1..]), join(&region[..=z]))
            } else {
                (String::new(), join(region))
            }
        }
        _ => (join(region), String::new()),
    };
    if let Some(t) = tail_history {
        if !history.is_empty() {
            history.push('\n');
        }
        history.push_str(&join(&lines[t..]));
    }

    let writer_empty = new_text.trim().is_empty();
    let forwarded = forward_from.is_some();
    if writer_empty && !forwarded {
        // Nothing of the writer's own would remain: keep everything.
        let whole = trim_blank_lines(body).to_string();
        let method = if history.trim().is_empty() {
            Method::Whole
        } else {
            Method::KeptWhole
        };
        return Reply {
            new_text: whole,
            quoted: String::new(),
            signature: String::new(),
            method,
            marker: None,
            forwarded: false,
        };
    }

    let (kept, signature) = cut_signature(&new_text);
    let mut signature = signature.to_string();
    if let Some(tail) = tail_signature {
        if !signature.is_empty() {
            signature.push('\n');
        }
        signature.push_str(tail.trim_end());
    }
    new_text = kept.to_string();
    if let Some(f) = forward_from {
        let fwd = join(&lines[f..]);
        if !new_text.trim().is_empty() {
            new_text = format!("{}\n\n{}", new_text.trim_end(), fwd.trim_end());
        } else {
            new_text = fwd;
        }
    }
    let new_text = trim_blank_lines(&new_text).to_string();
    let quoted = trim_blank_lines(&history).to_string();
    if quoted.is_empty() && signature.is_empty() && method == Method::Cut {
        method = Method::Whole;
    }
    if quoted.is_empty() {
        marker = None;
    }
    Reply {
        new_text,
        quoted,
        signature,
        method,
        marker,
        forwarded,
    }
}

/// The writer's text without its signature, and the signature. A signature
/// is cut only when text remains above it.
fn cut_signature(text: &str) -> (&str, &str) {
    let lines = lines_of(text);
    let non_blank: Vec<usize> = (0..lines.len()).filter(|&k| !is_blank(lines[k])).collect();
    // "-- " delimiter (also "--", as many clients trim the space), outside quotes.
    let mut start = lines.iter().position(|l| is_sig_delimiter(l));
    if start.is_none() {
        // A mobile line among the last three non-blank lines.
        let from = non_blank.len().saturating_sub(3);
        start = non_blank[from..]
            .iter()
            .copied()
            .find(|&k| marker_text(lines[k]).is_some_and(|t| MOBILE_SIGNATURE.is_match(t)));
    }
    let Some(s) = start else {
        return (text, "");
    };
    if !lines[..s].iter().any(|l| !is_blank(l)) {
        return (text, "");
    }
    let offset = line_offset(text, s).unwrap_or(text.len());
    (text[..offset].trim_end(), text[offset..].trim_end())
}

/// Byte offset of the start of line `n` (lines split on '\n').
fn line_offset(text: &str, n: usize) -> Option<usize> {
    if n == 0 {
        return Some(0);
    }
    text.match_indices('\n').nth(n - 1).map(|(i, _)| i + 1)
}

// ---------------------------------------------------------------- html ----

/// HTML to text, bounded and without recursion: block elements and `<br>`
/// break lines, entities are decoded, `<head>`, `<style>` and `<script>` are
/// dropped, and the content of the clients' quote containers is quoted with
/// `>` (after Outlook's reply separator, everything is).
pub fn html_to_text(html: &str) -> String {
    let mut out = Out::default();
    let bytes = html.as_bytes();
    // Open elements: (name, opens a quote, is a paragraph followed by a blank line).
    let mut stack: Vec<(String, bool, bool)> = Vec::new();
    let mut skip_until: Option<&'static str> = None;
    let mut rest_quoted = false;
    let mut peeks = 0;
    let mut pre = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = memchr_lt(bytes, i);
            if skip_until.is_none() {
                out.text(&html[i..end], pre > 0);
            }
            i = end;
            continue;
        }
        // Comments, doctype, CDATA.
        if html[i..].starts_with("<!--") {
            i = html[i + 4..]
                .find("-->")
                .map_or(bytes.len(), |k| i + 4 + k + 3);
            continue;
        }
        if html[i..].starts_with("<!") || html[i..].starts_with("<?") {
            i = html[i..].find('>').map_or(bytes.len(), |k| i + k + 1);
            continue;
        }
        let Some(close) = html[i..].find('>') else {
            // A '<' without '>': text.
            if skip_until.is_none() {
                out.text(&html[i..], pre > 0);
            }
            break;
        };
        let tag = &html[i + 1..i + close];
        i += close + 1;
        let (closing, name, attrs) = parse_tag(tag);
        if name.is_empty() {
            if skip_until.is_none() {
                out.text(&html[i - close - 1..i], pre > 0);
            }
            continue;
        }
        if let Some(until) = skip_until {
            if closing && name == until {
                skip_until = None;
            }
            continue;
        }
        if !closing {
            match name.as_str() {
                "head" | "style" | "script" | "title" | "template" => {
                    if !tag.ends_with('/') {
                        skip_until = Some(match name.as_str() {
                            "head" => "head",
                            "style" => "style",
                            "script" => "script",
                            "title" => "title",
                            _ => "template",
                        });
                    }
                    continue;
                }
                _ => {}
            }
        }
        if name == "br" {
            out.newline();
        } else if is_block(&name) {
            out.break_line();
        }
        if closing {
            if name == "pre" {
                pre = pre.saturating_sub(1);
            }
            if let Some(pos) = stack.iter().rposition(|(n, _, _)| *n == name) {
                let mut paragraph = false;
                for (_, q, para) in stack.drain(pos..) {
                    if q {
                        out.depth = out.depth.saturating_sub(1);
                    }
                    paragraph |= para;
                }
                if is_block(&name) {
                    out.break_line();
                }
                if paragraph {
                    out.newline();
                }
            }
            continue;
        }
        if name == "pre" {
            pre += 1;
        }
        let attrs = attrs.to_ascii_lowercase();
        if !rest_quoted && is_reply_separator(&name, &attrs) {
            let forward = peeks < MAX_FORWARD_PEEKS && {
                peeks += 1;
                peek_forward(html, i)
            };
            if !forward {
                rest_quoted = true;
                out.base = 1;
                out.newline();
            }
        }
        let mut quote = is_quote_container(&name, &attrs);
        if quote && peeks < MAX_FORWARD_PEEKS {
            peeks += 1;
            if peek_forward(html, i) || out.recent_forward() {
                quote = false;
            }
        }
        if quote {
            out.newline();
        }
        if is_void(&name) || tag.ends_with('/') {
            continue;
        }
        if stack.len() < MAX_HTML_STACK {
            if quote {
                out.depth += 1;
            }
            // Outlook writes each line as a <p class=MsoNormal>, and its
            // blank lines as <p>&nbsp;</p>; other paragraphs end with a blank line.
            let paragraph = name == "p" && !attrs.contains("msonormal");
            stack.push((name, quote, paragraph));
        }
    }
    out.finish()
}

fn memchr_lt(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'<')
        .map_or(bytes.len(), |k| from + k)
}

/// (closing, lower-case name, attributes) of a tag's inside.
fn parse_tag(tag: &str) -> (bool, String, &str) {
    let (closing, rest) = match tag.strip_prefix('/') {
        Some(r) => (true, r),
        None => (false, tag),
    };
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty()
        || name.len() > 20
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return (closing, String::new(), "");
    }
    (closing, name.to_ascii_lowercase(), &rest[end..])
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "blockquote"
            | "li"
            | "ul"
            | "ol"
            | "tr"
            | "table"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "hr"
            | "pre"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "dl"
            | "dt"
            | "dd"
            | "address"
            | "center"
            | "body"
            | "html"
    )
}

fn is_void(name: &str) -> bool {
    matches!(
        name,
        "br" | "hr"
            | "img"
            | "meta"
            | "link"
            | "input"
            | "wbr"
            | "col"
            | "area"
            | "base"
            | "embed"
            | "source"
            | "track"
            | "param"
    )
}

/// Containers the clients put quoted history in.
fn is_quote_container(name: &str, attrs: &str) -> bool {
    (name == "blockquote"
        && (attrs.contains("cite") || attrs.contains("border-left") || attrs.contains("quote")))
        || attrs.contains("gmail_quote")
        || attrs.contains("yahoo_quoted")
        || attrs.contains("moz-cite-prefix")
        || attrs.contains("protonmail_quote")
        || attrs.contains("zmail_extra")
}

/// Outlook's separators: everything after them is history.
fn is_reply_separator(name: &str, attrs: &str) -> bool {
    attrs.contains("divrplyfwdmsg")
        || attrs.contains("id=\"appendonsend\"")
        || attrs.contains("mail-editor-reference-message-container")
        || (name == "div"
            && attrs.contains("border-top:solid")
            && (attrs.contains("#e1e1e1") || attrs.contains("#b5c4df")))
}

/// Whether the text just after `from` (about 1,500 bytes of HTML) opens a
/// forward, so that the container is not history.
fn peek_forward(html: &str, from: usize) -> bool {
    let window = byte_prefix(&html[from..], 1500);
    let text = crude_text(window);
    let lines = lines_of(&text);
    let mut seen = 0;
    for (k, line) in lines.iter().enumerate() {
        let Some(t) = marker_text(line) else { continue };
        if FORWARD.is_match(t) {
            return true;
        }
        if header_block_at(&lines, k).is_some_and(|(_, fwd)| fwd) {
            return true;
        }
        seen += 1;
        if seen >= 3 {
            break;
        }
    }
    false
}

/// Tags to line breaks, a few entities: enough to read a marker.
fn crude_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if name == "br" || is_block(&name) {
                    out.push('\n');
                }
            }
            _ if in_tag => {
                if tag.len() < 16 {
                    tag.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    decode_entities(&out)
}

/// Text being written: whitespace collapsed, quote prefixes at line starts.
#[derive(Default)]
struct Out {
    s: String,
    /// Quote containers open.
    depth: usize,
    /// Quote level under everything (1 after an Outlook separator).
    base: usize,
    /// The current line has content.
    line_open: bool,
    /// A space is owed before the next word.
    space: bool,
    /// Blank lines written in a row.
    blanks: usize,
}

impl Out {
    fn level(&self) -> usize {
        (self.depth + self.base).min(MAX_HTML_QUOTE_DEPTH)
    }

    fn start_line(&mut self) {
        if !self.line_open {
            let level = self.level();
            for _ in 0..level {
                self.s.push('>');
            }
            if level > 0 {
                self.s.push(' ');
            }
            self.line_open = true;
            self.space = false;
        }
    }

    fn text(&mut self, raw: &str, pre: bool) {
        let decoded = decode_entities(raw);
        if !self.line_open && decoded.contains('\u{a0}') && decoded.trim().is_empty() {
            // <p>&nbsp;</p>: Outlook's empty line.
            self.newline();
            return;
        }
        if pre {
            for (k, part) in decoded.split('\n').enumerate() {
                if k > 0 {
                    self.newline();
                }
                if !part.is_empty() {
                    self.start_line();
                    self.s.push_str(part);
                    self.blanks = 0;
                }
            }
            return;
        }
        for (k, word) in decoded
            .split(|c: char| c.is_whitespace() && c != '\u{a0}')
            .enumerate()
        {
            if k > 0 {
                self.space = true;
            }
            if word.is_empty() {
                continue;
            }
            if self.line_open && self.space {
                self.s.push(' ');
            }
            self.start_line();
            for c in word.chars() {
                self.s.push(if c == '\u{a0}' { ' ' } else { c });
            }
            self.space = false;
            self.blanks = 0;
        }
        if decoded.ends_with(|c: char| c.is_whitespace() && c != '\u{a0}') {
            self.space = true;
        }
    }

    /// Ends the current line, or writes a blank line when none is open
    /// (`<div><br></div>`), at most one in a row.
    fn newline(&mut self) {
        if self.line_open {
            self.s.push('\n');
            self.line_open = false;
            self.blanks = 0;
        } else if self.blanks < 1 && !self.s.is_empty() {
            self.blanks += 1;
            self.start_line();
            self.s.push('\n');
            self.line_open = false;
        }
        self.space = false;
    }

    /// Ends the current line, if any (a block's edge).
    fn break_line(&mut self) {
        if self.line_open {
            self.s.push('\n');
            self.line_open = false;
            self.blanks = 0;
        }
        self.space = false;
    }

    /// A forward marker among the last lines written.
    fn recent_forward(&self) -> bool {
        let tail = &self.s[self.s.len() - byte_suffix_len(&self.s, 300)..];
        tail.lines()
            .rev()
            .take(3)
            .filter_map(marker_text)
            .map(|t| t.trim_start_matches('>').trim())
            .any(|t| FORWARD.is_match(t))
    }

    fn finish(self) -> String {
        self.s.trim_end().to_string()
    }
}

/// The length of the longest suffix of `s` of at most `max` bytes.
fn byte_suffix_len(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s.len() - start
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let semi = rest[1..].find(';').map(|k| k + 1).filter(|&k| k <= 10);
        let decoded = semi.and_then(|k| entity(&rest[1..k]).map(|c| (c, k)));
        match decoded {
            Some((c, k)) => {
                out.push(c);
                rest = &rest[k + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "eacute" => 'é',
        "Eacute" => 'É',
        "egrave" => 'è',
        "ecirc" => 'ê',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "iacute" => 'í',
        "oacute" => 'ó',
        "uacute" => 'ú',
        "ntilde" => 'ñ',
        "ccedil" => 'ç',
        "auml" => 'ä',
        "ouml" => 'ö',
        "uuml" => 'ü',
        "Auml" => 'Ä',
        "Ouml" => 'Ö',
        "Uuml" => 'Ü',
        "aring" => 'å',
        "Aring" => 'Å',
        "szlig" => 'ß',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "copy" => '©',
        "reg" => '®',
        "euro" => '€',
        "middot" => '·',
        "bull" => '•',
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
