//! Steering a ticket: applying commands (`/take`, `/queue ProductionDefect`,
//! `/resolve`, ...) through the store's primitives, inside the caller's
//! transaction. [`apply`] is the one place commands change a ticket: the
//! mail path ([`by_mail`]) and, later, `triaged tickets set` go through it,
//! so both make the same changes and the same events.
//!
//! Every command, applied or refused, is a `command` event with the actor
//! and the outcome (`applied` with what it did, or `refused` with why). A
//! refused command changes nothing.

use serde_json::json;

use crate::classify;
use crate::commands::{self, Command, CommandBlock, Refused, SHOWN_LINE, WantedStatus};
use crate::config::{Config, QueueConfig};
use crate::parse::{ParsedMessage, domain_of};
use crate::priority::Kind;
use crate::store::{Routing, RoutingUpdate, Status, StoreError, Tx};
use crate::text::truncate;

/// The longest internal note kept in a `comment` event, in characters.
pub const MAX_NOTE_CHARS: usize = 20_000;

/// A queue transfer that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub from_queue: String,
    pub to_queue: String,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steered {
    /// The commands applied, as canonical lines.
    pub applied: Vec<String>,
    /// The commands refused, and why.
    pub refused: Vec<Refused>,
    /// The last queue transfer applied (the transfer notice and the new
    /// queue's notification are about it).
    pub transfer: Option<Transfer>,
}

/// Applies `commands` to ticket `number` in order, as `actor` (a lower-case
/// address for `/take`; any name for the history). Each is recorded as a
/// `command` event; a refused one changes nothing.
pub async fn apply(
    tx: &mut Tx,
    config: &Config,
    number: i64,
    commands: &[Command],
    actor: &str,
) -> Result<Steered, StoreError> {
    let mut out = Steered::default();
    for command in commands {
        let line = truncate(&command.to_string(), SHOWN_LINE);
        match one(tx, config, number, command, actor, &mut out).await? {
            Ok(detail) => {
                tx.event_by(
                    number,
                    "command",
                    actor,
                    &json!({"command": line, "result": "applied", "detail": detail}),
                )
                .await?;
                out.applied.push(line);
            }
            Err(reason) => {
                tx.event_by(
                    number,
                    "command",
                    actor,
                    &json!({"command": line, "result": "refused", "reason": reason}),
                )
                .await?;
                out.refused.push(Refused { line, reason });
            }
        }
    }
    Ok(out)
}

/// Records an internal note on ticket `number` (a `comment` event; the
/// mail to the team is composed from the same text by `notify`).
pub async fn note(
    tx: &mut Tx,
    number: i64,
    actor: &str,
    text: &str,
    message_id: Option<&str>,
    evidence: Option<&str>,
) -> Result<(), StoreError> {
    tx.event_by(
        number,
        "comment",
        actor,
        &json!({
            "text": truncate(text, MAX_NOTE_CHARS),
            "message_id": message_id,
            "authenticated": evidence,
        }),
    )
    .await
}

/// A configured queue named by a `/queue` argument: exactly, else ignoring
/// case, spaces, `-` and `_` (`production defect` is `ProductionDefect`).
pub fn find_queue<'a>(config: &'a Config, name: &str) -> Option<&'a QueueConfig> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = norm(name);
    config
        .queues
        .iter()
        .find(|q| q.name.get_ref() == name)
        .or_else(|| {
            config
                .queues
                .iter()
                .find(|q| !wanted.is_empty() && norm(q.name.get_ref()) == wanted)
        })
}

fn store_status(s: WantedStatus) -> Status {
    match s {
        WantedStatus::Open => Status::Open,
        WantedStatus::Stalled => Status::Stalled,
        WantedStatus::Resolved => Status::Resolved,
    }
}

