//! The command line: flags in, one command run, an exit code out.
//!
//! Exit codes: 0 success; 1 the command ran but something failed (a message that
//! could not be ingested, a problem found by `check`, a ticket not found);
//! 2 the command could not start (bad config, database unreachable).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ingest::ingest_paths;
use crate::pipeline::Pipeline;
use crate::store::{Outcome, Store, TicketFilter};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "triaged",
    version,
    about = "Email-driven ticket triage: watches support mailboxes and turns every message into a ticket or a reply",
    long_about = "triaged watches support mailboxes over IMAP and turns every message into a ticket, \
or a reply on an existing one, in an embedded SQLite database (default) or PostgreSQL.\n\n\
Configuration: --config FILE, else $TRIAGED_CONFIG, else ./triaged.toml, else the built-in \
example deployment (deploy/triaged.example.toml). $TRIAGED_DATABASE_URL overrides the database."
)]
pub struct Cli {
    /// Configuration file (default: $TRIAGED_CONFIG, else ./triaged.toml, else built-in defaults).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch every mailbox that has IMAP settings, until SIGTERM or SIGINT.
    Run,
    /// Validate the configuration (and passwords' sources); print `file:line: reason` per problem.
    Check,
    /// Feed .eml files, Maildir folders, mbox files, folders of messages, or - (stdin)
    /// through the same pipeline as the daemon, and print a summary.
    Ingest {
        /// The mailbox the messages count as arriving in (default: the first configured).
        #[arg(long)]
        mailbox: Option<String>,
        /// Print one line per message.
        #[arg(long, short)]
        verbose: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Queue no mail (acknowledgements, notifications) for these messages.
        #[arg(long)]
        no_notify: bool,
        /// Inputs; `-` reads stdin (one message, or an mbox if it starts with `From `).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List and show tickets.
    Tickets {
        #[command(subcommand)]
        command: TicketsCommand,
    },
    /// Totals: tickets, messages, duplicates recognised, quarantined.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Dry run: how one message would be routed (queue, kind, urgency, impact,
    /// priority, due time, recipients, tags) and why. Stores nothing.
    Classify {
        /// The message (.eml), or - for stdin.
        file: PathBuf,
        /// The mailbox it counts as arriving in (default: the first configured).
        #[arg(long)]
        mailbox: Option<String>,
        /// Arrival time for the due-time computation (RFC 3339; default: now).
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Test and compare routing rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Outgoing mail: pending, sent, failed.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Messages set aside instead of ticketed, with the reason.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Measure throughput and memory (see benches/README.md).
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
    /// Start a private Dovecot on loopback, mail it a few messages, run the daemon
    /// against it and show the tickets it made. Needs dovecot-imapd installed.
    Demo {
        /// Keep watching after the demo messages (Ctrl-C to stop).
        #[arg(long)]
        keep_running: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// List tickets, newest first.
    List {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Show one ticket: every field, its messages and its history.
    Show {
        /// Ticket number (`1042`, `#1042` or `[ISDA #1042]`).
        number: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Run the test cases kept beside the rules (default `routing-rules/tests/`);
    /// pass/fail per case with a diff, non-zero exit on any failure.
    Test {
        /// Rules folder (default: paths.rules).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Test-case folder (default: RULES/tests).
        #[arg(long)]
        cases: Option<PathBuf>,
        /// Show every compared key and the full explanation of the cases
        /// whose name contains this text (or that sit at FILE:LINE).
        #[arg(long, value_name = "CASE")]
        explain: Option<String>,
        /// Pass when every field's accuracy is at least this percentage,
        /// even if some cases fail (default: every case must pass).
        #[arg(long, value_name = "PCT")]
        min_accuracy: Option<f64>,
    },
    /// Run messages through two rule sets and list every message whose decision
    /// would change, and how.
    Diff {
        /// The rules in force (a folder).
        old: PathBuf,
        /// The proposed rules (a folder).
        new: PathBuf,
        /// Messages: Maildir, mbox, .eml files or folders; without it, every
        /// message already stored.
        #[arg(long, num_args = 1..)]
        corpus: Option<Vec<PathBuf>>,
        /// The mailbox the files count as arriving in (default: the first configured).
        #[arg(long)]
        mailbox: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List outgoing mail, newest first.
    List {
        /// pending, sent or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Put a failed (or waiting) mail back in line for an attempt now.
    Retry { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined messages with their reasons.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one quarantined message: reason and the headers kept.
    Show { id: i64 },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    telemetry::init(cli.log_format);
    telemetry::install_panic_hook();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("triaged: {}", chain_text(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each cause once: drivers often repeat
/// their cause in their own words, and `{:#}` would print it again.
fn chain_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let words = cause.to_string();
        if out.contains(&words) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&words);
    }
    out
}

/// `triaged tickets list | head` closes our stdout early: not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Arc<Config>> {
    Config::load(path)
        .map(Arc::new)
        .map_err(|p| anyhow::anyhow!("invalid configuration:\n{p}"))
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.store.database_url, config.tickets.first_number)
        .await
        .with_context(|| {
            format!(
                "opening database {}",
                crate::config::redact_url(&config.store.database_url)
            )
        })
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = cli.config.as_deref();
    match cli.command {
        Command::Check => {
            let path = path.map(std::path::Path::to_path_buf);
            crate::daemon::off_runtime(move || check(path.as_deref())).await
        }
        Command::Run => {
            let config = load_config(path)?;
            let store = open_store(&config).await?;
            let shutdown = CancellationToken::new();
            spawn_signal_handler(shutdown.clone());
            crate::daemon::run(config, store, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            mailbox,
            verbose,
            json,
            no_notify,
            paths,
        } => {
            let config = load_config(path)?;
            let mailbox = match mailbox {
                Some(m) => {
                    if config.mailbox(&m).is_none() {
                        anyhow::bail!(
                            "unknown mailbox {m:?} (configured: {})",
                            mailbox_names(&config)
                        );
                    }
                    m
                }
                None => config
                    .mailboxes
                    .first()
                    .map(|m| m.name.get_ref().clone())
                    .context("no mailbox configured")?,
            };
            let store = open_store(&config).await?;
            let store = if no_notify {
                store
            } else {
                // Mail is queued here and sent by `triaged run`.
                crate::notify::attach(&config, store, Arc::new(tokio::sync::Notify::new()))
                    .map_err(|p| anyhow::anyhow!("templates:\n{p}"))?
            };
            let pipeline = {
                let store = store.clone();
                crate::daemon::off_runtime(move || Pipeline::new(config, store))
                    .await?
                    .map_err(|p| anyhow::anyhow!("invalid routing rules:\n{p}"))?
            };
            let summary = ingest_paths(&pipeline, &mailbox, paths, |r| {
                if verbose || r.result.is_err() {
                    match &r.result {
                        Ok(o) => println!("{}: {}", vis(&r.origin.to_string()), describe(o)),
                        Err(e) => println!(
                            "{}: error: {}",
                            vis(&r.origin.to_string()),
                            vis(&e.to_string())
                        ),
                    }
                }
            })
            .await;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("{summary}");
            }
            Ok(if summary.errors > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Tickets { command } => {
            let config = load_config(path)?;
            let store = open_store(&config).await?;
            let code = tickets(&store, command).await;
            store.close().await;
            code
        }
        Command::Stats { json } => {
            let config = load_config(path)?;
            let store = open_store(&config).await?;
            let counts = store.counts().await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string(&counts)?);
            } else {
                println!(
                    "{} tickets, {} messages, {} duplicates recognised, {} quarantined",
                    counts.tickets, counts.messages, counts.duplicates, counts.quarantined
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Classify {
            file,
            mailbox,
            at,
            json,
        } => {
            let config = load_config(path)?;
            crate::rules_cmd::classify(&config, &file, mailbox, at, json)
        }
        Command::Rules { command } => {
            let config = load_config(path)?;
            match command {
                RulesCommand::Test {
                    rules,
                    cases,
                    explain,
                    min_accuracy,
                } => crate::rules_cmd::test(&config, rules, cases, explain, min_accuracy),
                RulesCommand::Diff {
                    old,
                    new,
                    corpus,
                    mailbox,
                } => crate::rules_cmd::diff(config, &old, &new, corpus, mailbox).await,
            }
        }
        Command::Outbox { command } => {
            let config = load_config(path)?;
            let store = open_store(&config).await?;
            let code = outbox(&store, command).await;
            store.close().await;
            code
        }
        Command::Quarantine { command } => {
            let config = load_config(path)?;
            let store = open_store(&config).await?;
            let code = quarantine(&store, command).await;
            store.close().await;
            code
        }
        Command::Bench { command } => crate::bench::run(command).await,
        Command::Demo { keep_running } => crate::demo::run(keep_running).await,
    }
}

fn mailbox_names(config: &Config) -> String {
    config
        .mailboxes
        .iter()
        .map(|m| m.name.get_ref().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Created(n) => format!("new ticket #{n}"),
        Outcome::Reply(n) => format!("reply on ticket #{n}"),
        Outcome::Duplicate(n) => format!("duplicate (already on ticket #{n})"),
        Outcome::DuplicateQuarantined(q) => format!("duplicate (already quarantined as {q})"),
        Outcome::Quarantined(q) => format!("quarantined as {q}"),
    }
}

fn check(path: Option<&std::path::Path>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            return ExitCode::from(1);
        }
    };
    let mut problems = config.check_secrets();
    problems.extend(config.check_database_url());
    if let Err(p) = crate::classify::load_rules(&config) {
        problems.extend(p.0);
    }
    match crate::notify::templates::Templates::load_or_builtin(&config.paths.templates) {
        Ok(t) => problems.extend(t.check()),
        Err(p) => problems.extend(p),
    }
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        println!("{}: ok", config.source);
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
}

/// `1042`, `#1042`, `[ISDA #1042]` -> 1042.
fn parse_number(s: &str) -> Option<i64> {
    let digits: String = s
        .trim()
        .trim_end_matches(']')
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

pub fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Text from mail as it may reach a terminal: every control character (C0,
/// DEL, C1 such as the one-byte CSI U+009B) and every bidi control shows as a
/// visible escape (`\x1b`, `\u{9b}`, `\u{202e}`), so mail cannot move the
/// cursor, retitle the window, ring the bell or reorder what is shown.
/// `multiline` keeps line breaks (LF, CR LF) and tabs (a body); elsewhere
/// they show as `\n` and `\t`. Any other CR shows as `\r`.
pub fn visible(s: &str, multiline: bool) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    let escape = |c: char| match c {
        '\n' | '\t' => !multiline,
        c => needs_escape(c),
    };
    if !s.chars().any(escape) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if !escape(c) {
            out.push(c);
            continue;
        }
        if multiline && c == '\r' && chars.peek() == Some(&'\n') {
            // A CR LF line break is a line break.
            continue;
        }
        let _ = match c {
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            '\t' => out.write_str("\\t"),
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
    std::borrow::Cow::Owned(out)
}

/// Characters never printed raw: controls, bidi controls, line and
/// paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// One line of stored text for the terminal.
fn vis(s: &str) -> std::borrow::Cow<'_, str> {
    visible(s, false)
}

/// JSON for the terminal: valid JSON with the same values, in which the
/// characters serde_json leaves raw (DEL, C1, bidi controls) are written as
/// `\uXXXX` escapes. They only occur inside strings, where that is the same value.
pub fn json_visible<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let text = serde_json::to_string_pretty(value)?;
    if !text.chars().any(needs_escape) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) {
            // Outside strings serde_json writes only ASCII structure and
            // whitespace (\n, space), which are not escaped here.
            if c == '\n' || c == '\t' || c == '\r' {
                out.push(c);
            } else {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

async fn tickets(store: &Store, command: TicketsCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        TicketsCommand::List {
            queue,
            status,
            limit,
            json,
        } => {
            let list = store
                .list_tickets(&TicketFilter {
                    queue,
                    status,
                    limit,
                })
                .await?;
            if json {
                writeln!(out, "{}", json_visible(&list)?)?;
            } else {
                for t in &list {
                    writeln!(
                        out,
                        "{:<16} {:<9} {:<18} {:<9} {:<32} {}",
                        vis(&t.tag),
                        vis(&t.status),
                        vis(&t.queue),
                        vis(&t.kind),
                        vis(&truncate(&t.requester, 32)),
                        vis(&truncate(&t.subject, 60))
                    )?;
                }
                writeln!(out, "{} tickets", list.len())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        TicketsCommand::Show { number, json } => {
            let Some(n) = parse_number(&number) else {
                anyhow::bail!("not a ticket number: {number:?}");
            };
            let Some(t) = store.ticket(n).await? else {
                eprintln!("triaged: no ticket #{n}");
                return Ok(ExitCode::from(1));
            };
            if json {
                writeln!(out, "{}", json_visible(&t)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            let k = &t.ticket;
            writeln!(out, "{} {}", vis(&k.tag), vis(&k.subject))?;
            writeln!(out, "  status:    {}", vis(&k.status))?;
            writeln!(out, "  desk:      {}", vis(&k.desk))?;
            writeln!(out, "  queue:     {}", vis(&k.queue))?;
            writeln!(out, "  kind:      {}", vis(&k.kind))?;
            writeln!(
                out,
                "  priority:  {} (urgency {}, impact {})",
                vis(k.priority.as_deref().unwrap_or("-")),
                vis(k.urgency.as_deref().unwrap_or("-")),
                vis(k.impact.as_deref().unwrap_or("-"))
            )?;
            if let Some(due) = k.due_at {
                writeln!(out, "  due:       {}", format_ms(due))?;
            }
            if !k.tags.is_empty() {
                writeln!(out, "  tags:      {}", vis(&k.tags.join(", ")))?;
            }
            if let Some(key) = &k.alert_key {
                writeln!(out, "  alert key: {}", vis(key))?;
            }
            match &k.requester_name {
                Some(n) => writeln!(out, "  requester: {} <{}>", vis(n), vis(&k.requester))?,
                None => writeln!(out, "  requester: {}", vis(&k.requester))?,
            }
            writeln!(out, "  mailbox:   {}", vis(&k.mailbox))?;
            if !t.recipients.is_empty() {
                writeln!(out, "  recipients: {}", vis(&t.recipients.join(", ")))?;
            }
            writeln!(out, "  created:   {}", format_ms(k.created_at))?;
            writeln!(out, "  updated:   {}", format_ms(k.updated_at))?;
            for (i, m) in t.messages.iter().enumerate() {
                writeln!(
                    out,
                    "\n--- message {} of {} (id {}) ---",
                    i + 1,
                    t.messages.len(),
                    m.id
                )?;
                writeln!(
                    out,
                    "From:       {}",
                    vis(m.from.as_deref().unwrap_or("(none)"))
                )?;
                let list = |v: &[crate::parse::MailAddr]| {
                    v.iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if !m.to.is_empty() {
                    writeln!(out, "To:         {}", vis(&list(&m.to)))?;
                }
                if !m.cc.is_empty() {
                    writeln!(out, "Cc:         {}", vis(&list(&m.cc)))?;
                }
                writeln!(
                    out,
                    "Subject:    {}",
                    vis(m.subject.as_deref().unwrap_or("(none)"))
                )?;
                writeln!(
                    out,
                    "Message-ID: {}",
                    vis(m.message_id.as_deref().unwrap_or("(none)"))
                )?;
                if let Some(d) = m.date {
                    writeln!(out, "Date:       {}", format_ms(d * 1000))?;
                }
                writeln!(
                    out,
                    "Received:   {} via {} ({})",
                    format_ms(m.received_at),
                    vis(&m.mailbox),
                    vis(&m.origin)
                )?;
                for a in &m.attachments {
                    writeln!(
                        out,
                        "Attachment: {} ({}, {} bytes)",
                        vis(a.name.as_deref().unwrap_or("(unnamed)")),
                        vis(&a.content_type),
                        a.size
                    )?;
                }
                for p in &m.problems {
                    writeln!(out, "Problem:    {}", vis(&p.to_string()))?;
                }
                writeln!(out, "\n{}", visible(&m.body, true))?;
            }
            if !t.mail.is_empty() {
                writeln!(out, "\n--- mail ---")?;
                for m in &t.mail {
                    writeln!(
                        out,
                        "{}  {:<7} {:<20} to {}  {}{}",
                        format_ms(m.created_at),
                        vis(&m.status),
                        vis(&m.kind),
                        vis(&m.rcpt.join(", ")),
                        vis(&m.subject),
                        m.last_error
                            .as_deref()
                            .map(|e| format!("  ({})", vis(e)))
                            .unwrap_or_default()
                    )?;
                }
            }
            writeln!(out, "\n--- history ---")?;
            for e in &t.events {
                writeln!(
                    out,
                    "{}  {:<10} {}  {}",
                    format_ms(e.at),
                    vis(&e.kind),
                    vis(&e.actor),
                    vis(&e.detail.to_string())
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn outbox(store: &Store, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        OutboxCommand::List {
            status,
            limit,
            json,
        } => {
            let list = store.list_outbox(status.as_deref(), limit).await?;
            if json {
                writeln!(out, "{}", json_visible(&list)?)?;
            } else {
                for m in &list {
                    let when = m
                        .sent_at
                        .map(format_ms)
                        .unwrap_or_else(|| format!("next {}", format_ms(m.next_attempt_at)));
                    writeln!(
                        out,
                        "{:>6} {:<8} {:<20} #{:<6} {:<30} {}  {}",
                        m.id,
                        vis(&m.status),
                        vis(&m.kind),
                        m.ticket_number.map(|n| n.to_string()).unwrap_or_default(),
                        vis(&truncate(&m.rcpt.join(","), 30)),
                        when,
                        vis(m.last_error.as_deref().unwrap_or(""))
                    )?;
                }
                writeln!(out, "{} mails", list.len())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Retry { id } => {
            if store.outbox_requeue(id).await? {
                writeln!(out, "mail {id} queued for an attempt now")?;
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("triaged: no unsent mail {id}");
                Ok(ExitCode::from(1))
            }
        }
    }
}

async fn quarantine(store: &Store, command: QuarantineCommand) -> anyhow::Result<ExitCode> {
    let list = store.list_quarantine().await?;
    let mut out = std::io::stdout().lock();
    match command {
        QuarantineCommand::List { json } => {
            if json {
                writeln!(out, "{}", json_visible(&list)?)?;
            } else {
                for q in &list {
                    writeln!(
                        out,
                        "{:>5}  {}  {:<14} {}  {}",
                        q.id,
                        format_ms(q.created_at),
                        vis(&q.mailbox),
                        vis(&truncate(
                            q.subject.as_deref().unwrap_or("(no subject)"),
                            40
                        )),
                        vis(&q.reason)
                    )?;
                }
                writeln!(out, "{} quarantined", list.len())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show { id } => {
            let Some(q) = list.iter().find(|q| q.id == id) else {
                eprintln!("triaged: no quarantine entry {id}");
                return Ok(ExitCode::from(1));
            };
            writeln!(out, "id:         {}", q.id)?;
            writeln!(out, "mailbox:    {}", vis(&q.mailbox))?;
            writeln!(out, "origin:     {}", vis(&q.origin))?;
            writeln!(out, "reason:     {}", vis(&q.reason))?;
            writeln!(out, "size:       {} bytes", q.size)?;
            writeln!(
                out,
                "from:       {}",
                vis(q.from.as_deref().unwrap_or("(none)"))
            )?;
            writeln!(
                out,
                "subject:    {}",
                vis(q.subject.as_deref().unwrap_or("(none)"))
            )?;
            writeln!(
                out,
                "message-id: {}",
                vis(q.message_id.as_deref().unwrap_or("(none)"))
            )?;
            writeln!(out, "created:    {}\n", format_ms(q.created_at))?;
            writeln!(
                out,
                "{}",
                visible(&String::from_utf8_lossy(&q.headers), true)
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_number_forms() {
        assert_eq!(parse_number("1042"), Some(1042));
        assert_eq!(parse_number("#1042"), Some(1042));
        assert_eq!(parse_number("[ISDA #1042]"), Some(1042));
        assert_eq!(parse_number("abc"), None);
    }

    #[test]
    fn terminal_escapes_are_shown_not_sent() {
        let hostile = "a\x1b]0;owned\x07b\u{9b}31mc\x08\rd\u{202e}e\u{2066}f\x7f\u{85}g\u{200f}";
        assert_eq!(
            visible(hostile, false),
            "a\\x1b]0;owned\\x07b\\u{9b}31mc\\x08\\rd\\u{202e}e\\u{2066}f\\x7f\\u{85}g\\u{200f}"
        );
        assert_eq!(visible("one\ntwo\tthree", false), "one\\ntwo\\tthree");
        // A body keeps its lines; a CR that is not part of CR LF is shown.
        assert_eq!(
            visible("one\r\ntwo\n\tthree\rfour\x1b[2J", true),
            "one\ntwo\n\tthree\\rfour\\x1b[2J"
        );
        // Ordinary text, accents and other scripts pass untouched.
        assert!(matches!(
            visible("Grüße, 東京 – ok", false),
            std::borrow::Cow::Borrowed(_)
        ));
        for c in (0u32..0x20).chain(0x7f..0xa0) {
            let ch = char::from_u32(c).expect("char");
            assert!(!visible(&ch.to_string(), false).contains(ch), "{c:#x}");
        }
    }

    #[test]
    fn json_stays_valid_and_equal_without_raw_controls() {
        let value = serde_json::json!({
            "subject": "x\u{1b}[31m\u{9b}2J\u{202e}\u{7f}\u{2028}y",
            "body": "line\r\nline\u{7}",
        });
        let text = json_visible(&value).expect("json");
        assert!(
            !text.chars().any(|c| needs_escape(c) && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("\\u009b") && text.contains("\\u202e"),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, value);
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn error_chain_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("error returned from database: {0}")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("role \"nobody\" does not exist")]
        struct Inner;
        let e = anyhow::Error::new(Outer(Inner)).context("opening database postgres://x");
        assert_eq!(
            chain_text(&e),
            "opening database postgres://x: error returned from database: role \"nobody\" does not exist"
        );
    }
}
