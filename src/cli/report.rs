//! `triaged report`: the service report card as a table, CSV or JSON.

use std::io::Write;
use std::process::ExitCode;

use super::text::{json_visible, truncate, vis};
use crate::config::Config;
use crate::report::{self, ALL, Period, Report, Scope};
use crate::store::Store;

/// The flags of `triaged report`.
#[derive(Debug, Clone, Default)]
pub(super) struct ReportArgs {
    pub from: Option<String>,
    pub to: Option<String>,
    pub desk: Option<String>,
    pub csv: bool,
    pub json: bool,
}

/// What `triaged report` will read, once its flags are known to be good.
pub(super) struct Plan {
    scope: Scope,
    period: Period,
    now_ms: i64,
}

/// Checks the flags against the configuration: the desk, the dates. `Err`
/// is the reason, for exit code 2.
pub(super) fn plan(config: &Config, args: &ReportArgs, now_ms: i64) -> Result<Plan, String> {
    let scope = Scope::new(config, args.desk.as_deref())?;
    let today = jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| scope.tz.to_datetime(t).date())
        .map_err(|e| format!("the clock is out of range: {e}"))?;
    let period = Period::new(args.from.as_deref(), args.to.as_deref(), today)?;
    // The bounds must exist too (the last days jiff knows have none).
    scope.query(&period, now_ms)?;
    Ok(Plan {
        scope,
        period,
        now_ms,
    })
}

/// Reads the figures and prints the card.
pub(super) async fn report(
    store: &Store,
    config: &Config,
    plan: &Plan,
    args: &ReportArgs,
) -> anyhow::Result<ExitCode> {
    let query = plan
        .scope
        .query(&plan.period, plan.now_ms)
        .map_err(anyhow::Error::msg)?;
    let data = store.report_data(&query).await?;
    let card = report::build(config, &plan.scope, &plan.period, plan.now_ms, &data);
    for note in &card.notes {
        eprintln!("triaged: note: {}", vis(note));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", json_visible(&card)?)?;
    } else if args.csv {
        out.write_all(&report::to_csv(&card)?)?;
    } else {
        out.write_all(text(&card).as_bytes())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A business time for a table: `1h 05m`, `27h 30m` (hours are business
/// hours, so never folded into days); `-` for none.
fn hours(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => {
            let minutes = ms.max(0) / 60_000;
            format!("{}h {:02}m", minutes / 60, minutes % 60)
        }
        None => "-".to_string(),
    }
}

/// Rows of cells as aligned columns: the first `left` columns
/// left-aligned, the others right-aligned, two spaces apart.
fn table(header: &[String], rows: &[Vec<String>], left: usize) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = " ".repeat(w.saturating_sub(width(cell)));
            if i < left {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A name from the store or the configuration for a table cell: controls
/// escaped, at most 32 characters.
fn name(s: &str) -> String {
    vis(&truncate(s, 32)).into_owned()
}

/// The card as text: the queue table, then the two per-day tables with a
/// column per mailbox or queue.
fn text(card: &Report) -> String {
    let mut out = format!(
        "Report card {} to {} ({}), desks: {}\n\
         Tickets opened in the period, as they stand now; response times in business hours.\n\n",
        card.from,
        card.to,
        card.time_zone,
        name(&card.desks.join(", "))
    );
    let several = card.desks.len() > 1;
    let mut header: Vec<String> = Vec::new();
    if several {
        header.push("Desk".into());
    }
    header.extend(
        [
            "Queue",
            "Priority",
            "Opened",
            "In target",
            "%",
            "Late",
            "Unanswered",
            "Median",
            "P90",
            "Escalations",
            "Open",
            "Resolved",
        ]
        .map(String::from),
    );
    let rows: Vec<Vec<String>> = card
        .queues
        .iter()
        .map(|r| {
            let mut row = Vec::new();
            if several {
                row.push(name(&r.desk));
            }
            row.extend([
                name(&r.queue),
                name(&r.priority),
                r.opened.to_string(),
                r.within_target.to_string(),
                r.within_target_percent
                    .map(|p| format!("{p:.1}"))
                    .unwrap_or_else(|| "-".into()),
                r.late.to_string(),
                r.unanswered.to_string(),
                hours(r.median_response_ms),
                hours(r.p90_response_ms),
                r.escalations.to_string(),
                r.open.to_string(),
                r.resolved.to_string(),
            ]);
            row
        })
        .collect();
    out.push_str(&table(&header, &rows, if several { 3 } else { 2 }));

    out.push_str("\nMessages received per day\n");
    let columns: Vec<&str> = unique(card.messages_per_day.iter().map(|m| m.mailbox.as_str()));
    out.push_str(&pivot(
        &columns,
        card.messages_per_day
            .iter()
            .map(|m| (m.day.as_str(), m.mailbox.as_str(), m.messages)),
    ));
    out.push_str("\nTickets opened per day\n");
    let columns: Vec<&str> = unique(card.tickets_per_day.iter().map(|t| t.queue.as_str()));
    out.push_str(&pivot(
        &columns,
        card.tickets_per_day
            .iter()
            .map(|t| (t.day.as_str(), t.queue.as_str(), t.opened)),
    ));
    out
}

/// The distinct values, in first-seen order.
fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// (day, column, count) as a table of days by columns, with a total column.
fn pivot<'a>(columns: &[&str], cells: impl Iterator<Item = (&'a str, &'a str, i64)>) -> String {
    let mut days: Vec<(&str, Vec<i64>)> = Vec::new();
    for (day, column, n) in cells {
        let Some(i) = columns.iter().position(|c| *c == column) else {
            continue;
        };
        if days.last().is_none_or(|(d, _)| *d != day) {
            days.push((day, vec![0; columns.len()]));
        }
        if let Some((_, counts)) = days.last_mut() {
            counts[i] += n;
        }
    }
    let mut header = vec!["Day".to_string()];
    header.extend(columns.iter().map(|c| name(c)));
    header.push(ALL.to_string());
    let rows: Vec<Vec<String>> = days
        .iter()
        .map(|(day, counts)| {
            let mut row = vec![day.to_string()];
            row.extend(counts.iter().map(i64::to_string));
            row.push(counts.iter().sum::<i64>().to_string());
            row
        })
        .collect();
    table(&header, &rows, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_hours_are_never_days() {
        assert_eq!(hours(None), "-");
        assert_eq!(hours(Some(0)), "0h 00m");
        assert_eq!(hours(Some(65 * 60_000 + 59_999)), "1h 05m");
        assert_eq!(hours(Some(27 * 3_600_000 + 30 * 60_000)), "27h 30m");
    }

    #[test]
    fn tables_align_and_escape() {
        let t = table(
            &["Queue".into(), "N".into()],
            &[
                vec![name("a\u{1b}[2J"), "10".into()],
                vec!["bb".into(), "2".into()],
            ],
            1,
        );
        assert_eq!(t, "Queue      N\na\\x1b[2J  10\nbb         2\n");
    }
}
