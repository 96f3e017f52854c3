//! Deadlines: one per connection at most, in a heap of 16-byte entries, as whole
//! milliseconds since the loop started. Sans-IO: the loop asks which slots are due.
//!
//! A connection keeps only its current deadline's tick (8 bytes); setting a new one
//! pushes a new entry and leaves the old one in the heap, where it is skipped when it
//! comes up because it no longer matches (lazy deletion: no search, no removal).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A deadline as a tick: whole milliseconds since the epoch, rounded up, plus one (0
/// means "none").
pub type Tick = u64;

/// The deadline heap.
#[derive(Debug)]
pub struct Timers {
    /// (deadline tick, slot, serial); an entry is current while the connection in the
    /// slot has that serial and that deadline.
    heap: BinaryHeap<Reverse<(Tick, u32, u32)>>,
    epoch: Instant,
}

impl Timers {
    /// An empty heap counting from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Timers {
            heap: BinaryHeap::new(),
            epoch,
        }
    }

    /// When the ticks count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// `at` as a tick, rounded up so that a deadline never fires early.
    pub fn tick(&self, at: Instant) -> Tick {
        let since = at.saturating_duration_since(self.epoch);
        since.as_millis() as u64 + u64::from(!since.subsec_nanos().is_multiple_of(1_000_000)) + 1
    }

    /// Adds a deadline at `tick` for the connection in `slot` with `serial`.
    pub fn push(&mut self, tick: Tick, slot: usize, serial: u32) {
        self.heap.push(Reverse((tick, slot as u32, serial)));
    }

    /// The earliest deadline in the heap (possibly stale: the loop only wakes early).
    pub fn next(&self) -> Option<Instant> {
        let Reverse((tick, _, _)) = self.heap.peek()?;
        Some(self.epoch + Duration::from_millis(tick - 1))
    }

    /// Pops the entries due at `now` and returns the slots whose entry is still
    /// current, as `current(slot, serial, tick)` decides.
    pub fn due(&mut self, now: Instant, current: impl Fn(usize, u32, Tick) -> bool) -> Vec<usize> {
        let now = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        let mut due = Vec::new();
        while let Some(Reverse((tick, slot, serial))) = self.heap.peek().copied() {
            if tick > now {
                break;
            }
            self.heap.pop();
            if current(slot as usize, serial, tick) {
                due.push(slot as usize);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_zero_means_none() {
        let epoch = Instant::now();
        let timers = Timers::new(epoch);
        assert_eq!(timers.tick(epoch), 1);
        assert_eq!(timers.tick(epoch + Duration::from_millis(5)), 6);
        assert_eq!(timers.tick(epoch + Duration::from_micros(5_001)), 7);
    }

    #[test]
    fn a_deadline_fires_at_its_time_not_before() {
        let epoch = Instant::now();
        let mut timers = Timers::new(epoch);
        let at = epoch + Duration::from_millis(10_000);
        timers.push(timers.tick(at), 3, 1);
        assert_eq!(timers.next(), Some(at));
        let always = |_, _, _| true;
        assert!(timers.due(at - Duration::from_millis(1), always).is_empty());
        assert_eq!(timers.due(at, always), vec![3]);
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn stale_entries_are_skipped() {
        let epoch = Instant::now();
        let mut timers = Timers::new(epoch);
        let (first, second) = (timers.tick(epoch + Duration::from_millis(5)), 20);
        timers.push(first, 0, 1); // replaced by a later deadline
        timers.push(second, 0, 1);
        timers.push(first, 1, 9); // its slot now holds another connection
        let current = |slot: usize, serial: u32, tick: Tick| match slot {
            0 => serial == 1 && tick == second,
            _ => serial == 10,
        };
        let later = epoch + Duration::from_millis(30);
        assert_eq!(timers.due(later, current), vec![0]);
    }

    #[test]
    fn due_entries_come_in_deadline_order() {
        let epoch = Instant::now();
        let mut timers = Timers::new(epoch);
        for (slot, ms) in [(0, 30), (1, 10), (2, 20)] {
            timers.push(timers.tick(epoch + Duration::from_millis(ms)), slot, 0);
        }
        let all = timers.due(epoch + Duration::from_secs(1), |_, _, _| true);
        assert_eq!(all, vec![1, 2, 0]);
    }
}
