//! One client connection: its socket, where it is in its life, its decoder and its
//! outbox; and [`ConnId`], the name the rest of the program knows it by.

use crate::server::codecs::Deflate;
use crate::server::outbox::Outbox;
use crate::server::reply::{Heartbeat, Response};
use crate::ws::close::{self, CloseCode};
use crate::ws::decoder::Decoder;
use crate::ws::frame::{FrameHeader, OpCode};
use mio::net::TcpStream;
use std::fmt;

/// A connection's id: its slot plus a serial number, so an id that outlived its
/// connection never reaches the next client in the same slot.
///
/// It converts to and from a `u64` ([`as_u64`](ConnId::as_u64), [`from_u64`](ConnId::from_u64)):
/// the number is stable for the connection's life, so a program may store it (in a map,
/// a database, another process) and address the connection with it later; once the
/// connection has ended, the number names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    pub(crate) fn new(key: usize, serial: u32) -> Self {
        ConnId((serial as u64) << 32 | key as u64)
    }

    pub(crate) fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    pub(crate) fn serial(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id as one number (stable for the connection's lifetime, for logs and maps).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The worker that owns the connection (0 with one worker; see
    /// [`Config::workers`](crate::Config::workers)): the low byte of the serial number.
    pub fn worker(self) -> usize {
        (self.serial() & 0xff) as usize
    }

    /// The id a number from [`as_u64`](ConnId::as_u64) stands for.
    pub fn from_u64(id: u64) -> Self {
        ConnId(id)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.key(), self.serial())
    }
}

/// Why a connection ended, kept from the moment it stops being open until the handler
/// has been told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The close code reported to `on_close`.
    pub code: CloseCode,
    /// The reason reported to `on_close`.
    pub reason: String,
}

impl Ending {
    /// An ending with `code` and `reason`.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Ending {
            code,
            reason: reason.into(),
        }
    }

    /// The connection was lost without a Close frame (1006).
    pub fn lost() -> Self {
        Ending::new(CloseCode::ABNORMAL, "")
    }
}

/// Where a connection is in its life (RFC 6455 §4, §7; HTTP/1.1 keep-alive).
#[derive(Debug)]
pub enum Phase {
    /// Reading HTTP requests; holds the bytes of an incomplete head if it spans reads.
    Reading(Vec<u8>),
    /// Upgraded: messages flow both ways.
    Open,
    /// The server sent a Close frame and waits for the peer's (§7.1.2).
    Closing(Box<Ending>),
    /// Nothing more to decode: flush the outbox, shut the write side, wait for the peer
    /// to close the TCP connection (or the close timeout), then go.
    Draining {
        /// Whether the write side was shut down.
        write_shut: bool,
        /// Whether the peer already ended its side: go as soon as the outbox is written.
        peer_done: bool,
    },
    /// Lost or done: removed at the end of the loop turn; nothing more happens on it.
    Dead,
    /// An HTTP response whose body stays open (e.g. Server-Sent Events): bytes are
    /// delivered to it until the peer goes.
    Streaming(Option<Box<Heartbeat>>),
    /// An HTTP request held open until it is answered or its deadline passes; then the
    /// connection reads requests again.
    Held(Box<Held>),
}

/// A held HTTP request.
#[derive(Debug)]
pub struct Held {
    /// The answer when the deadline passes first.
    pub fallback: Response,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// Bytes of further (pipelined) requests that arrived meanwhile.
    pub pipelined: Vec<u8>,
}

/// What ending a connection means for the one that owns it.
#[derive(Debug, PartialEq, Eq)]
pub enum Loss {
    /// It was an open WebSocket: report this ending to `on_close`.
    Close(Ending),
    /// It was a streamed or held HTTP exchange: report its end.
    Exchange,
    /// Nothing to report (reading requests, draining).
    Quiet,
    /// It was already dead.
    AlreadyDead,
}

impl Phase {
    /// Whether messages may be sent and received.
    pub fn is_open(&self) -> bool {
        matches!(self, Phase::Open)
    }

    /// Whether the handler was told about this connection and not yet told it ended.
    pub fn is_announced(&self) -> bool {
        matches!(self, Phase::Open | Phase::Closing(_))
    }

    /// Whether this is a streamed or held HTTP exchange.
    pub fn is_exchange(&self) -> bool {
        matches!(self, Phase::Streaming(_) | Phase::Held(_))
    }

    /// Moves to [`Phase::Draining`] because the conversation is over with `ending`;
    /// returns the ending to report: `ending` if the connection was open, the server's
    /// own if it had started the close (whatever the peer answered), else none.
    pub fn finish(&mut self, ending: Ending) -> Option<Ending> {
        let draining = Phase::Draining {
            write_shut: false,
            peer_done: false,
        };
        match std::mem::replace(self, draining) {
            Phase::Open => Some(ending),
            Phase::Closing(ours) => Some(*ours),
            _ => None,
        }
    }

    /// Moves to [`Phase::Dead`]; says what the loss means.
    pub fn lose(&mut self) -> Loss {
        match std::mem::replace(self, Phase::Dead) {
            Phase::Open => Loss::Close(Ending::lost()),
            Phase::Closing(ours) => Loss::Close(*ours),
            Phase::Dead => Loss::AlreadyDead,
            Phase::Streaming(_) | Phase::Held(_) => Loss::Exchange,
            Phase::Reading(_) | Phase::Draining { .. } => Loss::Quiet,
        }
    }
}

