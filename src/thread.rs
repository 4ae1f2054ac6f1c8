//! Thread: which existing ticket a message may belong to.
//!
//! Pure. It reads the case tag in the subject (`[ISDA #1042]`) and the
//! Message-IDs the message refers to; the store resolves these keys against what
//! it holds ([`Found`]), inside the same transaction that records the message,
//! and [`decide`] says where the message goes and why ([`Threading`]): a
//! reference joins whoever sends it, a tag alone only a participant's mail
//! (else a new ticket linked to the tagged one), a resolved ticket reopens
//! within the reopen window (else a new linked ticket).

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;

use crate::parse::ParsedMessage;

/// At most this many Message-IDs of a message's In-Reply-To are used.
pub const MAX_IN_REPLY_TO: usize = 8;
/// At most this many of a message's References (the newest) are used. A thread
/// is recognised by its latest messages; a hostile References header of a
/// million entries must cost no more than this.
pub const MAX_REFERENCES: usize = 50;
/// At most this many case tags of one subject are used.
pub const MAX_TAGS: usize = 8;

/// A case tag found in a subject: the desk tag as configured, and the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub desk_tag: String,
    pub number: i64,
}

/// What a message says about its thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadKeys {
    /// Case tags of our desks, in subject order. A tag names a ticket only
    /// within its own desk: `[DB #1000]` never reaches an ISDA ticket 1000.
    pub tagged: Vec<Tag>,
    /// Message-IDs referred to, most specific first: In-Reply-To, then
    /// References from the newest to the oldest; without repeats, bounded by
    /// [`MAX_IN_REPLY_TO`] and [`MAX_REFERENCES`].
    pub referenced: Vec<String>,
}

impl ThreadKeys {
    /// Whether a tag of this desk names this ticket.
    pub fn tags(&self, desk_tag: &str, number: i64) -> bool {
        self.tagged
            .iter()
            .any(|t| t.number == number && t.desk_tag.eq_ignore_ascii_case(desk_tag))
    }
}

fn tag_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // `[ISDA #1042]`, `[isda#1042]`, `[ ISDA  # 1042 ]`.
        Regex::new(r"\[\s*([A-Za-z][A-Za-z0-9_.-]*)\s*#\s*(\d{1,18})\s*\]")
            .unwrap_or_else(|e| unreachable!("static regex: {e}"))
    })
}

/// The thread keys of a message, given the desk tags this deployment owns.
pub fn keys(msg: &ParsedMessage, desk_tags: &[String]) -> ThreadKeys {
    let tagged = msg
        .subject
        .as_deref()
        .map(|s| desk_tags_in(s, desk_tags))
        .unwrap_or_default();
    let candidates = msg
        .in_reply_to
        .iter()
        .take(MAX_IN_REPLY_TO)
        .chain(msg.references.iter().rev().take(MAX_REFERENCES));
    let mut seen: HashSet<&str> = HashSet::new();
    let mut referenced: Vec<String> = Vec::new();
    for id in candidates {
        if !id.is_empty() && seen.insert(id.as_str()) {
            referenced.push(id.clone());
        }
    }
    ThreadKeys { tagged, referenced }
}

/// The case tags of the given desks found in a subject, in order, without repeats.
pub fn desk_tags_in(subject: &str, desk_tags: &[String]) -> Vec<Tag> {
    let mut out: Vec<Tag> = Vec::new();
    for c in tag_regex().captures_iter(subject) {
        let Some(desk_tag) = desk_tags.iter().find(|t| t.eq_ignore_ascii_case(&c[1])) else {
            continue;
        };
        let Ok(number) = c[2].parse::<i64>() else {
            continue;
        };
        let tag = Tag {
            desk_tag: desk_tag.clone(),
            number,
        };
        if !out.contains(&tag) {
            out.push(tag);
        }
        if out.len() >= MAX_TAGS {
            break;
        }
    }
    out
}

/// Ticket numbers in case tags of the given desks found in a subject.
pub fn tags_in(subject: &str, desk_tags: &[String]) -> Vec<i64> {
    desk_tags_in(subject, desk_tags)
        .into_iter()
        .map(|t| t.number)
        .collect()
}

/// The case tag as shown in subjects: `[ISDA #1042]`.
pub fn format_tag(desk_tag: &str, number: i64) -> String {
    format!("[{desk_tag} #{number}]")
}

