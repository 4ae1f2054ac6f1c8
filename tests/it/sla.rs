//! The SLA clock (issue 10) on SQLite and PostgreSQL: two schedulers (two
//! daemons on one database) tick at the same moments of a manual clock and
//! every level and every day's status is queued once; a response stops the
//! clock; three days down send one escalation, not many; a stalled ticket's
//! deadline moves.

use std::sync::Arc;

use jiff::Zoned;
use serde_json::Value;
use triaged::classify::{Classifier, Decision};
use triaged::clock::{ManualClock, SharedClock};
use triaged::config::{Config, DEFAULT_CONFIG};
use triaged::parse::parse;
use triaged::sla::Scheduler;
use triaged::store::{NewMessage, Status, Store};

use crate::harness::{PgDb, message};

const MIN: i64 = 60_000;

fn chicago(s: &str) -> i64 {
    match format!("{s}[America/Chicago]").parse::<Zoned>() {
        Ok(z) => z.timestamp().as_millisecond(),
        Err(e) => panic!("{s}: {e}"),
    }
}

struct Desk {
    config: Arc<Config>,
    classifier: Classifier,
    clock: ManualClock,
    /// Two schedulers, each with its own store (pool): two daemons.
    schedulers: [Scheduler; 2],
    store: Store,
}

impl Desk {
    async fn new(url: &str) -> Desk {
        let config = Arc::new(Config::parse(DEFAULT_CONFIG, "default").expect("config"));
        let classifier = Classifier::load(&config).expect("rules");
        let clock = ManualClock::at(chicago("2026-11-16T08:00"));
        let store = Store::open(url, 1000).await.expect("store");
        let scheduler = |store: Store| Scheduler {
            config: config.clone(),
            store,
            notifier: Arc::new(triaged::notify::notifier(&config).expect("templates")),
            clock: Arc::new(clock.clone()) as SharedClock,
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        let schedulers = [
            scheduler(store.clone()),
            scheduler(Store::open(url, 1000).await.expect("second store")),
        ];
        Desk {
            config,
            classifier,
            clock,
            schedulers,
            store,
        }
    }

    /// A ticket made from `raw` arriving in `mailbox` at `at`.
    async fn ticket(&self, mailbox: &str, raw: Vec<u8>, at: i64) -> (i64, Decision) {
        let parsed = parse(&raw);
        let mb = self.config.mailbox(mailbox).expect("mailbox");
        let d = self.classifier.classify(&parsed, mb, at, &self.config);
        let mut tx = self.store.begin_at(at).await.expect("begin");
        let number = tx
            .create_ticket(&parsed, &d, mailbox)
            .await
            .expect("ticket");
        let key = format!("k-{number}");
        tx.insert_message(
            number,
            &NewMessage {
                key: &key,
                content_hash: None,
                mailbox,
                origin: "test",
                parsed: &parsed,
                raw: &raw,
            },
        )
        .await
        .expect("message");
        tx.add_recipients(number, &d.recipients)
            .await
            .expect("recipients");
        tx.commit().await.expect("commit");
        (number, d)
    }

    /// Both schedulers tick at once at `at`.
    async fn tick_at(&self, at: i64) {
        self.clock.set(at);
        let (a, b) = tokio::join!(self.schedulers[0].tick(), self.schedulers[1].tick());
        a.expect("tick a");
        b.expect("tick b");
    }

    /// Outbox kinds of a ticket's mail, in order.
    async fn mail(&self, number: i64) -> Vec<(String, Vec<String>)> {
        let detail = self
            .store
            .ticket(number)
            .await
            .expect("detail")
            .expect("ticket");
        let mut mail: Vec<_> = detail
            .mail
            .into_iter()
            .map(|m| (m.id, m.kind, m.rcpt))
            .collect();
        mail.sort();
        mail.into_iter().map(|(_, k, r)| (k, r)).collect()
    }

    async fn events(&self, number: i64, kind: &str) -> Vec<Value> {
        let detail = self
            .store
            .ticket(number)
            .await
            .expect("detail")
            .expect("ticket");
        detail
            .events
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.detail)
            .collect()
    }
}

fn kinds(mail: &[(String, Vec<String>)]) -> Vec<&str> {
    mail.iter().map(|(k, _)| k.as_str()).collect()
}

