//! Shared helpers for the integration tests: an in-process server whose handler records
//! every callback, tungstenite clients, raw-socket tools for speaking bad WebSocket, and
//! a wrapper around the `pushloop` binary.
//!
//! Every network wait is bounded by [`TIMEOUT`]: sockets get read and write timeouts,
//! channels are read with `recv_timeout`, loops are bounded in count.
#![allow(dead_code)]

/// Runs each named test function (taking a [`Workers`]) twice, as `one_worker::NAME`
/// with the default single worker and `two_workers::NAME` with `--workers 2` (channels
/// then span workers: most are owned by the worker a request does not land on). Test
/// files that use it declare `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! with_one_and_two_workers {
    ($($name:ident),* $(,)?) => {
        mod one_worker {
            $( #[test] fn $name() { super::$name(super::Workers(1)) } )*
        }
        mod two_workers {
            $( #[test] fn $name() { super::$name(super::Workers(2)) } )*
        }
    };
}

pub mod auth;
pub mod nginx;
pub mod ops;
pub mod proxy;
pub mod push;
pub mod redis;
pub mod tls;

use pushloop::{
    Backlog, CloseCode, Config, ConnId, Context, Error, Handle, Handler, Message, OwnedMessage,
    Request, Server,
};
use pushloop_wire::{
    encode_frame, header_len, parse_close, parse_header, upgrade_headers, write_request_head,
    Header, OpCode, ResponseHead,
};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::{Request as ClientRequest, Response as ClientResponse};
use tungstenite::protocol::CloseFrame;
use tungstenite::WebSocket;

/// The bound on every single wait.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The key of RFC 6455 §1.3 and its accept value.
pub const KEY: &str = pushloop_wire::SAMPLE_KEY;
pub const ACCEPT: &str = pushloop_wire::SAMPLE_ACCEPT;

/// A tungstenite client over a plain std socket.
pub type Client = WebSocket<TcpStream>;

// ---------------------------------------------------------------------------------------
// The in-process server
// ---------------------------------------------------------------------------------------

/// One handler callback, as the recording handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Open {
        id: ConnId,
        peer: Option<SocketAddr>,
        path: String,
        protocol: Option<String>,
        /// `ctx.connection_count()` during `on_open`.
        count: usize,
    },
    Message {
        id: ConnId,
        msg: OwnedMessage,
    },
    Error {
        id: ConnId,
        error: String,
    },
    Close {
        id: ConnId,
        code: CloseCode,
        reason: String,
    },
    Backlog {
        id: ConnId,
        backlog: Backlog,
    },
}

/// What the test handler does with a message (after recording it).
pub type OnMessage = Box<dyn FnMut(&mut Context<'_>, ConnId, Message<'_>) + Send>;

/// Sends every message back to its sender.
pub fn echo() -> OnMessage {
    Box::new(|ctx, id, msg| {
        ctx.send(id, msg);
    })
}

/// Sends every message to every other client.
pub fn chat() -> OnMessage {
    Box::new(|ctx, id, msg| {
        ctx.broadcast_except(id, msg);
    })
}

/// Echo, except that the text `"block"` blocks the loop thread (inside `on_message`)
/// until the returned gate is opened (or [`TIMEOUT`] passes). While it is blocked, a test
/// can arrange bytes and FINs to be waiting on sockets when the loop next reads them.
pub fn gated_echo() -> (OnMessage, Sender<()>) {
    let (gate, opened) = mpsc::channel::<()>();
    let on_message: OnMessage = Box::new(move |ctx, id, msg| {
        if msg.as_text() == Some("block") {
            opened
                .recv_timeout(TIMEOUT)
                .expect("the test did not open the gate in time");
        }
        ctx.send(id, msg);
    });
    (on_message, gate)
}

/// The handler of the in-process server: records each callback on a channel, then
/// lets `on_message` act.
struct Recorder {
    events: Sender<Event>,
    on_message: OnMessage,
}

