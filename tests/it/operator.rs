//! The command line as an operator uses it, on SQLite and PostgreSQL:
//! `stats` as a summary, times in `--json` as RFC 3339, unknown filter
//! values refused with the valid ones, files that are not mail quarantined,
//! a progress line on a terminal only, and no PostgreSQL notices at INFO.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{PgDb, ShippedDesk, message};

const SUPPORT: &str = "isda-support@example.edu";

/// An RFC 3339 time string, as jiff reads it.
fn is_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.ends_with('Z') && s.parse::<jiff::Timestamp>().is_ok())
}

fn run_all(desk: &ShippedDesk, postgres: bool) {
    // Three tickets in one mailbox, one in another, one file that is no mail.
    let s = desk.ingest(
        "isda-support",
        &[
            message(
                "o1@example.org",
                "ann@example.org",
                SUPPORT,
                "printer jammed",
                "x",
            ),
            message(
                "o2@example.org",
                "bob@example.org",
                SUPPORT,
                "scanner jammed",
                "x",
            ),
            message(
                "o3@example.org",
                "cy@example.org",
                SUPPORT,
                "fax jammed",
                "x",
            ),
            b"Dear support, this is a note I saved as a file.\nIt has no headers.\n".to_vec(),
        ],
    );
    assert_eq!(
        (s["new_tickets"].as_u64(), s["quarantined"].as_u64()),
        (Some(3), Some(1)),
        "{s}"
    );
    std::thread::sleep(Duration::from_millis(5));
    let s = desk.ingest(
        "db-requests",
        &[message(
            "o4@example.org",
            "dee@example.org",
            "db-requests@example.edu",
            "new database please",
            "x",
        )],
    );
    assert_eq!(s["new_tickets"], 1, "{s}");

    // stats: the old totals where they were, and the summary.
    let stats = desk.json(&["stats", "--json"]);
    assert_eq!(stats["tickets"], 4, "{stats:#}");
    assert_eq!(stats["quarantined"], 1, "{stats:#}");
    let queues = stats["queues"].as_array().cloned().unwrap_or_default();
    let total: i64 = queues.iter().filter_map(|q| q["tickets"].as_i64()).sum();
    assert_eq!(total, 4, "{stats:#}");
    assert!(queues.iter().all(|q| q["status"] == "new"), "{stats:#}");
    assert_eq!(stats["oldest_open"]["number"], 1000, "{stats:#}");
    assert!(is_time(&stats["oldest_open"]["created_at"]), "{stats:#}");
    let pending: i64 = stats["outbox"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|o| o["status"] == "pending")
        .filter_map(|o| o["count"].as_i64())
        .sum();
    assert!(
        pending >= 4,
        "acknowledgements wait in the outbox: {stats:#}"
    );
    let mailboxes = stats["mailboxes"].as_array().cloned().unwrap_or_default();
    let m = |name: &str| mailboxes.iter().find(|m| m["mailbox"] == name).cloned();
    assert_eq!(
        m("isda-support").map(|m| m["messages"].clone()),
        Some(3.into())
    );
    assert_eq!(
        m("db-requests").map(|m| m["messages"].clone()),
        Some(1.into())
    );
    assert!(
        mailboxes.iter().all(|m| is_time(&m["last_received_at"])),
        "{stats:#}"
    );
    assert!(
        m("db-requests").map(|m| m["last_received_at"].as_str().unwrap_or("").to_string())
            > m("isda-support").map(|m| m["last_received_at"].as_str().unwrap_or("").to_string()),
        "{stats:#}"
    );
    let text = String::from_utf8_lossy(&desk.run(&["stats"]).stdout).to_string();
    assert!(
        text.starts_with("4 tickets, 4 messages, 0 duplicates recognised, 1 quarantined"),
        "{text}"
    );
    assert!(text.contains("oldest open ticket: #1000 in "), "{text}");
    assert!(
        text.contains("outbox: ") && text.contains(" pending"),
        "{text}"
    );
    assert!(text.contains("last message per mailbox:"), "{text}");

    // Times in --json are RFC 3339 strings, everywhere.
    let list = desk.tickets();
    assert!(
        list.iter()
            .all(|t| is_time(&t["created_at"]) && is_time(&t["updated_at"])),
        "{list:?}"
    );
    let show = desk.ticket(1000);
    assert!(is_time(&show["ticket"]["created_at"]), "{show:#}");
    assert!(show["ticket"]["first_response_at"].is_null());
    let timeline = show["timeline"].as_array().cloned().unwrap_or_default();
    assert!(
        !timeline.is_empty() && timeline.iter().all(|e| is_time(&e["at"])),
        "{show:#}"
    );
    assert!(
        show["messages"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| is_time(&m["received_at"])))
    );
    let outbox = desk.outbox();
    assert!(
        !outbox.is_empty()
            && outbox.iter().all(|o| is_time(&o["created_at"])
                && is_time(&o["next_attempt_at"])
                && o["sent_at"].is_null()),
        "{outbox:?}"
    );
    let quarantine = desk.json(&["quarantine", "list", "--json"]);
    let q = quarantine.as_array().cloned().unwrap_or_default();
    assert_eq!(q.len(), 1, "{quarantine:#}");
    assert!(is_time(&q[0]["created_at"]), "{quarantine:#}");
    assert!(
        q[0]["reason"].as_str().is_some_and(
            |r| r.starts_with("not mail: no header block") && r.contains("Dear support")
        ),
        "{quarantine:#}"
    );

    // Unknown filter values: refused, with the valid ones.
    let out = desk.run(&["tickets", "list", "--status", "closed"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown status \"closed\"; valid: new, open, stalled, resolved"),
        "{err}"
    );
    let out = desk.run(&["tickets", "list", "--queue", "Printers"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown queue \"Printers\"; valid: ") && err.contains("Customer-Support"),
        "{err}"
    );
    let out = desk.run(&[
        "tickets", "list", "--status", "new", "--queue", "Database", "--json",
    ]);
    assert!(out.status.success());
    let db: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(db.as_array().map(Vec::len), Some(1), "{db:#}");
    let out = desk.run(&["outbox", "list", "--status", "queued"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("valid: pending, sent, failed"), "{err}");

    // PostgreSQL's notices (the migrations table "already exists,
    // skipping") stay out of an INFO log; asked for, they are there.
    if postgres {
        let info = desk
            .command(&["tickets", "list"])
            .env("RUST_LOG", "info")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&info.stderr);
        assert!(
            info.status.success() && !err.contains("already exists"),
            "{err}"
        );
        let asked = desk
            .command(&["tickets", "list"])
            .env("RUST_LOG", "info,sqlx=info")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&asked.stderr);
        assert!(err.contains("already exists"), "the notice exists: {err}");
    }
}