fn outage(id: &str) -> Vec<u8> {
    message(
        id,
        "Lee <lee@registrar.example.edu>",
        "map-support@example.edu",
        "Degree audit service outage",
        "It is down for the whole department.",
    )
}

async fn clock_semantics(url: &str) {
    let desk = Desk::new(url).await;
    let monday = chicago("2026-11-16T10:00");

    // An urgent incident: warning to the integrators, escalation to the
    // managers, each once, whatever two daemons do.
    let (a, d) = desk.ticket("map-support", outage("a@x"), monday).await;
    assert_eq!(d.kind.as_str(), "incident");
    let due = d.due_ms.expect("due");
    desk.tick_at(monday).await;
    assert!(desk.mail(a).await.is_empty());
    desk.tick_at(due - MIN).await;
    desk.tick_at(due - MIN).await;
    let mail = desk.mail(a).await;
    assert_eq!(kinds(&mail), ["escalation_warning"], "{mail:?}");
    assert_eq!(mail[0].1, ["isda-integrators@example.edu"]);
    desk.tick_at(due).await;
    desk.tick_at(due + MIN).await;
    let mail = desk.mail(a).await;
    assert_eq!(
        kinds(&mail),
        ["escalation_warning", "escalation"],
        "{mail:?}"
    );
    assert_eq!(mail[1].1, ["isda-managers@example.edu"]);
    let escalations = desk.events(a, "escalation").await;
    assert_eq!(escalations.len(), 2, "{escalations:?}");
    assert_eq!(escalations[0]["level"], "warning");
    assert_eq!(escalations[1]["level"], "escalation");
    assert_eq!(escalations[1]["clock"], "response");
    assert_eq!(escalations[1]["due_at"], due);
    assert_eq!(escalations[1]["to"][0], "isda-managers@example.edu");

    // The daily status: Tuesday 09:00, once, to the recipient list (the
    // initiator alone; the internal lists and managers in one mail).
    let tuesday = chicago("2026-11-17T09:00");
    desk.tick_at(tuesday - MIN).await;
    assert_eq!(desk.mail(a).await.len(), 2);
    desk.tick_at(tuesday).await;
    desk.tick_at(tuesday + 5 * MIN).await;
    let mail = desk.mail(a).await;
    let daily: Vec<_> = mail.iter().filter(|m| m.0 == "daily_status").collect();
    assert!(daily.len() >= 2, "{mail:?}");
    assert!(
        daily
            .iter()
            .any(|m| m.1 == ["lee@registrar.example.edu".to_string()]),
        "the initiator alone: {daily:?}"
    );
    assert!(
        daily
            .iter()
            .any(|m| m.1.contains(&"isda-managers@example.edu".to_string())
                && !m.1.contains(&"lee@registrar.example.edu".to_string())),
        "managers without the initiator: {daily:?}"
    );
    assert_eq!(desk.events(a, "daily status").await.len(), 1);
    let statuses_tuesday = daily.len();
    // Down until Friday afternoon: one status (Friday's), not three.
    desk.tick_at(chicago("2026-11-20T15:00")).await;
    desk.tick_at(chicago("2026-11-20T15:01")).await;
    let days: Vec<String> = desk
        .events(a, "daily status")
        .await
        .iter()
        .map(|e| e["day"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(days, ["2026-11-17", "2026-11-20"]);
    let daily = desk
        .mail(a)
        .await
        .into_iter()
        .filter(|m| m.0 == "daily_status")
        .count();
    assert_eq!(daily, 2 * statuses_tuesday);

    // A response a minute before the due time: the warning, no escalation.
    let (b, d) = desk.ticket("map-support", outage("b@x"), monday).await;
    let due_b = d.due_ms.expect("due");
    desk.tick_at(due_b - 2 * MIN).await;
    assert_eq!(kinds(&desk.mail(b).await), ["escalation_warning"]);
    let mut tx = desk.store.begin_at(due_b - MIN).await.expect("begin");
    assert!(
        tx.set_first_response(b, Some("answer@example.edu"), "jlee@example.edu")
            .await
            .expect("response")
    );
    tx.commit().await.expect("commit");
    desk.tick_at(due_b - MIN).await;
    desk.tick_at(due_b + 60 * MIN).await;
    assert_eq!(kinds(&desk.mail(b).await), ["escalation_warning"]);

    // Three days down: one escalation, the warning recorded as skipped.
    let (c, d) = desk
        .ticket(
            "isda-support",
            message(
                "c@x",
                "ann@customer.example",
                "isda-support@example.edu",
                "Question about exports",
                "How do I export?",
            ),
            monday,
        )
        .await;
    assert_eq!(d.kind.as_str(), "service");
    desk.tick_at(chicago("2026-11-19T10:00")).await;
    desk.tick_at(chicago("2026-11-19T10:30")).await;
    assert_eq!(kinds(&desk.mail(c).await), ["escalation"]);
    let marks = desk.store.sla_marks(c).await.expect("marks");
    let marks: Vec<(&str, &str, &str)> = marks
        .iter()
        .map(|m| (m.clock.as_str(), m.level.as_str(), m.outcome.as_str()))
        .collect();
    assert!(
        marks.contains(&("response", "warning", "skipped")),
        "{marks:?}"
    );
    assert!(
        marks.contains(&("response", "escalation", "sent")),
        "{marks:?}"
    );
    assert_eq!(desk.events(c, "escalation skipped").await.len(), 1);

    // Stalled before the warning: nothing while it waits; back after a
    // business hour, the warning an hour later than it would have been.
    let (e, d) = desk
        .ticket(
            "isda-support",
            message(
                "e@x",
                "bo@customer.example",
                "isda-support@example.edu",
                "Another question",
                "Where is the form?",
            ),
            monday,
        )
        .await;
    let due_e = d.due_ms.expect("due");
    let mut tx = desk.store.begin_at(monday + 30 * MIN).await.expect("begin");
    assert!(
        tx.move_status(
            e,
            Status::New,
            Status::Stalled,
            "jlee@example.edu",
            "waiting"
        )
        .await
        .expect("stall")
    );
    tx.commit().await.expect("commit");
    desk.tick_at(monday + 30 * MIN).await;
    desk.tick_at(due_e + 10 * MIN).await;
    assert!(desk.mail(e).await.is_empty(), "stalled: nothing");
    let mut tx = desk.store.begin_at(due_e + 10 * MIN).await.expect("begin");
    assert!(
        tx.move_status(
            e,
            Status::Stalled,
            Status::Open,
            "bo@customer.example",
            "reply"
        )
        .await
        .expect("unstall")
    );
    tx.commit().await.expect("commit");
    desk.tick_at(due_e + 10 * MIN).await;
    assert!(desk.mail(e).await.is_empty(), "the clock moved on");
    assert!(desk.store.sla_next().await.expect("next").is_some());

    // A resolved ticket has no deadlines.
    let mut tx = desk.store.begin().await.expect("begin");
    tx.move_status(a, Status::New, Status::Resolved, "jlee@example.edu", "done")
        .await
        .expect("resolve");
    tx.commit().await.expect("commit");
    let before = desk.mail(a).await.len();
    desk.tick_at(chicago("2026-11-23T09:00")).await;
    assert_eq!(desk.mail(a).await.len(), before);
}

/// Two transactions mark the same level: the second is told it was marked.
async fn marks_once(url: &str) {
    let desk = Desk::new(url).await;
    let (n, _) = desk
        .ticket("map-support", outage("m@x"), chicago("2026-11-16T10:00"))
        .await;
    let second = Store::open(url, 1000).await.expect("second store");
    let mut tx = desk.store.begin().await.expect("begin");
    assert!(
        tx.mark_sla(n, "response", "escalation", "sent", 1)
            .await
            .expect("mark")
    );
    let other = tokio::spawn(async move {
        let mut tx = second.begin().await.expect("begin");
        let marked = tx
            .mark_sla(n, "response", "escalation", "sent", 1)
            .await
            .expect("mark");
        tx.commit().await.expect("commit");
        marked
    });
    tx.commit().await.expect("commit");
    assert!(!other.await.expect("joined"), "marked twice");
    assert_eq!(desk.store.sla_marks(n).await.expect("marks").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn clock_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    clock_semantics(&url).await;
    marks_once(&format!("sqlite://{}", dir.path().join("m.db").display())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clock_on_postgres() {
    let db = PgDb::create("sla").await;
    clock_semantics(&db.url).await;
    let db2 = PgDb::create("sla_marks").await;
    marks_once(&db2.url).await;
    db.drop_db().await;
    db2.drop_db().await;
}
