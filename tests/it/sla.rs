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
use triaged::store::{MessageBytes, NewMessage, Status, Store};

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
            notifier: triaged::sla::fixed(triaged::notify::notifier(&config).expect("templates")),
            clock: Arc::new(clock.clone()) as SharedClock,
            wake: Arc::new(tokio::sync::Notify::new()),
            leader: None,
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
                bytes: MessageBytes::Raw(&raw),
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

    // `/urgency critical` on a medium ticket (8 h): the priority and due
    // time are recomputed and the escalation follows the new due time.
    let (g, d) = desk
        .ticket(
            "isda-support",
            message(
                "g@x",
                "cy@customer.example",
                "isda-support@example.edu",
                "A third question",
                "Which form?",
            ),
            monday,
        )
        .await;
    let old_due = d.due_ms.expect("due");
    desk.tick_at(monday + MIN).await;
    let mut tx = desk.store.begin_at(monday + 2 * MIN).await.expect("begin");
    triaged::pipeline::steer::apply(
        &mut tx,
        &desk.config,
        g,
        &[triaged::commands::Command::Urgency(
            triaged::priority::Urgency::Critical,
        )],
        "jlee@example.edu",
    )
    .await
    .expect("steer");
    tx.commit().await.expect("commit");
    let new_due = desk
        .store
        .ticket(g)
        .await
        .expect("detail")
        .expect("ticket")
        .ticket
        .due_at
        .expect("due");
    assert!(new_due < old_due, "{new_due} !< {old_due}");
    desk.tick_at(new_due).await;
    assert_eq!(kinds(&desk.mail(g).await), ["escalation"], "due {new_due}");
    let escalation = desk.events(g, "escalation").await;
    assert_eq!(escalation[0]["due_at"], new_due);

    // A resolved ticket has no deadlines.
    let mut tx = desk.store.begin().await.expect("begin");
    tx.move_status(a, Status::New, Status::Resolved, "jlee@example.edu", "done")
        .await
        .expect("resolve");
    tx.commit().await.expect("commit");
    let before = desk.mail(a).await.len();
    desk.tick_at(chicago("2026-11-23T09:00")).await;
    assert_eq!(desk.mail(a).await.len(), before);

    // Changed settings make every open ticket due for a look, once.
    assert!(desk.store.sla_settings(1).await.expect("settings"));
    assert_eq!(desk.store.sla_next().await.expect("next"), Some(0));
    desk.tick_at(chicago("2026-11-23T09:01")).await;
    assert_ne!(desk.store.sla_next().await.expect("next"), Some(0));
    assert!(!desk.store.sla_settings(1).await.expect("settings"));
    assert_ne!(desk.store.sla_next().await.expect("next"), Some(0));
    assert!(desk.store.sla_settings(2).await.expect("settings"));
    assert_eq!(desk.store.sla_next().await.expect("next"), Some(0));
    assert_eq!(desk.mail(a).await.len(), before, "resolved: still nothing");
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

