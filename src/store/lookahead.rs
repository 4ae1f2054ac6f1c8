//! What a batch's lookups will find, asked once per transaction.
//!
//! Recording a message looks things up: its dedupe keys, the mail we sent
//! with its Message-ID, the messages it refers to, its alert's ticket, the
//! tickets its case tags name, and the mail its sender and alert already
//! had in the caps' window. Almost every lookup of a new message finds
//! nothing, and each one was a round trip (to sqlx's SQLite worker thread,
//! or to the PostgreSQL server).
//!
//! [`Tx::look_ahead`] asks the store once, at the start of the transaction,
//! which of the batch's keys exist at all. A lookup whose keys were all
//! asked about, none of which existed then, and none of which this
//! transaction has written since ([`Known::wrote`], called by every write
//! of such a key), cannot find anything: it is answered without a
//! statement. Anything else (a key that exists, one this transaction wrote,
//! one nobody asked about) runs the lookup's own statement as before, so a
//! hit is always read from the store. Of the keys, only absence is ever
//! remembered.
//!
//! The caps are different: what they count (mail in the window to a sender,
//! the sender's and an alert's tickets notified) is counted by the
//! look-ahead itself, per sender and alert key, and the caps add this
//! transaction's own mail to those counts ([`Known::caps_count`]). A sender
//! who had mail in the window (every repeat sender) so costs no statement
//! per message.
//!
//! On SQLite the transaction's snapshot holds from the look-ahead on (a
//! writer that committed in between makes this transaction's first write
//! fail, and the batch is retried). On PostgreSQL another daemon may commit
//! a key between the look-ahead and its use, as it could between a lookup
//! and the insert before: the unique dedupe key refuses the second insert.

use std::collections::HashSet;

use sqlx::Row;

use super::{Backend, StoreError, Tx, text};

/// At most this many parameters per look-ahead statement.
const MAX_PARAMS: usize = 900;

/// The keys a batch will look up (see [`Tx::look_ahead`]). Strings as the
/// pipeline has them; the store stores them as it stores the rows.
#[derive(Debug, Default, Clone)]
pub struct Probes {
    /// Dedupe keys (`mid:<id>`, `mid:<id>#<hash>`, `sha256:...`).
    pub dedupe_keys: Vec<String>,
    /// Message-IDs looked for among our messages and the mail we sent: each
    /// message's own, and those it refers to.
    pub message_ids: Vec<String>,
    /// Alert keys of the batch's decisions.
    pub alert_keys: Vec<String>,
    /// Ticket numbers named by case tags.
    pub numbers: Vec<i64>,
    /// Senders (lower-case) whose caps will be counted.
    pub senders: Vec<String>,
    /// The start of the caps' window the batch counts in.
    pub since: i64,
    /// How many messages the batch holds.
    pub batch: usize,
}

/// What the look-ahead found, and what this transaction wrote since.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// Keys asked about, by class (`d:` dedupe key, `m:` Message-ID, `a:`
    /// alert key, `n:` ticket number, `s:` sender's caps, `c:` alert's caps).
    asked: HashSet<String>,
    /// Of the `d:`, `m:`, `a:` and `n:` keys, the ones the store held.
    present: HashSet<String>,
    /// What the caps count in the window, for the `s:` and `c:` keys that
    /// had any mail in it: `sa:<sender>` acknowledgements to the sender,
    /// `st:<sender>` the sender's tickets notified, `c:<alert>` the alert's
    /// tickets notified. A key asked about and missing here counts 0.
    counts: std::collections::HashMap<String, i64>,
    /// Keys this transaction wrote (classes `d:`, `m:`, `a:`, `n:`).
    written: HashSet<String>,
    /// The caps' window the `s:` and `c:` answers hold for.
    pub since: Option<i64>,
    /// Every mail this transaction queued.
    pub mail: Vec<QueuedMail>,
    /// How many messages the batch holds (0: not told).
    pub batch: usize,
}

