//! A load generator for pushloop (and for `tcp_echo`, its ceiling).
//!
//! One thread, one `mio::Poll`, many client connections. It speaks the client side of
//! RFC 6455 with `pushloop-wire`, not the server's codec: the opening handshake (GET with
//! a fixed key whose accept value is the RFC's own example), masked client frames, and
//! the (allocation-free) parser of the server's unmasked frames. Every payload it gets
//! back is checked byte for byte.
//!
//! ```text
//! loadgen echo      --url 127.0.0.1:PORT -c 100 -s 16 -t 5 -w 1
//! loadgen broadcast --url 127.0.0.1:PORT -c 1000 -p 1 -s 64 -w 16   (server in chat mode)
//! loadgen broadcast --url 127.0.0.1:PORT -c 1000 -p 1 -s 64 -w 16 --publish-via http
//! loadgen idle      --url 127.0.0.1:PORT -c 10000 -t 5
//! loadgen tcp-echo  --url 127.0.0.1:PORT -c 100 -s 16 -t 5 -w 1     (against tcp_echo)
//! loadgen broadcast --url 127.0.0.1:A --url 127.0.0.1:B -c 1000 -p 1 -s 64 --rate 1000 --settle 1
//! ```
//!
//! Several servers: `--url` may be given more than once (nodes sharing one Redis,
//! bench/redis.sh). Connections are spread over them round robin (subscriber `i`, or
//! connection `i` in the other modes, on URL `i % N`); publishers connect to the
//! `--pub-url`s, round robin (default: the first `--url`). Every subscriber must still get
//! every message exactly once and in order, whichever server it is on; the counts and
//! the output are the same as with one server. `--settle SECS` waits that long after
//! the last connection opened before the load starts (a node of a Redis cluster joins
//! its new members to a channel only once Redis has answered), and `--on-window CMD`
//! runs `CMD start` and `CMD end` (through `sh -c`, not waited for) as the measured
//! window starts and ends, e.g. to scrape the servers' metrics at those moments.
//!
//! Modes:
//! - `echo`: each connection keeps `-w` text messages of `-s` bytes in flight for `-t`
//!   seconds. A payload starts with 16 hex digits of (connection << 40 | sequence), the
//!   rest is a pattern that depends on both; an echo must be exactly the oldest message
//!   in flight. Reports messages/s and round-trip percentiles.
//! - `broadcast`: `-c` subscribers and `-p` publishers (the server relays a message to
//!   every other client, as `pushloop --mode chat` does). A payload carries the
//!   publisher id, its sequence number and the send time (ns since the loadgen started).
//!   A message has *landed* once every subscriber has it; a publisher keeps at most `-w`
//!   unlanded messages (or sends at `--rate` messages/s in total, up to 1,000,000
//!   unlanded). Each subscriber tracks each publisher's sequence: a number above the next
//!   expected one leaves a gap (the missing numbers); one below it either fills a gap
//!   (out of order) or is a duplicate. After the run and a drain period, whatever is
//!   still missing is lost. Reports deliveries/s and publish-to-delivery percentiles.
//!
//!   With `--publish-via http` the publishers are keep-alive HTTP/1.1 connections instead,
//!   each sending `POST --publish-path` (default `/publish/lobby`: pushloop's publish API
//!   into the channel of a bare `/ws`) with the same payload as the request body
//!   (`Content-Type: text/plain`, so pushloop relays it to raw WebSocket subscribers as
//!   the same text message). Requests are pipelined; a publisher keeps at most `-w`
//!   messages unlanded or unanswered. Every response must be `200` with a
//!   `Content-Length` body `{"id":N,"delivered":M}`, in request order, ids rising per
//!   connection, `M` at least the number of subscribers (all are in the channel), and
//!   no `Connection: close`; a request never answered by the end of the drain is an
//!   error. The RESULT line adds `responses=` and their round-trip percentiles
//!   (`resp_p50_us=`, `resp_p99_us=`).
//! - `idle`: opens `-c` WebSocket connections, prints `IDLE_READY open=N` on stdout once
//!   all are open, holds them for `-t` seconds, and closes them. More than
//!   `--per-source` connections are spread over source addresses 127.0.0.1, 127.0.0.2,
//!   ... (bound before connect, with `IP_BIND_ADDRESS_NO_PORT`).
//! - `tcp-echo`: the `echo` pattern over plain TCP with fixed-size messages.
//!
//! TLS: with `--tls-ca FILE` (or `--tls-ca none`: any certificate) every connection
//! speaks TLS (rustls, ring; TLS 1.3 unless the server offers only 1.2; no session
//! resumption) and the modes run over it unchanged (bench/tls.sh).
//!
//! permessage-deflate (RFC 7692): with `--deflate`, every WebSocket connection offers
//! `permessage-deflate; client_max_window_bits`, and the server must accept it with
//! `server_no_context_takeover` (each message starts from an empty window), so one
//! decompressor, reset per message, inflates every connection's compressed (RSV1)
//! messages before they are checked like the others. Identical compressed payloads
//! inflate to identical bytes, so the last few distinct ones are remembered with their
//! inflated form: a broadcast, compressed once by the server, is inflated once here
//! rather than once per subscriber (`--inflate-cache 0` inflates every copy). Clients send
//! their own messages compressed too (as browsers do), each from an empty window. Without
//! `--deflate` nothing is offered and an extension in the answer is an error. The RESULT
//! line then also gives the bytes of data frames (headers included) the subscribers (or
//! echo clients) received per message, and the share that came compressed. With
//! `--publish-via http` only the subscribers offer it; the request bodies go plain.
//!
//! `--body json` fills the rest of each payload with JSON text (a list of price
//! updates: keys repeat, numbers vary; 1 KiB deflates about 2.5:1) instead of the default
//! `abc...z` pattern, which compresses far better than real messages do.
//!
//! Every connection is closed at the end: WebSocket ones with a Close handshake (the
//! server must answer 1000 and then close the TCP connection), TCP and HTTP ones with a
//! half-close (the server must then close). The last line of stdout is machine-readable:
//!
//! ```text
//! RESULT mode=echo conns=100 ... msgs_per_s=... p50_us=... p99_us=... p999_us=... lost=0 dup=0 reorder=0 errors=0
//! ```
//!
//! The exit status is 1 if anything failed verification (errors, lost, duplicated or
//! reordered messages), 2 on bad arguments. Only loopback targets are accepted.
//! With `--server-pid PID` it also reports the server's CPU use during the measured
//! window (from `/proc/PID/stat`).

use clap::{Parser, ValueEnum};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use pushloop_tools::sockets::connect_from;
use pushloop_tools::tls::{self, Stream};
use pushloop_wire::{
    close_code, close_payload, encode_client_frame, encode_frame, parse_frame, parse_header,
    upgrade_request, OpCode, ResponseHead, NO_STATUS, RSV1, SAMPLE_ACCEPT, SAMPLE_KEY,
};
use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The `Sec-WebSocket-Key` every connection sends: the sample nonce of RFC 6455 §1.3.
const KEY: &str = SAMPLE_KEY;
/// Its `Sec-WebSocket-Accept`, as given in RFC 6455 §1.3 (not computed here on purpose).
const ACCEPT: &str = SAMPLE_ACCEPT;

/// Echo payloads start with this many hex digits of (connection << 40 | sequence).
const ECHO_HEADER: usize = 16;
/// Broadcast payloads start with 4 + 12 + 16 hex digits: publisher, sequence, timestamp.
const BCAST_HEADER: usize = 32;
/// The most unlanded messages a publisher may have in `--rate` mode.
const RATE_MODE_CAP: u64 = 1_000_000;
/// Reads per connection per loop turn before the others get their turn (256 KiB each).
const READS_PER_TURN: usize = 4;
/// Errors printed in full; the rest are only counted.
const ERRORS_SHOWN: u64 = 20;
/// The end of a sync flush, which a compressed message leaves out (RFC 7692 §7.2.1).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The offer every connection makes with `--deflate`.
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";
/// Distinct JSON bodies (`--body json`); message `k` gets body `k % JSON_BODIES`.
const JSON_BODIES: usize = 16;
/// The largest HTTP response head or body accepted from the publish API.
const MAX_RESPONSE: usize = 8 << 10;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Round trips of text messages through a WebSocket echo server.
    Echo,
    /// Publishers to subscribers through a WebSocket chat server.
    Broadcast,
    /// Many open, silent WebSocket connections.
    Idle,
    /// The echo pattern over plain TCP (against tcp_echo).
    TcpEcho,
}

/// What fills a payload after its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Body {
    /// `abc...zabc...` from an offset that depends on the message (compresses very well).
    Pattern,
    /// JSON text, as a push server typically carries (1 KiB compresses about 2.5:1).
    Json,
}

/// How broadcast publishers publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PublishVia {
    /// WebSocket text messages on a connection in the channel (chat mode relays them).
    Ws,
    /// `POST` requests to the publish API over a keep-alive HTTP/1.1 connection.
    Http,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Broadcast => "broadcast",
            Mode::Idle => "idle",
            Mode::TcpEcho => "tcp-echo",
        }
    }
}

