//! Operations against the real binary: `/metrics` scraped and parsed by Python's
//! `prometheus_client` before and after known traffic, `/healthz` and `/readyz`, the
//! drain on SIGTERM.

mod common;

use common::ops::*;
use common::push::{get, post};
use common::*;
use pushloop_wire::OpCode;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Messages the chat sender writes at once.
const BURST: usize = 200;

/// A `pushloop.v1` member of `channel`.
fn member(addr: SocketAddr, channel: &str) -> TcpStream {
    let mut stream = tcp(addr);
    let head = upgrade_head(
        &format!("/ws/{channel}"),
        &[],
        &[("Sec-WebSocket-Protocol", "pushloop.v1")],
    );
    stream.write_all(&head).expect("write request");
    assert_switching(&read_response(&mut stream));
    stream
}

/// Reads envelopes until the one with id `last`; returns how many messages came.
fn read_until_id(stream: &mut TcpStream, last: usize) -> usize {
    let marker = format!("\"id\":{last},");
    for got in 1..=BURST * 2 {
        let frame = read_frame(stream);
        assert_eq!(frame.opcode, OpCode::Text, "{frame:?}");
        if String::from_utf8_lossy(&frame.payload).contains(&marker) {
            return got;
        }
    }
    panic!("message {last} never came");
}

/// Sends a Close with `code` and reads the server's answer.
fn close_with(stream: &mut TcpStream, code: u16) {
    send_frame(stream, true, OpCode::Close, &code.to_be_bytes());
    let (echoed, _) = read_close(stream);
    assert_eq!(echoed, code);
    assert_eof(stream);
}

