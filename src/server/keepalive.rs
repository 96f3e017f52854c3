//! Keepalive: the server pings every open WebSocket after `ping_interval` and drops a peer
//! that has not answered within `pong_timeout` (the handler sees 1006).
//!
//! No timer per connection: a sweep walks a slice of the slab every tick, so that each
//! connection is looked at once per check period. A connection carries only the tick of
//! its last ping or pong and a flag; the ping's payload carries the send time, which the
//! pong brings back for the round-trip time.

use crate::server::connection::Phase;
use crate::server::core::Core;
use crate::ws::frame::OpCode;
use std::time::{Duration, Instant};

/// How often the sweep runs (or the check period, if shorter).
const SWEEP_TICK: Duration = Duration::from_millis(100);

/// What a sweep found.
#[derive(Debug, Default)]
pub struct Swept {
    /// Connections whose pong did not come in time.
    pub timed_out: Vec<usize>,
}

impl Core {
    /// Milliseconds since the pool started, wrapping at 2^32 (differences stay right).
    pub(crate) fn now_ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.timers.epoch())
            .as_millis() as u32
    }

    /// Starts keepalive for a connection that just opened.
    pub(crate) fn keepalive_start(&mut self, key: usize, now: Instant) {
        let ms = self.now_ms(now);
        let conn = &mut self.conns[key];
        conn.keepalive_ms = ms;
        conn.awaiting_pong = false;
    }

    /// The check period: each open connection is looked at once per period.
    fn check_period(&self) -> Option<Duration> {
        let ping = self.settings.ping_interval?;
        Some((ping.min(self.settings.pong_timeout) / 4).max(Duration::from_millis(10)))
    }

    /// When the sweep should run next.
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        self.check_period()?;
        Some(self.next_sweep)
    }

    /// Runs the sweep if it is due: pings the quiet, reports the silent.
    pub(crate) fn sweep(&mut self, now: Instant) -> Swept {
        let mut swept = Swept::default();
        let Some(period) = self.check_period() else {
            return swept;
        };
        if now < self.next_sweep {
            return swept;
        }
        let tick = SWEEP_TICK.min(period);
        // Visit the share of the slab that the time since the last sweep is of the
        // period (all of it after a long turn or a jump of the clock).
        let elapsed = now.saturating_duration_since(self.last_sweep).max(tick);
        self.last_sweep = now;
        self.next_sweep = now + tick;
        let slots = self.conns.capacity().max(1);
        let visits =
            (slots as u128 * elapsed.as_millis()).div_ceil(period.as_millis().max(1)) as usize;
        let ping_ms = self
            .settings
            .ping_interval
            .map_or(u32::MAX, |d| d.as_millis() as u32);
        let pong_ms = self.settings.pong_timeout.as_millis() as u32;
        let now_ms = self.now_ms(now);
        let epoch = self.timers.epoch();
        for _ in 0..visits.min(slots) {
            let key = self.sweep_cursor % slots;
            self.sweep_cursor = (key + 1) % slots;
            let Some(conn) = self
                .conns
                .get_mut(key)
                .filter(|c| matches!(c.phase, Phase::Open))
            else {
                continue;
            };
            let quiet = now_ms.wrapping_sub(conn.keepalive_ms);
            match check(conn.awaiting_pong, quiet, ping_ms, pong_ms) {
                Check::Fine => {}
                Check::TimedOut => swept.timed_out.push(key),
                Check::Ping => {
                    let sent = now.saturating_duration_since(epoch).as_micros() as u64;
                    conn.queue_urgent(OpCode::Ping, &sent.to_be_bytes());
                    conn.awaiting_pong = true;
                    conn.keepalive_ms = now_ms;
                    self.mark_dirty(key);
                }
            }
        }
        swept
    }

    /// A pong arrived on `key`: the round-trip time if it answers our ping.
    pub(crate) fn pong(&mut self, key: usize, payload: &[u8], now: Instant) -> Option<Duration> {
        let now_ms = self.now_ms(now);
        let since_epoch = now
            .saturating_duration_since(self.timers.epoch())
            .as_micros() as u64;
        let conn = &mut self.conns[key];
        if !conn.awaiting_pong {
            return None; // unsolicited (§5.5.3): no answer expected
        }
        let sent = u64::from_be_bytes(payload.try_into().ok()?);
        conn.awaiting_pong = false;
        conn.keepalive_ms = now_ms;
        Some(Duration::from_micros(since_epoch.saturating_sub(sent)))
    }
}

/// What keepalive does with an open connection.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// Nothing yet.
    Fine,
    /// Quiet for the ping interval: ping it.
    Ping,
    /// Pinged and silent for the pong timeout: drop it.
    TimedOut,
}

/// The keepalive decision for a connection quiet for `quiet_ms` since its last ping or
/// pong.
fn check(awaiting_pong: bool, quiet_ms: u32, ping_ms: u32, pong_ms: u32) -> Check {
    match awaiting_pong {
        true if quiet_ms >= pong_ms => Check::TimedOut,
        false if quiet_ms >= ping_ms => Check::Ping,
        _ => Check::Fine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_connection_is_pinged_then_dropped_if_silent() {
        let (ping, pong) = (30_000, 10_000);
        assert_eq!(check(false, 29_999, ping, pong), Check::Fine);
        assert_eq!(check(false, 30_000, ping, pong), Check::Ping);
        assert_eq!(check(true, 9_999, ping, pong), Check::Fine);
        assert_eq!(check(true, 10_000, ping, pong), Check::TimedOut);
        // Milliseconds wrap at 2^32; differences stay right.
        assert_eq!(
            check(false, 5u32.wrapping_sub(u32::MAX - 29_995), ping, pong),
            Check::Ping
        );
    }
}
