//! Conversations end to end (issue 9): a customer writes over SMTP
//! (OpenSMTPD -> LMTP -> Dovecot) and gets the acknowledgement; an
//! integrator of the desk's team replies to it; the customer receives the
//! sentence From the desk, threaded under the acknowledgement, with no
//! internal address in its headers; the ticket's initial response is set
//! and it is open; the customer answers, and the team hears it.

use std::time::Duration;

use futures::TryStreamExt;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use triaged::dev::devstack::{Dovecot, Smtpd};

use crate::harness::{Mailbox, PgDb, World, message, search, wait_for};

const SUPPORT: &str = "isda-support@example.edu";
const CUSTOMER: &str = "ann@customer.example";
const INTEGRATOR: &str = "jlee@example.edu";
/// The receiving server's authserv-id, trusted in the test's configuration.
const MX: &str = "mx.example.edu";
/// What that server adds to the integrators' mail.
const AUTHENTICATED: &str =
    "Authentication-Results: mx.example.edu; dkim=pass header.d=example.edu\r\n";

fn world(dovecot: Dovecot, smtp_port: u16) -> World {
    let extra = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\nretry_initial_secs = 1\nretry_max_secs = 2\n"
    );
    with_team(World::with(
        dovecot,
        &[Mailbox {
            name: "isda-support",
            user: SUPPORT,
            queue: "Customer-Support",
            after: "seen",
        }],
        None,
        &extra,
    ))
}

/// The isda desk with a title and a team of two integrators.
fn with_team(w: World) -> World {
    let text = std::fs::read_to_string(&w.config).expect("config");
    let desk =
        "[[desks]]\nname = \"isda\"\ntag = \"ISDA\"\naddresses = [\"isda-support@example.edu\"]\n";
    assert!(text.contains(desk), "{text}");
    let text = text.replace(
        desk,
        &format!(
            "{desk}title = \"ISDA support\"\nintegrators = [\"isda-integrators@example.edu\"]\nteam = [\"{INTEGRATOR}\", \"mgarcia@example.edu\"]\n"
        ),
    );
    // Team mail is relayed under the desk's name only when the receiving
    // server vouches for its sender (`[commands] require_authenticated`).
    let text = format!("{text}\n[commands]\ntrusted_authserv_ids = [\"{MX}\"]\n");
    std::fs::write(&w.config, text).expect("config");
    w
}

