//! Keepalive: the server pings every open WebSocket after `ping_interval` and drops a peer
//! that has not answered within `pong_timeout` (the handler sees 1006).
//!
//! No timer per connection: a sweep walks a slice of the slab every tick, so that each
//! connection is looked at once per check period. A connection carries only the tick of
//! its last ping or pong and a flag; the ping's payload carries the send time, which the
//! pong brings back for the round-trip time.

use crate::connection::Phase;
use crate::frame::OpCode;
use crate::pool::Pool;
use std::time::{Duration, Instant};

/// How often the sweep runs (or the check period, if shorter).
const SWEEP_TICK: Duration = Duration::from_millis(100);

/// What a sweep found.
#[derive(Debug, Default)]
pub struct Swept {
    /// Connections whose pong did not come in time.
    pub timed_out: Vec<usize>,
}

impl Pool {
    /// Milliseconds since the pool started, wrapping at 2^32 (differences stay right).
    pub(crate) fn now_ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
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
        let ping = self.config.ping_interval?;
        Some((ping.min(self.config.pong_timeout) / 4).max(Duration::from_millis(10)))
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
            .config
            .ping_interval
            .map_or(u32::MAX, |d| d.as_millis() as u32);
        let pong_ms = self.config.pong_timeout.as_millis() as u32;
        let now_ms = self.now_ms(now);
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
            if conn.awaiting_pong && quiet >= pong_ms {
                swept.timed_out.push(key);
            } else if !conn.awaiting_pong && quiet >= ping_ms {
                let sent = now.saturating_duration_since(self.epoch).as_micros() as u64;
                conn.queue_urgent(OpCode::Ping, &sent.to_be_bytes());
                conn.awaiting_pong = true;
                conn.keepalive_ms = now_ms;
                self.mark_dirty(key);
            }
        }
        swept
    }

    /// A pong arrived on `key`: the round-trip time if it answers our ping.
    pub(crate) fn pong(&mut self, key: usize, payload: &[u8], now: Instant) -> Option<Duration> {
        let now_ms = self.now_ms(now);
        let since_epoch = now.saturating_duration_since(self.epoch).as_micros() as u64;
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
