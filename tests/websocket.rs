//! The server against a real client (tungstenite) and a few raw-socket exchanges:
//! handshake, echo at every length class, fragmentation, ping/pong, close codes,
//! broadcast, pushes through a `Handle`, and subprotocol negotiation.

mod common;

use common::*;
use pushloop::{OwnedMessage, Stopped};
use pushloop_wire::OpCode;
use std::io::Write;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::{Data, OpCode as WsOpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

/// The payload sizes that cover every length encoding: 7-bit, 16-bit and 64-bit.
const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1 << 20];

fn text_of(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

fn bytes_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn handshake_upgrades_and_reports_the_request() {
    let mut server = TestServer::echo();
    let (client, response) = connect(server.addr, "/ws/room?since=4");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers()["upgrade"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase(),
        "websocket"
    );
    assert!(response.headers().get("sec-websocket-protocol").is_none());
    let peer = client.get_ref().local_addr().unwrap();
    let open = server.wait_for("on_open", |e| matches!(e, Event::Open { .. }));
    let Event::Open {
        peer: seen_peer,
        path,
        protocol,
        count,
        ..
    } = open
    else {
        unreachable!()
    };
    assert_eq!(
        (seen_peer, path.as_str(), protocol, count),
        (Some(peer), "/ws/room", None, 1)
    );

    let (second, _) = connect(server.addr, "/ws");
    let second_peer = second.get_ref().local_addr().unwrap();
    let open = server.wait_for(
        "second on_open",
        |e| matches!(e, Event::Open { peer: Some(p), .. } if *p == second_peer),
    );
    assert!(matches!(open, Event::Open { count: 2, .. }), "{open:?}");
    drop((client, second));
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

#[test]
fn raw_handshake_response_is_exact() {
    let server = TestServer::echo();
    let mut stream = tcp(server.addr);
    stream.write_all(&upgrade_head("/ws", &[], &[])).unwrap();
    let response = read_response(&mut stream);
    assert_switching(&response);
    assert!(
        response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{response:?}"
    );
    assert!(response.header("sec-websocket-protocol").is_none());
    assert!(response.body.is_empty());
    send_frame(&mut stream, true, OpCode::Text, b"raw hello");
    let frame = read_frame(&mut stream);
    assert_eq!(
        (frame.fin, frame.opcode, frame.payload.as_slice()),
        (true, OpCode::Text, &b"raw hello"[..])
    );
}

#[test]
fn echoes_text_at_every_length_class() {
    let server = TestServer::echo();
    let (mut client, _) = connect(server.addr, "/ws");
    for len in SIZES {
        assert_echo(&mut client, Message::text(text_of(len)));
    }
    assert_echo(&mut client, Message::text("héllo wörld € 😀 ✓"));
    assert_eq!(close_client(&mut client, 1000, ""), Some(1000));
}

#[test]
fn echoes_binary_at_every_length_class() {
    let server = TestServer::echo();
    let (mut client, _) = connect(server.addr, "/ws");
    for len in SIZES {
        assert_echo(&mut client, Message::binary(bytes_of(len)));
    }
    assert_eq!(close_client(&mut client, 1000, ""), Some(1000));
}

#[test]
fn echoes_exact_frames_at_every_length_class_on_a_raw_socket() {
    // The server's frames must use the minimal length encoding and one frame per message.
    let server = TestServer::echo();
    let mut stream = raw_upgrade(server.addr, "/ws");
    for len in SIZES {
        let payload = bytes_of(len);
        send_frame(&mut stream, true, OpCode::Binary, &payload);
        let frame = read_frame(&mut stream);
        assert_eq!(
            (frame.fin, frame.opcode, frame.payload.len()),
            (true, OpCode::Binary, len)
        );
        assert!(frame.payload == payload, "payload of {len} bytes differs");
    }
}

#[test]
fn fragmented_messages_are_reassembled() {
    let mut server = TestServer::echo();
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());

    // Text in three fragments, the middle one empty.
    send_frame(&mut stream, false, OpCode::Text, "Hel".as_bytes());
    send_frame(&mut stream, false, OpCode::Continuation, b"");
    send_frame(
        &mut stream,
        true,
        OpCode::Continuation,
        "lo, wörld".as_bytes(),
    );
    let frame = read_frame(&mut stream);
    assert_eq!((frame.fin, frame.opcode), (true, OpCode::Text));
    assert_eq!(frame.payload, "Hello, wörld".as_bytes());

    // Binary in fragments with a ping in between: the pong comes first, then the message.
    let big = bytes_of(70_000);
    send_frame(&mut stream, false, OpCode::Binary, &big[..40_000]);
    send_frame(&mut stream, true, OpCode::Ping, b"between");
    send_frame(&mut stream, true, OpCode::Continuation, &big[40_000..]);
    let pong = read_frame(&mut stream);
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (OpCode::Pong, &b"between"[..])
    );
    let frame = read_frame(&mut stream);
    assert_eq!(
        (frame.fin, frame.opcode, frame.payload.len()),
        (true, OpCode::Binary, big.len())
    );
    assert!(frame.payload == big);

    // A multi-byte character cut across fragments is fine.
    send_frame(&mut stream, false, OpCode::Text, b"\xe2\x82");
    send_frame(&mut stream, true, OpCode::Continuation, b"\xac");
    assert_eq!(read_frame(&mut stream).payload, "€".as_bytes());

    // The handler saw exactly these three messages, in order.
    let expected = vec![
        OwnedMessage::Text("Hello, wörld".into()),
        OwnedMessage::Binary(big),
        OwnedMessage::Text("€".into()),
    ];
    drop(stream);
    server.wait_close(id);
    let log = server.stop();
    let got: Vec<OwnedMessage> = log
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { msg, .. } => Some(msg),
            _ => None,
        })
        .collect();
    assert!(got == expected, "the handler got other messages");
}

