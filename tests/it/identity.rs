//! Identity and secrets, through the real binary: a message that reuses
//! another's Message-ID, database URLs in every output, who gets no automatic
//! reply, and caps on the desk's mail to one sender or one alert.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{PgDb, ShippedDesk as Desk, wait_for};

const SECRET: &str = "S3cretPW";

impl Desk {
    /// The "mail suppressed" events of a ticket: (kind, reason).
    fn suppressed(&self, number: i64) -> Vec<(String, String)> {
        self.ticket(number)["events"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| e["kind"] == "mail suppressed")
                    .map(|e| {
                        (
                            e["detail"]["kind"].as_str().unwrap_or("").to_string(),
                            e["detail"]["reason"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// Secrets in database URLs

#[test]
fn misspelled_scheme_does_not_print_the_password() {
    let url = format!("postgress://u:{SECRET}@127.0.0.1/db");
    let desk = Desk::new(Some(&url));
    for args in [&["stats"][..], &["stats", "--json"], &["tickets", "list"]] {
        let out = desk.run(args);
        let all = text(&out);
        assert!(!out.status.success(), "{args:?}: {all}");
        assert!(
            !all.contains(SECRET),
            "{args:?} printed the password: {all}"
        );
        assert!(all.contains("postgress://u:***@127.0.0.1/db"), "{all}");
    }
    // `check` names the unusable URL, redacted.
    let out = desk.run(&["check"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(!all.contains(SECRET), "check printed the password: {all}");
    assert!(all.contains("store.database_url"), "{all}");
    assert!(all.contains("postgress://u:***@127.0.0.1/db"), "{all}");
}

#[test]
fn password_parameters_are_redacted_in_errors_and_check() {
    for url in [
        format!("postgress://u@127.0.0.1/db?password={SECRET}"),
        format!("mysql://u@127.0.0.1/db?sslmode=x&sslpassword={SECRET}"),
        format!("postgres:u:{SECRET}@127.0.0.1/db"),
        format!("sqlite:///nonexistent-dir/db?mode=bogus&pwd={SECRET}"),
    ] {
        let desk = Desk::new(Some(&url));
        for args in [&["stats"][..], &["check"]] {
            let out = desk.run(args);
            let all = text(&out);
            assert!(!all.contains(SECRET), "{url}: {args:?} leaked: {all}");
        }
    }
}

#[tokio::test]
async fn postgres_connection_failure_does_not_print_the_password() {
    let admin = std::env::var("TRIAGED_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let host = admin
        .split_once('@')
        .map(|(_, h)| h)
        .and_then(|h| h.split_once('/'))
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| "127.0.0.1:5432".to_string());
    // No such role: the server refuses whatever the password (the test
    // server trusts every known role, so a wrong password alone passes).
    for url in [
        format!("postgres://no_such_role_x:{SECRET}@{host}/test"),
        format!("postgres://no_such_role_x@{host}/test?password={SECRET}&sslmode=disable"),
        format!("postgres://postgres:{SECRET}@{host}/no_such_database_x"),
    ] {
        let desk = Desk::new(Some(&url));
        let out = desk.run(&["stats"]);
        let all = text(&out);
        assert!(!out.status.success(), "{url}: {all}");
        assert!(!all.contains(SECRET), "{url}: leaked: {all}");
        assert!(all.contains("***"), "{url}: {all}");
    }
}

#[tokio::test]
async fn run_logs_the_database_redacted() {
    let db = PgDb::create("identity_run").await;
    // The test server trusts the role: any password and a password parameter connect.
    let (base, name) = db.url.rsplit_once('/').expect("db url");
    let url = match base.split_once("://") {
        Some((scheme, rest)) => {
            let rest = match rest.split_once('@') {
                Some((user, host)) => {
                    format!("{}:{SECRET}@{host}", user.split(':').next().unwrap_or(user))
                }
                None => format!("postgres:{SECRET}@{rest}"),
            };
            format!("{scheme}://{rest}/{name}?sslmode=disable&password={SECRET}")
        }
        None => panic!("odd url {base}"),
    };
    let desk = Desk::new(Some(&url));
    // One watched mailbox (on a closed loopback port: it only retries), so
    // that the daemon runs.
    let mut config = std::fs::read_to_string(&desk.config).expect("config");
    config.push_str(
        "\n[mailboxes.imap]\nhost = \"127.0.0.1\"\nport = 1\nsecurity = \"plain\"\nusername = \"help\"\npassword_env = \"TRIAGED_IDENTITY_TEST_PW\"\n",
    );
    std::fs::write(&desk.config, config).expect("config");
    let log = desk.dir.path().join("run.log");
    let mut child = desk
        .command(&["run"])
        .env("RUST_LOG", "debug")
        .env("TRIAGED_IDENTITY_TEST_PW", "x")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(desk.dir.path().join("run.out")).expect("out"))
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn run");
    let started = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("triaged running"))
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let all = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(desk.dir.path().join("run.out")).unwrap_or_default()
    );
    db.drop_db().await;
    assert!(started, "daemon did not start: {all}");
    assert!(!all.contains(SECRET), "run printed the password: {all}");
    assert!(all.contains("password=***"), "{all}");
}

// ---------------------------------------------------------------------------
// A Message-ID reused by another message

fn mail(id: &str, from: &str, subject: &str, body: &str, transport: &str) -> Vec<u8> {
    format!(
        "{transport}From: {from}\r\nTo: isda-support@example.edu\r\nSubject: {subject}\r\n\
         Date: Sat, 21 Nov 2026 10:00:00 -0600\r\nMessage-ID: <{id}>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Headers added in transit: the same message delivered again carries others.
const TRANSPORT: &str = "Return-Path: <ann@customer.example>\r\nDelivered-To: map-support@example.edu\r\n\
     X-Original-To: map-support@example.edu\r\nReceived: from mx2.example.edu by imap2; Sat, 21 Nov 2026 10:00:09 -0600\r\n\
     ARC-Seal: i=1; a=rsa-sha256; d=example.edu; s=arc; b=abc\r\nDKIM-Signature: v=1; a=rsa-sha256; d=customer.example; b=xyz\r\n";

fn collision(desk: &Desk) {
    let original = mail(
        "shared@x",
        "Ann <ann@customer.example>",
        "Printer broken",
        "The printer in B12 is broken.",
        "",
    );
    let impostor = mail(
        "shared@x",
        "mallory@elsewhere.example",
        "Refund request",
        "Please refund order 77.",
        "",
    );
    let s = desk.ingest("isda-support", std::slice::from_ref(&original));
    assert_eq!(s["new_tickets"], 1, "{s}");
    // Another sender, another body, the same Message-ID: a new ticket.
    let s = desk.ingest("isda-support", std::slice::from_ref(&impostor));
    assert_eq!(
        s["new_tickets"], 1,
        "the colliding message was dropped: {s}"
    );
    assert_eq!(s["duplicates"], 0, "{s}");
    // The same two messages again, through another mailbox with other
    // transport headers: both recognised.
    let again = |m: &[u8]| [TRANSPORT.as_bytes(), m].concat();
    let s = desk.ingest(
        "map-support",
        &[again(&original), again(&impostor), impostor.clone()],
    );
    assert_eq!(s["duplicates"], 3, "{s}");
    assert_eq!(s["new_tickets"], 0, "{s}");

    let tickets = desk.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let first = tickets
        .iter()
        .find(|t| t["requester"] == "ann@customer.example")
        .expect("ann's ticket");
    let second = tickets
        .iter()
        .find(|t| t["requester"] == "mallory@elsewhere.example")
        .expect("the colliding message's ticket");
    let first = desk.ticket(first["number"].as_i64().expect("number"));
    let second = desk.ticket(second["number"].as_i64().expect("number"));
    let earlier_message = &first["messages"][0]["id"];
    let events = second["events"].as_array().expect("events");
    let hit = events
        .iter()
        .find(|e| e["kind"] == "message-id collision")
        .unwrap_or_else(|| panic!("no collision event: {events:?}"));
    assert_eq!(hit["detail"]["earlier"]["ticket"], first["number"], "{hit}");
    assert_eq!(
        &hit["detail"]["earlier"]["message"], earlier_message,
        "{hit}"
    );
    assert_eq!(hit["detail"]["message_id"], "shared@x", "{hit}");
    // The colliding ticket kept its own message, whole.
    assert_eq!(second["messages"][0]["from"], "mallory@elsewhere.example");
    assert!(
        second["messages"][0]["body"]
            .as_str()
            .unwrap_or("")
            .contains("refund order 77")
    );
    // Each duplicate is recorded on the ticket it repeats.
    let dups = |t: &Value| {
        t["events"]
            .as_array()
            .map(|e| e.iter().filter(|e| e["kind"] == "duplicate").count())
            .unwrap_or(0)
    };
    assert_eq!(dups(&first), 1);
    assert_eq!(dups(&second), 2);
    let stats = desk.json(&["stats", "--json"]);
    assert_eq!(stats["tickets"], 2, "{stats}");
    assert_eq!(stats["messages"], 2, "{stats}");
    assert_eq!(stats["duplicates"], 3, "{stats}");
}

#[test]
fn reused_message_id_with_other_content_is_a_new_message_sqlite() {
    collision(&Desk::new(None));
}

#[tokio::test]
async fn reused_message_id_with_other_content_is_a_new_message_postgres() {
    let db = PgDb::create("identity_mid").await;
    let desk = Desk::new(Some(&db.url));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| collision(&desk)));
    db.drop_db().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// A database from before content hashes: its `mid:` rows still recognise
/// a second delivery of their message.
#[tokio::test]
async fn rows_from_before_content_hashes_are_still_recognised() {
    use sqlx::Connection;
    let desk = Desk::new(None);
    let m = mail(
        "old@x",
        "ann@customer.example",
        "Old",
        "From before the upgrade.",
        "",
    );
    desk.ingest("isda-support", std::slice::from_ref(&m));
    // As the previous version stored it: key `mid:<id>`, no hash.
    let mut conn = sqlx::SqliteConnection::connect(&desk.url)
        .await
        .expect("sqlite");
    sqlx::query("UPDATE messages SET content_hash = NULL")
        .execute(&mut conn)
        .await
        .expect("update");
    let keys: Vec<(String,)> = sqlx::query_as("SELECT dedupe_key FROM messages")
        .fetch_all(&mut conn)
        .await
        .expect("keys");
    let _ = conn.close().await;
    assert_eq!(keys, vec![("mid:old@x".to_string(),)]);
    let s = desk.ingest("map-support", &[[TRANSPORT.as_bytes(), &m].concat()]);
    assert_eq!(s["duplicates"], 1, "{s}");
    assert_eq!(desk.tickets().len(), 1);
    // Another message with the old message's ID is still told apart.
    let other = mail(
        "old@x",
        "mallory@elsewhere.example",
        "Other",
        "Not the same.",
        "",
    );
    let s = desk.ingest("isda-support", &[other]);
    assert_eq!(s["new_tickets"], 1, "{s}");
    assert_eq!(desk.tickets().len(), 2);
    let s = desk.ingest("isda-support", std::slice::from_ref(&m));
    assert_eq!(s["duplicates"], 1, "{s}");
}

// ---------------------------------------------------------------------------
// Who gets no automatic reply, and caps on notifications

fn number_of(desk: &Desk, requester: &str) -> i64 {
    desk.tickets()
        .iter()
        .find(|t| t["requester"] == requester)
        .and_then(|t| t["number"].as_i64())
        .unwrap_or_else(|| panic!("no ticket from {requester}"))
}

#[test]
fn automated_senders_get_no_acknowledgement() {
    let desk = Desk::new(None);
    // (sender, extra headers, what the suppression names)
    let cases = [
        (
            "ann@customer.example",
            "Precedence: auto_reply\r\n",
            "Precedence",
        ),
        (
            "bob@customer.example",
            "X-Autoreply: yes\r\n",
            "X-Autoreply",
        ),
        (
            "cy@customer.example",
            "X-Autorespond: Out of office\r\n",
            "X-Autorespond",
        ),
        (
            "bounces+4711-ab-ann=customer.example@em.mailer.example",
            "",
            "bounce",
        ),
        ("staff-bounces@lists.customer.example", "", "bounce"),
        (
            "bounce-mc.us1_12.34-ann=customer.example@mail.mailer.example",
            "",
            "bounce",
        ),
        ("isda-support+foo@example.edu", "", "own addresses"),
        (
            "dee@customer.example",
            "X-Loop: isda-support@example.edu\r\n",
            "X-Loop",
        ),
        (
            "eve@customer.example",
            "List-Unsubscribe: <mailto:unsub@customer.example>\r\n",
            "List-Unsubscribe",
        ),
        (
            "fay@customer.example",
            "Feedback-ID: 12:34:newsletter:esp\r\n",
            "Feedback-ID",
        ),
        (
            "gus@customer.example",
            "X-Auto-Response-Suppress: OOF\r\n",
            "X-Auto-Response-Suppress",
        ),
        ("noreply-7@customer.example", "", "no replies"),
    ];
    let mut messages: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, (from, extra, _))| {
            mail(
                &format!("auto{i}@x"),
                from,
                &format!("Question {i}"),
                "Please help.",
                extra,
            )
        })
        .collect();
    messages.push(mail(
        "person@x",
        "ivy@customer.example",
        "A question",
        "Please help.",
        "",
    ));
    let s = desk.ingest("isda-support", &messages);
    assert_eq!(
        s["new_tickets"].as_u64(),
        Some(messages.len() as u64),
        "{s}"
    );

    let acks: Vec<String> = desk
        .outbox()
        .iter()
        .filter(|m| m["kind"] == "acknowledgement")
        .flat_map(|m| m["rcpt"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        acks,
        vec!["ivy@customer.example".to_string()],
        "acknowledged: {acks:?}"
    );
    for (from, _, why) in cases {
        let suppressed = desk.suppressed(number_of(&desk, from));
        assert!(
            suppressed
                .iter()
                .any(|(k, r)| k == "acknowledgement" && r.contains(why)),
            "{from}: {suppressed:?}"
        );
    }
}

#[test]
fn a_flood_from_one_sender_does_not_flood_the_lists() {
    let desk = Desk::new(None);
    let messages: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            mail(
                &format!("down{i}@x"),
                "ops@customer.example",
                &format!("server{i} is down"),
                "It is down.",
                "",
            )
        })
        .collect();
    let s = desk.ingest("map-support", &messages);
    assert_eq!(s["new_tickets"], 200, "{s}");
    let outbox = desk.outbox();
    let count = |kind: &str| outbox.iter().filter(|m| m["kind"] == kind).count();
    // The shipped limits: 10 tickets per sender per hour get notifications,
    // 5 acknowledgements per sender per hour.
    assert_eq!(count("queue_notification"), 10, "{outbox:?}");
    assert_eq!(count("urgent_notification"), 10, "{outbox:?}");
    assert_eq!(count("acknowledgement"), 5);
    assert_eq!(outbox.len(), 25);
    // Every ticket past the cap says why it told nobody.
    let last = desk
        .tickets()
        .iter()
        .filter_map(|t| t["number"].as_i64())
        .max()
        .expect("tickets");
    let suppressed = desk.suppressed(last);
    for kind in [
        "acknowledgement",
        "queue_notification",
        "urgent_notification",
    ] {
        assert!(
            suppressed.iter().any(|(k, _)| k == kind),
            "{kind} not recorded as suppressed: {suppressed:?}"
        );
    }
    assert!(
        suppressed
            .iter()
            .any(|(k, r)| k == "queue_notification" && r.contains("from this sender")),
        "{suppressed:?}"
    );
}

#[tokio::test]
async fn a_flapping_alert_is_notified_a_bounded_number_of_times() {
    use sqlx::Connection;
    let desk = Desk::new(None);
    let mut numbers = Vec::new();
    for round in 0..5 {
        let m = mail(
            &format!("flap{round}@monitor.example.edu"),
            "nagios@monitor.example.edu",
            "PROBLEM Host Alert: web1 is DOWN",
            "Host web1 is DOWN.",
            "",
        );
        let s = desk.ingest("map-support", &[m]);
        assert_eq!(s["new_tickets"], 1, "{s}");
        let n = desk
            .tickets()
            .iter()
            .filter_map(|t| t["number"].as_i64())
            .max()
            .expect("ticket");
        assert_eq!(desk.tickets()[0]["alert_key"], "nagios:web1");
        numbers.push(n);
        // Someone resolves it; the next DOWN opens a new ticket.
        // Bounded: a hang here fails the test instead of holding the suite.
        let limit = std::time::Duration::from_secs(60);
        let mut conn = tokio::time::timeout(limit, sqlx::SqliteConnection::connect(&desk.url))
            .await
            .expect("connect in time")
            .expect("sqlite");
        tokio::time::timeout(
            limit,
            sqlx::query("UPDATE tickets SET status = 'resolved'").execute(&mut conn),
        )
        .await
        .expect("resolve in time")
        .expect("resolve");
        let _ = tokio::time::timeout(limit, conn.close()).await;
    }
    let notified: Vec<i64> = desk
        .outbox()
        .iter()
        .filter(|m| m["kind"] == "queue_notification")
        .filter_map(|m| m["ticket_number"].as_i64())
        .collect();
    assert_eq!(
        notified.len(),
        3,
        "shipped limit: 3 per alert per hour: {notified:?}"
    );
    for n in &numbers[3..] {
        let suppressed = desk.suppressed(*n);
        assert!(
            suppressed
                .iter()
                .any(|(k, r)| k == "queue_notification" && r.contains("alert nagios:web1")),
            "#{n}: {suppressed:?}"
        );
    }
}
