//! The connections of one loop and every operation on them that callbacks may trigger:
//! queueing, broadcasting, delivering encoded bytes, closing, answering HTTP (at once,
//! streamed or held), flushing, timers and removal. Nothing here calls the handler:
//! what ended is listed for the loop to announce.

use crate::server::backlog::{self, Backlog, Policy, Tag, Verdict};
use crate::server::codecs::Codecs;
use crate::server::connection::{ConnId, Connection, Ending, Loss, Phase};
use crate::server::encoded::{opcode_of, Encoded};
use crate::server::message::Message;
use crate::server::metrics::{policy_index, Connections, LoopStats, Metrics};
use crate::server::outbox::TurnBuffer;

use crate::server::settings::Settings;
use crate::server::timers::Timers;
use crate::server::tls::{Sessions, TlsSink};
use crate::server::traffic::{Meter, Traffic};
use crate::ws::close::{self, CloseCode};
use crate::ws::frame::{encode_frame, FrameHeader, OpCode};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

/// Frames this large are written straight from the sender's buffer when the target's
/// outbox is empty; smaller ones are queued so that they coalesce into one write.
const DIRECT_ABOVE: usize = 4096;

/// Serial numbers grow by this much: their low byte is the worker's number.
const SERIAL_STEP: u32 = 1 << 8;

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued.
    Queued,
    /// Dropped by the backlog policy (counted).
    Dropped,
    /// The backlog was full under [`Policy::Close`]: the connection is being closed.
    Overflowed,
    /// No such open WebSocket or stream.
    Gone,
}

/// The connections and their pending work.
pub struct Core {
    pub(crate) conns: Slab<Connection>,
    pub(crate) settings: Settings,
    /// permessage-deflate codecs shared by the loop's connections.
    pub(crate) codecs: Codecs,
    /// This turn's small broadcast frames, written once for all their recipients.
    turn: TurnBuffer,
    registry: Registry,
    dirty: Vec<usize>,
    /// Connections that ended and that the handler has not been told about yet.
    pub(crate) ended: Vec<(ConnId, Ending)>,
    /// Streamed or held HTTP exchanges that ended without an answer from the program.
    pub(crate) exchanges_ended: Vec<ConnId>,
    /// Connections whose held request was answered with pipelined requests waiting.
    pub(crate) refeed: Vec<usize>,
    /// Backlog notifications the handler has not been given yet.
    pub(crate) backlog_events: Vec<(ConnId, Backlog)>,
    reap: Vec<usize>,
    pub(crate) timers: Timers,
    /// The keepalive sweep's place in the slab, and when it runs next.
    pub(crate) sweep_cursor: usize,
    pub(crate) next_sweep: Instant,
    pub(crate) last_sweep: Instant,
    next_serial: u32,
    /// How many connections are open WebSockets.
    pub(crate) open: usize,
    /// A graceful shutdown was asked for; the loop starts it at the end of the events.
    pub(crate) stop_requested: bool,
    /// What the loop counts (plain integers; read when stats are asked for).
    pub(crate) metrics: Metrics,
    /// The connections' TLS sessions, by slot (empty on a plain listener).
    pub(crate) tls: Sessions,
    tls_failures: u64,
    /// Each connection's traffic, while counting is on (`Settings::count_traffic`).
    pub(crate) meter: Meter,
}

impl Core {
    /// An empty core registering sockets with `registry`.
    pub(crate) fn new(registry: Registry, settings: Settings) -> Self {
        let now = settings.clock.now();
        let first_serial = u32::from(settings.worker);
        Core {
            conns: Slab::new(),
            codecs: Codecs::new(&settings.deflate),
            turn: TurnBuffer::default(),
            settings,
            registry,
            dirty: Vec::new(),
            ended: Vec::new(),
            exchanges_ended: Vec::new(),
            refeed: Vec::new(),
            backlog_events: Vec::new(),
            reap: Vec::new(),
            timers: Timers::new(now),
            sweep_cursor: 0,
            next_sweep: now,
            last_sweep: now,
            next_serial: first_serial,
            open: 0,
            stop_requested: false,
            metrics: Metrics::default(),
            tls: Sessions::default(),
            tls_failures: 0,
            meter: Meter::default(),
        }
    }

