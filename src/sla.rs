//! The SLA clock: warnings and escalations when a ticket's initial response
//! (or, optionally, its resolution) is late, an on-call page for a Critical
//! ticket out of hours, and the daily status of unresolved urgent tickets.
//!
//! Two parts:
//! - [`plan`] is pure: given a ticket's clock facts (arrival, the response
//!   due time, the resolution target, pauses while stalled, the initial
//!   response), what has been marked already and the time, it says which
//!   levels are due now, which are skipped, whether a daily status is due,
//!   and when to look again. Counted in the desk's business hours
//!   (`calendar`), across weekends, holidays and DST changes.
//! - [`Scheduler`] is the IO: each tick reads only the tickets whose
//!   `sla_next_at` has come (an index, never every ticket), and for each one
//!   in its own transaction marks what it sends (`sla_sent`, unique per
//!   ticket, clock and level: exactly once, also with several daemons on one
//!   database), queues the mail in that same transaction, records the event
//!   and sets the next look. The clock is injected (`clock::SharedClock`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::calendar::{Calendar, CalendarError};
use crate::clock::SharedClock;
use crate::config::{Config, SlaConfig};
use crate::notify::{Notifier, Outgoing, SlaNotice};
use crate::priority::Priority;
use crate::store::{SlaTicket, Status, StatusChange, Store, StoreError};

/// Which clock a level belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Clock {
    /// Arrival to the initial response.
    Response,
    /// Arrival to resolution (optional targets).
    Resolution,
}

impl Clock {
    pub fn as_str(self) -> &'static str {
        match self {
            Clock::Response => "response",
            Clock::Resolution => "resolution",
        }
    }
}

/// The clock name of a daily status mark; its level is the desk's date.
pub const DAILY: &str = "daily";

/// Who a level goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The ticket's owner, else the desk's team (the warning).
    OwnerOrTeam,
    /// The desk's managers (the escalation).
    Managers,
    /// The desk's on-call addresses (a Critical ticket out of hours).
    OnCall,
    /// A further level's own list.
    List(Vec<String>),
}

/// One level of a clock that is due (or skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub clock: Clock,
    /// `warning`, `escalation`, `level2`, ..., `oncall`.
    pub level: String,
    /// When it fell due (ms).
    pub due_at: i64,
    /// When the clock's target itself falls due (ms): what the mail names.
    pub target_due_at: i64,
    pub audience: Audience,
}

/// A ticket's clock facts, as [`plan`] needs them.
#[derive(Debug, Clone)]
pub struct Facts {
    pub arrival: i64,
    pub status: Status,
    pub priority: Option<Priority>,
    /// The initial response's due time without pauses (the ticket's `due_at`).
    pub response_due: Option<i64>,
    pub first_response_at: Option<i64>,
    pub resolution_target: Option<Duration>,
    /// Its status changes, oldest first.
    pub changes: Vec<StatusChange>,
    /// Urgent: it gets the daily status.
    pub urgent: bool,
    /// Its desk has on-call addresses.
    pub has_oncall: bool,
}

/// What [`plan`] decided for one ticket at one time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Levels to send now, in order.
    pub send: Vec<Due>,
    /// Levels overdue together with a later level of their clock: marked as
    /// skipped, not sent (a warning after a downtime that the escalation
    /// has overtaken).
    pub skip: Vec<Due>,
    /// Today's daily status is due: the desk's date and the slot's time (ms).
    pub daily: Option<(Date, i64)>,
    /// When to look again (ms), `None` when nothing can fall due any more
    /// without a change to the ticket.
    pub next_at: Option<i64>,
}

/// The levels of one clock: name, share of the target, audience.
fn levels(cfg: &SlaConfig) -> Vec<(String, f64, Audience)> {
    let mut out = vec![
        (
            "warning".to_string(),
            cfg.warning_share,
            Audience::OwnerOrTeam,
        ),
        ("escalation".to_string(), 1.0, Audience::Managers),
    ];
    for (i, l) in cfg.levels.iter().enumerate() {
        out.push((
            format!("level{}", i + 2),
            l.at_share,
            Audience::List(l.to.clone()),
        ));
    }
    out
}

/// A period in which a clock stands still: start, end (`None`: still).
pub type Pause = (i64, Option<i64>);

