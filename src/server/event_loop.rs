//! The event loop: one `mio::Poll`, the listener, the core of connections, timers, and the
//! dispatch of socket readiness to the protocol core and the service above.

use crate::http;
use crate::server::connection::Phase;
use crate::server::core::Core;
use crate::server::dispatch::feed;
use crate::server::error::Error;
use crate::server::service::{guard, Service};
use crate::server::settings::Settings;
use crate::ws::close::CloseCode;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Reads per connection per loop turn before other connections get their turn.
const READS_PER_TURN: usize = 16;

/// How soon to offer other workers again what their full queues did not take (waiting
/// a little leaves them the core to drain their queues).
const BUSY_RETRY: Duration = Duration::from_millis(1);

/// How long to wait before accepting again after an accept error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A listener and a single-threaded event loop over the [`Core`]'s connections.
pub(crate) struct EventLoop {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    pub(crate) core: Core,
    read_buf: Box<[u8]>,
    /// The plaintext of TLS records (allocated on the first TLS read).
    plain_buf: Option<Box<[u8]>>,
    waker: Arc<Waker>,
    /// Connections that still had bytes to read when their turn ended: (slot, serial).
    again: Vec<(usize, u32)>,
    accept_retry: Option<Instant>,
    shutdown_by: Option<Instant>,
    /// The service still had work for other workers it could not hand over (their
    /// queues were full): offer it again shortly ([`BUSY_RETRY`]).
    busy: bool,
}

