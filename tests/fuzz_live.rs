//! Property tests against a live server: random and mutated byte streams, written in
//! random pieces to raw sockets, then half-closed so that the server sees the end of the
//! stream. Whatever comes back must be an allowed HTTP refusal, or a `101` followed by
//! well-formed server frames ending in a Close with a valid code (or cut off where the
//! server dropped the connection), or nothing.
//!
//! After a `101` the answer is checked against a reference decoder written from
//! RFC 6455 ([`model`]): the echoes and pongs it predicts (echoes in order, pongs in order,
//! a pong possibly ahead of echoes: see [`check_answers`]), then the Close it predicts:
//! the echo of the client's code, or 1002/1007/1009 for a violation. When the bytes end
//! with neither a Close nor a violation the server drops the connection at our end of
//! stream, so the answer may stop anywhere (even inside the 101) and must not hold a
//! Close. The handler's view is checked too: every upgraded connection is announced, gets
//! exactly the messages the model decodes, and is closed once with the model's code
//! (1006 for a drop), after one `on_error` for a violation.
//!
//! One server per test, started outside the property; every wait is bounded (socket
//! timeouts, a deadline per case, a cap on the bytes read). `PROPTEST_CASES` overrides
//! the number of cases per test (shared among the threads of the concurrent test).

mod common;

use common::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestCaseResult, TestRunner};
use pushloop::codec::MAX_HEADERS;
use pushloop::OwnedMessage;
use pushloop_wire::{
    accept_key, apply_mask, close_code, close_payload, encode_frame, encode_header, parse_close,
    parse_frame, valid_close_code, Length, OpCode, ResponseHead, FIN, MASK, RSV_BITS,
};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server's frame limit: a larger frame is refused with 1009 at its header.
const MAX_FRAME: usize = 16 << 10;
/// The server's message limit: four full frames fit exactly, a fifth is refused.
const MAX_MESSAGE: usize = 64 << 10;
/// The most bytes read from one connection.
const READ_CAP: usize = 32 << 20;
/// The longest one case may take, on top of the per-read timeout.
const CASE_DEADLINE: Duration = Duration::from_secs(10);
/// Every status this server can answer a request with, given the recording handler (its
/// `on_http` is the default 426): malformed or refused upgrade 400, unsupported
/// WebSocket version 426, head too large or too many headers 431, `Transfer-Encoding`
/// 411, body over the message limit 413. (403 needs `origins`, 503 `max_connections`,
/// 500 a panicking handler: none of them is configured here.)
const ALLOWED_STATUS: [u16; 5] = [400, 411, 413, 426, 431];
/// A fresh tungstenite client echoes after this many cases, and at the end.
const SERVICE_CHECK_EVERY: usize = 50;

// ---------------------------------------------------------------------------------------
// The server, the runner, the sockets
// ---------------------------------------------------------------------------------------

/// An echo server with small limits, so that 1009 is reachable, and no keepalive pings.
fn fuzz_server() -> TestServer {
    let config = test_config()
        .max_frame(MAX_FRAME)
        .max_message(MAX_MESSAGE)
        .ping_interval(None)
        .handshake_timeout(Duration::from_secs(5));
    TestServer::start(config, echo())
}

/// The number of cases: `default`, unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `test` on `cases` inputs from `strategy`; panics with the minimal failing input.
/// Nothing is persisted: the failure message holds the input and its exact bytes.
fn run_property<S: Strategy>(cases: u32, strategy: &S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S::Value: fmt::Debug,
{
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 300,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    };
    if let Err(e) = TestRunner::new(config).run(strategy, test) {
        panic!("{e}");
    }
}

/// What the handler must have seen of a connection the server may have upgraded.
#[derive(Debug)]
struct Expect {
    outcome: Outcome,
    /// Whether the server surely upgraded it (a 101, or part of one, came back). A
    /// complete request that got no answer at all was either upgraded, its 101 lost with
    /// the connection at our end of stream, or not answered yet (a body still to come):
    /// a refusal would have been written.
    sure: bool,
}

/// What the handler must have seen, by the client's address.
type Expected = Arc<Mutex<HashMap<SocketAddr, Expect>>>;

fn expect(expected: &Expected, peer: SocketAddr, outcome: Outcome, sure: bool) -> TestCaseResult {
    let previous = expected
        .lock()
        .unwrap()
        .insert(peer, Expect { outcome, sure });
    if previous.is_some() {
        return Err(TestCaseError::fail(format!(
            "client address {peer} used twice"
        )));
    }
    Ok(())
}

/// [`assert_still_serving`] from an address of its own, recording what the handler sees.
fn still_serving(addr: SocketAddr, expected: &Expected) {
    let stream = unique_client(addr).expect("connect");
    let (mut client, response) = tungstenite::client::client(format!("ws://{addr}/ws"), stream)
        .expect("websocket handshake");
    assert_eq!(response.status(), 101);
    let peer = client.get_ref().local_addr().unwrap();
    assert_echo(&mut client, tungstenite::Message::text("still there?"));
    assert_echo(
        &mut client,
        tungstenite::Message::binary(vec![0u8, 1, 2, 255]),
    );
    assert_eq!(close_client(&mut client, 1000, "done"), Some(1000));
    let outcome = Outcome {
        events: vec![
            Ev::Text(b"still there?".to_vec()),
            Ev::Binary(vec![0, 1, 2, 255]),
        ],
        end: End::Closed {
            code: Some(1000),
            reason: "done".into(),
        },
    };
    expect(expected, peer, outcome, true).unwrap();
}

/// Every `SERVICE_CHECK_EVERY` calls, checks that a good client still gets its echo.
fn now_and_then(done: &Cell<usize>, addr: SocketAddr, expected: &Expected) {
    done.set(done.get() + 1);
    if done.get().is_multiple_of(SERVICE_CHECK_EVERY) {
        still_serving(addr, expected);
    }
}

/// What one connection did.
struct Exchange {
    /// The client's address (the server's `peer_addr`).
    local: SocketAddr,
    /// Everything the server sent, up to its end of stream.
    output: Vec<u8>,
}

/// Writes `bytes` in the pieces `cuts` choose (on a writer thread, so that neither side
/// can block the other on full buffers), half-closes, and reads to the end of stream.
fn exchange(addr: SocketAddr, bytes: &[u8], cuts: &[Index]) -> Result<Exchange, String> {
    let mut stream = unique_client(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let pieces: Vec<Vec<u8>> = split(bytes, cuts).map(<[u8]>::to_vec).collect();
    let write = std::thread::spawn(move || -> io::Result<()> {
        for piece in &pieces {
            writer.write_all(piece)?;
        }
        writer.shutdown(Shutdown::Write)
    });
    let read = read_to_end(&mut stream);
    let wrote = write.join().map_err(|_| "the writer thread panicked")?;
    let output = read?;
    wrote.map_err(|e| {
        format!(
            "writing the request failed: {e} (the server closed before our end of stream); \
             answer: {}",
            show(&output)
        )
    })?;
    Ok(Exchange { local, output })
}

/// A connection from a loopback address of its own (127.0.1.0 and on), so that its peer
/// address, by which the handler's log is matched, is never reused (ports are, after
/// enough connections).
fn unique_client(addr: SocketAddr) -> io::Result<TcpStream> {
    static NEXT: AtomicU32 = AtomicU32::new(1 << 8);
    let [_, b, c, d] = NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    let local = SocketAddr::from(([127, b, c, d], 0));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    // Where only 127.0.0.1 is loopback (not Linux), ports must do: the default case
    // counts use far fewer than an ephemeral range.
    if socket.bind(&local.into()).is_err() {
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    }
    socket.connect_timeout(&addr.into(), TIMEOUT)?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// `bytes` cut at the positions `cuts` pick.
fn split<'a>(bytes: &'a [u8], cuts: &[Index]) -> impl Iterator<Item = &'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    let bounds: Vec<(usize, usize)> = at.windows(2).map(|w| (w[0], w[1])).collect();
    bounds.into_iter().map(move |(a, b)| &bytes[a..b])
}