/// A client connection in the server's slab.
#[derive(Debug)]
pub struct Connection {
    /// The socket.
    pub socket: TcpStream,
    /// The serial number that, with the slab key, forms the [`ConnId`].
    pub serial: u32,
    /// Where the connection is in its life.
    pub phase: Phase,
    /// The frame decoder (idle: no heap memory).
    pub decoder: Decoder,
    /// Bytes waiting for the socket (idle: no heap memory).
    pub outbox: Outbox,
    /// When the current phase times out, as a timer tick (0: it does not).
    pub deadline: u64,
    /// Whether WRITABLE interest is registered.
    pub write_interest: bool,
    /// Whether the connection is in the loop's list of connections to flush.
    pub dirty: bool,
    /// The subprotocol agreed in the upgrade: its place in the configured list, plus
    /// one (0: none).
    pub protocol: u8,
    /// Whether a keepalive ping is waiting for its pong.
    pub awaiting_pong: bool,
    /// When the last keepalive ping was sent or answered (loop milliseconds, wrapping).
    pub keepalive_ms: u32,
    /// Whether the handler was told the queue passed the high-water mark (and has not
    /// yet been told it drained).
    pub backlog_high: bool,
    /// Messages a backlog policy dropped on this connection.
    pub drops: u32,
    /// permessage-deflate, if negotiated.
    pub deflate: Option<Box<Deflate>>,
}

impl Connection {
    /// A new connection that has not yet sent its request head.
    pub fn new(socket: TcpStream, serial: u32) -> Self {
        Connection {
            socket,
            serial,
            phase: Phase::Reading(Vec::new()),
            decoder: Decoder::new(),
            outbox: Outbox::default(),
            deadline: 0,
            write_interest: false,
            dirty: false,
            protocol: 0,
            awaiting_pong: false,
            keepalive_ms: 0,
            backlog_high: false,
            drops: 0,
            deflate: None,
        }
    }

    /// Whether messages may be sent and received.
    pub fn is_open(&self) -> bool {
        self.phase.is_open()
    }

    /// Whether the handler was told about this connection and not yet told it ended.
    pub fn is_announced(&self) -> bool {
        self.phase.is_announced()
    }

    /// Queues an unfragmented frame.
    pub fn queue_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let (header, len) = FrameHeader::encode(true, 0, opcode, payload.len());
        self.outbox.push_with(len + payload.len(), |out| {
            out.extend_from_slice(&header[..len]);
            out.extend_from_slice(payload);
        });
    }

    /// Queues a control frame ahead of the data messages a slow reader has queued
    /// (§5.4: control frames may be injected between the frames of other messages).
    pub fn queue_urgent(&mut self, opcode: OpCode, payload: &[u8]) {
        let mut frame = Vec::with_capacity(2 + payload.len());
        crate::ws::frame::encode_frame(opcode, payload, &mut frame);
        self.outbox.push_urgent(&frame);
    }

    /// Queues a Close frame with `code` and `reason` ([`CloseCode::NO_STATUS`]: empty body).
    pub fn queue_close(&mut self, code: CloseCode, reason: &str) {
        let mut body = Vec::with_capacity(2 + reason.len().min(123));
        close::encode_payload(code, reason, &mut body);
        self.queue_frame(OpCode::Close, &body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_is_small() {
        // The slab stores this inline; an idle connection owns no heap memory besides it.
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 96, "Connection is {size} bytes");
    }

    #[test]
    fn ids_round_trip_through_u64() {
        let id = ConnId::new(7, 3);
        assert_eq!(ConnId::from_u64(id.as_u64()), id);
        assert_eq!((id.key(), id.serial()), (7, 3));
        assert_eq!(id.to_string(), "#7.3");
    }

    #[test]
    fn the_low_byte_of_the_serial_names_the_worker() {
        assert_eq!(ConnId::new(7, 5 << 8).worker(), 0);
        assert_eq!(ConnId::new(7, 5 << 8 | 3).worker(), 3);
        assert_eq!(ConnId::new(7, u32::MAX).worker(), 255);
    }

    #[test]
    fn finishing_reports_the_peer_s_ending_or_our_own() {
        let mut open = Phase::Open;
        let peer = Ending::new(CloseCode::NORMAL, "bye");
        assert_eq!(open.finish(peer.clone()), Some(peer.clone()));
        assert!(matches!(open, Phase::Draining { .. }));

        // We closed first: our code is reported, whatever the peer answered.
        let ours = Ending::new(CloseCode::GOING_AWAY, "shutdown");
        let mut closing = Phase::Closing(Box::new(ours.clone()));
        assert_eq!(closing.finish(peer.clone()), Some(ours));

        // Never announced, or already finished: nothing to report.
        for mut phase in [Phase::Reading(Vec::new()), Phase::Dead] {
            assert_eq!(phase.finish(peer.clone()), None);
        }
        assert_eq!(closing.finish(peer), None);
    }

    #[test]
    fn losing_says_what_to_report() {
        assert_eq!(Phase::Open.lose(), Loss::Close(Ending::lost()));
        let ours = Ending::new(CloseCode::POLICY_VIOLATION, "backlog over limit");
        assert_eq!(
            Phase::Closing(Box::new(ours.clone())).lose(),
            Loss::Close(ours)
        );
        assert_eq!(Phase::Streaming(None).lose(), Loss::Exchange);
        assert_eq!(Phase::Reading(Vec::new()).lose(), Loss::Quiet);
        let mut dead = Phase::Open;
        dead.lose();
        assert_eq!(dead.lose(), Loss::AlreadyDead);
    }
}
