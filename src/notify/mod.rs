//! Notify: what the desk says, to whom, and how it leaves.
//!
//! - [`Notifier`] composes mail for ticket events (an acknowledgement to the
//!   sender of a new ticket, the queue's notification, the urgent notice to the
//!   ticket's recipient list). The pipeline asks it inside the event's
//!   transaction and queues the result in the outbox, so a mail and its cause
//!   commit together ([`TicketEvent`] in, [`Outgoing`] out).
//! - `ahead.rs`: the same mail for a new ticket, decided in order and
//!   rendered on a thread of its own ([`Renderer`]) while the pipeline
//!   records the next messages.
//! - [`policy`] says who must never get an automatic reply (loops, bounces, lists).
//! - [`templates`] renders the minijinja templates.
//! - [`sender`] delivers the outbox over SMTP.
//! - `sla.rs`: the SLA clock's mail (warnings, escalations, on-call pages,
//!   daily status), for `crate::sla`.
//!
//! Customer-facing mail goes to the customer alone; internal lists get their own
//! mails, so no internal address is ever shown to a customer.

mod ahead;
mod event;
pub mod policy;
mod relay;
pub mod sender;
mod sla;
pub mod smtp;
mod steering;
pub mod templates;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart, header};
use minijinja::Value;

use crate::config::Config;
use crate::parse::ParsedMessage;
use crate::thread::format_tag;
pub use ahead::{Ahead, NewTicket, Renderer};
pub use event::{OutboundMail, Outgoing, TicketEvent};
pub use relay::{Correspondent, RELAYED_TEXT_CHARS, correspondent, human_size, relay_text};
pub use sla::{STATUS_TEXT_CHARS, SlaNotice, age};
pub use steering::Steering;
use templates::{
    REFLECTED_BODY_CHARS, REFLECTED_ID_CHARS, REFLECTED_NAME_CHARS, REFLECTED_SUBJECT_CHARS,
    Rendered, Templates, reflect_line, reflect_text,
};

/// RFC 5322 section 2.1.1: a line is at most 998 octets, CR LF excluded.
pub const MAX_LINE_OCTETS: usize = 998;
/// How many of the inbound References are carried into our References.
const MAX_REFERENCES: usize = 20;
/// The longest Message-ID carried into In-Reply-To or References: an ID is
/// never folded, so a longer one could not keep its header line in bounds.
const MAX_ID_CHARS: usize = 250;

/// Composes the desk's mail from templates and the configuration.
#[derive(Debug)]
pub struct Notifier {
    config: Arc<Config>,
    templates: Templates,
    own: Vec<String>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// How far back (ms) mail is counted for the caps: acknowledgements to one
/// sender, notifications about one sender's or one alert's tickets.
pub const CAP_WINDOW_MS: i64 = 3_600_000;

/// Loads the templates named by the configuration (or the built-in ones)
/// into a [`Notifier`]; every template problem is returned.
pub fn notifier(config: &Arc<Config>) -> Result<Notifier, crate::problem::Problems> {
    let templates =
        Templates::load_or_builtin(&config.paths.templates).map_err(crate::problem::Problems)?;
    let problems = check_templates(config, &templates);
    if !problems.is_empty() {
        return Err(crate::problem::Problems(problems));
    }
    Ok(Notifier::new(config.clone(), templates))
}

/// Every problem of a loaded template set for this configuration: each
/// template rendered strictly against its kind's contexts, and override
/// folders for desks and queues that exist.
pub fn check_templates(config: &Config, templates: &Templates) -> Vec<crate::problem::Problem> {
    let desks: Vec<&str> = config
        .desks
        .iter()
        .map(|d| d.name.get_ref().as_str())
        .collect();
    let queues: Vec<&str> = config
        .queues
        .iter()
        .map(|q| q.name.get_ref().as_str())
        .collect();
    let mut problems = templates.check();
    problems.extend(templates.check_overrides(&desks, &queues));
    problems
}

impl Notifier {
    pub fn new(config: Arc<Config>, templates: Templates) -> Notifier {
        let own = config.own_addresses();
        Notifier {
            config,
            templates,
            own,
        }
    }

    /// How many template files it composes from.
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    fn is_internal(&self, address: &str) -> bool {
        self.own.iter().any(|o| o.eq_ignore_ascii_case(address))
    }

