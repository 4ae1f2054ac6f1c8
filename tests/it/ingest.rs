//! `triaged ingest` and friends, run as a user would: the binary, files, stdin.

use std::process::Output;

use serde_json::Value;

use crate::harness::{corpus_dir, message, run_in};

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "status {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn corpus_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(corpus_dir()).expect("corpus folder beside the repository") {
        let dir = dir.expect("entry").path();
        if dir.is_dir() {
            for f in std::fs::read_dir(&dir).expect("dir") {
                let f = f.expect("entry").path();
                if f.extension().is_some_and(|e| e == "eml") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    files
}

/// Every corpus message yields a ticket, a reply, a recognised duplicate or a
/// quarantine entry; nothing errors, nothing panics; a second run adds nothing.
#[test]
fn whole_corpus_is_ingested_and_reingest_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = corpus_files();
    assert!(files.len() > 300, "corpus has {} messages", files.len());
    let mut args: Vec<String> = vec!["ingest".into(), "--json".into(), "--verbose".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_in(dir.path(), &argv, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked at src"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary: {stdout}\n{stderr}"));
    assert!(out.status.success(), "{summary}\n{stderr}");
    assert_eq!(summary["errors"], 0, "{summary}");
    let total: u64 = ["new_tickets", "replies", "duplicates", "quarantined"]
        .iter()
        .map(|k| summary[k].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, files.len() as u64, "{summary}");
    // One verbose line per message, each naming its outcome.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("file ")).collect();
    assert_eq!(lines.len(), files.len());
    assert!(lines.iter().all(|l| l.contains("new ticket")
        || l.contains("reply on")
        || l.contains("duplicate")
        || l.contains("quarantined")));
    // The default database is ./triaged.db.
    assert!(dir.path().join("triaged.db").exists());
    let tickets = json_of(&run_in(dir.path(), &["tickets", "list", "--json"], None));
    assert_eq!(
        tickets.as_array().map(|a| a.len() as u64),
        summary["new_tickets"].as_u64()
    );

    // The second run recognises every message.
    let again = run_in(dir.path(), &argv, None);
    let summary2: Value = String::from_utf8_lossy(&again.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("summary");
    assert_eq!(summary2["new_tickets"], 0, "{summary2}");
    assert_eq!(summary2["replies"], 0, "{summary2}");
    assert_eq!(
        summary2["duplicates"].as_u64(),
        Some(files.len() as u64),
        "{summary2}"
    );
}

#[test]
fn stdin_mbox_and_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = message(
        "s1@x.example",
        "Ann <ann@x.example>",
        "isda-support@example.edu",
        "From stdin",
        "Body from stdin.",
    );
    let out = run_in(dir.path(), &["ingest", "--json", "-"], Some(&one));
    let s = json_of(&out);
    assert_eq!(s["new_tickets"], 1, "{s}");

    // An mbox with three messages, one a reply by case tag, one quoting "From ".
    let mbox = "From ann@x.example Sat Nov 21 10:00:00 2026\n\
                From: ann@x.example\nSubject: Re: [ISDA #1000] From stdin\nMessage-ID: <m1@x.example>\n\nthanks\n>From the log: ok\n\n\
                From bob@x.example Sat Nov 21 10:01:00 2026\n\
                From: bob@x.example\nSubject: Printer on fire\nMessage-ID: <m2@x.example>\n\nhelp\n\n\
                From bob@x.example Sat Nov 21 10:02:00 2026\n\
                From: bob@x.example\nSubject: Printer on fire\nMessage-ID: <m2@x.example>\n\nhelp\n";
    std::fs::write(dir.path().join("mail.mbox"), mbox).expect("write");
    let s = json_of(&run_in(
        dir.path(),
        &["ingest", "--json", "mail.mbox"],
        None,
    ));
    assert_eq!(
        (
            s["new_tickets"].as_u64(),
            s["replies"].as_u64(),
            s["duplicates"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{s}"
    );

    let show = json_of(&run_in(
        dir.path(),
        &["tickets", "show", "[ISDA #1000]", "--json"],
        None,
    ));
    assert_eq!(show["subject"], "From stdin");
    assert_eq!(show["requester_name"], "Ann");
    let bodies: Vec<&str> = show["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[1].contains("From the log: ok"), "{bodies:?}");
    let text = run_in(dir.path(), &["tickets", "show", "1000"], None);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("[ISDA #1000] From stdin") && text.contains("history"),
        "{text}"
    );

    let missing = run_in(dir.path(), &["tickets", "show", "999999"], None);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn oversized_file_is_quarantined_with_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("triaged.toml"),
        triaged::config::DEFAULT_CONFIG
            .replace("max_message_bytes = 26214400", "max_message_bytes = 1000"),
    )
    .expect("config");
    let big = message(
        "big@x.example",
        "a@x.example",
        "help@example.edu",
        "Big one",
        &"x".repeat(5000),
    );
    std::fs::write(dir.path().join("big.eml"), &big).expect("write");
    let s = json_of(&run_in(
        dir.path(),
        &["ingest", "--json", "--mailbox", "help", "big.eml"],
        None,
    ));
    assert_eq!(s["quarantined"], 1, "{s}");
    let q = json_of(&run_in(dir.path(), &["quarantine", "list", "--json"], None));
    assert_eq!(q[0]["subject"], "Big one", "{q}");
    assert_eq!(q[0]["mailbox"], "help");
    assert!(
        q[0]["reason"].as_str().unwrap_or("").contains("exceeds"),
        "{q}"
    );
    let shown = run_in(dir.path(), &["quarantine", "show", "1"], None);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("Message-ID: <big@x.example>"));
    // Seen again: recognised, not quarantined twice.
    let s = json_of(&run_in(
        dir.path(),
        &["ingest", "--json", "--mailbox", "help", "big.eml"],
        None,
    ));
    assert_eq!(s["duplicates"], 1, "{s}");
}

#[test]
fn unreadable_input_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["ingest", "does-not-exist.eml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does-not-exist.eml: error"));
    let out = run_in(dir.path(), &["ingest", "--mailbox", "nope", "x.eml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mailbox"));
}

#[test]
fn check_reports_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = triaged::config::DEFAULT_CONFIG.replace(
        "default_queue = \"Database\"",
        "default_queue = \"Databse\"",
    );
    std::fs::write(dir.path().join("triaged.toml"), &bad).expect("write");
    let out = run_in(dir.path(), &["check"], None);
    assert_eq!(out.status.code(), Some(1));
    let line = bad
        .lines()
        .position(|l| l.contains("Databse"))
        .expect("line")
        + 1;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "triaged.toml:{line}: mailbox \"db-requests\": unknown queue \"Databse\""
        )),
        "{stdout}"
    );
    // The shipped defaults are valid apart from passwords not set here.
    let ok = tempfile::tempdir().expect("tempdir");
    let out = run_in(ok.path(), &["check"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .all(|l| l.contains("TRIAGED_") || l.contains("password")),
        "{stdout}"
    );
}
