//! Commands by mail end to end (issue 9), through OpenSMTPD -> LMTP ->
//! Dovecot and the real binary: a customer writes; an integrator replies
//! with `/recipients add`, `/take`, `/queue ProductionDefect` and a sentence,
//! authenticated by the receiving server's Authentication-Results; the
//! customer gets the sentence alone, threaded under the acknowledgement; the
//! recipient list gets the transfer notice; the new queue's list its
//! notification; the ticket has its owner and queue. The same commands with a
//! forged From move nothing and relay nothing; the forger hears nothing.

use std::time::Duration;

use triaged::dev::devstack::{Dovecot, Smtpd};

use crate::correspondence::{head, header, inbox, smtp_send, wait_inbox};
use crate::harness::{Mailbox, World, message, wait_for};

const SUPPORT: &str = "isda-support@example.edu";
const CUSTOMER: &str = "ann@customer.example";
const INTEGRATOR: &str = "jlee@example.edu";
const COLLEAGUE: &str = "mgarcia@example.edu";
const DEFECTS: &str = "amit-auto-defect@example.edu";
const FORGER: &str = "eve@attacker.example";
const MX: &str = "mx.test.example";

fn world(dovecot: Dovecot, smtp_port: u16) -> World {
    let extra = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"plain\"\nretry_initial_secs = 1\nretry_max_secs = 2\n\n\
         [commands]\nrequire_authenticated = true\ntrusted_authserv_ids = [\"{MX}\"]\n"
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
    let desk =
        "[[desks]]\nname = \"isda\"\ntag = \"ISDA\"\naddresses = [\"isda-support@example.edu\"]\n";
    let queue = "[[queues]]\nname = \"ProductionDefect\"\ndesk = \"isda\"\n";
    assert!(text.contains(desk) && text.contains(queue), "{text}");
    let text = text
        .replace(
            desk,
            &format!(
                "{desk}title = \"ISDA support\"\nteam = [\"{INTEGRATOR}\", \"{COLLEAGUE}\"]\n"
            ),
        )
        .replace(
            queue,
            &format!("{queue}default_kind = \"bug\"\nnotify = [\"{DEFECTS}\"]\n"),
        );
    std::fs::write(&w.config, text).expect("config");
    w
}

