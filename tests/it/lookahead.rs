//! The batch's look-ahead (`store::lookahead`) answers the lookups that
//! would find nothing without a statement. It must change no outcome: the
//! same messages give the same tickets, messages, history, mail and
//! quarantine whether they are committed in one transaction, one by one,
//! or in small batches, and again on a second pass (everything a
//! duplicate). The corpus makes every lookup hit inside a transaction and
//! across transactions: duplicates, a Message-ID collision, a reply, an
//! alert repeated, recovered and raised again, a case tag, a sender past
//! the caps, quarantined garbage and its repeat, mail without an ID.

use std::sync::Arc;

use sqlx::{Connection, Row};
use triaged::config::{Config, DEFAULT_CONFIG};
use triaged::pipeline::{Origin, Outcome, Pipeline, Prepared};
use triaged::store::{RecentCaps, Store};

use crate::harness::{PgDb, message};

const ISDA: &str = "isda-support@example.edu";

pub(crate) fn corpus() -> Vec<Vec<u8>> {
    let ann = "Ann <ann@x.example>";
    let nagios = "nagios@monitor.example.edu";
    let alert = |id: &str, what: &str| {
        message(
            id,
            nagios,
            ISDA,
            &format!("** {what} Service Alert: web1/HTTP is {} **", {
                if what == "RECOVERY" { "OK" } else { "CRITICAL" }
            }),
            "Service: HTTP\nHost: web1\nState: CRITICAL\n",
        )
    };
    let first = message("a@x", ann, ISDA, "Printer on fire", "It burns.");
    let reply = b"From: Ann <ann@x.example>\r\nTo: isda-support@example.edu\r\nSubject: Re: Printer on fire\r\n\
         Date: Sat, 21 Nov 2026 10:05:00 -0600\r\nMessage-ID: <reply@x>\r\nIn-Reply-To: <a@x>\r\n\
         References: <a@x>\r\n\r\nStill burning.\r\n"
        .to_vec();
    let no_id =
        b"From: dan@x.example\r\nTo: isda-support@example.edu\r\nSubject: No ID\r\n\r\nHello.\r\n"
            .to_vec();
    let garbage: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut c = vec![
        first.clone(),
        first,
        message("a@x", ann, ISDA, "Printer on fire", "Other content."),
        reply,
        alert("n1@x", "PROBLEM"),
        alert("n2@x", "PROBLEM"),
        alert("n3@x", "RECOVERY"),
        alert("n4@x", "PROBLEM"),
        message(
            "tag@x",
            "bob@x.example",
            ISDA,
            "Re: [ISDA #1000] Printer on fire",
            "Same here.",
        ),
    ];
    for i in 0..4 {
        c.push(message(
            &format!("flood{i}@x"),
            if i % 2 == 0 {
                "Eve@Y.example"
            } else {
                "eve@y.example"
            },
            ISDA,
            &format!("Flood {i}"),
            "Again.",
        ));
    }
    c.push(garbage.clone());
    c.push(garbage);
    c.push(message("later@x", ann, ISDA, "Scanner too", "It smokes."));
    c.push(no_id.clone());
    c.push(no_id);
    c
}

async fn pipeline(url: &str) -> Pipeline {
    pipeline_with_caps(url, 2, 3, None).await
}

/// The default deployment with these caps (acknowledgements per sender,
/// tickets notified per sender and, if given, per alert).
pub(crate) async fn pipeline_with_caps(
    url: &str,
    acks: i64,
    by_sender: i64,
    by_alert: Option<i64>,
) -> Pipeline {
    let mut config = Config::parse(DEFAULT_CONFIG, "default").expect("default config");
    config.notify.ack_limit_per_hour = acks;
    config.notify.notify_limit_per_sender_per_hour = by_sender;
    if let Some(limit) = by_alert {
        config.notify.notify_limit_per_alert_per_hour = limit;
    }
    let config = Arc::new(config);
    let store = Store::open(url, 1000).await.expect("open store");
    let notifier = triaged::notify::notifier(&config).expect("templates");
    Pipeline::new(config, store)
        .expect("rules")
        .with_notifier(notifier, Arc::new(tokio::sync::Notify::new()))
}

