//! The ceiling for `loadgen tcp-echo`: a minimal single-threaded mio TCP echo server.
//!
//! It does the least an event loop can do per message: read until `WouldBlock` into one
//! shared buffer, write the bytes straight back, and queue only what the kernel did not
//! take. No framing, no masking, no UTF-8: what is left of pushloop's cost over this is
//! the WebSocket protocol and the server's own bookkeeping. Like pushloop, it asks for
//! WRITABLE readiness only while a connection has bytes queued.
//!
//! Run: `cargo run --release -p pushloop-tools --bin tcp_echo -- 127.0.0.1:0`
//! (prints `tcp_echo listening on ADDR`).

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

const LISTENER: Token = Token(usize::MAX - 1);

/// Stop reading a connection while this much of its echo is still queued.
const MAX_PENDING: usize = 4 << 20;

struct Conn {
    stream: TcpStream,
    /// Echo bytes the kernel did not take yet; `pos` of them were already written.
    pending: Vec<u8>,
    pos: usize,
    /// Reading stopped because `pending` is full; resume once it drained.
    paused: bool,
    /// Whether WRITABLE interest is registered.
    write_interest: bool,
}

/// What happened to a connection during a read or a flush.
enum Outcome {
    Keep,
    Close,
}

fn main() -> io::Result<()> {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let addr: SocketAddr = arg
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{arg}: {e}")))?;
    let mut listener = TcpListener::bind(addr)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("tcp_echo listening on {}", listener.local_addr()?);

    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept(&listener, &poll, &mut conns);
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut outcome = Outcome::Keep;
            if event.is_writable() {
                outcome = flush(conn);
                if matches!(outcome, Outcome::Keep) && conn.paused && conn.pending.is_empty() {
                    conn.paused = false;
                    outcome = read(conn, &mut buf);
                }
            }
            if matches!(outcome, Outcome::Keep)
                && (event.is_readable() || event.is_read_closed() || event.is_error())
            {
                outcome = read(conn, &mut buf);
            }
            if matches!(outcome, Outcome::Keep) {
                update_interest(conn, poll.registry(), key);
            }
            if matches!(outcome, Outcome::Close) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Accepts until the listener would block.
fn accept(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                if let Err(e) =
                    poll.registry()
                        .register(&mut stream, Token(entry.key()), Interest::READABLE)
                {
                    eprintln!("tcp_echo: register: {e}");
                    continue;
                }
                entry.insert(Conn {
                    stream,
                    pending: Vec::new(),
                    pos: 0,
                    paused: false,
                    write_interest: false,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("tcp_echo: accept: {e}");
                return;
            }
        }
    }
}

/// Asks for WRITABLE readiness exactly while bytes are queued.
fn update_interest(conn: &mut Conn, registry: &Registry, key: usize) {
    let want = !conn.pending.is_empty();
    if want != conn.write_interest {
        conn.write_interest = want;
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let _ = registry.reregister(&mut conn.stream, Token(key), interest);
    }
}

/// Reads until `WouldBlock` (or until too much echo is queued), echoing as it goes.
fn read(conn: &mut Conn, buf: &mut [u8]) -> Outcome {
    loop {
        if conn.pending.len() - conn.pos >= MAX_PENDING {
            conn.paused = true;
            return Outcome::Keep;
        }
        let n = match conn.stream.read(buf) {
            Ok(0) => return Outcome::Close,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Outcome::Close,
        };
        let data = &buf[..n];
        if conn.pending.is_empty() {
            // The usual case: straight back out of the shared buffer.
            match write_some(&mut conn.stream, data) {
                Ok(w) if w == n => continue,
                Ok(w) => conn.pending.extend_from_slice(&data[w..]),
                Err(_) => return Outcome::Close,
            }
        } else {
            conn.pending.extend_from_slice(data);
            if let Outcome::Close = flush(conn) {
                return Outcome::Close;
            }
        }
    }
}

/// Writes what is queued.
fn flush(conn: &mut Conn) -> Outcome {
    if conn.pending.is_empty() {
        return Outcome::Keep;
    }
    match write_some(&mut conn.stream, &conn.pending[conn.pos..]) {
        Ok(w) => conn.pos += w,
        Err(_) => return Outcome::Close,
    }
    if conn.pos == conn.pending.len() {
        conn.pending.clear();
        conn.pos = 0;
    } else if conn.pos >= 64 << 10 {
        conn.pending.drain(..conn.pos);
        conn.pos = 0;
    }
    Outcome::Keep
}

/// Writes as much of `data` as the socket takes; `Ok(n < len)` means it would block.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match stream.write(&data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
