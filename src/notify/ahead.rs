//! A new ticket's mail composed on a thread of its own while the pipeline
//! records the next messages.
//!
//! Deciding what a new ticket sends (which kinds, to whom, or why not: the
//! caps) stays in order, on the recording side, because the caps of a
//! batch's later tickets count the mail queued for the earlier ones. Only
//! rendering (templates, MIME, compression) moves to the [`Renderer`]'s
//! thread: each mail is queued at once as a [`PendingMail`], whose bytes
//! the store waits for when it writes the row (`store::deferred`). A mail
//! that cannot be rendered voids its transaction
//! ([`crate::store::StoreError::Composing`]); the pipeline then records the
//! batch again, composing in order ([`Notifier::compose`]), where such a
//! mail is suppressed with its reason, as it always was.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};

use super::{Notifier, Outgoing, Step, TicketEvent, domain_of, new_message_id};
use crate::classify::Decision;
use crate::parse::ParsedMessage;
use crate::store::{ComposedMail, PendingMail};

/// A new ticket, owned, as the rendering thread needs it: the same inputs
/// as the [`TicketEvent`] of its creation.
#[derive(Debug)]
pub struct NewTicket {
    pub number: i64,
    pub mailbox: String,
    pub decision: Arc<Decision>,
    pub parsed: Arc<ParsedMessage>,
    /// Milliseconds since the epoch.
    pub now: i64,
    /// The caps' counts (see [`TicketEvent`]).
    pub recent_acks: i64,
    pub recent_notified_sender: i64,
    pub recent_notified_alert: i64,
}

impl NewTicket {
    /// Its creation's event. A new ticket's mail never quotes the raw
    /// message (only replies relay it), so none is carried.
    fn event(&self) -> TicketEvent<'_> {
        TicketEvent {
            created: true,
            number: self.number,
            mailbox: &self.mailbox,
            decision: &self.decision,
            parsed: &self.parsed,
            recent_acks: self.recent_acks,
            recent_notified_sender: self.recent_notified_sender,
            recent_notified_alert: self.recent_notified_alert,
            now: self.now,
            raw: &[],
            ticket: None,
        }
    }
}

/// One of a new ticket's mails, as [`Notifier::compose_ahead`] queues it.
#[derive(Debug)]
pub enum Ahead {
    /// Decided now: suppressed, or composed in order (no rendering thread).
    Now(Outgoing),
    /// To queue at once; its bytes follow.
    Later(PendingMail),
}

/// The rendering thread. It ends when its last handle is dropped.
#[derive(Debug)]
pub struct Renderer {
    jobs: mpsc::Sender<Job>,
}

impl Renderer {
    /// Starts the thread.
    pub fn start() -> std::io::Result<Renderer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("triaged-compose".to_string())
            .spawn(move || {
                for job in queue {
                    job.run();
                }
            })?;
        Ok(Renderer { jobs })
    }
}

/// One mail to render.
struct Job {
    notifier: Arc<Notifier>,
    ticket: Arc<NewTicket>,
    kind: &'static str,
    desk_address: Arc<str>,
    to: Vec<String>,
    message_id: String,
    reply: tokio::sync::oneshot::Sender<Result<ComposedMail, String>>,
}

impl Job {
    fn compose(&self) -> Result<ComposedMail, String> {
        let ev = self.ticket.event();
        let made = self.notifier.make(
            self.kind,
            &ev,
            &self.desk_address,
            &self.to,
            Some(self.message_id.clone()),
        );
        match made {
            Outgoing::Mail(m) => Ok(ComposedMail::encode(&m.subject, &m.raw)),
            Outgoing::Suppressed { reason, .. } => Err(reason),
        }
    }

    fn run(self) {
        // A panic in one mail's rendering must not end the thread (every
        // later mail would fail with it): it is that mail's failure.
        let composed = std::panic::catch_unwind(AssertUnwindSafe(|| self.compose()))
            .unwrap_or_else(|_| Err(format!("composing the {} panicked", self.kind)));
        // The transaction may be gone (rolled back): nothing waits then.
        let _ = self.reply.send(composed);
    }
}

impl Notifier {
    /// A new ticket's mail, decided now in order (as [`Notifier::compose`]
    /// decides it) and rendered by `renderer` while the caller goes on.
    pub fn compose_ahead(self: &Arc<Self>, ticket: NewTicket, renderer: &Renderer) -> Vec<Ahead> {
        let ev = ticket.event();
        let desk_address: Arc<str> = self.desk_address(ev.mailbox, &ev.decision.desk).into();
        let steps = self.plan_created(&ev);
        let ticket = Arc::new(ticket);
        steps
            .into_iter()
            .map(|step| match step {
                Step::Suppressed { kind, reason } => Ahead::Now(Outgoing::Suppressed {
                    kind: kind.to_string(),
                    reason,
                }),
                Step::Mail { kind, to } => {
                    let message_id = new_message_id(ticket.number, kind, domain_of(&desk_address));
                    let (reply, body) = tokio::sync::oneshot::channel();
                    let pending = PendingMail {
                        kind: kind.to_string(),
                        from: desk_address.to_string(),
                        rcpt: to.clone(),
                        message_id: message_id.clone(),
                        body,
                    };
                    let job = Job {
                        notifier: self.clone(),
                        ticket: ticket.clone(),
                        kind,
                        desk_address: desk_address.clone(),
                        to,
                        message_id,
                        reply,
                    };
                    match renderer.jobs.send(job) {
                        Ok(()) => Ahead::Later(pending),
                        // The thread is gone: composed here, in order.
                        Err(mpsc::SendError(job)) => {
                            let ev = job.ticket.event();
                            Ahead::Now(self.make(
                                kind,
                                &ev,
                                &job.desk_address,
                                &job.to,
                                Some(job.message_id),
                            ))
                        }
                    }
                }
            })
            .collect()
    }
}