/// Reads until end of stream: bounded by the socket's read timeout, the case deadline
/// and [`READ_CAP`]. A reset is a failure too: the server reads everything we send.
fn read_to_end(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if start.elapsed() > CASE_DEADLINE {
            return Err(format!(
                "no end of stream within {CASE_DEADLINE:?}; got {}",
                show(&out)
            ));
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > READ_CAP {
                    return Err(format!("more than {READ_CAP} bytes in answer"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(format!(
                    "reading the answer after our end of stream: {e}; got {}",
                    show(&out)
                ))
            }
        }
    }
}

/// A short, printable description of some bytes.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 600;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let more = if bytes.len() > MAX { "..." } else { "" };
    format!("{} bytes {text:?}{more}", bytes.len())
}

/// The exact bytes of a failing case, for a reproducer.
fn hex(bytes: &[u8]) -> String {
    const MAX: usize = 2048;
    let shown: String = bytes[..bytes.len().min(MAX)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if bytes.len() > MAX { "..." } else { "" };
    format!("{} bytes: {shown}{more}", bytes.len())
}

// ---------------------------------------------------------------------------------------
// The reference decoder: what RFC 6455 says the server does with the bytes after its 101
// ---------------------------------------------------------------------------------------

/// An event the server must act on: echo data, answer a ping, ignore a pong.
#[derive(Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

impl fmt::Debug for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, p) = match self {
            Ev::Text(p) => ("Text", p),
            Ev::Binary(p) => ("Binary", p),
            Ev::Ping(p) => ("Ping", p),
            Ev::Pong(p) => ("Pong", p),
        };
        write!(f, "{name}({})", show(&p[..p.len().min(40)]))?;
        if p.len() > 40 {
            write!(f, "[of {}]", p.len())?;
        }
        Ok(())
    }
}

/// How the conversation ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The bytes ran out with no Close and no violation: the server drops the
    /// connection without a Close (`on_close` 1006); echoes may be cut short.
    Eof,
    /// The client's valid Close: the server answers with a Close (§5.5.1).
    Closed { code: Option<u16>, reason: String },
    /// A violation: the server fails the connection with one of these codes (§7.1.7).
    Failed(Vec<u16>),
}

/// What the server must do with a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    events: Vec<Ev>,
    end: End,
}

/// An invalid UTF-8 sequence (not merely a character cut at the end).
fn utf8_broken(bytes: &[u8]) -> bool {
    matches!(std::str::from_utf8(bytes), Err(e) if e.error_len().is_some())
}

/// A data message being assembled: whether it is text, and its bytes so far.
type Assembly = Option<(bool, Vec<u8>)>;

/// The server's behaviour for the bytes a client sends after the upgrade, per RFC 6455
/// and the configured limits. Text is checked as it arrives (§8.1 allows failing as soon
/// as the bytes are invalid; the server does), and header rules are applied as soon as
/// the bytes that break them have arrived.
fn model(bytes: &[u8]) -> Outcome {
    let mut events = Vec::new();
    let mut message: Assembly = None;
    let mut rest = bytes;
    loop {
        match model_frame(rest, &mut message) {
            Ok((used, event)) => {
                events.extend(event);
                rest = &rest[used..];
            }
            Err(end) => return Outcome { events, end },
        }
    }
}

/// One frame from the start of `rest`: the bytes it took and its event, or the end.
fn model_frame(rest: &[u8], message: &mut Assembly) -> Result<(usize, Option<Ev>), End> {
    let fail = |mut codes: Vec<u16>| {
        codes.sort_unstable();
        codes.dedup();
        if codes.is_empty() {
            End::Eof
        } else {
            End::Failed(codes)
        }
    };
    let [b0, b1, after @ ..] = rest else {
        return Err(End::Eof);
    };
    let fin = b0 & FIN != 0;
    let rsv = b0 & RSV_BITS;
    let op = OpCode::from_bits(*b0);
    let masked = b1 & MASK != 0;
    let len7 = b1 & 0x7f;
    let known = !op.is_reserved();
    let control = op.is_control();
    // §5.2: reserved opcodes; visible from the first two bytes.
    let mut broken = Vec::new();
    if !known {
        broken.push(1002);
    }
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let Some(ext_bytes) = after.get(..ext) else {
        return Err(fail(broken));
    };
    let len = match len7 {
        126 => u16::from_be_bytes([ext_bytes[0], ext_bytes[1]]) as u64,
        127 => u64::from_be_bytes(ext_bytes.try_into().unwrap()),
        n => n as u64,
    };
    // §5.2: minimal length encoding, 64-bit MSB clear; §5.5: control frames are short
    // and unfragmented. Visible once the length is there.
    if (len7 == 126 && len < 126) || (len7 == 127 && (len <= 0xffff || len >> 63 != 0)) {
        broken.push(1002);
    }
    if known && control && (len > 125 || !fin) {
        broken.push(1002);
    }
    let head_len = 2 + ext + if masked { 4 } else { 0 };
    if rest.len() < head_len {
        return Err(fail(broken));
    }
    // The rules that need the whole header: §5.1 masking, §5.2 RSV, §5.4 fragmentation,
    // and the size limits (1009 as soon as a header announces too much).
    if !masked {
        broken.push(1002);
    }
    if rsv != 0 {
        broken.push(1002);
    }
    if matches!(
        (op, &message),
        (OpCode::Continuation, None) | (OpCode::Text | OpCode::Binary, Some(_))
    ) {
        broken.push(1002);
    }
    if known && !control {
        let so_far = message.as_ref().map_or(0, |(_, d)| d.len() as u64);
        if len > MAX_FRAME as u64 || so_far.saturating_add(len) > MAX_MESSAGE as u64 {
            broken.push(1009);
        }
    }
    if !broken.is_empty() {
        return Err(fail(broken));
    }
    let key: [u8; 4] = if masked {
        rest[head_len - 4..head_len].try_into().unwrap()
    } else {
        [0; 4]
    };
    let take = len.min((rest.len() - head_len) as u64) as usize;
    let mut payload = rest[head_len..head_len + take].to_vec();
    apply_mask(&mut payload, key);
    let text = op == OpCode::Text
        || (op == OpCode::Continuation && message.as_ref().is_some_and(|(t, _)| *t));
    if (take as u64) < len {
        // Cut by the end of the stream. The text that did arrive was checked.
        if text {
            let mut so_far = message.as_ref().map_or(Vec::new(), |(_, d)| d.clone());
            so_far.extend_from_slice(&payload);
            if utf8_broken(&so_far) {
                return Err(End::Failed(vec![1007]));
            }
        }
        return Err(End::Eof);
    }
    let used = head_len + take;
    let event = match op {
        OpCode::Continuation | OpCode::Text | OpCode::Binary => {
            let mut data = match op {
                OpCode::Continuation => message.take().map(|(_, d)| d).unwrap_or_default(),
                _ => Vec::new(),
            };
            data.extend_from_slice(&payload);
            if text && utf8_broken(&data) {
                return Err(End::Failed(vec![1007]));
            }
            if !fin {
                *message = Some((text, data));
                None
            } else if !text {
                Some(Ev::Binary(data))
            } else if std::str::from_utf8(&data).is_ok() {
                Some(Ev::Text(data))
            } else {
                return Err(End::Failed(vec![1007])); // ends inside a character
            }
        }
        // §5.5.1: empty, or a sendable code and a UTF-8 reason. Nothing after it counts.
        OpCode::Close => {
            return Err(match parse_close(&payload) {
                Ok(None) => End::Closed {
                    code: None,
                    reason: String::new(),
                },
                Ok(Some((code, reason))) if valid_close_code(code) => End::Closed {
                    code: Some(code),
                    reason: reason.to_owned(),
                },
                _ => End::Failed(vec![1002]),
            })
        }
        OpCode::Ping => Some(Ev::Ping(payload)),
        OpCode::Pong => Some(Ev::Pong(payload)),
        OpCode::Reserved(_) => unreachable!("reserved opcodes failed above"),
    };
    Ok((used, event))
}

