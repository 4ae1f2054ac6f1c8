//! Who must never get an automatic reply: loop and noise protection (RFC 3834
//! and what mail in the wild does). Pure. Whether a mail is automated is
//! decided once, in [`crate::automated`]; this adds what concerns replies only.

use crate::parse::{ParsedMessage, split_address};

/// Why a message gets no automatic reply, or `None` when it may get one.
/// `own` holds the desk's own addresses, lower-case.
///
/// Every automated message ([`crate::automated::reason`]: Auto-Submitted,
/// auto-reply markers, bounces, lists and bulk senders, `noreply`-like
/// senders), and besides, what may come from a person but must not be
/// answered: no sender address; the desk's own addresses, with or without a
/// `+suffix`; an `X-Loop` naming us (or saying `yes`); and
/// `X-Auto-Response-Suppress: All/AutoReply/OOF`, the sender's request.
pub fn no_reply_reason(msg: &ParsedMessage, own: &[String]) -> Option<String> {
    let Some(sender) = msg.requester() else {
        return Some("no sender address".to_string());
    };
    let address = sender.address.to_ascii_lowercase();
    let (local, domain) = split_address(&address);
    // The address without its subaddress: isda-support+x@ is isda-support@.
    let base = local.split('+').next().unwrap_or(local);
    let unsuffixed = format!("{base}@{domain}");
    if own.iter().any(|o| o == &address || o == &unsuffixed) {
        return Some(format!(
            "sender {address} is one of the desk's own addresses"
        ));
    }
    if let Some(v) = &msg.auto.x_loop {
        let lower = v.to_ascii_lowercase();
        if own.iter().any(|o| lower.contains(o.as_str()))
            || matches!(lower.trim(), "yes" | "true" | "1")
        {
            return Some(format!("mail loop: X-Loop: {v}"));
        }
    }
    if let Some(reason) = crate::automated::reason(msg) {
        return Some(reason);
    }
    if let Some(v) = &msg.auto.x_auto_response_suppress {
        let v = v.to_ascii_lowercase();
        if v.split(',')
            .map(str::trim)
            .any(|t| t == "all" || t == "autoreply" || t == "oof")
        {
            return Some(format!("X-Auto-Response-Suppress: {v}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn check(headers: &str, want: Option<&str>) {
        let raw = format!("{headers}\nSubject: x\n\nbody\n");
        let got = no_reply_reason(
            &parse(raw.as_bytes()),
            &["isda-support@example.edu".to_string()],
        );
        match (want, &got) {
            (None, None) => {}
            (Some(w), Some(g)) if g.contains(w) => {}
            _ => panic!("{headers:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn who_gets_no_reply() {
        check("From: ann@example.org", None);
        check("From: ann@example.org\nAuto-Submitted: no", None);
        check(
            "From: ann@example.org\nAuto-Submitted: auto-replied",
            Some("Auto-Submitted"),
        );
        check(
            "From: ann@example.org\nAuto-Submitted: auto-generated; owner-email=x",
            Some("Auto-Submitted"),
        );
        check(
            "From: ann@example.org\nReturn-Path: <>",
            Some("null Return-Path"),
        );
        check("From: MAILER-DAEMON@mx.example.org", Some("bounce"));
        check("From: postmaster@example.org", Some("bounce"));
        check(
            "From: ann@example.org\nContent-Type: multipart/report; report-type=delivery-status; boundary=x",
            Some("delivery status"),
        );
        check(
            "From: ann@example.org\nX-Failed-Recipients: a@b.c",
            Some("X-Failed-Recipients"),
        );
        check(
            "From: ann@example.org\nList-Id: <staff.example.org>",
            Some("List-Id"),
        );
        check(
            "From: ann@example.org\nPrecedence: bulk",
            Some("Precedence"),
        );
        check("From: ann@example.org\nPrecedence: first-class", None);
        check(
            "From: ann@example.org\nX-Auto-Response-Suppress: OOF, AutoReply",
            Some("X-Auto-Response-Suppress"),
        );
        check("From: ann@example.org\nX-Auto-Response-Suppress: DR", None);
        check(
            "From: Isda <ISDA-Support@example.edu>",
            Some("own addresses"),
        );
        check("From: no-reply@vendor.example", Some("takes no replies"));
        check(
            "From: noreply-4711@vendor.example",
            Some("takes no replies"),
        );
        check(
            "From: Do_Not_Reply+x@vendor.example",
            Some("takes no replies"),
        );
        check("From: nora@vendor.example", None);
        // What issue #7 found acknowledged.
        check(
            "From: ann@example.org\nPrecedence: auto_reply",
            Some("Precedence"),
        );
        check(
            "From: ann@example.org\nX-Autoreply: yes",
            Some("X-Autoreply"),
        );
        check(
            "From: ann@example.org\nX-Autorespond: Out of office",
            Some("X-Autorespond"),
        );
        check(
            "From: ann@example.org\nX-Autoresponder: 1",
            Some("X-Autoresponder"),
        );
        check("From: ann@example.org\nX-Autoreply: no", None);
        check(
            "From: bounces+123-ab-ann=example.org@em.sendgrid.example",
            Some("bounce"),
        );
        check("From: staff-bounces@lists.example.org", Some("bounce"));
        check(
            "From: staff-bounces+ann=example.org@lists.example.org",
            Some("bounce"),
        );
        check("From: bounce-mc.us1_1.2-ann=x@mcsv.example", Some("bounce"));
        check("From: owner-staff@lists.example.org", Some("list address"));
        check("From: bouncer@example.org", None);
        check("From: MAILER-DAEMON+x@mx.example.org", Some("bounce"));
        check("From: isda-support+foo@example.edu", Some("own addresses"));
        check("From: isda-supporter@example.edu", None);
        check(
            "From: ann@example.org\nX-Loop: isda-support@example.edu",
            Some("X-Loop"),
        );
        check("From: ann@example.org\nX-Loop: yes", Some("X-Loop"));
        check("From: ann@example.org\nX-Loop: other@list.example", None);
        check(
            "From: ann@example.org\nList-Unsubscribe: <mailto:u@x.example>",
            Some("List-Unsubscribe"),
        );
        check(
            "From: ann@example.org\nFeedback-ID: 1:2:campaign:esp",
            Some("Feedback-ID"),
        );
        check(
            "From: ann@example.org\nAuto-Submitted: auto-notified",
            Some("Auto-Submitted"),
        );
        check(
            "From: ann@example.org\nX-Auto-Response-Suppress: All",
            Some("X-Auto-Response-Suppress"),
        );
        check("Subject: nobody", Some("no sender"));
    }
}