/// Recomputes priority and due time for `routing` with `queue`, `kind` and
/// its urgency and impact (kept as they are: a transfer never silently
/// lowers them), the way `classify` does for a new ticket, and stores them.
async fn reassess(
    tx: &mut Tx,
    config: &Config,
    number: i64,
    r: &Routing,
    queue: &str,
    kind: Kind,
) -> Result<serde_json::Value, StoreError> {
    let a = classify::assess(
        config,
        &r.desk,
        queue,
        kind,
        r.urgency,
        r.impact,
        r.created_at,
    );
    tx.set_routing(
        number,
        &RoutingUpdate {
            queue,
            kind,
            urgency: a.resolved.urgency,
            impact: a.resolved.impact,
            priority: a.resolved.priority,
            due_at: a.due_ms,
        },
    )
    .await?;
    Ok(json!({
        "queue": queue,
        "kind": kind,
        "urgency": a.resolved.urgency,
        "impact": a.resolved.impact,
        "priority": a.resolved.priority,
        "due_at": a.due_ms,
        "explanation": a.explanation,
    }))
}

/// Re-weighs ticket `number` as `r` with `kind` in its queue (priority
/// and due time recomputed), records it as a `what` event, and says what
/// it became.
#[allow(clippy::too_many_arguments)]
async fn reweigh(
    tx: &mut Tx,
    config: &Config,
    number: i64,
    actor: &str,
    r: &Routing,
    kind: Kind,
    what: &str,
    value: &(dyn std::fmt::Display + Sync),
) -> Result<Result<String, String>, StoreError> {
    let detail = reassess(tx, config, number, r, &r.queue, kind).await?;
    tx.event_by(number, what, actor, &detail).await?;
    Ok(Ok(format!(
        "{what} {value}, priority {}",
        detail["priority"].as_str().unwrap_or("")
    )))
}

/// One command: `Ok(what it did)` or `Err(why it was refused)`.
async fn one(
    tx: &mut Tx,
    config: &Config,
    number: i64,
    command: &Command,
    actor: &str,
    out: &mut Steered,
) -> Result<Result<String, String>, StoreError> {
    let Some(r) = tx.routing(number).await? else {
        return Ok(Err(format!("there is no ticket {number}")));
    };
    let team_member = |a: &str| config.is_team_member(&r.desk, a);
    Ok(match command {
        Command::Take => {
            if !team_member(actor) {
                Err(format!(
                    "only a member of desk {}'s team can take a ticket",
                    r.desk
                ))
            } else {
                tx.set_owner(number, Some(actor), actor).await?;
                Ok(format!("owner {}", actor.to_ascii_lowercase()))
            }
        }
        Command::Owner(a) => {
            if !team_member(a) {
                Err(format!(
                    "{} is not a member of desk {}'s team",
                    truncate(a, 100),
                    r.desk
                ))
            } else {
                tx.set_owner(number, Some(a), actor).await?;
                Ok(format!("owner {}", a.to_ascii_lowercase()))
            }
        }
        Command::Queue(name) => match find_queue(config, name) {
            None => {
                let known: Vec<&str> = config
                    .queues
                    .iter()
                    .filter(|q| q.desk.get_ref() == &r.desk)
                    .map(|q| q.name.get_ref().as_str())
                    .collect();
                Err(format!(
                    "there is no queue {:?} (desk {}'s queues: {})",
                    truncate(name, 100),
                    r.desk,
                    known.join(", ")
                ))
            }
            Some(q) if q.desk.get_ref() != &r.desk => Err(format!(
                "queue {} belongs to desk {}, not {}: tickets do not move between desks",
                q.name.get_ref(),
                q.desk.get_ref(),
                r.desk
            )),
            Some(q) if q.name.get_ref() == &r.queue => Ok(format!("already in queue {}", r.queue)),
            Some(q) => {
                let to = q.name.get_ref().clone();
                // The new queue's default kind, where it names one.
                let kind = q
                    .default_kind
                    .as_ref()
                    .and_then(|k| k.get_ref().parse::<Kind>().ok())
                    .unwrap_or(r.kind);
                let mut detail = reassess(tx, config, number, &r, &to, kind).await?;
                detail["from"] = json!(r.queue);
                detail["to"] = json!(to);
                tx.event_by(number, "transfer", actor, &detail).await?;
                out.transfer = Some(Transfer {
                    from_queue: r.queue.clone(),
                    to_queue: to.clone(),
                });
                Ok(format!("transferred from {} to {to}", r.queue))
            }
        },
        Command::Kind(kind) => reweigh(tx, config, number, actor, &r, *kind, "kind", kind).await?,
        Command::Urgency(u) => {
            let r2 = Routing {
                urgency: Some(*u),
                ..r.clone()
            };
            reweigh(tx, config, number, actor, &r2, r.kind, "urgency", u).await?
        }
        Command::Impact(i) => {
            let r2 = Routing {
                impact: Some(*i),
                ..r.clone()
            };
            reweigh(tx, config, number, actor, &r2, r.kind, "impact", i).await?
        }
        Command::RecipientsAdd(list) => {
            tx.add_recipients(number, list).await?;
            tx.event_by(number, "recipients", actor, &json!({"added": list}))
                .await?;
            Ok(format!("added {}", list.join(", ")))
        }
        Command::RecipientsRemove(list) => {
            let removed = tx.remove_recipients(number, list).await?;
            tx.event_by(
                number,
                "recipients",
                actor,
                &json!({"removed": list, "were_on_the_list": removed}),
            )
            .await?;
            Ok(format!("removed {removed} of {}", list.len()))
        }
        Command::Status(wanted) => {
            let to = store_status(*wanted);
            if r.status == to {
                Ok(format!("already {}", to.as_str()))
            } else {
                let reason = format!("command {command}");
                tx.move_status(number, r.status, to, actor, &reason).await?;
                Ok(format!("{} -> {}", r.status.as_str(), to.as_str()))
            }
        }
        Command::Comment => Ok("the text is an internal note".to_string()),
    })
}