// ---------------------------------------------------------------------------------------
// Reading the server's answer
// ---------------------------------------------------------------------------------------

/// The server's response head, at the start of its answer.
fn parse_head(output: &[u8]) -> Result<ResponseHead<'_>, String> {
    match ResponseHead::parse(output) {
        Ok(Some(head)) => Ok(head),
        Ok(None) => Err(format!(
            "no complete HTTP head in the answer: {}",
            show(output)
        )),
        Err(e) => Err(format!("{e} in the answer: {}", show(output))),
    }
}

/// A frame the server sent.
#[derive(Clone, PartialEq, Eq)]
struct Frame {
    opcode: OpCode,
    payload: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.payload;
        if let (OpCode::Close, Some(code)) = (self.opcode, close_code(p)) {
            return write!(f, "Close({code}, {})", show(&p[2..]));
        }
        write!(f, "{:?}({})", self.opcode, show(&p[..p.len().min(40)]))?;
        if p.len() > 40 {
            write!(f, "[of {}]", p.len())?;
        }
        Ok(())
    }
}

/// The server's frames, each checked for well-formedness (§5.1, §5.2, §5.5, §7.4); a
/// Close must be the last. Returns them and the length of a cut frame at the end.
fn parse_frames(mut bytes: &[u8]) -> Result<(Vec<Frame>, usize), String> {
    let mut frames: Vec<Frame> = Vec::new();
    loop {
        if bytes.is_empty() {
            return Ok((frames, 0));
        }
        if frames.last().is_some_and(|f| f.opcode == OpCode::Close) {
            return Err(format!(
                "bytes after the server's Close: {}; frames {frames:?}",
                show(bytes)
            ));
        }
        let [b0, b1, ..] = *bytes else {
            return Ok((frames, bytes.len()));
        };
        let bad = |what: &str| {
            Err(format!(
                "{what}: header {b0:02x} {b1:02x}; after {frames:?}"
            ))
        };
        if b0 & RSV_BITS != 0 {
            return bad("the server set RSV bits");
        }
        if b0 & FIN == 0 {
            return bad("the server fragmented a frame");
        }
        if matches!(
            OpCode::from_bits(b0),
            OpCode::Continuation | OpCode::Reserved(_)
        ) {
            return bad("the server sent an unknown or continuation opcode");
        }
        // Masking (§5.1), minimal lengths (§5.2), short control frames (§5.5).
        let frame = match parse_frame(bytes) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok((frames, bytes.len())),
            Err(e) => return bad(&format!("the server sent a bad frame ({e})")),
        };
        if frame.opcode == OpCode::Text && std::str::from_utf8(frame.payload).is_err() {
            return bad("the server sent invalid UTF-8 text");
        }
        if frame.opcode == OpCode::Close {
            match parse_close(frame.payload) {
                Ok(Some((code, _))) if !valid_close_code(code) => {
                    return Err(format!(
                        "the server sent close code {code}, which must not be sent; \
                         after {frames:?}"
                    ));
                }
                Ok(_) => {}
                Err(e) => return bad(&format!("the server sent a bad Close body ({e})")),
            }
        }
        frames.push(Frame {
            opcode: frame.opcode,
            payload: frame.payload.to_vec(),
        });
        bytes = &bytes[frame.len..];
    }
}

/// The frames the events call for: the echoes in order, and the pongs in order, each
/// with the number of echoes the events put before it.
#[derive(Debug)]
struct Answers {
    echoes: Vec<Frame>,
    pongs: Vec<(Frame, usize)>,
}

fn answers(outcome: &Outcome) -> Answers {
    let mut want = Answers {
        echoes: Vec::new(),
        pongs: Vec::new(),
    };
    for event in &outcome.events {
        let (opcode, payload) = match event {
            Ev::Text(p) => (OpCode::Text, p),
            Ev::Binary(p) => (OpCode::Binary, p),
            Ev::Ping(p) => (OpCode::Pong, p),
            Ev::Pong(_) => continue,
        };
        let frame = Frame {
            opcode,
            payload: payload.clone(),
        };
        if opcode == OpCode::Pong {
            want.pongs.push((frame, want.echoes.len()));
        } else {
            want.echoes.push(frame);
        }
    }
    want
}

/// Checks the order of the answers `got`; returns whether all of them came.
///
/// Echoes go out in order, and pongs in order. §5.5.2 wants a pong "as soon as is
/// practical", and §5.4 lets control frames go between other frames: the server queues a
/// pong ahead of the data messages waiting for a slow reader. So a pong may overtake
/// echoes, but never follows the echo of a message that arrived after its ping.
fn check_answers(got: &[Frame], want: &Answers) -> Result<bool, String> {
    let (mut e, mut p) = (0, 0);
    for (i, frame) in got.iter().enumerate() {
        if frame.opcode == OpCode::Pong {
            let Some((pong, before)) = want.pongs.get(p) else {
                return Err(format!("frame {i} is one pong too many"));
            };
            if frame != pong {
                return Err(format!("frame {i} should be pong {p}, {pong:?}"));
            }
            if e > *before {
                return Err(format!(
                    "frame {i}, pong {p}, follows the echo of a message that arrived after                      its ping"
                ));
            }
            p += 1;
        } else {
            let Some(echo) = want.echoes.get(e) else {
                return Err(format!("frame {i} is one echo too many"));
            };
            if frame != echo {
                return Err(format!("frame {i} should be echo {e}, {echo:?}"));
            }
            let due = want.pongs.iter().filter(|(_, before)| *before <= e).count();
            if p < due {
                return Err(format!(
                    "frame {i}, echo {e}, went out before pong {p}, whose ping came first"
                ));
            }
            e += 1;
        }
    }
    Ok(e == want.echoes.len() && p == want.pongs.len())
}

/// A server frame's bytes (unmasked, FIN, minimal length).
fn server_bytes(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(true, 0, frame.opcode, None, &frame.payload, &mut out);
    out
}