impl Handler for Recorder {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), pushloop::Refusal> {
        let _ = self.events.send(Event::Open {
            id,
            peer: ctx.peer_addr(id),
            path: req.path().to_owned(),
            protocol: ctx.protocol(id).map(str::to_owned),
            count: ctx.connection_count(),
        });
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        let _ = self.events.send(Event::Message {
            id,
            msg: msg.into(),
        });
        (self.on_message)(ctx, id, msg);
    }

    fn on_backlog(&mut self, _ctx: &mut Context<'_>, id: ConnId, backlog: Backlog) {
        let _ = self.events.send(Event::Backlog { id, backlog });
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, id: ConnId, code: CloseCode, reason: &str) {
        let _ = self.events.send(Event::Close {
            id,
            code,
            reason: reason.to_owned(),
        });
    }

    fn on_error(&mut self, _ctx: &mut Context<'_>, id: ConnId, error: &Error) {
        let _ = self.events.send(Event::Error {
            id,
            error: error.to_string(),
        });
    }
}

/// A [`Server`] running on its own thread on an ephemeral port, with a recording handler.
/// Dropping it stops the server (bounded); [`TestServer::stop`] also checks the stop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: Handle,
    events: Receiver<Event>,
    /// Every event received so far, in order.
    log: Vec<Event>,
    done: Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The configuration the tests start from: defaults, with a short shutdown.
pub fn test_config() -> Config {
    Config::default().shutdown_timeout(Duration::from_secs(2))
}

impl TestServer {
    /// An echo server with [`test_config`].
    pub fn echo() -> TestServer {
        TestServer::start(test_config(), echo())
    }

    /// A server with `config` whose handler runs `on_message`.
    pub fn start(config: Config, on_message: OnMessage) -> TestServer {
        let server = Server::bind_with("127.0.0.1:0", config).expect("bind 127.0.0.1:0");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0, "bound an ephemeral port");
        let handle = server.handle();
        let (tx, events) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let result = server.run(Recorder {
                events: tx,
                on_message,
            });
            let _ = done_tx.send(result);
        });
        TestServer {
            addr,
            handle,
            events,
            log: Vec::new(),
            done,
            thread: Some(thread),
        }
    }

    /// `ws://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Waits for the first event (seen before or arriving within [`TIMEOUT`]) that `pred`
    /// accepts.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(e) = self.log.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.log.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {what}; events so far: {:#?}",
                    self.log
                ),
            }
        }
    }

    /// The id of the connection whose peer (the client's local address) is `peer`.
    pub fn wait_open(&mut self, peer: SocketAddr) -> ConnId {
        match self.wait_for(
            &format!("on_open from {peer}"),
            |e| matches!(e, Event::Open { peer: Some(p), .. } if *p == peer),
        ) {
            Event::Open { id, .. } => id,
            _ => unreachable!(),
        }
    }

    /// The id of a tungstenite client's connection.
    pub fn id_of(&mut self, client: &Client) -> ConnId {
        let peer = client.get_ref().local_addr().expect("client local addr");
        self.wait_open(peer)
    }

    /// The code and reason `on_close` reported for `id`.
    pub fn wait_close(&mut self, id: ConnId) -> (u16, String) {
        match self.wait_for(
            &format!("on_close of {id}"),
            |e| matches!(e, Event::Close { id: i, .. } if *i == id),
        ) {
            Event::Close { code, reason, .. } => (code.into(), reason),
            _ => unreachable!(),
        }
    }

    /// Blocks the loop thread with `client`'s `"block"` message (the server must run
    /// [`gated_echo`]); returns once the handler is inside `on_message`.
    pub fn block_loop(&mut self, client: &mut Client) {
        client
            .send(tungstenite::Message::text("block"))
            .expect("send block");
        let id = self.id_of(client);
        let block = OwnedMessage::Text("block".into());
        self.wait_for(
            "the loop to block",
            |e| matches!(e, Event::Message { id: i, msg } if *i == id && *msg == block),
        );
    }

    /// Stops the server through its handle, waits (bounded) for `run` to return `Ok`, and
    /// returns every event the handler recorded, in order.
    pub fn stop(mut self) -> Vec<Event> {
        self.handle.stop().expect("server still running at stop");
        let result = self
            .done
            .recv_timeout(TIMEOUT * 2)
            .expect("server did not stop in time");
        result.expect("Server::run returned an error");
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread panicked");
        }
        // The handler (and its sender) is gone: this drains everything, deterministically.
        self.log.extend(self.events.try_iter());
        std::mem::take(&mut self.log)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.handle.stop();
            if self.done.recv_timeout(TIMEOUT * 2).is_ok() {
                let _ = thread.join();
            }
        }
    }
}

