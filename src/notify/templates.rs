//! Mail templates: minijinja, one subject, a plain-text body and an optional
//! HTML alternative per kind of mail, overridable per desk and per queue.
//!
//! Layout of the templates folder (see `templates/README.md`):
//! `NAME.subject`, `NAME.txt`, `NAME.html` at the top; the same names under
//! `desks/DESK/` and `queues/QUEUE/` override them, the queue first.

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::{AutoEscape, Environment, Value};

use crate::problem::Problem;
use crate::text::truncate as cut;

/// The kinds of mail the desk sends; each is a template name.
pub const KINDS: &[&str] = &[
    "acknowledgement",
    "queue_notification",
    "urgent_notification",
    "transfer_notice",
    "daily_status",
    "escalation_warning",
    "escalation",
    "correspondence",
    "requester_reply",
    "command_refused",
    "comment",
];

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

/// The shipped templates, compiled in: used when the templates folder does not exist.
pub const BUILTIN: &[(&str, &str)] = builtin!(
    "acknowledgement.subject",
    "acknowledgement.txt",
    "acknowledgement.html",
    "queue_notification.subject",
    "queue_notification.txt",
    "urgent_notification.subject",
    "urgent_notification.txt",
    "transfer_notice.subject",
    "transfer_notice.txt",
    "daily_status.subject",
    "daily_status.txt",
    "escalation_warning.subject",
    "escalation_warning.txt",
    "escalation.subject",
    "escalation.txt",
    "correspondence.subject",
    "correspondence.txt",
    "requester_reply.subject",
    "requester_reply.txt",
    "command_refused.subject",
    "command_refused.txt",
    "comment.subject",
    "comment.txt",
);

/// A rendered mail, before addressing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: CR, LF and other controls are replaced by spaces.
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// The loaded templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    names: BTreeSet<String>,
    root: String,
}

impl Templates {
    /// Loads every template under `dir`; every problem is reported with its file and line.
    pub fn load(dir: &Path) -> Result<Templates, Vec<Problem>> {
        let mut files = Vec::new();
        collect(dir, dir, &mut files).map_err(|e| {
            vec![Problem {
                file: dir.display().to_string(),
                line: 0,
                reason: format!("cannot read templates: {e}"),
            }]
        })?;
        Templates::from_sources(&dir.display().to_string(), files)
    }

    /// Loads `dir`, or the built-in templates when `dir` does not exist.
    pub fn load_or_builtin(dir: &Path) -> Result<Templates, Vec<Problem>> {
        if dir.is_dir() {
            Templates::load(dir)
        } else {
            let files = BUILTIN
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect();
            Templates::from_sources("<built-in templates>", files)
        }
    }