    /// Adds an accepted socket (with a TLS session on a TLS listener); it has
    /// `handshake_timeout` to finish its TLS handshake and send its request head.
    pub(crate) fn insert(
        &mut self,
        mut socket: mio::net::TcpStream,
        now: Instant,
    ) -> std::io::Result<ConnId> {
        let tls = match &self.settings.tls {
            Some(tls) => Some(Box::new(tls.session().map_err(std::io::Error::other)?)),
            None => None,
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.registry
            .register(&mut socket, Token(key), Interest::READABLE)?;
        // The low byte is the worker's number, so a `ConnId` names its worker.
        self.next_serial = self.next_serial.wrapping_add(SERIAL_STEP);
        entry.insert(Connection::new(socket, self.next_serial));
        self.meter
            .start(key, self.next_serial, self.settings.count_traffic);
        if let Some(session) = tls {
            self.tls.insert(key, session);
        }
        self.set_deadline(key, now + self.settings.handshake_timeout);
        Ok(ConnId::new(key, self.next_serial))
    }

    /// The id of the connection in slot `key`.
    pub(crate) fn id(&self, key: usize) -> ConnId {
        ConnId::new(key, self.conns[key].serial)
    }

    /// The connection `id` names, if it still exists.
    pub(crate) fn get(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.conns
            .get_mut(id.key())
            .filter(|c| c.serial == id.serial())
    }

    fn get_ref(&self, id: ConnId) -> Option<&Connection> {
        self.conns.get(id.key()).filter(|c| c.serial == id.serial())
    }

    /// The number of open WebSocket connections.
    pub(crate) fn open_count(&self) -> usize {
        self.open
    }

    /// The ids of all open WebSocket connections.
    pub(crate) fn open_ids(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(k, c)| ConnId::new(k, c.serial))
            .collect()
    }

    /// Whether `id` is an open WebSocket.
    pub(crate) fn is_open(&self, id: ConnId) -> bool {
        self.get_ref(id).is_some_and(Connection::is_open)
    }