/// Checks what followed the `101` against the model's outcome.
fn check_frames(after: &[u8], outcome: &Outcome) -> Result<(), String> {
    let (frames, cut) = parse_frames(after)?;
    let want = answers(outcome);
    let closed = frames.last().is_some_and(|f| f.opcode == OpCode::Close);
    let data = &frames[..frames.len() - closed as usize];
    let context = || format!("expected {want:?} then {:?}; got {frames:?}", outcome.end);
    let complete = check_answers(data, &want).map_err(|e| format!("{e}; {}", context()))?;
    if let End::Eof = outcome.end {
        if closed {
            return Err(format!(
                "the server sent a Close, but the stream ended with neither a Close nor a \
                 violation, so it should just drop the connection; {}",
                context()
            ));
        }
        if cut > 0 {
            // A drop may cut a frame that was half written: the next echo or pong.
            let tail = &after[after.len() - cut..];
            let echoes = data.iter().filter(|f| f.opcode != OpCode::Pong).count();
            let next_echo = want.echoes.get(echoes);
            let next_pong = want.pongs.get(data.len() - echoes).map(|(f, _)| f);
            if ![next_echo, next_pong]
                .into_iter()
                .flatten()
                .any(|f| server_bytes(f).starts_with(tail))
            {
                return Err(format!("a cut frame that was not expected; {}", context()));
            }
        }
        return Ok(());
    }
    if cut > 0 {
        return Err(format!("the answer ends inside a frame; {}", context()));
    }
    if !closed {
        return Err(format!("no Close from the server; {}", context()));
    }
    if !complete {
        return Err(format!("answers missing before the Close; {}", context()));
    }
    let code = close_code(&frames[frames.len() - 1].payload);
    let ok = match &outcome.end {
        // §5.5.1: the answer to a Close typically echoes its code; to an empty Close, an
        // empty Close or 1000.
        End::Closed { code: Some(c), .. } => code == Some(*c),
        End::Closed { code: None, .. } => code.is_none() || code == Some(1000),
        End::Failed(codes) => code.is_some_and(|c| codes.contains(&c)),
        End::Eof => unreachable!(),
    };
    if !ok {
        return Err(format!("wrong close code {code:?}; {}", context()));
    }
    Ok(())
}

