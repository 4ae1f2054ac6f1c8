//! Recording one prepared message inside the batch's transaction, through
//! the store's primitives: dedupe (one key, one ticket), quarantine, or a
//! ticket (new, or a reply on the ticket its thread keys name) with its
//! message and history, then the mail notify composes for the event. A team
//! member's reply first steers its ticket (`steer::by_mail`: commands
//! authorized and applied, an internal note recorded); refused commands or a
//! note hold the relay to the customer.

use std::sync::Arc;

use serde_json::json;

use super::steer::{self, ByMail};
use super::{Action, Outcome, Prepared, content_hash};
use crate::classify::Decision;
use crate::config::Config;
use crate::notify::{
    Ahead, CAP_WINDOW_MS, Correspondent, NewTicket, Notifier, Outgoing, Renderer, Steering,
    TicketEvent, correspondent,
};
use crate::parse::{self, ParsedMessage};
use crate::store::{
    MessageBytes, NewMessage, NewQuarantine, Probes, RecentCaps, Seen, Status, StoreError,
    TicketState, Tx,
};
use crate::thread::{self, ThreadKeys, Threading, Via};

tokio::task_local! {
    /// The kinds of mail suppressed in the transaction being recorded, for
    /// the metrics once it has committed (see `Pipeline::transaction`).
    pub(super) static SUPPRESSED: std::cell::RefCell<Vec<String>>;
}

/// What recording one message did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Recorded {
    pub outcome: Outcome,
    /// Mails queued in the outbox.
    pub queued: usize,
}

/// How a transaction composes its mail.
#[derive(Debug, Clone, Copy)]
pub(super) struct Composer<'a> {
    pub notifier: &'a Arc<Notifier>,
    /// Renders new tickets' mail on its own thread while the next messages
    /// are recorded; none: everything is composed in order.
    pub renderer: Option<&'a Renderer>,
}

/// Records `p` in `tx`; with a `composer`, queues the mail of its ticket event.
pub(super) async fn record(
    tx: &mut Tx,
    config: &Config,
    composer: Option<Composer<'_>>,
    p: &Prepared,
) -> Result<Recorded, StoreError> {
    let message_id = match &p.action {
        Action::Ticket { parsed, .. } => parsed.message_id.as_deref(),
        Action::Quarantine { .. } => None,
    };
    let (base_key, _) = split_dedupe_key(&p.dedupe_key);
    let (own, seen) = tx.arrival(message_id, base_key, &p.dedupe_key).await?;
    if let Some(outcome) = own_mail(tx, config, p, own).await? {
        return Ok(Recorded { outcome, queued: 0 });
    }
    let fresh = match dedupe(tx, p, seen).await? {
        Dedupe::Seen(outcome) => return Ok(Recorded { outcome, queued: 0 }),
        Dedupe::New(fresh) => fresh,
    };
    match &p.action {
        Action::Quarantine {
            reason,
            headers,
            message_id,
            from,
            subject,
            size,
        } => {
            let origin = p.origin.to_string();
            let id = tx
                .quarantine(&NewQuarantine {
                    key: fresh.key,
                    content_hash: fresh.content_hash,
                    mailbox: &p.mailbox,
                    origin: &origin,
                    reason,
                    message_id: message_id.as_deref(),
                    from: from.as_deref(),
                    subject: subject.as_deref(),
                    size: *size,
                    headers,
                })
                .await?;
            Ok(Recorded {
                outcome: Outcome::Quarantined(id),
                queued: 0,
            })
        }
        Action::Ticket {
            parsed,
            decision,
            keys,
            encoded,
        } => {
            let (number, outcome) =
                ticket(tx, config, p, &fresh, parsed, decision, keys, encoded).await?;
            if let Some(reason) = alert_quiet(decision, outcome) {
                tx.event(
                    number,
                    "mail suppressed",
                    &json!({"kind": "all", "reason": reason}),
                )
                .await?;
                return Ok(Recorded { outcome, queued: 0 });
            }
            let steering = match outcome {
                Outcome::Reply(_) => {
                    steer_reply(tx, config, number, parsed, p.origin.vouched()).await?
                }
                _ => None,
            };
            let state = match (outcome, &steering) {
                // Commands from a sender who may not give them: the message
                // is recorded, and moves nothing (not even the status).
                (Outcome::Reply(_), Some(s)) if s.unauthorized.is_some() => {
                    tx.ticket_state(number).await?
                }
                (Outcome::Reply(_), _) => converse(tx, config, number, parsed).await?,
                _ => None,
            };
            let queued = match composer {
                Some(composer) => {
                    let notifier = composer.notifier;
                    let source = relayed_source(p, parsed, outcome);
                    let mut queued = match &steering {
                        // The sender meant something that did not happen:
                        // hold the relay (they are told why, and can send
                        // again).
                        Some(st) if st.any_refused() || st.block.comment => {
                            let reason = match &st.unauthorized {
                                Some(why) if !st.block.has_commands() && !st.block.comment => {
                                    format!("not relayed: {why}")
                                }
                                Some(why) => format!("not relayed: commands refused: {why}"),
                                None if st.block.comment => {
                                    "not relayed: an internal note".to_string()
                                }
                                None => "not relayed: some commands were refused".to_string(),
                            };
                            let kind = "correspondence".to_string();
                            queue_all(tx, number, vec![Outgoing::Suppressed { kind, reason }])
                                .await?
                        }
                        _ => notify(tx, composer, p, outcome, state.as_ref(), &source).await?,
                    };
                    if let Some(s) = &steering {
                        let by = Steerer {
                            mailbox: &p.mailbox,
                            parsed,
                            raw: &source,
                            author: parsed
                                .from
                                .as_ref()
                                .map(|a| a.name.clone().unwrap_or_else(|| a.address.clone())),
                        };
                        queued += steering_mail(tx, notifier, number, &by, s).await?;
                    }
                    queued
                }
                None => 0,
            };
            Ok(Recorded { outcome, queued })
        }
    }
}

