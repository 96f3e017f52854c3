//! pushloop behind nginx, configured by the shipped `docs/deploy/nginx.conf` (rendered
//! by `tests/common/nginx.rs` with test addresses and paths), over two plain nodes (no
//! Redis: each node has its own channels): WebSocket upgrades round robin, an SSE stream
//! passed on unbuffered, a chunked publish, the timeouts against the server's own, and a
//! dead node left out. Also the test Redis (`tests/common/redis.rs`): it answers, and
//! with AOF on keeps its data across a stop, a SIGKILL and a restart.

mod common;

use common::nginx::{directives, nginx_time, Nginx};
use common::push::{body, get, publish, publish_id};
use common::redis::{RedisOptions, RedisServer, Resp};
use common::{
    assert_echo, close_client, connect, read_response, read_response_head, run_binary, tcp, Binary,
    TIMEOUT,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// An echo node.
fn node() -> Binary {
    Binary::start(&["--mode", "echo"])
}

/// Polls `GET /channels/<channel>` on each node (bounded) until one reports `field` = 1
/// (e.g. `"sse":1`); returns that node's index.
fn node_with(nodes: &[SocketAddr], channel: &str, field: &str) -> usize {
    let want = format!("{field}:1");
    let deadline = Instant::now() + TIMEOUT;
    let mut last = Vec::new();
    for _ in 0..10_000 {
        last = nodes
            .iter()
            .map(|addr| body(&get(*addr, &format!("/channels/{channel}"), &[])).to_owned())
            .collect::<Vec<_>>();
        if let Some(i) = last.iter().position(|b| b.contains(&want)) {
            return i;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no node reports {want} for {channel}: {last:?}");
}

/// (a) WebSocket upgrades through nginx: 101, echo, clean close; two connections land
/// on two nodes (round robin, no stickiness).
#[test]
fn websockets_pass_through_and_spread_round_robin() {
    let (a, b) = (node(), node());
    let nginx = Nginx::start(&[a.addr, b.addr]);
    let mut clients = Vec::new();
    for i in 0..2 {
        let (mut client, response) = connect(nginx.addr(), "/ws/room");
        assert_eq!(response.status(), 101, "{}", nginx.error_log());
        assert_echo(&mut client, Message::text(format!("hello {i}")));
        assert_echo(&mut client, Message::binary(vec![0u8, 1, 2, 255]));
        // 70 KiB: a 64-bit length, larger than nginx's proxy buffers.
        assert_echo(&mut client, Message::binary(vec![7u8; 70 << 10]));
        clients.push(client);
    }
    // One member on each node.
    for addr in [a.addr, b.addr] {
        let text = body(&get(addr, "/channels/room", &[])).to_owned();
        assert!(
            text.contains("\"websocket\":1"),
            "round robin should give each node one of the two sockets; {addr}: {text}"
        );
    }
    for mut client in clients {
        assert_eq!(close_client(&mut client, 1000, "done"), Some(1000));
    }
}

/// The body of a chunked response (RFC 9112 §7.1) as a `Read`: what nginx sends an
/// HTTP/1.1 client for pushloop's close-delimited SSE stream.
struct Chunked {
    stream: TcpStream,
    /// Bytes left in the current chunk.
    left: usize,
    /// A chunk's data ended: its CRLF comes before the next size line.
    after_data: bool,
}

impl Chunked {
    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            assert!(line.len() < 1024, "chunk size line too long: {line:?}");
            if self.stream.read(&mut byte)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            line.push(byte[0]);
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            if self.after_data {
                assert_eq!(self.line()?, "", "no CRLF after a chunk");
            }
            let size = self.line()?;
            let size = size.split(';').next().unwrap_or("").trim();
            self.left = usize::from_str_radix(size, 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
            if self.left == 0 {
                return Ok(0); // the last chunk
            }
            self.after_data = true;
        }
        let n = buf.len().min(self.left);
        let n = self.stream.read(&mut buf[..n])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        Ok(n)
    }
}

/// The next SSE block (up to a blank line) that is not a comment.
fn sse_block(body: &mut Chunked, buf: &mut Vec<u8>) -> String {
    for _ in 0..10_000 {
        if let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block = String::from_utf8(buf[..end].to_vec()).expect("UTF-8 SSE");
            buf.drain(..end + 2);
            if block.starts_with(':') {
                continue; // a heartbeat
            }
            return block;
        }
        let mut chunk = [0u8; 4096];
        match body.read(&mut chunk) {
            Ok(0) => panic!("SSE stream ended: {:?}", String::from_utf8_lossy(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "reading SSE: {e}; unread: {:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }
    panic!("no SSE block in 10,000 reads");
}

/// (b) An SSE stream through nginx gets an event published to its node at once:
/// nothing buffers it.
#[test]
fn sse_through_nginx_is_unbuffered() {
    let (a, b) = (node(), node());
    let nodes = [a.addr, b.addr];
    let nginx = Nginx::start(&nodes);
    let mut stream = tcp(nginx.addr());
    stream
        .write_all(b"GET /sse/news HTTP/1.1\r\nHost: push.example.com\r\nAccept: text/event-stream\r\n\r\n")
        .expect("write the SSE request");
    let head = read_response_head(&mut stream);
    assert_eq!(head.status, 200, "{head:?}\n{}", nginx.error_log());
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{head:?}"
    );
    let mut sse = Chunked {
        stream,
        left: 0,
        after_data: false,
    };
    let mut buf = Vec::new();
    assert_eq!(sse_block(&mut sse, &mut buf), "retry: 2000");
    // Without --redis only the node that serves the stream has the subscriber.
    let serving = nodes[node_with(&nodes, "news", "\"sse\"")];
    // Buffered, the event would wait in nginx for more (or for the end): allow far less
    // than a heartbeat interval (15 s).
    let limit = Duration::from_secs(2);
    sse.stream.set_read_timeout(Some(limit)).unwrap();
    for i in 1..=3u64 {
        let sent = Instant::now();
        let id = publish(serving, "news", &format!("event {i}"));
        assert_eq!(id, i);
        assert_eq!(
            sse_block(&mut sse, &mut buf),
            format!("id: {i}\ndata: event {i}")
        );
        assert!(
            sent.elapsed() < limit,
            "event {i} took {:?}",
            sent.elapsed()
        );
    }
}

/// A publish with a chunked body: a node refuses it (411), through nginx (which reads
/// the whole body and sends a Content-Length) it is published.
#[test]
fn chunked_publish_through_nginx() {
    let a = node();
    let nginx = Nginx::start(&[a.addr]);
    let request = b"POST /publish/news HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
        Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let direct = common::http_exchange(a.addr, request);
    assert_eq!(direct.status, 411, "{direct:?}");
    let mut stream = tcp(nginx.addr());
    stream.write_all(request).expect("write the publish");
    let response = read_response(&mut stream);
    assert_eq!(publish_id(&response), 1, "{}", nginx.error_log());
    let poll = body(&get(a.addr, "/poll/news?since=0", &[])).to_owned();
    assert!(poll.contains("\"data\":\"hello world\""), "{poll}");
}

/// A number in a line of a source file, e.g. `const MAX_POLL: Duration =
/// Duration::from_secs(60);`.
fn secs_in_source(file: &str, prefix: &str) -> Duration {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in {file}"));
    let secs = line
        .split_once("from_secs(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no from_secs(N) in {line:?}"));
    Duration::from_secs(secs)
}

/// A setting of `pushloop check-config` with the defaults (`name = N`).
fn default_setting(settings: &str, name: &str) -> u64 {
    settings
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} = ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in check-config:\n{settings}"))
}

/// (c) A long poll held the server's maximum would take a minute: instead, the shipped
/// timeouts are checked against the server's own values (read from its source and its
/// effective defaults), and the directives SSE and the upgrade need are where they must
/// be.
#[test]
fn shipped_timeouts_outlast_the_server() {
    let max_poll = secs_in_source("src/cli/app.rs", "const MAX_POLL: Duration");
    let heartbeat = secs_in_source("src/push/mod.rs", "heartbeat: Duration::from_secs(");
    let empty = tempfile::NamedTempFile::new().expect("an empty config file");
    let (status, settings) = run_binary(&["check-config", empty.path().to_str().unwrap()]);
    assert!(status.success(), "check-config: {status}\n{settings}");
    let ping = Duration::from_secs(default_setting(&settings, "ping-interval"));
    let pong = Duration::from_secs(default_setting(&settings, "pong-timeout"));
    let max_message = default_setting(&settings, "max-message");
    assert_eq!(max_poll, Duration::from_secs(60));

    // The rendered config, as nginx runs it.
    let dir = tempfile::tempdir().unwrap();
    let upstreams: [SocketAddr; 2] = [
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    ];
    let config = common::nginx::render(
        common::nginx::SHIPPED,
        &upstreams,
        "127.0.0.1:3".parse().unwrap(),
        dir.path(),
    );
    let one = |name: &str| {
        let values = directives(&config, name);
        assert_eq!(values.len(), 1, "{name}: {values:?}");
        values[0].clone()
    };
    let read = nginx_time(&one("proxy_read_timeout"));
    let send = nginx_time(&one("proxy_send_timeout"));
    for (what, quiet) in [
        ("the long-poll maximum", max_poll),
        ("ping interval + pong timeout", ping + pong),
        ("the SSE heartbeat", heartbeat),
    ] {
        assert!(
            read > quiet,
            "proxy_read_timeout {read:?} <= {what} {quiet:?}"
        );
    }
    assert!(
        send > max_poll,
        "proxy_send_timeout {send:?} <= {max_poll:?}"
    );
    let body_max = one("client_max_body_size");
    let mib: u64 = body_max
        .strip_suffix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("client_max_body_size {body_max:?}"));
    assert_eq!(
        mib << 20,
        max_message,
        "client_max_body_size vs --max-message"
    );
    // The upgrade and round robin.
    assert_eq!(one("proxy_http_version"), "1.1");
    let headers = directives(&config, "proxy_set_header");
    for h in [
        "Upgrade $http_upgrade",
        "Connection $connection_upgrade",
        "X-Forwarded-For $proxy_add_x_forwarded_for",
        "X-Forwarded-Proto $scheme",
        "X-Real-IP $remote_addr",
    ] {
        assert!(headers.iter().any(|v| v == h), "no proxy_set_header {h}");
    }
    for sticky in ["ip_hash", "hash", "sticky", "least_conn", "random"] {
        assert!(
            directives(&config, sticky).is_empty(),
            "{sticky} in the upstream"
        );
    }
    assert_eq!(
        directives(&config, "server")
            .iter()
            .filter(|s| s.starts_with("127.0.0.1:"))
            .count(),
        2
    );
    // Unbuffered SSE: the /sse/ location turns buffering and caching off.
    let sse = config
        .split("location /sse/ {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("a location /sse/");
    assert_eq!(directives(sse, "proxy_buffering"), ["off"]);
    assert_eq!(directives(sse, "proxy_cache"), ["off"]);
    // A publish is never sent twice: non_idempotent is not among the retry conditions.
    let retry = one("proxy_next_upstream");
    assert!(!retry.contains("non_idempotent"), "{retry}");
    for condition in ["error", "timeout", "http_503"] {
        assert!(retry.split(' ').any(|c| c == condition), "{retry}");
    }
}

/// (d) One node dies: new WebSockets through nginx still connect (to the other node),
/// and nginx says it found the dead one refusing.
#[test]
fn a_dead_node_is_left_out() {
    let (a, b) = (node(), node());
    let nginx = Nginx::start(&[a.addr, b.addr]);
    drop(b); // SIGKILL, waited for
    for i in 0..6 {
        let (mut client, response) = connect(nginx.addr(), "/ws/room");
        assert_eq!(response.status(), 101, "{}", nginx.error_log());
        assert_echo(&mut client, Message::text(format!("after the death {i}")));
        assert_eq!(close_client(&mut client, 1000, "done"), Some(1000));
    }
    assert!(
        nginx.error_log().contains("Connection refused"),
        "nginx did not try the dead node: {}",
        nginx.error_log()
    );
    // Publishes go through too.
    let mut stream = tcp(nginx.addr());
    stream
        .write_all(&common::push::request(
            "POST",
            "/publish/news",
            &[("Content-Type", "text/plain")],
            b"still here",
        ))
        .expect("write the publish");
    assert_eq!(publish_id(&read_response(&mut stream)), 1);
}

/// A node draining after SIGTERM (`--drain-timeout`) answers new clients 503: nginx
/// takes them to the other node, so a rolling restart refuses nobody.
#[test]
fn a_draining_node_is_passed_over() {
    let a = Binary::start(&["--mode", "echo", "--drain-timeout", "30"]);
    let b = node();
    let nginx = Nginx::start(&[a.addr, b.addr]);
    a.signal("TERM");
    let deadline = Instant::now() + TIMEOUT;
    for _ in 0..10_000 {
        if get(a.addr, "/readyz", &[]).status == 503 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        get(a.addr, "/readyz", &[]).status,
        503,
        "node a is not draining"
    );
    let mut clients = Vec::new();
    for i in 0..4 {
        let (mut client, response) = connect(nginx.addr(), "/ws/room");
        assert_eq!(response.status(), 101, "{}", nginx.error_log());
        assert_echo(&mut client, Message::text(format!("during the drain {i}")));
        clients.push(client);
    }
    let on_b = body(&get(b.addr, "/channels/room", &[])).to_owned();
    assert!(on_b.contains("\"websocket\":4"), "{on_b}");
}

/// The test Redis answers PING, keeps its data with AOF on across a stop, a SIGKILL
/// (appendfsync always) and restarts on the same port, and is gone after a drop.
#[test]
fn redis_server_with_aof_keeps_its_data() {
    let mut redis = RedisServer::start(RedisOptions::aof());
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
    assert_eq!(redis.command(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(
        redis.command(&["SET", "k", "v 1"]).text().as_deref(),
        Some("OK")
    );
    assert_eq!(redis.command(&["DBSIZE"]).int(), 1);

    redis.stop();
    assert_eq!(redis.pid(), None);
    assert!(TcpStream::connect(redis.addr()).is_err(), "still listening");
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "k"]).text().as_deref(), Some("v 1"));

    assert_eq!(
        redis.command(&["SET", "k2", "v2"]).text().as_deref(),
        Some("OK")
    );
    redis.kill();
    redis.restart();
    assert_eq!(redis.command(&["GET", "k2"]).text().as_deref(), Some("v2"));
    assert_eq!(redis.command(&["KEYS", "*"]).strings(), ["k", "k2"]);
    assert_eq!(
        redis.command(&["PUBSUB", "CHANNELS"]).strings(),
        Vec::<String>::new()
    );
    assert!(matches!(redis.command(&["NOSUCHCOMMAND"]), Resp::Error(_)));

    // Paused, it accepts (the kernel does) but answers nothing; resumed, it answers.
    redis.pause();
    let mut hung = tcp(redis.addr());
    hung.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    hung.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut byte = [0u8; 1];
    assert!(hung.read(&mut byte).is_err(), "a paused Redis answered");
    redis.resume();
    hung.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut pong = [0u8; 7];
    hung.read_exact(&mut pong).expect("the answer after resume");
    assert_eq!(&pong, b"+PONG\r\n");
    redis.pause(); // the drop below resumes it to stop it

    let pid = redis.pid().expect("running") as libc::pid_t;
    drop(redis);
    // SAFETY: signal 0 only checks whether the (reaped) process still exists.
    assert_eq!(
        unsafe { libc::kill(pid, 0) },
        -1,
        "redis-server outlived its drop"
    );
}

/// Without AOF (and with `save ""`) a restart starts empty.
#[test]
fn redis_server_without_aof_starts_empty() {
    let mut redis = RedisServer::start(RedisOptions::default());
    assert_eq!(
        redis.command(&["SET", "k", "v"]).text().as_deref(),
        Some("OK")
    );
    redis.restart();
    assert_eq!(redis.command(&["DBSIZE"]).int(), 0, "{}", redis.log());
}
