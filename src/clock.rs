//! The one clock: wall time in Unix milliseconds.
//!
//! Code that only stamps a time asks [`now_ms`] (the system clock). Code whose
//! behaviour depends on time passing (the SLA scheduler to come, retry
//! schedules) should hold a [`SharedClock`] instead, reading it with
//! [`Clock::now_ms`] and waiting with [`Clock::sleep_until`], so that a test
//! can hand it a [`ManualClock`] that moves only when told and check a due
//! time without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Wall time in Unix milliseconds, from the system clock.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Unix milliseconds as an RFC 3339 UTC time with milliseconds
/// (`2026-11-24T01:30:22.123Z`); `None` outside the years jiff handles.
pub fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| format!("{t:.3}"))
}

/// serde `serialize_with` helpers: times kept as Unix milliseconds (or a
/// message's Date as seconds) written as RFC 3339 strings in JSON output
/// (`docs/json.md`). A value no calendar can show is written as `null`.
pub mod json_time {
    use serde::Serializer;

    pub fn ms<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        match super::rfc3339(*ms) {
            Some(t) => s.serialize_str(&t),
            None => s.serialize_none(),
        }
    }

    pub fn opt_ms<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms.and_then(super::rfc3339) {
            Some(t) => s.serialize_str(&t),
            None => s.serialize_none(),
        }
    }

    /// Seconds (a message's `Date:`).
    pub fn opt_secs<S: Serializer>(secs: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        opt_ms(&secs.and_then(|x| x.checked_mul(1000)), s)
    }
}

/// A future that [`Clock::sleep_until`] returns.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of the current time, in Unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;

    /// Completes once the clock shows `at_ms` or later.
    fn sleep_until(&self, at_ms: i64) -> Sleep<'_>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep<'_> {
        Box::pin(async move {
            // The wall clock may be set back while asleep: look again on waking.
            loop {
                let left = at_ms.saturating_sub(now_ms());
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(left as u64)).await;
            }
        })
    }
}

/// A clock for tests: it shows the time it was set to and moves only when
/// told ([`ManualClock::advance`], [`ManualClock::set`]), waking the tasks
/// whose [`Clock::sleep_until`] it reaches. Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<tokio::sync::watch::Sender<i64>>);

impl ManualClock {
    /// A clock stopped at `ms`.
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(Arc::new(tokio::sync::watch::Sender::new(ms)))
    }

    /// Moves the clock forward (or back, for a negative `ms`).
    pub fn advance(&self, ms: i64) {
        self.0.send_modify(|t| *t = t.saturating_add(ms));
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: i64) {
        self.0.send_replace(ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.0.borrow()
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep<'_> {
        let mut rx = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`: `wait_for` cannot fail here.
            let _ = rx.wait_for(|&t| t >= at_ms).await;
        })
    }
}

/// A shared clock, as components hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            rfc3339(1_795_482_622_123).as_deref(),
            Some("2026-11-24T01:10:22.123Z")
        );
        assert_eq!(rfc3339(i64::MAX), None);
        #[derive(serde::Serialize)]
        struct T {
            #[serde(serialize_with = "json_time::ms")]
            a: i64,
            #[serde(serialize_with = "json_time::opt_ms")]
            b: Option<i64>,
            #[serde(serialize_with = "json_time::opt_secs")]
            c: Option<i64>,
            #[serde(serialize_with = "json_time::ms")]
            d: i64,
        }
        let t = T {
            a: 1000,
            b: None,
            c: Some(60),
            d: i64::MIN,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap_or_default(),
            r#"{"a":"1970-01-01T00:00:01.000Z","b":null,"c":"1970-01-01T00:01:00.000Z","d":null}"#
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_000);
        let shared: SharedClock = Arc::new(clock.clone());
        assert_eq!(shared.now_ms(), 1_000);
        assert_eq!(shared.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(shared.now_ms(), 1_250);
        clock.set(5);
        assert_eq!(shared.now_ms(), 5);
    }

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_manual_clock_gets_there() {
        let clock = ManualClock::at(0);
        let shared: SharedClock = Arc::new(clock.clone());
        let sleeper = tokio::spawn(async move { shared.sleep_until(60_000).await });
        tokio::task::yield_now().await;
        clock.advance(59_999);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke a millisecond early");
        clock.advance(1);
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), sleeper).await;
        assert!(matches!(woke, Ok(Ok(()))), "did not wake: {woke:?}");
        // A time already passed does not wait at all.
        let done =
            tokio::time::timeout(std::time::Duration::from_secs(5), clock.sleep_until(10)).await;
        assert!(done.is_ok());
    }

    #[tokio::test]
    async fn system_clock_is_now_and_sleeps() {
        let before = jiff::Timestamp::now().as_millisecond();
        let clock = system();
        let t = clock.now_ms();
        let after = jiff::Timestamp::now().as_millisecond();
        assert!(before <= t && t <= after);
        clock.sleep_until(t + 20).await;
        assert!(clock.now_ms() >= t + 20);
        clock.sleep_until(t - 1_000).await;
    }
}
