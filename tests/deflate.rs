//! permessage-deflate (RFC 7692) end to end.
//!
//! - Round trips through a real client that compresses: Python `websockets`, driven by
//!   `tests/deflate/client.py` from the virtualenv `target/py3` (`./test.sh` makes it;
//!   without it these tests fail, they never skip), against the in-process server and
//!   the binary, with the default answer (no context takeover either way), with context
//!   takeover, and with the offers `websockets` can make (window sizes, takeover hints).
//! - Raw sockets with exact answers: decompression bombs (1009), corrupt DEFLATE data and
//!   invalid UTF-8 once inflated (1007), RSV1 where RFC 7692 §6 does not allow it (1002),
//!   fragmented compressed messages around pings, the size threshold, malformed offers
//!   (400), declined offers, the extension switched off, the CLI flags, and broadcasts
//!   and publishes compressed once (byte-identical frames for every recipient).
//!
//! Frames are built and read here with flate2's raw DEFLATE (no zlib header): a message
//! is compressed with a sync flush and its trailing `00 00 ff ff` removed (§7.2.1); a
//! compressed reply gets them back before it is inflated (§7.2.2).

mod common;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use pushloop::DeflateConfig;
use pushloop_wire::{close_code, OpCode, RSV1, RSV2, RSV3};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What the server answers by default to any acceptable offer: no context takeover either
/// way, windows of 15 bits (not named).
const DEFAULT_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// §7.2.1: what a sync flush ends with, removed by the sender.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The longest a Python client run may take.
const PYTHON_LIMIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// DEFLATE
// ---------------------------------------------------------------------------------------

/// `data` compressed as a message on a fresh window (no context takeover).
fn deflate(data: &[u8]) -> Vec<u8> {
    deflate_with(&mut Compress::new(Compression::new(6), false), data)
}

/// `data` compressed as a message by `compress`, which keeps its window (context
/// takeover) unless reset: raw DEFLATE, sync flush, the trailing `00 00 ff ff` removed.
fn deflate_with(compress: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut input = data;
    for _ in 0..100_000 {
        let before = compress.total_in();
        compress
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("compress");
        input = &input[(compress.total_in() - before) as usize..];
        // zlib: the flush is complete once a call returns with output room to spare.
        if input.is_empty() && out.len() < out.capacity() {
            assert!(out.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
            out.truncate(out.len() - TAIL.len());
            return out;
        }
        out.reserve(out.capacity().max(1024));
    }
    panic!("compressing {} bytes did not finish", data.len());
}

/// A compressed message payload inflated on a fresh window.
fn inflate(payload: &[u8]) -> Vec<u8> {
    inflate_with(&mut Decompress::new(false), payload)
}

/// A compressed message payload inflated by `decompress` (which keeps its window):
/// `00 00 ff ff` appended (§7.2.2), output bounded by 64 MiB.
fn inflate_with(decompress: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut rest = &input[..];
    let mut out = Vec::with_capacity(payload.len() * 4 + 1024);
    for _ in 0..100_000 {
        let before = decompress.total_in();
        decompress
            .decompress_vec(rest, &mut out, FlushDecompress::Sync)
            .unwrap_or_else(|e| panic!("the server sent invalid DEFLATE data: {e}"));
        rest = &rest[(decompress.total_in() - before) as usize..];
        if rest.is_empty() && out.len() < out.capacity() {
            return out;
        }
        assert!(out.len() < 64 << 20, "a reply inflated past 64 MiB");
        out.reserve(out.capacity());
    }
    panic!("inflating {} bytes did not finish", payload.len());
}

/// About `len` bytes of text made of words, as chat messages are: compresses to a
/// third or so, and a second copy to almost nothing with context takeover.
fn prose(len: usize) -> String {
    const WORDS: [&str; 12] = [
        "the",
        "server",
        "sends",
        "compressed",
        "frames",
        "to",
        "every",
        "client",
        "on",
        "one",
        "loop",
        "thread",
    ];
    let mut text = String::new();
    let mut i = 7usize;
    while text.len() < len {
        i = i.wrapping_mul(1103515245).wrapping_add(12345) % (1 << 31);
        text.push_str(WORDS[(i >> 16) % WORDS.len()]);
        text.push(' ');
    }
    text.truncate(len);
    text
}

/// `len` pseudo-random bytes (incompressible).
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// A masked client frame with RSV1 set.
fn rsv1(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut frame = masked(fin, opcode, payload);
    frame[0] |= RSV1;
    frame
}

/// A one-frame compressed message carrying `data`.
fn compressed(opcode: OpCode, data: &[u8]) -> Vec<u8> {
    rsv1(true, opcode, &deflate(data))
}

/// A frame the server sent, RSV bits and all, with its bytes as they came.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    /// The RSV bits where they are in the first octet: RSV1 is "Per-Message Compressed"
    /// (§6).
    rsv: u8,
    opcode: OpCode,
    payload: Vec<u8>,
    wire: Vec<u8>,
}

impl Frame {
    fn compressed(&self) -> bool {
        self.rsv & RSV1 != 0
    }

    /// The message this one-frame message carries, inflated if compressed.
    fn data(&self) -> Vec<u8> {
        if self.compressed() {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        }
    }
}

/// Reads one server frame (unmasked, §5.1); the RSV bits are reported, not checked.
fn read_any(stream: &mut TcpStream) -> Frame {
    let (header, wire) = read_frame_wire(stream);
    Frame {
        fin: header.fin,
        rsv: header.rsv,
        opcode: header.opcode,
        payload: wire[header.len..].to_vec(),
        wire,
    }
}

