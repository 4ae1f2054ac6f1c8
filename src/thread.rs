//! Thread: which existing ticket a message may belong to.
//!
//! Pure. It reads the case tag in the subject (`[ISDA #1042]`) and the
//! Message-IDs the message refers to; the store resolves these keys against what
//! it holds, inside the same transaction that records the message.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;

use crate::parse::ParsedMessage;

/// At most this many Message-IDs of a message's In-Reply-To are used.
pub const MAX_IN_REPLY_TO: usize = 8;
/// At most this many of a message's References (the newest) are used. A thread
/// is recognised by its latest messages; a hostile References header of a
/// million entries must cost no more than this.
pub const MAX_REFERENCES: usize = 50;
/// At most this many case tags of one subject are used.
pub const MAX_TAGS: usize = 8;

/// A case tag found in a subject: the desk tag as configured, and the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub desk_tag: String,
    pub number: i64,
}

/// What a message says about its thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadKeys {
    /// Case tags of our desks, in subject order. A tag names a ticket only
    /// within its own desk: `[DB #1000]` never reaches an ISDA ticket 1000.
    pub tagged: Vec<Tag>,
    /// Message-IDs referred to, most specific first: In-Reply-To, then
    /// References from the newest to the oldest; without repeats, bounded by
    /// [`MAX_IN_REPLY_TO`] and [`MAX_REFERENCES`].
    pub referenced: Vec<String>,
}

impl ThreadKeys {
    /// Whether a tag of this desk names this ticket.
    pub fn tags(&self, desk_tag: &str, number: i64) -> bool {
        self.tagged
            .iter()
            .any(|t| t.number == number && t.desk_tag.eq_ignore_ascii_case(desk_tag))
    }
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
        .map(|s| desk_tags_in(s, desk_tags))
        .unwrap_or_default();
    let candidates = msg
        .in_reply_to
        .iter()
        .take(MAX_IN_REPLY_TO)
        .chain(msg.references.iter().rev().take(MAX_REFERENCES));
    let mut seen: HashSet<&str> = HashSet::new();
    let mut referenced: Vec<String> = Vec::new();
    for id in candidates {
        if !id.is_empty() && seen.insert(id.as_str()) {
            referenced.push(id.clone());
        }
    }
    ThreadKeys { tagged, referenced }
}

/// The case tags of the given desks found in a subject, in order, without repeats.
pub fn desk_tags_in(subject: &str, desk_tags: &[String]) -> Vec<Tag> {
    let mut out: Vec<Tag> = Vec::new();
    for c in tag_regex().captures_iter(subject) {
        let Some(desk_tag) = desk_tags.iter().find(|t| t.eq_ignore_ascii_case(&c[1])) else {
            continue;
        };
        let Ok(number) = c[2].parse::<i64>() else {
            continue;
        };
        let tag = Tag {
            desk_tag: desk_tag.clone(),
            number,
        };
        if !out.contains(&tag) {
            out.push(tag);
        }
        if out.len() >= MAX_TAGS {
            break;
        }
    }
    out
}

/// Ticket numbers in case tags of the given desks found in a subject.
pub fn tags_in(subject: &str, desk_tags: &[String]) -> Vec<i64> {
    desk_tags_in(subject, desk_tags)
        .into_iter()
        .map(|t| t.number)
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
        assert!(k.tags("ISDA", 3) && k.tags("isda", 3));
        assert!(
            !k.tags("DB", 3),
            "a tag names a ticket only within its desk"
        );
        assert_eq!(k.referenced, vec!["c@x", "b@x", "a@x"]);
    }

    #[test]
    fn tags_keep_their_desk() {
        let t = desk_tags_in("Re: [db #1000] and [ISDA #7] [DB #1000]", &tags());
        assert_eq!(
            t,
            vec![
                Tag {
                    desk_tag: "DB".to_string(),
                    number: 1000
                },
                Tag {
                    desk_tag: "ISDA".to_string(),
                    number: 7
                },
            ]
        );
    }

    #[test]
    fn hostile_references_are_bounded() {
        let refs: Vec<String> = (0..200_000).map(|i| format!("<r{i}@x>")).collect();
        let raw = format!(
            "From: a@b.c\nSubject: x\nIn-Reply-To: <r199999@x>\nReferences: {}\n\nhi\n",
            refs.join(" ")
        );
        let p = parse(raw.as_bytes());
        let k = keys(&p, &tags());
        assert_eq!(
            k.referenced.len(),
            MAX_REFERENCES,
            "the newest 50, repeats removed"
        );
        assert_eq!(k.referenced[0], "r199999@x");
        assert_eq!(k.referenced[1], "r199998@x");
        assert_eq!(k.referenced[MAX_REFERENCES - 1], "r199950@x");
        let many_tags = format!("Subject: {}", "[ISDA #1] ".repeat(10_000));
        assert_eq!(desk_tags_in(&many_tags, &tags()).len(), 1);
    }

    #[test]
    fn format() {
        assert_eq!(format_tag("ISDA", 1042), "[ISDA #1042]");
        assert_eq!(tags_in(&format_tag("ISDA", 1042), &tags()), vec![1042]);
    }
}
