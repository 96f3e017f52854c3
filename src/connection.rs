//! One client connection: its socket, its protocol phase, its decoder and its outbox.

use crate::close::{self, CloseCode};
use crate::compress::Deflate;
use crate::frame::{FrameHeader, OpCode};
use crate::outbox::Outbox;
use crate::protocol::Decoder;
use mio::net::TcpStream;

/// Why a connection ended, kept from the moment it stops being open until the handler
/// has been told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The close code reported to `on_close`.
    pub code: CloseCode,
    /// The reason reported to `on_close`.
    pub reason: String,
}

/// Where a connection is in its life (RFC 6455 §4, §7).
#[derive(Debug)]
pub enum Phase {
    /// Reading the HTTP request head; holds the bytes so far if it spans reads.
    Handshaking(Vec<u8>),
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
    /// A Server-Sent Events stream: channel events are pushed until the peer goes.
    Stream,
    /// A long poll held until a message arrives or its deadline passes; then the
    /// connection reads requests again.
    Polling(Box<HeldPoll>),
}

/// A long poll waiting for a message.
#[derive(Debug)]
pub struct HeldPoll {
    /// The channel polled.
    pub channel: Box<str>,
    /// The last id the client has seen.
    pub since: u64,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
    /// Headers for the answer (e.g. CORS).
    pub headers: Vec<(String, String)>,
    /// Bytes of further (pipelined) requests that arrived meanwhile.
    pub pipelined: Vec<u8>,
}

/// A client connection in the server's slab.
#[derive(Debug)]
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// The serial number that, with the slab key, forms the [`ConnId`](crate::ConnId).
    pub serial: u32,
    /// The protocol phase.
    pub phase: Phase,
    /// The frame decoder (idle: no heap memory).
    pub decoder: Decoder,
    /// Bytes waiting for the socket (idle: no heap memory).
    pub outbox: Outbox,
    /// When the current phase times out, as a pool tick (0: it does not).
    pub deadline: u64,
    /// Whether WRITABLE interest is registered.
    pub write_interest: bool,
    /// Whether the connection is in the loop's list of connections to flush.
    pub dirty: bool,
    /// Whether channel messages reach this WebSocket as JSON envelopes (it negotiated
    /// [`ENVELOPE_PROTOCOL`](crate::format::ENVELOPE_PROTOCOL)) rather than raw payloads.
    pub envelope: bool,
    /// Whether a keepalive ping is waiting for its pong.
    pub awaiting_pong: bool,
    /// When the last keepalive ping was sent or answered (pool milliseconds, wrapping).
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
    pub fn new(stream: TcpStream, serial: u32) -> Self {
        Connection {
            stream,
            serial,
            phase: Phase::Handshaking(Vec::new()),
            decoder: Decoder::new(),
            outbox: Outbox::default(),
            deadline: 0,
            write_interest: false,
            dirty: false,
            envelope: false,
            awaiting_pong: false,
            keepalive_ms: 0,
            backlog_high: false,
            drops: 0,
            deflate: None,
        }
    }

    /// Whether messages may be sent and received.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// Whether the handler was told about this connection and not yet told it ended.
    pub fn is_announced(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Closing(_))
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
        crate::frame::encode_frame(opcode, payload, &mut frame);
        self.outbox.push_urgent(&frame);
    }

    /// Queues a Close frame with `code` and `reason` ([`close::NO_STATUS`]: empty body).
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
}
