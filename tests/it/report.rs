//! `triaged report` against a hand-computed fixture: 50 tickets of the ISDA
//! desk opened in the week of Monday 2026-11-09 (plus a few that must not
//! count), written straight into a migrated store (SQLite and PostgreSQL),
//! and every figure of the card checked in text, CSV (parsed back) and JSON
//! against numbers worked out by hand below.
//!
//! The desk is the shipped one: America/Chicago (CST, UTC-6 all that week),
//! Monday to Friday 08:00-17:00. Targets: critical 2 h, high 4 h, medium
//! 8 h, low 16 h of business time; the due times below are worked out by
//! hand from them. Response times are business minutes; several tickets
//! cross the weekend, where business time and wall-clock time differ
//! (#3: 90 business minutes, 990 wall-clock; #8: 60 and 2820; #40: 30 and
//! 1110; #41: 240 and 4020), so a card measured in wall-clock time fails.

use std::fmt::Write as _;

use mail_parser::MimeHeaders;
use serde_json::Value;

use crate::harness::{Mailbox, PgDb, ShippedDesk, World, search};

/// A local time of the desk (`YYYY-MM-DD HH:MM`, America/Chicago), ms.
fn at(local: &str) -> i64 {
    let dt: jiff::civil::DateTime = local.replace(' ', "T").parse().expect("local time");
    dt.to_zoned(jiff::tz::TimeZone::get("America/Chicago").expect("tz"))
        .expect("zoned")
        .timestamp()
        .as_millisecond()
}

/// One ticket of the fixture.
struct T {
    number: i64,
    desk: &'static str,
    queue: &'static str,
    mailbox: &'static str,
    priority: Option<&'static str>,
    status: &'static str,
    created: &'static str,
    due: Option<&'static str>,
    response: Option<String>,
    /// Escalation events: the `detail` JSON of each.
    escalations: &'static [&'static str],
}

const ESC: &str = r#"{"level":"escalation","to":["isda-managers@example.edu"]}"#;
const SECOND: &str = r#"{"level":"second","to":["isda-oncall@example.edu"]}"#;
const WARN: &str = r#"{"level":"warning","to":["isda-integrators@example.edu"]}"#;

const CS: &str = "Customer-Support";
const PD: &str = "ProductionDefect";
const DEP: &str = "ProductionDeploy";
const ADM: &str = "Admin";

