//! Unit tests of the rule engine: loading problems, semantics, explanations.
//! The shipped rules against their cases are in `classify::cases`.

use super::*;
use crate::parse::parse;

fn load(text: &str) -> Result<RuleSet, Vec<crate::problem::Problem>> {
    RuleSet::from_sources(
        &[("t.toml".to_string(), text.to_string())],
        &Known::domain(),
    )
}

fn rules(text: &str) -> RuleSet {
    match load(text) {
        Ok(r) => r,
        Err(p) => panic!("rules do not load: {p:?}"),
    }
}

/// A message from header lines and a body, through the real parser.
fn msg(headers: &[&str], body: &str) -> crate::parse::ParsedMessage {
    let mut raw = headers.join("\r\n");
    raw.push_str("\r\n\r\n");
    raw.push_str(body);
    parse(raw.as_bytes())
}

/// Asserts that loading `text` reports a problem `t.toml:LINE: REASON...`.
#[track_caller]
fn check_problem(text: &str, want: &str) {
    let got: Vec<String> = match load(text) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(|p| p.to_string()).collect(),
    };
    assert!(
        got.iter().any(|g| g.starts_with(want)),
        "want {want:?}\n got {got:#?}"
    );
}

#[test]
fn problems_are_reported_with_lines() {
    let cases: &[(&str, &str)] = &[
        ("[[rule]\nname = 'x'", "t.toml:1: "),
        (
            "[[rule]]\nname = 'a'\nwhen.subject = '(unclosed'\nqueue = 'Admin'",
            "t.toml:3: subject: bad regex \"(unclosed\"",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subject.regex = ['ok', '[z-a]']\nqueue = 'Admin'",
            "t.toml:3: subject: bad regex \"[z-a]\"",
        ),
        (
            "[[rule]]\nname = 'a'\nqueue = 'Nowhere'",
            "t.toml:3: unknown queue \"Nowhere\"",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.from.in_list = 'ghosts'\nqueue = 'Admin'",
            "t.toml:3: from: unknown list \"ghosts\"",
        ),
        (
            "[[rule]]\nname = 'a'\nrecipients = ['ghosts']",
            "t.toml:3: recipients: unknown list \"ghosts\"",
        ),
        (
            "[[rule]]\nname = 'a'\nkind = 'outage'",
            "t.toml:3: unknown kind \"outage\"",
        ),
        (
            "[[rule]]\nname = 'a'\nurgency = 'asap'",
            "t.toml:3: unknown urgency \"asap\"",
        ),
        (
            "[[rule]]\nname = 'a'\nimpact = 'huge'",
            "t.toml:3: unknown impact \"huge\"",
        ),
        (
            "[[rule]]\nname = 'a'\nqueue = 'Admin'\n[[rule]]\nname = 'a'\nqueue = 'Admin'",
            "t.toml:5: rule name \"a\" is already used at t.toml:2",
        ),
        (
            "[[rule]]\nname = 'all'\nqueue = 'Admin'\nstop = true\n[[rule]]\nname = 'b'\nwhen.subject = 'x'\nqueue = 'Admin'",
            "t.toml:6: rule \"b\" is unreachable: rule \"all\" (t.toml:2) matches every message",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subject = 'x'\nqueue = 'Admin'\nstop = true\n[[rule]]\nname = 'b'\nwhen.subject = 'x'\nkind = 'bug'",
            "t.toml:7: rule \"b\" is unreachable: rule \"a\" (t.toml:2) has the same conditions",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subject = 'x'\nqueue = 'Admin'\nstop = true\n[[rule]]\nname = 'b'\nwhen.subject = 'x'\nwhen.body = 'y'\nkind = 'bug'",
            "t.toml:7: rule \"b\" is unreachable: rule \"a\" (t.toml:2) matches whenever this one does",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.mailbox = 'nobody'\nqueue = 'Admin'",
            "t.toml:3: unknown mailbox \"nobody\"",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subject.domain = 'x.org'\nqueue = 'Admin'",
            "t.toml:3: subject: domain only applies",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subject = { regex = 'x', exact = 'y' }\nqueue = 'Admin'",
            "t.toml:3: subject: give exactly one of",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subjet = 'x'\nqueue = 'Admin'",
            "t.toml:3: unknown field `subjet`",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subject = 'x'",
            "t.toml:2: rule \"a\" has no action",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subject = 'x'\nalert_key = 'k:{host}'",
            "t.toml:4: alert_key uses {host}",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.subject = 'x'\nalert_key = 'k:{host'",
            "t.toml:4: alert_key: ",
        ),
        (
            "[lists]\nbad = ['not an address']",
            "t.toml:2: list \"bad\": \"not an address\" is neither",
        ),
        (
            "[[rule]]\nname = 'a'\nwhen.from = 'nobody'\nqueue = 'Admin'",
            "t.toml:3: from: \"nobody\" is not an address",
        ),
    ];
    for (text, want) in cases {
        check_problem(text, want);
    }
}

