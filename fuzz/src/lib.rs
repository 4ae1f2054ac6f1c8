//! Shared set-up of the fuzz targets: the panic hook, the default deployment,
//! and checks on what the pure stages return.

use std::sync::OnceLock;

use triaged::classify::{Classifier, Decision, load_rules_from};
use triaged::config::{Config, DEFAULT_CONFIG, Problems};
use triaged::parse::ParsedMessage;

/// libfuzzer-sys aborts on every panic, even one that `triaged::parse`
/// contains by design (mail-parser panics on some malformed input and the
/// parser falls back to the headers). Panics inside the contained parser
/// unwind to that `catch_unwind` as in production; every other panic is a
/// crash. Call from the target's `init`.
pub fn contain_parser_panics() {
    let fuzzer_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !triaged::parse::in_contained_parser() {
            fuzzer_hook(info);
        }
    }));
}

/// The built-in configuration (`deploy/triaged.example.toml`), as the daemon
/// runs it without a config file.
pub fn default_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| match Config::parse(DEFAULT_CONFIG, "default") {
        Ok(c) => c,
        Err(p) => panic!("the built-in configuration is invalid:\n{p}"),
    })
}

/// The shipped routing rules (`routing-rules/`, compiled into the binary),
/// checked against `config`.
pub fn shipped_classifier(config: &Config) -> Result<Classifier, Problems> {
    // A folder that does not exist selects the built-in copy of routing-rules/
    // (no file is read).
    load_rules_from(
        std::path::Path::new("/nonexistent/triaged-fuzz/routing-rules"),
        config,
    )
    .map(Classifier::new)
}

/// The classifier of the default deployment.
pub fn default_classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| match shipped_classifier(default_config()) {
        Ok(c) => c,
        Err(p) => panic!("the shipped rules are invalid:\n{p}"),
    })
}

/// 2026-03-29 00:30 UTC: a Sunday, an hour before Europe's change to summer time.
pub const ARRIVAL_MS: i64 = 1_774_744_200_000;

/// What every parse result must satisfy.
pub fn check_parsed(p: &ParsedMessage, raw: &[u8]) {
    assert_eq!(p.size, raw.len() as u64, "size is not the input's length");
    assert_eq!(
        p.sha256,
        triaged::parse::sha256_hex(raw),
        "sha256 is not the input's hash"
    );
    if let Some(id) = &p.message_id {
        assert!(!id.is_empty(), "an empty Message-ID is kept");
    }
    if p.problems.is_empty() {
        assert!(
            p.from.is_some() && p.message_id.is_some() && p.date.is_some(),
            "a message without From, Message-ID or Date reports no problem"
        );
    }
    for a in p.from.iter().chain(&p.to).chain(&p.cc).chain(&p.reply_to) {
        assert!(!a.address.trim().is_empty(), "an empty address is kept");
    }
    for id in p.in_reply_to.iter().chain(&p.references) {
        assert!(!id.is_empty(), "an empty referenced id is kept");
    }
    if let Some(s) = &p.subject {
        assert!(!s.is_empty(), "an empty subject is kept as Some");
    }
}

/// What every routing decision must satisfy under `config`.
pub fn check_decision(d: &Decision, config: &Config, arrival_ms: i64) {
    assert!(
        config.queues.iter().any(|q| q.name.get_ref() == &d.queue),
        "routed to queue {:?}, which is not configured",
        d.queue
    );
    assert!(
        config.desks.iter().any(|x| x.name.get_ref() == &d.desk),
        "routed to desk {:?}, which is not configured",
        d.desk
    );
    assert!(!d.desk_tag.is_empty(), "empty desk tag");
    assert!(!d.explanation.is_empty(), "a decision without explanation");
    if let Some(due) = d.due_ms {
        assert!(
            due >= arrival_ms,
            "due {due} before arrival {arrival_ms} (queue {})",
            d.queue
        );
    }
}

/// A few parsed messages to route: a customer's plea, a monitoring alert, a
/// reply with a case tag, an auto-reply, and the examples kept beside the rules.
pub fn sample_messages() -> &'static [ParsedMessage] {
    static MSGS: OnceLock<Vec<ParsedMessage>> = OnceLock::new();
    MSGS.get_or_init(|| {
        let raw: [&[u8]; 4] = [
            b"From: Ana <ana@customer.example>\r\nTo: isda-support@example.edu\r\nSubject: Portal down, urgent\r\nMessage-ID: <s1@customer.example>\r\nDate: Fri, 27 Mar 2026 17:55:00 +0100\r\n\r\nThe production portal is down for all users.\r\n",
            b"From: nagios@monitor.example.edu\r\nTo: db-requests@example.edu\r\nSubject: ** PROBLEM Host Alert: db1 is DOWN **\r\nMessage-ID: <s2@monitor.example.edu>\r\nAuto-Submitted: auto-generated\r\n\r\nHost: db1\r\nState: DOWN\r\n",
            b"From: bob@partner.example\r\nTo: help@example.edu\r\nSubject: Re: [ISDA #1042] deploy failed\r\nIn-Reply-To: <t1@example.edu>\r\nReferences: <t0@example.edu> <t1@example.edu>\r\n\r\nStill failing.\r\n",
            b"From: <>\r\nTo: map-support@example.edu\r\nSubject: Out of office\r\nPrecedence: auto_reply\r\nX-Autoreply: yes\r\n\r\nAway.\r\n",
        ];
        let mut msgs: Vec<ParsedMessage> = raw.iter().map(|r| triaged::parse::parse(r)).collect();
        for (_, text) in EXAMPLE_MESSAGES {
            msgs.push(triaged::parse::parse(text.as_bytes()));
        }
        msgs
    })
}

/// Examples kept beside the shipped rules.
const EXAMPLE_MESSAGES: &[(&str, &str)] = &[(
    "nagios-host-down.eml",
    include_str!("../../routing-rules/tests/messages/nagios-host-down.eml"),
)];

/// What every refusal must satisfy: at least one problem, each naming one of
/// the files given, at a line inside that file's text (0: the file as a whole).
pub fn check_problems(problems: &[triaged::config::Problem], files: &[(&str, &str)]) {
    assert!(!problems.is_empty(), "refused without a problem");
    for p in problems {
        assert!(
            !p.reason.trim().is_empty(),
            "a problem without a reason: {p}"
        );
        let Some((_, text)) = files.iter().find(|(n, _)| *n == p.file) else {
            panic!("a problem names an unknown file: {p}");
        };
        let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
        assert!(
            p.line <= lines,
            "line {} of a {lines}-line file: {p}",
            p.line
        );
    }
}
