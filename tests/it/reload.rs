//! Live reload of the mail templates: a broken set is refused with
//! `file:line` and the last good one keeps composing mail; a fixed set is
//! taken, by file change and by SIGHUP.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Mailbox, World, message, wait_for};

const SUPPORT: &str = "isda-support@example.edu";

fn copy_templates(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(&from).expect("read templates") {
        let p = e.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
        }
    }
}

/// The subject of the acknowledgement of the ticket whose subject is `subject`.
fn ack_subject(world: &World, subject: &str) -> Option<String> {
    let number = world
        .tickets()
        .iter()
        .find(|t| t["subject"] == subject)
        .and_then(|t| t["number"].as_i64())?;
    match world.json(&["outbox", "list", "--json"]) {
        Value::Array(mails) => mails
            .iter()
            .find(|m| m["ticket_number"] == number && m["kind"] == "acknowledgement")
            .and_then(|m| m["subject"].as_str().map(str::to_string)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_reload_refuses_a_broken_set_and_takes_a_fixed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    copy_templates(&templates);
    let world = World::new(
        &[Mailbox {
            name: "isda-support",
            user: SUPPORT,
            queue: "Customer-Support",
            after: "seen",
        }],
        None,
        &format!("[paths]\ntemplates = \"{}\"\n", templates.display()),
    );
    let daemon = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .log()
            .contains("triaged running")),
        "{}",
        daemon.log()
    );
    let deliver = async |id: &str, subject: &str| {
        world
            .dovecot
            .append(
                SUPPORT,
                "INBOX",
                &[message(id, "ann@example.org", SUPPORT, subject, "hello")],
            )
            .await
            .expect("append");
        assert!(
            wait_for(Duration::from_secs(20), || ack_subject(&world, subject)
                .is_some()),
            "no acknowledgement for {subject:?}: {}",
            daemon.log()
        );
        ack_subject(&world, subject).unwrap_or_default()
    };

    // Broken twice over: a syntax error on line 2 of one file, and a
    // variable no acknowledgement has on line 1 of another.
    let subject_file = templates.join("acknowledgement.subject");
    std::fs::write(&subject_file, "NEW {{ ticket.tag }}\n{% if %}\n").expect("write");
    std::fs::write(
        templates.join("acknowledgement.txt"),
        "{{ ticket.tagg }} received\n",
    )
    .expect("write");
    // Both files may be seen in one reload or in two.
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .log()
            .contains("acknowledgement.txt:1: undefined value")),
        "{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("templates refused")
            && log.contains("acknowledgement.subject:2: syntax error"),
        "{log}"
    );
    assert!(log.contains("keeping the last good templates"), "{log}");
    assert!(
        !log.contains("missing"),
        "a broken file is not missing: {log}"
    );
    // Mail is still composed, with the last good set.
    let first = deliver("r1@example.org", "printer jammed").await;
    assert!(first.starts_with("[ISDA #"), "{first}");
    assert!(first.ends_with("printer jammed"), "{first}");

    // Fixed: taken, and the next acknowledgement uses it.
    std::fs::write(&subject_file, "NEW {{ ticket.tag }} {{ ticket.subject }}\n").expect("write");
    std::fs::write(
        templates.join("acknowledgement.txt"),
        "{{ ticket.tag }} received\n",
    )
    .expect("write");
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .log()
            .contains("templates reloaded")),
        "{}",
        daemon.log()
    );
    let second = deliver("r2@example.org", "scanner jammed").await;
    assert!(second.starts_with("NEW [ISDA #"), "{second}");

    // SIGHUP reloads both sets, whether or not files changed.
    let pid = daemon.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(
        wait_for(Duration::from_secs(15), || {
            let log = daemon.log();
            log.lines()
                .any(|l| l.contains("templates reloaded") && l.contains("SIGHUP"))
                && log
                    .lines()
                    .any(|l| l.contains("routing rules reloaded") && l.contains("SIGHUP"))
        }),
        "{}",
        daemon.log()
    );
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}