/// The keys recording `batch` will look up (see [`Tx::look_ahead`]), with
/// `since` the start of the caps' window.
pub(super) fn probes(batch: &[Prepared], since: i64) -> Probes {
    let mut probes = Probes {
        since,
        batch: batch.len(),
        ..Probes::default()
    };
    for p in batch {
        let (base_key, _) = split_dedupe_key(&p.dedupe_key);
        probes.dedupe_keys.push(base_key.to_string());
        probes.dedupe_keys.push(p.dedupe_key.clone());
        let Action::Ticket {
            parsed,
            decision,
            keys,
            ..
        } = &p.action
        else {
            continue;
        };
        probes.message_ids.extend(parsed.message_id.iter().cloned());
        probes.message_ids.extend(keys.referenced.iter().cloned());
        probes.alert_keys.extend(decision.alert_key.iter().cloned());
        probes.numbers.extend(keys.tagged.iter().map(|t| t.number));
        probes
            .senders
            .extend(parsed.requester().map(|a| a.address.to_ascii_lowercase()));
    }
    probes
}

/// Mail the desk sent itself (its Message-ID is one of our outbox's), come
/// back through a watched mailbox: never a customer's message, never
/// acknowledged or relayed. Recorded as an `own mail seen` event on its
/// ticket, with a duplicate's outcome.
async fn own_mail(
    tx: &mut Tx,
    config: &Config,
    p: &Prepared,
    own: Option<i64>,
) -> Result<Option<Outcome>, StoreError> {
    let Action::Ticket { parsed, .. } = &p.action else {
        return Ok(None);
    };
    let Some(message_id) = parsed.message_id.as_deref() else {
        return Ok(None);
    };
    let Some(number) = own else {
        return Ok(None);
    };
    // Our mail is always From one of the desks' own addresses. Anything else
    // carrying one of our Message-IDs (a client that copies the ID it
    // answers, or a forgery) is somebody's message and is recorded as such.
    let from_us = parsed.from.as_ref().is_some_and(|a| {
        config
            .own_addresses()
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&a.address))
    });
    if !from_us {
        return Ok(None);
    }
    tx.event(
        number,
        "own mail seen",
        &json!({
            "message_id": message_id,
            "mailbox": p.mailbox,
            "origin": p.origin.to_string(),
            "reason": "own mail: its Message-ID is one we sent; not recorded as a message",
        }),
    )
    .await?;
    Ok(Some(Outcome::Duplicate(number)))
}

/// A message not seen before: the key it is stored under.
struct Fresh<'a> {
    /// `mid:<id>` for the first message with an ID, the whole dedupe key for
    /// one reusing an ID with other content (or without an ID).
    key: &'a str,
    content_hash: Option<&'a str>,
    /// The earlier holder of the same Message-ID with other content.
    collision: Option<Collision>,
}

