//! One worker's connection to Redis, off the loop: a link thread connects (RESP3, AUTH,
//! SELECT, the function library), writes each turn's pipelined commands in one write,
//! and reconnects with backoff and jitter; a reader thread parses what Redis sends
//! (replies and pub/sub pushes, in Redis's order) and hands it to the loop through a
//! queue and the loop's [`Waker`]. The loop never waits on Redis.
//!
//! Each connection has an epoch. Everything read on it carries that epoch, and the loss
//! of it ([`Event::Down`]) comes after everything read on it, before the next
//! connection's [`Event::Up`]; a batch written for an older epoch is dropped.

use crate::push::redis::functions::LIBRARY;
use mio::Waker;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value};
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a connect (and its handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write may block before the connection counts as lost (a stalled Redis).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first and the longest pause between reconnects (jittered ±50 %).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the loop gets a [`Event::Tick`] while connected.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// What the link tells the loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// Connection `epoch` is up (handshake done, functions loaded).
    Up(u64),
    /// A reply or a push read on connection `epoch`.
    Value(u64, Value),
    /// Connection `epoch` is lost (after everything read on it).
    Down(u64, String),
    /// A second passed (presence is refreshed on these).
    Tick,
}

/// What the loop tells the link thread.
enum Order {
    /// Write these pipelined commands on connection `epoch`.
    Write(u64, Vec<u8>),
    /// The reader of connection `epoch` ended.
    ReaderEnded(u64),
    /// Close and end.
    Stop,
}

/// Where a link connects: the address and the handshake.
#[derive(Clone)]
pub(crate) struct Target {
    /// The URL with its password masked, for logs.
    pub(crate) shown: String,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    /// Topics every connection subscribes to in its handshake, before it is used.
    topics: Vec<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Target {
    /// Parses `redis://[user:password@]host:port[/db]`.
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let shown = mask(url);
        let info: ConnectionInfo = url
            .into_connection_info()
            .map_err(|e| format!("{shown}: {e}"))?;
        let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
            return Err(format!("{shown}: only redis://host:port is supported"));
        };
        let redis = info.redis_settings();
        Ok(Target {
            shown,
            host,
            port,
            username: redis.username().map(str::to_owned),
            password: redis.password().map(str::to_owned),
            db: redis.db(),
            topics: Vec::new(),
        })
    }

    /// The same target, each connection to it subscribed to `topics` in its handshake:
    /// they are heard from before the connection is handed to the loop.
    pub(crate) fn listening(mut self, topics: Vec<String>) -> Target {
        self.topics = topics;
        self
    }

    /// Connects and shakes hands: `HELLO 3` (with `AUTH`), `SELECT`, the functions, the
    /// topics it listens to.
    fn connect(&self) -> Result<TcpStream, String> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?;
        let mut last = String::from("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => return self.handshake(stream),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    fn handshake(&self, mut stream: TcpStream) -> Result<TcpStream, String> {
        let io = |e: std::io::Error| e.to_string();
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(io)?;
        let mut hello = redis::cmd("HELLO");
        hello.arg(3);
        if let Some(password) = &self.password {
            hello
                .arg("AUTH")
                .arg(self.username.as_deref().unwrap_or("default"))
                .arg(password);
        }
        let mut out = hello.get_packed_command();
        let mut expected = 1;
        if self.db != 0 {
            redis::cmd("SELECT")
                .arg(self.db)
                .write_packed_command(&mut out);
            expected += 1;
        }
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(LIBRARY)
            .write_packed_command(&mut out);
        expected += 1;
        if !self.topics.is_empty() {
            redis::cmd("SUBSCRIBE")
                .arg(&self.topics)
                .write_packed_command(&mut out);
        }
        stream.write_all(&out).map_err(io)?;
        // Byte by byte (a few hundred, once per connection): once subscribed, a message
        // may follow the last confirmation at once, and must stay in the socket for the
        // connection's reader.
        let mut reader = BufReader::with_capacity(1, &stream);
        let mut parser = redis::Parser::new();
        for _ in 0..expected {
            match parser.parse_value(&mut reader).map_err(|e| e.to_string())? {
                Value::ServerError(e) => return Err(format!("{e:?}")),
                Value::Push { .. } => return Err("unexpected push in the handshake".into()),
                _ => {}
            }
        }
        // One confirmation per topic (RESP3 pushes): the subscriptions are in place.
        for _ in 0..self.topics.len() {
            match parser.parse_value(&mut reader).map_err(|e| e.to_string())? {
                Value::Push {
                    kind: redis::PushKind::Subscribe,
                    ..
                } => {}
                Value::ServerError(e) => return Err(format!("{e:?}")),
                other => return Err(format!("unexpected answer to SUBSCRIBE: {other:?}")),
            }
        }
        stream.set_read_timeout(None).map_err(io)?;
        Ok(stream)
    }
}

