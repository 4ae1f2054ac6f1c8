//! Commands by mail: the command lines at the top of a team member's reply
//! (`/take`, `/queue ProductionDefect`, `/resolve`, ...), and who may give
//! them. Pure: the caller applies the commands (through the same code as
//! `triaged tickets set`), records the refusals and relays [`CommandBlock::text`].
//!
//! # Where commands are
//!
//! [`parse`] reads the *new text* of a reply (quoted history and signature
//! already cut off by the caller; a trailing signature is tolerated anyway):
//!
//! - Commands stand in a leading block: blank lines may come before and
//!   between them; the first line that is not a command ends the block.
//!   Command lines further down are prose and are relayed as written.
//! - A command line is, after leading white space, `/` then a word of ASCII
//!   letters, then the end of the line or white space. Verbs and keyword
//!   arguments ignore case. `/etc/hosts is broken` or `/s/ Jane` is not
//!   command-shaped, so it is prose: it ends the block and is relayed.
//! - A command-shaped line with an unknown verb (`/tkae`), or a known verb
//!   with a bad argument (`/urgency whenever`), is refused with a reason
//!   ([`Refused`]), changes nothing, and is removed from the relayed text
//!   like every line of the block (a typo of a command is never shown to the
//!   customer).
//! - `/comment` ends the block: the rest of its line and every line after
//!   it are an internal note ([`CommandBlock::comment`] is true, and
//!   [`CommandBlock::text`] is the note, for the team only).
//! - Commands are returned in order; the caller applies them in order, so
//!   the last of two `/urgency` lines wins.
//! - What remains after the block is the relayable text. When it is empty,
//!   or only a signature (a `--` line and what follows) or a mobile footer
//!   ("Sent from my ..."), it is empty: a message of commands alone relays
//!   nothing.
//!
//! # Arguments
//!
//! - `/queue` keeps its argument raw (white space collapsed): matching it to
//!   a configured queue (`production defect` vs `ProductionDefect`) is the
//!   caller's.
//! - `/urgency`, `/impact`, `/kind` take the names of [`crate::priority`].
//! - `/status` takes `open`, `stalled` or `resolved`; `/resolve` is
//!   `/status resolved` and `/reopen` is `/status open`.
//! - Addresses (`/owner`, `/recipients add|remove`) must be whole
//!   (`name@example.edu`); `<...>` and `mailto:` around them (what mail
//!   clients make of typed addresses) are dropped; they are returned
//!   lower-case. Lists are separated by commas, semicolons or spaces.
//!
//! # Bounds
//!
//! At most [`MAX_COMMANDS`] command lines are read; the rest of the block is
//! still removed from the relayed text but refused once, as a whole. A
//! command line longer than [`MAX_LINE`] bytes or holding control characters
//! is refused. At most [`MAX_ADDRESSES`] addresses per command. Refused
//! lines are kept shortened to [`SHOWN_LINE`] characters.
//!
//! # Who may command
//!
//! [`authorize`]: team members only, and, with `require_authenticated`, only
//! when [`crate::authres::authenticated`] vouches for the sender's domain.
//! A refusal is answered only when the sender is a team member: a stranger,
//! or a forged sender outside the team, gets nothing.

use std::fmt;

use crate::authres::Evidence;
use crate::parse::domain_of;
use crate::priority::{Impact, Kind, Urgency};
use crate::text::truncate;

/// The most command lines read from one message.
pub const MAX_COMMANDS: usize = 50;
/// The longest command line, in bytes.
pub const MAX_LINE: usize = 1000;
/// The most addresses one command may name.
pub const MAX_ADDRESSES: usize = 50;
/// How much of a refused line is kept, in characters.
pub const SHOWN_LINE: usize = 200;
/// The longest queue name accepted, in characters.
const MAX_QUEUE: usize = 100;

/// The statuses a command may ask for (the caller maps them onto the
/// store's; `new` cannot be asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantedStatus {
    Open,
    Stalled,
    Resolved,
}