struct Collision {
    in_quarantine: bool,
    /// Its ticket number, or its quarantine id.
    id: i64,
    /// Its message row.
    row: i64,
}

enum Dedupe<'a> {
    /// Seen before: a duplicate (its event is recorded).
    Seen(Outcome),
    New(Fresh<'a>),
}

/// Seen before, as a message or in quarantine? A key `mid:<id>#<hash>` is
/// looked up as itself and as `mid:<id>` (the first message with that ID,
/// stored before any collision).
async fn dedupe<'a>(
    tx: &mut Tx,
    p: &'a Prepared,
    seen: Vec<Seen>,
) -> Result<Dedupe<'a>, StoreError> {
    let (base_key, content_hash) = split_dedupe_key(&p.dedupe_key);
    let mut collision = None;
    for seen in seen {
        let mut hash = seen.content_hash.clone();
        if hash.is_none() && !seen.in_quarantine && content_hash.is_some() {
            // Stored before content hashes were kept: its raw bytes tell
            // (once; the hash is kept for the next time).
            let raw = tx.message_raw(seen.row).await?;
            let backfilled = self::content_hash(&parse::parse(&raw), &raw);
            tx.set_content_hash(seen.row, &backfilled).await?;
            hash = Some(backfilled);
        }
        // The same message: its own key, or the first holder of the ID
        // with the same content (or of unknown content: a quarantine row
        // from before content hashes, which kept only headers).
        let same = seen.key == p.dedupe_key
            || content_hash.is_none()
            || hash.is_none()
            || hash.as_deref() == content_hash;
        if !same {
            collision = Some(Collision {
                in_quarantine: seen.in_quarantine,
                id: seen.id,
                row: seen.row,
            });
            continue;
        }
        if seen.in_quarantine {
            return Ok(Dedupe::Seen(Outcome::DuplicateQuarantined(seen.id)));
        }
        tx.event(
            seen.id,
            "duplicate",
            &json!({"mailbox": p.mailbox, "origin": p.origin.to_string(), "key": p.dedupe_key}),
        )
        .await?;
        return Ok(Dedupe::Seen(Outcome::Duplicate(seen.id)));
    }
    // The first with this ID keeps `mid:<id>`; a message reusing it with
    // other content is a new message under its whole key.
    let key = if collision.is_some() {
        p.dedupe_key.as_str()
    } else {
        base_key
    };
    Ok(Dedupe::New(Fresh {
        key,
        content_hash,
        collision,
    }))
}

/// A dedupe key `mid:<id>#<content hash>` as (`mid:<id>`, the hash); any other
/// key (`sha256:...`, or `mid:<id>` alone) as itself with no hash.
fn split_dedupe_key(key: &str) -> (&str, Option<&str>) {
    match key.rsplit_once('#') {
        Some((base, hash))
            if base.starts_with("mid:")
                && hash.len() == 64
                && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            (base, Some(hash))
        }
        _ => (key, None),
    }
}

