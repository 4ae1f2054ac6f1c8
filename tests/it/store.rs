//! The same store behaviour on SQLite and on PostgreSQL, through the pipeline.

use std::sync::Arc;

use triaged::config::{Config, DEFAULT_CONFIG};
use triaged::pipeline::{Origin, Outcome, Pipeline};
use triaged::store::{Cursor, Status, Store, TicketFilter};

use crate::harness::{PgDb, message};

async fn pipeline(url: &str) -> Pipeline {
    let mut config = Config::parse(DEFAULT_CONFIG, "default").expect("default config");
    config.ingest.max_message_bytes = 4096;
    let store = Store::open(url, 1000).await.expect("open store");
    Pipeline::new(Arc::new(config), store).expect("rules")
}

fn file(n: usize) -> Origin {
    Origin::File {
        path: format!("test-{n}.eml"),
    }
}

async fn one(p: &Pipeline, mailbox: &str, n: usize, raw: Vec<u8>) -> Outcome {
    let prepared = p.prepare(mailbox, file(n), raw);
    let outcomes = p.commit(&[prepared], None).await.expect("commit");
    outcomes[0]
}

/// Numbering, threading, de-duplication, quarantine, cursors, reading back.
async fn semantics(url: &str) {
    let p = pipeline(url).await;
    let s = p.store();

    let a = one(
        &p,
        "isda-support",
        1,
        message(
            "a@x",
            "Ann <ann@x.example>",
            "isda-support@example.edu",
            "Login broken",
            "It fails.",
        ),
    )
    .await;
    assert_eq!(a, Outcome::Created(1000));
    let b = one(
        &p,
        "db-requests",
        2,
        message(
            "b@x",
            "bob@x.example",
            "db-requests@example.edu",
            "New schema",
            "Please.",
        ),
    )
    .await;
    assert_eq!(b, Outcome::Created(1001));

    // Reply by case tag, by In-Reply-To and by References; an unknown tag makes a new ticket.
    let tag = one(
        &p,
        "isda-support",
        3,
        message(
            "c@x",
            "ann@x.example",
            "isda-support@example.edu",
            "RE: [isda #1000] Login broken",
            "Again.",
        ),
    )
    .await;
    assert_eq!(tag, Outcome::Reply(1000));
    let mut by_irt = message(
        "d@x",
        "dba@example.edu",
        "bob@x.example",
        "Re: New schema",
        "Done.",
    );
    by_irt.splice(0..0, b"In-Reply-To: <b@x>\r\n".iter().copied());
    assert_eq!(
        one(&p, "db-requests", 4, by_irt).await,
        Outcome::Reply(1001)
    );
    let mut by_refs = message(
        "e@x",
        "ann@x.example",
        "isda-support@example.edu",
        "Re: Re: Login broken",
        "Thanks.",
    );
    by_refs.splice(0..0, b"References: <unknown@y> <c@x>\r\n".iter().copied());
    assert_eq!(
        one(&p, "isda-support", 5, by_refs).await,
        Outcome::Reply(1000)
    );
    let stranger = one(
        &p,
        "isda-support",
        6,
        message(
            "f@x",
            "eve@x.example",
            "isda-support@example.edu",
            "[ISDA #424242] not ours",
            "?",
        ),
    )
    .await;
    assert_eq!(stranger, Outcome::Created(1002));

    // The same message again, in another mailbox: a duplicate. (The same
    // Message-ID with other content is a new message: tests/it/identity.rs.)
    let dup = one(
        &p,
        "help",
        7,
        message(
            "a@x",
            "Ann <ann@x.example>",
            "isda-support@example.edu",
            "Login broken",
            "It fails.",
        ),
    )
    .await;
    assert_eq!(dup, Outcome::Duplicate(1000));
    // No Message-ID: duplicates by content, whatever the transport headers.
    let no_id = b"From: z@x.example\r\nSubject: no id\r\n\r\nsame body\r\n".to_vec();
    let mut relayed = b"Received: from relay\r\nDelivered-To: help@example.edu\r\n".to_vec();
    relayed.extend_from_slice(&no_id);
    assert_eq!(one(&p, "help", 8, no_id).await, Outcome::Created(1003));
    assert_eq!(one(&p, "help", 9, relayed).await, Outcome::Duplicate(1003));

    // Over the limit: quarantined, once.
    let big = message(
        "big@x",
        "big@x.example",
        "help@example.edu",
        "Big",
        &"y".repeat(8000),
    );
    let q = one(&p, "help", 10, big.clone()).await;
    assert!(matches!(q, Outcome::Quarantined(_)), "{q:?}");
    assert!(matches!(
        one(&p, "help", 11, big).await,
        Outcome::DuplicateQuarantined(_)
    ));

    // Text PostgreSQL cannot store as is (NUL) and odd encodings still go in.
    let nul = b"From: n@x.example\r\nSubject: nul\0byte\r\nMessage-ID: <nul@x>\r\n\r\nbody\0with nul and \xff\xfe bytes\r\n".to_vec();
    assert_eq!(one(&p, "help", 12, nul).await, Outcome::Created(1004));

    // A batch: several messages in one transaction, including the same message twice.
    let batch: Vec<_> = (0..5)
        .map(|i| {
            p.prepare(
                "isda-support",
                file(100 + i),
                message(
                    &format!("batch-{}@x", i % 4),
                    "k@x.example",
                    "isda-support@example.edu",
                    &format!("batch {}", i % 4),
                    "b",
                ),
            )
        })
        .collect();
    let cursor = Cursor {
        mailbox: "isda-support".to_string(),
        uidvalidity: 77,
        last_uid: 5,
    };
    let outcomes = p.commit(&batch, Some(&cursor)).await.expect("batch");
    assert_eq!(
        outcomes,
        vec![
            Outcome::Created(1005),
            Outcome::Created(1006),
            Outcome::Created(1007),
            Outcome::Created(1008),
            Outcome::Duplicate(1005)
        ]
    );
    assert_eq!(
        s.cursor("isda-support").await.expect("cursor"),
        Some(cursor)
    );
    assert_eq!(s.cursor("help").await.expect("cursor"), None);

    // Reading back.
    let counts = s.counts().await.expect("counts");
    assert_eq!(
        (
            counts.tickets,
            counts.messages,
            counts.duplicates,
            counts.quarantined
        ),
        (9, 12, 3, 1)
    );
    let t = s.ticket(1000).await.expect("read").expect("ticket 1000");
    assert_eq!(t.ticket.tag, "[ISDA #1000]");
    assert_eq!(t.ticket.queue, "Customer-Support");
    assert_eq!(t.ticket.requester_name.as_deref(), Some("Ann"));
    assert_eq!(t.messages.len(), 3);
    assert_eq!(
        t.events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["created", "reply", "reply", "duplicate"]
    );
    assert!(
        t.events[0].detail["explanation"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    let raw = s
        .raw_message(t.messages[0].id)
        .await
        .expect("raw")
        .expect("kept");
    assert!(
        raw.starts_with(b"From: Ann <ann@x.example>"),
        "raw message kept byte for byte"
    );
    let db = s.ticket(1001).await.expect("read").expect("ticket");
    assert_eq!(
        (
            db.ticket.desk.as_str(),
            db.ticket.tag.as_str(),
            db.ticket.queue.as_str()
        ),
        ("database", "[DB #1001]", "Database")
    );
    let listed = s
        .list_tickets(&TicketFilter {
            queue: Some("Database".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.iter().map(|t| t.number).collect::<Vec<_>>(), [1001]);
    let quarantined = s.list_quarantine().await.expect("quarantine");
    assert_eq!(quarantined.len(), 1);
    assert!(quarantined[0].reason.contains("exceeds"));
    s.close().await;

    // Reopening keeps numbering where it was (migrations are idempotent).
    let p2 = pipeline(url).await;
    let next = one(
        &p2,
        "isda-support",
        200,
        message(
            "later@x",
            "l@x.example",
            "isda-support@example.edu",
            "later",
            "x",
        ),
    )
    .await;
    assert_eq!(next, Outcome::Created(1009));
    p2.store().close().await;
}

/// Two writers racing on the same message never make two tickets.
async fn concurrent_writers(url: &str) {
    let p = pipeline(url).await;
    let mut handles = Vec::new();
    for w in 0..4 {
        let p = p.clone();
        handles.push(tokio::spawn(async move {
            let mut made = 0;
            for i in 0..25 {
                let prepared = p.prepare(
                    "isda-support",
                    file(w * 100 + i),
                    message(
                        &format!("race-{i}@x"),
                        "r@x.example",
                        "isda-support@example.edu",
                        &format!("race {i}"),
                        "b",
                    ),
                );
                // A writer that loses a race is told to retry, and then sees the duplicate.
                for _ in 0..10 {
                    match p.commit(std::slice::from_ref(&prepared), None).await {
                        Ok(o) => {
                            if matches!(o[0], Outcome::Created(_)) {
                                made += 1;
                            }
                            break;
                        }
                        Err(e) if e.is_retryable() => {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            made
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.expect("task");
    }
    assert_eq!(total, 25);
    assert_eq!(p.store().counts().await.expect("counts").tickets, 25);
    p.store().close().await;
}

#[tokio::test]
async fn store_semantics_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    semantics(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
}

#[tokio::test]
async fn store_semantics_postgres() {
    let db = PgDb::create("store").await;
    semantics(&db.url).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    concurrent_writers(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_postgres() {
    let db = PgDb::create("race").await;
    concurrent_writers(&db.url).await;
    db.drop_db().await;
}

/// The notification caps' counts (`Tx::recent_notified`): tickets of one
/// sender (in any case) and of one alert key that were sent mail in the last
/// hour, indexed lookups since issue 12. The shipped limits: 10 tickets per
/// sender, 3 per alert key.
async fn notification_caps(url: &str) {
    let mut config = Config::parse(DEFAULT_CONFIG, "default").expect("default config");
    config.notify.ack_limit_per_hour = i64::MAX;
    let config = Arc::new(config);
    let store = Store::open(url, 1).await.expect("open store");
    let notifier = triaged::notify::notifier(&config).expect("templates");
    let p = Pipeline::new(config, store)
        .expect("rules")
        .with_notifier(notifier, Arc::new(tokio::sync::Notify::new()));
    // One sender, its address in changing case: 10 notified, then suppressed.
    for i in 0..14 {
        let from = if i % 2 == 0 {
            "Ops@Customer.Example"
        } else {
            "ops@customer.example"
        };
        let raw = message(
            &format!("flood{i}@x"),
            from,
            "map-support@example.edu",
            &format!("server{i} is down"),
            "It is down.",
        );
        assert!(matches!(
            one(&p, "map-support", i, raw).await,
            Outcome::Created(_)
        ));
    }
    // One alert key, each ticket resolved before the next alert: 3 notified.
    for i in 0..5 {
        let raw = message(
            &format!("flap{i}@monitor.example.edu"),
            "nagios@monitor.example.edu",
            "map-support@example.edu",
            "PROBLEM Host Alert: web1 is DOWN",
            "Host web1 is DOWN.",
        );
        let Outcome::Created(n) = one(&p, "map-support", 100 + i, raw).await else {
            panic!("alert {i} made no ticket");
        };
        let mut tx = p.store().begin().await.expect("begin");
        assert!(
            tx.move_status(n, Status::New, Status::Resolved, "test", "resolved")
                .await
                .expect("resolve")
        );
        tx.commit().await.expect("commit");
    }
    let outbox = p.store().list_outbox(None, i64::MAX).await.expect("outbox");
    let notified = |from: &str| {
        outbox
            .iter()
            .filter(|m| m.kind == "queue_notification")
            .filter(|m| {
                let n = m.ticket_number.unwrap_or(0);
                if from == "ops" { n < 15 } else { n > 14 }
            })
            .count()
    };
    assert_eq!(notified("ops"), 10, "{outbox:?}");
    assert_eq!(notified("nagios"), 3, "{outbox:?}");
    p.store().close().await;
}

#[tokio::test]
async fn notification_caps_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    notification_caps(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
}

#[tokio::test]
async fn notification_caps_postgres() {
    let db = PgDb::create("caps").await;
    notification_caps(&db.url).await;
    db.drop_db().await;
}

/// One batch, one transaction (issue 12: rows written as multi-row INSERTs
/// at the end): a reply threads onto the first message of its thread in the
/// same batch, a duplicate inside the batch is one ticket, a quarantined
/// item sits between them, ticket numbers follow on from the counter, and
/// the history and mail read back as if written one by one. Then the caps
/// inside one batch: acknowledgements and notifications held back in the
/// transaction count for the next message of the same sender.
async fn batch_edges(url: &str) {
    let mut config = Config::parse(DEFAULT_CONFIG, "default").expect("default config");
    config.ingest.max_message_bytes = 4096;
    config.notify.ack_limit_per_hour = 2;
    config.notify.notify_limit_per_sender_per_hour = 3;
    let config = Arc::new(config);
    let store = Store::open(url, 500).await.expect("open store");
    let notifier = triaged::notify::notifier(&config).expect("templates");
    let p = Pipeline::new(config, store)
        .expect("rules")
        .with_notifier(notifier, Arc::new(tokio::sync::Notify::new()));
    let first = message(
        "first@x",
        "Ann <ann@x.example>",
        "isda-support@example.edu",
        "Printer on fire",
        "It burns.",
    );
    let reply = b"From: Ann <ann@x.example>\r\nTo: isda-support@example.edu\r\nSubject: Re: Printer on fire\r\n\
         Date: Sat, 21 Nov 2026 10:05:00 -0600\r\nMessage-ID: <reply@x>\r\nIn-Reply-To: <first@x>\r\n\
         References: <first@x>\r\n\r\nStill burning.\r\n"
        .to_vec();
    let mut huge = message(
        "huge@x",
        "bob@x.example",
        "isda-support@example.edu",
        "Big",
        "",
    );
    huge.extend(std::iter::repeat_n(b'a', 8192));
    let other = message(
        "other@x",
        "carol@x.example",
        "isda-support@example.edu",
        "Another",
        "Hello.",
    );
    let raws = [first.clone(), huge, reply, first, other];
    let batch: Vec<_> = raws
        .into_iter()
        .enumerate()
        .map(|(i, raw)| p.prepare("isda-support", file(i), raw))
        .collect();
    let outcomes = p.commit(&batch, None).await.expect("commit");
    assert_eq!(outcomes[0], Outcome::Created(500), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], Outcome::Quarantined(_)),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], Outcome::Reply(500), "{outcomes:?}");
    assert_eq!(outcomes[3], Outcome::Duplicate(500), "{outcomes:?}");
    assert_eq!(outcomes[4], Outcome::Created(501), "{outcomes:?}");
    let s = p.store();
    assert_eq!(s.count_tickets().await.expect("count"), 2);
    assert_eq!(s.list_quarantine().await.expect("quarantine").len(), 1);
    let t = s.ticket(500).await.expect("read").expect("ticket 500");
    assert_eq!(t.messages.len(), 2);
    let kinds: Vec<&str> = t.events.iter().map(|e| e.kind.as_str()).collect();
    let at = |k: &str| kinds.iter().position(|x| *x == k);
    assert!(
        at("created") < at("reply") && at("reply") < at("duplicate"),
        "history out of order: {kinds:?}"
    );
    assert!(
        t.mail.iter().any(|m| m.kind == "acknowledgement"),
        "{:?}",
        t.mail
    );
    // The next batch numbers on from the counter the first one wrote.
    let next = p.prepare(
        "isda-support",
        file(9),
        message(
            "next@x",
            "dan@x.example",
            "isda-support@example.edu",
            "Next",
            ".",
        ),
    );
    assert_eq!(
        p.commit(&[next], None).await.expect("commit"),
        vec![Outcome::Created(502)]
    );

    // Caps inside one batch: one sender, six new tickets; two
    // acknowledgements and three notified tickets (the limits), then
    // suppressed.
    let flood: Vec<_> = (0..6)
        .map(|i| {
            p.prepare(
                "map-support",
                file(100 + i),
                message(
                    &format!("flood{i}@x"),
                    if i % 2 == 0 {
                        "Eve@Y.example"
                    } else {
                        "eve@y.example"
                    },
                    "map-support@example.edu",
                    &format!("Flood {i}"),
                    "Again.",
                ),
            )
        })
        .collect();
    let outcomes = p.commit(&flood, None).await.expect("commit");
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Created(_))));
    let outbox = s.list_outbox(None, i64::MAX).await.expect("outbox");
    let acks_to_eve = outbox
        .iter()
        .filter(|m| {
            m.kind == "acknowledgement"
                && m.rcpt
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case("eve@y.example"))
        })
        .count();
    assert_eq!(acks_to_eve, 2, "{outbox:?}");
    let notified = outbox
        .iter()
        .filter(|m| m.kind == "queue_notification" && m.ticket_number.unwrap_or(0) > 502)
        .count();
    assert_eq!(notified, 3, "{outbox:?}");
    s.close().await;
}

/// Runs `statement` on the test's database with `bytes` bound as `$1`.
async fn sql_with_bytes(url: &str, statement: &str, bytes: Vec<u8>) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.expect("connect");
    sqlx::query(statement)
        .bind(bytes)
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    let _ = c.close().await;
}

/// (codec, stored length) of a row, read straight from the database.
async fn stored(url: &str, statement: &str) -> (String, i64) {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.expect("connect");
    let r = sqlx::query(statement).fetch_one(&mut c).await.expect("row");
    let _ = c.close().await;
    (r.get(0), r.get(1))
}

/// Stored mail (migration 0014): new rows compressed and read back exactly;
/// rows written before it (`raw_codec` 'none', a `body_text` of their own)
/// still read; a corrupt row is a clear error, and a corrupt outbox row is
/// marked failed instead of blocking the mail behind it.
async fn stored_mail(url: &str) {
    let p = pipeline(url).await;
    let s = p.store();
    let body = "The portal login fails with a timeout. ".repeat(40);
    let raw = message(
        "codec@x",
        "ann@x.example",
        "isda-support@example.edu",
        "Codec",
        &body,
    );
    assert_eq!(
        one(&p, "isda-support", 1, raw.clone()).await,
        Outcome::Created(1000)
    );
    let t = s.ticket(1000).await.expect("read").expect("ticket");
    let id = t.messages[0].id;
    assert_eq!(t.messages[0].body.trim_end(), body.trim_end());
    assert_eq!(s.raw_message(id).await.expect("raw"), Some(raw.clone()));
    let (codec, len) = stored(
        url,
        &format!("SELECT raw_codec, CAST(LENGTH(raw) AS BIGINT) FROM messages WHERE id = {id}"),
    )
    .await;
    assert_eq!(codec, "zstd");
    assert!((len as usize) * 4 < raw.len(), "{len} of {}", raw.len());

    // The outbox gives the sender the very bytes queued.
    let mail = format!("From: d@x\r\nTo: a@x\r\nSubject: s\r\n\r\n{body}\r\n").into_bytes();
    let rcpt = vec!["a@x".to_string()];
    let new = |raw| triaged::store::NewMail {
        kind: "report",
        from: "d@x",
        rcpt: &rcpt,
        subject: "s",
        message_id: "m@x",
        raw,
    };
    let queued = s.queue_mail_alone(&new(&mail)).await.expect("queue");
    let claimed = s
        .claim_outbox("t", i64::MAX - 1, i64::MAX, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id, &claimed[0].raw), (queued, &mail));
    s.outbox_sent(queued, "250 ok").await.expect("sent");

    // A row from before 0014: bytes as they are, its own body text.
    let old = message(
        "old@x",
        "bob@x.example",
        "isda-support@example.edu",
        "Old",
        "old body",
    );
    sql_with_bytes(
        url,
        &format!("UPDATE messages SET raw = $1, raw_codec = 'none', body_text = 'stored body' WHERE id = {id}"),
        old.clone(),
    )
    .await;
    let t = s.ticket(1000).await.expect("read old").expect("ticket");
    assert_eq!(t.messages[0].body, "stored body");
    assert_eq!(s.raw_message(id).await.expect("raw"), Some(old.clone()));
    sql_with_bytes(
        url,
        "INSERT INTO outbox (kind, mail_from, rcpt, first_rcpt, subject, message_id, raw, status, attempts,
           next_attempt_at, created_at) VALUES ('report', 'd@x', '[\"a@x\"]', 'a@x', 's', 'old@x', $1, 'pending', 0, 0, 0)",
        mail.clone(),
    )
    .await;
    let claimed = s
        .claim_outbox("t", i64::MAX - 1, i64::MAX, 10)
        .await
        .expect("claim old");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].raw, mail);
    s.outbox_sent(claimed[0].id, "250 ok").await.expect("sent");

    // Corrupt rows: an error that says so, never a panic; a zstd bomb is
    // refused by its declared size before anything is allocated.
    sql_with_bytes(
        url,
        &format!("UPDATE messages SET raw = $1, raw_codec = 'zstd' WHERE id = {id}"),
        b"garbage".to_vec(),
    )
    .await;
    let e = s.raw_message(id).await.expect_err("corrupt");
    assert!(e.to_string().contains("not a zstd frame"), "{e}");
    assert!(s.ticket(1000).await.is_err());
    let bomb = zstd::bulk::compress(&vec![0u8; 128 << 20], 3).expect("bomb");
    sql_with_bytes(
        url,
        &format!("UPDATE messages SET raw = $1 WHERE id = {id}"),
        bomb.clone(),
    )
    .await;
    let e = s.raw_message(id).await.expect_err("bomb");
    assert!(e.to_string().contains("over the limit"), "{e}");
    let bad = s.queue_mail_alone(&new(&mail)).await.expect("queue");
    sql_with_bytes(
        url,
        &format!("UPDATE outbox SET raw = $1 WHERE id = {bad}"),
        bomb,
    )
    .await;
    let good = s.queue_mail_alone(&new(&mail)).await.expect("queue");
    let claimed = s
        .claim_outbox("t", i64::MAX - 1, i64::MAX, 10)
        .await
        .expect("claim past a bad row");
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![good]);
    let failed = s.list_outbox(Some("failed"), 10).await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, bad);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("over the limit"))
    );
    s.close().await;
}

