//! Helpers for the push application's endpoints: HTTP requests, the publish API,
//! presence, long polls, Server-Sent Events and WebSocket members.

use super::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

// ---------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------

/// A request with `Host`, `headers`, and a `Content-Length` when there is a body or the
/// method is `POST`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `POST path` on a fresh connection, with an optional `Content-Type` and extra headers.
pub fn post(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut all: Vec<(&str, &str)> = content_type
        .map(|ct| ("Content-Type", ct))
        .into_iter()
        .collect();
    all.extend_from_slice(headers);
    http_exchange(addr, &request("POST", path, &all, body))
}

/// `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_exchange(addr, &request("GET", path, headers, b""))
}

/// The body as UTF-8.
pub fn body(response: &HttpResponse) -> &str {
    std::str::from_utf8(&response.body).expect("UTF-8 body")
}

/// Asserts a `200 application/json` answer with exactly `expected` as its body.
pub fn assert_json(response: &HttpResponse, expected: &str) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    assert_eq!(body(response), expected);
}

/// Asserts an error status with a plain-text body, after which the server closes.
pub fn assert_error(response: &HttpResponse, status: u16) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{response:?}"
    );
    assert_eq!(response.header("connection"), Some("close"), "{response:?}");
}

/// Publishes `text` as `text/plain` to `channel` and returns the id it got.
pub fn publish(addr: SocketAddr, channel: &str, text: &str) -> u64 {
    let response = post(
        addr,
        &format!("/publish/{channel}"),
        Some("text/plain"),
        text.as_bytes(),
        &[],
    );
    publish_id(&response)
}

/// The id in a `200 {"id":N,"delivered":D}` publish answer.
pub fn publish_id(response: &HttpResponse) -> u64 {
    assert_eq!(response.status, 200, "{response:?}");
    let text = body(response);
    let id = text
        .strip_prefix("{\"id\":")
        .and_then(|rest| rest.split_once(','))
        .and_then(|(id, _)| id.parse().ok())
        .unwrap_or_else(|| panic!("publish answer {text:?}"));
    assert!(
        text.starts_with(&format!("{{\"id\":{id},\"delivered\":")) && text.ends_with('}'),
        "publish answer {text:?}"
    );
    id
}

/// The presence body of one channel.
pub fn presence(
    channel: &str,
    websocket: usize,
    sse: usize,
    long_poll: usize,
    last_id: u64,
) -> String {
    format!(
        "{{\"channel\":\"{channel}\",\"subscribers\":{{\"websocket\":{websocket},\"sse\":{sse},\
         \"long_poll\":{long_poll}}},\"last_id\":{last_id}}}"
    )
}

/// Asks `GET /channels/<channel>` on one keep-alive connection until the body is
/// `expected` (at most 50,000 times and for [`TIMEOUT`]): the server sees connects and
/// disconnects asynchronously.
pub fn wait_presence(addr: SocketAddr, channel: &str, expected: &str) {
    let mut stream = tcp(addr);
    let path = format!("/channels/{channel}");
    let deadline = Instant::now() + TIMEOUT;
    let mut last = String::new();
    for _ in 0..50_000 {
        stream
            .write_all(&request("GET", &path, &[], b""))
            .expect("write presence request");
        let response = read_response(&mut stream);
        assert_eq!(response.status, 200, "{response:?}");
        last = body(&response).to_owned();
        if last == expected || Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(last, expected, "presence of {channel} did not settle");
}

// ---------------------------------------------------------------------------------------
// Long polls
// ---------------------------------------------------------------------------------------

/// A long-poll answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollBody {
    /// `(id, data, base64)` of each message.
    pub messages: Vec<(u64, String, bool)>,
    pub next: u64,
    pub truncated: bool,
}