/// Whether `output` is the start of a 101 cut short: the server dropped the connection at
/// our end of stream before it had written the whole head.
fn cut_101(output: &[u8]) -> bool {
    const START: &[u8] = b"HTTP/1.1 101 ";
    let prefix = START.starts_with(output) || output.starts_with(START);
    prefix && !output.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Checks the answer to an arbitrary request. Returns what the handler must have seen
/// if the server may have upgraded the connection.
fn check_request(input: &[u8], output: &[u8]) -> Result<Option<Expect>, String> {
    // The server parses with httparse: so does the check, to learn where frames start.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(input) {
        Ok(httparse::Status::Complete(len)) => Some(len),
        _ => None,
    };
    // What the server does with the frames, if it upgrades the connection.
    let frames = head_len.map(|len| model(&input[len..]));
    let dropped = frames.clone().filter(|outcome| outcome.end == End::Eof);
    if output.is_empty() {
        // An incomplete head, or a body still to come; or an upgrade whose answer went
        // with the connection at our end of stream (only if the frames end with neither
        // a Close nor a violation: those are always answered).
        return Ok(dropped.map(|outcome| Expect {
            outcome,
            sure: false,
        }));
    }
    if cut_101(output) {
        let outcome = dropped.ok_or_else(|| format!("a cut 101: {}", show(output)))?;
        return Ok(Some(Expect {
            outcome,
            sure: true,
        }));
    }
    let head = parse_head(output)?;
    let rest = &output[head.len..];
    if head.status == 101 {
        let Some(outcome) = frames else {
            return Err(format!(
                "101 for a request that is not complete HTTP: {head:?}"
            ));
        };
        let key = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
            .map(|h| h.value)
            .ok_or("101 without a Sec-WebSocket-Key")?;
        let upgrade = head
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if !upgrade || head.header("sec-websocket-accept") != Some(&accept_key(key)) {
            return Err(format!("a bad 101: {head:?}"));
        }
        // §9.1: no extension the client did not offer (and these requests offer none).
        if head.header("sec-websocket-extensions").is_some() {
            return Err(format!("an extension nobody asked for: {head:?}"));
        }
        check_frames(rest, &outcome)?;
        return Ok(Some(Expect {
            outcome,
            sure: true,
        }));
    }
    if !ALLOWED_STATUS.contains(&head.status) {
        return Err(format!(
            "status {} is not one of {ALLOWED_STATUS:?}: {head:?}",
            head.status
        ));
    }
    let accepted = head.header("sec-websocket-accept").is_some();
    if head.header("connection") != Some("close") || accepted {
        return Err(format!(
            "a refusal must close and must not accept: {head:?}"
        ));
    }
    if head.status == 426 && head.header("sec-websocket-version") != Some("13") {
        return Err(format!("426 without Sec-WebSocket-Version: 13: {head:?}"));
    }
    let body_len = head.content_length().ok().flatten();
    // Exactly one response (no keep-alive after a refusal); a HEAD answer has no body.
    if body_len != Some(rest.len()) && !rest.is_empty() {
        return Err(format!(
            "the response body does not match its Content-Length (or more follows): {head:?}, \
             then {}",
            show(rest)
        ));
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------

/// Case kind 1: `input` as the request. Records the outcome if the server upgraded.
fn request_case(
    addr: SocketAddr,
    input: &[u8],
    cuts: &[Index],
    expected: &Expected,
) -> TestCaseResult {
    let ex = exchange(addr, input, cuts).map_err(|e| fail_with(e, input))?;
    let upgraded = check_request(input, &ex.output).map_err(|e| fail_with(e, input))?;
    if let Some(Expect { outcome, sure }) = upgraded {
        expect(expected, ex.local, outcome, sure)?;
    }
    Ok(())
}

/// Case kinds 2 and 3: a valid upgrade head, then `body`. `planned`: what the body must
/// do, when the generator knows (unmutated valid frames); the model must agree with it.
fn upgraded_case(
    addr: SocketAddr,
    body: &[u8],
    cuts: &[Index],
    planned: Option<&Outcome>,
    expected: &Expected,
) -> TestCaseResult {
    let outcome = model(body);
    if let Some(planned) = planned {
        prop_assert_eq!(&outcome, planned, "the model disagrees with the generator");
    }
    let mut input = upgrade_head("/ws", &[], &[]);
    let head_len = input.len();
    input.extend_from_slice(body);
    let ex = exchange(addr, &input, cuts).map_err(|e| fail_with(e, &input))?;
    let dropped = ex.output.is_empty() || cut_101(&ex.output);
    let checked = if dropped && outcome.end == End::Eof {
        Ok(()) // the 101 went with the connection, at our end of stream
    } else {
        parse_head(&ex.output).and_then(|head| {
            if head.status != 101 || head.header("sec-websocket-accept") != Some(ACCEPT) {
                return Err(format!("a valid upgrade was refused: {head:?}"));
            }
            check_frames(&ex.output[head.len..], &outcome)
        })
    };
    checked.map_err(|e| fail_with(e, &input[head_len..]))?;
    expect(expected, ex.local, outcome, true)
}

fn fail_with(why: String, bytes: &[u8]) -> TestCaseError {
    TestCaseError::fail(format!("{why}\n  bytes sent: {}", hex(bytes)))
}

/// Checks the handler's view of every connection that was upgraded.
fn check_handler_log(log: &[Event], expected: &HashMap<SocketAddr, Expect>) {
    assert_each_open_closed_once(log);
    let mut seen = HashSet::new();
    for event in log {
        let Event::Open { id, peer, .. } = event else {
            continue;
        };
        let peer = peer.expect("on_open knows the peer");
        assert!(seen.insert(peer), "two connections from {peer}");
        let outcome = &expected
            .get(&peer)
            .unwrap_or_else(|| panic!("on_open for {peer}, which got no 101"))
            .outcome;
        let messages: Vec<&OwnedMessage> = log
            .iter()
            .filter_map(|e| match e {
                Event::Message { id: i, msg } if i == id => Some(msg),
                _ => None,
            })
            .collect();
        let want: Vec<OwnedMessage> = outcome
            .events
            .iter()
            .filter_map(|e| match e {
                Ev::Text(p) => Some(OwnedMessage::Text(String::from_utf8(p.clone()).unwrap())),
                Ev::Binary(p) => Some(OwnedMessage::Binary(p.clone())),
                _ => None,
            })
            .collect();
        assert!(
            messages.len() == want.len() && messages.iter().zip(&want).all(|(a, b)| *a == b),
            "{peer}: the handler got {} messages, the model decodes {:?}",
            messages.len(),
            outcome
        );
        let (code, reason) = log
            .iter()
            .find_map(|e| match e {
                Event::Close {
                    id: i,
                    code,
                    reason,
                } if i == id => Some((u16::from(*code), reason.as_str())),
                _ => None,
            })
            .unwrap();
        let errors = count(log, |e| matches!(e, Event::Error { id: i, .. } if i == id));
        let ok = match &outcome.end {
            End::Eof => code == 1006 && errors == 0,
            End::Closed { code: c, reason: r } => {
                (code, reason) == (c.unwrap_or(1005), r.as_str()) && errors == 0
            }
            End::Failed(codes) => codes.contains(&code) && errors == 1,
        };
        assert!(
            ok,
            "{peer}: on_close({code}, {reason:?}) after {errors} on_error calls; the model \
             ends with {:?}",
            outcome.end
        );
    }
    for (peer, e) in expected {
        assert!(
            seen.contains(peer) || !e.sure,
            "{peer} got a 101 but was not announced"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// xorshift64*: payload bytes and mask keys from a seed, so that large payloads shrink
/// and print as two numbers.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() >> 56) as u8).collect()
    }
}

/// Binary bytes: a length and a seed.
#[derive(Debug, Clone, Copy)]
struct Blob {
    len: usize,
    seed: u64,
}

impl Blob {
    fn bytes(self) -> Vec<u8> {
        Rng::new(self.seed).bytes(self.len)
    }
}

fn blob(len: impl Strategy<Value = usize>) -> impl Strategy<Value = Blob> {
    (len, any::<u64>()).prop_map(|(len, seed)| Blob { len, seed })
}

/// Data lengths: mostly short, some with a 16-bit length (and above the size where the
/// server writes an echo directly), a few at the frame limit.
fn data_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        20 => 0usize..=200,
        4 => 126usize..=6000,
        1 => (MAX_FRAME - 2)..=(MAX_FRAME + 2),
    ]
}

/// UTF-8 text: any string, sometimes repeated up to about the frame limit.
#[derive(Debug, Clone)]
struct TextGen {
    s: String,
    /// Repeat `s` up to this many bytes (cut at a character boundary).
    fill: Option<usize>,
}

impl TextGen {
    fn bytes(&self) -> Vec<u8> {
        let Some(fill) = self.fill.filter(|_| !self.s.is_empty()) else {
            return self.s.clone().into_bytes();
        };
        let mut text = self.s.repeat(fill / self.s.len() + 1);
        let mut end = fill.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.into_bytes()
    }
}

fn text_gen() -> impl Strategy<Value = TextGen> {
    let fill = prop_oneof![
        8 => Just(None),
        2 => (126usize..=6000).prop_map(Some),
        1 => ((MAX_FRAME - 2)..=(MAX_FRAME + 2)).prop_map(Some),
    ];
    (any::<String>(), fill).prop_map(|(s, fill)| TextGen { s, fill })
}

#[derive(Debug, Clone)]
enum Ctl {
    Ping(Blob),
    Pong(Blob),
}

impl Ctl {
    fn opcode(&self) -> OpCode {
        match self {
            Ctl::Ping(_) => OpCode::Ping,
            Ctl::Pong(_) => OpCode::Pong,
        }
    }
    fn bytes(&self) -> Vec<u8> {
        match self {
            Ctl::Ping(b) | Ctl::Pong(b) => b.bytes(),
        }
    }
    fn event(&self) -> Ev {
        match self {
            Ctl::Ping(b) => Ev::Ping(b.bytes()),
            Ctl::Pong(b) => Ev::Pong(b.bytes()),
        }
    }
}

fn ctl() -> impl Strategy<Value = Ctl> {
    prop_oneof![
        blob(0usize..=125).prop_map(Ctl::Ping),
        blob(0usize..=125).prop_map(Ctl::Pong),
    ]
}

/// What a fragmented message carries.
#[derive(Debug, Clone)]
enum FragData {
    Text(TextGen),
    Binary(Blob),
    /// `parts` frames of exactly [`MAX_FRAME`] bytes: 4 fill the message limit exactly,
    /// 5 go over it.
    Big {
        parts: usize,
        seed: u64,
    },
}

/// `bytes` cut at the positions `cuts` pick: one fragment more than there are cuts,
/// empty ones included (§5.4 allows them).
fn fragments(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut parts = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([bytes.len()]) {
        parts.push(bytes[start..end].to_vec());
        start = end;
    }
    parts
}

/// A valid client message.
#[derive(Debug, Clone)]
enum Msg {
    Text(TextGen),
    Binary(Blob),
    Ctl(Ctl),
    /// Fragments cut at `cuts` (text possibly inside a character, which §5.4 allows),
    /// with a control frame after fragment `i` where `between[i]` has one.
    Fragmented {
        data: FragData,
        cuts: Vec<Index>,
        between: Vec<Option<Ctl>>,
    },
}

impl Msg {
    /// Whether it is text, and its fragments (one for an unfragmented message).
    fn parts(&self) -> (bool, Vec<Vec<u8>>) {
        match self {
            Msg::Text(t) => (true, vec![t.bytes()]),
            Msg::Binary(b) => (false, vec![b.bytes()]),
            Msg::Ctl(_) => unreachable!("control frames have no fragments"),
            Msg::Fragmented { data, cuts, .. } => match data {
                FragData::Big { parts, seed } => {
                    let mut rng = Rng::new(*seed);
                    (false, (0..*parts).map(|_| rng.bytes(MAX_FRAME)).collect())
                }
                FragData::Text(t) => (true, fragments(&t.bytes(), cuts)),
                FragData::Binary(b) => (false, fragments(&b.bytes(), cuts)),
            },
        }
    }

    fn between(&self, i: usize) -> Option<&Ctl> {
        match self {
            Msg::Fragmented { between, .. } => between.get(i).and_then(Option::as_ref),
            _ => None,
        }
    }
}

fn msg() -> impl Strategy<Value = Msg> {
    let data = prop_oneof![
        3 => text_gen().prop_map(FragData::Text),
        3 => blob(data_len()).prop_map(FragData::Binary),
        1 => (3usize..=5, any::<u64>()).prop_map(|(parts, seed)| FragData::Big { parts, seed }),
    ];
    let fragmented = (
        data,
        vec(any::<Index>(), 1..4),
        vec(option::of(ctl()), 0..4),
    )
        .prop_map(|(data, cuts, between)| Msg::Fragmented {
            data,
            cuts,
            between,
        });
    prop_oneof![
        4 => text_gen().prop_map(Msg::Text),
        3 => blob(data_len()).prop_map(Msg::Binary),
        2 => ctl().prop_map(Msg::Ctl),
        2 => fragmented,
    ]
}

#[derive(Debug, Clone)]
enum CloseBody {
    Empty,
    Code(u16, String),
}

fn close_body() -> impl Strategy<Value = CloseBody> {
    let code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    let reason = any::<String>().prop_map(|mut r| {
        let mut end = r.len().min(123);
        while !r.is_char_boundary(end) {
            end -= 1;
        }
        r.truncate(end);
        r
    });
    prop_oneof![
        1 => Just(CloseBody::Empty),
        4 => (code, reason).prop_map(|(c, r)| CloseBody::Code(c, r)),
    ]
}

/// A valid conversation: messages, then usually a Close.
#[derive(Debug, Clone)]
struct Script {
    messages: Vec<Msg>,
    close: Option<CloseBody>,
    key_seed: u64,
}

fn script() -> impl Strategy<Value = Script> {
    (
        vec(msg(), 0..6),
        option::weighted(0.8, close_body()),
        any::<u64>(),
    )
        .prop_map(|(messages, close, key_seed)| Script {
            messages,
            close,
            key_seed,
        })
}

impl Script {
    /// What the server does with the script, from the script alone (the limits apply).
    fn outcome(&self) -> Outcome {
        let mut events = Vec::new();
        for m in &self.messages {
            if let Msg::Ctl(c) = m {
                events.push(c.event());
                continue;
            }
            let (text, parts) = m.parts();
            let mut total = 0;
            for (i, part) in parts.iter().enumerate() {
                total += part.len();
                if part.len() > MAX_FRAME || total > MAX_MESSAGE {
                    return Outcome {
                        events,
                        end: End::Failed(vec![1009]),
                    };
                }
                if i + 1 < parts.len() {
                    events.extend(m.between(i).map(Ctl::event));
                }
            }
            let whole = parts.concat();
            events.push(if text {
                Ev::Text(whole)
            } else {
                Ev::Binary(whole)
            });
        }
        let end = match &self.close {
            None => End::Eof,
            Some(CloseBody::Empty) => End::Closed {
                code: None,
                reason: String::new(),
            },
            Some(CloseBody::Code(code, reason)) => End::Closed {
                code: Some(*code),
                reason: reason.clone(),
            },
        };
        Outcome { events, end }
    }

    /// The script as masked client frames.
    fn frames(&self) -> Vec<WireFrame> {
        let mut keys = Rng::new(self.key_seed);
        let mut frames = Vec::new();
        let mut push = |fin: bool, opcode: OpCode, payload: Vec<u8>| {
            let key = (keys.next() as u32).to_be_bytes();
            frames.push(WireFrame::masked(fin, opcode, key, payload));
        };
        for m in &self.messages {
            if let Msg::Ctl(c) = m {
                push(true, c.opcode(), c.bytes());
                continue;
            }
            let (text, parts) = m.parts();
            let last = parts.len() - 1;
            for (i, part) in parts.into_iter().enumerate() {
                let opcode = match (i, text) {
                    (0, true) => OpCode::Text,
                    (0, false) => OpCode::Binary,
                    _ => OpCode::Continuation,
                };
                push(i == last, opcode, part);
                if i < last {
                    if let Some(c) = m.between(i) {
                        push(true, c.opcode(), c.bytes());
                    }
                }
            }
        }
        match &self.close {
            None => {}
            Some(CloseBody::Empty) => push(true, OpCode::Close, Vec::new()),
            Some(CloseBody::Code(code, reason)) => {
                push(true, OpCode::Close, close_payload(*code, reason));
            }
        }
        frames
    }
}

/// How a frame writes its payload length.
#[derive(Debug, Clone, Copy)]
enum LenField {
    /// The payload's length, minimally encoded.
    Natural,
    /// The payload's length in a 16-bit field (non-minimal when under 126).
    Wide16,
    /// The payload's length in a 64-bit field (non-minimal when under 65536).
    Wide64,
    /// The payload's length with the 64-bit MSB set.
    Msb,
    /// Another length, minimally encoded.
    Declared(u64),
}

/// A client frame, possibly broken.
#[derive(Debug, Clone)]
struct WireFrame {
    fin: bool,
    /// The RSV bits where they are in the first byte.
    rsv: u8,
    opcode: OpCode,
    masked: bool,
    key: [u8; 4],
    payload: Vec<u8>,
    len: LenField,
}

impl WireFrame {
    fn masked(fin: bool, opcode: OpCode, key: [u8; 4], payload: Vec<u8>) -> WireFrame {
        WireFrame {
            fin,
            rsv: 0,
            opcode,
            masked: true,
            key,
            payload,
            len: LenField::Natural,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let n = self.payload.len() as u64;
        let len = match self.len {
            LenField::Natural => Length::Minimal(n),
            LenField::Declared(d) => Length::Minimal(d),
            LenField::Wide16 => Length::Wide16(n as u16),
            LenField::Wide64 => Length::Wide64(n),
            LenField::Msb => Length::Wide64(n | 1 << 63),
        };
        let mask = self.masked.then_some(self.key);
        encode_header(self.fin, self.rsv, self.opcode, mask, len, out);
        let start = out.len();
        out.extend_from_slice(&self.payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key);
        }
    }
}

fn encode_all(frames: &[WireFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out);
    }
    out
}