/// Reads a whole one-frame data message (the server sends messages unfragmented).
fn read_message(stream: &mut TcpStream) -> Frame {
    let frame = read_any(stream);
    assert!(
        frame.fin && matches!(frame.opcode, OpCode::Text | OpCode::Binary),
        "expected a one-frame data message, got {:?}",
        (frame.fin, frame.rsv, frame.opcode, frame.payload.len())
    );
    assert_eq!(frame.rsv & (RSV2 | RSV3), 0, "RSV2/RSV3 set: {frame:?}");
    frame
}

/// Reads the next frame, asserts it is a Close without RSV bits, returns its code.
fn read_close_code(stream: &mut TcpStream) -> u16 {
    let frame = read_any(stream);
    assert_eq!(
        (frame.opcode, frame.fin, frame.rsv),
        (OpCode::Close, true, 0),
        "expected a Close frame, got {frame:?}"
    );
    close_code(&frame.payload).unwrap_or_else(|| panic!("Close without a code: {frame:?}"))
}

/// Sends a Close 1000 and reads the server's answer (its code).
fn close_raw(stream: &mut TcpStream) -> u16 {
    send_frame(stream, true, OpCode::Close, &1000u16.to_be_bytes());
    read_close_code(stream)
}

// ---------------------------------------------------------------------------------------
// Handshakes
// ---------------------------------------------------------------------------------------

/// Upgrades `path` on a raw socket, offering `offer` (if any) in one
/// `Sec-WebSocket-Extensions` header; asserts the 101 and returns the socket and response.
fn upgrade_at(addr: SocketAddr, path: &str, offer: Option<&str>) -> (TcpStream, HttpResponse) {
    let mut stream = tcp(addr);
    let extra: Vec<(&str, &str)> = offer
        .map(|o| ("Sec-WebSocket-Extensions", o))
        .into_iter()
        .collect();
    stream
        .write_all(&upgrade_head(path, &[], &extra))
        .expect("write request");
    let response = read_response(&mut stream);
    assert_switching(&response);
    (stream, response)
}

/// [`upgrade_at`] `/ws`.
fn upgrade(addr: SocketAddr, offer: Option<&str>) -> (TcpStream, HttpResponse) {
    upgrade_at(addr, "/ws", offer)
}

/// The `Sec-WebSocket-Extensions` of a response.
fn extensions(response: &HttpResponse) -> Option<&str> {
    response.header("sec-websocket-extensions")
}

/// A raw client at `path` that offered plain `permessage-deflate` and got `answer`.
fn deflate_client_at(addr: SocketAddr, path: &str, answer: &str) -> TcpStream {
    let (stream, response) = upgrade_at(addr, path, Some("permessage-deflate"));
    assert_eq!(extensions(&response), Some(answer), "{response:?}");
    stream
}

/// A raw client at `/ws` that negotiated the default answer.
fn deflate_client(addr: SocketAddr) -> TcpStream {
    deflate_client_at(addr, "/ws", DEFAULT_ANSWER)
}

/// Sends `data` compressed on `stream` and asserts it comes back compressed and equal.
fn assert_compressed_echo(stream: &mut TcpStream, opcode: OpCode, data: &[u8]) {
    stream
        .write_all(&compressed(opcode, data))
        .expect("write a compressed message");
    let echo = read_message(stream);
    assert!(
        echo.compressed(),
        "echo of {} bytes not compressed",
        data.len()
    );
    assert_eq!(echo.opcode, opcode, "echo opcode");
    assert!(echo.data() == data, "compressed echo differs");
}

/// A fresh client that negotiates the default answer still gets compressed echoes, and
/// a client without the extension still gets plain ones (the server must echo).
fn assert_deflate_still_serving(addr: SocketAddr) {
    let mut stream = deflate_client(addr);
    assert_compressed_echo(&mut stream, OpCode::Text, prose(1000).as_bytes());
    assert_compressed_echo(&mut stream, OpCode::Binary, &[7u8; 4096]);
    assert_eq!(close_raw(&mut stream), 1000);
    assert_still_serving(addr);
}

/// An echo server with permessage-deflate configured as `deflate`.
fn echo_server(deflate: DeflateConfig) -> TestServer {
    TestServer::start(test_config().deflate(deflate), echo())
}

/// Context takeover kept both ways.
fn takeover() -> DeflateConfig {
    DeflateConfig {
        server_context_takeover: true,
        client_context_takeover: true,
        ..DeflateConfig::default()
    }
}

/// On a server that negotiates the default answer: a client sends `frames` (one write)
/// and must be failed with `code`, which `on_close` reports too; then service goes on.
fn fails_with(frames: &[Vec<u8>], code: u16) {
    let mut server = echo_server(DeflateConfig::default());
    fails_on(&mut server, Some("permessage-deflate"), frames, code);
    assert_deflate_still_serving(server.addr);
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

/// A client on `server` offering `offer` sends `frames` and is failed with `code`.
fn fails_on(server: &mut TestServer, offer: Option<&str>, frames: &[Vec<u8>], code: u16) {
    let (mut stream, _) = upgrade(server.addr, offer);
    let id = server.wait_open(stream.local_addr().unwrap());
    stream.write_all(&frames.concat()).expect("write frames");
    let started = Instant::now();
    assert_eq!(read_close_code(&mut stream), code, "close code");
    assert!(
        started.elapsed() < TIMEOUT,
        "close took {:?}",
        started.elapsed()
    );
    let (seen, _) = server.wait_close(id);
    assert_eq!(seen, code, "on_close code");
}

// ---------------------------------------------------------------------------------------
// Python websockets
// ---------------------------------------------------------------------------------------

/// The virtualenv's Python, checked to import `websockets`; panics with how to make it.
fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py3/bin/python");
    let how = "run ./test.sh (it installs it: target/py3 with websockets==17.4)";
    assert!(
        python.is_file(),
        "deflate test: {} is missing: {how}",
        python.display()
    );
    let import = Command::new(&python)
        .args(["-c", "import websockets"])
        .output()
        .expect("run the virtualenv's python");
    assert!(
        import.status.success(),
        "deflate test: `import websockets` failed in target/py3 ({}): {how}",
        String::from_utf8_lossy(&import.stderr)
    );
    python
}

