//! Hostile sizes and hostile text (issue 7): what a message reflects into our
//! mail is bounded and clean, and what the CLI prints of it cannot drive the
//! terminal. The real binary ingests the messages; the composed mail is read
//! back raw from the outbox.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::harness::bin;

/// RFC 5322 section 2.1.1.
const MAX_LINE: usize = 998;

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(dir)
        .args(args)
        .env_remove("TRIAGED_CONFIG")
        .env_remove("TRIAGED_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run triaged")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "status {}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Base64 (RFC 4648, padded), for encoded words.
fn b64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The hostile messages, each from its own sender (the acknowledgement limit
/// is per sender).
fn messages(dir: &Path) -> Vec<String> {
    let big = "x".repeat(1024 * 1024);
    let refs: String = (0..100).map(|i| format!(" <r{i}@x.example>")).collect();
    let files: Vec<(&str, String)> = vec![
        (
            "1-subject.eml",
            format!(
                "From: subject@customer.example\r\nTo: isda-support@example.edu\r\n\
                 Subject: {big}\r\nMessage-ID: <subject@x.example>\r\nReferences:{refs}\r\n\r\nhi\r\n"
            ),
        ),
        (
            "2-name.eml",
            format!(
                "From: \"{big}\" <name@customer.example>\r\nTo: isda-support@example.edu\r\n\
                 Subject: name\r\nMessage-ID: <name@x.example>\r\n\r\nhi\r\n"
            ),
        ),
        (
            // CR LF, ESC, BEL, C1 CSI and a bidi override in encoded words,
            // which decode to exactly those characters.
            "3-inject.eml",
            format!(
                "From: =?utf-8?b?{}?= <inject@customer.example>\r\nTo: isda-support@example.edu\r\n\
                 Subject: =?utf-8?b?{}?=\r\nMessage-ID: <inject@x.example>\r\n\r\n\
                 body\x1b[2J\x07 line\r\n",
                b64("Ann\r\nBcc: name@evil.example\x1b]0;owned\x07"),
                b64("Hello\r\nBcc: subject@evil.example\r\n\x1b[31mred\u{9b}2J\u{202e}txt"),
            ),
        ),
        (
            "4-unicode.eml",
            format!(
                "From: unicode@customer.example\r\nTo: isda-support@example.edu\r\n\
                 Subject: =?utf-8?b?{}?=\r\nMessage-ID: <{}@x.example>\r\n\r\nhi\r\n",
                b64(&"Grüße aus 東京 ".repeat(40)),
                "i".repeat(2000),
            ),
        ),
    ];
    for (name, text) in &files {
        std::fs::write(dir.join(name), text).expect("write message");
    }
    files.iter().map(|(n, _)| n.to_string()).collect()
}

fn outbox(dir: &Path) -> Vec<triaged::store::OutboxMail> {
    let url = format!("sqlite://{}", dir.join("triaged.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = triaged::store::Store::open(&url, 1000)
            .await
            .expect("open store");
        let mail = store.due_outbox(i64::MAX, 1000).await.expect("outbox");
        store.close().await;
        mail
    })
}

fn header_block(raw: &str) -> &str {
    raw.split("\r\n\r\n").next().unwrap_or(raw)
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| {
        c.is_control() && c != '\n' && c != '\t'
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

/// A folder with the hostile messages ingested by `triaged ingest`.
fn ingested() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["ingest".to_string()];
    args.extend(messages(dir.path()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(run_in(dir.path(), &argv));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 new tickets"), "{stdout}");
    dir
}

#[test]
fn reflected_text_is_bounded_folded_and_clean() {
    let dir = ingested();

    let mail = outbox(dir.path());
    let acks: Vec<_> = mail
        .iter()
        .filter(|m| m.kind == "acknowledgement")
        .collect();
    assert_eq!(
        acks.len(),
        4,
        "{:?}",
        mail.iter().map(|m| &m.rcpt).collect::<Vec<_>>()
    );
    for m in &mail {
        let raw = String::from_utf8(m.raw.clone()).expect("mail is ASCII");
        let longest = raw.split("\r\n").map(str::len).max().unwrap_or(0);
        assert!(
            longest <= MAX_LINE,
            "{} to {:?}: a line of {longest} octets",
            m.kind,
            m.rcpt
        );
        assert!(
            raw.len() < 64 * 1024,
            "{} to {:?}: {} bytes",
            m.kind,
            m.rcpt,
            raw.len()
        );
        assert!(raw.is_ascii());
        // No header comes from the mail's text: every header line is one we write.
        for line in header_block(&raw).split("\r\n") {
            if line.starts_with(' ') || line.starts_with('\t') {
                continue;
            }
            let name = line.split(':').next().unwrap_or("");
            assert!(
                [
                    "From",
                    "Reply-To",
                    "Subject",
                    "Message-ID",
                    "Date",
                    "Auto-Submitted",
                    "X-Auto-Response-Suppress",
                    "To",
                    "In-Reply-To",
                    "References",
                    "MIME-Version",
                    "Content-Type",
                    "Content-Transfer-Encoding",
                ]
                .contains(&name),
                "unexpected header line {line:?}"
            );
        }
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.raw)
            .expect("our mail parses");
        let subject = parsed.subject().unwrap_or("");
        assert!(!has_control(subject), "{subject:?}");
        assert!(
            subject.chars().count() <= 400,
            "{} chars",
            subject.chars().count()
        );
        let text = parsed.body_text(0).unwrap_or_default();
        assert!(!has_control(&text.replace("\r\n", "\n")), "{text:?}");
        assert!(text.lines().all(|l| l.len() <= MAX_LINE));
        if let Some(refs) = parsed.references().as_text_list() {
            assert!(refs.len() <= 20, "{} references", refs.len());
        }
    }
    let ack = |rcpt: &str| {
        let m = acks
            .iter()
            .find(|m| m.rcpt == [rcpt])
            .unwrap_or_else(|| panic!("no acknowledgement to {rcpt}"));
        let parsed = mail_parser::MessageParser::default()
            .parse(&m.raw)
            .expect("parses");
        (
            parsed.subject().unwrap_or("").to_string(),
            parsed.body_text(0).unwrap_or_default().to_string(),
            String::from_utf8_lossy(&m.raw).into_owned(),
        )
    };
    // The 1 MB subject: cut to 200 characters with an ellipsis.
    let (subject, text, _) = ack("subject@customer.example");
    let reflected = subject.split_once("] ").map(|(_, s)| s).unwrap_or("");
    assert_eq!(reflected, format!("{}…", "x".repeat(199)));
    assert!(text.contains(reflected), "{text}");
    // The 1 MB display name: one short line.
    let (_, text, _) = ack("name@customer.example");
    let hello = text.lines().next().unwrap_or("");
    assert!(
        hello.starts_with("Hello xxx") && hello.ends_with("…,") && hello.len() < 100,
        "{hello:?}"
    );
    // The injection: no Bcc header, the text is there without the controls.
    let (subject, text, raw) = ack("inject@customer.example");
    assert!(!raw.to_ascii_lowercase().contains("\r\nbcc:"), "{raw}");
    assert!(
        subject.ends_with("Hello Bcc: subject@evil.example [31mred 2J txt"),
        "{subject:?}"
    );
    assert!(
        text.contains("Hello Ann Bcc: name@evil.example ]0;owned,"),
        "{text}"
    );
    // The long non-ASCII subject: RFC 2047 encoded words, folded, decoded intact.
    let (subject, _, raw) = ack("unicode@customer.example");
    assert!(subject.contains("Grüße aus 東京 Grüße"), "{subject:?}");
    assert!(subject.ends_with('…'));
    let subject_lines: Vec<&str> = header_block(&raw)
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Subject:"))
        .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
        .collect();
    assert!(subject_lines.len() > 3, "{subject_lines:?}");
    assert!(
        subject_lines.iter().all(|l| l.len() <= 78),
        "{subject_lines:?}"
    );
    assert!(
        subject_lines[1..]
            .iter()
            .all(|l| l.trim().starts_with("=?utf-8?"))
    );
    // Its 2000-character Message-ID is not repeated in a header.
    assert!(!raw.contains("In-Reply-To"), "{raw}");
}

/// `tickets list` and `tickets show` print escapes, not controls; JSON stays
/// valid and carries the same values.
#[test]
fn cli_prints_mail_text_with_visible_escapes() {
    let dir = ingested();
    let list = ok(run_in(dir.path(), &["tickets", "list"]));
    let shown = String::from_utf8(list.stdout).expect("utf-8");
    let json = ok(run_in(dir.path(), &["tickets", "list", "--json"]));
    let tickets: Value = serde_json::from_slice(&json.stdout).expect("valid JSON");
    let inject = tickets
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|t| t["requester"] == "inject@customer.example")
        })
        .expect("the injection ticket");
    let stored = inject["subject"].as_str().expect("subject");
    assert!(
        stored.contains('\u{9b}') && stored.contains('\x1b'),
        "{stored:?}"
    );
    let number = inject["number"].as_i64().expect("number").to_string();
    let show = ok(run_in(dir.path(), &["tickets", "show", &number]));
    let show = String::from_utf8(show.stdout).expect("utf-8");
    let show_json = ok(run_in(dir.path(), &["tickets", "show", &number, "--json"]));
    let detail: Value = serde_json::from_slice(&show_json.stdout).expect("valid JSON");
    assert_eq!(detail["subject"].as_str(), Some(stored));
    for (what, out) in [
        ("list", shown.as_str()),
        ("show", show.as_str()),
        (
            "list --json",
            std::str::from_utf8(&json.stdout).expect("utf-8"),
        ),
        (
            "show --json",
            std::str::from_utf8(&show_json.stdout).expect("utf-8"),
        ),
    ] {
        for bad in ['\x1b', '\x07', '\x08', '\r', '\u{9b}', '\u{202e}'] {
            assert!(
                !out.contains(bad),
                "tickets {what} prints {bad:?} raw:\n{out}"
            );
        }
    }
    // (The parser unfolds CR LF in headers to spaces; the other controls stay.)
    assert!(
        shown.contains("subject@evil.example \\x1b[31mred\\u{9b}2J\\u{202e}txt"),
        "{shown}"
    );
    assert!(
        show.contains("name@evil.example\\x1b]0;owned\\x07 <inject@customer.example>"),
        "{show}"
    );
    assert!(show.contains("body\\x1b[2J\\x07 line"), "{show}");
}