/// An ISDA ticket: number, queue, priority, status, opened, due, first
/// response, escalation events.
type Spec = (
    i64,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static [&'static str],
);

fn isda(spec: Spec) -> T {
    let (number, queue, priority, status, created, due, response, escalations) = spec;
    T {
        number,
        desk: "isda",
        queue,
        mailbox: if queue == CS {
            "isda-support"
        } else {
            "map-support"
        },
        priority,
        status,
        created,
        due,
        response: response.map(str::to_string),
        escalations,
    }
}

const CRIT: Option<&str> = Some("critical");
const HIGH: Option<&str> = Some("high");
const MED: Option<&str> = Some("medium");
const LOW: Option<&str> = Some("low");

/// The fixture. Comments give each ticket's business minutes to the
/// initial response and whether it is within target.
#[rustfmt::skip]
const TICKETS: &[Spec] = &[
    // Customer-Support, critical (2 h).
    // #1: 30 min, within.
    (1, CS, CRIT, "resolved", "2026-11-09 09:00", Some("2026-11-09 11:00"), Some("2026-11-09 09:30"), &[]),
    // #2: 180 min, late; escalated (and warned).
    (2, CS, CRIT, "resolved", "2026-11-09 10:00", Some("2026-11-09 12:00"), Some("2026-11-09 13:00"), &[WARN, ESC]),
    // #3: Friday 16:00 to Monday 08:30 = 60 + 30 = 90 min, within (due Monday 09:00).
    (3, CS, CRIT, "open", "2026-11-13 16:00", Some("2026-11-16 09:00"), Some("2026-11-16 08:30"), &[]),
    // #4: unanswered, past due: late; two escalation levels and a warning.
    (4, CS, CRIT, "new", "2026-11-10 08:00", Some("2026-11-10 10:00"), None, &[WARN, ESC, SECOND]),
    // Customer-Support, high (4 h).
    // #5: 60 min, within.
    (5, CS, HIGH, "resolved", "2026-11-10 09:00", Some("2026-11-10 13:00"), Some("2026-11-10 10:00"), &[]),
    // #6: Tuesday 14:00 to Wednesday 08:15 = 180 + 15 = 195 min, within.
    (6, CS, HIGH, "open", "2026-11-10 14:00", Some("2026-11-11 09:00"), Some("2026-11-11 08:15"), &[]),
    // #7: Wednesday 16:30 to Thursday 12:00 = 30 + 240 = 270 min, late.
    (7, CS, HIGH, "stalled", "2026-11-11 16:30", Some("2026-11-12 11:30"), Some("2026-11-12 12:00"), &[ESC]),
    // #8: opened Saturday 10:00, answered Monday 09:00 = 60 min, within.
    (8, CS, HIGH, "open", "2026-11-14 10:00", Some("2026-11-16 12:00"), Some("2026-11-16 09:00"), &[]),
    // Customer-Support, medium (8 h).
    // #9: 240 min, within.
    (9, CS, MED, "resolved", "2026-11-09 08:00", Some("2026-11-09 16:00"), Some("2026-11-09 12:00"), &[]),
    // #10: Monday 13:00 to Tuesday 08:00 = 240 min, within.
    (10, CS, MED, "resolved", "2026-11-09 13:00", Some("2026-11-10 12:00"), Some("2026-11-10 08:00"), &[]),
    // #11: Thursday 09:00 to Friday 09:00 = 480 + 60 = 540 min, late.
    (11, CS, MED, "resolved", "2026-11-12 09:00", Some("2026-11-12 17:00"), Some("2026-11-13 09:00"), &[]),
    // #12: unanswered, past due: late; escalated.
    (12, CS, MED, "new", "2026-11-13 12:00", Some("2026-11-16 11:00"), None, &[ESC]),
    // #13: unanswered, its due time not reached yet (the report's clock is
    // the real one, so this due time lies far ahead): neither within nor late.
    (13, CS, MED, "new", "2026-11-15 20:00", Some("2099-01-01 12:00"), None, &[]),
    // Customer-Support, low (16 h).
    // #14: Monday 09:00 to Wednesday 08:00 = 480 + 540 = 1020 min, late (due Tuesday 16:00).
    (14, CS, LOW, "resolved", "2026-11-09 09:00", Some("2026-11-10 16:00"), Some("2026-11-11 08:00"), &[]),
    // #15: 5 min, within.
    (15, CS, LOW, "resolved", "2026-11-11 10:00", Some("2026-11-12 17:00"), Some("2026-11-11 10:05"), &[]),
    // Customer-Support, no priority and no due time (made before priorities existed).
    // #16: 20 min, no target.
    (16, CS, None, "resolved", "2026-11-10 11:00", None, Some("2026-11-10 11:20"), &[]),
    // #17: unanswered, no target: not late.
    (17, CS, None, "new", "2026-11-10 12:00", None, None, &[]),
    // ProductionDefect, critical (2 h).
    // #40: Friday 16:30 to Saturday 11:00 = 30 min (a weekend answer adds no business time), within.
    (40, PD, CRIT, "open", "2026-11-13 16:30", Some("2026-11-16 09:30"), Some("2026-11-14 11:00"), &[]),
    // #41: Friday 15:00 to Monday 10:00 = 120 + 120 = 240 min, late.
    (41, PD, CRIT, "resolved", "2026-11-13 15:00", Some("2026-11-13 17:00"), Some("2026-11-16 10:00"), &[ESC]),
    // ProductionDeploy, medium (8 h).
    // #60: 45 min, within.
    (60, DEP, MED, "resolved", "2026-11-12 10:00", Some("2026-11-13 09:00"), Some("2026-11-12 10:45"), &[]),
    // #61: Sunday 23:00 (Monday 05:00 UTC), unanswered, past due: late.
    (61, DEP, MED, "new", "2026-11-15 23:00", Some("2026-11-16 16:00"), None, &[]),
    // Admin, low (16 h: due Wednesday 16:00).
    // #70: 60 min, within.
    (70, ADM, LOW, "resolved", "2026-11-10 09:00", Some("2026-11-11 16:00"), Some("2026-11-10 10:00"), &[]),
    // #71: 120 min, within.
    (71, ADM, LOW, "resolved", "2026-11-10 09:00", Some("2026-11-11 16:00"), Some("2026-11-10 11:00"), &[]),
    // #72: Tuesday 09:00 to Wednesday 10:00 = 480 + 120 = 600 min, within.
    (72, ADM, LOW, "stalled", "2026-11-10 09:00", Some("2026-11-11 16:00"), Some("2026-11-11 10:00"), &[]),
    // #73: to Thursday 09:00 = 480 + 540 + 60 = 1080 min, late.
    (73, ADM, LOW, "open", "2026-11-10 09:00", Some("2026-11-11 16:00"), Some("2026-11-12 09:00"), &[]),
    // #74: unanswered, past due: late; escalated and warned.
    (74, ADM, LOW, "new", "2026-11-10 09:00", Some("2026-11-11 16:00"), None, &[WARN, ESC]),
    // Admin, medium (8 h: due Monday 16:00): 100, 200, 300 min within, 500
    // min late (#78, whose escalation's detail is not even JSON: it still
    // counts as an escalation, not a warning).
    (75, ADM, MED, "resolved", "2026-11-09 08:00", Some("2026-11-09 16:00"), Some("2026-11-09 09:40"), &[]),
    (76, ADM, MED, "resolved", "2026-11-09 08:00", Some("2026-11-09 16:00"), Some("2026-11-09 11:20"), &[]),
    (77, ADM, MED, "resolved", "2026-11-09 08:00", Some("2026-11-09 16:00"), Some("2026-11-09 13:00"), &[]),
    (78, ADM, MED, "resolved", "2026-11-09 08:00", Some("2026-11-09 16:00"), Some("2026-11-09 16:20"), &["{broken"]),
];

/// Every ticket: [`TICKETS`]; twenty ProductionDefect tickets; and three
/// that are not in the ISDA week.
fn fixture() -> Vec<T> {
    let mut v: Vec<T> = TICKETS.iter().copied().map(isda).collect();
    // ProductionDefect, high (4 h, due 12:00): twenty tickets opened
    // Wednesday 08:00 (#20-#39), answered after 15, 30, ..., 300 minutes.
    // The first 16 (up to 240) are within target, the last four late and
    // escalated; the last five were warned. The first 15 are resolved.
    for i in 0..20 {
        let minutes = 15 * (i + 1);
        let mut t = isda((
            20 + i,
            PD,
            HIGH,
            if i < 15 { "resolved" } else { "open" },
            "2026-11-11 08:00",
            Some("2026-11-11 12:00"),
            None,
            match i {
                0..=14 => &[],
                15 => &[WARN],
                _ => &[WARN, ESC],
            },
        ));
        t.response = Some(format!(
            "2026-11-11 {:02}:{:02}",
            8 + minutes / 60,
            minutes % 60
        ));
        v.push(t);
    }
    assert_eq!(v.len(), 50);
    // Not in the ISDA week: Sunday 23:30 before it (Monday 05:30 UTC: in
    // the UTC week of a report on every desk), Monday 00:30 after it; and a
    // ticket of the database desk.
    v.push(isda((
        90,
        CS,
        HIGH,
        "resolved",
        "2026-11-08 23:30",
        Some("2026-11-09 12:00"),
        Some("2026-11-09 09:00"),
        &[ESC],
    )));
    v.push(isda((
        91,
        CS,
        HIGH,
        "new",
        "2026-11-16 00:30",
        Some("2026-11-16 12:00"),
        None,
        &[],
    )));
    v.push(T {
        number: 92,
        desk: "database",
        queue: "Database",
        mailbox: "db-requests",
        priority: HIGH,
        status: "resolved",
        created: "2026-11-11 09:00",
        due: Some("2026-11-11 13:00"),
        response: Some("2026-11-11 09:10".into()),
        escalations: &[ESC],
    });
    v
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt_ms(s: Option<&str>) -> String {
    s.map(|s| at(s).to_string())
        .unwrap_or_else(|| "NULL".into())
}

/// An INSERT of a message on `ticket` received in `mailbox` at `local`.
fn message_sql(sql: &mut String, ticket: i64, mailbox: &str, local: &str, key: &str) {
    writeln!(
        sql,
        "INSERT INTO messages (ticket_number, dedupe_key, mailbox, origin, to_addrs, cc_addrs,
           reply_to, in_reply_to, refs, auto_signals, body_text, body_source, problems, raw,
           raw_size, sha256, received_at)
         VALUES ({ticket}, {}, {}, 'file', '[]', '[]', '[]', '[]', '[]', '{{}}', '', 'none', '[]',
           '', 0, '', {});",
        sql_text(key),
        sql_text(mailbox),
        at(local)
    )
    .expect("write");
}

/// The fixture as SQL for either backend: each ticket, the message that
/// opened it, a `created` event, its escalation events; plus messages that
/// test the days' edges.
fn fixture_sql() -> String {
    let mut sql = String::new();
    for t in fixture() {
        writeln!(
            sql,
            "INSERT INTO tickets (number, desk, desk_tag, queue, kind, status, requester, subject,
               mailbox, created_at, updated_at, priority, due_at, first_response_at)
             VALUES ({}, {}, 'ISDA', {}, 'service', {}, 'ann@customer.example', 'Help', {}, {}, {},
               {}, {}, {});",
            t.number,
            sql_text(t.desk),
            sql_text(t.queue),
            sql_text(t.status),
            sql_text(t.mailbox),
            at(t.created),
            at(t.created),
            t.priority.map(sql_text).unwrap_or_else(|| "NULL".into()),
            opt_ms(t.due),
            opt_ms(t.response.as_deref()),
        )
        .expect("write");
        message_sql(
            &mut sql,
            t.number,
            t.mailbox,
            t.created,
            &format!("mid:{}@fixture", t.number),
        );
        writeln!(
            sql,
            "INSERT INTO events (ticket_number, at, kind, actor, detail)
             VALUES ({}, {}, 'created', 'ann@customer.example', '{{}}');",
            t.number,
            at(t.created)
        )
        .expect("write");
        for detail in t.escalations {
            writeln!(
                sql,
                "INSERT INTO events (ticket_number, at, kind, actor, detail)
                 VALUES ({}, {}, 'escalation', 'triaged', {});",
                t.number,
                at(t.created) + 60_000,
                sql_text(detail)
            )
            .expect("write");
        }
    }
    // A second message on #13 at Sunday 23:59 (in the week), one on #3 at
    // Monday 00:00 after it (not), and one in a mailbox no longer
    // configured (counted only when no desk is asked for).
    message_sql(
        &mut sql,
        13,
        "isda-support",
        "2026-11-15 23:59",
        "mid:x1@fixture",
    );
    message_sql(
        &mut sql,
        3,
        "isda-support",
        "2026-11-16 00:00",
        "mid:x2@fixture",
    );
    message_sql(&mut sql, 1, "old-box", "2026-11-09 10:00", "mid:x3@fixture");
    sql
}

