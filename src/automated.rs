//! Is this mail automated? The one classifier of machine-sent mail, over a
//! [`ParsedMessage`]'s signals (RFC 3834 and what RT, Zammad and Znuny look
//! at). Pure; it imports nothing above `parse`.
//!
//! Two questions are asked of it, and they are not the same:
//!
//! - the rules' field `auto_generated` (`rules::auto_generated`): is this
//!   message marked as sent by a machine? That is [`is_marked`]: only the
//!   signs of [`Strength::Marked`], because a rule routes on it (the shipped
//!   monitoring rules take `auto_generated` mail with an alert's subject as
//!   an alert), and a guess must not move a person's mail to another queue.
//! - notify's "no automatic reply" (`notify::policy::no_reply_reason`): may
//!   the desk answer it automatically? Every message with a sign of any
//!   strength ([`reason`]) gets no reply, and so, besides, does mail that a person may well have written but that
//!   must not be answered: mail with no sender address, mail from the desk's
//!   own addresses, mail carrying the desk's own `X-Loop`, and mail whose
//!   sender asked for no automatic replies (`X-Auto-Response-Suppress`).
//!   Those are policy's own and stay in `notify::policy`.

use crate::parse::{ParsedMessage, split_address};

/// How strongly a signal says that a machine sent the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// The mail says so in the fields routing has always read: an
    /// `Auto-Submitted` value other than `no` (RFC 3834), `Precedence: bulk,
    /// junk or list`, a `List-Id` (RFC 2919), the null Return-Path `<>` of
    /// bounces, a `mailer-daemon` or `postmaster` sender. These alone make
    /// the rules' `auto_generated` hold: a routing decision needs precision.
    Marked,
    /// Every other sign in common use: an empty `Auto-Submitted`, vendor
    /// auto-reply markers, `Precedence: auto_reply`, VERP and list bounce
    /// addresses, delivery status reports, `X-Failed-Recipients`,
    /// `List-Unsubscribe`, `Feedback-ID`, `noreply`-like senders. Enough to
    /// withhold an automatic reply (a wrong guess costs one acknowledgement),
    /// not to route.
    Likely,
}

/// The first sign that a machine sent the mail, with its strength, or `None`
/// when nothing says so. Signs are looked at in a fixed order, and only
/// those at least as strong as `at_least` (`Marked` is the strongest).
///
/// Sender addresses are looked at lower-case and without their `+suffix`:
/// the requester's (From, else Reply-To, else Sender), From's and Sender's.
/// The texts are the ones notify records as the reason an acknowledgement
/// was not sent.
pub fn detect(msg: &ParsedMessage, at_least: Strength) -> Option<(Strength, String)> {
    use Strength::{Likely, Marked};
    let wanted = |s: Strength| s <= at_least;
    let auto = &msg.auto;
    if let Some(v) = &auto.auto_submitted {
        let kind = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let strength = if kind.is_empty() { Likely } else { Marked };
        if kind != "no" && wanted(strength) {
            return Some((strength, format!("Auto-Submitted: {v}")));
        }
    }
    if let Some(marker) = &auto.autoreply {
        let value = marker
            .split_once(':')
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !matches!(value.as_str(), "no" | "false" | "0") && wanted(Likely) {
            return Some((Likely, format!("automatic reply: {marker}")));
        }
    }
    if auto
        .return_path
        .as_deref()
        .is_some_and(|r| r.trim().is_empty())
    {
        return Some((Marked, "bounce: null Return-Path <>".to_string()));
    }
    if let Some(found) = senders(msg)
        .filter_map(|a| sender_reason(&a))
        .find(|f| wanted(f.0))
    {
        return Some(found);
    }
    if wanted(Likely) {
        let content_type = msg
            .header("Content-Type")
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.contains("multipart/report")
            || content_type.contains("message/delivery-status")
        {
            return Some((Likely, "bounce: delivery status notification".to_string()));
        }
        if msg.header("X-Failed-Recipients").is_some() {
            return Some((Likely, "bounce: X-Failed-Recipients".to_string()));
        }
    }
    if let Some(list) = &auto.list_id {
        return Some((Marked, format!("mailing list: List-Id {list}")));
    }
    if let Some(p) = &auto.precedence {
        let p = p.trim().to_ascii_lowercase();
        let strength = match p.as_str() {
            "bulk" | "junk" | "list" => Some(Marked),
            "auto_reply" | "auto-reply" => Some(Likely),
            _ => None,
        };
        if let Some(strength) = strength.filter(|&s| wanted(s)) {
            return Some((strength, format!("Precedence: {p}")));
        }
    }
    if wanted(Likely) {
        if let Some(v) = &auto.list_unsubscribe {
            return Some((Likely, format!("list or bulk mail: List-Unsubscribe {v}")));
        }
        if let Some(v) = &auto.feedback_id {
            return Some((Likely, format!("bulk mail: Feedback-ID {v}")));
        }
        if let Some(r) = senders(msg).find_map(|a| no_replies(&a)) {
            return Some((Likely, r));
        }
    }
    None
}

