//! Thread: which existing ticket a message may belong to.
//!
//! Pure. It reads the case tag in the subject (`[ISDA #1042]`) and the
//! Message-IDs the message refers to; the store resolves these keys against what
//! it holds, inside the same transaction that records the message.

use std::sync::OnceLock;

use regex::Regex;

use crate::parse::ParsedMessage;

/// What a message says about its thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadKeys {
    /// Ticket numbers named by a case tag of one of our desks, in subject order.
    pub tagged: Vec<i64>,
    /// Message-IDs referred to, most specific first: In-Reply-To, then
    /// References from the newest to the oldest.
    pub referenced: Vec<String>,
}

fn tag_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // `[ISDA #1042]`, `[isda#1042]`, `[ ISDA  # 1042 ]`.
        Regex::new(r"\[\s*([A-Za-z][A-Za-z0-9_.-]*)\s*#\s*(\d{1,18})\s*\]")
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    })
}

/// The thread keys of a message, given the desk tags this deployment owns.
pub fn keys(msg: &ParsedMessage, desk_tags: &[String]) -> ThreadKeys {
    let tagged = msg
        .subject
        .as_deref()
        .map(|s| tags_in(s, desk_tags))
        .unwrap_or_default();
    let mut referenced: Vec<String> = Vec::new();
    for id in msg.in_reply_to.iter().chain(msg.references.iter().rev()) {
        if !referenced.contains(id) {
            referenced.push(id.clone());
        }
    }
    ThreadKeys { tagged, referenced }
}

/// Ticket numbers in case tags of the given desks found in a subject.
pub fn tags_in(subject: &str, desk_tags: &[String]) -> Vec<i64> {
    tag_regex()
        .captures_iter(subject)
        .filter(|c| desk_tags.iter().any(|t| t.eq_ignore_ascii_case(&c[1])))
        .filter_map(|c| c[2].parse().ok())
        .collect()
}

/// The case tag as shown in subjects: `[ISDA #1042]`.
pub fn format_tag(desk_tag: &str, number: i64) -> String {
    format!("[{desk_tag} #{number}]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn tags() -> Vec<String> {
        vec!["ISDA".to_string(), "DB".to_string()]
    }

    #[test]
    fn tag_forms() {
        let check = |s: &str, want: &[i64]| assert_eq!(tags_in(s, &tags()), want, "{s}");
        check("Re: [ISDA #1042] Portal down", &[1042]);
        check("RE: [isda#7] x", &[7]);
        check("[ DB # 12 ] y", &[12]);
        check("[OTHER #5] not ours", &[]);
        check("[ISDA #] nothing", &[]);
        check("ISDA #5 without brackets", &[]);
        check("Fwd: [ISDA #1] and [DB #2]", &[1, 2]);
        check("[ISDA #99999999999999999999] overflow", &[]);
    }

    #[test]
    fn references_order() {
        let p = parse(
            b"From: a@b.c\nSubject: Re: [ISDA #3] x\nIn-Reply-To: <c@x>\nReferences: <a@x> <b@x> <c@x>\n\nhi\n",
        );
        let k = keys(&p, &tags());
        assert_eq!(k.tagged, vec![3]);
        assert_eq!(k.referenced, vec!["c@x", "b@x", "a@x"]);
    }

    #[test]
    fn format() {
        assert_eq!(format_tag("ISDA", 1042), "[ISDA #1042]");
        assert_eq!(tags_in(&format_tag("ISDA", 1042), &tags()), vec![1042]);
    }
}