#[test]
fn every_problem_is_reported() {
    let text = "[[rule]]\nname = 'a'\nwhen.subject = '('\nqueue = 'Nope'\nkind = 'nope'\n";
    let n = load(text).err().map(|p| p.len()).unwrap_or(0);
    assert_eq!(n, 3);
    // Problems in several files, and lists shared across files.
    let files = [
        (
            "a.toml".to_string(),
            "[lists]\nops = ['ops@example.edu']\n[[rule]]\nname = 'x'\nqueue = 'Bad'\n".to_string(),
        ),
        (
            "b.toml".to_string(),
            "[[rule]]\nname = 'x'\nwhen.from.in_list = 'ops'\nqueue = 'Admin'\n".to_string(),
        ),
    ];
    let got: Vec<String> = RuleSet::from_sources(&files, &Known::domain())
        .err()
        .unwrap_or_default()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        got,
        vec![
            "a.toml:5: unknown queue \"Bad\"".to_string(),
            "b.toml:2: rule name \"x\" is already used at a.toml:4".to_string(),
        ]
    );
}

const SEMANTICS: &str = r#"
[lists]
ops = ["ops@example.edu", "@noc.example.edu"]

[[rule]]
name = "first"
when.subject = 'down'
queue = "ProductionDefect"
kind = "incident"
tags = ["a"]
recipients = ["ops", "x@example.edu"]

[[rule]]
name = "second"
when.subject = 'down'
queue = "Admin"
urgency = "high"
tags = ["b", "a"]
recipients = ["X@example.edu"]

[[rule]]
name = "overrider"
when.body = 'override me'
queue = "Database"
override = true

[[rule]]
name = "stopper"
when.body = 'stop here'
stop = true
tags = ["stopped"]

[[rule]]
name = "after stop"
when.subject = 'down'
impact = "moderate"
"#;

#[test]
fn first_match_sets_later_fill_override_and_stop() {
    let r = rules(SEMANTICS);
    let check = |subject: &str,
                 body: &str,
                 queue: Option<&str>,
                 urgency: Option<Urgency>,
                 impact: Option<Impact>,
                 tags: &[&str]| {
        let e = r.evaluate("map-support", &msg(&[&format!("Subject: {subject}")], body));
        assert_eq!(
            e.queue.as_deref(),
            queue,
            "{subject}/{body}: {:?}",
            e.explanation()
        );
        assert_eq!(e.urgency, urgency, "{subject}/{body}");
        assert_eq!(e.impact, impact, "{subject}/{body}");
        assert_eq!(e.tags, tags, "{subject}/{body}");
    };
    check(
        "site DOWN",
        "",
        Some("ProductionDefect"),
        Some(Urgency::High),
        Some(Impact::Moderate),
        &["a", "b"],
    );
    check(
        "site down",
        "override me",
        Some("Database"),
        Some(Urgency::High),
        Some(Impact::Moderate),
        &["a", "b"],
    );
    check(
        "site down",
        "stop here",
        Some("ProductionDefect"),
        Some(Urgency::High),
        None,
        &["a", "b", "stopped"],
    );
    check("fine", "", None, None, None, &[]);
    let e = r.evaluate("map-support", &msg(&["Subject: down"], ""));
    assert_eq!(e.recipients, vec!["ops@example.edu", "x@example.edu"]);
    assert_eq!(e.kind, Some(Kind::Incident));
    let second = e.matched.iter().find(|m| m.rule == "second");
    assert!(
        second.is_some_and(|m| m.effects.contains(
            &"queue Admin not applied: already ProductionDefect from rule \"first\"".to_string()
        )),
        "{:?}",
        e.explanation()
    );
}