/// How many events in `log` `pred` accepts.
pub fn count(log: &[Event], pred: impl Fn(&Event) -> bool) -> usize {
    log.iter().filter(|e| pred(e)).count()
}

/// Checks the handler contract on a finished server's log: each opened connection was
/// closed exactly once, and nothing was closed that was never opened.
pub fn assert_each_open_closed_once(log: &[Event]) {
    for e in log {
        if let Event::Open { id, .. } = e {
            let closes = count(log, |c| matches!(c, Event::Close { id: i, .. } if i == id));
            assert_eq!(closes, 1, "on_close calls for {id}: {log:#?}");
        }
        if let Event::Close { id, .. } = e {
            let opens = count(log, |o| matches!(o, Event::Open { id: i, .. } if i == id));
            assert_eq!(
                opens, 1,
                "on_close for {id} that was opened {opens} times: {log:#?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// tungstenite clients
// ---------------------------------------------------------------------------------------

/// A connected std socket with read and write timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// A tungstenite client for `ws://addr{path}`.
pub fn connect(addr: SocketAddr, path: &str) -> (Client, ClientResponse) {
    let request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    connect_request(addr, request)
}

/// A tungstenite client sending `request` (e.g. with extra headers).
pub fn connect_request(addr: SocketAddr, request: ClientRequest) -> (Client, ClientResponse) {
    tungstenite::client::client(request, tcp(addr))
        .unwrap_or_else(|e| panic!("websocket handshake with {addr}: {e}"))
}

/// The next message a client reads.
pub fn recv(client: &mut Client) -> tungstenite::Message {
    client.read().expect("read a message")
}

/// Sends `msg` and asserts it comes back unchanged.
pub fn assert_echo(client: &mut Client, msg: tungstenite::Message) {
    client.send(msg.clone()).expect("send");
    let back = recv(client);
    assert!(
        back == msg,
        "echo differs: sent {} bytes, got {} bytes ({:?}...)",
        msg.len(),
        back.len(),
        preview(&back)
    );
}

fn preview(msg: &tungstenite::Message) -> String {
    format!("{msg:?}").chars().take(80).collect()
}

/// The client closes with `code`/`reason`, reads the server's answering Close, and
/// returns its code, then reads on to the end of the connection.
pub fn close_client(client: &mut Client, code: u16, reason: &str) -> Option<u16> {
    client
        .close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }))
        .expect("send close");
    let answer = read_until_close(client);
    answer.map(|f| u16::from(f.code))
}

/// Reads (skipping data, at most 100 messages) until the server's Close frame; returns
/// it, then reads on until tungstenite reports the connection closed.
pub fn read_until_close(client: &mut Client) -> Option<CloseFrame> {
    for _ in 0..100 {
        match client.read() {
            Ok(tungstenite::Message::Close(frame)) => {
                expect_closed(client);
                return frame;
            }
            Ok(_) => continue,
            Err(e) => panic!("reading until close: {e}"),
        }
    }
    panic!("no close frame within 100 messages");
}

/// After the close handshake, the next read says the connection is closed.
fn expect_closed(client: &mut Client) {
    match client.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
}

/// A well-behaved client still gets service: a fresh tungstenite connection echoes a
/// text and a binary message and closes cleanly (the server must echo).
pub fn assert_still_serving(addr: SocketAddr) {
    let (mut client, response) = connect(addr, "/ws");
    assert_eq!(response.status(), 101);
    assert_echo(&mut client, tungstenite::Message::text("still there?"));
    assert_echo(
        &mut client,
        tungstenite::Message::binary(vec![0u8, 1, 2, 255]),
    );
    assert_eq!(close_client(&mut client, 1000, "done"), Some(1000));
}

// ---------------------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------------------

/// The headers of a valid upgrade request, in order.
pub const UPGRADE_HEADERS: [(&str, &str); 5] = upgrade_headers("localhost", KEY);

/// A request head for `GET {path}` with the valid upgrade headers except those named in
/// `skip` (case-insensitive), followed by `extra`.
pub fn upgrade_head(path: &str, skip: &[&str], extra: &[(&str, &str)]) -> Vec<u8> {
    let kept = UPGRADE_HEADERS
        .into_iter()
        .filter(|(name, _)| !skip.iter().any(|s| s.eq_ignore_ascii_case(name)));
    let mut head = Vec::new();
    write_request_head("GET", path, kept.chain(extra.iter().copied()), &mut head);
    head
}

/// A parsed HTTP response (owned, from a [`ResponseHead`]).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<ResponseHead<'_>> for HttpResponse {
    fn from(head: ResponseHead<'_>) -> HttpResponse {
        HttpResponse {
            status: head.status,
            headers: head
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: Vec::new(),
        }
    }
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP response head (byte by byte, so no frame after it is consumed) and,
/// if it has a `Content-Length`, its body.
pub fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let bytes = read_head_bytes(stream);
    let head = parse_response_head(&bytes);
    let len = head
        .content_length()
        .unwrap_or_else(|e| panic!("{e}: {head:?}"));
    let mut response = HttpResponse::from(head);
    if let Some(len) = len {
        let mut body = vec![0; len];
        stream
            .read_exact(&mut body)
            .expect("read the response body");
        response.body = body;
    }
    response
}