#[test]
fn fragmented_messages_from_tungstenite_frames() {
    let server = TestServer::echo();
    let (mut client, _) = connect(server.addr, "/ws");
    let parts = ["frag", "men", "ted"];
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 {
            WsOpCode::Data(Data::Text)
        } else {
            WsOpCode::Data(Data::Continue)
        };
        let fin = i == parts.len() - 1;
        client
            .send(Message::Frame(Frame::message(
                part.to_string(),
                opcode,
                fin,
            )))
            .expect("send fragment");
    }
    assert_eq!(recv(&mut client), Message::text("fragmented"));
    client
        .send(Message::Frame(Frame::message(
            vec![1u8, 2],
            WsOpCode::Data(Data::Binary),
            false,
        )))
        .unwrap();
    client
        .send(Message::Frame(Frame::message(
            vec![3u8],
            WsOpCode::Data(Data::Continue),
            true,
        )))
        .unwrap();
    assert_eq!(recv(&mut client), Message::binary(vec![1u8, 2, 3]));
    assert_eq!(close_client(&mut client, 1000, ""), Some(1000));
}

#[test]
fn ping_is_answered_with_a_pong_carrying_the_same_payload() {
    let server = TestServer::echo();
    let (mut client, _) = connect(server.addr, "/ws");
    client.send(Message::Ping("are you there?".into())).unwrap();
    assert_eq!(recv(&mut client), Message::Pong("are you there?".into()));
    client.send(Message::Ping(Vec::new().into())).unwrap();
    assert_eq!(recv(&mut client), Message::Pong(Vec::new().into()));
    // Unsolicited pongs get no answer: the next thing back is the echo.
    client.send(Message::Pong("unsolicited".into())).unwrap();
    assert_echo(&mut client, Message::text("after the pong"));

    // The largest control payload, on a raw socket.
    let mut stream = raw_upgrade(server.addr, "/ws");
    let payload = bytes_of(125);
    send_frame(&mut stream, true, OpCode::Ping, &payload);
    let pong = read_frame(&mut stream);
    assert_eq!((pong.fin, pong.opcode), (true, OpCode::Pong));
    assert_eq!(pong.payload, payload);
}

