//! Metrics and health of a running daemon, scraped over HTTP and parsed as
//! Prometheus exposition (`prometheus-parse`): the ingest counter says N
//! after N messages, `/readyz` is 200 with Dovecot up and 503 once it has
//! been down past the retry budget, and 503 at once with a refused login
//! (reported as `auth_failed`, logged at ERROR with backoff, not every try).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use triaged::dev::devstack::free_port;

use crate::harness::{Daemon, Mailbox, World, message, wait_for};

const USER: &str = "metered@example.edu";

/// GET `path` on 127.0.0.1:`port`: the status code and the body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The value of the sample `name` whose labels include all of `labels`.
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).ok()?;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .reduce(|a, b| a + b)
}

fn world(extra: &str) -> (World, u16) {
    let port = free_port().expect("port");
    let world = World::new(
        &[Mailbox {
            name: "metered",
            user: USER,
            queue: "Customer-Support",
            after: "seen",
        }],
        None,
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\nretry_budget_secs = 3\n{extra}"),
    );
    (world, port)
}

fn status(port: u16, path: &str) -> u16 {
    get(port, path).map(|(s, _)| s).unwrap_or(0)
}

#[tokio::test]
async fn scrape_counts_ingested_messages_and_readiness_follows_dovecot() {
    let (world, port) = world("");
    let daemon = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(20), || status(port, "/readyz") == 200),
        "not ready: {:?}\n{}",
        get(port, "/readyz"),
        daemon.log()
    );
    assert_eq!(status(port, "/healthz"), 200);

    const N: usize = 7;
    let raws: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            message(
                &format!("m{i}@customers.example"),
                &format!("c{i}@customers.example"),
                USER,
                &format!("Metered {i}"),
                "Body.",
            )
        })
        .collect();
    // One of them twice: a duplicate.
    let mut delivered = raws.clone();
    delivered.push(raws[0].clone());
    world
        .dovecot
        .append(USER, "INBOX", &delivered)
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(30), || world.stats()["duplicates"] == 1),
        "{}",
        daemon.log()
    );
    let (code, body) = get(port, "/metrics").expect("scrape");
    assert_eq!(code, 200);
    let ingested = |outcome: &str| {
        sample(
            &body,
            "triaged_messages_ingested_total",
            &[("mailbox", "metered"), ("outcome", outcome)],
        )
    };
    assert_eq!(ingested("created"), Some(N as f64), "{body}");
    assert_eq!(ingested("duplicate"), Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body,
            "triaged_imap_session_state",
            &[("mailbox", "metered"), ("state", "up")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "triaged_mailbox_lease_held",
            &[("mailbox", "metered")]
        ),
        Some(1.0)
    );
    // Read from the store at scrape time: N open tickets, N acknowledgements
    // waiting (no [smtp] here), nothing past due yet.
    assert_eq!(
        sample(&body, "triaged_tickets_open", &[]),
        Some(N as f64),
        "{body}"
    );
    assert_eq!(
        sample(&body, "triaged_outbox_mails", &[("status", "pending")]),
        Some(N as f64)
    );
    assert_eq!(sample(&body, "triaged_tickets_past_due", &[]), Some(0.0));
    // Every committed message's lag observed (the duplicate too).
    assert!(
        body.contains("triaged_ingest_lag_seconds_count{mailbox=\"metered\"} 8"),
        "{body}"
    );

    // Hostile requests leave the listener serving: garbage, a huge path,
    // an unknown page.
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(&[0xff; 70_000]);
    }
    let huge = format!("/{}", "a".repeat(100_000));
    assert_ne!(status(port, &huge), 200);
    assert_eq!(status(port, "/nope"), 404);
    assert_eq!(status(port, "/healthz"), 200);

    // Dovecot goes away: ready while retrying within the budget, then 503.
    world.dovecot.stop().expect("stop dovecot");
    assert!(
        wait_for(Duration::from_secs(30), || status(port, "/readyz") == 503),
        "still ready: {:?}\n{}",
        get(port, "/readyz"),
        daemon.log()
    );
    let (_, why) = get(port, "/readyz").expect("readyz");
    assert!(why.contains("mailbox metered: retrying"), "{why}");
    assert_eq!(status(port, "/healthz"), 200);
    world.dovecot.restart().expect("restart dovecot");
    assert!(
        wait_for(Duration::from_secs(60), || status(port, "/readyz") == 200),
        "not ready again: {:?}",
        get(port, "/readyz")
    );
    let (_, body) = get(port, "/metrics").expect("scrape");
    assert!(
        sample(
            &body,
            "triaged_imap_reconnects_total",
            &[("mailbox", "metered")]
        )
        .is_some_and(|n| n >= 1.0),
        "{body}"
    );
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success());
}

#[tokio::test]
async fn refused_login_is_auth_failed_and_logged_with_backoff() {
    let (world, port) = world("");
    let daemon: Daemon = world.start_daemon_with(&[(crate::harness::PW_ENV, "wrong")]);
    assert!(
        wait_for(Duration::from_secs(20), || status(port, "/readyz") == 503),
        "{:?}\n{}",
        get(port, "/readyz"),
        daemon.log()
    );
    let (_, why) = get(port, "/readyz").expect("readyz");
    assert!(why.contains("mailbox metered: login refused"), "{why}");
    // Let it retry a few times (backoff 1, 2, 4 s).
    assert!(wait_for(Duration::from_secs(30), || {
        get(port, "/metrics")
            .and_then(|(_, b)| {
                sample(
                    &b,
                    "triaged_imap_reconnects_total",
                    &[("mailbox", "metered")],
                )
            })
            .is_some_and(|n| n >= 3.0)
    }));
    let (_, body) = get(port, "/metrics").expect("scrape");
    assert_eq!(
        sample(
            &body,
            "triaged_imap_session_state",
            &[("mailbox", "metered"), ("state", "auth_failed")]
        ),
        Some(1.0),
        "{body}"
    );
    let attempts = sample(
        &body,
        "triaged_imap_reconnects_total",
        &[("mailbox", "metered")],
    )
    .unwrap_or(0.0) as usize
        + 1;
    let log = daemon.log();
    let errors = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("IMAP login refused"))
        .count();
    // At the 1st, 2nd, 4th, 8th... refusal: never one per attempt after two.
    let expected = (attempts as f64).log2().floor() as usize + 1;
    assert!(
        errors >= 1 && errors <= expected,
        "{errors} ERROR lines for {attempts} attempts:\n{log}"
    );
    assert!(
        !log.contains("mailbox session ended; reconnecting"),
        "{log}"
    );
    drop(daemon);
}