impl WantedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WantedStatus::Open => "open",
            WantedStatus::Stalled => "stalled",
            WantedStatus::Resolved => "resolved",
        }
    }
}

/// One command, its argument read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/take`: the sender becomes the tech lead.
    Take,
    /// `/owner a@b`: someone becomes the tech lead.
    Owner(String),
    /// `/queue Name`: transfer; the raw name, white space collapsed.
    Queue(String),
    Urgency(Urgency),
    Impact(Impact),
    Kind(Kind),
    /// `/recipients add a@b, c@d`
    RecipientsAdd(Vec<String>),
    /// `/recipients remove a@b`
    RecipientsRemove(Vec<String>),
    /// `/status s`, `/resolve` (resolved), `/reopen` (open).
    Status(WantedStatus),
    /// `/comment`: the text is an internal note.
    Comment,
}

impl fmt::Display for Command {
    /// The canonical command line, for history and replies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Take => f.write_str("/take"),
            Command::Owner(a) => write!(f, "/owner {a}"),
            Command::Queue(q) => write!(f, "/queue {q}"),
            Command::Urgency(u) => write!(f, "/urgency {u}"),
            Command::Impact(i) => write!(f, "/impact {i}"),
            Command::Kind(k) => write!(f, "/kind {k}"),
            Command::RecipientsAdd(v) => write!(f, "/recipients add {}", v.join(", ")),
            Command::RecipientsRemove(v) => write!(f, "/recipients remove {}", v.join(", ")),
            Command::Status(s) => write!(f, "/status {}", s.as_str()),
            Command::Comment => f.write_str("/comment"),
        }
    }
}

/// A command line that was not obeyed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The line as written (trimmed, shortened to [`SHOWN_LINE`]).
    pub line: String,
    pub reason: String,
}

/// What [`parse`] found in a reply's new text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandBlock {
    pub commands: Vec<Command>,
    pub refused: Vec<Refused>,
    /// The text without the command block: what may be relayed, or, when
    /// [`comment`](Self::comment) holds, the internal note. Empty for a
    /// message of commands alone.
    pub text: String,
    /// `/comment` was given: [`text`](Self::text) goes to the team only.
    pub comment: bool,
}

impl CommandBlock {
    /// Whether the message held any command line, obeyed or not.
    pub fn has_commands(&self) -> bool {
        !self.commands.is_empty() || !self.refused.is_empty()
    }
}

/// Whether a line is shaped like a command: `/` and a word of letters, then
/// white space or the end. Returns the verb and the rest of the line.
fn command_shape(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_start().strip_prefix('/')?;
    let end = t
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(t.len());
    if end == 0 {
        return None;
    }
    let (verb, rest) = t.split_at(end);
    match rest.chars().next() {
        None => Some((verb, rest)),
        Some(c) if c.is_whitespace() => Some((verb, rest)),
        _ => None,
    }
}

/// Reads the command block at the top of `new_text` (see the module's doc).
pub fn parse(new_text: &str) -> CommandBlock {
    let text = new_text.strip_prefix('\u{feff}').unwrap_or(new_text);
    let mut out = CommandBlock::default();
    let mut read = 0usize;
    let mut over = 0usize;
    let mut rest_start: Option<usize> = None;
    let mut offset = 0usize;
    for raw_line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let Some((verb, arg)) = command_shape(line) else {
            rest_start = Some(line_start);
            break;
        };
        read += 1;
        if read > MAX_COMMANDS {
            over += 1;
            continue;
        }
        let shown = truncate(line.trim(), SHOWN_LINE);
        if line.len() > MAX_LINE {
            out.refused.push(Refused {
                line: shown,
                reason: format!("the line is longer than {MAX_LINE} bytes"),
            });
            continue;
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            out.refused.push(Refused {
                line: shown,
                reason: "the line holds control characters".to_string(),
            });
            continue;
        }
        if verb.eq_ignore_ascii_case("comment") {
            out.commands.push(Command::Comment);
            out.comment = true;
            let note_first = arg.trim();
            let after = &text[offset..];
            let mut note = String::new();
            if !note_first.is_empty() {
                note.push_str(note_first);
                note.push('\n');
            }
            note.push_str(after);
            out.text = note.trim().to_string();
            finish_refusals(&mut out, over);
            return out;
        }
        match command(verb, arg) {
            Ok(c) => out.commands.push(c),
            Err(reason) => out.refused.push(Refused {
                line: shown,
                reason,
            }),
        }
    }
    finish_refusals(&mut out, over);
    out.text = match rest_start {
        Some(start) => relayable(&text[start..]),
        None => String::new(),
    };
    out
}

