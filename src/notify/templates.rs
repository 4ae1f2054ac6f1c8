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
        env.add_filter("truncate_text", truncate_text);
        let mut problems = Vec::new();
        let mut names = BTreeSet::new();
        for (name, source) in files {
            match env.add_template_owned(name.clone(), source) {
                Ok(()) => {
                    names.insert(name);
                }
                Err(e) => problems.push(problem(root, &name, &e)),
            }
        }
        for kind in KINDS {
            for part in ["subject", "txt"] {
                let name = format!("{kind}.{part}");
                if !names.contains(&name) {
                    problems.push(Problem {
                        file: format!("{root}/{name}"),
                        line: 0,
                        reason: "missing: every kind of mail needs a subject and a text body"
                            .to_string(),
                    });
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Templates {
            env,
            names,
            root: root.to_string(),
        })
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
            tmpl.render(ctx)
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

    /// Renders every template against a sample ticket; returns every problem.
    pub fn check(&self) -> Vec<Problem> {
        let ctx = sample_context();
        let mut problems = Vec::new();
        for name in &self.names {
            if let Ok(t) = self.env.get_template(name)
                && let Err(e) = t.render(&ctx)
            {
                problems.push(problem(&self.root, name, &e));
            }
        }
        problems
    }
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
    let mut chars = s.chars().peekable();
    let mut count = 0;
    let mut line = 0;
    let mut truncated = false;
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

/// `text | truncate_text(n)`: at most n characters, marked when cut.
fn truncate_text(value: String, n: usize) -> String {
    if value.chars().count() <= n {
        value
    } else {
        let cut: String = value.chars().take(n).collect();
        format!("{cut}\n[... truncated]")
    }
}

/// A ticket as the templates see it, for `check` and the tests.
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
        desk => minijinja::context! { name => "isda", tag => "ISDA", title => "ISDA support", address => "isda-support@example.edu" },
        message => minijinja::context! {
            from => "Ann Lee <ann@example.org>", subject => "Portal down", body => "The portal is down.",
            date => "2026-11-20 16:30 CST", message_id => "abc@example.org",
        },
        recipients => vec!["ann@example.org", "isda-pipeline@example.edu"],
        transfer => minijinja::context! { from_queue => "Customer-Support", to_queue => "ProductionDefect", note => "" },
        refused => vec![minijinja::context! { line => "/queue Nowhere", reason => "there is no queue \"Nowhere\"" }],
        refused_more => 0,
        relay => minijinja::context! {
            author => "Jane Lee", text => "We restarted the portal; please try again.",
            attachments => vec![minijinja::context! { name => "log.txt", size => "2 KiB" }],
            withheld => vec![minijinja::context! { name => "dump.bin", size => "40 MiB" }],
        },
        sla => minijinja::context! {
            clock => "response", level => "escalation", oncall => false, resolution => false,
            level_due => "2026-11-23 09:30 CST", due => "2026-11-23 09:30 CST", age => "2d 17h",
        },
        status => minijinja::context! {
            age => "2d 17h", last_activity => "2026-11-21 10:00 CST", responded => (),
            latest => minijinja::context! {
                from => "ann@example.org", at => "2026-11-21 10:00 CST", text => "Still down.",
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = KINDS
            .iter()
            .flat_map(|k| {
                [
                    (format!("{k}.subject"), format!("{{{{ ticket.tag }}}} {k}")),
                    (
                        format!("{k}.txt"),
                        format!("{k} body for {{{{ ticket.requester }}}}"),
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