/// Why a message was likely sent by a machine (any [`Strength`]), or `None`:
/// what withholds an automatic reply.
pub fn reason(msg: &ParsedMessage) -> Option<String> {
    detect(msg, Strength::Likely).map(|(_, r)| r)
}

/// Whether a message is marked as sent by a machine ([`Strength::Marked`]):
/// the rules' `auto_generated`.
pub fn is_marked(msg: &ParsedMessage) -> bool {
    detect(msg, Strength::Marked).is_some()
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
fn sender_reason(address: &str) -> Option<(Strength, String)> {
    let base = base(address);
    if base == "mailer-daemon" || base == "postmaster" {
        return Some((Strength::Marked, format!("bounce: sent by {address}")));
    }
    let bounce_address = matches!(base, "bounce" | "bounces")
        || base.starts_with("bounce-")
        || base.starts_with("bounces-")
        || base.starts_with("bounce.")
        || base.ends_with("-bounce")
        || base.ends_with("-bounces")
        || base.starts_with("owner-")
        || base.ends_with("-owner");
    bounce_address.then(|| {
        (
            Strength::Likely,
            format!("bounce or list address: sent by {address}"),
        )
    })
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
    fn only_marked_mail_is_auto_generated() {
        let marked = |headers: &str| {
            let raw = format!("{headers}\nSubject: x\n\nbody\n");
            is_marked(&parse(raw.as_bytes()))
        };
        for h in [
            "From: ann@example.org\nAuto-Submitted: auto-replied",
            "From: ann@example.org\nPrecedence: bulk",
            "From: ann@example.org\nList-Id: <l.example.org>",
            "From: ann@example.org\nReturn-Path: <>",
            "From: postmaster@example.org",
            "From: ann@example.org\nSender: Mailer-Daemon@mx.example.org",
            // A weaker sign first does not hide a marked one after it.
            "From: ann@example.org\nX-Autoreply: yes\nList-Id: <l.example.org>",
            "From: noreply@example.org\nPrecedence: list",
        ] {
            assert!(marked(h), "{h:?} is marked");
        }
        for h in [
            "From: ann@example.org",
            "From: ann@example.org\nAuto-Submitted: no",
            "From: ann@example.org\nAuto-Submitted:",
            "From: ann@example.org\nX-Autoreply: yes",
            "From: ann@example.org\nPrecedence: auto_reply",
            "From: bounces+1-ann=example.org@em.example",
            "From: ann@example.org\nX-Failed-Recipients: a@b.c",
            "From: ann@example.org\nList-Unsubscribe: <mailto:u@x.example>",
            "From: no-reply@vendor.example",
        ] {
            assert!(!marked(h), "{h:?} is only likely");
        }
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
