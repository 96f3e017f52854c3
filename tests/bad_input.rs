//! Misbehaving clients on raw sockets. Each case asserts the exact HTTP status or close
//! code, and that a well-behaved client on the same server keeps working afterwards.

mod common;

use common::*;
use pushloop_wire::{OpCode, RSV1};
use std::io::Write;
use std::net::TcpStream;

// ---------------------------------------------------------------------------------------
// Handshakes
// ---------------------------------------------------------------------------------------

/// Sends `head` to a fresh echo server, asserts the status, then that service goes on.
fn refused(head: &[u8], status: u16) -> HttpResponse {
    let server = TestServer::echo();
    let response = http_exchange(server.addr, head);
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"), "{response:?}");
    assert_eq!(
        response.header("sec-websocket-accept"),
        None,
        "{response:?}"
    );
    assert_still_serving(server.addr);
    let log = server.stop();
    assert_eq!(
        count(&log, |e| matches!(e, Event::Open { .. })),
        1,
        "only the good client opened: {log:#?}"
    );
    response
}

#[test]
fn missing_key_is_400() {
    refused(&upgrade_head("/ws", &["Sec-WebSocket-Key"], &[]), 400);
}

#[test]
fn malformed_key_is_400() {
    refused(
        &upgrade_head(
            "/ws",
            &["Sec-WebSocket-Key"],
            &[("Sec-WebSocket-Key", "c2hvcnQ=")],
        ),
        400,
    );
}

#[test]
fn wrong_version_is_426_naming_version_13() {
    let response = refused(
        &upgrade_head(
            "/ws",
            &["Sec-WebSocket-Version"],
            &[("Sec-WebSocket-Version", "8")],
        ),
        426,
    );
    assert_eq!(
        response.header("sec-websocket-version"),
        Some("13"),
        "{response:?}"
    );
}

#[test]
fn head_larger_than_8_kib_is_431() {
    let filler = "x".repeat(9 << 10);
    let head = upgrade_head("/ws", &[], &[("X-Filler", &filler)]);
    assert!(head.len() > 8 << 10);
    refused(&head, 431);
}

#[test]
fn endless_head_without_its_blank_line_is_431() {
    // The server must not wait for the end of a head that is already too large.
    let mut head = b"GET /ws HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..400 {
        head.extend_from_slice(format!("X-Header-{i:03}: {}\r\n", "y".repeat(20)).as_bytes());
    }
    assert!(head.len() > 8 << 10);
    refused(&head, 431);
}

#[test]
fn plain_http_request_gets_the_handlers_default_426() {
    let response = refused(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n", 426);
    assert_eq!(
        response.header("sec-websocket-version"),
        Some("13"),
        "{response:?}"
    );
}

#[test]
fn garbage_request_is_400() {
    refused(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400);
}

#[test]
fn handshake_one_byte_per_write_works() {
    let mut server = TestServer::echo();
    let mut stream = tcp(server.addr);
    stream.set_nodelay(true).unwrap();
    for byte in upgrade_head("/ws", &[], &[]) {
        stream.write_all(&[byte]).unwrap();
        stream.flush().unwrap();
    }
    assert_switching(&read_response(&mut stream));
    server.wait_open(stream.local_addr().unwrap());
    // A frame one byte per write, too.
    for byte in masked(true, OpCode::Text, b"slowly") {
        stream.write_all(&[byte]).unwrap();
        stream.flush().unwrap();
    }
    let frame = read_frame(&mut stream);
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (OpCode::Text, &b"slowly"[..])
    );
    assert_still_serving(server.addr);
}

#[test]
fn head_and_first_frame_in_one_write() {
    let server = TestServer::echo();
    let mut stream = tcp(server.addr);
    let mut bytes = upgrade_head("/ws", &[], &[]);
    bytes.extend(masked(true, OpCode::Text, b"eager"));
    bytes.extend(masked(true, OpCode::Binary, &[9, 8, 7]));
    stream.write_all(&bytes).unwrap();
    assert_switching(&read_response(&mut stream));
    let frame = read_frame(&mut stream);
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (OpCode::Text, &b"eager"[..])
    );
    let frame = read_frame(&mut stream);
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (OpCode::Binary, &[9u8, 8, 7][..])
    );
    assert_still_serving(server.addr);
}

