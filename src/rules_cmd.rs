//! `triaged classify`, `triaged rules test` and `triaged rules diff`: the
//! routing rules as something an administrator can run, test and compare
//! before deploying. Nothing here writes to the store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::classify::cases::{CaseContext, run_cases};
use crate::classify::{Classifier, Decision, load_rules_from};
use crate::clock::now_ms;
use crate::config::Config;
use crate::parse::{ParsedMessage, parse};
use crate::sources::files::{Item, Walker};
use crate::store::{Store, StoreError};
use crate::thread::{self, ThreadKeys};

/// The mailbox a message counts as arriving in: the named one, or the first.
fn mailbox_name(config: &Config, mailbox: Option<String>) -> anyhow::Result<String> {
    config
        .mailbox_or_first(mailbox.as_deref())
        .map(|m| m.name.clone())
        .map_err(anyhow::Error::msg)
}

/// How `classify` threads a message: its keys, and, when the configured store
/// exists, where the pipeline would put it now and why.
#[derive(Debug, serde::Serialize)]
struct ThreadView {
    /// Case tags of our desks in the subject (`[ISDA #1000]`).
    tags: Vec<String>,
    /// Message-IDs referred to, most specific first.
    references: Vec<String>,
    /// The threading decision against the store, with its reason; `None`
    /// without a store.
    decision: Option<String>,
    /// Why there is no decision (no store, or it could not be read).
    note: Option<String>,
}

/// The thread keys of `msg`, and the decision against the configured store
/// when it exists (a SQLite file not there is not created; nothing is
/// written: the transaction is rolled back).
async fn thread_view(config: &Config, msg: &ParsedMessage, decision: &Decision) -> ThreadView {
    let keys = thread::keys(msg, &config.desk_tags());
    let mut view = ThreadView {
        tags: keys
            .tagged
            .iter()
            .map(|t| thread::format_tag(&t.desk_tag, t.number))
            .collect(),
        references: keys.referenced.clone(),
        decision: None,
        note: None,
    };
    let url = &config.store.database_url;
    if let Some(path) = crate::store::sqlite_file(url)
        && !Path::new(path).exists()
    {
        view.note = Some("no store yet: thread keys only".to_string());
        return view;
    }
    match against_store(config, msg, decision, &keys).await {
        Ok(reason) => view.decision = Some(reason),
        Err(e) => {
            view.note = Some(format!(
                "store not read ({}): thread keys only",
                crate::config::redact_text(&e.to_string(), url)
            ))
        }
    }
    view
}

async fn against_store(
    config: &Config,
    msg: &ParsedMessage,
    decision: &Decision,
    keys: &ThreadKeys,
) -> Result<String, StoreError> {
    let store = Store::open(&config.store.database_url, config.tickets.first_number)
        .await?
        .with_message_limit(config.ingest.max_message_bytes);
    let result = async {
        let mut tx = store.begin().await?;
        if let Some(id) = msg.message_id.as_deref()
            && let Some(number) = tx.own_mail(id).await?
        {
            return Ok(format!(
                "own mail: its Message-ID is one we sent about ticket #{number}; not recorded"
            ));
        }
        let found = tx.thread_found(keys, decision.alert_key.as_deref()).await?;
        let sender = msg.from.as_ref().map(|a| a.address.as_str());
        let team = |desk: &str, sender: &str| config.is_team_member(desk, sender);
        let now = tx.now();
        // Dropped without commit: rolled back, nothing written.
        drop(tx);
        Ok(thread::decide(
            &found,
            sender,
            &team,
            now,
            config.tickets.reopen_window_ms(),
        )
        .reason())
    }
    .await;
    store.close().await;
    result
}

