//! Nodes sharing one Redis (`--redis`) behave as one pushloop: real redis-server (started
//! here on a free port in a temporary directory), real binaries, real clients.
//!
//! Chat across three nodes arrives exactly once, in one order; a publish on one node
//! reaches SSE and long polls on the others with the same ids; clients resume and poll
//! on any node; history outlives a node and (with AOF) Redis; while Redis is away
//! publishes are refused visibly (503, an error, 1013) and afterwards every member gets
//! what it missed, in order; a node cut from Redis catches up; presence is global and a
//! killed node's members leave it.

mod common;

use common::ops::scrape;
use common::proxy::Proxy;
use common::push::{
    body, envelope, envelope_id, get, parse_poll, poll, post, publish, publish_id, recv_text,
    request, sse, ws,
};
use common::redis::{free_port, RedisOptions, RedisServer};
use common::{output_within, read_response, read_until_close, Binary, Client, TIMEOUT};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// A chat node on `redis` with room for 1,000 messages of history per channel.
fn node(redis: &str, extra: &[&str]) -> Binary {
    let mut args = vec!["--redis", redis, "--history", "1000"];
    args.extend_from_slice(extra);
    Binary::start(&args)
}

/// Asks `GET path` on `addr` until `done(status, body)` holds (bounded); the last body.
fn wait_get(addr: SocketAddr, path: &str, what: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT * 4;
    let mut last = String::new();
    for _ in 0..2_000 {
        let response = get(addr, path, &[]);
        last = body(&response).to_owned();
        if done(response.status, &last) {
            return last;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {last:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what}: last answer {last:?}");
}

/// Waits until `GET /channels/<channel>` on `addr` counts `websocket` and `sse` members
/// (presence is summed in Redis and read back once a second).
fn wait_members(addr: SocketAddr, channel: &str, websocket: usize, sse: usize) {
    let want = format!("\"websocket\":{websocket},\"sse\":{sse},");
    wait_get(addr, &format!("/channels/{channel}"), "presence", |_, b| {
        b.contains(&want)
    });
}

/// The next text message within [`TIMEOUT`], or `None` if the socket closed.
fn next_text(client: &mut Client) -> String {
    recv_text(client)
}

/// Reads `n` message envelopes of `channel` from a `pushloop.v1` member; their ids and
/// data.
fn envelopes(client: &mut Client, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|_| {
            let text = next_text(client);
            let id = envelope_id(&text);
            let data = text
                .rsplit_once("\"data\":\"")
                .map(|(_, d)| d.trim_end_matches("\"}").to_owned())
                .unwrap_or_else(|| panic!("no data in {text}"));
            (id, data)
        })
        .collect()
}

fn ids(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

#[test]
fn chat_across_three_nodes_arrives_exactly_once_in_one_order() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let nodes = [
        node(&url, &[]),
        node(&url, &["--workers", "2"]),
        node(&url, &[]),
    ];
    let mut clients: Vec<Client> = Vec::new();
    for n in &nodes {
        for _ in 0..2 {
            clients.push(ws(n.addr, "/ws/room?since=0", true));
        }
    }
    wait_members(nodes[0].addr, "room", 6, 0);
    const EACH: usize = 20;
    for round in 0..EACH {
        for (c, client) in clients.iter_mut().enumerate() {
            client
                .send(Message::text(format!("c{c}-{round}")))
                .expect("send");
        }
    }
    let total = EACH * clients.len();
    let mut by_id: BTreeMap<u64, String> = BTreeMap::new();
    for (c, client) in clients.iter_mut().enumerate() {
        let mut seen = Vec::new();
        let mut acked = Vec::new();
        for _ in 0..total {
            let text = next_text(client);
            if text.starts_with("{\"type\":\"ack\"") {
                let id = text
                    .split_once("\"id\":")
                    .and_then(|(_, r)| r.trim_end_matches('}').parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("ack {text}"));
                acked.push(id);
                continue;
            }
            let id = envelope_id(&text);
            let data = text
                .rsplit_once("\"data\":\"")
                .unwrap()
                .1
                .trim_end_matches("\"}");
            assert!(
                !data.starts_with(&format!("c{c}-")),
                "its own message came back: {text}"
            );
            if let Some(other) = by_id.insert(id, data.to_owned()) {
                assert_eq!(other, data, "id {id} names two messages");
            }
            seen.push(id);
        }
        assert_eq!(acked.len(), EACH, "client {c}: one ack per message");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "client {c}: out of order {seen:?}"
        );
        assert!(
            acked.windows(2).all(|w| w[0] < w[1]),
            "client {c}: acks {acked:?}"
        );
        let all: BTreeSet<u64> = seen.iter().chain(&acked).copied().collect();
        assert_eq!(all.len(), total, "client {c}: a duplicate or a loss");
        assert_eq!(all, (1..=total as u64).collect(), "client {c}");
    }
    // Per sender, ids follow the order it sent in.
    for c in 0..clients.len() {
        let sent: Vec<u64> = by_id
            .iter()
            .filter(|(_, d)| d.starts_with(&format!("c{c}-")))
            .map(|(id, _)| *id)
            .collect();
        let rounds: Vec<String> = sent.iter().map(|id| by_id[id].clone()).collect();
        let expected: Vec<String> = (0..EACH).map(|r| format!("c{c}-{r}")).collect();
        assert_eq!(rounds, expected, "client {c}'s messages in id order");
    }
}

