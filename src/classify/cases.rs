//! Test cases kept beside the rules (`routing-rules/tests/*.toml`): a message
//! in, the expected decision out, compared key by key.
//!
//! They live with classify, not with rules: a case is judged on the completed
//! decision ([`super::complete`]), and rules sit below classify.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::priority::{Impact, Kind, Priority, Urgency};
use crate::problem::line_of;
use crate::rules::{Evaluation, RuleSet};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<CaseDe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDe {
    name: Spanned<String>,
    mailbox: String,
    /// An `.eml` file, relative to the tests directory.
    message: Option<String>,
    /// A table `{ Name = "value" }` (a value may be an array for repeated
    /// headers) or an array of `"Name: value"` lines.
    headers: Option<toml::Value>,
    body: Option<String>,
    expect: Expect,
}

/// The expected decision; only the keys given are compared.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    queue: Option<String>,
    kind: Option<Kind>,
    urgency: Option<Urgency>,
    impact: Option<Impact>,
    priority: Option<Priority>,
    recipients: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    suppress_ack: Option<bool>,
    /// `""` expects no alert key.
    alert_key: Option<String>,
    /// Whether the message is a recovery.
    recovery: Option<bool>,
    /// The names of the rules that match, in order.
    matched: Option<Vec<String>>,
}

/// What the rules cannot know themselves: the deployment (mailbox default
/// queues, queue default kinds, priority defaults and matrix, targets,
/// calendars). Cases are judged on the completed decision, exactly as a live
/// message would be classified.
#[derive(Debug, Clone)]
pub struct CaseContext {
    pub config: std::sync::Arc<crate::config::Config>,
}

impl CaseContext {
    pub fn from_config(config: std::sync::Arc<crate::config::Config>) -> CaseContext {
        CaseContext { config }
    }
}

/// One key whose value differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDiff {
    pub key: String,
    pub expected: String,
    pub actual: String,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub passed: bool,
    pub diffs: Vec<KeyDiff>,
    /// Every key the case compared, equal or not (for accuracy per key).
    pub compared: Vec<KeyDiff>,
    /// Why the case could not run at all (unreadable file, bad TOML).
    pub error: Option<String>,
    /// The rules' explanation, to read when the case fails.
    pub explanation: Vec<String>,
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed { "ok  " } else { "FAIL" };
        write!(f, "{verdict} {}:{}: {}", self.file, self.line, self.name)?;
        if let Some(e) = &self.error {
            write!(f, "\n     {e}")?;
        }
        for d in &self.diffs {
            write!(
                f,
                "\n     {}: expected {}, got {}",
                d.key, d.expected, d.actual
            )?;
        }
        if !self.passed {
            for line in &self.explanation {
                write!(f, "\n       {line}")?;
            }
        }
        Ok(())
    }
}

/// Runs every case of every `*.toml` file in `dir`, in name order.
pub fn run_cases(rules: &RuleSet, dir: &Path, ctx: &CaseContext) -> Vec<CaseResult> {
    let failed = |file: String, line: usize, name: &str, e: String| CaseResult {
        file,
        line,
        name: name.to_string(),
        passed: false,
        diffs: Vec::new(),
        compared: Vec::new(),
        error: Some(e),
        explanation: Vec::new(),
    };
    let mut paths: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            return vec![failed(
                dir.display().to_string(),
                0,
                "<tests>",
                format!("cannot read the tests directory: {e}"),
            )];
        }
    };
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let file = p.display().to_string();
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) => {
                out.push(failed(file, 0, "<file>", format!("cannot read: {e}")));
                continue;
            }
        };
        let cases: CaseFile = match toml::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(0);
                out.push(failed(
                    file,
                    line,
                    "<file>",
                    crate::problem::toml_reason(&e, &text),
                ));
                continue;
            }
        };
        for c in &cases.case {
            let line = line_of(&text, c.name.span().start);
            let name = c.name.get_ref();
            let raw = match raw_message(c, dir) {
                Ok(r) => r,
                Err(e) => {
                    out.push(failed(file.clone(), line, name, e));
                    continue;
                }
            };
            let msg = crate::parse::parse(&raw);
            let ev = rules.evaluate(&c.mailbox, &msg);
            let compared = compare(&c.expect, &ev, &msg, &c.mailbox, ctx);
            let diffs: Vec<KeyDiff> = compared
                .iter()
                .filter(|d| d.expected != d.actual)
                .cloned()
                .collect();
            out.push(CaseResult {
                file: file.clone(),
                line,
                name: name.clone(),
                passed: diffs.is_empty(),
                diffs,
                compared,
                error: None,
                explanation: ev.explanation(),
            });
        }
    }
    out
}

