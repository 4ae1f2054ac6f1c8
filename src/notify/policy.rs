//! Who must never get an automatic reply: loop and noise protection (RFC 3834
//! and what mail in the wild does). Pure.

use crate::parse::ParsedMessage;

/// Why a message gets no automatic reply, or `None` when it may get one.
/// `own` holds the desk's own addresses, lower-case.
pub fn no_reply_reason(msg: &ParsedMessage, own: &[String]) -> Option<String> {
    let Some(sender) = msg.requester() else {
        return Some("no sender address".to_string());
    };
    let address = sender.address.to_ascii_lowercase();
    let local = address.split('@').next().unwrap_or("");
    if own.iter().any(|o| o == &address) {
        return Some(format!(
            "sender {address} is one of the desk's own addresses"
        ));
    }
    if let Some(v) = &msg.auto.auto_submitted {
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
    if msg.auto.return_path.as_deref() == Some("") {
        return Some("bounce: null Return-Path <>".to_string());
    }
    if local == "mailer-daemon" || local == "postmaster" {
        return Some(format!("bounce: sent by {address}"));
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
    if let Some(list) = &msg.auto.list_id {
        return Some(format!("mailing list: List-Id {list}"));
    }
    if let Some(p) = &msg.auto.precedence {
        let p = p.trim().to_ascii_lowercase();
        if p == "bulk" || p == "junk" || p == "list" {
            return Some(format!("Precedence: {p}"));
        }
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
    let compact: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if compact == "noreply" || compact == "donotreply" {
        return Some(format!("sender {address} takes no replies"));
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
        check("Subject: nobody", Some("no sender"));
    }
}