/// Periods in which a clock stands still: `(start, end)`, `None` while it
/// still does. Stalled spells (when `pause_when_stalled`), and for the
/// resolution clock resolved spells (a ticket reopened later); sorted and
/// merged.
fn pauses(changes: &[StatusChange], stalled: bool, resolved: bool) -> Vec<(i64, Option<i64>)> {
    let pausing =
        |s: Status| (stalled && s == Status::Stalled) || (resolved && s == Status::Resolved);
    let mut out: Vec<(i64, Option<i64>)> = Vec::new();
    let mut open: Option<i64> = None;
    for c in changes {
        match (pausing(c.from), pausing(c.to)) {
            (false, true) => open = open.or(Some(c.at)),
            (true, false) => {
                if let Some(start) = open.take() {
                    out.push((start, Some(c.at.max(start))));
                }
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        out.push((start, None));
    }
    out.sort_by_key(|p| p.0);
    let mut merged: Vec<(i64, Option<i64>)> = Vec::with_capacity(out.len());
    for (s, e) in out {
        match merged.last_mut() {
            Some((_, last_end)) if last_end.is_none_or(|le| s <= le) => {
                *last_end = match (*last_end, e) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => merged.push((s, e)),
        }
    }
    merged
}

fn ts(ms: i64) -> Result<Timestamp, CalendarError> {
    Timestamp::from_millisecond(ms).map_err(|_| CalendarError::OutOfRange)
}

/// The instant at which `target` of business time has run on a clock that
/// started at `arrival` and stood still during `pauses` (sorted, merged);
/// `None` while a pause that began before then has not ended.
pub fn due_with_pauses(
    cal: &Calendar,
    arrival: i64,
    target: Duration,
    pauses: &[Pause],
) -> Result<Option<i64>, CalendarError> {
    let mut cursor = arrival;
    let mut remaining = target;
    for &(start, end) in pauses {
        if end.is_some_and(|e| e <= cursor) {
            continue;
        }
        let start = start.max(cursor);
        let before = cal.elapsed(ts(cursor)?, ts(start)?)?;
        if remaining <= before {
            break;
        }
        remaining -= before;
        match end {
            Some(e) => cursor = e.max(start),
            None => return Ok(None),
        }
    }
    Ok(Some(cal.due(ts(cursor)?, remaining)?.as_millisecond()))
}

/// See [`Plan`]. `marked` holds the `(clock, level)` pairs already marked
/// for the ticket (sent, skipped or suppressed).
pub fn plan(
    cfg: &SlaConfig,
    cal: &Calendar,
    facts: &Facts,
    marked: &HashSet<(String, String)>,
    now: i64,
) -> Result<Plan, CalendarError> {
    let mut plan = Plan::default();
    if facts.status == Status::Resolved {
        return Ok(plan);
    }
    let is_marked =
        |clock: &str, level: &str| marked.contains(&(clock.to_string(), level.to_string()));
    let mut next: Option<i64> = None;
    let mut later = |t: i64| next = Some(next.map_or(t, |n: i64| n.min(t)));

    // The clocks that run, with their target and pauses.
    let mut clocks: Vec<(Clock, Duration, Vec<Pause>)> = Vec::new();
    if let (Some(due), None) = (facts.response_due, facts.first_response_at) {
        let target = cal.elapsed(ts(facts.arrival)?, ts(due)?)?;
        clocks.push((
            Clock::Response,
            target,
            pauses(&facts.changes, cfg.pause_when_stalled, false),
        ));
        // Out of hours, a Critical ticket pages on-call at once.
        if facts.priority == Some(Priority::Critical)
            && facts.has_oncall
            && !cal.is_open(ts(facts.arrival)?)?
            && !is_marked(Clock::Response.as_str(), "oncall")
        {
            let target_due =
                due_with_pauses(cal, facts.arrival, target, &clocks[0].2)?.unwrap_or(due);
            plan.send.push(Due {
                clock: Clock::Response,
                level: "oncall".to_string(),
                due_at: facts.arrival,
                target_due_at: target_due,
                audience: Audience::OnCall,
            });
        }
    }
    if let Some(target) = facts.resolution_target {
        clocks.push((
            Clock::Resolution,
            target,
            pauses(&facts.changes, cfg.pause_when_stalled, true),
        ));
    }

    for (clock, target, paused) in clocks {
        let Some(target_due) = due_with_pauses(cal, facts.arrival, target, &paused)? else {
            continue; // Standing still: a change to the ticket wakes it.
        };
        let mut due_now: Vec<Due> = Vec::new();
        for (level, share, audience) in levels(cfg) {
            if is_marked(clock.as_str(), &level) {
                continue;
            }
            let at = if share == 1.0 {
                Some(target_due)
            } else {
                due_with_pauses(cal, facts.arrival, target.mul_f64(share), &paused)?
            };
            let Some(at) = at else { continue };
            if at <= now {
                due_now.push(Due {
                    clock,
                    level,
                    due_at: at,
                    target_due_at: target_due,
                    audience,
                });
            } else {
                later(at);
            }
        }
        // A warning overtaken by a later level of its clock is skipped.
        let overtaken = due_now.iter().any(|d| d.level != "warning");
        for d in due_now {
            if overtaken && d.level == "warning" {
                plan.skip.push(d);
            } else {
                plan.send.push(d);
            }
        }
    }

    if facts.urgent {
        let time = cfg.daily_time();
        let today = cal.date_of(ts(now)?);
        let mut day = today;
        for _ in 0..400 {
            if cal.is_business_day(day) {
                let slot = cal.at(day, time)?.as_millisecond();
                if slot > facts.arrival {
                    if slot > now {
                        later(slot);
                        break;
                    }
                    if day == today && !is_marked(DAILY, &day.to_string()) {
                        plan.daily = Some((day, slot));
                    }
                }
            }
            day = day.tomorrow().map_err(|_| CalendarError::OutOfRange)?;
        }
    }
    plan.next_at = next;
    Ok(plan)
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Tickets looked at.
    pub tickets: usize,
    /// Warnings, escalations and pages queued (or suppressed for want of
    /// recipients).
    pub levels: usize,
    pub skipped: usize,
    pub daily: usize,
    /// Mails queued.
    pub mails: usize,
    /// Tickets whose look failed (logged; looked at again next tick).
    pub failed: usize,
}

/// How many due tickets one query takes.
const BATCH: i64 = 500;
/// At most this many batches per tick, so that a tick always ends.
const MAX_BATCHES: usize = 40;

/// The notifier in force at each look: the daemon's reloads swap its
/// templates, and the scheduler composes with the current ones.
pub type CurrentNotifier = Arc<dyn Fn() -> Arc<Notifier> + Send + Sync>;

/// A notifier that never changes (tests, benchmarks).
pub fn fixed(notifier: Notifier) -> CurrentNotifier {
    let n = Arc::new(notifier);
    Arc::new(move || n.clone())
}

/// The lease that makes one daemon of several on a database the one that
/// ticks (`scheduler`): an optimisation only, since every level is marked
/// once in the database whoever sends it.
#[derive(Debug, Clone)]
pub struct Leader {
    /// This process's holder id (`daemon::fleet::holder`).
    pub holder: String,
    pub ttl: std::time::Duration,
}

/// The lease name the scheduler's leader holds.
pub const LEASE: &str = "scheduler";

/// The scheduler: a task of the daemon.
#[derive(Clone)]
pub struct Scheduler {
    pub config: Arc<Config>,
    pub store: Store,
    pub notifier: CurrentNotifier,
    pub clock: SharedClock,
    /// Woken when mail was queued (the outbox sender).
    pub wake: Arc<tokio::sync::Notify>,
    /// With several daemons: tick only while holding the `scheduler` lease.
    pub leader: Option<Leader>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Ticks until `shutdown`: every `sla.tick_secs`, or sooner when the
    /// earliest pending deadline comes (at most once a second).
    pub async fn run(self, shutdown: CancellationToken) {
        let period = i64::try_from(self.config.sla.tick().as_millis()).unwrap_or(30_000);
        info!(
            tick_secs = self.config.sla.tick_secs,
            "SLA scheduler started"
        );
        // Deadlines in the index were computed with the settings of their
        // time: new settings (a target, a level, a calendar, the daily status
        // time) have every open ticket looked at again.
        match self.store.sla_settings(fingerprint(&self.config)).await {
            Ok(true) => info!("SLA settings new or changed: every open ticket is looked at again"),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "cannot compare the SLA settings with the last run's"),
        }
        let mut leading = false;
        loop {
            let lead = match &self.leader {
                None => true,
                Some(l) => match self.store.try_lease(LEASE, &l.holder, l.ttl).await {
                    Ok(held) => held,
                    Err(e) => {
                        warn!(error = %e, "cannot take or renew the scheduler lease; not ticking");
                        false
                    }
                },
            };
            if lead != leading && self.leader.is_some() {
                info!(
                    leading = lead,
                    "SLA scheduler {}",
                    if lead {
                        "leads (holds the scheduler lease)"
                    } else {
                        "follows (another daemon holds the scheduler lease)"
                    }
                );
                leading = lead;
            }
            if lead {
                match self.tick().await {
                    Ok(r) if r.tickets > 0 => debug!(?r, "SLA tick"),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "SLA tick failed; trying again next tick"),
                }
            }
            let now = self.clock.now_ms();
            let mut at = now + period;
            if lead && let Ok(Some(next)) = self.store.sla_next().await {
                at = at.min(next.max(now + 1_000));
            }
            // The lease is renewed well before it expires (a third of it).
            if let Some(l) = &self.leader {
                let third = i64::try_from(l.ttl.as_millis() / 3).unwrap_or(10_000);
                at = at.min(now + third.max(1_000));
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.clock.sleep_until(at) => {}
            }
        }
        if let (Some(l), true) = (&self.leader, leading)
            && let Err(e) = self.store.release_lease(LEASE, &l.holder).await
        {
            warn!(error = %e, "cannot release the scheduler lease; it expires by itself");
        }
        info!("SLA scheduler stopped");
    }

    /// Looks at every ticket whose next SLA look has come.
    pub async fn tick(&self) -> Result<TickReport, StoreError> {
        let mut report = TickReport::default();
        let now = self.clock.now_ms();
        let mut tried: HashSet<i64> = HashSet::new();
        for _ in 0..MAX_BATCHES {
            let due = self.store.sla_due(now, BATCH).await?;
            let fresh: Vec<i64> = due.iter().copied().filter(|n| tried.insert(*n)).collect();
            if fresh.is_empty() {
                break;
            }
            for number in fresh {
                match self.look(number, now, &mut report).await {
                    Ok(()) => {}
                    Err(e) => {
                        let e = self.store.failed(e).await;
                        warn!(ticket = number, error = %e, "SLA look failed");
                        report.failed += 1;
                    }
                }
            }
            if (due.len() as i64) < BATCH {
                break;
            }
        }
        if report.mails > 0 {
            self.wake.notify_one();
        }
        Ok(report)
    }

    /// One ticket, in one transaction.
    async fn look(&self, number: i64, now: i64, report: &mut TickReport) -> Result<(), StoreError> {
        let mut tx = self.store.begin_at(now).await?;
        let Some(t) = tx.sla_ticket(number, now).await? else {
            // Looked at meanwhile (another daemon), or being looked at.
            return Ok(());
        };
        report.tickets += 1;
        let config = &self.config;
        let Some(cal) = config.calendars.get(&t.desk) else {
            tx.set_sla_next(number, None).await?;
            return tx.commit().await;
        };
        if t.status == Status::Resolved {
            tx.set_sla_next(number, None).await?;
            return tx.commit().await;
        }
        let changes = tx.status_changes(number).await?;
        let marks = tx.sla_marks(number).await?;
        let marked: HashSet<(String, String)> =
            marks.into_iter().map(|m| (m.clock, m.level)).collect();
        let desk = config.desk(&t.desk);
        let facts = Facts {
            arrival: t.created_at,
            status: t.status,
            priority: t.priority,
            response_due: t.due_at,
            first_response_at: t.first_response_at,
            resolution_target: t
                .priority
                .and_then(|p| config.sla.resolution.target(&t.desk, &t.queue, t.kind, p)),
            changes,
            urgent: config.sla.urgent.is_urgent(t.kind, t.priority),
            has_oncall: desk.is_some_and(|d| !d.oncall.is_empty()),
        };
        let plan = match plan(&config.sla, cal, &facts, &marked, now) {
            Ok(p) => p,
            Err(e) => {
                warn!(ticket = number, error = %e, "no SLA deadlines for this ticket");
                tx.set_sla_next(number, None).await?;
                return tx.commit().await;
            }
        };
        let raw = if !plan.send.is_empty() || plan.daily.is_some() {
            tx.first_message_raw(number).await?.unwrap_or_default()
        } else {
            Vec::new()
        };
        let first = crate::parse::parse(&raw);
        for d in &plan.skip {
            if tx
                .mark_sla(number, d.clock.as_str(), &d.level, "skipped", d.due_at)
                .await?
            {
                tx.event(
                    number,
                    "escalation skipped",
                    &json!({"level": d.level, "clock": d.clock.as_str(), "due_at": d.due_at,
                            "reason": "a later level was due at the same time"}),
                )
                .await?;
                report.skipped += 1;
            }
        }
        for d in &plan.send {
            let to = self.audience(&t, &d.audience);
            let out = (self.notifier)().compose_sla(&SlaNotice {
                ticket: &t,
                first: &first,
                clock: d.clock.as_str(),
                level: &d.level,
                due_at: d.due_at,
                target_due_at: d.target_due_at,
                to: &to,
                now,
            });
            let outcome = match out {
                Outgoing::Mail(_) => "sent",
                Outgoing::Suppressed { .. } => "suppressed",
            };
            if !tx
                .mark_sla(number, d.clock.as_str(), &d.level, outcome, d.due_at)
                .await?
            {
                continue; // Another daemon sent it.
            }
            report.levels += 1;
            let mut detail = json!({"level": d.level, "clock": d.clock.as_str(), "to": to,
                                    "due_at": d.target_due_at});
            match out {
                Outgoing::Mail(m) => {
                    queue(&mut tx, number, &m).await?;
                    report.mails += 1;
                }
                Outgoing::Suppressed { kind, reason } => {
                    detail["to"] = json!([]);
                    detail["suppressed"] = json!(reason);
                    tx.event(
                        number,
                        "mail suppressed",
                        &json!({"kind": kind, "reason": reason}),
                    )
                    .await?;
                }
            }
            tx.event(number, "escalation", &detail).await?;
        }
        if let Some((day, slot)) = plan.daily {
            let day = day.to_string();
            if tx.mark_sla(number, DAILY, &day, "sent", slot).await? {
                report.daily += 1;
                let latest = tx.latest_message(number).await?;
                let managers = desk.map(|d| d.managers.clone()).unwrap_or_default();
                let out = (self.notifier)().compose_daily_status(
                    &t,
                    &first,
                    latest.as_ref(),
                    &managers,
                    now,
                );
                let mut to: Vec<String> = Vec::new();
                for o in out {
                    match o {
                        Outgoing::Mail(m) => {
                            to.extend(m.rcpt.iter().cloned());
                            queue(&mut tx, number, &m).await?;
                            report.mails += 1;
                        }
                        Outgoing::Suppressed { kind, reason } => {
                            tx.event(
                                number,
                                "mail suppressed",
                                &json!({"kind": kind, "reason": reason}),
                            )
                            .await?;
                        }
                    }
                }
                tx.event(number, "daily status", &json!({"day": day, "to": to}))
                    .await?;
            }
        }
        tx.set_sla_next(number, plan.next_at).await?;
        tx.commit().await
    }

    /// The addresses of an audience for a ticket: lower-case, each once,
    /// never the requester (these mails are internal).
    fn audience(&self, t: &SlaTicket, a: &Audience) -> Vec<String> {
        let desk = self.config.desk(&t.desk);
        let list: Vec<String> = match a {
            Audience::OwnerOrTeam => match &t.owner {
                Some(o) => vec![o.clone()],
                None => desk
                    .map(|d| {
                        if d.integrators.is_empty() {
                            d.team.iter().filter(|a| a.contains('@')).cloned().collect()
                        } else {
                            d.integrators.clone()
                        }
                    })
                    .unwrap_or_default(),
            },
            Audience::Managers => desk.map(|d| d.managers.clone()).unwrap_or_default(),
            Audience::OnCall => desk.map(|d| d.oncall.clone()).unwrap_or_default(),
            Audience::List(l) => l.clone(),
        };
        let mut out: Vec<String> = Vec::new();
        for a in list {
            let a = a.to_ascii_lowercase();
            if a != t.requester && !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}

/// A fingerprint of everything a deadline depends on in the configuration:
/// `[sla]`, `[targets]`, and each desk's calendar, managers, on-call and team.
pub fn fingerprint(config: &Config) -> i64 {
    use sha2::{Digest, Sha256};
    let desks: Vec<String> = config
        .desks
        .iter()
        .map(|d| {
            format!(
                "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                d.name.get_ref(),
                d.time_zone.get_ref(),
                d.hours.as_ref().map(|h| h.get_ref()),
                d.holidays.iter().map(|h| h.get_ref()).collect::<Vec<_>>(),
                d.managers,
                d.oncall,
                d.integrators,
                d.team
            )
        })
        .collect();
    let text = format!("{:?}|{:?}|{:?}", config.sla, config.targets, desks);
    let digest = Sha256::digest(text.as_bytes());
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(eight)
}

async fn queue(
    tx: &mut crate::store::Tx,
    number: i64,
    m: &crate::notify::OutboundMail,
) -> Result<(), StoreError> {
    tx.queue_mail(number, &m.to_new_mail()).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_CONFIG, SlaLevelConfig};
    use crate::priority::Kind;
    use jiff::Zoned;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    fn t(s: &str) -> i64 {
        match s.parse::<Zoned>() {
            Ok(z) => z.timestamp().as_millisecond(),
            Err(e) => panic!("bad test time {s:?}: {e}"),
        }
    }

    fn chicago(s: &str) -> i64 {
        t(&format!("{s}[America/Chicago]"))
    }

    fn calendar(toml_text: &str) -> Calendar {
        let config: crate::calendar::CalendarConfig =
            toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"));
        Calendar::from_config(&config).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Monday to Friday 08:00-17:00 Chicago, Thanksgiving a holiday.
    fn desk() -> Calendar {
        calendar("holidays = [\"2026-11-26\"]")
    }

    fn always_open() -> Calendar {
        let day = "[\"00:00-24:00\"]";
        calendar(&format!(
            "[hours]\nmon = {day}\ntue = {day}\nwed = {day}\nthu = {day}\nfri = {day}\nsat = {day}\nsun = {day}\n"
        ))
    }

    /// A ticket that arrived at `arrival` with a response target of `target` ms.
    fn facts(cal: &Calendar, arrival: i64, target: i64) -> Facts {
        let due = cal
            .due(
                ts(arrival).unwrap_or_else(|e| panic!("{e}")),
                Duration::from_millis(target as u64),
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .as_millisecond();
        Facts {
            arrival,
            status: Status::New,
            priority: Some(Priority::High),
            response_due: Some(due),
            first_response_at: None,
            resolution_target: None,
            changes: Vec::new(),
            urgent: false,
            has_oncall: false,
        }
    }

    fn run(cfg: &SlaConfig, cal: &Calendar, f: &Facts, marked: &[(&str, &str)], now: i64) -> Plan {
        let marked = marked
            .iter()
            .map(|(c, l)| (c.to_string(), l.to_string()))
            .collect();
        plan(cfg, cal, f, &marked, now).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(d: &[Due]) -> Vec<String> {
        d.iter()
            .map(|d| format!("{} {}", d.clock.as_str(), d.level))
            .collect()
    }

    /// Walks a ticket through time, one minute before and at each expected
    /// level, marking what was sent: each level goes out exactly at its
    /// minute, once.
    #[track_caller]
    fn check_levels(cal: &Calendar, f: &Facts, expected: &[(&str, i64)]) {
        let cfg = SlaConfig::default();
        let mut marked: Vec<(&str, &str)> = Vec::new();
        for (level, at) in expected {
            let before = run(&cfg, cal, f, &marked, at - MIN);
            assert!(before.send.is_empty(), "{level} early: {before:?}");
            assert_eq!(before.next_at, Some(*at), "next look before {level}");
            let p = run(&cfg, cal, f, &marked, *at);
            assert_eq!(names(&p.send), vec![format!("response {level}")], "at {at}");
            assert!(p.skip.is_empty());
            marked.push(("response", level));
        }
        let after = run(
            &cfg,
            cal,
            f,
            &marked,
            expected[expected.len() - 1].1 + 100 * HOUR,
        );
        assert_eq!(after, Plan::default(), "nothing after the last level");
    }

    #[test]
    fn warning_and_escalation_at_the_business_minute() {
        let cal = desk();
        let f = facts(&cal, chicago("2026-11-16T10:00"), 2 * HOUR);
        check_levels(
            &cal,
            &f,
            &[
                ("warning", chicago("2026-11-16T11:30")),
                ("escalation", chicago("2026-11-16T12:00")),
            ],
        );
    }

    #[test]
    fn across_a_weekend() {
        // 16:30 on a Friday with 2 h: due 09:30 on Monday (DOMAIN.md).
        let cal = desk();
        let f = facts(&cal, chicago("2026-11-20T16:30"), 2 * HOUR);
        check_levels(
            &cal,
            &f,
            &[
                ("warning", chicago("2026-11-23T09:00")),
                ("escalation", chicago("2026-11-23T09:30")),
            ],
        );
    }

    #[test]
    fn across_a_holiday() {
        // Wednesday 16:00 + 2 h: one hour on Wednesday, Thanksgiving closed,
        // one hour on Friday.
        let cal = desk();
        let f = facts(&cal, chicago("2026-11-25T16:00"), 2 * HOUR);
        check_levels(
            &cal,
            &f,
            &[
                ("warning", chicago("2026-11-27T08:30")),
                ("escalation", chicago("2026-11-27T09:00")),
            ],
        );
    }

    #[test]
    fn across_both_dst_changes() {
        // Desk hours: Friday 16:30 CST, Monday 09:30 CDT (spring forward on
        // Sunday 8 March 2026), and back on Sunday 1 November.
        let cal = desk();
        let f = facts(&cal, chicago("2026-03-06T16:30"), 2 * HOUR);
        check_levels(
            &cal,
            &f,
            &[
                ("warning", t("2026-03-09T09:00-05:00[America/Chicago]")),
                ("escalation", t("2026-03-09T09:30-05:00[America/Chicago]")),
            ],
        );
        let f = facts(&cal, chicago("2026-10-30T16:30"), 2 * HOUR);
        check_levels(
            &cal,
            &f,
            &[
                ("warning", t("2026-11-02T09:00-06:00[America/Chicago]")),
                ("escalation", t("2026-11-02T09:30-06:00[America/Chicago]")),
            ],
        );
        // Open all night: two real hours across the changes, whatever the
        // wall clock says.
        let cal = always_open();
        let arrival = t("2026-03-08T01:00-06:00[America/Chicago]");
        let f = facts(&cal, arrival, 2 * HOUR);
        check_levels(
            &cal,
            &f,
            &[
                ("warning", arrival + 90 * MIN),
                ("escalation", t("2026-03-08T04:00-05:00[America/Chicago]")),
            ],
        );
        let arrival = t("2026-11-01T00:30-05:00[America/Chicago]");
        let f = facts(&cal, arrival, 2 * HOUR);
        check_levels(
            &cal,
            &f,
            &[
                ("warning", arrival + 90 * MIN),
                ("escalation", t("2026-11-01T01:30-06:00[America/Chicago]")),
            ],
        );
    }

    #[test]
    fn a_response_a_minute_early_stops_the_clock() {
        let cal = desk();
        let mut f = facts(&cal, chicago("2026-11-16T10:00"), 2 * HOUR);
        let cfg = SlaConfig::default();
        let warned = run(&cfg, &cal, &f, &[], chicago("2026-11-16T11:30"));
        assert_eq!(names(&warned.send), ["response warning"]);
        f.first_response_at = Some(chicago("2026-11-16T11:59"));
        for now in [chicago("2026-11-16T12:00"), chicago("2026-11-19T12:00")] {
            let p = run(&cfg, &cal, &f, &[("response", "warning")], now);
            assert_eq!(p, Plan::default(), "{p:?}");
        }
    }

    #[test]
    fn a_stalled_ticket_pauses_its_clock() {
        let cal = desk();
        let cfg = SlaConfig::default();
        let mut f = facts(&cal, chicago("2026-11-16T10:00"), 2 * HOUR);
        let stalled = StatusChange {
            at: chicago("2026-11-16T10:30"),
            from: Status::New,
            to: Status::Stalled,
        };
        f.changes = vec![stalled];
        f.status = Status::Stalled;
        // While it waits nothing falls due, however long.
        let p = run(&cfg, &cal, &f, &[], chicago("2026-11-18T10:00"));
        assert_eq!(p, Plan::default());
        // Back after an hour of business time (and a night): the due time
        // moves by that hour.
        f.changes.push(StatusChange {
            at: chicago("2026-11-16T11:30"),
            from: Status::Stalled,
            to: Status::Open,
        });
        f.status = Status::Open;
        check_levels(
            &cal,
            &f,
            &[
                ("warning", chicago("2026-11-16T12:30")),
                ("escalation", chicago("2026-11-16T13:00")),
            ],
        );
        // Stalled overnight: only business time counts.
        f.changes[1].at = chicago("2026-11-17T09:00");
        let p = run(&cfg, &cal, &f, &[], chicago("2026-11-17T09:00"));
        assert_eq!(p.next_at, Some(chicago("2026-11-17T10:00")));
        // Not configured to pause: the plain due time.
        let cfg = SlaConfig {
            pause_when_stalled: false,
            ..SlaConfig::default()
        };
        let p = run(
            &cfg,
            &cal,
            &f,
            &[("response", "warning")],
            chicago("2026-11-16T12:00"),
        );
        assert_eq!(names(&p.send), ["response escalation"]);
    }

    #[test]
    fn after_three_days_down_one_escalation_not_many() {
        let cal = desk();
        let f = facts(&cal, chicago("2026-11-16T10:00"), 2 * HOUR);
        let cfg = SlaConfig::default();
        let p = run(&cfg, &cal, &f, &[], chicago("2026-11-19T10:00"));
        assert_eq!(names(&p.send), ["response escalation"]);
        assert_eq!(names(&p.skip), ["response warning"]);
        assert_eq!(p.next_at, None);
        // Once marked, later looks send nothing more.
        let p = run(
            &cfg,
            &cal,
            &f,
            &[("response", "warning"), ("response", "escalation")],
            chicago("2026-11-19T10:01"),
        );
        assert_eq!(p, Plan::default());
        // Further levels: each overdue one once, the warning skipped.
        let cfg = SlaConfig {
            levels: vec![
                SlaLevelConfig {
                    at_share: 2.0,
                    to: vec!["director@example.edu".to_string()],
                },
                SlaLevelConfig {
                    at_share: 20.0,
                    to: vec!["cio@example.edu".to_string()],
                },
            ],
            ..SlaConfig::default()
        };
        let p = run(&cfg, &cal, &f, &[], chicago("2026-11-19T10:00"));
        assert_eq!(names(&p.send), ["response escalation", "response level2"]);
        assert_eq!(p.send[1].due_at, chicago("2026-11-16T14:00"));
        assert_eq!(
            p.send[1].audience,
            Audience::List(vec!["director@example.edu".to_string()])
        );
        // 40 h of business time: Monday 10-17, Tuesday to Thursday 08-17,
        // Friday 08-14.
        assert_eq!(p.next_at, Some(chicago("2026-11-20T14:00")));
    }

    #[test]
    fn database_desk_incident_in_thirty_minutes() {
        let config =
            crate::config::Config::parse(DEFAULT_CONFIG, "t").unwrap_or_else(|e| panic!("{e}"));
        let (target, why) =
            config
                .targets
                .target("database", "Database", Kind::Incident, Priority::High);
        assert_eq!(target, Duration::from_secs(30 * 60), "{why}");
        let cal = &config.calendars["database"];
        let f = facts(cal, chicago("2026-11-17T09:00"), 30 * MIN);
        check_levels(
            cal,
            &f,
            &[
                ("warning", chicago("2026-11-17T09:22:30")),
                ("escalation", chicago("2026-11-17T09:30")),
            ],
        );
        // Ten minutes before closing: the rest the next morning.
        let f = facts(cal, chicago("2026-11-17T16:50"), 30 * MIN);
        check_levels(
            cal,
            &f,
            &[
                ("warning", chicago("2026-11-18T08:12:30")),
                ("escalation", chicago("2026-11-18T08:20")),
            ],
        );
    }

    #[test]
    fn critical_out_of_hours_pages_oncall_at_once() {
        let cal = desk();
        let cfg = SlaConfig::default();
        let saturday = chicago("2026-11-21T10:00");
        let mut f = facts(&cal, saturday, 2 * HOUR);
        f.priority = Some(Priority::Critical);
        f.has_oncall = true;
        let p = run(&cfg, &cal, &f, &[], saturday);
        assert_eq!(names(&p.send), ["response oncall"]);
        assert_eq!(p.send[0].audience, Audience::OnCall);
        assert_eq!(p.send[0].target_due_at, chicago("2026-11-23T10:00"));
        // Paged once; the escalation still waits for its business minute.
        let p = run(&cfg, &cal, &f, &[("response", "oncall")], saturday + MIN);
        assert!(p.send.is_empty());
        assert_eq!(p.next_at, Some(chicago("2026-11-23T09:30")));
        // Not without on-call, not for High, not in hours, not once answered.
        for change in 0..4 {
            let mut g = f.clone();
            match change {
                0 => g.has_oncall = false,
                1 => g.priority = Some(Priority::High),
                2 => g = facts(&cal, chicago("2026-11-20T10:00"), 2 * HOUR).clone_with(&f),
                _ => g.first_response_at = Some(saturday),
            }
            let p = run(&cfg, &cal, &g, &[], g.arrival);
            assert!(p.send.is_empty(), "case {change}: {p:?}");
        }
    }

    impl Facts {
        /// This ticket's arrival and due time with `other`'s priority and on-call.
        fn clone_with(self, other: &Facts) -> Facts {
            Facts {
                priority: other.priority,
                has_oncall: other.has_oncall,
                ..self
            }
        }
    }

    #[test]
    fn daily_status_once_per_business_day_at_its_time() {
        let cal = desk();
        let cfg = SlaConfig::default();
        let mut f = facts(&cal, chicago("2026-11-19T10:00"), 2 * HOUR);
        f.urgent = true;
        f.first_response_at = Some(chicago("2026-11-19T10:30"));
        // Thursday after arrival: the first one is Friday 09:00.
        let p = run(&cfg, &cal, &f, &[], chicago("2026-11-19T12:00"));
        assert_eq!(p.daily, None);
        assert_eq!(p.next_at, Some(chicago("2026-11-20T09:00")));
        let p = run(&cfg, &cal, &f, &[], chicago("2026-11-20T08:59"));
        assert_eq!(p.daily, None);
        let p = run(&cfg, &cal, &f, &[], chicago("2026-11-20T09:00"));
        let friday: Date = "2026-11-20".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.daily, Some((friday, chicago("2026-11-20T09:00"))));
        // Marked: not again that day; next on Monday (weekend).
        let p = run(
            &cfg,
            &cal,
            &f,
            &[("daily", "2026-11-20")],
            chicago("2026-11-20T16:00"),
        );
        assert_eq!(p.daily, None);
        assert_eq!(p.next_at, Some(chicago("2026-11-23T09:00")));
        // Down from Friday to Wednesday afternoon: one status, Wednesday's,
        // then Friday's (Thursday is a holiday).
        let p = run(
            &cfg,
            &cal,
            &f,
            &[("daily", "2026-11-20")],
            chicago("2026-11-25T15:00"),
        );
        let wednesday: Date = "2026-11-25".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.daily.map(|d| d.0), Some(wednesday));
        assert_eq!(p.next_at, Some(chicago("2026-11-27T09:00")));
        // Resolved: nothing at all.
        f.status = Status::Resolved;
        assert_eq!(
            run(&cfg, &cal, &f, &[], chicago("2026-11-25T15:00")),
            Plan::default()
        );
        // Not urgent: none.
        f.status = Status::Open;
        f.urgent = false;
        assert_eq!(
            run(&cfg, &cal, &f, &[], chicago("2026-11-25T15:00")),
            Plan::default()
        );
    }

    #[test]
    fn resolution_clock_runs_past_the_response() {
        let cal = desk();
        let cfg = SlaConfig::default();
        let mut f = facts(&cal, chicago("2026-11-16T10:00"), 2 * HOUR);
        f.first_response_at = Some(chicago("2026-11-16T10:05"));
        f.resolution_target = Some(Duration::from_secs(8 * 3600));
        let p = run(&cfg, &cal, &f, &[], chicago("2026-11-16T12:00"));
        assert!(p.send.is_empty());
        // 6 h: Monday 10-16; 8 h: Tuesday 09:00.
        assert_eq!(p.next_at, Some(chicago("2026-11-16T16:00")));
        let p = run(
            &cfg,
            &cal,
            &f,
            &[("resolution", "warning")],
            chicago("2026-11-17T09:00"),
        );
        assert_eq!(names(&p.send), ["resolution escalation"]);
        assert_eq!(p.send[0].audience, Audience::Managers);
    }

    #[test]
    fn pauses_from_status_changes() {
        let c = |at: i64, from: Status, to: Status| StatusChange { at, from, to };
        use Status::*;
        let changes = vec![
            c(10, New, Stalled),
            c(20, Stalled, Open),
            c(30, Open, Resolved),
            c(40, Resolved, Stalled),
            c(50, Stalled, Open),
            c(60, Open, Stalled),
        ];
        assert_eq!(
            pauses(&changes, true, false),
            vec![(10, Some(20)), (40, Some(50)), (60, None)]
        );
        assert_eq!(pauses(&changes, false, true), vec![(30, Some(40))]);
        assert_eq!(
            pauses(&changes, true, true),
            vec![(10, Some(20)), (30, Some(50)), (60, None)]
        );
        assert!(pauses(&changes, false, false).is_empty());
    }
}