/// One condition checked against one message: `(condition, headers, body, mailbox, matches?)`.
#[test]
fn matchers() {
    let cases: &[(&str, &[&str], &str, &str, bool)] = &[
        ("when.mailbox = 'help'", &[], "", "help", true),
        ("when.mailbox = 'help'", &[], "", "map-support", false),
        (
            "when.mailbox = ['help', 'map-support']",
            &[],
            "",
            "map-support",
            true,
        ),
        (
            "when.from = 'Ann@Example.org'",
            &["From: ann@example.org"],
            "",
            "help",
            true,
        ),
        (
            "when.from = '@example.org'",
            &["From: ann@dept.example.org"],
            "",
            "help",
            true,
        ),
        (
            "when.from = '@example.org'",
            &["From: ann@notexample.org"],
            "",
            "help",
            false,
        ),
        (
            "when.from.domain = 'example.org'",
            &["From: ann@EXAMPLE.ORG"],
            "",
            "help",
            true,
        ),
        (
            "when.from.exact = 'ann@example.org'\nwhen.from.case_sensitive = true",
            &["From: Ann@example.org"],
            "",
            "help",
            false,
        ),
        (
            "when.to.in_list = 'ops'",
            &["From: a@b.c", "To: x@y.z, desk@noc.example.edu"],
            "",
            "help",
            true,
        ),
        (
            "when.cc.in_list = 'ops'",
            &["From: a@b.c", "Cc: ops@example.edu"],
            "",
            "help",
            true,
        ),
        (
            "when.cc.in_list = 'ops'",
            &["From: a@b.c", "To: ops@example.edu"],
            "",
            "help",
            false,
        ),
        (
            "when.reply_to = 'r@example.edu'",
            &["From: a@b.c", "Reply-To: r@example.edu"],
            "",
            "help",
            true,
        ),
        (
            "when.from_name = '^ann lee$'",
            &["From: Ann Lee <a@b.c>"],
            "",
            "help",
            true,
        ),
        (
            "when.to_name.contains = 'support'",
            &["From: a@b.c", "To: ISDA Support <s@b.c>"],
            "",
            "help",
            true,
        ),
        (
            "when.subject = 'outage'",
            &["Subject: Big OUTAGE"],
            "",
            "help",
            true,
        ),
        (
            "when.subject.regex = 'outage'\nwhen.subject.case_sensitive = true",
            &["Subject: Big OUTAGE"],
            "",
            "help",
            false,
        ),
        (
            "when.subject.exact = 'hello'",
            &["Subject: Hello"],
            "",
            "help",
            true,
        ),
        (
            "when.subject.exact = 'hello'",
            &["Subject: Hello there"],
            "",
            "help",
            false,
        ),
        (
            "when.subject.contains = 'a.b'",
            &["Subject: xaxb"],
            "",
            "help",
            false,
        ),
        (
            "when.subject.contains = 'a.b'",
            &["Subject: see A.B now"],
            "",
            "help",
            true,
        ),
        (
            "when.body = 'cannot connect'",
            &["Subject: x"],
            "I cannot connect",
            "help",
            true,
        ),
        (
            "when.header.X-Mailer = 'zabbix'",
            &["X-Mailer: Zabbix 6.0"],
            "",
            "help",
            true,
        ),
        (
            "when.header.x-mailer = 'zabbix'",
            &["X-MAILER: Zabbix 6.0"],
            "",
            "help",
            true,
        ),
        (
            "when.header.X-Mailer = 'zabbix'",
            &["X-Other: Zabbix"],
            "",
            "help",
            false,
        ),
        (
            "when.header.Received = 'relay2'",
            &["Received: from relay1", "Received: from relay2"],
            "",
            "help",
            true,
        ),
        (
            "when.auto_generated = true",
            &["Auto-Submitted: auto-replied"],
            "",
            "help",
            true,
        ),
        (
            "when.auto_generated = true",
            &["Auto-Submitted: no"],
            "",
            "help",
            false,
        ),
        (
            "when.auto_generated = true",
            &["Precedence: bulk"],
            "",
            "help",
            true,
        ),
        (
            "when.auto_generated = true",
            &["List-Id: <l.example.org>"],
            "",
            "help",
            true,
        ),
        (
            "when.auto_generated = true",
            &["Return-Path: <>"],
            "",
            "help",
            true,
        ),
        (
            "when.auto_generated = true",
            &["From: postmaster@example.org"],
            "",
            "help",
            true,
        ),
        (
            "when.auto_generated = false",
            &["From: ann@example.org"],
            "",
            "help",
            true,
        ),
        (
            "when.precedence = '^junk$'",
            &["Precedence: junk"],
            "",
            "help",
            true,
        ),
        (
            "when.x_auto_response_suppress = 'OOF'",
            &["X-Auto-Response-Suppress: DR, OOF"],
            "",
            "help",
            true,
        ),
        (
            "when.has_attachment = true",
            &["Subject: x"],
            "",
            "help",
            false,
        ),
        ("when.not.subject = 'x'", &["Subject: y"], "", "help", true),
        ("when.not.subject = 'x'", &["Subject: x"], "", "help", false),
        (
            "when.any = [{ subject = 'a' }, { body = 'b' }]",
            &["Subject: z"],
            "b",
            "help",
            true,
        ),
        (
            "when.all = [{ subject = 'a' }, { body = 'b' }]",
            &["Subject: a"],
            "c",
            "help",
            false,
        ),
        (
            "when.all = [{ subject = 'a' }, { not = { any = [{ body = 'b' }, { body = 'c' }] } }]",
            &["Subject: a"],
            "d",
            "help",
            true,
        ),
    ];
    for (cond, headers, body, mailbox, want) in cases {
        let text = format!(
            "[lists]\nops = ['ops@example.edu', '@noc.example.edu']\n[[rule]]\nname = 'r'\n{cond}\ntags = ['hit']\n"
        );
        let r = rules(&text);
        let e = r.evaluate(mailbox, &msg(headers, body));
        assert_eq!(
            !e.matched.is_empty(),
            *want,
            "{cond} on {headers:?} / {body:?}"
        );
    }
}

