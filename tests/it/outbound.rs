//! Outbound mail end to end: a customer writes over SMTP (OpenSMTPD -> LMTP ->
//! Dovecot), the daemon answers through its outbox over the same SMTP server,
//! and the test reads the answers over IMAP in the recipients' mailboxes.

use std::time::Duration;

use futures::TryStreamExt;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use triaged::dev::devstack::{Dovecot, Smtpd};

use crate::harness::{Mailbox, World, message, search, wait_for};

const SUPPORT: &str = "isda-support@example.edu";
const MAP: &str = "map-support@example.edu";
const DEFECT_LIST: &str = "amit-auto-defect@example.edu";

fn world(dovecot: Dovecot, smtp_port: u16) -> World {
    let extra = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\nretry_initial_secs = 1\nretry_max_secs = 2\n"
    );
    let w = World::with(
        dovecot,
        &[
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
                after: "seen",
            },
        ],
        None,
        &extra,
    );
    let text = std::fs::read_to_string(&w.config).expect("config");
    let text = text.replace(
        "[[queues]]\nname = \"ProductionDefect\"\ndesk = \"isda\"\n",
        &format!("[[queues]]\nname = \"ProductionDefect\"\ndesk = \"isda\"\nnotify = [\"{DEFECT_LIST}\"]\n"),
    );
    std::fs::write(&w.config, text).expect("config");
    w
}

/// Sends a message over SMTP, as a customer's mail program would.
async fn smtp_send(port: u16, from: &str, to: &str, raw: &[u8]) {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .build();
    let envelope = lettre::address::Envelope::new(
        Some(from.parse().expect("from")),
        vec![to.parse().expect("to")],
    )
    .expect("envelope");
    transport.send_raw(&envelope, raw).await.expect("smtp send");
}

/// Every message in a user's INBOX, raw.
async fn inbox(dovecot: &Dovecot, user: &str) -> Vec<String> {
    let mut s = dovecot.session(user).await.expect("session");
    s.select("INBOX").await.expect("select");
    let mut out = Vec::new();
    {
        let mut stream = s.fetch("1:*", "BODY.PEEK[]").await.expect("fetch");
        while let Some(f) = stream.try_next().await.expect("fetch item") {
            if let Some(b) = f.body() {
                out.push(String::from_utf8_lossy(b).into_owned());
            }
        }
    }
    let _ = s.logout().await;
    out
}