/// The shipped rules (without their test cases) plus `extra` as `95-hostile.toml`.
fn rules_with(to: &Path, extra: &str) {
    std::fs::create_dir_all(to).expect("mkdir");
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("routing-rules");
    for e in std::fs::read_dir(from).expect("read rules").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
    std::fs::write(to.join("95-hostile.toml"), extra).expect("write");
}

/// `n` rules whose regex is valid but compiles to megabytes (`\w{140}`).
fn wide_rules(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("[[rule]]\nname = \"h{i}\"\nwhen.subject.regex = '\\w{{140}}{i}'\ntags = [\"h\"]\n\n")
        })
        .collect()
}

/// `check` and `rules test` refuse rules that compile too big, and a rule file
/// too large, with `file:line: reason`.
#[test]
fn check_and_rules_test_refuse_hostile_rule_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    rules_with(&dir.path().join("routing-rules"), &wide_rules(3));
    for args in [&["check"][..], &["rules", "test"][..]] {
        let out = run_in(dir.path(), args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?}: {text}");
        for (i, line) in [(0, 3), (1, 8), (2, 13)] {
            let want = format!(
                "routing-rules/95-hostile.toml:{line}: rule \"h{i}\": subject: regex \"\\\\w{{140}}{i}\": \
                 compiled, it exceeds the limit of 1 MiB per regex"
            );
            assert!(text.contains(&want), "{args:?}: want {want}\n{text}");
        }
    }

    // A rule file over 4 MiB is refused without being compiled.
    let dir = tempfile::tempdir().expect("tempdir");
    let filler = "# filler line\n".repeat(300_000);
    rules_with(&dir.path().join("routing-rules"), &filler);
    let out = run_in(dir.path(), &["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains(&format!(
            "routing-rules/95-hostile.toml:0: the file is {} bytes; a rule file may have at most 4194304 bytes",
            filler.len()
        )),
        "{text}"
    );
}

