//! Alerts and recoveries (issue 9), through the real binary on files: fifty
//! alerts with one key make one ticket and send nothing to the monitoring
//! system; the recovery (a rule-defined `recovery`) resolves that ticket and
//! sends nothing; a problem after that opens a new ticket; a recovery with no
//! open ticket of its key is recorded on a ticket of its own, created
//! resolved. No mail ever goes to a monitoring system, even when a team
//! member answers on an alert ticket. The same over IMAP, with the daemon.

use serde_json::Value;

use std::time::Duration;

use crate::harness::{Mailbox, PgDb, ShippedDesk as Desk, World, message, wait_for};

const MAP: &str = "map-support@example.edu";
const NAGIOS: &str = "nagios@monitor.example.edu";

fn messages(t: &Value) -> usize {
    t["messages"].as_array().map(Vec::len).unwrap_or(0)
}

fn events<'a>(t: &'a Value, kind: &str) -> Vec<&'a Value> {
    t["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == kind).collect())
        .unwrap_or_default()
}

fn mails<'a>(t: &'a Value, kind: &str) -> Vec<&'a Value> {
    t["mail"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == kind).collect())
        .unwrap_or_default()
}

/// A Nagios host notification from the monitoring server (no
/// Auto-Submitted: the monitoring list alone says it is a machine).
fn nagios(id: &str, subject: &str) -> Vec<u8> {
    message(
        &format!("{id}@monitor.example.edu"),
        &format!("Nagios <{NAGIOS}>"),
        MAP,
        subject,
        &format!("***** Nagios *****\n\nNotification {id}\nHost: registration-app-02"),
    )
}

/// No mail to the monitoring system, ever: not in the outbox at all.
fn nothing_to_monitoring(desk: &Desk) {
    for m in desk.outbox() {
        let text = m.to_string().to_ascii_lowercase();
        assert!(
            !text.contains("\"rcpt\":\"nagios@") && !text.contains(&format!("\"{NAGIOS}\"")),
            "mail to the monitoring system: {m:#}"
        );
        if let Some(rcpt) = m["rcpt"].as_array() {
            assert!(
                !rcpt
                    .iter()
                    .any(|r| r.as_str().is_some_and(|r| r.contains(NAGIOS))),
                "{m:#}"
            );
        }
        assert!(
            !m["rcpt"].as_str().is_some_and(|r| r.contains(NAGIOS))
                && !m["first_rcpt"].as_str().is_some_and(|r| r.contains(NAGIOS)),
            "{m:#}"
        );
    }
}

async fn fifty_alerts_one_ticket_and_the_recovery_resolves_it(desk: &Desk) {
    let alerts: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            nagios(
                &format!("problem-{i}"),
                "PROBLEM: registration-app-02 is DOWN",
            )
        })
        .collect();
    let s = desk.ingest("map-support", &alerts);
    assert_eq!(s["new_tickets"], 1, "{s}");
    assert_eq!(s["replies"], 49, "{s}");
    let first = desk.ticket(1000);
    assert_eq!(messages(&first), 50, "{first:#}");
    assert_eq!(first["kind"], "alert", "{first:#}");
    assert_ne!(first["status"], "resolved", "{first:#}");
    // What the desk sends for an alert: no acknowledgement (the rule
    // suppresses it), at most the queue's one notification; nothing relayed
    // for the 49 repeats.
    assert!(mails(&first, "acknowledgement").is_empty(), "{first:#}");
    assert!(mails(&first, "queue_notification").len() <= 1, "{first:#}");
    assert!(mails(&first, "requester_reply").is_empty(), "{first:#}");
    let before = first["mail"].as_array().map(Vec::len).unwrap_or(0);
    nothing_to_monitoring(desk);

    // The recovery joins the open ticket of its key and resolves it.
    let s = desk.ingest(
        "map-support",
        &[nagios("recovery-1", "RECOVERY: registration-app-02 is UP")],
    );
    assert_eq!(s["replies"], 1, "{s}");
    let first = desk.ticket(1000);
    assert_eq!(messages(&first), 51, "{first:#}");
    assert_eq!(first["status"], "resolved", "{first:#}");
    let status = events(&first, "status");
    let resolved = status
        .iter()
        .find(|e| e["detail"]["to"] == "resolved")
        .unwrap_or_else(|| panic!("no status event to resolved: {first:#}"));
    assert_eq!(
        resolved["detail"]["reason"], "recovery message",
        "{first:#}"
    );
    assert_eq!(resolved["actor"], NAGIOS, "{first:#}");
    assert_eq!(events(&first, "recovered").len(), 1, "{first:#}");
    assert_eq!(
        first["mail"].as_array().map(Vec::len).unwrap_or(0),
        before,
        "no mail for a recovery: {first:#}"
    );

    // A new problem after the recovery: a new ticket, the old one stays
    // resolved.
    let s = desk.ingest(
        "map-support",
        &[nagios(
            "problem-again",
            "PROBLEM: registration-app-02 is DOWN",
        )],
    );
    assert_eq!(s["new_tickets"], 1, "{s}");
    let second = desk.ticket(1001);
    assert_eq!(messages(&second), 1, "{second:#}");
    assert_ne!(second["status"], "resolved", "{second:#}");
    let first = desk.ticket(1000);
    assert_eq!(first["status"], "resolved", "{first:#}");
    assert_eq!(messages(&first), 51, "{first:#}");

    // A recovery with no open ticket of its key: its own ticket, created
    // resolved, with no mail.
    let s = desk.ingest(
        "map-support",
        &[nagios("recovery-orphan", "RECOVERY: library-web-01 is UP")],
    );
    assert_eq!(s["new_tickets"], 1, "{s}");
    let orphan = desk.ticket(1002);
    assert_eq!(orphan["status"], "resolved", "{orphan:#}");
    assert!(
        orphan["mail"].as_array().is_none_or(Vec::is_empty),
        "{orphan:#}"
    );

    // A team member answers on the open alert ticket: whatever is relayed,
    // nothing goes to the monitoring system.
    let reply = message(
        "team-1@example.edu",
        "Jo Lee <jlee@example.edu>",
        MAP,
        "Re: [ISDA #1001] PROBLEM: registration-app-02 is DOWN",
        "Looking at it now.",
    );
    desk.ingest("map-support", &[reply]);
    nothing_to_monitoring(desk);
}

