//! The binary's push application against the real process: the publish API, presence,
//! WebSocket channels (raw and `pushloop.v1` envelopes), Server-Sent Events, long polls,
//! history and resume, CORS and the publish token.

#[macro_use]
mod common;

use common::push::*;
use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

// ---------------------------------------------------------------------------------------
// The publish API
// ---------------------------------------------------------------------------------------

fn publish_ids_grow_by_one_per_channel(w: Workers) {
    let server = w.start(&[]);
    for expected in 1..=3 {
        let response = post(server.addr, "/publish/a", Some("text/plain"), b"hello", &[]);
        assert_json(&response, &format!("{{\"id\":{expected},\"delivered\":0}}"));
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    // Another channel counts on its own.
    let response = post(server.addr, "/publish/b", Some("text/plain"), b"x", &[]);
    assert_json(&response, "{\"id\":1,\"delivered\":0}");
    assert_eq!(publish(server.addr, "a", "four"), 4);
    assert_eq!(publish(server.addr, "b", "two"), 2);
    assert_json(
        &get(server.addr, "/channels/a", &[]),
        &presence("a", 0, 0, 0, 4),
    );
    assert_json(
        &get(server.addr, "/channels", &[]),
        &format!(
            "{{\"channels\":[{},{}]}}",
            presence("a", 0, 0, 0, 4),
            presence("b", 0, 0, 0, 2)
        ),
    );
}

fn content_type_decides_text_or_binary(w: Workers) {
    let server = w.start(&[]);
    let mut raw = ws(server.addr, "/ws/t", false);
    let mut env = ws(server.addr, "/ws/t", true);
    let mut stream = sse(server.addr, "/sse/t", &[]);
    let cases: [(&str, &[u8]); 5] = [
        ("text/plain", b"plain"),
        ("application/json", b"[1,2]"),
        ("Text/HTML; charset=utf-8", b"<b>hi</b>"),
        ("application/octet-stream", &[0, 1, 2, 255]),
        // text/* but not UTF-8: binary.
        ("text/plain", &[0xff, 0xfe, b'a']),
    ];
    for (n, (content_type, payload)) in cases.into_iter().enumerate() {
        let id = n as u64 + 1;
        let response = post(server.addr, "/publish/t", Some(content_type), payload, &[]);
        assert_json(&response, &format!("{{\"id\":{id},\"delivered\":3}}"));
        let raw_msg = recv(&mut raw);
        let env_msg = recv_text(&mut env);
        let event = stream.event();
        match std::str::from_utf8(payload) {
            Ok(text) if id <= 3 => {
                assert_eq!(raw_msg, Message::text(text), "{content_type}");
                assert_eq!(env_msg, envelope("t", id, text));
                assert_eq!(event, SseEvent::text(id, &[text]));
            }
            _ => {
                let base64 = if id == 4 { "AAEC/w==" } else { "//5h" };
                assert_eq!(raw_msg, Message::binary(payload.to_vec()), "{content_type}");
                assert_eq!(
                    env_msg,
                    format!(
                        "{{\"type\":\"message\",\"channel\":\"t\",\"id\":{id},\
                         \"data\":\"{base64}\",\"encoding\":\"base64\"}}"
                    )
                );
                assert_eq!(
                    event,
                    SseEvent {
                        id: Some(id),
                        event: Some("binary".into()),
                        data: vec![base64.into()],
                    }
                );
            }
        }
    }
    let polled = poll(server.addr, "/poll/t?since=3");
    assert_eq!(
        polled,
        PollBody {
            messages: vec![(4, "AAEC/w==".into(), true), (5, "//5h".into(), true)],
            next: 5,
            truncated: false,
        }
    );
}

fn large_publish_reaches_every_transport_intact(w: Workers) {
    // Far larger than one read of the server's 64 KiB buffer.
    let text: String = (0..300_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let server = w.start(&[]);
    let mut raw = ws(server.addr, "/ws/big", false);
    let mut env = ws(server.addr, "/ws/big", true);
    let mut stream = sse(server.addr, "/sse/big", &[]);
    let response = post(
        server.addr,
        "/publish/big",
        Some("text/plain"),
        text.as_bytes(),
        &[],
    );
    assert_json(&response, "{\"id\":1,\"delivered\":3}");
    assert_eq!(recv(&mut raw), Message::text(text.as_str()));
    assert_eq!(recv_text(&mut env), envelope("big", 1, &text));
    assert_eq!(stream.event(), SseEvent::text(1, &[&text]));
    assert_eq!(
        poll(server.addr, "/poll/big?since=0").messages,
        texts(&[(1, &text)])
    );
}

fn delivered_counts_every_transport(w: Workers) {
    let server = w.start(&[]);
    let _raw = ws(server.addr, "/ws/d", false);
    let _env = ws(server.addr, "/ws/d", true);
    let mut stream = sse(server.addr, "/sse/d", &[]);
    let mut held = tcp(server.addr);
    held.write_all(&request("GET", "/poll/d?since=0", &[], b""))
        .unwrap();
    wait_presence(server.addr, "d", &presence("d", 2, 1, 1, 0));
    let response = post(server.addr, "/publish/d", Some("text/plain"), b"all", &[]);
    assert_json(&response, "{\"id\":1,\"delivered\":4}");
    let answer = read_response(&mut held);
    assert_eq!(
        parse_poll(body(&answer)),
        PollBody {
            messages: texts(&[(1, "all")]),
            next: 1,
            truncated: false,
        }
    );
    assert_eq!(stream.event(), SseEvent::text(1, &["all"]));
    // The answered poll is no longer a subscriber.
    wait_presence(server.addr, "d", &presence("d", 2, 1, 0, 1));
    let response = post(server.addr, "/publish/d", Some("text/plain"), b"again", &[]);
    assert_json(&response, "{\"id\":2,\"delivered\":3}");
}

fn bad_requests_get_exact_statuses(w: Workers) {
    let server = w.start(&["--max-message", "16"]);
    let addr = server.addr;
    let long = "a".repeat(129);
    for path in [
        "/publish/a%20b".to_owned(),
        format!("/publish/{long}"),
        "/publish/a/b".to_owned(),
        "/publish/".to_owned(),
    ] {
        let response = post(addr, &path, Some("text/plain"), b"x", &[]);
        assert_error(&response, 400);
        assert_eq!(
            body(&response),
            "channel names are 1-128 of A-Z a-z 0-9 _ . : -\n",
            "{path}"
        );
    }
    // 128 bytes is the longest name.
    let longest = "a".repeat(128);
    assert_eq!(publish(addr, &longest, "x"), 1);

    let response = get(addr, "/publish/x", &[]);
    assert_error(&response, 405);
    assert_eq!(response.header("allow"), Some("POST"));
    assert_eq!(body(&response), "use POST\n");
    let response = post(addr, "/sse/x", Some("text/plain"), b"x", &[]);
    assert_error(&response, 405);
    assert_eq!(response.header("allow"), Some("GET"));
    let response = post(addr, "/channels/x", None, b"", &[]);
    assert_error(&response, 405);
    let response = post(addr, "/poll/x", None, b"", &[]);
    assert_error(&response, 405);

    for path in ["/nope", "/publishx/a", "/sse", "/poll", "/channels/"] {
        let response = get(addr, path, &[]);
        // `/sse` with no `channel` parameter is a several-channel stream naming none.
        let expected = if path == "/channels/" || path == "/sse" {
            400
        } else {
            404
        };
        assert_error(&response, expected);
    }
    assert_eq!(body(&get(addr, "/nope", &[])), "not found\n");

    for path in ["/poll/x?since=abc", "/sse/x?since=-1", "/poll/x?timeout=x"] {
        assert_error(&get(addr, path, &[]), 400);
    }
    let (head, _) = sse_connect(addr, "/sse/x", &[("Last-Event-ID", "nope")]);
    assert_eq!(head.status, 400, "{head:?}");

    // --max-message 16 bounds request bodies.
    let ok = post(addr, "/publish/m", Some("text/plain"), &[b'a'; 16], &[]);
    assert_json(&ok, "{\"id\":1,\"delivered\":0}");
    let too_large = post(addr, "/publish/m", Some("text/plain"), &[b'a'; 17], &[]);
    assert_error(&too_large, 413);

    let chunked = http_exchange(
        addr,
        b"POST /publish/m HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n\
          Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    );
    assert_error(&chunked, 411);
    // Neither refused body was published.
    assert_json(&get(addr, "/channels/m", &[]), &presence("m", 0, 0, 0, 1));
}

fn publish_token_flag_requires_the_bearer_token(w: Workers) {
    let server = w.start(&["--publish-token", "s3cret"]);
    assert_token_required(server.addr);
}

fn publish_token_env_requires_the_bearer_token(w: Workers) {
    let server = w.start_with_env(&[], &[("PUSHLOOP_PUBLISH_TOKEN", "s3cret")]);
    assert_token_required(server.addr);
}

/// The publish API of a server with token `s3cret`: 401 without it or with another.
fn assert_token_required(addr: SocketAddr) {
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret2"),
        Some("Basic s3cret"),
        Some("s3cret"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let response = post(addr, "/publish/p", Some("text/plain"), b"no", &headers);
        assert_error(&response, 401);
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer"),
            "{auth:?}"
        );
    }
    let response = post(
        addr,
        "/publish/p",
        Some("text/plain"),
        b"yes",
        &[("Authorization", "Bearer s3cret")],
    );
    assert_json(&response, "{\"id\":1,\"delivered\":0}");
    // Reading needs no token.
    assert_json(&get(addr, "/channels/p", &[]), &presence("p", 0, 0, 0, 1));
    assert_eq!(poll(addr, "/poll/p?since=0").messages, texts(&[(1, "yes")]));
}

// ---------------------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------------------

fn presence_follows_websocket_and_sse_members(w: Workers) {
    let server = w.start(&["--history", "0"]);
    let addr = server.addr;
    assert_json(&get(addr, "/channels/c", &[]), &presence("c", 0, 0, 0, 0));
    assert_json(&get(addr, "/channels", &[]), "{\"channels\":[]}");

    let mut member = ws(addr, "/ws/c", false);
    wait_presence(addr, "c", &presence("c", 1, 0, 0, 0));
    let stream = sse(addr, "/sse/c", &[]);
    wait_presence(addr, "c", &presence("c", 1, 1, 0, 0));
    assert_json(
        &get(addr, "/channels", &[]),
        &format!("{{\"channels\":[{}]}}", presence("c", 1, 1, 0, 0)),
    );
    assert_eq!(publish(addr, "c", "counted"), 1);
    assert_eq!(recv(&mut member), Message::text("counted"));
    wait_presence(addr, "c", &presence("c", 1, 1, 0, 1));

    drop(stream);
    wait_presence(addr, "c", &presence("c", 1, 0, 0, 1));
    assert_eq!(close_client(&mut member, 1000, ""), Some(1000));
    // With no members and no history (--history 0) the channel is forgotten.
    wait_presence(addr, "c", &presence("c", 0, 0, 0, 0));
    assert_json(&get(addr, "/channels", &[]), "{\"channels\":[]}");
}

// ---------------------------------------------------------------------------------------
// WebSocket channels
// ---------------------------------------------------------------------------------------

fn bare_ws_is_the_lobby(w: Workers) {
    let server = w.start(&[]);
    let mut bare = ws(server.addr, "/ws", false);
    let mut named = ws(server.addr, "/ws/lobby", false);
    wait_presence(server.addr, "lobby", &presence("lobby", 2, 0, 0, 0));
    let response = post(
        server.addr,
        "/publish/lobby",
        Some("text/plain"),
        b"hi",
        &[],
    );
    assert_json(&response, "{\"id\":1,\"delivered\":2}");
    assert_eq!(recv(&mut bare), Message::text("hi"));
    assert_eq!(recv(&mut named), Message::text("hi"));
    bare.send(Message::text("from bare")).unwrap();
    assert_eq!(recv(&mut named), Message::text("from bare"));
}

fn chat_stays_in_its_channel_and_skips_the_sender(w: Workers) {
    let server = w.start(&["--mode", "chat"]);
    let mut a1 = ws(server.addr, "/ws/a", false);
    let mut a2 = ws(server.addr, "/ws/a", false);
    let mut b1 = ws(server.addr, "/ws/b", false);
    a1.send(Message::text("hello a")).unwrap();
    assert_eq!(recv(&mut a2), Message::text("hello a"));
    a2.send(Message::binary(vec![7u8, 0, 7])).unwrap();
    // Had a1 received its own message, it would come first.
    assert_eq!(recv(&mut a1), Message::binary(vec![7u8, 0, 7]));
    // Had b1 received a's messages, they would come before this one.
    assert_eq!(publish(server.addr, "b", "for b"), 1);
    assert_eq!(recv(&mut b1), Message::text("for b"));
    b1.send(Message::text("hello b")).unwrap();
    // b's message went nowhere in a: the next thing a1 and a2 see is a publish to a.
    assert_eq!(publish(server.addr, "a", "for a"), 3);
    assert_eq!(recv(&mut a1), Message::text("for a"));
    assert_eq!(recv(&mut a2), Message::text("for a"));
    wait_presence(server.addr, "b", &presence("b", 1, 0, 0, 2));
}

fn envelope_clients_get_json_and_acks(w: Workers) {
    let server = w.start(&["--mode", "chat"]);
    let mut e1 = ws(server.addr, "/ws/c", true);
    let mut e2 = ws(server.addr, "/ws/c", true);
    let mut raw = ws(server.addr, "/ws/c", false);
    let mut other = ws(server.addr, "/ws/o", true);

    e1.send(Message::text("hi")).unwrap();
    assert_eq!(
        recv_text(&mut e1),
        "{\"type\":\"ack\",\"channel\":\"c\",\"id\":1}"
    );
    assert_eq!(recv_text(&mut e2), envelope("c", 1, "hi"));
    assert_eq!(recv(&mut raw), Message::text("hi"));

    // Text is escaped as JSON; raw members get it as sent.
    let tricky = "say \"hi\"\n\\ \u{1} é";
    e2.send(Message::text(tricky)).unwrap();
    assert_eq!(
        recv_text(&mut e2),
        "{\"type\":\"ack\",\"channel\":\"c\",\"id\":2}"
    );
    assert_eq!(
        recv_text(&mut e1),
        envelope("c", 2, "say \\\"hi\\\"\\n\\\\ \\u0001 é")
    );
    assert_eq!(recv(&mut raw), Message::text(tricky));

    // A raw member's binary message reaches envelope members as base64.
    raw.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    let binary = "{\"type\":\"message\",\"channel\":\"c\",\"id\":3,\"data\":\"AQID\",\
                  \"encoding\":\"base64\"}";
    assert_eq!(recv_text(&mut e1), binary);
    assert_eq!(recv_text(&mut e2), binary);

    // Another channel saw none of it.
    assert_eq!(publish(server.addr, "o", "only o"), 1);
    assert_eq!(recv_text(&mut other), envelope("o", 1, "only o"));
}

// ---------------------------------------------------------------------------------------
// Resume and history
// ---------------------------------------------------------------------------------------

/// Publishes `m1`..`m{n}` to `channel`.
fn publish_numbered(addr: SocketAddr, channel: &str, n: u64) {
    for i in 1..=n {
        assert_eq!(publish(addr, channel, &format!("m{i}")), i);
    }
}

fn websocket_since_resumes_in_order_then_live(w: Workers) {
    let server = w.start(&[]);
    publish_numbered(server.addr, "r", 5);
    let mut env = ws(server.addr, "/ws/r?since=2", true);
    let mut raw = ws(server.addr, "/ws/r?since=3", false);
    let mut fresh = ws(server.addr, "/ws/r?since=5", true);
    let mut plain = ws(server.addr, "/ws/r", true);
    for i in 3..=5 {
        assert_eq!(recv_text(&mut env), envelope("r", i, &format!("m{i}")));
    }
    for i in 4..=5 {
        assert_eq!(recv(&mut raw), Message::text(format!("m{i}")));
    }
    assert_eq!(publish(server.addr, "r", "m6"), 6);
    assert_eq!(recv_text(&mut env), envelope("r", 6, "m6"));
    assert_eq!(recv(&mut raw), Message::text("m6"));
    // Nothing missed: the first message is the live one; without since, too.
    assert_eq!(recv_text(&mut fresh), envelope("r", 6, "m6"));
    assert_eq!(recv_text(&mut plain), envelope("r", 6, "m6"));
    // A malformed since is refused.
    let refused = http_exchange(server.addr, &upgrade_head("/ws/r?since=x", &[], &[]));
    assert_eq!(refused.status, 400, "{refused:?}");
}

fn sse_resumes_with_last_event_id_or_since(w: Workers) {
    let server = w.start(&[]);
    let addr = server.addr;
    publish_numbered(addr, "s", 5);
    let mut by_header = sse(addr, "/sse/s", &[("Last-Event-ID", "2")]);
    let mut by_query = sse(addr, "/sse/s?since=3", &[]);
    // The header wins over the query.
    let mut both = sse(addr, "/sse/s?since=1", &[("Last-Event-ID", "4")]);
    let mut live = sse(addr, "/sse/s", &[]);
    for i in 3..=5 {
        assert_eq!(by_header.event(), SseEvent::text(i, &[&format!("m{i}")]));
    }
    for i in 4..=5 {
        assert_eq!(by_query.event(), SseEvent::text(i, &[&format!("m{i}")]));
    }
    assert_eq!(both.event(), SseEvent::text(5, &["m5"]));
    assert_eq!(publish(addr, "s", "m6"), 6);
    for stream in [&mut by_header, &mut by_query, &mut both, &mut live] {
        assert_eq!(stream.event(), SseEvent::text(6, &["m6"]));
    }
}

fn poll_since_answers_at_once_with_what_followed(w: Workers) {
    let server = w.start(&[]);
    publish_numbered(server.addr, "p", 5);
    let started = Instant::now();
    assert_eq!(
        poll(server.addr, "/poll/p?since=2&timeout=30"),
        PollBody {
            messages: texts(&[(3, "m3"), (4, "m4"), (5, "m5")]),
            next: 5,
            truncated: false,
        }
    );
    assert_eq!(
        poll(server.addr, "/poll/p?timeout=30&since=4").messages,
        texts(&[(5, "m5")])
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "polls were held"
    );
    // An id the channel never reached is reported, not waited on.
    assert_eq!(
        poll(server.addr, "/poll/p?since=50&timeout=30"),
        PollBody {
            messages: vec![],
            next: 5,
            truncated: true,
        }
    );
}

fn history_gap_is_reported_on_every_transport(w: Workers) {
    let server = w.start(&["--history", "3"]);
    let addr = server.addr;
    publish_numbered(addr, "g", 10);
    let kept = [(8, "m8"), (9, "m9"), (10, "m10")];

    let mut env = ws(addr, "/ws/g?since=2", true);
    assert_eq!(
        recv_text(&mut env),
        "{\"type\":\"gap\",\"channel\":\"g\",\"since\":2,\"last_id\":10}"
    );
    for (id, data) in kept {
        assert_eq!(recv_text(&mut env), envelope("g", id, data));
    }
    // Raw members get no notice, just what was kept.
    let mut raw = ws(addr, "/ws/g?since=2", false);
    for (_, data) in kept {
        assert_eq!(recv(&mut raw), Message::text(data));
    }

    let mut stream = sse(addr, "/sse/g", &[("Last-Event-ID", "2")]);
    assert_eq!(
        stream.event(),
        SseEvent {
            id: None,
            event: Some("gap".into()),
            data: vec!["{\"since\":2,\"last_id\":10}".into()],
        }
    );
    for (id, data) in kept {
        assert_eq!(stream.event(), SseEvent::text(id, &[data]));
    }

    assert_eq!(
        poll(addr, "/poll/g?since=2"),
        PollBody {
            messages: texts(&kept),
            next: 10,
            truncated: true,
        }
    );
    // Just inside history: no gap.
    assert_eq!(
        poll(addr, "/poll/g?since=7"),
        PollBody {
            messages: texts(&kept),
            next: 10,
            truncated: false,
        }
    );
}

// ---------------------------------------------------------------------------------------
// Long polling
// ---------------------------------------------------------------------------------------

fn poll_is_held_until_a_publish(w: Workers) {
    let server = w.start(&[]);
    let addr = server.addr;
    assert_eq!(publish(addr, "h", "old"), 1);
    let mut held = tcp(addr);
    held.write_all(&request("GET", "/poll/h?since=1&timeout=30", &[], b""))
        .unwrap();
    let publisher = thread::spawn(move || {
        wait_presence(addr, "h", &presence("h", 0, 0, 1, 1));
        publish(addr, "h", "news")
    });
    let answer = read_response(&mut held);
    assert_eq!(publisher.join().expect("publisher thread"), 2);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    assert_eq!(
        parse_poll(body(&answer)),
        PollBody {
            messages: texts(&[(2, "news")]),
            next: 2,
            truncated: false,
        }
    );
    // Without since, a poll waits for the next message too.
    held.write_all(&request("GET", "/poll/h?timeout=30", &[], b""))
        .unwrap();
    wait_presence(addr, "h", &presence("h", 0, 0, 1, 2));
    let response = post(
        addr,
        "/publish/h",
        Some("application/octet-stream"),
        b"\0",
        &[],
    );
    assert_json(&response, "{\"id\":3,\"delivered\":1}");
    let answer = read_response(&mut held);
    assert_eq!(
        parse_poll(body(&answer)),
        PollBody {
            messages: vec![(3, "AA==".into(), true)],
            next: 3,
            truncated: false,
        }
    );
}

fn abandoned_poll_is_no_longer_a_subscriber(w: Workers) {
    let server = w.start(&[]);
    let mut held = tcp(server.addr);
    held.write_all(&request("GET", "/poll/ab?timeout=30", &[], b""))
        .unwrap();
    wait_presence(server.addr, "ab", &presence("ab", 0, 0, 1, 0));
    drop(held);
    wait_presence(server.addr, "ab", &presence("ab", 0, 0, 0, 0));
    let response = post(
        server.addr,
        "/publish/ab",
        Some("text/plain"),
        b"nobody",
        &[],
    );
    assert_json(&response, "{\"id\":1,\"delivered\":0}");
}

fn poll_times_out_empty_and_keeps_the_connection(w: Workers) {
    let server = w.start(&[]);
    let mut stream = tcp(server.addr);
    let started = Instant::now();
    stream
        .write_all(&request("GET", "/poll/q?since=0&timeout=1", &[], b""))
        .unwrap();
    let answer = read_response(&mut stream);
    let waited = started.elapsed();
    assert_json(&answer, "{\"messages\":[],\"next\":0,\"truncated\":false}");
    assert!(
        waited >= Duration::from_secs(1),
        "answered after {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    // The same connection serves the next request.
    stream
        .write_all(&request("GET", "/channels/q", &[], b""))
        .unwrap();
    let next = read_response(&mut stream);
    assert_eq!(next.status, 200, "{next:?}");
    // The poll is no longer counted: at once with one worker; with two, once the
    // channel's owner has taken the other worker's note (as of its next turn).
    wait_presence(server.addr, "q", &presence("q", 0, 0, 0, 0));
    assert_eq!(publish(server.addr, "q", "later"), 1);
    assert_eq!(
        poll_on(&mut stream, "/poll/q?since=0&timeout=1").messages,
        texts(&[(1, "later")])
    );
}

fn pipelined_requests_are_answered_in_order(w: Workers) {
    let server = w.start(&[]);
    assert_eq!(publish(server.addr, "y", "one"), 1);
    let mut stream = tcp(server.addr);
    let mut both = request("GET", "/channels/x", &[], b"");
    both.extend(request("GET", "/channels/y", &[], b""));
    stream.write_all(&both).unwrap();
    assert_json(&read_response(&mut stream), &presence("x", 0, 0, 0, 0));
    assert_json(&read_response(&mut stream), &presence("y", 0, 0, 0, 1));

    // Behind a held poll, the next request waits for the poll's answer.
    let mut behind_poll = request("GET", "/poll/x?timeout=1", &[], b"");
    behind_poll.extend(request("GET", "/channels/y", &[], b""));
    behind_poll.extend(request(
        "POST",
        "/publish/y",
        &[("Content-Type", "text/plain")],
        b"two",
    ));
    stream.write_all(&behind_poll).unwrap();
    assert_json(
        &read_response(&mut stream),
        "{\"messages\":[],\"next\":0,\"truncated\":false}",
    );
    assert_json(&read_response(&mut stream), &presence("y", 0, 0, 0, 1));
    assert_json(&read_response(&mut stream), "{\"id\":2,\"delivered\":0}");
}

fn head_gets_headers_without_a_body(w: Workers) {
    // RFC 9110 §9.3.2: a HEAD answer has no content; app.rs accepts HEAD wherever it
    // accepts GET. A keep-alive client reads the next response right after the head.
    let server = w.start(&[]);
    let mut stream = tcp(server.addr);
    stream
        .write_all(&request("HEAD", "/channels/x", &[], b""))
        .unwrap();
    let head = read_response_head(&mut stream);
    assert_eq!(head.status, 200, "{head:?}");
    stream
        .write_all(&request(
            "GET",
            "/channels/y",
            &[("Connection", "close")],
            b"",
        ))
        .unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read to the end");
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n"),
        "after the HEAD answer's head came {rest:?}"
    );
}

// ---------------------------------------------------------------------------------------
// SSE and CORS
// ---------------------------------------------------------------------------------------

fn sse_headers_ids_and_multiline_data(w: Workers) {
    let server = w.start(&[]);
    let (head, mut stream) = sse_connect(server.addr, "/sse/m", &[]);
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("access-control-allow-origin"), None);
    assert_eq!(stream.block(), "retry: 2000");
    assert_eq!(publish(server.addr, "m", "line1\nline2\r\nline3"), 1);
    assert_eq!(publish(server.addr, "m", "one"), 2);
    assert_eq!(publish(server.addr, "m", "trailing\n"), 3);
    assert_eq!(publish(server.addr, "m", ""), 4);
    assert_eq!(
        stream.block(),
        "id: 1\ndata: line1\ndata: line2\ndata: line3"
    );
    assert_eq!(stream.event(), SseEvent::text(2, &["one"]));
    assert_eq!(stream.event(), SseEvent::text(3, &["trailing", ""]));
    assert_eq!(stream.event(), SseEvent::text(4, &[""]));
}

fn cors_origin_flag_adds_headers_and_answers_preflight(w: Workers) {
    let server = w.start(&["--cors-origin", "*"]);
    let addr = server.addr;
    let preflight = http_exchange(addr, &request("OPTIONS", "/publish/x", &[], b""));
    assert_eq!(preflight.status, 204, "{preflight:?}");
    assert!(preflight.body.is_empty());
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("Authorization, Content-Type, Last-Event-ID")
    );

    let published = post(addr, "/publish/x", Some("text/plain"), b"hi", &[]);
    assert_json(&published, "{\"id\":1,\"delivered\":0}");
    let presence_answer = get(addr, "/channels/x", &[]);
    let list = get(addr, "/channels", &[]);
    let polled = http_exchange(addr, &request("GET", "/poll/x?since=0", &[], b""));
    assert_eq!(
        body(&polled),
        "{\"messages\":[{\"id\":1,\"data\":\"hi\"}],\"next\":1,\"truncated\":false}"
    );
    let (stream_head, _stream) = sse_connect(addr, "/sse/x", &[]);
    let not_found = get(addr, "/nope", &[]);
    for response in [
        &published,
        &presence_answer,
        &list,
        &polled,
        &stream_head,
        &not_found,
    ] {
        assert_eq!(
            response.header("access-control-allow-origin"),
            Some("*"),
            "{response:?}"
        );
    }

    // Without the flag: no CORS headers, and OPTIONS is not special.
    let plain = w.start(&[]);
    let published = post(plain.addr, "/publish/x", Some("text/plain"), b"hi", &[]);
    assert_eq!(published.header("access-control-allow-origin"), None);
    let options = http_exchange(plain.addr, &request("OPTIONS", "/publish/x", &[], b""));
    assert_error(&options, 405);
}

