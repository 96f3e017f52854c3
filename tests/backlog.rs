//! Slow consumers: the backlog policies at `max_backlog`, control frames ahead of queued
//! data, drop counters, and the backlog notifications.
//!
//! A burst is published from inside one callback, so the whole burst is queued before
//! the loop writes anything: what each policy keeps is exact, not a race with the
//! kernel's buffers. With 1,024-byte frames, a 128 KiB limit and the 64 KiB congestion
//! point, messages 0..=63 coalesce (always sent), 64.. are droppable, and message 129
//! is the first to find the queue over the limit.

mod common;

use common::*;
use pushloop::{Backlog, Config, Message as Msg, Policy};
use pushloop_wire::OpCode;
use std::io::Write;
use tungstenite::Message;

/// Payload bytes per burst message: with its 4-byte header, a 1,024-byte frame.
const SIZE: usize = 1020;

/// Messages per burst.
const BURST: u32 = 300;

/// Handles the test's text commands; anything else is ignored.
///
/// - `join CH`: join channel CH, answer `joined`
/// - `burst CH N SIZE`: publish N numbered messages of SIZE bytes to CH
/// - `broadcast N SIZE`: broadcast N numbered messages to everyone else
/// - `stats`: answer `stats DROPPED_ON_ME DROPPED_TOTAL OVERFLOWS`
fn commands() -> OnMessage {
    Box::new(|ctx, id, msg| {
        let Msg::Text(text) = msg else { return };
        let words: Vec<&str> = text.split(' ').collect();
        match words[..] {
            ["join", channel] => {
                assert_eq!(ctx.join(id, channel), Ok(()));
                ctx.send(id, "joined");
            }
            ["burst", channel, n, size] => {
                for i in 0..n.parse().unwrap() {
                    ctx.publish(channel, numbered(i, size.parse().unwrap()).as_str());
                }
            }
            ["broadcast", n, size] => {
                for i in 0..n.parse().unwrap() {
                    ctx.broadcast_except(id, numbered(i, size.parse().unwrap()).as_str());
                }
            }
            ["stats"] => {
                let mine = ctx.dropped_on(id).unwrap();
                let stats = format!("stats {mine} {} {}", ctx.dropped(), ctx.overflows());
                ctx.send(id, stats.as_str());
            }
            _ => {}
        }
    })
}

/// Message `i`: its number in 8 digits, padded with dots to `size` bytes.
fn numbered(i: u32, size: usize) -> String {
    format!("{i:08}{}", ".".repeat(size - 8))
}

/// A server with a 128 KiB backlog and `config` applied.
fn server(config: impl FnOnce(Config) -> Config) -> TestServer {
    TestServer::start(config(test_config().max_backlog(128 << 10)), commands())
}

/// A client that joined `channels`.
fn member(server: &TestServer, channels: &[&str]) -> Client {
    let (mut client, _) = connect(server.addr, "/ws");
    for channel in channels {
        client
            .send(Message::text(format!("join {channel}")))
            .unwrap();
        assert_eq!(recv(&mut client), Message::text("joined"));
    }
    client
}

/// Sends `command` from a separate control client.
fn command(server: &TestServer, command: &str) {
    let (mut control, _) = connect(server.addr, "/ws");
    control.send(Message::text(command)).unwrap();
    control.send(Message::text("stats")).unwrap(); // answered after the command ran
    assert!(recv(&mut control).to_text().unwrap().starts_with("stats "));
}