/// Invalid (or, at the end of a message, incomplete) UTF-8 to put into text.
const BAD_UTF8: [&[u8]; 8] = [
    b"\xff",
    b"\x80",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xe2\x82",
    b"\xc3",
];

/// A change to one frame (indices pick the frame, and the place in its payload).
#[derive(Debug, Clone)]
enum FrameMut {
    Rsv(Index, u8),
    FlipFin(Index),
    Opcode(Index, u8),
    Unmask(Index),
    Len(Index, LenField),
    BadUtf8(Index, Index, usize),
    Grow(Index, usize),
    Drop(Index),
    Duplicate(Index),
    Swap(Index, Index),
}

fn frame_mut() -> impl Strategy<Value = FrameMut> {
    let len = prop_oneof![
        Just(LenField::Wide16),
        Just(LenField::Wide64),
        Just(LenField::Msb),
        prop::sample::select(vec![
            0u64,
            1,
            125,
            126,
            127,
            65535,
            65536,
            65537,
            16384,
            16385,
            1 << 32
        ])
        .prop_map(LenField::Declared),
    ];
    let i = any::<Index>;
    prop_oneof![
        1 => (i(), 1u8..8).prop_map(|(i, r)| FrameMut::Rsv(i, r)),
        1 => i().prop_map(FrameMut::FlipFin),
        1 => (i(), 0u8..16).prop_map(|(i, o)| FrameMut::Opcode(i, o)),
        1 => i().prop_map(FrameMut::Unmask),
        2 => (i(), len).prop_map(|(i, l)| FrameMut::Len(i, l)),
        3 => (i(), i(), 0..BAD_UTF8.len()).prop_map(|(i, at, s)| FrameMut::BadUtf8(i, at, s)),
        1 => (i(), 1usize..200).prop_map(|(i, n)| FrameMut::Grow(i, n)),
        1 => i().prop_map(FrameMut::Drop),
        1 => i().prop_map(FrameMut::Duplicate),
        1 => (i(), i()).prop_map(|(a, b)| FrameMut::Swap(a, b)),
    ]
}