/// Ingests the corpus twice, `per_tx` messages per transaction; the
/// outcomes and the store's rows.
async fn run(url: &str, per_tx: usize) -> (Vec<Outcome>, Vec<String>) {
    let p = pipeline(url).await;
    let raws = corpus();
    let mut outcomes = Vec::new();
    for pass in 0..2 {
        let prepared = prepare_all(&p, &raws, &format!("pass{pass}"));
        for chunk in prepared.chunks(per_tx) {
            outcomes.extend(p.commit(chunk, None).await.expect("commit"));
        }
    }
    p.store().close().await;
    (outcomes, dump(url).await)
}

/// `raws` prepared as arriving in isda-support, from files `<tag>-<i>.eml`.
pub(crate) fn prepare_all(p: &Pipeline, raws: &[Vec<u8>], tag: &str) -> Vec<Prepared> {
    raws.iter()
        .enumerate()
        .map(|(i, raw)| {
            let origin = Origin::File {
                path: format!("{tag}-{i}.eml"),
            };
            p.prepare("isda-support", origin, raw.clone())
        })
        .collect()
}

/// Every row that recording writes, in id order, without ids and times.
pub(crate) async fn dump(url: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.expect("connect");
    let mut out = Vec::new();
    for sql in [
        "SELECT 'ticket' AS t, number || ' ' || queue || ' ' || kind || ' ' || status || ' ' || requester
           || ' ' || COALESCE(alert_key, '-') || ' ' || priority AS r FROM tickets ORDER BY number",
        "SELECT 'message' AS t, ticket_number || ' ' || dedupe_key || ' ' || origin AS r FROM messages ORDER BY id",
        "SELECT 'event' AS t, ticket_number || ' ' || kind || ' ' || actor AS r FROM events ORDER BY id",
        "SELECT 'mail' AS t, COALESCE(CAST(ticket_number AS TEXT), '-') || ' ' || kind || ' ' || first_rcpt || ' ' || subject AS r
           FROM outbox ORDER BY id",
        "SELECT 'recipient' AS t, ticket_number || ' ' || address AS r FROM ticket_recipients ORDER BY ticket_number, address",
        "SELECT 'quarantine' AS t, dedupe_key || ' ' || reason AS r FROM quarantine ORDER BY id",
        "SELECT 'link' AS t, ticket || ' ' || other || ' ' || reason AS r FROM ticket_links ORDER BY ticket, other",
    ] {
        for row in sqlx::query(sql).fetch_all(&mut c).await.expect(sql) {
            let t: String = row.get("t");
            let r: String = row.get("r");
            out.push(format!("{t}: {r}"));
        }
    }
    let _ = c.close().await;
    out
}

fn check(runs: &[(usize, Vec<Outcome>, Vec<String>)]) {
    let (_, outcomes, rows) = &runs[0];
    let n = corpus().len();
    // What the corpus means, so that the comparison is not of two empty
    // stores.
    assert_eq!(outcomes[0], Outcome::Created(1000), "{outcomes:?}");
    assert_eq!(outcomes[1], Outcome::Duplicate(1000), "{outcomes:?}");
    assert!(
        matches!(outcomes[2], Outcome::Created(_)),
        "a collision is a new message: {outcomes:?}"
    );
    assert_eq!(outcomes[3], Outcome::Reply(1000), "{outcomes:?}");
    assert!(matches!(outcomes[4], Outcome::Created(_)), "{outcomes:?}");
    assert_eq!(outcomes[5], Outcome::Reply(outcome_number(outcomes[4])));
    assert!(
        matches!(outcomes[13], Outcome::Quarantined(_)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[14], Outcome::DuplicateQuarantined(_)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[17], Outcome::Duplicate(_)),
        "{outcomes:?}"
    );
    for (i, o) in outcomes[n..].iter().enumerate() {
        assert!(
            matches!(o, Outcome::Duplicate(_) | Outcome::DuplicateQuarantined(_)),
            "second pass, message {i}: {o:?}"
        );
    }
    let acks_to_eve = rows
        .iter()
        .filter(|r| r.starts_with("mail: ") && r.contains("acknowledgement eve@y.example"))
        .count();
    assert_eq!(acks_to_eve, 2, "the caps hold: {rows:#?}");
    for (per_tx, o, r) in &runs[1..] {
        assert_eq!(o, outcomes, "outcomes with {per_tx} per transaction");
        if r != rows {
            let diff: Vec<_> = r
                .iter()
                .zip(rows.iter())
                .filter(|(a, b)| a != b)
                .take(5)
                .collect();
            panic!(
                "rows with {per_tx} per transaction differ from one transaction's ({} vs {} rows); first differences: {diff:#?}",
                r.len(),
                rows.len()
            );
        }
    }
}