#[test]
fn a_publish_on_one_node_reaches_sse_and_long_polls_on_the_others_with_the_same_ids() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let (a, b, c) = (node(&url, &[]), node(&url, &[]), node(&url, &[]));
    let mut stream = sse(b.addr, "/sse/news?since=0", &[]);
    let poller = std::thread::spawn({
        let addr = c.addr;
        move || {
            let mut got = Vec::new();
            let mut since = 0;
            for _ in 0..20 {
                let answer = poll(addr, &format!("/poll/news?since={since}&timeout=5"));
                got.extend(answer.messages.iter().map(|(id, d, _)| (*id, d.clone())));
                since = answer.next;
                if got.len() >= 3 {
                    break;
                }
            }
            got
        }
    });
    wait_members(a.addr, "news", 0, 1);
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        assert_eq!(publish(a.addr, "news", text), i as u64 + 1);
    }
    for (id, text) in [(1, "one"), (2, "two"), (3, "three")] {
        let event = stream.event();
        assert_eq!((event.id, event.data), (Some(id), vec![text.to_owned()]));
    }
    let polled = poller.join().expect("poller");
    let expected: Vec<(u64, String)> =
        vec![(1, "one".into()), (2, "two".into()), (3, "three".into())];
    assert_eq!(polled, expected);
}

#[test]
fn a_client_resumes_on_another_node_after_300_messages_and_after_a_node_is_killed() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let (b, c) = (node(&url, &[]), node(&url, &[]));
    let mut a = node(&url, &[]);
    let mut member = ws(a.addr, "/ws/feed?since=0", true);
    wait_members(b.addr, "feed", 1, 0);
    for i in 1..=5 {
        publish(b.addr, "feed", &format!("m{i}"));
    }
    let first = envelopes(&mut member, 5);
    assert_eq!(first.iter().map(|m| m.0).collect::<Vec<_>>(), ids(1, 5));
    // The node dies under the client.
    a.signal("KILL");
    a.wait_exit(TIMEOUT);
    for i in 6..=305 {
        publish(c.addr, "feed", &format!("m{i}"));
    }
    let mut again = ws(b.addr, "/ws/feed?since=5", true);
    let missed = envelopes(&mut again, 300);
    assert_eq!(missed.iter().map(|m| m.0).collect::<Vec<_>>(), ids(6, 305));
    assert!(missed.iter().all(|(id, d)| *d == format!("m{id}")));
    // And live again, once.
    assert_eq!(publish(c.addr, "feed", "m306"), 306);
    assert_eq!(next_text(&mut again), envelope("feed", 306, "m306"));
}

#[test]
fn a_long_poll_client_alternating_between_nodes_loses_nothing() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let nodes = [node(&url, &[]), node(&url, &[]), node(&url, &[])];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    const N: u64 = 150;
    let publisher = std::thread::spawn({
        let addrs = addrs.clone();
        move || {
            for i in 1..=N {
                let addr = addrs[(i as usize) % addrs.len()];
                assert_eq!(publish(addr, "polled", &format!("p{i}")), i);
            }
        }
    });
    let mut got: Vec<(u64, String)> = Vec::new();
    let mut since = 0;
    let deadline = Instant::now() + TIMEOUT * 6;
    for turn in 0..10_000 {
        if got.len() as u64 >= N {
            break;
        }
        assert!(Instant::now() < deadline, "polled {} of {N}", got.len());
        let addr = addrs[turn % addrs.len()];
        let answer = poll(addr, &format!("/poll/polled?since={since}&timeout=5"));
        assert!(!answer.truncated, "a gap at {since}");
        got.extend(answer.messages.iter().map(|(id, d, _)| (*id, d.clone())));
        since = answer.next;
    }
    publisher.join().expect("publisher");
    let expected: Vec<(u64, String)> = (1..=N).map(|i| (i, format!("p{i}"))).collect();
    assert_eq!(got, expected);
}

