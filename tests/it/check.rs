//! `triaged check` as an operator uses it: `--connect` logs in to every
//! mailbox and the SMTP server without touching mail; `--json` for tools;
//! templates checked strictly; relative paths of a config file resolve
//! against its folder.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use triaged::dev::devstack::{PASSWORD, Smtpd};

use crate::harness::{Mailbox, PW_ENV, World, bin, message, search};

const SUPPORT: &str = "isda-support@example.edu";
const MAP: &str = "map-support@example.edu";

fn check(config: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--config")
        .arg(config)
        .arg("check")
        .args(args)
        .env(PW_ENV, PASSWORD)
        .env("TRIAGED_TEST_WRONG_PASSWORD", "not-the-password")
        .env_remove("TRIAGED_DATABASE_URL")
        .current_dir("/")
        .output()
        .expect("run triaged check")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The shipped config without its servers (no passwords to find).
fn without_servers(shipped: &str) -> String {
    let mut text = String::new();
    let mut skipping = false;
    for line in shipped.lines() {
        if line.starts_with('[') {
            skipping = matches!(line.trim(), "[imap]" | "[smtp]" | "[mailboxes.imap]");
        }
        if !skipping {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_connect_reports_every_server_and_touches_no_mail() {
    let world = World::new(
        &[
            Mailbox {
                name: "isda-support",
                user: SUPPORT,
                queue: "Customer-Support",
                after: "move",
            },
            Mailbox {
                name: "map-support",
                user: MAP,
                queue: "ProductionDefect",
                after: "seen",
            },
        ],
        None,
        &format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\ntimeout_secs = 5\n",
            closed_port()
        ),
    );
    // map-support's password is wrong.
    let text = std::fs::read_to_string(&world.config).expect("config");
    let text = text.replace(
        &format!("username = \"{MAP}\"\n"),
        &format!("username = \"{MAP}\"\npassword_env = \"TRIAGED_TEST_WRONG_PASSWORD\"\n"),
    );
    std::fs::write(&world.config, &text).expect("config");
    world
        .dovecot
        .append(
            SUPPORT,
            "INBOX",
            &[message(
                "c1@example.org",
                "ann@example.org",
                SUPPORT,
                "still here",
                "x",
            )],
        )
        .await
        .expect("append");

    let out = check(&world.config, &["--connect"]);
    let text_out = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text_out}");
    assert!(
        text_out
            .lines()
            .any(|l| l.starts_with("imap isda-support (127.0.0.1:")
                && l.contains(
                    "): ok: logged in as isda-support@example.edu; folder \"INBOX\" has 1 messages"
                )),
        "{text_out}"
    );
    // The server's words, not ours.
    assert!(
        text_out.lines().any(|l| l.starts_with("imap map-support (")
            && l.contains("FAILED: login as map-support@example.edu refused")
            && l.contains("AUTHENTICATIONFAILED")),
        "{text_out}"
    );
    assert!(
        text_out
            .lines()
            .any(|l| l.starts_with("smtp smtp (127.0.0.1:") && l.contains("FAILED")),
        "{text_out}"
    );
    assert!(!text_out.contains(": ok\n") || !text_out.ends_with(": ok\n"));

    // JSON: the same, for tools.
    let out = check(&world.config, &["--connect", "--json"]);
    let report = json_of(&out);
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(report["problems"], Value::Array(vec![]), "{report:#}");
    let conns = report["connections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(conns.len(), 3, "{report:#}");
    let by = |name: &str| conns.iter().find(|c| c["name"] == name).cloned();
    assert_eq!(
        by("isda-support").map(|c| c["ok"].clone()),
        Some(Value::Bool(true))
    );
    assert_eq!(
        by("map-support").map(|c| c["ok"].clone()),
        Some(Value::Bool(false))
    );
    assert_eq!(by("smtp").map(|c| c["kind"].clone()), Some("smtp".into()));

    // Nothing was touched: the message is unseen and in its folder, and no
    // database was made.
    assert_eq!(search(&world.dovecot, SUPPORT, "INBOX", "UNSEEN").await, 1);
    assert!(!world.dir.path().join("triaged.db").exists());

    // With a working SMTP server and the right password: all ok.
    let smtpd = Smtpd::start(&world.dovecot).expect("start opensmtpd");
    let text = std::fs::read_to_string(&world.config).expect("config");
    let fixed = text
        .replace("password_env = \"TRIAGED_TEST_WRONG_PASSWORD\"\n", "")
        .lines()
        .map(|l| {
            if l.starts_with("port = ") && !l.contains(&world.dovecot.imap_port.to_string()) {
                format!("port = {}", smtpd.port)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&world.config, fixed).expect("config");
    let out = check(&world.config, &["--connect"]);
    let text_out = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text_out}");
    assert!(
        text_out
            .lines()
            .any(|l| l.starts_with("smtp smtp (127.0.0.1:") && l.contains("): ok: connected")),
        "{text_out}"
    );
    assert!(text_out.trim_end().ends_with(": ok"), "{text_out}");
    assert_eq!(search(&world.dovecot, SUPPORT, "INBOX", "UNSEEN").await, 1);
}

/// A deployment in a folder of its own, with relative paths, checked and
/// used from another working directory.
#[test]
fn check_json_names_template_and_address_problems_with_lines_and_relative_paths_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tpl = dir.path().join("tpl");
    std::fs::create_dir_all(tpl.join("desks/nope")).expect("mkdir");
    for (name, text) in triaged::notify::templates::BUILTIN {
        std::fs::write(tpl.join(name), text).expect("write");
    }
    std::fs::write(
        tpl.join("acknowledgement.subject"),
        "{{ ticket.tag }}\n{{ ticket.tagg }} {{ ticket.subject }}\n",
    )
    .expect("write");
    std::fs::write(tpl.join("desks/nope/acknowledgement.txt"), "x").expect("write");
    let shipped = without_servers(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/triaged.example.toml"),
        )
        .expect("example"),
    );
    let config = shipped
        .replace("templates = \"templates\"", "templates = \"tpl\"")
        .replacen(
            "managers = [",
            &format!("managers = [\"{}@example.edu\", ", "m".repeat(100 * 1024)),
            1,
        );
    assert!(config.contains("templates = \"tpl\""));
    let path = dir.path().join("triaged.toml");
    std::fs::write(&path, &config).expect("write");

    let out = check(&path, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    let line_of = |needle: &str| -> Option<(String, i64)> {
        problems
            .iter()
            .find(|p| p["reason"].as_str().unwrap_or("").contains(needle))
            .map(|p| {
                (
                    p["file"].as_str().unwrap_or("").to_string(),
                    p["line"].as_i64().unwrap_or(-1),
                )
            })
    };
    // The huge address: refused at its line, not repeated whole.
    let managers_line = config
        .lines()
        .position(|l| l.starts_with("managers = ["))
        .map(|i| i as i64 + 1);
    assert_eq!(
        line_of("an address has at most 254").map(|(_, l)| l),
        managers_line,
        "{report:#}"
    );
    assert!(out.stdout.len() < 64 * 1024, "{} bytes", out.stdout.len());
    // Without it, the templates are checked: strictly, at file:line, in the
    // folder beside the config (the working directory is /).
    std::fs::write(
        &path,
        shipped.replace("templates = \"templates\"", "templates = \"tpl\""),
    )
    .expect("write");
    let out = check(&path, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    let line_of = |needle: &str| -> Option<(String, i64)> {
        problems
            .iter()
            .find(|p| p["reason"].as_str().unwrap_or("").contains(needle))
            .map(|p| {
                (
                    p["file"].as_str().unwrap_or("").to_string(),
                    p["line"].as_i64().unwrap_or(-1),
                )
            })
    };
    assert_eq!(
        line_of("undefined value"),
        Some((tpl.join("acknowledgement.subject").display().to_string(), 2)),
        "{report:#}"
    );
    assert!(line_of("there is no desk \"nope\"").is_some(), "{report:#}");
    // The rules were found beside the config, not in the working directory:
    // there are none there, so the built-in rules were used without problem.
    assert!(
        !problems
            .iter()
            .any(|p| p["file"].as_str().unwrap_or("").contains("routing-rules")),
        "{report:#}"
    );

    // Fixed: `tickets list` works from any working directory, and the
    // database is made beside the config.
    std::fs::write(
        tpl.join("acknowledgement.subject"),
        "{{ ticket.tag }} {{ ticket.subject }}\n",
    )
    .expect("write");
    std::fs::remove_dir_all(tpl.join("desks/nope")).expect("rm");
    let out = check(&path, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(bin())
        .arg("--config")
        .arg(&path)
        .args(["tickets", "list", "--json"])
        .env_remove("TRIAGED_DATABASE_URL")
        .current_dir("/")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("triaged.db").exists());
}

/// A spool `triaged deliver` could not write to is a problem at its
/// mailbox's line (paths that fail for root too: under a file); a spool it
/// can create passes, and a mailbox without one is not looked at.
#[test]
fn check_reports_a_spool_deliver_cannot_use_at_its_mailbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("afile"), b"not a folder").expect("write");
    let shipped = without_servers(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/triaged.example.toml"),
        )
        .expect("example"),
    );
    let with_spool = |spool: &str| {
        let text = shipped.replace(
            "default_queue = \"Hosted-Help\"\n",
            &format!("default_queue = \"Hosted-Help\"\nspool = \"{spool}\"\n"),
        );
        assert!(text.contains("spool = "), "no help mailbox in the example");
        text
    };
    let path = dir.path().join("triaged.toml");
    // Relative to the config's folder, as the other paths.
    let config = with_spool("afile/spool/help");
    std::fs::write(&path, &config).expect("write");
    let out = check(&path, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    let help_line = config
        .lines()
        .position(|l| l == "name = \"help\"")
        .map(|i| i as i64 + 1);
    assert_eq!(problems.len(), 1, "{report:#}");
    assert_eq!(problems[0]["line"].as_i64(), help_line, "{report:#}");
    assert_eq!(
        problems[0]["file"].as_str(),
        Some(path.display().to_string().as_str())
    );
    let reason = problems[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("mailbox \"help\": spool ")
            && reason.ends_with(&format!(
                "cannot be created: {} is not a folder",
                dir.path().join("afile").display()
            )),
        "{report:#}"
    );

    std::fs::write(&path, with_spool("spool/help")).expect("write");
    let out = check(&path, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Checking created nothing.
    assert!(!dir.path().join("spool").exists());
}