    /// Loads templates from (relative name, source) pairs; `root` names the folder in problems.
    pub fn from_sources(
        root: &str,
        files: Vec<(String, String)>,
    ) -> Result<Templates, Vec<Problem>> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        // A loop without end (or ten million rounds) stops: every render,
        // in the daemon and in `check`, has a budget of instructions.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_filter("truncate_text", truncate_text);
        let mut problems = Vec::new();
        let mut names = BTreeSet::new();
        let mut broken = BTreeSet::new();
        for (name, source) in files {
            match env.add_template_owned(name.clone(), source) {
                Ok(()) => {
                    names.insert(name);
                }
                Err(e) => {
                    problems.push(problem(root, &name, &e));
                    broken.insert(name);
                }
            }
        }
        for kind in KINDS {
            for part in ["subject", "txt"] {
                let name = format!("{kind}.{part}");
                if !names.contains(&name) && !broken.contains(&name) {
                    problems.push(Problem {
                        file: format!("{root}/{name}"),
                        line: 0,
                        reason: "missing: every kind of mail needs a subject and a text body"
                            .to_string(),
                    });
                }
            }
        }
        let templates = Templates {
            env,
            names,
            root: root.to_string(),
        };
        if !problems.is_empty() {
            // The templates that did load are checked too, so that one
            // report names every problem of the set.
            problems.extend(templates.check());
            return Err(problems);
        }
        Ok(templates)
    }

    /// The most specific template file for `kind`.`part`: queue, then desk, then default.
    fn pick(&self, kind: &str, part: &str, desk: &str, queue: &str) -> Option<String> {
        [
            format!("queues/{queue}/{kind}.{part}"),
            format!("desks/{desk}/{kind}.{part}"),
            format!("{kind}.{part}"),
        ]
        .into_iter()
        .find(|n| self.names.contains(n))
    }

    /// Renders one kind of mail for a desk and queue with `ctx`.
    pub fn render(
        &self,
        kind: &str,
        desk: &str,
        queue: &str,
        ctx: &Value,
    ) -> Result<Rendered, Problem> {
        let render = |part: &str| -> Result<Option<String>, Problem> {
            let Some(name) = self.pick(kind, part, desk, queue) else {
                return Ok(None);
            };
            let tmpl = self
                .env
                .get_template(&name)
                .map_err(|e| problem(&self.root, &name, &e))?;
            render_bounded(&tmpl, ctx)
                .map(Some)
                .map_err(|e| problem(&self.root, &name, &e))
        };
        let subject = render("subject")?.unwrap_or_default();
        let text = render("txt")?.unwrap_or_default();
        let html = render("html")?;
        Ok(Rendered {
            subject: reflect_line(&subject, SUBJECT_CHARS),
            text: reflect_text(&text, usize::MAX),
            html,
        })
    }

    /// Renders every template against a representative context of each way
    /// its kind of mail is composed, with undefined variables as errors
    /// (`{{ ticket.tagg }}` is a problem at its file and line, where the
    /// daemon would render it as nothing); returns every problem.
    pub fn check(&self) -> Vec<Problem> {
        let mut strict = self.env.clone();
        strict.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let mut problems = Vec::new();
        for name in &self.names {
            let Some(kind) = kind_of(name) else {
                continue;
            };
            let Ok(t) = strict.get_template(name) else {
                continue;
            };
            // The first problem of a template is enough: the others are
            // usually the same one seen from another context.
            if let Some(e) = sample_contexts(kind)
                .iter()
                .find_map(|ctx| render_bounded(&t, ctx).err())
            {
                problems.push(problem(&self.root, name, &e));
            }
        }
        problems
    }

    /// Problems of the override folders: a `desks/DESK/` or `queues/QUEUE/`
    /// folder for a desk or queue the configuration does not have, or a file
    /// there that is no kind of mail (a typo: it would never be used).
    pub fn check_overrides(&self, desks: &[&str], queues: &[&str]) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for name in &self.names {
            let mut parts = name.splitn(3, '/');
            let (Some(top), Some(owner), Some(file)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (what, known) = match top {
                "desks" => ("desk", desks),
                "queues" => ("queue", queues),
                _ => continue,
            };
            if !known.contains(&owner) {
                if seen.insert(format!("{top}/{owner}")) {
                    problems.push(Problem {
                        file: format!("{}/{top}/{owner}", self.root),
                        line: 0,
                        reason: format!(
                            "there is no {what} {owner:?} in the configuration (known: {}); these templates would never be used",
                            known.join(", ")
                        ),
                    });
                }
            } else if kind_of(file).is_none() || file.contains('/') {
                problems.push(Problem {
                    file: format!("{}/{name}", self.root),
                    line: 0,
                    reason: format!(
                        "not a template triaged uses: name it KIND.subject, KIND.txt or KIND.html with KIND one of {}",
                        KINDS.join(", ")
                    ),
                });
            }
        }
        problems
    }

    /// How many templates are loaded.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Instructions one rendering may take (minijinja fuel): far above any
/// sensible template, far below a loop that would stall the daemon.
const TEMPLATE_FUEL: u64 = 200_000;
/// The most one template may render, in bytes.
pub const MAX_RENDERED_BYTES: usize = 1 << 20;

/// Renders `t`, refusing output past [`MAX_RENDERED_BYTES`] (a loop that
/// repeats the 20,000-character body would otherwise build megabytes).
fn render_bounded(
    t: &minijinja::Template<'_, '_>,
    ctx: &Value,
) -> Result<String, minijinja::Error> {
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
                return Err(std::io::Error::other("too long"));
            }
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::new());
    match t.render_captured_to(ctx, &mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out.0).into_owned()),
        Err(e) if e.kind() == minijinja::ErrorKind::WriteFailure => Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("renders more than {MAX_RENDERED_BYTES} bytes"),
        )),
        Err(e) => Err(e),
    }
}