/// The raw bytes of a case's message: the `.eml` file, or one built from the
/// inline headers and body so that it goes through the real parser.
fn raw_message(c: &CaseDe, dir: &Path) -> Result<Vec<u8>, String> {
    if let Some(m) = &c.message {
        if c.headers.is_some() || c.body.is_some() {
            return Err("give either message or headers and body, not both".to_string());
        }
        let path = dir.join(m);
        return std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    let mut raw = String::new();
    match &c.headers {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (k, v) in t {
                match v {
                    toml::Value::String(s) => raw.push_str(&format!("{k}: {s}\r\n")),
                    toml::Value::Array(a) => {
                        for x in a {
                            match x.as_str() {
                                Some(s) => raw.push_str(&format!("{k}: {s}\r\n")),
                                None => return Err(format!("headers.{k}: values must be strings")),
                            }
                        }
                    }
                    _ => return Err(format!("headers.{k}: values must be strings")),
                }
            }
        }
        Some(toml::Value::Array(a)) => {
            for x in a {
                match x.as_str() {
                    Some(s) if s.contains(':') => raw.push_str(&format!("{s}\r\n")),
                    _ => return Err(format!("headers: {x} is not a \"Name: value\" line")),
                }
            }
        }
        Some(_) => {
            return Err("headers must be a table or an array of \"Name: value\" lines".to_string());
        }
    }
    raw.push_str("\r\n");
    raw.push_str(&c.body.clone().unwrap_or_default().replace('\n', "\r\n"));
    Ok(raw.into_bytes())
}

fn show<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| format!("{:?}", x.to_string()))
        .unwrap_or_else(|| "(unset)".to_string())
}

fn show_list(v: &[String]) -> String {
    format!("{v:?}")
}

