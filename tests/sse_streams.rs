//! One Server-Sent Events stream of several channels (`GET /sse?channel=a&channel=b`),
//! against the real binary with one worker and with two: every event names its channel
//! (a `pushloop.v1` envelope) and carries the stream's position in every channel as its
//! id (`a=5,b=7`); a reconnect with the last id it saw (`Last-Event-ID`, or `?since=`)
//! gets exactly what each channel missed, a `gap` per channel whose history lost some;
//! every channel passes the token checks of `/sse/<channel>`.

#[macro_use]
mod common;

use common::auth::*;
use common::push::*;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The channels of the streams below, in the order their URLs name them.
const CHANNELS: [&str; 3] = ["a", "b", "c"];

/// The stream of `a`, `b` and `c`.
const PATH: &str = "/sse?channel=a&channel=b&channel=c";

/// One event with data: its `event:` type (`message` unless named), its id if it had
/// one, and its data as JSON.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    kind: String,
    id: Option<String>,
    data: Value,
}

/// A stream of several channels as a browser sees it: the events, and the last event id
/// (from any block with an `id:` field, as EventSource keeps it, data or not).
struct Stream {
    sse: Sse,
    last_id: String,
    /// The stream's positions as its ids told them.
    positions: BTreeMap<String, u64>,
    /// The channels its URL names, in order.
    order: Vec<String>,
}

impl Stream {
    /// Opens `path` with `headers`; it must be accepted (the `retry:` block is read).
    fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Stream {
        let (head, mut sse) = sse_connect(addr, path, headers);
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        assert_eq!(sse.block(), "retry: 2000");
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let order = query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("channel="))
            .map(str::to_owned)
            .collect();
        Stream {
            sse,
            last_id: String::new(),
            positions: BTreeMap::new(),
            order,
        }
    }

    /// The next event with data; id-only blocks and comments only move `last_id`.
    fn event(&mut self) -> Event {
        for _ in 0..1000 {
            let block = self.sse.block();
            let (mut kind, mut id, mut data) = ("message".to_owned(), None, Vec::new());
            for line in block.split('\n') {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => kind = value.to_owned(),
                    "data" => data.push(value.to_owned()),
                    other => panic!("unexpected field {other:?} in {block:?}"),
                }
            }
            assert!(data.len() <= 1, "one data line per event: {block:?}");
            if let Some(id) = &id {
                self.last_id.clone_from(id);
                self.positions = parse_id(id);
            }
            if let Some(data) = data.first() {
                let data = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {block}"));
                return Event { kind, id, data };
            }
        }
        panic!("1,000 blocks without data");
    }

    /// Positions the stream starts from (what its `Last-Event-ID` or `since` said).
    fn from(mut self, id: &str) -> Stream {
        self.positions = parse_id(id);
        self
    }

    /// The next `count` events, checked against the stream's own bookkeeping: a
    /// message's id names the channels in the URL's order, puts its own channel at its
    /// id, and keeps every other channel where the stream's last id had it (a channel
    /// may appear once its position is known); a gap has no id.
    fn events(&mut self, count: usize) -> Vec<Event> {
        (0..count)
            .map(|_| {
                let before = self.positions.clone();
                let event = self.event();
                match event.kind.as_str() {
                    "message" => {
                        let channel = event.data["channel"].as_str().unwrap().to_owned();
                        let id = event.id.as_deref().expect("a message has an id");
                        let now = parse_id(id);
                        assert_eq!(format_id(&self.order, &now), id, "the URL's order");
                        assert_eq!(now.get(&channel), event.data["id"].as_u64().as_ref());
                        for (other, at) in before.iter().filter(|(c, _)| **c != channel) {
                            assert_eq!(now.get(other), Some(at), "{other} moved: {id}");
                        }
                    }
                    "gap" => assert_eq!(event.id, None, "{event:?}"),
                    other => panic!("unexpected event type {other:?}"),
                }
                event
            })
            .collect()
    }
}

/// `a=1,b=2` as a map (the test's own reading of the format).
fn parse_id(id: &str) -> BTreeMap<String, u64> {
    id.split(',')
        .map(|pair| {
            let (channel, at) = pair.split_once('=').expect("channel=id");
            (channel.to_owned(), at.parse().expect("a decimal id"))
        })
        .collect()
}