/// A ticket's routing as a [`classify::Decision`] (what notify composes
/// queue notifications and transfer notices from), with its tag and
/// recipient list.
pub fn decision_of(r: &Routing, desk_tag: &str, recipients: &[String]) -> classify::Decision {
    classify::Decision {
        desk: r.desk.clone(),
        desk_tag: desk_tag.to_string(),
        queue: r.queue.clone(),
        kind: r.kind,
        urgency: r.urgency.unwrap_or(crate::priority::Urgency::Medium),
        impact: r.impact.unwrap_or(crate::priority::Impact::Moderate),
        priority: r.priority.unwrap_or(crate::priority::Priority::Medium),
        due_ms: r.due_at,
        recipients: recipients.to_vec(),
        tags: Vec::new(),
        suppress_ack: true,
        alert_key: None,
        recovery: false,
        explanation: Vec::new(),
    }
}

/// What the commands of one team member's reply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByMail {
    pub block: CommandBlock,
    pub steered: Steered,
    /// Why the sender may not command at all (nothing was applied).
    pub unauthorized: Option<String>,
    /// Whether the sender may be told about refusals (`commands::authorize`).
    pub answer: bool,
    /// The sender, lower-case.
    pub sender: String,
}

impl ByMail {
    /// Whether anything was refused (the relay is then held: the sender
    /// meant something that did not happen).
    pub fn any_refused(&self) -> bool {
        self.unauthorized.is_some() || !self.steered.refused.is_empty()
    }

    /// Every refusal, parse-time ones included, for the reply to the sender.
    pub fn refusals(&self) -> Vec<Refused> {
        let mut all = self.block.refused.clone();
        all.extend(self.steered.refused.iter().cloned());
        all
    }
}