/// Parses the exact long-poll format
/// `{"messages":[{"id":7,"data":"hi"},{"id":8,"data":"AAE=","encoding":"base64"}],"next":8,"truncated":false}`
/// for data without escapes (what these tests publish).
pub fn parse_poll(text: &str) -> PollBody {
    let mut rest = text
        .strip_prefix("{\"messages\":[")
        .unwrap_or_else(|| not_a_poll_body(text));
    let mut messages = Vec::new();
    while let Some(after) = rest.strip_prefix("{\"id\":") {
        let (id, after) = after
            .split_once(",\"data\":\"")
            .unwrap_or_else(|| not_a_poll_body(text));
        let (data, after) = after
            .split_once('"')
            .unwrap_or_else(|| not_a_poll_body(text));
        assert!(!data.contains('\\'), "escapes in {text:?}");
        let (base64, after) = match after.strip_prefix(",\"encoding\":\"base64\"") {
            Some(after) => (true, after),
            None => (false, after),
        };
        let after = after
            .strip_prefix('}')
            .unwrap_or_else(|| not_a_poll_body(text));
        let id = id.parse().unwrap_or_else(|_| not_a_poll_body(text));
        messages.push((id, data.to_owned(), base64));
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    let rest = rest
        .strip_prefix("],\"next\":")
        .unwrap_or_else(|| not_a_poll_body(text));
    let (next, rest) = rest
        .split_once(",\"truncated\":")
        .unwrap_or_else(|| not_a_poll_body(text));
    let truncated = match rest {
        "true}" => true,
        "false}" => false,
        _ => not_a_poll_body(text),
    };
    PollBody {
        messages,
        next: next.parse().unwrap_or_else(|_| not_a_poll_body(text)),
        truncated,
    }
}

pub fn not_a_poll_body(text: &str) -> ! {
    panic!("not a long-poll body: {text:?}")
}

/// `GET /poll/<query>` on `stream` and its answer (asserted `200 application/json`).
pub fn poll_on(stream: &mut TcpStream, path: &str) -> PollBody {
    stream
        .write_all(&request("GET", path, &[], b""))
        .expect("write poll");
    let response = read_response(stream);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    parse_poll(body(&response))
}

/// A long poll of `path` on a fresh connection.
pub fn poll(addr: SocketAddr, path: &str) -> PollBody {
    poll_on(&mut tcp(addr), path)
}

/// Text messages `(id, data)` as a poll answer lists them.
pub fn texts(messages: &[(u64, &str)]) -> Vec<(u64, String, bool)> {
    messages
        .iter()
        .map(|&(id, data)| (id, data.to_owned(), false))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------------------

/// An SSE stream read incrementally from a raw socket.
pub struct Sse {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: Vec<String>,
}

impl SseEvent {
    /// A text message event: `id: N` and its `data:` lines.
    pub fn text(id: u64, lines: &[&str]) -> SseEvent {
        SseEvent {
            id: Some(id),
            event: None,
            data: lines.iter().map(|l| (*l).to_owned()).collect(),
        }
    }
}

/// Opens `GET path` with `headers` and reads the response head; the stream follows.
pub fn sse_connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (HttpResponse, Sse) {
    let mut stream = tcp(addr);
    stream
        .write_all(&request("GET", path, headers, b""))
        .expect("write SSE request");
    let head = read_response_head(&mut stream);
    (
        head,
        Sse {
            stream,
            buf: Vec::new(),
        },
    )
}

/// Opens an SSE stream that must be accepted; the `retry:` block is read.
pub fn sse(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Sse {
    let (head, mut sse) = sse_connect(addr, path, headers);
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(sse.block(), "retry: 2000");
    sse
}

impl Sse {
    /// The next block of lines up to a blank line (without it).
    pub fn block(&mut self) -> String {
        for _ in 0..10_000 {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 SSE");
                self.buf.drain(..end + 2);
                return block;
            }
            assert!(self.buf.len() < 1 << 20, "SSE block too long");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "SSE stream ended; unread: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "reading SSE: {e}; unread: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
        panic!("no SSE block after 10,000 reads");
    }

    /// The next event with data (comment-only and `retry:`-only blocks are skipped).
    pub fn event(&mut self) -> SseEvent {
        for _ in 0..100 {
            let block = self.block();
            let mut event = SseEvent {
                id: None,
                event: None,
                data: Vec::new(),
            };
            for line in block.split('\n') {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => event.id = Some(value.parse().expect("numeric SSE id")),
                    "event" => event.event = Some(value.to_owned()),
                    "data" => event.data.push(value.to_owned()),
                    "retry" => {}
                    other => panic!("unexpected SSE field {other:?} in {block:?}"),
                }
            }
            if !event.data.is_empty() {
                return event;
            }
        }
        panic!("100 SSE blocks without data");
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket helpers
// ---------------------------------------------------------------------------------------

/// A WebSocket member at `path`; `envelope` offers `pushloop.v1` (and checks it was
/// chosen), else no subprotocol is offered.
pub fn ws(addr: SocketAddr, path: &str, envelope: bool) -> Client {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    if envelope {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "pushloop.v1".parse().unwrap());
    }
    let (client, response) = connect_request(addr, request);
    assert_eq!(response.status(), 101);
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(chosen.as_deref(), envelope.then_some("pushloop.v1"));
    client
}

/// The next message, which must be text.
pub fn recv_text(client: &mut Client) -> String {
    match recv(client) {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The envelope of a text message.
pub fn envelope(channel: &str, id: u64, data: &str) -> String {
    format!("{{\"type\":\"message\",\"channel\":\"{channel}\",\"id\":{id},\"data\":\"{data}\"}}")
}

/// The id of a `{"type":"message","channel":..,"id":N,...}` envelope.
pub fn envelope_id(text: &str) -> u64 {
    text.split_once(",\"id\":")
        .and_then(|(_, rest)| rest.split_once(','))
        .and_then(|(id, _)| id.parse().ok())
        .unwrap_or_else(|| panic!("not a message envelope: {text:?}"))
}