/// A map of positions as an id, in `order`.
fn format_id(order: &[String], positions: &BTreeMap<String, u64>) -> String {
    order
        .iter()
        .filter_map(|c| Some(format!("{c}={}", positions.get(c)?)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The envelope of a text message.
fn message(channel: &str, id: u64, data: &str) -> Value {
    json!({"type":"message","channel":channel,"id":id,"data":data})
}

/// The events of `events` of one channel, as `(kind, data)`, in order.
fn of_channel(events: &[Event], channel: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.data["channel"] == channel)
        .map(|e| e.data.clone())
        .collect()
}

/// Publishes `text` to `channel` and asserts the id it got.
fn publish_as(addr: SocketAddr, channel: &str, text: &str, id: u64) {
    assert_eq!(publish(addr, channel, text), id, "{channel} {text}");
}

/// Publishes a last message (`end`, with the id `next` says) to each channel and reads
/// until every one came: the events before them, per channel, are then all the stream
/// had to send (no duplicate, nothing missing), whatever order the workers interleave
/// channels in.
fn read_through_markers(stream: &mut Stream, addr: SocketAddr, next: [u64; 3]) -> Vec<Event> {
    let mut markers: Vec<Value> = Vec::new();
    for (channel, id) in CHANNELS.iter().zip(next) {
        publish_as(addr, channel, "end", id);
        markers.push(message(channel, id, "end"));
    }
    let mut events = Vec::new();
    while !markers.is_empty() {
        assert!(events.len() < 100, "the ends did not all come: {events:?}");
        let event = stream.events(1).remove(0);
        markers.retain(|m| *m != event.data);
        events.push(event);
    }
    events
}

fn resumes_every_channel_of_the_stream(w: Workers) {
    let server = w.start(&[]);
    let addr = server.addr;
    publish_as(addr, "c", "before", 1);
    let mut stream = Stream::open(addr, PATH, &[]);
    publish_as(addr, "a", "a1", 1);
    publish_as(addr, "b", "b1", 1);
    publish_as(addr, "c", "c2", 2);
    publish_as(addr, "a", "a2", 2);
    let seen = stream.events(4);
    assert_eq!(
        seen.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        [
            message("a", 1, "a1"),
            message("b", 1, "b1"),
            message("c", 2, "c2"),
            message("a", 2, "a2"),
        ]
    );
    assert_eq!(seen.last().unwrap().id.as_deref(), Some("a=2,b=1,c=2"));
    assert_eq!(stream.last_id, "a=2,b=1,c=2");
    let last_id = stream.last_id.clone();
    drop(stream);

    // Away: more in every channel.
    for (channel, text, id) in [
        ("a", "a3", 3),
        ("c", "c3", 3),
        ("a", "a4", 4),
        ("b", "b2", 2),
        ("c", "c4", 4),
    ] {
        publish_as(addr, channel, text, id);
    }
    let missed = |next: [u64; 3]| {
        [
            ("a", vec![message("a", 3, "a3"), message("a", 4, "a4")]),
            ("b", vec![message("b", 2, "b2")]),
            ("c", vec![message("c", 3, "c3"), message("c", 4, "c4")]),
        ]
        .into_iter()
        .zip(next)
        .map(|((channel, mut list), end)| {
            list.push(message(channel, end, "end"));
            (channel, list)
        })
        .collect::<Vec<_>>()
    };

    // Back with the browser's Last-Event-ID: exactly the missed ones, per channel.
    let mut back = Stream::open(addr, PATH, &[("Last-Event-ID", &last_id)]).from(&last_id);
    let events = read_through_markers(&mut back, addr, [5, 3, 5]);
    for (channel, want) in missed([5, 3, 5]) {
        assert_eq!(of_channel(&events, channel), want, "{channel}: {events:?}");
    }
    assert_eq!(back.last_id, "a=5,b=3,c=5");
    if w.0 == 1 {
        // One worker replays the channels in the stream's order.
        let replayed: Vec<_> = events[..5].iter().map(|e| e.data.clone()).collect();
        assert_eq!(
            replayed,
            [
                message("a", 3, "a3"),
                message("a", 4, "a4"),
                message("b", 2, "b2"),
                message("c", 3, "c3"),
                message("c", 4, "c4"),
            ]
        );
    }
    drop(back);

    // `?since=` in the same format resumes the same way (percent-encoded, as
    // URLSearchParams sends it); channels it does not name start from now.
    let path = format!("{PATH}&since=a%3D4%2Cc%3D3");
    let mut since = Stream::open(addr, &path, &[]).from("a=4,c=3");
    let events = read_through_markers(&mut since, addr, [6, 4, 6]);
    assert_eq!(
        of_channel(&events, "a"),
        [message("a", 5, "end"), message("a", 6, "end")]
    );
    assert_eq!(of_channel(&events, "b"), [message("b", 4, "end")]);
    assert_eq!(
        of_channel(&events, "c"),
        [
            message("c", 4, "c4"),
            message("c", 5, "end"),
            message("c", 6, "end")
        ]
    );
}

fn tells_a_gap_per_channel(w: Workers) {
    let server = w.start(&["--history", "2"]);
    let addr = server.addr;
    for id in 1..=5 {
        publish_as(addr, "a", &format!("a{id}"), id);
    }
    publish_as(addr, "b", "b1", 1);
    let mut stream =
        Stream::open(addr, PATH, &[("Last-Event-ID", "a=1,b=0,c=0")]).from("a=1,b=0,c=0");
    let events = read_through_markers(&mut stream, addr, [6, 2, 1]);
    let a: Vec<_> = events
        .iter()
        .filter(|e| e.data["channel"] == "a")
        .map(|e| (e.kind.as_str(), e.data.clone()))
        .collect();
    assert_eq!(
        a,
        [
            (
                "gap",
                json!({"type":"gap","channel":"a","since":1,"last_id":5})
            ),
            ("message", message("a", 4, "a4")),
            ("message", message("a", 5, "a5")),
            ("message", message("a", 6, "end")),
        ]
    );
    assert_eq!(
        of_channel(&events, "b"),
        [message("b", 1, "b1"), message("b", 2, "end")]
    );
    assert_eq!(of_channel(&events, "c"), [message("c", 1, "end")]);
    assert_eq!(stream.last_id, "a=6,b=2,c=1");
}

fn every_channel_passes_the_token_checks(w: Workers) {
    let server = w.start(&["--jwt-secret", SECRET]);
    let addr = server.addr;
    let alice = mint(json!({"sub":"alice","channels":["private:team"]}));
    let granted =
        format!("/sse?channel=news&channel=private:team&channel=user:alice&token={alice}");
    let mut stream = Stream::open(addr, &granted, &[]);
    let refused = [
        (
            "/sse?channel=news&channel=private:team".to_owned(),
            401,
            "a token is needed for this channel",
        ),
        (
            format!("/sse?channel=news&channel=private:other&channel=private:team&token={alice}"),
            403,
            "the token does not grant this channel",
        ),
        (
            format!("/sse?channel=news&channel=user:bob&token={alice}"),
            403,
            "the personal channel of another user",
        ),
        (
            "/sse?channel=news&token=not.a.token".to_owned(),
            401,
            "malformed token",
        ),
    ];
    for (path, status, error) in refused {
        assert_refused(&get(addr, &path, &[]), status, error);
    }
    // The refused ones joined nothing: the granted stream is the only member.
    wait_presence(addr, "private:team", &presence("private:team", 0, 1, 0, 0));
    publish_as(addr, "private:team", "secret", 1);
    publish_as(addr, "user:alice", "yours", 1);
    let events = stream.events(2);
    assert_eq!(
        events.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        [
            message("private:team", 1, "secret"),
            message("user:alice", 1, "yours")
        ]
    );
}

#[test]
fn bad_requests_get_400() {
    let server = Workers(1).start(&[]);
    let addr = server.addr;
    for (path, headers, text) in [
        (
            "/sse",
            vec![],
            "name the channels: /sse?channel=a&channel=b\n",
        ),
        (
            "/sse?channel=a&channel=b%20c",
            vec![],
            "channel names are 1-128 of A-Z a-z 0-9 _ . : -\n",
        ),
        (
            "/sse?channel=a",
            vec![("Last-Event-ID", "7")],
            "Last-Event-ID and since are stream ids: a=5,b=7\n",
        ),
        (
            "/sse?channel=a&since=a:5",
            vec![],
            "Last-Event-ID and since are stream ids: a=5,b=7\n",
        ),
    ] {
        let response = get(addr, path, &headers);
        assert_eq!((response.status, body(&response)), (400, text), "{path}");
    }
    let many: String = (0..33).map(|i| format!("channel=c{i}&")).collect();
    let response = get(addr, &format!("/sse?{many}"), &[]);
    assert_eq!(
        (response.status, body(&response)),
        (400, "at most 32 channels per stream\n")
    );
    // A channel named twice is one subscription.
    let mut stream = Stream::open(addr, "/sse?channel=a&channel=a&channel=b", &[]);
    wait_presence(addr, "a", &presence("a", 0, 1, 0, 0));
    publish_as(addr, "a", "once", 1);
    let event = stream.event();
    assert_eq!(event.data, message("a", 1, "once"));
    assert_eq!(event.id.as_deref(), Some("a=1,b=0"));
}

#[test]
fn the_single_channel_stream_is_unchanged() {
    let server = Workers(1).start(&[]);
    let addr = server.addr;
    publish_as(addr, "a", "one", 1);
    let (head, mut sse) = sse_connect(addr, "/sse/a", &[("Last-Event-ID", "0")]);
    assert_eq!(head.status, 200);
    assert_eq!(sse.block(), "retry: 2000");
    assert_eq!(sse.block(), "id: 1\ndata: one");
    publish_as(addr, "a", "two\nlines", 2);
    assert_eq!(sse.block(), "id: 2\ndata: two\ndata: lines");
}

with_one_and_two_workers!(
    resumes_every_channel_of_the_stream,
    tells_a_gap_per_channel,
    every_channel_passes_the_token_checks,
);
