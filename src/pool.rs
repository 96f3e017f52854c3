//! The connections of one loop, and every operation on them that callbacks may trigger:
//! queueing, broadcasting, closing, flushing, timers and removal. Nothing here calls the
//! handler; ended connections are listed for the loop to announce.

use crate::backlog::{self, Verdict};
use crate::channel::Channels;
use crate::close::{self, CloseCode};
use crate::compress::Codecs;
use crate::config::Config;
use crate::connection::{Connection, Ending, Phase};
use crate::frame::{encode_frame, FrameHeader, OpCode};
use crate::handler::Backlog;
use crate::handler::{ConnId, Message, Response};
use crate::http;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Broadcast frames up to this size are copied into each queue (and coalesce with other
/// writes); larger ones are shared.
const SHARE_ABOVE: usize = 1024;

/// Frames this large are written straight from the sender's buffer when the target's
/// outbox is empty; smaller ones are queued so that they coalesce into one write.
const DIRECT_ABOVE: usize = 4096;

/// The connections and their pending work.
pub struct Pool {
    pub(crate) conns: Slab<Connection>,
    pub(crate) config: Config,
    pub(crate) channels: Channels,
    /// permessage-deflate codecs shared by the loop's connections.
    pub(crate) codecs: Codecs,
    /// Connections whose long poll was answered with pipelined requests waiting.
    pub(crate) refeed: Vec<usize>,
    registry: Registry,
    pub(crate) dirty: Vec<usize>,
    /// Connections that ended and that the handler has not been told about yet.
    pub(crate) ended: Vec<(ConnId, Ending)>,
    /// Event streams (SSE) that ended and that the handler has not been told about yet.
    pub(crate) streams_ended: Vec<ConnId>,
    reap: Vec<usize>,
    /// (deadline tick, slot, serial); an entry is current while the connection in the
    /// slot has that serial and that deadline.
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    pub(crate) epoch: Instant,
    /// The keepalive sweep's place in the slab, and when it runs next.
    pub(crate) sweep_cursor: usize,
    pub(crate) next_sweep: Instant,
    pub(crate) last_sweep: Instant,
    next_serial: u32,
    open: usize,
    overflows: u64,
    pub(crate) dropped: u64,
    /// Backlog notifications the handler has not been given yet.
    pub(crate) backlog_events: Vec<(ConnId, Backlog)>,
}

impl Pool {
    /// An empty pool registering sockets with `registry`.
    pub fn new(registry: Registry, config: Config) -> Self {
        let now = config.clock.now();
        Pool {
            conns: Slab::new(),
            channels: Channels::with_history_bytes(config.history, config.history_bytes)
                .with_max_channels(config.max_channels),
            codecs: Codecs::new(&config.deflate),
            refeed: Vec::new(),
            config,
            registry,
            dirty: Vec::new(),
            ended: Vec::new(),
            streams_ended: Vec::new(),
            reap: Vec::new(),
            timers: BinaryHeap::new(),
            epoch: now,
            sweep_cursor: 0,
            next_sweep: now,
            last_sweep: now,
            next_serial: 0,
            open: 0,
            overflows: 0,
            dropped: 0,
            backlog_events: Vec::new(),
        }
    }

    /// Adds an accepted socket; it has `handshake_timeout` to send its request head.
    pub fn insert(
        &mut self,
        mut stream: mio::net::TcpStream,
        now: Instant,
    ) -> std::io::Result<ConnId> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.registry
            .register(&mut stream, Token(key), Interest::READABLE)?;
        self.next_serial = self.next_serial.wrapping_add(1);
        entry.insert(Connection::new(stream, self.next_serial));
        self.set_deadline(key, now + self.config.handshake_timeout);
        Ok(ConnId::new(key, self.next_serial))
    }

    /// The id of the connection in slot `key`.
    pub fn id(&self, key: usize) -> ConnId {
        ConnId::new(key, self.conns[key].serial)
    }

    /// The connection `id` names, if it still exists.
    pub(crate) fn get(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.conns
            .get_mut(id.key())
            .filter(|c| c.serial == id.serial())
    }

    /// The number of open connections.
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// The ids of all open connections.
    pub fn open_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(k, c)| ConnId::new(k, c.serial))
            .collect()
    }

    /// The peer address of `id`.
    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        let conn = self
            .conns
            .get(id.key())
            .filter(|c| c.serial == id.serial())?;
        conn.stream.peer_addr().ok()
    }

    /// Bytes queued for `id` and not yet taken by the kernel.
    pub fn buffered(&self, id: ConnId) -> Option<usize> {
        let conn = self
            .conns
            .get(id.key())
            .filter(|c| c.serial == id.serial())?;
        Some(conn.outbox.len())
    }

    /// Marks slot `key` as having bytes to flush at the end of the turn.
    pub fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Queues `msg` for `id` if it is open.
    pub fn send(&mut self, id: ConnId, msg: Message<'_>) -> bool {
        let (limit, policy) = (self.config.max_backlog, self.config.backlog_policy);
        let Some(conn) = self.get(id).filter(|c| c.is_open()) else {
            return false;
        };
        let (verdict, dropped) = backlog::admit(conn, DIRECT, policy, limit);
        self.dropped += u64::from(dropped);
        match verdict {
            Verdict::Queue => {}
            Verdict::Skip => return false,
            Verdict::Close => {
                self.overflow(id.key());
                return false;
            }
        }
        let conn = &mut self.conns[id.key()];
        let payload = msg.as_bytes();
        if let Some(deflate) = conn
            .deflate
            .as_deref_mut()
            .filter(|d| self.codecs.compresses(d, payload.len()))
        {
            let mut frame = Vec::new();
            self.codecs
                .frame(deflate, opcode_of(&msg), payload, &mut frame);
            if conn.outbox.is_congested(backlog::congestion_point(limit)) {
                conn.outbox.push_message_vec(DIRECT, frame);
            } else {
                conn.outbox.push_vec(frame);
            }
            self.mark_dirty(id.key());
            return true;
        }
        if conn.outbox.is_congested(backlog::congestion_point(limit)) {
            let mut frame = Vec::with_capacity(payload.len() + 10);
            encode_frame(opcode_of(&msg), payload, &mut frame);
            conn.outbox.push_message_vec(DIRECT, frame);
            self.mark_dirty(id.key());
            return true;
        }
        if payload.len() < DIRECT_ABOVE || !conn.outbox.is_empty() {
            conn.queue_frame(opcode_of(&msg), payload);
            self.mark_dirty(id.key());
            return true;
        }
        // A large frame to an idle socket: let the kernel take it from the caller's
        // buffer now rather than copying it into the outbox first.
        let (header, len) = FrameHeader::encode(true, 0, opcode_of(&msg), payload.len());
        match conn
            .outbox
            .send_now(&mut conn.stream, &[&header[..len], payload])
        {
            Ok(()) if conn.outbox.is_empty() => {}
            Ok(()) => self.mark_dirty(id.key()),
            Err(e) => {
                log::debug!("{id} write failed: {e}");
                self.drop_conn(id.key());
            }
        }
        true
    }

    /// Queues `msg` for every open connection but `except`; the frame is encoded once.
    pub fn broadcast(&mut self, msg: Message<'_>, except: Option<ConnId>) -> usize {
        let at = backlog::congestion_point(self.config.max_backlog);
        let mut frame = Encoded::websocket(opcode_of(&msg), msg.as_bytes(), at);
        let except = except.map(|id| (id.key(), id.serial()));
        let (limit, policy) = (self.config.max_backlog, self.config.backlog_policy);
        let mut count = 0;
        let mut over = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if !conn.is_open() || except == Some((key, conn.serial)) {
                continue;
            }
            let (verdict, dropped) = backlog::admit(conn, DIRECT, policy, limit);
            self.dropped += u64::from(dropped);
            match verdict {
                Verdict::Queue => {}
                Verdict::Skip => continue,
                Verdict::Close => {
                    over.push(key);
                    continue;
                }
            }
            frame.queue(conn, DIRECT, &mut self.codecs);
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
            count += 1;
        }
        for key in over {
            self.overflow(key);
        }
        count
    }

    /// Starts a server-initiated close of `id` (§7.1.2): send Close, wait for the peer's.
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.start_close(id, code, reason, false)
    }

    /// [`close`](Self::close), with the Close frame queued after what is queued, or
    /// (`urgent`) ahead of the droppable messages.
    fn start_close(&mut self, id: ConnId, code: CloseCode, reason: &str, urgent: bool) -> bool {
        let close_timeout = self.config.close_timeout;
        let now = self.now();
        let Some(conn) = self.get(id).filter(|c| c.is_open()) else {
            return false;
        };
        let code = if close::is_sendable(code) {
            code
        } else {
            close::NORMAL
        };
        let reason = close::truncate_reason(reason);
        if urgent {
            let mut body = Vec::with_capacity(2 + reason.len());
            close::encode_payload(code, reason, &mut body);
            conn.queue_urgent(OpCode::Close, &body);
        } else {
            conn.queue_close(code, reason);
        }
        conn.phase = Phase::Closing(Box::new(Ending {
            code,
            reason: reason.to_owned(),
        }));
        self.set_deadline(id.key(), now + close_timeout);
        self.mark_dirty(id.key());
        true
    }

    /// Marks `key` open (the upgrade succeeded).
    pub fn opened(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        conn.phase = Phase::Open;
        conn.deadline = 0;
        self.open += 1;
        let now = self.now();
        self.keepalive_start(key, now);
    }

    /// Answers `key`'s request with an HTTP error and drains. An upgrade accepted a
    /// moment ago (its 101 still queued) is taken back without telling the handler.
    pub fn http_error(&mut self, key: usize, status: u16, body: &str) {
        let conn = &mut self.conns[key];
        if conn.is_announced() {
            self.open -= 1;
        }
        conn.outbox.clear();
        conn.outbox
            .push_with(160 + body.len(), |out| http::write_error(status, body, out));
        self.drain(key);
    }

    /// Queues `response` to `key`'s request (without the body for a HEAD request); keeps
    /// the connection for the next request if `keep_alive`, else drains.
    pub fn http_reply(
        &mut self,
        key: usize,
        response: &Response,
        head_only: bool,
        keep_alive: bool,
    ) {
        let idle_timeout = self.config.handshake_timeout;
        let conn = &mut self.conns[key];
        conn.outbox.push_with(160 + response.body.len(), |out| {
            // A HEAD answer is the GET answer without its body (RFC 9110 §9.3.2).
            let len = Some(response.body.len());
            http::write_head(response.status, &response.headers, len, keep_alive, out);
            if !head_only {
                out.extend_from_slice(&response.body);
            }
        });
        if keep_alive {
            self.set_deadline(key, self.now() + idle_timeout);
            self.mark_dirty(key);
        } else {
            self.drain(key);
        }
    }

    /// Flush, shut the write side, wait for the peer's FIN (or the close timeout), go.
    pub(crate) fn drain(&mut self, key: usize) {
        let close_timeout = self.config.close_timeout;
        self.conns[key].phase = Phase::Draining {
            write_shut: false,
            peer_done: false,
        };
        self.set_deadline(key, self.now() + close_timeout);
        self.mark_dirty(key);
    }

    /// Ends the conversation on `key`: records the ending for the handler if it was
    /// announced, then drains (flush, shut down, wait for the peer's FIN).
    pub fn finish(&mut self, key: usize, ending: Ending) {
        let close_timeout = self.config.close_timeout;
        let conn = &mut self.conns[key];
        let ending = match std::mem::replace(
            &mut conn.phase,
            Phase::Draining {
                write_shut: false,
                peer_done: false,
            },
        ) {
            Phase::Open => Some(ending),
            // We closed first: report our own code, whatever the peer answered.
            Phase::Closing(ours) => Some(*ours),
            _ => None,
        };
        if let Some(ending) = ending {
            self.open -= 1;
            self.ended.push((ConnId::new(key, conn.serial), ending));
        }
        self.set_deadline(key, self.now() + close_timeout);
        self.mark_dirty(key);
    }

    /// Removes `key` at the end of the turn, announcing it as lost (1006) if it was open.
    pub fn drop_conn(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let ending = match std::mem::replace(&mut conn.phase, Phase::Dead) {
            Phase::Open => Ending {
                code: close::ABNORMAL,
                reason: String::new(),
            },
            Phase::Closing(ours) => *ours,
            Phase::Dead => return,
            other => {
                if matches!(other, Phase::Stream) {
                    self.streams_ended.push(ConnId::new(key, conn.serial));
                }
                self.reap.push(key);
                return;
            }
        };
        self.open -= 1;
        self.ended.push((ConnId::new(key, conn.serial), ending));
        self.reap.push(key);
    }

    /// The peer ended its side of `key` (end of stream). A connection that still owes it
    /// an answer (an HTTP response, a Close echo) writes it first; any other goes now.
    pub fn peer_done(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.outbox.is_empty() {
            return self.drop_conn(key);
        }
        match &mut conn.phase {
            Phase::Draining { peer_done, .. } => *peer_done = true,
            // Lost without a Close (1006), but what was queued for it (its 101, echoes)
            // still goes out: a half-closed peer may be reading.
            Phase::Open | Phase::Closing(_) => {
                self.finish(
                    key,
                    Ending {
                        code: close::ABNORMAL,
                        reason: String::new(),
                    },
                );
                if let Phase::Draining { peer_done, .. } = &mut self.conns[key].phase {
                    *peer_done = true;
                }
            }
            // An HTTP answer to a request sent just before the half-close.
            Phase::Handshaking(_) => {
                self.drain(key);
                if let Phase::Draining { peer_done, .. } = &mut self.conns[key].phase {
                    *peer_done = true;
                }
            }
            _ => return self.drop_conn(key),
        }
        self.flush(key);
    }

    /// Writes what every dirty connection has queued.
    pub fn flush_dirty(&mut self) {
        while let Some(key) = self.dirty.pop() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.dirty = false;
                self.flush(key);
            }
        }
    }

    /// Writes `key`'s outbox; asks for WRITABLE only while bytes remain.
    pub fn flush(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if matches!(conn.phase, Phase::Dead) {
            return;
        }
        match conn.outbox.write_to(&mut conn.stream) {
            Ok(true) => {
                if std::mem::take(&mut conn.backlog_high) {
                    self.backlog_events
                        .push((ConnId::new(key, conn.serial), Backlog::Drained));
                }
                if conn.write_interest {
                    conn.write_interest = false;
                    let _ =
                        self.registry
                            .reregister(&mut conn.stream, Token(key), Interest::READABLE);
                }
                if let Phase::Draining {
                    write_shut,
                    peer_done,
                } = &mut conn.phase
                {
                    if *peer_done {
                        return self.drop_conn(key);
                    }
                    if !*write_shut {
                        *write_shut = true;
                        let _ = conn.stream.shutdown(Shutdown::Write);
                    }
                }
            }
            Ok(false) => {
                let queued = conn.outbox.len();
                if !conn.backlog_high && queued > self.config.max_backlog / 2 && conn.is_announced()
                {
                    conn.backlog_high = true;
                    self.backlog_events
                        .push((ConnId::new(key, conn.serial), Backlog::High(queued)));
                }
                if !conn.write_interest {
                    conn.write_interest = true;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    let _ = self
                        .registry
                        .reregister(&mut conn.stream, Token(key), interest);
                }
            }
            Err(e) => {
                log::debug!("{} write failed: {e}", self.id(key));
                self.drop_conn(key);
            }
        }
    }

    /// A deadline as whole milliseconds since the pool started, rounded up, plus one
    /// (0 means "none"): 8 bytes in a connection and 16 in a timer entry, not 16 and 32.
    fn tick(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        since.as_millis() as u64 + u64::from(!since.subsec_nanos().is_multiple_of(1_000_000)) + 1
    }

    /// `key`'s peer reads slower than it is sent to: a message found its queue already
    /// over `max_backlog` under the `close` policy (so a queue holds at most the limit
    /// plus one message). A WebSocket is closed with 1008: the Close goes ahead of the
    /// queued messages, which are dropped (the client learns why and can resume from
    /// history), and the close timeout bounds the wait; an event stream is dropped
    /// (EventSource reconnects with `Last-Event-ID` and resumes from history).
    pub(crate) fn overflow(&mut self, key: usize) {
        let id = self.id(key);
        let conn = &self.conns[key];
        let peer = conn
            .stream
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        log::warn!(
            "{id} ({peer}): {} bytes queued, over the {}-byte backlog limit; closing",
            conn.outbox.len(),
            self.config.max_backlog
        );
        self.overflows += 1;
        match conn.phase {
            Phase::Open => {
                let conn = &mut self.conns[key];
                let dropped = conn.outbox.drop_all_messages();
                conn.drops = conn.drops.saturating_add(dropped);
                self.dropped += u64::from(dropped);
                self.start_close(id, close::POLICY_VIOLATION, "backlog over limit", true);
            }
            _ => self.drop_conn(key),
        }
    }

    /// Messages backlog policies dropped since the server started (all connections).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Messages backlog policies dropped on `id`.
    pub fn dropped_on(&self, id: ConnId) -> Option<u64> {
        let conn = self
            .conns
            .get(id.key())
            .filter(|c| c.serial == id.serial())?;
        Some(u64::from(conn.drops))
    }

    /// The time now, from the configured clock.
    pub(crate) fn now(&self) -> Instant {
        self.config.clock.now()
    }

    /// How many connections were closed for a full queue since the server started.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Sets `key`'s deadline.
    pub fn set_deadline(&mut self, key: usize, at: Instant) {
        let tick = self.tick(at);
        let conn = &mut self.conns[key];
        conn.deadline = tick;
        self.timers.push(Reverse((tick, key as u32, conn.serial)));
    }

    /// The earliest pending deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let Reverse((tick, _, _)) = self.timers.peek()?;
        Some(self.epoch + Duration::from_millis(tick - 1))
    }

    /// Pops the slots whose current deadline is at or before `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<usize> {
        let now = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        let mut due = Vec::new();
        while let Some(Reverse((tick, key, serial))) = self.timers.peek().copied() {
            if tick > now {
                break;
            }
            self.timers.pop();
            let key = key as usize;
            let current = self
                .conns
                .get(key)
                .filter(|c| c.serial == serial && c.deadline == tick);
            if current.is_some() {
                due.push(key);
            }
        }
        due
    }

    /// Removes the connections marked for removal.
    pub fn reap(&mut self) {
        while let Some(key) = self.reap.pop() {
            if self.conns.contains(key) {
                let mut conn = self.conns.remove(key);
                self.channels
                    .leave_all(ConnId::new(key, conn.serial).as_u64());
                let _ = self.registry.deregister(&mut conn.stream);
            }
        }
    }

    /// Whether any connection has bytes waiting to be flushed this turn.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Whether any connection is left.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}