/// A single-threaded WebSocket load generator.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Cli {
    /// What to measure.
    #[arg(value_enum)]
    mode: Mode,
    /// Server address: HOST:PORT or ws://HOST:PORT/PATH (loopback only). Repeat it to
    /// spread the connections (subscribers) over several servers, round robin.
    #[arg(long, default_value = "127.0.0.1:8080")]
    url: Vec<String>,
    /// Broadcast: the servers publishers connect to, round robin (default: the first
    /// --url).
    #[arg(long)]
    pub_url: Vec<String>,
    /// Request path for the upgrade (a path in --url wins).
    #[arg(long, default_value = "/ws")]
    path: String,
    /// Connections (subscribers in broadcast mode).
    #[arg(short = 'c', long = "conns", default_value_t = 10)]
    conns: usize,
    /// Message size in bytes (at least 16; at least 32 in broadcast mode).
    #[arg(short = 's', long = "size", default_value_t = 16)]
    size: usize,
    /// Seconds of measured load (of holding, in idle mode).
    #[arg(short = 't', long = "secs", default_value_t = 5.0)]
    secs: f64,
    /// Messages in flight per connection (echo) or unlanded per publisher (broadcast).
    #[arg(short = 'w', long = "window", default_value_t = 1)]
    window: usize,
    /// Publishers (broadcast mode).
    #[arg(short = 'p', long = "publishers", default_value_t = 1)]
    publishers: usize,
    /// Total publish rate in messages/s (broadcast mode; 0: flat out with --window).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds to wait after the run for messages still in flight.
    #[arg(long, default_value_t = 3.0)]
    drain: f64,
    /// Seconds allowed for opening all connections.
    #[arg(long, default_value_t = 60.0)]
    connect_timeout: f64,
    /// Connections being opened at once (keep it below the server's listen backlog:
    /// mio's `TcpListener::bind` uses 128, and an overflowing accept queue costs a 1 s
    /// SYN-ACK retransmission).
    #[arg(long, default_value_t = 100)]
    max_pending: usize,
    /// Connections per source address before 127.0.0.2, 127.0.0.3, ... are used.
    #[arg(long, default_value_t = 4000)]
    per_source: usize,
    /// The server's process id, to report its CPU use during the measured window
    /// (repeated: the sum of these processes' CPU use).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Seconds to wait after every connection opened, before the load starts.
    #[arg(long, default_value_t = 0.0)]
    settle: f64,
    /// A command run as `CMD start` when the measured window starts and `CMD end` when it
    /// ends (through `sh -c`, stdout discarded, not waited for until the report).
    #[arg(long, value_name = "CMD")]
    on_window: Option<String>,
    /// Offer permessage-deflate (RFC 7692) and require the server to accept it; inflate
    /// compressed messages, and send compressed ones.
    #[arg(long)]
    deflate: bool,
    /// zlib level of the messages clients send compressed (with --deflate).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    deflate_level: u32,
    /// Distinct compressed payloads remembered with their inflated bytes (with
    /// --deflate); 0 inflates every message received.
    #[arg(long, default_value_t = 64)]
    inflate_cache: usize,
    /// What fills each payload after its header.
    #[arg(long, value_enum, default_value_t = Body::Pattern)]
    body: Body,
    /// Broadcast: the server also sends each message back to its publisher (uWebSockets'
    /// publish to a topic every socket is in, the sender included). Those copies are
    /// checked and reported as `own=`; without this flag one is an error.
    #[arg(long)]
    self_delivery: bool,
    /// Broadcast: publish with WebSocket messages, or with HTTP `POST`s to the publish API
    /// (pipelined on keep-alive connections).
    #[arg(long, value_enum, default_value_t = PublishVia::Ws)]
    publish_via: PublishVia,
    /// Broadcast with `--publish-via http`: the path every publish request goes to
    /// (`/publish/lobby` reaches the subscribers of a bare `/ws` on pushloop).
    #[arg(long, default_value = "/publish/lobby")]
    publish_path: String,
    /// Speak TLS (wss://, https://) with rustls: full handshakes (no resumption), the
    /// server's certificate checked against this CA file, or not checked at all with
    /// `--tls-ca none` (self-signed benchmark peers).
    #[arg(long, value_name = "FILE|none")]
    tls_ca: Option<String>,
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not started yet.
    New,
    /// TCP connect in progress.
    Connecting,
    /// Request sent, waiting for the 101.
    Handshaking,
    /// Messages flow.
    Open,
    /// Our Close (or TCP half-close) was sent; waiting for the server's and its FIN.
    Closing,
    /// Finished, well or not: the socket is gone.
    Done,
}

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Echo,
    Subscriber(usize),
    Publisher(usize),
    Idle,
}

/// One client connection.
struct Conn {
    stream: Option<Stream>,
    phase: Phase,
    role: Role,
    /// Bytes to send; `out_pos` of them were written.
    out: Vec<u8>,
    out_pos: usize,
    /// Received bytes that do not form a whole frame (or message) yet.
    inb: Vec<u8>,
    /// Echo: the next sequence number to send, and (sequence, send time) in flight.
    next_seq: u64,
    inflight: VecDeque<(u64, u64)>,
    /// The server's Close frame arrived.
    got_close: bool,
    /// Something went wrong; counted already.
    failed: bool,
    /// Still had bytes to read when its turn ended (listed in `Gen::again`).
    again: bool,
    /// permessage-deflate was agreed; `send_deflated`: and our messages may go out
    /// compressed (not when the server limited our window below 2^15 bytes).
    deflate: bool,
    send_deflated: bool,
    /// An HTTP publisher (`--publish-via http`): `inflight` holds its requests not yet
    /// answered, as (sequence, send time).
    http: bool,
    /// Its server, in `Gen::targets`.
    target: usize,
}

/// One server the connections go to.
struct Target {
    addr: SocketAddr,
    /// The upgrade request, and every publish request up to its body (`--publish-via
    /// http`), with this server in `Host`.
    request: Vec<u8>,
    http_head: Vec<u8>,
}

/// One publisher's progress.
struct Publisher {
    conn: usize,
    /// Messages published.
    sent: u64,
    /// Every message below `base` has landed; `counts[k]` subscribers have `base + k`.
    base: u64,
    counts: VecDeque<u32>,
    /// The id of the publish API's last answer (`--publish-via http`).
    last_id: Option<u64>,
}

/// What one subscriber knows about one publisher's sequence.
#[derive(Default)]
struct Track {
    expected: u64,
    missing: BTreeSet<u64>,
}

/// Totals.
#[derive(Default)]
struct Stats {
    /// Messages sent (echo) or published (broadcast).
    sent: u64,
    sent_in_window: u64,
    /// Verified echoes, or first deliveries (broadcast).
    received: u64,
    received_in_window: u64,
    /// Round trips or publish-to-delivery times, in ns (saturated at ~4.3 s).
    lat: Vec<u32>,
    lost: u64,
    dup: u64,
    reorder: u64,
    errors: u64,
    opened: usize,
    connect_failed: usize,
    close_failed: usize,
    /// Messages other publishers' publishers received (broadcast; checked, not counted).
    cross: u64,
    /// Publishers' copies of their own messages (broadcast with `--self-delivery`).
    own: u64,
    /// Data messages that subscribers (or echo clients) received, the bytes of their
    /// frames (headers included), and how many of them came compressed.
    data_msgs: u64,
    data_bytes: u64,
    deflated_msgs: u64,
    /// Compressed messages actually inflated (the others hit the cache).
    inflations: u64,
    /// Publish API answers checked, and their round trips in ns (`--publish-via http`).
    responses: u64,
    resp_lat: Vec<u32>,
}

/// permessage-deflate on the client side: one decompressor and one compressor for every
/// connection, both reset per message (no context takeover either way).
struct Codec {
    inflater: Decompress,
    deflater: Compress,
    /// Inflated messages by their compressed bytes, oldest first (`limit` at most).
    cache: VecDeque<(Vec<u8>, Vec<u8>)>,
    limit: usize,
    /// The message last inflated (or found in the cache).
    out: Vec<u8>,
    /// The message last compressed.
    packed: Vec<u8>,
}

impl Codec {
    /// Inflates one compressed message into `self.out`, or copies it from the cache;
    /// true if it was inflated. Over `limit` bytes is an error.
    fn inflate(&mut self, data: &[u8], limit: usize) -> Result<bool, String> {
        // Newest first: a broadcast reaches the subscribers one after the other.
        if let Some((_, plain)) = self.cache.iter().rev().find(|(c, _)| c[..] == *data) {
            self.out.clear();
            self.out.extend_from_slice(plain);
            return Ok(false);
        }
        inflate_message(&mut self.inflater, data, limit, &mut self.out)?;
        if self.limit > 0 {
            let mut entry = if self.cache.len() >= self.limit {
                self.cache.pop_front().unwrap_or_default()
            } else {
                Default::default()
            };
            entry.0.clear();
            entry.0.extend_from_slice(data);
            entry.1.clear();
            entry.1.extend_from_slice(&self.out);
            self.cache.push_back(entry);
        }
        Ok(true)
    }
}