#[test]
fn history_outlives_a_node_restart() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let mut a = node(&url, &[]);
    for i in 1..=10 {
        publish(a.addr, "kept", &format!("k{i}"));
    }
    a.signal("KILL");
    a.wait_exit(TIMEOUT);
    let a2 = node(&url, &[]);
    let answer = poll(a2.addr, "/poll/kept?since=0");
    let expected: Vec<(u64, String, bool)> =
        (1..=10).map(|i| (i, format!("k{i}"), false)).collect();
    assert_eq!(answer.messages, expected);
    let mut stream = sse(a2.addr, "/sse/kept", &[("Last-Event-ID", "8")]);
    for id in 9..=10 {
        assert_eq!(stream.event().id, Some(id));
    }
}

/// A raw (no subprotocol) chat member's message is refused with 1013 while Redis is away.
fn assert_closed_1013(mut raw: Client) {
    raw.send(Message::text("into the void")).expect("send");
    let close = read_until_close(&mut raw).expect("a close frame");
    assert_eq!(u16::from(close.code), 1013, "{close:?}");
}

#[test]
fn while_redis_restarts_publishes_are_refused_visibly_and_history_survives_with_aof() {
    let mut redis = RedisServer::start(RedisOptions::aof());
    let url = redis.url();
    let (a, b) = (node(&url, &[]), node(&url, &[]));
    let mut member = ws(b.addr, "/ws/log?since=0", true);
    let raw = ws(a.addr, "/ws/log", false);
    wait_members(a.addr, "log", 2, 0);
    for i in 1..=5 {
        publish(a.addr, "log", &format!("l{i}"));
    }
    assert_eq!(envelopes(&mut member, 5).last().map(|m| m.0), Some(5));

    redis.stop();
    wait_get(a.addr, "/readyz", "readyz while Redis is away", |s, _| {
        s == 503
    });
    let refused = post(a.addr, "/publish/log", Some("text/plain"), b"lost?", &[]);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        body(&refused).starts_with("{\"error\":\"broker unavailable"),
        "{refused:?}"
    );
    member
        .send(Message::text(
            r#"{"type":"publish","channel":"log","data":"x","req":9}"#,
        ))
        .expect("send");
    let error = next_text(&mut member);
    assert!(
        error.starts_with("{\"type\":\"error\",\"code\":503,") && error.ends_with(",\"req\":9}"),
        "{error}"
    );
    assert_closed_1013(raw);

    redis.restart();
    wait_get(a.addr, "/readyz", "readyz once Redis is back", |s, _| {
        s == 200
    });
    wait_get(b.addr, "/readyz", "readyz once Redis is back", |s, _| {
        s == 200
    });
    assert_eq!(publish(a.addr, "log", "l6"), 6, "ids go on from the AOF");
    assert_eq!(next_text(&mut member), envelope("log", 6, "l6"));
    let answer = poll(b.addr, "/poll/log?since=0");
    let kept: Vec<u64> = answer.messages.iter().map(|m| m.0).collect();
    assert_eq!(kept, ids(1, 6));
}