fn outcome_number(o: Outcome) -> i64 {
    match o {
        Outcome::Created(n)
        | Outcome::Reply(n)
        | Outcome::Duplicate(n)
        | Outcome::DuplicateQuarantined(n)
        | Outcome::Quarantined(n) => n,
    }
}

#[tokio::test]
async fn batching_changes_no_outcome_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runs = Vec::new();
    for per_tx in [usize::MAX, 1, 4] {
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("b{per_tx}.db")).display()
        );
        let (o, r) = run(&url, per_tx).await;
        runs.push((per_tx, o, r));
    }
    check(&runs);
}

#[tokio::test]
async fn batching_changes_no_outcome_postgres() {
    let mut runs = Vec::new();
    for per_tx in [usize::MAX, 1, 4] {
        let db = PgDb::create(&format!("lookahead{}", per_tx.min(99))).await;
        let (o, r) = run(&db.url, per_tx).await;
        db.drop_db().await;
        runs.push((per_tx, o, r));
    }
    check(&runs);
}

/// Batches whose keys need more than one look-ahead statement (at most 900
/// parameters each): every earlier message is still found, as a duplicate
/// and as the message a reply refers to. A key the look-ahead lost would be
/// taken as new, and its insert refused (the commit fails).
async fn large_batches(url: &str) {
    const N: usize = 500;
    // Every fifth Message-ID carries what an array or list of keys must
    // keep apart: quotes, backslashes, commas, braces, spaces, "NULL".
    let id = |i: usize| match i % 5 {
        0 => format!("big{i}\"q\\b,{{c}}@x"),
        1 => format!("NULL{i}@x"),
        2 => format!("big {i} sp@x"),
        _ => format!("big{i}@x"),
    };
    let p = pipeline(url).await;
    let originals: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            message(
                &id(i),
                &format!("user{i}@x.example"),
                ISDA,
                &format!("Case {i}"),
                "Hello.",
            )
        })
        .collect();
    let replies: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            format!(
                "From: user{i}@x.example\r\nTo: {ISDA}\r\nSubject: Re: Case {i}\r\n\
                 Message-ID: <bigreply{i}@x>\r\nIn-Reply-To: <{}>\r\n\r\nMore.\r\n",
                id(i)
            )
            .into_bytes()
        })
        .collect();
    // The keys reach the store as written.
    let hostile = triaged::parse::parse(&originals[0]).message_id;
    assert_eq!(hostile.as_deref(), Some("big0\"q\\b,{c}@x"));
    let batch = |raws: &[Vec<u8>], tag: &str| prepare_all(&p, raws, tag);
    let first = p
        .commit(&batch(&originals, "a"), None)
        .await
        .expect("commit");
    assert!(first.iter().all(|o| matches!(o, Outcome::Created(_))));
    let again = p
        .commit(&batch(&originals, "b"), None)
        .await
        .expect("commit");
    for (i, (o, f)) in again.iter().zip(&first).enumerate() {
        assert_eq!(*o, Outcome::Duplicate(outcome_number(*f)), "message {i}");
    }
    let replied = p.commit(&batch(&replies, "c"), None).await.expect("commit");
    for (i, (o, f)) in replied.iter().zip(&first).enumerate() {
        assert_eq!(*o, Outcome::Reply(outcome_number(*f)), "reply {i}");
    }
    p.store().close().await;
}

#[tokio::test]
async fn large_batches_find_every_earlier_key_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    large_batches(&format!("sqlite://{}", dir.path().join("big.db").display())).await;
}