fn finish_refusals(out: &mut CommandBlock, over: usize) {
    if over > 0 {
        out.refused.push(Refused {
            line: format!("({over} more command lines)"),
            reason: format!(
                "more than {MAX_COMMANDS} commands in one message; the rest were ignored"
            ),
        });
    }
}

/// The text after the block, or nothing when it is only a signature or a
/// mobile footer.
fn relayable(rest: &str) -> String {
    let trimmed = rest.trim();
    let first = trimmed.lines().next().unwrap_or("").trim_end();
    let is_signature = first == "--" || first == "-- " || first == "__";
    let lower = trimmed.to_ascii_lowercase();
    let is_footer = trimmed.lines().count() == 1
        && (lower.starts_with("sent from my ") || lower.starts_with("get outlook for "));
    if trimmed.is_empty() || is_signature || is_footer {
        String::new()
    } else {
        trimmed.to_string()
    }
}

/// One command from its verb and the rest of its line.
fn command(verb: &str, arg: &str) -> Result<Command, String> {
    let verb = verb.to_ascii_lowercase();
    let arg = arg.trim();
    let none = |c: Command| {
        if arg.is_empty() {
            Ok(c)
        } else {
            Err(format!("/{verb} takes no argument"))
        }
    };
    match verb.as_str() {
        "take" => none(Command::Take),
        "resolve" => none(Command::Status(WantedStatus::Resolved)),
        "reopen" => none(Command::Status(WantedStatus::Open)),
        "owner" => {
            let mut v = addresses(arg, "/owner")?;
            if v.len() != 1 {
                return Err("/owner takes one address".to_string());
            }
            Ok(Command::Owner(v.remove(0)))
        }
        "queue" => {
            let name = arg.split_whitespace().collect::<Vec<_>>().join(" ");
            if name.is_empty() {
                Err("/queue needs a queue name".to_string())
            } else if name.chars().count() > MAX_QUEUE {
                Err(format!(
                    "the queue name is longer than {MAX_QUEUE} characters"
                ))
            } else {
                Ok(Command::Queue(name))
            }
        }
        "urgency" => one_word(arg, "/urgency")?.parse().map(Command::Urgency),
        "impact" => one_word(arg, "/impact")?.parse().map(Command::Impact),
        "kind" => one_word(arg, "/kind")?.parse().map(Command::Kind),
        "status" => {
            let s = one_word(arg, "/status")?.to_ascii_lowercase();
            match s.as_str() {
                "open" => Ok(Command::Status(WantedStatus::Open)),
                "stalled" => Ok(Command::Status(WantedStatus::Stalled)),
                "resolved" => Ok(Command::Status(WantedStatus::Resolved)),
                _ => Err(format!(
                    "unknown status {:?} (expected one of: open, stalled, resolved)",
                    truncate(&s, 40)
                )),
            }
        }
        "recipients" => {
            let (op, list) = arg
                .split_once(char::is_whitespace)
                .map(|(a, b)| (a, b.trim()))
                .unwrap_or((arg, ""));
            let op = op.to_ascii_lowercase();
            match op.as_str() {
                "add" => Ok(Command::RecipientsAdd(addresses(list, "/recipients add")?)),
                "remove" => Ok(Command::RecipientsRemove(addresses(
                    list,
                    "/recipients remove",
                )?)),
                _ => Err(
                    "expected /recipients add ADDRESS... or /recipients remove ADDRESS..."
                        .to_string(),
                ),
            }
        }
        _ => Err(format!(
            "unknown command /{} (known: /take, /owner, /queue, /urgency, /impact, /kind, /recipients, /status, /resolve, /reopen, /comment)",
            truncate(&verb, 40)
        )),
    }
}