/// Writes `sql` into the store at `url` (already migrated).
async fn load(url: &str, sql: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::raw_sql(sql).execute(&mut c).await.expect("fixture");
        c.close().await.expect("close");
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
        sqlx::raw_sql(sql).execute(&mut c).await.expect("fixture");
        c.close().await.expect("close");
    }
}

/// One row of the expected card: queue, priority; counts: opened, within
/// target, late, unanswered, no target, escalations, open, resolved; and
/// the percentage within target, the median and p90 business minutes.
type Row = (&'static str, &'static str, [i64; 8], [Option<f64>; 3]);

/// The names of a [`Row`]'s counts and figures in JSON and CSV.
const COUNTS: [&str; 8] = [
    "opened",
    "within_target",
    "late",
    "unanswered",
    "no_target",
    "escalations",
    "open",
    "resolved",
];
const FIGURES: [&str; 3] = [
    "within_target_percent",
    "median_response_minutes",
    "p90_response_minutes",
];

/// The card of the ISDA week, by hand. Medians: the middle value, or the
/// mean of the middle two; p90: the value at rank ceil(0.9 n).
#[rustfmt::skip]
const EXPECTED: &[Row] = &[
    // Responses 30, 90, 180: median 90, p90 rank 3 = 180. Escalations: #2
    // one, #4 two (warnings not counted). Resolved #1, #2.
    (CS, "critical", [4, 2, 2, 1, 0, 3, 2, 2], [Some(50.0), Some(90.0), Some(180.0)]),
    // 60, 60, 195, 270: median (60 + 195) / 2 = 127.5, p90 rank 4 = 270.
    (CS, "high", [4, 3, 1, 0, 0, 1, 3, 1], [Some(75.0), Some(127.5), Some(270.0)]),
    // 240, 240, 540; late: #11 answered late, #12 unanswered past due (#13
    // is not due yet); unanswered #12, #13.
    (CS, "medium", [5, 2, 2, 2, 0, 1, 2, 3], [Some(40.0), Some(240.0), Some(540.0)]),
    // 5, 1020: median 512.5, p90 rank 2 = 1020.
    (CS, "low", [2, 1, 1, 0, 0, 0, 0, 2], [Some(50.0), Some(512.5), Some(1020.0)]),
    // No due time: neither within nor late; 20 min.
    (CS, "(none)", [2, 0, 0, 1, 2, 0, 1, 1], [Some(0.0), Some(20.0), Some(20.0)]),
    // 13 responses 5 20 30 60 60 90 [180] 195 240 240 270 540 1020: median
    // 180, p90 rank 12 = 540; 8 of 17 within = 47.1 %.
    (CS, "(all)", [17, 8, 6, 4, 2, 5, 8, 9], [Some(47.1), Some(180.0), Some(540.0)]),
    // 30, 240: median 135, p90 240.
    (PD, "critical", [2, 1, 1, 0, 0, 1, 1, 1], [Some(50.0), Some(135.0), Some(240.0)]),
    // 15..300 by 15: median (150 + 165) / 2 = 157.5, p90 rank 18 = 270.
    (PD, "high", [20, 16, 4, 0, 0, 4, 5, 15], [Some(80.0), Some(157.5), Some(270.0)]),
    // 22 responses, the twenty and 30, 240: 11th 150, 12th 165: 157.5;
    // p90 rank 20 = 270; 17 of 22 = 77.3 %.
    (PD, "(all)", [22, 17, 5, 0, 0, 5, 6, 16], [Some(77.3), Some(157.5), Some(270.0)]),
    (DEP, "medium", [2, 1, 1, 1, 0, 0, 1, 1], [Some(50.0), Some(45.0), Some(45.0)]),
    (DEP, "(all)", [2, 1, 1, 1, 0, 0, 1, 1], [Some(50.0), Some(45.0), Some(45.0)]),
    // 100, 200, 300, 500: median 250, p90 rank 4 = 500.
    (ADM, "medium", [4, 3, 1, 0, 0, 1, 0, 4], [Some(75.0), Some(250.0), Some(500.0)]),
    // 60, 120, 600, 1080: median 360, p90 1080.
    (ADM, "low", [5, 3, 2, 1, 0, 1, 3, 2], [Some(60.0), Some(360.0), Some(1080.0)]),
    // 60 100 120 200 300 500 600 1080: median 250, p90 rank 8 = 1080.
    (ADM, "(all)", [9, 6, 3, 1, 0, 2, 3, 6], [Some(66.7), Some(250.0), Some(1080.0)]),
    // Per priority over the queues. Critical: 30 30 90 180 240.
    ("(all)", "critical", [6, 3, 3, 1, 0, 4, 3, 3], [Some(50.0), Some(90.0), Some(240.0)]),
    // High: 24 responses, 12th 150 and 13th 165; rank 22 = 270.
    ("(all)", "high", [24, 19, 5, 0, 0, 5, 8, 16], [Some(79.2), Some(157.5), Some(270.0)]),
    // Medium: 45 100 200 240 240 300 500 540.
    ("(all)", "medium", [11, 6, 4, 3, 0, 2, 3, 8], [Some(54.5), Some(240.0), Some(540.0)]),
    // Low: 5 60 120 600 1020 1080.
    ("(all)", "low", [7, 4, 3, 1, 0, 1, 3, 4], [Some(57.1), Some(360.0), Some(1080.0)]),
    ("(all)", "(none)", [2, 0, 0, 1, 2, 0, 1, 1], [Some(0.0), Some(20.0), Some(20.0)]),
    // All 44 responses: 22nd 165, 23rd 180: 172.5; rank 40 = 500.
    ("(all)", "(all)", [50, 32, 15, 6, 2, 12, 18, 32], [Some(64.0), Some(172.5), Some(500.0)]),
];