#[test]
fn attachments() {
    let raw = b"From: a@b.c\nSubject: log\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nsee log\n--XX\nContent-Type: text/plain; name=app.log\nContent-Disposition: attachment; filename=app.log\n\nERROR 1\n--XX--\n";
    let m = parse(raw);
    for (cond, want) in [
        ("when.has_attachment = true", true),
        ("when.attachment = '\\.log$'", true),
        ("when.attachment = '\\.pdf$'", false),
        ("when.attachment_type.exact = 'text/plain'", true),
    ] {
        let r = rules(&format!("[[rule]]\nname = 'r'\n{cond}\ntags = ['x']\n"));
        assert_eq!(!r.evaluate("help", &m).matched.is_empty(), want, "{cond}");
    }
}

#[test]
fn alert_keys_and_explanations() {
    let r = rules(
        r#"
[[rule]]
name = "nagios"
when.from = "nagios@monitor.example.edu"
when.subject.regex = '^PROBLEM: (?P<host>\S+) is (?P<state>\w+)'
kind = "alert"
alert_key = "nagios:{host}:{state}:{mailbox}:{from_domain}"

[[rule]]
name = "later key"
when.subject = 'PROBLEM'
alert_key = "other:{subject}"
"#,
    );
    let e = r.evaluate(
        "map-support",
        &msg(
            &[
                "From: Nagios <NAGIOS@monitor.example.edu>",
                "Subject: PROBLEM: web1 is DOWN",
            ],
            "",
        ),
    );
    assert_eq!(
        e.alert_key.as_deref(),
        Some("nagios:web1:DOWN:map-support:monitor.example.edu")
    );
    let lines = e.explanation();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("rule \"nagios\" (t.toml:3): "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(
            "from exact \"nagios@monitor.example.edu\" matched \"NAGIOS@monitor.example.edu\""
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("matched \"PROBLEM: web1 is DOWN\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("alert_key not applied: already nagios:web1:DOWN"),
        "{}",
        lines[1]
    );
    // Literal braces survive.
    let r = rules("[[rule]]\nname = 'b'\nwhen.subject = '(?P<x>\\d+)'\nalert_key = '{{{x}}}'\n");
    let e = r.evaluate("help", &msg(&["Subject: code 42"], ""));
    assert_eq!(e.alert_key.as_deref(), Some("{42}"));
}

#[test]
fn no_rules_no_decision() {
    let r = rules("");
    let e = r.evaluate("help", &msg(&["Subject: x"], ""));
    assert_eq!(e, Evaluation::default());
    assert_eq!(e.explanation(), vec!["no rule matched"]);
}

#[cfg(feature = "dev")]
#[test]
fn generated_rules_load_and_run() {
    let text = crate::dev::generate_rules(1000);
    let r = match RuleSet::from_sources(&[("gen.toml".to_string(), text)], &Known::domain()) {
        Ok(r) => r,
        Err(p) => panic!("{:?}", &p[..p.len().min(5)]),
    };
    assert_eq!(r.len(), 1000);
    let e = r.evaluate(
        "map-support",
        &msg(
            &["From: user7@dept7.example.edu", "Subject: app-6 crash"],
            "",
        ),
    );
    let names: Vec<&str> = e.matched.iter().map(|m| m.rule.as_str()).collect();
    assert_eq!(names, vec!["generated rule 6", "generated rule 7"]);
    let e = r.evaluate(
        "map-support",
        &msg(
            &["From: nagios@monitor.example.edu", "X-Service: service-4"],
            "host db-04-4 is down",
        ),
    );
    assert_eq!(
        e.alert_key.as_deref(),
        Some("svc:db-04"),
        "{:?}",
        e.explanation()
    );
}

// Hostile sizes (issue 7): compiled size per regex and per field, file size
// and rule count are bounded, and each refusal names the file and line.

fn many(n: usize, pattern: impl Fn(usize) -> String) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[rule]]\nname = \"h{i}\"\nwhen.subject.regex = '{}'\ntags = [\"h\"]\n\n",
                pattern(i)
            )
        })
        .collect()
}

