//! Timeouts on a manual clock: the test moves time forward and the loop handles every
//! deadline that passed, with no real waiting and no race with a wall clock.
//!
//! To know the loop has seen a socket (and set its deadline) before the clock moves,
//! the tests finish an HTTP exchange on another socket first: the loop accepts in
//! order, so a later connection being answered means the earlier one was accepted.

mod common;

use common::*;
use pushloop::{ManualClock, Policy};
use pushloop_wire::OpCode;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::Message;

/// A plain request the echo handler answers with 426.
const PLAIN: &[u8] = b"GET /sync HTTP/1.1\r\nHost: x\r\n\r\n";

/// One round trip through the loop on a fresh socket.
fn sync(addr: SocketAddr) {
    assert_eq!(http_exchange(addr, PLAIN).status, 426);
}

/// Reads until end of stream; the bytes read.
fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("end of stream within the read timeout");
    all
}

/// Whether the server has neither closed nor sent anything on `stream` (checked without
/// blocking: after [`sync`], a close would already have arrived).
fn still_open(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open = matches!(stream.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

#[test]
fn slowloris_is_dropped_exactly_at_the_handshake_timeout() {
    let clock = ManualClock::new();
    let config = test_config()
        .clock(clock.clone())
        .handshake_timeout(Duration::from_secs(10));
    let server = TestServer::start(config, echo());
    let (mut good, _) = connect(server.addr, "/ws");
    let mut slow = tcp(server.addr);
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap(); // and no more
    sync(server.addr);
    clock.advance(Duration::from_millis(9_999));
    sync(server.addr);
    sync(server.addr);
    assert!(still_open(&mut slow), "dropped before its deadline");
    clock.advance(Duration::from_millis(2));
    assert_eq!(read_to_eof(&mut slow), b"", "dropped without an answer");
    assert_echo(&mut good, Message::text("unaffected"));
}

#[test]
fn silent_peer_is_pinged_then_dropped_with_1006_while_an_answering_one_stays() {
    let clock = ManualClock::new();
    let config = test_config()
        .clock(clock.clone())
        .ping_interval(Some(Duration::from_secs(30)))
        .pong_timeout(Duration::from_secs(10));
    let mut server = TestServer::start(config, echo());
    let (mut good, _) = connect(server.addr, "/ws");
    let mut silent = raw_upgrade(server.addr, "/ws");
    let silent_id = server.wait_open(silent.local_addr().unwrap());
    sync(server.addr);
    clock.advance(Duration::from_secs(30));
    // Both are pinged; tungstenite answers on its next write, the raw socket never does.
    let ping = read_frame(&mut silent);
    assert_eq!(ping.opcode, OpCode::Ping, "{ping:?}");
    match recv(&mut good) {
        Message::Ping(_) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
    assert_echo(&mut good, Message::text("pong sent before this"));
    clock.advance(Duration::from_secs(10));
    assert_eq!(read_to_eof(&mut silent), b"", "dropped without a Close");
    assert_eq!(server.wait_close(silent_id).0, 1006);
    assert_echo(&mut good, Message::text("still here"));
    // (A shutdown waits for close handshakes on this clock too: finish ours first.)
    assert_eq!(close_client(&mut good, 1000, ""), Some(1000));
    drop((good, silent));
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

#[test]
fn peer_that_never_answers_a_close_is_dropped_at_the_close_timeout() {
    let clock = ManualClock::new();
    let config = test_config()
        .clock(clock.clone())
        .close_timeout(Duration::from_secs(5));
    let mut server = TestServer::start(config, echo());
    let mut mute = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(mute.local_addr().unwrap());
    server.handle.close(id, 4000, "bye").unwrap();
    assert_eq!(read_close(&mut mute), (4000, "bye".to_owned()));
    sync(server.addr);
    clock.advance(Duration::from_millis(4_999));
    sync(server.addr);
    sync(server.addr);
    assert!(still_open(&mut mute), "dropped before the close timeout");
    clock.advance(Duration::from_millis(2));
    assert_eq!(read_to_eof(&mut mute), b"");
    server.wait_for(
        "a timeout error",
        |e| matches!(e, Event::Error { id: i, error } if *i == id && error.contains("time")),
    );
    assert_eq!(server.wait_close(id).0, 4000, "the server's own code");
}

#[test]
fn slow_reader_closed_for_overflow_is_dropped_at_the_close_timeout() {
    // The Close 1008 cannot reach a reader that reads nothing; the close timeout ends it.
    let clock = ManualClock::new();
    let config = test_config()
        .clock(clock.clone())
        .max_backlog(64 << 10)
        .backlog_policy(Policy::Close)
        .close_timeout(Duration::from_secs(5));
    let mut server = TestServer::start(config, echo());
    let stuck = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stuck.local_addr().unwrap());
    for _ in 0..200 {
        server.handle.send(id, vec![0u8; 64 << 10]).unwrap();
    }
    sync(server.addr); // the sends were carried out: the queue overflowed, Close queued
    clock.advance(Duration::from_millis(5_001));
    assert_eq!(server.wait_close(id).0, 1008);
    drop(stuck);
}