const DAYS: [&str; 7] = [
    "2026-11-09",
    "2026-11-10",
    "2026-11-11",
    "2026-11-12",
    "2026-11-13",
    "2026-11-14",
    "2026-11-15",
];

/// Messages per day, Monday to Sunday: isda-support has one per
/// Customer-Support ticket and the extra on Sunday 23:59; map-support one
/// per other ticket.
#[rustfmt::skip]
const MESSAGES: &[(&str, [i64; 7])] = &[
    ("isda-support", [5, 5, 2, 1, 2, 1, 2]),
    ("map-support", [4, 5, 20, 1, 2, 0, 1]),
];

/// Tickets opened per day and queue, Monday to Sunday.
#[rustfmt::skip]
const OPENED: &[(&str, [i64; 7])] = &[
    (CS, [5, 5, 2, 1, 2, 1, 1]),
    (PD, [0, 0, 20, 0, 2, 0, 0]),
    (DEP, [0, 0, 0, 1, 0, 0, 1]),
    (ADM, [4, 5, 0, 0, 0, 0, 0]),
];

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn assert_rows(got: &[Row]) {
    for (i, (g, e)) in got.iter().zip(EXPECTED).enumerate() {
        assert_eq!(g, e, "row {i} ({} {})", e.0, e.1);
    }
    assert_eq!(got.len(), EXPECTED.len(), "{got:#?}");
}