#[tokio::test]
async fn batch_edges_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    batch_edges(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
}

#[tokio::test]
async fn batch_edges_postgres() {
    let db = PgDb::create("batch_edges").await;
    batch_edges(&db.url).await;
    db.drop_db().await;
}

#[tokio::test]
async fn stored_mail_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    stored_mail(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
}

#[tokio::test]
async fn stored_mail_postgres() {
    let db = PgDb::create("codec").await;
    stored_mail(&db.url).await;
    db.drop_db().await;
}

/// A message the store refuses even alone is set aside with the store's
/// reason and its own headers (read back from the one copy a prepared
/// message holds, its compressed bytes), and the rest of its batch is
/// committed: one bad message never blocks its mailbox.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_the_store_refuses_is_set_aside_with_its_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let p = pipeline(&url).await;
    // The store's refusal, made to order: a constraint on one subject.
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(
            "CREATE TRIGGER refuse_for_the_test BEFORE INSERT ON messages \
             WHEN NEW.subject = 'Refuse me' \
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END",
        )
        .execute(&mut c)
        .await
        .expect("trigger");
        let _ = c.close().await;
    }
    let raws = [
        message(
            "ok-1@x",
            "a@customer.example",
            "isda-support@example.edu",
            "First",
            "one",
        ),
        message(
            "bad@x",
            "b@customer.example",
            "isda-support@example.edu",
            "Refuse me",
            "two",
        ),
        message(
            "ok-2@x",
            "c@customer.example",
            "isda-support@example.edu",
            "Third",
            "three",
        ),
    ];
    let batch: Vec<_> = raws
        .iter()
        .enumerate()
        .map(|(n, raw)| p.prepare("isda-support", file(n), raw.clone()))
        .collect();
    let outcomes = p.commit(&batch, None).await.expect("commit");
    assert!(matches!(outcomes[0], Outcome::Created(_)), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], Outcome::Quarantined(_)),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[2], Outcome::Created(_)), "{outcomes:?}");
    let q = p.store().list_quarantine().await.expect("quarantine");
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(
        q[0].reason.starts_with("the store refused it:")
            && q[0].reason.contains("refused for the test"),
        "{}",
        q[0].reason
    );
    assert_eq!(q[0].message_id.as_deref(), Some("bad@x"));
    assert_eq!(q[0].subject.as_deref(), Some("Refuse me"));
    assert_eq!(q[0].size, raws[1].len() as i64);
    // Its headers, not its body.
    let headers = String::from_utf8_lossy(&q[0].headers).to_string();
    assert!(headers.contains("Message-ID: <bad@x>"), "{headers}");
    assert!(headers.contains("Subject: Refuse me"), "{headers}");
    assert!(!headers.contains("two"), "{headers}");
    p.store().close().await;
}