#[test]
fn client_close_code_and_reason_are_echoed_and_reported() {
    let mut server = TestServer::echo();
    let (mut client, _) = connect(server.addr, "/ws");
    let id = server.id_of(&client);
    assert_echo(&mut client, Message::text("before closing"));
    assert_eq!(
        close_client(&mut client, 4000, "client is done"),
        Some(4000)
    );
    assert_eq!(server.wait_close(id), (4000, "client is done".to_owned()));
    drop(client);
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

#[test]
fn handler_close_sends_its_code_to_the_client() {
    let mut server = TestServer::start(
        test_config(),
        Box::new(|ctx, id, msg| {
            if msg.as_text() == Some("close me") {
                assert!(ctx.close(id, 4001, "as you wish"));
            } else {
                ctx.send(id, msg);
            }
        }),
    );
    let (mut client, _) = connect(server.addr, "/ws");
    let id = server.id_of(&client);
    assert_echo(&mut client, Message::text("hello"));
    client.send(Message::text("close me")).unwrap();
    let frame = read_until_close(&mut client).expect("a close frame with a code");
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4001, "as you wish")
    );
    assert_eq!(server.wait_close(id), (4001, "as you wish".to_owned()));
    drop(client);
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

#[test]
fn handle_close_sends_its_code_to_the_client() {
    let mut server = TestServer::echo();
    let (mut client, _) = connect(server.addr, "/ws");
    let id = server.id_of(&client);
    let handle = server.handle.clone();
    std::thread::spawn(move || handle.close(id, 4001, "pushed away"))
        .join()
        .unwrap()
        .expect("server running");
    let frame = read_until_close(&mut client).expect("a close frame with a code");
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4001, "pushed away")
    );
    assert_eq!(server.wait_close(id), (4001, "pushed away".to_owned()));
}

#[test]
fn chat_broadcast_reaches_everyone_but_the_sender() {
    let mut server = TestServer::start(test_config(), chat());
    let mut clients: Vec<Client> = (0..3).map(|_| connect(server.addr, "/ws").0).collect();
    for c in &clients {
        server.id_of(c);
    }
    let names = ["a", "b", "c"];
    for (sender, name) in names.iter().enumerate() {
        let text = format!("from {name}");
        clients[sender].send(Message::text(text.clone())).unwrap();
        for (i, client) in clients.iter_mut().enumerate() {
            if i != sender {
                // Had an earlier sender got its own message, it would be read here first.
                assert_eq!(
                    recv(client),
                    Message::text(text.clone()),
                    "client {} reading {text:?}",
                    names[i]
                );
            }
        }
    }
    // Client c got "from a", "from b"; it never got "from c": a last message from a
    // is the next thing it reads.
    clients[0].send(Message::binary(vec![7u8])).unwrap();
    assert_eq!(recv(&mut clients[2]), Message::binary(vec![7u8]));
    assert_eq!(recv(&mut clients[1]), Message::binary(vec![7u8]));
    for mut c in clients {
        assert_eq!(close_client(&mut c, 1000, ""), Some(1000));
    }
    let log = server.stop();
    assert_eq!(count(&log, |e| matches!(e, Event::Message { .. })), 4);
    assert_each_open_closed_once(&log);
}

#[test]
fn handle_pushes_from_another_thread() {
    let mut server = TestServer::echo();
    let (mut a, _) = connect(server.addr, "/ws");
    let (mut b, _) = connect(server.addr, "/ws");
    let id_a = server.id_of(&a);
    let id_b = server.id_of(&b);
    let handle = server.handle.clone();
    let pusher = std::thread::spawn(move || -> Result<(), Stopped> {
        handle.broadcast("news for all")?;
        handle.send(id_a, "just for a")?;
        handle.send(id_b, vec![1u8, 2, 3])?;
        handle.broadcast(vec![0u8; 100_000])?;
        Ok(())
    });
    pusher.join().unwrap().expect("server running");
    assert_eq!(recv(&mut a), Message::text("news for all"));
    assert_eq!(recv(&mut a), Message::text("just for a"));
    assert_eq!(recv(&mut a), Message::binary(vec![0u8; 100_000]));
    assert_eq!(recv(&mut b), Message::text("news for all"));
    assert_eq!(recv(&mut b), Message::binary(vec![1u8, 2, 3]));
    assert_eq!(recv(&mut b), Message::binary(vec![0u8; 100_000]));
    // The connections still work both ways.
    assert_echo(&mut a, Message::text("still echoing"));
    drop((a, b));
    let handle = server.handle.clone();
    let log = server.stop();
    assert_each_open_closed_once(&log);
    // Once the server has stopped, handles say so.
    assert_eq!(handle.broadcast("too late"), Err(Stopped));
}