/// Runs `tests/deflate/client.py URL ARGS` (bounded by [`PYTHON_LIMIT`]), asserts it
/// succeeded with all 32 echoes checked, and returns its output.
fn run_client(url: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deflate/client.py");
    let mut command = Command::new(python());
    command.arg(script).arg(url).args(args);
    let output = output_within(command, PYTHON_LIMIT)
        .unwrap_or_else(|| panic!("client.py {args:?} did not finish within {PYTHON_LIMIT:?}"));
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "client.py {args:?} failed ({}):\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
        output.status
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("summary: messages=32 ok=32 ")),
        "client.py {args:?}: no full summary:\n{out}\n{err}"
    );
    out
}

/// Runs the Python client against an in-process echo server configured with `deflate`,
/// and checks the server saw no error and closed every connection once.
fn python_against(deflate: DeflateConfig, args: &[&str]) {
    let server = echo_server(deflate);
    run_client(&server.url("/ws"), args);
    let log = server.stop();
    assert_each_open_closed_once(&log);
    let errors = count(&log, |e| matches!(e, Event::Error { .. }));
    assert_eq!(errors, 0, "server errors: {log:#?}");
    // 28 sized messages, 2 fragmented, 2 repeated.
    let messages = count(&log, |e| matches!(e, Event::Message { .. }));
    assert_eq!(messages, 32, "messages the handler saw");
}

#[test]
fn python_websockets_round_trips_without_context_takeover() {
    // websockets offers `permessage-deflate; client_max_window_bits`; the server answers
    // no context takeover both ways, and does not name 15-bit windows.
    python_against(
        DeflateConfig::default(),
        &["--expect", DEFAULT_ANSWER, "--server-takeover", "no"],
    );
}

#[test]
fn python_websockets_round_trips_with_context_takeover() {
    // Nothing to name: both sides keep their context, with 15-bit windows. The client
    // compresses each message against the ones before: the server's per-connection
    // inflater must keep up, and its own second copy of a message must shrink.
    python_against(
        takeover(),
        &["--expect", "permessage-deflate", "--server-takeover", "yes"],
    );
}

#[test]
fn python_websockets_offers_with_context_takeover_configured() {
    // A client that asks the server not to keep its context gets that, and its window
    // hint is answered (§7.1.2.2): the client must then use a 1 KiB window.
    python_against(
        takeover(),
        &[
            "--server-no-context-takeover",
            "--client-max-window-bits",
            "10",
            "--expect",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
            "--server-takeover",
            "no",
        ],
    );
    // A client limiting the server's window to 1 KiB: named in the answer, and the
    // server's frames refer no further back (its 2 KiB-periodic data stays incompressible)
    // while it keeps its context.
    python_against(
        takeover(),
        &[
            "--client-no-context-takeover",
            "--server-max-window-bits",
            "10",
            "--expect",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
            "--server-takeover",
            "yes",
        ],
    );
}

#[test]
fn python_websockets_offers_with_the_default_config() {
    let window_answer =
        format!("{DEFAULT_ANSWER}; server_max_window_bits=10; client_max_window_bits=9");
    python_against(
        DeflateConfig::default(),
        &[
            "--server-max-window-bits",
            "10",
            "--client-max-window-bits",
            "9",
            "--expect",
            &window_answer,
            "--server-takeover",
            "no",
        ],
    );
    // A 256-byte window, which zlib cannot compress with: accepted, and every message
    // sent uncompressed (exactly header + payload on the wire).
    python_against(
        DeflateConfig::default(),
        &[
            "--server-max-window-bits",
            "8",
            "--expect",
            &format!("{DEFAULT_ANSWER}; server_max_window_bits=8"),
            "--server-compresses",
            "no",
            "--server-takeover",
            "no",
        ],
    );
    // No window hint offered at all.
    python_against(
        DeflateConfig::default(),
        &[
            "--client-max-window-bits",
            "none",
            "--expect",
            DEFAULT_ANSWER,
            "--server-takeover",
            "no",
        ],
    );
}

#[test]
fn python_websockets_through_the_binary() {
    let binary = Binary::start(&["--mode", "echo"]);
    run_client(
        &format!("ws://{}/ws", binary.addr),
        &["--expect", DEFAULT_ANSWER, "--server-takeover", "no"],
    );
    // The CLI's window sizes and context takeover reach the answer and the codecs.
    let binary = Binary::start(&[
        "--mode",
        "echo",
        "--deflate-context-takeover",
        "--deflate-window-bits",
        "11",
        "--deflate-client-window-bits",
        "12",
    ]);
    run_client(
        &format!("ws://{}/ws", binary.addr),
        &[
            "--expect",
            "permessage-deflate; server_max_window_bits=11; client_max_window_bits=12",
            "--server-takeover",
            "yes",
        ],
    );
    // Switched off: no answer, and every message plain.
    let binary = Binary::start(&["--mode", "echo", "--deflate", "off"]);
    run_client(
        &format!("ws://{}/ws", binary.addr),
        &["--expect", "none", "--server-takeover", "no"],
    );
}

