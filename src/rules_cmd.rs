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
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or(path);
        if !Path::new(path).exists() {
            view.note = Some("no store yet: thread keys only".to_string());
            return view;
        }
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
    let store = Store::open(&config.store.database_url, config.tickets.first_number).await?;
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
        let team = |desk: &str| config.desk_team(desk).to_vec();
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

/// `triaged rules test`: every case beside the rules; non-zero on any failure.
pub fn test(
    config: &Config,
    rules_dir: Option<PathBuf>,
    cases_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let rules_dir = rules_dir.unwrap_or_else(|| config.paths.rules.clone());
    let rules = load_rules_from(&rules_dir, config)
        .map_err(|p| anyhow::anyhow!("invalid routing rules:\n{p}"))?;
    let cases_dir = cases_dir.unwrap_or_else(|| rules_dir.join("tests"));
    let ctx = CaseContext::from_config(Arc::new(config.clone()));
    let results = run_cases(&rules, &cases_dir, &ctx);
    let mut out = std::io::stdout().lock();
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
    Ok(if failed == 0 {
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
                    .await?;
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