/// The stream tag of messages sent directly or broadcast (not through a channel).
pub(crate) const DIRECT: u32 = 0;

/// One encoding of a message: the bytes, and a shared copy once one is needed.
struct Form {
    bytes: Vec<u8>,
    shared: Option<Arc<[u8]>>,
}

impl Form {
    fn new(bytes: Vec<u8>) -> Self {
        let shared = (bytes.len() > SHARE_ABOVE).then(|| Arc::from(&bytes[..]));
        Form { bytes, shared }
    }

    /// Queues these bytes for `conn`: large ones shared, small ones copied (where they
    /// coalesce), except into congested queues, which get a shared copy made on first need.
    fn queue(&mut self, conn: &mut Connection, stream: u32, congested_at: usize) {
        if conn.outbox.is_congested(congested_at) && self.shared.is_none() {
            self.shared = Some(Arc::from(&self.bytes[..]));
        }
        conn.outbox
            .push_message(stream, &self.bytes, self.shared.as_ref(), congested_at);
    }
}

/// A message encoded once for many recipients; for WebSocket messages, also compressed
/// once per window size for the recipients that negotiated permessage-deflate without
/// server context takeover (and per recipient for those that keep a context).
pub(crate) struct Encoded<'a> {
    plain: Form,
    /// The opcode and payload to compress, for WebSocket messages.
    source: Option<(OpCode, &'a [u8])>,
    /// Compressed frames by window size.
    deflated: Vec<(u8, Form)>,
    congested_at: usize,
}

