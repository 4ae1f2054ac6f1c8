//! Threading decisions (issue 9), through the real binary: a case tag alone
//! attaches only a participant's mail (a stranger gets a new ticket linked to
//! the tagged one and sees nothing of it); References thread whatever the
//! subject; a reply to a ticket resolved longer ago than the reopen window
//! opens a new linked ticket, a recent one reopens it; mail the desk sent
//! itself (the urgent notice to map-support@, a watched mailbox) is never
//! recorded as a message. The store's part runs on SQLite and PostgreSQL.

use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use triaged::dev::devstack::{Dovecot, Smtpd};

use crate::harness::{Mailbox, PgDb, ShippedDesk as Desk, World, message, wait_for};

const SUPPORT: &str = "isda-support@example.edu";
const MAP: &str = "map-support@example.edu";
const DAY_MS: i64 = 86_400_000;

impl Desk {
    /// Ingests one message into `mailbox`; its outcome line.
    fn ingest_one(&self, mailbox: &str, raw: &[u8]) -> Value {
        self.ingest(mailbox, &[raw.to_vec()])
    }

    fn show_text(&self, number: i64) -> String {
        let out = self.run(&["tickets", "show", &number.to_string()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Test setup only: runs SQL on the test's database directly (to resolve a
    /// ticket in the past, which nothing else can do yet).
    async fn sql(&self, statement: &str) -> Vec<(i64, String, Vec<u8>)> {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url)
            .await
            .expect("connect to the test's database");
        use sqlx::Row;
        let rows = sqlx::query(statement)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let _ = conn.close().await;
        rows.iter()
            .map(|r| {
                let mut raw = r.try_get::<Vec<u8>, _>(2).unwrap_or_default();
                // Stored mail is compressed: decoded as the store does.
                if let Ok(codec) = r.try_get::<String, _>("raw_codec") {
                    raw = triaged::store::codec::decode(&codec, raw, 64 << 20).expect("decode");
                }
                (
                    r.try_get::<i64, _>(0).unwrap_or(0),
                    r.try_get::<String, _>(1).unwrap_or_default(),
                    raw,
                )
            })
            .collect()
    }

    /// Test setup: ticket `number` resolved `days` ago.
    async fn resolve_days_ago(&self, number: i64, days: i64) {
        let at = triaged::clock::now_ms() - days * DAY_MS;
        self.sql(&format!(
            "UPDATE tickets SET status = 'resolved', resolved_at = {at} WHERE number = {number}"
        ))
        .await;
    }
}

fn messages(t: &Value) -> usize {
    t["messages"].as_array().map(Vec::len).unwrap_or(0)
}

fn events<'a>(t: &'a Value, kind: &str) -> Vec<&'a Value> {
    t["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == kind).collect())
        .unwrap_or_default()
}

fn created(outcome: &Value) {
    assert_eq!(outcome["new_tickets"], 1, "{outcome}");
}

fn reply_with(id: &str, from: &str, subject: &str, body: &str, refs: &str) -> Vec<u8> {
    let mut m = message(id, from, SUPPORT, subject, body);
    if !refs.is_empty() {
        m.splice(
            0..0,
            format!("In-Reply-To: {refs}\r\nReferences: {refs}\r\n").bytes(),
        );
    }
    m
}

/// Stranger with the tag; the requester with the tag alone; a client that
/// strips the tag but keeps References.
async fn tag_needs_a_participant(desk: &Desk) {
    created(&desk.ingest_one(
        "isda-support",
        &message(
            "first@customer.example",
            "Ann Lee <ann@customer.example>",
            SUPPORT,
            "Portal login fails",
            "My employee id is SECRET-4711.",
        ),
    ));
    let first = desk.ticket(1000);
    assert_eq!(first["tag"], "[ISDA #1000]", "{first:#}");

    // A stranger quotes the tag: a new ticket, linked, and nothing of the first.
    let s = desk.ingest_one(
        "isda-support",
        &reply_with(
            "stranger@elsewhere.example",
            "eve@elsewhere.example",
            "Re: [ISDA #1000] Portal login fails",
            "Me too!",
            "",
        ),
    );
    created(&s);
    let first = desk.ticket(1000);
    assert_eq!(messages(&first), 1, "the stranger never joins: {first:#}");
    let second = desk.ticket(1001);
    assert_eq!(second["requester"], "eve@elsewhere.example", "{second:#}");
    assert_eq!(second["links"][0]["ticket"], 1000, "{second:#}");
    assert_eq!(second["links"][0]["reason"], "tag refused", "{second:#}");
    assert_eq!(first["links"][0]["ticket"], 1001, "{first:#}");
    let created_event = events(&second, "created");
    assert!(
        created_event[0]["detail"]["thread"]
            .as_str()
            .is_some_and(|r| r.starts_with("tag refused: sender eve@elsewhere.example")),
        "{second:#}"
    );
    assert_eq!(events(&first, "linked").len(), 1, "{first:#}");
    let text = desk.show_text(1001);
    assert!(
        text.contains("opened because of ticket #1000")
            && text.contains("why: tag refused: sender eve@elsewhere.example"),
        "{text}"
    );
    // `classify` threads against the store and says why.
    let probe = desk.dir.path().join("probe.eml");
    std::fs::write(
        &probe,
        reply_with(
            "probe@elsewhere.example",
            "mallory@elsewhere.example",
            "Re: [ISDA #1000] Portal login fails",
            "Me three.",
            "",
        ),
    )
    .expect("write probe");
    let out = desk.run(&[
        "classify",
        "--mailbox",
        "isda-support",
        &probe.display().to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tags:       [ISDA #1000]")
            && text.contains(
                "thread:     tag refused: sender mallory@elsewhere.example is not a participant of ticket #1000"
            ),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = desk.json(&[
        "classify",
        "--json",
        "--mailbox",
        "isda-support",
        &probe.display().to_string(),
    ]);
    assert!(
        j["thread"]["decision"]
            .as_str()
            .is_some_and(|r| r.starts_with("tag refused")),
        "{j:#}"
    );
    assert_eq!(
        desk.ticket(1000)["links"].as_array().map(Vec::len),
        Some(1),
        "classify stores nothing"
    );

    // What the stranger is sent: its own case number, nothing of the first.
    let to_eve = desk
        .sql("SELECT ticket_number, subject, raw, raw_codec FROM outbox WHERE first_rcpt = 'eve@elsewhere.example'")
        .await;
    assert!(!to_eve.is_empty(), "the stranger is acknowledged");
    for (ticket, subject, raw) in &to_eve {
        let raw = String::from_utf8_lossy(raw);
        assert_eq!(*ticket, 1001, "{subject}");
        assert!(subject.starts_with("[ISDA #1001]"), "{subject}");
        assert!(
            !raw.contains("SECRET-4711") && !raw.contains("ann@customer.example"),
            "{raw}"
        );
    }

    // The requester with the tag alone (no References): joins.
    let s = desk.ingest_one(
        "isda-support",
        &reply_with(
            "again@customer.example",
            "ann@customer.example",
            "RE: [ISDA #1000] Portal login fails",
            "Still failing.",
            "",
        ),
    );
    assert_eq!(s["replies"], 1, "{s}");
    let first = desk.ticket(1000);
    let replies = events(&first, "reply");
    assert_eq!(replies[0]["detail"]["thread"], "subject tag", "{first:#}");
    assert!(
        replies[0]["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("participant ann@customer.example (requester)")),
        "{first:#}"
    );

    // A client that strips the tag but keeps References (to our ack): threads,
    // whoever sends it (here Ann from her phone).
    let ack = desk
        .sql("SELECT ticket_number, message_id, raw, raw_codec FROM outbox WHERE ticket_number = 1000 AND kind = 'acknowledgement'")
        .await;
    let ack_id = ack
        .first()
        .map(|a| a.1.clone())
        .expect("an acknowledgement of #1000");
    let ack_id = if ack_id.starts_with('<') {
        ack_id
    } else {
        format!("<{ack_id}>")
    };
    let s = desk.ingest_one(
        "isda-support",
        &reply_with(
            "phone@mobile.example",
            "ann.lee@mobile.example",
            "Re: Portal login fails",
            "From my phone.",
            &ack_id,
        ),
    );
    assert_eq!(s["replies"], 1, "{s}");
    let first = desk.ticket(1000);
    assert_eq!(messages(&first), 3, "{first:#}");
    let last = events(&first, "reply")
        .last()
        .copied()
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(last["detail"]["thread"], "references", "{first:#}");
    assert!(
        last["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("joined by reference <")),
        "{last}"
    );
}

#[test]
fn tag_needs_a_participant_sqlite() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(tag_needs_a_participant(&Desk::new(None)));
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_needs_a_participant_postgres() {
    let db = PgDb::create("tagpart").await;
    tag_needs_a_participant(&Desk::new(Some(&db.url))).await;
    db.drop_db().await;
}

/// 40 days after resolve: a new ticket linked to the old one; 10 days after:
/// the ticket is reopened.
async fn reopen_window(desk: &Desk) {
    created(&desk.ingest_one(
        "isda-support",
        &message(
            "old@customer.example",
            "ann@customer.example",
            SUPPORT,
            "VPN drops",
            "Every hour.",
        ),
    ));
    desk.resolve_days_ago(1000, 40).await;
    let s = desk.ingest_one(
        "isda-support",
        &reply_with(
            "late@customer.example",
            "ann@customer.example",
            "Re: [ISDA #1000] VPN drops",
            "It is back.",
            "<old@customer.example>",
        ),
    );
    created(&s);
    let old = desk.ticket(1000);
    assert_eq!(old["status"], "resolved", "{old:#}");
    assert_eq!(messages(&old), 1, "{old:#}");
    let new = desk.ticket(1001);
    assert_eq!(new["links"][0]["ticket"], 1000, "{new:#}");
    assert_eq!(new["links"][0]["reason"], "after reopen window", "{new:#}");
    assert!(
        events(&new, "created")[0]["detail"]["thread"]
            .as_str()
            .is_some_and(|r| r.starts_with("new ticket after reopen window")),
        "{new:#}"
    );

    // Within the window: the same ticket, open again.
    desk.resolve_days_ago(1001, 10).await;
    let s = desk.ingest_one(
        "isda-support",
        &reply_with(
            "soon@customer.example",
            "ann@customer.example",
            "Re: [ISDA #1001] VPN drops",
            "Again.",
            "<late@customer.example>",
        ),
    );
    assert_eq!(s["replies"], 1, "{s}");
    let t = desk.ticket(1001);
    assert_eq!(t["status"], "open", "{t:#}");
    assert_eq!(events(&t, "reopened").len(), 1, "{t:#}");
    assert_eq!(messages(&t), 2, "{t:#}");
}

#[test]
fn reopen_window_sqlite() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(reopen_window(&Desk::new(None)));
}

#[tokio::test(flavor = "multi_thread")]
async fn reopen_window_postgres() {
    let db = PgDb::create("reopen").await;
    reopen_window(&Desk::new(Some(&db.url))).await;
    db.drop_db().await;
}

/// Sends a message over SMTP, as a mail program would.
async fn smtp_send(port: u16, from: &str, to: &str, raw: &[u8]) {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
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

/// An incident to map-support@: the urgent notice goes to the recipient list,
/// map-support@ among it, a mailbox the daemon watches. That notice comes back
/// and is recognised as our own mail: an `own mail seen` event, not a second
/// message on the ticket, and no acknowledgement to ourselves.
#[tokio::test(flavor = "multi_thread")]
async fn own_mail_is_not_recorded() {
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let extra = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nretry_initial_secs = 1\nretry_max_secs = 2\n",
        smtpd.port
    );
    let world = World::with(
        dovecot,
        &[Mailbox {
            name: "map-support",
            user: MAP,
            queue: "ProductionDefect",
            after: "seen",
        }],
        None,
        &extra,
    );
    let daemon = world.start_daemon();
    let incident = message(
        "down-1@ops.example.edu",
        "ops@ops.example.edu",
        MAP,
        "server7 is down",
        "It is down.",
    );
    smtp_send(smtpd.port, "ops@ops.example.edu", MAP, &incident).await;
    let seen = wait_for(Duration::from_secs(60), || {
        world
            .tickets()
            .first()
            .and_then(|t| t["number"].as_i64())
            .map(|n| {
                let t = world.json(&["tickets", "show", &n.to_string(), "--json"]);
                !events(&t, "own mail seen").is_empty()
            })
            .unwrap_or(false)
    });
    let tickets = world.tickets();
    let number = tickets
        .first()
        .and_then(|t| t["number"].as_i64())
        .expect("a ticket");
    let t = world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert!(
        seen,
        "the urgent notice never came back as own mail: {t:#}\n{}",
        daemon.log()
    );
    let urgent = t["mail"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| {
                    m["kind"] == "urgent_notification" && m["rcpt"].to_string().contains(MAP)
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(urgent, 1, "the urgent notice went to map-support@: {t:#}");
    assert_eq!(tickets.len(), 1, "no ticket of its own: {tickets:#?}");
    assert_eq!(messages(&t), 1, "not a second message: {t:#}");
    assert!(
        events(&t, "reply").is_empty(),
        "not recorded as a reply: {t:#}"
    );
    // Nothing queued because of it: no acknowledgement, nothing relayed.
    let before = t["mail"].as_array().map(Vec::len).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(messages(&t), 1, "{t:#}");
    assert_eq!(
        t["mail"].as_array().map(Vec::len).unwrap_or(0),
        before,
        "{t:#}"
    );
    assert!(
        !t["mail"].as_array().is_some_and(|m| m
            .iter()
            .any(|m| m["rcpt"].to_string().contains(MAP) && m["kind"] == "acknowledgement")),
        "{t:#}"
    );
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

/// A customer's message that carries one of our Message-IDs (a client that
/// copies the ID it answers, or a forgery) is still the customer's message:
/// only mail From the desk's own addresses is recognised as our own.
#[test]
fn our_message_id_from_a_stranger_is_still_recorded() {
    let desk = Desk::new(None);
    created(&desk.ingest_one(
        "isda-support",
        &message(
            "first@customer.example",
            "Ann Lee <ann@customer.example>",
            SUPPORT,
            "Cannot print transcripts",
            "The print button does nothing.",
        ),
    ));
    let outbox = desk.json(&["outbox", "list", "--json"]);
    let ours = outbox
        .as_array()
        .and_then(|a| a.first())
        .and_then(|m| m["message_id"].as_str())
        .expect("an acknowledgement in the outbox")
        .to_string();
    let s = desk.ingest_one(
        "isda-support",
        &message(
            &ours,
            "Eve <eve@elsewhere.example>",
            SUPPORT,
            "Another question",
            "Where is my diploma?",
        ),
    );
    created(&s);
    let second = desk.ticket(1001);
    assert_eq!(second["requester"], "eve@elsewhere.example", "{second:#}");
    assert!(events(&desk.ticket(1000), "own mail seen").is_empty());
}