/// The load generator.
struct Gen {
    mode: Mode,
    ws: bool,
    size: usize,
    window: usize,
    rate: f64,
    /// The servers: the `--url`s, then the `--pub-url`s.
    targets: Vec<Target>,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    subscribers: usize,
    pubs: Vec<Publisher>,
    tracks: Vec<Track>,
    stats: Stats,
    /// `b'a' + i % 26`, long enough for any payload body at any offset below 26.
    pattern: Vec<u8>,
    /// Scratch for building a payload.
    msg: Vec<u8>,
    /// The read buffer shared by all connections.
    scratch: Vec<u8>,
    /// Connections to read again next turn.
    again: Vec<usize>,
    sources: Vec<Ipv4Addr>,
    /// `--tls-ca`: every connection speaks TLS with this configuration.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    base: Instant,
    /// Whether new messages may be sent; the measured window's start and end (ns).
    running: bool,
    start_ns: u64,
    end_ns: u64,
    /// Connections connecting or handshaking.
    pending: usize,
    rng: u64,
    /// What fills payloads; the JSON bodies (`--body json`), each as long as a body is.
    body: Body,
    json: Vec<Vec<u8>>,
    /// permessage-deflate was offered; the codecs for it.
    deflate: bool,
    codec: Codec,
    /// Publishers get their own messages back (`--self-delivery`).
    self_delivery: bool,
    /// `--publish-via http`: publishers send `POST`s (`Target::http_head`).
    http_publish: bool,
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    }
}

/// Parses `--url` into an address and an optional path.
fn parse_url(url: &str) -> io::Result<(SocketAddr, Option<String>)> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
        None => (rest, None),
    };
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| invalid(format!("{host}: no address")))?;
    if !addr.ip().is_loopback() {
        return Err(invalid(format!(
            "{addr} is not a loopback address; loadgen only targets this machine"
        )));
    }
    Ok((addr, path))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn run(cli: Cli) -> io::Result<i32> {
    let parse_all = |urls: &[String]| -> io::Result<Vec<(SocketAddr, String)>> {
        urls.iter()
            .map(|url| {
                let (addr, url_path) = parse_url(url)?;
                Ok((addr, url_path.unwrap_or_else(|| cli.path.clone())))
            })
            .collect()
    };
    let sub_urls = parse_all(&cli.url)?;
    let pub_urls = parse_all(&cli.pub_url)?;
    if sub_urls.is_empty() {
        return Err(invalid("--url is required".into()));
    }
    if !pub_urls.is_empty() && cli.mode != Mode::Broadcast {
        return Err(invalid("--pub-url is for broadcast mode".into()));
    }
    let min_size = match cli.mode {
        Mode::Echo | Mode::TcpEcho => ECHO_HEADER,
        Mode::Broadcast => BCAST_HEADER,
        Mode::Idle => 0,
    };
    if cli.size < min_size {
        return Err(invalid(format!(
            "--size must be at least {min_size} in this mode"
        )));
    }
    if cli.conns == 0 || cli.window == 0 || cli.secs.is_nan() || cli.secs < 0.0 {
        return Err(invalid(
            "--conns and --window must be positive, --secs not negative".into(),
        ));
    }
    if cli.mode == Mode::Broadcast && (cli.publishers == 0 || cli.publishers > 0xffff) {
        return Err(invalid("--publishers must be 1..=65535".into()));
    }
    let http_publish = cli.publish_via == PublishVia::Http;
    if http_publish && cli.mode != Mode::Broadcast {
        return Err(invalid("--publish-via http is for broadcast mode".into()));
    }
    if http_publish && cli.self_delivery {
        return Err(invalid(
            "--self-delivery needs WebSocket publishers (an HTTP publisher is in no channel)"
                .into(),
        ));
    }
    if http_publish && !cli.publish_path.starts_with('/') {
        return Err(invalid("--publish-path must start with /".into()));
    }
    if cli.deflate && cli.mode == Mode::TcpEcho {
        return Err(invalid("--deflate is for WebSocket modes".into()));
    }
    if cli.conns >= 1 << 24 {
        return Err(invalid("--conns must be below 2^24".into()));
    }
    let publishers = if cli.mode == Mode::Broadcast {
        cli.publishers
    } else {
        0
    };
    let total = cli.conns + publishers;
    raise_nofile((total + 64) as u64);

    let nsources = total.div_ceil(cli.per_source.max(1));
    let all_v4 = sub_urls
        .iter()
        .chain(&pub_urls)
        .all(|(addr, _)| matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback()));
    let sources = if nsources > 1 && all_v4 {
        (1..=nsources.min(254) as u8)
            .map(|i| Ipv4Addr::new(127, 0, 0, i))
            .collect()
    } else {
        Vec::new()
    };
    // Subscribers (all connections, in the other modes) on the `--url`s round robin,
    // publishers on the `--pub-url`s (listed after them), or on the first `--url`.
    let nsub = sub_urls.len();
    let (pub_first, npub) = if pub_urls.is_empty() {
        (0, 1)
    } else {
        (nsub, pub_urls.len())
    };

    let mut conns = Vec::with_capacity(total);
    for i in 0..total {
        let role = match cli.mode {
            Mode::Echo | Mode::TcpEcho => Role::Echo,
            Mode::Idle => Role::Idle,
            Mode::Broadcast if i < cli.conns => Role::Subscriber(i),
            Mode::Broadcast => Role::Publisher(i - cli.conns),
        };
        conns.push(Conn {
            stream: None,
            phase: Phase::New,
            role,
            out: Vec::new(),
            out_pos: 0,
            inb: Vec::new(),
            next_seq: 0,
            inflight: VecDeque::new(),
            got_close: false,
            failed: false,
            again: false,
            deflate: false,
            send_deflated: false,
            http: http_publish && matches!(role, Role::Publisher(_)),
            target: match role {
                Role::Publisher(p) => pub_first + p % npub,
                _ => i % nsub,
            },
        });
    }
    let pubs = (0..publishers)
        .map(|p| Publisher {
            conn: cli.conns + p,
            sent: 0,
            base: 0,
            counts: VecDeque::new(),
            last_id: None,
        })
        .collect();
    let tracks = (0..cli.conns * publishers)
        .map(|_| Track::default())
        .collect();
    let offer = [("Sec-WebSocket-Extensions", DEFLATE_OFFER)];
    let extensions: &[(&str, &str)] = if cli.deflate { &offer } else { &[] };
    let targets = sub_urls
        .iter()
        .chain(&pub_urls)
        .map(|(addr, path)| Target {
            addr: *addr,
            request: upgrade_request(path, &addr.to_string(), KEY, extensions),
            http_head: format!(
                "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                cli.publish_path, cli.size
            )
            .into_bytes(),
        })
        .collect();
    let json = match cli.body {
        Body::Json => (0..JSON_BODIES as u64)
            .map(|k| json_body(k, cli.size - min_size))
            .collect(),
        Body::Pattern => Vec::new(),
    };
    let mut gen = Gen {
        mode: cli.mode,
        ws: cli.mode != Mode::TcpEcho,
        size: cli.size,
        window: cli.window,
        rate: cli.rate,
        targets,
        poll: Poll::new()?,
        events: Events::with_capacity(1024),
        conns,
        subscribers: cli.conns,
        pubs,
        tracks,
        stats: Stats::default(),
        pattern: (0..cli.size + 32).map(|i| b'a' + (i % 26) as u8).collect(),
        msg: Vec::with_capacity(cli.size),
        scratch: vec![0; 256 << 10],
        again: Vec::new(),
        sources,
        tls: match cli.tls_ca.as_deref() {
            None => None,
            Some("none") => Some(tls::client_config(None)?),
            Some(ca) => Some(tls::client_config(Some(std::path::Path::new(ca)))?),
        },
        base: Instant::now(),
        running: false,
        start_ns: 0,
        end_ns: 0,
        pending: 0,
        rng: 0x9E37_79B9_7F4A_7C15,
        body: cli.body,
        json,
        deflate: cli.deflate,
        self_delivery: cli.self_delivery,
        http_publish,
        codec: Codec {
            inflater: Decompress::new(false),
            deflater: Compress::new(Compression::new(cli.deflate_level), false),
            cache: VecDeque::new(),
            limit: cli.inflate_cache,
            out: Vec::new(),
            packed: Vec::new(),
        },
    };
    gen.execute(&cli)
}

impl Gen {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The whole run: connect, load (or hold), drain, close, report.
    fn execute(&mut self, cli: &Cli) -> io::Result<i32> {
        let total = self.conns.len();
        let t0 = Instant::now();
        self.connect_all(cli)?;
        let connect_ms = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "loadgen: {} of {} connections open in {:.0} ms ({} source address{})",
            self.stats.opened,
            total,
            connect_ms,
            self.sources.len().max(1),
            if self.sources.len() > 1 { "es" } else { "" }
        );
        if self.mode == Mode::Idle {
            println!("IDLE_READY open={}", self.stats.opened);
            let _ = io::stdout().flush();
        }