/// Text from mail (Message-IDs, addresses) for the terminal: controls and
/// bidi controls as escapes.
fn inert(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `triaged classify FILE`: the decision for one message, stored nowhere.
pub async fn classify(
    config: &Config,
    file: &Path,
    mailbox: Option<String>,
    at: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let classifier =
        Classifier::load(config).map_err(|p| anyhow::anyhow!("invalid routing rules:\n{p}"))?;
    let mailbox = mailbox_name(config, mailbox)?;
    let raw = if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(file)?
    };
    let msg = parse(&raw);
    let arrival = match at {
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .map_err(|e| anyhow::anyhow!("--at {t:?}: {e} (use e.g. 2026-11-20T16:30:00-06:00)"))?
            .as_millisecond(),
        None => now_ms(),
    };
    let mb = config
        .mailbox(&mailbox)
        .ok_or_else(|| anyhow::anyhow!("unknown mailbox {mailbox:?}"))?;
    let d = classifier.classify(&msg, mb, arrival, config);
    let view = thread_view(config, &msg, &d).await;
    let mut out = std::io::stdout().lock();
    if json {
        let mut value = serde_json::to_value(&d)?;
        if let Some(o) = value.as_object_mut() {
            o.insert("thread".to_string(), serde_json::to_value(&view)?);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let tz = config
        .calendars
        .get(&d.desk)
        .map(|c| c.time_zone().clone())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let due = d
        .due_ms
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_zoned(tz).strftime("%a %Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_else(|| "-".to_string());
    writeln!(out, "mailbox:    {mailbox}")?;
    writeln!(out, "desk:       {} [{}]", d.desk, d.desk_tag)?;
    writeln!(out, "queue:      {}", d.queue)?;
    writeln!(out, "kind:       {}", d.kind)?;
    writeln!(out, "urgency:    {}", d.urgency)?;
    writeln!(out, "impact:     {}", d.impact)?;
    writeln!(out, "priority:   {}", d.priority)?;
    writeln!(out, "due:        {due}")?;
    writeln!(
        out,
        "recipients: {}",
        if d.recipients.is_empty() {
            "-".to_string()
        } else {
            d.recipients.join(", ")
        }
    )?;
    writeln!(
        out,
        "tags:       {}",
        if d.tags.is_empty() {
            "-".to_string()
        } else {
            d.tags.join(", ")
        }
    )?;
    writeln!(
        out,
        "ack:        {}",
        if d.suppress_ack {
            "suppressed by rule"
        } else {
            "yes, unless the sender is automated"
        }
    )?;
    if let Some(k) = &d.alert_key {
        writeln!(out, "alert key:  {k}")?;
    }
    if d.recovery {
        writeln!(
            out,
            "recovery:   yes, resolves the open ticket of its alert key"
        )?;
    }
    writeln!(out, "because:")?;
    for line in &d.explanation {
        writeln!(out, "  - {line}")?;
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    writeln!(out, "thread keys:")?;
    writeln!(out, "  tags:       {}", list(&view.tags))?;
    let refs: Vec<String> = view.references.iter().map(|r| format!("<{r}>")).collect();
    writeln!(out, "  references: {}", inert(&list(&refs)))?;
    if let Some(reason) = &view.decision {
        writeln!(out, "thread:     {}", inert(reason))?;
    }
    if let Some(note) = &view.note {
        writeln!(out, "thread:     {}", inert(note))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `triaged rules test`: every case beside the rules, then the accuracy per
/// field and the confusion between kinds. Non-zero on any failure, or with
/// `min_accuracy`, when a field's accuracy is below it. `explain` shows the
/// cases whose name contains it (or at `FILE:LINE`) in full instead.
pub fn test(
    config: &Config,
    rules_dir: Option<PathBuf>,
    cases_dir: Option<PathBuf>,
    explain: Option<String>,
    min_accuracy: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let rules_dir = rules_dir.unwrap_or_else(|| config.paths.rules.clone());
    let rules = load_rules_from(&rules_dir, config)
        .map_err(|p| anyhow::anyhow!("invalid routing rules:\n{p}"))?;
    let cases_dir = cases_dir.unwrap_or_else(|| rules_dir.join("tests"));
    let ctx = CaseContext::from_config(Arc::new(config.clone()));
    let results = run_cases(&rules, &cases_dir, &ctx);
    let mut out = std::io::stdout().lock();
    if let Some(want) = explain {
        return explain_cases(&mut out, &results, &want);
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        writeln!(out, "{r}")?;
    }
    writeln!(
        out,
        "rules test: {} passed, {failed} failed",
        results.len() - failed
    )?;
    if results.is_empty() {
        writeln!(out, "no test cases found in {}", cases_dir.display())?;
        return Ok(ExitCode::from(1));
    }
    let fields = accuracy(&results);
    writeln!(out, "accuracy per field (cases that give it):")?;
    for f in &fields {
        writeln!(
            out,
            "  {:<13} {:>5.1} %  ({}/{})",
            f.key,
            f.percent(),
            f.right,
            f.total
        )?;
    }
    write_kind_confusion(&mut out, &results)?;
    let ok = match min_accuracy {
        None => failed == 0,
        Some(min) => {
            let low: Vec<&FieldAccuracy> = fields.iter().filter(|f| f.percent() < min).collect();
            for f in &low {
                writeln!(
                    out,
                    "{}: accuracy {:.1} % is below {min} %",
                    f.key,
                    f.percent()
                )?;
            }
            low.is_empty() && results.iter().all(|r| r.error.is_none())
        }
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The keys a case may compare, in the order they are reported.
const KEYS: &[&str] = &[
    "queue",
    "kind",
    "urgency",
    "impact",
    "priority",
    "recipients",
    "tags",
    "suppress_ack",
    "alert_key",
    "recovery",
    "matched",
];

/// How many of the cases that give a key got it right.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldAccuracy {
    pub key: &'static str,
    pub right: usize,
    pub total: usize,
}

impl FieldAccuracy {
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            100.0 * self.right as f64 / self.total as f64
        }
    }
}

/// Accuracy per key, over the cases that compare it (keys no case gives are
/// left out).
pub fn accuracy(results: &[crate::classify::cases::CaseResult]) -> Vec<FieldAccuracy> {
    KEYS.iter()
        .filter_map(|&key| {
            let (mut right, mut total) = (0, 0);
            for d in results.iter().flat_map(|r| &r.compared) {
                if d.key == key {
                    total += 1;
                    if d.expected == d.actual {
                        right += 1;
                    }
                }
            }
            (total > 0).then_some(FieldAccuracy { key, right, total })
        })
        .collect()
}

/// Expected kind (rows) against the kind the rules gave (columns), over the
/// cases that give a kind.
fn write_kind_confusion(
    out: &mut impl Write,
    results: &[crate::classify::cases::CaseResult],
) -> std::io::Result<()> {
    let unquote = |s: &str| s.trim_matches('"').to_string();
    let pairs: Vec<(String, String)> = results
        .iter()
        .flat_map(|r| &r.compared)
        .filter(|d| d.key == "kind")
        .map(|d| (unquote(&d.expected), unquote(&d.actual)))
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    let mut kinds: Vec<String> = ["incident", "alert", "bug", "deploy", "service"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    for (a, b) in &pairs {
        for k in [a, b] {
            if !kinds.contains(k) {
                kinds.push(k.clone());
            }
        }
    }
    writeln!(out, "kinds (rows expected, columns given by the rules):")?;
    write!(out, "  {:<10}", "")?;
    for k in &kinds {
        write!(out, " {k:>9}")?;
    }
    writeln!(out)?;
    for a in &kinds {
        write!(out, "  {a:<10}")?;
        for b in &kinds {
            let n = pairs.iter().filter(|(x, y)| x == a && y == b).count();
            write!(out, " {n:>9}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// `rules test --explain CASE`: every compared key and the whole explanation
/// of the matching cases, passed or not.
fn explain_cases(
    out: &mut impl Write,
    results: &[crate::classify::cases::CaseResult],
    want: &str,
) -> anyhow::Result<ExitCode> {
    let needle = want.to_lowercase();
    let chosen: Vec<&crate::classify::cases::CaseResult> = results
        .iter()
        .filter(|r| {
            r.name.to_lowercase().contains(&needle)
                || format!("{}:{}", r.file, r.line).ends_with(want)
        })
        .collect();
    if chosen.is_empty() {
        writeln!(out, "no test case matches {want:?}")?;
        return Ok(ExitCode::from(2));
    }
    for r in &chosen {
        let verdict = if r.passed { "ok  " } else { "FAIL" };
        writeln!(out, "{verdict} {}:{}: {}", r.file, r.line, r.name)?;
        if let Some(e) = &r.error {
            writeln!(out, "     {e}")?;
        }
        for d in &r.compared {
            let mark = if d.expected == d.actual { "  " } else { "!=" };
            writeln!(
                out,
                "  {mark} {}: expected {}, got {}",
                d.key, d.expected, d.actual
            )?;
        }
        writeln!(out, "  because:")?;
        for line in &r.explanation {
            writeln!(out, "    - {line}")?;
        }
    }
    Ok(if chosen.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The parts of a decision a rule change can alter (not the explanation).
fn comparable(d: &Decision) -> Vec<(&'static str, String)> {
    vec![
        ("desk", d.desk.clone()),
        ("queue", d.queue.clone()),
        ("kind", d.kind.to_string()),
        ("urgency", d.urgency.to_string()),
        ("impact", d.impact.to_string()),
        ("priority", d.priority.to_string()),
        ("due", d.due_ms.map(|m| m.to_string()).unwrap_or_default()),
        ("recipients", d.recipients.join(", ")),
        ("tags", d.tags.join(", ")),
        ("suppress_ack", d.suppress_ack.to_string()),
        ("alert_key", d.alert_key.clone().unwrap_or_default()),
        ("recovery", d.recovery.to_string()),
    ]
}

/// `triaged rules diff OLD NEW --corpus PATH`: every message whose decision
/// would change, and how. `corpus` of `None` means the messages already stored.
pub async fn diff(
    config: Arc<Config>,
    old: &Path,
    new: &Path,
    corpus: Option<Vec<PathBuf>>,
    mailbox: Option<String>,
) -> anyhow::Result<ExitCode> {
    let old_rules = Classifier::new(
        load_rules_from(old, &config)
            .map_err(|p| anyhow::anyhow!("{}: invalid rules:\n{p}", old.display()))?,
    );
    let new_rules = Classifier::new(
        load_rules_from(new, &config)
            .map_err(|p| anyhow::anyhow!("{}: invalid rules:\n{p}", new.display()))?,
    );
    let default_mailbox = mailbox_name(&config, mailbox)?;
    let mut out = std::io::stdout().lock();
    let (mut changed, mut total) = (0usize, 0usize);
    // One arrival time for both sides and every message, so only the rules can
    // make a difference.
    let now = now_ms();
    let mut check = |label: &str, mailbox: &str, raw: &[u8]| -> std::io::Result<()> {
        let Some(mb) = config
            .mailbox(mailbox)
            .or_else(|| config.mailbox(&default_mailbox))
        else {
            return Ok(());
        };
        total += 1;
        let msg = parse(raw);
        let a = old_rules.classify(&msg, mb, now, &config);
        let b = new_rules.classify(&msg, mb, now, &config);
        let diffs: Vec<String> = comparable(&a)
            .into_iter()
            .zip(comparable(&b))
            .filter(|((_, x), (_, y))| x != y)
            .map(|((k, x), (_, y))| {
                let show = |v: &str| {
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        v.to_string()
                    }
                };
                format!("    {k}: {} -> {}", show(&x), show(&y))
            })
            .collect();
        if !diffs.is_empty() {
            changed += 1;
            writeln!(
                out,
                "{label}: {}",
                msg.subject.as_deref().unwrap_or("(no subject)")
            )?;
            for d in diffs {
                writeln!(out, "{d}")?;
            }
        }
        Ok(())
    };
    match corpus {
        Some(paths) => {
            for item in Walker::new(&paths, config.ingest.max_message_bytes) {
                if let Item::Message { origin, raw } = item {
                    check(&origin.to_string(), &default_mailbox, &raw)?;
                }
            }
        }
        None => {
            let store =
                crate::store::Store::open(&config.store.database_url, config.tickets.first_number)
                    .await?
                    .with_message_limit(config.ingest.max_message_bytes);
            let mut after = 0;
            loop {
                let page = store.raw_messages_after(after, 500).await?;
                let Some(last) = page.last() else { break };
                after = last.0;
                for (id, mailbox, raw) in &page {
                    check(&format!("stored message {id}"), mailbox, raw)?;
                }
            }
            store.close().await;
        }
    }
    writeln!(
        std::io::stdout(),
        "rules diff: {changed} of {total} messages would be routed differently"
    )?;
    Ok(ExitCode::SUCCESS)
}
