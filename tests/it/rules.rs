//! Routing rules as an administrator uses them: classify, rules test, rules
//! diff, check, and live reload in the running daemon.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{COMMAND_LIMIT, Mailbox, World, bin, message, output_within, wait_for};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(dir: &Path, args: &[&str]) -> Output {
    run_with(dir, args, &[])
}

fn run_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .args(args)
        .env_remove("TRIAGED_CONFIG")
        .env_remove("TRIAGED_DATABASE_URL")
        .envs(env.iter().copied());
    output_within(&mut c, None, COMMAND_LIMIT)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy of the shipped rules (and their tests) to change.
fn copy_rules(to: &Path) {
    let from = repo().join("routing-rules");
    copy_dir(&from, to);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn classify_explains_a_friday_afternoon_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eml = dir.path().join("outage.eml");
    std::fs::write(
        &eml,
        "From: Lee Park <lpark@registrar.example.edu>\nTo: map-support@example.edu\nSubject: Registration system is down\n\nStudents cannot log in to registration.\n",
    )
    .expect("write");
    // 16:30 on Friday 2026-11-20 in Chicago.
    let args = [
        "classify",
        eml.to_str().unwrap_or(""),
        "--mailbox",
        "map-support",
        "--at",
        "2026-11-20T16:30:00-06:00",
    ];
    let out = run(&repo(), &[&args[..], &["--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(d["queue"], "ProductionDefect", "{d:#}");
    assert_eq!(d["kind"], "incident");
    assert_eq!(d["urgency"], "high");
    let recipients: Vec<&str> = d["recipients"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(
        recipients.first(),
        Some(&"lpark@registrar.example.edu"),
        "the initiator heads the urgent list"
    );
    assert!(
        recipients.contains(&"isda-pipeline@example.edu")
            && recipients.contains(&"computing-help@example.edu"),
        "{recipients:?}"
    );
    // Due on Monday morning: business hours only.
    let due = jiff::Timestamp::from_millisecond(d["due_ms"].as_i64().expect("due")).expect("ts");
    let local = due.to_zoned(jiff::tz::TimeZone::get("America/Chicago").expect("tz"));
    assert_eq!(local.weekday(), jiff::civil::Weekday::Monday, "{local}");
    let text = stdout(&run(&repo(), &args));
    assert!(
        text.contains("because:") && text.contains("urgent wording"),
        "{text}"
    );
    assert!(text.contains("due:        Mon 2026-11-23"), "{text}");
}

#[test]
fn rules_test_passes_shipped_and_reports_a_failing_case() {
    let out = run(&repo(), &["rules", "test"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");

    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    copy_rules(&rules);
    std::fs::write(
        rules.join("tests/99-wrong.toml"),
        "[[case]]\nname = \"deliberately wrong\"\nmailbox = \"isda-support\"\nheaders = { From = \"a@example.org\", Subject = \"Question about grades\" }\nbody = \"hi\"\n[case.expect]\nqueue = \"Admin\"\n",
    )
    .expect("write");
    let out = run(
        dir.path(),
        &["rules", "test", "--rules", rules.to_str().unwrap_or("")],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL") && text.contains("deliberately wrong"),
        "{text}"
    );
    assert!(
        text.contains("queue: expected \"Admin\", got \"Customer-Support\""),
        "{text}"
    );
}

#[test]
fn rules_test_reports_accuracy_explains_a_case_and_takes_a_threshold() {
    // The shipped cases: accuracy per field and the kinds' confusion.
    let out = run(&repo(), &["rules", "test"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("accuracy per field"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("kind") && l.contains("100.0 %")),
        "{text}"
    );
    assert!(text.contains("kinds (rows expected"), "{text}");

    // One wrong case among the shipped ones: it fails the run, unless the
    // field's accuracy stays above --min-accuracy.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    copy_rules(&rules);
    std::fs::write(
        rules.join("tests/99-wrong.toml"),
        "[[case]]\nname = \"deliberately wrong kind\"\nmailbox = \"isda-support\"\nheaders = { From = \"a@example.org\", Subject = \"Question about grades\" }\nbody = \"hi\"\n[case.expect]\nkind = \"deploy\"\n",
    )
    .expect("write");
    let r = rules.to_str().unwrap_or("");
    let strict = run(dir.path(), &["rules", "test", "--rules", r]);
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
    let text = stdout(&strict);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("kind") && !l.contains("100.0 %")),
        "{text}"
    );
    let tolerant = run(
        dir.path(),
        &["rules", "test", "--rules", r, "--min-accuracy", "95"],
    );
    assert!(tolerant.status.success(), "{}", stdout(&tolerant));
    let demanding = run(
        dir.path(),
        &["rules", "test", "--rules", r, "--min-accuracy", "100"],
    );
    assert_eq!(demanding.status.code(), Some(1), "{}", stdout(&demanding));
    assert!(
        stdout(&demanding).contains("kind: accuracy"),
        "{}",
        stdout(&demanding)
    );

    // --explain: every compared key and the explanation of that case only.
    let out = run(
        dir.path(),
        &[
            "rules",
            "test",
            "--rules",
            r,
            "--explain",
            "deliberately wrong",
        ],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("!= kind: expected \"deploy\", got \"service\""),
        "{text}"
    );
    assert!(
        text.contains("because:") && text.contains("isda-support default"),
        "{text}"
    );
    assert!(!text.contains("rules test:"), "{text}");
    let out = run(
        dir.path(),
        &[
            "rules",
            "test",
            "--rules",
            r,
            "--explain",
            "no such case at all",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
}

/// The regex checks kept between runs (`rules::check_cache`) change no
/// verdict: a second run, a forged cache and a broken one all give the
/// first run's output, and a regex too big is refused every time.
#[test]
fn cached_regex_checks_change_no_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let file = cache.join("rule-checks.json");
    let env = [("TRIAGED_CACHE_DIR", cache.to_str().unwrap_or(""))];
    let first = run_with(&repo(), &["rules", "test"], &env);
    assert!(first.status.success(), "{}", stdout(&first));
    let text = std::fs::read_to_string(&file).expect("cache written");
    let cached: Value = serde_json::from_str(&text).expect("json");
    let entries = cached["entries"].as_array().cloned().unwrap_or_default();
    assert!(entries.len() > 20, "{text}");
    assert!(
        cached["stamp"]
            .as_str()
            .is_some_and(|s| s.starts_with("triaged ")),
        "{text}"
    );
    let again = run_with(&repo(), &["rules", "test"], &env);
    assert_eq!(stdout(&again), stdout(&first));

    // Classes that do not exist are not believed: checked again, rewritten.
    let forged: Vec<Value> = entries
        .iter()
        .map(|e| serde_json::json!([e[0], {"names": ["forged"], "class": 7}]))
        .collect();
    let forged = serde_json::json!({"stamp": cached["stamp"], "entries": forged});
    std::fs::write(&file, forged.to_string()).expect("forge");
    let out = run_with(&repo(), &["rules", "test"], &env);
    assert_eq!(stdout(&out), stdout(&first));
    let rewritten = std::fs::read_to_string(&file).expect("cache");
    assert!(!rewritten.contains("forged"), "{rewritten}");

    // Another binary's cache (another stamp) and a broken file are ignored.
    for junk in [
        text.replace("\"triaged ", "\"triaged-other "),
        "{not json".to_string(),
    ] {
        std::fs::write(&file, junk).expect("junk");
        let out = run_with(&repo(), &["rules", "test"], &env);
        assert_eq!(stdout(&out), stdout(&first));
    }

    // A refusal is never cached: a regex too big is refused at its line on
    // every run, the cache warm or not.
    let desk = dir.path().join("desk");
    copy_rules(&desk.join("routing-rules"));
    std::fs::write(
        desk.join("routing-rules/55-big.toml"),
        "[[rule]]\nname = \"big\"\nwhen.body.regex = '\\w{100}\\s\\w{100}\\s\\w{100}'\nqueue = \"Customer-Support\"\n",
    )
    .expect("write");
    for _ in 0..2 {
        let out = run_with(&desk, &["check"], &env);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("55-big.toml:3:") && l.contains("exceeds the limit")),
            "{text}"
        );
    }

    // Turned off, nothing is written.
    let off = dir.path().join("home");
    std::fs::create_dir_all(&off).expect("mkdir");
    let out = run_with(
        &repo(),
        &["rules", "test"],
        &[
            ("TRIAGED_CACHE_DIR", ""),
            ("HOME", off.to_str().unwrap_or("")),
            ("XDG_CACHE_HOME", off.to_str().unwrap_or("")),
        ],
    );
    assert_eq!(stdout(&out), stdout(&first));
    assert_eq!(std::fs::read_dir(&off).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn check_refuses_a_bad_rule_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_rules(&dir.path().join("routing-rules"));
    let bad = dir.path().join("routing-rules/55-bad.toml");
    std::fs::write(&bad, "# a broken rule\n\n[[rule]]\nname = \"broken\"\nwhen.subject.regex = '(unclosed'\nqueue = \"Nowhere\"\n").expect("write");
    let out = run(dir.path(), &["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("55-bad.toml:5:") && l.to_lowercase().contains("regex")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("55-bad.toml:") && l.contains("Nowhere")),
        "{text}"
    );
}

#[test]
fn rules_diff_lists_what_a_change_would_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let new = dir.path().join("new");
    copy_rules(&new);
    // The proposal: deployment requests go to Admin instead.
    let deploy = std::fs::read_to_string(new.join("40-deploy.toml")).expect("read");
    assert!(deploy.contains("queue = \"ProductionDeploy\""));
    std::fs::write(
        new.join("40-deploy.toml"),
        deploy.replace("queue = \"ProductionDeploy\"", "queue = \"Admin\""),
    )
    .expect("write");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).expect("mkdir");
    std::fs::write(
        corpus.join("deploy.eml"),
        message(
            "dep@x",
            "dev@registrar.example.edu",
            "map-support@example.edu",
            "Deployment request: registrar-api 2.4 to production",
            "Please deploy release 2.4 to production on Thursday.",
        ),
    )
    .expect("write");
    std::fs::write(
        corpus.join("question.eml"),
        message(
            "q@x",
            "a@example.org",
            "isda-support@example.edu",
            "A question",
            "How do I print?",
        ),
    )
    .expect("write");
    let old = repo().join("routing-rules");
    let out = run(
        dir.path(),
        &[
            "rules",
            "diff",
            old.to_str().unwrap_or(""),
            new.to_str().unwrap_or(""),
            "--corpus",
            corpus.to_str().unwrap_or(""),
            "--mailbox",
            "map-support",
        ],
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Deployment request") && text.contains("queue: ProductionDeploy -> Admin"),
        "{text}"
    );
    assert!(!text.contains("A question"), "{text}");
    assert!(
        text.contains("1 of 2 messages would be routed differently"),
        "{text}"
    );
}

/// The daemon reloads rules when the files change; a broken file is refused
/// and the last good rules stay in force.
#[tokio::test(flavor = "multi_thread")]
async fn live_reload_refuses_bad_rules_and_takes_good_ones() {
    const SUPPORT: &str = "isda-support@example.edu";
    let rules_dir = tempfile::tempdir().expect("tempdir");
    copy_rules(rules_dir.path());
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
    let queue_of = |subject: &str| -> Option<String> {
        world
            .tickets()
            .iter()
            .find(|t| t["subject"] == subject)
            .and_then(|t| t["queue"].as_str().map(str::to_string))
    };

    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .log()
            .contains("triaged running")),
        "{}",
        daemon.log()
    );
    // A broken file: refused, logged with file and line, old rules stay.
    std::fs::write(
        rules_dir.path().join("15-zebra.toml"),
        "[[rule]]\nname = \"zebra\"\nwhen.subject.regex = '(zebra'\nqueue = \"Admin\"\n",
    )
    .expect("write");
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .log()
            .contains("routing rules refused")),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("15-zebra.toml:3"), "{}", daemon.log());
    world
        .dovecot
        .append(
            SUPPORT,
            "INBOX",
            &[message("z1@x", "a@example.org", SUPPORT, "zebra one", "x")],
        )
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(20), || queue_of("zebra one").is_some()),
        "{}",
        daemon.log()
    );
    assert_eq!(queue_of("zebra one").as_deref(), Some("Customer-Support"));

    // Fixed: taken at once, and the next message is routed by it.
    std::fs::write(
        rules_dir.path().join("15-zebra.toml"),
        "[[rule]]\nname = \"zebra\"\nwhen.subject.regex = 'zebra'\nqueue = \"Admin\"\n",
    )
    .expect("write");
    assert!(
        wait_for(Duration::from_secs(15), || daemon
            .log()
            .contains("routing rules reloaded")),
        "{}",
        daemon.log()
    );
    world
        .dovecot
        .append(
            SUPPORT,
            "INBOX",
            &[message("z2@x", "a@example.org", SUPPORT, "zebra two", "x")],
        )
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(20), || queue_of("zebra two").is_some()),
        "{}",
        daemon.log()
    );
    assert_eq!(queue_of("zebra two").as_deref(), Some("Admin"));
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}