        let all_open = self.stats.opened == total;
        if all_open && cli.settle > 0.0 {
            let until = Instant::now() + Duration::from_secs_f64(cli.settle);
            while Instant::now() < until {
                self.turn(Some(until.saturating_duration_since(Instant::now())))?;
            }
        }

        // The measured window.
        let mut hooks = Vec::new();
        hooks.extend(on_window(cli, "start"));
        let cpu0 = own_cpu_secs();
        let server0 = pids_cpu_ticks(&cli.server_pid);
        self.start_ns = self.now();
        self.end_ns = self.start_ns + (cli.secs * 1e9) as u64;
        self.running = all_open || self.mode == Mode::Idle;
        if !all_open && self.mode != Mode::Idle {
            self.error(None, "not all connections opened; no load sent".into());
        }
        if self.running {
            self.kick();
        }
        loop {
            let now = self.now();
            if now >= self.end_ns || !self.running {
                break;
            }
            let mut timeout = self.end_ns - now;
            if let Some(due) = self.next_due() {
                timeout = timeout.min(due.saturating_sub(now));
            }
            self.turn(Some(Duration::from_nanos(timeout)))?;
            if self.mode == Mode::Broadcast {
                self.pump();
            }
        }
        self.running = false;
        let window_s = (self.now() - self.start_ns) as f64 / 1e9;
        let cpu_s = own_cpu_secs() - cpu0;
        let server_s = match (server0, pids_cpu_ticks(&cli.server_pid)) {
            (Some(a), Some(b)) => Some((b - a) as f64 / clock_ticks()),
            _ => None,
        };
        hooks.extend(on_window(cli, "end"));

        // Drain what is still in flight.
        let drain_until = Instant::now() + Duration::from_secs_f64(cli.drain.max(0.0));
        while self.outstanding() > 0 && Instant::now() < drain_until {
            self.turn(Some(Duration::from_millis(10)))?;
        }
        self.count_lost();

        // Close everything.
        let close_ms = self.close_all(total)?;
        for mut hook in hooks {
            match hook.wait() {
                Ok(status) if status.success() => {}
                Ok(status) => eprintln!("loadgen: --on-window command: {status}"),
                Err(e) => eprintln!("loadgen: --on-window command: {e}"),
            }
        }

