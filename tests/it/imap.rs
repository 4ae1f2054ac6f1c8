//! End to end over IMAP: real Dovecot, the real daemon binary.

use std::time::Duration;

use crate::harness::{Mailbox, PgDb, World, message, search, wait_for};

const SUPPORT: &str = "isda-support@example.edu";
const MAP: &str = "map-support@example.edu";

fn two_mailboxes() -> Vec<Mailbox<'static>> {
    vec![
        Mailbox {
            name: "isda-support",
            user: SUPPORT,
            queue: "Customer-Support",
            after: "seen",
        },
        Mailbox {
            name: "map-support",
            user: MAP,
            queue: "ProductionDefect",
            after: "move",
        },
    ]
}

fn deliveries(world: &World) -> i64 {
    let s = world.stats();
    ["messages", "duplicates", "quarantined"]
        .iter()
        .map(|k| s[k].as_i64().unwrap_or(0))
        .sum()
}

async fn tickets_threads_duplicates_and_flags(database_url: Option<&str>) {
    let world = World::new(&two_mailboxes(), database_url, "");
    let daemon = world.start_daemon();

    let first = message(
        "t1@customer.example",
        "Ann Lee <ann@customer.example>",
        SUPPORT,
        "Portal login fails",
        "Cannot log in since 9am.",
    );
    world
        .dovecot
        .append(SUPPORT, "INBOX", std::slice::from_ref(&first))
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(20), || world.tickets().len() == 1),
        "first ticket not made; log:\n{}",
        daemon.log()
    );
    let number = world.tickets()[0]["number"].as_i64().expect("number");

    // A reply by case tag, a reply by In-Reply-To, the same first message
    // delivered to the second mailbox, and a new ticket there.
    let by_tag = message(
        "t2@customer.example",
        "ann@customer.example",
        SUPPORT,
        &format!("Re: [ISDA #{number}] Portal login fails"),
        "Still failing.",
    );
    let mut by_ref = message(
        "t3@customer.example",
        "ann@customer.example",
        SUPPORT,
        "Re: Portal login fails",
        "Works in Firefox.",
    );
    by_ref.splice(
        0..0,
        b"In-Reply-To: <t1@customer.example>\r\n".iter().copied(),
    );
    let outage = message(
        "t4@monitor.example",
        "nagios@monitor.example",
        MAP,
        "PROBLEM: db01 is DOWN",
        "PING CRITICAL",
    );
    world
        .dovecot
        .append(SUPPORT, "INBOX", &[by_tag, by_ref])
        .await
        .expect("append");
    world
        .dovecot
        .append(MAP, "INBOX", &[first, outage])
        .await
        .expect("append");

    assert!(
        wait_for(Duration::from_secs(20), || deliveries(&world) == 5),
        "not all deliveries handled: {}; log:\n{}",
        world.stats(),
        daemon.log()
    );
    let stats = world.stats();
    assert_eq!(stats["tickets"], 2, "{stats}");
    assert_eq!(stats["messages"], 4, "{stats}");
    assert_eq!(stats["duplicates"], 1, "{stats}");

    let show = world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(show["queue"], "Customer-Support");
    assert_eq!(show["requester"], "ann@customer.example");
    assert_eq!(show["requester_name"], "Ann Lee");
    assert_eq!(show["tag"], format!("[ISDA #{number}]"));
    let messages = show["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3, "{show:#}");
    assert!(
        messages[0]["origin"]
            .as_str()
            .unwrap_or("")
            .contains("uid=1")
    );
    // The two mailboxes are watched concurrently: the duplicate may land
    // before or between the replies.
    let mut kinds: Vec<&str> = show["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .filter(|k| ["created", "reply", "duplicate"].contains(k))
        .collect();
    assert_eq!(kinds.first(), Some(&"created"), "{show:#}");
    kinds.sort();
    assert_eq!(
        kinds,
        ["created", "duplicate", "reply", "reply"],
        "{show:#}"
    );

    let outage = world
        .tickets()
        .into_iter()
        .find(|t| t["number"] != number)
        .expect("second ticket");
    assert_eq!(outage["queue"], "ProductionDefect");
    assert_eq!(outage["mailbox"], "map-support");

    // Seen mode: all flagged. Move mode: the inbox is empty, Processed has both.
    assert_eq!(search(&world.dovecot, SUPPORT, "INBOX", "UNSEEN").await, 0);
    assert_eq!(search(&world.dovecot, SUPPORT, "INBOX", "ALL").await, 3);
    assert_eq!(search(&world.dovecot, MAP, "INBOX", "ALL").await, 0);
    assert_eq!(search(&world.dovecot, MAP, "Processed", "ALL").await, 2);

    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "daemon exit status {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn imap_tickets_threads_duplicates_and_flags_sqlite() {
    tickets_threads_duplicates_and_flags(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imap_tickets_threads_duplicates_and_flags_postgres() {
    let db = PgDb::create("e2e").await;
    tickets_threads_duplicates_and_flags(Some(&db.url)).await;
    db.drop_db().await;
}

/// 500 messages, the daemon killed with SIGKILL at several random moments and
/// restarted each time: exactly 500 tickets at the end, every message flagged.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_at_random_moments_loses_and_duplicates_nothing() {
    let world = World::new(&two_mailboxes()[..1], None, "[ingest]\nbatch_size = 16\n");
    // Small fetch chunks give the kills many commit boundaries to fall between;
    // polling instead of IDLE covers the other waiting path.
    let text = std::fs::read_to_string(&world.config).expect("config");
    std::fs::write(
        &world.config,
        text.replace(
            "poll_interval_secs = 2\n",
            "poll_interval_secs = 2\nfetch_batch = 20\nidle = false\n",
        ),
    )
    .expect("config");
    let messages: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            message(
                &format!("crash-{i}@customer.example"),
                &format!("user{i}@customer.example"),
                SUPPORT,
                &format!("Crash test message {i}"),
                &"Some body text of a realistic length. ".repeat(20),
            )
        })
        .collect();
    world
        .dovecot
        .deliver_files(SUPPORT, &messages)
        .expect("deliver");

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7);
    let mut rng = seed;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % 400
    };
    let mut kills = Vec::new();
    for _ in 0..5 {
        let daemon = world.start_daemon();
        let delay = 30 + next();
        std::thread::sleep(Duration::from_millis(delay));
        let before = world.stats()["tickets"].as_i64().unwrap_or(-1);
        daemon.kill9();
        kills.push((delay, before));
    }
    let daemon = world.start_daemon();
    let done = wait_for(Duration::from_secs(60), || world.stats()["tickets"] == 500);
    let stats = world.stats();
    assert!(
        done,
        "seed {seed}, kills {kills:?}: {stats}; log:\n{}",
        daemon.log()
    );
    // Let the final acknowledgement land, then check the server side.
    let mut unseen = usize::MAX;
    for _ in 0..200 {
        unseen = search(&world.dovecot, SUPPORT, "INBOX", "UNSEEN").await;
        if unseen == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unseen, 0, "seed {seed}: messages left unflagged");
    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success());
    let stats = world.stats();
    assert_eq!(
        stats["tickets"], 500,
        "seed {seed}, kills {kills:?}: {stats}"
    );
    assert_eq!(
        stats["messages"], 500,
        "seed {seed}, kills {kills:?}: {stats}"
    );
    assert_eq!(stats["quarantined"], 0, "{stats}");
    let mut subjects: Vec<String> = world
        .tickets()
        .iter()
        .filter_map(|t| t["subject"].as_str().map(str::to_string))
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(
        subjects.len(),
        500,
        "seed {seed}: a message made two tickets"
    );
    eprintln!("kill -9 test: seed {seed}, kills (ms after start, tickets then): {kills:?}");
}

