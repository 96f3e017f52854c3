//! The event loop: one `mio::Poll`, the listener, the pool of connections, timers, and the
//! dispatch of socket readiness to the protocol core and the handler.

use crate::close;
use crate::config::Config;
use crate::connection::Phase;
use crate::dispatch::feed;
use crate::error::Error;
use crate::handle::{Command, Handle};
use crate::handler::{guard, Context, Handler};
use crate::http;
use crate::pool::Pool;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Reads per connection per loop turn before other connections get their turn.
const READS_PER_TURN: usize = 16;

/// How long to wait before accepting again after an accept error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A WebSocket server: a listener and a single-threaded event loop.
///
/// ```no_run
/// use pushloop::{Context, ConnId, Handler, Message, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
///         ctx.send(id, msg);
///     }
/// }
///
/// Server::bind("127.0.0.1:9001")?.run(Echo)
/// # ; Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    pool: Pool,
    read_buf: Box<[u8]>,
    waker: Arc<Waker>,
    tx: mpsc::Sender<Command>,
    rx: Receiver<Command>,
    /// Connections that still had bytes to read when their turn ended: (slot, serial).
    again: Vec<(usize, u32)>,
    accept_retry: Option<Instant>,
    shutdown_by: Option<Instant>,
}

impl Server {
    /// Binds to `addr` with the default [`Config`].
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Server::bind_with(addr, Config::default())
    }

    /// Binds to `addr` with `config`.
    pub fn bind_with(addr: impl ToSocketAddrs, config: Config) -> io::Result<Server> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let mut listener = listen(addr, config.backlog)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let clock_waker = waker.clone();
        config.clock.attach(Box::new(move || {
            let _ = clock_waker.wake();
        }));
        let (tx, rx) = mpsc::channel();
        Ok(Server {
            local_addr: listener.local_addr()?,
            read_buf: vec![0; config.read_buffer].into_boxed_slice(),
            pool: Pool::new(poll.registry().try_clone()?, config),
            poll,
            events: Events::with_capacity(1024),
            listener: Some(listener),
            waker,
            tx,
            rx,
            again: Vec::new(),
            accept_retry: None,
            shutdown_by: None,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Runs the loop until [`Handle::stop`] and the graceful shutdown complete.
    pub fn run(mut self, mut handler: impl Handler) -> io::Result<()> {
        while self.poll_once(&mut handler, None)? {}
        Ok(())
    }

    /// Runs one turn of the loop: waits up to `timeout` (`None`: until something happens)
    /// and handles what is ready. Returns `false` once the server has stopped.
    pub fn poll_once<H: Handler>(
        &mut self,
        handler: &mut H,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        let timeout = self.poll_timeout(timeout);
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept(),
                WAKER => self.commands(),
                Token(key) => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        let eof_pending = event.is_read_closed() || event.is_error();
                        self.read_ready(key, handler, eof_pending);
                    }
                    if event.is_writable() && self.pool.conns.contains(key) {
                        self.pool.flush(key);
                    }
                }
            }
        }
        self.events = events;
        for (key, serial) in std::mem::take(&mut self.again) {
            if self.pool.conns.get(key).is_some_and(|c| c.serial == serial) {
                self.read_ready(key, handler, false);
            }
        }
        self.timers(handler);
        self.settle(handler);
        Ok(!self.is_stopped())
    }

    /// The poll timeout: the caller's, shortened to the next timer.
    fn poll_timeout(&self, timeout: Option<Duration>) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = self.pool.now();
        [
            self.pool.next_deadline(),
            self.pool.next_sweep(),
            self.accept_retry,
            self.shutdown_by,
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
                Ok((stream, peer)) => {
                    if self.pool.conns.len() >= self.pool.config.max_connections {
                        log::warn!("refusing {peer}: {} connections", self.pool.conns.len());
                        refuse_busy(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    match self.pool.insert(stream, self.pool.now()) {
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
                    self.accept_retry = Some(self.pool.now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Carries out the commands other threads sent through handles.
    fn commands(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Send(id, msg) => {
                    self.pool.send(id, msg.as_message());
                }
                Command::Broadcast(msg) => {
                    self.pool.broadcast(msg.as_message(), None);
                }
                Command::Close(id, code, reason) => {
                    self.pool.close(id, code, &reason);
                }
                Command::Stop => self.begin_shutdown(),
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
            self.pool.open_count()
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for id in self.pool.open_ids() {
            self.pool
                .close(id, close::GOING_AWAY, "server shutting down");
        }
        let streams: Vec<usize> = self
            .pool
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Stream | Phase::Polling(_)))
            .map(|(k, _)| k)
            .collect();
        for key in streams {
            self.pool.drain(key);
        }
        let handshaking: Vec<usize> = self
            .pool
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Handshaking(_)))
            .map(|(k, _)| k)
            .collect();
        for key in handshaking {
            self.pool.drop_conn(key);
        }
        self.shutdown_by = Some(self.pool.now() + self.pool.config.shutdown_timeout);
    }

    /// Whether a shutdown has finished.
    fn is_stopped(&self) -> bool {
        self.shutdown_by.is_some() && self.pool.is_empty()
    }

    /// Reads what `key` sent, a bounded number of times, and feeds it to the protocol.
    ///
    /// Readiness is edge-triggered, so the socket must be drained: read until
    /// `WouldBlock`, or until a read returns less than the buffer. A short read of a TCP
    /// socket means its receive queue was empty at that moment, and any byte that
    /// arrives later raises a new edge (epoll(7); nginx relies on the same with
    /// `EPOLLRDHUP`). That saves one failing `recv` per message. When the event already
    /// reported the peer's FIN or an error (`eof_pending`), read on until end of stream.
    fn read_ready<H: Handler>(&mut self, key: usize, handler: &mut H, eof_pending: bool) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.pool.conns.get_mut(key) else {
                return;
            };
            if matches!(conn.phase, Phase::Dead) {
                return;
            }
            let n = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => return self.pool.peer_done(key),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("{} read failed: {e}", self.pool.id(key));
                    return self.pool.drop_conn(key);
                }
            };
            feed(&mut self.pool, key, &mut self.read_buf[..n], handler);
            if n < self.read_buf.len() && !eof_pending {
                return;
            }
        }
        if let Some(conn) = self.pool.conns.get(key) {
            self.again.push((key, conn.serial));
        }
    }

    /// Handles the deadlines that passed.
    fn timers<H: Handler>(&mut self, handler: &mut H) {
        let now = self.pool.now();
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accept();
        }
        for key in self.pool.expired(now) {
            if self.pool.push_timer(key) {
                continue;
            }
            let id = self.pool.id(key);
            if matches!(self.pool.conns[key].phase, Phase::Closing(_)) {
                let pool = &mut self.pool;
                guard("on_error", id, || {
                    handler.on_error(&mut Context { pool }, id, &Error::Timeout)
                });
            }
            log::debug!("{id} timed out");
            self.pool.drop_conn(key);
        }
        for key in self.pool.sweep(now).timed_out {
            let id = self.pool.id(key);
            log::debug!("{id} did not answer a ping in time");
            let pool = &mut self.pool;
            guard("on_error", id, || {
                handler.on_error(&mut Context { pool }, id, &Error::Timeout)
            });
            self.pool.drop_conn(key);
        }
        if self.shutdown_by.is_some_and(|at| at <= now) {
            let keys: Vec<usize> = self.pool.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                self.pool.drop_conn(key);
            }
        }
    }

    /// Tells the handler about ended connections, writes what was queued, removes the dead.
    fn settle<H: Handler>(&mut self, handler: &mut H) {
        loop {
            // Requests pipelined behind a long poll that has just been answered.
            while let Some(key) = self.pool.refeed.pop() {
                feed(&mut self.pool, key, &mut [], handler);
            }
            for id in std::mem::take(&mut self.pool.streams_ended) {
                let pool = &mut self.pool;
                guard("on_event_stream_end", id, || {
                    handler.on_event_stream_end(&mut Context { pool }, id)
                });
            }
            for (id, backlog) in std::mem::take(&mut self.pool.backlog_events) {
                let pool = &mut self.pool;
                guard("on_backlog", id, || {
                    handler.on_backlog(&mut Context { pool }, id, backlog)
                });
            }
            for (id, ending) in std::mem::take(&mut self.pool.ended) {
                let pool = &mut self.pool;
                let (code, reason) = (ending.code, &ending.reason);
                guard("on_close", id, || {
                    handler.on_close(&mut Context { pool }, id, code, reason)
                });
            }
            if !self.pool.has_dirty()
                && self.pool.refeed.is_empty()
                && self.pool.streams_ended.is_empty()
                && self.pool.backlog_events.is_empty()
            {
                break;
            }
            self.pool.flush_dirty();
        }
        self.pool.reap();
    }
}

/// A non-blocking listener with `SO_REUSEADDR` and a listen backlog of `backlog`
/// (mio's own `bind` fixes it at 128, which drops SYNs in a connect storm).
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Best effort `503` to a socket the server has no room for, then close it.
fn refuse_busy(mut stream: mio::net::TcpStream) {
    let mut out = Vec::new();
    http::write_error(503, "server busy", &mut out);
    let _ = stream.write(&out);
}