// ---------------------------------------------------------------------------------------
// Decompression limits and bad compressed data
// ---------------------------------------------------------------------------------------

#[test]
fn inflating_past_max_message_closes_1009_quickly() {
    let mut server = TestServer::start(test_config().max_message(1 << 20), echo());
    // Exactly the limit inflated: delivered, and echoed compressed.
    let mut stream = deflate_client(server.addr);
    let id = server.wait_open(stream.local_addr().unwrap());
    let limit = vec![0u8; 1 << 20];
    assert_compressed_echo(&mut stream, OpCode::Binary, &limit);
    // One byte more: 1009, although the compressed message is 1 KiB.
    let over = deflate(&vec![0u8; (1 << 20) + 1]);
    assert!(over.len() < 2 << 10, "{} bytes", over.len());
    stream
        .write_all(&rsv1(true, OpCode::Binary, &over))
        .unwrap();
    assert_eq!(read_close_code(&mut stream), 1009);
    assert_eq!(server.wait_close(id).0, 1009);

    // A bomb: 64 MiB of zeros in 64 KiB, in one frame and in three.
    let bomb = deflate(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 128 << 10, "bomb of {} bytes", bomb.len());
    fails_on(
        &mut server,
        Some("permessage-deflate"),
        &[rsv1(true, OpCode::Text, &bomb)],
        1009,
    );
    let third = bomb.len() / 3;
    fails_on(
        &mut server,
        Some("permessage-deflate"),
        &[
            rsv1(false, OpCode::Binary, &bomb[..third]),
            masked(false, OpCode::Continuation, &bomb[third..2 * third]),
            masked(true, OpCode::Continuation, &bomb[2 * third..]),
        ],
        1009,
    );
    assert_deflate_still_serving(server.addr);
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

/// The peak resident memory (`VmHWM`) of process `pid`, in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    kib << 10
}

#[test]
fn a_bomb_does_not_blow_the_binary_s_memory() {
    let server = Binary::start(&["--mode", "echo", "--max-message", "1048576"]);
    // 512 MiB of zeros in half a MiB: inflated whole, it would need 512 MiB.
    let bomb = deflate(&vec![0u8; 512 << 20]);
    assert!(bomb.len() < 1 << 20, "bomb of {} bytes", bomb.len());
    let before = peak_memory(server.pid());
    let mut stream = deflate_client(server.addr);
    let started = Instant::now();
    stream
        .write_all(&rsv1(true, OpCode::Binary, &bomb))
        .expect("write the bomb");
    assert_eq!(read_close_code(&mut stream), 1009);
    let took = started.elapsed();
    let peak = peak_memory(server.pid());
    assert!(
        peak < before + (32 << 20),
        "peak resident memory went from {before} to {peak} bytes"
    );
    assert!(took < TIMEOUT, "the close took {took:?}");
    assert_deflate_still_serving(server.addr);
}

#[test]
fn corrupt_deflate_data_closes_1007() {
    // BFINAL 1, BTYPE 11: a reserved block type (RFC 1951 §3.2.3).
    fails_with(&[rsv1(true, OpCode::Binary, &[0xff, 0xff, 0xff])], 1007);
    // A back-reference to data before the start: only a client that kept its window
    // (here, a preset dictionary) would send it.
    let mut compress = Compress::new(Compression::new(6), false);
    compress
        .set_dictionary(b"a dictionary the server never saw")
        .unwrap();
    let data = deflate_with(&mut compress, b"a dictionary the server never saw, again");
    fails_with(&[rsv1(true, OpCode::Text, &data)], 1007);
}

#[test]
fn a_client_keeping_its_context_when_told_not_to_closes_1007() {
    // The answer said client_no_context_takeover; the client's second message refers to
    // its first, which the server's inflater no longer has (§7.1.1.2).
    let text = prose(300);
    let mut compress = Compress::new(Compression::new(6), false);
    let first = deflate_with(&mut compress, text.as_bytes());
    let second = deflate_with(&mut compress, text.as_bytes());
    assert!(second.len() < first.len() / 4);
    let mut server = echo_server(DeflateConfig::default());
    let (mut stream, _) = upgrade(server.addr, Some("permessage-deflate"));
    let id = server.wait_open(stream.local_addr().unwrap());
    stream.write_all(&rsv1(true, OpCode::Text, &first)).unwrap();
    assert_eq!(read_message(&mut stream).data(), text.as_bytes());
    stream
        .write_all(&rsv1(true, OpCode::Text, &second))
        .unwrap();
    assert_eq!(read_close_code(&mut stream), 1007);
    assert_eq!(server.wait_close(id).0, 1007);
    assert_deflate_still_serving(server.addr);
}

#[test]
fn compressed_text_inflating_to_invalid_utf8_closes_1007() {
    let mut bad = prose(200).into_bytes();
    bad.extend_from_slice(&[0xc3, 0x28]); // a lead byte without its continuation
    bad.extend_from_slice(prose(200).as_bytes());
    fails_with(&[compressed(OpCode::Text, &bad)], 1007);
    // Cut inside a character at the very end, in a fragmented message.
    let mut cut = prose(200).into_bytes();
    cut.extend_from_slice(&"€".as_bytes()[..2]);
    let data = deflate(&cut);
    fails_with(
        &[
            rsv1(false, OpCode::Text, &data[..data.len() / 2]),
            masked(true, OpCode::Continuation, &data[data.len() / 2..]),
        ],
        1007,
    );
    // The same bytes as binary are fine.
    let mut server = echo_server(DeflateConfig::default());
    let mut stream = deflate_client(server.addr);
    assert_compressed_echo(&mut stream, OpCode::Binary, &bad);
    assert_eq!(close_raw(&mut stream), 1000);
    server.wait_for("the binary message", |e| matches!(e, Event::Message { .. }));
}