impl EventLoop {
    /// Binds to `addr` with `settings`.
    pub(crate) fn bind(addr: impl ToSocketAddrs, settings: Settings) -> io::Result<EventLoop> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let mut listener = listen(addr, settings.listen_queue, settings.reuse_port)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let clock_waker = waker.clone();
        settings.clock.attach(Box::new(move || {
            let _ = clock_waker.wake();
        }));
        Ok(EventLoop {
            local_addr: listener.local_addr()?,
            read_buf: vec![0; settings.read_buffer].into_boxed_slice(),
            plain_buf: None,
            core: Core::new(poll.registry().try_clone()?, settings),
            poll,
            events: Events::with_capacity(1024),
            listener: Some(listener),
            waker,
            again: Vec::new(),
            accept_retry: None,
            shutdown_by: None,
            busy: false,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What wakes the loop from another thread: the loop then calls
    /// [`Service::on_wake`].
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs one turn of the loop: waits up to `timeout` (`None`: until something happens)
    /// and handles what is ready. Returns `false` once the server has stopped.
    pub(crate) fn poll_once<S: Service>(
        &mut self,
        service: &mut S,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        let timeout = self.poll_timeout(timeout);
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        service.on_turn_start(&mut self.core);
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept(),
                WAKER => service.on_wake(&mut self.core),
                Token(key) => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        let eof_pending = event.is_read_closed() || event.is_error();
                        self.read_ready(key, service, eof_pending);
                    }
                    if event.is_writable() && self.core.conns.contains(key) {
                        self.core.flush(key);
                    }
                }
            }
        }
        self.events = events;
        for (key, serial) in std::mem::take(&mut self.again) {
            if self.core.conns.get(key).is_some_and(|c| c.serial == serial) {
                self.read_ready(key, service, false);
            }
        }
        if std::mem::take(&mut self.core.stop_requested) {
            self.begin_shutdown();
        }
        self.timers(service);
        self.settle(service);
        Ok(!self.is_stopped())
    }

    /// The poll timeout: the caller's, shortened to the next timer.
    fn poll_timeout(&self, timeout: Option<Duration>) -> Option<Duration> {
        if !self.again.is_empty() || self.core.has_pending() || self.core.stop_requested {
            return Some(Duration::ZERO);
        }
        let now = self.core.now();
        [
            self.core.timers.next(),
            self.core.next_sweep(),
            self.accept_retry,
            self.shutdown_by,
            self.busy.then(|| now + BUSY_RETRY),
        ]
        .into_iter()
        .flatten()
        .map(|at| at.saturating_duration_since(now))
        .chain(timeout)
        .min()
    }

    /// Accepts until the listener would block.
    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((socket, peer)) => {
                    if self.core.conns.len() >= self.core.settings.max_connections {
                        log::warn!("refusing {peer}: {} connections", self.core.conns.len());
                        self.core.metrics.counters.refused(503);
                        if self.core.settings.tls.is_none() {
                            refuse_busy(socket);
                        }
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    match self.core.insert(socket, self.core.now()) {
                        Ok(id) => log::trace!("{id} accepted from {peer}"),
                        Err(e) => log::warn!("register {peer}: {e}"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the pending socket stays queued and the listener
                    // sends no new edge for it, so try again shortly instead of spinning.
                    log::warn!("accept failed: {e}; retrying in {ACCEPT_BACKOFF:?}");
                    self.accept_retry = Some(self.core.now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Stops accepting and sends Close 1001 to every open connection.
    fn begin_shutdown(&mut self) {
        if self.shutdown_by.is_some() {
            return;
        }
        log::info!(
            "shutting down: closing {} connections",
            self.core.open_count()
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for id in self.core.open_ids() {
            self.core
                .close(id, CloseCode::GOING_AWAY, "server shutting down");
        }
        let exchanges: Vec<usize> = self
            .core
            .conns
            .iter()
            .filter(|(_, c)| c.phase.is_exchange())
            .map(|(k, _)| k)
            .collect();
        for key in exchanges {
            self.core.exchanges_ended.push(self.core.id(key));
            self.core.drain(key);
        }
        let handshaking: Vec<usize> = self
            .core
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Reading(_)))
            .map(|(k, _)| k)
            .collect();
        for key in handshaking {
            self.core.drop_conn(key);
        }
        self.shutdown_by = Some(self.core.now() + self.core.settings.shutdown_timeout);
    }

    /// Whether a shutdown has finished.
    fn is_stopped(&self) -> bool {
        self.shutdown_by.is_some() && self.core.is_empty()
    }

    /// Reads what `key` sent, a bounded number of times, and feeds it to the protocol.
    ///
    /// Readiness is edge-triggered, so the socket must be drained: read until
    /// `WouldBlock`, or until a read returns less than the buffer. A short read of a TCP
    /// socket means its receive queue was empty at that moment, and any byte that
    /// arrives later raises a new edge (epoll(7); nginx relies on the same with
    /// `EPOLLRDHUP`). That saves one failing `recv` per message. When the event already
    /// reported the peer's FIN or an error (`eof_pending`), read on until end of stream.
    fn read_ready<S: Service>(&mut self, key: usize, service: &mut S, eof_pending: bool) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.core.conns.get_mut(key) else {
                return;
            };
            if matches!(conn.phase, Phase::Dead) {
                return;
            }
            if self.core.settings.tls.is_some() {
                match self.read_tls(key, service) {
                    Some(n) if n == self.read_buf.len() || eof_pending => continue,
                    _ => return,
                }
            }
            let n = match conn.socket.read(&mut self.read_buf) {
                Ok(0) => return self.core.peer_done(key),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("{} read failed: {e}", self.core.id(key));
                    return self.core.drop_conn(key);
                }
            };
            self.core.metrics.counters.bytes_in += n as u64;
            feed(&mut self.core, key, &mut self.read_buf[..n], service);
            if n < self.read_buf.len() && !eof_pending {
                return;
            }
        }
        if let Some(conn) = self.core.conns.get(key) {
            self.again.push((key, conn.serial));
        }
    }

    /// One read of a TLS connection: the records go to its session, and the plaintext
    /// they carry, a piece at a time, to the protocol. Returns how many bytes the
    /// socket gave, `None` when it has nothing now or the connection ended.
    fn read_tls<S: Service>(&mut self, key: usize, service: &mut S) -> Option<usize> {
        let conn = self.core.conns.get_mut(key)?;
        let n = match conn.socket.read(&mut self.read_buf) {
            Ok(0) => {
                self.core.peer_done(key);
                return None;
            }
            Ok(n) => {
                self.core.metrics.counters.bytes_in += n as u64;
                n
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Some(0),
            Err(e) => {
                log::debug!("{} read failed: {e}", self.core.id(key));
                self.core.drop_conn(key);
                return None;
            }
        };
        let size = self.read_buf.len();
        let plain = self.plain_buf.get_or_insert_with(|| vec![0; size].into());
        let mut records = &self.read_buf[..n];
        while !records.is_empty() {
            let conn = self.core.conns.get_mut(key)?;
            if matches!(conn.phase, Phase::Dead) {
                return None;
            }
            let tls = self.core.tls.get_mut(key)?;
            // rustls takes what fits its record buffer; processing the records frees it.
            let taken = tls.read_tls(&mut records);
            let state = match taken.map_err(|e| rustls::Error::General(e.to_string())) {
                Ok(_) => tls.process_new_packets(),
                Err(e) => Err(e),
            };
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.core.tls_failed(key, &e);
                    return None;
                }
            };
            let (mut pending, peer_closed) =
                (state.plaintext_bytes_to_read(), state.peer_has_closed());
            if tls.wants_write() {
                // Handshake messages (or a key update) to send.
                self.core.mark_dirty(key);
            }
            while pending > 0 {
                let tls = self.core.tls.get_mut(key)?;
                let got = match tls.reader().read(plain) {
                    Ok(got) if got > 0 => got,
                    _ => break,
                };
                pending -= got.min(pending);
                feed(&mut self.core, key, &mut plain[..got], service);
                if !self
                    .core
                    .conns
                    .get(key)
                    .is_some_and(|c| !matches!(c.phase, Phase::Dead))
                {
                    return None;
                }
            }
            if peer_closed {
                // close_notify: the peer ends its side, as a plain socket's FIN would.
                self.core.peer_done(key);
                return None;
            }
        }
        Some(n)
    }

    /// Handles the deadlines that passed.
    fn timers<S: Service>(&mut self, service: &mut S) {
        let now = self.core.now();
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accept();
        }
        for key in self.core.expired(now) {
            if self.core.exchange_timer(key) {
                continue;
            }
            let id = self.core.id(key);
            if matches!(self.core.conns[key].phase, Phase::Closing(_)) {
                let core = &mut self.core;
                guard("on_error", id, || {
                    service.on_error(core, id, &Error::Timeout)
                });
            }
            log::debug!("{id} timed out");
            self.core.drop_conn(key);
        }
        for key in self.core.sweep(now).timed_out {
            let id = self.core.id(key);
            log::debug!("{id} did not answer a ping in time");
            let core = &mut self.core;
            guard("on_error", id, || {
                service.on_error(core, id, &Error::Timeout)
            });
            self.core.drop_conn(key);
        }
        if self.shutdown_by.is_some_and(|at| at <= now) {
            let keys: Vec<usize> = self.core.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                self.core.drop_conn(key);
            }
        }
    }

    /// Tells the service about ended connections and exchanges, writes what was
    /// queued, removes the dead.
    fn settle<S: Service>(&mut self, service: &mut S) {
        loop {
            // Requests pipelined behind a held request that has just been answered.
            while let Some(key) = self.core.refeed.pop() {
                feed(&mut self.core, key, &mut [], service);
            }
            // While traffic is counted, what ended connections still have queued is
            // written before they are announced (after this turn's notes went to the
            // other workers, as before every write), so that their counts are final.
            if self.core.meter.is_counting()
                && !(self.core.ended.is_empty() && self.core.exchanges_ended.is_empty())
            {
                service.on_turn_end(&mut self.core);
                self.core.flush_ended();
            }
            for id in std::mem::take(&mut self.core.exchanges_ended) {
                let core = &mut self.core;
                guard("on_exchange_end", id, || service.on_exchange_end(core, id));
            }
            for (id, backlog) in std::mem::take(&mut self.core.backlog_events) {
                let core = &mut self.core;
                guard("on_backlog", id, || service.on_backlog(core, id, backlog));
            }
            for (id, ending) in std::mem::take(&mut self.core.ended) {
                let core = &mut self.core;
                let (code, reason) = (ending.code, &ending.reason);
                guard("on_close", id, || service.on_close(core, id, code, reason));
            }
            // What this turn produced for other workers goes before the sockets' bytes:
            // a client that saw an answer finds the other workers told already.
            service.on_turn_end(&mut self.core);
            self.core.flush_dirty();
            if !self.core.has_pending() {
                break;
            }
        }
        let removed = self.core.reap();
        if !removed.is_empty() {
            service.on_removed(&mut self.core, &removed);
        }
        self.busy = service.on_turn_end(&mut self.core);
    }
}

/// A non-blocking listener with `SO_REUSEADDR` and a listen queue of `queue`
/// (mio's own `bind` fixes it at 128, which drops SYNs in a connect storm); with
/// `reuse_port`, `SO_REUSEPORT` too, so that every worker listens on the same address
/// and the kernel spreads the connections among them.
fn listen(addr: SocketAddr, queue: u32, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(queue.min(i32::MAX as u32) as i32)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Best effort `503` to a socket the server has no room for, then close it.
fn refuse_busy(mut socket: mio::net::TcpStream) {
    let mut out = Vec::new();
    http::write_error(503, "server busy", &mut out);
    let _ = socket.write(&out);
}
