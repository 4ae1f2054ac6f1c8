//! Threading under hostile input, and the file sources' limits, through the
//! real binary: case tags resolve within their own desk, a References header of
//! any length costs a bounded amount, mbox and stdin are held to the size limit,
//! and a symlink loop reads each file once.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::harness::{message, run_in};

fn summary(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "status {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary: {}", String::from_utf8_lossy(&out.stdout)))
}

fn ingest(dir: &Path, mailbox: &str, file: &str) -> Value {
    summary(&run_in(
        dir,
        &["ingest", "--json", "--mailbox", mailbox, file],
        None,
    ))
}

fn counts(s: &Value) -> (u64, u64) {
    (
        s["new_tickets"].as_u64().unwrap_or(99),
        s["replies"].as_u64().unwrap_or(99),
    )
}

fn show(dir: &Path, number: i64) -> Value {
    let out = run_in(
        dir,
        &["tickets", "show", &number.to_string(), "--json"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// `[DB #1000]` names the database desk's ticket 1000, which does not exist:
/// it never reaches the ISDA desk's ticket 1000, whatever mailbox it arrives in.
#[test]
fn case_tag_resolves_only_within_its_desk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let first = message(
        "t1@c.example",
        "ann@c.example",
        "isda-support@example.edu",
        "Portal login broken",
        "It fails.",
    );
    std::fs::write(d.join("first.eml"), first).expect("write");
    assert_eq!(counts(&ingest(d, "isda-support", "first.eml")), (1, 0));
    assert_eq!(show(d, 1000)["tag"], "[ISDA #1000]");

    // Another desk's tag with the same number, to that desk's mailbox and to ISDA's.
    for (i, mailbox) in ["db-requests", "isda-support"].iter().enumerate() {
        let other = message(
            &format!("t2-{i}@c.example"),
            "ann@c.example",
            "db-requests@example.edu",
            "Re: [DB #1000] Portal login broken",
            "Wrong desk.",
        );
        let name = format!("other{i}.eml");
        std::fs::write(d.join(&name), other).expect("write");
        let s = ingest(d, mailbox, &name);
        assert_eq!(counts(&s), (1, 0), "a new ticket, not a reply: {s}");
    }
    assert_eq!(show(d, 1000)["messages"].as_array().map(Vec::len), Some(1));

    // The right desk's tag, in any case and spacing, attaches.
    let reply = message(
        "t3@c.example",
        "ann@c.example",
        "isda-support@example.edu",
        "AW: [ isda # 1000 ] Portal login broken",
        "Still broken.",
    );
    std::fs::write(d.join("reply.eml"), reply).expect("write");
    assert_eq!(counts(&ingest(d, "db-requests", "reply.eml")), (0, 1));
    assert_eq!(show(d, 1000)["messages"].as_array().map(Vec::len), Some(2));
}

/// A reply whose References hold 200,000 Message-IDs (the thread's real one
/// among the newest) is threaded, in well under a second of store work.
/// (Timing is not asserted here; the closing note records it.)
#[test]
fn huge_references_thread_by_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let first = message(
        "root@c.example",
        "bob@c.example",
        "isda-support@example.edu",
        "VPN drops",
        "Every hour.",
    );
    std::fs::write(d.join("first.eml"), first).expect("write");
    assert_eq!(counts(&ingest(d, "isda-support", "first.eml")), (1, 0));

    let mut refs: Vec<String> = (0..200_000)
        .map(|i| format!("<junk{i}@x.example>"))
        .collect();
    refs.push("<root@c.example>".to_string());
    for i in 0..10 {
        refs.push(format!("<later{i}@x.example>"));
    }
    let reply = format!(
        "From: bob@c.example\r\nTo: isda-support@example.edu\r\nSubject: more\r\nMessage-ID: <r@c.example>\r\nReferences: {}\r\n\r\nstill\r\n",
        refs.join("\r\n ")
    );
    std::fs::write(d.join("reply.eml"), reply).expect("write");
    assert_eq!(counts(&ingest(d, "isda-support", "reply.eml")), (0, 1));

    // Only the oldest References name the thread: beyond the bound, a new ticket.
    let mut old: Vec<String> = vec!["<root@c.example>".to_string()];
    old.extend((0..100).map(|i| format!("<newer{i}@x.example>")));
    let far = format!(
        "From: bob@c.example\r\nSubject: far\r\nMessage-ID: <far@c.example>\r\nReferences: {}\r\n\r\nx\r\n",
        old.join(" ")
    );
    std::fs::write(d.join("far.eml"), far).expect("write");
    assert_eq!(counts(&ingest(d, "isda-support", "far.eml")), (1, 0));
}

/// stdin and mbox messages are held to `ingest.max_message_bytes` like files:
/// an oversized one is quarantined with its headers, the rest still flows.
#[test]
fn stdin_and_mbox_are_held_to_the_size_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("triaged.toml"),
        triaged::config::DEFAULT_CONFIG
            .replace("max_message_bytes = 26214400", "max_message_bytes = 100000"),
    )
    .expect("config");
    let big = message(
        "big@c.example",
        "big@c.example",
        "help@example.edu",
        "Big from stdin",
        &"x".repeat(2_000_000),
    );
    let s = summary(&run_in(d, &["ingest", "--json", "-"], Some(&big)));
    assert_eq!(s["quarantined"], 1, "{s}");

    let mut mbox = Vec::new();
    for (i, body) in ["small", &"y".repeat(3_000_000), "after"]
        .iter()
        .enumerate()
    {
        mbox.extend_from_slice(b"From x@c.example Sat Nov 21 10:00:00 2026\n");
        mbox.extend_from_slice(
            format!(
                "From: p{i}@c.example\nSubject: m{i}\nMessage-ID: <mb{i}@c.example>\n\n{body}\n\n"
            )
            .as_bytes(),
        );
    }
    std::fs::write(d.join("mail.mbox"), &mbox).expect("write");
    let s = summary(&run_in(d, &["ingest", "--json", "mail.mbox"], None));
    assert_eq!(
        (s["new_tickets"].as_u64(), s["quarantined"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    let q = run_in(d, &["quarantine", "list"], None);
    let q = String::from_utf8_lossy(&q.stdout);
    assert!(q.contains("m1") && q.contains("exceeds"), "{q}");
}

/// A folder with a symlink loop and a second link to a file: each message once,
/// no loop error, no repeats.
#[test]
fn symlink_loop_reads_each_file_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mail = d.join("mail");
    std::fs::create_dir_all(mail.join("sub")).expect("mkdir");
    for i in 0..3 {
        let m = message(
            &format!("l{i}@c.example"),
            "loop@c.example",
            "isda-support@example.edu",
            &format!("Loop {i}"),
            "x",
        );
        std::fs::write(mail.join(format!("sub/{i}.eml")), m).expect("write");
    }
    std::os::unix::fs::symlink(&mail, mail.join("sub/back")).expect("symlink");
    std::os::unix::fs::symlink(mail.join("sub/0.eml"), mail.join("again.eml")).expect("symlink");
    let out = run_in(d, &["ingest", "--json", "--verbose", "mail"], None);
    let s = summary(&out);
    assert_eq!(
        (
            s["new_tickets"].as_u64(),
            s["duplicates"].as_u64(),
            s["errors"].as_u64()
        ),
        (Some(3), Some(0), Some(0)),
        "{s}"
    );
}