/// The daemon refuses the same set on reload, logs where, keeps its rules
/// and goes on ingesting.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_refuses_hostile_rules_on_reload_and_keeps_working() {
    use crate::harness::{Mailbox, World, message, wait_for};
    use std::time::Duration;
    const SUPPORT: &str = "isda-support@example.edu";
    let rules_dir = tempfile::tempdir().expect("tempdir");
    rules_with(rules_dir.path(), "");
    let world = World::new(
        &[Mailbox {
            name: "isda-support",
            user: SUPPORT,
            queue: "Customer-Support",
            after: "seen",
        }],
        None,
        &format!("[paths]\nrules = \"{}\"\n", rules_dir.path().display()),
    );
    let daemon = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .log()
            .contains("triaged running")),
        "{}",
        daemon.log()
    );
    std::fs::write(rules_dir.path().join("95-hostile.toml"), wide_rules(3)).expect("write");
    assert!(
        wait_for(Duration::from_secs(30), || daemon
            .log()
            .contains("keeping the last good routing rules")),
        "{}",
        daemon.log()
    );
    assert!(
        daemon
            .log()
            .contains("95-hostile.toml:8: rule \"h1\": subject: regex"),
        "{}",
        daemon.log()
    );
    world
        .dovecot
        .append(
            SUPPORT,
            "INBOX",
            &[message(
                "h@x",
                "a@example.org",
                SUPPORT,
                "after the refusal",
                "x",
            )],
        )
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(20), || world
            .tickets()
            .iter()
            .any(|t| t["subject"] == "after the refusal")),
        "{}",
        daemon.log()
    );
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

