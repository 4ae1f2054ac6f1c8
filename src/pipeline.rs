//! Pipeline: one path from raw bytes to a committed ticket, shared by the
//! daemon (IMAP) and `triaged ingest` (files), so both behave the same.
//!
//! `prepare` is pure (parse -> classify -> thread keys -> dedupe key);
//! `commit` owns the transaction: it opens it, records each message through
//! the store's primitives ([`record`]), asks notify to compose the mail of
//! each ticket event and queues it, commits with the cursor, then wakes the
//! outbox sender if anything was queued.

mod by_hand;
mod record;
pub mod steer;

pub use by_hand::{ByHandError, VOUCHED};

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::classify::{Classifier, Decision};
use crate::config::Config;
use crate::notify::{Notifier, Renderer};
use crate::parse::{self, ParsedMessage};
use crate::problem::Problems;
use crate::store::{Cursor, Store, StoreError};
use crate::thread::{self, ThreadKeys};

/// Where a message came from, for audit and for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Imap {
        uidvalidity: u32,
        uid: u32,
    },
    File {
        path: String,
    },
    Stdin {
        index: usize,
    },
    /// Written with `triaged tickets reply` by `user` (who ran it).
    CommandLine {
        user: String,
    },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Imap { uidvalidity, uid } => {
                write!(f, "imap uidvalidity={uidvalidity} uid={uid}")
            }
            Origin::File { path } => write!(f, "file {path}"),
            Origin::Stdin { index } => write!(f, "stdin #{index}"),
            Origin::CommandLine { user } => write!(f, "command line ({user})"),
        }
    }
}

/// What to do with one message, decided before the transaction.
#[derive(Debug, Clone)]
pub enum Action {
    /// Make a ticket, or a reply on the ticket its thread keys name.
    Ticket {
        /// Shared with the thread that renders a new ticket's mail.
        parsed: Arc<ParsedMessage>,
        decision: Arc<Decision>,
        keys: ThreadKeys,
        /// The raw message encoded for the store (`store::codec::encode`):
        /// compressed here, on the preparing thread, rather than in the
        /// transaction, and shared with the row that stores it. It is the
        /// only copy a prepared message holds: a message read ahead costs
        /// its compressed size, not its size ([`Prepared::raw`] decodes it
        /// for the few that need the bytes again).
        encoded: (&'static str, Arc<Vec<u8>>),
    },
    /// Set it aside with a reason; `headers` is what was kept of it.
    Quarantine {
        reason: String,
        headers: Vec<u8>,
        message_id: Option<String>,
        from: Option<String>,
        subject: Option<String>,
        size: u64,
    },
}

/// One message ready to commit.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub mailbox: String,
    pub origin: Origin,
    /// `mid:<Message-ID>#<content hash>` or `sha256:<content hash>`: the same
    /// key never makes two tickets (see `pipeline::dedupe_key`).
    pub dedupe_key: String,
    pub action: Action,
}

impl Prepared {
    /// The message as received, decoded from the one copy it holds (see
    /// [`Action::Ticket`]); `None` for a message set aside, whose
    /// quarantine entry keeps only its headers.
    pub fn raw(&self) -> Option<Result<Vec<u8>, crate::store::codec::CodecError>> {
        match &self.action {
            Action::Ticket {
                parsed,
                encoded: (codec, bytes),
                ..
            } => Some(crate::store::codec::decode(
                codec,
                bytes.as_ref().clone(),
                usize::try_from(parsed.size).unwrap_or(usize::MAX),
            )),
            Action::Quarantine { .. } => None,
        }
    }

    /// The size of the mail this message stands for while it waits for its
    /// transaction (what its parse and rows scale with): the message's own
    /// size, or for one set aside the headers it keeps.
    pub fn held_bytes(&self) -> usize {
        match &self.action {
            Action::Ticket { parsed, .. } => usize::try_from(parsed.size).unwrap_or(usize::MAX),
            Action::Quarantine { headers, .. } => headers.len(),
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "id", rename_all = "lowercase")]
pub enum Outcome {
    /// A new ticket with this number.
    Created(i64),
    /// A reply recorded on this ticket.
    Reply(i64),
    /// Seen before: already on this ticket.
    Duplicate(i64),
    /// Seen before: already in quarantine with this id.
    DuplicateQuarantined(i64),
    /// Set aside in quarantine with this id.
    Quarantined(i64),
}

/// Counts of outcomes, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub new_tickets: u64,
    pub replies: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub errors: u64,
}