/// The command block of a reply on ticket `number` of `desk` from a team
/// member (`new_text` is the reply's new text: `reply::split`), authorized
/// and applied. `None` when it holds no command line and no note.
///
/// `vouched` is the evidence of a sender the desk already trusts, for a
/// message that did not come through a mail server (`triaged tickets
/// reply`, run by someone with the store in hand): the sender must still
/// be on the team, but no `Authentication-Results` is asked for.
pub async fn by_mail(
    tx: &mut Tx,
    config: &Config,
    number: i64,
    desk: &str,
    parsed: &ParsedMessage,
    new_text: &str,
    vouched: Option<&str>,
) -> Result<Option<ByMail>, StoreError> {
    let block = commands::parse(new_text);
    let sender = parsed
        .from
        .as_ref()
        .map(|a| a.address.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let decision = match vouched {
        Some(evidence) => {
            match commands::authorize(&sender, config.desk_team(desk), false, &Err(String::new())) {
                commands::Decision::Allowed { .. } => commands::Decision::Allowed {
                    evidence: Some(evidence.to_string()),
                },
                refused => refused,
            }
        }
        None => {
            let domain = domain_of(&sender).unwrap_or_default();
            let auth = crate::authres::authenticated(
                parsed,
                &config.commands.trusted_authserv_ids,
                &domain,
            );
            commands::authorize(
                &sender,
                config.desk_team(desk),
                config.commands.require_authenticated,
                &auth,
            )
        }
    };
    if !block.has_commands() && !block.comment {
        // Plain correspondence: relayed to the customer under the desk's
        // name, so a team From must pass the same check as a command (a
        // forged From would otherwise write to customers as the desk). Held
        // and recorded, never answered.
        return Ok(match decision {
            commands::Decision::Allowed { .. } => None,
            commands::Decision::Refused { reason, .. } => {
                tx.event_by(
                    number,
                    "correspondence held",
                    &truncate(&sender, 200),
                    &json!({"reason": reason, "message_id": parsed.message_id}),
                )
                .await?;
                Some(ByMail {
                    block,
                    steered: Steered::default(),
                    unauthorized: Some(reason),
                    answer: false,
                    sender,
                })
            }
        });
    }
    let actor = if sender.is_empty() {
        "unknown".to_string()
    } else {
        truncate(&sender, 200)
    };
    match decision {
        commands::Decision::Refused { reason, answer } => {
            // Nothing is applied; each line is recorded as refused.
            let mut steered = Steered::default();
            let lines: Vec<String> = block
                .commands
                .iter()
                .map(|c| truncate(&c.to_string(), SHOWN_LINE))
                .chain(block.refused.iter().map(|r| r.line.clone()))
                .collect();
            for line in lines {
                tx.event_by(
                    number,
                    "command",
                    &actor,
                    &json!({"command": line, "result": "refused", "reason": reason}),
                )
                .await?;
                steered.refused.push(Refused {
                    line,
                    reason: reason.clone(),
                });
            }
            Ok(Some(ByMail {
                block: CommandBlock {
                    refused: Vec::new(),
                    ..block
                },
                steered,
                unauthorized: Some(reason),
                answer,
                sender,
            }))
        }
        commands::Decision::Allowed { evidence } => {
            for r in &block.refused {
                tx.event_by(
                    number,
                    "command",
                    &actor,
                    &json!({"command": r.line, "result": "refused", "reason": r.reason}),
                )
                .await?;
            }
            let steered = apply(tx, config, number, &block.commands, &actor).await?;
            if block.comment && block.refused.is_empty() {
                note(
                    tx,
                    number,
                    &actor,
                    &block.text,
                    parsed.message_id.as_deref(),
                    evidence.as_deref(),
                )
                .await?;
            }
            Ok(Some(ByMail {
                block,
                steered,
                unauthorized: None,
                answer: true,
                sender,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classifier;
    use crate::config::DEFAULT_CONFIG;
    use crate::store::{Store, TicketDetail};

    const AUTH: &str = "Authentication-Results: mx.example.edu; dkim=pass header.d=example.edu\n";

    async fn setup() -> (tempfile::TempDir, Store, Config, i64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, 1000).await.expect("open");
        let config = Config::parse(DEFAULT_CONFIG, "t").expect("config");
        let classifier = Classifier::load(&config).expect("rules");
        let raw = b"From: Ann <ann@example.org>\nTo: isda-support@example.edu\nSubject: Portal question\nMessage-ID: <q1@example.org>\n\nHow do I reset my password?\n";
        let parsed = crate::parse::parse(raw);
        let mailbox = config.mailboxes[0].clone();
        let mut tx = store.begin().await.expect("begin");
        let decision = classifier.classify(&parsed, &mailbox, tx.now(), &config);
        let number = tx
            .create_ticket(&parsed, &decision, &mailbox.name)
            .await
            .expect("create");
        tx.commit().await.expect("commit");
        (dir, store, config, number)
    }

    async fn run(
        store: &Store,
        config: &Config,
        number: i64,
        commands: &[Command],
        actor: &str,
    ) -> Steered {
        let mut tx = store.begin().await.expect("begin");
        let s = apply(&mut tx, config, number, commands, actor)
            .await
            .expect("apply");
        tx.commit().await.expect("commit");
        s
    }

    async fn detail(store: &Store, number: i64) -> TicketDetail {
        store.ticket(number).await.expect("read").expect("ticket")
    }

    #[tokio::test]
    async fn take_queue_and_status_apply_with_events() {
        let (_d, store, config, n) = setup().await;
        let before = detail(&store, n).await;
        assert_eq!(before.ticket.queue, "Customer-Support");
        let s = run(
            &store,
            &config,
            n,
            &[
                Command::Take,
                Command::Queue("production defect".into()),
                Command::Urgency(crate::priority::Urgency::High),
                Command::RecipientsAdd(vec!["ops@example.edu".into()]),
                Command::Status(WantedStatus::Stalled),
            ],
            "jlee@example.edu",
        )
        .await;
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        assert_eq!(
            s.transfer,
            Some(Transfer {
                from_queue: "Customer-Support".into(),
                to_queue: "ProductionDefect".into()
            })
        );
        let after = detail(&store, n).await;
        assert_eq!(after.ticket.number, n, "same case number");
        assert_eq!(after.ticket.queue, "ProductionDefect");
        assert_eq!(after.ticket.kind, "bug", "the new queue's default kind");
        assert_eq!(after.ticket.urgency.as_deref(), Some("high"));
        assert_ne!(after.ticket.due_at, None);
        assert_eq!(after.ticket.owner.as_deref(), Some("jlee@example.edu"));
        assert_eq!(after.ticket.status, Status::Stalled);
        assert!(after.recipients.contains(&"ops@example.edu".to_string()));
        let kinds: Vec<&str> = after.events.iter().map(|e| e.kind.as_str()).collect();
        for k in ["owner", "transfer", "urgency", "recipients", "status"] {
            assert!(kinds.contains(&k), "{k} in {kinds:?}");
        }
        let commands: Vec<&crate::store::EventRow> = after
            .events
            .iter()
            .filter(|e| e.kind == "command")
            .collect();
        assert_eq!(commands.len(), 5);
        assert!(
            commands
                .iter()
                .all(|e| e.actor == "jlee@example.edu" && e.detail["result"] == "applied")
        );

        // Removing, and resolving.
        let s = run(
            &store,
            &config,
            n,
            &[
                Command::RecipientsRemove(vec!["ops@example.edu".into()]),
                Command::Status(WantedStatus::Resolved),
            ],
            "jlee@example.edu",
        )
        .await;
        assert!(s.refused.is_empty());
        let after = detail(&store, n).await;
        assert!(!after.recipients.contains(&"ops@example.edu".to_string()));
        assert_eq!(after.ticket.status, Status::Resolved);
    }

    #[tokio::test]
    async fn refused_commands_change_nothing_and_say_why() {
        let (_d, store, config, n) = setup().await;
        let before = detail(&store, n).await;
        let long = "Q".repeat(1_000_000);
        let s = run(
            &store,
            &config,
            n,
            &[
                Command::Queue("NoSuchQueue".into()),
                Command::Queue(long),
                Command::Queue("Database".into()),
                Command::Owner("stranger@example.org".into()),
                Command::Take,
            ],
            "outsider@example.org",
        )
        .await;
        assert_eq!(s.applied, Vec::<String>::new());
        assert_eq!(s.refused.len(), 5);
        assert!(
            s.refused[0].reason.contains("no queue"),
            "{:?}",
            s.refused[0]
        );
        assert!(s.refused[1].line.chars().count() <= SHOWN_LINE + 1);
        assert!(s.refused[1].reason.len() < 1000);
        assert!(s.refused[2].reason.contains("between desks"));
        assert!(s.refused[3].reason.contains("not a member"));
        assert!(s.refused[4].reason.contains("team"));
        assert_eq!(s.transfer, None);
        let after = detail(&store, n).await;
        assert_eq!(after.ticket.queue, before.ticket.queue);
        assert_eq!(after.ticket.owner, None);
        assert_eq!(after.ticket.due_at, before.ticket.due_at);
        let refused: Vec<_> = after
            .events
            .iter()
            .filter(|e| e.kind == "command" && e.detail["result"] == "refused")
            .collect();
        assert_eq!(refused.len(), 5);
        assert!(
            after
                .events
                .iter()
                .all(|e| e.kind != "transfer" && e.kind != "owner")
        );
    }

    async fn mail(store: &Store, config: &Config, n: i64, raw: String) -> Option<ByMail> {
        let parsed = crate::parse::parse(raw.as_bytes());
        let new_text = crate::reply::split(&parsed).new_text;
        let mut tx = store.begin().await.expect("begin");
        let out = by_mail(&mut tx, config, n, "isda", &parsed, &new_text, None)
            .await
            .expect("by mail");
        tx.commit().await.expect("commit");
        out
    }

    #[tokio::test]
    async fn a_vouched_origin_needs_no_header_but_still_the_team() {
        let (_d, store, config, n) = setup().await;
        let vouched = |raw: &str| {
            let parsed = crate::parse::parse(raw.as_bytes());
            let new_text = crate::reply::split(&parsed).new_text;
            (parsed, new_text)
        };
        // A stranger's lines move nothing, vouched or not.
        let (p, t) = vouched("From: eve@example.org\nSubject: x\n\n/take\n");
        let mut tx = store.begin().await.expect("begin");
        let m = by_mail(&mut tx, &config, n, "isda", &p, &t, Some("cli"))
            .await
            .expect("by mail")
            .expect("commands");
        tx.commit().await.expect("commit");
        assert!(m.unauthorized.is_some(), "{m:?}");
        assert_eq!(detail(&store, n).await.ticket.owner, None);
        // A team member's, without any Authentication-Results: applied.
        let (p, t) = vouched("From: jlee@example.edu\nSubject: x\n\n/take\n");
        let mut tx = store.begin().await.expect("begin");
        let m = by_mail(&mut tx, &config, n, "isda", &p, &t, Some("cli"))
            .await
            .expect("by mail")
            .expect("commands");
        tx.commit().await.expect("commit");
        assert_eq!(m.unauthorized, None, "{m:?}");
        assert_eq!(
            detail(&store, n).await.ticket.owner.as_deref(),
            Some("jlee@example.edu")
        );
    }

    #[tokio::test]
    async fn by_mail_needs_authentication_for_the_from_domain() {
        let (_d, store, config, n) = setup().await;
        // Forged: a team address, no trusted Authentication-Results.
        let forged =
            "From: jlee@example.edu\nSubject: Re: x\n\n/take\n/queue ProductionDefect\nOn it.\n"
                .to_string();
        let m = mail(&store, &config, n, forged).await.expect("commands");
        assert!(m.unauthorized.is_some());
        assert!(m.any_refused());
        assert_eq!(detail(&store, n).await.ticket.owner, None);
        assert_eq!(detail(&store, n).await.ticket.queue, "Customer-Support");
        // A header from an untrusted server does not count either.
        let untrusted = "Authentication-Results: evil.example.org; dkim=pass header.d=example.edu\nFrom: jlee@example.edu\nSubject: Re: x\n\n/take\n".to_string();
        let m = mail(&store, &config, n, untrusted).await.expect("commands");
        assert!(m.unauthorized.is_some());
        // A stranger is never answered.
        let stranger = "Authentication-Results: mx.example.edu; dkim=pass header.d=example.org\nFrom: eve@example.org\nSubject: Re: x\n\n/take\n".to_string();
        let m = mail(&store, &config, n, stranger).await.expect("commands");
        assert!(!m.answer);
        // Authenticated: applied.
        let good = format!(
            "{AUTH}From: jlee@example.edu\nSubject: Re: x\n\n/take\n/queue ProductionDefect\nOn it.\n"
        );
        let m = mail(&store, &config, n, good).await.expect("commands");
        assert_eq!(m.unauthorized, None);
        assert!(!m.any_refused());
        assert_eq!(m.block.text, "On it.");
        let d = detail(&store, n).await;
        assert_eq!(d.ticket.owner.as_deref(), Some("jlee@example.edu"));
        assert_eq!(d.ticket.queue, "ProductionDefect");
        // No commands: nothing to do.
        let plain = format!("{AUTH}From: jlee@example.edu\nSubject: Re: x\n\nJust text.\n");
        assert!(mail(&store, &config, n, plain).await.is_none());
    }

    #[tokio::test]
    async fn a_comment_is_recorded_for_the_team() {
        let (_d, store, config, n) = setup().await;
        let raw = format!(
            "{AUTH}From: jlee@example.edu\nSubject: Re: x\n\n/comment the customer is on the old release\nsecond line\n"
        );
        let m = mail(&store, &config, n, raw).await.expect("comment");
        assert!(m.block.comment);
        let d = detail(&store, n).await;
        let c = d
            .events
            .iter()
            .find(|e| e.kind == "comment")
            .expect("comment event");
        assert!(
            c.detail["text"]
                .as_str()
                .unwrap_or("")
                .contains("old release")
        );
        assert_eq!(c.actor, "jlee@example.edu");
    }

    #[tokio::test]
    async fn a_megabyte_queue_argument_is_refused_and_bounded() {
        let (_d, store, config, n) = setup().await;
        let raw = format!(
            "{AUTH}From: jlee@example.edu\nSubject: Re: x\n\n/queue {}\nHello.\n",
            "P".repeat(1_000_000)
        );
        let m = mail(&store, &config, n, raw).await.expect("commands");
        assert!(m.any_refused() || !m.block.refused.is_empty());
        assert!(!m.block.may_relay());
        let all = m.refusals();
        assert_eq!(all.len(), 1, "{:?}", all.len());
        assert!(all[0].line.len() <= 4 * SHOWN_LINE + 8);
        assert!(all[0].reason.len() < 500);
        let d = detail(&store, n).await;
        assert_eq!(d.ticket.queue, "Customer-Support");
        let size: usize = d.events.iter().map(|e| e.detail.to_string().len()).sum();
        assert!(size < 10_000, "{size}");
    }

    #[tokio::test]
    async fn ten_thousand_command_lines_stay_bounded() {
        let (_d, store, config, n) = setup().await;
        let mut raw = format!("{AUTH}From: jlee@example.edu\nSubject: Re: x\n\n");
        for _ in 0..10_000 {
            raw.push_str("/urgency high\n");
        }
        raw.push_str("Hello.\n");
        let m = mail(&store, &config, n, raw).await.expect("commands");
        assert!(m.steered.applied.len() <= commands::MAX_COMMANDS);
        let d = detail(&store, n).await;
        assert!(
            d.events.len() < 3 * commands::MAX_COMMANDS + 10,
            "{}",
            d.events.len()
        );
    }
}
