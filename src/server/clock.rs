//! Where the loop gets the time from: the system's monotonic clock, or a manual clock
//! that tests move forward, so that every timeout can be tested without waiting.
//!
//! ```
//! use pushloop::{Config, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let config = Config::default().clock(clock.clone());
//! let before = clock.now();
//! clock.advance(Duration::from_secs(11)); // a handshake timeout passes, instantly
//! assert_eq!(clock.now() - before, Duration::from_secs(11));
//! # drop(config);
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A wake-up call into a running loop.
pub type Wake = Box<dyn Fn() + Send + Sync>;

/// A source of monotonic time for the loop (deadlines, keepalive, round-trip times).
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Instant;

    /// Called once when a loop starts with this clock: `wake` makes the loop run a turn
    /// (and look at its timers). A clock that jumps should call it after each jump.
    fn attach(&self, wake: Wake) {
        let _ = wake;
    }
}

/// The operating system's monotonic clock ([`Instant::now`]); the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until [`advance`](ManualClock::advance) moves it; each
/// move wakes the loops that use it, which then handle every deadline that passed.
/// Clones share the same time.
#[derive(Clone, Default)]
pub struct ManualClock {
    inner: Arc<Manual>,
}

#[derive(Default)]
struct Manual {
    /// (start, offset): `now` is `start + offset`; the start is fixed at the first reading.
    time: Mutex<(Option<Instant>, Duration)>,
    wakers: Mutex<Vec<Wake>>,
}

impl ManualClock {
    /// A clock standing at the current time.
    pub fn new() -> Self {
        ManualClock::default()
    }

    /// The clock's time.
    pub fn now(&self) -> Instant {
        let mut time = lock(&self.inner.time);
        let start = *time.0.get_or_insert_with(Instant::now);
        start + time.1
    }

    /// Moves the clock forward by `by` and wakes every loop using it.
    pub fn advance(&self, by: Duration) {
        {
            let mut time = lock(&self.inner.time);
            time.0.get_or_insert_with(Instant::now);
            time.1 += by;
        }
        for wake in lock(&self.inner.wakers).iter() {
            wake();
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        ManualClock::now(self)
    }

    fn attach(&self, wake: Wake) {
        lock(&self.inner.wakers).push(wake);
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offset = lock(&self.inner.time).1;
        f.debug_struct("ManualClock")
            .field("advanced", &offset)
            .finish()
    }
}

/// Locks `m`, ignoring poisoning (the data is a plain value, always consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn manual_clock_moves_only_when_advanced_and_wakes_its_loops() {
        let clock = ManualClock::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        Clock::attach(
            &clock,
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        let shared = clock.clone();
        shared.advance(Duration::from_millis(1500));
        assert_eq!(clock.now() - t0, Duration::from_millis(1500));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }
}
