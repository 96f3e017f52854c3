//! A soak and abuse test of the `pushloop` binary: bounded in time, loopback only.
//!
//! Run it with `bench/soak.sh [SECONDS]`, which builds, starts the server pinned to core 0
//! with short timeouts, runs this pinned to core 1, then stops the server with SIGTERM and
//! checks that it exits 0. By hand:
//!
//! ```text
//! pushloop --listen 127.0.0.1:9001 --handshake-timeout 2 --ping-interval 2 --pong-timeout 2 \
//!          --max-backlog 262144 &
//! soak --addr 127.0.0.1:9001 --server-pid $! --secs 60 --handshake-timeout 2 --close-timeout 5
//! ```
//!
//! Everything below runs at the same time, for `--secs` seconds:
//!
//! - **1,000 churning clients** (`--churners`), on one mio thread. Each connects (from
//!   source addresses 127.0.0.1-8, so that TIME_WAIT cannot use up the ephemeral ports),
//!   upgrades to `/ws/room<N>` (`--rooms` rooms; half offer `pushloop.v1`, one in ten
//!   resumes with `?since=0`), sends one or two chat messages, reads what it gets (and
//!   answers pings), and after 0.3-3 s ends: 70% with a close handshake (our Close 1000,
//!   the server's Close 1000, then its FIN), 10% with a TCP reset, 10% by closing the
//!   socket without a Close frame, 10% halfway through a frame. Then it reconnects.
//!   Failures: an upgrade refused with anything but 503 (503s are counted apart), a
//!   close or drop by the server of an open connection, a wrong close answer, anything
//!   not done within 5 s.
//! - **200 slowloris sockets** (`--slowloris`): three in four send an upgrade request
//!   head, one in four a POST head announcing a 1,000-byte body and then that body, one
//!   byte a second, never finishing. The server must drop each `--handshake-timeout`
//!   after the connect: a drop more than 0.1 s early, a socket still seen open more than
//!   1 s after the timeout, or one not dropped within 5 s, is a failure (a drop this
//!   process noticed late because it did not get to look is counted, not judged). They
//!   reconnect at once.
//! - **a broadcast flood** into channel `flood` by two publishers: one chats in the
//!   channel over WebSocket (the server acknowledges each message with its id), one POSTs
//!   to `/publish/flood` on a keep-alive connection, 16 requests pipelined. A payload
//!   carries its publisher and sequence number. They go as fast as the slowest
//!   well-behaved subscriber reads (at most `--flood-window` messages that some of them
//!   have not received yet), or at `--flood-rate` messages/s if that is lower.
//! - **10 well-behaved subscribers** (`--subscribers`) of `flood` with `pushloop.v1`, one
//!   thread each, reading promptly. Every message must arrive exactly once and in order:
//!   consecutive ids, each publisher's numbers consecutive from 0, payload intact. After
//!   the publishers stop, each must have all of them within 10 s.
//! - **50 slow readers** (`--slow-readers`) of `flood` with `pushloop.v1` and a 4 KiB
//!   receive buffer: two in five read nothing until the flood has sent enough to fill
//!   the kernel's socket buffers and `--max-backlog` (at most 3 s), two in five read 64
//!   bytes every 100 ms and one in five nothing at all, both for `--close-timeout` + 2 s;
//!   then each reads at full speed (with a 1 MiB buffer) for a second, and closes
//!   itself if the server has not (with `open`, it closes at once and reads until the
//!   answer). With `--slow-expect 1008` (the `close` backlog policy)
//!   each must end with a Close 1008 after a gap-free run of ids; those still slow after
//!   the close timeout may instead see the connection end without a Close (the server
//!   gave up on them and dropped what it had queued); one that read nothing while the
//!   flood sent that much and was not closed is a failure (if the flood was slower than
//!   that, it is counted as "not pressed"). With `--slow-expect open` (policies that drop
//!   messages instead of the reader) none may get a Close from the server, ids must only
//!   increase (gaps allowed), and some must stay open until they close themselves; the
//!   others may be dropped without a Close (the keepalive's ping reaches a reader that
//!   read nothing for seconds only behind what the kernel holds, too late to answer).
//! - **malformed frames and requests** (`--malformed-rate` a second, two threads): an
//!   upgrade to `/ws/abuse` followed by one bad frame (unmasked; reserved opcode; RSV1;
//!   126-byte ping; fragmented ping; close code 1004 or 1005; one-byte close body; bad
//!   UTF-8 in a text message, whole or split across fragments, or in a close reason;
//!   continuation without a start; new message inside a fragmented one; non-minimal
//!   length; length with the top bit set; frame over `--max-frame`) or a bad request (bad
//!   key, version 8, garbage, 9 KiB head). Each must get its exact answer (Close 1002,
//!   1007 or 1009; 400, 426 or 431; for the bad close reason 1002 or 1007) and then the
//!   end of the connection.
//!
//! Every second one line: elapsed time, the server's VmRSS and open descriptors (from
//! `/proc/PID`), WebSocket members (summed from `GET /channels`), the server loop's CPU
//! use and time spent waiting for a CPU (`/proc/PID/schedstat`: other processes on the
//! machine), publish and delivery rates, churn rate and failures, slowloris drops,
//! slow-reader endings, malformed cases.
//!
//! Memory. The run has two phases of the same abuse: a warm-up (`--warmup`, 15 s) and the
//! soak (`--secs`). After each, every client leaves, and within `--settle` seconds the
//! server must be back to no WebSocket member and no more descriptors than before the
//! first client. "Start" is the RSS after the warm-up's clients left: by then the slab,
//! the maps, the timer heap, the channels' history and the allocator's free lists have
//! seen the full load once, so what the soak adds on top is what it leaks (a leak of
//! 100 bytes per connection or per published message would show as several MB). The
//! RSS after the soak's clients left must not exceed it by more than `--rss-tolerance`
//! (10%). The RSS when listening before any client ("cold") and the peak (VmHWM) are
//! printed for reference. With `--heap-stats LOG` (the server's stderr), gdb makes the
//! server call glibc's `malloc_stats()` at those idle moments: the heap's size and the
//! bytes in use show whether RSS above "cold" is memory in use or memory glibc keeps.
//! (It is mostly the latter: glibc's malloc keeps freed heap pages, so after a load the
//! idle RSS stays near the load's high-water mark instead of going back to "cold";
//! that is why "start" is taken after a warm-up.)
//!
//! Every socket has read and write timeouts (blocking ones) or a deadline checked on each
//! turn (non-blocking ones), every loop ends when the phase stops, and every wait at the
//! end of a phase is bounded, so the whole run stops by itself. Only loopback addresses
//! are accepted. Exit status: 0 PASS, 1 FAIL, 2 bad arguments.

use clap::Parser;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use pushloop_tools::sockets::connect_from;
use pushloop_wire::{
    apply_mask, close_code, close_payload, encode_client_frame, encode_frame, encode_header,
    head_len, parse_frame, parse_header, upgrade_headers, upgrade_request, write_request_head,
    Frame, Length, OpCode, ResponseHead, NO_STATUS, RSV1, SAMPLE_ACCEPT, SAMPLE_KEY,
};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use std::fmt::Display;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The `Sec-WebSocket-Key` every client sends: the sample nonce of RFC 6455 §1.3.
const KEY: &str = SAMPLE_KEY;
/// Its `Sec-WebSocket-Accept`, as given in RFC 6455 §1.3.
const ACCEPT: &str = SAMPLE_ACCEPT;
/// The subprotocol for JSON envelopes with ids.
const ENVELOPE: &str = "pushloop.v1";
/// A flood message as a subscriber with envelopes gets it, up to the id.
const MESSAGE_PREFIX: &[u8] = b"{\"type\":\"message\",\"channel\":\"flood\",\"id\":";
/// The acknowledgement of the WebSocket publisher's message, up to the id.
const ACK_PREFIX: &[u8] = b"{\"type\":\"ack\",\"channel\":\"flood\",\"id\":";
/// Read and write timeout of blocking sockets; bound of every single wait.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Problems printed in full per phase; the rest are only counted.
const SHOWN: u64 = 40;
/// The publishers' tags in payloads: WebSocket chat, HTTP POST.
const PUBLISHERS: [u8; 2] = [b'W', b'H'];
/// Churners connecting or handshaking at once (below the server's listen backlog).
const CHURN_PENDING: usize = 200;
/// Source addresses 127.0.0.1..=this for churners.
const CHURN_SOURCES: u8 = 8;
/// Receive buffer of slow readers.
const SLOW_RCVBUF: usize = 4096;
/// The longest a "stall" slow reader reads nothing (it stops sooner once the flood sent
/// enough to overflow its queue): below the keepalive's ping interval + pong timeout.
const SLOW_STALL: Duration = Duration::from_secs(3);
/// HTTP requests pipelined by the POST publisher.
const PIPELINE: u64 = 16;
/// The `Host` of every request.
const HOST: &str = "127.0.0.1";

/// How slow readers must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlowExpect {
    /// The server closes them with this code (the `close` backlog policy: 1008).
    Code(u16),
    /// The server keeps them open (a policy that drops messages instead).
    Open,
}

fn parse_expect(s: &str) -> Result<SlowExpect, String> {
    if s == "open" {
        return Ok(SlowExpect::Open);
    }
    s.parse::<u16>()
        .map(SlowExpect::Code)
        .map_err(|_| format!("a close code or `open`, not {s:?}"))
}

/// A soak/abuse test of a running pushloop server (see the module documentation).
#[derive(Parser, Debug, Clone)]
#[command(about, long_about = None)]
struct Cli {
    /// The server's address, HOST:PORT (loopback only).
    #[arg(long)]
    addr: String,
    /// The server's process id (for its VmRSS, VmHWM and open descriptors).
    #[arg(long)]
    server_pid: u32,
    /// Seconds of abuse in the measured phase.
    #[arg(long, default_value_t = 60.0)]
    secs: f64,
    /// Seconds of the warm-up phase (0: none; "start" is then the cold RSS). Long
    /// enough for every kind of slow reader to live a whole life (close timeout + 3 s).
    #[arg(long, default_value_t = 15.0)]
    warmup: f64,
    /// Churning clients kept connected.
    #[arg(long, default_value_t = 1000)]
    churners: usize,
    /// Chat rooms the churners spread over.
    #[arg(long, default_value_t = 50)]
    rooms: usize,
    /// Give every churner connection a room of its own (never used again).
    #[arg(long)]
    unique_rooms: bool,
    /// Slowloris sockets.
    #[arg(long, default_value_t = 200)]
    slowloris: usize,
    /// Slow readers of the flooded channel.
    #[arg(long, default_value_t = 50)]
    slow_readers: usize,
    /// Well-behaved subscribers of the flooded channel.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Total publish rate in messages/s (0: as fast as the window allows).
    #[arg(long, default_value_t = 0.0)]
    flood_rate: f64,
    /// Most messages published and not yet received by every well-behaved subscriber.
    #[arg(long, default_value_t = 1000)]
    flood_window: u64,
    /// Payload bytes of a flood message (at least 13).
    #[arg(long, default_value_t = 64)]
    flood_size: usize,
    /// Malformed frames or requests per second.
    #[arg(long, default_value_t = 100.0)]
    malformed_rate: f64,
    /// The server's --handshake-timeout in seconds.
    #[arg(long, default_value_t = 2.0)]
    handshake_timeout: f64,
    /// The server's --close-timeout in seconds.
    #[arg(long, default_value_t = 5.0)]
    close_timeout: f64,
    /// The server's --max-backlog in bytes.
    #[arg(long, default_value_t = 262_144)]
    max_backlog: u64,
    /// The server's --max-frame (the oversized frame claims one byte more).
    #[arg(long, default_value_t = 16 << 20)]
    max_frame: u64,
    /// How slow readers must end: a close code (1008: the `close` backlog policy), or
    /// `open` (a policy that drops messages: the connection must stay open).
    #[arg(long, default_value = "1008", value_parser = parse_expect)]
    slow_expect: SlowExpect,
    /// Seconds to wait after a phase for the server to have no connection left.
    #[arg(long, default_value_t = 15.0)]
    settle: f64,
    /// Largest allowed growth of the RSS from start to end, as a fraction.
    #[arg(long, default_value_t = 0.10)]
    rss_tolerance: f64,
    /// The server's log (its stderr). With it, when no client is connected (before the
    /// first, and after each phase), gdb makes the server call glibc's `malloc_stats()`,
    /// which writes the heap's size and the bytes in use there (information only).
    #[arg(long, value_name = "PATH")]
    heap_stats: Option<std::path::PathBuf>,
}

