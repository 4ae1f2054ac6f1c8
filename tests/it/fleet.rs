//! Several daemons on one database.
//!
//! - Leases on both backends: take, renew, expire, take over, lost lease,
//!   release; hostile names.
//! - The store's operator reads on both backends: gauges, ping, backup
//!   (SQLite online copy; PostgreSQL refused with the word pg_dump).
//! - A second `triaged run` on one SQLite file exits 2 and says why, while
//!   `ingest` and the read commands still work beside the daemon.
//! - Three daemons on one PostgreSQL database share 12 Dovecot mailboxes;
//!   one is killed -9 in the middle of 3,000 messages: every message one
//!   ticket, every acknowledgement sent and delivered exactly once, the dead
//!   daemon's mailboxes taken over by the others.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use triaged::dev::devstack::{Dovecot, Smtpd};
use triaged::store::Store;

use crate::harness::{Mailbox, PgDb, World, message, wait_for};

const T: Duration = Duration::from_secs(30);

async fn leases(url: &str) {
    let s = Store::open(url, 1000).await.expect("open store");
    let (a, b) = ("host:1:aa", "host:2:bb");
    let now = 1_000_000;
    // Take: a free lease is taken; held, it is refused to another.
    assert!(s.try_lease_at("mailbox:x", a, now, T).await.expect("take"));
    assert!(
        !s.try_lease_at("mailbox:x", b, now + 1, T)
            .await
            .expect("refused")
    );
    // Taking again what one holds extends it.
    assert!(
        s.try_lease_at("mailbox:x", a, now + 2, T)
            .await
            .expect("again")
    );
    // Renew: only the holder.
    assert!(
        s.renew_lease_at("mailbox:x", a, now + 10_000, T)
            .await
            .expect("renew")
    );
    assert!(
        !s.renew_lease_at("mailbox:x", b, now + 10_000, T)
            .await
            .expect("not b's")
    );
    let held = s.leases("mailbox:").await.expect("list");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].holder, a);
    assert_eq!(held[0].expires_at, now + 10_000 + 30_000);
    // Not expired a millisecond before its end; expired at it.
    assert!(
        !s.try_lease_at("mailbox:x", b, now + 39_999, T)
            .await
            .expect("not yet")
    );
    assert!(
        s.try_lease_at("mailbox:x", b, now + 40_000, T)
            .await
            .expect("expired: taken")
    );
    // The old holder has lost it: its renewal says so.
    assert!(
        !s.renew_lease_at("mailbox:x", a, now + 40_001, T)
            .await
            .expect("lost")
    );
    // Take over from a holder known to be dead, before expiry; not from
    // one that no longer holds it.
    assert!(
        !s.take_over_lease_at("mailbox:x", a, "host:3:cc", now + 40_002, T)
            .await
            .expect("a is not the holder")
    );
    assert!(
        s.take_over_lease_at("mailbox:x", b, "host:3:cc", now + 40_002, T)
            .await
            .expect("take over")
    );
    assert_eq!(
        s.leases("mailbox:x").await.expect("list")[0].holder,
        "host:3:cc"
    );
    // Release: only by the holder; then anyone takes it at once.
    s.release_lease("mailbox:x", b)
        .await
        .expect("release by b: nothing");
    assert!(
        !s.try_lease_at("mailbox:x", a, now + 40_003, T)
            .await
            .expect("still c's")
    );
    s.release_lease("mailbox:x", "host:3:cc")
        .await
        .expect("release");
    assert!(
        s.try_lease_at("mailbox:x", a, now + 40_004, T)
            .await
            .expect("free again")
    );
    // Prefixes select: the scheduler's lease is apart from the mailboxes'.
    assert!(
        s.try_lease_at("scheduler", b, now, T)
            .await
            .expect("scheduler")
    );
    assert!(
        s.try_lease_at("daemon:host:2:bb", b, now, T)
            .await
            .expect("liveness")
    );
    assert_eq!(s.leases("mailbox:").await.expect("list").len(), 1);
    assert_eq!(s.leases("daemon:").await.expect("list").len(), 1);
    assert_eq!(s.leases("").await.expect("all").len(), 3);
    assert_eq!(
        s.forget_expired_leases("daemon:", now + 30_001)
            .await
            .expect("forget"),
        1
    );
    assert_eq!(s.leases("scheduler").await.expect("kept").len(), 1);
    // Hostile names and holders: quotes, LIKE wildcards, NUL, 10 KB.
    let long = "m".repeat(10_000);
    for name in [
        "mailbox:it's",
        "mailbox:%",
        "mailbox:_",
        "mailbox:a\0b",
        long.as_str(),
    ] {
        assert!(
            s.try_lease_at(name, "h'\0%", now, T)
                .await
                .expect("hostile take"),
            "{name:?}"
        );
        assert!(
            !s.try_lease_at(name, b, now, T)
                .await
                .expect("hostile refused")
        );
    }
    // `%` and `_` are no wildcards: the prefix matches literally.
    assert_eq!(s.leases("mailbox:%").await.expect("literal").len(), 1);
    assert_eq!(s.leases("mailbox:_").await.expect("literal").len(), 1);
    s.close().await;
}

