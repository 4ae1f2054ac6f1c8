//! The card as text (aligned tables) and as CSV (one RFC 4180 table).

use super::{ALL, Report};

/// The columns of the card as CSV: one table whose `table` column says which
/// part of the card a row belongs to (`queues`, `messages_per_day`,
/// `tickets_per_day`), so that a spreadsheet can filter on it.
pub const CSV_COLUMNS: &[&str] = &[
    "table",
    "desk",
    "queue",
    "priority",
    "day",
    "mailbox",
    "opened",
    "within_target",
    "within_target_percent",
    "late",
    "unanswered",
    "no_target",
    "median_response_minutes",
    "p90_response_minutes",
    "escalations",
    "open",
    "resolved",
    "messages",
];

/// A text value for a spreadsheet cell: a value that a spreadsheet would
/// take for a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) gets a leading `'`, so that it shows as text and runs nothing.
/// Quoting (commas, quotes, line breaks) is the CSV writer's.
pub fn csv_text(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => std::borrow::Cow::Owned(format!("'{s}")),
        _ => std::borrow::Cow::Borrowed(s),
    }
}

/// The card as RFC 4180 CSV (CRLF line ends, a header row, fields quoted
/// where needed), in [`CSV_COLUMNS`].
pub fn to_csv(report: &Report) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    let int = |n: i64| n.to_string();
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for r in &report.queues {
        let rec: [std::borrow::Cow<'_, str>; 18] = [
            "queues".into(),
            csv_text(&r.desk),
            csv_text(&r.queue),
            csv_text(&r.priority),
            "".into(),
            "".into(),
            int(r.opened).into(),
            int(r.within_target).into(),
            opt(r.within_target_percent).into(),
            int(r.late).into(),
            int(r.unanswered).into(),
            int(r.no_target).into(),
            opt(r.median_response_minutes).into(),
            opt(r.p90_response_minutes).into(),
            int(r.escalations).into(),
            int(r.open).into(),
            int(r.resolved).into(),
            "".into(),
        ];
        w.write_record(rec.iter().map(|c| c.as_bytes()))?;
    }
    for m in &report.messages_per_day {
        let mut rec: [std::borrow::Cow<'_, str>; 18] = Default::default();
        rec[0] = "messages_per_day".into();
        rec[1] = csv_text(&m.desk);
        rec[4] = m.day.as_str().into();
        rec[5] = csv_text(&m.mailbox);
        rec[17] = int(m.messages).into();
        w.write_record(rec.iter().map(|c| c.as_bytes()))?;
    }
    for t in &report.tickets_per_day {
        let mut rec: [std::borrow::Cow<'_, str>; 18] = Default::default();
        rec[0] = "tickets_per_day".into();
        rec[1] = csv_text(&t.desk);
        rec[2] = csv_text(&t.queue);
        rec[4] = t.day.as_str().into();
        rec[6] = int(t.opened).into();
        w.write_record(rec.iter().map(|c| c.as_bytes()))?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
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

/// The card as text: the queue table, then the two per-day tables with a
/// column per mailbox or queue. `name` makes a name from the store or the
/// configuration fit to show (escaped or stripped of controls, bounded).
pub fn to_text(card: &Report, name: &dyn Fn(&str) -> String) -> String {
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
        name,
    ));
    out.push_str("\nTickets opened per day\n");
    let columns: Vec<&str> = unique(card.tickets_per_day.iter().map(|t| t.queue.as_str()));
    out.push_str(&pivot(
        &columns,
        card.tickets_per_day
            .iter()
            .map(|t| (t.day.as_str(), t.queue.as_str(), t.opened)),
        name,
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
fn pivot<'a>(
    columns: &[&str],
    cells: impl Iterator<Item = (&'a str, &'a str, i64)>,
    name: &dyn Fn(&str) -> String,
) -> String {
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
    use crate::config::Config;
    use crate::report::{Period, Scope, build};
    use crate::store::{BucketCount, GroupCounts, ReportData};

    fn date(s: &str) -> jiff::civil::Date {
        s.parse().expect("date")
    }

    #[test]
    fn csv_defuses_formulas_and_quotes_what_needs_it() {
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_text("+1"), "'+1");
        assert_eq!(csv_text("-1+2"), "'-1+2");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_text("\tx"), "'\tx");
        assert_eq!(csv_text("Customer-Support"), "Customer-Support");
        assert_eq!(csv_text(""), "");

        let config = Config::parse(crate::config::DEFAULT_CONFIG, "default").expect("config");
        let scope = Scope::new(&config, Some("isda")).expect("scope");
        let period = Period::new(Some("2026-11-09"), Some("2026-11-09"), date("2026-11-24"))
            .expect("period");
        let (from_ms, _) = period.bounds(&scope.tz).expect("bounds");
        let hostile = "=cmd|' /C calc'!A0,\"q\"\nline";
        let data = ReportData {
            groups: vec![GroupCounts {
                desk: "isda".into(),
                queue: hostile.into(),
                priority: Some("high".into()),
                opened: 1,
                within_target: 0,
                late: 0,
                unanswered: 1,
                no_target: 0,
                resolved: 0,
            }],
            tickets: vec![BucketCount {
                key: hostile.into(),
                desk: "isda".into(),
                start_ms: from_ms,
                count: 1,
            }],
            ..ReportData::default()
        };
        let report = build(&config, &scope, &period, from_ms, &data);
        let bytes = to_csv(&report).expect("csv");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.starts_with("table,desk,queue,priority,day,"), "{text}");
        assert!(text.contains("\r\n"));
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        let records: Vec<csv::StringRecord> = r.records().map(|x| x.expect("record")).collect();
        let hostile_rows: Vec<&csv::StringRecord> = records
            .iter()
            .filter(|rec| rec.get(2).is_some_and(|q| q.contains("calc")))
            .collect();
        // Its priority row, its total and its one day.
        assert_eq!(hostile_rows.len(), 3);
        for rec in hostile_rows {
            assert_eq!(rec.get(2), Some(format!("'{hostile}").as_str()));
            assert_eq!(rec.len(), CSV_COLUMNS.len());
        }
        // Every record has every column.
        assert!(records.iter().all(|rec| rec.len() == CSV_COLUMNS.len()));
    }

    #[test]
    fn business_hours_are_never_days() {
        assert_eq!(hours(None), "-");
        assert_eq!(hours(Some(0)), "0h 00m");
        assert_eq!(hours(Some(65 * 60_000 + 59_999)), "1h 05m");
        assert_eq!(hours(Some(27 * 3_600_000 + 30 * 60_000)), "27h 30m");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["Queue".into(), "N".into()],
            &[
                vec!["a\\x1b[2J".into(), "10".into()],
                vec!["bb".into(), "2".into()],
            ],
            1,
        );
        assert_eq!(t, "Queue      N\na\\x1b[2J  10\nbb         2\n");
    }
}