#[test]
fn a_node_cut_from_redis_catches_up_in_order_when_it_is_back() {
    let redis = RedisServer::start(RedisOptions::default());
    let proxy = Proxy::start(redis.addr());
    let cut_url = format!("redis://{}", proxy.addr);
    let a = node(&cut_url, &[]);
    let b = node(&redis.url(), &[]);
    let mut member = ws(a.addr, "/ws/up?since=0", true);
    let mut stream = sse(a.addr, "/sse/up?since=0", &[]);
    wait_members(b.addr, "up", 1, 1);
    for i in 1..=3 {
        publish(b.addr, "up", &format!("u{i}"));
    }
    assert_eq!(envelopes(&mut member, 3).last().map(|m| m.0), Some(3));
    for id in 1..=3 {
        assert_eq!(stream.event().id, Some(id));
    }

    proxy.pause();
    wait_get(a.addr, "/readyz", "readyz of the cut node", |s, _| s == 503);
    let refused = post(a.addr, "/publish/up", Some("text/plain"), b"no", &[]);
    assert_eq!(refused.status, 503, "{refused:?}");
    for i in 4..=53 {
        assert_eq!(publish(b.addr, "up", &format!("u{i}")), i);
    }
    proxy.resume();
    wait_get(a.addr, "/readyz", "readyz of the node once back", |s, _| {
        s == 200
    });
    let caught = envelopes(&mut member, 50);
    assert_eq!(caught.iter().map(|m| m.0).collect::<Vec<_>>(), ids(4, 53));
    assert!(caught.iter().all(|(id, d)| *d == format!("u{id}")));
    for id in 4..=53 {
        let event = stream.event();
        assert_eq!((event.id, event.data), (Some(id), vec![format!("u{id}")]));
    }
    assert_eq!(publish(a.addr, "up", "u54"), 54);
    assert_eq!(next_text(&mut member), envelope("up", 54, "u54"));
    assert_eq!(stream.event().id, Some(54));
}

#[test]
fn an_unreachable_redis_at_start_exits_1_naming_the_url_without_its_password() {
    let port = free_port();
    let url = format!("redis://user:hunter2@127.0.0.1:{port}");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pushloop"));
    command.args(["--listen", "127.0.0.1:0", "--redis", &url]);
    let output = output_within(command, TIMEOUT * 2).expect("pushloop exits");
    let (status, stderr) = (output.status, String::from_utf8_lossy(&output.stderr));
    assert_eq!(status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("Redis"))
        .unwrap_or_else(|| panic!("no line names Redis: {stderr}"));
    assert!(
        line.starts_with(&format!(
            "pushloop: cannot reach Redis at redis://user:***@127.0.0.1:{port}: "
        )),
        "{line}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn presence_is_global_and_a_killed_node_leaves_it_within_60_s() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let b = node(&url, &[]);
    let mut a = node(&url, &["--workers", "2"]);
    let _m1 = ws(a.addr, "/ws/hall", false);
    let _m2 = ws(a.addr, "/ws/hall", false);
    let _s = sse(b.addr, "/sse/hall", &[]);
    wait_members(b.addr, "hall", 2, 1);
    wait_members(a.addr, "hall", 2, 1);
    let list = body(&get(b.addr, "/channels", &[])).to_owned();
    assert!(list.contains("\"channel\":\"hall\""), "{list}");
    a.signal("KILL");
    a.wait_exit(TIMEOUT);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let want = "\"websocket\":0,\"sse\":1,";
    loop {
        let now = body(&get(b.addr, "/channels/hall", &[])).to_owned();
        if now.contains(want) {
            break;
        }
        assert!(Instant::now() < deadline, "still {now} after 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("a killed node left presence after {:?}", started.elapsed());
}

#[test]
fn a_publish_answer_names_the_id_redis_gave_and_the_members_present() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let (a, b) = (node(&url, &[]), node(&url, &[]));
    let _m = ws(b.addr, "/ws/count", false);
    wait_members(a.addr, "count", 1, 0);
    let answer = post(a.addr, "/publish/count", Some("text/plain"), b"hi", &[]);
    assert_eq!(publish_id(&answer), 1);
    assert_eq!(body(&answer), "{\"id\":1,\"delivered\":1}");
    let polled = parse_poll(body(&get(a.addr, "/poll/count?since=0", &[])));
    assert_eq!(polled.next, 1);
}

#[test]
fn metrics_show_the_broker_state_and_count_redis_round_trips() {
    let mut redis = RedisServer::start(RedisOptions::default());
    let a = node(&redis.url(), &[]);
    let _member = ws(a.addr, "/ws/m?since=0", false);
    wait_members(a.addr, "m", 1, 0);
    let before = scrape(a.addr, &[]);
    assert_eq!(before.get("pushloop_broker_up{}"), 1.0);
    for i in 0..20 {
        publish(a.addr, "m", &format!("n{i}"));
    }
    let after = scrape(a.addr, &[]);
    let d = |key: &str| after.delta(&before, key);
    assert_eq!(d("pushloop_broker_notes_total{direction=\"sent\"}"), 20.0);
    assert_eq!(
        d("pushloop_broker_notes_total{direction=\"received\"}"),
        20.0
    );
    let (trips, commands) = (
        d("pushloop_broker_round_trips_total{}"),
        d("pushloop_broker_commands_total{}"),
    );
    assert!(commands >= 20.0, "{commands} commands for 20 publishes");
    assert!(trips >= 1.0 && trips <= commands, "{trips} round trips");
    redis.stop();
    wait_get(a.addr, "/readyz", "readyz while Redis is away", |s, _| {
        s == 503
    });
    assert_eq!(scrape(a.addr, &[]).get("pushloop_broker_up{}"), 0.0);
    redis.restart();
    wait_get(a.addr, "/readyz", "readyz once Redis is back", |s, _| {
        s == 200
    });
    assert_eq!(scrape(a.addr, &[]).get("pushloop_broker_up{}"), 1.0);
}

/// The next block of a multi-channel stream with data: its `id:` and `data:` lines
/// (id-only blocks move the id along).
fn stream_event(stream: &mut common::push::Sse, id: &mut String) -> String {
    for _ in 0..100 {
        let block = stream.block();
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                *id = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(v.to_owned());
            }
        }
        if let Some(data) = data {
            return data;
        }
    }
    panic!("no event in 100 blocks");
}

