//! Conversations: a reply on an existing ticket. A reply from the desk's
//! team is correspondence, relayed to the customer side (the requester and
//! the external part of the recipient list, each alone) From the desk with
//! the member's name; a reply from the requester or anyone else let in is
//! relayed to the owner, else the team, and the internal part of the
//! recipient list. Robots get nothing relayed, and what they write is not
//! relayed.

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use mail_parser::MimeHeaders;
use minijinja::Value;

use super::templates::{
    REFLECTED_ID_CHARS, REFLECTED_NAME_CHARS, REFLECTED_SUBJECT_CHARS, Rendered, reflect_line,
    reflect_text,
};
use super::{
    AutoResponseSuppress, MAX_LINE_OCTETS, MAX_REFERENCES, Notifier, OutboundMail, Outgoing,
    TicketEvent, carried_id, longest_line, new_message_id, policy,
};
use crate::config::RelayTo;
use crate::parse::ParsedMessage;
use crate::store::TicketState;
use crate::thread::format_tag;

/// The most text of one message that is relayed (characters).
pub const RELAYED_TEXT_CHARS: usize = 100_000;
/// At most this many attachments are relayed with one message.
const MAX_RELAYED_ATTACHMENTS: usize = 20;

/// Who wrote a reply on a ticket, as far as conversations go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correspondent {
    /// A member of the ticket's desk's team: correspondence.
    Team,
    /// A robot, an auto-reply, a bounce or the desk itself: recorded only.
    Automated(String),
    /// The requester or anyone else let in on the ticket.
    Other,
}

impl Correspondent {
    /// How it is named in events.
    pub fn as_str(&self) -> &'static str {
        match self {
            Correspondent::Team => "team",
            Correspondent::Automated(_) => "automated",
            Correspondent::Other => "customer",
        }
    }
}

/// Who wrote `parsed`, a reply on a ticket of `desk`. An auto-reply from a
/// team member's mailbox (an out-of-office notice) is automated, not
/// correspondence.
pub fn correspondent(
    config: &crate::config::Config,
    desk: &str,
    parsed: &ParsedMessage,
) -> Correspondent {
    let own = config.own_addresses();
    if let Some(reason) = policy::no_reply_reason(parsed, &own) {
        return Correspondent::Automated(reason);
    }
    match parsed.requester() {
        Some(s) if config.is_team_member(desk, &s.address) => Correspondent::Team,
        Some(_) => Correspondent::Other,
        None => Correspondent::Automated("no sender address".to_string()),
    }
}

/// The text of a message that is relayed: its new text, without the quoted
/// history and the signature (`reply::split`; the raw message is kept whole
/// in the store).
pub fn relay_text(parsed: &ParsedMessage) -> String {
    crate::reply::split(parsed).new_text.trim_end().to_string()
}

/// An attachment of the inbound message, as relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedAttachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// "2 KiB": a size for people.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The attachments of `raw` up to `max` bytes each (relayed) and the names
/// and sizes of the larger ones (withheld). Only a message whose parse found
/// attachments is read again (so it passed the parser's bounds); a parser
/// panic relays none.
fn attachments(
    parsed: &ParsedMessage,
    raw: &[u8],
    max: u64,
) -> (Vec<RelayedAttachment>, Vec<(String, u64)>) {
    let mut relayed = Vec::new();
    let mut withheld = Vec::new();
    if parsed.attachments.is_empty() {
        return (relayed, withheld);
    }
    let name_of = |n: Option<&str>, i: usize| {
        n.map(|n| reflect_line(n, REFLECTED_NAME_CHARS))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("attachment-{}", i + 1))
    };
    let read = std::panic::catch_unwind(|| {
        let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
            return Vec::new();
        };
        msg.attachments()
            .take(MAX_RELAYED_ATTACHMENTS)
            .map(|part| {
                let content_type = part
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".to_string())
                    .to_ascii_lowercase();
                (
                    part.attachment_name().map(str::to_string),
                    content_type,
                    part.contents().to_vec(),
                )
            })
            .collect::<Vec<_>>()
    });
    let parts = match read {
        Ok(parts) => parts,
        Err(_) => {
            for (i, a) in parsed.attachments.iter().enumerate() {
                withheld.push((name_of(a.name.as_deref(), i), a.size));
            }
            return (relayed, withheld);
        }
    };
    for (i, (name, content_type, bytes)) in parts.into_iter().enumerate() {
        let name = name_of(name.as_deref(), i);
        if bytes.len() as u64 > max {
            withheld.push((name, bytes.len() as u64));
        } else {
            relayed.push(RelayedAttachment {
                name,
                content_type,
                bytes,
            });
        }
    }
    for (i, a) in parsed
        .attachments
        .iter()
        .enumerate()
        .skip(MAX_RELAYED_ATTACHMENTS)
    {
        withheld.push((name_of(a.name.as_deref(), i), a.size));
    }
    (relayed, withheld)
}

