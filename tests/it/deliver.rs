//! `triaged deliver` as an MTA runs it (one process per message, the message
//! on stdin) into a spool the running daemon ingests: tickets and their
//! acknowledgements, hostile input, the exit codes an MTA acts on, and
//! kill -9 of the daemon while mail is being delivered.

use std::collections::BTreeSet;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{COMMAND_LIMIT, Daemon, ShippedDesk, message, output_within, wait_for};

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
    output_within(
        &mut desk.command(&["deliver", "--mailbox", mailbox]),
        Some(input),
        COMMAND_LIMIT,
    )
}

/// Delivers `input` and asserts that `deliver` took it (exit 0).
fn delivered(desk: &ShippedDesk, mailbox: &str, input: &[u8], what: &str) {
    let out = deliver(desk, mailbox, input);
    assert!(
        out.status.success(),
        "{what}: {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
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
    delivered(&desk, "help", &first, "first");
    assert_eq!(spooled(&desk, "new"), 1);
    assert_eq!(spooled(&desk, "tmp"), 0);

    let daemon = start_daemon(&desk, 0);
    let log = daemon.log.clone();
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();

    for i in 2..=4 {
        let raw = message(
            &format!("d{i}@customer.example"),
            &format!("User {i} <u{i}@customer.example>"),
            "help@example.edu",
            &format!("Question {i}"),
            "Please help.",
        );
        delivered(&desk, "help", &raw, &format!("message {i}"));
    }
    // Binary garbage is kept too: it ends up quarantined, never dropped.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    delivered(&desk, "help", &garbage, "garbage");
    // The same message delivered twice (an MTA retrying) is one ticket.
    delivered(&desk, "help", &first, "first again");

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
    // Stops on SIGTERM (the harness fails the test with its log if not).
    daemon.terminate(Duration::from_secs(30));
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

/// Starts `triaged run` on the desk; its log goes to `<tmp>/daemon-N.log`.
fn start_daemon(desk: &ShippedDesk, n: usize) -> Daemon {
    let log = desk.dir.path().join(format!("daemon-{n}.log"));
    let child = desk
        .command(&["run"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn daemon");
    Daemon { child, log }
}

/// The daemon is killed (SIGKILL) at random moments while an MTA keeps
/// delivering (deliver does not need the daemon): every delivery succeeds,
/// and once the last daemon has drained the spool each message is exactly
/// one ticket: none lost to a kill between commit and removal or before the
/// commit, none made twice from a file taken again. A failure names its
/// seed; `TRIAGED_TEST_SEED` replays the same kill delays (the machine's
/// timing still varies).
#[test]
fn kill9_while_delivering_loses_and_duplicates_nothing() {
    const N: usize = 300;
    const KILLS: usize = 6;
    const DELIVERERS: usize = 2;
    let desk = desk();
    // Small batches: many commit-then-remove boundaries for the kills.
    let text = std::fs::read_to_string(&desk.config).expect("config");
    let text = text.replace("batch_size = 64", "batch_size = 8");
    assert!(
        text.contains("batch_size = 8"),
        "no batch_size in the example"
    );
    std::fs::write(&desk.config, text).expect("write config");

    let seed = std::env::var("TRIAGED_TEST_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::from(d.subsec_nanos()))
                .unwrap_or(7)
        });
    let mut rng = seed;
    let mut next = move |bound: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % bound
    };
    let subject = |i: usize| format!("Spool crash test {i}");
    let raw = |i: usize| {
        message(
            &format!("spool-crash-{i}@customer.example"),
            &format!("User {i} <user{i}@customer.example>"),
            "help@example.edu",
            &subject(i),
            &"Some body text of a realistic length. ".repeat(20),
        )
    };

    let started = Instant::now();
    // A third is spooled before any daemon runs, the rest while the kills go on.
    let early = N / 3;
    for i in 0..early {
        delivered(&desk, "help", &raw(i), &format!("message {i}"));
    }
    let (kills, failures) = std::thread::scope(|s| {
        let deliverers: Vec<_> = (0..DELIVERERS)
            .map(|t| {
                let (desk, raw) = (&desk, &raw);
                s.spawn(move || {
                    let mut failed = Vec::new();
                    for i in (early..N).filter(|i| i % DELIVERERS == t) {
                        // Paced as mail arrives, so that it keeps arriving
                        // through the kills.
                        std::thread::sleep(Duration::from_millis(90));
                        let out = deliver(desk, "help", &raw(i));
                        if !out.status.success() {
                            failed.push(format!(
                                "message {i}: {:?}: {}",
                                out.status.code(),
                                String::from_utf8_lossy(&out.stderr)
                            ));
                        }
                    }
                    failed
                })
            })
            .collect();
        let mut kills = Vec::new();
        for k in 0..KILLS {
            let daemon = start_daemon(&desk, k);
            // Its start (migrations, rules) takes a while in a debug build:
            // the kill falls at a random moment once it watches the spool,
            // with a backlog and deliveries arriving.
            let up = wait_for(Duration::from_secs(20), || {
                daemon.log().contains("watching the spool")
            });
            assert!(up, "seed {seed}: daemon not up; log:\n{}", daemon.log());
            let delay = next(600);
            std::thread::sleep(Duration::from_millis(delay));
            let left = spooled(&desk, "new");
            daemon.kill9();
            kills.push((delay, left));
        }
        let failures: Vec<String> = deliverers
            .into_iter()
            .flat_map(|d| d.join().expect("deliverer thread"))
            .collect();
        (kills, failures)
    });
    assert!(
        failures.is_empty(),
        "seed {seed}: deliveries failed while the daemon was killed:\n{}",
        failures.join("\n")
    );

    let daemon = start_daemon(&desk, KILLS);
    let drained = wait_for(Duration::from_secs(60), || {
        spooled(&desk, "new") == 0 && desk.json(&["stats", "--json"])["tickets"] == N
    });
    let stats = desk.json(&["stats", "--json"]);
    assert!(
        drained,
        "seed {seed}, kills (ms, left in new/) {kills:?}: {} left in new/, {stats}; log:\n{}",
        spooled(&desk, "new"),
        daemon.log()
    );
    let status = daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "seed {seed}: {status:?}");

    // Nothing left to ingest, nothing half-written.
    for sub in ["new", "tmp", "cur"] {
        assert_eq!(spooled(&desk, sub), 0, "seed {seed}: {sub}/ not empty");
    }
    let stats = desk.json(&["stats", "--json"]);
    let context = format!("seed {seed}, kills (ms, left in new/) {kills:?}: {stats}");
    assert_eq!(stats["tickets"], N, "{context}");
    assert_eq!(stats["messages"], N, "{context}");
    assert_eq!(stats["quarantined"], 0, "{context}");
    // Each delivered message is one ticket of its own (its own subject).
    let tickets = desk.tickets();
    let subjects: BTreeSet<String> = tickets
        .iter()
        .filter_map(|t| t["subject"].as_str().map(str::to_string))
        .collect();
    let expected: BTreeSet<String> = (0..N).map(subject).collect();
    assert_eq!(tickets.len(), N, "{context}");
    assert_eq!(subjects, expected, "{context}: a message lost or doubled");
    eprintln!(
        "spool kill -9 test: seed {seed}, kills (ms after it watched the spool, left in new/) {kills:?}, \
         {} duplicates recognised, {:.1} s",
        stats["duplicates"],
        started.elapsed().as_secs_f64()
    );
}