    /// The peer address of `id`.
    pub(crate) fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.get_ref(id)?.socket.peer_addr().ok()
    }

    /// The subprotocol `id` agreed to in its upgrade.
    pub(crate) fn protocol(&self, id: ConnId) -> Option<&str> {
        let index = usize::from(self.get_ref(id)?.protocol.checked_sub(1)?);
        self.settings.protocols.get(index).map(String::as_str)
    }

    /// Bytes queued for `id` and not yet taken by the kernel.
    pub(crate) fn buffered(&self, id: ConnId) -> Option<usize> {
        Some(self.get_ref(id)?.outbox.len())
    }

    /// Where a queue becomes congested (its messages are then kept one by one).
    pub(crate) fn congestion_point(&self) -> usize {
        backlog::congestion_point(self.settings.max_backlog)
    }

    /// Marks slot `key` as having bytes to flush at the end of the turn.
    pub(crate) fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Applies the backlog policy to a message for `key`; `false` if it must not be
    /// queued (dropped, or the connection is being closed for overflow).
    fn admit(&mut self, key: usize, tag: Tag, policy: Policy) -> Delivery {
        let limit = self.settings.max_backlog;
        let conn = &mut self.conns[key];
        let (verdict, dropped) =
            backlog::admit(&mut conn.outbox, &mut conn.drops, tag, policy, limit);
        self.metrics.counters.dropped[policy_index(policy)] += u64::from(dropped);
        // A skipped message was never queued (nor counted as sent); the others were.
        let from_queue = dropped - u32::from(verdict == Verdict::Skip);
        self.meter.dropped(key, from_queue);
        match verdict {
            Verdict::Queue => Delivery::Queued,
            Verdict::Skip => Delivery::Dropped,
            Verdict::Close => {
                self.overflow(key);
                Delivery::Overflowed
            }
        }
    }

    /// Queues `msg` for `id` if it is an open WebSocket.
    pub(crate) fn send(&mut self, id: ConnId, msg: Message<'_>) -> bool {
        if !self.is_open(id) {
            return false;
        }
        let key = id.key();
        if self.admit(key, Tag::DIRECT, self.settings.backlog_policy) != Delivery::Queued {
            return false;
        }
        let congested_at = self.congestion_point();
        let conn = &mut self.conns[key];
        let payload = msg.as_bytes();
        let counters = &mut self.metrics.counters;
        counters.messages_out += 1;
        counters.payload_bytes_out += payload.len() as u64;
        self.meter.messages_out(key, 1);
        if let Some(deflate) = conn
            .deflate
            .as_deref_mut()
            .filter(|d| self.codecs.compresses(d, payload.len()))
        {
            let mut frame = Vec::new();
            self.codecs
                .frame(deflate, opcode_of(&msg), payload, &mut frame);
            if conn.outbox.is_congested(congested_at) {
                conn.outbox.push_message_vec(Tag::DIRECT.0, frame);
            } else {
                conn.outbox.push_vec(frame);
            }
            self.mark_dirty(key);
            return true;
        }
        if conn.outbox.is_congested(congested_at) {
            let mut frame = Vec::with_capacity(payload.len() + 10);
            encode_frame(opcode_of(&msg), payload, &mut frame);
            conn.outbox.push_message_vec(Tag::DIRECT.0, frame);
            self.mark_dirty(key);
            return true;
        }
        if payload.len() < DIRECT_ABOVE || !conn.outbox.is_empty() {
            conn.queue_frame(opcode_of(&msg), payload);
            self.mark_dirty(key);
            return true;
        }
        // A large frame to an idle socket: let the kernel take it from the caller's
        // buffer now rather than copying it into the outbox first.
        let (header, len) = FrameHeader::encode(true, 0, opcode_of(&msg), payload.len());
        let parts = [&header[..len], payload];
        let sent = match self.tls.get_mut(key) {
            None => conn.outbox.send_now(&mut conn.socket, &parts),
            Some(tls) => {
                let socket = &mut conn.socket;
                conn.outbox.send_now(&mut TlsSink { tls, socket }, &parts)
            }
        };
        // Records rustls could not write yet count as queued bytes.
        let pending = self.tls.wants_write(key);
        match sent {
            Ok(written) if conn.outbox.is_empty() && !pending => {
                self.metrics.counters.bytes_out += written as u64;
                self.meter.bytes_out(key, written);
            }
            Ok(written) => {
                self.metrics.counters.bytes_out += written as u64;
                self.meter.bytes_out(key, written);
                self.mark_dirty(key);
            }
            Err(e) => {
                log::debug!("{id} write failed: {e}");
                self.drop_conn(key);
            }
        }
        true
    }

    /// Delivers `message` to `id`, an open WebSocket (a frame) or an HTTP stream (bytes
    /// of its body), as a message tagged `tag` under the backlog `policy`.
    pub(crate) fn deliver(
        &mut self,
        id: ConnId,
        message: &mut Encoded<'_>,
        tag: Tag,
        policy: Policy,
    ) -> Delivery {
        match self.get_ref(id).map(|c| &c.phase) {
            Some(Phase::Open | Phase::Streaming(_)) => {
                self.queue_encoded(id.key(), message, tag, policy)
            }
            _ => Delivery::Gone,
        }
    }

    fn queue_encoded(
        &mut self,
        key: usize,
        message: &mut Encoded<'_>,
        tag: Tag,
        policy: Policy,
    ) -> Delivery {
        let verdict = self.admit(key, tag, policy);
        if verdict == Delivery::Queued {
            let counters = &mut self.metrics.counters;
            counters.deliveries += 1;
            counters.messages_out += 1;
            counters.payload_bytes_out += message.payload_len() as u64;
            self.meter.messages_out(key, 1);
            message.queue(
                &mut self.conns[key],
                tag.0,
                &mut self.codecs,
                &mut self.turn,
            );
            self.mark_dirty(key);
        }
        verdict
    }

    /// Queues `bytes` for `id` ahead of nothing and behind everything: output that is
    /// not a droppable message (a replay of missed messages, an acknowledgement), which
    /// holds `messages` data messages (a replay's; 0 for an acknowledgement). `false` if
    /// `id` is neither an open WebSocket nor a stream.
    pub(crate) fn push_bytes(&mut self, id: ConnId, bytes: &[u8], messages: usize) -> bool {
        let Some(conn) = self
            .get(id)
            .filter(|c| matches!(c.phase, Phase::Open | Phase::Streaming(_)))
        else {
            return false;
        };
        conn.outbox.push_bytes(bytes);
        self.mark_dirty(id.key());
        self.meter.messages_out(id.key(), messages);
        true
    }

    /// Counts `messages` data messages sent to `id` some other way than the calls above
    /// (the replay in the body that starts an SSE stream).
    pub(crate) fn count_messages_out(&mut self, id: ConnId, messages: usize) {
        if self.get_ref(id).is_some() {
            self.meter.messages_out(id.key(), messages);
        }
    }

    /// What `id` sent and received so far, if its traffic is counted
    /// ([`Settings::count_traffic`](crate::server::settings::Settings)); until it is removed.
    pub(crate) fn traffic(&self, id: ConnId) -> Option<Traffic> {
        self.meter.get(id)
    }

    /// Starts a server-initiated close of `id` (§7.1.2): send Close, wait for the peer's.
    pub(crate) fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.start_close(id, code, reason, false)
    }

    /// [`close`](Self::close), with the Close frame queued after what is queued, or
    /// (`urgent`) ahead of the droppable messages.
    fn start_close(&mut self, id: ConnId, code: CloseCode, reason: &str, urgent: bool) -> bool {
        let close_timeout = self.settings.close_timeout;
        let now = self.now();
        let Some(conn) = self.get(id).filter(|c| c.is_open()) else {
            return false;
        };
        let code = if code.is_sendable() {
            code
        } else {
            CloseCode::NORMAL
        };
        let reason = close::truncate_reason(reason);
        if urgent {
            let mut body = Vec::with_capacity(2 + reason.len());
            close::encode_payload(code, reason, &mut body);
            conn.queue_urgent(OpCode::Close, &body);
        } else {
            conn.queue_close(code, reason);
        }
        conn.phase = Phase::Closing(Box::new(Ending::new(code, reason)));
        self.set_deadline(id.key(), now + close_timeout);
        self.mark_dirty(id.key());
        true
    }

    /// Marks `key` open (the upgrade succeeded) with the subprotocol at `protocol` in the
    /// configured list, if any.
    pub(crate) fn opened(&mut self, key: usize, protocol: Option<usize>) {
        let conn = &mut self.conns[key];
        conn.phase = Phase::Open;
        conn.deadline = 0;
        conn.protocol = protocol.map_or(0, |i| (i + 1).min(usize::from(u8::MAX)) as u8);
        self.open += 1;
        let now = self.now();
        self.keepalive_start(key, now);
    }

    /// Flush, shut the write side, wait for the peer's FIN (or the close timeout), go.
    pub(crate) fn drain(&mut self, key: usize) {
        let close_timeout = self.settings.close_timeout;
        self.conns[key].phase = Phase::Draining {
            write_shut: false,
            peer_done: false,
        };
        self.set_deadline(key, self.now() + close_timeout);
        self.mark_dirty(key);
    }

    /// Ends the conversation on `key`: records the ending for the handler if it was
    /// announced, then drains (flush, shut down, wait for the peer's FIN).
    pub(crate) fn finish(&mut self, key: usize, ending: Ending) {
        let close_timeout = self.settings.close_timeout;
        let conn = &mut self.conns[key];
        if let Some(ending) = conn.phase.finish(ending) {
            self.open -= 1;
            self.metrics.counters.closed(u16::from(ending.code));
            self.ended.push((ConnId::new(key, conn.serial), ending));
        }
        self.set_deadline(key, self.now() + close_timeout);
        self.mark_dirty(key);
    }

    /// Removes `key` at the end of the turn, announcing it as lost (1006) if it was open.
    pub(crate) fn drop_conn(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        let id = ConnId::new(key, conn.serial);
        match conn.phase.lose() {
            Loss::AlreadyDead => return,
            Loss::Close(ending) => {
                self.open -= 1;
                self.metrics.counters.closed(u16::from(ending.code));
                self.ended.push((id, ending));
            }
            Loss::Exchange => self.exchanges_ended.push(id),
            Loss::Quiet => {}
        }
        self.reap.push(key);
    }

    /// The peer ended its side of `key` (end of stream). A connection that still owes it
    /// an answer (an HTTP response, a Close echo) writes it first; any other goes now.
    pub(crate) fn peer_done(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.outbox.is_empty() {
            return self.drop_conn(key);
        }
        match &mut conn.phase {
            Phase::Draining { peer_done, .. } => *peer_done = true,
            // Lost without a Close (1006), but what was queued for it (its 101, echoes)
            // still goes out: a half-closed peer may be reading.
            Phase::Open | Phase::Closing(_) => {
                self.finish(key, Ending::lost());
                self.set_peer_done(key);
            }
            // An HTTP answer to a request sent just before the half-close.
            Phase::Reading(_) => {
                self.drain(key);
                self.set_peer_done(key);
            }
            _ => return self.drop_conn(key),
        }
        self.flush(key);
    }

    fn set_peer_done(&mut self, key: usize) {
        if let Phase::Draining { peer_done, .. } = &mut self.conns[key].phase {
            *peer_done = true;
        }
    }

    /// Writes what every dirty connection has queued. Every queue that refers to the
    /// turn buffer is dirty (queueing a message marks it), and is now written or settled
    /// (see [`flush`](Self::flush)), or dead: so the turn buffer is emptied.
    pub(crate) fn flush_dirty(&mut self) {
        while let Some(key) = self.dirty.pop() {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.dirty = false;
                self.flush(key);
            }
        }
        self.turn.clear();
        if self.metrics.has_published() {
            let now = self.now();
            self.metrics.written(now);
        }
    }

    /// Writes what the connections that ended this turn still have queued (a Close
    /// echo, a held request's fallback answer, the rest of a stream), so that their
    /// counts are final when the handler hears of their end; only while traffic is
    /// counted (the loop calls it after handing the turn's notes to other workers).
    pub(crate) fn flush_ended(&mut self) {
        if !self.meter.is_counting() {
            return;
        }
        let ended = self.ended.iter().map(|(id, _)| *id);
        let ids: Vec<ConnId> = ended.chain(self.exchanges_ended.iter().copied()).collect();
        for id in ids {
            if self.get_ref(id).is_some_and(|c| c.dirty) {
                self.flush(id.key());
            }
        }
    }

    /// Writes `key`'s outbox; asks for WRITABLE only while bytes remain.
    pub(crate) fn flush(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if matches!(conn.phase, Phase::Dead) {
            return;
        }
        let queued = conn.outbox.len();
        let written = match self.tls.get_mut(key) {
            None => conn.outbox.write_to(&mut conn.socket, self.turn.as_slice()),
            Some(tls) => {
                let mut sink = TlsSink {
                    tls,
                    socket: &mut conn.socket,
                };
                // Done once the outbox is empty and rustls sent every record it holds
                // (handshake messages and alerts included).
                match conn.outbox.write_to(&mut sink, self.turn.as_slice()) {
                    Ok(true) => sink.send_records(),
                    other => other,
                }
            }
        };
        // WebSocket bytes (before encryption, with TLS) that left the outbox.
        let left = if matches!(written, Ok(false)) {
            conn.outbox.len()
        } else {
            0
        };
        let taken = queued.saturating_sub(left);
        self.metrics.counters.bytes_out += taken as u64;
        self.meter.bytes_out(key, taken);
        match written {
            Ok(true) => {
                if std::mem::take(&mut conn.backlog_high) {
                    self.backlog_events
                        .push((ConnId::new(key, conn.serial), Backlog::Drained));
                }
                if conn.write_interest {
                    conn.write_interest = false;
                    let _ =
                        self.registry
                            .reregister(&mut conn.socket, Token(key), Interest::READABLE);
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
                        if let Some(tls) = self.tls.get_mut(key) {
                            // Once: later calls queue nothing.
                            tls.send_close_notify();
                            if tls.wants_write() {
                                // close_notify is queued: write it, then shut down.
                                return self.flush(key);
                            }
                        }
                        *write_shut = true;
                        let _ = conn.socket.shutdown(Shutdown::Write);
                    }
                }
            }
            Ok(false) => {
                // What is left waits for WRITABLE, beyond this turn.
                conn.outbox.settle(self.turn.as_slice());
                let queued = conn.outbox.len();
                if !conn.backlog_high
                    && queued > self.settings.max_backlog / 2
                    && conn.is_announced()
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
                        .reregister(&mut conn.socket, Token(key), interest);
                }
            }
            Err(e) => {
                log::debug!("{} write failed: {e}", self.id(key));
                self.drop_conn(key);
            }
        }
    }

    /// `key`'s peer reads slower than it is sent to: a message found its queue already
    /// over `max_backlog` under the `close` policy (so a queue holds at most the limit
    /// plus one message). A WebSocket is closed with 1008: the Close goes ahead of the
    /// queued messages, which are dropped (the client learns why and can resume from
    /// history), and the close timeout bounds the wait; a stream is dropped (an
    /// EventSource reconnects with `Last-Event-ID` and resumes from history).
    pub(crate) fn overflow(&mut self, key: usize) {
        let id = self.id(key);
        let conn = &self.conns[key];
        let peer = conn
            .socket
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        log::warn!(
            "{id} ({peer}): {} bytes queued, over the {}-byte backlog limit; closing",
            conn.outbox.len(),
            self.settings.max_backlog
        );
        self.metrics.counters.overflows += 1;
        if conn.is_open() {
            let conn = &mut self.conns[key];
            let dropped = conn.outbox.drop_all_messages();
            conn.drops = conn.drops.saturating_add(dropped);
            self.meter.dropped(key, dropped);
            self.metrics.counters.dropped[policy_index(Policy::Close)] += u64::from(dropped);
            self.start_close(id, CloseCode::POLICY_VIOLATION, "backlog over limit", true);
        } else {
            self.drop_conn(key);
        }
    }

    /// `key`'s TLS session failed (`error`: not TLS, no common cipher suite, an
    /// unexpected message, ...): sends the alert rustls queued, if the socket takes it
    /// at once, and drops the connection; counted.
    pub(crate) fn tls_failed(&mut self, key: usize, error: &rustls::Error) {
        let id = self.id(key);
        let conn = &mut self.conns[key];
        let peer = conn.socket.peer_addr();
        log::debug!("{id} ({peer:?}) tls: {error}");
        if let Some(tls) = self.tls.get_mut(key) {
            let socket = &mut conn.socket;
            let _ = TlsSink { tls, socket }.send_records();
        }
        self.tls_failures += 1;
        self.drop_conn(key);
    }

    /// Connections dropped for a failed TLS handshake or session since the server
    /// started.
    pub(crate) fn tls_failures(&self) -> u64 {
        self.tls_failures
    }

    /// Messages backlog policies dropped since the server started (all connections).
    pub(crate) fn dropped(&self) -> u64 {
        self.metrics.counters.dropped.iter().sum()
    }

    /// Messages backlog policies dropped on `id`.
    pub(crate) fn dropped_on(&self, id: ConnId) -> Option<u64> {
        Some(u64::from(self.get_ref(id)?.drops))
    }

    /// How many connections were closed for a full queue since the server started.
    pub(crate) fn overflows(&self) -> u64 {
        self.metrics.counters.overflows
    }

    /// The loop's counters, and its connections and queued bytes counted now (a walk
    /// over the slab: for a scrape, not for the hot path).
    pub(crate) fn stats(&self) -> LoopStats {
        let mut connections = Connections::default();
        let mut backlog_bytes = 0;
        for (_, conn) in &self.conns {
            match conn.phase {
                Phase::Open | Phase::Closing(_) => connections.websocket += 1,
                Phase::Streaming(_) => connections.sse += 1,
                Phase::Held(_) => connections.long_poll += 1,
                Phase::Reading(_) | Phase::Draining { .. } => connections.http += 1,
                Phase::Dead => {}
            }
            backlog_bytes += conn.outbox.len() as u64;
        }
        LoopStats {
            counters: self.metrics.counters.clone(),
            connections,
            backlog_bytes,
        }
    }

    /// The time now, from the configured clock.
    pub(crate) fn now(&self) -> Instant {
        self.settings.clock.now()
    }

    /// Sets `key`'s deadline.
    pub(crate) fn set_deadline(&mut self, key: usize, at: Instant) {
        let tick = self.timers.tick(at);
        let conn = &mut self.conns[key];
        conn.deadline = tick;
        self.timers.push(tick, key, conn.serial);
    }

    /// The slots whose current deadline is at or before `now`.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<usize> {
        let conns = &self.conns;
        self.timers.due(now, |key, serial, tick| {
            conns
                .get(key)
                .is_some_and(|c| c.serial == serial && c.deadline == tick)
        })
    }

    /// Removes the connections marked for removal; returns their ids.
    pub(crate) fn reap(&mut self) -> Vec<ConnId> {
        let mut removed = Vec::with_capacity(self.reap.len());
        while let Some(key) = self.reap.pop() {
            if self.conns.contains(key) {
                let mut conn = self.conns.remove(key);
                removed.push(ConnId::new(key, conn.serial));
                let _ = self.registry.deregister(&mut conn.socket);
                self.tls.remove(key);
                self.meter.end(key);
            }
        }
        removed
    }

    /// Whether anything is left for the loop to settle this turn.
    pub(crate) fn has_pending(&self) -> bool {
        !self.dirty.is_empty()
            || !self.refeed.is_empty()
            || !self.exchanges_ended.is_empty()
            || !self.backlog_events.is_empty()
            || !self.ended.is_empty()
    }

    /// Whether any connection is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