#[test]
fn one_sse_stream_of_several_channels_resumes_every_channel_on_another_node() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let (a, b, c) = (node(&url, &[]), node(&url, &[]), node(&url, &[]));
    let mut stream = sse(a.addr, "/sse?channel=x&channel=y", &[]);
    wait_members(c.addr, "y", 0, 1);
    publish(c.addr, "x", "x1");
    publish(c.addr, "y", "y1");
    let mut id = String::new();
    assert_eq!(stream_event(&mut stream, &mut id), envelope("x", 1, "x1"));
    assert_eq!(stream_event(&mut stream, &mut id), envelope("y", 1, "y1"));
    assert_eq!(id, "x=1,y=1");
    drop(stream);
    for i in 2..=4 {
        publish(c.addr, "x", &format!("x{i}"));
        publish(c.addr, "y", &format!("y{i}"));
    }
    let mut again = sse(
        b.addr,
        "/sse?channel=x&channel=y",
        &[("Last-Event-ID", &id)],
    );
    let got: Vec<String> = (0..6).map(|_| stream_event(&mut again, &mut id)).collect();
    for ch in ["x", "y"] {
        let of: Vec<&String> = got
            .iter()
            .filter(|d| d.contains(&format!("\"channel\":\"{ch}\"")))
            .collect();
        let want: Vec<String> = (2..=4)
            .map(|i| envelope(ch, i, &format!("{ch}{i}")))
            .collect();
        assert_eq!(of, want.iter().collect::<Vec<_>>(), "channel {ch}");
    }
    assert_eq!(id, "x=4,y=4");
}

#[test]
fn a_subscription_without_since_starts_where_its_answer_says() {
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let (a, b) = (node(&url, &[]), node(&url, &[]));
    for i in 1..=5 {
        publish(a.addr, "t", &format!("t{i}"));
    }
    let mut member = ws(b.addr, "/v1", true);
    member
        .send(Message::text(
            r#"{"type":"subscribe","channel":"t","req":1}"#,
        ))
        .expect("send");
    let answer = next_text(&mut member);
    let last: u64 = answer
        .split_once("\"last_id\":")
        .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(answer.contains("\"type\":\"subscribed\""), "{answer}");
    assert!(last <= 5, "{answer}");
    assert_eq!(publish(a.addr, "t", "t6"), 6);
    // Exactly what followed the answer's last id: nothing skipped, nothing older.
    let got = envelopes(&mut member, (6 - last) as usize);
    assert_eq!(
        got.iter().map(|m| m.0).collect::<Vec<_>>(),
        ids(last + 1, 6)
    );
}