#[tokio::test]
async fn large_batches_find_every_earlier_key_postgres() {
    let db = PgDb::create("lookahead_big").await;
    large_batches(&db.url).await;
    db.drop_db().await;
}

/// A batch of large messages is written before COMMIT once its held rows
/// pass 16 MiB (`deferred::MAX_HELD_BYTES`); the messages after that point
/// still find the ones written, as duplicates and replies.
async fn large_messages(url: &str) {
    const N: usize = 32;
    let p = pipeline(url).await;
    let mut raws: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            message(
                &format!("large{i}@x"),
                &format!("user{i}@x.example"),
                ISDA,
                &format!("Large {i}"),
                &crate::durability::incompressible_lines(1 << 20, i as u64, "\r\n"),
            )
        })
        .collect();
    raws.push(raws[0].clone());
    raws.push(
        format!(
            "From: user1@x.example\r\nTo: {ISDA}\r\nSubject: Re: Large 1\r\n\
             Message-ID: <largereply@x>\r\nIn-Reply-To: <large1@x>\r\n\r\nMore.\r\n"
        )
        .into_bytes(),
    );
    let batch = prepare_all(&p, &raws, "large");
    let outcomes = p.commit(&batch, None).await.expect("commit");
    assert!(
        outcomes[..N]
            .iter()
            .all(|o| matches!(o, Outcome::Created(_))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[N], Outcome::Duplicate(outcome_number(outcomes[0])));
    assert_eq!(outcomes[N + 1], Outcome::Reply(outcome_number(outcomes[1])));
    let t = p
        .store()
        .ticket(outcome_number(outcomes[N - 1]))
        .await
        .expect("read")
        .expect("the last large ticket");
    assert_eq!(t.messages.len(), 1);
    p.store().close().await;
}

#[tokio::test]
async fn large_messages_are_written_before_commit_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    large_messages(&format!(
        "sqlite://{}",
        dir.path().join("large.db").display()
    ))
    .await;
}

#[tokio::test]
async fn large_messages_are_written_before_commit_postgres() {
    let db = PgDb::create("lookahead_large").await;
    large_messages(&db.url).await;
    db.drop_db().await;
}

/// The look-ahead statement itself runs on both stores with every class of
/// key, hostile ones included (a failing look-ahead would only make the
/// pipeline retry each message alone, which the tests above cannot see).
async fn every_class_is_asked(url: &str) {
    let p = pipeline(url).await;
    let first = p
        .commit(
            &prepare_all(
                &p,
                &[message(
                    "asked@x",
                    "someone@x.example",
                    ISDA,
                    "Asked",
                    "Hi.",
                )],
                "a",
            ),
            None,
        )
        .await
        .expect("commit");
    let number = outcome_number(first[0]);
    let hostile = [
        "a\"b\\c,{d} NULL",
        "",
        "sep\u{1e}arated",
        "nul\0byte",
        "mid:asked@x",
        "asked@x",
    ];
    let texts = |prefix: &str| -> Vec<String> {
        hostile
            .iter()
            .map(|h| format!("{prefix}{h}"))
            .chain([String::new()])
            .collect()
    };
    let probes = triaged::store::Probes {
        dedupe_keys: texts("mid:"),
        message_ids: texts(""),
        alert_keys: texts("alert:"),
        numbers: vec![number, number + 1000, -1],
        senders: texts(""),
        since: 0,
        batch: 1,
    };
    let mut tx = p.store().begin().await.expect("begin");
    tx.look_ahead(&probes).await.expect("look-ahead");
    tx.look_ahead(&triaged::store::Probes::default())
        .await
        .expect("an empty look-ahead");
    tx.commit().await.expect("commit");
    p.store().close().await;
}

#[tokio::test]
async fn every_class_is_asked_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    every_class_is_asked(&format!("sqlite://{}", dir.path().join("ask.db").display())).await;
}

#[tokio::test]
async fn every_class_is_asked_postgres() {
    let db = PgDb::create("lookahead_ask").await;
    every_class_is_asked(&db.url).await;
    db.drop_db().await;
}