// ---------------------------------------------------------------------------------------
// No gap, no duplicate across reconnects under concurrent publishing
// ---------------------------------------------------------------------------------------

/// Messages the publisher posts.
const TOTAL: u64 = 300;

/// How far the publisher may run ahead of the subscriber: it keeps the two interleaved
/// (the subscriber reconnects while messages are still being published) and within the
/// default history of 100.
const WINDOW: u64 = 20;

/// Publishes `m-1`..`m-300` to `channel` as fast as one keep-alive connection allows,
/// checking each id, but never more than [`WINDOW`] ahead of the last id the subscriber
/// reported on `progress`.
fn spawn_publisher(
    addr: SocketAddr,
    channel: &'static str,
    progress: mpsc::Receiver<u64>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut stream = tcp(addr);
        let path = format!("/publish/{channel}");
        let mut seen = 0;
        for i in 1..=TOTAL {
            while i > seen + WINDOW {
                seen = progress
                    .recv_timeout(TIMEOUT)
                    .expect("the subscriber made no progress in time");
            }
            let body = format!("m-{i}");
            stream
                .write_all(&request(
                    "POST",
                    &path,
                    &[("Content-Type", "text/plain")],
                    body.as_bytes(),
                ))
                .expect("write publish");
            assert_eq!(publish_id(&read_response(&mut stream)), i);
        }
    })
}

