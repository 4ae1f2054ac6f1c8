//! `triaged tickets reply`, `comment`, `set` and `recipients`: steering a
//! ticket from the command line, through the pipeline's own steering
//! (`Pipeline::reply`, `Pipeline::steer`), so that the ticket changes, the
//! events and the mail are the same as for a team member's mail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::text::{parse_number, vis};
use super::{load_config, open_store};
use crate::commands::{self, Command, CommandBlock};
use crate::config::Config;
use crate::pipeline::{ByHandError, Outcome, Pipeline, steer::ByMail};
use crate::store::Store;

/// The largest reply or note read from a file or stdin.
const MAX_TEXT_BYTES: u64 = 4 * 1024 * 1024;

/// What `tickets set` changes; each given value is one command line.
#[derive(Debug, Default, Clone)]
pub struct SetArgs {
    pub queue: Option<String>,
    pub owner: Option<String>,
    pub urgency: Option<String>,
    pub impact: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
}

impl SetArgs {
    /// The command lines, in the order a careful integrator would write
    /// them: the queue first (a transfer recomputes kind and priority),
    /// then what is set on top of it, the status last.
    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut push = |cmd: &str, v: &Option<String>| {
            if let Some(v) = v {
                lines.push(format!("/{cmd} {v}"));
            }
        };
        push("queue", &self.queue);
        push("owner", &self.owner);
        push("kind", &self.kind);
        push("urgency", &self.urgency);
        push("impact", &self.impact);
        push("status", &self.status);
        lines
    }
}

/// Who is steering: `--by`, else the login name, as the history's actor.
pub fn actor(by: Option<String>) -> String {
    let raw = by.unwrap_or_else(|| {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_string());
        format!("{user} (command line)")
    });
    clean(&raw)
}

/// One line, no controls, bounded: what is recorded of a name given here.
fn clean(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::text::truncate(one.trim(), 200)
}

/// The pipeline these commands steer through: the configured rules, and
/// the notifier (mail is queued here and sent by `triaged run`).
async fn pipeline(config: Arc<Config>, store: Store) -> anyhow::Result<Pipeline> {
    let notifier =
        crate::notify::notifier(&config).map_err(|p| anyhow::anyhow!("templates:\n{p}"))?;
    let pipeline = crate::daemon::off_runtime(move || Pipeline::new(config, store))
        .await?
        .map_err(|p| anyhow::anyhow!("invalid routing rules:\n{p}"))?;
    Ok(pipeline.with_notifier(notifier, Arc::new(tokio::sync::Notify::new())))
}

fn number(s: &str) -> anyhow::Result<i64> {
    parse_number(s).ok_or_else(|| anyhow::anyhow!("not a ticket number: {s:?}"))
}

/// The text of a reply or note: the file, or stdin for none or `-`.
fn read_text(file: Option<&Path>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    match file {
        Some(p) if p != Path::new("-") => {
            std::fs::File::open(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
                .take(MAX_TEXT_BYTES + 1)
                .read_to_end(&mut bytes)?;
        }
        _ => {
            std::io::stdin()
                .take(MAX_TEXT_BYTES + 1)
                .read_to_end(&mut bytes)?;
        }
    }
    if bytes.len() as u64 > MAX_TEXT_BYTES {
        anyhow::bail!("the text is over {MAX_TEXT_BYTES} bytes");
    }
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("the text is not UTF-8"))?;
    if text.trim().is_empty() {
        anyhow::bail!("the text is empty");
    }
    Ok(text)
}

/// `tickets reply N --from A [--file F]`.
pub async fn reply(
    path: Option<&Path>,
    ticket: &str,
    from: &str,
    file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let n = number(ticket)?;
    let text = read_text(file.as_deref())?;
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let pipeline = pipeline(config, store.clone()).await?;
    let user = actor(None);
    let result = pipeline.reply(n, from, &text, &user).await;
    store.close().await;
    match result {
        Ok(Outcome::Reply(t)) if t == n => {
            println!("reply recorded on ticket {n}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Outcome::Created(t)) => {
            // The threading rules decided so (a reply to a ticket resolved
            // long ago, say): said, not hidden.
            println!(
                "ticket {n} did not take the reply; it opened ticket {t} (see `tickets show {t}`)"
            );
            Ok(ExitCode::from(1))
        }
        Ok(other) => {
            println!("the reply was not recorded on ticket {n}: {other:?}");
            Ok(ExitCode::from(1))
        }
        Err(ByHandError::NoTicket(_)) => {
            println!("there is no ticket {n}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// `tickets comment N [--by A] [--file F]`: an internal note, to the team.
pub async fn comment(
    path: Option<&Path>,
    ticket: &str,
    by: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let n = number(ticket)?;
    let text = read_text(file.as_deref())?;
    // The whole text is the note: lines in it that look like commands are
    // not obeyed (as in a mail, where only the top block commands).
    let block = CommandBlock {
        commands: vec![Command::Comment],
        refused: Vec::new(),
        text: text.trim_end().to_string(),
        comment: true,
    };
    steer(path, n, block, by).await
}

/// `tickets set N --queue/--owner/--status/--urgency/--impact/--kind`.
pub async fn set(
    path: Option<&Path>,
    ticket: &str,
    args: SetArgs,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    let n = number(ticket)?;
    let lines = args.lines();
    if lines.is_empty() {
        anyhow::bail!(
            "nothing to set: give --queue, --owner, --status, --urgency, --impact or --kind"
        );
    }
    let block = command_lines(&lines)?;
    steer(path, n, block, by).await
}

/// `tickets recipients N add|remove A...`.
pub async fn recipients(
    path: Option<&Path>,
    ticket: &str,
    add: bool,
    addresses: &[String],
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    let n = number(ticket)?;
    let verb = if add { "add" } else { "remove" };
    let block = command_lines(&[format!("/recipients {verb} {}", addresses.join(", "))])?;
    steer(path, n, block, by).await
}

/// Command lines read by the same parser as a mail's, refused here (before
/// anything changes) if the parser refuses any or reads a line as text.
fn command_lines(lines: &[String]) -> anyhow::Result<CommandBlock> {
    if let Some(l) = lines.iter().find(|l| l.contains(['\n', '\r'])) {
        anyhow::bail!("a value holds a line break: {:?}", vis(l));
    }
    let block = commands::parse(&lines.join("\n"));
    if !block.refused.is_empty() {
        let why: Vec<String> = block
            .refused
            .iter()
            .map(|r| format!("{}: {}", vis(&r.line), vis(&r.reason)))
            .collect();
        anyhow::bail!("refused:\n  {}", why.join("\n  "));
    }
    if !block.text.trim().is_empty() || block.commands.len() != lines.len() {
        anyhow::bail!("not read as commands: {:?}", vis(&block.text));
    }
    Ok(block)
}

async fn steer(
    path: Option<&Path>,
    n: i64,
    block: CommandBlock,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let pipeline = pipeline(config, store.clone()).await?;
    let actor = actor(by);
    let result = pipeline.steer(n, block, &actor, Some(actor.clone())).await;
    store.close().await;
    let Some(done) = result? else {
        println!("there is no ticket {n}");
        return Ok(ExitCode::from(1));
    };
    Ok(report(n, &done))
}

fn report(n: i64, done: &ByMail) -> ExitCode {
    for line in &done.steered.applied {
        println!("ticket {n}: {}: applied", vis(line));
    }
    if done.block.comment {
        println!("ticket {n}: internal note recorded");
    }
    for r in &done.steered.refused {
        println!("ticket {n}: {}: refused: {}", vis(&r.line), vis(&r.reason));
    }
    if done.steered.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