/// `url` with the password (between `:` and `@` after the scheme) replaced by `***`.
pub(crate) fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((creds, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match creds.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

/// The events read for the loop, its waker, and the connection in use (so the loop can
/// give up on one that stopped answering).
struct Inbox {
    events: Mutex<Vec<Event>>,
    waker: Arc<Waker>,
    current: Mutex<Option<(u64, TcpStream)>>,
}

impl Inbox {
    /// Queues `event`, waking the loop if the queue was empty (one wake-up per batch).
    fn push(&self, event: Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = events.is_empty();
        events.push(event);
        drop(events);
        if was_empty {
            let _ = self.waker.wake();
        }
    }
}

/// The loop's end of a link.
pub(crate) struct Link {
    orders: Sender<Order>,
    inbox: Arc<Inbox>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Link")
    }
}

impl Link {
    /// Connects to `target` now (an error if Redis cannot be reached: the caller exits),
    /// then keeps the connection on threads of its own, waking `waker` when something
    /// came. Its first event is `Up(1)`.
    pub(crate) fn start(target: Target, name: &str, waker: Arc<Waker>) -> Result<Link, String> {
        let stream = target.connect()?;
        let inbox = Arc::new(Inbox {
            events: Mutex::new(Vec::new()),
            waker,
            current: Mutex::new(None),
        });
        let (orders, rx) = mpsc::channel();
        let thread = {
            let inbox = Arc::clone(&inbox);
            let orders = orders.clone();
            std::thread::Builder::new()
                .name(format!("{name}-redis"))
                .spawn(move || run(target, stream, rx, orders, inbox))
                .map_err(|e| e.to_string())?
        };
        Ok(Link {
            orders,
            inbox,
            thread: Some(thread),
        })
    }

    /// Hands connection `epoch` this turn's commands.
    pub(crate) fn write(&self, epoch: u64, batch: Vec<u8>) {
        let _ = self.orders.send(Order::Write(epoch, batch));
    }

    /// Gives up on connection `epoch` (it stopped answering): it is shut down, so its
    /// reader ends with [`Event::Down`] and the link connects again.
    pub(crate) fn reset(&self, epoch: u64) {
        let current = self.inbox.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((e, stream)) = &*current {
            if *e == epoch {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// What was read since the last call, in order.
    pub(crate) fn take(&self, into: &mut Vec<Event>) {
        let mut events = self.inbox.events.lock().unwrap_or_else(|p| p.into_inner());
        into.append(&mut events);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.orders.send(Order::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A pause of about `base` (±50 %), from a cheap per-process pseudo-random source.
fn jittered(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let r = h.finish() % 1000;
    base / 2 + base * u32::try_from(r).unwrap_or(0) / 1000
}

/// The link thread: owns the writing half and the (re)connects.
fn run(
    target: Target,
    first: TcpStream,
    orders: Receiver<Order>,
    to_self: Sender<Order>,
    inbox: Arc<Inbox>,
) {
    let mut stream = Some(first);
    let mut epoch = 0u64;
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(mut conn) = stream.take() else {
            // Down: wait (still taking orders, so Stop is heard), then try again.
            let deadline = Instant::now() + jittered(backoff);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match orders.recv_timeout(left) {
                    Ok(Order::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Ok(_) => continue, // batches of a lost connection, a reader's end
                    Err(RecvTimeoutError::Timeout) => break,
                }
            }
            match target.connect() {
                Ok(conn) => {
                    stream = Some(conn);
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    log::debug!("redis {}: reconnect failed: {e}", target.shown);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            continue;
        };
        epoch += 1;
        let reader = match conn.try_clone() {
            Ok(reader) => reader,
            Err(e) => {
                log::warn!("redis {}: {e}", target.shown);
                continue;
            }
        };
        let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
        if let Ok(handle) = conn.try_clone() {
            *inbox.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((epoch, handle));
        }
        // Up before anything read: the handshake subscribed already, so a message may
        // come at once, and the loop takes the connection's values only once it is up.
        inbox.push(Event::Up(epoch));
        let reading = {
            let inbox = Arc::clone(&inbox);
            let to_self = to_self.clone();
            std::thread::Builder::new()
                .name("pushloop-redis-read".into())
                .spawn(move || read(reader, epoch, &inbox, &to_self))
        };
        let Ok(reading) = reading else {
            inbox.push(Event::Down(epoch, "cannot start the reader thread".into()));
            continue;
        };
        let stop = serve(&mut conn, epoch, &orders, &inbox);
        let _ = conn.shutdown(Shutdown::Both);
        let _ = reading.join();
        if stop {
            return;
        }
    }
}

/// Writes batches on connection `epoch` until it ends (`false`) or the loop stops (`true`),
/// and tells the loop every [`TICK`], however busy the connection is (a tick only when
/// no batch came for a whole `TICK` would never come to a node that writes every second).
fn serve(conn: &mut TcpStream, epoch: u64, orders: &Receiver<Order>, inbox: &Inbox) -> bool {
    let mut next_tick = Instant::now() + TICK;
    loop {
        let now = Instant::now();
        if now >= next_tick {
            inbox.push(Event::Tick);
            next_tick = now + TICK;
        }
        match orders.recv_timeout(next_tick.saturating_duration_since(now)) {
            Ok(Order::Write(e, batch)) if e == epoch => {
                if conn.write_all(&batch).is_err() {
                    return false;
                }
            }
            Ok(Order::Write(..)) => {}
            Ok(Order::ReaderEnded(e)) if e == epoch => return false,
            Ok(Order::ReaderEnded(_)) => {}
            Ok(Order::Stop) | Err(RecvTimeoutError::Disconnected) => return true,
            Err(RecvTimeoutError::Timeout) => {} // the tick is told at the top
        }
    }
}

/// The reader thread of connection `epoch`: every value in order, then `Down`.
fn read(stream: TcpStream, epoch: u64, inbox: &Inbox, to_link: &Sender<Order>) {
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut parser = redis::Parser::new();
    let error = loop {
        match parser.parse_value(&mut reader) {
            Ok(value) => inbox.push(Event::Value(epoch, value)),
            Err(e) => break e.to_string(),
        }
    };
    inbox.push(Event::Down(epoch, error));
    let _ = to_link.send(Order::ReaderEnded(epoch));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_passwords_are_masked() {
        let t = Target::parse("redis://bob:s3cret@127.0.0.1:6380/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("127.0.0.1", 6380, 2));
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.shown, "redis://bob:***@127.0.0.1:6380/2");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert_eq!(mask("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(mask("redis://h:1"), "redis://h:1");
        assert!(Target::parse("http://h:1").is_err());
    }

    #[test]
    fn jitter_stays_within_half_either_side() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1500));
        }
    }
}