/// What the store holds of a ticket that a thread key names: enough to
/// decide whether a message may join it (see [`decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub number: i64,
    /// Its desk's name (whose team are participants).
    pub desk: String,
    /// The requester's address.
    pub requester: String,
    /// Its recipient list (lower-cased).
    pub recipients: Vec<String>,
    /// When it was resolved (ms since the epoch); `None` while it is not.
    pub resolved_at: Option<i64>,
}

/// The tickets a message's keys name, as the store resolved them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The open ticket of the message's alert key.
    pub alert: Option<i64>,
    /// The ticket of the most specific referenced Message-ID, with that ID.
    pub referenced: Option<(String, Candidate)>,
    /// The tickets the subject's case tags name (existing, of the tag's own
    /// desk), in subject order.
    pub tagged: Vec<Candidate>,
}

/// Who a sender is to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Requester,
    Recipient,
    Team,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Recipient => "recipient",
            Role::Team => "team",
        }
    }
}

/// Why a message joins a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The open ticket of the same alert key.
    Alert,
    /// In-Reply-To or References name this message (ours or the customer's).
    Reference(String),
    /// The subject's case tag, and the sender is a participant.
    Tag { sender: String, role: Role },
}

/// Why a new ticket links to an existing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkReason {
    /// The subject carried the ticket's tag, but the sender is not one of
    /// its participants (and no reference named it).
    TagRefused { sender: Option<String> },
    /// A reply to a ticket resolved longer ago than the reopen window.
    AfterReopenWindow { resolved_at: i64 },
}

impl LinkReason {
    /// The stored name of the link's reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            LinkReason::TagRefused { .. } => "tag refused",
            LinkReason::AfterReopenWindow { .. } => "after reopen window",
        }
    }
}

/// Where a message goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Threading {
    /// Onto this ticket; `reopen`: it was resolved (within the window) and
    /// is open again.
    Join { ticket: i64, via: Via, reopen: bool },
    /// A new ticket, linked to an existing one when a key named it.
    New { link: Option<(i64, LinkReason)> },
}

impl Threading {
    /// The decision and its reason, one line, for history and `classify`.
    pub fn reason(&self) -> String {
        match self {
            Threading::Join {
                ticket,
                via,
                reopen,
            } => {
                let how = match via {
                    Via::Alert => "joined by alert key".to_string(),
                    Via::Reference(id) => format!("joined by reference <{id}>"),
                    Via::Tag { sender, role } => {
                        format!(
                            "joined by tag with participant {sender} ({})",
                            role.as_str()
                        )
                    }
                };
                if *reopen {
                    format!("{how}: ticket #{ticket}, reopened")
                } else {
                    format!("{how}: ticket #{ticket}")
                }
            }
            Threading::New { link: None } => "new ticket: no key names a ticket".to_string(),
            Threading::New {
                link: Some((other, LinkReason::TagRefused { sender })),
            } => format!(
                "tag refused: sender {} is not a participant of ticket #{other} -> new ticket linked",
                sender.as_deref().unwrap_or("(none)")
            ),
            Threading::New {
                link: Some((other, LinkReason::AfterReopenWindow { .. })),
            } => format!(
                "new ticket after reopen window: ticket #{other} was resolved too long ago -> new ticket linked"
            ),
        }
    }
}

/// Who `sender` is to `c`: requester, on its recipient list (compared
/// without case), or in its desk's team (`in_team`: the configuration's
/// rule, addresses or whole domains).
pub fn participant(c: &Candidate, sender: &str, in_team: bool) -> Option<Role> {
    if c.requester.eq_ignore_ascii_case(sender) {
        Some(Role::Requester)
    } else if c.recipients.iter().any(|r| r.eq_ignore_ascii_case(sender)) {
        Some(Role::Recipient)
    } else if in_team {
        Some(Role::Team)
    } else {
        None
    }
}