#[test]
fn head_split_across_writes_with_first_frame_works() {
    // The buffered-head path: the head arrives in two writes, the second carrying a frame.
    let mut server = TestServer::echo();
    let mut stream = tcp(server.addr);
    stream.set_nodelay(true).unwrap();
    let mut bytes = upgrade_head("/ws", &[], &[]);
    let second = bytes.split_off(bytes.len() / 2);
    stream.write_all(&bytes).unwrap();
    // A round trip on another connection gives the loop time to read the first half on
    // its own (exercising the buffered-head path); the test holds either way.
    assert_still_serving(server.addr);
    let mut rest = second;
    rest.extend(masked(true, OpCode::Text, b"after a split head"));
    stream.write_all(&rest).unwrap();
    assert_switching(&read_response(&mut stream));
    let frame = read_frame(&mut stream);
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (OpCode::Text, &b"after a split head"[..])
    );
    server.wait_open(stream.local_addr().unwrap());
}

#[test]
fn abrupt_disconnect_mid_handshake_is_not_announced() {
    let server = TestServer::echo();
    let mut stream = tcp(server.addr);
    let head = upgrade_head("/ws", &[], &[]);
    stream.write_all(&head[..head.len() / 2]).unwrap();
    let peer = stream.local_addr().unwrap();
    drop(stream);
    assert_still_serving(server.addr);
    assert_still_serving(server.addr);
    let log = server.stop();
    assert_eq!(
        count(
            &log,
            |e| matches!(e, Event::Open { peer: Some(p), .. } if *p == peer)
        ),
        0,
        "{log:#?}"
    );
    assert_eq!(
        count(&log, |e| matches!(e, Event::Open { .. })),
        2,
        "{log:#?}"
    );
    assert_eq!(
        count(&log, |e| matches!(e, Event::Close { .. })),
        2,
        "{log:#?}"
    );
    assert_each_open_closed_once(&log);
}

/// Sends only the first `cut` bytes of `frame` on an open connection, then drops it:
/// `on_close` sees 1006 exactly once, no message is delivered, and service goes on.
fn disconnect_mid_frame(frame: &[u8], cut: usize) {
    let mut server = TestServer::echo();
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    stream.write_all(&frame[..cut]).unwrap();
    drop(stream);
    assert_eq!(server.wait_close(id).0, 1006);
    assert_still_serving(server.addr);
    let log = server.stop();
    let closes = count(
        &log,
        |e| matches!(e, Event::Close { id: i, .. } if *i == id),
    );
    let messages = count(
        &log,
        |e| matches!(e, Event::Message { id: i, .. } if *i == id),
    );
    assert_eq!((closes, messages), (1, 0), "{log:#?}");
    assert_each_open_closed_once(&log);
}

#[test]
fn abrupt_disconnect_mid_frame_closes_once_with_1006() {
    let frame = masked(true, OpCode::Binary, &[42u8; 1000]);
    disconnect_mid_frame(&frame, frame.len() / 2);
}

