//! Poison messages: a message that mail-parser cannot hold (issue #7, item 2),
//! and a message that makes the daemon die however often it is restarted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Daemon, Mailbox, PW_ENV, PgDb, World, bin, message, search, wait_for};

const SUPPORT: &str = "isda-support@example.edu";

fn support() -> Vec<Mailbox<'static>> {
    vec![Mailbox {
        name: "isda-support",
        user: SUPPORT,
        queue: "Customer-Support",
        after: "seen",
    }]
}

/// The reproduction of the issue: 50,000 nested message/rfc822 parts, 2.2 MB.
fn nested() -> Vec<u8> {
    let mut raw = b"From: a@customer.example\r\nTo: isda-support@example.edu\r\nSubject: nested\r\nMessage-ID: <n@x>\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
    for _ in 0..50_000 {
        raw.extend_from_slice(b"Subject: l\r\nContent-Type: message/rfc822\r\n\r\n");
    }
    raw.extend_from_slice(b"From: i@x\r\n\r\nhi\r\n");
    raw
}

fn deliveries(world: &World) -> i64 {
    let s = world.stats();
    ["messages", "duplicates", "quarantined"]
        .iter()
        .map(|k| s[k].as_i64().unwrap_or(0))
        .sum()
}

fn subjects(world: &World) -> Vec<String> {
    let mut s: Vec<String> = world
        .tickets()
        .iter()
        .filter_map(|t| t["subject"].as_str().map(str::to_string))
        .collect();
    s.sort();
    s
}

/// The problems recorded on the first message of ticket `subject`.
fn problems_of(world: &World, subject: &str) -> Vec<String> {
    let number = world
        .tickets()
        .iter()
        .find(|t| t["subject"] == subject)
        .and_then(|t| t["number"].as_i64())
        .unwrap_or_else(|| panic!("no ticket {subject:?}"));
    let t = world.json(&["tickets", "show", &number.to_string(), "--json"]);
    t["messages"][0]["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `triaged ingest nested.eml` died with "has overflowed its stack" (exit
/// 134); now the message is a ticket from its headers, its body kept raw.
#[test]
fn ingest_of_deeply_nested_message_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nested.eml");
    std::fs::write(&file, nested()).expect("write");
    let started = Instant::now();
    let out = Command::new(bin())
        .current_dir(dir.path())
        .args(["ingest", "--json"])
        .arg(&file)
        .env_remove("TRIAGED_CONFIG")
        .env_remove("TRIAGED_DATABASE_URL")
        .output()
        .expect("run");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "status {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["new_tickets"], 1, "{summary}");
    eprintln!("ingest of the nested message (debug build): {elapsed:?}");

    let show = Command::new(bin())
        .current_dir(dir.path())
        .args(["tickets", "list", "--json"])
        .env_remove("TRIAGED_CONFIG")
        .env_remove("TRIAGED_DATABASE_URL")
        .output()
        .expect("run");
    let list: Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(list[0]["subject"], "nested", "{list}");
    let number = list[0]["number"].as_i64().expect("number").to_string();
    let show = Command::new(bin())
        .current_dir(dir.path())
        .args(["tickets", "show", &number, "--json"])
        .env_remove("TRIAGED_CONFIG")
        .env_remove("TRIAGED_DATABASE_URL")
        .output()
        .expect("run");
    let t: Value = serde_json::from_slice(&show.stdout).expect("json");
    let problems = t["messages"][0]["problems"].to_string();
    assert!(
        problems.contains("MIME structure not parsed: more than 1000 nested message parts"),
        "{problems}"
    );
    assert_eq!(t["messages"][0]["body_source"], "raw");
}

/// Over IMAP the nested message stopped the daemon on every restart and
/// nothing after it was ingested; now every message flows.
#[tokio::test(flavor = "multi_thread")]
async fn imap_mailbox_with_a_nested_message_flows() {
    let world = World::new(&support(), None, "");
    let mut mail = Vec::new();
    for i in 0..3 {
        mail.push(message(
            &format!("before-{i}@customer.example"),
            "ann@customer.example",
            SUPPORT,
            &format!("before {i}"),
            "hello",
        ));
    }
    mail.push(nested());
    for i in 0..3 {
        mail.push(message(
            &format!("after-{i}@customer.example"),
            "bob@customer.example",
            SUPPORT,
            &format!("after {i}"),
            "hello",
        ));
    }
    world
        .dovecot
        .append(SUPPORT, "INBOX", &mail)
        .await
        .expect("append");
    let mut daemon = world.start_daemon();
    let done = wait_for(Duration::from_secs(60), || deliveries(&world) == 7);
    assert!(
        done,
        "{}; exit {:?}; log:\n{}",
        world.stats(),
        daemon.child.try_wait(),
        daemon.log()
    );
    assert!(
        daemon.child.try_wait().ok().flatten().is_none(),
        "the daemon died"
    );
    assert_eq!(
        subjects(&world),
        [
            "after 0", "after 1", "after 2", "before 0", "before 1", "before 2", "nested"
        ]
    );
    let problems = problems_of(&world, "nested");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("MIME structure not parsed")),
        "{problems:?}"
    );
    let mut unseen = usize::MAX;
    for _ in 0..100 {
        unseen = search(&world.dovecot, SUPPORT, "INBOX", "UNSEEN").await;
        if unseen == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unseen, 0);
    assert!(daemon.terminate(Duration::from_secs(15)).success());
}