#[test]
fn stop_closes_open_clients_with_going_away() {
    let mut server = TestServer::echo();
    let (mut client, _) = connect(server.addr, "/ws");
    let id = server.id_of(&client);
    let handle = server.handle.clone();
    handle.stop().unwrap();
    let frame = read_until_close(&mut client).expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1001);
    drop(client);
    assert_eq!(server.wait_close(id).0, 1001);
}

fn offering(
    server: &TestServer,
    protocols: Option<&str>,
) -> (Client, tungstenite::handshake::client::Response) {
    let mut request = server.url("/ws").into_client_request().unwrap();
    if let Some(p) = protocols {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    connect_request(server.addr, request)
}

#[test]
fn subprotocol_negotiation_prefers_the_servers_order() {
    let mut server = TestServer::start(test_config().protocols(["a", "b"]), echo());
    let header = |r: &tungstenite::handshake::client::Response| {
        r.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let cases: [(Option<&str>, Option<&str>); 4] = [
        (Some("b, a"), Some("a")),
        (Some("b"), Some("b")),
        (Some("c,b"), Some("b")),
        (None, None),
    ];
    for (offer, chosen) in cases {
        let (mut client, response) = offering(&server, offer);
        assert_eq!(header(&response).as_deref(), chosen, "offer {offer:?}");
        let peer = client.get_ref().local_addr().unwrap();
        let open = server.wait_for(
            "on_open",
            |e| matches!(e, Event::Open { peer: Some(p), .. } if *p == peer),
        );
        let Event::Open { protocol, .. } = open else {
            unreachable!()
        };
        assert_eq!(
            protocol.as_deref(),
            chosen,
            "Request::protocol() in on_open for offer {offer:?}"
        );
        assert_echo(&mut client, Message::text("with a protocol"));
    }

    // A server with no protocols never answers one, even when offered (raw: tungstenite
    // would refuse the answer itself).
    let plain = TestServer::echo();
    let response = http_exchange(
        plain.addr,
        &upgrade_head("/ws", &[], &[("Sec-WebSocket-Protocol", "a, b")]),
    );
    assert_switching(&response);
    assert_eq!(response.header("sec-websocket-protocol"), None);
}

#[test]
fn multibyte_text_split_across_reads_and_fragments() {
    let server = TestServer::echo();
    let (mut client, _) = connect(server.addr, "/ws");
    // 1 MiB-ish of 1- to 4-byte characters: read boundaries fall inside characters.
    let unit = "aé€😀";
    let big: String = unit.repeat((1 << 20) / unit.len() + 1);
    assert_echo(&mut client, Message::text(big));
    drop(client);

    // A 4-byte character cut over three fragments.
    let mut stream = raw_upgrade(server.addr, "/ws");
    let smile = "😀".as_bytes();
    send_frame(&mut stream, false, OpCode::Text, &smile[..1]);
    send_frame(&mut stream, false, OpCode::Continuation, &smile[1..3]);
    send_frame(&mut stream, true, OpCode::Continuation, &smile[3..]);
    assert_eq!(read_frame(&mut stream).payload, smile);
}

#[test]
fn empty_close_is_answered_with_an_empty_close_and_reported_as_1005() {
    let mut server = TestServer::echo();
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    send_frame(&mut stream, true, OpCode::Close, b"");
    let frame = read_frame(&mut stream);
    assert_eq!(
        (frame.opcode, frame.payload.len()),
        (OpCode::Close, 0),
        "{frame:?}"
    );
    assert_eof(&mut stream);
    assert_eq!(server.wait_close(id), (1005, String::new()));
}

#[test]
fn long_close_reason_is_cut_to_fit_a_control_frame() {
    let mut server = TestServer::echo();
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    let reason = "é".repeat(100); // 200 bytes
    server.handle.close(id, 4002, reason.clone()).unwrap();
    let (code, sent) = read_close(&mut stream);
    assert_eq!(code, 4002);
    assert!(
        sent.len() <= 123 && reason.starts_with(&sent) && sent.len() >= 120,
        "{} bytes",
        sent.len()
    );
    send_frame(&mut stream, true, OpCode::Close, &4002u16.to_be_bytes());
    assert_eof(&mut stream);
    assert_eq!(server.wait_close(id), (4002, sent));
}

#[test]
fn handle_send_to_a_stale_id_does_not_reach_the_slots_next_client() {
    let mut server = TestServer::echo();
    let (mut first, _) = connect(server.addr, "/ws");
    let old = server.id_of(&first);
    assert_eq!(close_client(&mut first, 1000, ""), Some(1000));
    drop(first);
    server.wait_close(old);
    let (mut second, _) = connect(server.addr, "/ws");
    let new = server.id_of(&second);
    assert_ne!(old, new);
    server.handle.send(old, "for the old client").unwrap();
    server.handle.send(new, "for the new client").unwrap();
    assert_eq!(recv(&mut second), Message::text("for the new client"));
}

#[test]
fn silent_client_is_dropped_after_the_handshake_timeout() {
    let server = TestServer::start(
        test_config().handshake_timeout(std::time::Duration::from_millis(200)),
        echo(),
    );
    let mut silent = tcp(server.addr);
    // Nothing sent: the server ends the connection by itself, well within TIMEOUT.
    let started = std::time::Instant::now();
    assert_eof(&mut silent);
    assert!(started.elapsed() < TIMEOUT);
    assert_still_serving(server.addr);
    let log = server.stop();
    assert_eq!(count(&log, |e| matches!(e, Event::Open { .. })), 1);
}

#[test]
fn unanswered_server_close_times_out() {
    let mut server = TestServer::start(
        test_config().close_timeout(std::time::Duration::from_millis(200)),
        echo(),
    );
    let mut stream = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(stream.local_addr().unwrap());
    server.handle.close(id, 4003, "answer me").unwrap();
    assert_eq!(read_close(&mut stream), (4003, "answer me".to_owned()));
    // No answer: after the close timeout the server drops the connection.
    assert_eof(&mut stream);
    assert_eq!(server.wait_close(id), (4003, "answer me".to_owned()));
    server.wait_for(
        "on_error timeout",
        |e| matches!(e, Event::Error { id: i, error } if *i == id && error.contains("timed out")),
    );
    assert_still_serving(server.addr);
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

#[test]
fn connections_beyond_the_limit_get_503() {
    let server = TestServer::start(test_config().max_connections(1), echo());
    let (mut client, _) = connect(server.addr, "/ws");
    assert_echo(&mut client, Message::text("the one allowed"));
    // Reading without sending: the 503 arrives and the connection ends.
    let mut extra = tcp(server.addr);
    let response = read_response(&mut extra);
    assert_eq!(response.status, 503, "{response:?}");
    assert_echo(&mut client, Message::text("still the one"));
    assert_eq!(close_client(&mut client, 1000, ""), Some(1000));
}

#[test]
fn connection_beyond_the_limit_that_already_sent_its_request_gets_503() {
    let server = TestServer::start(test_config().max_connections(1), echo());
    let (mut client, _) = connect(server.addr, "/ws");
    assert_echo(&mut client, Message::text("the one allowed"));
    let response = http_exchange(server.addr, &upgrade_head("/ws", &[], &[]));
    assert_eq!(response.status, 503, "{response:?}");
    assert_echo(&mut client, Message::text("still the one"));
}

#[test]
fn slow_readers_get_every_byte_in_order() {
    // Far more than the socket buffers hold: the server must queue, wait for WRITABLE,
    // and resume mid-chunk, with small (copied) and large (shared) broadcasts mixed.
    // The ~11 MB burst is above the default backlog limit, which is not what this tests.
    let mut server = TestServer::start(test_config().max_backlog(64 << 20), echo());
    let mut readers: Vec<std::net::TcpStream> =
        (0..2).map(|_| raw_upgrade(server.addr, "/ws")).collect();
    for r in &readers {
        server.wait_open(r.local_addr().unwrap());
    }
    let sizes: Vec<usize> = (0..120)
        .map(|i| [10, 200_000, 1500, 70_000, 0, 1025][i % 6])
        .collect();
    let handle = server.handle.clone();
    let sizes_for_pusher = sizes.clone();
    std::thread::spawn(move || {
        for (i, len) in sizes_for_pusher.into_iter().enumerate() {
            handle.broadcast(vec![i as u8; len]).unwrap();
        }
    })
    .join()
    .unwrap();
    for reader in &mut readers {
        for (i, len) in sizes.iter().enumerate() {
            let frame = read_frame(reader);
            assert_eq!(
                (frame.opcode, frame.payload.len()),
                (OpCode::Binary, *len),
                "message {i}"
            );
            assert!(
                frame.payload.iter().all(|b| *b == i as u8),
                "message {i} content"
            );
        }
    }
}

#[test]
fn context_broadcast_includes_the_sender_and_counts_connections() {
    let mut server = TestServer::start(
        test_config(),
        Box::new(|ctx, id, msg| {
            if msg.as_text() == Some("count") {
                let reply = format!("{} {}", ctx.connection_count(), ctx.connections().len());
                assert!(ctx.send(id, &reply));
            } else {
                let reached = ctx.broadcast(msg);
                assert_eq!(reached, ctx.connection_count());
            }
        }),
    );
    let (mut a, _) = connect(server.addr, "/ws");
    let (mut b, _) = connect(server.addr, "/ws");
    server.id_of(&a);
    server.id_of(&b);
    a.send(Message::text("count")).unwrap();
    assert_eq!(recv(&mut a), Message::text("2 2"));
    a.send(Message::text("to everyone")).unwrap();
    assert_eq!(recv(&mut a), Message::text("to everyone"));
    assert_eq!(recv(&mut b), Message::text("to everyone"));
    let id_b = server.id_of(&b);
    drop(b);
    server.wait_close(id_b);
    a.send(Message::text("count")).unwrap();
    assert_eq!(recv(&mut a), Message::text("1 1"));
}

#[test]
fn stop_drops_clients_still_in_their_handshake() {
    let server = TestServer::echo();
    let mut half = tcp(server.addr);
    let head = upgrade_head("/ws", &[], &[]);
    half.write_all(&head[..10]).unwrap();
    let log = server.stop();
    // Dropped without a response (EOF or reset) and never announced.
    assert_eof(&mut half);
    assert!(log.is_empty(), "{log:#?}");
}

/// A program that drives its own loop: `poll_once` with a timeout, on the caller's
/// thread, serves a client; after `stop`, `poll_once` reports the server stopped.
#[test]
fn poll_once_serves_on_the_callers_thread() {
    struct Echo;
    impl pushloop::Handler for Echo {
        fn on_message(
            &mut self,
            ctx: &mut pushloop::Context<'_>,
            id: pushloop::ConnId,
            msg: pushloop::Message<'_>,
        ) {
            ctx.send(id, msg);
        }
    }
    let mut server = pushloop::Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let client = std::thread::spawn(move || {
        let (mut client, _) = connect(addr, "/ws");
        assert_echo(&mut client, Message::text("stepped"));
        close_client(&mut client, 1000, "");
        handle.stop().unwrap();
    });
    let mut handler = Echo;
    let mut turns = 0;
    while server
        .poll_once(&mut handler, Some(std::time::Duration::from_millis(50)))
        .unwrap()
    {
        turns += 1;
        assert!(turns < 1000, "the server never stopped");
    }
    client.join().unwrap();
}

/// A panic in the handler's `on_message` closes only that connection, with 1011; the
/// loop goes on serving everyone else, and `on_close` still fires for it.
#[test]
fn handler_panic_closes_only_its_connection_with_1011() {
    use std::sync::mpsc;
    struct Fragile(mpsc::Sender<u16>);
    impl pushloop::Handler for Fragile {
        fn on_message(
            &mut self,
            ctx: &mut pushloop::Context<'_>,
            id: pushloop::ConnId,
            msg: pushloop::Message<'_>,
        ) {
            assert!(msg.as_text() != Some("boom"), "the handler blew up");
            ctx.send(id, msg);
        }
        fn on_close(
            &mut self,
            _: &mut pushloop::Context<'_>,
            _: pushloop::ConnId,
            code: pushloop::CloseCode,
            _: &str,
        ) {
            let _ = self.0.send(u16::from(code));
        }
    }
    let (closes, closed) = mpsc::channel();
    let server = pushloop::Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let loop_thread = std::thread::spawn(move || server.run(Fragile(closes)));
    let (mut bystander, _) = connect(addr, "/ws");
    let (mut victim, _) = connect(addr, "/ws");
    victim.send(Message::text("boom")).unwrap();
    let frame = read_until_close(&mut victim).expect("a close frame");
    assert_eq!(u16::from(frame.code), 1011);
    assert_eq!(closed.recv_timeout(TIMEOUT).unwrap(), 1011);
    assert_echo(&mut bystander, Message::text("still here"));
    assert_still_serving(addr);
    assert_eq!(close_client(&mut bystander, 1000, ""), Some(1000));
    drop((victim, bystander));
    handle.stop().unwrap();
    loop_thread.join().unwrap().unwrap();
}

/// Keepalive: a quiet connection is pinged after the ping interval; a peer that answers
/// stays, one that does not is dropped after the pong timeout and reported as 1006.
#[test]
fn silent_peer_is_pinged_then_dropped_with_1006() {
    let config = test_config()
        .ping_interval(Some(std::time::Duration::from_millis(100)))
        .pong_timeout(std::time::Duration::from_millis(150));
    let mut server = TestServer::start(config, echo());
    let mut silent = raw_upgrade(server.addr, "/ws");
    let id = server.wait_open(silent.local_addr().unwrap());
    let ping = read_frame(&mut silent);
    assert_eq!(
        (ping.opcode, ping.payload.len()),
        (OpCode::Ping, 8),
        "{:?}",
        ping.payload
    );
    assert_eof(&mut silent);
    assert_eq!(server.wait_close(id).0, 1006);
    server.stop();
}

#[test]
fn answering_peer_survives_many_ping_intervals() {
    let config = test_config()
        .ping_interval(Some(std::time::Duration::from_millis(50)))
        .pong_timeout(std::time::Duration::from_millis(200));
    let server = TestServer::start(config, echo());
    let (mut client, _) = connect(server.addr, "/ws");
    // tungstenite answers each ping while it reads; five pings take at least 250 ms,
    // well past the pong timeout, and the connection is still there.
    for _ in 0..5 {
        match recv(&mut client) {
            Message::Ping(payload) => assert_eq!(payload.len(), 8),
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    assert_echo(&mut client, Message::text("alive"));
    assert_eq!(close_client(&mut client, 1000, ""), Some(1000));
    drop(client);
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

/// A reader slower than the server's pushes: once its queue passes `max_backlog` it is
/// closed with 1008 (nothing more is queued for it, so memory stays bounded), while a
/// reader that keeps up receives every message in order.
#[test]
fn slow_reader_over_the_backlog_is_closed_with_1008() {
    use std::sync::mpsc;
    const MESSAGES: usize = 1024; // 64 MiB in 64 KiB messages: more than kernel buffers hold
    let config = test_config()
        .max_backlog(256 << 10)
        .close_timeout(std::time::Duration::from_millis(300));
    let mut server = TestServer::start(config, echo());
    let (mut fast, _) = connect(server.addr, "/ws");
    let slow = raw_upgrade(server.addr, "/ws"); // never reads
    let slow_id = server.wait_open(slow.local_addr().unwrap());
    let (got_tx, got_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for _ in 0..MESSAGES {
            match recv(&mut fast) {
                Message::Binary(data) => got_tx.send((data[0], data.len())).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
        fast
    });
    // One message at a time, each sent once the fast reader has the previous one.
    for i in 0..MESSAGES {
        server.handle.broadcast(vec![i as u8; 64 << 10]).unwrap();
        assert_eq!(got_rx.recv_timeout(TIMEOUT).unwrap(), (i as u8, 64 << 10));
    }
    let mut fast = reader.join().unwrap();
    assert_eq!(server.wait_close(slow_id).0, 1008);
    assert_echo(&mut fast, Message::text("still fine"));
    assert_eq!(close_client(&mut fast, 1000, ""), Some(1000));
    drop((fast, slow));
    let log = server.stop();
    assert_each_open_closed_once(&log);
}

#[test]
fn messages_accepted_before_a_stop_are_delivered_before_the_1001() {
    const N: usize = 100; // 6.4 MB: more than the kernel buffers, so most wait in the queue
    let mut server = TestServer::start(test_config().max_backlog(64 << 20), echo());
    let (mut client, _) = connect(server.addr, "/ws");
    let id = server.id_of(&client);
    for i in 0..N {
        server.handle.send(id, vec![i as u8; 64 << 10]).unwrap();
    }
    server.handle.stop().unwrap();
    for i in 0..N {
        match recv(&mut client) {
            Message::Binary(data) => assert_eq!((data[0], data.len()), (i as u8, 64 << 10)),
            other => panic!("message {i}: got {other:?}"),
        }
    }
    let frame = read_until_close(&mut client).expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1001);
    drop(client);
    assert_eq!(server.wait_close(id).0, 1001);
}