/// Counters move by exactly what was done: handshakes accepted and refused, messages and
/// bytes in, chat publishes and deliveries, drops under a tiny backlog (counted by the
/// members' own gaps), closes by code; gauges count connections by transport; the
/// latency histogram counts every publish in sane buckets.
fn counters_move_by_what_was_done(workers: Workers) {
    let server = workers.start(&["--backlog-policy", "drop-oldest", "--max-backlog", "1"]);
    let addr = server.addr;
    let before = scrape(addr, &[]);
    assert_eq!(
        before.types["pushloop_publish_latency_seconds"],
        "histogram"
    );
    assert_eq!(before.types["pushloop_connections"], "gauge");

    // Two members that count ids, and a sender (raw: no acks).
    let mut b = member(addr, "room");
    let mut c = member(addr, "room");
    let mut a = raw_upgrade(addr, "/ws/room");
    wait_presence_says(addr, "room", "\"websocket\":3,");
    let open = scrape(addr, &[]);
    let websockets: f64 = (0..workers.0)
        .map(|w| {
            open.get(&format!(
                "pushloop_connections{{transport=\"websocket\",worker=\"{w}\"}}"
            ))
        })
        .sum();
    assert_eq!(websockets, 3.0);

    // Refused handshakes: a bad key (400) and a wrong version (426).
    let bad_key = upgrade_head(
        "/ws",
        &["sec-websocket-key"],
        &[("Sec-WebSocket-Key", "short")],
    );
    assert_eq!(http_exchange(addr, &bad_key).status, 400);
    let version = upgrade_head(
        "/ws",
        &["sec-websocket-version"],
        &[("Sec-WebSocket-Version", "8")],
    );
    assert_eq!(http_exchange(addr, &version).status, 426);

    // BURST chat messages in one write, then one publish through the API.
    let mut burst = Vec::new();
    let mut payload_bytes = 0;
    for i in 0..BURST {
        let text = format!("m{i}");
        payload_bytes += text.len();
        burst.extend_from_slice(&masked(true, OpCode::Text, text.as_bytes()));
    }
    a.write_all(&burst).expect("write the burst");
    // Once the burst is published, one more message from the API: its members read
    // up to it, counting what the backlog policy let through.
    wait_presence_says(addr, "room", &format!("\"last_id\":{BURST}"));
    assert_eq!(
        post(addr, "/publish/room", Some("text/plain"), b"api", &[]).status,
        200
    );
    let received = read_until_id(&mut b, BURST + 1) + read_until_id(&mut c, BURST + 1);
    // The sender (raw, so no acks) gets only the API's message.
    let frame = read_frame(&mut a);
    assert_eq!(frame.payload, b"api", "{frame:?}");
    let (offered, received) = (2 * (BURST + 1) + 1, received + 1);

    close_with(&mut a, 1000);
    close_with(&mut b, 1001);
    close_with(&mut c, 4000);
    wait_presence_says(addr, "room", "\"websocket\":0,");
    let after = scrape(addr, &[]);

    let d = |key: &str| after.delta(&before, key);
    assert_eq!(d("pushloop_handshakes_accepted_total{}"), 3.0);
    assert_eq!(d("pushloop_handshakes_refused_total{status=\"400\"}"), 1.0);
    assert_eq!(d("pushloop_handshakes_refused_total{status=\"426\"}"), 1.0);
    assert_eq!(d("pushloop_handshakes_refused_total{status=\"503\"}"), 0.0);
    assert_eq!(d("pushloop_messages_received_total{}"), BURST as f64);
    assert_eq!(
        d("pushloop_received_bytes_total{layer=\"payload\"}"),
        payload_bytes as f64
    );
    assert!(
        d("pushloop_received_bytes_total{layer=\"wire\"}") > (payload_bytes + 6 * BURST) as f64
    );
    assert_eq!(d("pushloop_publishes_total{source=\"chat\"}"), BURST as f64);
    assert_eq!(d("pushloop_publishes_total{source=\"api\"}"), 1.0);
    assert_eq!(d("pushloop_publishes_total{source=\"handle\"}"), 0.0);
    // Each message offered to a member was queued (a delivery) or dropped at once; a
    // queued one may be dropped later to make room: every one the members did not get
    // was dropped, and counted.
    let deliveries = d("pushloop_deliveries_total{}");
    assert!(deliveries >= received as f64 && deliveries <= offered as f64);
    assert_eq!(d("pushloop_messages_sent_total{}"), deliveries);
    assert!(
        received < offered,
        "a 1-byte backlog dropped nothing of a {BURST}-message burst"
    );
    assert_eq!(
        d("pushloop_dropped_messages_total{policy=\"drop-oldest\"}"),
        (offered - received) as f64,
        "the members got {received} of {offered}"
    );
    assert_eq!(d("pushloop_dropped_messages_total{policy=\"close\"}"), 0.0);
    assert_eq!(d("pushloop_backlog_overflows_total{policy=\"close\"}"), 0.0);
    assert_eq!(d("pushloop_closes_total{code=\"1000\"}"), 1.0);
    assert_eq!(d("pushloop_closes_total{code=\"1001\"}"), 1.0);
    assert_eq!(d("pushloop_closes_total{code=\"other\"}"), 1.0);
    assert_eq!(d("pushloop_closes_total{code=\"1006\"}"), 0.0);
    assert!(d("pushloop_sent_bytes_total{layer=\"wire\"}") > 0.0);
    // The owner keeps the channel, and so may a worker with members of it.
    let channels = after.get("pushloop_channels{}");
    assert!(
        channels >= 1.0 && channels <= workers.0 as f64,
        "{channels} channels"
    );
    // History keeps the last 100 messages: the burst's last 99 and the API's.
    let kept: usize = (BURST - 99..BURST).map(|i| format!("m{i}").len()).sum();
    assert_eq!(after.get("pushloop_history_bytes{}"), (kept + 3) as f64);
    assert_eq!(after.get("pushloop_broker_up{}"), 1.0);
    // Without --redis no pipeline goes to Redis.
    assert_eq!(after.get("pushloop_broker_round_trips_total{}"), 0.0);
    assert_eq!(after.get("pushloop_broker_commands_total{}"), 0.0);
    if workers.0 > 1 {
        assert!(after.get("pushloop_broker_notes_total{direction=\"sent\"}") > 0.0);
    }
    assert_latency_histogram(&before, &after, BURST + 1, workers.0);
}