fn apply_frame_mut(frames: &mut Vec<WireFrame>, m: &FrameMut) {
    if frames.is_empty() {
        return;
    }
    let n = frames.len();
    match m {
        FrameMut::Rsv(i, r) => frames[i.index(n)].rsv = *r << 4,
        FrameMut::FlipFin(i) => frames[i.index(n)].fin ^= true,
        FrameMut::Opcode(i, o) => frames[i.index(n)].opcode = OpCode::from_bits(*o),
        FrameMut::Unmask(i) => frames[i.index(n)].masked = false,
        FrameMut::Len(i, l) => frames[i.index(n)].len = *l,
        FrameMut::BadUtf8(i, at, s) => {
            let payload = &mut frames[i.index(n)].payload;
            let at = at.index(payload.len() + 1);
            payload.splice(at..at, BAD_UTF8[*s].iter().copied());
        }
        FrameMut::Grow(i, extra) => {
            let payload = &mut frames[i.index(n)].payload;
            payload.resize(payload.len() + extra, b'x');
        }
        FrameMut::Drop(i) => {
            frames.remove(i.index(n));
        }
        FrameMut::Duplicate(i) => {
            let i = i.index(n);
            frames.insert(i, frames[i].clone());
        }
        FrameMut::Swap(a, b) => frames.swap(a.index(n), b.index(n)),
    }
}

/// A change to the bytes.
#[derive(Debug, Clone)]
enum ByteMut {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
}

fn byte_mut() -> impl Strategy<Value = ByteMut> {
    let i = any::<Index>;
    prop_oneof![
        3 => (i(), 0u8..8).prop_map(|(i, b)| ByteMut::Flip(i, b)),
        1 => (i(), any::<u8>()).prop_map(|(i, b)| ByteMut::Set(i, b)),
        1 => (i(), vec(any::<u8>(), 1..5)).prop_map(|(i, b)| ByteMut::Insert(i, b)),
        1 => (i(), 1usize..16).prop_map(|(i, n)| ByteMut::Delete(i, n)),
        1 => i().prop_map(ByteMut::Truncate),
    ]
}

fn apply_byte_mut(bytes: &mut Vec<u8>, m: &ByteMut) {
    let n = bytes.len();
    match m {
        ByteMut::Flip(i, bit) if n > 0 => bytes[i.index(n)] ^= 1 << bit,
        ByteMut::Set(i, b) if n > 0 => bytes[i.index(n)] = *b,
        ByteMut::Insert(i, b) => {
            let at = i.index(n + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        ByteMut::Delete(i, len) if n > 0 => {
            let at = i.index(n);
            bytes.drain(at..(at + len).min(n));
        }
        ByteMut::Truncate(i) => bytes.truncate(i.index(n + 1)),
        _ => {}
    }
}

/// Case kind 3: a valid script, mutated at the frame level and then at the byte level.
#[derive(Debug, Clone)]
struct Mutated {
    script: Script,
    frame_muts: Vec<FrameMut>,
    byte_muts: Vec<ByteMut>,
    cuts: Vec<Index>,
}

impl Mutated {
    fn body(&self) -> Vec<u8> {
        let mut frames = self.script.frames();
        for m in &self.frame_muts {
            apply_frame_mut(&mut frames, m);
        }
        let mut bytes = encode_all(&frames);
        for m in &self.byte_muts {
            apply_byte_mut(&mut bytes, m);
        }
        bytes
    }

    fn is_pristine(&self) -> bool {
        self.frame_muts.is_empty() && self.byte_muts.is_empty()
    }
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    vec(any::<Index>(), 0..6)
}

fn mutated() -> impl Strategy<Value = Mutated> {
    let no_frame_muts = || Just(Vec::<FrameMut>::new());
    let no_byte_muts = || Just(Vec::<ByteMut>::new());
    let muts = prop_oneof![
        (no_frame_muts(), no_byte_muts()),
        (vec(frame_mut(), 1..4), no_byte_muts()),
        (no_frame_muts(), vec(byte_mut(), 1..4)),
        (vec(frame_mut(), 1..3), vec(byte_mut(), 1..3)),
    ];
    (script(), muts, cuts()).prop_map(|(script, (frame_muts, byte_muts), cuts)| Mutated {
        script,
        frame_muts,
        byte_muts,
        cuts,
    })
}

/// Case kind 2: what follows a valid upgrade head.
fn random_frames() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        prop::bool::weighted(0.8),
        prop_oneof![7 => Just(0u8), 1 => 1u8..8],
        prop_oneof![3 => prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]), 1 => 0u8..16],
        prop::bool::weighted(0.9),
        any::<[u8; 4]>(),
        prop_oneof![
            vec(any::<u8>(), 0..64),
            "[ -~]{0,64}".prop_map(String::into_bytes)
        ],
    )
        .prop_map(|(fin, rsv, opcode, masked, key, payload)| WireFrame {
            fin,
            rsv: rsv << 4,
            opcode: OpCode::from_bits(opcode),
            masked,
            key,
            payload,
            len: LenField::Natural,
        });
    prop_oneof![
        vec(any::<u8>(), 0..1024),
        (vec(frame, 0..8), vec(any::<u8>(), 0..16)).prop_map(|(frames, tail)| {
            let mut bytes = encode_all(&frames);
            bytes.extend(tail);
            bytes
        }),
    ]
}

/// One of `pairs` as a header line.
fn pick(pairs: &[(&str, &str)]) -> impl Strategy<Value = String> {
    let lines: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    prop::sample::select(lines)
}

/// One header line of a request (no line ending).
fn header_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => pick(&UPGRADE_HEADERS),
        2 => pick(&[
            ("Sec-WebSocket-Version", "8"),
            ("Sec-WebSocket-Version", ""),
            ("Sec-WebSocket-Key", "c2hvcnQ="),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Protocol", "chat"),
            ("Origin", "http://example.com"),
            ("Connection", "close"),
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "h2c"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "-1"),
            ("Content-Length", "99999999999999999999999"),
            ("Content-Length", "65537"),
        ]),
        1 => (0u32..70000).prop_map(|n| format!("Content-Length: {n}")),
        2 => ("[!#-'*+.0-9A-Z^_`a-z|~-]{1,16}", "[ -~]{0,40}").prop_map(|(n, v)| format!("{n}: {v}")),
        1 => "[ -~]{0,40}",
        1 => any::<String>(),
    ]
}