        self.report(cli, window_s, cpu_s, server_s, connect_ms, close_ms);
        let s = &self.stats;
        let bad = s.errors + s.lost + s.dup + s.reorder;
        let idle_ok = self.mode == Mode::Idle || s.received > 0;
        Ok(if bad == 0 && idle_ok { 0 } else { 1 })
    }

    /// Opens every connection, at most `--max-pending` at a time.
    fn connect_all(&mut self, cli: &Cli) -> io::Result<()> {
        let total = self.conns.len();
        let deadline = Instant::now() + Duration::from_secs_f64(cli.connect_timeout.max(0.0));
        let mut next = 0;
        loop {
            while next < total && self.pending < cli.max_pending.max(1) {
                self.start_conn(next);
                next += 1;
            }
            if self.stats.opened + self.stats.connect_failed >= total {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let stuck: Vec<usize> = (0..total)
                    .filter(|&i| {
                        matches!(
                            self.conns[i].phase,
                            Phase::New | Phase::Connecting | Phase::Handshaking
                        )
                    })
                    .collect();
                for &i in &stuck {
                    let phase = self.conns[i].phase;
                    self.fail(
                        i,
                        format!("not open after {:.0} s ({phase:?})", cli.connect_timeout),
                    );
                }
                return Ok(());
            }
            self.turn(Some(Duration::from_millis(10)))?;
        }
    }

    /// Starts connecting `idx`.
    fn start_conn(&mut self, idx: usize) {
        let addr = self.targets[self.conns[idx].target].addr;
        let stream = match self.sources.get(idx % self.sources.len().max(1)) {
            Some(&src) => connect_from(src, addr),
            None => TcpStream::connect(addr),
        };
        self.conns[idx].phase = Phase::Connecting;
        self.pending += 1;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => return self.fail(idx, format!("connect: {e}")),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(idx), interest)
        {
            return self.fail(idx, format!("register: {e}"));
        }
        let stream = match &self.tls {
            None => Stream::plain(stream),
            Some(config) => match Stream::tls(stream, config.clone()) {
                Ok(s) => s,
                Err(e) => return self.fail(idx, format!("tls: {e}")),
            },
        };
        self.conns[idx].stream = Some(stream);
    }

    /// Waits for readiness once and handles it.
    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = if self.again.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        match self.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let idx = event.token().0;
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            let writable = event.is_writable() || event.is_write_closed() || event.is_error();
            self.on_event(idx, readable, writable);
        }
        self.events = events;
        for idx in std::mem::take(&mut self.again) {
            self.conns[idx].again = false;
            self.read(idx);
        }
        Ok(())
    }

    fn on_event(&mut self, idx: usize, readable: bool, writable: bool) {
        if self.conns[idx].phase == Phase::Connecting {
            if !writable {
                return;
            }
            let Some(stream) = self.conns[idx].stream.as_ref().map(|s| &s.tcp) else {
                return;
            };
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => return self.fail(idx, format!("connect: {e}")),
            }
            match stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(idx, format!("connect: {e}")),
            }
            let _ = stream.set_nodelay(true);
            if self.ws && !self.conns[idx].http {
                let conn = &mut self.conns[idx];
                conn.out
                    .extend_from_slice(&self.targets[conn.target].request);
                conn.phase = Phase::Handshaking;
            } else {
                self.opened(idx);
            }
            self.flush(idx);
        }
        if writable {
            self.flush(idx);
        }
        if readable {
            self.read(idx);
        }
    }

    /// Reads until the socket would block, handling the bytes as they come; after
    /// `READS_PER_TURN` reads, the rest waits for the next turn.
    fn read(&mut self, idx: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut reads = 0;
        while let Some(stream) = self.conns[idx].stream.as_mut() {
            if reads == READS_PER_TURN {
                if !self.conns[idx].again {
                    self.conns[idx].again = true;
                    self.again.push(idx);
                }
                break;
            }
            reads += 1;
            match stream.read(&mut scratch) {
                Ok(0) => {
                    self.on_eof(idx);
                    break;
                }
                Ok(n) => {
                    let now = self.now();
                    self.on_data(idx, &scratch[..n], now);
                    if self.conns[idx].out.len() > self.conns[idx].out_pos {
                        self.flush(idx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(idx, format!("read: {e}"));
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Writes what is queued, as far as the socket takes it.
    fn flush(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        let mut failure = stream.flush_records().err().map(|e| format!("write: {e}"));
        while conn.out_pos < conn.out.len() {
            match stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => {
                    failure = Some("write: wrote zero bytes".to_owned());
                    break;
                }
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some(format!("write: {e}"));
                    break;
                }
            }
        }
        if conn.out_pos == conn.out.len() {
            conn.out.clear();
            conn.out_pos = 0;
        } else if conn.out_pos >= 1 << 20 {
            conn.out.drain(..conn.out_pos);
            conn.out_pos = 0;
        }
        if let Some(msg) = failure {
            self.fail(idx, msg);
        }
    }

    /// The server closed the TCP connection.
    fn on_eof(&mut self, idx: usize) {
        let conn = &self.conns[idx];
        match conn.phase {
            Phase::Closing if conn.got_close || !self.ws || conn.http => self.finish(idx),
            Phase::Closing => self.fail(idx, "connection closed without a Close frame".into()),
            phase => self.fail(idx, format!("server closed the connection ({phase:?})")),
        }
    }

    /// Bytes arrived on `idx`: join them to what was kept and consume what is whole.
    fn on_data(&mut self, idx: usize, data: &[u8], now: u64) {
        let mut inb = std::mem::take(&mut self.conns[idx].inb);
        if inb.is_empty() {
            let used = self.consume(idx, data, now);
            inb.extend_from_slice(&data[used..]);
        } else {
            inb.extend_from_slice(data);
            let used = self.consume(idx, &inb, now);
            inb.drain(..used);
        }
        let conn = &mut self.conns[idx];
        if conn.stream.is_some() {
            conn.inb = inb;
        }
    }

    /// Consumes the whole frames, messages or head at the start of `buf`.
    fn consume(&mut self, idx: usize, buf: &[u8], now: u64) -> usize {
        match self.conns[idx].phase {
            Phase::Handshaking => self.consume_head(idx, buf, now),
            Phase::Open | Phase::Closing if self.conns[idx].http => {
                self.consume_responses(idx, buf, now)
            }
            Phase::Open | Phase::Closing if self.ws => self.consume_frames(idx, buf, now),
            Phase::Open | Phase::Closing => self.consume_raw(idx, buf, now),
            _ => buf.len(),
        }
    }

    /// The server's answer to the upgrade request.
    fn consume_head(&mut self, idx: usize, buf: &[u8], now: u64) -> usize {
        let head = match ResponseHead::parse(buf) {
            Ok(Some(head)) => head,
            Ok(None) if buf.len() <= 8192 => return 0,
            Ok(None) => {
                self.fail(idx, "response head over 8 KiB".into());
                return buf.len();
            }
            Err(e) => {
                self.fail(idx, format!("bad response head: {e}"));
                return buf.len();
            }
        };
        let problem = if head.status != 101 {
            Some(format!("upgrade refused: {} {}", head.status, head.reason))
        } else if !head
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        {
            Some("101 without Upgrade: websocket".into())
        } else if !head.has_token("connection", "upgrade") {
            Some("101 without Connection: Upgrade".into())
        } else if head.header("sec-websocket-accept") != Some(ACCEPT) {
            Some(format!(
                "wrong Sec-WebSocket-Accept {:?}",
                head.header("sec-websocket-accept")
            ))
        } else {
            None
        };
        let len = head.len;
        let extensions: Vec<&str> = head.header_values("sec-websocket-extensions").collect();
        let problem = problem.or_else(|| match check_extensions(&extensions, self.deflate) {
            Ok(agreed) => {
                let conn = &mut self.conns[idx];
                conn.deflate = agreed.is_some();
                conn.send_deflated = agreed == Some(true);
                None
            }
            Err(e) => Some(e),
        });
        if let Some(problem) = problem {
            self.fail(idx, problem);
            return buf.len();
        }
        self.opened(idx);
        len + self.consume_frames(idx, &buf[len..], now)
    }

    /// Decodes the server's frames.
    fn consume_frames(&mut self, idx: usize, buf: &[u8], now: u64) -> usize {
        let mut pos = 0;
        while pos < buf.len() && self.conns[idx].stream.is_some() {
            let frame = match parse_frame(&buf[pos..]) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if let Ok(Some(header)) = parse_header(&buf[pos..]) {
                        let len = header.payload_len;
                        if len > 256 << 20 {
                            self.fail(idx, format!("server announced a {len}-byte frame"));
                            return buf.len();
                        }
                    }
                    break;
                }
                Err(e) => {
                    self.fail(idx, format!("bad frame from the server: {e}"));
                    return buf.len();
                }
            };
            let payload = frame.payload;
            pos += frame.len;
            let compressed = frame.rsv == RSV1
                && self.conns[idx].deflate
                && matches!(frame.opcode, OpCode::Text | OpCode::Binary);
            if frame.rsv != 0 && !compressed {
                self.fail(
                    idx,
                    format!("server frame with RSV bits {:#04x}", frame.rsv),
                );
                return buf.len();
            }
            match frame.opcode {
                OpCode::Text if frame.fin => {
                    if matches!(self.conns[idx].role, Role::Subscriber(_) | Role::Echo) {
                        self.stats.data_msgs += 1;
                        self.stats.data_bytes += frame.len as u64;
                        self.stats.deflated_msgs += u64::from(compressed);
                    }
                    if !compressed {
                        self.on_message(idx, payload, now);
                        continue;
                    }
                    match self.codec.inflate(payload, self.size) {
                        Ok(inflated) => {
                            self.stats.inflations += u64::from(inflated);
                            let msg = std::mem::take(&mut self.codec.out);
                            self.on_message(idx, &msg, now);
                            self.codec.out = msg;
                        }
                        Err(e) => {
                            self.fail(idx, e);
                            return buf.len();
                        }
                    }
                }
                OpCode::Ping => {
                    let key = self.mask_key();
                    let conn = &mut self.conns[idx];
                    encode_client_frame(OpCode::Pong, payload, key, &mut conn.out);
                }
                OpCode::Pong => {}
                OpCode::Close => self.on_close_frame(idx, payload),
                other => {
                    let fin = frame.fin;
                    self.fail(
                        idx,
                        format!(
                            "unexpected frame {other:?} fin={fin} (expected whole text messages)"
                        ),
                    );
                    return buf.len();
                }
            }
        }
        pos
    }

    /// Checks the publish API's answers on HTTP publisher `idx`, in request order.
    fn consume_responses(&mut self, idx: usize, buf: &[u8], now: u64) -> usize {
        let mut pos = 0;
        while pos < buf.len() && self.conns[idx].stream.is_some() {
            match self.response(idx, &buf[pos..], now) {
                Ok(Some(used)) => pos += used,
                Ok(None) => break,
                Err(e) => {
                    self.fail(idx, e);
                    return buf.len();
                }
            }
        }
        pos
    }

    /// Checks one answer at the start of `buf`: `Ok(None)` while it is incomplete,
    /// `Ok(Some(n))` when it took `n` bytes.
    fn response(&mut self, idx: usize, buf: &[u8], now: u64) -> Result<Option<usize>, String> {
        let head = match ResponseHead::parse(buf) {
            Ok(Some(head)) => head,
            Ok(None) if buf.len() <= MAX_RESPONSE => return Ok(None),
            Ok(None) => return Err(format!("response head over {MAX_RESPONSE} bytes")),
            Err(e) => return Err(format!("bad response head: {e}")),
        };
        let length = match head.content_length() {
            Ok(Some(n)) if n <= MAX_RESPONSE => n,
            Ok(Some(n)) => return Err(format!("{n}-byte response body")),
            Ok(None) => return Err(format!("{} response without Content-Length", head.status)),
            Err(e) => return Err(format!("bad response: {e}")),
        };
        let Some(body) = buf.get(head.len..head.len + length) else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(body);
        if head.status != 200 {
            return Err(format!(
                "publish answered {} {}: {:?}",
                head.status, head.reason, text
            ));
        }
        if head.has_token("connection", "close") {
            return Err("publish answered with Connection: close (keep-alive expected)".into());
        }
        let Some((id, delivered)) = publish_answer(body) else {
            return Err(format!(
                "publish answer is not {{\"id\":N,\"delivered\":M}}: {text:?}"
            ));
        };
        let Some((seq, sent)) = self.conns[idx].inflight.pop_front() else {
            return Err(format!("an answer with no request outstanding: {text:?}"));
        };
        let Role::Publisher(p) = self.conns[idx].role else {
            return Err("an HTTP answer on a connection that is no publisher".into());
        };
        let publisher = &mut self.pubs[p];
        if publisher.last_id.is_some_and(|last| id <= last) {
            return Err(format!(
                "publish of seq {seq} got id {id}, not above the previous {:?}",
                publisher.last_id
            ));
        }
        publisher.last_id = Some(id);
        if delivered < self.subscribers as u64 {
            return Err(format!(
                "publish of seq {seq} (id {id}) reached {delivered} of {} subscribers (are they \
                 in the channel of --publish-path?)",
                self.subscribers
            ));
        }
        self.stats.responses += 1;
        self.stats
            .resp_lat
            .push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
        Ok(Some(head.len + length))
    }

    /// Cuts plain TCP bytes into fixed-size messages.
    fn consume_raw(&mut self, idx: usize, buf: &[u8], now: u64) -> usize {
        let mut pos = 0;
        while buf.len() - pos >= self.size && self.conns[idx].stream.is_some() {
            self.on_message(idx, &buf[pos..pos + self.size], now);
            pos += self.size;
        }
        pos
    }

    /// The server's Close frame.
    fn on_close_frame(&mut self, idx: usize, payload: &[u8]) {
        let code = close_code(payload).unwrap_or(NO_STATUS);
        let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
        let conn = &mut self.conns[idx];
        conn.got_close = true;
        if conn.phase != Phase::Closing {
            let phase = conn.phase;
            self.fail(
                idx,
                format!("server closed with {code} {reason:?} ({phase:?})"),
            );
        } else if code != 1000 {
            self.fail(
                idx,
                format!("server answered our Close 1000 with {code} {reason:?}"),
            );
        }
    }

    /// `idx` completed its opening handshake (or TCP connect in tcp-echo mode).
    fn opened(&mut self, idx: usize) {
        self.conns[idx].phase = Phase::Open;
        self.pending -= 1;
        self.stats.opened += 1;
    }

    /// A whole message arrived on `idx`.
    fn on_message(&mut self, idx: usize, payload: &[u8], now: u64) {
        match self.conns[idx].role {
            Role::Echo => self.on_echo(idx, payload, now),
            Role::Subscriber(sub) => self.on_delivery(idx, sub, payload, now),
            Role::Publisher(p) => match self.parse_bcast(payload) {
                Ok((from, _, _)) if from == p && self.self_delivery => self.stats.own += 1,
                Ok((from, _, _)) if from == p => {
                    let msg = "a publisher got its own message back (is the server in chat mode?)";
                    self.error(Some(idx), msg.into());
                }
                Ok(_) => self.stats.cross += 1,
                Err(e) => self.error(Some(idx), e),
            },
            Role::Idle => self.error(
                Some(idx),
                format!("unexpected {}-byte message", payload.len()),
            ),
        }
    }

    /// Builds the echo payload for `seq` on `idx` into `self.msg`.
    fn echo_payload(&mut self, idx: usize, seq: u64) {
        self.msg.clear();
        put_hex(&mut self.msg, (idx as u64) << 40 | seq, ECHO_HEADER);
        let body = body_of(
            self.body,
            &self.pattern,
            &self.json,
            idx as u64 + seq,
            self.size - ECHO_HEADER,
        );
        self.msg.extend_from_slice(body);
    }

    /// Queues the next echo message on `idx`.
    fn send_echo(&mut self, idx: usize, now: u64) {
        let seq = self.conns[idx].next_seq;
        self.echo_payload(idx, seq);
        let key = self.mask_key();
        if self.ws {
            self.send_text(idx, key);
        } else {
            self.conns[idx].out.extend_from_slice(&self.msg);
        }
        let conn = &mut self.conns[idx];
        conn.next_seq += 1;
        conn.inflight.push_back((seq, now));
        self.stats.sent += 1;
        if now < self.end_ns {
            self.stats.sent_in_window += 1;
        }
    }

    /// An echo arrived: it must be the oldest message in flight.
    fn on_echo(&mut self, idx: usize, payload: &[u8], now: u64) {
        let Some((seq, sent)) = self.conns[idx].inflight.pop_front() else {
            let head = String::from_utf8_lossy(&payload[..payload.len().min(32)]).into_owned();
            return self.error(
                Some(idx),
                format!("message with nothing in flight: {head:?}"),
            );
        };
        self.echo_payload(idx, seq);
        if payload != self.msg.as_slice() {
            let got =
                String::from_utf8_lossy(&payload[..payload.len().min(ECHO_HEADER)]).into_owned();
            let want = String::from_utf8_lossy(&self.msg[..ECHO_HEADER]).into_owned();
            let detail = format!(
                "echo mismatch: {} bytes starting {got:?}, expected {} bytes starting {want:?}",
                payload.len(),
                self.msg.len()
            );
            return self.error(Some(idx), detail);
        }
        self.record(now, sent);
        if self.running && now < self.end_ns {
            self.send_echo(idx, now);
        }
    }

    /// Counts one good message received at `now` that was sent at `sent`.
    fn record(&mut self, now: u64, sent: u64) {
        self.stats.received += 1;
        if now < self.end_ns {
            self.stats.received_in_window += 1;
        }
        self.stats
            .lat
            .push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
    }

    /// Reads a broadcast payload: (publisher, sequence, timestamp), body checked.
    fn parse_bcast(&self, payload: &[u8]) -> Result<(usize, u64, u64), String> {
        let bad = || {
            let head = String::from_utf8_lossy(&payload[..payload.len().min(BCAST_HEADER)]);
            format!(
                "malformed broadcast payload ({} bytes) {head:?}",
                payload.len()
            )
        };
        if payload.len() != self.size {
            return Err(bad());
        }
        let (Some(p), Some(seq), Some(ts)) = (
            get_hex(&payload[..4]),
            get_hex(&payload[4..16]),
            get_hex(&payload[16..32]),
        ) else {
            return Err(bad());
        };
        let body = body_of(
            self.body,
            &self.pattern,
            &self.json,
            seq,
            self.size - BCAST_HEADER,
        );
        if payload[BCAST_HEADER..] != *body {
            return Err(bad());
        }
        if p as usize >= self.pubs.len() || seq >= self.pubs[p as usize].sent {
            return Err(format!(
                "delivery of a message never published: publisher {p} seq {seq}"
            ));
        }
        Ok((p as usize, seq, ts))
    }

    /// A subscriber got a message.
    fn on_delivery(&mut self, idx: usize, sub: usize, payload: &[u8], now: u64) {
        let (p, seq, ts) = match self.parse_bcast(payload) {
            Ok(parsed) => parsed,
            Err(e) => return self.error(Some(idx), e),
        };
        let track = &mut self.tracks[sub * self.pubs.len() + p];
        let fresh = if seq == track.expected {
            track.expected += 1;
            true
        } else if seq > track.expected {
            track.missing.extend(track.expected..seq);
            track.expected = seq + 1;
            true
        } else if track.missing.remove(&seq) {
            self.stats.reorder += 1;
            true
        } else {
            self.stats.dup += 1;
            false
        };
        if !fresh {
            return;
        }
        self.record(now, ts);
        let subscribers = self.subscribers as u32;
        let publisher = &mut self.pubs[p];
        if seq >= publisher.base {
            publisher.counts[(seq - publisher.base) as usize] += 1;
            while publisher.counts.front() == Some(&subscribers) {
                publisher.counts.pop_front();
                publisher.base += 1;
            }
        }
    }

    /// Starts the load: fills every echo window, or lets the publishers go.
    fn kick(&mut self) {
        let now = self.now();
        match self.mode {
            Mode::Echo | Mode::TcpEcho => {
                for idx in 0..self.conns.len() {
                    if self.conns[idx].phase == Phase::Open {
                        for _ in 0..self.window {
                            self.send_echo(idx, now);
                        }
                        self.flush(idx);
                    }
                }
            }
            Mode::Broadcast => self.pump(),
            Mode::Idle => {}
        }
    }

    /// Lets every publisher send what its window or the rate allows.
    fn pump(&mut self) {
        let now = self.now();
        if !self.running || now >= self.end_ns {
            return;
        }
        for p in 0..self.pubs.len() {
            let publisher = &self.pubs[p];
            // An HTTP publisher's answers may lag behind the deliveries: both count.
            let unanswered = self.conns[publisher.conn].inflight.len() as u64;
            let unlanded = (publisher.sent - publisher.base).max(unanswered);
            let allowed = if self.rate > 0.0 {
                let per_pub = self.rate / self.pubs.len() as f64;
                let due = ((now - self.start_ns) as f64 * per_pub / 1e9) as u64 + 1;
                due.saturating_sub(publisher.sent)
                    .min(RATE_MODE_CAP.saturating_sub(unlanded))
            } else {
                (self.window as u64).saturating_sub(unlanded)
            };
            let conn = publisher.conn;
            if allowed == 0 || self.conns[conn].phase != Phase::Open {
                continue;
            }
            for _ in 0..allowed {
                self.publish(p, now);
            }
            self.flush(conn);
        }
    }

    /// Queues `self.msg` on `idx` as a text message, compressed if agreed.
    fn send_text(&mut self, idx: usize, key: [u8; 4]) {
        let conn = &mut self.conns[idx];
        let codec = &mut self.codec;
        if conn.send_deflated && deflate_message(&mut codec.deflater, &self.msg, &mut codec.packed)
        {
            encode_frame(
                true,
                RSV1,
                OpCode::Text,
                Some(key),
                &codec.packed,
                &mut conn.out,
            );
        } else {
            encode_client_frame(OpCode::Text, &self.msg, key, &mut conn.out);
        }
    }

    /// Queues publisher `p`'s next message.
    fn publish(&mut self, p: usize, now: u64) {
        let publisher = &mut self.pubs[p];
        let seq = publisher.sent;
        publisher.sent += 1;
        publisher.counts.push_back(0);
        self.msg.clear();
        put_hex(&mut self.msg, p as u64, 4);
        put_hex(&mut self.msg, seq, 12);
        put_hex(&mut self.msg, now, 16);
        let body = body_of(
            self.body,
            &self.pattern,
            &self.json,
            seq,
            self.size - BCAST_HEADER,
        );
        self.msg.extend_from_slice(body);
        let idx = publisher.conn;
        if self.http_publish {
            let conn = &mut self.conns[idx];
            conn.out
                .extend_from_slice(&self.targets[conn.target].http_head);
            conn.out.extend_from_slice(&self.msg);
            conn.inflight.push_back((seq, now));
        } else {
            let key = self.mask_key();
            self.send_text(idx, key);
        }
        self.stats.sent += 1;
        if now < self.end_ns {
            self.stats.sent_in_window += 1;
        }
    }

    /// In rate mode, when the next message is due (ns).
    fn next_due(&self) -> Option<u64> {
        if self.mode != Mode::Broadcast || self.rate <= 0.0 {
            return None;
        }
        let per_pub = self.rate / self.pubs.len() as f64;
        self.pubs
            .iter()
            .map(|p| self.start_ns + (p.sent as f64 * 1e9 / per_pub) as u64)
            .min()
    }

    /// Messages sent and not yet received.
    fn outstanding(&self) -> u64 {
        match self.mode {
            Mode::Echo | Mode::TcpEcho => self
                .conns
                .iter()
                .filter(|c| c.stream.is_some())
                .map(|c| c.inflight.len() as u64)
                .sum(),
            Mode::Broadcast => {
                let expected = self.stats.sent * self.subscribers as u64;
                let unanswered: u64 = self
                    .conns
                    .iter()
                    .filter(|c| c.http && c.stream.is_some())
                    .map(|c| c.inflight.len() as u64)
                    .sum();
                expected.saturating_sub(self.stats.received) + unanswered
            }
            Mode::Idle => 0,
        }
    }

    /// After the drain: whatever was sent and not received is lost.
    fn count_lost(&mut self) {
        match self.mode {
            Mode::Echo | Mode::TcpEcho => {
                self.stats.lost = self.conns.iter().map(|c| c.inflight.len() as u64).sum();
            }
            Mode::Broadcast => {
                let npubs = self.pubs.len();
                let mut lost = 0;
                for (i, track) in self.tracks.iter().enumerate() {
                    let sent = self.pubs[i % npubs].sent;
                    lost += track.missing.len() as u64 + sent.saturating_sub(track.expected);
                }
                self.stats.lost = lost;
                let unanswered: u64 = self
                    .conns
                    .iter()
                    .filter(|c| c.http)
                    .map(|c| c.inflight.len() as u64)
                    .sum();
                if unanswered > 0 {
                    self.error(
                        None,
                        format!(
                            "{unanswered} publish request(s) not answered by the end of the drain"
                        ),
                    );
                    self.stats.errors += unanswered - 1;
                }
            }
            Mode::Idle => {}
        }
        if self.stats.lost > 0 {
            eprintln!(
                "loadgen: {} messages lost (not received by the end of the drain)",
                self.stats.lost
            );
        }
    }

    /// Closes every open connection and waits for the server to finish; returns the ms.
    fn close_all(&mut self, total: usize) -> io::Result<f64> {
        let t0 = Instant::now();
        for idx in 0..self.conns.len() {
            if self.conns[idx].phase != Phase::Open {
                continue;
            }
            self.conns[idx].phase = Phase::Closing;
            if self.ws && !self.conns[idx].http {
                let key = self.mask_key();
                let conn = &mut self.conns[idx];
                let close = close_payload(1000, "");
                encode_client_frame(OpCode::Close, &close, key, &mut conn.out);
                self.flush(idx);
            } else if let Some(stream) = self.conns[idx].stream.as_ref() {
                let _ = stream.tcp.shutdown(std::net::Shutdown::Write);
            }
        }
        let deadline =
            Instant::now() + Duration::from_secs(5) + Duration::from_millis(total as u64 / 2);
        while self.conns.iter().any(|c| c.stream.is_some()) && Instant::now() < deadline {
            self.turn(Some(Duration::from_millis(10)))?;
        }
        for idx in 0..self.conns.len() {
            if self.conns[idx].stream.is_some() {
                let phase = self.conns[idx].phase;
                let got_close = self.conns[idx].got_close;
                self.stats.close_failed += 1;
                self.fail(idx, format!("close not finished in time ({phase:?}, server Close received: {got_close})"));
            }
        }
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    }

    /// Counts an error (and prints the first few).
    fn error(&mut self, idx: Option<usize>, msg: String) {
        self.stats.errors += 1;
        if self.stats.errors <= ERRORS_SHOWN {
            match idx {
                Some(i) => eprintln!("loadgen: conn {i}: {msg}"),
                None => eprintln!("loadgen: {msg}"),
            }
        } else if self.stats.errors == ERRORS_SHOWN + 1 {
            eprintln!("loadgen: more errors; only counting from now on");
        }
    }

    /// Counts an error and drops the connection.
    fn fail(&mut self, idx: usize, msg: String) {
        if self.conns[idx].failed {
            return;
        }
        self.error(Some(idx), msg);
        if matches!(
            self.conns[idx].phase,
            Phase::Connecting | Phase::Handshaking
        ) {
            self.stats.connect_failed += 1;
        }
        self.conns[idx].failed = true;
        self.finish(idx);
    }

    /// Drops the socket of `idx`.
    fn finish(&mut self, idx: usize) {
        let conn = &mut self.conns[idx];
        if matches!(conn.phase, Phase::Connecting | Phase::Handshaking) {
            self.pending -= 1;
        }
        conn.phase = Phase::Done;
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream.tcp);
        }
        conn.inb = Vec::new();
        conn.out = Vec::new();
        conn.out_pos = 0;
    }

    /// A masking key for the next frame (xorshift: cheap, not cryptographic).
    fn mask_key(&mut self) -> [u8; 4] {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_ne_bytes()
    }

    /// Prints the summary and the RESULT line.
    fn report(
        &mut self,
        cli: &Cli,
        window_s: f64,
        cpu_s: f64,
        server_s: Option<f64>,
        connect_ms: f64,
        close_ms: f64,
    ) {
        let mode = self.mode.name();
        let s = &mut self.stats;
        s.lat.sort_unstable();
        let pct = |q: f64| percentile(&s.lat, q);
        let (p50, p90, p99, p999, max) = (pct(0.5), pct(0.9), pct(0.99), pct(0.999), pct(1.0));
        s.resp_lat.sort_unstable();
        let resp_pct = |q: f64| percentile(&s.resp_lat, q);
        let per_s = |n: u64| {
            if window_s > 0.0 {
                n as f64 / window_s
            } else {
                0.0
            }
        };
        // CPU shares of a window under 10 ms mean nothing (ticks are 10 ms).
        let share = |secs: f64| {
            if window_s >= 0.01 {
                100.0 * secs / window_s
            } else {
                0.0
            }
        };
        let client_pct = share(cpu_s);
        let server_pct = server_s.map(share);
        let server_field = server_pct.map_or(String::new(), |p| format!(" server_cpu_pct={p:.0}"));
        let errors = s.errors;
        let common = format!(
            "conns={} open={} connect_ms={connect_ms:.0} close_ms={close_ms:.0} secs={window_s:.3}",
            cli.conns, s.opened
        );
        let lat_fields = format!(
            "p50_us={p50:.1} p90_us={p90:.1} p99_us={p99:.1} p999_us={p999:.1} max_us={max:.1}"
        );
        let wire = if s.data_msgs > 0 {
            s.data_bytes as f64 / s.data_msgs as f64
        } else {
            0.0
        };
        let deflated_pct = if s.data_msgs > 0 {
            100.0 * s.deflated_msgs as f64 / s.data_msgs as f64
        } else {
            0.0
        };
        let checks = format!(
            "body={} deflate={} wire_bytes_per_msg={wire:.1} deflated_pct={deflated_pct:.1} inflations={} \
             lost={} dup={} reorder={} errors={errors} client_cpu_pct={client_pct:.0}{server_field}",
            match self.body {
                Body::Pattern => "pattern",
                Body::Json => "json",
            },
            u8::from(self.deflate),
            s.inflations,
            s.lost,
            s.dup,
            s.reorder
        );
        if self.deflate || s.data_msgs > 0 {
            println!(
                "data frames received: {wire:.1} bytes per message (headers included), {deflated_pct:.1}% compressed, {} inflated (the rest from the cache)",
                s.inflations
            );
        }
        match self.mode {
            Mode::Echo | Mode::TcpEcho => {
                println!(
                    "{mode}: {} conns x {} B, window {}: {:.0} msgs/s over {window_s:.2} s ({} round trips, {} sent)",
                    cli.conns,
                    self.size,
                    self.window,
                    per_s(s.received_in_window),
                    s.received,
                    s.sent
                );
                println!("round trip us: p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}");
                println!(
                    "RESULT mode={mode} {common} size={} window={} msgs={} msgs_per_s={:.0} {lat_fields} {checks}",
                    self.size,
                    self.window,
                    s.received,
                    per_s(s.received_in_window)
                );
            }
            Mode::Broadcast => {
                let how = if self.rate > 0.0 {
                    format!("rate {} msgs/s", self.rate)
                } else {
                    format!("window {}", self.window)
                };
                println!(
                    "broadcast: {} publisher(s) -> {} subscribers x {} B, {how}: {:.0} deliveries/s, {:.0} published/s over {window_s:.2} s",
                    self.pubs.len(),
                    self.subscribers,
                    self.size,
                    per_s(s.received_in_window),
                    per_s(s.sent_in_window)
                );
                println!(
                    "published {}, delivered {} (expected {}), lost {}, duplicated {}, out of order {}",
                    s.sent,
                    s.received,
                    s.sent * self.subscribers as u64,
                    s.lost,
                    s.dup,
                    s.reorder
                );
                println!("publish-to-delivery us: p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}");
                let via = if self.http_publish {
                    let (r50, r99, rmax) = (resp_pct(0.5), resp_pct(0.99), resp_pct(1.0));
                    println!(
                            "publish API: {} answers checked; request-to-answer us: p50 {r50:.1}  p99 {r99:.1}  max {rmax:.1}",
                            s.responses
                        );
                    format!(
                        "publish_via=http responses={} resp_p50_us={r50:.1} resp_p99_us={r99:.1}",
                        s.responses
                    )
                } else {
                    "publish_via=ws".to_owned()
                };
                println!(
                    "RESULT mode={mode} {common} publishers={} {via} size={} window={} rate={} published={} msgs_per_s={:.0} deliveries={} deliveries_per_s={:.0} own={} {lat_fields} {checks}",
                    self.pubs.len(),
                    self.size,
                    self.window,
                    self.rate,
                    s.sent,
                    per_s(s.sent_in_window),
                    s.received,
                    per_s(s.received_in_window),
                    s.own
                );
            }
            Mode::Idle => {
                println!(
                    "idle: {} of {} connections open in {connect_ms:.0} ms, held {window_s:.2} s, closed in {close_ms:.0} ms",
                    s.opened, cli.conns
                );
                println!(
                    "RESULT mode=idle {common} connect_failed={} close_failed={} errors={errors} client_cpu_pct={client_pct:.0}{server_field}",
                    s.connect_failed, s.close_failed
                );
            }
        }
    }
}

