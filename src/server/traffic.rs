//! What each connection sent and received ([`Traffic`]), counted only while the program
//! asks for it ([`Config::count_traffic`](crate::Config::count_traffic), which the
//! binary's `--access-log` turns on).
//!
//! # Why a table beside the slab, and why only on request
//!
//! An idle connection is the thing there are most of, and [`Connection`] is sized for it
//! (88 bytes today, with a unit test holding it to 96). Four `u64` counters in it would
//! cost every connection 32 bytes whether anyone reads them or not, and two would
//! already break the limit. So the counts live in a [`Meter`]: a `Vec` indexed by slab
//! slot, like the TLS sessions ([`Sessions`](crate::server::tls::Sessions)), which stays
//! empty (no allocation, 0 bytes per connection) unless counting is on. While it is on,
//! each slot costs `size_of::<Slot>()` = 40 bytes (four `u64`s, the serial number and a
//! flag), for as many slots as the slab has used at its peak.
//!
//! The counting sites are one add per syscall or per message queued, never per byte:
//!
//! - **bytes out**: where the outbox is written (`Core::flush`, and `Core::send`'s
//!   direct write of a large frame): the bytes the kernel took, one add per
//!   `write`/`writev`. With TLS these are the plaintext bytes handed to the rustls
//!   session (HTTP and WebSocket bytes; record overhead and the TLS handshake are not
//!   counted), as in the loop's `bytes_out` metric.
//! - **bytes in**: the bytes handed to the HTTP/WebSocket parser (`dispatch::feed`),
//!   one add per read; with TLS the plaintext, so that in and out count the same layer.
//! - **messages in**: whole WebSocket messages handed to the handler.
//! - **messages out**: data messages queued for the connection one by one
//!   (`Core::send`, `Core::deliver`: WebSocket frames or SSE events) and messages
//!   replayed from history (WebSocket joins with `since`, an SSE stream's resume),
//!   minus those a backlog policy dropped from the queue afterwards. Acknowledgements,
//!   control frames, HTTP answers (a long poll's answer included) and SSE heartbeats
//!   count in bytes only. A message still queued when a connection is lost is counted
//!   though it never left; the bytes are exact.
//!
//! With counting off, each site costs one bounds check of an empty `Vec`.
//!
//! Counting may be switched on and off while the server runs (SIGHUP): a connection
//! accepted while it was off has no counts ([`Core::traffic`] answers `None`), and the
//! table is freed once counting is off and no connection it followed is left.
//!
//! [`Connection`]: crate::server::connection::Connection
//! [`Core::traffic`]: crate::server::core::Core::traffic

use crate::server::connection::ConnId;

/// What one connection sent and received, as far as the server counted it: see
/// [`Context::traffic`](crate::Context::traffic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes read from the connection: its HTTP requests and WebSocket frames as they
    /// came (with TLS, after decryption).
    pub bytes_in: u64,
    /// Bytes written to the connection: HTTP answers, the `101` head, WebSocket frames
    /// (Close, Ping and Pong included), SSE events and heartbeats, as the kernel took
    /// them (with TLS, the plaintext handed to the TLS session).
    pub bytes_out: u64,
    /// Whole WebSocket messages received.
    pub messages_in: u64,
    /// Data messages sent: WebSocket messages or SSE events, live or replayed from
    /// history, not counting those a backlog policy dropped.
    pub messages_out: u64,
}

/// One slab slot's counts.
#[derive(Debug, Default)]
struct Slot {
    traffic: Traffic,
    /// The serial number of the connection counted here.
    serial: u32,
    /// Whether a connection accepted while counting was on holds this slot.
    live: bool,
}

/// The counts of a loop's connections, by slab slot; empty while counting is off.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    slots: Vec<Slot>,
    /// Slots held by a live connection.
    live: usize,
}