impl Known {
    /// True when a lookup of `key` (class prefix included) finds nothing:
    /// asked about, absent then, and not written since.
    pub fn absent(&self, key: &str) -> bool {
        self.asked.contains(key) && !self.present.contains(key) && !self.written.contains(key)
    }

    /// What the caps counted for `count` (`sa:<sender>`, `st:<sender>` or
    /// `c:<alert>`; see [`Known::counts`]) when the transaction began, in the
    /// window starting at `since`: `None` when its key (`s:<sender>` or
    /// `c:<alert>`) was not asked about, or was asked for another window
    /// (none counted in a wider window is none in a narrower one too; a
    /// count is only good for its own window).
    pub fn caps_count(&self, asked_key: &str, count: &str, since: i64) -> Option<i64> {
        let asked_since = self.since?;
        if !self.asked.contains(asked_key) {
            return None;
        }
        match self.counts.get(count).copied().unwrap_or(0) {
            0 if asked_since <= since => Some(0),
            n if asked_since == since => Some(n),
            _ => None,
        }
    }

    /// This transaction wrote `key` (class prefix included).
    pub fn wrote(&mut self, key: String) {
        self.written.insert(key);
    }

    /// This transaction queued a mail about ticket `number`.
    pub fn queued(&mut self, number: i64, acknowledgement: bool, first_rcpt: &str, at: i64) {
        self.mail.push(QueuedMail {
            number,
            acknowledgement,
            first_rcpt: first_rcpt.to_string(),
            at,
        });
    }
}

/// A mail this transaction queued, written or still held (what the caps
/// count of this transaction's own mail).
#[derive(Debug)]
pub(super) struct QueuedMail {
    pub number: i64,
    pub acknowledgement: bool,
    /// As stored (lower-case).
    pub first_rcpt: String,
    pub at: i64,
}

/// One part of a look-ahead statement: a SELECT of (class, key) with its
/// parameters.
struct Part {
    /// SQL with `{}` where the `IN` list goes (if it has one) and `?since`
    /// for the window.
    sql: &'static str,
    values: Vec<Value>,
}

#[derive(Clone)]
enum Value {
    Text(String),
    Int(i64),
}