#[tokio::test]
async fn leases_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    leases(&format!("sqlite://{}", dir.path().join("l.db").display())).await;
}

#[tokio::test]
async fn leases_postgres() {
    let db = PgDb::create("leases").await;
    leases(&db.url).await;
    db.drop_db().await;
}

/// Two processes' worth of stores race for one lease many times: each round
/// exactly one wins.
async fn lease_races(url: &str) {
    let one = Store::open(url, 1000).await.expect("open");
    let two = Store::open(url, 1000).await.expect("open");
    for round in 0..50i64 {
        let now = 10_000_000 + round * 60_000;
        let (h1, h2) = (format!("one-{round}"), format!("two-{round}"));
        let (x, y) = tokio::join!(
            one.try_lease_at("race", &h1, now, T),
            two.try_lease_at("race", &h2, now, T),
        );
        let won = [x, y]
            .into_iter()
            .map(|r| r.expect("race"))
            .filter(|w| *w)
            .count();
        assert_eq!(won, 1, "round {round}");
    }
    one.close().await;
    two.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_races_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    lease_races(&format!("sqlite://{}", dir.path().join("r.db").display())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_races_postgres() {
    let db = PgDb::create("lease_races").await;
    lease_races(&db.url).await;
    db.drop_db().await;
}

/// Gauges after a few ingested messages, on either backend.
async fn gauges(url: &str) {
    let desk = crate::harness::ShippedDesk::new(Some(url));
    let raws: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            message(
                &format!("g{i}@x"),
                &format!("c{i}@customers.example"),
                "isda-support@example.edu",
                &format!("Gauge {i}"),
                "Body.",
            )
        })
        .collect();
    desk.ingest("isda-support", &raws);
    let s = Store::open(url, 1000).await.expect("open");
    s.ping().await.expect("ping");
    let g = s.gauges(i64::MAX).await.expect("gauges");
    assert_eq!(g.open.iter().map(|(_, _, n)| n).sum::<i64>(), 3, "{g:?}");
    assert!(
        g.open
            .iter()
            .all(|(q, p, _)| !q.is_empty() && !p.is_empty()),
        "{g:?}"
    );
    assert_eq!(g.outbox, vec![("pending".to_string(), 3)], "{g:?}");
    // Every ticket's initial response is due before the end of time.
    assert_eq!(g.past_due, 3);
    assert_eq!(s.gauges(0).await.expect("gauges").past_due, 0);
    s.close().await;
}

#[tokio::test]
async fn gauges_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    gauges(&format!("sqlite://{}", dir.path().join("g.db").display())).await;
}

#[tokio::test]
async fn gauges_postgres() {
    let db = PgDb::create("gauges").await;
    gauges(&db.url).await;
    db.drop_db().await;
}