/// Dovecot goes away and comes back: the daemon reconnects and takes what
/// arrived meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_survives_server_restart() {
    let world = World::new(&two_mailboxes()[..1], None, "");
    let daemon = world.start_daemon();
    let before: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            message(
                &format!("r{i}@x.example"),
                "a@x.example",
                SUPPORT,
                &format!("before {i}"),
                "b",
            )
        })
        .collect();
    world
        .dovecot
        .append(SUPPORT, "INBOX", &before)
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(20), || world.tickets().len() == 3),
        "{}",
        daemon.log()
    );

    world.dovecot.stop().expect("stop dovecot");
    let during: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            message(
                &format!("d{i}@x.example"),
                "a@x.example",
                SUPPORT,
                &format!("during {i}"),
                "b",
            )
        })
        .collect();
    world
        .dovecot
        .deliver_files(SUPPORT, &during)
        .expect("deliver");
    std::thread::sleep(Duration::from_secs(2));
    world.dovecot.restart().expect("restart dovecot");

    assert!(
        wait_for(Duration::from_secs(40), || world.tickets().len() == 7),
        "daemon did not pick up mail after the restart; log:\n{}",
        daemon.log()
    );
    assert!(daemon.log().contains("reconnecting"), "{}", daemon.log());
    assert_eq!(search(&world.dovecot, SUPPORT, "INBOX", "UNSEEN").await, 0);
    assert!(daemon.terminate(Duration::from_secs(15)).success());
}