/// Where a message goes, given what its keys name. In order: the open
/// ticket of its alert; the ticket a reference names; the tagged ticket when
/// the `sender` (its From address) is a participant (`is_team(desk, sender)`
/// says whether it is in a desk's team), else a new ticket linked to it. A resolved ticket is reopened
/// within `reopen_window_ms` of its resolution; later, a new ticket links to
/// it instead.
pub fn decide(
    found: &Found,
    sender: Option<&str>,
    is_team: &dyn Fn(&str, &str) -> bool,
    now: i64,
    reopen_window_ms: i64,
) -> Threading {
    if let Some(ticket) = found.alert {
        return Threading::Join {
            ticket,
            via: Via::Alert,
            reopen: false,
        };
    }
    let (candidate, via) = if let Some((id, c)) = &found.referenced {
        (c, Via::Reference(id.clone()))
    } else if let Some(first) = found.tagged.first() {
        // The first tagged ticket the sender takes part in; else refused,
        // linked to the first tagged.
        let joined = sender.and_then(|s| {
            found.tagged.iter().find_map(|c| {
                participant(c, s, is_team(&c.desk, s)).map(|role| {
                    (
                        c,
                        Via::Tag {
                            sender: s.to_ascii_lowercase(),
                            role,
                        },
                    )
                })
            })
        });
        match joined {
            Some(j) => j,
            None => {
                return Threading::New {
                    link: Some((
                        first.number,
                        LinkReason::TagRefused {
                            sender: sender.map(str::to_ascii_lowercase),
                        },
                    )),
                };
            }
        }
    } else {
        return Threading::New { link: None };
    };
    match candidate.resolved_at {
        None => Threading::Join {
            ticket: candidate.number,
            via,
            reopen: false,
        },
        Some(at) if now.saturating_sub(at) <= reopen_window_ms => Threading::Join {
            ticket: candidate.number,
            via,
            reopen: true,
        },
        Some(at) => Threading::New {
            link: Some((
                candidate.number,
                LinkReason::AfterReopenWindow { resolved_at: at },
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn tags() -> Vec<String> {
        vec!["ISDA".to_string(), "DB".to_string()]
    }

    #[test]
    fn tag_forms() {
        let check = |s: &str, want: &[i64]| assert_eq!(tags_in(s, &tags()), want, "{s}");
        check("Re: [ISDA #1042] Portal down", &[1042]);
        check("RE: [isda#7] x", &[7]);
        check("[ DB # 12 ] y", &[12]);
        check("[OTHER #5] not ours", &[]);
        check("[ISDA #] nothing", &[]);
        check("ISDA #5 without brackets", &[]);
        check("Fwd: [ISDA #1] and [DB #2]", &[1, 2]);
        check("[ISDA #99999999999999999999] overflow", &[]);
    }

    #[test]
    fn references_order() {
        let p = parse(
            b"From: a@b.c\nSubject: Re: [ISDA #3] x\nIn-Reply-To: <c@x>\nReferences: <a@x> <b@x> <c@x>\n\nhi\n",
        );
        let k = keys(&p, &tags());
        assert!(k.tags("ISDA", 3) && k.tags("isda", 3));
        assert!(
            !k.tags("DB", 3),
            "a tag names a ticket only within its desk"
        );
        assert_eq!(k.referenced, vec!["c@x", "b@x", "a@x"]);
    }

    #[test]
    fn tags_keep_their_desk() {
        let t = desk_tags_in("Re: [db #1000] and [ISDA #7] [DB #1000]", &tags());
        assert_eq!(
            t,
            vec![
                Tag {
                    desk_tag: "DB".to_string(),
                    number: 1000
                },
                Tag {
                    desk_tag: "ISDA".to_string(),
                    number: 7
                },
            ]
        );
    }

    #[test]
    fn hostile_references_are_bounded() {
        let refs: Vec<String> = (0..200_000).map(|i| format!("<r{i}@x>")).collect();
        let raw = format!(
            "From: a@b.c\nSubject: x\nIn-Reply-To: <r199999@x>\nReferences: {}\n\nhi\n",
            refs.join(" ")
        );
        let p = parse(raw.as_bytes());
        let k = keys(&p, &tags());
        assert_eq!(
            k.referenced.len(),
            MAX_REFERENCES,
            "the newest 50, repeats removed"
        );
        assert_eq!(k.referenced[0], "r199999@x");
        assert_eq!(k.referenced[1], "r199998@x");
        assert_eq!(k.referenced[MAX_REFERENCES - 1], "r199950@x");
        let many_tags = format!("Subject: {}", "[ISDA #1] ".repeat(10_000));
        assert_eq!(desk_tags_in(&many_tags, &tags()).len(), 1);
    }

    #[test]
    fn format() {
        assert_eq!(format_tag("ISDA", 1042), "[ISDA #1042]");
        assert_eq!(tags_in(&format_tag("ISDA", 1042), &tags()), vec![1042]);
    }

    fn cand(number: i64, resolved_at: Option<i64>) -> Candidate {
        Candidate {
            number,
            desk: "isda".to_string(),
            requester: "Ann@C.example".to_string(),
            recipients: vec!["map-support@example.edu".to_string()],
            resolved_at,
        }
    }

    const DAY: i64 = 86_400_000;

    fn decide_as(found: &Found, sender: Option<&str>, now: i64) -> Threading {
        let team = |desk: &str, sender: &str| {
            desk == "isda" && sender.eq_ignore_ascii_case("jlee@example.edu")
        };
        decide(found, sender, &team, now, 30 * DAY)
    }

    #[test]
    fn tag_alone_needs_a_participant() {
        let found = Found {
            tagged: vec![cand(1000, None)],
            ..Found::default()
        };
        for (who, role) in [
            ("ann@c.example", Role::Requester),
            ("MAP-support@example.edu", Role::Recipient),
            ("jlee@example.edu", Role::Team),
        ] {
            match decide_as(&found, Some(who), 0) {
                Threading::Join {
                    ticket: 1000,
                    via: Via::Tag { role: r, .. },
                    reopen: false,
                } => assert_eq!(r, role, "{who}"),
                other => panic!("{who}: {other:?}"),
            }
        }
        let stranger = decide_as(&found, Some("eve@evil.example"), 0);
        assert_eq!(
            stranger,
            Threading::New {
                link: Some((
                    1000,
                    LinkReason::TagRefused {
                        sender: Some("eve@evil.example".to_string())
                    }
                ))
            }
        );
        assert!(
            stranger.reason().starts_with("tag refused"),
            "{}",
            stranger.reason()
        );
        assert!(matches!(
            decide_as(&found, None, 0),
            Threading::New {
                link: Some((1000, _))
            }
        ));
    }

    #[test]
    fn the_first_tagged_ticket_the_sender_takes_part_in() {
        let mut other = cand(999, None);
        other.requester = "someone@else.example".to_string();
        other.recipients.clear();
        let found = Found {
            tagged: vec![other, cand(1000, None)],
            ..Found::default()
        };
        assert!(matches!(
            decide_as(&found, Some("ann@c.example"), 0),
            Threading::Join { ticket: 1000, .. }
        ));
        assert!(matches!(
            decide_as(&found, Some("eve@evil.example"), 0),
            Threading::New {
                link: Some((999, LinkReason::TagRefused { .. }))
            }
        ));
    }

    #[test]
    fn a_reference_needs_no_participant() {
        let found = Found {
            referenced: Some(("ack@example.edu".to_string(), cand(1000, None))),
            tagged: vec![cand(1001, None)],
            ..Found::default()
        };
        let t = decide_as(&found, Some("eve@evil.example"), 0);
        assert_eq!(
            t,
            Threading::Join {
                ticket: 1000,
                via: Via::Reference("ack@example.edu".to_string()),
                reopen: false
            }
        );
        assert_eq!(
            t.reason(),
            "joined by reference <ack@example.edu>: ticket #1000"
        );
    }

    #[test]
    fn resolved_reopens_within_the_window_only() {
        let now = 100 * DAY;
        let found = |at| Found {
            referenced: Some(("m@x".to_string(), cand(1000, Some(at)))),
            ..Found::default()
        };
        assert!(matches!(
            decide_as(&found(now - 29 * DAY), Some("ann@c.example"), now),
            Threading::Join {
                ticket: 1000,
                reopen: true,
                ..
            }
        ));
        assert_eq!(
            decide_as(&found(now - 40 * DAY), Some("ann@c.example"), now),
            Threading::New {
                link: Some((
                    1000,
                    LinkReason::AfterReopenWindow {
                        resolved_at: now - 40 * DAY
                    }
                ))
            }
        );
        // The alert key names only unresolved tickets, and comes first.
        let alert = Found {
            alert: Some(7),
            ..found(0)
        };
        assert!(matches!(
            decide_as(&alert, None, now),
            Threading::Join {
                ticket: 7,
                via: Via::Alert,
                ..
            }
        ));
        assert_eq!(
            decide_as(&Found::default(), None, now),
            Threading::New { link: None }
        );
    }
}