/// Runs a publisher of [`TOTAL`] messages to `channel` while `session(addr, since, n)`
/// connects, receives about `n` messages after `since` as `(id, data)`, and disconnects
/// abruptly, over and over; every id must arrive once, in order, with its data.
fn no_gap_no_duplicate(
    w: Workers,
    channel: &'static str,
    mut session: impl FnMut(SocketAddr, u64, usize) -> Vec<(u64, String)>,
) {
    let server = w.start(&[]);
    let started = Instant::now();
    let (progress, progress_rx) = mpsc::channel();
    let publisher = spawn_publisher(server.addr, channel, progress_rx);
    let mut last = 0;
    let mut sessions = 0;
    while last < TOTAL {
        assert!(
            sessions < 1000 && started.elapsed() < Duration::from_secs(20),
            "{sessions} sessions in {:?} reached only id {last}",
            started.elapsed()
        );
        let want = (sessions % 7 + 1).min((TOTAL - last) as usize);
        let got = session(server.addr, last, want);
        assert!(
            !got.is_empty(),
            "session {sessions} after {last} got nothing"
        );
        for (id, data) in got {
            assert_eq!(
                id,
                last + 1,
                "session {sessions}: after id {last} came {id}"
            );
            assert_eq!(data, format!("m-{id}"), "data of id {id}");
            last = id;
        }
        let _ = progress.send(last);
        sessions += 1;
    }
    publisher.join().expect("publisher thread");
    assert_eq!(last, TOTAL);
}