impl Tx {
    /// Asks the store which of `probes`' keys exist, so that the lookups
    /// that would find nothing are answered without a statement (see the
    /// module's documentation). A few statements for the whole batch.
    pub async fn look_ahead(&mut self, probes: &Probes) -> Result<(), StoreError> {
        let mut known = Known::default();
        let backend = self.backend;
        let texts = |v: &[String]| -> Vec<Value> {
            let set: HashSet<String> = v
                .iter()
                .map(|s| text(s))
                .filter(|s| backend == Backend::Sqlite || pg_askable(s))
                .collect();
            set.into_iter().map(Value::Text).collect()
        };
        let dedupe: Vec<Value> = {
            // Dedupe keys are bound as they are (`Tx::arrival`).
            let set: HashSet<&String> = probes
                .dedupe_keys
                .iter()
                .filter(|k| backend == Backend::Sqlite || pg_askable(k))
                .collect();
            set.into_iter().map(|s| Value::Text(s.clone())).collect()
        };
        // SQLite asks for messages by Message-ID through the dedupe key's
        // index (`super::mid_range`), the IDs as one JSON array. An ID with a
        // NUL in it (stored with U+FFFD in its place, but as it is in its
        // key) is not asked: its lookups run their own statements.
        let (mids, mid_json) = match backend {
            Backend::Sqlite => {
                let ids: HashSet<&str> = probes
                    .message_ids
                    .iter()
                    .map(String::as_str)
                    .filter(|id| !id.contains('\0'))
                    .collect();
                let json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_string());
                (
                    ids.into_iter()
                        .map(|id| Value::Text(id.to_string()))
                        .collect(),
                    vec![Value::Text(json)],
                )
            }
            Backend::Postgres => (texts(&probes.message_ids), Vec::new()),
        };
        let alerts = texts(&probes.alert_keys);
        let senders = texts(&probes.senders);
        let numbers: Vec<Value> = {
            let set: HashSet<i64> = probes.numbers.iter().copied().collect();
            set.into_iter().map(Value::Int).collect()
        };
        // The caps' counts add this transaction's own mail (`Known::mail`)
        // to what the store held when they were asked: mail this transaction
        // queued (and may have written) before asking would count twice, so
        // then the caps are not asked about (they run their own statement).
        let no_keys: Vec<Value> = Vec::new();
        let (cap_senders, cap_alerts) = if self.known.mail.is_empty() {
            (&senders, &alerts)
        } else {
            (&no_keys, &no_keys)
        };
        for (class, values) in [
            ("d:", &dedupe),
            ("m:", &mids),
            ("a:", &alerts),
            ("c:", cap_alerts),
            ("s:", cap_senders),
        ] {
            for v in values.iter() {
                if let Value::Text(s) = v {
                    known.asked.insert(format!("{class}{s}"));
                }
            }
        }
        for v in &numbers {
            if let Value::Int(n) = v {
                known.asked.insert(format!("n:{n}"));
            }
        }
        let statements = match self.backend {
            Backend::Postgres => vec![(
                PG_LOOK_AHEAD.to_string(),
                vec![
                    pg_texts(&dedupe),
                    pg_texts(&mids),
                    pg_texts(&alerts),
                    pg_numbers(&numbers),
                    pg_texts(cap_senders),
                    Value::Int(probes.since),
                    Value::Text(PG_SEP.to_string()),
                    pg_texts(cap_alerts),
                ],
            )],
            Backend::Sqlite => sqlite_statements(
                &dedupe,
                &mids,
                &mid_json,
                &alerts,
                &numbers,
                cap_senders,
                cap_alerts,
            )
            .into_iter()
            .map(|parts| union(parts, probes.since))
            .collect(),
        };
        let db = self.db().await?;
        for (sql, values) in statements {
            // Not kept prepared: on PostgreSQL an unnamed statement is
            // planned with its arrays' values (a plan kept for any values
            // cast them row by row, and it is fixed while the tables are
            // young and their statistics say they are empty); on SQLite each
            // batch's lists make a shape of its own, which would only push
            // the statements worth keeping out of sqlx's cache.
            let mut query = sqlx::query(&sql).persistent(false);
            for v in values {
                query = match v {
                    Value::Text(s) => query.bind(s),
                    Value::Int(n) => query.bind(n),
                };
            }
            for row in query.fetch_all(&mut *db).await? {
                let class: String = row.try_get("c")?;
                let key: Option<String> = row.try_get("k")?;
                let Some(key) = key else { continue };
                match class.as_str() {
                    "sa:" | "st:" | "c:" => {
                        let n: i64 = row.try_get("n")?;
                        *known.counts.entry(format!("{class}{key}")).or_insert(0) += n;
                    }
                    _ => {
                        known.present.insert(format!("{class}{key}"));
                    }
                }
            }
        }
        known.since = Some(probes.since);
        known.batch = probes.batch;
        known.written = std::mem::take(&mut self.known.written);
        known.mail = std::mem::take(&mut self.known.mail);
        self.known = known;
        Ok(())
    }
}

