//! `triaged report`: the service report card as a table, CSV or JSON, or
//! queued as mail to each desk's managers (`--mail`).

use std::io::Write;
use std::process::ExitCode;

use super::text::{json_visible, truncate, vis};
use crate::config::Config;
use crate::report::{self, Period, Scope};
use crate::store::Store;

/// The flags of `triaged report`.
#[derive(Debug, Clone, Default)]
pub(super) struct ReportArgs {
    pub from: Option<String>,
    pub to: Option<String>,
    pub desk: Option<String>,
    pub csv: bool,
    pub json: bool,
    pub mail: bool,
}

/// What `triaged report` will read, once its flags are known to be good:
/// one card, or (`--mail`) one per desk.
pub(super) struct Plan {
    cards: Vec<CardPlan>,
}

/// One card to make.
struct CardPlan {
    scope: Scope,
    period: Period,
    now_ms: i64,
}

/// Checks the flags against the configuration: the desk, the dates. `Err`
/// is the reason, for exit code 2. With `--mail`, each desk (or the one
/// asked for) gets its own card, in its own time zone.
pub(super) fn plan(config: &Config, args: &ReportArgs, now_ms: i64) -> Result<Plan, String> {
    if !args.mail {
        return Ok(Plan {
            cards: vec![card_plan(config, args.desk.as_deref(), args, now_ms)?],
        });
    }
    let desks: Vec<String> = match &args.desk {
        Some(d) => vec![d.clone()],
        None => config
            .desks
            .iter()
            .map(|d| d.name.get_ref().clone())
            .collect(),
    };
    let cards = desks
        .iter()
        .map(|d| card_plan(config, Some(d), args, now_ms))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Plan { cards })
}

fn card_plan(
    config: &Config,
    desk: Option<&str>,
    args: &ReportArgs,
    now_ms: i64,
) -> Result<CardPlan, String> {
    let scope = Scope::new(config, desk)?;
    let today = jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| scope.tz.to_datetime(t).date())
        .map_err(|e| format!("the clock is out of range: {e}"))?;
    let period = Period::new(args.from.as_deref(), args.to.as_deref(), today)?;
    // The bounds must exist too (the last days jiff knows have none).
    scope.query(&period, now_ms)?;
    Ok(CardPlan {
        scope,
        period,
        now_ms,
    })
}

/// Reads the figures of one card.
async fn card(store: &Store, config: &Config, plan: &CardPlan) -> anyhow::Result<report::Report> {
    let query = plan
        .scope
        .query(&plan.period, plan.now_ms)
        .map_err(anyhow::Error::msg)?;
    let data = store.report_data(&query).await?;
    let card = report::build(config, &plan.scope, &plan.period, plan.now_ms, &data);
    for note in &card.notes {
        eprintln!("triaged: note: {}", vis(note));
    }
    Ok(card)
}

/// Reads the figures and prints the card, or queues each desk's card for
/// its managers.
pub(super) async fn report(
    store: &Store,
    config: &Config,
    plan: &Plan,
    args: &ReportArgs,
) -> anyhow::Result<ExitCode> {
    if args.mail {
        return mail(store, config, plan).await;
    }
    let Some(one) = plan.cards.first() else {
        return Ok(ExitCode::SUCCESS);
    };
    let card = card(store, config, one).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", json_visible(&card)?)?;
    } else if args.csv {
        out.write_all(&report::to_csv(&card)?)?;
    } else {
        out.write_all(report::to_text(&card, &name).as_bytes())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `--mail`: each desk's card to its managers, through the outbox (the
/// daemon's sender delivers it). A desk without managers is skipped; a
/// card that cannot be composed is reported and makes the exit code 1.
async fn mail(store: &Store, config: &Config, plan: &Plan) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for one in &plan.cards {
        let card = card(store, config, one).await?;
        let desk = card.desks.join(", ");
        match report::compose_mail(config, &card, one.now_ms) {
            Ok(Some(m)) => {
                let id = store
                    .queue_mail_alone(&crate::store::NewMail {
                        kind: report::MAIL_KIND,
                        from: &m.from,
                        rcpt: &m.rcpt,
                        subject: &m.subject,
                        message_id: &m.message_id,
                        raw: &m.raw,
                    })
                    .await?;
                writeln!(
                    out,
                    "desk {}: report card {} to {} queued for {} (outbox {id})",
                    vis(&desk),
                    card.from,
                    card.to,
                    vis(&m.rcpt.join(", "))
                )?;
            }
            Ok(None) => writeln!(out, "desk {}: no managers, nothing queued", vis(&desk))?,
            Err(reason) => {
                failed = true;
                eprintln!("triaged: desk {}: {}", vis(&desk), vis(&reason));
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A name from the store or the configuration for a table cell: controls
/// escaped, at most 32 characters.
fn name(s: &str) -> String {
    vis(&truncate(s, 32)).into_owned()
}
