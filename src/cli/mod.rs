//! The command line: flags in, one command run, an exit code out.
//!
//! Exit codes: 0 success; 1 the command ran but something failed (a message that
//! could not be ingested, a problem found by `check`, a ticket not found);
//! 2 the command could not start (bad config, database unreachable).

//!
//! `mod.rs` holds the clap definitions and dispatch; each larger command has a
//! file (`ingest`, `tickets`, `outbox`, `quarantine`, `report`), and `text` shows mail
//! safely on a terminal.

mod backup;
mod check;
mod deliver;
mod ingest;
mod outbox;
mod quarantine;
mod report;
mod steer;
mod text;
mod tickets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::Store;
use crate::telemetry::{self, LogFormat};

pub use text::{format_ms, json_visible, visible};

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
    /// Run the daemon: watch every mailbox that has IMAP settings and ingest
    /// every mailbox's spool, until SIGTERM or SIGINT.
    Run,
    /// Validate the configuration, passwords' sources, routing rules and
    /// templates; print `file:line: reason` per problem.
    Check {
        /// Also log in to every mailbox (IMAP) and the SMTP server and report
        /// each: ok, or the server's words. No mail is read, changed or sent.
        #[arg(long)]
        connect: bool,
        /// Print the report as JSON (see docs/json.md).
        #[arg(long)]
        json: bool,
    },
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
    /// Read one message from stdin and write it durably into the mailbox's
    /// spool, which the daemon ingests; for an MTA's pipe alias. Exit 0 once
    /// durable, 75 to have the MTA retry, 65 for an empty or oversized message.
    Deliver {
        /// The mailbox (default: the first configured); it needs `spool = "..."`.
        #[arg(long)]
        mailbox: Option<String>,
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
    /// The service report card: per queue and priority, the tickets opened
    /// in the period and what became of them (initial responses within
    /// target, median and 90th percentile response time in business hours,
    /// escalations, open, resolved); per day, messages received per mailbox
    /// and tickets opened per queue.
    Report {
        /// First day (YYYY-MM-DD, in the desk's time zone; default: six
        /// days before --to).
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: Option<String>,
        /// Last day, included (default: today, or six days after --from).
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: Option<String>,
        /// Only this desk (default: every desk; days are then UTC days).
        #[arg(long)]
        desk: Option<String>,
        /// RFC 4180 CSV for a spreadsheet: one table, its `table` column
        /// naming the part of the card (queues, messages_per_day,
        /// tickets_per_day).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// The card as JSON, for machines (response times in minutes).
        #[arg(long)]
        json: bool,
        /// Queue the card as mail to the managers of each desk (or of
        /// --desk): one card per desk in its own time zone, as text with
        /// the CSV attached; the daemon's sender delivers it.
        #[arg(long, conflicts_with_all = ["csv", "json"])]
        mail: bool,
    },
    /// Messages set aside instead of ticketed, with the reason.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Copy the database while the daemon runs (SQLite, with VACUUM INTO); refuses
    /// an existing file. For PostgreSQL it says to use pg_dump (deploy/scaling.md).
    Backup {
        /// The new file.
        path: PathBuf,
    },
    /// Measure throughput and memory (see benches/README.md).
    #[cfg(feature = "dev")]
    Bench {
        #[command(subcommand)]
        command: crate::dev::bench::BenchCommand,
    },
    /// Start a private Dovecot on loopback, mail it a few messages, run the daemon
    /// against it and show the tickets it made. Needs dovecot-imapd installed.
    #[cfg(feature = "dev")]
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
    /// Reply on a ticket as someone (a team member's reply is correspondence:
    /// relayed to the customer from the desk, and may start with command
    /// lines such as /take), exactly as if they had replied by mail.
    Reply {
        number: String,
        /// Who writes: `Name <address>` or an address.
        #[arg(long)]
        from: String,
        /// The text (default: stdin).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Add an internal note: recorded, and mailed to the team only.
    Comment {
        number: String,
        /// Who writes it (default: your login name).
        #[arg(long, alias = "from")]
        by: Option<String>,
        /// The text (default: stdin).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Change a ticket as the mail commands do (/queue, /owner, ...): the
    /// same events, the same transfer notice and queue notification.
    Set {
        number: String,
        /// Transfer to this queue (its desk's queues only).
        #[arg(long)]
        queue: Option<String>,
        /// The tech lead: a member of the desk's team.
        #[arg(long)]
        owner: Option<String>,
        /// open, stalled or resolved.
        #[arg(long)]
        status: Option<String>,
        /// critical, high, medium or low.
        #[arg(long)]
        urgency: Option<String>,
        /// extensive, significant, moderate or minor.
        #[arg(long)]
        impact: Option<String>,
        /// incident, bug, deploy, service, alert, ...
        #[arg(long)]
        kind: Option<String>,
        /// Who makes the change, for the history (default: your login name).
        #[arg(long)]
        by: Option<String>,
    },
    /// Add to or remove from a ticket's recipient list.
    Recipients {
        number: String,
        #[command(subcommand)]
        change: RecipientsChange,
        /// Who makes the change, for the history (default: your login name).
        #[arg(long, global = true)]
        by: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecipientsChange {
    /// Add these addresses.
    Add {
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Remove these addresses.
    Remove {
        #[arg(required = true)]
        addresses: Vec<String>,
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

/// Runs a command that needs no async runtime (`deliver`); `None` for any
/// other (run it with [`run`]).
pub fn run_without_runtime(cli: &Cli) -> Option<ExitCode> {
    match &cli.command {
        Command::Deliver { mailbox } => {
            telemetry::init(cli.log_format);
            telemetry::install_panic_hook();
            Some(deliver::deliver(cli.config.as_deref(), mailbox.as_deref()))
        }
        _ => None,
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    telemetry::init(cli.log_format);
    telemetry::install_panic_hook();
    // Commands that compile the rules keep their regex checks between runs
    // (`rules::check_cache`); `deliver` compiles none.
    if !matches!(cli.command, Command::Deliver { .. })
        && let Some(dir) = crate::rules::check_cache::default_dir()
    {
        crate::rules::check_cache::enable(&dir);
    }
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
        .map(|s| s.with_message_limit(config.ingest.max_message_bytes))
        .with_context(|| {
            format!(
                "opening database {}",
                crate::config::redact_url(&config.store.database_url)
            )
        })
}

/// Runs one command. The commands that read the store open it, run, and close it.
async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = cli.config.as_deref();
    match cli.command {
        Command::Check { connect, json } => check::check(path, connect, json).await,
        Command::Run => run_daemon(path).await,
        Command::Deliver { mailbox } => Ok(deliver::deliver(path, mailbox.as_deref())),
        Command::Ingest {
            mailbox,
            verbose,
            json,
            no_notify,
            paths,
        } => {
            let args = ingest::IngestArgs {
                mailbox,
                verbose,
                json,
                no_notify,
                paths,
            };
            ingest::ingest(path, args).await
        }
        Command::Tickets {
            command: TicketsCommand::Reply { number, from, file },
        } => steer::reply(path, &number, &from, file).await,
        Command::Tickets {
            command: TicketsCommand::Comment { number, by, file },
        } => steer::comment(path, &number, by, file).await,
        Command::Tickets {
            command:
                TicketsCommand::Set {
                    number,
                    queue,
                    owner,
                    status,
                    urgency,
                    impact,
                    kind,
                    by,
                },
        } => {
            let args = steer::SetArgs {
                queue,
                owner,
                urgency,
                impact,
                kind,
                status,
            };
            steer::set(path, &number, args, by).await
        }
        Command::Tickets {
            command: TicketsCommand::Recipients { number, change, by },
        } => {
            let (add, addresses) = match change {
                RecipientsChange::Add { addresses } => (true, addresses),
                RecipientsChange::Remove { addresses } => (false, addresses),
            };
            steer::recipients(path, &number, add, &addresses, by).await
        }
        Command::Tickets { command } => {
            let config = load_config(path)?;
            let store = open_store(&config).await?;
            let code = tickets::tickets(&store, &config, command).await;
            store.close().await;
            code
        }
        Command::Stats { json } => stats(path, json).await,
        Command::Classify {
            file,
            mailbox,
            at,
            json,
        } => {
            let config = load_config(path)?;
            crate::rules_cmd::classify(&config, &file, mailbox, at, json).await
        }
        Command::Rules { command } => rules(path, command).await,
        Command::Outbox { command } => {
            with_store(path, async |store| outbox::outbox(store, command).await).await
        }
        Command::Report {
            from,
            to,
            desk,
            csv,
            json,
            mail,
        } => {
            let args = report::ReportArgs {
                from,
                to,
                desk,
                csv,
                json,
                mail,
            };
            let config = load_config(path)?;
            let plan = match report::plan(&config, &args, crate::clock::now_ms()) {
                Ok(plan) => plan,
                Err(reason) => {
                    eprintln!("triaged: {reason}");
                    return Ok(ExitCode::from(2));
                }
            };
            let store = open_store(&config).await?;
            let code = report::report(&store, &config, &plan, &args).await;
            store.close().await;
            code
        }
        Command::Quarantine { command } => {
            with_store(path, async |store| {
                quarantine::quarantine(store, command).await
            })
            .await
        }
        Command::Backup { path: target } => {
            with_store(path, async |store| backup::backup(store, &target).await).await
        }
        #[cfg(feature = "dev")]
        Command::Bench { command } => crate::dev::bench::run(command).await,
        #[cfg(feature = "dev")]
        Command::Demo { keep_running } => crate::dev::demo::run(keep_running).await,
    }
}

/// Opens the store, runs `command` on it, and closes it whatever the result.
async fn with_store(
    path: Option<&std::path::Path>,
    command: impl AsyncFnOnce(&Store) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let code = command(&store).await;
    store.close().await;
    code
}

/// `triaged run`: the daemon until SIGTERM or SIGINT.
async fn run_daemon(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    // One daemon per SQLite file; held until the process ends.
    let _lock = crate::daemon::lock_sqlite(&config.store.database_url)?;
    // A daemon that starts while another process holds the database (a
    // migration, a command's write) waits for it a little rather than exit:
    // only errors worth retrying are retried, a few times.
    let mut attempt = 0u32;
    let store = loop {
        match Store::open(&config.store.database_url, config.tickets.first_number).await {
            Ok(store) => break store.with_message_limit(config.ingest.max_message_bytes),
            Err(e) if e.is_retryable() && !e.is_resource() && attempt < 5 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "opening the database failed; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "opening database {}",
                    crate::config::redact_url(&config.store.database_url)
                )));
            }
        }
    };
    let shutdown = CancellationToken::new();
    crate::daemon::spawn_signal_handler(shutdown.clone());
    crate::daemon::run(config, store, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `triaged stats`: totals, tickets per queue and status, the oldest open
/// ticket, the outbox, and the last message of each mailbox.
async fn stats(path: Option<&std::path::Path>, json: bool) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let summary = store.summary().await;
    store.close().await;
    let s = summary?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", json_visible(&s)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let c = &s.counts;
    writeln!(
        out,
        "{} tickets, {} messages, {} duplicates recognised, {} quarantined",
        c.tickets, c.messages, c.duplicates, c.quarantined
    )?;
    if !s.queues.is_empty() {
        writeln!(out, "\ntickets by queue:")?;
        let mut queues: Vec<&str> = s.queues.iter().map(|q| q.queue.as_str()).collect();
        queues.dedup();
        for q in queues {
            let line: Vec<String> = crate::store::Status::ALL
                .iter()
                .map(|st| {
                    let n = s
                        .queues
                        .iter()
                        .find(|x| x.queue == q && x.status == st.as_str())
                        .map_or(0, |x| x.tickets);
                    format!("{n} {st}")
                })
                .collect();
            writeln!(out, "  {:<24} {}", visible(q, false), line.join(", "))?;
        }
    }
    if let Some(o) = &s.oldest_open {
        let waited = crate::clock::now_ms().saturating_sub(o.created_at);
        writeln!(
            out,
            "\noldest open ticket: #{} in {} ({}), since {} ({} ago)",
            o.number,
            visible(&o.queue, false),
            visible(&o.status, false),
            format_ms(o.created_at),
            text::format_duration(waited)
        )?;
    }
    if !s.outbox.is_empty() {
        let parts: Vec<String> = s
            .outbox
            .iter()
            .map(|x| format!("{} {}", x.count, visible(&x.status, false)))
            .collect();
        writeln!(out, "\noutbox: {}", parts.join(", "))?;
    }
    if !s.mailboxes.is_empty() {
        writeln!(out, "\nlast message per mailbox:")?;
        for m in &s.mailboxes {
            writeln!(
                out,
                "  {:<24} {}  ({} messages)",
                visible(&m.mailbox, false),
                format_ms(m.last_received_at),
                m.messages
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `triaged rules test` and `rules diff`.
async fn rules(path: Option<&std::path::Path>, command: RulesCommand) -> anyhow::Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