/// The caps' counts the look-ahead takes for a batch (what the store held in
/// the window) are those the caps' own statement counts: acknowledgements to
/// a sender, the sender's tickets notified, the alert's tickets notified.
async fn caps_counted_ahead(url: &str) {
    let p = pipeline_with_caps(url, i64::MAX, i64::MAX, Some(i64::MAX)).await;
    let nagios = "nagios@monitor.example.edu";
    let mut raws = Vec::new();
    for i in 0..5 {
        let from = if i % 2 == 0 {
            "Ann <Ann@X.example>"
        } else {
            "ann@x.example"
        };
        raws.push(message(
            &format!("ann{i}@x"),
            from,
            ISDA,
            &format!("Printer {i}"),
            "Help.",
        ));
    }
    for host in ["web1", "web2"] {
        raws.push(message(
            &format!("{host}@n"),
            nagios,
            ISDA,
            &format!("** PROBLEM Service Alert: {host}/HTTP is CRITICAL **"),
            &format!("Service: HTTP\nHost: {host}\nState: CRITICAL\n"),
        ));
    }
    raws.push(message(
        "bob@x",
        "Bob <bob@x.example>",
        ISDA,
        "Password reset",
        "Please.",
    ));
    // Some in one transaction, the rest one by one.
    let prepared = prepare_all(&p, &raws, "caps");
    p.commit(&prepared[..3], None).await.expect("commit");
    for one in prepared[3..].chunks(1) {
        p.commit(one, None).await.expect("commit");
    }
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.expect("connect");
    let mut alerts: Vec<Option<String>> = sqlx::query(
        "SELECT DISTINCT alert_key FROM tickets WHERE alert_key IS NOT NULL ORDER BY alert_key",
    )
    .fetch_all(&mut c)
    .await
    .expect("alert keys")
    .iter()
    .map(|r| Some(r.get::<String, _>("alert_key")))
    .collect();
    let _ = c.close().await;
    assert!(
        !alerts.is_empty(),
        "the alerts made tickets with alert keys"
    );
    alerts.extend([Some("no such alert".to_string()), None]);
    let senders = [
        Some("ann@x.example"),
        Some(nagios),
        Some("bob@x.example"),
        Some("nobody@x.example"),
        None,
    ];
    let mut counted = RecentCaps::default();
    for sender in senders {
        for alert in &alerts {
            let mut ahead = p.store().begin().await.expect("begin");
            let since = ahead.now() - triaged::notify::CAP_WINDOW_MS;
            let probes = triaged::store::Probes {
                senders: senders.iter().flatten().map(|s| s.to_string()).collect(),
                alert_keys: alerts.iter().flatten().cloned().collect(),
                since,
                batch: 1,
                ..Default::default()
            };
            ahead.look_ahead(&probes).await.expect("look-ahead");
            let from_ahead = ahead
                .recent_caps(sender, alert.as_deref(), since)
                .await
                .expect("caps");
            drop(ahead);
            let mut asked = p.store().begin().await.expect("begin");
            let from_store = asked
                .recent_caps(sender, alert.as_deref(), since)
                .await
                .expect("caps");
            drop(asked);
            assert_eq!(from_ahead, from_store, "sender {sender:?}, alert {alert:?}");
            counted.acks = counted.acks.max(from_store.acks);
            counted.by_sender = counted.by_sender.max(from_store.by_sender);
            counted.by_alert = counted.by_alert.max(from_store.by_alert);
        }
    }
    // Not a comparison of zeros: Ann had 5 acknowledgements, and the
    // tickets were notified.
    assert_eq!(counted.acks, 5, "{counted:?}");
    assert!(
        counted.by_sender >= 1 && counted.by_alert >= 1,
        "{counted:?}"
    );
    p.store().close().await;
}

#[tokio::test]
async fn caps_counted_ahead_are_the_stores_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    caps_counted_ahead(&format!(
        "sqlite://{}",
        dir.path().join("caps.db").display()
    ))
    .await;
}

#[tokio::test]
async fn caps_counted_ahead_are_the_stores_postgres() {
    let db = PgDb::create("lookahead_caps").await;
    caps_counted_ahead(&db.url).await;
    db.drop_db().await;
}