/// Reads one HTTP response head only (byte by byte), leaving any body unread: for
/// streams, and for answers that have no body whatever their `Content-Length` (`HEAD`).
pub fn read_response_head(stream: &mut TcpStream) -> HttpResponse {
    parse_response_head(&read_head_bytes(stream)).into()
}

/// The bytes of one response head, read byte by byte up to its blank line.
fn read_head_bytes(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(
            head.len() < 64 << 10,
            "response head too long: {:?}",
            String::from_utf8_lossy(&head)
        );
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed inside the response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!(
                "reading the response head after {:?}: {e}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    head
}

/// A whole response head (`HTTP/1.1`, UTF-8, `name: value` lines), or a panic.
fn parse_response_head(head: &[u8]) -> ResponseHead<'_> {
    match ResponseHead::parse(head) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => panic!(
            "incomplete response head {:?}",
            String::from_utf8_lossy(head)
        ),
        Err(e) => panic!("{e} in {:?}", String::from_utf8_lossy(head)),
    }
}

/// Sends `head` on a fresh socket and reads the response.
pub fn http_exchange(addr: SocketAddr, head: &[u8]) -> HttpResponse {
    let mut stream = tcp(addr);
    stream.write_all(head).expect("write request");
    read_response(&mut stream)
}

/// Asserts the response is a `101` with the right accept key.
pub fn assert_switching(response: &HttpResponse) {
    assert_eq!(response.status, 101, "{response:?}");
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some(ACCEPT),
        "{response:?}"
    );
    assert!(
        response
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{response:?}"
    );
}

/// A raw socket upgraded at `path`: the 101 was read, frames come next.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = tcp(addr);
    stream
        .write_all(&upgrade_head(path, &[], &[]))
        .expect("write request");
    assert_switching(&read_response(&mut stream));
    stream
}

/// The masking key of the client frames: RFC 6455 §5.7's.
const MASK_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
pub fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(fin, 0, opcode, Some(MASK_KEY), payload, &mut out);
    out
}

/// Writes a masked client frame.
pub fn send_frame(stream: &mut TcpStream, fin: bool, opcode: OpCode, payload: &[u8]) {
    stream
        .write_all(&masked(fin, opcode, payload))
        .expect("write frame");
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    pub opcode: OpCode,
    pub payload: Vec<u8>,
}

/// Reads one whole server frame, asserting it is well-formed (unmasked, §5.1; lengths
/// and control frames, §5.2, §5.5) and of a sane length; returns its header and its
/// bytes as they came: header, then payload.
pub fn read_frame_wire(stream: &mut TcpStream) -> (Header, Vec<u8>) {
    let mut wire = vec![0u8; 2];
    stream.read_exact(&mut wire).expect("read a frame header");
    let header = loop {
        match parse_header(&wire) {
            Ok(Some(header)) => break header,
            Ok(None) => {
                let have = wire.len();
                wire.resize(header_len(wire[1]), 0);
                stream
                    .read_exact(&mut wire[have..])
                    .expect("read an extended length");
            }
            Err(e) => panic!("bad frame header from the server: {e}: {wire:02x?}"),
        }
    };
    let len = usize::try_from(header.payload_len).expect("length fits");
    assert!(len <= 64 << 20, "absurd frame length {len}");
    let start = wire.len();
    wire.resize(start + len, 0);
    stream
        .read_exact(&mut wire[start..])
        .expect("read a frame payload");
    (header, wire)
}