/// Records a message on its ticket (made now if its thread keys name none,
/// or name one it may not join: see `thread::decide`) with its history; the
/// ticket's number and the outcome. `parsed` to `encoded` are `p`'s
/// [`Action::Ticket`], taken apart by the caller.
#[allow(clippy::too_many_arguments)]
async fn ticket(
    tx: &mut Tx,
    config: &Config,
    p: &Prepared,
    fresh: &Fresh<'_>,
    parsed: &ParsedMessage,
    decision: &Decision,
    keys: &ThreadKeys,
    encoded: &(&'static str, Arc<Vec<u8>>),
) -> Result<(i64, Outcome), StoreError> {
    let found = tx.thread_found(keys, decision.alert_key.as_deref()).await?;
    let sender = parsed.from.as_ref().map(|a| a.address.as_str());
    // The history's actor of what this message does: who wrote it.
    let by = parsed
        .requester()
        .map_or_else(|| "unknown".to_string(), |a| a.address.to_ascii_lowercase());
    let team = |desk: &str, sender: &str| config.is_team_member(desk, sender);
    let threading = thread::decide(
        &found,
        sender,
        &team,
        tx.now(),
        config.tickets.reopen_window_ms(),
    );
    let (number, outcome) = match &threading {
        Threading::Join { ticket, .. } => (*ticket, Outcome::Reply(*ticket)),
        Threading::New { .. } => {
            let number = tx.create_ticket(parsed, decision, &p.mailbox).await?;
            (number, Outcome::Created(number))
        }
    };
    let origin = p.origin.to_string();
    let message = tx
        .insert_message(
            number,
            &NewMessage {
                key: fresh.key,
                content_hash: fresh.content_hash,
                mailbox: &p.mailbox,
                origin: &origin,
                parsed,
                bytes: MessageBytes::Encoded(encoded.0, &encoded.1),
            },
        )
        .await?;
    if let Some(c) = &fresh.collision {
        let earlier = if c.in_quarantine {
            json!({"quarantine": c.id})
        } else {
            json!({"ticket": c.id, "message": c.row})
        };
        tx.event(
            number,
            "message-id collision",
            &json!({
                "message": message,
                "message_id": parsed.message_id,
                "earlier": earlier,
                "detail": "another message with this Message-ID and different content was recorded earlier; this one is kept as a new message",
            }),
        )
        .await?;
    }
    let reason = threading.reason();
    match &threading {
        Threading::New { link } => {
            tx.event_by(
                number,
                "created",
                &by,
                &json!({
                    "message": message,
                    "mailbox": p.mailbox,
                    "origin": origin,
                    "queue": decision.queue,
                    "kind": decision.kind,
                    "explanation": decision.explanation,
                    "thread": reason,
                }),
            )
            .await?;
            tx.add_recipients(number, &decision.recipients).await?;
            if let Some((other, why)) = link {
                tx.link(number, *other, why.as_str()).await?;
                tx.event(
                    number,
                    "linked",
                    &json!({"ticket": other, "reason": why.as_str(), "detail": reason}),
                )
                .await?;
                tx.event(
                    *other,
                    "linked",
                    &json!({"ticket": number, "reason": why.as_str(), "detail": reason}),
                )
                .await?;
            }
        }
        Threading::Join { via, reopen, .. } => {
            tx.touch_for_reply(number).await?;
            if *reopen {
                let actor = sender.unwrap_or("unknown").to_ascii_lowercase();
                tx.move_status(
                    number,
                    Status::Resolved,
                    Status::Open,
                    &actor,
                    "a reply to a resolved ticket, within the reopen window",
                )
                .await?;
                tx.event_by(
                    number,
                    "reopened",
                    &by,
                    &json!({"message": message, "status": Status::Open, "reason": "a reply to a resolved ticket, within the reopen window"}),
                )
                .await?;
            }
            let thread = match via {
                Via::Tag { .. } => "subject tag",
                Via::Alert => "alert key",
                Via::Reference(_) => "references",
            };
            tx.event_by(
                number,
                "reply",
                &by,
                &json!({"message": message, "mailbox": p.mailbox, "origin": origin, "thread": thread, "reason": reason}),
            )
            .await?;
        }
    }
    if decision.recovery {
        recover(tx, number, sender, message).await?;
    }
    Ok((number, outcome))
}

/// A recovery (a rule said so) resolves its ticket: the open ticket of its
/// alert key it joined, or the ticket just made for it when none was open
/// (created resolved: recorded, asking nothing of anyone). The actor is the
/// monitoring sender.
async fn recover(
    tx: &mut Tx,
    number: i64,
    sender: Option<&str>,
    message: i64,
) -> Result<(), StoreError> {
    let actor = sender.unwrap_or("unknown").to_ascii_lowercase();
    for from in [Status::New, Status::Open, Status::Stalled] {
        if tx
            .move_status(number, from, Status::Resolved, &actor, "recovery message")
            .await?
        {
            tx.event(
                number,
                "recovered",
                &json!({"message": message, "status": Status::Resolved, "reason": "recovery message"}),
            )
            .await?;
            break;
        }
    }
    Ok(())
}

/// Alert mail that sends nothing, and why: a recovery never causes mail; a
/// repeated alert joined to its ticket is recorded there, not relayed (the
/// first alert made the ticket and its notification). Nothing ever goes to a
/// monitoring system.
fn alert_quiet(decision: &Decision, outcome: Outcome) -> Option<&'static str> {
    if decision.recovery {
        Some("a recovery message: no mail is sent for it")
    } else if decision.alert_key.is_some() && matches!(outcome, Outcome::Reply(_)) {
        Some("a repeated alert on its open ticket: recorded, not relayed")
    } else {
        None
    }
}