fn check_json(card: &Value) {
    assert_eq!(card["from"], "2026-11-09");
    assert_eq!(card["to"], "2026-11-15");
    assert_eq!(card["time_zone"], "America/Chicago");
    assert_eq!(card["desks"], serde_json::json!(["isda"]));
    assert_eq!(card["notes"], serde_json::json!([]));
    let rows = card["queues"].as_array().expect("queues");
    let got: Vec<Row> = rows
        .iter()
        .map(|r| {
            assert_eq!(r["desk"], "isda", "{r}");
            let int = |name: &str| r[name].as_i64().unwrap_or_else(|| panic!("{name}: {r}"));
            (
                leak(r["queue"].as_str().expect("queue")),
                leak(r["priority"].as_str().expect("priority")),
                COUNTS.map(int),
                FIGURES.map(|name| r[name].as_f64()),
            )
        })
        .collect();
    assert_rows(&got);

    let per_day = |table: &str, key: &str, value: &str, expected: &[(&str, [i64; 7])]| {
        let rows = card[table].as_array().expect(table);
        assert_eq!(rows.len(), 7 * expected.len(), "{rows:#?}");
        for (name, counts) in expected {
            for (day, n) in DAYS.iter().zip(counts) {
                let r = rows
                    .iter()
                    .find(|r| r["day"] == *day && r[key] == *name)
                    .unwrap_or_else(|| panic!("no {name} on {day}"));
                assert_eq!(r[value], *n, "{name} on {day}");
                assert_eq!(r["desk"], "isda");
            }
        }
    };
    per_day("messages_per_day", "mailbox", "messages", MESSAGES);
    per_day("tickets_per_day", "queue", "opened", OPENED);
}

fn check_csv(bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    assert!(text.contains("\r\n"), "RFC 4180 line ends");
    let mut reader = csv::Reader::from_reader(bytes);
    let header = reader.headers().expect("header").clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    let int = |r: &csv::StringRecord, name: &str| -> i64 {
        r[col(name)]
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {r:?}"))
    };
    let float = |r: &csv::StringRecord, name: &str| -> Option<f64> {
        let s = &r[col(name)];
        (!s.is_empty()).then(|| s.parse().unwrap_or_else(|_| panic!("{name}: {r:?}")))
    };
    let got: Vec<Row> = records
        .iter()
        .filter(|r| &r[col("table")] == "queues")
        .map(|r| {
            (
                leak(&r[col("queue")]),
                leak(&r[col("priority")]),
                COUNTS.map(|name| int(r, name)),
                FIGURES.map(|name| float(r, name)),
            )
        })
        .collect();
    assert_rows(&got);
    let per_day = |table: &str, key: &str, value: &str, expected: &[(&str, [i64; 7])]| {
        for (name, counts) in expected {
            for (day, n) in DAYS.iter().zip(counts) {
                let r = records
                    .iter()
                    .find(|r| {
                        &r[col("table")] == table && &r[col("day")] == *day && &r[col(key)] == *name
                    })
                    .unwrap_or_else(|| panic!("no {name} on {day}"));
                assert_eq!(int(r, value), *n, "{name} on {day}");
            }
        }
    };
    per_day("messages_per_day", "mailbox", "messages", MESSAGES);
    per_day("tickets_per_day", "queue", "opened", OPENED);
    assert_eq!(
        records.len(),
        EXPECTED.len() + 7 * (MESSAGES.len() + OPENED.len())
    );
}