/// The `q` quantile of sorted nanoseconds, in microseconds (0 if there are none).
fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e3
}

/// The `(id, delivered)` of a publish API answer: a JSON object with exactly those two
/// members, non-negative integers, in any order (whitespace allowed).
fn publish_answer(body: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let (mut id, mut delivered) = (None, None);
    for member in inner.split(',') {
        let (name, value) = member.split_once(':')?;
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let slot = match name.trim() {
            "\"id\"" => &mut id,
            "\"delivered\"" => &mut delivered,
            _ => return None,
        };
        if slot.replace(value.parse().ok()?).is_some() {
            return None;
        }
    }
    Some((id?, delivered?))
}

/// The body (`len` bytes) of message `k`.
fn body_of<'a>(body: Body, pattern: &'a [u8], json: &'a [Vec<u8>], k: u64, len: usize) -> &'a [u8] {
    match body {
        Body::Pattern => {
            let off = (k % 26) as usize;
            &pattern[off..off + len]
        }
        Body::Json => &json[(k % JSON_BODIES as u64) as usize][..len],
    }
}

/// JSON body number `k`, exactly `len` bytes: a batch of price updates (the keys repeat,
/// the numbers are random), padded with spaces before its closing `]}`; cut short if
/// `len` is too small for even one update.
fn json_body(k: u64, len: usize) -> Vec<u8> {
    const SYMBOLS: [&str; 12] = [
        "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "ORCL", "INTC", "CSCO", "ADBE",
        "CRM",
    ];
    let mut rng = 0x2545_F491_4F6C_DD1D ^ (k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let head = format!(r#"{{"type":"prices","feed":"equities","batch":{k},"items":["#);
    let mut items = Vec::new();
    let mut total = head.len();
    while total < len + 2 {
        let sym = SYMBOLS[(next() % SYMBOLS.len() as u64) as usize];
        let bid = 5_000 + next() % 95_000;
        let ask = bid + 1 + next() % 25;
        let volume = next() % 5_000_000;
        let change = next() % 2_000;
        let sign = if next() % 2 == 0 { "" } else { "-" };
        let ts = 1_718_000_000_000 + next() % 86_400_000;
        let item = format!(
            r#"{{"symbol":"{sym}","bid":{}.{:02},"ask":{}.{:02},"volume":{volume},"change":{sign}{}.{:02},"ts":{ts}}}"#,
            bid / 100,
            bid % 100,
            ask / 100,
            ask % 100,
            change / 100,
            change % 100
        );
        total += item.len() + 1;
        items.push(item);
    }
    let mut text = head.into_bytes();
    let mut fitted = 0;
    for item in &items {
        let comma = usize::from(fitted > 0);
        if text.len() + comma + item.len() + 2 > len {
            break;
        }
        if comma == 1 {
            text.push(b',');
        }
        text.extend_from_slice(item.as_bytes());
        fitted += 1;
    }
    if fitted == 0 {
        // Too short for valid JSON: the start of it.
        text.push(b'[');
        text.extend_from_slice(items.join(",").as_bytes());
        text.truncate(len);
        return text;
    }
    text.resize(len - 2, b' ');
    text.extend_from_slice(b"]}");
    text
}

/// Checks the server's `Sec-WebSocket-Extensions` answer: `None` if nothing was agreed,
/// `Some(send_compressed)` if permessage-deflate was, on terms this client can follow.
fn check_extensions(values: &[&str], offered: bool) -> Result<Option<bool>, String> {
    let all = values.join(",");
    let extensions: Vec<&str> = all
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let Some(&extension) = extensions.first() else {
        return if offered {
            Err("server declined permessage-deflate (no Sec-WebSocket-Extensions)".into())
        } else {
            Ok(None)
        };
    };
    if !offered || extensions.len() > 1 {
        return Err(format!("unexpected Sec-WebSocket-Extensions: {all:?}"));
    }
    let mut parts = extension.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
    {
        return Err(format!("unexpected extension {extension:?}"));
    }
    let (mut seen, mut server_no_context, mut client_bits) = (Vec::new(), false, 15);
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return Err(format!("{name} twice in {extension:?}"));
        }
        let bits = value
            .and_then(|v| v.parse::<u8>().ok())
            .filter(|b| (8..=15).contains(b));
        match (name.as_str(), value, bits) {
            ("server_no_context_takeover", None, _) => server_no_context = true,
            ("client_no_context_takeover", None, _) => {}
            ("server_max_window_bits", Some(_), Some(_)) => {}
            ("client_max_window_bits", Some(_), Some(b)) => client_bits = b,
            _ => return Err(format!("bad parameter {part:?} in {extension:?}")),
        }
        seen.push(name);
    }
    if !server_no_context {
        return Err(format!(
            "{extension:?} lacks server_no_context_takeover: loadgen inflates every message \
             from an empty window"
        ));
    }
    // A window under 2^15 for our messages: we send them uncompressed (always allowed).
    Ok(Some(client_bits == 15))
}

