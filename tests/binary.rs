//! The `pushloop` binary: modes, paths, flags and graceful shutdown on SIGTERM.

mod common;

use common::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

#[test]
fn prints_the_listening_line() {
    let server = Binary::start(&["--mode", "echo"]);
    assert_eq!(
        server.line.trim_end(),
        format!("pushloop listening on ws://{}/ws (Echo mode)", server.addr)
    );
}

#[test]
fn echo_mode_echoes() {
    let server = Binary::start(&["--mode", "echo"]);
    let (mut client, response) = connect(server.addr, "/ws");
    assert_eq!(response.status(), 101);
    assert_echo(&mut client, Message::text("hello binary"));
    assert_echo(&mut client, Message::binary(vec![0u8; 70_000]));
    // Paths below /ws name a channel; a name with a character outside
    // [A-Za-z0-9_.:-] is refused with 400.
    let (mut below, _) = connect(server.addr, "/ws/room.7");
    assert_echo(&mut below, Message::text("in a room"));
    let refused = http_exchange(server.addr, &upgrade_head("/ws/room/7", &[], &[]));
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(close_client(&mut client, 1000, ""), Some(1000));
    assert_eq!(close_client(&mut below, 1000, ""), Some(1000));
}

#[test]
fn chat_mode_delivers_to_others_but_not_the_sender() {
    let server = Binary::start(&["--mode", "chat"]);
    let (mut a, _) = connect(server.addr, "/ws");
    let (mut b, _) = connect(server.addr, "/ws");
    let (mut c, _) = connect(server.addr, "/ws");
    a.send(Message::text("from a")).unwrap();
    assert_eq!(recv(&mut b), Message::text("from a"));
    assert_eq!(recv(&mut c), Message::text("from a"));
    b.send(Message::text("from b")).unwrap();
    // Had a received its own message, it would come before b's.
    assert_eq!(recv(&mut a), Message::text("from b"));
    assert_eq!(recv(&mut c), Message::text("from b"));
    c.send(Message::text("from c")).unwrap();
    assert_eq!(recv(&mut a), Message::text("from c"));
    assert_eq!(recv(&mut b), Message::text("from c"));
}

#[test]
fn chat_is_the_default_mode() {
    let server = Binary::start(&[]);
    let (mut a, _) = connect(server.addr, "/ws");
    let (mut b, _) = connect(server.addr, "/ws");
    a.send(Message::text("one")).unwrap();
    b.send(Message::text("two")).unwrap();
    assert_eq!(recv(&mut b), Message::text("one"));
    assert_eq!(recv(&mut a), Message::text("two"));
}

#[test]
fn upgrade_outside_ws_is_404() {
    let server = Binary::start(&["--mode", "echo"]);
    for path in ["/other", "/", "/wsx", "/w"] {
        let response = http_exchange(server.addr, &upgrade_head(path, &[], &[]));
        assert_eq!(response.status, 404, "{path}: {response:?}");
        assert_eq!(response.header("sec-websocket-accept"), None);
    }
    // The server goes on serving.
    let (mut client, _) = connect(server.addr, "/ws");
    assert_echo(&mut client, Message::text("still fine"));
}

#[test]
fn plain_get_on_ws_is_426_and_elsewhere_404() {
    let server = Binary::start(&["--mode", "echo"]);
    let response = http_exchange(server.addr, b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(response.status, 426, "{response:?}");
    assert_eq!(
        response.header("sec-websocket-version"),
        Some("13"),
        "{response:?}"
    );
    assert!(
        response
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{response:?}"
    );
    let response = http_exchange(
        server.addr,
        b"GET /nothing.html HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(response.status, 404, "{response:?}");
}

#[test]
fn protocol_flag_negotiates_a_subprotocol() {
    let server = Binary::start(&[
        "--mode",
        "echo",
        "--protocol",
        "chat.v2",
        "--protocol",
        "chat.v1",
    ]);
    let mut request = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chat.v1, chat.v2".parse().unwrap(),
    );
    let (mut client, response) = connect_request(server.addr, request);
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("chat.v2")
    );
    assert_echo(&mut client, Message::text("negotiated"));
}

#[test]
fn max_message_flag_closes_with_1009() {
    let server = Binary::start(&["--mode", "echo", "--max-message", "1000"]);
    let (mut client, _) = connect(server.addr, "/ws");
    assert_echo(&mut client, Message::binary(vec![1u8; 1000]));
    client.send(Message::binary(vec![1u8; 1001])).unwrap();
    let frame = read_until_close(&mut client).expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1009);
}