// ---------------------------------------------------------------------------------------
// RSV bits (RFC 7692 §6, RFC 6455 §5.2)
// ---------------------------------------------------------------------------------------

#[test]
fn rsv1_on_a_continuation_closes_1002() {
    // §6.1: only the first frame of a compressed message has RSV1.
    let data = deflate(prose(500).as_bytes());
    fails_with(
        &[
            rsv1(false, OpCode::Text, &data[..100]),
            rsv1(true, OpCode::Continuation, &data[100..]),
        ],
        1002,
    );
    // Nor may an uncompressed message turn compressed halfway.
    fails_with(
        &[
            masked(false, OpCode::Binary, b"plain start"),
            rsv1(true, OpCode::Continuation, &data),
        ],
        1002,
    );
}

#[test]
fn rsv1_on_control_frames_closes_1002() {
    // §6: permessage-deflate gives RSV1 a meaning on data messages only.
    fails_with(&[rsv1(true, OpCode::Ping, b"ping")], 1002);
    fails_with(&[rsv1(true, OpCode::Pong, b"pong")], 1002);
    fails_with(&[rsv1(true, OpCode::Close, &1000u16.to_be_bytes())], 1002);
    // Nor between the fragments of a compressed message.
    let data = deflate(prose(500).as_bytes());
    fails_with(
        &[
            rsv1(false, OpCode::Text, &data[..100]),
            rsv1(true, OpCode::Ping, b"mid"),
        ],
        1002,
    );
}

#[test]
fn rsv2_and_rsv3_still_close_1002_with_the_extension() {
    for bit in [0x20u8, 0x10] {
        let mut frame = masked(true, OpCode::Text, b"hello");
        frame[0] |= bit;
        fails_with(&[frame], 1002);
    }
}