/// Compresses `data` from an empty window into `out` (replaced), without the final
/// `00 00 ff ff`; false if zlib did not end on a sync flush (then send it uncompressed).
fn deflate_message(deflater: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> bool {
    deflater.reset();
    out.clear();
    out.reserve(data.len() + 64);
    let mut input = data;
    loop {
        let before = deflater.total_in();
        if deflater
            .compress_vec(input, out, FlushCompress::Sync)
            .is_err()
        {
            return false;
        }
        input = &input[(deflater.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if !out.ends_with(&DEFLATE_TAIL) {
        return false;
    }
    out.truncate(out.len() - DEFLATE_TAIL.len());
    true
}

/// Inflates one compressed message (`00 00 ff ff` appended) from an empty window into
/// `out` (replaced); more than `limit` bytes is an error.
fn inflate_message(
    inflater: &mut Decompress,
    data: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    inflater.reset(false);
    out.clear();
    let too_big = || format!("a compressed message inflates to over {limit} bytes");
    for mut input in [data, &DEFLATE_TAIL[..]] {
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(too_big());
                }
                out.reserve(out.capacity().max(256));
            }
            let (in0, out0) = (inflater.total_in(), inflater.total_out());
            let status = inflater
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|e| format!("bad compressed message: {e}"))?;
            let used = (inflater.total_in() - in0) as usize;
            let made = inflater.total_out() - out0;
            input = &input[used..];
            if status == flate2::Status::StreamEnd {
                // A final block: what follows it (our tail) is not part of the data.
                return if out.len() > limit {
                    Err(too_big())
                } else {
                    Ok(())
                };
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && made == 0 && out.len() < out.capacity() {
                return Err("bad compressed message: inflate made no progress".into());
            }
        }
    }
    if out.len() > limit {
        return Err(too_big());
    }
    Ok(())
}

/// Appends `v` as `digits` lowercase hex digits (the low ones).
fn put_hex(out: &mut Vec<u8>, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (4 * i)) & 0xf) as usize]);
    }
}