#[test]
fn a_stalled_redis_is_given_up_and_the_waiting_publishers_are_told() {
    let redis = RedisServer::start(RedisOptions::default());
    let a = node(&redis.url(), &[]);
    let mut member = ws(a.addr, "/ws/stall?since=0", true);
    wait_members(a.addr, "stall", 1, 0);
    redis.pause();
    let asked = Instant::now();
    member
        .send(Message::text(
            r#"{"type":"publish","channel":"stall","data":"x","req":4}"#,
        ))
        .expect("send");
    // Redis accepts the bytes and answers nothing: after 5 s without a word the node
    // gives the connection up and the sender learns its message was not published.
    let error = next_text_within(&mut member, Duration::from_secs(15));
    assert_eq!(
        error,
        "{\"type\":\"error\",\"code\":504,\"message\":\"broker lost before it answered: \
         the message may have been published\",\"req\":4}"
    );
    assert!(
        asked.elapsed() >= Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    wait_get(
        a.addr,
        "/readyz",
        "readyz while Redis is stalled",
        |s, _| s == 503,
    );
    redis.resume();
    wait_get(a.addr, "/readyz", "readyz once Redis answers", |s, _| {
        s == 200
    });
    // Redis read the command once it went on: it was published after all, and the
    // members (its sender too, as the node cannot tell it from a catch-up) get it.
    let id = publish(a.addr, "stall", "after");
    let polled = poll(a.addr, "/poll/stall?since=0");
    let expected: Vec<(u64, String, bool)> = match id {
        1 => vec![(1, "after".into(), false)],
        2 => vec![(1, "x".into(), false), (2, "after".into(), false)],
        other => panic!("id {other}"),
    };
    assert_eq!(polled.messages, expected);
    let mut got = Vec::new();
    for _ in 0..id {
        got.push(next_text(&mut member));
    }
    assert_eq!(got.last(), Some(&envelope("stall", id, "after")));
}

/// The next text message, waiting up to `limit` (longer than [`TIMEOUT`]).
fn next_text_within(client: &mut Client, limit: Duration) -> String {
    client
        .get_mut()
        .set_read_timeout(Some(limit))
        .expect("set the timeout");
    let text = next_text(client);
    client
        .get_mut()
        .set_read_timeout(Some(TIMEOUT))
        .expect("set the timeout");
    text
}

/// A user's connections on every node: a WebSocket on A, an SSE stream on B (2
/// workers), a held long poll on C; and another user's WebSocket on C.
#[test]
fn users_are_named_and_disconnected_on_every_node() {
    use common::auth::{assert_refused, mint, SECRET};
    use std::io::{Read, Write};
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let jwt = ["--jwt-secret", SECRET];
    let a = node(&url, &jwt);
    let b = node(&url, &[&jwt[..], &["--workers", "2"]].concat());
    let c = node(&url, &jwt);
    let (alice, bob) = (mint(json!({"sub":"alice"})), mint(json!({"sub":"bob"})));
    let mut alice_ws = ws(a.addr, &format!("/ws/news?token={alice}"), false);
    let mut alice_sse = sse(b.addr, &format!("/sse/news?token={alice}"), &[]);
    let mut alice_poll = common::tcp(c.addr);
    let poll_request = request("GET", &format!("/poll/news?token={alice}"), &[], b"");
    alice_poll.write_all(&poll_request).expect("send the poll");
    let mut bob_ws = ws(c.addr, &format!("/ws/news?token={bob}"), true);
    // Every member is counted in the global presence: the poll is held on C.
    wait_get(a.addr, "/channels/news", "presence", |_, b| {
        b.contains("\"websocket\":2,\"sse\":1,\"long_poll\":1")
    });

    // Who is in the channel, asked of any node, names the users of every node.
    let users = json!({"channel":"news","anonymous":0,"users":[
        {"user":"alice","connections":3},{"user":"bob","connections":1}]});
    for node in [&a, &b, &c] {
        let answer = get(node.addr, "/channels/news/presence", &[]);
        assert_eq!(answer.status, 200, "{answer:?}");
        let got: serde_json::Value = serde_json::from_str(body(&answer)).expect("JSON");
        assert_eq!(got, users);
    }

    let answer = post(c.addr, "/disconnect/user/alice", None, b"", &[]);
    assert_eq!(
        (answer.status, body(&answer)),
        (200, "{\"disconnected\":3}"),
        "{answer:?}"
    );
    assert_refused(&read_response(&mut alice_poll), 403, "disconnected");
    let close = read_until_close(&mut alice_ws).expect("a Close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4003, "disconnected")
    );
    let mut chunk = [0u8; 4096];
    let ended = (0..1000).any(|_| matches!(alice_sse.stream.read(&mut chunk), Ok(0)));
    assert!(ended, "alice's SSE stream on B did not end");
    // Bob is still there, on every node's count, and gets the next message.
    wait_members(b.addr, "news", 1, 0);
    assert_eq!(publish(a.addr, "news", "for bob"), 1);
    assert_eq!(next_text(&mut bob_ws), envelope("news", 1, "for bob"));
    // Nobody left to disconnect: every node answers 0.
    let again = post(a.addr, "/disconnect/user/alice", None, b"", &[]);
    assert_eq!((again.status, body(&again)), (200, "{\"disconnected\":0}"));
}

#[test]
fn user_commands_while_redis_is_away_are_refused_with_503_and_work_once_it_is_back() {
    let mut redis = RedisServer::start(RedisOptions::default());
    let a = node(&redis.url(), &["--jwt-secret", common::auth::SECRET]);
    redis.stop();
    wait_get(a.addr, "/readyz", "readyz while Redis is away", |s, _| {
        s == 503
    });
    let refused = post(a.addr, "/disconnect/user/alice", None, b"", &[]);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(
        body(&refused),
        "{\"error\":\"broker unavailable: nobody was disconnected, try again later\"}"
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    let refused = get(a.addr, "/channels/news/presence", &[]);
    assert_eq!(
        (refused.status, body(&refused)),
        (
            503,
            "{\"error\":\"broker unavailable: presence of other nodes unknown, try again later\"}"
        )
    );
    // Back: the new connection listens to the commands again (its own included).
    redis.restart();
    wait_get(a.addr, "/readyz", "readyz once Redis is back", |s, _| {
        s == 200
    });
    let answer = post(a.addr, "/disconnect/user/alice", None, b"", &[]);
    assert_eq!(
        (answer.status, body(&answer)),
        (200, "{\"disconnected\":0}")
    );
    let answer = get(a.addr, "/channels/news/presence", &[]);
    let users: serde_json::Value = serde_json::from_str(body(&answer)).expect("JSON");
    assert_eq!(users, json!({"channel":"news","users":[],"anonymous":0}));
}

/// A program embedding pushloop names its clients' users itself (here from the path).
struct NamedByPath;

impl pushloop::Handler for NamedByPath {
    fn on_open(
        &mut self,
        ctx: &mut pushloop::Context<'_>,
        id: pushloop::ConnId,
        req: &pushloop::Request<'_>,
    ) -> Result<(), pushloop::Refusal> {
        let user = req.path().trim_start_matches('/').to_owned();
        let identity = pushloop::Identity {
            user: Some(user),
            ..pushloop::Identity::default()
        };
        ctx.set_identity(id, identity);
        Ok(())
    }

    fn on_message(
        &mut self,
        _: &mut pushloop::Context<'_>,
        _: pushloop::ConnId,
        _: pushloop::Message<'_>,
    ) {
    }
}

#[test]
fn a_handle_disconnects_a_user_on_every_node() {
    use common::auth::{mint, SECRET};
    let redis = RedisServer::start(RedisOptions::default());
    let url = redis.url();
    let config = pushloop::Config::default()
        .redis(&url)
        .shutdown_timeout(Duration::from_secs(1));
    let server = pushloop::Server::bind_with("127.0.0.1:0", config).expect("bind");
    let (addr, handle) = (server.local_addr(), server.handle());
    let runner = std::thread::spawn(move || server.run(NamedByPath));
    let other = node(&url, &["--jwt-secret", SECRET]);
    let alice = mint(json!({"sub":"alice"}));
    let mut on_node = ws(other.addr, &format!("/ws/news?token={alice}"), false);
    let mut embedded = ws(addr, "/alice", false);
    let mut bob = ws(addr, "/bob", false);

    let closed = handle.disconnect_user("alice").wait_timeout(TIMEOUT * 2);
    assert_eq!(closed, Some(Ok(2)));
    for client in [&mut on_node, &mut embedded] {
        let close = read_until_close(client).expect("a Close frame");
        assert_eq!(
            (u16::from(close.code), close.reason.as_str()),
            (4003, "disconnected")
        );
    }
    // Bob's connection is open: it still answers a ping.
    bob.send(Message::Ping(vec![7].into())).expect("ping");
    let pong = bob.read().expect("an answer to the ping");
    assert_eq!(pong, Message::Pong(vec![7].into()));

    handle.stop().expect("stop");
    runner.join().expect("the server thread").expect("run");
}