/// A reply on a ticket, as a conversation: a team member's reply is
/// correspondence (the first is the initial response, and moves a new ticket
/// to open); a reply from anyone else let in reopens a stalled ticket. Returns
/// the ticket's state after that, for relaying.
async fn converse(
    tx: &mut Tx,
    config: &Config,
    number: i64,
    parsed: &ParsedMessage,
) -> Result<Option<TicketState>, StoreError> {
    let Some(before) = tx.ticket_state(number).await? else {
        return Ok(None);
    };
    let actor = parsed
        .requester()
        .map(|a| a.address.to_ascii_lowercase())
        .unwrap_or_else(|| "unknown".to_string());
    match correspondent(config, &before.desk, parsed) {
        Correspondent::Team => {
            tx.set_first_response(number, parsed.message_id.as_deref(), &actor)
                .await?;
            tx.move_status(
                number,
                Status::New,
                Status::Open,
                &actor,
                "first correspondence from the team",
            )
            .await?;
        }
        Correspondent::Other => {
            tx.move_status(
                number,
                Status::Stalled,
                Status::Open,
                &actor,
                "a reply from the customer side",
            )
            .await?;
        }
        Correspondent::Automated(_) => return Ok(Some(before)),
    }
    tx.ticket_state(number).await
}

/// The command block of a reply from a member of the ticket's desk's team
/// (`steer::by_mail`), authorized and applied; `None` for anyone else's
/// reply, or one without commands or a note.
async fn steer_reply(
    tx: &mut Tx,
    config: &Config,
    number: i64,
    parsed: &ParsedMessage,
    vouched: Option<&str>,
) -> Result<Option<ByMail>, StoreError> {
    let Some(state) = tx.ticket_state(number).await? else {
        return Ok(None);
    };
    if correspondent(config, &state.desk, parsed) != Correspondent::Team {
        return Ok(None);
    }
    let mut new_text = crate::notify::relay_text(parsed);
    // Mail to the desk's comment address is an internal note as a whole.
    let comment_address = config
        .desk(&state.desk)
        .and_then(|d| d.comment_address.as_deref());
    if let Some(c) = comment_address
        && parsed
            .to
            .iter()
            .chain(&parsed.cc)
            .any(|a| a.address.eq_ignore_ascii_case(c))
    {
        new_text = format!("/comment\n{new_text}");
    }
    steer::by_mail(tx, config, number, &state.desk, parsed, &new_text, vouched).await
}

/// What steered a ticket, for the mail about it: the message that carried
/// the commands (or, from the command line, the ticket's first message),
/// the mailbox it counts as arriving in, and the author's display name.
pub(super) struct Steerer<'a> {
    pub mailbox: &'a str,
    pub parsed: &'a ParsedMessage,
    pub raw: &'a [u8],
    pub author: Option<String>,
}

/// The mail that steering a ticket makes (a transfer's notices, a refusal's
/// reply to the team member, an internal note to the team), queued.
pub(super) async fn steering_mail(
    tx: &mut Tx,
    notifier: &Notifier,
    number: i64,
    by: &Steerer<'_>,
    s: &ByMail,
) -> Result<usize, StoreError> {
    let parsed = by.parsed;
    let (Some(routing), Some(state)) = (tx.routing(number).await?, tx.ticket_state(number).await?)
    else {
        return Ok(0);
    };
    let decision = steer::decision_of(&routing, &state.desk_tag, &state.recipients);
    let first = match s.steered.transfer {
        Some(_) => tx
            .first_message_raw(number)
            .await?
            .map(|raw| parse::parse(&raw)),
        None => None,
    };
    let refused = s.refusals();
    let recent_refusals = match (s.answer, refused.is_empty()) {
        (true, false) if !s.sender.is_empty() => {
            let since = tx.now() - CAP_WINDOW_MS;
            tx.recent_mail("command_refused", &s.sender, since).await?
        }
        _ => 0,
    };
    let note = (s.block.comment && s.unauthorized.is_none() && s.block.refused.is_empty())
        .then_some(s.block.text.as_str());
    let steering = Steering {
        transfer: s
            .steered
            .transfer
            .as_ref()
            .map(|t| (t.from_queue.as_str(), t.to_queue.as_str())),
        refused: &refused,
        answer_to: s
            .answer
            .then_some(s.sender.as_str())
            .filter(|a| !a.is_empty()),
        note,
        note_author: by.author.as_deref(),
        sender: Some(s.sender.as_str()).filter(|a| !a.is_empty()),
        recent_refusals,
    };
    let event = TicketEvent {
        created: false,
        number,
        mailbox: by.mailbox,
        decision: &decision,
        parsed,
        recent_acks: 0,
        recent_notified_sender: 0,
        recent_notified_alert: 0,
        now: tx.now(),
        raw: by.raw,
        ticket: Some(&state),
    };
    let out = notifier.compose_steering(&event, first.as_ref(), &steering);
    queue_all(tx, number, out).await
}