/// `triaged backup`: an online copy of SQLite that opens with every ticket;
/// an existing target refused; PostgreSQL pointed at pg_dump.
#[tokio::test]
async fn backup_sqlite_and_postgres() {
    let desk = crate::harness::ShippedDesk::new(None);
    let raws = vec![message(
        "b1@x",
        "c@customers.example",
        "isda-support@example.edu",
        "Back me up",
        "Body.",
    )];
    desk.ingest("isda-support", &raws);
    // A quote in the path is data, not SQL.
    let target = desk.dir.path().join("it's a copy.db");
    let t = target.display().to_string();
    let out = desk.run(&["backup", &t]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = Store::open(&format!("sqlite://{t}"), 1000)
        .await
        .expect("open copy");
    assert_eq!(copy.counts().await.expect("counts").tickets, 1);
    copy.close().await;
    let again = desk.run(&["backup", &t]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{again:?}"
    );

    let db = PgDb::create("backup").await;
    let pg = crate::harness::ShippedDesk::new(Some(&db.url));
    let target = pg.dir.path().join("pg.db");
    let out = pg.run(&["backup", &target.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pg_dump"),
        "{out:?}"
    );
    assert!(!target.exists());
    db.drop_db().await;
}

/// A second daemon on the same SQLite file exits 2 and says why; the first
/// keeps running, and `ingest` and the read commands work beside it.
#[tokio::test]
async fn second_daemon_on_one_sqlite_file_refuses() {
    let user = "solo@example.edu";
    let world = World::new(
        &[Mailbox {
            name: "solo",
            user,
            queue: "Customer-Support",
            after: "seen",
        }],
        None,
        "",
    );
    let first = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(20), || first.log().contains("watching")),
        "first daemon did not start: {}",
        first.log()
    );
    let second = world.triaged(&["run"]);
    assert_eq!(second.status.code(), Some(2), "{second:?}");
    let words = String::from_utf8_lossy(&second.stderr);
    assert!(
        words.contains("another `triaged run` is using the SQLite database")
            && words.contains("triaged.db.lock"),
        "{words}"
    );
    // The first one still works, and so do the other commands.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("m.eml");
    std::fs::write(
        &file,
        message("side@x", "c@customers.example", user, "From a file", "Hi."),
    )
    .expect("write");
    let ingest = world.triaged(&["ingest", "--mailbox", "solo", &file.display().to_string()]);
    assert!(ingest.status.success(), "{ingest:?}");
    world
        .dovecot
        .append(
            user,
            "INBOX",
            &[message(
                "imap@x",
                "d@customers.example",
                user,
                "Over IMAP",
                "Hi.",
            )],
        )
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(20), || world.tickets().len() == 2),
        "log: {}",
        first.log()
    );
    let status = first.terminate(Duration::from_secs(30));
    assert!(status.success());
    // Once it is gone, a daemon starts again on the file.
    let again = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(20), || again.log().contains("watching")),
        "{}",
        again.log()
    );
}

const MAILBOXES: usize = 12;
const MESSAGES: usize = 3000;
const CUSTOMERS: usize = 30;

/// Which daemon (by pid) holds each mailbox lease now, unexpired.
async fn holders(url: &str) -> BTreeMap<String, u32> {
    let s = Store::open(url, 1000).await.expect("open");
    let now = triaged::clock::now_ms();
    let out = s
        .leases("mailbox:")
        .await
        .expect("leases")
        .into_iter()
        .filter(|l| l.expires_at > now)
        .filter_map(|l| {
            let pid = l.holder.rsplit(':').nth(1)?.parse().ok()?;
            Some((l.name, pid))
        })
        .collect();
    s.close().await;
    out
}