#[test]
fn fifty_alerts_one_ticket_and_the_recovery_resolves_it_sqlite() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(fifty_alerts_one_ticket_and_the_recovery_resolves_it(
        &Desk::new(None),
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_alerts_one_ticket_and_the_recovery_resolves_it_postgres() {
    let db = PgDb::create("alerts").await;
    fifty_alerts_one_ticket_and_the_recovery_resolves_it(&Desk::new(Some(&db.url))).await;
    db.drop_db().await;
}

/// The same over IMAP: the daemon takes 50 alerts and the recovery from the
/// map-support mailbox; one ticket, resolved, nothing queued for the
/// monitoring system.
#[tokio::test(flavor = "multi_thread")]
async fn alerts_and_recovery_over_imap() {
    let world = World::new(
        &[Mailbox {
            name: "map-support",
            user: MAP,
            queue: "ProductionDefect",
            after: "move",
        }],
        None,
        "",
    );
    let daemon = world.start_daemon();
    let alerts: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            nagios(
                &format!("imap-problem-{i}"),
                "PROBLEM: registration-app-02 is DOWN",
            )
        })
        .collect();
    world
        .dovecot
        .append(MAP, "INBOX", &alerts)
        .await
        .expect("append");
    let messages_in = |w: &World| w.stats()["messages"].as_i64().unwrap_or(0);
    assert!(
        wait_for(Duration::from_secs(60), || messages_in(&world) == 50),
        "50 alerts not taken; log:\n{}",
        daemon.log()
    );
    world
        .dovecot
        .append(
            MAP,
            "INBOX",
            &[nagios(
                "imap-recovery",
                "RECOVERY: registration-app-02 is UP",
            )],
        )
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(30), || messages_in(&world) == 51),
        "recovery not taken; log:\n{}",
        daemon.log()
    );
    let tickets = world.tickets();
    assert_eq!(tickets.len(), 1, "{tickets:#?}");
    let number = tickets[0]["number"].as_i64().expect("number");
    let t = world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(messages(&t), 51, "{t:#}");
    assert_eq!(t["status"], "resolved", "{t:#}");
    assert!(mails(&t, "acknowledgement").is_empty(), "{t:#}");
    let outbox = match world.json(&["outbox", "list", "--json", "--limit", "10000"]) {
        Value::Array(v) => v,
        other => panic!("{other:#}"),
    };
    assert!(
        !outbox
            .iter()
            .any(|m| m["rcpt"].to_string().contains(NAGIOS)),
        "{outbox:#?}"
    );
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}