fn reply(id: &str, from: &str, subject: &str, body: &str, extra_headers: &str) -> Vec<u8> {
    let mut m = message(id, from, SUPPORT, subject, body);
    m.splice(0..0, extra_headers.bytes());
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn an_integrator_steers_by_mail_and_a_forged_from_moves_nothing() {
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let world = world(dovecot, smtpd.port);
    let daemon = world.start_daemon();

    // 1. The customer writes and gets the acknowledgement.
    let first = message(
        "portal-1@customer.example",
        "Ann Lee <ann@customer.example>",
        SUPPORT,
        "Portal shows an error page",
        "Since this morning the portal shows an error page after login.",
    );
    smtp_send(smtpd.port, CUSTOMER, SUPPORT, &first).await;
    let acks = wait_inbox(&world.dovecot, CUSTOMER, 1, Duration::from_secs(30)).await;
    assert_eq!(acks.len(), 1, "daemon log:\n{}", daemon.log());
    let ack_id = header(&acks[0], "Message-ID").expect("ack Message-ID");
    let ack_subject = header(&acks[0], "Subject").expect("ack subject");
    let number = world.tickets()[0]["number"].as_i64().expect("number");
    let show = || world.json(&["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(show()["queue"], "Customer-Support");

    // 2. The integrator steers, authenticated by the receiving server.
    let sentence = "We found the cause; a fix is being prepared.";
    let body = format!(
        "/recipients add {COLLEAGUE}\r\n/take\r\n/queue ProductionDefect\r\n\r\n{sentence}"
    );
    let m = reply(
        "jlee-steer-1@example.edu",
        "Jane Lee <jlee@example.edu>",
        &format!("Re: {ack_subject}"),
        &body,
        &format!(
            "Authentication-Results: {MX}; dkim=pass header.d=example.edu; spf=pass smtp.mailfrom=jlee@example.edu\r\n\
             In-Reply-To: {ack_id}\r\nReferences: <portal-1@customer.example> {ack_id}\r\n"
        ),
    );
    smtp_send(smtpd.port, INTEGRATOR, SUPPORT, &m).await;

    // The customer: the sentence alone, threaded under the ack.
    let got = wait_inbox(&world.dovecot, CUSTOMER, 2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "daemon log:\n{}", daemon.log());
    let relayed = got
        .iter()
        .find(|m| m.contains(sentence))
        .unwrap_or_else(|| panic!("no relayed sentence in {got:#?}"))
        .clone();
    assert_eq!(header(&relayed, "In-Reply-To"), Some(ack_id.clone()));
    for hidden in [
        "/take",
        "/queue",
        "/recipients",
        "ProductionDefect",
        "jlee@",
        "mgarcia@",
        "amit-auto-defect",
    ] {
        assert!(!relayed.contains(hidden), "{hidden} in\n{relayed}");
    }
    let h = head(&relayed).to_ascii_lowercase();
    assert!(!h.contains("example.edu>") || h.contains(SUPPORT), "{h}");

    // The recipient list: the transfer notice.
    let notice = wait_inbox(&world.dovecot, COLLEAGUE, 1, Duration::from_secs(30)).await;
    assert_eq!(notice.len(), 1, "daemon log:\n{}", daemon.log());
    assert!(
        header(&notice[0], "Subject")
            .unwrap_or_default()
            .contains("Transferred to ProductionDefect"),
        "{}",
        notice[0]
    );
    // The new queue's list: its notification, about the customer's message.
    let queue_mail = wait_inbox(&world.dovecot, DEFECTS, 1, Duration::from_secs(30)).await;
    assert_eq!(queue_mail.len(), 1, "daemon log:\n{}", daemon.log());
    assert!(
        header(&queue_mail[0], "Subject")
            .unwrap_or_default()
            .contains("New in ProductionDefect"),
        "{}",
        queue_mail[0]
    );
    assert!(queue_mail[0].contains("error page after login"));

    // The ticket: owner, queue, kind, same number; `tickets show` says so.
    assert!(
        wait_for(Duration::from_secs(20), || {
            let s = show();
            s["owner"] == INTEGRATOR && s["queue"] == "ProductionDefect"
        }),
        "{:#}",
        show()
    );
    let s = show();
    assert_eq!(s["kind"], "bug", "{s:#}");
    assert_eq!(s["number"], number);
    assert!(s["first_response_at"].is_string(), "{s:#}");
    let text = String::from_utf8_lossy(
        &world
            .triaged(&["tickets", "show", &number.to_string()])
            .stdout,
    )
    .into_owned();
    assert!(text.contains(INTEGRATOR), "{text}");
    assert!(text.contains("ProductionDefect"), "{text}");
    // One acknowledgement only: a transfer is not a new ticket.
    assert_eq!(world.tickets().len(), 1);

    // 3. The same kind of reply with a forged From: nothing moves.
    let forged_sentence = "Closing this, nothing to do.";
    let m = reply(
        "forged-1@attacker.example",
        "Jane Lee <jlee@example.edu>",
        &format!("Re: {ack_subject}"),
        &format!("/owner {COLLEAGUE}\r\n/queue Admin\r\n/resolve\r\n\r\n{forged_sentence}"),
        &format!("In-Reply-To: {ack_id}\r\nReply-To: {FORGER}\r\n"),
    );
    smtp_send(smtpd.port, FORGER, SUPPORT, &m).await;
    assert!(
        wait_for(Duration::from_secs(20), || {
            show()["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["kind"] == "command" && e["detail"]["result"] == "refused")
        }),
        "daemon log:\n{}",
        daemon.log()
    );
    let s = show();
    assert_eq!(s["owner"], INTEGRATOR, "{s:#}");
    assert_eq!(s["queue"], "ProductionDefect", "{s:#}");
    assert_ne!(s["status"], "resolved", "{s:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let customer = inbox(&world.dovecot, CUSTOMER).await;
    assert_eq!(customer.len(), 2, "nothing relayed: {customer:#?}");
    assert!(customer.iter().all(|m| !m.contains(forged_sentence)));
    assert_eq!(inbox(&world.dovecot, FORGER).await.len(), 0);
    assert_eq!(inbox(&world.dovecot, DEFECTS).await.len(), 1);
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

/// Through `triaged ingest` (no servers): hostile command blocks (10,000
/// command lines; a `/queue` with a 1 MB argument) are refused in bounded
/// form, move nothing, relay nothing; a `/comment` is recorded and goes to
/// the team, never to the customer.
#[test]
fn hostile_blocks_and_comments_through_ingest() {
    let w = World::new(
        &[],
        None,
        &format!("[commands]\ntrusted_authserv_ids = [\"{MX}\"]\n"),
    );
    let text = std::fs::read_to_string(&w.config).expect("config");
    let desk =
        "[[desks]]\nname = \"isda\"\ntag = \"ISDA\"\naddresses = [\"isda-support@example.edu\"]\n";
    std::fs::write(
        &w.config,
        text.replace(
            desk,
            &format!("{desk}team = [\"{INTEGRATOR}\", \"{COLLEAGUE}\"]\n"),
        ),
    )
    .expect("config");
    let ingest = |name: &str, raw: Vec<u8>| {
        let path = w.dir.path().join(name);
        std::fs::write(&path, raw).expect("write");
        let out = w.triaged(&["ingest", "--json", path.to_str().expect("path")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ingest(
        "1.eml",
        message("h-1@customer.example", CUSTOMER, SUPPORT, "Help", "Hello."),
    );
    let number = w.tickets()[0]["number"].as_i64().expect("number");
    let show = || w.json(&["tickets", "show", &number.to_string(), "--json"]);
    let auth = format!(
        "Authentication-Results: {MX}; dkim=pass header.d=example.edu\r\nIn-Reply-To: <h-1@customer.example>\r\n"
    );

    // 10,000 command lines, then a sentence.
    let mut body = String::new();
    for _ in 0..10_000 {
        body.push_str("/urgency high\r\n");
    }
    body.push_str("Sentence after the flood.");
    ingest(
        "2.eml",
        reply("h-2@example.edu", INTEGRATOR, "Re: Help", &body, &auth),
    );
    // A 1 MB queue name.
    let body = format!(
        "/queue {}\r\nSentence after the big queue.",
        "P".repeat(1_000_000)
    );
    ingest(
        "3.eml",
        reply("h-3@example.edu", INTEGRATOR, "Re: Help", &body, &auth),
    );
    let s = show();
    assert_eq!(s["queue"], "Customer-Support", "{s:#}");
    let events = s["events"].as_array().cloned().unwrap_or_default();
    assert!(events.len() < 200, "{}", events.len());
    let size: usize = events.iter().map(|e| e.to_string().len()).sum();
    assert!(size < 100_000, "{size}");
    let mail = s["mail"].as_array().cloned().unwrap_or_default();
    // Nothing relayed to the customer from either (both hold refused lines).
    assert!(
        mail.iter()
            .filter(|m| m["kind"] == "correspondence")
            .count()
            == 0,
        "{mail:#?}"
    );

    // A note: recorded, to the team, not to the customer.
    ingest(
        "4.eml",
        reply(
            "h-4@example.edu",
            INTEGRATOR,
            "Re: Help",
            "/comment the customer is on the old release",
            &auth,
        ),
    );
    let s = show();
    let events = s["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events.iter().any(|e| e["kind"] == "comment"
            && e["detail"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("old release")),
        "{s:#}"
    );
    let mail = s["mail"].as_array().cloned().unwrap_or_default();
    let comments: Vec<&serde_json::Value> =
        mail.iter().filter(|m| m["kind"] == "comment").collect();
    assert_eq!(comments.len(), 1, "{mail:#?}");
    assert!(
        !comments[0].to_string().contains(CUSTOMER),
        "{:#}",
        comments[0]
    );
    assert!(
        mail.iter().all(|m| m["kind"] != "correspondence"),
        "{mail:#?}"
    );
}

/// The same steering from the command line (`tickets recipients`, `set`,
/// `reply`, `comment`) with the daemon running: the same events as by mail
/// (`command` ... `applied`, `transfer`), the same mail through the real
/// servers (the transfer notice to the recipient list, the new queue's
/// notification, the reply relayed to the customer without its command
/// line, the note to the team only). Bad values change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_steers_as_mail_does() {
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let world = world(dovecot, smtpd.port);
    let daemon = world.start_daemon();

    let first = message(
        "cli-1@customer.example",
        "Ann Lee <ann@customer.example>",
        SUPPORT,
        "Reports time out",
        "The monthly report times out since Friday.",
    );
    smtp_send(smtpd.port, CUSTOMER, SUPPORT, &first).await;
    let acks = wait_inbox(&world.dovecot, CUSTOMER, 1, Duration::from_secs(30)).await;
    assert_eq!(acks.len(), 1, "daemon log:\n{}", daemon.log());
    let number = world.tickets()[0]["number"].as_i64().expect("number");
    let n = number.to_string();
    let show = || world.json(&["tickets", "show", &n, "--json"]);
    let run = |args: &[&str]| {
        let out = world.triaged(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };

    // Bad values: refused before anything changes.
    let before = show()["events"].as_array().map_or(0, Vec::len);
    let (code, text) = run(&["tickets", "set", &n, "--queue", "Admin\n/resolve"]);
    assert_eq!(code, Some(2), "{text}");
    let (code, text) = run(&["tickets", "set", &n, "--status", "sleeping"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("unknown status"), "{text}");
    let (code, text) = run(&["tickets", "set", "99999", "--status", "stalled"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no ticket 99999"), "{text}");
    assert_eq!(show()["events"].as_array().map_or(0, Vec::len), before);
    // A queue of another desk is refused by the same code as by mail, and
    // recorded as refused.
    let (code, text) = run(&["tickets", "set", &n, "--queue", "Nowhere", "--by", "ops"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("refused"), "{text}");

    // Steer: the colleague joins the list, the ticket moves queue.
    let (code, text) = run(&["tickets", "recipients", &n, "add", COLLEAGUE, "--by", "ops"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&[
        "tickets",
        "set",
        &n,
        "--queue",
        "ProductionDefect",
        "--owner",
        INTEGRATOR,
        "--urgency",
        "high",
        "--by",
        "ops",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let s = show();
    assert_eq!(s["queue"], "ProductionDefect", "{s:#}");
    assert_eq!(s["kind"], "bug", "{s:#}");
    assert_eq!(s["owner"], INTEGRATOR, "{s:#}");
    let events = s["events"].as_array().cloned().unwrap_or_default();
    for (kind, result) in [("command", "applied"), ("command", "refused")] {
        assert!(
            events.iter().any(|e| e["kind"] == kind
                && e["detail"]["result"] == result
                && e["actor"] == "ops"),
            "no {kind} {result} by ops in {events:#?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "transfer" && e["detail"]["to"] == "ProductionDefect"),
        "{events:#?}"
    );
    let notice = wait_inbox(&world.dovecot, COLLEAGUE, 1, Duration::from_secs(30)).await;
    assert_eq!(notice.len(), 1, "daemon log:\n{}", daemon.log());
    assert!(
        header(&notice[0], "Subject")
            .unwrap_or_default()
            .contains("Transferred to ProductionDefect"),
        "{}",
        notice[0]
    );
    let queue_mail = wait_inbox(&world.dovecot, DEFECTS, 1, Duration::from_secs(30)).await;
    assert_eq!(queue_mail.len(), 1, "daemon log:\n{}", daemon.log());
    assert!(queue_mail[0].contains("times out since Friday"));

    // The integrator's reply, with a command line on top.
    let sentence = "The report job was stuck; it runs again.";
    let file = world.dir.path().join("reply.txt");
    std::fs::write(&file, format!("/status stalled\n\n{sentence}\n")).expect("write");
    let (code, text) = run(&[
        "tickets",
        "reply",
        &n,
        "--from",
        "Jane Lee <jlee@example.edu>",
        "--file",
        file.to_str().expect("path"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let got = wait_inbox(&world.dovecot, CUSTOMER, 2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "daemon log:\n{}", daemon.log());
    let relayed = got
        .iter()
        .find(|m| m.contains(sentence))
        .unwrap_or_else(|| panic!("no relayed sentence in {got:#?}"));
    for hidden in ["/status", "jlee@", "ProductionDefect", "command line"] {
        assert!(!relayed.contains(hidden), "{hidden} in\n{relayed}");
    }
    let s = show();
    assert_eq!(s["status"], "stalled", "{s:#}");
    assert!(s["first_response_at"].is_string(), "{s:#}");

    // A note: to the team (not its author), never to the customer.
    let note = world.dir.path().join("note.txt");
    std::fs::write(&note, "/resolve\nThe customer runs the old client.\n").expect("write");
    let (code, text) = run(&[
        "tickets",
        "comment",
        &n,
        "--by",
        COLLEAGUE,
        "--file",
        note.to_str().expect("path"),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let to_team = wait_inbox(&world.dovecot, INTEGRATOR, 1, Duration::from_secs(30)).await;
    assert!(
        to_team.iter().any(|m| m.contains("old client")),
        "{to_team:#?}"
    );
    // The note's lines are a note: "/resolve" in it was not obeyed.
    assert_eq!(show()["status"], "stalled");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let customer = inbox(&world.dovecot, CUSTOMER).await;
    assert_eq!(customer.len(), 2, "{customer:#?}");
    assert!(customer.iter().all(|m| !m.contains("old client")));
    assert!(
        inbox(&world.dovecot, COLLEAGUE)
            .await
            .iter()
            .all(|m| !m.contains("old client")),
        "the author got their own note"
    );
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}
