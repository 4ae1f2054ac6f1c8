//! A ticket's history (issue 9): `tickets show` prints one timeline of its
//! events and its mail, each with its actor, in time order; `--json` gives
//! the same as `{ticket, timeline: [{at, actor, kind, details}]}` beside the
//! fields earlier versions printed. What comes from mail prints escaped and
//! bounded. The real binary ingests with the built-in example deployment
//! (whose isda desk's team holds jlee@example.edu).

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::harness::{message, run_in};

const SUPPORT: &str = "isda-support@example.edu";
const CUSTOMER: &str = "ann@customer.example";
const INTEGRATOR: &str = "jlee@example.edu";

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "status {}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn ingest(dir: &Path, files: &[(&str, Vec<u8>)]) -> String {
    for (name, raw) in files {
        std::fs::write(dir.join(name), raw).expect("write message");
    }
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(|(n, _)| *n));
    ok(run_in(dir, &args, None))
}

fn reply(id: &str, from: &str, subject: &str, body: &str, refs: &str) -> Vec<u8> {
    let mut m = message(id, from, SUPPORT, subject, body);
    m.splice(
        0..0,
        format!("In-Reply-To: {refs}\r\nReferences: {refs}\r\n").bytes(),
    );
    m
}

fn show(dir: &Path, number: i64) -> String {
    ok(run_in(dir, &["tickets", "show", &number.to_string()], None))
}

fn show_json(dir: &Path, number: i64) -> Value {
    let out = ok(run_in(
        dir,
        &["tickets", "show", &number.to_string(), "--json"],
        None,
    ));
    serde_json::from_str(&out).expect("valid JSON")
}

/// The timeline part of `tickets show`.
fn timeline(text: &str) -> &str {
    let at = text.find("--- history (UTC) ---").expect("a timeline");
    &text[at..]
}

/// The line of the timeline containing all of `parts`, and its index.
fn line_of(text: &str, parts: &[&str]) -> (usize, String) {
    timeline(text)
        .lines()
        .enumerate()
        .find(|(_, l)| parts.iter().all(|p| l.contains(p)))
        .map(|(i, l)| (i, l.to_string()))
        .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{text}"))
}

