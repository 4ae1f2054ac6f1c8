//! Thread keys of parsed arbitrary messages, and case tags in arbitrary
//! subjects.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use triaged::thread::{MAX_IN_REPLY_TO, MAX_REFERENCES, desk_tags_in, format_tag, keys, tags_in};

fuzz_target!(
    init: triaged_fuzz::contain_parser_panics(),
    |data: &[u8]| {
        let tags = triaged_fuzz::default_config().desk_tags();
        let p = triaged::parse::parse(data);
        let k = keys(&p, &tags);

        // Every id referred to appears once, In-Reply-To first.
        let mut seen = HashSet::new();
        for id in &k.referenced {
            assert!(seen.insert(id.as_str()), "{id:?} listed twice");
        }
        let all: HashSet<&str> = p
            .in_reply_to
            .iter()
            .chain(&p.references)
            .map(String::as_str)
            .collect();
        assert!(seen.is_subset(&all), "an id the message does not name");
        assert!(seen.len() <= MAX_IN_REPLY_TO + MAX_REFERENCES, "unbounded keys");
        if p.in_reply_to.len() <= MAX_IN_REPLY_TO && p.references.len() <= MAX_REFERENCES {
            assert_eq!(seen, all, "referenced ids differ from the message's");
        }
        if let Some(first) = p.in_reply_to.first() {
            assert_eq!(k.referenced.first(), Some(first), "In-Reply-To is not first");
        }
        match &p.subject {
            Some(s) => assert_eq!(k.tagged, desk_tags_in(s, &tags)),
            None => assert!(k.tagged.is_empty()),
        }

        // The whole input as a subject: every tag found formats back to itself.
        let subject = String::from_utf8_lossy(data);
        for n in tags_in(&subject, &tags) {
            assert!(n >= 0, "negative ticket number {n}");
            for t in &tags {
                assert_eq!(tags_in(&format_tag(t, n), &tags), vec![n]);
            }
        }
    }
);