/// Asks notify for the mail of this ticket event (with the caps' counts read
/// in this transaction) and queues it, or records why it was suppressed.
/// Returns how many mails were queued.
async fn notify(
    tx: &mut Tx,
    composer: Composer<'_>,
    p: &Prepared,
    outcome: Outcome,
    ticket: Option<&TicketState>,
    source: &[u8],
) -> Result<usize, StoreError> {
    let Action::Ticket {
        parsed, decision, ..
    } = &p.action
    else {
        return Ok(0);
    };
    let (number, created) = match outcome {
        Outcome::Created(n) => (n, true),
        Outcome::Reply(n)
        | Outcome::Duplicate(n)
        | Outcome::DuplicateQuarantined(n)
        | Outcome::Quarantined(n) => (n, false),
    };
    let since = tx.now() - CAP_WINDOW_MS;
    let sender = parsed.requester().map(|a| a.address.to_ascii_lowercase());
    let caps = if created {
        tx.recent_caps(sender.as_deref(), decision.alert_key.as_deref(), since)
            .await?
    } else {
        RecentCaps::default()
    };
    if let (true, Some(renderer)) = (created, composer.renderer) {
        let ticket = NewTicket {
            number,
            mailbox: p.mailbox.clone(),
            decision: decision.clone(),
            parsed: parsed.clone(),
            now: tx.now(),
            recent_acks: caps.acks,
            recent_notified_sender: caps.by_sender,
            recent_notified_alert: caps.by_alert,
        };
        // Queued in the order notify decided them, as `compose` would be.
        let mut queued = 0;
        for ahead in composer.notifier.compose_ahead(ticket, renderer) {
            match ahead {
                Ahead::Now(out) => queued += queue_all(tx, number, vec![out]).await?,
                Ahead::Later(mail) => {
                    tx.queue_pending_mail(number, mail);
                    queued += 1;
                }
            }
        }
        return Ok(queued);
    }
    let event = TicketEvent {
        created,
        number,
        mailbox: &p.mailbox,
        decision,
        parsed,
        recent_acks: caps.acks,
        recent_notified_sender: caps.by_sender,
        recent_notified_alert: caps.by_alert,
        now: tx.now(),
        raw: source,
        ticket,
    };
    let out = composer.notifier.compose(&event);
    queue_all(tx, number, out).await
}

/// The bytes the mail of `p`'s event reads of it (`TicketEvent::raw`):
/// only a reply's attachments are relayed from them (`notify::relay`), so
/// for anything else, or a message without attachments, nothing is decoded.
fn relayed_source(p: &Prepared, parsed: &ParsedMessage, outcome: Outcome) -> Vec<u8> {
    if !matches!(outcome, Outcome::Reply(_)) || parsed.attachments.is_empty() {
        return Vec::new();
    }
    match p.raw() {
        Some(Ok(raw)) => raw,
        Some(Err(e)) => {
            tracing::warn!(error = %e, origin = %p.origin,
                "the message's bytes could not be read back; its attachments are not relayed");
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// Queues each composed mail in the outbox, or records why it was
/// suppressed. How many were queued.
pub(super) async fn queue_all(
    tx: &mut Tx,
    number: i64,
    out: Vec<Outgoing>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for out in out {
        match out {
            Outgoing::Mail(m) => {
                // The outbox row is the record that the mail was queued; the
                // ticket shows it beside its history (`TicketDetail::mail`).
                tx.queue_mail(number, &m.to_new_mail()).await?;
                queued += 1;
            }
            Outgoing::Suppressed { kind, reason } => {
                let _ = SUPPRESSED.try_with(|k| k.borrow_mut().push(kind.clone()));
                tx.event(
                    number,
                    "mail suppressed",
                    &json!({"kind": kind, "reason": reason}),
                )
                .await?;
            }
        }
    }
    Ok(queued)
}