fn websocket_resume_has_no_gap_and_no_duplicate(w: Workers) {
    no_gap_no_duplicate(w, "rw", |addr, since, want| {
        let mut client = ws(addr, &format!("/ws/rw?since={since}"), true);
        let mut got = Vec::new();
        for _ in 0..want {
            let text = recv_text(&mut client);
            let id = envelope_id(&text);
            assert_eq!(text, envelope("rw", id, &format!("m-{id}")));
            got.push((id, format!("m-{id}")));
        }
        drop(client); // no close handshake
        got
    });
}

fn sse_resume_has_no_gap_and_no_duplicate(w: Workers) {
    let mut odd = false;
    no_gap_no_duplicate(w, "rs", |addr, since, want| {
        odd = !odd;
        let since = since.to_string();
        let mut stream = if odd {
            sse(addr, "/sse/rs", &[("Last-Event-ID", since.as_str())])
        } else {
            sse(addr, &format!("/sse/rs?since={since}"), &[])
        };
        let mut got = Vec::new();
        for _ in 0..want {
            let event = stream.event();
            assert_eq!(event.event, None, "{event:?}");
            let id = event.id.expect("event id");
            assert_eq!(event.data.len(), 1, "{event:?}");
            got.push((id, event.data[0].clone()));
        }
        drop(stream);
        got
    });
}