#[test]
fn a_conversation_reads_as_one_timeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let first = message(
        "a1@customer.example",
        &format!("Ann Lee <{CUSTOMER}>"),
        SUPPORT,
        "Map broken",
        "The map is broken.",
    );
    let out = ingest(d, &[("1.eml", first.clone())]);
    assert!(out.contains("1 new tickets"), "{out}");
    // The customer adds to it by reference, the same mail arrives again, and
    // an integrator of the desk's team answers.
    let out = ingest(
        d,
        &[
            (
                "2.eml",
                reply(
                    "a2@customer.example",
                    CUSTOMER,
                    "Re: Map broken",
                    "More details.",
                    "<a1@customer.example>",
                ),
            ),
            ("1-again.eml", first),
            ("3.eml", {
                // The shipped configuration trusts mx.example.edu.
                let mut m = reply(
                    "j1@example.edu",
                    &format!("J Lee <{INTEGRATOR}>"),
                    "Re: [ISDA #1000] Map broken",
                    "We are on it.",
                    "<a2@customer.example>",
                );
                m.splice(
                    0..0,
                    b"Authentication-Results: mx.example.edu; dkim=pass header.d=example.edu\r\n"
                        .iter()
                        .copied(),
                );
                m
            }),
        ],
    );
    assert!(out.contains("2 replies, 1 duplicates"), "{out}");

    let text = show(d, 1000);
    assert!(text.contains("  owner:     (nobody)"), "{text}");
    assert!(text.contains("  responded: 20"), "{text}");
    // The delay, in wall-clock and in the desk's business hours, and
    // against the due time.
    assert!(text.contains(" after arrival, "), "{text}");
    assert!(text.contains(" of business hours, in time)"), "{text}");
    assert!(
        !text.contains("--- history ---") && !text.contains("--- mail ---"),
        "{text}"
    );
    let (created, line) = line_of(
        &text,
        &[CUSTOMER, "ticket created  (queue Customer-Support"],
    );
    assert!(line.contains("file 1.eml"), "{line}");
    let (why, line) = line_of(&text, &["why: new ticket: no key names a ticket"]);
    assert_eq!(why, created + 1, "{text}");
    assert!(line.starts_with("    "), "{line}");
    let (ack, _) = line_of(
        &text,
        &[
            "triaged",
            "mail queued: acknowledgement to ann@customer.example",
        ],
    );
    let (reply_line, _) = line_of(
        &text,
        &[
            CUSTOMER,
            "message added  (reply, joined by reference <a1@customer.example>: ticket #1000)",
        ],
    );
    let (dup, _) = line_of(
        &text,
        &[
            "triaged",
            "duplicate delivery, not recorded again",
            "file 1-again.eml",
        ],
    );
    let (answer, _) = line_of(
        &text,
        &[
            INTEGRATOR,
            "message added  (reply, joined by reference <a2@customer.example>",
        ],
    );
    let (initial, _) = line_of(
        &text,
        &[INTEGRATOR, "initial response  (message <j1@example.edu>)"],
    );
    let (status, _) = line_of(&text, &[INTEGRATOR, "status new -> open"]);
    let (status_why, _) = line_of(&text, &["    why: first correspondence from the team"]);
    let (relayed, _) = line_of(
        &text,
        &[
            "triaged",
            "mail queued: correspondence to ann@customer.example",
        ],
    );
    assert!(
        created < ack
            && ack < reply_line
            && reply_line < dup
            && dup < answer
            && answer < initial
            && initial < status
            && status + 1 == status_why
            && status < relayed,
        "out of order:\n{text}"
    );
    // Each entry's first line starts with its time.
    for l in timeline(&text).lines().skip(1) {
        assert!(
            l.starts_with("    ")
                || (l.len() > 21 && l.as_bytes()[4] == b'-' && &l[19..21] == "  "),
            "{l:?}"
        );
    }

    let json = show_json(d, 1000);
    // The fields earlier versions printed are still there.
    for key in [
        "number",
        "tag",
        "status",
        "requester",
        "first_response_at",
        "owner",
        "messages",
        "events",
        "mail",
        "links",
        "recipients",
    ] {
        assert!(json.get(key).is_some(), "{key} missing: {json:#}");
    }
    assert_eq!(json["ticket"]["number"], 1000, "{json:#}");
    assert_eq!(json["ticket"]["status"], "open", "{json:#}");
    assert_eq!(json["ticket"]["tag"], "[ISDA #1000]", "{json:#}");
    let entries = json["timeline"].as_array().expect("timeline");
    let mut last = String::new();
    for e in entries {
        // RFC 3339 UTC with milliseconds: in time order as text too.
        let at = e["at"].as_str().expect("at").to_string();
        assert!(
            at.len() == "2026-11-24T01:30:22.123Z".len() && at.ends_with('Z'),
            "{at}"
        );
        assert!(at >= last, "not in time order: {json:#}");
        last = at;
        assert!(e["actor"].as_str().is_some_and(|a| !a.is_empty()), "{e}");
        assert!(e["kind"].is_string() && e.get("details").is_some(), "{e}");
    }
    let of = |kind: &str| -> Vec<&Value> { entries.iter().filter(|e| e["kind"] == kind).collect() };
    assert_eq!(of("created").len(), 1);
    assert_eq!(of("created")[0]["actor"], CUSTOMER);
    let replies = of("reply");
    assert_eq!(
        replies
            .iter()
            .map(|e| e["actor"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        [CUSTOMER, INTEGRATOR]
    );
    assert_eq!(of("duplicate")[0]["actor"], "triaged");
    assert_eq!(of("status")[0]["details"]["to"], "open");
    assert_eq!(of("initial response")[0]["actor"], INTEGRATOR);
    let queued = of("mail queued");
    assert_eq!(
        queued.len(),
        json["mail"].as_array().map(Vec::len).unwrap_or(0)
    );
    assert!(
        queued.iter().any(
            |e| e["details"]["kind"] == "correspondence" && e["details"]["rcpt"][0] == CUSTOMER
        ),
        "{json:#}"
    );
    assert_eq!(
        entries.len(),
        json["events"].as_array().map(Vec::len).unwrap_or(0) + queued.len()
    );
}

#[test]
fn hostile_values_print_escaped_and_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let subject = format!("\x1b[31mred\x07 {}", "s".repeat(1024 * 1024));
    let first = message("h1@customer.example", CUSTOMER, SUPPORT, &subject, "hi");
    // A file name is the origin in the events' details.
    let name = "evil\x1b]0;owned\x07.eml";
    let out = ingest(d, &[(name, first)]);
    assert!(out.contains("1 new tickets"), "{out}");
    let out = ingest(
        d,
        &[(
            "r\x1b[2J.eml",
            reply(
                "h2@customer.example",
                CUSTOMER,
                "Re: x",
                "more",
                "<h1@customer.example>",
            ),
        )],
    );
    assert!(out.contains("1 replies"), "{out}");
    let text = show(d, 1000);
    for bad in ['\x1b', '\x07', '\u{9b}'] {
        assert!(!text.contains(bad), "prints {bad:?} raw");
    }
    for line in text.lines() {
        assert!(
            line.chars().count() <= 1100,
            "a line of {} characters: {:.120}",
            line.len(),
            line
        );
    }
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    assert!(
        text.contains("[ISDA #1000] \\x1b[31mred\\x07 sss"),
        "{:.400}",
        text
    );
    line_of(
        &text,
        &["ticket created", "file evil\\x1b]0;owned\\x07.eml"],
    );
    line_of(&text, &["via isda-support, file r\\x1b[2J.eml"]);
    let raw = ok(run_in(d, &["tickets", "show", "1000", "--json"], None));
    for bad in ['\x1b', '\x07'] {
        assert!(!raw.contains(bad), "JSON carries {bad:?} raw");
    }
    let json: Value = serde_json::from_str(&raw).expect("valid JSON");
    assert_eq!(json["ticket"]["subject"].as_str(), Some(subject.as_str()));
    assert!(
        json["timeline"].as_array().is_some_and(|t| t
            .iter()
            .any(|e| e["details"]["origin"] == format!("file {name}"))),
        "{:.2000}",
        raw
    );
}