/// Past the size limit a message is quarantined with its reason, the mailbox
/// moves on, and a malformed message still becomes a ticket.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_is_quarantined_and_malformed_is_ticketed() {
    let world = World::new(
        &two_mailboxes()[..1],
        None,
        "[ingest]\nmax_message_bytes = 20000\n",
    );
    let daemon = world.start_daemon();
    let big = message(
        "big@x.example",
        "big@x.example",
        SUPPORT,
        "Huge log attached",
        &"0123456789".repeat(5000),
    );
    let malformed = b"From: broken@x.example\r\nSubject: =?bogus?Q?broken?=\r\nContent-Type: multipart/mixed; boundary=\"nope\"\r\n\r\n--wrong\r\ntruncated"
        .to_vec();
    let after = message(
        "after@x.example",
        "a@x.example",
        SUPPORT,
        "after the big one",
        "x",
    );
    world
        .dovecot
        .append(SUPPORT, "INBOX", &[big, malformed, after])
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(20), || deliveries(&world) == 3),
        "{}; log:\n{}",
        world.stats(),
        daemon.log()
    );
    let q = world.json(&["quarantine", "list", "--json"]);
    let q = q.as_array().expect("list");
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("exceeds ingest.max_message_bytes"),
        "{q:?}"
    );
    assert_eq!(q[0]["subject"], "Huge log attached");
    let subjects: Vec<String> = world
        .tickets()
        .iter()
        .filter_map(|t| t["subject"].as_str().map(str::to_string))
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects.iter().any(|s| s == "after the big one"));
    assert_eq!(search(&world.dovecot, SUPPORT, "INBOX", "UNSEEN").await, 0);
    assert!(daemon.terminate(Duration::from_secs(15)).success());
}

/// Implicit TLS and STARTTLS, with the server's certificate signed by an
/// internal CA given as `ca_file`.
#[tokio::test(flavor = "multi_thread")]
async fn tls_and_starttls_with_internal_ca() {
    let dovecot = triaged::dev::devstack::Dovecot::start_tls().expect("dovecot with TLS");
    let (imaps_port, ca) = dovecot.tls.clone().expect("tls");
    let world = World::with(dovecot, &two_mailboxes(), None, "");
    let text = std::fs::read_to_string(&world.config).expect("config");
    let text = text
        .replace(
            "after = \"seen\"\n",
            &format!(
                "after = \"seen\"\nsecurity = \"tls\"\nport = {imaps_port}\nca_file = \"{}\"\n",
                ca.display()
            ),
        )
        .replace(
            "after = \"move\"\n",
            &format!(
                "after = \"move\"\nsecurity = \"starttls\"\nca_file = \"{}\"\n",
                ca.display()
            ),
        );
    std::fs::write(&world.config, text).expect("config");
    let daemon = world.start_daemon();
    world
        .dovecot
        .append(
            SUPPORT,
            "INBOX",
            &[message(
                "tls1@x.example",
                "a@x.example",
                SUPPORT,
                "over TLS",
                "x",
            )],
        )
        .await
        .expect("append");
    world
        .dovecot
        .append(
            MAP,
            "INBOX",
            &[message(
                "tls2@x.example",
                "a@x.example",
                MAP,
                "over STARTTLS",
                "x",
            )],
        )
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(20), || world.tickets().len() == 2),
        "{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("security=Tls") && log.contains("security=Starttls"),
        "{log}"
    );
    assert!(daemon.terminate(Duration::from_secs(15)).success());
}
