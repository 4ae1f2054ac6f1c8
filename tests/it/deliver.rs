//! `triaged deliver` as an MTA runs it (one process per message, the message
//! on stdin) into a spool the running daemon ingests: tickets and their
//! acknowledgements, hostile input, and the exit codes an MTA acts on.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{ShippedDesk, message, wait_for};

/// The shipped deployment with a spool on the `help` mailbox (relative to
/// the config file) and a small size cap.
fn desk() -> ShippedDesk {
    let desk = ShippedDesk::new(None);
    let text = std::fs::read_to_string(&desk.config).expect("config");
    let text = text
        .replace(
            "default_queue = \"Hosted-Help\"\n",
            "default_queue = \"Hosted-Help\"\nspool = \"spool/help\"\n",
        )
        .replace("max_message_bytes = 26214400", "max_message_bytes = 100000");
    assert!(
        text.contains("spool = \"spool/help\""),
        "no help mailbox in the example"
    );
    std::fs::write(&desk.config, text).expect("write config");
    desk
}

fn deliver(desk: &ShippedDesk, mailbox: &str, input: &[u8]) -> Output {
    let mut child = desk
        .command(&["deliver", "--mailbox", mailbox])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deliver");
    if let Some(mut pipe) = child.stdin.take() {
        // Deliver may stop reading past the cap; that is its business.
        let _ = pipe.write_all(input);
    }
    child.wait_with_output().expect("wait deliver")
}

fn spooled(desk: &ShippedDesk, sub: &str) -> usize {
    std::fs::read_dir(desk.dir.path().join("spool/help").join(sub))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => panic!("not an array: {other}"),
    }
}

#[test]
fn delivered_mail_becomes_tickets_through_the_running_daemon() {
    let desk = desk();
    // Spooled before the daemon runs: kept, and taken when it starts.
    let first = message(
        "d1@customer.example",
        "Ann <ann@customer.example>",
        "help@example.edu",
        "Cannot log in",
        "Since this morning.",
    );
    let out = deliver(&desk, "help", &first);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(spooled(&desk, "new"), 1);
    assert_eq!(spooled(&desk, "tmp"), 0);

    let log = desk.dir.path().join("daemon.log");
    let mut daemon = desk
        .command(&["run"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn daemon");
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();

    for i in 2..=4 {
        let raw = message(
            &format!("d{i}@customer.example"),
            &format!("User {i} <u{i}@customer.example>"),
            "help@example.edu",
            &format!("Question {i}"),
            "Please help.",
        );
        let out = deliver(&desk, "help", &raw);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Binary garbage is kept too: it ends up quarantined, never dropped.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let out = deliver(&desk, "help", &garbage);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same message delivered twice (an MTA retrying) is one ticket.
    let out = deliver(&desk, "help", &first);
    assert!(out.status.success());

    let done = wait_for(Duration::from_secs(30), || {
        spooled(&desk, "new") == 0 && desk.tickets().len() == 4
    });
    assert!(
        done,
        "spool not drained: {} left, tickets {:#?}\n{}",
        spooled(&desk, "new"),
        desk.tickets(),
        daemon_log()
    );
    let quarantine = array(desk.json(&["quarantine", "list", "--json"]));
    assert_eq!(quarantine.len(), 1, "{quarantine:#?}");
    assert_eq!(quarantine[0]["mailbox"], "help");
    let stats = desk.json(&["stats", "--json"]);
    assert_eq!(stats["duplicates"], 1, "{stats:#}");
    // Each ticket's acknowledgement is queued with it (no SMTP here: it waits).
    let acks: Vec<Value> = desk
        .outbox()
        .into_iter()
        .filter(|m| m["kind"] == "acknowledgement")
        .collect();
    assert_eq!(acks.len(), 4, "{acks:#?}");
    assert!(
        acks.iter().any(|m| m["rcpt"][0] == "ann@customer.example"),
        "{acks:#?}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let ok = wait_for(Duration::from_secs(30), || {
        matches!(daemon.try_wait(), Ok(Some(_)))
    });
    if !ok {
        let _ = daemon.kill();
    }
    assert!(ok, "daemon did not stop:\n{}", daemon_log());
}

#[test]
fn refused_input_leaves_nothing_and_says_why() {
    let desk = desk();
    // Empty stdin: refused as data (the MTA bounces it with our words).
    let out = deliver(&desk, "help", b"");
    assert_eq!(
        out.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no message"));
    // Over the cap: refused without reading it all into memory.
    let big = message(
        "big@x.example",
        "a@x.example",
        "help@example.edu",
        "Big",
        &"x".repeat(200_000),
    );
    let out = deliver(&desk, "help", &big);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_message_bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(spooled(&desk, "new") + spooled(&desk, "tmp"), 0);
    // A mailbox without a spool, or an unknown one: a temporary failure, so
    // the MTA keeps the message until the configuration is fixed.
    let one = message("m@x.example", "a@x.example", "help@example.edu", "Hi", "x");
    for mailbox in ["isda-support", "nosuch"] {
        let out = deliver(&desk, mailbox, &one);
        assert_eq!(
            out.status.code(),
            Some(75),
            "{mailbox}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A spool that cannot be written: temporary failure too.
    std::fs::remove_dir_all(desk.dir.path().join("spool/help")).expect("rm spool");
    std::fs::write(desk.dir.path().join("spool/help"), b"a file, not a folder").expect("write");
    let out = deliver(&desk, "help", &one);
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot"));
}
