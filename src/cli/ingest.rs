//! `triaged ingest`: files, Maildirs, mbox files or stdin into tickets.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::text::vis;
use super::{load_config, open_store};
use crate::config::Config;
use crate::ingest::ingest_paths;
use crate::pipeline::Outcome;
use crate::pipeline::Pipeline;

/// What `triaged ingest` was asked.
pub(super) struct IngestArgs {
    pub mailbox: Option<String>,
    pub verbose: bool,
    pub json: bool,
    pub no_notify: bool,
    pub paths: Vec<PathBuf>,
}

pub(super) async fn ingest(path: Option<&Path>, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let IngestArgs {
        mailbox,
        verbose,
        json,
        no_notify,
        paths,
    } = args;
    let config = load_config(path)?;
    let mailbox = resolve_mailbox(&config, mailbox)?;
    let store = open_store(&config).await?;
    let notifier = if no_notify {
        None
    } else {
        // Mail is queued here and sent by `triaged run`.
        Some(crate::notify::notifier(&config).map_err(|p| anyhow::anyhow!("templates:\n{p}"))?)
    };
    let pipeline = {
        let store = store.clone();
        crate::daemon::off_runtime(move || Pipeline::new(config, store))
            .await?
            .map_err(|p| anyhow::anyhow!("invalid routing rules:\n{p}"))?
    };
    let pipeline = match notifier {
        Some(n) => pipeline.with_notifier(n, Arc::new(tokio::sync::Notify::new())),
        None => pipeline,
    };
    let progress = Progress::new(verbose);
    let summary = ingest_paths(&pipeline, &mailbox, paths, |r| {
        progress.tick();
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
    progress.finish();
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

/// A progress line on stderr for long runs: shown only when stderr is a
/// terminal, only once more than [`PROGRESS_AFTER`] messages have been seen
/// (a handful of files needs none), never with `--verbose` (its lines say
/// as much). Off a terminal nothing is written.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

/// Messages before the progress line appears.
const PROGRESS_AFTER: u64 = 200;

impl Progress {
    fn new(verbose: bool) -> Progress {
        let show = !verbose && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = show.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::hidden(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {human_pos} messages ingested ({per_sec}, {elapsed})",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar }
    }

    fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if bar.position() == PROGRESS_AFTER {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.tick();
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The mailbox named with `--mailbox`, or the first configured one.
fn resolve_mailbox(config: &Config, mailbox: Option<String>) -> anyhow::Result<String> {
    Ok(config
        .mailbox_or_first(mailbox.as_deref())
        .map_err(anyhow::Error::msg)?
        .name
        .clone())
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