/// The subjects of every message in each customer's INBOX.
async fn acknowledgements(dovecot: &Dovecot) -> Vec<String> {
    let mut all = Vec::new();
    for c in 0..CUSTOMERS {
        let mut s = dovecot
            .session(&format!("cust{c:02}@customers.example"))
            .await
            .expect("session");
        s.select("INBOX").await.expect("select");
        {
            let mut stream = s
                .fetch("1:*", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
                .await
                .expect("fetch");
            while let Some(f) = stream.try_next().await.expect("fetch item") {
                let h = String::from_utf8_lossy(f.header().unwrap_or_default()).into_owned();
                all.push(h.trim().to_string());
            }
        }
        let _ = s.logout().await;
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_twelve_mailboxes_and_survive_a_kill() {
    let started = Instant::now();
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let db = PgDb::create("fleet").await;
    let names: Vec<String> = (0..MAILBOXES).map(|i| format!("fleet-{i:02}")).collect();
    let users: Vec<String> = names.iter().map(|n| format!("{n}@example.edu")).collect();
    let mailboxes: Vec<Mailbox<'_>> = names
        .iter()
        .zip(&users)
        .map(|(n, u)| Mailbox {
            name: n,
            user: u,
            queue: "Customer-Support",
            after: "seen",
        })
        .collect();
    let extra = format!(
        "[cluster]\nlease_secs = 3\n\
         [notify]\nack_limit_per_hour = 100000\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\ntimeout_secs = 5\nconcurrency = 4\nretry_initial_secs = 1\nretry_max_secs = 2\n",
        smtpd.port
    );
    let world = World::with(dovecot, &mailboxes, Some(&db.url), &extra);
    // Every mailbox's share of the messages, from 30 customers, in place
    // before the daemons start.
    for (m, user) in users.iter().enumerate() {
        let raws: Vec<Vec<u8>> = (0..MESSAGES / MAILBOXES)
            .map(|k| {
                let i = m * (MESSAGES / MAILBOXES) + k;
                message(
                    &format!("fleet-{i}@customers.example"),
                    &format!("cust{:02}@customers.example", i % CUSTOMERS),
                    user,
                    &format!("Fleet case {i}"),
                    &format!("Message {i} of the fleet test."),
                )
            })
            .collect();
        world.dovecot.deliver_files(user, &raws).expect("deliver");
    }
    // Three hosts' worth: the dead daemon is not recognised as a dead
    // process of this host, its leases have to expire.
    let mut daemons: Vec<_> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|node| world.start_daemon_with(&[("TRIAGED_NODE_NAME", node)]))
        .collect();
    let logs = |daemons: &[crate::harness::Daemon]| {
        daemons
            .iter()
            .map(|d| d.log())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // Each daemon comes to watch its share: four mailboxes.
    let mut balanced = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let h = holders(&db.url).await;
        let mut per: BTreeMap<u32, usize> = BTreeMap::new();
        for pid in h.values() {
            *per.entry(*pid).or_default() += 1;
        }
        if h.len() == MAILBOXES && per.len() == 3 && per.values().all(|&n| n == 4) {
            balanced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        balanced,
        "leases not shared 4/4/4: {:?}\n{}",
        holders(&db.url).await,
        logs(&daemons)
    );

    // Kill -9 one of them in the middle.
    let mid = Instant::now();
    assert!(
        wait_for(Duration::from_secs(120), || world.stats()["tickets"]
            .as_i64()
            .unwrap_or(0)
            >= (MESSAGES / 3) as i64),
        "a third of the messages not ticketed: {}\n{}",
        world.stats(),
        logs(&daemons)
    );
    let victim = daemons.remove(1);
    let victim_pid = victim.child.id();
    let theirs: BTreeSet<String> = holders(&db.url)
        .await
        .into_iter()
        .filter(|(_, pid)| *pid == victim_pid)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(theirs.len(), 4, "the victim held {theirs:?}");
    let at_kill = world.stats();
    victim.kill9();
    let killed = Instant::now();

    // Its mailboxes are taken over by the two left (within the lease time
    // and a round, give or take a loaded machine), and everything is ingested.
    let deadline = Instant::now() + Duration::from_secs(30);
    let taken_over = loop {
        let h = holders(&db.url).await;
        if theirs
            .iter()
            .all(|n| h.get(n).is_some_and(|p| *p != victim_pid))
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        taken_over,
        "the dead daemon's mailboxes were not taken over: {:?}\n{}",
        holders(&db.url).await,
        logs(&daemons)
    );
    let takeover = killed.elapsed();
    assert!(
        wait_for(Duration::from_secs(150), || world.stats()["tickets"]
            .as_i64()
            .unwrap_or(0)
            >= MESSAGES as i64),
        "not every message ticketed: {}\n{}",
        world.stats(),
        logs(&daemons)
    );
    let ingested = mid.elapsed();
    // Every acknowledgement leaves the outbox (the dead daemon's claimed
    // mail once its claim expires).
    let all_sent = || {
        let out = world.json(&["outbox", "list", "--json", "--limit", "100000"]);
        let rows = out.as_array().cloned().unwrap_or_default();
        rows.len() >= MESSAGES && rows.iter().all(|r| r["status"] == "sent")
    };
    assert!(
        wait_for(Duration::from_secs(120), all_sent),
        "outbox not drained\n{}",
        logs(&daemons)
    );

    let stats = world.stats();
    assert_eq!(stats["tickets"], MESSAGES as i64, "{stats}");
    assert_eq!(stats["messages"], MESSAGES as i64, "{stats}");
    assert_eq!(stats["quarantined"], 0, "{stats}");
    let outbox = world.json(&["outbox", "list", "--json", "--limit", "100000"]);
    let rows = outbox.as_array().cloned().unwrap_or_default();
    let acks: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["kind"] == "acknowledgement")
        .collect();
    assert_eq!(acks.len(), MESSAGES, "one acknowledgement per ticket");
    let per_ticket: BTreeSet<i64> = acks
        .iter()
        .filter_map(|r| r["ticket_number"].as_i64())
        .collect();
    assert_eq!(per_ticket.len(), MESSAGES);

    // Delivered once each: every ticket's tag in a customer's mail. The one
    // exception is the at-least-once window of the outbox (ARCHITECTURE,
    // "Mail commits with its cause"): a mail the killed daemon's sender had
    // handed to the SMTP server but not yet marked sent is sent again by
    // another daemon; at most one per SMTP lane (concurrency = 4).
    let tags_of = |delivered: &[String]| {
        let mut tags: BTreeMap<String, usize> = BTreeMap::new();
        for subject in delivered {
            if let Some(tag) = subject.split('[').nth(1).and_then(|t| t.split(']').next()) {
                *tags.entry(tag.to_string()).or_default() += 1;
            }
        }
        tags
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (delivered, tags) = loop {
        let d = acknowledgements(&world.dovecot).await;
        let tags = tags_of(&d);
        if tags.len() >= MESSAGES || Instant::now() > deadline {
            break (d, tags);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        tags.len(),
        MESSAGES,
        "{} tickets' acknowledgements delivered of {MESSAGES}",
        tags.len()
    );
    let resent = delivered.len() - MESSAGES;
    let repeated: Vec<_> = tags.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        resent <= 4 && repeated.iter().all(|(_, n)| **n == 2),
        "delivered more than once beyond the killed sender's lanes: {repeated:?}"
    );

    for d in daemons {
        assert!(d.terminate(Duration::from_secs(60)).success());
    }
    // A clean stop releases every lease at once.
    assert!(holders(&db.url).await.is_empty());
    eprintln!(
        "fleet: {MESSAGES} messages, {MAILBOXES} mailboxes, 3 daemons; tickets at kill: {}; \
         takeover {:.1} s after kill -9; all ticketed {:.1} s after the kill window opened; \
         {resent} acknowledgements resent (killed in the SMTP window); whole test {:.1} s",
        at_kill["tickets"],
        takeover.as_secs_f64(),
        ingested.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    db.drop_db().await;
}

/// A daemon whose mailbox lease is taken from it stops that watcher (takes
/// no more mail from the mailbox), keeps trying, and watches again once the
/// lease is free.
#[tokio::test]
async fn a_lost_lease_stops_the_watcher_until_it_is_taken_again() {
    let db = PgDb::create("lost_lease").await;
    let user = "lost@example.edu";
    let world = World::new(
        &[Mailbox {
            name: "lost",
            user,
            queue: "Customer-Support",
            after: "seen",
        }],
        Some(&db.url),
        "[cluster]\nlease_secs = 3\n",
    );
    let daemon = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .log()
            .contains("mailbox connected")),
        "{}",
        daemon.log()
    );
    let store = Store::open(&db.url, 1000).await.expect("open");
    let lease = &store.leases("mailbox:lost").await.expect("leases")[0];
    let thief = "elsewhere:1:feed";
    let now = triaged::clock::now_ms();
    assert!(
        store
            .take_over_lease_at(
                "mailbox:lost",
                &lease.holder,
                thief,
                now,
                Duration::from_secs(600)
            )
            .await
            .expect("steal")
    );
    assert!(
        wait_for(Duration::from_secs(10), || daemon.log().contains(
            "mailbox lease lost to another daemon; stopping its watcher"
        )),
        "{}",
        daemon.log()
    );
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .log()
            .contains("mailbox closed for shutdown")),
        "{}",
        daemon.log()
    );
    world
        .dovecot
        .append(
            user,
            "INBOX",
            &[message(
                "while-lost@x",
                "c@customers.example",
                user,
                "While lost",
                "Hi.",
            )],
        )
        .await
        .expect("append");
    // Not its mailbox any more: nothing is taken while the thief holds it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(world.tickets().len(), 0, "{}", daemon.log());
    store
        .release_lease("mailbox:lost", thief)
        .await
        .expect("release");
    assert!(
        wait_for(Duration::from_secs(20), || world.tickets().len() == 1),
        "not watched again: {}",
        daemon.log()
    );
    store.close().await;
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    db.drop_db().await;
}