#[test]
fn rsv1_without_the_extension_closes_1002() {
    let frame = compressed(OpCode::Text, prose(100).as_bytes());
    // Nothing offered.
    let mut server = echo_server(DeflateConfig::default());
    fails_on(&mut server, None, std::slice::from_ref(&frame), 1002);
    // Offered, but declined for a parameter the server does not know.
    fails_on(
        &mut server,
        Some("permessage-deflate; x-unknown"),
        std::slice::from_ref(&frame),
        1002,
    );
    assert_deflate_still_serving(server.addr);
    // Offered to a server that has it switched off.
    let mut off = echo_server(DeflateConfig {
        enabled: false,
        ..DeflateConfig::default()
    });
    fails_on(
        &mut off,
        Some("permessage-deflate"),
        std::slice::from_ref(&frame),
        1002,
    );
    assert_still_serving(off.addr);
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

#[test]
fn fragmented_compressed_message_with_pings_between_fragments() {
    let server = echo_server(DeflateConfig::default());
    let mut stream = deflate_client(server.addr);
    stream.set_nodelay(true).unwrap();
    let text = prose(3000);
    let data = deflate(text.as_bytes());
    let (a, b) = (data.len() / 3, 2 * data.len() / 3);
    // Each in a write of its own.
    stream
        .write_all(&rsv1(false, OpCode::Text, &data[..a]))
        .unwrap();
    send_frame(&mut stream, true, OpCode::Ping, b"one");
    send_frame(&mut stream, false, OpCode::Continuation, &data[a..b]);
    send_frame(&mut stream, true, OpCode::Ping, b"two");
    send_frame(&mut stream, true, OpCode::Continuation, &data[b..]);
    for ping in [&b"one"[..], b"two"] {
        let pong = read_any(&mut stream);
        assert_eq!(
            (pong.opcode, pong.fin, pong.rsv, &pong.payload[..]),
            (OpCode::Pong, true, 0, ping),
            "{pong:?}"
        );
    }
    let echo = read_message(&mut stream);
    assert!(echo.compressed(), "echo not compressed");
    assert_eq!(echo.opcode, OpCode::Text);
    assert_eq!(echo.data(), text.as_bytes());

    // All the data in the first frame, then empty continuations; and the data all in the
    // last one, after an empty first frame with RSV1.
    let binary = noise(5000, 3).repeat(3);
    let data = deflate(&binary);
    stream
        .write_all(
            &[
                rsv1(false, OpCode::Binary, &data),
                masked(false, OpCode::Continuation, b""),
                masked(true, OpCode::Continuation, b""),
                rsv1(false, OpCode::Binary, b""),
                masked(true, OpCode::Continuation, &data),
            ]
            .concat(),
        )
        .unwrap();
    for _ in 0..2 {
        let echo = read_message(&mut stream);
        assert_eq!((echo.opcode, echo.compressed()), (OpCode::Binary, true));
        assert!(echo.data() == binary, "echo differs");
    }
    assert_eq!(close_raw(&mut stream), 1000);
    let log = server.stop();
    let texts = count(&log, |e| matches!(e, Event::Message { .. }));
    assert_eq!(texts, 3, "{log:#?}");
}

#[test]
fn threshold_decides_whether_replies_are_compressed() {
    let server = echo_server(DeflateConfig::default());
    let mut stream = deflate_client(server.addr);
    // Under 64 bytes: plain (RSV1 clear), whether the client compressed or not.
    for len in [1usize, 5, 63] {
        let text = "x".repeat(len);
        stream
            .write_all(&compressed(OpCode::Text, text.as_bytes()))
            .unwrap();
        let echo = read_message(&mut stream);
        assert_eq!(
            (echo.compressed(), echo.opcode, &echo.payload[..]),
            (false, OpCode::Text, text.as_bytes()),
            "echo of {len} bytes"
        );
    }
    // 64 bytes and more: compressed.
    for len in [64usize, 65, 1000] {
        let text = "y".repeat(len);
        stream
            .write_all(&compressed(OpCode::Text, text.as_bytes()))
            .unwrap();
        let echo = read_message(&mut stream);
        assert!(echo.compressed(), "echo of {len} bytes not compressed");
        assert!(echo.payload.len() < len / 2, "{} bytes", echo.payload.len());
        assert_eq!(echo.data(), text.as_bytes());
    }
    // A plain message on a connection that negotiated the extension is fine (§6), and
    // comes back compressed.
    let text = prose(500);
    send_frame(&mut stream, true, OpCode::Text, text.as_bytes());
    let echo = read_message(&mut stream);
    assert!(echo.compressed());
    assert_eq!(echo.data(), text.as_bytes());
    // Empty messages: `00` (§7.2.3.6) and an empty payload with RSV1 both inflate to
    // nothing, and come back empty and plain.
    for payload in [&[0x00u8][..], b""] {
        stream
            .write_all(&rsv1(true, OpCode::Binary, payload))
            .unwrap();
        let echo = read_message(&mut stream);
        assert_eq!(
            (echo.compressed(), echo.opcode, echo.payload.len()),
            (false, OpCode::Binary, 0)
        );
    }
    assert_eq!(close_raw(&mut stream), 1000);
}

#[test]
fn a_final_block_may_end_a_message() {
    // §7.2.3.4: a sender may end a message with a BFINAL block (no 00 00 ff ff to
    // remove); the receiver ignores what it appends after it, and the next message
    // starts a fresh stream, with or without context takeover.
    for config in [DeflateConfig::default(), takeover()] {
        let server = echo_server(config);
        let (mut stream, _) = upgrade(server.addr, Some("permessage-deflate"));
        // The server's replies keep their context when it was agreed.
        let mut decompress = Decompress::new(false);
        for round in 0..3 {
            let text = format!("{} {round}", prose(400));
            let mut compress = Compress::new(Compression::new(6), false);
            let mut data = Vec::with_capacity(4096);
            let status = compress
                .compress_vec(text.as_bytes(), &mut data, FlushCompress::Finish)
                .unwrap();
            assert_eq!(status, flate2::Status::StreamEnd);
            stream.write_all(&rsv1(true, OpCode::Text, &data)).unwrap();
            let echo = read_message(&mut stream);
            assert!(echo.compressed());
            let back = inflate_with(&mut decompress, &echo.payload);
            assert_eq!(back, text.as_bytes(), "round {round}");
        }
        assert_eq!(close_raw(&mut stream), 1000);
    }
}

#[test]
fn context_takeover_keeps_both_windows_on_raw_sockets() {
    let server = echo_server(takeover());
    let (mut stream, response) = upgrade(server.addr, Some("permessage-deflate"));
    assert_eq!(extensions(&response), Some("permessage-deflate"));
    let mut compress = Compress::new(Compression::new(6), false);
    let mut decompress = Decompress::new(false);
    let text = prose(600);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        // The client's copies refer back to its earlier ones: the server keeps its inflater.
        let data = deflate_with(&mut compress, text.as_bytes());
        stream.write_all(&rsv1(true, OpCode::Text, &data)).unwrap();
        let echo = read_message(&mut stream);
        assert!(echo.compressed());
        // So do the server's: inflated on a window kept across messages.
        assert_eq!(
            inflate_with(&mut decompress, &echo.payload),
            text.as_bytes()
        );
        sizes.push(echo.payload.len());
    }
    assert!(
        sizes[1] < sizes[0] / 4 && sizes[2] < sizes[0] / 4,
        "no context kept: {sizes:?}"
    );
    assert_eq!(close_raw(&mut stream), 1000);
}

// ---------------------------------------------------------------------------------------
// Negotiation
// ---------------------------------------------------------------------------------------

#[test]
fn malformed_offers_are_400() {
    let server = echo_server(DeflateConfig::default());
    let offers: [&[&str]; 12] = [
        &["permessage-deflate; server_max_window_bits=99"],
        &["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
        &["permessage-deflate; server_max_window_bits"],
        &["permessage-deflate; server_max_window_bits=7"],
        &["permessage-deflate; client_max_window_bits=16"],
        &["permessage-deflate; client_max_window_bits=010"],
        &["permessage-deflate; server_no_context_takeover=1"],
        &["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"],
        &["permessage-deflate;"],
        &["permessage-deflate; server_max_window_bits=\"1 0\""],
        // Malformed after an acceptable offer, in the same header or the next one.
        &["permessage-deflate, permessage-deflate; server_max_window_bits=16"],
        &[
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits=7",
        ],
    ];
    for values in offers {
        let extra: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("Sec-WebSocket-Extensions", *v))
            .collect();
        let response = http_exchange(server.addr, &upgrade_head("/ws", &[], &extra));
        assert_eq!(response.status, 400, "{values:?}: {response:?}");
        assert_eq!(response.header("connection"), Some("close"), "{response:?}");
        assert_eq!(response.header("sec-websocket-accept"), None);
        assert_eq!(extensions(&response), None);
        assert_deflate_still_serving(server.addr);
    }
    let log = server.stop();
    // Only the clients that were served opened: two per round.
    let opens = count(&log, |e| matches!(e, Event::Open { .. }));
    assert_eq!(opens, 2 * offers.len(), "{log:#?}");
}