/// What a member got: the numbers of the burst messages in arrival order, then either
/// its `stats` answer (dropped on it, total dropped, overflows) or the close code.
fn received(client: &mut Client) -> (Vec<u32>, Result<[u64; 3], u16>) {
    client.send(Message::text("stats")).unwrap();
    let mut seqs = Vec::new();
    for _ in 0..2 * BURST {
        match recv(client) {
            Message::Text(text) if text.starts_with("stats ") => {
                let n: Vec<u64> = text[6..].split(' ').map(|w| w.parse().unwrap()).collect();
                return (seqs, Ok([n[0], n[1], n[2]]));
            }
            Message::Text(text) => seqs.push(text[..8].parse().unwrap()),
            Message::Close(frame) => return (seqs, Err(frame.unwrap().code.into())),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no end after {} messages", seqs.len());
}

fn range(r: std::ops::RangeInclusive<u32>) -> Vec<u32> {
    r.collect()
}

#[test]
fn drop_newest_keeps_the_queue_and_drops_what_finds_it_full() {
    let server = server(|c| c.backlog_policy(Policy::DropNewest));
    let mut client = member(&server, &["t"]);
    command(&server, &format!("burst t {BURST} {SIZE}"));
    let (seqs, stats) = received(&mut client);
    assert_eq!(seqs, range(0..=128));
    assert_eq!(stats, Ok([171, 171, 0]));
    assert_echo_still(&server);
}

#[test]
fn drop_oldest_makes_room_for_the_newest() {
    let server = server(|c| c.backlog_policy(Policy::DropOldest));
    let mut client = member(&server, &["t"]);
    command(&server, &format!("burst t {BURST} {SIZE}"));
    let (seqs, stats) = received(&mut client);
    let mut expected = range(0..=63);
    expected.extend(235..BURST);
    assert_eq!(seqs, expected);
    assert_eq!(stats, Ok([171, 171, 0]));
}

#[test]
fn latest_conflates_to_the_newest_message_once_the_reader_is_behind() {
    let server = server(|c| c.backlog_policy(Policy::Latest));
    let mut client = member(&server, &["t"]);
    command(&server, &format!("burst t {BURST} {SIZE}"));
    let (seqs, stats) = received(&mut client);
    let mut expected = range(0..=63);
    expected.push(BURST - 1);
    assert_eq!(seqs, expected);
    assert_eq!(stats, Ok([235, 235, 0]));
}

#[test]
fn close_policy_sends_1008_ahead_of_the_queued_messages() {
    let mut server = server(|c| c.backlog_policy(Policy::Close));
    let mut client = member(&server, &["t"]);
    let id = server.id_of(&client);
    command(&server, &format!("burst t {BURST} {SIZE}"));
    let (seqs, end) = received(&mut client);
    assert_eq!(seqs, range(0..=63), "the coalesced prefix, then the Close");
    assert_eq!(end, Err(1008));
    assert_eq!(server.wait_close(id).0, 1008);
    assert_echo_still(&server);
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

#[test]
fn channel_policies_override_the_default() {
    let mut server = server(|c| {
        c.backlog_policy(Policy::Close)
            .channel_policy("tick.*", Policy::Latest)
    });
    let mut client = member(&server, &["tick.eur", "news"]);
    let id = server.id_of(&client);
    command(&server, &format!("burst tick.eur {BURST} {SIZE}"));
    let (seqs, stats) = received(&mut client);
    assert_eq!(
        seqs.last(),
        Some(&(BURST - 1)),
        "latest keeps the client open"
    );
    assert_eq!(stats.unwrap()[2], 0, "no overflow");
    command(&server, &format!("burst news {BURST} {SIZE}"));
    assert_eq!(received(&mut client).1, Err(1008), "news has the default");
    assert_eq!(server.wait_close(id).0, 1008);
}

#[test]
fn broadcasts_follow_the_default_policy() {
    let server = server(|c| c.backlog_policy(Policy::DropNewest));
    let mut client = member(&server, &[]);
    command(&server, &format!("broadcast {BURST} {SIZE}"));
    let (seqs, stats) = received(&mut client);
    assert_eq!(seqs, range(0..=128));
    assert_eq!(stats.unwrap()[0], 171);
}

#[test]
fn pong_goes_ahead_of_queued_messages() {
    let server = server(|c| c.backlog_policy(Policy::DropNewest));
    let mut raw = raw_upgrade(server.addr, "/ws");
    send_frame(&mut raw, true, OpCode::Text, b"join t");
    assert_eq!(read_frame(&mut raw).payload, b"joined");
    // The burst and a ping in one write: both are handled in one loop turn, so the pong
    // is queued while the burst is.
    let mut bytes = masked(
        true,
        OpCode::Text,
        format!("burst t {BURST} {SIZE}").as_bytes(),
    );
    bytes.extend(masked(true, OpCode::Ping, b"are you there"));
    raw.write_all(&bytes).unwrap();
    let mut before_pong = 0;
    loop {
        let frame = read_frame(&mut raw);
        match frame.opcode {
            OpCode::Text => before_pong += 1,
            OpCode::Pong => break assert_eq!(frame.payload, b"are you there"),
            other => panic!("unexpected opcode {other:?}"),
        }
        assert!(before_pong <= 129, "no pong");
    }
    assert_eq!(
        before_pong, 64,
        "only the coalesced prefix went before the pong"
    );
    let rest = (0..65).map(|_| read_frame(&mut raw).payload[..8].to_vec());
    let rest: Vec<u32> = rest
        .map(|p| String::from_utf8(p).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rest, range(64..=128), "then the queued messages, in order");
}

#[test]
fn backlog_high_and_drained_reach_the_handler() {
    let mut server = TestServer::start(
        test_config()
            .max_backlog(16 << 20)
            .backlog_policy(Policy::DropNewest),
        commands(),
    );
    // A reader with a small receive buffer (set before connecting, so the kernel does
    // not grow it); the server's send buffer may still grow to 4 MiB (tcp_wmem), far
    // less than half of the 16 MiB queue.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let url = format!("ws://{}/ws", server.addr);
    let (mut client, _) = tungstenite::client::client(url.as_str(), stream).unwrap();
    client.send(Message::text("join t")).unwrap();
    assert_eq!(recv(&mut client), Message::text("joined"));
    let id = server.id_of(&client);
    command(&server, &format!("burst t 20480 {SIZE}"));
    let high = server.wait_for(
        "backlog high",
        |e| matches!(e, Event::Backlog { id: i, .. } if *i == id),
    );
    let Event::Backlog {
        backlog: Backlog::High(queued),
        ..
    } = high
    else {
        panic!("expected High first, got {high:?}");
    };
    assert!(
        queued > 8 << 20,
        "{queued} bytes is not over half the limit"
    );
    let (seqs, _) = received_many(&mut client, 20480);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    server.wait_for(
        "drained",
        |e| matches!(e, Event::Backlog { id: i, backlog: Backlog::Drained } if *i == id),
    );
}

/// Like [`received`] for bursts of up to `n` messages.
fn received_many(client: &mut Client, n: u32) -> (Vec<u32>, [u64; 3]) {
    client.send(Message::text("stats")).unwrap();
    let mut seqs = Vec::new();
    for _ in 0..=n {
        match recv(client) {
            Message::Text(text) if text.starts_with("stats ") => {
                let v: Vec<u64> = text[6..].split(' ').map(|w| w.parse().unwrap()).collect();
                return (seqs, [v[0], v[1], v[2]]);
            }
            Message::Text(text) => seqs.push(text[..8].parse().unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no stats after {n} messages");
}

/// A fresh client on the same server still gets its messages.
fn assert_echo_still(server: &TestServer) {
    let mut client = member(server, &["other"]);
    client.send(Message::text("stats")).unwrap();
    assert!(recv(&mut client).to_text().unwrap().starts_with("stats "));
}