#[test]
fn a_regex_too_big_when_compiled_is_refused_at_its_line() {
    // `\w{140}` is valid syntax but compiles to about 7 MB (Unicode classes).
    let text = many(3, |i| format!("\\w{{140}}{i}"));
    let problems = load(&text).expect_err("refused");
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert!(
        shown[1].starts_with(
            "t.toml:8: rule \"h1\": subject: regex \"\\\\w{140}1\": compiled, it exceeds the limit of 1 MiB per regex"
        ),
        "{shown:#?}"
    );
    // The same pattern with a narrow class is fine.
    assert!(load(&many(3, |i| format!("[a-z0-9_]{{140}}{i}"))).is_ok());
}

#[test]
fn patterns_too_big_together_are_refused_at_the_rule_that_tips_the_field() {
    // Each `\w{20}` fits the limit per regex (about 1 MB); 40 of them on one
    // field do not fit the limit per field's set.
    let problems = load(&many(40, |i| format!("\\w{{20}}{i}"))).expect_err("refused");
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    let p = &problems[0];
    assert_eq!(p.file, "t.toml");
    // The rules before it compile together; with it they do not.
    let bad = (p.line - 2) / 5;
    assert!((10..40).contains(&bad), "{shown:#?}");
    assert!(
        p.reason.starts_with(&format!(
            "rule \"h{bad}\": with this rule the subject patterns"
        )),
        "{shown:#?}"
    );
    assert!(p.reason.contains("16 MiB per field"), "{shown:#?}");
    assert!(load(&many(bad, |i| format!("\\w{{20}}{i}"))).is_ok());
}

#[test]
fn oversized_rule_files_and_sets_are_refused() {
    // A file over the size limit is refused whole, before it is parsed.
    let mut big = many(1, |_| "x".to_string());
    big.push_str(&"# filler\n".repeat((compile::MAX_RULE_FILE_BYTES / 9) as usize + 1));
    let problems = load(&big).expect_err("refused");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].file, "t.toml");
    assert!(
        problems[0]
            .reason
            .contains("a rule file may have at most 4194304 bytes"),
        "{problems:?}"
    );
    // Read from a folder, the file is not read beyond the limit either.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("10-big.toml"), &big).expect("write");
    let problems = RuleSet::load_dir(dir.path(), &Known::domain()).expect_err("refused");
    assert!(
        problems[0].to_string().ends_with(&format!(
            "10-big.toml:0: the file is {} bytes; a rule file may have at most 4194304 bytes",
            big.len()
        )),
        "{problems:?}"
    );

    // Too many rules: refused at the first rule past the limit.
    let files: Vec<(String, String)> = (0..3)
        .map(|f| {
            let text: String = (0..compile::MAX_RULES / 2)
                .map(|i| format!("[[rule]]\nname = \"r{f}-{i}\"\ntags = [\"t\"]\n"))
                .collect();
            (format!("{f}.toml"), text)
        })
        .collect();
    let problems = RuleSet::from_sources(&files, &Known::domain()).expect_err("refused");
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        vec!["2.toml:2: more than 10000 rules: a rule set may have at most 10000"]
    );
}