fn long_poll_resume_has_no_gap_and_no_duplicate(w: Workers) {
    no_gap_no_duplicate(w, "rp", |addr, since, want| {
        let mut stream = tcp(addr);
        let mut got: Vec<(u64, String)> = Vec::new();
        let mut after = since;
        for _ in 0..want {
            let answer = poll_on(&mut stream, &format!("/poll/rp?since={after}&timeout=5"));
            assert!(!answer.truncated, "{answer:?}");
            assert!(!answer.messages.is_empty(), "{answer:?}");
            for (id, data, base64) in answer.messages {
                assert!(!base64);
                got.push((id, data));
            }
            assert_eq!(Some(answer.next), got.last().map(|m| m.0));
            after = answer.next;
            if got.len() >= want {
                break;
            }
        }
        // Leave with one more poll in flight, its answer unread.
        stream
            .write_all(&request(
                "GET",
                &format!("/poll/rp?since={after}"),
                &[],
                b"",
            ))
            .unwrap();
        drop(stream);
        got
    });
}

/// The SSE heartbeat: a comment block every `Config::heartbeat`, through the library's
/// `Context::event_stream` on an in-process server.
#[test]
fn event_streams_send_a_heartbeat_comment() {
    struct Streams;
    impl pushloop::Handler for Streams {
        fn on_message(
            &mut self,
            _: &mut pushloop::Context<'_>,
            _: pushloop::ConnId,
            _: pushloop::Message<'_>,
        ) {
        }
        fn on_http(
            &mut self,
            ctx: &mut pushloop::Context<'_>,
            id: pushloop::ConnId,
            _: &pushloop::Request<'_>,
            _: &[u8],
        ) -> pushloop::Reply {
            ctx.event_stream(id, "beat", None, &[])
        }
    }
    let config = pushloop::Config::default().heartbeat(Duration::from_millis(50));
    let server = pushloop::Server::bind_with("127.0.0.1:0", config).unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let loop_thread = thread::spawn(move || server.run(Streams));
    let mut stream = sse(addr, "/sse/beat", &[]);
    let started = Instant::now();
    assert_eq!(stream.block(), ": heartbeat");
    assert_eq!(stream.block(), ": heartbeat");
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "{:?}",
        started.elapsed()
    );
    drop(stream);
    handle.stop().unwrap();
    loop_thread.join().unwrap().unwrap();
}