#[test]
fn help_mentions_every_flag() {
    let (status, help) = run_binary(&["--help"]);
    assert!(status.success(), "--help exit {status}");
    for flag in [
        "--listen",
        "--mode",
        "--protocol",
        "--max-message",
        "--max-frame",
        "--max-connections",
        "--handshake-timeout",
        "--close-timeout",
        "--shutdown-timeout",
        "--history",
        "--publish-token",
        "--cors-origin",
        "--max-backlog",
        "--backlog-policy",
        "--channel-policy",
        "--history-bytes",
        "--max-channels",
        "--ping-interval",
        "--pong-timeout",
        "--origin",
        "--deflate",
        "--deflate-window-bits",
        "--deflate-client-window-bits",
        "--deflate-context-takeover",
        "--deflate-threshold",
        "--deflate-level",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    for mode in ["echo", "chat"] {
        assert!(help.contains(mode), "--help lacks mode {mode}:\n{help}");
    }
}

#[test]
fn bad_flag_fails() {
    let (status, _) = run_binary(&["--mode", "shout"]);
    assert!(!status.success());
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits_zero() {
    let mut server = Binary::start(&["--mode", "echo"]);
    let (mut client, _) = connect(server.addr, "/ws");
    assert_echo(&mut client, Message::text("before the signal"));
    server.signal("TERM");
    let frame = read_until_close(&mut client).expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1001);
    drop(client);
    let status = server.wait_exit(TIMEOUT * 2);
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[test]
fn sigterm_with_no_clients_exits_zero() {
    let mut server = Binary::start(&[]);
    server.signal("TERM");
    let status = server.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[test]
fn cannot_listen_on_a_taken_port_exits_nonzero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, _) = run_binary(&["--listen", &addr]);
    assert_eq!(status.code(), Some(1), "exit status {status}");
}

#[test]
fn publish_subcommand_posts_to_a_running_server() {
    let server = Binary::start(&["--mode", "chat"]);
    let url = format!("http://{}", server.addr);
    let (status, out) = run_binary(&["publish", "news", "first", "--server", &url]);
    assert!(status.success(), "exit {status}: {out}");
    assert_eq!(out.trim(), r#"{"id":1,"delivered":0}"#);
    let (status, out) = run_binary(&["publish", "news", "second", "--server", &url]);
    assert!(status.success(), "exit {status}: {out}");
    assert_eq!(out.trim(), r#"{"id":2,"delivered":0}"#);
    let poll = http_exchange(
        server.addr,
        b"GET /poll/news?since=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(poll.status, 200, "{poll:?}");
    assert_eq!(
        String::from_utf8_lossy(&poll.body),
        r#"{"messages":[{"id":1,"data":"first"},{"id":2,"data":"second"}],"next":2,"truncated":false}"#
    );
    let (status, _) = run_binary(&["publish", "bad name", "x", "--server", &url]);
    assert!(!status.success());
}

#[test]
fn origin_allowlist_refuses_other_origins_with_403() {
    let server = Binary::start(&["--mode", "echo", "--origin", "https://good.example"]);
    let good = http_exchange(
        server.addr,
        &upgrade_head("/ws", &[], &[("Origin", "https://good.example")]),
    );
    assert_eq!(good.status, 101, "{good:?}");
    for head in [
        upgrade_head("/ws", &[], &[("Origin", "https://evil.example")]),
        upgrade_head("/ws", &[], &[]),
    ] {
        let refused = http_exchange(server.addr, &head);
        assert_eq!(refused.status, 403, "{refused:?}");
    }
    // Without --origin every origin is allowed.
    let open = Binary::start(&["--mode", "echo"]);
    let any = http_exchange(
        open.addr,
        &upgrade_head("/ws", &[], &[("Origin", "https://evil.example")]),
    );
    assert_eq!(any.status, 101, "{any:?}");
}

#[test]
fn malformed_limit_flags_are_refused_before_listening() {
    for args in [
        &["--backlog-policy", "drop"][..],
        &["--channel-policy", "ticker"],
        &["--channel-policy", "ticker=fast"],
        &["--deflate", "maybe"],
        &["--deflate-window-bits", "8"],
        &["--deflate-level", "10"],
    ] {
        let (status, output) = run_binary(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {output}");
    }
}

/// CPU time (user + system, in clock ticks) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_file_descriptors_the_loop_backs_off_and_keeps_serving() {
    let server = Binary::start(&["--mode", "echo"]);
    let pid = server.pid();
    let url = format!("ws://{}/ws", server.addr);
    let (mut good, _) = connect_request(server.addr, url.as_str().into_client_request().unwrap());
    // Room for two more sockets, then every accept fails with EMFILE.
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let (mut soft, mut hard) = (0, 0);
    let nofile = rlimit::Resource::NOFILE;
    rlimit::prlimit(pid as i32, nofile, None, Some((&mut soft, &mut hard))).unwrap();
    rlimit::prlimit(pid as i32, nofile, Some((open_fds + 2, hard)), None)
        .expect("lower the server's descriptor limit");
    let waiting: Vec<_> = (0..20).map(|_| tcp(server.addr)).collect();
    assert_echo(&mut good, Message::text("served while out of descriptors"));
    // A spinning loop would burn the whole second; backing off costs next to nothing.
    let before = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_secs(1)); // a measurement window
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 15,
        "{used} ticks of CPU in one second: the accept loop spins"
    );
    assert_echo(&mut good, Message::text("still served"));
    // Descriptors come back: the queued connections are accepted on the next retry.
    drop(waiting);
    rlimit::prlimit(pid as i32, nofile, Some((soft, hard)), None).unwrap();
    let (mut late, _) = connect_request(server.addr, url.as_str().into_client_request().unwrap());
    assert_echo(&mut late, Message::text("accepted after the back-off"));
}
