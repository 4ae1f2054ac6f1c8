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
//! - Relay [`CommandBlock::text`] to the customer only when
//!   [`CommandBlock::may_relay`] says so: not a note, and no line refused (a
//!   mistyped `/coment` must not send the internal note below it out).
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
//! - A recipient list that the mail client wrapped goes on: the lines right
//!   after a `/recipients` line that hold addresses alone belong to it (and,
//!   like the rest of the block, are never relayed: the customer does not
//!   see internal addresses).
//!
//! # Bounds
//!
//! At most [`MAX_COMMANDS`] command lines are read; the rest of the block is
//! still removed from the relayed text but refused once, as a whole (a
//! `/comment` among them still makes the rest a note). A
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
pub const MAX_LINE: usize = 4096;
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
    /// Whether [`text`](Self::text) may go to the customer: there is text,
    /// it is not a `/comment` note, and no command line was refused. A
    /// refusal means the sender meant something that did not happen (a
    /// mistyped `/coment` above an internal note, say): hold the relay and
    /// tell the sender, who can send again.
    pub fn may_relay(&self) -> bool {
        !self.text.is_empty() && !self.comment && self.refused.is_empty()
    }

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
    // (byte offset of the line, the line without its end)
    let mut lines = text
        .split_inclusive('\n')
        .scan(0usize, |offset, raw| {
            let start = *offset;
            *offset += raw.len();
            Some((start, raw.trim_end_matches(['\n', '\r'])))
        })
        .peekable();
    while let Some((line_start, line)) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((verb, arg)) = command_shape(line) else {
            rest_start = Some(line_start);
            break;
        };
        // `/comment` ends the block whatever else is wrong with its line, so
        // that an internal note is never mistaken for relayable text.
        if verb.eq_ignore_ascii_case("comment") {
            out.commands.push(Command::Comment);
            out.comment = true;
            let note_first = arg.trim();
            let after = text[line_start..]
                .split_once('\n')
                .map_or("", |(_, rest)| rest);
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
        // A recipient list the mail client wrapped onto the next lines:
        // lines of addresses alone continue it (and are never relayed).
        let mut joined: Option<String> = None;
        if verb.eq_ignore_ascii_case("recipients") {
            while let Some(&(_, next)) = lines.peek() {
                if !addresses_only(next) {
                    break;
                }
                let j = joined.get_or_insert_with(|| line.trim_end().to_string());
                // Past the bound the line is refused as too long; the rest
                // of the list is still consumed, so none of it is relayed.
                if j.len() <= MAX_LINE {
                    j.push_str(", ");
                    j.push_str(next.trim());
                }
                lines.next();
            }
        }
        let (line, arg) = match &joined {
            Some(j) => (j.as_str(), command_shape(j).map_or("", |(_, a)| a)),
            None => (line, arg),
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

/// Whether a line holds addresses and nothing else (a wrapped recipient
/// list).
fn addresses_only(line: &str) -> bool {
    line.len() <= MAX_LINE
        && !line.trim().is_empty()
        && address_pieces(line).all(|p| valid_address(p).is_some())
}

/// The pieces of an address list: split at commas, semicolons and white
/// space, `<...>` and `mailto:` dropped, empty pieces skipped.
fn address_pieces(list: &str) -> impl Iterator<Item = &str> {
    list.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .map(|piece| {
            let p = piece.trim().trim_start_matches('<').trim_end_matches('>');
            match p.get(..7) {
                Some(m) if m.eq_ignore_ascii_case("mailto:") => &p[7..],
                _ => p,
            }
        })
        .filter(|p| !p.is_empty())
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
    for p in address_pieces(list) {
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

    fn refused_reasons(b: &CommandBlock) -> Vec<&str> {
        b.refused.iter().map(|r| r.reason.as_str()).collect()
    }

    #[test]
    fn every_command_reads() {
        let b = parse(
            "/take\n/owner tkim@example.edu\n/queue ProductionDefect\n/urgency high\n/impact extensive\n/kind incident\n/recipients add a@example.edu, b@example.org\n/recipients remove a@example.edu\n/status stalled\n/resolve\n/reopen\n",
        );
        assert_eq!(b.refused, vec![]);
        assert_eq!(
            b.commands,
            vec![
                Command::Take,
                Command::Owner("tkim@example.edu".into()),
                Command::Queue("ProductionDefect".into()),
                Command::Urgency(Urgency::High),
                Command::Impact(Impact::Extensive),
                Command::Kind(Kind::Incident),
                Command::RecipientsAdd(vec!["a@example.edu".into(), "b@example.org".into()]),
                Command::RecipientsRemove(vec!["a@example.edu".into()]),
                Command::Status(WantedStatus::Stalled),
                Command::Status(WantedStatus::Resolved),
                Command::Status(WantedStatus::Open),
            ]
        );
        assert_eq!(b.text, "");
        assert!(!b.comment);
        assert!(b.has_commands());
    }

    #[test]
    fn commands_then_prose() {
        let b = parse(
            "/take\r\n\r\n/queue ProductionDefect\r\n\r\nHello Ann,\r\n\r\nwe are on it.\r\n/resolve\r\n",
        );
        assert_eq!(
            b.commands,
            vec![Command::Take, Command::Queue("ProductionDefect".into())]
        );
        // The /resolve below the prose is prose.
        assert_eq!(b.text, "Hello Ann,\r\n\r\nwe are on it.\r\n/resolve");
    }

    #[test]
    fn prose_first_means_no_commands() {
        let text = "Hi team,\n/take\n";
        let b = parse(text);
        assert!(!b.has_commands());
        assert_eq!(b.text, text.trim());
        assert_eq!(parse("").text, "");
        assert!(!parse("\n\n  \n").has_commands());
    }

    #[test]
    fn slashes_in_prose_are_not_commands() {
        for text in [
            "/etc/hosts is broken on web1",
            "/s/ Jane",
            "/ alone",
            "//take",
            "/take/now",
            "/123 is a number",
            "/usr/bin/env: bad interpreter",
            "/take: done",
        ] {
            let b = parse(text);
            assert!(!b.has_commands(), "{text}");
            assert_eq!(b.text, text, "{text}");
        }
    }

    #[test]
    fn unknown_and_malformed_commands_are_refused_and_not_relayed() {
        let b = parse(
            "/tkae\n/urgency whenever\n/impact\n/kind incident bug\n/owner jlee\n/owner a@example.edu b@example.edu\n/take now\n/status new\n/recipients\n/recipients add\n/recipients drop a@example.edu\n/queue\n/recipients add a@example.edu, not an address\nThanks.",
        );
        assert_eq!(b.commands, vec![]);
        let reasons = refused_reasons(&b);
        assert_eq!(reasons.len(), 13, "{reasons:#?}");
        assert!(reasons[0].starts_with("unknown command /tkae"));
        assert!(reasons[1].contains("unknown urgency"), "{}", reasons[1]);
        assert!(reasons[1].contains("critical, high, medium, low"));
        assert_eq!(reasons[2], "/impact needs a value");
        assert_eq!(reasons[3], "/kind takes one value");
        assert!(reasons[4].contains("\"jlee\" is not an address"));
        assert_eq!(reasons[5], "/owner takes one address");
        assert_eq!(reasons[6], "/take takes no argument");
        assert!(reasons[7].contains("unknown status \"new\""));
        assert!(reasons[8].starts_with("expected /recipients add"));
        assert_eq!(reasons[9], "/recipients add needs an address");
        assert!(reasons[10].starts_with("expected /recipients add"));
        assert_eq!(reasons[11], "/queue needs a queue name");
        assert!(reasons[12].contains("\"not\" is not an address"));
        assert_eq!(b.refused[0].line, "/tkae");
        assert_eq!(b.text, "Thanks.");
    }

    #[test]
    fn case_and_client_artefacts() {
        let b = parse(
            "  /TAKE  \n\t/Urgency HIGH\n /Queue   production   defect \n/STATUS Stalled\n/Recipients ADD <A@Example.EDU>; mailto:b@example.edu jlee@example.edu <mailto:jlee@example.edu>\n",
        );
        assert_eq!(b.refused, vec![]);
        assert_eq!(
            b.commands,
            vec![
                Command::Take,
                Command::Urgency(Urgency::High),
                Command::Queue("production defect".into()),
                Command::Status(WantedStatus::Stalled),
                Command::RecipientsAdd(vec![
                    "a@example.edu".into(),
                    "b@example.edu".into(),
                    "jlee@example.edu".into()
                ]),
            ]
        );
        // A byte-order mark before the first command.
        assert_eq!(parse("\u{feff}/take").commands, vec![Command::Take]);
    }

    #[test]
    fn commands_alone_relay_nothing_even_with_a_signature() {
        for text in [
            "/take\n/resolve",
            "/take\n\n-- \nJane Lee\nISDA",
            "/take\n--\nJane",
            "/take\n\nSent from my iPhone",
            "/take\nGet Outlook for iOS",
        ] {
            let b = parse(text);
            assert_eq!(b.commands[0], Command::Take, "{text}");
            assert_eq!(b.text, "", "{text}");
        }
        // A longer text that merely starts "Sent from" is relayed.
        let b = parse("/take\nSent from my desk: the fix is deployed.\nJane");
        assert!(b.text.starts_with("Sent from my desk"));
    }

    #[test]
    fn comment_makes_the_rest_a_note() {
        let b = parse("/take\n/comment customer is upset\nsee ticket 12\n/resolve\n");
        assert_eq!(b.commands, vec![Command::Take, Command::Comment]);
        assert!(b.comment);
        assert_eq!(b.text, "customer is upset\nsee ticket 12\n/resolve");
        let b = parse("/COMMENT\n\nInternal: disk at 95%");
        assert!(b.comment);
        assert_eq!(b.text, "Internal: disk at 95%");
        let b = parse("/comment");
        assert!(b.comment);
        assert_eq!(b.text, "");
    }

    #[test]
    fn a_note_never_becomes_relayable() {
        // A /comment line with control characters, or past the bound, is
        // still a /comment.
        let b = parse("/comment \u{7}bell\nsecret");
        assert!(b.comment);
        assert!(!b.may_relay());
        let b = parse(&("/take\n".repeat(60) + "/comment\nsecret"));
        assert!(b.comment);
        assert_eq!(b.text, "secret");
        assert_eq!(b.refused.len(), 1);
        assert!(!b.may_relay());
        // A mistyped /comment: the note below is text, but held back.
        let b = parse("/coment\nsecret");
        assert!(!b.comment);
        assert_eq!(b.text, "secret");
        assert!(!b.may_relay());
        // The ordinary case.
        assert!(parse("/take\nWe are on it.").may_relay());
        assert!(!parse("/take").may_relay());
    }

    #[test]
    fn display_is_the_canonical_line() {
        let b = parse("/TAKE\n/urgency HIGH\n/recipients add A@x.org,b@x.org\n/resolve");
        let lines: Vec<String> = b.commands.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "/take",
                "/urgency high",
                "/recipients add a@x.org, b@x.org",
                "/status resolved"
            ]
        );
        // Each canonical line reads back to the same command.
        for c in &b.commands {
            assert_eq!(parse(&c.to_string()).commands, vec![c.clone()]);
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        // 10,000 commands: MAX_COMMANDS read, one refusal for the rest,
        // none of them relayed.
        let many = "/urgency high\n".repeat(10_000) + "the text";
        let b = parse(&many);
        assert_eq!(b.commands.len(), MAX_COMMANDS);
        assert_eq!(b.refused.len(), 1);
        assert!(b.refused[0].reason.contains("more than 50 commands"));
        assert_eq!(b.text, "the text");
        // A 10 MB command line.
        let long = format!("/queue {}\nhello", "x".repeat(10 * 1024 * 1024));
        let b = parse(&long);
        assert_eq!(b.commands, vec![]);
        assert!(b.refused[0].reason.contains("longer than"));
        assert!(b.refused[0].line.chars().count() <= SHOWN_LINE);
        assert_eq!(b.text, "hello");
        // A 10 MB prose line after a command.
        let b = parse(&format!("/take\n{}", "y".repeat(10 * 1024 * 1024)));
        assert_eq!(b.commands, vec![Command::Take]);
        assert_eq!(b.text.len(), 10 * 1024 * 1024);
        // NUL and controls in a command line.
        let b = parse("/queue Prod\0uctionDefect\n/urgency \u{1b}[31mhigh\n/take\n");
        assert_eq!(b.commands, vec![Command::Take]);
        assert_eq!(
            refused_reasons(&b),
            vec![
                "the line holds control characters",
                "the line holds control characters"
            ]
        );
        // Too many addresses.
        let list: Vec<String> = (0..60).map(|i| format!("u{i}@x.org")).collect();
        let b = parse(&format!("/recipients add {}", list.join(", ")));
        assert!(b.refused[0].reason.contains("more than 50 addresses"));
        // Non-ASCII verbs and arguments.
        let b = parse("/tàke\n/urgency hïgh\n/owner jlée@example.edu");
        assert_eq!(b.commands, vec![]);
        assert_eq!(b.text, "/tàke\n/urgency hïgh\n/owner jlée@example.edu");
        let b = parse("/urgency hïgh\n/owner jlée@example.edu");
        assert_eq!(b.refused.len(), 2);
        // A huge unknown verb is shown shortened.
        let b = parse(&format!("/{}", "a".repeat(900)));
        assert!(b.refused[0].reason.len() < 400);
    }

    #[test]
    fn a_wrapped_recipient_list_continues_and_is_never_relayed() {
        let b = parse(
            "/recipients add a@example.edu,\n b@example.edu, <c@example.edu>\nd@example.edu\n/take\nHello, we are on it.\ne@example.edu",
        );
        assert_eq!(
            b.commands,
            vec![
                Command::RecipientsAdd(vec![
                    "a@example.edu".into(),
                    "b@example.edu".into(),
                    "c@example.edu".into(),
                    "d@example.edu".into()
                ]),
                Command::Take
            ]
        );
        // Only after a /recipients line; an address line elsewhere is prose.
        assert_eq!(b.text, "Hello, we are on it.\ne@example.edu");
        let b = parse("/take\nx@example.edu");
        assert_eq!(b.text, "x@example.edu");
        // A line with words as well as addresses is prose.
        let b = parse("/recipients remove a@example.edu\nplease b@example.edu");
        assert_eq!(
            b.commands,
            vec![Command::RecipientsRemove(vec!["a@example.edu".into()])]
        );
        assert_eq!(b.text, "please b@example.edu");
        // Continuation cannot grow the line without bound.
        let wrapped = format!("/recipients add a@x.org\n{}", "b@x.org\n".repeat(100_000));
        let b = parse(&wrapped);
        assert_eq!(b.commands, vec![]);
        assert!(b.refused[0].reason.contains("longer than"));
        assert_eq!(b.text, "");
    }

    #[test]
    fn addresses_are_checked() {
        for good in [
            "a@example.edu",
            "first.last+tag@sub.example.co.uk",
            "O'Brien@example.ie",
        ] {
            assert!(valid_address(good).is_some(), "{good}");
        }
        for bad in [
            "a",
            "@example.edu",
            "a@",
            "a@example",
            "a@@example.edu",
            "a@exa_mple.edu",
            ".a@example.edu",
            "a..b@example.edu",
            "a@-example.edu",
            "a@example..edu",
            "\"a b\"@example.edu",
        ] {
            assert!(valid_address(bad).is_none(), "{bad}");
        }
    }

    fn team() -> Vec<String> {
        vec![
            "jlee@example.edu".into(),
            "MGarcia@Example.edu".into(),
            "@partner.org".into(),
            "vendor.com".into(),
        ]
    }

    fn pass(domain: &str) -> Result<Evidence, String> {
        Ok(Evidence {
            authserv_id: "mx.example.edu".into(),
            method: "dkim".into(),
            domain: domain.into(),
            from_domain: domain.into(),
        })
    }

    /// From raw mail to a decision, as the pipeline will do it.
    #[test]
    fn a_reply_end_to_end() {
        use crate::authres::authenticated;
        let raw = |auth: &str, from: &str| {
            format!(
                "{auth}From: Jane Lee <{from}>\r\nTo: isda-support@example.edu\r\nSubject: Re: [ISDA #1042] VPN down\r\nMessage-ID: <r1@example.edu>\r\n\r\n/take\r\n/queue ProductionDefect\r\n\r\nWe are looking into it.\r\n"
            )
        };
        let ids = vec!["mx.example.edu".to_string()];
        let decide = |raw: String| {
            let p = crate::parse::parse(raw.as_bytes());
            let sender = p.from.clone().map(|a| a.address).unwrap_or_default();
            let domain = crate::parse::domain_of(&sender).unwrap_or_default();
            let auth = authenticated(&p, &ids, &domain);
            (authorize(&sender, &team(), true, &auth), parse(&p.body))
        };
        let genuine = "Authentication-Results: mx.example.edu; dkim=pass header.d=example.edu\r\n";
        let (d, b) = decide(raw(genuine, "jlee@example.edu"));
        assert!(
            matches!(d, Decision::Allowed { evidence: Some(_) }),
            "{d:?}"
        );
        assert_eq!(
            b.commands,
            vec![Command::Take, Command::Queue("ProductionDefect".into())]
        );
        assert_eq!(b.text, "We are looking into it.");
        assert!(b.may_relay());
        // Forged From, with a header the forger wrote under another id.
        let forged = "Authentication-Results: mx.evil.net; dkim=pass header.d=example.edu\r\n";
        let (d, _) = decide(raw(forged, "jlee@example.edu"));
        assert!(matches!(d, Decision::Refused { answer: true, .. }), "{d:?}");
        // A stranger: refused, not answered.
        let (d, _) = decide(raw(genuine, "someone@example.com"));
        assert!(
            matches!(d, Decision::Refused { answer: false, .. }),
            "{d:?}"
        );
    }

    #[test]
    fn team_membership() {
        let t = team();
        assert!(in_team("jlee@example.edu", &t));
        assert!(in_team("JLee@EXAMPLE.edu", &t));
        assert!(in_team("mgarcia@example.edu", &t));
        assert!(in_team("anyone@partner.org", &t));
        assert!(in_team("x@vendor.com", &t));
        assert!(!in_team("x@sub.vendor.com", &t));
        assert!(!in_team("tkim@example.edu", &t));
        assert!(!in_team("jlee@example.edu.evil.com", &t));
        assert!(!in_team("", &t));
        assert!(!in_team("jlee", &t));
        assert!(!in_team("jlee@example.edu", &[]));
        assert!(!in_team(
            "a@example.edu",
            &["".to_string(), "@".to_string()]
        ));
    }

    #[test]
    fn authorization() {
        let t = team();
        // A team member, authenticated.
        assert!(matches!(
            authorize("jlee@example.edu", &t, true, &pass("example.edu")),
            Decision::Allowed { evidence: Some(_) }
        ));
        // A team member, not authenticated: refused and told.
        let d = authorize("jlee@example.edu", &t, true, &Err("no header".into()));
        assert_eq!(
            d,
            Decision::Refused {
                reason: "the sender could not be authenticated: no header".into(),
                answer: true
            }
        );
        // Authentication for another domain than the sender's.
        assert!(matches!(
            authorize("jlee@example.edu", &t, true, &pass("evil.com")),
            Decision::Refused { answer: true, .. }
        ));
        // Not required: allowed without evidence.
        assert_eq!(
            authorize("jlee@example.edu", &t, false, &Err("no header".into())),
            Decision::Allowed { evidence: None }
        );
        // A stranger (or a forged sender outside the team) gets nothing,
        // authenticated or not, required or not.
        for required in [true, false] {
            for auth in [pass("example.edu"), pass("evil.com"), Err("x".into())] {
                let d = authorize("tkim@evil.com", &t, required, &auth);
                assert!(
                    matches!(d, Decision::Refused { answer: false, .. }),
                    "{d:?}"
                );
            }
        }
        assert!(matches!(
            authorize("", &t, false, &Err("x".into())),
            Decision::Refused { answer: false, .. }
        ));
    }
}