/// Minutes as the text table shows them: `2h 07m` (seconds dropped).
fn hm(minutes: Option<f64>) -> String {
    match minutes {
        Some(m) => {
            let m = m.floor() as i64;
            format!("{}h {:02}m", m / 60, m % 60)
        }
        None => "-".into(),
    }
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

fn check_text(text: &str) {
    assert!(
        text.starts_with("Report card 2026-11-09 to 2026-11-15 (America/Chicago), desks: isda\n"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("Queue "))
        .expect("queue table header")
        + 1;
    for (i, (queue, priority, counts, figures)) in EXPECTED.iter().enumerate() {
        let [
            opened,
            within,
            late,
            unanswered,
            _,
            escalations,
            open,
            resolved,
        ] = counts;
        let [percent, median, p90] = figures;
        let mut want: Vec<String> = vec![
            queue.to_string(),
            priority.to_string(),
            opened.to_string(),
            within.to_string(),
            percent.map(|p| format!("{p:.1}")).unwrap_or("-".into()),
            late.to_string(),
            unanswered.to_string(),
        ];
        want.extend(words(&hm(*median)));
        want.extend(words(&hm(*p90)));
        want.extend([escalations, open, resolved].map(i64::to_string));
        assert_eq!(words(lines[first + i]), want, "{}", lines[first + i]);
    }
    // The per-day tables: a column per mailbox (queue) and a total.
    let table = |title: &str, expected: &[(&str, [i64; 7])]| {
        let at = lines
            .iter()
            .position(|l| *l == title)
            .unwrap_or_else(|| panic!("no {title}"));
        let mut header = vec!["Day".to_string()];
        header.extend(expected.iter().map(|(name, _)| name.to_string()));
        header.push("(all)".into());
        assert_eq!(words(lines[at + 1]), header);
        for (i, day) in DAYS.iter().enumerate() {
            let counts: Vec<i64> = expected.iter().map(|(_, c)| c[i]).collect();
            let mut want = vec![day.to_string()];
            want.extend(counts.iter().map(i64::to_string));
            want.push(counts.iter().sum::<i64>().to_string());
            assert_eq!(words(lines[at + 2 + i]), want);
        }
    };
    table("Messages received per day", MESSAGES);
    table("Tickets opened per day", OPENED);
}

/// The ISDA week in all three formats, then the same week over every desk
/// (UTC days).
async fn report_card(url: Option<&str>) {
    let desk = ShippedDesk::new(url);
    // Any command migrates the store.
    assert!(desk.run(&["stats"]).status.success());
    load(&desk.url, &fixture_sql()).await;
    let week = [
        "report",
        "--desk",
        "isda",
        "--from",
        "2026-11-09",
        "--to",
        "2026-11-15",
    ];

    check_json(&desk.json(&[&week[..], &["--json"]].concat()));

    let out = desk.run(&[&week[..], &["--csv"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_csv(&out.stdout);

    let out = desk.run(&week);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_text(&String::from_utf8_lossy(&out.stdout));

    // Every desk: UTC days. #13 (Sunday 20:00) and #61 (Sunday 23:00) fall
    // on Monday 2026-11-16 in UTC, out of the week; #90 (Sunday 23:30
    // before) falls on Monday 2026-11-09, in; the database ticket counts.
    let all = desk.json(&[
        "report",
        "--from",
        "2026-11-09",
        "--to",
        "2026-11-15",
        "--json",
    ]);
    assert_eq!(all["time_zone"], "UTC");
    assert_eq!(
        all["desks"],
        serde_json::json!(["isda", "database", "hosted"])
    );
    let row = |queue: &str, priority: &str| -> &Value {
        all["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .find(|r| r["queue"] == queue && r["priority"] == priority)
            .unwrap_or_else(|| panic!("no {queue} {priority}"))
    };
    // 50 - 2 + #90 + #92.
    assert_eq!(row("(all)", "(all)")["opened"], 50);
    assert_eq!(row("(all)", "(all)")["desk"], "(all)");
    // #90 and #92 were escalated too: 12 + 2 (#13 and #61 were not).
    assert_eq!(row("(all)", "(all)")["escalations"], 14);
    assert_eq!(row("Database", "(all)")["opened"], 1);
    // Customer-Support medium lost #13; high gained #90 (answered after 60
    // business minutes on Monday morning: 60, 60, 60, 195, 270).
    assert_eq!(row(CS, "medium")["opened"], 4);
    assert_eq!(row(CS, "high")["opened"], 5);
    assert_eq!(row(CS, "high")["median_response_minutes"], 60.0);
    let day = |table: &str, key: &str, name: &str, day: &str| -> i64 {
        let value = if table == "messages_per_day" {
            "messages"
        } else {
            "opened"
        };
        all[table]
            .as_array()
            .expect(table)
            .iter()
            .find(|r| r[key] == name && r["day"] == day)
            .and_then(|r| r[value].as_i64())
            .unwrap_or_else(|| panic!("no {name} on {day}"))
    };
    assert_eq!(day("tickets_per_day", "queue", CS, "2026-11-09"), 6);
    assert_eq!(day("tickets_per_day", "queue", CS, "2026-11-15"), 0);
    assert_eq!(day("tickets_per_day", "queue", "Database", "2026-11-11"), 1);
    // The Sunday 23:59 message is Monday in UTC; the mailbox no longer
    // configured shows, under no desk.
    assert_eq!(
        day("messages_per_day", "mailbox", "isda-support", "2026-11-15"),
        0
    );
    assert_eq!(
        day("messages_per_day", "mailbox", "old-box", "2026-11-09"),
        1
    );
    assert_eq!(
        day("messages_per_day", "mailbox", "db-requests", "2026-11-11"),
        1
    );

    mailed_card(&desk).await;
}

/// The raw bytes of outbox row `id`, read straight from the store.
async fn outbox_raw(url: &str, id: i64) -> Vec<u8> {
    use sqlx::{Connection, Row};
    let q = format!("SELECT raw, raw_codec FROM outbox WHERE id = {id}");
    let (codec, raw): (String, Vec<u8>) = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        let row = sqlx::query(&q).fetch_one(&mut c).await.expect("row");
        (row.get("raw_codec"), row.get("raw"))
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
        let row = sqlx::query(&q).fetch_one(&mut c).await.expect("row");
        (row.get("raw_codec"), row.get("raw"))
    };
    // Stored compressed: decoded as the store does.
    triaged::store::codec::decode(&codec, raw, 64 << 20).expect("decode")
}

/// A mailed card: the text part holds the table, the attachment the CSV;
/// both checked like the command's own output.
fn check_card_mail(raw: &[u8], title: &str) {
    let parsed = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a mail");
    assert_eq!(
        parsed.subject(),
        Some(format!("Report card: {title} 2026-11-09 to 2026-11-15").as_str())
    );
    assert_eq!(
        parsed.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    check_text(
        &parsed
            .body_text(0)
            .expect("text part")
            .replace("\r\n", "\n"),
    );
    let csv = parsed
        .attachments()
        .find(|a| a.attachment_name() == Some("report-isda-2026-11-09-2026-11-15.csv"))
        .expect("CSV attached");
    check_csv(csv.contents());
}

/// `--mail`: the ISDA card queued for the desk's managers, in the outbox.
async fn mailed_card(desk: &ShippedDesk) {
    let out = desk.run(&[
        "report",
        "--mail",
        "--desk",
        "isda",
        "--from",
        "2026-11-09",
        "--to",
        "2026-11-15",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with("desk isda: report card 2026-11-09 to 2026-11-15 queued for isda-managers@example.edu (outbox "),
        "{said}"
    );
    let outbox = desk.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:#?}");
    let m = &outbox[0];
    assert_eq!(m["kind"], "report");
    assert_eq!(m["rcpt"], serde_json::json!(["isda-managers@example.edu"]));
    assert_eq!(m["ticket_number"], Value::Null);
    assert_eq!(m["status"], "pending");
    let id = m["id"].as_i64().expect("id");
    check_card_mail(&outbox_raw(&desk.url, id).await, "ISDA support");
}

#[test]
fn report_card_matches_the_hand_computed_week_sqlite() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(report_card(None));
}

#[tokio::test(flavor = "multi_thread")]
async fn report_card_matches_the_hand_computed_week_postgres() {
    let db = PgDb::create("report").await;
    report_card(Some(&db.url)).await;
    db.drop_db().await;
}

/// Values no configuration would hold, straight in the store: a queue and a
/// mailbox named like spreadsheet formulas, with commas, quotes, line
/// breaks and terminal escapes; a 10 KB queue name; a response before its
/// ticket and one in the year 9999. The card still comes out, quickly;
/// the CSV defuses the formulas and parses back to the same names; the
/// table shows controls as escapes.
#[test]
fn hostile_values_stay_inert() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let desk = ShippedDesk::new(None);
    assert!(desk.run(&["stats"]).status.success());
    let formula = "=1+2,\"q\"\n\u{1b}[2Jnext";
    let long = "Q".repeat(10_000);
    let mut sql = String::new();
    for (number, queue, response) in [
        (1, formula, Some("2026-11-09 10:00")),
        (2, long.as_str(), Some("2026-11-09 08:00")),
        (3, "Admin", None),
    ] {
        writeln!(
            sql,
            "INSERT INTO tickets (number, desk, desk_tag, queue, kind, status, requester, subject,
               mailbox, created_at, updated_at, priority, due_at, first_response_at)
             VALUES ({number}, 'isda', 'ISDA', {}, 'service', 'new', 'x', 'x', 'isda-support', {}, 0,
               'high', NULL, {});",
            sql_text(queue),
            at("2026-11-09 09:00"),
            opt_ms(response),
        )
        .expect("write");
    }
    // A response in the year 9999 on #3, the other two: one hour, and one
    // before the ticket was opened.
    writeln!(
        sql,
        "UPDATE tickets SET first_response_at = 253402300799000 WHERE number = 3;"
    )
    .expect("write");
    message_sql(&mut sql, 1, "@SUM(A1),\"x\"", "2026-11-09 09:00", "mid:h1");
    rt.block_on(load(&desk.url, &sql));
    // Every desk: the mailbox that is no longer configured is shown.
    let args = ["report", "--from", "2026-11-09", "--to", "2026-11-09"];

    let started = std::time::Instant::now();
    let out = desk.run(&[&args[..], &["--csv"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    let queues: Vec<&str> = records.iter().map(|r| &r[2]).collect();
    assert!(
        queues.contains(&format!("'{formula}").as_str()),
        "{queues:?}"
    );
    assert!(queues.contains(&long.as_str()));
    let mailboxes: Vec<&str> = records.iter().map(|r| &r[5]).collect();
    assert!(mailboxes.contains(&"'@SUM(A1),\"x\""), "{mailboxes:?}");
    // No field starts a formula.
    for r in &records {
        for f in r.iter() {
            assert!(
                !f.starts_with(['=', '+', '@', '\t', '\r']),
                "{f:?} in {r:?}"
            );
        }
    }
    let admin = records
        .iter()
        .find(|r| &r[0] == "queues" && &r[2] == "Admin" && &r[3] == "high")
        .expect("Admin high");
    // Monday 09:00 to the end of 9999, capped at ten years of business
    // hours: some number of minutes, not a hang.
    assert!(!admin[12].is_empty());

    let out = desk.run(&args);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("=1+2,\"q\"\\n\\x1b[2Jnext"), "{text}");
    assert!(!text.contains(&long), "a 10 KB name is cut in the table");
    let json = desk.json(&[&args[..], &["--json"]].concat());
    let names: Vec<&str> = json["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter_map(|r| r["queue"].as_str())
        .collect();
    assert!(names.contains(&formula), "JSON keeps the name as it is");
    // The two answered tickets: one hour, and zero for the response
    // before the ticket.
    let all = json["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|r| r["queue"] == formula && r["priority"] == "(all)")
        .expect("formula queue");
    assert_eq!(all["median_response_minutes"], 60.0);
    let before = json["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|r| r["queue"] == long.as_str() && r["priority"] == "(all)")
        .expect("long queue");
    assert_eq!(before["median_response_minutes"], 0.0);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// Bad flags: exit 2 and a sentence saying what is wrong, before the
/// database is touched.
#[test]
fn bad_flags_are_refused() {
    let desk = ShippedDesk::new(Some("postgres://nobody@127.0.0.1:1/none"));
    for (args, says) in [
        (
            &["--from", "2026-02-30"][..],
            "--from \"2026-02-30\" is not a date of the calendar",
        ),
        (
            &["--from", "11/09/2026"][..],
            "--from \"11/09/2026\" is not a date like 2026-11-09 (YYYY-MM-DD)",
        ),
        (
            &["--to", "2026-11-9"][..],
            "--to \"2026-11-9\" is not a date like",
        ),
        (
            &["--from", "2026-11-10", "--to", "2026-11-09"][..],
            "--from 2026-11-10 is after --to 2026-11-09",
        ),
        (
            &["--from", "2020-01-01", "--to", "2026-01-01"][..],
            "a report covers at most 366",
        ),
        (
            &["--desk", "nope"][..],
            "unknown desk \"nope\" (configured: isda, database, hosted)",
        ),
        (&["--csv", "--json"][..], "cannot be used with"),
    ] {
        let out = desk.run(&[&["report"][..], args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("opening database"), "{args:?}: {err}");
    }
}

/// End to end through the real servers: the card queued with `--mail`
/// reaches the managers' mailbox through the daemon's sender, OpenSMTPD and
/// Dovecot, and the delivered card (text and CSV) holds the same figures.
#[tokio::test(flavor = "multi_thread")]
async fn mailed_card_reaches_the_managers() {
    use futures::TryStreamExt;
    use triaged::dev::devstack::{Dovecot, Smtpd};
    const MANAGERS: &str = "isda-managers@example.edu";

    let dovecot = Dovecot::start().expect("dovecot");
    let smtpd = Smtpd::start(&dovecot).expect("smtpd");
    let extra = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nretry_initial_secs = 1\nretry_max_secs = 2\n",
        smtpd.port
    );
    let world = World::with(
        dovecot,
        &[Mailbox {
            name: "isda-support",
            user: "isda-support@example.edu",
            queue: CS,
            after: "seen",
        }],
        None,
        &extra,
    );
    let text = std::fs::read_to_string(&world.config).expect("config");
    let with_managers = text.replace(
        "[[desks]]\nname = \"isda\"\ntag = \"ISDA\"\n",
        &format!("[[desks]]\nname = \"isda\"\ntag = \"ISDA\"\nmanagers = [\"{MANAGERS}\"]\n"),
    );
    assert_ne!(text, with_managers, "the test config names the isda desk");
    std::fs::write(&world.config, with_managers).expect("config");
    assert!(world.triaged(&["stats"]).status.success());
    let url = format!("sqlite://{}", world.dir.path().join("triaged.db").display());
    load(&url, &fixture_sql()).await;
    let out = world.triaged(&[
        "report",
        "--mail",
        "--desk",
        "isda",
        "--from",
        "2026-11-09",
        "--to",
        "2026-11-15",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let daemon = world.start_daemon();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while search(&world.dovecot, MANAGERS, "INBOX", "ALL").await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no card delivered; daemon log:\n{}\nsmtpd log:\n{}",
            daemon.log(),
            smtpd.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut session = world.dovecot.session(MANAGERS).await.expect("session");
    session.select("INBOX").await.expect("select");
    let mut delivered: Vec<Vec<u8>> = Vec::new();
    {
        let mut stream = session.fetch("1:*", "BODY.PEEK[]").await.expect("fetch");
        while let Some(f) = stream.try_next().await.expect("fetch item") {
            if let Some(b) = f.body() {
                delivered.push(b.to_vec());
            }
        }
    }
    let _ = session.logout().await;
    assert_eq!(delivered.len(), 1);
    check_card_mail(&delivered[0], "isda");
    assert!(
        daemon
            .terminate(std::time::Duration::from_secs(20))
            .success()
    );
}
