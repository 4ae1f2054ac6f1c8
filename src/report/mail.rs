//! The card as mail from a desk to its managers (`triaged report --mail`).

use super::{Report, to_csv, to_text};
use crate::config::Config;

/// The card as mail to a desk's managers, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardMail {
    pub desk: String,
    /// Envelope sender: the desk's address.
    pub from: String,
    /// The desk's managers.
    pub rcpt: Vec<String>,
    pub subject: String,
    /// Without angle brackets.
    pub message_id: String,
    /// The whole RFC 5322 message: the card as text, and as CSV attached.
    pub raw: Vec<u8>,
}

/// The outbox kind of a card mailed to managers.
pub const MAIL_KIND: &str = "report";

/// A name in the mailed card: one line, no controls, at most 32 characters.
fn mail_name(s: &str) -> String {
    crate::notify::templates::reflect_line(s, 32)
}

/// `card` (of one desk) as mail from the desk to its managers; `None` when
/// the desk has no managers. `Err` says why it cannot be composed (no
/// address to send from, an address that is not one).
pub fn compose_mail(
    config: &Config,
    card: &Report,
    now_ms: i64,
) -> Result<Option<CardMail>, String> {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

    let [desk_name] = card.desks.as_slice() else {
        return Err("a card is mailed per desk".to_string());
    };
    let desk = config
        .desk(desk_name)
        .ok_or_else(|| format!("unknown desk {desk_name:?}"))?;
    if desk.managers.is_empty() {
        return Ok(None);
    }
    let from_address = desk
        .addresses
        .first()
        .cloned()
        .or_else(|| {
            config
                .mailboxes
                .iter()
                .find(|m| &m.desk == desk_name)
                .map(|m| m.address.clone())
        })
        .ok_or_else(|| format!("desk {desk_name:?} has no address to send from"))?;
    let address: lettre::Address = from_address
        .parse()
        .map_err(|e| format!("desk address {from_address:?}: {e}"))?;
    let title = desk.title.clone().unwrap_or_else(|| desk_name.clone());
    let from = Mailbox::new(Some(mail_name(&title)), address);
    let domain = from_address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("localhost");
    let token: String = desk_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    let message_id = format!(
        "triaged.report.{token}.{}.{}.{now_ms}@{domain}",
        card.from,
        std::process::id()
    );
    let subject = crate::notify::templates::one_line(&format!(
        "Report card: {} {} to {}",
        mail_name(&title),
        card.from,
        card.to
    ));
    let csv = to_csv(card).map_err(|e| format!("the CSV: {e}"))?;
    let text = format!(
        "{}\nThe same figures are attached as CSV: filter its first column, \
         \"table\", on queues, messages_per_day or tickets_per_day.\n",
        to_text(card, &mail_name)
    );
    let date = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms.max(0) as u64);
    let mut b = lettre::Message::builder()
        .from(from.clone())
        .reply_to(from)
        .subject(subject.clone())
        .message_id(Some(format!("<{message_id}>")))
        .date(date)
        .header(AutoSubmitted);
    for m in &desk.managers {
        let mb: Mailbox = m
            .parse()
            .map_err(|e| format!("manager address {:?}: {e}", mail_name(m)))?;
        b = b.to(mb);
    }
    let csv_type = ContentType::parse("text/csv; charset=utf-8").map_err(|e| e.to_string())?;
    let file = format!("report-{token}-{}-{}.csv", card.from, card.to);
    let message = b
        .multipart(
            MultiPart::mixed()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(Attachment::new(file).body(csv, csv_type)),
        )
        .map_err(|e| format!("cannot build the mail: {e}"))?;
    let raw = message.formatted();
    if let Some(n) =
        crate::notify::longest_line(&raw).filter(|&n| n > crate::notify::MAX_LINE_OCTETS)
    {
        return Err(format!("the composed mail has a line of {n} octets"));
    }
    Ok(Some(CardMail {
        desk: desk_name.clone(),
        from: from_address,
        rcpt: desk.managers.clone(),
        subject,
        message_id,
        raw,
    }))
}

/// `Auto-Submitted: auto-generated` (RFC 3834): no auto-responder answers it.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Period, Scope, build};
    use crate::store::ReportData;

    fn date(s: &str) -> jiff::civil::Date {
        s.parse().expect("date")
    }

    #[test]
    fn mailed_cards_go_to_the_managers_and_headers_stay_one_line() {
        let mut config = Config::parse(crate::config::DEFAULT_CONFIG, "default").expect("config");
        let scope = Scope::new(&config, Some("isda")).expect("scope");
        let period = Period::new(Some("2026-11-09"), Some("2026-11-15"), date("2026-11-24"))
            .expect("period");
        let card = build(&config, &scope, &period, 0, &ReportData::default());
        let m = compose_mail(&config, &card, 1_794_236_400_000)
            .expect("composed")
            .expect("isda has managers");
        assert_eq!(m.rcpt, ["isda-managers@example.edu"]);
        assert_eq!(m.from, "isda-support@example.edu");
        assert_eq!(
            m.subject,
            "Report card: ISDA support 2026-11-09 to 2026-11-15"
        );
        let raw = String::from_utf8(m.raw.clone()).expect("ascii");
        assert!(raw.contains("Auto-Submitted: auto-generated\r\n"), "{raw}");
        assert!(
            raw.contains("report-isda-2026-11-09-2026-11-15.csv"),
            "{raw}"
        );

        // A title with a line break cannot add a header.
        let isda = config
            .desks
            .iter_mut()
            .find(|d| d.name.get_ref() == "isda")
            .expect("isda");
        isda.title = Some("ISDA\r\nBcc: thief@evil.example".into());
        let m = compose_mail(&config, &card, 0)
            .expect("composed")
            .expect("mail");
        assert_eq!(
            m.subject,
            "Report card: ISDA Bcc: thief@evil.example 2026-11-09 to 2026-11-15"
        );
        let raw = String::from_utf8_lossy(&m.raw);
        assert!(!raw.contains("\nBcc:"), "{raw}");

        // No managers: nothing to send.
        let isda = config
            .desks
            .iter_mut()
            .find(|d| d.name.get_ref() == "isda")
            .expect("isda");
        isda.managers.clear();
        assert_eq!(compose_mail(&config, &card, 0), Ok(None));
        // A card over several desks is not mailed whole.
        let all = Scope::new(&config, None).expect("scope");
        let card = build(&config, &all, &period, 0, &ReportData::default());
        assert!(compose_mail(&config, &card, 0).is_err());
    }
}