/// The look-ahead on PostgreSQL: one statement of one shape whatever the
/// batch, each class's keys one text parameter, split by the server
/// (`string_to_array`, on [`PG_SEP`]). It is sent unprepared (see
/// [`Tx::look_ahead`]), so the server plans it with the values: the split,
/// an immutable function of a constant, becomes a constant array, which an
/// index scan uses and a sequential scan (young tables without statistics)
/// checks with a hash table. `IN` lists of each batch's own lengths made a
/// new statement (parsed, planned, cached and evicted) every time; the server
/// now spends 2-3 % less CPU on an ingest. A cast to an array
/// (`CAST($1 AS TEXT[])`) is not folded: it was evaluated again for every
/// row scanned (600 msg/s).
const PG_LOOK_AHEAD: &str = "\
SELECT CAST('d:' AS TEXT) AS c, dedupe_key AS k, CAST(1 AS BIGINT) AS n FROM messages WHERE dedupe_key = ANY(string_to_array($1, $7))
UNION ALL SELECT 'd:', dedupe_key, 1 FROM quarantine WHERE dedupe_key = ANY(string_to_array($1, $7))
UNION ALL SELECT 'm:', message_id, 1 FROM messages WHERE message_id = ANY(string_to_array($2, $7))
UNION ALL SELECT 'm:', message_id, 1 FROM outbox WHERE message_id = ANY(string_to_array($2, $7))
UNION ALL SELECT 'a:', alert_key, 1 FROM tickets WHERE alert_key = ANY(string_to_array($3, $7))
UNION ALL SELECT 'n:', CAST(number AS TEXT), 1 FROM tickets WHERE number = ANY(ARRAY(SELECT CAST(unnest(CAST($4 AS TEXT[])) AS BIGINT)))
UNION ALL SELECT 'sa:', first_rcpt, COUNT(*) FROM outbox
  WHERE kind = 'acknowledgement' AND first_rcpt = ANY(string_to_array($5, $7)) AND created_at > $6
  GROUP BY first_rcpt
UNION ALL SELECT 'st:', LOWER(t.requester), COUNT(*) FROM tickets t CROSS JOIN LATERAL (SELECT 1 FROM outbox o
    WHERE o.ticket_number = t.number AND o.created_at > $6 AND o.kind <> 'acknowledgement' LIMIT 1) o
  WHERE LOWER(t.requester) = ANY(string_to_array($5, $7))
  GROUP BY LOWER(t.requester)
UNION ALL SELECT 'c:', t.alert_key, COUNT(*) FROM tickets t CROSS JOIN LATERAL (SELECT 1 FROM outbox o
    WHERE o.ticket_number = t.number AND o.created_at > $6 AND o.kind <> 'acknowledgement' LIMIT 1) o
  WHERE t.alert_key = ANY(string_to_array($8, $7))
  GROUP BY t.alert_key";

/// What separates the keys of one class in [`PG_LOOK_AHEAD`]'s parameters.
/// A key that contains it (or NUL, which PostgreSQL's text cannot hold) is
/// not asked about: its lookup runs its own statement, as without a
/// look-ahead.
const PG_SEP: char = '\u{1e}';

/// Whether the PostgreSQL look-ahead can ask about `key`. The empty key
/// is not either: alone, it would split into no key at all.
fn pg_askable(key: &str) -> bool {
    !key.is_empty() && !key.contains(PG_SEP) && !key.contains('\0')
}

/// Text keys of one class as one parameter of [`PG_LOOK_AHEAD`]: joined by
/// [`PG_SEP`] (none: the empty string, which splits into no key).
fn pg_texts(values: &[Value]) -> Value {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if let Value::Text(s) = v {
            if i > 0 {
                out.push(PG_SEP);
            }
            out.push_str(s);
        }
    }
    Value::Text(out)
}

/// Ticket numbers as one parameter of [`PG_LOOK_AHEAD`]: an array literal.
fn pg_numbers(values: &[Value]) -> Value {
    let numbers: Vec<String> = values
        .iter()
        .filter_map(|v| match v {
            Value::Int(n) => Some(n.to_string()),
            Value::Text(_) => None,
        })
        .collect();
    Value::Text(format!("{{{}}}", numbers.join(",")))
}

