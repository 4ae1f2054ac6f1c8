//! Is this mail automated? The one classifier of machine-sent mail, over a
//! [`ParsedMessage`]'s signals (RFC 3834 and what RT, Zammad and Znuny look
//! at). Pure; it imports nothing above `parse`.
//!
//! Two questions are asked of it, and they are not the same:
//!
//! - the rules' field `auto_generated` (`rules::auto_generated`): was this
//!   message sent by a machine rather than a person? That is [`reason`].
//! - notify's "no automatic reply" (`notify::policy::no_reply_reason`): may
//!   the desk answer it automatically? Every automated message gets no reply,
//!   and so, besides, does mail that a person may well have written but that
//!   must not be answered: mail with no sender address, mail from the desk's
//!   own addresses, mail carrying the desk's own `X-Loop`, and mail whose
//!   sender asked for no automatic replies (`X-Auto-Response-Suppress`).
//!   Those are policy's own and stay in `notify::policy`.

use crate::parse::{ParsedMessage, split_address};

/// Why a message was sent by a machine, or `None` when nothing says so.
///
/// What counts: `Auto-Submitted` other than `no` (an empty value counts: the
/// field is only ever added by software); a vendor auto-reply marker
/// (`X-Autoreply`, `X-Autorespond`...) other than `no`/`false`/`0`; the null
/// Return-Path `<>` of bounces; a `mailer-daemon` or `postmaster` sender; a
/// VERP or list bounce address (`bounces+...@`, `*-bounces@`, `bounce-*@`,
/// `owner-*@`, `*-owner@`); a delivery status report or
/// `X-Failed-Recipients`; a `List-Id`; `Precedence: bulk/junk/list/
/// auto_reply`; `List-Unsubscribe` or `Feedback-ID` (bulk senders); a
/// `noreply`-like sender. Sender addresses are looked at without their
/// `+suffix`: the requester's (From, else Reply-To, else Sender), From's and
/// Sender's.
///
/// The texts are the ones notify records as the reason an acknowledgement
/// was not sent.
pub fn reason(msg: &ParsedMessage) -> Option<String> {
    let auto = &msg.auto;
    if let Some(v) = &auto.auto_submitted {
        let kind = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if kind != "no" {
            return Some(format!("Auto-Submitted: {v}"));
        }
    }
    if let Some(marker) = &auto.autoreply {
        let value = marker
            .split_once(':')
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !matches!(value.as_str(), "no" | "false" | "0") {
            return Some(format!("automatic reply: {marker}"));
        }
    }
    if auto
        .return_path
        .as_deref()
        .is_some_and(|r| r.trim().is_empty())
    {
        return Some("bounce: null Return-Path <>".to_string());
    }
    if let Some(r) = senders(msg).find_map(|a| sender_reason(&a)) {
        return Some(r);
    }
    let content_type = msg
        .header("Content-Type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("multipart/report") || content_type.contains("message/delivery-status")
    {
        return Some("bounce: delivery status notification".to_string());
    }
    if msg.header("X-Failed-Recipients").is_some() {
        return Some("bounce: X-Failed-Recipients".to_string());
    }
    if let Some(list) = &auto.list_id {
        return Some(format!("mailing list: List-Id {list}"));
    }
    if let Some(p) = &auto.precedence {
        let p = p.trim().to_ascii_lowercase();
        if matches!(
            p.as_str(),
            "bulk" | "junk" | "list" | "auto_reply" | "auto-reply"
        ) {
            return Some(format!("Precedence: {p}"));
        }
    }
    if let Some(v) = &auto.list_unsubscribe {
        return Some(format!("list or bulk mail: List-Unsubscribe {v}"));
    }
    if let Some(v) = &auto.feedback_id {
        return Some(format!("bulk mail: Feedback-ID {v}"));
    }
    if let Some(r) = senders(msg).find_map(|a| no_replies(&a)) {
        return Some(r);
    }
    None
}

/// Whether a message was sent by a machine: [`reason`] has one.
pub fn is_automated(msg: &ParsedMessage) -> bool {
    reason(msg).is_some()
}

/// The sender addresses, lower-case, requester first, each once.
fn senders(msg: &ParsedMessage) -> impl Iterator<Item = String> {
    let mut all: Vec<String> = Vec::with_capacity(3);
    for a in [msg.requester(), msg.from.as_ref(), msg.sender.as_ref()]
        .into_iter()
        .flatten()
    {
        let a = a.address.to_ascii_lowercase();
        if !all.contains(&a) {
            all.push(a);
        }
    }
    all.into_iter()
}

/// The local part of a lower-case address without its `+suffix`.
fn base(address: &str) -> &str {
    let (local, _) = split_address(address);
    local.split('+').next().unwrap_or(local)
}

/// A bounce or list robot's address.
fn sender_reason(address: &str) -> Option<String> {
    let base = base(address);
    if base == "mailer-daemon" || base == "postmaster" {
        return Some(format!("bounce: sent by {address}"));
    }
    let bounce_address = matches!(base, "bounce" | "bounces")
        || base.starts_with("bounce-")
        || base.starts_with("bounces-")
        || base.starts_with("bounce.")
        || base.ends_with("-bounce")
        || base.ends_with("-bounces")
        || base.starts_with("owner-")
        || base.ends_with("-owner");
    bounce_address.then(|| format!("bounce or list address: sent by {address}"))
}

/// A sender that says it takes no replies (`noreply`, `do-not-reply`...).
fn no_replies(address: &str) -> Option<String> {
    let compact: String = base(address)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    [
        "noreply",
        "donotreply",
        "noreplies",
        "donotrespond",
        "noresponse",
    ]
    .iter()
    .any(|p| compact.starts_with(p))
    .then(|| format!("sender {address} takes no replies"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn check(headers: &str, want: Option<&str>) {
        let raw = format!("{headers}\nSubject: x\n\nbody\n");
        let got = reason(&parse(raw.as_bytes()));
        match (want, &got) {
            (None, None) => {}
            (Some(w), Some(g)) if g.contains(w) => {}
            _ => panic!("{headers:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn machines_and_people() {
        check("From: ann@example.org", None);
        check("From: ann@example.org\nAuto-Submitted: no", None);
        check("From: ann@example.org\nAuto-Submitted: No ; x=y", None);
        check(
            "From: ann@example.org\nAuto-Submitted: auto-generated; owner-email=x",
            Some("Auto-Submitted"),
        );
        check(
            "From: ann@example.org\nAuto-Submitted:",
            Some("Auto-Submitted"),
        );
        check(
            "From: ann@example.org\nX-Autoreply: yes",
            Some("X-Autoreply"),
        );
        check("From: ann@example.org\nX-Autoreply: false", None);
        check(
            "From: ann@example.org\nReturn-Path: <>",
            Some("null Return-Path"),
        );
        check(
            "From: ann@example.org\nReturn-Path: < >",
            Some("null Return-Path"),
        );
        check(
            "From: ann@example.org\nReturn-Path: <ann@example.org>",
            None,
        );
        check("From: Postmaster+x@example.org", Some("bounce"));
        check("From: staff-bounces@lists.example.org", Some("bounce"));
        check("From: owner-staff@lists.example.org", Some("list address"));
        check("From: bouncer@example.org", None);
        check(
            "From: ann@example.org\nContent-Type: multipart/report; report-type=delivery-status; boundary=x",
            Some("delivery status"),
        );
        check(
            "From: ann@example.org\nX-Failed-Recipients: a@b.c",
            Some("X-Failed-Recipients"),
        );
        check(
            "From: ann@example.org\nList-Id: <l.example.org>",
            Some("List-Id"),
        );
        check(
            "From: ann@example.org\nPrecedence: JUNK",
            Some("Precedence: junk"),
        );
        check(
            "From: ann@example.org\nPrecedence: auto_reply",
            Some("Precedence"),
        );
        check("From: ann@example.org\nPrecedence: first-class", None);
        check(
            "From: ann@example.org\nList-Unsubscribe: <mailto:u@x.example>",
            Some("List-Unsubscribe"),
        );
        check(
            "From: ann@example.org\nFeedback-ID: 1:2:c:esp",
            Some("Feedback-ID"),
        );
        check(
            "From: Do_Not_Reply+x@vendor.example",
            Some("takes no replies"),
        );
        check("From: nora@vendor.example", None);
    }

    #[test]
    fn every_sender_address_is_looked_at() {
        // Sender names the robot behind a person's From.
        check(
            "From: ann@example.org\nSender: MAILER-DAEMON@mx.example.org",
            Some("sent by mailer-daemon@mx.example.org"),
        );
        // No From: the requester is Reply-To.
        check("Reply-To: noreply@vendor.example", Some("takes no replies"));
        // A person's Reply-To does not hide a robot's From.
        check(
            "From: noreply@vendor.example\nReply-To: ann@example.org",
            Some("noreply@vendor.example"),
        );
    }

    #[test]
    fn what_is_not_automated_by_itself() {
        // Policy's own reasons are not signs of a machine.
        check("Subject: nobody", None);
        check("From: ann@example.org\nX-Loop: yes", None);
        check("From: ann@example.org\nX-Auto-Response-Suppress: All", None);
    }
}
