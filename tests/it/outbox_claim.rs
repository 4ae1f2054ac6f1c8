//! The outbox is a claimed queue: two senders (two daemons' worth: two
//! stores, two pools) on one PostgreSQL database deliver 500 queued mails
//! through a real OpenSMTPD into Dovecot, and each arrives exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;
use triaged::config::{Config, DEFAULT_CONFIG, SmtpConfig};
use triaged::dev::devstack::{Dovecot, Smtpd};
use triaged::notify::sender::{Sender, transports};
use triaged::pipeline::{Origin, Outcome, Pipeline};
use triaged::store::Store;

use crate::harness::{PgDb, message, queue_plain_mail, search};

const MAILS: usize = 500;
const TO: &str = "claims@example.edu";

/// The subjects of every message in `user`'s INBOX, with how often each came.
async fn subjects(dovecot: &Dovecot, user: &str) -> BTreeMap<String, usize> {
    let mut s = dovecot.session(user).await.expect("session");
    s.select("INBOX").await.expect("select");
    let mut out = BTreeMap::new();
    {
        let mut stream = s.fetch("1:*", "BODY.PEEK[HEADER]").await.expect("fetch");
        while let Some(f) = stream.try_next().await.expect("fetch item") {
            let header = String::from_utf8_lossy(f.header().unwrap_or_default()).into_owned();
            let subject = header
                .lines()
                .find_map(|l| l.strip_prefix("Subject:"))
                .unwrap_or("(none)")
                .trim()
                .to_string();
            *out.entry(subject).or_insert(0) += 1;
        }
    }
    let _ = s.logout().await;
    out
}

/// One ticket to hang the mail on, and `MAILS` mails queued about it.
async fn queue(url: &str) {
    let config = Config::parse(DEFAULT_CONFIG, "default").expect("default config");
    let store = Store::open(url, 1000).await.expect("open store");
    let pipeline = Pipeline::new(Arc::new(config), store.clone()).expect("rules");
    let p = pipeline.prepare(
        "isda-support",
        Origin::File {
            path: "claim.eml".to_string(),
        },
        message(
            "claim@x",
            "ann@customers.example",
            "isda-support@example.edu",
            "Many mails",
            "Send them all.",
        ),
    );
    let outcomes = pipeline.commit(&[p], None).await.expect("commit");
    let Outcome::Created(number) = outcomes[0] else {
        panic!("no ticket: {outcomes:?}");
    };
    for chunk in (0..MAILS).collect::<Vec<_>>().chunks(100) {
        let mut tx = store.begin().await.expect("begin");
        for i in chunk {
            queue_plain_mail(
                &mut tx,
                number,
                TO,
                &format!("claim {i:03}"),
                &format!("claim-{i}@example.edu"),
                &format!("mail {i}"),
            )
            .await;
        }
        tx.commit().await.expect("commit mail");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_senders_on_one_postgres_send_each_mail_once() {
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let db = PgDb::create("outbox_claim").await;
    queue(&db.url).await;

    let smtp: SmtpConfig = toml::from_str(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nconcurrency = 8\nretry_initial_secs = 1\nretry_max_secs = 2\n",
        smtpd.port
    ))
    .expect("smtp config");
    let shutdown = CancellationToken::new();
    let mut senders = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..2 {
        let store = Store::open(&db.url, 1000).await.expect("open store");
        stores.push(store.clone());
        senders.push(tokio::spawn(
            Sender {
                store,
                transports: transports(&smtp).expect("transports"),
                config: smtp.clone(),
                wake: Arc::new(tokio::sync::Notify::new()),
                shutdown: shutdown.clone(),
            }
            .run(),
        ));
    }

    // Every mail recorded as sent, then every mail in the mailbox.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let sent = stores[0]
            .list_outbox(Some("sent"), i64::MAX)
            .await
            .expect("outbox")
            .len();
        if sent >= MAILS || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    for s in senders {
        s.await.expect("sender");
    }
    let pending = stores[0]
        .list_outbox(Some("pending"), i64::MAX)
        .await
        .expect("outbox");
    assert!(pending.is_empty(), "{} mails still pending", pending.len());
    while std::time::Instant::now() < deadline && search(&dovecot, TO, "INBOX", "ALL").await < MAILS
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time for a second copy, had one been sent, to arrive too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = subjects(&dovecot, TO).await;
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    let total: usize = got.values().sum();
    assert!(
        twice.is_empty(),
        "{} of {MAILS} mails delivered more than once ({total} deliveries), e.g. {:?}",
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(got.len(), MAILS, "mails missing");
    assert_eq!(total, MAILS);
    for s in &stores {
        s.close().await;
    }
    drop(smtpd);
    db.drop_db().await;
}

/// A claim keeps other senders off a mail until it expires; then another
/// sender takes it (a crashed sender's mail is sent later), and a mail
/// released unsent is free at once.
async fn claims_expire(url: &str) {
    queue(url).await;
    let a = Store::open(url, 1000).await.expect("open store");
    let b = Store::open(url, 1000).await.expect("open store");
    let now = triaged::clock::now_ms();
    let mine = a
        .claim_outbox("a", now, now + 60_000, 10)
        .await
        .expect("claim");
    assert_eq!(mine.len(), 10);
    assert!(mine.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    let theirs = b
        .claim_outbox("b", now, now + 60_000, 1000)
        .await
        .expect("claim");
    assert_eq!(
        theirs.len(),
        MAILS - 10,
        "b takes only what a has not claimed"
    );
    assert!(theirs.iter().all(|m| mine.iter().all(|x| x.id != m.id)));
    // Nothing is free while the claims run.
    let none = b
        .claim_outbox("c", now + 1, now + 60_000, 1000)
        .await
        .expect("claim");
    assert!(none.is_empty());
    // a dies; once its claim has expired, c takes its mail.
    let later = now + 60_001;
    let taken = b
        .claim_outbox("c", later, later + 60_000, 5)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 5);
    // Released unsent: free at once.
    let ids: Vec<i64> = taken.iter().map(|m| m.id).collect();
    b.release_outbox("c", &ids).await.expect("release");
    let again = a
        .claim_outbox("a", later + 1, later + 60_000, 5)
        .await
        .expect("claim");
    assert_eq!(again.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    // The next due time waits for the claims (the earliest: a's first).
    let due = a.next_outbox_due().await.expect("due").expect("pending");
    assert_eq!(due, now + 60_000);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn claims_expire_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    claims_expire(&format!("sqlite://{}", dir.path().join("t.db").display())).await;
}

#[tokio::test]
async fn claims_expire_postgres() {
    let db = PgDb::create("outbox_expire").await;
    claims_expire(&db.url).await;
    db.drop_db().await;
}