#[test]
fn operator_commands_on_sqlite() {
    run_all(&ShippedDesk::new(None), false);
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_commands_on_postgres() {
    let db = PgDb::create("operator").await;
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || run_all(&ShippedDesk::new(Some(&url)), true))
        .await
        .expect("run");
    db.drop_db().await;
}

/// More than a few hundred messages: a progress line on a terminal (a pty
/// from `script`), none off one (stderr keeps only its log lines).
#[test]
fn ingest_shows_progress_on_a_terminal_only() {
    let desk = ShippedDesk::new(None);
    let dir = desk.dir.path().join("many");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 0..300 {
        std::fs::write(
            dir.join(format!("{i:04}.eml")),
            message(
                &format!("p{i}@example.org"),
                "ann@example.org",
                SUPPORT,
                &format!("n{i}"),
                "x",
            ),
        )
        .expect("write");
    }
    let out = desk.run(&["ingest", "--no-notify", dir.to_str().unwrap_or("")]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("messages ingested"), "{err}");
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");

    // The same command line, on a terminal.
    let more = desk.dir.path().join("more");
    std::fs::create_dir_all(&more).expect("mkdir");
    for i in 0..300 {
        std::fs::write(
            more.join(format!("{i:04}.eml")),
            message(
                &format!("q{i}@example.org"),
                "ann@example.org",
                SUPPORT,
                &format!("m{i}"),
                "x",
            ),
        )
        .expect("write");
    }
    let cmd = desk.command(&["ingest", "--no-notify", more.to_str().unwrap_or("")]);
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(desk.dir.path())
        .env("TRIAGED_DATABASE_URL", &desk.url)
        .output()
        .expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("messages ingested"), "{text}");
    assert!(text.contains("300 new tickets"), "{text}");
}