impl Summary {
    pub fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Created(_) => self.new_tickets += 1,
            Outcome::Reply(_) => self.replies += 1,
            Outcome::Duplicate(_) | Outcome::DuplicateQuarantined(_) => self.duplicates += 1,
            Outcome::Quarantined(_) => self.quarantined += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.new_tickets + self.replies + self.duplicates + self.quarantined + self.errors
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} new tickets, {} replies, {} duplicates, {} quarantined, {} errors",
            self.new_tickets, self.replies, self.duplicates, self.quarantined, self.errors
        )
    }
}

/// The configured pipeline over one store.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: Arc<Config>,
    store: Store,
    desk_tags: Arc<Vec<String>>,
    /// The current classifier; replaced whole on reload, read as one snapshot
    /// per message, so no message is routed by half a rule set.
    classifier: Arc<RwLock<Arc<Classifier>>>,
    /// Composes the mail of ticket events; none: no mail is queued. Replaced
    /// whole when the templates are reloaded, read once per transaction.
    notifier: Option<Arc<RwLock<Arc<Notifier>>>>,
    /// Poked after every commit that queued mail, to wake the sender.
    outbox_wake: Option<Arc<tokio::sync::Notify>>,
    /// Renders new tickets' mail while the next messages are recorded;
    /// started with the first transaction that composes mail, shared by
    /// every clone. `None` inside: it could not be started.
    renderer: Arc<std::sync::OnceLock<Option<Renderer>>>,
    /// After a mail could not be rendered ahead, this many transactions
    /// compose in order: a template or address that fails keeps failing,
    /// and each failure costs its transaction a second run.
    in_order: Arc<AtomicU32>,
    /// Every mail composed in order, on the recording side (see
    /// [`Pipeline::composing_in_order`]).
    always_in_order: bool,
}

/// How many transactions compose in order after a mail that could not be
/// rendered ahead (see [`Pipeline::transaction`]).
const IN_ORDER_AFTER_FAILURE: u32 = 64;

impl Pipeline {
    /// A pipeline with the configured routing rules.
    pub fn new(config: Arc<Config>, store: Store) -> Result<Pipeline, Problems> {
        let classifier = Classifier::load(&config)?;
        Ok(Pipeline::with_classifier(config, store, classifier))
    }

    pub fn with_classifier(config: Arc<Config>, store: Store, classifier: Classifier) -> Pipeline {
        let desk_tags = Arc::new(config.desk_tags());
        Pipeline {
            config,
            store,
            desk_tags,
            classifier: Arc::new(RwLock::new(Arc::new(classifier))),
            notifier: None,
            outbox_wake: None,
            renderer: Arc::new(std::sync::OnceLock::new()),
            in_order: Arc::new(AtomicU32::new(0)),
            always_in_order: false,
        }
    }

    /// This pipeline, composing the mail of every ticket event with
    /// `notifier` (queued in the event's transaction), and poking `wake`
    /// after each commit that queued mail.
    pub fn with_notifier(mut self, notifier: Notifier, wake: Arc<tokio::sync::Notify>) -> Pipeline {
        self.notifier = Some(Arc::new(RwLock::new(Arc::new(notifier))));
        self.outbox_wake = Some(wake);
        self
    }

    /// This pipeline, composing every mail in order inside the transaction
    /// (as it does a transaction again after a mail could not be rendered
    /// ahead): for comparing the two ways, and for measuring.
    pub fn composing_in_order(mut self) -> Pipeline {
        self.always_in_order = true;
        self
    }