impl<'a> Encoded<'a> {
    /// Wraps an encoded frame or SSE event, never compressed; queues of `congested_at`
    /// bytes or more keep it as a droppable message.
    pub(crate) fn new(bytes: Vec<u8>, congested_at: usize) -> Self {
        Encoded {
            plain: Form::new(bytes),
            source: None,
            deflated: Vec::new(),
            congested_at,
        }
    }

    /// Encodes a WebSocket message of `opcode` carrying `payload`, which recipients
    /// that negotiated permessage-deflate get compressed.
    pub(crate) fn websocket(opcode: OpCode, payload: &'a [u8], congested_at: usize) -> Self {
        let mut frame = Vec::new();
        encode_frame(opcode, payload, &mut frame);
        Encoded {
            source: Some((opcode, payload)),
            ..Encoded::new(frame, congested_at)
        }
    }

    /// Queues the message for `conn` as a message of `stream`.
    pub(crate) fn queue(&mut self, conn: &mut Connection, stream: u32, codecs: &mut Codecs) {
        let at = self.congested_at;
        let Some((opcode, payload)) = self.source else {
            return self.plain.queue(conn, stream, at);
        };
        let Some(deflate) = conn
            .deflate
            .as_deref_mut()
            .filter(|d| codecs.compresses(d, payload.len()))
        else {
            return self.plain.queue(conn, stream, at);
        };
        let Some(bits) = Codecs::share_key(deflate) else {
            // The connection keeps a compression context: its own bytes.
            let mut frame = Vec::new();
            codecs.frame(deflate, opcode, payload, &mut frame);
            return if conn.outbox.is_congested(at) {
                conn.outbox.push_message_vec(stream, frame)
            } else {
                conn.outbox.push_vec(frame)
            };
        };
        let form = match self.deflated.iter().position(|(b, _)| *b == bits) {
            Some(i) => &mut self.deflated[i].1,
            None => {
                let mut frame = Vec::new();
                codecs.frame(deflate, opcode, payload, &mut frame);
                self.deflated.push((bits, Form::new(frame)));
                &mut self.deflated.last_mut().expect("just pushed").1
            }
        };
        form.queue(conn, stream, at);
    }
}

/// The data opcode for a message.
pub(crate) fn opcode_of(msg: &Message<'_>) -> OpCode {
    if msg.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    }
}