/// `Context::traffic` in `on_http_end` on an in-process server counting traffic: a long
/// poll whose deadline passed has its fallback answer written before the callback, and
/// the counts are exactly the request the client wrote and the answer it read (a long
/// poll's answer counts in bytes, not messages). Without `count_traffic`, no counts.
#[test]
fn traffic_is_final_when_a_held_poll_ends() {
    struct Polls(mpsc::Sender<Option<pushloop::Traffic>>);
    impl pushloop::Handler for Polls {
        fn on_message(
            &mut self,
            _: &mut pushloop::Context<'_>,
            _: pushloop::ConnId,
            _: pushloop::Message<'_>,
        ) {
        }
        fn on_http(
            &mut self,
            ctx: &mut pushloop::Context<'_>,
            id: pushloop::ConnId,
            _: &pushloop::Request<'_>,
            _: &[u8],
        ) -> pushloop::Reply {
            ctx.long_poll(id, "quiet", None, Duration::from_millis(20), &[])
        }
        fn on_http_end(&mut self, ctx: &mut pushloop::Context<'_>, id: pushloop::ConnId) {
            self.0.send(ctx.traffic(id)).unwrap();
        }
    }
    for counting in [true, false] {
        let config = pushloop::Config::default().count_traffic(counting);
        let server = pushloop::Server::bind_with("127.0.0.1:0", config).unwrap();
        let addr = server.local_addr();
        let handle = server.handle();
        let (tx, rx) = mpsc::channel();
        let loop_thread = thread::spawn(move || server.run(Polls(tx)));
        let mut stream = tcp(addr);
        let get = request("GET", "/poll/quiet", &[], b"");
        stream.write_all(&get).unwrap();
        // The whole answer: its head, then Content-Length bytes of body.
        let mut got = Vec::new();
        let mut whole = None;
        for _ in 0..10_000 {
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..at]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .expect("a Content-Length");
                whole = Some(at + 4 + len);
            }
            if whole.is_some_and(|n| got.len() >= n) {
                break;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => panic!("EOF after {:?}", String::from_utf8_lossy(&got)),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}"),
            }
        }
        assert_eq!(
            Some(got.len()),
            whole,
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(got.starts_with(b"HTTP/1.1 200 "), "{got:?}");
        let traffic = rx.recv_timeout(TIMEOUT).expect("on_http_end");
        let expected = pushloop::Traffic {
            bytes_in: get.len() as u64,
            bytes_out: got.len() as u64,
            messages_in: 0,
            messages_out: 0,
        };
        assert_eq!(traffic, counting.then_some(expected));
        drop(stream);
        handle.stop().unwrap();
        loop_thread.join().unwrap().unwrap();
    }
}