/// Every key a case expects, beside the final decision's value (equal or
/// not): rule values completed with the mailbox's default queue, the default
/// kind and the priority defaults.
fn compare(
    e: &Expect,
    ev: &Evaluation,
    msg: &crate::parse::ParsedMessage,
    mailbox: &str,
    ctx: &CaseContext,
) -> Vec<KeyDiff> {
    let mut diffs = Vec::new();
    let mut diff = |key: &str, expected: String, actual: String| {
        diffs.push(KeyDiff {
            key: key.to_string(),
            expected,
            actual,
        });
    };
    let Some(mb) = ctx.config.mailbox(mailbox) else {
        diff(
            "mailbox",
            format!("{mailbox:?}"),
            "(not configured)".to_string(),
        );
        return diffs;
    };
    // A fixed arrival: cases do not test due times, and must not depend on the clock.
    let d = super::complete(ev, msg, mb, 0, &ctx.config);
    let queue = Some(d.queue.clone());
    if let Some(q) = &e.queue {
        diff("queue", show(&Some(q)), show(&queue));
    }
    if let Some(k) = e.kind {
        diff("kind", show(&Some(k)), show(&Some(d.kind)));
    }
    if let Some(u) = e.urgency {
        diff("urgency", show(&Some(u)), show(&Some(d.urgency)));
    }
    if let Some(i) = e.impact {
        diff("impact", show(&Some(i)), show(&Some(d.impact)));
    }
    if let Some(p) = e.priority {
        diff("priority", show(&Some(p)), show(&Some(d.priority)));
    }
    if let Some(r) = &e.recipients {
        let mut want: Vec<String> = r.iter().map(|x| x.trim().to_ascii_lowercase()).collect();
        let mut got = d.recipients.clone();
        want.sort();
        got.sort();
        diff("recipients", show_list(&want), show_list(&got));
    }
    if let Some(t) = &e.tags {
        let mut want = t.clone();
        let mut got = d.tags.clone();
        want.sort();
        got.sort();
        diff("tags", show_list(&want), show_list(&got));
    }
    if let Some(s) = e.suppress_ack {
        diff("suppress_ack", s.to_string(), d.suppress_ack.to_string());
    }
    if let Some(k) = &e.alert_key {
        diff(
            "alert_key",
            format!("{k:?}"),
            format!("{:?}", d.alert_key.clone().unwrap_or_default()),
        );
    }
    if let Some(r) = e.recovery {
        diff("recovery", r.to_string(), d.recovery.to_string());
    }
    if let Some(m) = &e.matched {
        let got: Vec<String> = ev.matched.iter().map(|m| m.rule.clone()).collect();
        diff("matched", show_list(m), show_list(&got));
    }
    diffs
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::rules::Known;

    fn rules(text: &str) -> RuleSet {
        match RuleSet::from_sources(
            &[("t.toml".to_string(), text.to_string())],
            &Known::domain(),
        ) {
            Ok(r) => r,
            Err(p) => panic!("rules do not load: {p:?}"),
        }
    }

    #[test]
    fn shipped_rules_pass_their_cases() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("routing-rules");
        let r = match RuleSet::load_dir(&dir, &Known::domain()) {
            Ok(r) => r,
            Err(p) => panic!(
                "{}",
                p.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        let results = run_cases(
            &r,
            &dir.join("tests"),
            &CaseContext::from_config(std::sync::Arc::new(
                crate::config::Config::parse(crate::config::DEFAULT_CONFIG, "default")
                    .expect("default config"),
            )),
        );
        let failed: Vec<String> = results
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.to_string())
            .collect();
        assert!(failed.is_empty(), "{}", failed.join("\n"));
        assert!(results.len() >= 25, "only {} cases", results.len());
        // Every queue and kind of DOMAIN.md is covered by some case.
        let text: String = std::fs::read_dir(dir.join("tests"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        for q in [
            "Customer-Support",
            "ProductionDefect",
            "ProductionDeploy",
            "Admin",
            "Database",
            "Hosted-Help",
        ] {
            assert!(
                text.contains(&format!("queue = \"{q}\"")),
                "no case expects queue {q}"
            );
        }
        for k in Kind::ALL {
            assert!(
                text.contains(&format!("kind = \"{k}\"")),
                "no case expects kind {k}"
            );
        }
    }

    #[test]
    fn failing_case_shows_a_diff() {
        let dir = tempfile::tempdir();
        let Ok(dir) = dir else { panic!("no temp dir") };
        let case = "[[case]]\nname = 'wrong on purpose'\nmailbox = 'help'\nheaders = { From = 'a@b.c', Subject = 'hello' }\nbody = 'x'\n[case.expect]\nqueue = 'Admin'\nkind = 'service'\n";
        if let Err(e) = std::fs::write(dir.path().join("c.toml"), case) {
            panic!("{e}");
        }
        let r = rules("[[rule]]\nname = 'help'\nwhen.mailbox = 'help'\nqueue = 'Hosted-Help'\n");
        let results = run_cases(
            &r,
            dir.path(),
            &CaseContext::from_config(std::sync::Arc::new(
                crate::config::Config::parse(crate::config::DEFAULT_CONFIG, "default")
                    .expect("default config"),
            )),
        );
        assert_eq!(results.len(), 1);
        assert!(!results[0].passed);
        assert_eq!(
            results[0].diffs,
            vec![KeyDiff {
                key: "queue".to_string(),
                expected: "\"Admin\"".to_string(),
                actual: "\"Hosted-Help\"".to_string(),
            }]
        );
        assert!(
            results[0]
                .to_string()
                .contains("queue: expected \"Admin\", got \"Hosted-Help\"")
        );
    }
}
