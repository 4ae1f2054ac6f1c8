//! The one clock: wall time in Unix milliseconds.
//!
//! Production code asks [`now_ms`] (the system clock). Code that waits on time
//! (the outbox sender's retries, the SLA scheduler to come) takes a [`Clock`]
//! instead, so that a test can hand it a [`ManualClock`] that moves only when
//! told and check a due time without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Wall time in Unix milliseconds, from the system clock.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A source of the current time, in Unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock for tests: it shows the time it was set to and moves only when
/// told ([`ManualClock::advance`], [`ManualClock::set`]). Clones share one time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `ms`.
    pub fn at(ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(ms)))
    }

    /// Moves the clock forward (or back, for a negative `ms`).
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
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

    #[test]
    fn system_clock_is_now() {
        let before = jiff::Timestamp::now().as_millisecond();
        let t = system().now_ms();
        let after = jiff::Timestamp::now().as_millisecond();
        assert!(before <= t && t <= after);
    }
}