/// The kind of mail a template file is for (`queues/Q/acknowledgement.txt`:
/// `acknowledgement`), if it is one.
fn kind_of(name: &str) -> Option<&'static str> {
    let file = name.rsplit('/').next().unwrap_or(name);
    let (stem, ext) = file.rsplit_once('.')?;
    if !matches!(ext, "subject" | "txt" | "html") {
        return None;
    }
    KINDS.iter().copied().find(|k| *k == stem)
}

fn problem(root: &str, name: &str, e: &minijinja::Error) -> Problem {
    let mut reason = e.kind().to_string();
    if let Some(detail) = e.detail() {
        reason.push_str(": ");
        reason.push_str(detail);
    }
    Problem {
        file: format!("{root}/{name}"),
        line: e.line().unwrap_or(0),
        reason,
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path
            .extension()
            .is_some_and(|e| e == "subject" || e == "txt" || e == "html")
        {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((name, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

/// A subject is one line: no CR, LF or other control characters survive, so
/// no value can smuggle a header into the mail.
pub fn one_line(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if is_invisible_control(c) { ' ' } else { c })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Control characters (C0, DEL, C1) and the bidi embedding, override and
/// isolate controls, which reorder what a reader sees.
fn is_invisible_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The longest subject of inbound mail reflected into our mail, in characters.
pub const REFLECTED_SUBJECT_CHARS: usize = 200;
/// The longest display name (or address) reflected, in characters.
pub const REFLECTED_NAME_CHARS: usize = 78;
/// The longest Message-ID reflected in the text; longer ones are cut.
pub const REFLECTED_ID_CHARS: usize = 200;
/// The most of an inbound body a template sees, in characters.
pub const REFLECTED_BODY_CHARS: usize = 20_000;
/// The longest rendered subject: with a tag and a reflected subject it stays
/// far below RFC 5322's 998-octet line, however the words fall.
pub const SUBJECT_CHARS: usize = 400;
/// The longest line of a rendered text body, in bytes (RFC 5322: 998 octets).
const TEXT_LINE_BYTES: usize = 996;

/// A value from inbound mail for a one-line place (subject, name): one line,
/// no controls, at most `max` characters, an ellipsis where it was cut.
pub fn reflect_line(s: &str, max: usize) -> String {
    // Only a bounded prefix is looked at: a 10 MB subject costs no more than a short one.
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(max.saturating_mul(4).max(64)).collect();
    let line = one_line(&head);
    if chars.next().is_none() {
        cut(&line, max)
    } else {
        let mut c: String = line.chars().take(max.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

/// A multi-line value from inbound mail (a body): line breaks kept (CR LF
/// and lone CR become LF), tabs kept, every other control and bidi control
/// dropped, at most `max` characters, lines longer than 996 bytes broken.
pub fn reflect_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(2)));
    let mut rest = s;
    let mut count = 0;
    let mut line = 0;
    let mut truncated = false;
    loop {
        // A run of printable ASCII (one byte, one character each) is copied
        // whole, up to the line and character limits: most of a body.
        let run = rest
            .bytes()
            .take_while(|b| (0x20..0x7f).contains(b))
            .count();
        let mut taken = 0;
        while taken < run {
            if count >= max {
                truncated = true;
                break;
            }
            if line >= TEXT_LINE_BYTES {
                out.push('\n');
                line = 0;
            }
            let n = (run - taken).min(max - count).min(TEXT_LINE_BYTES - line);
            out.push_str(&rest[taken..taken + n]);
            taken += n;
            count += n;
            line += n;
        }
        if truncated {
            break;
        }
        rest = &rest[run..];
        let mut chars = rest.chars();
        let Some(c) = chars.next() else {
            break;
        };
        if count >= max {
            truncated = true;
            break;
        }
        let c = match c {
            '\r' => {
                if chars.as_str().starts_with('\n') {
                    chars.next();
                }
                '\n'
            }
            '\n' | '\t' => c,
            c if is_invisible_control(c) => {
                rest = chars.as_str();
                continue;
            }
            c => c,
        };
        rest = chars.as_str();
        if c == '\n' {
            line = 0;
        } else if line + c.len_utf8() > TEXT_LINE_BYTES {
            out.push('\n');
            line = 0;
        }
        if c != '\n' {
            line += c.len_utf8();
        }
        out.push(c);
        count += 1;
    }
    if truncated {
        out.push_str("\n[... truncated]");
    }
    out
}

/// `text | truncate_text(n)`: at most n characters, marked when cut.
fn truncate_text(value: String, n: usize) -> String {
    if value.chars().count() <= n {
        value
    } else {
        let cut: String = value.chars().take(n).collect();
        format!("{cut}\n[... truncated]")
    }
}

/// A ticket as the templates of a new ticket see it (acknowledgement,
/// notifications), for `check` and the tests.
pub fn sample_context() -> Value {
    minijinja::context! {
        ticket => minijinja::context! {
            number => 1042, tag => "[ISDA #1042]", subject => "Portal down for <all> users",
            queue => "ProductionDefect", kind => "incident", status => "new",
            urgency => "high", impact => "extensive", priority => "critical",
            due => "2026-11-23 09:30 CST", requester => "ann@example.org",
            requester_name => "Ann Lee", requester_display => "Ann Lee <ann@example.org>",
            mailbox => "isda-support", created_at => "2026-11-20 16:30 CST", desk => "isda",
            owner => "jlee@example.edu",
        },
        desk => sample_desk(),
        message => minijinja::context! {
            from => "Ann Lee <ann@example.org>", subject => "Portal down", body => "The portal is down.",
            date => "2026-11-20 16:30 CST", message_id => "abc@example.org",
        },
        recipients => vec!["ann@example.org", "isda-pipeline@example.edu"],
    }
}

/// An alert's ticket as the SLA mail sees it: no requester, no owner.
fn sample_alert_ticket() -> Value {
    minijinja::context! {
        number => 1042, tag => "[ISDA #1042]", subject => "PROBLEM: db01 is DOWN",
        queue => "ProductionDefect", kind => "alert", status => "new",
        urgency => "high", impact => "extensive", priority => "critical",
        due => "2026-11-23 09:30 CST", mailbox => "map-support",
        created_at => "2026-11-20 16:30 CST", desk => "isda", owner => (),
    }
}

fn sample_desk() -> Value {
    minijinja::context! { name => "isda", tag => "ISDA", title => "ISDA support", address => "isda-support@example.edu" }
}

/// Every context a kind of mail is rendered with, as `notify` builds them
/// (`Notifier::context` and what steering adds; `relay` for conversation):
/// a template is checked against each, so a variable its kind never has is
/// found.
pub fn sample_contexts(kind: &str) -> Vec<Value> {
    let base = sample_context();
    let transfer = minijinja::context! {
        transfer => minijinja::context! { from_queue => "Customer-Support", to_queue => "ProductionDefect", note => "" },
        ..base.clone()
    };
    match kind {
        "queue_notification" => vec![base, transfer],
        "transfer_notice" => vec![transfer],
        "command_refused" => vec![minijinja::context! {
            refused => vec![minijinja::context! { line => "/queue Nowhere", reason => "there is no queue \"Nowhere\"" }],
            refused_more => 0,
            ..base
        }],
        "comment" => vec![minijinja::context! {
            relay => minijinja::context! { author => "Jane Lee", text => "Customer is on the beta build." },
            ..base
        }],
        "correspondence" | "requester_reply" => vec![minijinja::context! {
            ticket => minijinja::context! {
                number => 1042, tag => "[ISDA #1042]", subject => "Portal down for <all> users",
                queue => "ProductionDefect", status => "open", owner => "jlee@example.edu",
                requester => "ann@example.org", requester_name => "Ann Lee", desk => "isda",
            },
            desk => sample_desk(),
            message => minijinja::context! {
                from => "jlee@example.edu", subject => "Re: [ISDA #1042] Portal down",
                message_id => "def@example.edu",
            },
            relay => minijinja::context! {
                author => "Jane Lee", text => "We restarted the portal; please try again.",
                attachments => vec![minijinja::context! { name => "log.txt", size => "2 KiB" }],
                withheld => vec![minijinja::context! { name => "dump.bin", size => "40 MiB" }],
            },
            recipients => vec!["ann@example.org"],
        }],
        "escalation" | "escalation_warning" => {
            let sla = |level: &str, clock: &str| {
                minijinja::context! {
                    clock => clock, level => level, oncall => level == "oncall",
                    resolution => clock == "resolution",
                    level_due => "2026-11-23 09:30 CST", due => "2026-11-23 09:30 CST", age => "2d 17h",
                }
            };
            vec![
                minijinja::context! { sla => sla("warning", "response"), ..base.clone() },
                minijinja::context! { sla => sla("escalation", "response"), ..base.clone() },
                minijinja::context! { sla => sla("oncall", "response"), ..base.clone() },
                minijinja::context! { sla => sla("level2", "resolution"), ..base.clone() },
                // An alert's ticket: no requester, nobody holds it.
                minijinja::context! { ticket => sample_alert_ticket(), sla => sla("escalation", "response"), ..base },
            ]
        }
        "daily_status" => {
            let status = |latest: bool| {
                minijinja::context! {
                    age => "2d 17h", last_activity => "2026-11-21 10:00 CST",
                    responded => if latest { Value::from("2026-11-20 17:00 CST") } else { Value::from(()) },
                    latest => if latest {
                        minijinja::context! {
                            from => "ann@example.org", at => "2026-11-21 10:00 CST", text => "Still down.",
                        }
                    } else {
                        Value::from(())
                    },
                }
            };
            vec![
                // The internal copy: owner and the latest message.
                minijinja::context! { status => status(true), ..base.clone() },
                // The customer's copy: neither.
                minijinja::context! { ticket => sample_alert_ticket(), status => status(false), ..base },
            ]
        }
        _ => vec![base],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The character-at-a-time `reflect_text` the ASCII-run one replaced.
    fn reflect_text_by_char(s: &str, max: usize) -> String {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        let (mut count, mut line, mut truncated) = (0, 0, false);
        while let Some(c) = chars.next() {
            if count >= max {
                truncated = true;
                break;
            }
            let c = match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    '\n'
                }
                '\n' | '\t' => c,
                c if is_invisible_control(c) => continue,
                c => c,
            };
            if c == '\n' {
                line = 0;
            } else if line + c.len_utf8() > TEXT_LINE_BYTES {
                out.push('\n');
                line = 0;
            }
            if c != '\n' {
                line += c.len_utf8();
            }
            out.push(c);
            count += 1;
        }
        if truncated {
            out.push_str("\n[... truncated]");
        }
        out
    }

    #[test]
    fn reflect_text_runs_match_char_by_char() {
        let pieces = [
            "plain words ",
            "\r\n",
            "\r",
            "\n",
            "\t",
            "\u{1b}[31m",
            "\u{202e}",
            "é",
            "日本",
            "\u{7f}",
            "x",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for case in 0..400 {
            let mut s = String::new();
            for _ in 0..(case % 40) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let p = pieces[(seed >> 33) as usize % pieces.len()];
                if (seed >> 20).is_multiple_of(7) {
                    s.push_str(&"a".repeat(300 + (seed >> 40) as usize % 900));
                }
                s.push_str(p);
            }
            for max in [0, 1, 5, 37, 996, 1000, 5000, usize::MAX] {
                assert_eq!(
                    reflect_text(&s, max),
                    reflect_text_by_char(&s, max),
                    "case {case} max {max}: {s:?}"
                );
            }
        }
    }

    fn set(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = KINDS
            .iter()
            .flat_map(|k| {
                [
                    (format!("{k}.subject"), format!("{{{{ ticket.tag }}}} {k}")),
                    (
                        format!("{k}.txt"),
                        // An alert's SLA mail has no requester.
                        if ["escalation", "escalation_warning", "daily_status"].contains(k) {
                            format!("{k} body for {{{{ ticket.tag }}}}")
                        } else {
                            format!("{k} body for {{{{ ticket.requester }}}}")
                        },
                    ),
                ]
            })
            .collect();
        for (n, s) in extra {
            files.retain(|(name, _)| name != n);
            files.push((n.to_string(), s.to_string()));
        }
        files
    }

    #[test]
    fn overrides_queue_then_desk_then_default() {
        let t = Templates::from_sources(
            "t",
            set(&[
                ("desks/database/acknowledgement.txt", "desk body"),
                ("queues/Hosted-Help/acknowledgement.txt", "queue body"),
            ]),
        )
        .expect("load");
        let ctx = sample_context();
        assert_eq!(
            t.render("acknowledgement", "isda", "X", &ctx)
                .expect("r")
                .text,
            "acknowledgement body for ann@example.org"
        );
        assert_eq!(
            t.render("acknowledgement", "database", "Database", &ctx)
                .expect("r")
                .text,
            "desk body"
        );
        assert_eq!(
            t.render("acknowledgement", "hosted", "Hosted-Help", &ctx)
                .expect("r")
                .text,
            "queue body"
        );
    }

    #[test]
    fn html_is_escaped_text_is_not_subject_is_one_line() {
        let t = Templates::from_sources(
            "t",
            set(&[
                ("acknowledgement.html", "<p>{{ ticket.subject }}</p>"),
                ("acknowledgement.subject", "{{ ticket.tag }} {{ evil }}"),
            ]),
        )
        .expect("load");
        let ctx = minijinja::context! { ticket => minijinja::context!{ tag => "[ISDA #1]", subject => "<b>x</b>" }, evil => "a\r\nBcc: victim@example.org" };
        let r = t
            .render("acknowledgement", "isda", "Q", &ctx)
            .expect("render");
        assert_eq!(r.html.as_deref(), Some("<p>&lt;b&gt;x&lt;&#x2f;b&gt;</p>"));
        assert_eq!(r.subject, "[ISDA #1] a Bcc: victim@example.org");
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
    }

    #[test]
    fn reflected_values_are_bounded_one_line_and_clean() {
        let subject = format!("Help {}", "x".repeat(10 * 1024 * 1024));
        let r = reflect_line(&subject, REFLECTED_SUBJECT_CHARS);
        assert_eq!(r.chars().count(), REFLECTED_SUBJECT_CHARS);
        assert!(r.starts_with("Help xxx") && r.ends_with('…'));
        // Cut after a long run of blanks: still marked as cut.
        let r = reflect_line(&format!("a{}b", " ".repeat(100_000)), 78);
        assert_eq!(r, "a…");
        let r = reflect_line("Ann\r\nBcc: x@evil\x1b[2J\u{202e}Lee\u{9b}", 78);
        assert_eq!(r, "Ann Bcc: x@evil [2J Lee");
        assert_eq!(reflect_line("short", 78), "short");
        assert_eq!(reflect_line("", 78), "");
    }

    #[test]
    fn reflected_text_keeps_lines_drops_controls_breaks_long_lines() {
        let body = "one\r\ntwo\rthree\n\tfour\x1b[31m\x07\u{9b}\u{202e}five";
        assert_eq!(reflect_text(body, 1000), "one\ntwo\nthree\n\tfour[31mfive");
        let long = "é".repeat(2000);
        let r = reflect_text(&long, 10_000);
        assert!(
            r.lines().all(|l| l.len() <= 996),
            "{:?}",
            r.lines().map(str::len).collect::<Vec<_>>()
        );
        assert_eq!(r.replace('\n', ""), long);
        let r = reflect_text(&"y".repeat(50_000), 100);
        assert_eq!(r, format!("{}\n[... truncated]", "y".repeat(100)));
    }

    #[test]
    fn rendered_subject_and_text_are_bounded() {
        let t = Templates::from_sources(
            "t",
            set(&[
                ("acknowledgement.subject", "{{ ticket.tag }} {{ evil }}"),
                ("acknowledgement.txt", "Subject: {{ evil }}\x1b]0;x\x07"),
            ]),
        )
        .expect("load");
        let evil = "w".repeat(100_000);
        let ctx = minijinja::context! { ticket => minijinja::context!{ tag => "[ISDA #1]" }, evil => evil };
        let r = t
            .render("acknowledgement", "isda", "Q", &ctx)
            .expect("render");
        assert_eq!(r.subject.chars().count(), SUBJECT_CHARS);
        assert!(r.text.lines().all(|l| l.len() <= 996));
        assert!(!r.text.contains('\x1b') && !r.text.contains('\x07'));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Templates::from_sources("tpl", set(&[("escalation.txt", "line one\n{% if %}\n")]))
            .expect_err("error");
        let s: Vec<String> = e.iter().map(|p| p.to_string()).collect();
        assert!(
            s.iter()
                .any(|p| p.starts_with("tpl/escalation.txt:2: syntax error")),
            "{s:?}"
        );
        let missing = Templates::from_sources(
            "tpl",
            set(&[])
                .into_iter()
                .filter(|(n, _)| n != "daily_status.txt")
                .collect(),
        )
        .expect_err("error");
        assert!(
            missing
                .iter()
                .any(|p| p.file == "tpl/daily_status.txt" && p.reason.starts_with("missing"))
        );
    }

    #[test]
    fn check_finds_undefined_variables_at_their_line() {
        let t = Templates::from_sources(
            "tpl",
            set(&[
                (
                    "acknowledgement.subject",
                    "{{ ticket.tagg }} {{ ticket.subject }}",
                ),
                (
                    "acknowledgement.txt",
                    "Hello,\n\n{{ relay.author }} wrote\n",
                ),
                (
                    "queue_notification.txt",
                    "{{ ticket.tag }} now in {{ transfer.to_queue }}",
                ),
                (
                    "transfer_notice.txt",
                    "{{ transfer.to_queue }} {{ ticket.tag }}",
                ),
                (
                    "correspondence.txt",
                    "{% if ticket.owner %}{{ relay.text }}{% endif %}",
                ),
                ("comment.txt", "{% if ticket.ownr %}x{% endif %}"),
            ]),
        )
        .expect("load");
        // The daemon renders the undefined value as nothing...
        let r = t
            .render("acknowledgement", "isda", "Q", &sample_context())
            .expect("render");
        assert_eq!(r.subject, "Portal down for <all> users");
        // ... check says where it is.
        let p: Vec<String> = t.check().iter().map(|p| p.to_string()).collect();
        let has = |prefix: &str| p.iter().any(|l| l.starts_with(prefix));
        assert!(
            has("tpl/acknowledgement.subject:1: undefined value"),
            "{p:?}"
        );
        assert!(has("tpl/acknowledgement.txt:3: undefined value"), "{p:?}");
        // A new ticket's notification has no transfer.
        assert!(
            has("tpl/queue_notification.txt:1: undefined value"),
            "{p:?}"
        );
        assert!(has("tpl/comment.txt:1: undefined value"), "{p:?}");
        assert_eq!(p.len(), 4, "{p:?}");
    }

    #[test]
    fn endless_or_huge_templates_are_stopped() {
        let t = Templates::from_sources(
            "tpl",
            set(&[
                (
                    "acknowledgement.txt",
                    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                ),
                (
                    "comment.txt",
                    "{% for i in range(60000) %}{{ message.body }}{{ message.body }}{% endfor %}",
                ),
            ]),
        )
        .expect("load");
        let p: Vec<String> = t.check().iter().map(|p| p.to_string()).collect();
        assert!(
            p.iter()
                .any(|l| l.starts_with("tpl/acknowledgement.txt:1:") && l.contains("fuel")),
            "{p:?}"
        );
        let big = Templates::from_sources(
            "tpl",
            set(&[(
                "acknowledgement.txt",
                "{% for i in range(90000) %}{{ message.body }}{% endfor %}",
            )]),
        )
        .expect("load");
        let ctx =
            minijinja::context! { message => minijinja::context! { body => "y".repeat(20_000) } };
        let e = big
            .render("acknowledgement", "isda", "Q", &ctx)
            .expect_err("refused");
        assert!(e.to_string().contains("renders more than"), "{e}");
    }

    #[test]
    fn override_folders_name_known_desks_and_queues() {
        let t = Templates::from_sources(
            "tpl",
            set(&[
                ("desks/isda/acknowledgement.txt", "ok"),
                ("desks/nope/acknowledgement.txt", "never used"),
                ("desks/nope/acknowledgement.subject", "never used"),
                ("queues/Admin/acknowledgment.txt", "a typo"),
                ("queues/Gone/comment.txt", "never used"),
            ]),
        )
        .expect("load");
        let p: Vec<String> = t
            .check_overrides(&["isda", "database"], &["Admin", "Database"])
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("tpl/desks/nope:0: there is no desk \"nope\""),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("tpl/queues/Admin/acknowledgment.txt:0: not a template"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("tpl/queues/Gone:0: there is no queue \"Gone\""),
            "{p:?}"
        );
    }

    #[test]
    fn builtin_matches_the_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk = Vec::new();
        collect(&dir, &dir, &mut on_disk).expect("read templates");
        let mut builtin: Vec<(String, String)> = BUILTIN
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        builtin.sort();
        on_disk.sort();
        let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&builtin),
            names(&on_disk),
            "BUILTIN must list every shipped template"
        );
    }

    #[test]
    fn shipped_templates_load_and_render() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let t = Templates::load(&dir).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(t.check().is_empty(), "{:?}", t.check());
        let r = t
            .render(
                "acknowledgement",
                "isda",
                "Customer-Support",
                &sample_context(),
            )
            .expect("render");
        assert!(r.subject.starts_with("[ISDA #1042]"));
        assert!(r.text.contains("[ISDA #1042]"));
        assert!(
            r.html
                .as_deref()
                .is_some_and(|h| h.contains("&lt;all&gt;") || !h.contains("<all>"))
        );
    }
}