pub(crate) async fn smtp_send(port: u16, from: &str, to: &str, raw: &[u8]) {
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

pub(crate) async fn inbox(dovecot: &Dovecot, user: &str) -> Vec<String> {
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

pub(crate) async fn wait_inbox(
    dovecot: &Dovecot,
    user: &str,
    n: usize,
    limit: Duration,
) -> Vec<String> {
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

pub(crate) fn head(raw: &str) -> &str {
    let end = raw
        .find("\r\n\r\n")
        .or_else(|| raw.find("\n\n"))
        .unwrap_or(raw.len());
    &raw[..end]
}

/// A header's value (first occurrence, unfolded).
pub(crate) fn header(raw: &str, name: &str) -> Option<String> {
    let mut lines = head(raw).lines().peekable();
    while let Some(l) = lines.next() {
        if l.len() > name.len()
            && l[..name.len()].eq_ignore_ascii_case(name)
            && l.as_bytes()[name.len()] == b':'
        {
            let mut v = l[name.len() + 1..].trim().to_string();
            while let Some(next) = lines.peek().filter(|n| n.starts_with([' ', '\t'])) {
                v.push(' ');
                v.push_str(next.trim());
                lines.next();
            }
            return Some(v);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn integrator_reply_reaches_the_customer_and_the_customer_reply_the_team() {
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let world = world(dovecot, smtpd.port);
    let daemon = world.start_daemon();

    // 1. The customer writes and gets the acknowledgement.
    let first = message(
        "vpn-1@customer.example",
        "Ann Lee <ann@customer.example>",
        SUPPORT,
        "VPN drops every hour",
        "The VPN disconnects every hour since Monday.",
    );
    smtp_send(smtpd.port, CUSTOMER, SUPPORT, &first).await;
    let acks = wait_inbox(&world.dovecot, CUSTOMER, 1, Duration::from_secs(30)).await;
    assert_eq!(
        acks.len(),
        1,
        "daemon log:\n{}\nsmtpd log:\n{}",
        daemon.log(),
        smtpd.log()
    );
    let ack = acks[0].clone();
    let ack_id = header(&ack, "Message-ID").expect("ack Message-ID");
    let ack_subject = header(&ack, "Subject").expect("ack subject");
    let number = world.tickets()[0]["number"].as_i64().expect("number");
    let show = world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(show["status"], "new", "{show:#}");

    // 2. An integrator answers the acknowledgement thread, copying the team
    //    list, with the new settings attached.
    let sentence = "We raised the VPN session timeout; please reconnect once.";
    let settings = "session_timeout = 8h\nkeepalive = 30s";
    let mut reply = with_attachment(
        message(
            "jlee-1@mail.example.edu",
            "Jane Lee <jlee@example.edu>",
            SUPPORT,
            &format!("Re: {ack_subject}"),
            sentence,
        ),
        sentence,
        "vpn-settings.conf",
        settings,
    );
    reply.splice(
        0..0,
        format!(
            "{AUTHENTICATED}Cc: isda-integrators@example.edu\r\nIn-Reply-To: {ack_id}\r\nReferences: <vpn-1@customer.example> {ack_id}\r\n"
        )
        .bytes(),
    );
    smtp_send(smtpd.port, INTEGRATOR, SUPPORT, &reply).await;

    // 3. The customer receives the sentence from the desk, under the ack.
    let got = wait_inbox(&world.dovecot, CUSTOMER, 2, Duration::from_secs(30)).await;
    assert_eq!(
        got.len(),
        2,
        "daemon log:\n{}\nsmtpd log:\n{}",
        daemon.log(),
        smtpd.log()
    );
    let relayed = got
        .iter()
        .find(|m| m.contains(sentence))
        .unwrap_or_else(|| panic!("no relayed sentence in {got:#?}"))
        .clone();
    let h = head(&relayed);
    let from = header(&relayed, "From").unwrap_or_default();
    assert!(from.contains(SUPPORT) && from.contains("Jane Lee"), "{h}");
    assert!(
        header(&relayed, "Reply-To")
            .unwrap_or_default()
            .contains(SUPPORT),
        "{h}"
    );
    assert_eq!(header(&relayed, "In-Reply-To"), Some(ack_id.clone()), "{h}");
    assert!(
        header(&relayed, "References")
            .unwrap_or_default()
            .contains(&ack_id),
        "{h}"
    );
    assert!(
        header(&relayed, "Subject")
            .unwrap_or_default()
            .contains(&format!("[ISDA #{number}]")),
        "{h}"
    );
    assert_eq!(header(&relayed, "To").as_deref(), Some(CUSTOMER), "{h}");
    // The attachment is relayed whole (read again from the stored copy of
    // the reply: a message waiting for its transaction holds no other).
    use mail_parser::MimeHeaders;
    let parsed = mail_parser::MessageParser::default()
        .parse(relayed.as_bytes())
        .expect("relayed mail parses");
    let files: Vec<_> = parsed
        .attachments()
        .map(|a| {
            (
                a.attachment_name().unwrap_or_default().to_string(),
                String::from_utf8_lossy(a.contents()).replace("\r\n", "\n"),
            )
        })
        .collect();
    assert_eq!(
        files,
        vec![("vpn-settings.conf".to_string(), settings.to_string())],
        "{relayed}"
    );
    for internal in [
        "jlee@",
        "mgarcia@",
        "isda-integrators@",
        "jlee-1@mail.example.edu",
        "mail.example.edu",
    ] {
        assert!(
            !h.to_ascii_lowercase().contains(internal),
            "{internal} in\n{h}"
        );
    }

    // 4. The initial response is recorded and the ticket is open.
    assert!(
        wait_for(Duration::from_secs(20), || {
            let show = world.json(&["tickets", "show", &number.to_string(), "--json"]);
            show["first_response_at"].is_string() && show["status"] == "open"
        }),
        "{:#}",
        world.json(&["tickets", "show", &number.to_string(), "--json"])
    );

    // 5. The customer answers the relayed mail: the team hears it.
    let relayed_id = header(&relayed, "Message-ID").expect("relayed Message-ID");
    let answer = "Reconnected, it holds now. Thank you!";
    let mut back = message(
        "vpn-2@customer.example",
        "Ann Lee <ann@customer.example>",
        SUPPORT,
        &format!("Re: {}", header(&relayed, "Subject").unwrap_or_default()),
        answer,
    );
    back.splice(0..0, format!("In-Reply-To: {relayed_id}\r\n").bytes());
    smtp_send(smtpd.port, CUSTOMER, SUPPORT, &back).await;
    let team = wait_inbox(&world.dovecot, INTEGRATOR, 1, Duration::from_secs(30)).await;
    assert_eq!(team.len(), 1, "daemon log:\n{}", daemon.log());
    assert!(team[0].contains(answer), "{}", team[0]);
    assert!(
        header(&team[0], "Subject")
            .unwrap_or_default()
            .contains(&format!("[ISDA #{number}]"))
    );
    let other = wait_inbox(
        &world.dovecot,
        "mgarcia@example.edu",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(other.len(), 1);
    // Replies are never acknowledged, and nothing else reached the customer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(inbox(&world.dovecot, CUSTOMER).await.len(), 2);
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

/// `raw` (from [`message`], a text body of `body`) as multipart/mixed: the
/// text, then `content` as an attachment named `name` (the line break
/// before a boundary is the boundary's, not the content's).
fn with_attachment(raw: Vec<u8>, body: &str, name: &str, content: &str) -> Vec<u8> {
    let text = String::from_utf8(raw).expect("utf-8");
    let plain = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n");
    assert!(text.ends_with(&plain), "{text}");
    let boundary = "=-settings-7f3a";
    let content = content.replace('\n', "\r\n");
    format!(
        "{}Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{content}\r\n\
         --{boundary}--\r\n",
        &text[..text.len() - plain.len()]
    )
    .into_bytes()
}

/// On PostgreSQL, through `triaged ingest`: the team's first reply is the
/// initial response (an event, new -> open); a stalled ticket is opened again
/// by the customer's reply, and each change of status is an event.
#[tokio::test(flavor = "multi_thread")]
async fn first_response_and_stalled_reopen_on_postgres() {
    use sqlx::Connection;
    let db = PgDb::create("corr").await;
    let world = with_team(World::new(&[], Some(&db.url), ""));
    let ingest = |name: &str, raw: Vec<u8>| {
        let path = world.dir.path().join(name);
        std::fs::write(&path, raw).expect("write");
        let out = world.triaged(&["ingest", "--json", path.to_str().expect("path")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ingest(
        "1.eml",
        message(
            "pg-1@customer.example",
            CUSTOMER,
            SUPPORT,
            "Quota",
            "My quota is full.",
        ),
    );
    let number = world.tickets()[0]["number"].as_i64().expect("number");
    let show = || world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(show()["status"], "new");
    assert!(show()["first_response_at"].is_null());

    let mut reply = message(
        "pg-2@example.edu",
        "Jane Lee <jlee@example.edu>",
        SUPPORT,
        "Re: Quota",
        "Raised to 20 GB.",
    );
    reply.splice(
        0..0,
        format!("{AUTHENTICATED}In-Reply-To: <pg-1@customer.example>\r\n").bytes(),
    );
    ingest("2.eml", reply);
    let s = show();
    assert_eq!(s["status"], "open", "{s:#}");
    assert!(s["first_response_at"].is_string(), "{s:#}");
    let kinds = |s: &serde_json::Value| -> Vec<String> {
        s["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["kind"].as_str().map(str::to_string))
            .collect()
    };
    assert!(kinds(&s).contains(&"initial response".to_string()), "{s:#}");
    assert!(kinds(&s).contains(&"status".to_string()), "{s:#}");

    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("UPDATE tickets SET status = 'stalled'")
        .execute(&mut conn)
        .await
        .expect("stall");
    let _ = conn.close().await;
    assert_eq!(show()["status"], "stalled");

    let mut back = message(
        "pg-3@customer.example",
        CUSTOMER,
        SUPPORT,
        "Re: Quota",
        "Thanks, works.",
    );
    back.splice(0..0, b"In-Reply-To: <pg-2@example.edu>\r\n".iter().copied());
    ingest("3.eml", back);
    let s = show();
    assert_eq!(s["status"], "open", "{s:#}");
    let status_events: Vec<&serde_json::Value> = s["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "status")
        .collect();
    assert_eq!(status_events.len(), 2, "{s:#}");
    assert_eq!(status_events[1]["detail"]["from"], "stalled", "{s:#}");
    assert_eq!(status_events[1]["actor"], CUSTOMER, "{s:#}");
    // A second team reply is not a second initial response.
    let first_at = s["first_response_at"].clone();
    let mut again = message(
        "pg-4@example.edu",
        "Jane Lee <jlee@example.edu>",
        SUPPORT,
        "Re: Quota",
        "Closing soon.",
    );
    again.splice(
        0..0,
        format!("{AUTHENTICATED}In-Reply-To: <pg-3@customer.example>\r\n").bytes(),
    );
    ingest("4.eml", again);
    let s = show();
    assert_eq!(s["first_response_at"], first_at, "{s:#}");
    assert_eq!(
        kinds(&s)
            .iter()
            .filter(|k| *k == "initial response")
            .count(),
        1
    );
    db.drop_db().await;
}

/// A reply From a team member that the receiving server does not vouch for
/// (no trusted Authentication-Results) is held: nothing reaches the
/// customer under the desk's name, it is not the initial response, and the
/// ticket's history says why.
#[test]
fn forged_team_correspondence_is_held() {
    let world = with_team(World::new(&[], None, ""));
    let ingest = |name: &str, raw: Vec<u8>| {
        let path = world.dir.path().join(name);
        std::fs::write(&path, raw).expect("write");
        let out = world.triaged(&["ingest", "--json", path.to_str().expect("path")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ingest(
        "1.eml",
        message(
            "f-1@customer.example",
            &format!("Ann <{CUSTOMER}>"),
            SUPPORT,
            "Quota",
            "My quota is full.",
        ),
    );
    let number = world.tickets()[0]["number"].as_i64().expect("number");
    for (name, extra) in [
        ("2.eml", String::new()),
        // A header naming an authserv-id we do not trust counts for nothing.
        (
            "3.eml",
            "Authentication-Results: evil.example; dkim=pass header.d=example.edu\r\n".to_string(),
        ),
    ] {
        let mut forged = message(
            &format!("forged-{name}@example.edu"),
            "Jane Lee <jlee@example.edu>",
            SUPPORT,
            &format!("Re: [ISDA #{number}] Quota"),
            "Please confirm your password at http://evil.example/login",
        );
        forged.splice(
            0..0,
            format!("{extra}In-Reply-To: <f-1@customer.example>\r\n").bytes(),
        );
        ingest(name, forged);
    }
    let show = world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(show["status"], "new", "{show:#}");
    assert!(show["first_response_at"].is_null(), "{show:#}");
    let held = show["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["kind"] == "correspondence held")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(held, 2, "{show:#}");
    let outbox = world.json(&["outbox", "list", "--json"]);
    for m in outbox.as_array().into_iter().flatten() {
        assert_ne!(m["kind"], "correspondence", "{m:#}");
    }
}