fn one_word<'a>(arg: &'a str, what: &str) -> Result<&'a str, String> {
    let mut words = arg.split_whitespace();
    match (words.next(), words.next()) {
        (Some(w), None) => Ok(w),
        (None, _) => Err(format!("{what} needs a value")),
        (Some(_), Some(_)) => Err(format!("{what} takes one value")),
    }
}

/// The addresses of a list (commas, semicolons, white space), checked,
/// lower-case, without repeats.
fn addresses(list: &str, what: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for piece in list.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
        let p = piece.trim().trim_start_matches('<').trim_end_matches('>');
        let p = match p.get(..7) {
            Some(m) if m.eq_ignore_ascii_case("mailto:") => &p[7..],
            _ => p,
        };
        if p.is_empty() {
            continue;
        }
        let a = valid_address(p).ok_or_else(|| {
            format!(
                "{:?} is not an address (expected name@example.edu)",
                truncate(p, 60)
            )
        })?;
        if !out.contains(&a) {
            if out.len() >= MAX_ADDRESSES {
                return Err(format!("{what} names more than {MAX_ADDRESSES} addresses"));
            }
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(format!("{what} needs an address"));
    }
    Ok(out)
}

/// `local@domain` with a dot-atom local part and a host name, lower-case.
pub fn valid_address(a: &str) -> Option<String> {
    if a.len() > 254 {
        return None;
    }
    let (local, domain) = a.split_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    (local_ok && domain_ok).then(|| a.to_ascii_lowercase())
}

/// May this sender command?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Yes; `evidence` says what vouched for the sender (`None` when
    /// authentication is not required and none was found).
    Allowed { evidence: Option<String> },
    /// No. `answer`: whether the sender may be told why (only a team member:
    /// a stranger or a forged sender outside the team gets nothing).
    Refused { reason: String, answer: bool },
}

/// Whether `team` (addresses `jlee@example.edu`, or whole domains written
/// `@example.edu` or `example.edu`) holds `address`. Case is ignored.
pub fn in_team(address: &str, team: &[String]) -> bool {
    let address = address.trim().to_ascii_lowercase();
    let Some(domain) = domain_of(&address) else {
        return false;
    };
    if valid_address(&address).is_none() {
        return false;
    }
    team.iter().any(|entry| {
        let e = entry.trim().to_ascii_lowercase();
        match e.split_once('@') {
            Some(("", d)) => d == domain,
            Some(_) => e == address,
            None => !e.is_empty() && e == domain,
        }
    })
}

/// Who may command (module doc, "Who may command"). `auth` is
/// [`crate::authres::authenticated`]'s answer for the sender's domain.
pub fn authorize(
    sender: &str,
    team: &[String],
    require_authenticated: bool,
    auth: &Result<Evidence, String>,
) -> Decision {
    let shown = truncate(sender.trim(), 100);
    if !in_team(sender, team) {
        return Decision::Refused {
            reason: format!("{shown:?} is not a member of the desk's team"),
            answer: false,
        };
    }
    let sender_domain = domain_of(sender.trim()).unwrap_or_default();
    match auth {
        Ok(e) if e.from_domain == sender_domain => Decision::Allowed {
            evidence: Some(e.to_string()),
        },
        Ok(e) if require_authenticated => Decision::Refused {
            reason: format!(
                "the authentication found is for {}, not for the sender's domain {sender_domain}",
                e.from_domain
            ),
            answer: true,
        },
        Err(why) if require_authenticated => Decision::Refused {
            reason: format!("the sender could not be authenticated: {why}"),
            answer: true,
        },
        _ => Decision::Allowed { evidence: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
}