/// Reads one server frame; asserts it is unmasked with no RSV bits (§5.1).
pub fn read_frame(stream: &mut TcpStream) -> ServerFrame {
    let (header, wire) = read_frame_wire(stream);
    assert_eq!(header.rsv, 0, "server set RSV bits: {:02x?}", &wire[..2]);
    ServerFrame {
        fin: header.fin,
        opcode: header.opcode,
        payload: wire[header.len..].to_vec(),
    }
}

/// Reads the next server frame, asserts it is a Close with a 2-byte code, and returns
/// the code and reason.
pub fn read_close(stream: &mut TcpStream) -> (u16, String) {
    let frame = read_frame(stream);
    assert_eq!(
        frame.opcode,
        OpCode::Close,
        "expected a Close frame, got {frame:?}"
    );
    assert!(frame.fin, "fragmented Close frame");
    let Ok(Some((code, reason))) = parse_close(&frame.payload) else {
        panic!("Close frame without a code, or its reason not UTF-8: {frame:?}");
    };
    (code, reason.to_owned())
}

/// Asserts the server ends the TCP stream (EOF, or a reset) with nothing more sent.
pub fn assert_eof(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} more bytes: {:02x?}", &buf[..n]),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

/// The `pushloop` binary, started on an ephemeral port; killed when dropped.
pub struct Binary {
    child: Option<Child>,
    pid: u32,
    pub addr: SocketAddr,
    pub line: String,
    /// The stdout lines after the first.
    lines: Receiver<String>,
    /// The stderr lines (the log), when started with [`Binary::start_logged`].
    log: Option<Receiver<String>>,
    /// The log lines read so far.
    pub logged: Vec<String>,
}

const LISTENING: &str = "pushloop listening on ws://";
const LISTENING_TLS: &str = "pushloop listening on wss://";

impl Binary {
    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts the binary with `--listen 127.0.0.1:0` (unless `args` has a `--listen`)
    /// and `args`, and learns its address from the first stdout line.
    pub fn start(args: &[&str]) -> Binary {
        Binary::start_with_env(args, &[])
    }