// ---------------------------------------------------------------------------------------
// Counters

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Counters of one phase, shared by all threads.
        #[derive(Default)]
        struct Stats { $($name: AtomicU64,)* }
        /// Their values at one moment.
        #[derive(Default, Clone, Copy, Debug)]
        struct Snap { $($name: u64,)* }
        impl Stats {
            fn snap(&self) -> Snap {
                Snap { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters!(
    // churners
    ch_connects,
    ch_busy,
    ch_fail,
    ch_clean,
    ch_abrupt,
    ch_sent,
    ch_recv,
    ch_acks,
    ch_gaps,
    // slowloris
    lo_conns,
    lo_dropped,
    lo_answered,
    lo_early,
    lo_late,
    lo_never,
    lo_unobserved,
    lo_fail,
    // slow readers
    sl_conns,
    sl_closed_expected,
    sl_closed_other,
    sl_eof,
    sl_survived,
    sl_cut,
    sl_unpressed,
    sl_fail,
    sl_msgs,
    sl_gaps,
    // flood
    pub_w,
    pub_h,
    pub_fail,
    w_acks,
    good_deliv,
    good_lost,
    good_reorder,
    good_corrupt,
    good_id_gaps,
    good_fail,
    // malformed
    bad_ok,
    bad_wrong,
    bad_fail,
);

/// The flow control between the publishers and the well-behaved subscribers.
struct Flood {
    /// Messages the publishers have sent (both).
    sent: AtomicU64,
    /// Messages each subscriber has received.
    recv: Vec<AtomicU64>,
    /// Subscribers that failed (left out of the flow control).
    dead: Vec<AtomicBool>,
    /// Subscribers that finished their handshake (or failed it).
    ready: AtomicU64,
    /// Publishers that stopped; once both have, `total` holds what each sent.
    finished: AtomicU64,
    total: [AtomicU64; 2],
    /// The highest id a publisher was told (acks, POST answers).
    last_id: AtomicU64,
}

impl Flood {
    fn new(subscribers: usize) -> Self {
        Flood {
            sent: AtomicU64::new(0),
            recv: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            dead: (0..subscribers).map(|_| AtomicBool::new(false)).collect(),
            ready: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            total: [AtomicU64::new(0), AtomicU64::new(0)],
            last_id: AtomicU64::new(0),
        }
    }

    /// How many more messages may be sent now.
    fn room(&self, window: u64) -> u64 {
        let sent = self.sent.load(Relaxed);
        let landed = self
            .recv
            .iter()
            .zip(&self.dead)
            .filter(|(_, d)| !d.load(Relaxed))
            .map(|(r, _)| r.load(Relaxed))
            .min()
            .unwrap_or(sent);
        window.saturating_sub(sent.saturating_sub(landed))
    }

    /// A publisher stopped after sending `count` messages.
    fn finish(&self, publisher: usize, count: u64) {
        self.total[publisher].store(count, Relaxed);
        self.finished.fetch_add(1, Relaxed);
    }

    /// What each publisher sent, once both stopped.
    fn totals(&self) -> Option<[u64; 2]> {
        (self.finished.load(Relaxed) >= 2)
            .then(|| [self.total[0].load(Relaxed), self.total[1].load(Relaxed)])
    }
}

/// What the threads of one phase share.
struct Shared {
    cli: Cli,
    addr: SocketAddr,
    stop: AtomicBool,
    stats: Stats,
    flood: Flood,
    shown: AtomicU64,
    /// Slowloris drop latencies in ms.
    loris_ms: Mutex<Vec<u32>>,
    /// Malformed cases answered as expected, and wrongly, per case.
    case_ok: Vec<AtomicU64>,
    case_wrong: Vec<AtomicU64>,
}

impl Shared {
    fn new(cli: &Cli, addr: SocketAddr) -> Self {
        Shared {
            cli: cli.clone(),
            addr,
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            flood: Flood::new(cli.subscribers),
            shown: AtomicU64::new(0),
            loris_ms: Mutex::new(Vec::new()),
            case_ok: CASES.iter().map(|_| AtomicU64::new(0)).collect(),
            case_wrong: CASES.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Prints a problem (the first few of the phase).
    fn note(&self, what: &str, msg: impl Display) {
        let n = self.shown.fetch_add(1, Relaxed);
        // On stdout, like the per-second lines, so that lines do not interleave.
        if n < SHOWN {
            println!("  ! {what}: {msg}");
        } else if n == SHOWN {
            println!("  ! more problems in this phase: only counted from now on");
        }
    }

    /// Counts a failure in `counter` and prints it.
    fn fail(&self, counter: &AtomicU64, what: &str, msg: impl Display) {
        counter.fetch_add(1, Relaxed);
        self.note(what, msg);
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers: randomness, frames, HTTP

/// xorshift64: cheap, not cryptographic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }
    fn key(&mut self) -> [u8; 4] {
        (self.next() as u32).to_ne_bytes()
    }
}

/// A Close frame with `code`.
fn close_frame(code: u16, key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    encode_client_frame(OpCode::Close, &close_payload(code, ""), key, &mut out);
    out
}

/// The code of a Close frame's payload (1005 when it has none).
fn code_of(payload: &[u8]) -> u16 {
    close_code(payload).unwrap_or(NO_STATUS)
}

/// Received bytes not yet decoded.
#[derive(Default)]
struct Inbuf {
    data: Vec<u8>,
    pos: usize,
}

impl Inbuf {
    fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.data.len() {
            self.data.clear();
            self.pos = 0;
        } else if self.pos >= 64 << 10 {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    /// The next whole frame: without RSV bits (no extension is offered), of a known
    /// opcode, at most 64 MiB.
    fn next(&mut self) -> Result<Option<Frame<'_>>, String> {
        let buf = &self.data[self.pos..];
        let Some(frame) = parse_frame(buf).map_err(|e| e.to_string())? else {
            return match parse_header(buf) {
                Ok(Some(h)) if h.payload_len > 64 << 20 => {
                    Err(format!("server frame of {} bytes", h.payload_len))
                }
                _ => Ok(None),
            };
        };
        if frame.rsv != 0 {
            return Err(format!("server frame with RSV bits: {:#04x}", frame.rsv));
        }
        if frame.opcode.is_reserved() {
            return Err(format!("server frame with opcode {:?}", frame.opcode));
        }
        self.pos += frame.len;
        Ok(Some(frame))
    }

    /// Bytes of a frame that has not arrived whole.
    fn partial(&self) -> usize {
        self.data.len() - self.pos
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

/// An upgrade request for `path`, offering `protocol`.
fn ws_request(path: &str, protocol: Option<&str>) -> Vec<u8> {
    match protocol {
        Some(p) => upgrade_request(path, HOST, KEY, &[("Sec-WebSocket-Protocol", p)]),
        None => upgrade_request(path, HOST, KEY, &[]),
    }
}

/// A whole response head (as `read_head` returns it).
fn parse_head(head: &[u8]) -> Result<ResponseHead<'_>, String> {
    match ResponseHead::parse(head) {
        Ok(Some(head)) => Ok(head),
        Ok(None) => Err(format!(
            "incomplete head {:?}",
            String::from_utf8_lossy(head)
        )),
        Err(e) => Err(format!("{e} in {:?}", String::from_utf8_lossy(head))),
    }
}

/// Checks the answer to an upgrade: `Err((status, why))` unless a right 101.
fn check_upgrade(head: &[u8], protocol: Option<&str>) -> Result<(), (u16, String)> {
    let head = parse_head(head).map_err(|e| (0, e))?;
    if head.status != 101 {
        return Err((
            head.status,
            format!("upgrade refused: {} {}", head.status, head.reason),
        ));
    }
    if head.header("sec-websocket-accept") != Some(ACCEPT) {
        return Err((101, "wrong Sec-WebSocket-Accept".into()));
    }
    if protocol.is_some() && head.header("sec-websocket-protocol") != protocol {
        return Err((101, format!("subprotocol {protocol:?} not chosen")));
    }
    Ok(())
}

/// Reads a response head from a blocking socket; returns it and the bytes after it.
fn read_head(stream: &mut TcpStream, limit: Instant) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(len) = head_len(&buf) {
            let rest = buf.split_off(len);
            return Ok((buf, rest));
        }
        if Instant::now() > limit || buf.len() > 16 << 10 {
            return Err(format!("no response head in time ({} bytes)", buf.len()));
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "end of stream before a response head (got {:?})",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// A blocking connection with timeouts (and a receive buffer size, set before connect).
fn connect(addr: SocketAddr, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    socket.connect_timeout(&SockAddr::from(addr), IO_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// A blocking WebSocket client after its upgrade, and what came after the 101.
fn ws_open(
    addr: SocketAddr,
    path: &str,
    protocol: Option<&str>,
    rcvbuf: Option<usize>,
) -> Result<(TcpStream, Inbuf), (u16, String)> {
    let mut stream = connect(addr, rcvbuf).map_err(|e| (0, format!("connect: {e}")))?;
    stream
        .write_all(&ws_request(path, protocol))
        .map_err(|e| (0, format!("write: {e}")))?;
    let (head, rest) = read_head(&mut stream, Instant::now() + IO_TIMEOUT).map_err(|e| (0, e))?;
    check_upgrade(&head, protocol)?;
    let mut inb = Inbuf::default();
    inb.push(&rest);
    Ok((stream, inb))
}

/// After our Close: reads until the server's Close and the end of the stream (bounded).
/// Returns the server's close code.
fn finish_close(stream: &mut TcpStream, inb: &mut Inbuf) -> Result<u16, String> {
    let limit = Instant::now() + IO_TIMEOUT;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut code = None;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        while let Some(frame) = inb.next()? {
            if frame.opcode == OpCode::Close && code.is_none() {
                code = Some(code_of(frame.payload));
            }
        }
        if Instant::now() > limit {
            return Err(format!(
                "close not finished in {IO_TIMEOUT:?} (server Close: {code:?})"
            ));
        }
        match stream.read(&mut buf) {
            Ok(0) => return code.ok_or_else(|| "end of stream without a Close".to_string()),
            Ok(n) => inb.push(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("read while closing: {e} (server Close: {code:?})")),
        }
    }
}

/// `P` and 12 digits of the sequence number, then a pattern that depends on it.
fn make_payload(publisher: u8, seq: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.push(publisher);
    out.extend_from_slice(format!("{seq:012}").as_bytes());
    out.extend((0..size.saturating_sub(13) as u64).map(|i| b'a' + ((seq + i) % 26) as u8));
}

/// The publisher index and sequence number of a payload, if it is intact.
fn check_payload(data: &[u8], size: usize) -> Option<(usize, u64)> {
    if data.len() != size.max(13) {
        return None;
    }
    let publisher = PUBLISHERS.iter().position(|&p| p == data[0])?;
    let seq = parse_u64(&data[1..13])?;
    let intact = data[13..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == b'a' + ((seq + i as u64) % 26) as u8);
    intact.then_some((publisher, seq))
}

/// The id and data of a flood message envelope.
fn parse_envelope(text: &[u8]) -> Option<(u64, &[u8])> {
    let rest = text.strip_prefix(MESSAGE_PREFIX)?;
    let comma = rest.iter().position(|&b| b == b',')?;
    let id = parse_u64(&rest[..comma])?;
    let data = rest[comma..]
        .strip_prefix(b",\"data\":\"")?
        .strip_suffix(b"\"}")?;
    Some((id, data))
}

// ---------------------------------------------------------------------------------------
// The server, seen from outside

/// A field (in kB) of /proc/PID/status.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn rss_kb(pid: u32) -> u64 {
    proc_status_kb(pid, "VmRSS:").unwrap_or(0)
}

/// The server's glibc heap as `(bytes from the system, bytes in use)`: gdb attaches and
/// calls `malloc_stats()`, which prints to the server's stderr, `log` (bounded: 30 s).
fn heap_stats(pid: u32, log: &std::path::Path) -> Option<(u64, u64)> {
    use std::process::{Command, Stdio};
    let mut gdb = Command::new("gdb")
        .args(["-q", "-batch", "-nx", "-p", &pid.to_string()])
        .args(["-ex", "call (void) malloc_stats()"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        match gdb.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < limit => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = gdb.kill();
                let _ = gdb.wait();
                return None;
            }
        }
    }
    let text = std::fs::read_to_string(log).ok()?;
    let total = &text[text.rfind("Total (incl. mmap):")?..];
    let field = |name: &str| -> Option<u64> {
        let rest = &total[total.find(name)? + name.len()..];
        rest.trim_start()
            .strip_prefix('=')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("system bytes")?, field("in use bytes")?))
}

/// `heap_stats` as text for the report.
fn heap_text(heap: Option<(u64, u64)>) -> String {
    heap.map_or("?".into(), |(system, used)| {
        format!(
            "{} kB in use of {} kB",
            fmt_n(used / 1024),
            fmt_n(system / 1024)
        )
    })
}

/// Open descriptors of the server.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// WebSocket members summed over `GET /channels`, and the number of channels listed.
fn channel_members(addr: SocketAddr) -> Result<(u64, u64), String> {
    let mut stream = connect(addr, None).map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(b"GET /channels HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let (head, mut body) = read_head(&mut stream, Instant::now() + IO_TIMEOUT)?;
    let head = parse_head(&head)?;
    if head.status != 200 {
        return Err(format!("GET /channels: {} {}", head.status, head.reason));
    }
    let len = head
        .content_length()
        .map_err(|e| e.to_string())?
        .ok_or("no Content-Length")?;
    let mut chunk = [0u8; 16384];
    let limit = Instant::now() + IO_TIMEOUT;
    while body.len() < len && Instant::now() < limit {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let body = String::from_utf8_lossy(&body);
    let mut members = 0;
    let mut channels = 0;
    for piece in body.split("\"websocket\":").skip(1) {
        let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
        members += digits.parse::<u64>().unwrap_or(0);
        channels += 1;
    }
    Ok((members, channels))
}

// ---------------------------------------------------------------------------------------
// Well-behaved subscribers

/// What a subscriber has seen of the flood.
#[derive(Default)]
struct Order {
    next_id: Option<u64>,
    next_seq: [u64; 2],
}

impl Order {
    /// Checks one message; returns what was wrong with it, if anything.
    fn check(&mut self, text: &[u8], size: usize, st: &Stats) -> Option<String> {
        let Some((id, data)) = parse_envelope(text) else {
            st.good_corrupt.fetch_add(1, Relaxed);
            return Some(format!(
                "not a flood message: {:?}",
                String::from_utf8_lossy(&text[..text.len().min(80)])
            ));
        };
        let mut problem = None;
        if let Some(next) = self.next_id {
            if id != next {
                st.good_id_gaps.fetch_add(1, Relaxed);
                problem = Some(format!("id {id} after {}", next - 1));
            }
        }
        self.next_id = Some(self.next_id.map_or(id + 1, |n| n.max(id + 1)));
        match check_payload(data, size) {
            Some((p, seq)) => {
                let want = self.next_seq[p];
                if seq > want {
                    st.good_lost.fetch_add(seq - want, Relaxed);
                    problem.get_or_insert(format!(
                        "{} #{seq} after #{want}: {} missing",
                        PUBLISHERS[p] as char,
                        seq - want
                    ));
                } else if seq < want {
                    st.good_reorder.fetch_add(1, Relaxed);
                    problem.get_or_insert(format!(
                        "{} #{seq} again or late (expected #{want})",
                        PUBLISHERS[p] as char
                    ));
                }
                self.next_seq[p] = want.max(seq + 1);
            }
            None => {
                st.good_corrupt.fetch_add(1, Relaxed);
                problem.get_or_insert(format!("corrupt payload at id {id}"));
            }
        }
        problem
    }
}

fn subscriber(sh: Arc<Shared>, idx: usize) {
    let fl = &sh.flood;
    let opened = ws_open(sh.addr, "/ws/flood", Some(ENVELOPE), None);
    fl.ready.fetch_add(1, Relaxed);
    let (mut stream, mut inb) = match opened {
        Ok(x) => x,
        Err((_, e)) => {
            fl.dead[idx].store(true, Relaxed);
            return sh.fail(&sh.stats.good_fail, "subscriber", format!("{idx}: {e}"));
        }
    };
    let mut order = Order::default();
    let result = subscribe(&sh, idx, &mut stream, &mut inb, &mut order);
    fl.dead[idx].store(true, Relaxed);
    if let Err(e) = result {
        return sh.fail(&sh.stats.good_fail, "subscriber", format!("{idx}: {e}"));
    }
    let mut rng = Rng::new(idx as u64 + 1000);
    let closed = stream
        .write_all(&close_frame(1000, rng.key()))
        .map_err(|e| format!("write Close: {e}"))
        .and_then(|()| finish_close(&mut stream, &mut inb));
    match closed {
        Ok(1000) => {}
        Ok(code) => sh.fail(
            &sh.stats.good_fail,
            "subscriber",
            format!("{idx}: Close 1000 answered with {code}"),
        ),
        Err(e) => sh.fail(&sh.stats.good_fail, "subscriber", format!("{idx}: {e}")),
    }
}

/// Reads the flood until every message the publishers sent arrived (or 10 s after they
/// stopped).
fn subscribe(
    sh: &Shared,
    idx: usize,
    stream: &mut TcpStream,
    inb: &mut Inbuf,
    order: &mut Order,
) -> Result<(), String> {
    let (fl, st, size) = (&sh.flood, &sh.stats, sh.cli.flood_size);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut rng = Rng::new(idx as u64 + 1);
    let mut buf = vec![0u8; 256 << 10];
    let mut pong = Vec::new();
    let mut last_data = Instant::now();
    let mut give_up: Option<Instant> = None;
    loop {
        while let Some(frame) = inb.next()? {
            match frame.opcode {
                OpCode::Text if frame.fin => {
                    if let Some(problem) = order.check(frame.payload, size, st) {
                        sh.note("subscriber", format!("{idx}: {problem}"));
                    }
                    fl.recv[idx].fetch_add(1, Relaxed);
                    st.good_deliv.fetch_add(1, Relaxed);
                }
                OpCode::Ping => {
                    pong.clear();
                    encode_client_frame(OpCode::Pong, frame.payload, rng.key(), &mut pong);
                    stream
                        .write_all(&pong)
                        .map_err(|e| format!("write pong: {e}"))?;
                }
                OpCode::Pong => {}
                OpCode::Close => {
                    return Err(format!("the server closed with {}", code_of(frame.payload)))
                }
                op => return Err(format!("unexpected frame: {op:?}, fin {}", frame.fin)),
            }
        }
        if let Some(totals) = fl.totals() {
            let have = order.next_seq;
            if have[0] >= totals[0] && have[1] >= totals[1] {
                return Ok(());
            }
            if Instant::now() > *give_up.get_or_insert(Instant::now() + Duration::from_secs(10)) {
                let missing = totals[0].saturating_sub(have[0]) + totals[1].saturating_sub(have[1]);
                st.good_lost.fetch_add(missing, Relaxed);
                return Err(format!(
                    "{missing} messages never arrived (W {}/{}, H {}/{})",
                    have[0], totals[0], have[1], totals[1]
                ));
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err("the server ended the connection".into()),
            Ok(n) => {
                inb.push(&buf[..n]);
                last_data = Instant::now();
            }
            Err(e) if is_timeout(&e) => {
                if last_data.elapsed() > Duration::from_secs(10) && fl.totals().is_none() {
                    return Err("nothing received for 10 s during the flood".into());
                }
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Publishers

/// Waits until `n` more messages may go (window and rate); 0 once the phase stops.
fn allowance(sh: &Shared, rate_start: Instant, rate: f64, seq: u64, max: u64) -> u64 {
    while !sh.stopping() {
        let room = sh.flood.room(sh.cli.flood_window);
        let due = if rate > 0.0 {
            ((rate_start.elapsed().as_secs_f64() * rate) as u64).saturating_sub(seq)
        } else {
            u64::MAX
        };
        let n = room.min(due).min(max);
        if n > 0 {
            return n;
        }
        thread::sleep(Duration::from_micros(200));
    }
    0
}

/// The WebSocket publisher: chats into `flood`; the server acknowledges each message.
fn publisher_ws(sh: Arc<Shared>) {
    let (mut sent, mut finished) = (0, false);
    if let Err(e) = publish_ws(&sh, &mut sent, &mut finished) {
        sh.fail(&sh.stats.pub_fail, "publisher W", e);
    }
    if !finished {
        sh.flood.finish(0, sent);
    }
}

fn publish_ws(sh: &Arc<Shared>, sent: &mut u64, finished: &mut bool) -> Result<(), String> {
    let (stream, inb) = ws_open(sh.addr, "/ws/flood", Some(ENVELOPE), None).map_err(|(_, e)| e)?;
    let reader = stream.try_clone().map_err(|e| e.to_string())?;
    let writer = Arc::new(Mutex::new(stream));
    let closing = Arc::new(AtomicBool::new(false));
    let acks = {
        let (sh, writer, closing) = (sh.clone(), writer.clone(), closing.clone());
        thread::Builder::new()
            .name("pub-w-read".into())
            .spawn(move || ack_reader(&sh, reader, inb, &writer, &closing))
            .map_err(|e| e.to_string())?
    };
    let rate = sh.cli.flood_rate / 2.0;
    let mut rng = Rng::new(42);
    let (mut payload, mut batch) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut result = Ok(());
    loop {
        let n = allowance(sh, start, rate, *sent, 32);
        if n == 0 {
            break;
        }
        batch.clear();
        for i in 0..n {
            make_payload(b'W', *sent + i, sh.cli.flood_size, &mut payload);
            encode_client_frame(OpCode::Text, &payload, rng.key(), &mut batch);
        }
        sh.flood.sent.fetch_add(n, Relaxed);
        *sent += n;
        sh.stats.pub_w.fetch_add(n, Relaxed);
        let written = writer.lock().map_or(Ok(()), |mut w| w.write_all(&batch));
        if let Err(e) = written {
            result = Err(format!("write: {e}"));
            break;
        }
    }
    sh.flood.finish(0, *sent);
    *finished = true;
    // Every message acknowledged (bounded), then the close handshake.
    let limit = Instant::now() + Duration::from_secs(10);
    while sh.stats.w_acks.load(Relaxed) < *sent && Instant::now() < limit && !acks.is_finished() {
        thread::sleep(Duration::from_millis(10));
    }
    let acked = sh.stats.w_acks.load(Relaxed);
    if acked != *sent && result.is_ok() {
        result = Err(format!("{acked} of {sent} messages acknowledged"));
    }
    closing.store(true, Relaxed);
    if let Ok(mut w) = writer.lock() {
        let _ = w.write_all(&close_frame(1000, rng.key()));
    }
    match acks.join() {
        Ok(Ok(())) => result,
        Ok(Err(e)) => result.and(Err(e)),
        Err(_) => result.and(Err("ack reader panicked".into())),
    }
}

/// Reads what the WebSocket publisher gets: acks (ids must grow), the POST publisher's
/// messages, pings; ends with the close handshake.
fn ack_reader(
    sh: &Shared,
    mut stream: TcpStream,
    mut inb: Inbuf,
    writer: &Mutex<TcpStream>,
    closing: &AtomicBool,
) -> Result<(), String> {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut rng = Rng::new(7);
    let mut buf = vec![0u8; 256 << 10];
    let mut last_ack = 0;
    let mut close_limit = None;
    let mut got_close = None;
    loop {
        while let Some(frame) = inb.next()? {
            match frame.opcode {
                OpCode::Text => {
                    if let Some(rest) = frame.payload.strip_prefix(ACK_PREFIX) {
                        let id = rest
                            .strip_suffix(b"}")
                            .and_then(parse_u64)
                            .ok_or("malformed ack")?;
                        if id <= last_ack {
                            return Err(format!("ack {id} after ack {last_ack}"));
                        }
                        last_ack = id;
                        sh.flood.last_id.fetch_max(id, Relaxed);
                        sh.stats.w_acks.fetch_add(1, Relaxed);
                    } else if !frame.payload.starts_with(MESSAGE_PREFIX) {
                        return Err(format!(
                            "unexpected text {:?}",
                            String::from_utf8_lossy(&frame.payload[..frame.payload.len().min(80)])
                        ));
                    }
                }
                OpCode::Ping => {
                    let mut pong = Vec::new();
                    encode_client_frame(OpCode::Pong, frame.payload, rng.key(), &mut pong);
                    if let Ok(mut w) = writer.lock() {
                        w.write_all(&pong).map_err(|e| format!("write pong: {e}"))?;
                    }
                }
                OpCode::Close => {
                    let code = code_of(frame.payload);
                    if !closing.load(Relaxed) {
                        return Err(format!("the server closed with {code}"));
                    }
                    got_close = Some(code);
                }
                OpCode::Pong => {}
                op => return Err(format!("unexpected opcode {op:?}")),
            }
        }
        if closing.load(Relaxed)
            && Instant::now() > *close_limit.get_or_insert(Instant::now() + IO_TIMEOUT)
        {
            return Err("close handshake not finished in time".into());
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                return match got_close {
                    Some(1000) => Ok(()),
                    Some(code) => Err(format!("Close 1000 answered with {code}")),
                    None => Err("the server ended the connection without a Close".into()),
                }
            }
            Ok(n) => inb.push(&buf[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// The HTTP publisher: pipelined `POST /publish/flood` on a keep-alive connection.
fn publisher_http(sh: Arc<Shared>) {
    let mut sent = 0;
    if let Err(e) = publish_http(&sh, &mut sent) {
        sh.fail(&sh.stats.pub_fail, "publisher H", e);
    }
    sh.flood.finish(1, sent);
}

fn publish_http(sh: &Shared, sent: &mut u64) -> Result<(), String> {
    let rate = sh.cli.flood_rate / 2.0;
    // The server closes a keep-alive connection idle for the handshake timeout.
    let idle = Duration::from_secs_f64(sh.cli.handshake_timeout / 2.0);
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    let mut last_use = Instant::now();
    let mut last_id = 0;
    let (mut payload, mut batch) = (Vec::new(), Vec::new());
    let start = Instant::now();
    loop {
        let n = allowance(sh, start, rate, *sent, PIPELINE);
        if n == 0 {
            return Ok(());
        }
        if last_use.elapsed() > idle {
            conn = None;
        }
        let (stream, inb) = match &mut conn {
            Some(c) => c,
            None => conn.insert((
                connect(sh.addr, None).map_err(|e| e.to_string())?,
                Vec::new(),
            )),
        };
        batch.clear();
        for i in 0..n {
            make_payload(b'H', *sent + i, sh.cli.flood_size, &mut payload);
            let len = payload.len().to_string();
            let headers = [
                ("Host", HOST),
                ("Content-Type", "text/plain"),
                ("Content-Length", &len),
            ];
            write_request_head("POST", "/publish/flood", headers, &mut batch);
            batch.extend_from_slice(&payload);
        }
        sh.flood.sent.fetch_add(n, Relaxed);
        *sent += n;
        sh.stats.pub_h.fetch_add(n, Relaxed);
        stream
            .write_all(&batch)
            .map_err(|e| format!("write: {e}"))?;
        let mut keep = true;
        for _ in 0..n {
            let answer = read_response(stream, inb)?;
            if answer.status != 200 {
                return Err(format!(
                    "publish answered {} {:?}",
                    answer.status, answer.body
                ));
            }
            let id = answer
                .body
                .strip_prefix("{\"id\":")
                .and_then(|r| r.split(',').next())
                .and_then(|d| d.parse::<u64>().ok())
                .ok_or_else(|| format!("bad publish answer {:?}", answer.body))?;
            if id <= last_id {
                return Err(format!("publish id {id} after {last_id}"));
            }
            last_id = id;
            sh.flood.last_id.fetch_max(id, Relaxed);
            keep &= answer.keep_alive;
        }
        last_use = Instant::now();
        if !keep {
            conn = None;
        }
    }
}

/// An answer to a publish request.
struct Answer {
    status: u16,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    body: String,
}

/// Reads one response with a Content-Length body from a keep-alive connection.
fn read_response(stream: &mut TcpStream, inb: &mut Vec<u8>) -> Result<Answer, String> {
    let limit = Instant::now() + IO_TIMEOUT;
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(head) = ResponseHead::parse(inb).map_err(|e| e.to_string())? {
            if let Some(body) = head.body(inb).map_err(|e| format!("{e} in {head:?}"))? {
                let answer = Answer {
                    status: head.status,
                    keep_alive: head
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
                    body: String::from_utf8_lossy(body).into_owned(),
                };
                let used = head.len + body.len();
                inb.drain(..used);
                return Ok(answer);
            }
        }
        if Instant::now() > limit {
            return Err("no publish answer in time".into());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the server closed the publish connection".into()),
            Ok(n) => inb.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Churning clients (one mio thread)

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CState {
    Idle,
    Connecting,
    Handshaking,
    Open,
    Closing,
}

struct Churner {
    stream: Option<MioStream>,
    state: CState,
    /// Idle: when to reconnect; Open: when to end; others: when to give up.
    deadline: Instant,
    next_send: Instant,
    sends_left: u32,
    seq: u64,
    envelope: bool,
    out: Vec<u8>,
    out_pos: usize,
    head: Vec<u8>,
    inb: Inbuf,
    got_close: Option<u16>,
}

struct Churn {
    sh: Arc<Shared>,
    poll: Poll,
    conns: Vec<Churner>,
    rng: Rng,
    pending: usize,
    scratch: Vec<u8>,
    unique: u64,
}

fn churn(sh: Arc<Shared>) {
    let n = sh.cli.churners;
    if n == 0 {
        return;
    }
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => return sh.fail(&sh.stats.ch_fail, "churn", format!("poll: {e}")),
    };
    let now = Instant::now();
    let conns = (0..n)
        .map(|i| Churner {
            stream: None,
            state: CState::Idle,
            // Spread the first connects over a second.
            deadline: now + Duration::from_micros(i as u64 * 1_000_000 / n as u64),
            next_send: now,
            sends_left: 0,
            seq: 0,
            envelope: false,
            out: Vec::new(),
            out_pos: 0,
            head: Vec::new(),
            inb: Inbuf::default(),
            got_close: None,
        })
        .collect();
    let mut churn = Churn {
        sh,
        poll,
        conns,
        rng: Rng::new(99),
        pending: 0,
        scratch: vec![0; 256 << 10],
        unique: 0,
    };
    churn.run();
}

impl Churn {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut stop_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if self.sh.stopping() && stop_at.is_none() {
                stop_at = Some(now);
                for idx in 0..self.conns.len() {
                    match self.conns[idx].state {
                        CState::Open => self.end(idx),
                        CState::Connecting | CState::Handshaking => self.drop_conn(idx),
                        CState::Idle | CState::Closing => {}
                    }
                }
            }
            if let Some(at) = stop_at {
                if self.conns.iter().all(|c| c.state == CState::Idle) {
                    return;
                }
                if now > at + IO_TIMEOUT + Duration::from_secs(1) {
                    for idx in 0..self.conns.len() {
                        if self.conns[idx].state != CState::Idle {
                            let state = self.conns[idx].state;
                            self.fail(idx, format!("still {state:?} at the end"));
                        }
                    }
                    return;
                }
            }
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_millis(5))) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.sh
                        .fail(&self.sh.stats.ch_fail, "churn", format!("poll: {e}"));
                    return;
                }
            }
            for event in events.iter() {
                let idx = event.token().0;
                if event.is_writable() {
                    self.writable(idx);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.readable(idx);
                }
            }
            self.timers(stop_at.is_some());
        }
    }

    fn timers(&mut self, stopping: bool) {
        let now = Instant::now();
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            match c.state {
                CState::Idle => {
                    if !stopping && now >= c.deadline && self.pending < CHURN_PENDING {
                        self.start(idx, now);
                    }
                }
                CState::Connecting | CState::Handshaking | CState::Closing => {
                    if now >= c.deadline {
                        let state = c.state;
                        self.fail(idx, format!("{state:?} for more than {IO_TIMEOUT:?}"));
                    }
                }
                CState::Open => {
                    if now >= c.deadline {
                        self.end(idx);
                    } else if c.sends_left > 0 && now >= c.next_send {
                        self.chat(idx, now);
                    }
                }
            }
        }
    }

    fn start(&mut self, idx: usize, now: Instant) {
        let src = Ipv4Addr::new(127, 0, 0, 1 + (idx % CHURN_SOURCES as usize) as u8);
        let mut stream = match connect_from(src, self.sh.addr) {
            Ok(s) => s,
            Err(e) => {
                self.conns[idx].deadline = now + Duration::from_millis(100);
                return self
                    .sh
                    .fail(&self.sh.stats.ch_fail, "churn", format!("connect: {e}"));
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.conns[idx].deadline = now + Duration::from_millis(100);
            return self
                .sh
                .fail(&self.sh.stats.ch_fail, "churn", format!("register: {e}"));
        }
        let room = if self.sh.cli.unique_rooms {
            self.unique += 1;
            format!("u{}", self.unique)
        } else {
            format!("room{}", self.rng.below(self.sh.cli.rooms as u64))
        };
        let since = if self.rng.percent(10) { "?since=0" } else { "" };
        let envelope = self.rng.percent(50);
        let request = ws_request(&format!("/ws/{room}{since}"), envelope.then_some(ENVELOPE));
        let c = &mut self.conns[idx];
        c.stream = Some(stream);
        c.state = CState::Connecting;
        c.deadline = now + IO_TIMEOUT;
        c.envelope = envelope;
        c.out.clear();
        c.out.extend_from_slice(&request);
        c.out_pos = 0;
        c.head.clear();
        c.inb = Inbuf::default();
        c.got_close = None;
        self.pending += 1;
    }

    fn writable(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        let Some(stream) = &c.stream else { return };
        if c.state == CState::Connecting {
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(idx, format!("connect: {e}")),
            }
            if stream.peer_addr().is_err() {
                return; // not connected yet
            }
            c.state = CState::Handshaking;
        }
        self.flush(idx);
    }

    fn flush(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if c.state == CState::Connecting {
            return;
        }
        let Some(stream) = &mut c.stream else { return };
        while c.out_pos < c.out.len() {
            match stream.write(&c.out[c.out_pos..]) {
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let state = c.state;
                    return self.fail(idx, format!("write ({state:?}): {e}"));
                }
            }
        }
        c.out.clear();
        c.out_pos = 0;
    }

    fn readable(&mut self, idx: usize) {
        if self.conns[idx].state == CState::Connecting {
            self.writable(idx);
        }
        loop {
            let c = &mut self.conns[idx];
            if !matches!(
                c.state,
                CState::Handshaking | CState::Open | CState::Closing
            ) {
                return;
            }
            let Some(stream) = &mut c.stream else { return };
            let n = match stream.read(&mut self.scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.ended(idx, Some(e)),
            };
            if n == 0 {
                return self.ended(idx, None);
            }
            let bytes = &self.scratch[..n];
            let c = &mut self.conns[idx];
            if c.state == CState::Handshaking {
                c.head.extend_from_slice(bytes);
                let Some(end) = head_len(&c.head) else {
                    if c.head.len() > 8192 {
                        return self.fail(idx, "response head over 8 KiB".into());
                    }
                    continue;
                };
                let rest = c.head.split_off(end);
                let head = std::mem::take(&mut c.head);
                self.handshaken(idx, &head, &rest);
            } else {
                c.inb.push(bytes);
            }
            self.frames(idx);
            self.flush(idx);
        }
    }

    fn handshaken(&mut self, idx: usize, head: &[u8], rest: &[u8]) {
        let envelope = self.conns[idx].envelope;
        match check_upgrade(head, envelope.then_some(ENVELOPE)) {
            Ok(()) => {}
            Err((503, _)) => {
                self.sh.stats.ch_busy.fetch_add(1, Relaxed);
                return self.drop_conn(idx);
            }
            Err((_, e)) => return self.fail(idx, e),
        }
        self.pending -= 1;
        self.sh.stats.ch_connects.fetch_add(1, Relaxed);
        let now = Instant::now();
        let life = self.rng.millis(300, 3000);
        let first = self.rng.millis(20, life.as_millis() as u64 / 2);
        let sends = 1 + self.rng.below(2) as u32;
        let c = &mut self.conns[idx];
        c.state = CState::Open;
        c.deadline = now + life;
        c.next_send = now + first;
        c.sends_left = sends;
        c.inb.push(rest);
    }

    fn frames(&mut self, idx: usize) {
        loop {
            let c = &mut self.conns[idx];
            let frame = match c.inb.next() {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => return self.fail(idx, e),
            };
            let st = &self.sh.stats;
            match frame.opcode {
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    if frame.opcode == OpCode::Text && std::str::from_utf8(frame.payload).is_err() {
                        return self.fail(idx, "text message not UTF-8".into());
                    }
                    if c.envelope {
                        let p = frame.payload;
                        if p.starts_with(b"{\"type\":\"ack\"") {
                            st.ch_acks.fetch_add(1, Relaxed);
                        } else if p.starts_with(b"{\"type\":\"gap\"") {
                            st.ch_gaps.fetch_add(1, Relaxed);
                        } else if !p.starts_with(b"{\"type\":\"message\"") {
                            let text = String::from_utf8_lossy(&p[..p.len().min(80)]).into_owned();
                            return self.fail(idx, format!("unexpected envelope {text:?}"));
                        }
                    }
                    st.ch_recv.fetch_add(1, Relaxed);
                }
                OpCode::Ping => {
                    let payload = frame.payload.to_vec();
                    let key = self.rng.key();
                    encode_client_frame(OpCode::Pong, &payload, key, &mut self.conns[idx].out);
                }
                OpCode::Pong => {}
                OpCode::Close => {
                    let code = code_of(frame.payload);
                    if c.state != CState::Closing {
                        return self.fail(
                            idx,
                            format!("the server closed an open connection with {code}"),
                        );
                    }
                    if code != 1000 {
                        return self.fail(idx, format!("Close 1000 answered with {code}"));
                    }
                    c.got_close = Some(code);
                }
                op => return self.fail(idx, format!("opcode {op:?} from the server")),
            }
        }
    }

    /// Sends a chat message.
    fn chat(&mut self, idx: usize, now: Instant) {
        let key = self.rng.key();
        let gap = self.rng.millis(50, 500);
        let c = &mut self.conns[idx];
        let text = format!("c{idx}-{} says hello to the room", c.seq);
        c.seq += 1;
        c.sends_left -= 1;
        c.next_send = now + gap;
        encode_client_frame(OpCode::Text, text.as_bytes(), key, &mut c.out);
        self.sh.stats.ch_sent.fetch_add(1, Relaxed);
        self.flush(idx);
    }

    /// Ends an open connection: a close handshake, or one of the abrupt ways.
    fn end(&mut self, idx: usize) {
        let how = self.rng.below(10);
        let key = self.rng.key();
        let c = &mut self.conns[idx];
        match how {
            0..=6 => {
                encode_client_frame(OpCode::Close, &close_payload(1000, ""), key, &mut c.out);
                c.state = CState::Closing;
                c.deadline = Instant::now() + IO_TIMEOUT;
                self.flush(idx);
            }
            7 => {
                if let Some(stream) = &c.stream {
                    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
                }
                self.sh.stats.ch_abrupt.fetch_add(1, Relaxed);
                self.drop_conn(idx);
            }
            8 => {
                self.sh.stats.ch_abrupt.fetch_add(1, Relaxed);
                self.drop_conn(idx);
            }
            _ => {
                let mut frame = Vec::new();
                encode_client_frame(OpCode::Text, &[b'x'; 100], key, &mut frame);
                if let Some(stream) = &mut c.stream {
                    let _ = stream.write(&frame[..7]);
                }
                self.sh.stats.ch_abrupt.fetch_add(1, Relaxed);
                self.drop_conn(idx);
            }
        }
    }

    /// The server ended the stream (or reset it).
    fn ended(&mut self, idx: usize, error: Option<io::Error>) {
        let c = &self.conns[idx];
        let how = error.map_or("end of stream".to_string(), |e| e.to_string());
        match (c.state, c.got_close) {
            (CState::Closing, Some(_)) if c.inb.partial() == 0 => {
                self.sh.stats.ch_clean.fetch_add(1, Relaxed);
                self.drop_conn(idx);
            }
            (state, got) => {
                self.fail(
                    idx,
                    format!("{how} while {state:?} (server Close: {got:?})"),
                );
            }
        }
    }

    /// Counts a failure and drops the connection.
    fn fail(&mut self, idx: usize, msg: String) {
        let state = self.conns[idx].state;
        self.sh.fail(
            &self.sh.stats.ch_fail,
            "churn",
            format!("conn {idx} ({state:?}): {msg}"),
        );
        self.drop_conn(idx);
    }

    /// Closes the socket; the slot reconnects shortly.
    fn drop_conn(&mut self, idx: usize) {
        let delay = self.rng.millis(0, 50);
        let c = &mut self.conns[idx];
        if matches!(c.state, CState::Connecting | CState::Handshaking) {
            self.pending -= 1;
        }
        if let Some(mut stream) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        c.state = CState::Idle;
        c.deadline = Instant::now() + delay;
        c.out = Vec::new();
        c.out_pos = 0;
        c.inb = Inbuf::default();
    }
}

// ---------------------------------------------------------------------------------------
// Slowloris

/// An upgrade request head that never ends.
const LORIS_GET: &[u8] = b"GET /ws/loris HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nX-Padding: ";
/// A POST head whose body never completes.
const LORIS_POST: &[u8] = b"POST /publish/loris HTTP/1.1\r\nHost: 127.0.0.1\r\n\
    Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n";

struct Loris {
    stream: Option<TcpStream>,
    opened: Instant,
    /// When a read last found the socket still open.
    seen_alive: Instant,
    next_byte: Instant,
    sent: usize,
    post: bool,
}

fn slowloris(sh: Arc<Shared>) {
    let n = sh.cli.slowloris;
    let timeout = Duration::from_secs_f64(sh.cli.handshake_timeout);
    let start = Instant::now();
    let mut rng = Rng::new(5);
    let mut socks: Vec<Loris> = (0..n)
        .map(|i| Loris {
            stream: None,
            opened: start,
            seen_alive: start,
            next_byte: start + Duration::from_micros(i as u64 * 1_000_000 / n.max(1) as u64),
            sent: 0,
            post: i % 4 == 3,
        })
        .collect();
    let mut buf = [0u8; 1024];
    while !sh.stopping() {
        let now = Instant::now();
        for l in &mut socks {
            let Some(stream) = &mut l.stream else {
                if now < l.next_byte {
                    continue;
                }
                match connect(sh.addr, None).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                    Ok(mut s) => {
                        // The POST sends its head at once; both then go a byte a second.
                        let first: &[u8] = if l.post { LORIS_POST } else { &LORIS_GET[..1] };
                        let _ = s.write(first);
                        l.sent = first.len();
                        l.opened = Instant::now();
                        l.seen_alive = l.opened;
                        l.next_byte = l.opened + rng.millis(900, 1100);
                        l.stream = Some(s);
                        sh.stats.lo_conns.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        sh.fail(&sh.stats.lo_fail, "slowloris", format!("connect: {e}"));
                        l.next_byte = now + Duration::from_millis(200);
                    }
                }
                continue;
            };
            let mut dropped = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => {
                    sh.stats.lo_answered.fetch_add(1, Relaxed);
                    true
                }
                Err(e) if is_timeout(&e) => {
                    l.seen_alive = Instant::now();
                    false
                }
                Err(_) => true,
            };
            if !dropped && now >= l.next_byte {
                let byte = if l.post {
                    b'x'
                } else {
                    LORIS_GET.get(l.sent).copied().unwrap_or(b'a')
                };
                match stream.write(&[byte]) {
                    Ok(_) => {
                        l.sent += 1;
                        l.next_byte = now + rng.millis(900, 1100);
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => dropped = true,
                }
            }
            let alive = now.duration_since(l.opened);
            if dropped {
                // The drop happened after `seen_alive` and before now: late only if the
                // socket was seen open more than 1 s after the timeout; noticed late
                // (this thread did not look in time) is "unobserved".
                let ms = alive.as_millis() as u32;
                let seen = l.seen_alive.duration_since(l.opened);
                let slack = Duration::from_secs(1);
                sh.stats.lo_dropped.fetch_add(1, Relaxed);
                if alive + Duration::from_millis(100) < timeout {
                    sh.fail(
                        &sh.stats.lo_early,
                        "slowloris",
                        format!("dropped after {ms} ms, before the handshake timeout"),
                    );
                } else if seen > timeout + slack {
                    sh.fail(
                        &sh.stats.lo_late,
                        "slowloris",
                        format!(
                            "still open after {} ms, dropped by {ms} ms",
                            seen.as_millis()
                        ),
                    );
                } else if alive > timeout + slack {
                    sh.stats.lo_unobserved.fetch_add(1, Relaxed);
                }
                if alive <= timeout + slack || seen > timeout + slack {
                    if let Ok(mut v) = sh.loris_ms.lock() {
                        v.push(ms);
                    }
                }
                l.stream = None;
                l.next_byte = now;
            } else if alive > timeout + Duration::from_secs(5) {
                sh.fail(
                    &sh.stats.lo_never,
                    "slowloris",
                    format!("still connected after {} ms", alive.as_millis()),
                );
                l.stream = None;
                l.next_byte = now;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Slow readers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlowKind {
    /// Reads nothing for 1.5 s.
    Stall,
    /// Reads 64 bytes every 100 ms, for the close timeout + 2 s.
    Trickle,
    /// Reads nothing for the close timeout + 2 s.
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlowPhase {
    Slow,
    /// Reading at full speed until then.
    Drain(Instant),
    /// Our Close 1000 was sent; the answer must come by then.
    Closing(Instant),
}

#[derive(Debug)]
enum Outcome {
    Closed(u16),
    Eof,
    Survived,
}

struct Slow {
    kind: SlowKind,
    conn: Option<(TcpStream, Inbuf)>,
    phase: SlowPhase,
    opened: Instant,
    next_read: Instant,
    next_connect: Instant,
    order: SlowOrder,
    /// Flood messages sent when it connected, and during its slow phase.
    sent_at_open: u64,
    pressure: u64,
    /// Bytes read since the slow phase ended, and when the last came.
    drained: u64,
    last_byte: Instant,
}

/// The ids a slow reader got.
#[derive(Default)]
struct SlowOrder {
    next_id: Option<u64>,
    /// Ids skipped.
    gaps: u64,
    /// The first skipped stretch: the last id before it and the first after.
    first_gap: Option<(u64, u64)>,
}

fn slow_readers(sh: Arc<Shared>) {
    let n = sh.cli.slow_readers;
    let start = Instant::now();
    let mut socks: Vec<Slow> = (0..n)
        .map(|i| Slow {
            kind: match i % 5 {
                0 | 1 => SlowKind::Stall,
                2 | 3 => SlowKind::Trickle,
                _ => SlowKind::Dead,
            },
            conn: None,
            phase: SlowPhase::Slow,
            opened: start,
            next_read: start,
            next_connect: start + Duration::from_micros(i as u64 * 20_000),
            order: SlowOrder::default(),
            sent_at_open: 0,
            pressure: 0,
            drained: 0,
            last_byte: start,
        })
        .collect();
    let slow_for = Duration::from_secs_f64(sh.cli.close_timeout + 2.0);
    let need = pressure_needed(&sh.cli);
    let mut rng = Rng::new(11);
    let mut buf = vec![0u8; 256 << 10];
    while !sh.stopping() {
        let now = Instant::now();
        for (i, s) in socks.iter_mut().enumerate() {
            if s.conn.is_none() {
                if now >= s.next_connect {
                    slow_open(&sh, i, s);
                }
                continue;
            }
            let pressure = sh.flood.sent.load(Relaxed) - s.sent_at_open;
            let slow_over = match s.kind {
                SlowKind::Stall => pressure >= need || now >= s.opened + SLOW_STALL,
                SlowKind::Trickle | SlowKind::Dead => now >= s.opened + slow_for,
            };
            if s.phase == SlowPhase::Slow && slow_over {
                // Waiting for the server's Close (1008) a second at most; a connection the
                // server keeps (`open`) is closed by the reader at once: draining the live
                // flood at full speed is not what a slow reader is for.
                let drain = match sh.cli.slow_expect {
                    SlowExpect::Code(_) => Duration::from_secs(1),
                    SlowExpect::Open => Duration::ZERO,
                };
                s.phase = SlowPhase::Drain(now + drain);
                s.pressure = pressure;
                // Reading at full speed now: the server's kernel send buffer alone may
                // hold megabytes by now, which must drain within its close timeout. A
                // wide window, and blocking reads with a 2 ms timeout, so that a turn
                // reads on while the data keeps coming instead of stopping at the
                // first moment the socket is empty.
                if let Some((stream, _)) = &s.conn {
                    let _ = SockRef::from(stream).set_recv_buffer_size(1 << 20);
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(2)));
                }
            }
            let budget = match s.phase {
                SlowPhase::Slow if s.kind == SlowKind::Trickle && now >= s.next_read => {
                    s.next_read = now + Duration::from_millis(100);
                    64
                }
                SlowPhase::Slow => 0,
                SlowPhase::Drain(_) | SlowPhase::Closing(_) => usize::MAX,
            };
            let outcome = match slow_turn(&sh, s, budget, &mut buf, &mut rng, now) {
                Ok(outcome) => outcome,
                Err(e) => {
                    let port = s.conn.as_ref().and_then(|(c, _)| c.local_addr().ok());
                    sh.fail(
                        &sh.stats.sl_fail,
                        "slow reader",
                        format!(
                            "{i} ({:?}, {:.1} s, port {}, {} flood messages sent while slow, then {} kB read, the last {:.1} s ago): {e}",
                            s.kind,
                            s.opened.elapsed().as_secs_f64(),
                            port.map_or(0, |a| a.port()),
                            fmt_n(s.pressure),
                            fmt_n(s.drained / 1024),
                            s.last_byte.elapsed().as_secs_f64(),
                        ),
                    );
                    s.conn = None;
                    s.next_connect = now + rng.millis(50, 200);
                    continue;
                }
            };
            if let Some(outcome) = outcome {
                judge(&sh, i, s, outcome);
                s.conn = None;
                s.next_connect = now + rng.millis(50, 200);
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    for s in &mut socks {
        if s.conn.take().is_some() {
            sh.stats.sl_cut.fetch_add(1, Relaxed);
        }
    }
}

fn slow_open(sh: &Shared, i: usize, s: &mut Slow) {
    let opened = ws_open(sh.addr, "/ws/flood", Some(ENVELOPE), Some(SLOW_RCVBUF))
        .map_err(|(_, e)| e)
        .and_then(|(stream, inb)| {
            stream
                .set_nonblocking(true)
                .map(|()| (stream, inb))
                .map_err(|e| e.to_string())
        });
    let now = Instant::now();
    match opened {
        Ok(conn) => {
            sh.stats.sl_conns.fetch_add(1, Relaxed);
            s.conn = Some(conn);
            s.phase = SlowPhase::Slow;
            s.opened = now;
            s.next_read = now;
            s.order = SlowOrder::default();
            s.sent_at_open = sh.flood.sent.load(Relaxed);
            s.pressure = 0;
            s.drained = 0;
            s.last_byte = now;
        }
        Err(e) => {
            sh.fail(&sh.stats.sl_fail, "slow reader", format!("{i}: {e}"));
            s.next_connect = now + Duration::from_millis(500);
        }
    }
}

/// Flood messages that, sent while a slow reader reads nothing, must overflow its queue:
/// `--max-backlog`, plus what the kernel may hold (the server's send buffer grows up to
/// the third field of `tcp_wmem`; on loopback it starts near 1 MB), plus the flood
/// window (sent, maybe not yet published), in envelopes of at least `--flood-size` + 50
/// bytes.
fn pressure_needed(cli: &Cli) -> u64 {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse::<u64>().ok())
        .unwrap_or(4 << 20);
    (cli.max_backlog + wmem_max + (64 << 10)) / (cli.flood_size as u64 + 50) + cli.flood_window
}

/// Reads up to `budget` bytes (draining: whatever is there, for up to 20 ms) and acts on
/// the frames; `Some` when the life ended.
fn slow_turn(
    sh: &Shared,
    s: &mut Slow,
    budget: usize,
    buf: &mut [u8],
    rng: &mut Rng,
    now: Instant,
) -> Result<Option<Outcome>, String> {
    let Some((stream, inb)) = &mut s.conn else {
        return Ok(None);
    };
    let draining = s.phase != SlowPhase::Slow;
    let mut left = budget;
    while left > 0 {
        let want = left.min(buf.len());
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => return Ok(Some(Outcome::Eof)),
            Ok(n) => n,
            Err(e) if is_timeout(&e) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(Some(Outcome::Eof)),
        };
        inb.push(&buf[..n]);
        s.last_byte = Instant::now();
        if draining {
            s.drained += n as u64;
        } else {
            left -= n;
        }
        if let Some(outcome) = slow_frames(sh, stream, inb, s.phase, &mut s.order, rng)? {
            return Ok(Some(outcome));
        }
        if draining && Instant::now() > now + Duration::from_millis(20) {
            break; // the others' turn
        }
    }
    match s.phase {
        SlowPhase::Drain(until) if now >= until => {
            let _ = stream.write(&close_frame(1000, rng.key()));
            // The server answers, or gives up at its close timeout; then what the kernel
            // still holds arrives, and the end of the stream.
            let wait = Duration::from_secs_f64(sh.cli.close_timeout + 5.0);
            s.phase = SlowPhase::Closing(now + wait);
        }
        // Past the bound, still draining what the kernel holds is fine for a while;
        // nothing at all for 2 s (or 30 s more) is not.
        SlowPhase::Closing(until)
            if now >= until
                && (s.last_byte.elapsed() > Duration::from_secs(2)
                    || now >= until + Duration::from_secs(30)) =>
        {
            return Err("no answer to our Close".into());
        }
        _ => {}
    }
    Ok(None)
}

/// Acts on the whole frames a slow reader has.
fn slow_frames(
    sh: &Shared,
    stream: &mut TcpStream,
    inb: &mut Inbuf,
    phase: SlowPhase,
    order: &mut SlowOrder,
    rng: &mut Rng,
) -> Result<Option<Outcome>, String> {
    while let Some(frame) = inb.next()? {
        match frame.opcode {
            OpCode::Text => {
                let p = frame.payload;
                let Some((id, _)) = parse_envelope(p) else {
                    if p.starts_with(b"{\"type\":\"gap\"") && sh.cli.slow_expect == SlowExpect::Open
                    {
                        continue;
                    }
                    let text = String::from_utf8_lossy(&p[..p.len().min(80)]).into_owned();
                    return Err(format!("unexpected text {text:?}"));
                };
                sh.stats.sl_msgs.fetch_add(1, Relaxed);
                if let Some(next) = order.next_id {
                    if id < next {
                        return Err(format!("id {id} after {}", next - 1));
                    }
                    if id > next && order.first_gap.is_none() {
                        order.first_gap = Some((next - 1, id));
                    }
                    order.gaps += id - next;
                }
                order.next_id = Some(id + 1);
            }
            OpCode::Ping => {
                let mut pong = Vec::new();
                encode_client_frame(OpCode::Pong, frame.payload, rng.key(), &mut pong);
                let _ = stream.write(&pong);
            }
            OpCode::Pong => {}
            OpCode::Close => {
                let code = code_of(frame.payload);
                if let SlowPhase::Closing(_) = phase {
                    return Ok(Some(if code == 1000 {
                        Outcome::Survived
                    } else {
                        Outcome::Closed(code)
                    }));
                }
                let _ = stream.write(&close_frame(code, rng.key()));
                return Ok(Some(Outcome::Closed(code)));
            }
            op => return Err(format!("opcode {op:?} from the server")),
        }
    }
    Ok(None)
}

/// Checks how a slow reader's life ended against `--slow-expect`.
fn judge(sh: &Shared, i: usize, s: &Slow, outcome: Outcome) {
    let st = &sh.stats;
    let slowest = s.kind != SlowKind::Stall;
    // Whether the flood sent enough while it read nothing (or little) to fill the
    // kernel's socket buffers and the server's queue.
    let pressed = s.pressure >= pressure_needed(&sh.cli);
    sh.stats.sl_gaps.fetch_add(s.order.gaps, Relaxed);
    let (counter, problem) = match (&outcome, sh.cli.slow_expect) {
        (Outcome::Closed(c), SlowExpect::Code(want)) if *c == want => {
            (&st.sl_closed_expected, None)
        }
        (Outcome::Closed(_), _) => (&st.sl_closed_other, Some("closed with an unexpected code")),
        (Outcome::Eof, _) if slowest => (&st.sl_eof, None),
        // A reader kept open that read nothing for a while cannot answer the keepalive's
        // ping in time (TCP delivers it behind what the kernel already holds).
        (Outcome::Eof, SlowExpect::Open) => (&st.sl_eof, None),
        (Outcome::Eof, _) => (
            &st.sl_eof,
            Some("dropped although it read everything in time"),
        ),
        (Outcome::Survived, SlowExpect::Open) => (&st.sl_survived, None),
        (Outcome::Survived, SlowExpect::Code(_)) if pressed => {
            (&st.sl_survived, Some("not closed although it fell behind"))
        }
        // The flood was too slow (the machine busy?) to fill its queue: nothing to judge.
        (Outcome::Survived, SlowExpect::Code(_)) => (&st.sl_unpressed, None),
    };
    counter.fetch_add(1, Relaxed);
    let problem = problem.or_else(|| {
        (s.order.gaps > 0 && matches!(sh.cli.slow_expect, SlowExpect::Code(_)))
            .then_some("messages missing before the close")
    });
    if let Some(problem) = problem {
        sh.fail(
            &st.sl_fail,
            "slow reader",
            format!(
                "{i} ({:?}, {:.1} s, {} flood messages sent while slow, then {} kB read, the last {:.1} s before the end): {outcome:?}: {problem}: {} ids skipped{}, last id {}",
                s.kind,
                s.opened.elapsed().as_secs_f64(),
                fmt_n(s.pressure),
                fmt_n(s.drained / 1024),
                s.last_byte.elapsed().as_secs_f64(),
                s.order.gaps,
                s.order.first_gap.map_or(String::new(), |(a, b)| format!(
                    " (first: {b} came after {a})"
                )),
                s.order.next_id.map_or(0, |n| n - 1),
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Malformed frames and requests

/// What a malformed case must get.
#[derive(Clone, Copy)]
enum Want {
    /// After an upgrade, the bad frame; the server's Close must carry one of these codes.
    Close(&'static [u16]),
    /// A bad request; the answer must have this status.
    Status(u16),
}

/// The malformed cases: name and expected answer (bytes in `bad_bytes`).
const CASES: &[(&str, Want)] = &[
    ("unmasked", Want::Close(&[1002])),
    ("reserved-opcode", Want::Close(&[1002])),
    ("rsv1", Want::Close(&[1002])),
    ("ping-126", Want::Close(&[1002])),
    ("fragmented-ping", Want::Close(&[1002])),
    ("close-1004", Want::Close(&[1002])),
    ("close-1005", Want::Close(&[1002])),
    ("close-1-byte", Want::Close(&[1002])),
    ("bad-utf8", Want::Close(&[1007])),
    ("bad-utf8-fragments", Want::Close(&[1007])),
    ("bad-utf8-close-reason", Want::Close(&[1002, 1007])),
    ("orphan-continuation", Want::Close(&[1002])),
    ("message-in-message", Want::Close(&[1002])),
    ("non-minimal-length", Want::Close(&[1002])),
    ("length-top-bit", Want::Close(&[1002])),
    ("over-max-frame", Want::Close(&[1009])),
    ("bad-key", Want::Status(400)),
    ("version-8", Want::Status(426)),
    ("garbage", Want::Status(400)),
    ("head-9KiB", Want::Status(431)),
];

/// The bytes of case `i`: a frame sequence after the upgrade, or a whole request.
fn bad_bytes(i: usize, key: [u8; 4], max_frame: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let f = |fin: bool, rsv: u8, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>| {
        encode_frame(fin, rsv, opcode, Some(key), payload, out);
    };
    let header = |opcode: OpCode, len: Length, out: &mut Vec<u8>| {
        encode_header(true, 0, opcode, Some(key), len, out);
    };
    match CASES[i].0 {
        "unmasked" => encode_frame(true, 0, OpCode::Text, None, b"hello", &mut out),
        "reserved-opcode" => f(true, 0, OpCode::Reserved(0x3), b"x", &mut out),
        "rsv1" => f(true, RSV1, OpCode::Text, b"compressed?", &mut out),
        "ping-126" => f(true, 0, OpCode::Ping, &[b'p'; 126], &mut out),
        "fragmented-ping" => f(false, 0, OpCode::Ping, b"frag", &mut out),
        "close-1004" => f(true, 0, OpCode::Close, &close_payload(1004, ""), &mut out),
        "close-1005" => f(true, 0, OpCode::Close, &close_payload(1005, ""), &mut out),
        "close-1-byte" => f(true, 0, OpCode::Close, &[0x03], &mut out),
        "bad-utf8" => f(true, 0, OpCode::Text, b"ab\xc3\x28cd", &mut out),
        "bad-utf8-fragments" => {
            f(false, 0, OpCode::Text, b"ab\xf0\x9f", &mut out);
            f(true, 0, OpCode::Continuation, b"\x28", &mut out);
        }
        "bad-utf8-close-reason" => f(true, 0, OpCode::Close, b"\x03\xe8bye\xff", &mut out),
        "orphan-continuation" => f(true, 0, OpCode::Continuation, b"x", &mut out),
        "message-in-message" => {
            f(false, 0, OpCode::Text, b"first half", &mut out);
            f(true, 0, OpCode::Text, b"another", &mut out);
        }
        "non-minimal-length" => {
            header(OpCode::Text, Length::Wide16(5), &mut out);
            let start = out.len();
            out.extend_from_slice(b"hello");
            apply_mask(&mut out[start..], key);
        }
        "length-top-bit" => header(OpCode::Binary, Length::Wide64(1 << 63 | 5), &mut out),
        "over-max-frame" => {
            let len = (max_frame + 1).max(1 << 16);
            header(OpCode::Binary, Length::Wide64(len), &mut out);
        }
        "bad-key" => out = upgrade_request("/ws/abuse", HOST, "c2hvcnQ=", &[]),
        "version-8" => {
            let mut headers = upgrade_headers(HOST, KEY);
            headers[4] = ("Sec-WebSocket-Version", "8");
            write_request_head("GET", "/ws/abuse", headers, &mut out);
        }
        "garbage" => out.extend_from_slice(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
        "head-9KiB" => {
            let big = "a".repeat(9 << 10);
            out = upgrade_request("/ws/abuse", HOST, KEY, &[("X-Big", &big)]);
        }
        other => unreachable!("case {other}"),
    }
    out
}

fn malformed(sh: Arc<Shared>, thread_no: u64, threads: u64) {
    let rate = sh.cli.malformed_rate / threads as f64;
    if rate <= 0.0 {
        return;
    }
    let mut rng = Rng::new(300 + thread_no);
    let start = Instant::now();
    let mut done = 0u64;
    while !sh.stopping() {
        let due = start + Duration::from_secs_f64(done as f64 / rate);
        let now = Instant::now();
        if now < due {
            thread::sleep((due - now).min(Duration::from_millis(50)));
            continue;
        }
        let i = ((done * threads + thread_no) % CASES.len() as u64) as usize;
        done += 1;
        let bytes = bad_bytes(i, rng.key(), sh.cli.max_frame);
        match bad_case(&sh, CASES[i].1, &bytes) {
            Ok(Ok(())) => {
                sh.stats.bad_ok.fetch_add(1, Relaxed);
                sh.case_ok[i].fetch_add(1, Relaxed);
            }
            Ok(Err(wrong)) => {
                sh.case_wrong[i].fetch_add(1, Relaxed);
                sh.fail(
                    &sh.stats.bad_wrong,
                    "malformed",
                    format!("{}: {wrong}", CASES[i].0),
                );
            }
            Err(e) => sh.fail(
                &sh.stats.bad_fail,
                "malformed",
                format!("{}: {e}", CASES[i].0),
            ),
        }
    }
}

/// Runs one case: `Err` if it could not be carried out, `Ok(Err)` if the answer was wrong.
fn bad_case(sh: &Shared, want: Want, bytes: &[u8]) -> Result<Result<(), String>, String> {
    let (mut stream, mut inb) = match want {
        Want::Close(_) => ws_open(sh.addr, "/ws/abuse", None, None).map_err(|(_, e)| e)?,
        Want::Status(_) => (
            connect(sh.addr, None).map_err(|e| e.to_string())?,
            Inbuf::default(),
        ),
    };
    stream.write_all(bytes).map_err(|e| format!("write: {e}"))?;
    let answer = match want {
        Want::Status(status) => {
            let (head, _) = read_head(&mut stream, Instant::now() + IO_TIMEOUT)?;
            match parse_head(&head) {
                Ok(head) if head.status == status => Ok(()),
                Ok(head) => Err(format!(
                    "answered {} {}, expected {status}",
                    head.status, head.reason
                )),
                Err(e) => Err(format!("answered with {e}, expected {status}")),
            }
        }
        Want::Close(codes) => {
            let limit = Instant::now() + IO_TIMEOUT;
            let mut buf = [0u8; 4096];
            let code = loop {
                if let Some(frame) = inb.next()? {
                    if frame.opcode == OpCode::Close {
                        break Some(code_of(frame.payload));
                    }
                    continue;
                }
                if Instant::now() > limit {
                    return Err("no Close in time".into());
                }
                match stream.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => inb.push(&buf[..n]),
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            };
            match code {
                Some(c) if codes.contains(&c) => Ok(()),
                Some(c) => Err(format!("Close {c}, expected {codes:?}")),
                None => Err(format!("end of stream without a Close, expected {codes:?}")),
            }
        }
    };
    // Then the server must end the connection.
    let limit = Instant::now() + IO_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) && Instant::now() < limit => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Ok(answer.and(Err(format!("connection not ended: {e}")))),
        }
    }
    Ok(answer)
}

// ---------------------------------------------------------------------------------------
// Phases, monitoring, verdict

fn fmt_n(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(n: f64) -> String {
    if n >= 10_000.0 {
        format!("{:.0}k", n / 1000.0)
    } else if n >= 1000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{n:.0}")
    }
}

/// The per-second line.
struct Monitor {
    pid: u32,
    addr: SocketAddr,
    prev: Snap,
    prev_at: Instant,
    peak_rss: u64,
    /// The server loop's scheduler times at the last line (ns on a CPU, ns waiting).
    prev_sched: (u64, u64),
    /// This phase: the loop's CPU and run-queue wait shares (sum and max over lines),
    /// lines, and how late this process's own one-second ticks came (max, s).
    cpu_sum: f64,
    wait_sum: f64,
    wait_max: f64,
    lines: u32,
    lag_max: f64,
}

/// The server's main thread (its event loop): nanoseconds on a CPU and waiting for one
/// (`/proc/PID/schedstat`).
fn sched_ns(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0));
    (fields.next().unwrap_or(0), fields.next().unwrap_or(0))
}

impl Monitor {
    fn line(&mut self, phase: &str, t: f64, sh: &Shared) {
        let now = Instant::now();
        let s = sh.stats.snap();
        let p = self.prev;
        let dt = now.duration_since(self.prev_at).as_secs_f64().max(1e-3);
        let per = |a: u64, b: u64| rate(a.saturating_sub(b) as f64 / dt);
        let rss = rss_kb(self.pid);
        self.peak_rss = self.peak_rss.max(rss);
        let fds = fd_count(self.pid);
        let ws = channel_members(self.addr).map_or("?".to_string(), |(m, _)| m.to_string());
        let sched = sched_ns(self.pid);
        let share = |a: u64, b: u64| 100.0 * a.saturating_sub(b) as f64 / (dt * 1e9);
        let (cpu, wait) = (
            share(sched.0, self.prev_sched.0),
            share(sched.1, self.prev_sched.1),
        );
        self.prev_sched = sched;
        self.cpu_sum += cpu;
        self.wait_sum += wait;
        self.wait_max = self.wait_max.max(wait);
        self.lines += 1;
        println!(
            "[{phase} {t:4.0}s] rss {:6.1} MB fds {fds:5} ws {ws:>5} srv cpu {cpu:3.0}% wait {wait:3.0}% | pub {:>5}/s deliv {:>5}/s ({}) | churn {:>4}/s fail {} | loris drops {:>3}/s | slow closed {} eof {} survived {} | bad {:>3}/s wrong {}",
            rss as f64 / 1024.0,
            per(s.pub_w + s.pub_h, p.pub_w + p.pub_h),
            per(s.good_deliv, p.good_deliv),
            fmt_n(s.good_deliv),
            per(s.ch_connects, p.ch_connects),
            s.ch_fail,
            per(s.lo_dropped, p.lo_dropped),
            s.sl_closed_expected + s.sl_closed_other,
            s.sl_eof,
            s.sl_survived,
            per(s.bad_ok + s.bad_wrong, p.bad_ok + p.bad_wrong),
            s.bad_wrong + s.bad_fail,
        );
        self.prev = s;
        self.prev_at = now;
    }
}

/// What one phase did, for the verdict.
struct PhaseReport {
    name: &'static str,
    secs: f64,
    snap: Snap,
    loris_ms: Vec<u32>,
    cases: Vec<(u64, u64)>,
    settled: bool,
    rss_after: u64,
    heap_after: Option<(u64, u64)>,
    totals: [u64; 2],
    last_id: u64,
    /// The server loop's mean CPU share, mean and max run-queue wait share (%), and how
    /// late the soak's own ticks came (s).
    machine: (f64, f64, f64, f64),
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn thread")
}

fn run_phase(
    name: &'static str,
    cli: &Cli,
    addr: SocketAddr,
    base_fds: usize,
    mon: &mut Monitor,
) -> PhaseReport {
    println!(
        "== phase {name}: {:.0} s",
        if name == "warmup" {
            cli.warmup
        } else {
            cli.secs
        }
    );
    let secs = if name == "warmup" {
        cli.warmup
    } else {
        cli.secs
    };
    let sh = Arc::new(Shared::new(cli, addr));
    let mut handles = Vec::new();
    for i in 0..cli.subscribers {
        let sh = sh.clone();
        handles.push(spawn(&format!("sub-{i}"), move || subscriber(sh, i)));
    }
    let limit = Instant::now() + IO_TIMEOUT * 2;
    while sh.flood.ready.load(Relaxed) < cli.subscribers as u64 && Instant::now() < limit {
        thread::sleep(Duration::from_millis(5));
    }
    {
        let sh1 = sh.clone();
        handles.push(spawn("pub-w", move || publisher_ws(sh1)));
        let sh2 = sh.clone();
        handles.push(spawn("pub-h", move || publisher_http(sh2)));
        let sh3 = sh.clone();
        handles.push(spawn("churn", move || churn(sh3)));
        let sh4 = sh.clone();
        handles.push(spawn("loris", move || slowloris(sh4)));
        let sh5 = sh.clone();
        handles.push(spawn("slow", move || slow_readers(sh5)));
        for t in 0..2 {
            let sh6 = sh.clone();
            handles.push(spawn("malformed", move || malformed(sh6, t, 2)));
        }
    }
    let t0 = Instant::now();
    mon.prev = Snap::default();
    mon.prev_at = t0;
    mon.prev_sched = sched_ns(mon.pid);
    (
        mon.cpu_sum,
        mon.wait_sum,
        mon.wait_max,
        mon.lines,
        mon.lag_max,
    ) = (0.0, 0.0, 0.0, 0, 0.0);
    let mut tick = 1;
    while t0.elapsed().as_secs_f64() < secs {
        let next = t0 + Duration::from_secs(tick);
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        }
        mon.lag_max = mon.lag_max.max(next.elapsed().as_secs_f64());
        mon.line(name, t0.elapsed().as_secs_f64(), &sh);
        tick += 1;
    }
    // Everybody leaves: the publishers stop, the subscribers take the rest, the others
    // end their connections (churners with their usual mix of clean and abrupt ends).
    sh.stop.store(true, Relaxed);
    let t_stop = Instant::now();
    for h in handles {
        if h.join().is_err() {
            sh.fail(&sh.stats.pub_fail, "thread", "panicked");
        }
    }
    println!(
        "[{name}] all clients stopped in {:.1} s; waiting for the server to have no connection left",
        t_stop.elapsed().as_secs_f64()
    );
    // Wait (bounded) for the server to be back to no members and its idle descriptors.
    let settle_start = Instant::now();
    let mut settled = false;
    let mut last_print = Instant::now();
    while settle_start.elapsed().as_secs_f64() < cli.settle {
        let fds = fd_count(mon.pid);
        let members = channel_members(addr).map(|(m, _)| m);
        if members == Ok(0) && fds <= base_fds {
            settled = true;
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            println!(
                "[{name} settle {:4.1}s] rss {:6.1} MB fds {fds} (idle {base_fds}) ws {members:?}",
                settle_start.elapsed().as_secs_f64(),
                rss_kb(mon.pid) as f64 / 1024.0
            );
            last_print = Instant::now();
        }
        thread::sleep(Duration::from_millis(250));
    }
    // Let the last frees happen, then read the RSS.
    thread::sleep(Duration::from_millis(1000));
    let rss_after = rss_kb(mon.pid);
    let heap_after = cli
        .heap_stats
        .as_deref()
        .and_then(|log| heap_stats(mon.pid, log));
    let fds = fd_count(mon.pid);
    let (members, channels) = channel_members(addr).unwrap_or((u64::MAX, 0));
    println!(
        "[{name}] {} after {:.1} s: rss {:.1} MB, fds {} (idle {base_fds}), ws members {members}, channels listed {channels}{}",
        if settled { "settled" } else { "NOT settled" },
        settle_start.elapsed().as_secs_f64(),
        rss_after as f64 / 1024.0,
        fds,
        if cli.heap_stats.is_some() { format!(", heap {}", heap_text(heap_after)) } else { String::new() },
    );
    let mut loris_ms = sh.loris_ms.lock().map(|v| v.clone()).unwrap_or_default();
    loris_ms.sort_unstable();
    PhaseReport {
        name,
        secs,
        snap: sh.stats.snap(),
        loris_ms,
        cases: sh
            .case_ok
            .iter()
            .zip(&sh.case_wrong)
            .map(|(a, b)| (a.load(Relaxed), b.load(Relaxed)))
            .collect(),
        settled,
        rss_after,
        heap_after,
        totals: sh.flood.totals().unwrap_or([0, 0]),
        last_id: sh.flood.last_id.load(Relaxed),
        machine: (
            mon.cpu_sum / f64::from(mon.lines.max(1)),
            mon.wait_sum / f64::from(mon.lines.max(1)),
            mon.wait_max,
            mon.lag_max,
        ),
    }
}

/// Prints a phase's summary; returns its failures.
fn summarize(r: &PhaseReport, cli: &Cli) -> Vec<String> {
    let s = &r.snap;
    let mut bad = Vec::new();
    let published = r.totals[0] + r.totals[1];
    let expected = published * cli.subscribers as u64;
    println!("-- {} ({:.0} s)", r.name, r.secs);
    println!(
        "flood      published {} (WebSocket {} with {} acks, POST {}), last id {}; well-behaved x{}: {} deliveries of {} expected; lost {}, duplicate/late {}, corrupt {}, id gaps {}, failures {}; publisher failures {}",
        fmt_n(published), fmt_n(r.totals[0]), fmt_n(s.w_acks), fmt_n(r.totals[1]), fmt_n(r.last_id),
        cli.subscribers, fmt_n(s.good_deliv), fmt_n(expected), s.good_lost, s.good_reorder,
        s.good_corrupt, s.good_id_gaps, s.good_fail, s.pub_fail
    );
    if s.good_deliv != expected
        || s.good_lost + s.good_reorder + s.good_corrupt + s.good_id_gaps + s.good_fail + s.pub_fail
            > 0
        || published == 0
    {
        bad.push(format!("{}: flood delivery", r.name));
    }
    println!(
        "churn      {} upgrades ({:.0}/s), 503s {}, clean closes {}, abrupt ends {}, chat sent {} received {} (acks {}, gap notices {}), failures {}",
        fmt_n(s.ch_connects), s.ch_connects as f64 / r.secs.max(1e-3), s.ch_busy, fmt_n(s.ch_clean),
        fmt_n(s.ch_abrupt), fmt_n(s.ch_sent), fmt_n(s.ch_recv), fmt_n(s.ch_acks), fmt_n(s.ch_gaps), s.ch_fail
    );
    if s.ch_fail > 0 || s.ch_connects == 0 {
        bad.push(format!("{}: churn", r.name));
    }
    let pct = |q: f64| -> f64 {
        let v = &r.loris_ms;
        if v.is_empty() {
            return 0.0;
        }
        v[((q * v.len() as f64) as usize).min(v.len() - 1)] as f64 / 1000.0
    };
    println!(
        "slowloris  {} connections, {} dropped by the server after min {:.2} / median {:.2} / p99 {:.2} / max {:.2} s (timeout {:.1} s); early {}, late {}, never {}, noticed too late to time {}, answered {}, errors {}",
        fmt_n(s.lo_conns), fmt_n(s.lo_dropped), pct(0.0), pct(0.5), pct(0.99), pct(1.0),
        cli.handshake_timeout, s.lo_early, s.lo_late, s.lo_never, s.lo_unobserved, s.lo_answered, s.lo_fail
    );
    if s.lo_early + s.lo_late + s.lo_never + s.lo_fail > 0 || s.lo_dropped == 0 {
        bad.push(format!("{}: slowloris", r.name));
    }
    println!(
        "slow       {} connections: closed with the expected code {}, with another {}, ended without Close {}, survived {}, not pressed (flood too slow) {}, cut by the end {}; {} messages read, {} ids skipped; failures {}",
        fmt_n(s.sl_conns), s.sl_closed_expected, s.sl_closed_other, s.sl_eof, s.sl_survived, s.sl_unpressed,
        s.sl_cut, fmt_n(s.sl_msgs), fmt_n(s.sl_gaps), s.sl_fail
    );
    let enforced = match cli.slow_expect {
        SlowExpect::Code(_) => s.sl_closed_expected > 0,
        SlowExpect::Open => s.sl_survived > 0,
    };
    if s.sl_fail > 0 || !enforced {
        bad.push(format!("{}: slow readers", r.name));
    }
    let per_case: Vec<String> = CASES
        .iter()
        .zip(&r.cases)
        .map(|((name, _), (ok, wrong))| {
            if *wrong > 0 {
                format!("{name} {ok}+{wrong}WRONG")
            } else {
                format!("{name} {ok}")
            }
        })
        .collect();
    println!(
        "malformed  {} answered as expected, {} wrongly, {} errors ({})",
        fmt_n(s.bad_ok),
        s.bad_wrong,
        s.bad_fail,
        per_case.join(", ")
    );
    if s.bad_wrong + s.bad_fail > 0 || s.bad_ok == 0 {
        bad.push(format!("{}: malformed", r.name));
    }
    if !r.settled {
        bad.push(format!(
            "{}: connections left after the clients left",
            r.name
        ));
    }
    let (cpu, wait, wait_max, lag) = r.machine;
    println!(
        "machine    server loop: cpu {cpu:.0}% on average, waiting for a cpu {wait:.0}% on average, {wait_max:.0}% at worst; the soak's 1-second ticks up to {lag:.2} s late{}",
        if wait_max > 20.0 || lag > 0.5 {
            " -- other processes competed for the cores: timing checks may suffer"
        } else {
            ""
        }
    );
    bad
}

/// Raises the soft RLIMIT_NOFILE to the hard limit.
fn raise_nofile() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

fn main() {
    let cli = Cli::parse();
    let addr = match cli.addr.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) if a.ip().is_loopback() && a.is_ipv4() => a,
        _ => {
            eprintln!(
                "soak: --addr must be an IPv4 loopback HOST:PORT, not {}",
                cli.addr
            );
            std::process::exit(2);
        }
    };
    if cli.flood_size < 13
        || cli.secs <= 0.0
        || !std::path::Path::new(&format!("/proc/{}", cli.server_pid)).exists()
    {
        eprintln!("soak: needs --flood-size >= 13, --secs > 0 and a running --server-pid");
        std::process::exit(2);
    }
    raise_nofile();
    let pid = cli.server_pid;
    let base_fds = fd_count(pid);
    let cold = rss_kb(pid);
    let cold_heap = cli
        .heap_stats
        .as_deref()
        .and_then(|log| heap_stats(pid, log));
    println!(
        "soak: server {addr} (pid {pid}): cold rss {:.1} MB, {base_fds} fds; {} churners, {} slowloris, {} slow readers ({:?}), {} subscribers, flood window {} rate {}, {} malformed/s; warm-up {:.0} s, soak {:.0} s",
        cold as f64 / 1024.0, cli.churners, cli.slowloris, cli.slow_readers, cli.slow_expect,
        cli.subscribers, cli.flood_window, if cli.flood_rate > 0.0 { cli.flood_rate.to_string() } else { "max".into() },
        cli.malformed_rate, cli.warmup, cli.secs
    );
    let mut mon = Monitor {
        pid,
        addr,
        prev: Snap::default(),
        prev_at: Instant::now(),
        peak_rss: cold,
        prev_sched: (0, 0),
        cpu_sum: 0.0,
        wait_sum: 0.0,
        wait_max: 0.0,
        lines: 0,
        lag_max: 0.0,
    };
    let started = Instant::now();
    let mut reports = Vec::new();
    if cli.warmup > 0.0 {
        reports.push(run_phase("warmup", &cli, addr, base_fds, &mut mon));
    }
    reports.push(run_phase("soak", &cli, addr, base_fds, &mut mon));
    let start = if cli.warmup > 0.0 {
        reports[0].rss_after
    } else {
        cold
    };
    let end = reports.last().map_or(0, |r| r.rss_after);
    let hwm = proc_status_kb(pid, "VmHWM:").unwrap_or(mon.peak_rss);

    println!();
    println!(
        "== summary ({:.0} s in all)",
        started.elapsed().as_secs_f64()
    );
    let mut failures = Vec::new();
    for r in &reports {
        failures.extend(summarize(r, &cli));
    }
    let ratio = end as f64 / start.max(1) as f64;
    println!(
        "memory     server VmRSS: cold {} kB (listening, before any client); start {} kB (after the warm-up's clients left); peak {} kB (VmHWM); end {} kB (after the soak's clients left)",
        fmt_n(cold), fmt_n(start), fmt_n(hwm), fmt_n(end)
    );
    println!(
        "           end/start {ratio:.3} (must be <= {:.2}); end/cold {:.2}",
        1.0 + cli.rss_tolerance,
        end as f64 / cold.max(1) as f64
    );
    if cli.heap_stats.is_some() {
        let start_heap = if cli.warmup > 0.0 {
            reports[0].heap_after
        } else {
            cold_heap
        };
        let end_heap = reports.last().and_then(|r| r.heap_after);
        println!(
            "heap       glibc malloc_stats() (information): cold {}; start {}; end {}",
            heap_text(cold_heap),
            heap_text(start_heap),
            heap_text(end_heap)
        );
    }
    if ratio > 1.0 + cli.rss_tolerance || end == 0 {
        failures.push(format!(
            "memory: end {end} kB is {ratio:.3} x start {start} kB"
        ));
    }
    if failures.is_empty() {
        println!("VERDICT: PASS");
    } else {
        println!("VERDICT: FAIL ({})", failures.join("; "));
        let busiest = reports.iter().map(|r| r.machine.2).fold(0.0, f64::max);
        if busiest > 20.0 && failures.iter().any(|f| f.contains("slowloris")) {
            println!(
                "(the server's loop waited for a CPU up to {busiest:.0}% of a second: other processes were busy; timing failures may be theirs, rerun on a quiet machine)"
            );
        }
        std::process::exit(1);
    }
}