#[test]
fn well_formed_offers_get_the_right_answer() {
    let default = echo_server(DeflateConfig::default());
    let kept = echo_server(takeover());
    let cases: [(&TestServer, &str, Option<String>); 11] = [
        (&default, "permessage-deflate", Some(DEFAULT_ANSWER.into())),
        (
            &default,
            "permessage-deflate; client_max_window_bits",
            Some(DEFAULT_ANSWER.into()),
        ),
        (
            &default,
            "permessage-deflate; server_max_window_bits=10",
            Some(format!("{DEFAULT_ANSWER}; server_max_window_bits=10")),
        ),
        // A quoted value is the same value; parameters are case-insensitive.
        (
            &default,
            "permessage-deflate; Server_Max_Window_Bits=\"12\"",
            Some(format!("{DEFAULT_ANSWER}; server_max_window_bits=12")),
        ),
        // An unknown parameter declines that offer only; the next one is taken.
        (&default, "permessage-deflate; x-unknown=1", None),
        (
            &default,
            "permessage-deflate; x-unknown, permessage-deflate; client_max_window_bits=11",
            Some(format!("{DEFAULT_ANSWER}; client_max_window_bits=11")),
        ),
        // Other extensions are ignored.
        (&default, "x-webkit-deflate-frame", None),
        (
            &default,
            "x-webkit-deflate-frame, permessage-deflate",
            Some(DEFAULT_ANSWER.into()),
        ),
        // With context takeover configured, only what the client asked for is named.
        (
            &kept,
            "permessage-deflate",
            Some("permessage-deflate".into()),
        ),
        (
            &kept,
            "permessage-deflate; client_no_context_takeover",
            Some("permessage-deflate; client_no_context_takeover".into()),
        ),
        (
            &kept,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=15",
            Some(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=15".into(),
            ),
        ),
    ];
    for (server, offer, answer) in cases {
        let (mut stream, response) = upgrade(server.addr, Some(offer));
        assert_eq!(
            extensions(&response),
            answer.as_deref(),
            "offer {offer:?}: {response:?}"
        );
        // Whatever was agreed, a message goes through.
        let text = prose(300);
        let frame = if answer.is_some() {
            compressed(OpCode::Text, text.as_bytes())
        } else {
            masked(true, OpCode::Text, text.as_bytes())
        };
        stream.write_all(&frame).unwrap();
        let echo = read_message(&mut stream);
        assert_eq!(echo.compressed(), answer.is_some(), "offer {offer:?}");
        assert_eq!(echo.data(), text.as_bytes(), "offer {offer:?}");
        assert_eq!(close_raw(&mut stream), 1000);
    }
}

#[test]
fn switched_off_the_server_answers_without_the_extension() {
    let server = echo_server(DeflateConfig {
        enabled: false,
        ..DeflateConfig::default()
    });
    let binary = Binary::start(&["--mode", "echo", "--deflate", "off"]);
    for addr in [server.addr, binary.addr] {
        let (mut stream, response) =
            upgrade(addr, Some("permessage-deflate; client_max_window_bits"));
        assert_eq!(extensions(&response), None, "{response:?}");
        let text = prose(1000);
        send_frame(&mut stream, true, OpCode::Text, text.as_bytes());
        let echo = read_message(&mut stream);
        assert_eq!(
            (echo.compressed(), &echo.payload[..]),
            (false, text.as_bytes())
        );
        assert_eq!(close_raw(&mut stream), 1000);
        assert_still_serving(addr);
    }
}