    fn context(&self, ev: &TicketEvent<'_>, desk_address: &str, recipients: &[String]) -> Value {
        let d = ev.decision;
        let m = ev.parsed;
        let desk = self.config.desk(&d.desk);
        let requester = m.requester();
        // The desk's calendar holds its zone, looked up once at load.
        let tz = self
            .config
            .calendars
            .get(&d.desk)
            .map(|c| c.time_zone().clone())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let when = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| {
                    t.to_zoned(tz.clone())
                        .strftime("%Y-%m-%d %H:%M %Z")
                        .to_string()
                })
                .unwrap_or_default()
        };
        // Everything from the inbound mail is bounded and stripped of
        // controls here: a 10 MB subject or display name must not become a
        // 10 MB reply, and CR/LF must not reach a header or the text.
        let subject = m
            .subject
            .as_deref()
            .map(|s| reflect_line(s, REFLECTED_SUBJECT_CHARS))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "(no subject)".to_string());
        let name_of = |a: &crate::parse::MailAddr| {
            a.name
                .as_deref()
                .map(|n| reflect_line(n, REFLECTED_NAME_CHARS))
                .filter(|n| !n.is_empty())
        };
        let address_of =
            |a: &crate::parse::MailAddr| reflect_line(&a.address, REFLECTED_NAME_CHARS);
        let display = |a: &crate::parse::MailAddr| match name_of(a) {
            Some(n) => format!("{n} <{}>", address_of(a)),
            None => address_of(a),
        };
        minijinja::context! {
            ticket => minijinja::context! {
                number => ev.number,
                tag => format_tag(&d.desk_tag, ev.number),
                subject => subject.clone(),
                queue => d.queue.clone(),
                kind => d.kind.as_str(),
                status => "new",
                urgency => d.urgency.as_str(),
                impact => d.impact.as_str(),
                priority => d.priority.as_str(),
                due => d.due_ms.map(when),
                requester => requester.map(address_of),
                requester_name => requester.and_then(name_of),
                requester_display => requester.map(display),
                mailbox => ev.mailbox,
                created_at => when(ev.now),
                desk => d.desk.clone(),
            },
            desk => minijinja::context! {
                name => d.desk.clone(),
                tag => d.desk_tag.clone(),
                title => desk.and_then(|x| x.title.clone()).unwrap_or_else(|| d.desk.clone()),
                address => desk_address,
            },
            message => minijinja::context! {
                from => m.from.as_ref().map(display),
                subject => subject,
                body => reflect_text(&m.body, REFLECTED_BODY_CHARS),
                date => m.date.map(|s| when(s * 1000)),
                message_id => m.message_id.as_deref().map(|i| reflect_line(i, REFLECTED_ID_CHARS)),
            },
            recipients => recipients,
        }
    }

    fn render(&self, kind: &str, ev: &TicketEvent<'_>, ctx: &Value) -> Result<Rendered, String> {
        self.templates
            .render(kind, &ev.decision.desk, &ev.decision.queue, ctx)
            .map_err(|p| format!("template: {p}"))
    }

    /// One mail, or why it cannot be made.
    fn build(
        &self,
        kind: &str,
        ev: &TicketEvent<'_>,
        desk_address: &str,
        to: &[String],
        rendered: Rendered,
        message_id: Option<String>,
    ) -> Outgoing {
        let title = self
            .config
            .desk(&ev.decision.desk)
            .and_then(|d| d.title.as_deref());
        match build_mail(kind, ev, title, desk_address, to, rendered, message_id) {
            Ok(mail) => Outgoing::Mail(mail),
            Err(reason) => Outgoing::Suppressed {
                kind: kind.to_string(),
                reason,
            },
        }
    }
}

impl Notifier {
    /// The desk's address for mail about a message that came to `mailbox`:
    /// that mailbox's, else the desk's first.
    fn desk_address(&self, mailbox: &str, desk: &str) -> String {
        self.config
            .mailbox(mailbox)
            .map(|m| m.address.clone())
            .or_else(|| {
                self.config
                    .desk(desk)
                    .and_then(|x| x.addresses.first().cloned())
            })
            .unwrap_or_else(|| format!("{desk}@localhost"))
    }

    /// The mail for one ticket event: to queue, or suppressed with a reason.
    /// A reply on an existing ticket is relayed (see [`relay`]); replies are
    /// never acknowledged.
    pub fn compose(&self, ev: &TicketEvent<'_>) -> Vec<Outgoing> {
        if !ev.created {
            return match ev.ticket {
                Some(state) => self.compose_reply(ev, state),
                None => Vec::new(),
            };
        }
        let desk_address = self.desk_address(ev.mailbox, &ev.decision.desk);
        self.plan_created(ev)
            .into_iter()
            .map(|step| match step {
                Step::Suppressed { kind, reason } => Outgoing::Suppressed {
                    kind: kind.to_string(),
                    reason,
                },
                Step::Mail { kind, to } => self.make(kind, ev, &desk_address, &to, None),
            })
            .collect()
    }