/// One relayed mail, before it is formatted.
struct RelayMail<'a> {
    kind: &'a str,
    number: i64,
    /// The display name on the desk's address.
    from_name: Option<String>,
    desk_address: &'a str,
    to: &'a [String],
    in_reply_to: Option<String>,
    /// Oldest first; the newest [`MAX_REFERENCES`] are kept.
    references: Vec<String>,
    attachments: &'a [RelayedAttachment],
    rendered: Rendered,
}

fn build_relay(r: RelayMail<'_>) -> Result<OutboundMail, String> {
    let address: lettre::Address = r
        .desk_address
        .parse()
        .map_err(|e| format!("desk address {:?}: {e}", r.desk_address))?;
    let from = Mailbox::new(r.from_name.clone(), address.clone());
    let domain = r
        .desk_address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("localhost");
    let message_id = new_message_id(r.number, r.kind, domain);
    let mut b = lettre::Message::builder()
        .from(from)
        .reply_to(Mailbox::new(None, address))
        .subject(r.rendered.subject.clone())
        .message_id(Some(format!("<{message_id}>")))
        .date_now()
        .header(AutoResponseSuppress);
    for to in r.to {
        let mb: Mailbox = to.parse().map_err(|e| {
            format!(
                "recipient {:?}: {e}",
                reflect_line(to, REFLECTED_NAME_CHARS)
            )
        })?;
        b = b.to(mb);
    }
    let mut refs: Vec<&String> = r.references.iter().filter(|i| carried_id(i)).collect();
    refs.dedup();
    let skip = refs.len().saturating_sub(MAX_REFERENCES);
    let refs: Vec<String> = refs[skip..].iter().map(|i| format!("<{i}>")).collect();
    if let Some(id) = r.in_reply_to.as_deref().filter(|i| carried_id(i)) {
        b = b.in_reply_to(format!("<{id}>"));
    }
    if !refs.is_empty() {
        b = b.references(refs.join(" "));
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(r.rendered.text);
    let message = if r.attachments.is_empty() {
        b.singlepart(text)
    } else {
        let mut mixed = MultiPart::mixed().singlepart(text);
        for a in r.attachments {
            let ct = ContentType::parse(&a.content_type).unwrap_or(
                ContentType::parse("application/octet-stream").map_err(|e| e.to_string())?,
            );
            mixed = mixed.singlepart(Attachment::new(a.name.clone()).body(a.bytes.clone(), ct));
        }
        b.multipart(mixed)
    }
    .map_err(|e| format!("cannot build the mail: {e}"))?;
    let raw = message.formatted();
    if let Some(n) = longest_line(&raw).filter(|&n| n > MAX_LINE_OCTETS) {
        return Err(format!(
            "the composed mail has a line of {n} octets (RFC 5322 allows {MAX_LINE_OCTETS})"
        ));
    }
    Ok(OutboundMail {
        kind: r.kind.to_string(),
        from: r.desk_address.to_string(),
        rcpt: r.to.to_vec(),
        subject: r.rendered.subject,
        message_id,
        raw,
    })
}

impl Notifier {
    /// Whether `address` must never be shown to a customer: the
    /// deployment's own addresses, any desk's team and comment addresses.
    pub(super) fn is_internal_anywhere(&self, address: &str) -> bool {
        self.is_internal(address) || self.config.is_internal(address)
    }

    /// The mail for a reply on an existing ticket (`ev.ticket`).
    pub(super) fn compose_reply(&self, ev: &TicketEvent<'_>, state: &TicketState) -> Vec<Outgoing> {
        let parsed = ev.parsed;
        let who = correspondent(&self.config, &state.desk, parsed);
        let kind = match who {
            Correspondent::Team => "correspondence",
            _ => "requester_reply",
        };
        let suppressed = |reason: String| {
            vec![Outgoing::Suppressed {
                kind: kind.to_string(),
                reason,
            }]
        };
        if let Correspondent::Automated(reason) = &who {
            return suppressed(format!("not relayed: {reason}"));
        }
        let Some(sender) = parsed.requester() else {
            return suppressed("no sender address".to_string());
        };
        let sender_address = sender.address.to_ascii_lowercase();
        let desk_address = self.desk_address(ev.mailbox, &state.desk);
        let desk = self.config.desk(&state.desk);
        let title = desk
            .and_then(|d| d.title.clone())
            .unwrap_or_else(|| state.desk.clone());
        let author = sender
            .name
            .as_deref()
            .map(|n| reflect_line(n, REFLECTED_NAME_CHARS))
            .filter(|n| !n.is_empty());

        // Who gets it.
        let mut groups: Vec<Vec<String>> = Vec::new();
        let robot = |a: &str| {
            let probe = crate::parse::parse(format!("From: {a}\n\n").as_bytes());
            policy::no_reply_reason(&probe, &[]).is_some()
        };
        match who {
            Correspondent::Team => {
                // The customer side, each alone: never an internal address,
                // never the author, never a robot.
                let mut seen = Vec::new();
                for a in std::iter::once(&state.requester).chain(&state.recipients) {
                    let a = a.to_ascii_lowercase();
                    if a == sender_address
                        || (state.alert && a == state.requester)
                        || seen.contains(&a)
                        || self.is_internal_anywhere(&a)
                        || robot(&a)
                    {
                        continue;
                    }
                    seen.push(a.clone());
                    groups.push(vec![a]);
                }
            }
            _ => {
                let limits = &self.config.notify;
                let team: Vec<String> = self
                    .config
                    .desk_team(&state.desk)
                    .iter()
                    .filter(|t| t.contains('@'))
                    .map(|t| t.to_ascii_lowercase())
                    .collect();
                let mut to: Vec<String> = match (limits.relay_requester_replies_to, &state.owner) {
                    (RelayTo::None, _) => Vec::new(),
                    (RelayTo::Owner, Some(owner)) => vec![owner.clone()],
                    (RelayTo::Owner, None) => team,
                    (RelayTo::Team, owner) => team.into_iter().chain(owner.clone()).collect(),
                };
                if limits.relay_to_internal_recipients {
                    to.extend(
                        state
                            .recipients
                            .iter()
                            .filter(|r| self.is_internal_anywhere(r))
                            .cloned(),
                    );
                }
                // Watched mailboxes: mail to them would come back in.
                let watched: Vec<&str> = self
                    .config
                    .mailboxes
                    .iter()
                    .map(|m| m.address.as_str())
                    .collect();
                let mut group: Vec<String> = Vec::new();
                for a in to {
                    let a = a.to_ascii_lowercase();
                    // Never back to the author, nor into a watched mailbox.
                    if a == sender_address
                        || group.contains(&a)
                        || watched.iter().any(|w| w.eq_ignore_ascii_case(&a))
                        || a.eq_ignore_ascii_case(&desk_address)
                    {
                        continue;
                    }
                    group.push(a);
                }
                if !group.is_empty() {
                    groups.push(group);
                }
            }
        }
        if groups.is_empty() {
            return suppressed("nobody to relay to".to_string());
        }

        // What is relayed.
        let mut text = relay_text(parsed);
        if who == Correspondent::Team {
            // Command lines and internal notes never reach the customer:
            // only the text after a command block that was obeyed whole.
            let block = crate::commands::parse(&text);
            if block.has_commands() || block.comment {
                if !block.may_relay() {
                    return suppressed(
                        "commands or an internal note only: nothing for the customer".to_string(),
                    );
                }
                text = block.text;
            }
        }
        let text = reflect_text(&text, RELAYED_TEXT_CHARS);
        let (files, withheld) = match who {
            Correspondent::Team => attachments(
                parsed,
                ev.raw,
                self.config.notify.max_relayed_attachment_bytes,
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let listed: Vec<Value> = parsed
            .attachments
            .iter()
            .enumerate()
            .map(|(i, a)| {
                minijinja::context! {
                    name => a.name.as_deref().map(|n| reflect_line(n, REFLECTED_NAME_CHARS))
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| format!("attachment-{}", i + 1)),
                    size => human_size(a.size),
                }
            })
            .collect();
        let withheld: Vec<Value> = withheld
            .iter()
            .map(|(name, size)| minijinja::context! { name => name, size => human_size(*size) })
            .collect();

        // Threading: under the message replied to when it is of this
        // thread, else under the newest mail the customer side has seen.
        // Only the customer's messages and our customer-facing mail are
        // named to the customer; internal messages' IDs stay inside.
        let customer_seen = |m: &crate::store::ThreadMail| match (&m.from, &m.kind) {
            (Some(from), _) => !self.is_internal_anywhere(from),
            (None, Some(kind)) => matches!(kind.as_str(), "acknowledgement" | "correspondence"),
            (None, None) => false,
        };
        let (references, in_reply_to) = match who {
            Correspondent::Team => {
                let refs: Vec<String> = state
                    .thread
                    .iter()
                    .filter(|m| customer_seen(m))
                    .map(|m| m.message_id.clone())
                    .collect();
                let parent = parsed
                    .in_reply_to
                    .iter()
                    .find(|id| refs.contains(id))
                    .cloned()
                    .or_else(|| refs.last().cloned());
                (refs, parent)
            }
            _ => {
                let mut refs: Vec<String> = parsed.references.clone();
                refs.extend(parsed.message_id.clone());
                (refs, parsed.message_id.clone())
            }
        };

        let subject = reflect_line(&state.subject, REFLECTED_SUBJECT_CHARS);
        let from_name = match who {
            Correspondent::Team => Some(author.clone().unwrap_or_else(|| title.clone())),
            _ => Some(format!(
                "{} via {title}",
                author
                    .clone()
                    .unwrap_or_else(|| reflect_line(&sender_address, REFLECTED_NAME_CHARS))
            )),
        };
        let mut out = Vec::new();
        for group in groups {
            let ctx = minijinja::context! {
                ticket => minijinja::context! {
                    number => state.number,
                    tag => format_tag(&state.desk_tag, state.number),
                    subject => subject.clone(),
                    queue => state.queue.clone(),
                    status => state.status.as_str(),
                    owner => state.owner.clone(),
                    requester => state.requester.clone(),
                    requester_name => state.requester_name.as_deref().map(|n| reflect_line(n, REFLECTED_NAME_CHARS)),
                    desk => state.desk.clone(),
                },
                desk => minijinja::context! {
                    name => state.desk.clone(),
                    tag => state.desk_tag.clone(),
                    title => title.clone(),
                    address => desk_address.clone(),
                },
                message => minijinja::context! {
                    from => reflect_line(&sender_address, REFLECTED_NAME_CHARS),
                    subject => parsed.subject.as_deref().map(|s| reflect_line(s, REFLECTED_SUBJECT_CHARS)),
                    message_id => parsed.message_id.as_deref().map(|i| reflect_line(i, REFLECTED_ID_CHARS)),
                },
                relay => minijinja::context! {
                    author => author.clone().unwrap_or_else(|| match who {
                        Correspondent::Team => title.clone(),
                        _ => reflect_line(&sender_address, REFLECTED_NAME_CHARS),
                    }),
                    text => text.clone(),
                    attachments => listed.clone(),
                    withheld => withheld.clone(),
                },
                recipients => group.clone(),
            };
            let rendered = match self.templates.render(kind, &state.desk, &state.queue, &ctx) {
                Ok(r) => r,
                Err(p) => {
                    out.push(Outgoing::Suppressed {
                        kind: kind.to_string(),
                        reason: format!("template: {p}"),
                    });
                    continue;
                }
            };
            let mail = build_relay(RelayMail {
                kind,
                number: state.number,
                from_name: from_name.clone(),
                desk_address: &desk_address,
                to: &group,
                in_reply_to: in_reply_to.clone(),
                references: references.clone(),
                attachments: &files,
                rendered,
            });
            out.push(match mail {
                Ok(m) => Outgoing::Mail(m),
                Err(reason) => Outgoing::Suppressed {
                    kind: kind.to_string(),
                    reason,
                },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::classify::Classifier;
    use crate::config::Config;
    use crate::parse::parse;
    use crate::store::{Status, ThreadMail};

    fn notifier() -> (Notifier, Arc<Config>) {
        let config = Arc::new(Config::load(None).expect("built-in config"));
        (super::super::notifier(&config).expect("templates"), config)
    }

    fn state() -> TicketState {
        TicketState {
            number: 1042,
            desk: "isda".into(),
            desk_tag: "ISDA".into(),
            queue: "Customer-Support".into(),
            status: Status::Open,
            requester: "ann@example.org".into(),
            requester_name: Some("Ann".into()),
            subject: "Portal down".into(),
            mailbox: "isda-support".into(),
            owner: None,
            first_response_at: None,
            recipients: vec![
                "ann@example.org".into(),
                "bob@partner.example".into(),
                "isda-pipeline@example.edu".into(),
                "mgarcia@example.edu".into(),
            ],
            alert: false,
            thread: vec![
                ThreadMail {
                    message_id: "first@example.org".into(),
                    from: Some("ann@example.org".into()),
                    kind: None,
                },
                ThreadMail {
                    message_id: "ack@example.edu".into(),
                    from: None,
                    kind: Some("acknowledgement".into()),
                },
                ThreadMail {
                    message_id: "notice@example.edu".into(),
                    from: None,
                    kind: Some("queue_notification".into()),
                },
                ThreadMail {
                    message_id: "internal@mail.example.edu".into(),
                    from: Some("tkim@example.edu".into()),
                    kind: None,
                },
            ],
        }
    }

    fn compose(raw: &str, state: &TicketState) -> Vec<Outgoing> {
        let (n, config) = notifier();
        let parsed = parse(raw.as_bytes());
        let mailbox = config.mailbox("isda-support").expect("mailbox").clone();
        let decision = Classifier::load(&config)
            .expect("rules")
            .classify(&parsed, &mailbox, 0, &config);
        let ev = TicketEvent {
            created: false,
            number: state.number,
            mailbox: "isda-support",
            decision: &decision,
            parsed: &parsed,
            recent_acks: 0,
            recent_notified_sender: 0,
            recent_notified_alert: 0,
            now: 0,
            raw: raw.as_bytes(),
            ticket: Some(state),
        };
        n.compose(&ev)
    }

    fn mails(out: &[Outgoing]) -> Vec<&OutboundMail> {
        out.iter()
            .filter_map(|o| match o {
                Outgoing::Mail(m) => Some(m),
                Outgoing::Suppressed { .. } => None,
            })
            .collect()
    }

    fn head(m: &OutboundMail) -> String {
        let raw = String::from_utf8_lossy(&m.raw).to_string();
        raw.split("\r\n\r\n").next().unwrap_or("").to_string()
    }

    const TEAM_REPLY: &str = "From: Jane Lee <jlee@example.edu>\nTo: isda-support@example.edu\nCc: isda-integrators@example.edu\nSubject: Re: [ISDA #1042] Portal down\nMessage-ID: <reply@mail.example.edu>\nIn-Reply-To: <ack@example.edu>\nReferences: <first@example.org> <ack@example.edu>\n\nWe restarted the portal.\n";

    #[test]
    fn correspondence_goes_to_the_customer_side_alone_from_the_desk() {
        let out = compose(TEAM_REPLY, &state());
        let mails = mails(&out);
        let rcpts: Vec<&[String]> = mails.iter().map(|m| m.rcpt.as_slice()).collect();
        assert_eq!(
            rcpts,
            vec![
                &["ann@example.org".to_string()][..],
                &["bob@partner.example".to_string()][..]
            ],
            "{out:?}"
        );
        for m in &mails {
            assert_eq!(m.kind, "correspondence");
            let head = head(m);
            assert!(
                head.contains("From: \"Jane Lee\" <isda-support@example.edu>"),
                "{head}"
            );
            assert!(
                head.contains("Reply-To: isda-support@example.edu"),
                "{head}"
            );
            assert!(head.contains("In-Reply-To: <ack@example.edu>"), "{head}");
            assert!(
                head.contains("<first@example.org> <ack@example.edu>"),
                "{head}"
            );
            assert!(m.subject.contains("[ISDA #1042]"), "{}", m.subject);
            for internal in [
                "jlee@",
                "tkim@",
                "mgarcia@",
                "isda-pipeline@",
                "isda-integrators@",
                "mail.example.edu",
                "notice@",
            ] {
                assert!(!head.contains(internal), "{internal} in {head}");
            }
            assert!(String::from_utf8_lossy(&m.raw).contains("We restarted the portal."));
            assert!(!head.contains("Auto-Submitted"), "{head}");
        }
    }

    #[test]
    fn requester_reply_goes_to_the_team_or_the_owner_and_internal_recipients() {
        let raw = "From: Ann <ann@example.org>\nTo: isda-support@example.edu\nSubject: Re: [ISDA #1042] Portal down\nMessage-ID: <r2@example.org>\nIn-Reply-To: <c1@example.edu>\n\nStill down here.\n";
        let out = compose(raw, &state());
        let mails = mails(&out);
        assert_eq!(mails.len(), 1, "{out:?}");
        assert_eq!(mails[0].kind, "requester_reply");
        assert_eq!(
            mails[0].rcpt,
            vec![
                "jlee@example.edu",
                "mgarcia@example.edu",
                "tkim@example.edu",
                "isda-pipeline@example.edu"
            ]
        );
        let head = head(mails[0]);
        assert!(head.contains("In-Reply-To: <r2@example.org>"), "{head}");
        assert!(String::from_utf8_lossy(&mails[0].raw).contains("Still down here."));
        // With an owner: the owner, and still the internal recipients.
        let mut owned = state();
        owned.owner = Some("tkim@example.edu".into());
        let out = compose(raw, &owned);
        let mails = super::tests::mails(&out);
        assert_eq!(
            mails[0].rcpt,
            vec![
                "tkim@example.edu",
                "isda-pipeline@example.edu",
                "mgarcia@example.edu"
            ]
        );
    }

    #[test]
    fn the_customer_gets_neither_quoted_history_nor_commands_nor_notes() {
        let body = |text: &str| {
            format!(
                "From: Jane Lee <jlee@example.edu>\nTo: isda-support@example.edu\nSubject: Re: [ISDA #1042] Portal down\nMessage-ID: <c9@example.edu>\nIn-Reply-To: <ack@example.edu>\n\n{text}"
            )
        };
        let quoted = body(
            "/take\n/queue ProductionDefect\n\nWe are on it.\n\nOn Mon, 23 Nov 2026 at 10:00, Ann <ann@example.org> wrote:\n> internal: ask dba-team@example.edu\n",
        );
        let out = compose(&quoted, &state());
        let sent = mails(&out);
        assert_eq!(sent.len(), 2, "{out:?}");
        for m in &sent {
            let text = String::from_utf8_lossy(&m.raw);
            assert!(text.contains("We are on it."), "{text}");
            assert!(!text.contains("/take"), "{text}");
            assert!(!text.contains("/queue"), "{text}");
            assert!(!text.contains("dba-team"), "{text}");
        }
        for only in [
            "/take\n",
            "/comment\nthe customer is difficult\n",
            "/tkae\nHello\n",
        ] {
            let out = compose(&body(only), &state());
            assert!(mails(&out).is_empty(), "{only:?}: {out:?}");
        }
    }

    #[test]
    fn robots_are_neither_relayed_nor_relayed_to() {
        let auto = "From: Jane Lee <jlee@example.edu>\nAuto-Submitted: auto-replied\nSubject: Out of office: [ISDA #1042]\n\nI am away.\n";
        let out = compose(auto, &state());
        assert!(mails(&out).is_empty(), "{out:?}");
        assert!(
            matches!(&out[..], [Outgoing::Suppressed { reason, .. }] if reason.contains("Auto-Submitted")),
            "{out:?}"
        );
        let mut s = state();
        s.requester = "no-reply@vendor.example".into();
        s.recipients = vec!["mailer-daemon@partner.example".into()];
        let out = compose(TEAM_REPLY, &s);
        assert!(mails(&out).is_empty(), "{out:?}");
    }

    #[test]
    fn attachments_up_to_the_limit_are_relayed_larger_ones_listed() {
        let big = "A".repeat(4000);
        let raw = format!(
            "From: Jane Lee <jlee@example.edu>\nSubject: Re: [ISDA #1042]\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nSee attached.\n--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename=small.txt\n\nsmall file\n--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=big.bin\nContent-Transfer-Encoding: base64\n\n{}\n--b--\n",
            big
        );
        let (n, config) = notifier();
        let mut c = (*config).clone();
        c.notify.max_relayed_attachment_bytes = 1000;
        let parsed = parse(raw.as_bytes());
        let (sent, held) = attachments(
            &parsed,
            raw.as_bytes(),
            c.notify.max_relayed_attachment_bytes,
        );
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].name, "small.txt");
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0, "big.bin");
        drop(n);
    }

    #[test]
    fn hostile_names_and_lines_stay_bounded() {
        let name = "N".repeat(5000);
        let line = "x".repeat(10_000);
        let raw = format!(
            "From: {name}\r <jlee@example.edu>\nSubject: Re: [ISDA #1042]\nIn-Reply-To: <{}>\n\n{line}\n{}tail\n",
            "i".repeat(3000),
            '\u{202e}'
        );
        let mut s = state();
        s.subject = "S\r\nBcc: evil@example.org ".repeat(100);
        let out = compose(&raw, &s);
        let mails = mails(&out);
        assert_eq!(mails.len(), 2, "{out:?}");
        for m in mails {
            assert!(longest_line(&m.raw).is_some_and(|n| n <= MAX_LINE_OCTETS));
            let head = head(m);
            assert!(!head.contains("\r\nBcc:"), "{head}");
            assert!(!String::from_utf8_lossy(&m.raw).contains('\u{202e}'));
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(10), "10 bytes");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(40 * 1024 * 1024), "40.0 MiB");
    }
}