/// Reads lowercase hex digits.
fn get_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | v as u64)
    })
}

/// Raises the soft RLIMIT_NOFILE to `need` if it is lower (and the hard limit too if
/// allowed); warns if that is impossible.
fn raise_nofile(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= need {
        return;
    }
    let want = libc::rlimit {
        rlim_cur: need,
        rlim_max: lim.rlim_max.max(need),
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return;
    }
    let capped = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) };
    eprintln!(
        "loadgen: warning: need {need} file descriptors, RLIMIT_NOFILE allows {}; raise it with `ulimit -n`",
        lim.rlim_max
    );
}

/// This process's user + system CPU time in seconds.
fn own_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// utime + stime of process `pid`, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2 is "(comm)" and may contain spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The summed utime + stime of processes `pids`, in clock ticks (`None` if there are
/// none or one is gone).
fn pids_cpu_ticks(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| proc_cpu_ticks(pid)).sum()
}

/// Spawns `--on-window`'s command with `edge` (`start` or `end`), if there is one.
fn on_window(cli: &Cli, edge: &str) -> Option<std::process::Child> {
    let cmd = cli.on_window.as_deref()?;
    let spawned = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} {edge}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => Some(child),
        Err(e) => {
            eprintln!("loadgen: --on-window {cmd:?}: {e}");
            None
        }
    }
}

/// Clock ticks per second (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_answers() {
        assert_eq!(
            publish_answer(br#"{"id":7,"delivered":1000}"#),
            Some((7, 1000))
        );
        assert_eq!(
            publish_answer(br#" { "delivered" : 3 , "id" : 12 } "#),
            Some((12, 3))
        );
        for bad in [
            &br#"{"id":7}"#[..],
            br#"{"id":7,"delivered":-1}"#,
            br#"{"id":7,"id":8,"delivered":1}"#,
            br#"{"id":7,"delivered":1,"x":2}"#,
            br#"[7,1]"#,
            b"",
        ] {
            assert_eq!(
                publish_answer(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[], 0.5), 0.0);
        let ns: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&ns, 0.5), 500.0);
        assert_eq!(percentile(&ns, 0.99), 990.0);
        assert_eq!(percentile(&ns, 1.0), 1000.0);
    }
}