/// With several daemons, only the holder of the `scheduler` lease ticks:
/// while another daemon holds it, a due escalation waits; once it is free,
/// this scheduler takes it, sends the escalation, and releases it at stop.
async fn only_the_lease_holder_ticks(url: &str) {
    use std::time::Duration;
    let desk = Desk::new(url).await;
    let monday = chicago("2026-11-16T10:00");
    let (n, d) = desk.ticket("map-support", outage("lease@x"), monday).await;
    let due = d.due_ms.expect("due");
    let other = "other-host:1:abc";
    assert!(
        desk.store
            .try_lease(triaged::sla::LEASE, other, Duration::from_secs(3600))
            .await
            .expect("lease")
    );
    let mut me = desk.schedulers[0].clone();
    me.leader = Some(triaged::sla::Leader {
        holder: "this-host:2:def".to_string(),
        ttl: Duration::from_secs(30),
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(me.run(stop.clone()));
    // Past the escalation: the follower wakes, does not tick.
    desk.clock.set(due + 10 * MIN);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(desk.mail(n).await.is_empty(), "a follower ticked");
    // The other daemon stops: the lease is free at the next wake.
    desk.store
        .release_lease(triaged::sla::LEASE, other)
        .await
        .expect("release");
    desk.clock.set(due + 20 * MIN);
    let mut sent = Vec::new();
    for _ in 0..100 {
        sent = desk.mail(n).await;
        if sent.iter().any(|m| m.0 == "escalation") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sent.iter().any(|m| m.0 == "escalation"),
        "the new leader sent nothing: {sent:?}"
    );
    stop.cancel();
    task.await.expect("scheduler");
    // Released at stop: another daemon may lead at once.
    assert!(
        desk.store
            .try_lease(triaged::sla::LEASE, other, Duration::from_secs(30))
            .await
            .expect("lease")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_lease_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    only_the_lease_holder_ticks(&format!("sqlite://{}", dir.path().join("l.db").display())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_lease_on_postgres() {
    let db = PgDb::create("sla_lease").await;
    only_the_lease_holder_ticks(&db.url).await;
    db.drop_db().await;
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

// ---------------------------------------------------------------------------
// End to end: the real binary, OpenSMTPD -> Dovecot.

mod e2e {
    use std::time::Duration;

    use triaged::dev::devstack::{Dovecot, Smtpd};

    use crate::correspondence::{header, inbox, smtp_send, wait_inbox};
    use crate::harness::{Mailbox, World, message, wait_for};

    const SUPPORT: &str = "isda-support@example.edu";
    const MANAGERS: &str = "isda-managers@example.edu";
    const INTEGRATORS: &str = "isda-integrators@example.edu";
    const INTEGRATOR: &str = "jlee@example.edu";
    const ANN: &str = "ann@customer.example";
    const BOB: &str = "bob@customer.example";
    const MX: &str = "mx.test.example";

    /// The daily status time `secs` from now, in the desk's time zone.
    fn daily_in(secs: i64) -> String {
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .expect("time")
            .to_zoned(jiff::tz::TimeZone::get("America/Chicago").expect("tz"))
            .strftime("%H:%M:%S")
            .to_string()
    }

    /// Every ticket with a 20 s target (Critical unless a rule says otherwise), the desk open around the
    /// clock, a tick a second, the warning at half the target, and the
    /// daily status at `daily` (the desk's time zone).
    fn world(dovecot: Dovecot, smtp_port: u16, daily: &str) -> World {
        let extra = format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\nretry_initial_secs = 1\nretry_max_secs = 2\n\n\
             [commands]\nrequire_authenticated = true\ntrusted_authserv_ids = [\"{MX}\"]\n\n\
             [priority]\nurgency = \"critical\"\nimpact = \"extensive\"\ndefaults = []\n\n\
             [targets]\ncritical = \"20s\"\nhigh = \"20s\"\nmedium = \"20s\"\nlow = \"20s\"\noverrides = []\n\n\
             [sla]\ntick_secs = 1\nwarning_share = 0.5\ndaily_status_at = \"{daily}\"\n"
        );
        let w = World::with(
            dovecot,
            &[Mailbox {
                name: "isda-support",
                user: SUPPORT,
                queue: "Customer-Support",
                after: "seen",
            }],
            None,
            &extra,
        );
        let text = std::fs::read_to_string(&w.config).expect("config");
        let desk = "[[desks]]\nname = \"isda\"\ntag = \"ISDA\"\naddresses = [\"isda-support@example.edu\"]\n";
        assert!(text.contains(desk), "{text}");
        let day = "[\"00:00-24:00\"]";
        let text = text.replace(
            desk,
            &format!(
                "{desk}title = \"ISDA support\"\nteam = [\"{INTEGRATOR}\"]\nmanagers = [\"{MANAGERS}\"]\n\
                 integrators = [\"{INTEGRATORS}\"]\noncall = [\"isda-oncall@example.edu\"]\n\
                 hours = {{ mon = {day}, tue = {day}, wed = {day}, thu = {day}, fri = {day}, sat = {day}, sun = {day} }}\n"
            ),
        );
        std::fs::write(&w.config, text).expect("config");
        w
    }

    fn subjects(mail: &[String]) -> Vec<String> {
        mail.iter()
            .map(|m| header(m, "Subject").unwrap_or_default())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn warning_escalation_and_daily_status_through_the_servers() {
        let dovecot = Dovecot::start().expect("dovecot");
        let smtpd = Smtpd::start(&dovecot).expect("smtpd");
        // No daily status in the first run (its time is far away).
        let far = daily_in(12 * 3600);
        let world = world(dovecot, smtpd.port, &far);
        let daemon = world.start_daemon();

        // Bob's ticket is answered in time.
        let bob = message(
            "bob-1@customer.example",
            "Bob <bob@customer.example>",
            SUPPORT,
            "Reports are slow",
            "The monthly report takes minutes.",
        );
        smtp_send(smtpd.port, BOB, SUPPORT, &bob).await;
        let acks = wait_inbox(&world.dovecot, BOB, 1, Duration::from_secs(20)).await;
        assert_eq!(acks.len(), 1, "daemon log:\n{}", daemon.log());
        let bob_ticket = world.tickets()[0]["number"].as_i64().expect("number");
        let ack_id = header(&acks[0], "Message-ID").expect("ack id");
        let answer = format!(
            "Authentication-Results: {MX}; dkim=pass header.d=example.edu; spf=pass smtp.mailfrom={INTEGRATOR}\r\n\
             In-Reply-To: {ack_id}\r\nReferences: <bob-1@customer.example> {ack_id}\r\n"
        );
        let mut reply = message(
            "jlee-1@example.edu",
            "Jane Lee <jlee@example.edu>",
            SUPPORT,
            &format!("Re: [ISDA #{bob_ticket}] Reports are slow"),
            "We are looking at it now.",
        );
        reply.splice(0..0, answer.bytes());
        smtp_send(smtpd.port, INTEGRATOR, SUPPORT, &reply).await;
        let show = |n: i64| world.json(&["tickets", "show", &n.to_string(), "--json"]);
        assert!(
            wait_for(Duration::from_secs(15), || {
                !show(bob_ticket)["first_response_at"].is_null()
            }),
            "no initial response; daemon log:\n{}",
            daemon.log()
        );

        // Ann's ticket is not answered: warning to the integrators, then the
        // escalation to the managers.
        let ann = message(
            "ann-1@customer.example",
            "Ann Lee <ann@customer.example>",
            SUPPORT,
            "Portal outage",
            "The portal is down for the whole department.",
        );
        smtp_send(smtpd.port, ANN, SUPPORT, &ann).await;
        assert_eq!(
            wait_inbox(&world.dovecot, ANN, 1, Duration::from_secs(20))
                .await
                .len(),
            1
        );
        let ann_ticket = world
            .tickets()
            .iter()
            .filter_map(|t| t["number"].as_i64())
            .max()
            .expect("ann's ticket");
        assert_ne!(ann_ticket, bob_ticket);
        let tag = format!("[ISDA #{ann_ticket}]");
        assert_eq!(show(ann_ticket)["kind"], "incident");
        // The integrators are on an incident's list (the urgent notice) and
        // get the warning.
        let warned = wait_inbox(&world.dovecot, INTEGRATORS, 2, Duration::from_secs(30)).await;
        let warnings: Vec<String> = subjects(&warned)
            .into_iter()
            .filter(|s| s.contains("Response due soon"))
            .collect();
        assert_eq!(
            warnings,
            [format!("{tag} Response due soon: Portal outage")],
            "daemon log:\n{}",
            daemon.log()
        );
        let escalated = wait_inbox(&world.dovecot, MANAGERS, 1, Duration::from_secs(30)).await;
        let escalations: Vec<&String> = escalated
            .iter()
            .filter(|m| {
                header(m, "Subject")
                    .unwrap_or_default()
                    .contains("ESCALATION")
            })
            .collect();
        assert_eq!(escalations.len(), 1, "{:?}", subjects(&escalated));
        let e = escalations[0];
        assert_eq!(
            header(e, "Subject"),
            Some(format!("{tag} ESCALATION: response overdue: Portal outage"))
        );
        assert!(e.contains("been given."), "{e}");

        // Restarted with the daily status due in a few seconds: each
        // unresolved urgent ticket's list hears once; the customer's copy
        // names nobody inside; nothing sent before is sent again.
        let stopped = daemon.terminate(Duration::from_secs(30));
        assert!(stopped.success(), "{stopped:?}");
        let text = std::fs::read_to_string(&world.config).expect("config");
        let soon = daily_in(6);
        std::fs::write(
            &world.config,
            text.replace(
                &format!("daily_status_at = \"{far}\""),
                &format!("daily_status_at = \"{soon}\""),
            ),
        )
        .expect("config");
        let daemon = world.start_daemon();
        let got = wait_inbox(&world.dovecot, ANN, 2, Duration::from_secs(30)).await;
        let status: Vec<&String> = got
            .iter()
            .filter(|m| {
                header(m, "Subject")
                    .unwrap_or_default()
                    .contains("Daily status")
            })
            .collect();
        assert_eq!(
            status.len(),
            1,
            "{:?}; log:\n{}",
            subjects(&got),
            daemon.log()
        );
        let body = status[0].split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        for inside in [INTEGRATOR, MANAGERS, INTEGRATORS, "isda-oncall"] {
            assert!(
                !status[0].contains(inside),
                "{inside} shown to the customer:\n{}",
                status[0]
            );
        }
        assert!(body.contains("Status:"), "{body}");
        // The managers: the escalation and both tickets' status.
        let managers = wait_inbox(&world.dovecot, MANAGERS, 3, Duration::from_secs(20)).await;
        assert_eq!(managers.len(), 3, "{:?}", subjects(&managers));
        let status = daemon.terminate(Duration::from_secs(30));
        assert!(status.success(), "{status:?}");

        // Bob's ticket: no warning, no escalation; one daily status each.
        let events = |n: i64, kind: &str| -> Vec<serde_json::Value> {
            show(n)["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e["kind"] == kind)
                .collect()
        };
        assert!(events(bob_ticket, "escalation").is_empty());
        let ann_levels: Vec<String> = events(ann_ticket, "escalation")
            .iter()
            .map(|e| e["detail"]["level"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(ann_levels, ["warning", "escalation"]);
        assert_eq!(events(ann_ticket, "daily status").len(), 1);
        assert_eq!(events(bob_ticket, "daily status").len(), 1);
        let managers = subjects(&inbox(&world.dovecot, MANAGERS).await);
        assert!(
            !managers
                .iter()
                .any(|s| s.contains(&format!("#{bob_ticket}]")) && s.contains("ESCALATION")),
            "{managers:?}"
        );
        // The timeline reads them.
        let text = world.triaged(&["tickets", "show", &ann_ticket.to_string()]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("SLA escalation: response overdue to isda-managers@example.edu"),
            "{text}"
        );
        assert!(text.contains("daily status for"), "{text}");
    }
}