/// Case kind 1: requests, from plain garbage to mutated upgrade heads followed by frames.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = || {
        prop_oneof![
            12 => Just("GET".to_owned()),
            1 => Just("HEAD".to_owned()),
            1 => Just("POST".to_owned()),
            1 => "[A-Z]{1,8}",
            1 => "[ -~]{0,8}",
        ]
    };
    let target = || {
        prop_oneof![
            8 => Just("/ws".to_owned()),
            1 => "/[a-z0-9?=&%/.]{0,20}",
            1 => "[ -~]{0,20}",
        ]
    };
    let version = || {
        prop_oneof![
            12 => Just("HTTP/1.1".to_owned()),
            1 => Just("HTTP/1.0".to_owned()),
            1 => "HTTP/[0-9]\\.[0-9]",
            1 => "[ -~]{0,10}",
        ]
    };
    let eol = prop_oneof![9 => Just("\r\n"), 1 => Just("\n")];
    // Mostly the valid upgrade headers, some dropped, others mixed in.
    let headers = (
        vec(prop::bool::weighted(0.93), 5),
        vec((any::<Index>(), header_line()), 0..3),
    )
        .prop_map(|(keep, extra)| {
            let mut lines: Vec<String> = UPGRADE_HEADERS
                .iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|((n, v), _)| format!("{n}: {v}"))
                .collect();
            for (at, line) in extra {
                lines.insert(at.index(lines.len() + 1), line);
            }
            lines
        });
    let tail = prop_oneof![
        2 => Just(Vec::new()),
        3 => script().prop_map(|s| encode_all(&s.frames())),
        1 => vec(any::<u8>(), 0..64),
    ];
    let muts = prop_oneof![
        2 => Just(Vec::<ByteMut>::new()),
        1 => vec(byte_mut(), 1..3),
    ];
    let upgrade = (
        (method(), target(), version(), eol),
        headers,
        prop::bool::weighted(0.9),
        tail,
        muts,
    )
        .prop_map(
            |((method, target, version, eol), headers, blank, tail, muts)| {
                let mut head = format!("{method} {target} {version}{eol}");
                for line in headers {
                    head.push_str(&line);
                    head.push_str(eol);
                }
                if blank {
                    head.push_str(eol);
                }
                let mut bytes = head.into_bytes();
                for m in &muts {
                    apply_byte_mut(&mut bytes, m);
                }
                bytes.extend(tail);
                bytes
            },
        );
    // Plain HTTP: the handler's 426, or the body framing's 400, 411 and 413.
    let plain_header = prop_oneof![
        2 => pick(&[
            ("Host", "localhost"),
            ("Connection", "close"),
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "-1"),
            ("Content-Length", "1, 1"),
            ("Content-Length", "99999999999999999999999"),
        ]),
        1 => (0u32..100).prop_map(|n| format!("Content-Length: {n}")),
        1 => (60000u32..70000).prop_map(|n| format!("Content-Length: {n}")),
    ];
    let plain = (
        (method(), target(), version()),
        vec(plain_header, 0..4),
        vec(any::<u8>(), 0..100),
    )
        .prop_map(|((method, target, version), headers, body)| {
            let mut head = format!("{method} {target} {version}\r\n");
            for line in headers {
                head.push_str(&line);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            [head.as_bytes(), &body].concat()
        });
    // Heads over the 8 KiB limit, by size or by header count.
    let oversized = prop_oneof![
        (8000usize..9000, any::<bool>()).prop_map(|(n, blank)| {
            let mut head = format!("GET /ws HTTP/1.1\r\nX-Filler: {}\r\n", "x".repeat(n));
            if blank {
                head.push_str("\r\n");
            }
            head.into_bytes()
        }),
        (60usize..70).prop_map(|n| {
            let mut head = String::from("GET /ws HTTP/1.1\r\n");
            for i in 0..n {
                head.push_str(&format!("X-{i}: v\r\n"));
            }
            head.push_str("\r\n");
            head.into_bytes()
        }),
    ];
    let line = prop::sample::select(vec![
        "GET / HTTP/1.1\r\n",
        "GET /ws HTTP/1.1\r\n",
        "POST / HTTP/1.1\r\n",
    ]);
    prop_oneof![
        2 => vec(any::<u8>(), 0..400),
        1 => (line, vec(any::<u8>(), 0..200)).prop_map(|(l, rest)| [l.as_bytes(), &rest].concat()),
        7 => upgrade,
        2 => plain,
        1 => oversized,
    ]
}

/// Any of the three kinds, for the concurrent test.
#[derive(Debug, Clone)]
enum AnyCase {
    Request(Vec<u8>, Vec<Index>),
    Frames(Vec<u8>, Vec<Index>),
    Mutated(Mutated),
}

fn any_case() -> impl Strategy<Value = AnyCase> {
    prop_oneof![
        (request(), cuts()).prop_map(|(r, c)| AnyCase::Request(r, c)),
        (random_frames(), cuts()).prop_map(|(f, c)| AnyCase::Frames(f, c)),
        mutated().prop_map(AnyCase::Mutated),
    ]
}

fn run_any(addr: SocketAddr, case: &AnyCase, expected: &Expected) -> TestCaseResult {
    match case {
        AnyCase::Request(bytes, cuts) => request_case(addr, bytes, cuts, expected),
        AnyCase::Frames(bytes, cuts) => upgraded_case(addr, bytes, cuts, None, expected),
        AnyCase::Mutated(m) => run_mutated(addr, m, expected),
    }
}

fn run_mutated(addr: SocketAddr, m: &Mutated, expected: &Expected) -> TestCaseResult {
    let planned = m.is_pristine().then(|| m.script.outcome());
    upgraded_case(addr, &m.body(), &m.cuts, planned.as_ref(), expected)
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// Finishes a test: a good client still gets its echo, the server stops cleanly, and the
/// handler saw what the model says for every upgraded connection.
fn finish(server: TestServer, expected: &Expected) {
    still_serving(server.addr, expected);
    let log = server.stop();
    check_handler_log(&log, &expected.lock().unwrap());
}

#[test]
fn random_requests_get_an_allowed_status_or_a_valid_websocket() {
    let server = fuzz_server();
    let expected = Expected::default();
    let done = Cell::new(0);
    run_property(cases(500), &(request(), cuts()), |(input, cuts)| {
        request_case(server.addr, &input, &cuts, &expected)?;
        now_and_then(&done, server.addr, &expected);
        Ok(())
    });
    finish(server, &expected);
}

#[test]
fn random_bytes_after_an_upgrade_end_in_a_valid_close_or_a_drop() {
    let server = fuzz_server();
    let expected = Expected::default();
    let done = Cell::new(0);
    run_property(cases(500), &(random_frames(), cuts()), |(body, cuts)| {
        upgraded_case(server.addr, &body, &cuts, None, &expected)?;
        now_and_then(&done, server.addr, &expected);
        Ok(())
    });
    finish(server, &expected);
}

#[test]
fn mutated_valid_frames_are_echoed_or_failed_as_rfc_6455_says() {
    let server = fuzz_server();
    let expected = Expected::default();
    let done = Cell::new(0);
    run_property(cases(500), &mutated(), |case| {
        run_mutated(server.addr, &case, &expected)?;
        now_and_then(&done, server.addr, &expected);
        Ok(())
    });
    finish(server, &expected);
}

#[test]
fn many_fuzzing_connections_at_once_leave_the_server_echoing() {
    const THREADS: usize = 20;
    let server = fuzz_server();
    let expected = Expected::default();
    let per_thread = cases(400).div_ceil(THREADS as u32);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (addr, expected) = (server.addr, expected.clone());
            std::thread::spawn(move || {
                run_property(per_thread, &any_case(), |case| {
                    run_any(addr, &case, &expected)
                });
            })
        })
        .collect();
    // Every thread ends (each case is bounded) before the first failure is reported.
    let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
    for result in results {
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
    finish(server, &expected);
}