    /// One mail of `kind` to `to`, rendered and built (with `message_id`, or
    /// a new one), or why it cannot be made.
    fn make(
        &self,
        kind: &'static str,
        ev: &TicketEvent<'_>,
        desk_address: &str,
        to: &[String],
        message_id: Option<String>,
    ) -> Outgoing {
        // The acknowledgement lists no one: it goes to the sender alone.
        let listed: &[String] = if kind == "acknowledgement" { &[] } else { to };
        let ctx = self.context(ev, desk_address, listed);
        match self.render(kind, ev, &ctx) {
            Ok(r) => self.build(kind, ev, desk_address, to, r, message_id),
            Err(reason) => Outgoing::Suppressed {
                kind: kind.to_string(),
                reason,
            },
        }
    }

    /// What a new ticket's event sends, in order, decided on the event alone
    /// (the caps' counts it carries): each mail's kind and recipients, or
    /// why a kind is not sent. Rendering is the rest ([`Notifier::make`]).
    fn plan_created(&self, ev: &TicketEvent<'_>) -> Vec<Step> {
        let d = ev.decision;
        let mut out = Vec::new();

        // 1. The acknowledgement, to the sender alone.
        let sender = ev.parsed.requester().map(|a| a.address.clone());
        let ack_block = if !self.config.notify.acknowledge {
            Some("acknowledgements are switched off (notify.acknowledge)".to_string())
        } else if d.suppress_ack {
            Some("a routing rule suppresses the acknowledgement".to_string())
        } else if let Some(reason) = policy::no_reply_reason(ev.parsed, &self.own) {
            Some(reason)
        } else if ev.recent_acks >= self.config.notify.ack_limit_per_hour {
            Some(format!(
                "{} acknowledgements to this sender in the last hour (limit {})",
                ev.recent_acks, self.config.notify.ack_limit_per_hour
            ))
        } else {
            None
        };
        let kind = "acknowledgement";
        out.push(match (ack_block, sender) {
            (Some(reason), _) => Step::Suppressed { kind, reason },
            (None, None) => Step::Suppressed {
                kind,
                reason: "no sender address".to_string(),
            },
            (None, Some(sender)) => Step::Mail {
                kind,
                to: vec![sender],
            },
        });

        // Notifications are capped per sender and per alert key within the
        // window, so that a flood (200 "down" mails from one sender) makes
        // tickets but does not bury the lists in mail.
        let limits = &self.config.notify;
        let notify_block = if ev.recent_notified_sender >= limits.notify_limit_per_sender_per_hour {
            Some(format!(
                "{} tickets from this sender notified in the last hour (limit {}, notify.notify_limit_per_sender_per_hour)",
                ev.recent_notified_sender, limits.notify_limit_per_sender_per_hour
            ))
        } else if d.alert_key.is_some()
            && ev.recent_notified_alert >= limits.notify_limit_per_alert_per_hour
        {
            Some(format!(
                "{} tickets of alert {} notified in the last hour (limit {}, notify.notify_limit_per_alert_per_hour)",
                ev.recent_notified_alert,
                d.alert_key.as_deref().unwrap_or(""),
                limits.notify_limit_per_alert_per_hour
            ))
        } else {
            None
        };

        // 2. The queue's notification list.
        let notify: Vec<String> = self
            .config
            .queues
            .iter()
            .find(|q| q.name.get_ref() == &d.queue)
            .map(|q| q.notify.clone())
            .unwrap_or_default();
        let kind = "queue_notification";
        if !notify.is_empty() {
            out.push(match &notify_block {
                Some(reason) => Step::Suppressed {
                    kind,
                    reason: reason.clone(),
                },
                None => Step::Mail { kind, to: notify },
            });
        }

        // 3. An urgent response: the preliminary notification to the recipient
        // list. Internal addresses share one mail; anyone else gets their own
        // copy, and the sender already has the acknowledgement.
        let kind = "urgent_notification";
        let urgent = d.kind.is_urgent() && !d.recipients.is_empty();
        if let (true, Some(reason)) = (urgent, &notify_block) {
            out.push(Step::Suppressed {
                kind,
                reason: reason.clone(),
            });
        } else if urgent {
            let sender = ev
                .parsed
                .requester()
                .map(|a| a.address.to_ascii_lowercase());
            let others: Vec<String> = d
                .recipients
                .iter()
                .filter(|r| Some(r.to_ascii_lowercase()) != sender)
                .cloned()
                .collect();
            let (internal, external): (Vec<String>, Vec<String>) =
                others.into_iter().partition(|r| self.is_internal(r));
            // Each mail lists only the people it goes to.
            if !internal.is_empty() {
                out.push(Step::Mail { kind, to: internal });
            }
            out.extend(
                external
                    .into_iter()
                    .map(|e| Step::Mail { kind, to: vec![e] }),
            );
        }
        out
    }
}