impl Meter {
    /// Starts counting for the connection just accepted into slot `key` (`on`: counting
    /// is on); with counting off, frees the table once nothing it followed is left.
    pub(crate) fn start(&mut self, key: usize, serial: u32, on: bool) {
        if !on {
            if self.live == 0 && !self.slots.is_empty() {
                self.slots = Vec::new();
            }
            return;
        }
        if key >= self.slots.len() {
            self.slots.resize_with(key + 1, Slot::default);
        }
        let slot = &mut self.slots[key];
        if !slot.live {
            self.live += 1;
        }
        *slot = Slot {
            traffic: Traffic::default(),
            serial,
            live: true,
        };
    }

    /// The connection in slot `key` was removed.
    pub(crate) fn end(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key).filter(|s| s.live) {
            slot.live = false;
            self.live -= 1;
        }
    }

    /// Whether any connection is counted (then ended connections are written before
    /// they are announced, so that their counts are final).
    pub(crate) fn is_counting(&self) -> bool {
        self.live > 0
    }

    /// `n` bytes were written to slot `key`.
    #[inline]
    pub(crate) fn bytes_out(&mut self, key: usize, n: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.traffic.bytes_out += n as u64;
        }
    }

    /// `n` bytes were read from slot `key`.
    #[inline]
    pub(crate) fn bytes_in(&mut self, key: usize, n: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.traffic.bytes_in += n as u64;
        }
    }

    /// A whole message arrived on slot `key`.
    #[inline]
    pub(crate) fn message_in(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.traffic.messages_in += 1;
        }
    }

    /// `n` data messages were queued for slot `key`.
    #[inline]
    pub(crate) fn messages_out(&mut self, key: usize, n: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.traffic.messages_out += n as u64;
        }
    }

    /// `n` messages queued for slot `key` were dropped by a backlog policy.
    #[inline]
    pub(crate) fn dropped(&mut self, key: usize, n: u32) {
        if let Some(slot) = self.slots.get_mut(key) {
            let t = &mut slot.traffic;
            t.messages_out = t.messages_out.saturating_sub(u64::from(n));
        }
    }

    /// The counts of `id`, if it is counted.
    pub(crate) fn get(&self, id: ConnId) -> Option<Traffic> {
        self.slots
            .get(id.key())
            .filter(|s| s.live && s.serial == id.serial())
            .map(|s| s.traffic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_costs_forty_bytes_while_counting_and_nothing_otherwise() {
        assert_eq!(std::mem::size_of::<Slot>(), 40);
        let mut meter = Meter::default();
        meter.start(3, 7, false);
        meter.bytes_out(3, 10);
        assert_eq!(meter.slots.capacity(), 0);
        assert_eq!(meter.get(ConnId::new(3, 7)), None);
    }

    #[test]
    fn counts_belong_to_the_connection_that_holds_the_slot() {
        let mut meter = Meter::default();
        meter.start(2, 5, true);
        meter.bytes_out(2, 100);
        meter.bytes_in(2, 40);
        meter.message_in(2);
        meter.messages_out(2, 3);
        meter.dropped(2, 1);
        let counted = Traffic {
            bytes_in: 40,
            bytes_out: 100,
            messages_in: 1,
            messages_out: 2,
        };
        assert_eq!(meter.get(ConnId::new(2, 5)), Some(counted));
        // Another serial in the same slot is another connection.
        assert_eq!(meter.get(ConnId::new(2, 6)), None);
        assert!(meter.is_counting());
        // Reused: the next connection starts from zero.
        meter.end(2);
        assert_eq!(meter.get(ConnId::new(2, 5)), None);
        meter.start(2, 6, true);
        assert_eq!(meter.get(ConnId::new(2, 6)), Some(Traffic::default()));
        // Counting off: the table goes once nothing it followed is left.
        meter.start(0, 9, false);
        assert!(!meter.slots.is_empty());
        meter.end(2);
        assert!(!meter.is_counting());
        meter.start(0, 10, false);
        assert_eq!(meter.slots.capacity(), 0);
    }
}