    /// The classifier in force now.
    pub fn classifier(&self) -> Arc<Classifier> {
        match self.classifier.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the rules again; on success the new set replaces the old one
    /// between two messages, otherwise the old set stays and the problems are returned.
    pub fn reload_rules(&self) -> Result<usize, Problems> {
        let fresh = Classifier::load(&self.config)?;
        let count = fresh.rules().len();
        let fresh = Arc::new(fresh);
        match self.classifier.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(count)
    }

    /// The notifier in force now (its templates), if mail is composed.
    pub fn notifier(&self) -> Option<Arc<Notifier>> {
        self.notifier.as_ref().map(|n| match n.read() {
            Ok(n) => n.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }

    /// Loads and checks the templates again (as at start); on success the
    /// new set composes the mail of the next transaction, otherwise the old
    /// set stays and the problems are returned. Without a notifier: `Ok(0)`.
    pub fn reload_templates(&self) -> Result<usize, Problems> {
        let Some(slot) = &self.notifier else {
            return Ok(0);
        };
        let fresh = crate::notify::notifier(&self.config)?;
        let count = fresh.template_count();
        let fresh = Arc::new(fresh);
        match slot.write() {
            Ok(mut n) => *n = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(count)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Parses and classifies one whole message that arrived in `mailbox`.
    /// A message over the size limit is prepared for quarantine instead.
    pub fn prepare(&self, mailbox: &str, origin: Origin, raw: Vec<u8>) -> Prepared {
        let limit = self.config.ingest.max_message_bytes;
        if raw.len() as u64 > limit {
            let size = raw.len() as u64;
            let head = head_of(&raw).to_vec();
            return self.prepare_oversized(mailbox, origin, head, size);
        }
        let parsed = parse::parse(&raw);
        let dedupe_key = dedupe_key(&parsed, &raw);
        let action = match self.config.mailbox(mailbox) {
            // A file that is no mail at all (a text, a picture) is set aside
            // with that reason rather than made a ticket of.
            Some(_) if let Some(reason) = parse::not_mail_reason(&raw) => {
                quarantine_action(reason, &raw, &parsed)
            }
            Some(mb) => Action::Ticket {
                decision: Arc::new(self.classifier().classify(
                    &parsed,
                    mb,
                    crate::clock::now_ms(),
                    &self.config,
                )),
                keys: thread::keys(&parsed, &self.desk_tags),
                parsed: Arc::new(parsed),
                encoded: {
                    let (codec, bytes) = crate::store::codec::encode(&raw);
                    (codec, Arc::new(bytes))
                },
            },
            None => quarantine_action(
                format!("mailbox {mailbox:?} is not configured"),
                &raw,
                &parsed,
            ),
        };
        // `raw` ends here: what is kept of it is in `action`.
        Prepared {
            mailbox: mailbox.to_string(),
            origin,
            dedupe_key,
            action,
        }
    }

    /// Prepares the quarantine entry of a message too large to take whole:
    /// `head` is its header section (or the start of it), `size` its full size.
    pub fn prepare_oversized(
        &self,
        mailbox: &str,
        origin: Origin,
        head: Vec<u8>,
        size: u64,
    ) -> Prepared {
        let head = head_of(&head).to_vec();
        let parsed = parse::parse(&head);
        let dedupe_key = match &parsed.message_id {
            Some(id) => format!("mid:{id}"),
            None => format!("sha256:{}:{size}", parse::sha256_hex(&head)),
        };
        let reason = format!(
            "message of {size} bytes exceeds ingest.max_message_bytes ({}); it stays at its source ({origin})",
            self.config.ingest.max_message_bytes
        );
        Prepared {
            mailbox: mailbox.to_string(),
            origin,
            dedupe_key,
            action: Action::Quarantine {
                reason,
                headers: head,
                message_id: parsed.message_id,
                from: parsed.from.map(|a| a.to_string()),
                subject: parsed.subject,
                size,
            },
        }
    }

    /// Commits a batch in one transaction, with the IMAP cursor if given.
    /// Returns one outcome per prepared message, in order.
    ///
    /// When the store refuses the batch for a reason that will not go away,
    /// the messages are committed one by one, and one the store refuses even
    /// alone is quarantined with the store's reason, so that one bad message
    /// never blocks its mailbox. Retryable errors are returned to the caller,
    /// who retries the batch later: among them every error of a store out of
    /// a resource (disk full, I/O error, read-only; [`StoreError::is_resource`]),
    /// which is never a reason to split a batch or quarantine a message.
    /// `Ok` means committed and synced: only then may the caller acknowledge.
    pub async fn commit(
        &self,
        batch: &[Prepared],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Outcome>, StoreError> {
        match self.transaction(batch, cursor).await {
            Err(e) if !e.is_retryable() => {
                tracing::warn!(error = %e, size = batch.len(), "batch refused; committing its messages one by one");
            }
            other => return other,
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        for p in batch {
            let outcome = match self.transaction(std::slice::from_ref(p), None).await {
                Ok(mut o) => o.pop(),
                Err(e) if !e.is_retryable() => {
                    let q = self.refused(p, &e);
                    self.transaction(std::slice::from_ref(&q), None)
                        .await?
                        .pop()
                }
                Err(e) => return Err(e),
            };
            outcomes.extend(outcome);
        }
        if let Some(c) = cursor {
            self.store.set_cursor(c).await?;
        }
        Ok(outcomes)
    }

    /// One transaction for `batch` and `cursor`; on failure the store
    /// accounts for it ([`Store::failed`]: counted, and the connection it
    /// failed on is never reused). After a commit that queued mail, the
    /// sender is woken.
    ///
    /// New tickets' mail is rendered on the renderer's thread; when one
    /// cannot be, the transaction is void and is done again composing in
    /// order, where that mail is suppressed with its reason (the caps of
    /// the batch's later tickets count it as not sent).
    async fn transaction(
        &self,
        batch: &[Prepared],
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Outcome>, StoreError> {
        // Mails suppressed in this transaction are counted once it commits.
        let done = record::SUPPRESSED
            .scope(std::cell::RefCell::new(Vec::new()), async {
                let mut done = self.transaction_once(batch, cursor, self.renderer()).await;
                if let Err(StoreError::Composing(reason)) = &done {
                    tracing::warn!(%reason, size = batch.len(), "a mail could not be rendered ahead; recording the batch again, composing in order");
                    self.in_order.store(IN_ORDER_AFTER_FAILURE, Ordering::Relaxed);
                    record::SUPPRESSED.with(|k| k.borrow_mut().clear());
                    done = self.transaction_once(batch, cursor, None).await;
                }
                if done.is_ok() {
                    let kinds = record::SUPPRESSED.with(|k| k.take());
                    for kind in kinds {
                        crate::metrics::suppressed(&kind);
                    }
                }
                done
            })
            .await;
        match done {
            Ok((outcomes, queued)) => {
                if let Some(wake) = &self.outbox_wake
                    && queued > 0
                {
                    wake.notify_one();
                }
                Ok(outcomes)
            }
            // The transaction is dropped (rolled back) by now.
            Err(e) => Err(self.store.failed(e).await),
        }
    }

    /// The renderer for this transaction's new tickets' mail, if mail is
    /// composed and not in order for now.
    fn renderer(&self) -> Option<&Renderer> {
        if self.always_in_order {
            return None;
        }
        self.notifier.as_ref()?;
        // One of the transactions still to compose in order, if any.
        if self
            .in_order
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return None;
        }
        self.renderer
            .get_or_init(|| match Renderer::start() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the composing thread; composing in order");
                    None
                }
            })
            .as_ref()
    }

    /// The outcomes, and how many mails were queued.
    async fn transaction_once(
        &self,
        batch: &[Prepared],
        cursor: Option<&Cursor>,
        renderer: Option<&Renderer>,
    ) -> Result<(Vec<Outcome>, usize), StoreError> {
        let mut tx = self.store.begin().await?;
        // What the batch will look up, asked once: lookups that would find
        // nothing cost no statement.
        tx.look_ahead(&record::probes(
            batch,
            tx.now() - crate::notify::CAP_WINDOW_MS,
        ))
        .await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut queued = 0;
        // One template set per transaction.
        let notifier = self.notifier();
        let composer = notifier
            .as_ref()
            .map(|notifier| record::Composer { notifier, renderer });
        for p in batch {
            let recorded = record::record(&mut tx, &self.config, composer, p).await?;
            outcomes.push(recorded.outcome);
            queued += recorded.queued;
        }
        if let Some(c) = cursor {
            tx.set_cursor(c).await?;
        }
        tx.commit().await?;
        Ok((outcomes, queued))
    }

    /// The quarantine entry for a message the store refused.
    fn refused(&self, p: &Prepared, e: &StoreError) -> Prepared {
        let reason = format!("the store refused it: {e}");
        let action = match (&p.action, p.raw()) {
            (Action::Ticket { .. }, Some(Ok(raw))) => {
                quarantine_action(reason, &raw, &parse::parse(head_of(&raw)))
            }
            // Its own encoding cannot be read back (a bug, never seen): the
            // parse's fields stand in for the headers.
            (Action::Ticket { parsed, .. }, Some(Err(why))) => Action::Quarantine {
                reason: format!("{reason}; its headers could not be kept: {why}"),
                headers: Vec::new(),
                message_id: parsed.message_id.clone(),
                from: parsed.from.as_ref().map(|a| a.to_string()),
                subject: parsed.subject.clone(),
                size: parsed.size,
            },
            (Action::Quarantine { .. }, _) | (_, None) => {
                let mut action = p.action.clone();
                if let Action::Quarantine { reason: r, .. } = &mut action {
                    *r = reason;
                }
                action
            }
        };
        Prepared {
            mailbox: p.mailbox.clone(),
            origin: p.origin.clone(),
            dedupe_key: p.dedupe_key.clone(),
            action,
        }
    }
}

fn quarantine_action(reason: String, raw: &[u8], parsed: &ParsedMessage) -> Action {
    Action::Quarantine {
        reason,
        headers: head_of(raw).to_vec(),
        message_id: parsed.message_id.clone(),
        from: parsed.from.as_ref().map(|a| a.to_string()),
        subject: parsed.subject.clone(),
        size: raw.len() as u64,
    }
}

pub use crate::parse::head_of;

/// The key that makes a message a duplicate: `mid:<Message-ID>#<content hash>`,
/// or `sha256:<content hash>` for a message without a Message-ID.
///
/// The content hash covers what identifies a message's content (sender,
/// recipients, subject, date, body), so that copies differing only in
/// transport headers (Received, Delivered-To, Return-Path, DKIM/ARC added in
/// transit) are the same message, while another message that reuses a
/// Message-ID is not. The store keeps `mid:<Message-ID>` for the first message
/// with an ID and the whole key for a colliding one (see [`record`]).
pub fn dedupe_key(parsed: &ParsedMessage, raw: &[u8]) -> String {
    let hash = content_hash(parsed, raw);
    match &parsed.message_id {
        Some(id) => format!("mid:{id}#{hash}"),
        None => format!("sha256:{hash}"),
    }
}

/// SHA-256 (hex) of From, To, Cc, Subject, Date and the raw body.
pub fn content_hash(parsed: &ParsedMessage, raw: &[u8]) -> String {
    let body_start = {
        let head = head_of(raw);
        if head.len() < raw.len() {
            head.len()
        } else {
            0
        }
    };
    // Hashed as it is read: the same bytes as one buffer of the headers and
    // the body would be, without copying the body.
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for name in ["From", "To", "Cc", "Subject", "Date"] {
        hasher.update(name.as_bytes());
        hasher.update(b":");
        hasher.update(parsed.header(name).unwrap_or("").trim().as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(&raw[body_start..]);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_is_the_hash_of_the_headers_then_the_body() {
        // Stored dedupe keys carry it: it must never change.
        let raw = b"From: A <a@x>\r\nTo: b@x\r\nSubject:  Hi \r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nReceived: x\r\n\r\nBody\r\n";
        let parsed = parse::parse(raw);
        let body = &raw[head_of(raw).len()..];
        let mut content = Vec::new();
        for (name, value) in [
            ("From", "A <a@x>"),
            ("To", "b@x"),
            ("Cc", ""),
            ("Subject", "Hi"),
            ("Date", "Mon, 1 Jan 2024 00:00:00 +0000"),
        ] {
            content.extend_from_slice(format!("{name}:{value}\n").as_bytes());
        }
        content.extend_from_slice(body);
        assert_eq!(content_hash(&parsed, raw), parse::sha256_hex(&content));
    }

    #[test]
    fn dedupe_ignores_transport_headers() {
        let a = b"Received: from a\nFrom: x@y.z\nSubject: s\n\nbody\n";
        let b = b"Received: from b\nDelivered-To: other@y.z\nFrom: x@y.z\nSubject: s\n\nbody\n";
        let c = b"Received: from a\nFrom: x@y.z\nSubject: s\n\nother body\n";
        let key = |raw: &[u8]| dedupe_key(&parse::parse(raw), raw);
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        assert!(key(a).starts_with("sha256:"));
        let with_id = b"Message-ID: <q@w>\nFrom: x@y.z\n\nbody\n";
        let resent = b"Received: from c\nDKIM-Signature: v=1\nReturn-Path: <b@y.z>\nMessage-ID: <q@w>\nFrom: x@y.z\n\nbody\n";
        let impostor = b"Message-ID: <q@w>\nFrom: mallory@evil.example\n\nother\n";
        assert!(key(with_id).starts_with("mid:q@w#"), "{}", key(with_id));
        assert_eq!(key(with_id), key(resent));
        assert_ne!(key(with_id), key(impostor));
        assert!(key(impostor).starts_with("mid:q@w#"));
    }
}