/// One step of a new ticket's mail (see [`Notifier::plan_created`]).
#[derive(Debug)]
enum Step {
    Suppressed { kind: &'static str, reason: String },
    Mail { kind: &'static str, to: Vec<String> },
}

/// `Auto-Submitted` (RFC 3834).
#[derive(Debug, Clone)]
struct AutoSubmitted(String);

impl header::Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `X-Auto-Response-Suppress`, so that Exchange does not answer our mail.
#[derive(Debug, Clone)]
struct AutoResponseSuppress;

impl header::Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoResponseSuppress)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".to_string())
    }
}

/// Our Message-ID for a new mail: unique per process run and ticket.
pub fn new_message_id(number: i64, kind: &str, domain: &str) -> String {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "triaged.{number}.{kind}.{nanos:x}.{n}.{}@{domain}",
        std::process::id()
    )
}

/// The domain of `address` (for our Message-IDs), `localhost` without one.
fn domain_of(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("localhost")
}

fn build_mail(
    kind: &str,
    ev: &TicketEvent<'_>,
    desk_title: Option<&str>,
    desk_address: &str,
    to: &[String],
    rendered: Rendered,
    message_id: Option<String>,
) -> Result<OutboundMail, String> {
    let m: &ParsedMessage = ev.parsed;
    let address: lettre::Address = desk_address
        .parse()
        .map_err(|e| format!("desk address {desk_address:?}: {e}"))?;
    // "ISDA support" <isda-support@example.edu>: the desk's name as customers read it.
    let from = Mailbox::new(desk_title.map(str::to_string), address);
    let message_id =
        message_id.unwrap_or_else(|| new_message_id(ev.number, kind, domain_of(desk_address)));
    let mut b = lettre::Message::builder()
        .from(from.clone())
        .reply_to(from)
        .subject(rendered.subject.clone())
        .message_id(Some(format!("<{message_id}>")))
        .date_now()
        .header(AutoSubmitted(
            if kind == "acknowledgement" {
                "auto-replied"
            } else {
                "auto-generated"
            }
            .to_string(),
        ))
        .header(AutoResponseSuppress);
    for r in to {
        let mb: Mailbox = r
            .parse()
            .map_err(|e| format!("recipient {:?}: {e}", reflect_line(r, REFLECTED_NAME_CHARS)))?;
        b = b.to(mb);
    }
    // Thread under the customer's message: only IDs that can be written as
    // they are (printable ASCII, bounded), and the newest references only.
    if let Some(id) = m.message_id.as_deref().filter(|i| carried_id(i)) {
        b = b.in_reply_to(format!("<{id}>"));
        let usable: Vec<&String> = m.references.iter().filter(|r| carried_id(r)).collect();
        let skip = usable.len().saturating_sub(MAX_REFERENCES - 1);
        let mut refs: Vec<String> = usable[skip..].iter().map(|r| format!("<{r}>")).collect();
        refs.push(format!("<{id}>"));
        b = b.references(refs.join(" "));
    }
    let message = match rendered.html {
        Some(html) => b.multipart(MultiPart::alternative_plain_html(rendered.text, html)),
        None => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(rendered.text),
        ),
    }
    .map_err(|e| format!("cannot build the mail: {e}"))?;
    let raw = message.formatted();
    if let Some(n) = longest_line(&raw).filter(|&n| n > MAX_LINE_OCTETS) {
        return Err(format!(
            "the composed mail has a line of {n} octets (RFC 5322 allows {MAX_LINE_OCTETS})"
        ));
    }
    Ok(OutboundMail {
        kind: kind.to_string(),
        from: desk_address.to_string(),
        rcpt: to.to_vec(),
        subject: rendered.subject,
        message_id,
        raw,
    })
}

/// A Message-ID we can repeat in a header: 1 to 250 printable ASCII
/// characters, no spaces or angle brackets.
fn carried_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

/// The length of the longest line of `raw`, without its line break.
pub fn longest_line(raw: &[u8]) -> Option<usize> {
    raw.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .max()
}