/// The histogram's buckets are cumulative, end in `+Inf` = count, and counted every
/// publish once per worker that delivered it.
fn assert_latency_histogram(before: &Scrape, after: &Scrape, publishes: usize, workers: usize) {
    let name = "pushloop_publish_latency_seconds";
    let buckets: Vec<(f64, f64)> = after
        .samples
        .iter()
        .filter_map(|(key, value)| {
            let le = key.strip_prefix(&format!("{name}_bucket{{le=\""))?;
            let le = le.strip_suffix("\"}")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, *value))
        })
        .collect();
    let mut sorted = buckets.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(sorted.len() >= 10, "{sorted:?}");
    assert!(
        sorted.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {sorted:?}"
    );
    let count = after.get(&format!("{name}_count{{}}"));
    assert_eq!(sorted.last().map(|b| b.1), Some(count));
    let observed = after.delta(before, &format!("{name}_count{{}}"));
    assert!(
        observed >= publishes as f64 && observed <= (publishes * workers) as f64,
        "{observed} observations for {publishes} publishes"
    );
    let sum = after.delta(before, &format!("{name}_sum{{}}"));
    assert!(
        sum >= 0.0 && sum < observed * 1.0,
        "sum {sum} of {observed}"
    );
}

/// Waits (bounded) until `GET /channels/<channel>` says `want`.
fn wait_presence_says(addr: SocketAddr, channel: &str, want: &str) {
    for _ in 0..500 {
        let response = get(addr, &format!("/channels/{channel}"), &[]);
        if String::from_utf8_lossy(&response.body).contains(want) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{channel} never said {want}");
}

#[test]
fn metrics_count_exactly_one_worker() {
    counters_move_by_what_was_done(Workers(1));
}

#[test]
fn metrics_count_exactly_two_workers() {
    counters_move_by_what_was_done(Workers(2));
}

/// `/metrics` has the publish API's protection: a token when one is set.
#[test]
fn metrics_need_the_publish_token() {
    let server = Binary::start_with_env(&[], &[("PUSHLOOP_PUBLISH_TOKEN", "s3cret")]);
    let response = get(server.addr, "/metrics", &[]);
    assert_eq!(response.status, 401, "{response:?}");
    let response = get(
        server.addr,
        "/metrics",
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(response.status, 401, "{response:?}");
    scrape(server.addr, &[("Authorization", "Bearer s3cret")]);
    let response = post(server.addr, "/metrics", None, b"", &[]);
    assert_eq!(response.status, 405, "{response:?}");
}

/// `--metrics-listen` serves the scrape on its own address, and not on the main one.
#[test]
fn metrics_on_their_own_listener() {
    let server = Workers(2).start(&["--metrics-listen", "127.0.0.1:0"]);
    let metrics = metrics_address(&server);
    assert_eq!(get(server.addr, "/metrics", &[]).status, 404);
    let scraped = scrape(metrics, &[]);
    assert_eq!(scraped.get("pushloop_broker_up{}"), 1.0);
    let mut stream = tcp(metrics);
    stream.write_all(b"GET /other HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut stream).status, 404);
}

/// The address `--metrics-listen` printed (the second stdout line).
fn metrics_address(server: &Binary) -> SocketAddr {
    let line = server.next_line();
    let rest = line
        .strip_prefix("pushloop metrics on http://")
        .unwrap_or_else(|| panic!("{line:?}"));
    rest.trim_end()
        .strip_suffix("/metrics")
        .expect("/metrics")
        .parse()
        .expect("address")
}

/// `/healthz` and `/readyz` answer 200; on SIGTERM with a drain the listener stays open,
/// `/readyz` and every new WebSocket, SSE and poll request get 503 while the open client
/// is still served, then it gets 1001 and the process exits 0.
#[test]
fn sigterm_drains_then_closes_with_1001() {
    let mut server = Binary::start(&["--drain-timeout", "3"]);
    let addr = server.addr;
    assert_eq!(get(addr, "/healthz", &[]).status, 200);
    assert_eq!(get(addr, "/readyz", &[]).status, 200);
    let mut client = raw_upgrade(addr, "/ws/room");
    server.signal("TERM");
    let mut ready = 0;
    for _ in 0..200 {
        ready = get(addr, "/readyz", &[]).status;
        if ready == 503 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(ready, 503, "/readyz never answered 503 after SIGTERM");
    assert_eq!(
        get(addr, "/healthz", &[]).status,
        200,
        "alive while draining"
    );
    let refused = http_exchange(addr, &upgrade_head("/ws/room", &[], &[]));
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(get(addr, "/sse/room", &[]).status, 503);
    assert_eq!(get(addr, "/poll/room", &[]).status, 503);
    // The open client is still served: a publish reaches it, no Close came first.
    assert_eq!(
        post(addr, "/publish/room", Some("text/plain"), b"still", &[]).status,
        200
    );
    let frame = read_frame(&mut client);
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (OpCode::Text, &b"still"[..])
    );
    let (code, _) = read_close(&mut client);
    assert_eq!(code, 1001);
    send_frame(&mut client, true, OpCode::Close, &1001u16.to_be_bytes());
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let status = server.wait_exit(TIMEOUT * 2);
    assert!(status.success(), "{status}");
}

/// A config file under the target directory's tmp.
fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ops");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Sends a text message of `len` bytes on an open raw WebSocket.
fn send_text(stream: &mut TcpStream, len: usize) {
    send_frame(stream, true, OpCode::Text, &vec![b'x'; len]);
}

/// SIGHUP applies a lowered `max-message` to the next message of a connection opened
/// before it; a restart-only change is named and kept; a broken file changes nothing.
#[test]
fn sighup_applies_max_message_to_open_connections() {
    let file = config_file("reload.toml", "mode = \"echo\"\nmax-message = 1000\n");
    let config = format!("--config={}", file.display());
    let mut server = Binary::start_logged(&[&config], &[]);
    let mut a = raw_upgrade(server.addr, "/ws");
    send_text(&mut a, 500);
    assert_eq!(read_frame(&mut a).payload.len(), 500);

    let changed = "mode = \"echo\"\nmax-message = 100\nworkers = 2\n";
    std::fs::write(&file, changed).unwrap();
    server.signal("HUP");
    server.wait_log("naming workers", |l| {
        l.contains("reload: workers changed; it needs a restart")
    });
    server.wait_log("applying max-message", |l| {
        l.contains("reload: applied max-message")
    });
    // The same connection: its next message meets the new limit.
    send_text(&mut a, 500);
    assert_eq!(read_close(&mut a).0, 1009);

    // A broken file (an unknown key beside a new limit) keeps the old settings.
    std::fs::write(&file, "mode = \"echo\"\nmax-message = 100000\nbogus = 1\n").unwrap();
    server.signal("HUP");
    server.wait_log("refusing the reload", |l| {
        l.contains("reload refused, settings unchanged") && l.contains("unknown key bogus")
    });
    let mut b = raw_upgrade(server.addr, "/ws");
    send_text(&mut b, 100);
    assert_eq!(read_frame(&mut b).payload.len(), 100);
    send_text(&mut b, 500);
    assert_eq!(read_close(&mut b).0, 1009);
    assert_still_listening(server.addr);
}

/// The server still answers on its address.
fn assert_still_listening(addr: SocketAddr) {
    assert_eq!(get(addr, "/healthz", &[]).status, 200);
}

/// `--log-format json`: every log line is one JSON object with a timestamp, level,
/// target and message (the access log's fields too); no token appears in any line at
/// the most verbose level, whether it was right or wrong.
#[test]
fn json_logs_parse_and_never_show_a_token() {
    let token = "s3cret-token-4711";
    let wrong = "wrong-token-0815";
    let mut server = Binary::start_logged(
        &[
            "--log-format",
            "json",
            "--log-level",
            "trace",
            "--access-log",
        ],
        &[("PUSHLOOP_PUBLISH_TOKEN", token)],
    );
    let addr = server.addr;
    let bearer = format!("Bearer {token}");
    let bad = format!("Bearer {wrong}");
    let mut client = raw_upgrade(addr, "/ws/news");
    send_text(&mut client, 5);
    let published = post(
        addr,
        "/publish/news",
        Some("text/plain"),
        b"hi",
        &[("Authorization", &bearer)],
    );
    assert_eq!(published.status, 200);
    let refused = post(
        addr,
        "/publish/news",
        Some("text/plain"),
        b"hi",
        &[("Authorization", &bad)],
    );
    assert_eq!(refused.status, 401);
    scrape(addr, &[("Authorization", &bearer)]);
    assert_eq!(read_frame(&mut client).payload, b"hi");
    close_with(&mut client, 1000);
    server.wait_log("the access line", |l| {
        l.contains("\"target\":\"pushloop::access\"")
    });
    server.signal("TERM");
    assert!(server.wait_exit(TIMEOUT * 2).success());
    let lines = server.rest_of_log();
    assert!(lines.len() > 5, "{lines:?}");
    let python = python();
    let check = "import json,sys\n\
        for n, line in enumerate(sys.stdin):\n\
        \x20   o = json.loads(line)\n\
        \x20   assert isinstance(o, dict), line\n\
        \x20   for k in ('ts', 'level', 'target', 'msg'): assert k in o, (k, line)\n\
        \x20   if o['target'] == 'pushloop::access':\n\
        \x20       assert o['transport'] == 'websocket' and o['code'] == 1000, line\n\
        \x20       assert o['messages_in'] == 1 and o['bytes_in'] == 5 and o['channel'] == 'news', line\n\
        \x20       assert o['messages_out'] == 1 and o['bytes_out'] > 4 and o['wire_bytes_in'] > 11, line\n\
        \x20       assert o['conn'].startswith('#') and o['peer'].startswith('127.0.0.1:'), line\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.concat().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        lines.concat()
    );
    for line in &lines {
        assert!(
            !line.contains(token) && !line.contains(wrong),
            "a token in {line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"TRACE\"")),
        "trace lines logged"
    );
}

/// Reads from `stream` into `got` until `done(got)`, a read at a time (bounded).
fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    for _ in 0..10_000 {
        if done(got) {
            return;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => panic!("EOF; got {:?}", String::from_utf8_lossy(got)),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read: {e}; got {:?}", String::from_utf8_lossy(got)),
        }
    }
    panic!("too many reads; got {:?}", String::from_utf8_lossy(got));
}