/// The daemon with the debug-build fault hook: it aborts while preparing a
/// message whose Subject contains `poison_subject`.
fn start_poisoned_daemon(world: &World, poison_subject: &str, n: usize) -> Daemon {
    let log = world.dir.path().join(format!("poisoned-{n}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(bin())
        .arg("--config")
        .arg(&world.config)
        .arg("run")
        .env(PW_ENV, triaged::dev::devstack::PASSWORD)
        .env("RUST_LOG", "info")
        .env("TRIAGED_FAULT_ABORT_ON_SUBJECT", poison_subject)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn daemon");
    Daemon { child, log }
}

/// A message that kills the daemon every time it is parsed (the fault hook
/// aborts the process, as a stack overflow does). Restarted like a supervisor
/// would, the daemon forgives one death, takes the suspects of the chunk one at
/// a time, and sets the poison message aside with its reason: every other
/// message, before and after it in the same chunk, becomes a ticket.
async fn poison_message_is_set_aside_after_restarts(database_url: Option<&str>) {
    let world = World::new(&support(), database_url, "");
    let text = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        text.replace(
            "poll_interval_secs = 2\n",
            "poll_interval_secs = 1\nfetch_batch = 5\n",
        ),
    )
    .expect("config");
    let mut mail = Vec::new();
    for i in 0..12 {
        let subject = if i == 6 {
            "POISON pill".to_string()
        } else {
            format!("normal {i:02}")
        };
        mail.push(message(
            &format!("m{i}@customer.example"),
            &format!("user{i}@customer.example"),
            SUPPORT,
            &subject,
            "hello",
        ));
    }
    world
        .dovecot
        .append(SUPPORT, "INBOX", &mail)
        .await
        .expect("append");

    let mut deaths = Vec::new();
    let mut daemon = start_poisoned_daemon(&world, "POISON", 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "{}; deaths {deaths:?}; log:\n{}",
            world.stats(),
            daemon.log()
        );
        if deliveries(&world) == 12 {
            break;
        }
        if let Ok(Some(status)) = daemon.child.try_wait() {
            // An exit (not the abort the fault hook causes) says why in its log.
            deaths.push(match status.code() {
                Some(_) => format!("{status}; log:\n{}", daemon.log()),
                None => status.to_string(),
            });
            assert!(
                deaths.len() <= 5,
                "the poison message stopped the mailbox: {deaths:?}; {}; log:\n{}",
                world.stats(),
                daemon.log()
            );
            daemon = start_poisoned_daemon(&world, "POISON", deaths.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Dies on the chunk, then twice on the message alone; then sets it aside.
    assert_eq!(deaths.len(), 3, "{deaths:?}");

    let mut expected: Vec<String> = (0..12)
        .filter(|&i| i != 6)
        .map(|i| format!("normal {i:02}"))
        .collect();
    expected.sort();
    assert_eq!(subjects(&world), expected);
    let stats = world.stats();
    assert_eq!(stats["tickets"], 11, "{stats}");
    assert_eq!(stats["quarantined"], 1, "{stats}");
    let q = world.json(&["quarantine", "list", "--json"]);
    let q = q.as_array().expect("list");
    assert_eq!(q[0]["subject"], "POISON pill", "{q:?}");
    assert_eq!(q[0]["message_id"], "m6@customer.example", "{q:?}");
    let reason = q[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the daemon stopped while processing this message")
            && reason.contains("set aside"),
        "{reason}"
    );
    // Still alive, and everything acknowledged on the server.
    assert!(daemon.child.try_wait().ok().flatten().is_none());
    let mut unseen = usize::MAX;
    for _ in 0..100 {
        unseen = search(&world.dovecot, SUPPORT, "INBOX", "UNSEEN").await;
        if unseen == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unseen, 0);
    assert!(daemon.terminate(Duration::from_secs(15)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_message_is_set_aside_after_restarts_sqlite() {
    poison_message_is_set_aside_after_restarts(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_message_is_set_aside_after_restarts_postgres() {
    let db = PgDb::create("poison").await;
    poison_message_is_set_aside_after_restarts(Some(&db.url)).await;
    db.drop_db().await;
}

/// kill -9 aimed at the middle of the work (after the first tickets appear),
/// again and again: the in-flight markers it leaves make the next run take
/// those messages one at a time, but a kill is not a poison message: every
/// message ends as exactly one ticket and none is set aside.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_mid_chunk_sets_nothing_aside() {
    let world = World::new(&support(), None, "[ingest]\nbatch_size = 16\n");
    let text = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        text.replace(
            "poll_interval_secs = 2\n",
            "poll_interval_secs = 1\nfetch_batch = 20\nidle = false\n",
        ),
    )
    .expect("config");
    let total = 300;
    let mail: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            message(
                &format!("k{i}@customer.example"),
                &format!("user{i}@customer.example"),
                SUPPORT,
                &format!("Kill test message {i}"),
                &"Some body text. ".repeat(40),
            )
        })
        .collect();
    world
        .dovecot
        .deliver_files(SUPPORT, &mail)
        .expect("deliver");

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7);
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let mut kills = Vec::new();
    for _ in 0..6 {
        let before = world.stats()["tickets"].as_i64().unwrap_or(0);
        if before >= total - 40 {
            break;
        }
        let daemon = world.start_daemon();
        // Wait until this run is committing, then kill it a moment later.
        wait_for(Duration::from_secs(30), || {
            world.stats()["tickets"].as_i64().unwrap_or(0) > before
        });
        let delay = next(120);
        std::thread::sleep(Duration::from_millis(delay));
        daemon.kill9();
        kills.push((delay, world.stats()["tickets"].as_i64().unwrap_or(-1)));
    }
    let daemon = world.start_daemon();
    let done = wait_for(Duration::from_secs(90), || deliveries(&world) == total);
    let stats = world.stats();
    assert!(
        done,
        "seed {seed}, kills {kills:?}: {stats}; log:\n{}",
        daemon.log()
    );
    assert!(daemon.terminate(Duration::from_secs(15)).success());
    assert_eq!(
        stats["tickets"], total,
        "seed {seed}, kills {kills:?}: {stats}"
    );
    assert_eq!(
        stats["messages"], total,
        "seed {seed}, kills {kills:?}: {stats}"
    );
    assert_eq!(
        stats["quarantined"], 0,
        "seed {seed}, kills {kills:?}: {stats}"
    );
    eprintln!("kill -9 mid-chunk: seed {seed}, kills (ms after a commit, tickets then): {kills:?}");
}