#[test]
fn cli_flags_shape_the_answer_and_the_frames() {
    let binary = Binary::start(&[
        "--mode",
        "echo",
        "--deflate-window-bits",
        "10",
        "--deflate-client-window-bits",
        "9",
    ]);
    let answers = [
        (
            "permessage-deflate",
            format!("{DEFAULT_ANSWER}; server_max_window_bits=10"),
        ),
        (
            "permessage-deflate; client_max_window_bits",
            format!("{DEFAULT_ANSWER}; server_max_window_bits=10; client_max_window_bits=9"),
        ),
        (
            "permessage-deflate; server_max_window_bits=12",
            format!("{DEFAULT_ANSWER}; server_max_window_bits=10"),
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            format!("{DEFAULT_ANSWER}; server_max_window_bits=9"),
        ),
    ];
    for (offer, answer) in answers {
        let (mut stream, response) = upgrade(binary.addr, Some(offer));
        assert_eq!(extensions(&response), Some(&answer[..]), "offer {offer:?}");
        // Data that repeats every 2 KiB: only a window over 1 KiB could shrink it.
        let periodic = noise(2048, 9).repeat(50);
        stream
            .write_all(&compressed(OpCode::Binary, &periodic))
            .unwrap();
        let echo = read_message(&mut stream);
        assert!(echo.compressed());
        assert!(
            echo.payload.len() > periodic.len() * 9 / 10,
            "offer {offer:?}: {} bytes: the server used a window over 1 KiB",
            echo.payload.len()
        );
        assert!(echo.data() == periodic);
        assert_eq!(close_raw(&mut stream), 1000);
    }

    // Threshold: 199 bytes plain, 200 compressed.
    let binary = Binary::start(&["--mode", "echo", "--deflate-threshold", "200"]);
    let mut stream = deflate_client(binary.addr);
    let text = "z".repeat(199);
    stream
        .write_all(&compressed(OpCode::Text, text.as_bytes()))
        .unwrap();
    let echo = read_message(&mut stream);
    assert_eq!(
        (echo.compressed(), &echo.payload[..]),
        (false, text.as_bytes())
    );
    let text = "z".repeat(200);
    stream
        .write_all(&compressed(OpCode::Text, text.as_bytes()))
        .unwrap();
    let echo = read_message(&mut stream);
    assert!(echo.compressed() && echo.payload.len() < 100, "{echo:?}");
    assert_eq!(echo.data(), text.as_bytes());
    assert_eq!(close_raw(&mut stream), 1000);

    // Level 0 writes stored blocks, 6 bytes more than the message. Without a server
    // context such a message would go plain; with one, it must go compressed.
    let binary = Binary::start(&[
        "--mode",
        "echo",
        "--deflate-level",
        "0",
        "--deflate-context-takeover",
    ]);
    let mut stream = deflate_client_at(binary.addr, "/ws", "permessage-deflate");
    stream
        .write_all(&compressed(OpCode::Text, text.as_bytes()))
        .unwrap();
    let echo = read_message(&mut stream);
    assert!(echo.compressed());
    // RFC 1951 §3.2.4: a stored block (00, LEN, NLEN, the bytes), then the header of the
    // empty block whose LEN/NLEN were removed (§7.2.1).
    let mut stored = vec![0x00, 200, 0, !200u8, 0xff];
    stored.extend_from_slice(text.as_bytes());
    stored.push(0x00);
    assert_eq!(echo.payload, stored);
    assert_eq!(echo.data(), text.as_bytes());
    assert_eq!(close_raw(&mut stream), 1000);
}

// ---------------------------------------------------------------------------------------
// Broadcasts and publishes: compressed once
// ---------------------------------------------------------------------------------------

#[test]
fn a_broadcast_is_compressed_once_for_every_recipient() {
    let mut server = TestServer::start(test_config(), chat());
    let mut sender = deflate_client(server.addr);
    let (mut one, mut two) = (deflate_client(server.addr), deflate_client(server.addr));
    // A smaller window: a frame of its own, compressed for that window.
    let (mut small, response) = upgrade(
        server.addr,
        Some("permessage-deflate; server_max_window_bits=10"),
    );
    assert_eq!(
        extensions(&response),
        Some(&format!("{DEFAULT_ANSWER}; server_max_window_bits=10")[..])
    );
    // No extension: plain.
    let (mut plain, _) = upgrade(server.addr, None);
    for stream in [&sender, &one, &two, &small, &plain] {
        server.wait_open(stream.local_addr().unwrap());
    }
    for (opcode, data) in [
        (OpCode::Text, prose(2000).into_bytes()),
        (OpCode::Binary, noise(1500, 5).repeat(4)),
    ] {
        sender.write_all(&compressed(opcode, &data)).unwrap();
        let (a, b) = (read_message(&mut one), read_message(&mut two));
        assert!(a.compressed(), "broadcast not compressed");
        assert_eq!(a.opcode, opcode);
        assert!(a.wire == b.wire, "the two recipients got different frames");
        assert!(a.data() == data);
        let s = read_message(&mut small);
        assert!(s.compressed() && s.opcode == opcode);
        assert!(s.data() == data);
        if opcode == OpCode::Binary {
            // It repeats every 1500 bytes: only the 15-bit window reaches back that far.
            assert!(
                s.payload.len() > a.payload.len() + 3000,
                "window 10: {} bytes, window 15: {} bytes",
                s.payload.len(),
                a.payload.len()
            );
        }
        let p = read_message(&mut plain);
        assert!(!p.compressed() && p.opcode == opcode);
        assert!(p.payload == data);
    }
    for stream in [&mut sender, &mut one, &mut two, &mut small, &mut plain] {
        assert_eq!(close_raw(stream), 1000);
    }
}

#[test]
fn the_binary_publishes_and_chats_compressed_once() {
    let binary = Binary::start(&[]); // chat mode
    let mut members: Vec<TcpStream> = (0..3)
        .map(|_| deflate_client_at(binary.addr, "/ws/news", DEFAULT_ANSWER))
        .collect();
    // A publish over HTTP reaches all three: the same compressed frame.
    let body = prose(3000);
    let head = format!(
        "POST /publish/news HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = http_exchange(binary.addr, head.as_bytes());
    assert_eq!(response.status, 200, "{response:?}");
    let frames: Vec<Frame> = members.iter_mut().map(read_message).collect();
    assert!(frames[0].compressed(), "published message not compressed");
    assert!(
        frames.iter().all(|f| f.wire == frames[0].wire),
        "frames differ"
    );
    assert_eq!(frames[0].data(), body.as_bytes());
    // A chat message from the first member reaches the other two alike.
    let text = prose(1500);
    members[0]
        .write_all(&compressed(OpCode::Text, text.as_bytes()))
        .unwrap();
    let [b, c] = [read_message(&mut members[1]), read_message(&mut members[2])];
    assert!(b.compressed() && b.wire == c.wire, "chat frames differ");
    assert_eq!(b.data(), text.as_bytes());
    for stream in &mut members {
        assert_eq!(close_raw(stream), 1000);
    }
}