/// End to end: hostile messages in the watched mailbox, the acknowledgements
/// sent by the daemon through OpenSMTPD and read back over IMAP as delivered.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_acknowledgements_arrive_bounded_and_without_injected_headers() {
    use crate::harness::{Mailbox, World};
    use futures::TryStreamExt;
    use std::time::Duration;
    use triaged::dev::devstack::{Dovecot, Smtpd};
    const SUPPORT: &str = "isda-support@example.edu";
    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let world = World::with(
        dovecot,
        &[Mailbox {
            name: "isda-support",
            user: SUPPORT,
            queue: "Customer-Support",
            after: "seen",
        }],
        None,
        &format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nretry_initial_secs = 1\nretry_max_secs = 2\n",
            smtpd.port
        ),
    );
    let daemon = world.start_daemon();
    let dir = tempfile::tempdir().expect("tempdir");
    let names = messages(dir.path());
    let raws: Vec<Vec<u8>> = names[..3]
        .iter()
        .map(|n| std::fs::read(dir.path().join(n)).expect("read"))
        .collect();
    world
        .dovecot
        .append(SUPPORT, "INBOX", &raws)
        .await
        .expect("append");
    for customer in [
        "subject@customer.example",
        "name@customer.example",
        "inject@customer.example",
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while got.is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut s = world.dovecot.session(customer).await.expect("session");
            s.select("INBOX").await.expect("select");
            if let Ok(mut stream) = s.fetch("1:*", "BODY.PEEK[]").await {
                while let Ok(Some(f)) = stream.try_next().await {
                    if let Some(b) = f.body() {
                        got.push(b.to_vec());
                    }
                }
            }
            let _ = s.logout().await;
        }
        let arrived = !got.is_empty();
        assert!(
            arrived,
            "no acknowledgement to {customer}\n{}\n{}",
            daemon.log(),
            smtpd.log()
        );
        let raw = String::from_utf8_lossy(&got[0]).into_owned();
        let longest = raw.split("\r\n").map(str::len).max().unwrap_or(0);
        assert!(
            longest <= MAX_LINE,
            "{customer}: a line of {longest} octets"
        );
        assert!(raw.len() < 64 * 1024, "{customer}: {} bytes", raw.len());
        let headers = header_block(&raw).to_ascii_lowercase();
        assert!(
            !headers.contains("\r\nbcc:") && !headers.starts_with("bcc:"),
            "{raw}"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&got[0])
            .expect("parses");
        assert!(!has_control(parsed.subject().unwrap_or("")));
        assert!(!has_control(
            &parsed
                .body_text(0)
                .unwrap_or_default()
                .replace("\r\n", "\n")
        ));
    }
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}