/// The look-ahead on SQLite: `IN` lists, as few statements of at most
/// [`MAX_PARAMS`] parameters each as hold them (each one's parts).
#[allow(clippy::too_many_arguments)]
fn sqlite_statements(
    dedupe: &[Value],
    mids: &[Value],
    mid_json: &[Value],
    alerts: &[Value],
    numbers: &[Value],
    senders: &[Value],
    cap_alerts: &[Value],
) -> Vec<Vec<Part>> {
    let mut parts = Vec::new();
    let mut add = |sql: &'static str, values: &[Value]| {
        for chunk in values.chunks(MAX_PARAMS / 2) {
            parts.push(Part {
                sql,
                values: chunk.to_vec(),
            });
        }
    };
    add(
        "SELECT CAST('d:' AS TEXT) AS c, dedupe_key AS k, 1 AS n FROM messages WHERE dedupe_key IN ({})",
        dedupe,
    );
    add(
        "SELECT CAST('d:' AS TEXT) AS c, dedupe_key AS k, 1 AS n FROM quarantine WHERE dedupe_key IN ({})",
        dedupe,
    );
    add(
        "SELECT CAST('m:' AS TEXT) AS c, message_id AS k, 1 AS n FROM outbox WHERE message_id IN ({})",
        mids,
    );
    add(
        "SELECT CAST('a:' AS TEXT) AS c, alert_key AS k, 1 AS n FROM tickets WHERE alert_key IN ({})",
        alerts,
    );
    add(
        "SELECT CAST('n:' AS TEXT) AS c, CAST(number AS TEXT) AS k, 1 AS n FROM tickets WHERE number IN ({})",
        numbers,
    );
    add(
        "SELECT CAST('sa:' AS TEXT) AS c, first_rcpt AS k, COUNT(*) AS n FROM outbox
           WHERE kind = 'acknowledgement' AND first_rcpt IN ({}) AND created_at > ?since
           GROUP BY first_rcpt",
        senders,
    );
    add(
        "SELECT CAST('st:' AS TEXT) AS c, LOWER(t.requester) AS k, COUNT(*) AS n FROM tickets t
           WHERE LOWER(t.requester) IN ({}) AND EXISTS (SELECT 1 FROM outbox o
             WHERE o.ticket_number = t.number AND o.created_at > ?since AND o.kind <> 'acknowledgement')
           GROUP BY LOWER(t.requester)",
        senders,
    );
    add(
        "SELECT CAST('c:' AS TEXT) AS c, t.alert_key AS k, COUNT(*) AS n FROM tickets t
           WHERE t.alert_key IN ({}) AND EXISTS (SELECT 1 FROM outbox o
             WHERE o.ticket_number = t.number AND o.created_at > ?since AND o.kind <> 'acknowledgement')
           GROUP BY t.alert_key",
        cap_alerts,
    );
    // Messages by Message-ID: one parameter, the IDs' JSON array.
    if !mids.is_empty() {
        parts.push(Part {
            sql: "SELECT CAST('m:' AS TEXT) AS c, m.message_id AS k, 1 AS n
                    FROM json_each(?) AS j JOIN messages AS m
                      ON m.dedupe_key >= 'mid:' || j.value AND m.dedupe_key < 'mid:' || j.value || '$'
                         AND m.message_id = j.value",
            values: mid_json.to_vec(),
        });
    }
    // Parts joined into statements of at most MAX_PARAMS parameters.
    let mut statement: Vec<Part> = Vec::new();
    let mut count = 0;
    let mut statements = Vec::new();
    for part in parts {
        let n = part.values.len() + 1;
        if count + n > MAX_PARAMS && !statement.is_empty() {
            statements.push(std::mem::take(&mut statement));
            count = 0;
        }
        count += n;
        statement.push(part);
    }
    if !statement.is_empty() {
        statements.push(statement);
    }
    statements
}