#[test]
fn abrupt_disconnect_mid_header_closes_once_with_1006() {
    let frame = masked(true, OpCode::Binary, &[42u8; 70_000]);
    disconnect_mid_frame(&frame, 5);
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// On an upgraded raw socket: sends `bytes`, expects a Close with `code` and then the end
/// of the stream; `on_error` and `on_close` (with `code`) are called once; a good client
/// still gets its echo.
fn fails_with(bytes: &[u8], code: u16) {
    let mut server = TestServer::echo();
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    stream.write_all(bytes).unwrap();
    expect_failure(&mut stream, code);
    assert_eq!(server.wait_close(id).0, code);
    assert_still_serving(server.addr);
    drop(stream);
    let log = server.stop();
    let errors = count(
        &log,
        |e| matches!(e, Event::Error { id: i, .. } if *i == id),
    );
    let messages = count(
        &log,
        |e| matches!(e, Event::Message { id: i, .. } if *i == id),
    );
    assert_eq!((errors, messages), (1, 0), "{log:#?}");
    assert_each_open_closed_once(&log);
}

/// The server's Close frame with `code`, then EOF.
fn expect_failure(stream: &mut TcpStream, code: u16) {
    let (got, reason) = read_close(stream);
    assert_eq!(got, code, "close code (reason {reason:?})");
    assert_eof(stream);
}

#[test]
fn unmasked_frame_is_1002() {
    fails_with(&[0x81, 0x02, b'h', b'i'], 1002);
}

#[test]
fn reserved_opcode_is_1002() {
    fails_with(&masked(true, OpCode::Reserved(0x3), b"x"), 1002);
}

#[test]
fn reserved_control_opcode_is_1002() {
    fails_with(&masked(true, OpCode::Reserved(0xB), b"x"), 1002);
}

#[test]
fn rsv1_bit_is_1002() {
    let mut frame = masked(true, OpCode::Text, b"compressed?");
    frame[0] |= RSV1;
    fails_with(&frame, 1002);
}

#[test]
fn control_frame_with_126_byte_payload_is_1002() {
    fails_with(&masked(true, OpCode::Ping, &[0u8; 126]), 1002);
}

#[test]
fn fragmented_ping_is_1002() {
    fails_with(&masked(false, OpCode::Ping, b"part"), 1002);
}

#[test]
fn continuation_without_a_start_is_1002() {
    fails_with(&masked(true, OpCode::Continuation, b"orphan"), 1002);
}

#[test]
fn new_message_inside_a_fragmented_one_is_1002() {
    let mut bytes = masked(false, OpCode::Text, b"first ");
    bytes.extend(masked(true, OpCode::Text, b"second"));
    fails_with(&bytes, 1002);
}

#[test]
fn invalid_utf8_text_is_1007() {
    fails_with(&masked(true, OpCode::Text, b"caf\xc3\x28"), 1007);
}

#[test]
fn invalid_utf8_split_across_fragments_is_1007() {
    // The first fragment is valid so far (it ends inside "€"); the second breaks it.
    let mut bytes = masked(
        false,
        OpCode::Text,
        "héllo \u{20ac}".as_bytes().split_last().unwrap().1,
    );
    bytes.extend(masked(true, OpCode::Continuation, b"A"));
    fails_with(&bytes, 1007);
}

#[test]
fn invalid_utf8_split_across_fragments_sent_separately_is_1007() {
    let mut server = TestServer::echo();
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    send_frame(&mut stream, false, OpCode::Text, b"valid so far \xe2\x82");
    // Proof that the first fragment was accepted: a ping in between is answered.
    send_frame(&mut stream, true, OpCode::Ping, b"ok?");
    assert_eq!(read_frame(&mut stream).opcode, OpCode::Pong);
    send_frame(&mut stream, true, OpCode::Continuation, b"\xff");
    expect_failure(&mut stream, 1007);
    assert_eq!(server.wait_close(id).0, 1007);
    assert_still_serving(server.addr);
}

#[test]
fn invalid_utf8_in_the_first_fragment_fails_at_once() {
    // Only the first fragment is sent; the rest never comes.
    fails_with(&masked(false, OpCode::Text, b"ok\xed\xa0\x80"), 1007);
}

#[test]
fn text_ending_in_a_truncated_character_is_1007() {
    fails_with(&masked(true, OpCode::Text, b"cut \xe2\x82"), 1007);
}

#[test]
fn invalid_close_code_is_1002() {
    fails_with(&masked(true, OpCode::Close, &1005u16.to_be_bytes()), 1002);
}

#[test]
fn one_byte_close_body_is_1002() {
    fails_with(&masked(true, OpCode::Close, &[0x03]), 1002);
}

#[test]
fn invalid_utf8_close_reason_fails_the_connection() {
    // §8.1: a close reason that is not UTF-8 fails the connection. Autobahn 7.5.1 accepts
    // 1002 or 1007; the server maps it to 1002 (`ProtocolError::InvalidCloseReason`).
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80");
    fails_with(&masked(true, OpCode::Close, &body), 1002);
}

#[test]
fn non_minimal_length_is_1002() {
    // 16-bit length field carrying 5.
    let mut bytes = vec![0x82, 0x80 | 126, 0, 5, 1, 2, 3, 4];
    bytes.extend_from_slice(&[0; 5]);
    fails_with(&bytes, 1002);
}

#[test]
fn frame_larger_than_max_frame_is_1009() {
    let mut server = TestServer::start(test_config().max_frame(1000).max_message(4000), echo());
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    // Only the header announcing 1001 bytes: the server must not wait for the payload.
    let frame = masked(true, OpCode::Binary, &[0u8; 1001]);
    stream.write_all(&frame[..8]).unwrap();
    expect_failure(&mut stream, 1009);
    assert_eq!(server.wait_close(id).0, 1009);
    assert_still_serving(server.addr);
}

#[test]
fn message_larger_than_max_message_is_1009() {
    let mut server = TestServer::start(test_config().max_frame(1000).max_message(2500), echo());
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    let mut bytes = Vec::new();
    for (fin, op) in [
        (false, OpCode::Binary),
        (false, OpCode::Continuation),
        (true, OpCode::Continuation),
    ] {
        bytes.extend(masked(fin, op, &[1u8; 900]));
    }
    stream.write_all(&bytes).unwrap();
    expect_failure(&mut stream, 1009);
    assert_eq!(server.wait_close(id).0, 1009);
    assert_still_serving(server.addr);
}

#[test]
fn data_after_the_clients_close_is_ignored() {
    let mut server = TestServer::echo();
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    let mut bytes = masked(true, OpCode::Close, b"\x0f\xa0bye");
    bytes.extend(masked(true, OpCode::Text, b"too late"));
    stream.write_all(&bytes).unwrap();
    let (code, _) = read_close(&mut stream);
    assert_eq!(code, 4000);
    assert_eof(&mut stream);
    assert_eq!(server.wait_close(id), (4000, "bye".to_owned()));
    assert_still_serving(server.addr);
    drop(stream);
    let log = server.stop();
    assert_eq!(
        count(
            &log,
            |e| matches!(e, Event::Message { id: i, .. } if *i == id)
        ),
        0,
        "{log:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Half-closing clients: an EOF on read means the peer sends no more, not that it stopped
// reading; what the server queued for it must still go out. Each test blocks the loop
// (see `gated_echo`) so that the request and the FIN are both waiting when it reads.
// ---------------------------------------------------------------------------------------

/// With the loop blocked, `send` writes to a fresh socket and half-closes it; then the
/// loop goes on. Returns the socket, for reading what the server answers.
fn half_close_while_blocked(
    server: &mut TestServer,
    gate: &std::sync::mpsc::Sender<()>,
    stream: Option<TcpStream>,
    bytes: &[u8],
) -> TcpStream {
    let (mut blocker, _) = connect(server.addr, "/ws");
    server.block_loop(&mut blocker);
    let mut stream = stream.unwrap_or_else(|| tcp(server.addr));
    stream.write_all(bytes).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    gate.send(()).unwrap();
    assert_eq!(recv(&mut blocker), tungstenite::Message::text("block"));
    stream
}

#[test]
fn plain_http_request_then_half_close_still_gets_its_response() {
    let (behaviour, gate) = gated_echo();
    let mut server = TestServer::start(test_config(), behaviour);
    let mut stream = half_close_while_blocked(
        &mut server,
        &gate,
        None,
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    let response = read_response(&mut stream);
    assert_eq!(response.status, 426, "{response:?}");
    assert_still_serving(server.addr);
}

#[test]
fn bad_handshake_then_half_close_still_gets_400() {
    let (behaviour, gate) = gated_echo();
    let mut server = TestServer::start(test_config(), behaviour);
    let head = upgrade_head("/ws", &["Sec-WebSocket-Key"], &[]);
    let mut stream = half_close_while_blocked(&mut server, &gate, None, &head);
    assert_eq!(read_response(&mut stream).status, 400);
    assert_still_serving(server.addr);
}

#[test]
fn close_frame_then_half_close_still_gets_the_close_echo() {
    let (behaviour, gate) = gated_echo();
    let mut server = TestServer::start(test_config(), behaviour);
    let stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    let close = masked(true, OpCode::Close, b"\x03\xe8bye");
    let mut stream = half_close_while_blocked(&mut server, &gate, Some(stream), &close);
    // The handler learns of the close either way...
    assert_eq!(server.wait_close(id), (1000, "bye".to_owned()));
    // ...but §5.5.1: the endpoint "MUST send a Close frame in response".
    assert_eq!(read_close(&mut stream).0, 1000);
    assert_eof(&mut stream);
    assert_still_serving(server.addr);
}

#[test]
fn half_close_right_after_a_message_still_gets_the_101_and_the_echo() {
    let mut server = TestServer::echo();
    for _ in 0..20 {
        let mut stream = tcp(server.addr);
        let mut bytes = upgrade_head("/ws", &[], &[]);
        bytes.extend(masked(true, OpCode::Text, b"hi"));
        stream.write_all(&bytes).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_switching(&read_response(&mut stream));
        assert_eq!(read_frame(&mut stream).payload, b"hi");
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut rest).unwrap();
        assert!(rest.is_empty(), "nothing after the echo: {rest:?}");
        let id = server.wait_open(stream.local_addr().unwrap());
        assert_eq!(server.wait_close(id).0, 1006, "lost without a Close");
    }
    assert_still_serving(server.addr);
}