/// Where a response head ends in `bytes` (after its blank line), once it has.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The access line (parsed from `--log-format json`) of the connection with `transport`.
fn access_line(server: &mut Binary, transport: &str) -> serde_json::Value {
    let marker = format!("\"transport\":\"{transport}\"");
    let line = server.wait_log(&format!("the {transport} access line"), |l| {
        l.contains("\"target\":\"pushloop::access\"") && l.contains(&marker)
    });
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// `--access-log` counts what went out, exactly: every byte the client read (the `101`
/// or SSE response head, each frame or event, the echo of the client's Close) and the
/// messages; and the bytes the client wrote. A WebSocket gets three published text
/// messages of 10 bytes (each a 12-byte frame); an SSE stream resumes with those three
/// from history and gets two more live.
#[test]
fn access_log_counts_the_bytes_and_messages_sent() {
    use common::push::{publish, request};
    let mut server = Binary::start_logged(&["--log-format", "json", "--access-log"], &[]);
    let addr = server.addr;

    // A plain WebSocket member of `news`: its 101, then three frames, then the Close echo.
    let mut ws = tcp(addr);
    let upgrade = upgrade_head("/ws/news", &[], &[]);
    ws.write_all(&upgrade).expect("write the upgrade");
    let mut got = Vec::new();
    read_until(&mut ws, &mut got, |b| head_end(b).is_some());
    let head = head_end(&got).expect("a head");
    assert!(got.starts_with(b"HTTP/1.1 101 "), "{got:?}");
    for i in 0..3 {
        publish(addr, "news", &format!("message-{i:02}"));
    }
    read_until(&mut ws, &mut got, |b| b.len() >= head + 3 * 12);
    let close = masked(true, OpCode::Close, &1000u16.to_be_bytes());
    ws.write_all(&close).expect("write the Close");
    let mut eof = false;
    for _ in 0..10_000 {
        let mut chunk = [0u8; 4096];
        match ws.read(&mut chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(eof, "the server shuts its side after the Close echo");
    let frames: Vec<u8> = (0..3)
        .flat_map(|i| {
            let mut frame = vec![0x81, 10];
            frame.extend_from_slice(format!("message-{i:02}").as_bytes());
            frame
        })
        .chain([0x88, 2, 0x03, 0xe8])
        .collect();
    assert_eq!(
        &got[head..],
        &frames[..],
        "three text frames, then the Close echo"
    );
    let line = access_line(&mut server, "websocket");
    assert_eq!(line["code"], 1000, "{line}");
    assert_eq!(line["messages_out"], 3, "{line}");
    // The 101 head, 3 × (2 + 10) bytes of frames, the 4-byte Close echo.
    assert_eq!(line["bytes_out"], head + 3 * 12 + 4, "{line}");
    assert_eq!(line["bytes_out"], got.len(), "{line}");
    assert_eq!(line["messages_in"], 0, "{line}");
    assert_eq!(line["bytes_in"], 0, "{line}");
    assert_eq!(line["wire_bytes_in"], upgrade.len() + close.len(), "{line}");

    // An SSE stream that resumes from before the first message: the head, `retry`, the
    // three from history, then two live events.
    let mut sse = tcp(addr);
    let get = request("GET", "/sse/news", &[("Last-Event-ID", "0")], b"");
    sse.write_all(&get).expect("write the request");
    let blocks =
        |b: &[u8]| head_end(b).map_or(0, |at| b[at..].windows(2).filter(|w| w == b"\n\n").count());
    let mut got = Vec::new();
    read_until(&mut sse, &mut got, |b| blocks(b) >= 4);
    assert!(got.starts_with(b"HTTP/1.1 200 "), "{got:?}");
    for i in 3..5 {
        publish(addr, "news", &format!("message-{i:02}"));
    }
    read_until(&mut sse, &mut got, |b| blocks(b) >= 6);
    let body = String::from_utf8_lossy(&got[head_end(&got).expect("a head")..]).into_owned();
    assert_eq!(blocks(&got), 6, "{body}");
    assert!(body.ends_with("id: 5\ndata: message-04\n\n"), "{body}");
    drop(sse);
    let line = access_line(&mut server, "sse");
    assert_eq!(line["code"], 0, "{line}");
    assert_eq!(line["messages_out"], 5, "{line}");
    assert_eq!(line["bytes_out"], got.len(), "{line}");
    assert_eq!(line["wire_bytes_in"], get.len(), "{line}");
    server.signal("TERM");
    assert!(server.wait_exit(TIMEOUT * 2).success());
}

/// SIGHUP with a new `jwt-secret`: new requests are checked with the new key (a token
/// signed with the old one gets 401), while a stream opened with the old token stays
/// open and keeps receiving; a key file that does not load refuses the reload.
#[test]
fn sighup_replaces_the_jwt_keys_without_dropping_a_connection() {
    use common::auth::{mint_with, now};
    let claims = serde_json::json!({"sub": "ann", "exp": now() + 600});
    let old = mint_with(claims.clone(), b"old-secret-0123456789");
    let new = mint_with(claims, b"new-secret-0123456789");
    let file = config_file("jwt.toml", "jwt-secret = \"old-secret-0123456789\"\n");
    let config = format!("--config={}", file.display());
    let mut server = Binary::start_logged(&[&config], &[]);
    let addr = server.addr;
    let poll = |token: &str| get(addr, &format!("/poll/news?timeout=0&token={token}"), &[]);
    assert_eq!(poll(&old).status, 200);
    assert_eq!(poll(&new).status, 401);
    let mut stream = common::push::sse(server.addr, &format!("/sse/news?token={old}"), &[]);

    std::fs::write(&file, "jwt-secret = \"new-secret-0123456789\"\n").unwrap();
    server.signal("HUP");
    server.wait_log("applying jwt-secret", |l| {
        l.contains("reload: applied jwt-secret")
    });
    assert_eq!(poll(&old).status, 401);
    assert_eq!(poll(&new).status, 200);
    // The stream verified with the old key is still served.
    common::push::publish(server.addr, "news", "after the reload");
    assert_eq!(stream.event().data, vec!["after the reload".to_owned()]);

    // A public key file that does not exist: nothing changes.
    std::fs::write(&file, "jwt-public-key = \"/nonexistent/key.pem\"\n").unwrap();
    server.signal("HUP");
    server.wait_log("refusing the reload", |l| {
        l.contains("reload refused, settings unchanged") && l.contains("/nonexistent/key.pem")
    });
    assert_eq!(poll(&new).status, 200);
}