/// The SQLite statement of `parts` (UNION ALL) and its parameters in
/// order. Each parameter is named once, in order, so they are anonymous `?`
/// (see `deferred::values_sql` for why).
fn union(parts: Vec<Part>, since: i64) -> (String, Vec<Value>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for part in parts {
        if !sql.is_empty() {
            sql.push_str(" UNION ALL ");
        }
        let list = vec!["?"; part.values.len()].join(", ");
        values.extend(part.values);
        let mut s = part.sql.replace("{}", &list);
        if s.contains("?since") {
            values.push(Value::Int(since));
            s = s.replace("?since", "?");
        }
        sql.push_str(&s);
    }
    (sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_is_only_what_was_asked_found_missing_and_not_written() {
        let mut k = Known::default();
        k.asked.insert("d:a".into());
        k.asked.insert("d:b".into());
        k.present.insert("d:b".into());
        assert!(k.absent("d:a"));
        assert!(!k.absent("d:b"), "present at the start");
        assert!(!k.absent("d:c"), "never asked about");
        k.wrote("d:a".into());
        assert!(!k.absent("d:a"), "written by the transaction");
    }

    #[test]
    fn caps_counts_hold_only_for_the_keys_and_the_window_asked() {
        let mut k = Known::default();
        k.asked.insert("s:x@y".into());
        assert_eq!(
            k.caps_count("s:x@y", "sa:x@y", 100),
            None,
            "no window asked"
        );
        k.since = Some(100);
        assert_eq!(k.caps_count("s:x@y", "sa:x@y", 100), Some(0));
        assert_eq!(
            k.caps_count("s:x@y", "sa:x@y", 150),
            Some(0),
            "none in a narrower window"
        );
        assert_eq!(
            k.caps_count("s:x@y", "sa:x@y", 50),
            None,
            "a wider window than asked"
        );
        assert_eq!(
            k.caps_count("s:q@y", "sa:q@y", 100),
            None,
            "never asked about"
        );
        k.counts.insert("sa:x@y".into(), 3);
        assert_eq!(k.caps_count("s:x@y", "sa:x@y", 100), Some(3));
        assert_eq!(
            k.caps_count("s:x@y", "st:x@y", 100),
            Some(0),
            "the other count"
        );
        assert_eq!(
            k.caps_count("s:x@y", "sa:x@y", 150),
            None,
            "counted in a wider window"
        );
        assert_eq!(k.caps_count("s:x@y", "sa:x@y", 50), None);
    }

    #[test]
    fn pg_lists_keep_every_key_whole() {
        let texts =
            |v: &[&str]| -> Vec<Value> { v.iter().map(|s| Value::Text(s.to_string())).collect() };
        let lit = |v: Value| match v {
            Value::Text(s) => s,
            Value::Int(_) => unreachable!(),
        };
        assert_eq!(lit(pg_texts(&[])), "");
        assert_eq!(lit(pg_numbers(&[])), "{}");
        assert_eq!(
            lit(pg_texts(&texts(&["a", "x,y", "{z}", "q\"r"]))),
            "a\u{1e}x,y\u{1e}{z}\u{1e}q\"r"
        );
        assert_eq!(lit(pg_numbers(&[Value::Int(7), Value::Int(-1)])), "{7,-1}");
        assert!(pg_askable("a,b\"c\\d{e}"));
        assert!(!pg_askable(""));
        assert!(!pg_askable("a\u{1e}b"));
        assert!(!pg_askable("a\0b"));
    }

    #[test]
    fn union_numbers_parameters_across_parts() {
        let parts = [
            Part {
                sql: "SELECT a FROM t WHERE a IN ({})",
                values: vec![Value::Text("x".into()), Value::Text("y".into())],
            },
            Part {
                sql: "SELECT b FROM u WHERE b IN ({}) AND at > ?since",
                values: vec![Value::Int(7)],
            },
        ];
        let (sqlite, values) = union(parts.into(), 5);
        assert_eq!(
            sqlite,
            "SELECT a FROM t WHERE a IN (?, ?) UNION ALL SELECT b FROM u WHERE b IN (?) AND at > ?"
        );
        assert_eq!(values.len(), 4);
        assert!(matches!(values[3], Value::Int(5)));
    }
}