async fn wait_inbox(dovecot: &Dovecot, user: &str, n: usize, limit: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let got = if search(dovecot, user, "INBOX", "ALL").await >= n {
            inbox(dovecot, user).await
        } else {
            Vec::new()
        };
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines()
        .take_while(|l| !l.is_empty())
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l.as_bytes()[name.len()] == b':'
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_gets_acknowledgement_and_queue_list_is_told() {
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let world = world(dovecot, smtpd.port);
    let daemon = world.start_daemon();

    let customer = message(
        "portal-1@customer.example",
        "Ann Lee <ann@customer.example>",
        SUPPORT,
        "Portal login fails",
        "Since 9am I cannot log in.",
    );
    smtp_send(smtpd.port, "ann@customer.example", SUPPORT, &customer).await;
    let acks = wait_inbox(
        &world.dovecot,
        "ann@customer.example",
        1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        acks.len(),
        1,
        "daemon log:\n{}\nsmtpd log:\n{}",
        daemon.log(),
        smtpd.log()
    );
    let ack = &acks[0];
    let number = world.tickets()[0]["number"].as_i64().expect("number");
    let subject = header(ack, "Subject").unwrap_or("");
    assert!(subject.starts_with(&format!("[ISDA #{number}]")), "{ack}");
    assert!(subject.contains("Portal login fails"), "{ack}");
    assert_eq!(
        header(ack, "In-Reply-To"),
        Some("<portal-1@customer.example>"),
        "{ack}"
    );
    assert!(
        header(ack, "References")
            .unwrap_or("")
            .contains("<portal-1@customer.example>")
    );
    assert_eq!(header(ack, "Auto-Submitted"), Some("auto-replied"), "{ack}");
    assert!(
        header(ack, "Reply-To").unwrap_or("").contains(SUPPORT),
        "{ack}"
    );
    assert!(
        header(ack, "Message-ID").is_some_and(|id| id.contains("@example.edu")),
        "{ack}"
    );
    // Only the customer: no internal address anywhere in the headers.
    assert_eq!(header(ack, "To"), Some("ann@customer.example"), "{ack}");
    assert!(
        header(ack, "Cc").is_none() && !ack.contains(DEFECT_LIST),
        "{ack}"
    );

    // The customer answers the acknowledgement: a reply on the same ticket, no new ack.
    let reply_id = header(ack, "Message-ID").unwrap_or("").to_string();
    let mut reply = message(
        "portal-2@customer.example",
        "ann@customer.example",
        SUPPORT,
        &format!("Re: {subject}"),
        "Thanks. Still failing.",
    );
    reply.splice(0..0, format!("In-Reply-To: {reply_id}\r\n").bytes());
    smtp_send(smtpd.port, "ann@customer.example", SUPPORT, &reply).await;

    // A problem report to map-support: the ProductionDefect list hears of it separately.
    let defect = message(
        "db-1@ops.example.edu",
        "ops@ops.example.edu",
        MAP,
        "Login service returns 500",
        "Stack trace attached.",
    );
    smtp_send(smtpd.port, "ops@ops.example.edu", MAP, &defect).await;
    let notes = wait_inbox(&world.dovecot, DEFECT_LIST, 1, Duration::from_secs(30)).await;
    assert_eq!(notes.len(), 1, "{}", daemon.log());
    let note = &notes[0];
    assert_eq!(
        header(note, "Auto-Submitted"),
        Some("auto-generated"),
        "{note}"
    );
    assert!(
        header(note, "Subject")
            .unwrap_or("")
            .contains("New in ProductionDefect"),
        "{note}"
    );
    assert!(note.contains("Stack trace attached."), "{note}");
    assert!(wait_for(Duration::from_secs(20), || {
        world.stats()["messages"] == 3
    }));
    let show = world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(
        show["messages"].as_array().map(|m| m.len()),
        Some(2),
        "{show:#}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        inbox(&world.dovecot, "ann@customer.example").await.len(),
        1,
        "one acknowledgement only"
    );
    // One acknowledgement per ticket (none for the reply), one queue
    // notification; whatever else the rules send (urgent notices, the
    // reply relayed to the team) never goes to the customer.
    let sent = world.json(&["outbox", "list", "--status", "sent", "--json"]);
    let of_kind = |kind: &str| -> Vec<String> {
        sent.as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["kind"] == kind)
            .flat_map(|m| m["rcpt"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert_eq!(
        of_kind("acknowledgement"),
        vec!["ann@customer.example", "ops@ops.example.edu"],
        "{sent:#}"
    );
    assert_eq!(of_kind("queue_notification"), vec![DEFECT_LIST], "{sent:#}");
    for m in sent.as_array().into_iter().flatten() {
        if m["kind"] != "acknowledgement" {
            assert!(
                !m["rcpt"].to_string().contains("ann@customer.example"),
                "{m:#}"
            );
        }
    }
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

/// Bounces, lists and automatic replies get no acknowledgement.
#[tokio::test(flavor = "multi_thread")]
async fn no_acknowledgement_to_robots() {
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let world = world(dovecot, smtpd.port);
    let daemon = world.start_daemon();
    let cases: &[(&str, &str)] = &[
        ("bot1@robots.example", "Auto-Submitted: auto-replied\r\n"),
        ("bot2@robots.example", "Return-Path: <>\r\n"),
        (
            "bot3@robots.example",
            "List-Id: <announce.robots.example>\r\n",
        ),
        ("bot4@robots.example", "Precedence: bulk\r\n"),
        ("bot5@robots.example", "X-Auto-Response-Suppress: All\r\n"),
        ("MAILER-DAEMON@robots.example", ""),
        (SUPPORT, ""),
        ("person@robots.example", ""),
    ];
    for (i, (from, extra)) in cases.iter().enumerate() {
        let mut m = message(
            &format!("robot-{i}@robots.example"),
            from,
            SUPPORT,
            &format!("robot {i}"),
            "x",
        );
        m.splice(0..0, extra.bytes());
        world
            .dovecot
            .append(SUPPORT, "INBOX", &[m])
            .await
            .expect("append");
    }
    assert!(
        wait_for(Duration::from_secs(20), || world.tickets().len()
            == cases.len()),
        "{}",
        daemon.log()
    );
    let person = wait_inbox(
        &world.dovecot,
        "person@robots.example",
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(person.len(), 1);
    // (The desk's own mailbox holds the test's messages: the outbox count below covers it.)
    for (from, _) in cases[..cases.len() - 1]
        .iter()
        .filter(|(f, _)| *f != SUPPORT)
    {
        assert_eq!(
            inbox(&world.dovecot, from).await.len(),
            0,
            "{from} got an automatic reply"
        );
    }
    let all = world.json(&["outbox", "list", "--json"]);
    assert_eq!(all.as_array().map(|a| a.len()), Some(1), "{all:#}");
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

/// A mailbox that answers every mail automatically, without saying so
/// (no Auto-Submitted, a fresh subject, no references): the per-sender limit
/// bounds the acknowledgements, and so the loop.
#[tokio::test(flavor = "multi_thread")]
async fn auto_responder_loop_is_bounded() {
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let world = world(dovecot, smtpd.port);
    let daemon = world.start_daemon();
    let bot = "away@responder.example";
    smtp_send(
        smtpd.port,
        bot,
        SUPPORT,
        &message("away-0@responder.example", bot, SUPPORT, "Hello", "first"),
    )
    .await;

    let mut answered = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(25) {
        let got = search(&world.dovecot, bot, "INBOX", "ALL").await;
        while answered < got {
            answered += 1;
            let m = message(
                &format!("away-{answered}@responder.example"),
                bot,
                SUPPORT,
                "I am out of the office",
                "I will read your mail when I am back.",
            );
            smtp_send(smtpd.port, bot, SUPPORT, &m).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let acks = search(&world.dovecot, bot, "INBOX", "ALL").await;
    let tickets = world.tickets().len();
    assert_eq!(
        acks,
        5,
        "acknowledgements to the responder: {acks}; log:\n{}",
        daemon.log()
    );
    assert_eq!(tickets, 6, "tickets from the responder: {tickets}");
    let suppressed = world.json(&[
        "tickets",
        "show",
        &world.tickets()[0]["number"].to_string(),
        "--json",
    ]);
    assert!(suppressed.to_string().contains("limit 5"), "{suppressed:#}");
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

/// SMTP down while 100 messages arrive: all 100 acknowledgements are delivered,
/// once each, when it comes back.
#[tokio::test(flavor = "multi_thread")]
async fn smtp_outage_loses_nothing() {
    let dovecot = Dovecot::start().expect("dovecot");
    let mut smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let world = world(dovecot, smtpd.port);
    smtpd.stop();
    let daemon = world.start_daemon();
    let messages: Vec<Vec<u8>> = (0..100)
        .map(|i| {
            message(
                &format!("outage-{i}@customers.example"),
                &format!("c{i}@customers.example"),
                SUPPORT,
                &format!("Outage question {i}"),
                "hello",
            )
        })
        .collect();
    world
        .dovecot
        .deliver_files(SUPPORT, &messages)
        .expect("deliver");
    assert!(
        wait_for(Duration::from_secs(30), || world.tickets().len() == 100),
        "{}",
        daemon.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = world.json(&["outbox", "list", "--status", "pending", "--json"]);
    assert_eq!(
        pending.as_array().map(|a| a.len()),
        Some(100),
        "all waiting while SMTP is down"
    );
    assert!(
        pending[0]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{:#}",
        pending[0]
    );

    smtpd.restart().expect("smtpd back");
    assert!(
        wait_for(Duration::from_secs(60), || {
            world
                .json(&["outbox", "list", "--status", "sent", "--json"])
                .as_array()
                .map(|a| a.len())
                == Some(100)
        }),
        "{}",
        daemon.log()
    );
    let mut delivered = 0;
    for i in 0..100 {
        let n = inbox(&world.dovecot, &format!("c{i}@customers.example"))
            .await
            .len();
        assert!(n <= 1, "c{i} got {n} acknowledgements");
        delivered += n;
    }
    // Delivery through LMTP is asynchronous to the SMTP acceptance: allow it a moment.
    if delivered < 100 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        delivered = 0;
        for i in 0..100 {
            delivered += inbox(&world.dovecot, &format!("c{i}@customers.example"))
                .await
                .len();
        }
    }
    assert_eq!(delivered, 100);
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}