/// `--static DIR` serves the directory's files with their content types, and refuses
/// paths that climb out of it, encoded or not.
fn static_dir_serves_files_and_refuses_traversal(w: Workers) {
    let dir = std::env::temp_dir().join(format!("pushloop-static-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("js")).unwrap();
    std::fs::write(dir.join("index.html"), "<p>home</p>").unwrap();
    std::fs::write(dir.join("js/app.js"), "let x = 1;").unwrap();
    let server = w.start(&["--static", dir.to_str().unwrap()]);
    let home = get(server.addr, "/", &[]);
    assert_eq!((home.status, body(&home)), (200, "<p>home</p>"));
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let js = get(server.addr, "/js/app.js", &[]);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    for bad in [
        "/../Cargo.toml",
        "/js/../../x",
        "/%2e%2e/x",
        "/js/%2E%2E%2F%2E%2E%2Fx",
    ] {
        assert_eq!(get(server.addr, bad, &[]).status, 400, "{bad}");
    }
    assert_eq!(get(server.addr, "/missing.css", &[]).status, 404);
    // The API still answers beside the files.
    assert_eq!(get(server.addr, "/channels", &[]).status, 200);
    std::fs::remove_dir_all(dir).unwrap();
}

with_one_and_two_workers!(
    publish_ids_grow_by_one_per_channel,
    content_type_decides_text_or_binary,
    large_publish_reaches_every_transport_intact,
    delivered_counts_every_transport,
    bad_requests_get_exact_statuses,
    publish_token_flag_requires_the_bearer_token,
    publish_token_env_requires_the_bearer_token,
    presence_follows_websocket_and_sse_members,
    bare_ws_is_the_lobby,
    chat_stays_in_its_channel_and_skips_the_sender,
    envelope_clients_get_json_and_acks,
    websocket_since_resumes_in_order_then_live,
    sse_resumes_with_last_event_id_or_since,
    poll_since_answers_at_once_with_what_followed,
    history_gap_is_reported_on_every_transport,
    poll_is_held_until_a_publish,
    abandoned_poll_is_no_longer_a_subscriber,
    poll_times_out_empty_and_keeps_the_connection,
    pipelined_requests_are_answered_in_order,
    head_gets_headers_without_a_body,
    sse_headers_ids_and_multiline_data,
    cors_origin_flag_adds_headers_and_answers_preflight,
    websocket_resume_has_no_gap_and_no_duplicate,
    sse_resume_has_no_gap_and_no_duplicate,
    long_poll_resume_has_no_gap_and_no_duplicate,
    static_dir_serves_files_and_refuses_traversal,
);