    /// Like [`Binary::start`], with extra environment variables. The binary never
    /// inherits `PUSHLOOP_PUBLISH_TOKEN` from the test's environment; pass it in `env`.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Binary {
        Binary::spawn(args, env, Stdio::null())
    }

    /// Like [`Binary::start_with_env`], keeping its log (stderr) for
    /// [`wait_log`](Binary::wait_log).
    pub fn start_logged(args: &[&str], env: &[(&str, &str)]) -> Binary {
        Binary::spawn(args, env, Stdio::piped())
    }

    /// Like [`Binary::start`], with the server's log (stderr) written to `log`.
    pub fn start_logging(args: &[&str], log: &std::path::Path) -> Binary {
        let file = std::fs::File::create(log).expect("create the log file");
        Binary::spawn(args, &[], Stdio::from(file))
    }

    /// Starts the binary; its stderr goes to `stderr` (read by [`wait_log`](Binary::wait_log)
    /// when piped).
    fn spawn(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushloop"))
            .env_remove("PUSHLOOP_PUBLISH_TOKEN")
            .envs(env.iter().copied())
            .args(if args.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn pushloop");
        let log = child.stderr.take().map(|stderr| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                for _ in 0..100_000 {
                    let mut line = String::new();
                    if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                        break;
                    }
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            for _ in 0..1000 {
                let mut line = String::new();
                if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                    break;
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(TIMEOUT * 2)
            .expect("no listening line from pushloop in time");
        let mut binary = Binary {
            child: Some(child),
            pid,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            line: String::new(),
            lines: rx,
            log,
            logged: Vec::new(),
        };
        let rest = line
            .strip_prefix(LISTENING)
            .or_else(|| line.strip_prefix(LISTENING_TLS))
            .unwrap_or_else(|| {
                panic!("first stdout line {line:?} does not start with {LISTENING:?}")
            });
        let (addr, _) = rest
            .split_once("/ws")
            .unwrap_or_else(|| panic!("no /ws in {line:?}"));
        binary.addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("address {addr:?} in {line:?}: {e}"));
        assert!(
            binary.addr.ip().is_loopback() && binary.addr.port() != 0,
            "{line:?}"
        );
        binary.line = line;
        binary
    }

    /// Reads the log (bounded) until a line that `pred` accepts; returns it.
    pub fn wait_log(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let log = self.log.as_ref().expect("started with start_logged");
        let deadline = Instant::now() + TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match log.recv_timeout(left) {
                Ok(line) => {
                    self.logged.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line {what} in time; the log so far:\n{}",
            self.logged.concat()
        );
    }

    /// Every log line until the process ends (after [`wait_exit`](Binary::wait_exit)).
    pub fn rest_of_log(&mut self) -> Vec<String> {
        let log = self.log.as_ref().expect("started with start_logged");
        while let Ok(line) = log.recv_timeout(TIMEOUT) {
            self.logged.push(line);
        }
        self.logged.clone()
    }

    /// The next stdout line (bounded wait).
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .expect("no further stdout line from pushloop in time")
    }

    /// Sends `signal` (e.g. `TERM`) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{signal} {} failed: {status}",
            self.pid
        );
    }

    /// Waits (bounded) for the process to exit; kills it and fails if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("still running");
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(timeout) {
            Ok(status) => {
                waiter.join().expect("waiter thread");
                status.expect("wait for pushloop")
            }
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(self.pid.to_string())
                    .status();
                let _ = waiter.join();
                panic!("pushloop did not exit within {timeout:?}");
            }
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `command` to completion with its output captured; `None` (after killing it) if
/// it takes longer than `limit`.
pub fn output_within(mut command: Command, limit: Duration) -> Option<std::process::Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => {
            waiter.join().expect("waiter thread");
            Some(output.expect("process output"))
        }
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            let _ = waiter.join();
            None
        }
    }
}

/// Runs the binary with `args` to completion (bounded) and returns its status and
/// stdout, for flags such as `--help`.
pub fn run_binary(args: &[&str]) -> (ExitStatus, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushloop"));
    command.args(args);
    let output = output_within(command, TIMEOUT * 2)
        .unwrap_or_else(|| panic!("pushloop {args:?} did not exit in time"));
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// The example programs
// ---------------------------------------------------------------------------------------

/// An example program (`examples/<name>.rs`, which `cargo test` builds), started on an
/// ephemeral port of 127.0.0.1; killed when dropped. Its first stdout line must be
/// `listening on ws://ADDR/...`; the lines after it arrive on `lines`.
pub struct Example {
    child: Child,
    pub addr: SocketAddr,
    pub lines: Receiver<String>,
}

impl Example {
    /// Starts `examples/<name>` with the listen address as its argument, and `env`.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Example {
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_pushloop"))
            .parent()
            .expect("bin dir")
            .to_owned();
        let path = bin_dir.join("examples").join(name);
        assert!(
            path.exists(),
            "{} not built (cargo test builds examples)",
            path.display()
        );
        let mut child = Command::new(&path)
            .arg("127.0.0.1:0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let first = lines
            .recv_timeout(TIMEOUT * 2)
            .unwrap_or_else(|_| panic!("no listening line from {name} in time"));
        let addr = first
            .strip_prefix("listening on ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("{name}'s first line {first:?} names no ws:// address"));
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr:?}: {e}"));
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{first:?}");
        Example { child, addr, lines }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------

/// How many workers a binary test runs the server with (`--workers N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers(pub usize);

impl Workers {
    /// [`Binary::start`] with `--workers N`.
    pub fn start(self, args: &[&str]) -> Binary {
        self.start_with_env(args, &[])
    }

    /// [`Binary::start_with_env`] with `--workers N`.
    pub fn start_with_env(self, args: &[&str], env: &[(&str, &str)]) -> Binary {
        let n = self.0.to_string();
        let mut all = vec!["--workers", n.as_str()];
        all.extend_from_slice(args);
        Binary::start_with_env(&all, env)
    }
}