#[test]
fn patterns_too_big_across_fields_exhaust_the_budget_of_the_set() {
    // One `\w{20}` (about 1 MB compiled) per header field: every field's set
    // is small, the rule set as a whole is not.
    let text: String = (0..70)
        .map(|i| {
            format!(
                "[[rule]]\nname = \"h{i}\"\nwhen.header.\"X-H{i}\".regex = '\\w{{20}}'\ntags = [\"h\"]\n\n"
            )
        })
        .collect();
    let problems = load(&text).expect_err("refused");
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert!(
        shown[0].starts_with(
            "t.toml:323: rule \"h64\": header X-H64: regex \"\\\\w{20}\": with this regex the regexes of all rules together exceed the compiled size limit of 64 MiB per rule set"
        ),
        "{shown:#?}"
    );
    // Generated rules stay far inside it (each regex fits the 4 KiB class).
    #[cfg(feature = "dev")]
    {
        let text = crate::dev::generate_rules(2000);
        if let Err(p) = RuleSet::from_sources(&[("gen.toml".to_string(), text)], &Known::domain()) {
            panic!("{:?}", &p[..p.len().min(3)]);
        }
    }
}

/// Every effect each matched rule reports, in order: set, not applied,
/// overridden, recipients and tags added only once.
#[test]
fn effects_say_what_each_rule_did() {
    let r = rules(SEMANTICS);
    let e = r.evaluate("map-support", &msg(&["Subject: site down"], "override me"));
    let got: Vec<(&str, Vec<&str>)> = e
        .matched
        .iter()
        .map(|m| {
            (
                m.rule.as_str(),
                m.effects.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "first",
                vec![
                    "queue ProductionDefect",
                    "kind incident",
                    "recipient ops@example.edu",
                    "recipient x@example.edu",
                    "tag a",
                ]
            ),
            (
                "second",
                vec![
                    "queue Admin not applied: already ProductionDefect from rule \"first\"",
                    "urgency high",
                    "tag b",
                ]
            ),
            (
                "overrider",
                vec!["queue Database (overrides ProductionDefect from rule \"first\")"]
            ),
            ("after stop", vec!["impact moderate"]),
        ]
    );
}

#[test]
fn recovery_marks_the_message_and_needs_an_alert_key() {
    let r = rules(
        r#"
[[rule]]
name = "recovery"
when.subject.regex = '^RECOVERY: (?P<host>\S+) is UP'
kind = "alert"
alert_key = "nagios:{host}"
recovery = true
stop = true

[[rule]]
name = "problem"
when.subject.regex = '^PROBLEM: (?P<host>\S+) is DOWN'
kind = "alert"
alert_key = "nagios:{host}"
stop = true
"#,
    );
    let up = r.evaluate("help", &msg(&["Subject: RECOVERY: web1 is UP"], ""));
    assert_eq!(up.recovery, Some(true));
    assert_eq!(up.alert_key.as_deref(), Some("nagios:web1"));
    assert!(
        up.explanation()[0].contains("recovery"),
        "{:#?}",
        up.explanation()
    );
    let down = r.evaluate("help", &msg(&["Subject: PROBLEM: web1 is DOWN"], ""));
    assert_eq!(down.recovery, None);
    assert_eq!(down.alert_key.as_deref(), Some("nagios:web1"));

    // Without an alert key in the same rule, a recovery resolves nothing:
    // refused at its line.
    check_problem(
        "[[rule]]\nname = 'a'\nwhen.subject = 'x'\nkind = 'alert'\nrecovery = true\n",
        "t.toml:5: recovery = true needs an alert_key in the same rule",
    );
    // A key from an earlier rule does not count either.
    check_problem(
        "[[rule]]\nname = 'a'\nwhen.subject = 'x'\nalert_key = 'k'\n\n[[rule]]\nname = 'b'\nwhen.subject = 'y'\nrecovery = true\n",
        "t.toml:9: recovery = true needs an alert_key in the same rule",
    );
    // recovery alone is an action; `false` needs no key.
    assert!(load("[[rule]]\nname = 'a'\nwhen.subject = 'x'\nrecovery = false\n").is_ok());
    // Not a boolean: refused.
    assert!(load("[[rule]]\nname = 'a'\nwhen.subject = 'x'\nrecovery = 'yes'\n").is_err());
}
