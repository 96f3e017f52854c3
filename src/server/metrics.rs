//! What the loop counts: plain integers in the loop's [`Core`](crate::server::core::Core),
//! bumped on the loop's thread (no atomics, no locks), read only when someone asks for a
//! [`LoopStats`] (a scrape runs a task on every worker). The gauges (connections by
//! transport, queued bytes) are not kept up to date on the hot path: they are counted
//! over the slab when asked.

use crate::server::backlog::Policy;
use std::time::{Duration, Instant};

/// The HTTP statuses a refused handshake is counted under (anything else: `other`).
pub const REFUSAL_STATUSES: [u16; 11] = [400, 401, 403, 404, 413, 426, 429, 431, 500, 503, 0];

/// The close codes counted one by one (anything else: `0`, other).
pub const CLOSE_CODES: [u16; 14] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 0,
];

/// Upper bounds, in seconds, of the publish-to-write latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// A histogram of durations: a count per bucket of [`LATENCY_BUCKETS`] (not cumulative;
/// the last counts what is over every bound), their sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket; index `LATENCY_BUCKETS.len()` is `+Inf`.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// The sum of the observations, in seconds.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

impl Histogram {
    /// Records `d`.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    /// Adds `other`'s observations.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// The index of `status` in [`REFUSAL_STATUSES`].
fn refusal_index(status: u16) -> usize {
    REFUSAL_STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(REFUSAL_STATUSES.len() - 1)
}

/// The index of `code` in [`CLOSE_CODES`].
fn close_index(code: u16) -> usize {
    CLOSE_CODES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(CLOSE_CODES.len() - 1)
}

/// The index of `policy` in per-policy counters.
pub(crate) fn policy_index(policy: Policy) -> usize {
    match policy {
        Policy::Close => 0,
        Policy::DropOldest => 1,
        Policy::DropNewest => 2,
        Policy::Latest => 3,
    }
}

/// The policies in the order of per-policy counters.
pub const POLICIES: [Policy; 4] = [
    Policy::Close,
    Policy::DropOldest,
    Policy::DropNewest,
    Policy::Latest,
];

/// The loop's counters since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// WebSocket upgrades accepted (the handler's `on_open` said yes).
    pub handshakes_accepted: u64,
    /// Upgrades and request heads refused, by status ([`REFUSAL_STATUSES`]).
    pub handshakes_refused: [u64; REFUSAL_STATUSES.len()],
    /// Messages received on WebSockets (after reassembly and inflation).
    pub messages_in: u64,
    /// Their payload bytes (inflated).
    pub payload_bytes_in: u64,
    /// Bytes read from sockets (the wire: frames, compressed or not, and HTTP).
    pub bytes_in: u64,
    /// Messages queued to WebSockets and event streams (sends and deliveries).
    pub messages_out: u64,
    /// Their payload bytes (before compression).
    pub payload_bytes_out: u64,
    /// Bytes the kernel took (the wire).
    pub bytes_out: u64,
    /// Channel messages queued to their members (WebSocket and SSE).
    pub deliveries: u64,
    /// Messages a backlog policy dropped, by policy ([`POLICIES`]).
    pub dropped: [u64; 4],
    /// Connections closed because their queue was full (policy `close`).
    pub overflows: u64,
    /// WebSocket conversations that ended, by close code ([`CLOSE_CODES`]; 1006: lost).
    pub closes: [u64; CLOSE_CODES.len()],
    /// Time from a publish to the end of the turn's writes (its members' bytes handed to
    /// the kernel, for every member whose queue was not congested).
    pub publish_latency: Histogram,
}

impl Counters {
    /// Counts a refusal with `status`.
    pub(crate) fn refused(&mut self, status: u16) {
        self.handshakes_refused[refusal_index(status)] += 1;
    }

    /// Counts a WebSocket that ended with `code`.
    pub(crate) fn closed(&mut self, code: u16) {
        self.closes[close_index(code)] += 1;
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Counters) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (a, b) in a.iter_mut().zip(b) {
                *a += b;
            }
        }
        self.handshakes_accepted += other.handshakes_accepted;
        add(&mut self.handshakes_refused, &other.handshakes_refused);
        self.messages_in += other.messages_in;
        self.payload_bytes_in += other.payload_bytes_in;
        self.bytes_in += other.bytes_in;
        self.messages_out += other.messages_out;
        self.payload_bytes_out += other.payload_bytes_out;
        self.bytes_out += other.bytes_out;
        self.deliveries += other.deliveries;
        add(&mut self.dropped, &other.dropped);
        self.overflows += other.overflows;
        add(&mut self.closes, &other.closes);
        self.publish_latency.merge(&other.publish_latency);
    }
}

/// The loop's counters and the publishes of this turn waiting for their writes.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) counters: Counters,
    /// When each publish of this turn happened (observed once the turn's bytes are
    /// written).
    published_at: Vec<Instant>,
}

impl Metrics {
    /// A publish happened at `at`.
    pub(crate) fn published(&mut self, at: Instant) {
        self.published_at.push(at);
    }

    /// Whether publishes wait for the end of the turn's writes.
    pub(crate) fn has_published(&self) -> bool {
        !self.published_at.is_empty()
    }

    /// The turn's writes ended at `now`.
    pub(crate) fn written(&mut self, now: Instant) {
        for at in self.published_at.drain(..) {
            self.counters
                .publish_latency
                .observe(now.saturating_duration_since(at));
        }
    }
}

/// Connections by what they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    /// Open WebSockets (and those closing).
    pub websocket: usize,
    /// Server-Sent Events streams.
    pub sse: usize,
    /// Long polls held.
    pub long_poll: usize,
    /// Sockets reading an HTTP request (a handshake, keep-alive) or draining.
    pub http: usize,
}

impl Connections {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Connections) {
        self.websocket += other.websocket;
        self.sse += other.sse;
        self.long_poll += other.long_poll;
        self.http += other.http;
    }
}

/// One loop's numbers at one moment: its counters and its gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoopStats {
    /// Counters since the loop started.
    pub counters: Counters,
    /// The connections now.
    pub connections: Connections,
    /// Bytes queued for all connections and not yet taken by the kernel.
    pub backlog_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_secs(2));
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[LATENCY_BUCKETS.len()], 1);
        assert_eq!(h.count, 3);
    }

    #[test]
    fn unknown_codes_and_statuses_count_as_other() {
        let mut c = Counters::default();
        c.closed(4000);
        c.closed(1000);
        c.refused(418);
        assert_eq!(c.closes[CLOSE_CODES.len() - 1], 1);
        assert_eq!(c.closes[0], 1);
        assert_eq!(c.handshakes_refused[REFUSAL_STATUSES.len() - 1], 1);
    }
}
