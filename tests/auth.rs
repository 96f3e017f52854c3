//! Who is connected, against the real binary: JWT verification and its attacks (each
//! with its exact answer, before any upgrade), `--auth required`, private and personal
//! channels, the `publish` claim, `pushloop.v1` subscriptions on one socket,
//! `/publish/user/<id>` and `/disconnect/user/<id>`, token expiry and `refresh`. The
//! tests that involve channels run with one worker and with two.

#[macro_use]
mod common;

use common::auth::*;
use common::push::*;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// A server that verifies HS256 tokens signed with [`SECRET`].
fn server(w: Workers, extra: &[&str]) -> Binary {
    let mut args = vec!["--jwt-secret", SECRET];
    args.extend_from_slice(extra);
    w.start(&args)
}

/// `path` with `?token=`/`&token=` added.
fn with_token(path: &str, token: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}token={token}")
}

/// Reads until the server ends the stream (EOF), within the socket's timeout.
fn assert_sse_ends(sse: &mut Sse) {
    let mut chunk = [0u8; 4096];
    for _ in 0..1000 {
        match sse.stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => panic!("the SSE stream did not end: {e}"),
        }
    }
    panic!("the SSE stream kept sending");
}

// ---------------------------------------------------------------------------------------
// Verification and its attacks
// ---------------------------------------------------------------------------------------

#[test]
fn attacks_get_their_exact_401_before_any_upgrade() {
    let server = Workers(1).start(&[
        "--jwt-secret",
        SECRET,
        "--jwt-audience",
        "app",
        "--jwt-issuer",
        "issuer",
    ]);
    let addr = server.addr;
    let good = json!({"sub":"alice","aud":"app","iss":"issuer","exp": now() + 600});
    let valid = mint(good.clone());
    assert_eq!(
        upgrade(addr, &with_token("/ws/news", &valid), &[]).status,
        101
    );

    let none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(good.to_string());
        format!("{header}.{payload}.")
    };
    let tampered = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
        let mut claims = good.clone();
        claims["sub"] = json!("mallory");
        parts[1] = b64.encode(claims.to_string());
        parts.join(".")
    };
    let claims = |change: serde_json::Value| {
        let mut c = good.clone();
        for (k, v) in change.as_object().unwrap() {
            c[k] = v.clone();
        }
        mint(c)
    };
    let cases = [
        ("alg none", none, "malformed token"),
        ("payload changed", tampered, "bad token signature"),
        (
            "another secret",
            mint_with(good.clone(), b"another secret"),
            "bad token signature",
        ),
        (
            "expired",
            claims(json!({"exp": now() - 60})),
            "token expired",
        ),
        (
            "nbf in the future",
            claims(json!({"nbf": now() + 600})),
            "token not valid yet",
        ),
        (
            "wrong aud",
            claims(json!({"aud": "other"})),
            "wrong token audience",
        ),
        (
            "wrong iss",
            claims(json!({"iss": "other"})),
            "wrong token issuer",
        ),
        ("garbage", "not.a.token".to_owned(), "malformed token"),
    ];
    for (what, token, error) in &cases {
        let query = upgrade(addr, &with_token("/ws/news", token), &[]);
        assert_refused(&query, 401, error);
        assert_eq!(query.header("www-authenticate"), Some("Bearer"), "{what}");
        let bearer = format!("Bearer {token}");
        let header = upgrade(addr, "/ws/news", &[("Authorization", &bearer)]);
        assert_refused(&header, 401, error);
        // SSE and long polls get the same answer.
        let sse = get(addr, &with_token("/sse/news", token), &[]);
        assert_refused(&sse, 401, error);
        let poll = get(addr, &with_token("/poll/news", token), &[]);
        assert_refused(&poll, 401, error);
    }
    // A 20 KB token does not fit a request head.
    let huge = "a".repeat(20 << 10);
    assert_eq!(
        upgrade(addr, &with_token("/ws/news", &huge), &[]).status,
        431
    );
    // Nothing else was disturbed: a good token still upgrades, anonymous echo works.
    assert_eq!(
        upgrade(addr, &with_token("/ws/news", &valid), &[]).status,
        101
    );
    let bearer = format!("Bearer {valid}");
    assert_eq!(
        upgrade(addr, "/ws/news", &[("Authorization", &bearer)]).status,
        101
    );
}

#[test]
fn the_algorithm_comes_from_the_key_not_the_token() {
    let server = Workers(1).start(&["--jwt-public-key", RSA_PUBLIC]);
    let addr = server.addr;
    let claims = json!({"sub":"alice","exp": now() + 600});
    let rs256 = mint_rs256(claims.clone());
    assert_eq!(
        upgrade(addr, &with_token("/ws/news", &rs256), &[]).status,
        101
    );
    // HMAC with the public key as its secret: the classic confusion.
    let public_pem = std::fs::read(RSA_PUBLIC).unwrap();
    let confused = mint_with(claims.clone(), &public_pem);
    assert_refused(
        &upgrade(addr, &with_token("/ws/news", &confused), &[]),
        401,
        "token algorithm not accepted",
    );
    // An HS256 token with the right claims and any secret is refused the same way.
    assert_refused(
        &upgrade(addr, &with_token("/ws/news", &mint(claims)), &[]),
        401,
        "token algorithm not accepted",
    );
    assert_eq!(
        upgrade(addr, &with_token("/ws/news", &rs256), &[]).status,
        101
    );
}

#[test]
fn auth_required_refuses_anonymous_clients_on_every_transport() {
    let server = Workers(1).start(&["--jwt-secret", SECRET, "--auth", "required"]);
    let addr = server.addr;
    assert_refused(&upgrade(addr, "/ws/news", &[]), 401, "a token is required");
    assert_refused(&get(addr, "/sse/news", &[]), 401, "a token is required");
    assert_refused(&get(addr, "/poll/news", &[]), 401, "a token is required");
    let token = mint(json!({"sub":"bob"}));
    assert_eq!(
        upgrade(addr, &with_token("/ws/news", &token), &[]).status,
        101
    );
    let mut stream = sse(addr, &with_token("/sse/news", &token), &[]);
    publish(addr, "news", "hello");
    assert_eq!(stream.event(), SseEvent::text(1, &["hello"]));
    let polled = poll(addr, &with_token("/poll/news?since=0", &token));
    assert_eq!(polled.messages.len(), 1);
}

#[test]
fn auth_required_without_a_key_is_a_usage_error() {
    let out = output_within(
        {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pushloop"));
            c.args(["--listen", "127.0.0.1:0", "--auth", "required"]);
            c
        },
        TIMEOUT,
    )
    .expect("exits");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auth required needs"));
}

// ---------------------------------------------------------------------------------------
// Channel kinds and claims
// ---------------------------------------------------------------------------------------

fn private_and_personal_channels(w: Workers) {
    let server = server(w, &[]);
    let addr = server.addr;
    let alice = mint(json!({"sub":"alice","channels":["private:team","user:*"]}));
    let bob = mint(json!({"sub":"bob"}));
    // Anonymous: public yes, private and personal need a token.
    let mut anonymous = ws(addr, "/ws/news", false);
    for path in ["/ws/private:team", "/ws/user:alice"] {
        assert_refused(
            &upgrade(addr, path, &[]),
            401,
            "a token is needed for this channel",
        );
    }
    assert_refused(
        &get(addr, "/sse/private:team", &[]),
        401,
        "a token is needed for this channel",
    );
    // The claim grants private:team, not private:other.
    assert_eq!(
        upgrade(addr, &with_token("/ws/private:team", &alice), &[]).status,
        101
    );
    assert_refused(
        &upgrade(addr, &with_token("/ws/private:other", &alice), &[]),
        403,
        "the token does not grant this channel",
    );
    assert_refused(
        &upgrade(addr, &with_token("/ws/private:team", &bob), &[]),
        403,
        "the token does not grant this channel",
    );
    // user:<id> is its user's only, whatever the channels claim says.
    assert_eq!(
        upgrade(addr, &with_token("/ws/user:alice", &alice), &[]).status,
        101
    );
    assert_refused(
        &upgrade(addr, &with_token("/ws/user:bob", &alice), &[]),
        403,
        "the personal channel of another user",
    );
    assert_refused(
        &get(addr, &with_token("/poll/user:alice", &bob), &[]),
        403,
        "the personal channel of another user",
    );
    // Nothing else was disturbed.
    wait_ws_members(addr, "news", 1);
    publish(addr, "news", "still served");
    assert_eq!(recv_text(&mut anonymous), "still served");
}

fn publishing_needs_the_publish_claim(w: Workers) {
    let server = server(w, &[]);
    let addr = server.addr;
    let reader = mint(json!({"sub":"reader"}));
    let writer = mint(json!({"sub":"writer","publish":["room*"]}));
    let mut listener = ws(addr, "/ws/room", false);
    // A raw client without the claim: closed with 1008.
    let mut raw = ws(addr, &with_token("/ws/room", &reader), false);
    raw.send(Message::text("not allowed")).unwrap();
    let close = read_until_close(&mut raw).expect("a Close frame");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(
        close.reason.as_str(),
        "the token may not publish to this channel"
    );
    // A pushloop.v1 client without the claim: an error, and the socket stays open.
    let mut env = v1(addr, &with_token("/ws/room", &reader));
    env.send(Message::text("not allowed either")).unwrap();
    assert_eq!(
        recv_json(&mut env),
        json!({"type":"error","code":403,"message":"the token may not publish to this channel"})
    );
    send_json(
        &mut env,
        json!({"type":"publish","channel":"room","data":"x","req":9}),
    );
    assert_eq!(
        recv_json(&mut env),
        json!({"type":"error","code":403,"message":"the token may not publish to this channel","req":9})
    );
    // With the claim the message goes through, and the listener sees only it.
    let mut writer_ws = v1(addr, &with_token("/ws/room", &writer));
    send_json(
        &mut writer_ws,
        json!({"type":"publish","channel":"room","data":"hello","req":1}),
    );
    assert_eq!(
        recv_json(&mut writer_ws),
        json!({"type":"ack","channel":"room","id":1,"req":1})
    );
    assert_eq!(recv_text(&mut listener), "hello");
    // The refused v1 client is still subscribed and gets it too.
    assert_eq!(recv_text(&mut env), envelope("room", 1, "hello"));
}

// ---------------------------------------------------------------------------------------
// Many channels on one WebSocket
// ---------------------------------------------------------------------------------------

fn one_socket_resumes_three_subscriptions(w: Workers) {
    let server = server(w, &[]);
    let addr = server.addr;
    let alice = mint(json!({"sub":"alice","channels":["private:*"]}));
    let channels = ["news", "private:room", "user:alice"];
    let mut client = v1(addr, &with_token("/ws/lobby", &alice));
    for (req, channel) in channels.iter().enumerate() {
        send_json(
            &mut client,
            json!({"type":"subscribe","channel":channel,"req":req}),
        );
        assert_eq!(
            recv_json(&mut client),
            json!({"type":"subscribed","channel":channel,"last_id":0,"req":req})
        );
    }
    // Refusals name the request and keep the socket.
    send_json(
        &mut client,
        json!({"type":"subscribe","channel":"user:bob","req":7}),
    );
    assert_eq!(
        recv_json(&mut client),
        json!({"type":"error","code":403,"message":"the personal channel of another user","req":7})
    );
    send_json(
        &mut client,
        json!({"type":"subscribe","channel":"news","req":8}),
    );
    assert_eq!(
        recv_json(&mut client),
        json!({"type":"error","code":409,"message":"already subscribed","req":8})
    );
    // Each message names its channel.
    for channel in channels {
        wait_ws_members(addr, channel, 1);
        assert_eq!(publish(addr, channel, "one"), 1);
        assert_eq!(recv_text(&mut client), envelope(channel, 1, "one"));
    }
    drop(client);
    for channel in channels {
        publish(addr, channel, "two");
        publish(addr, channel, "three");
    }
    // A reconnect resumes all three from the ids it saw.
    let mut client = v1(addr, &with_token("/ws/lobby", &alice));
    for (req, channel) in channels.iter().enumerate() {
        send_json(
            &mut client,
            json!({"type":"subscribe","channel":channel,"since":1,"req":req}),
        );
        // `last_id` is the channel's as this worker knows it (with several workers, as of
        // the owner's last turn): at most 3.
        let mut answer = recv_json(&mut client);
        let last_id = answer["last_id"].take();
        assert!(last_id.as_u64().is_some_and(|id| id <= 3), "{last_id}");
        answer.as_object_mut().unwrap().remove("last_id");
        assert_eq!(
            answer,
            json!({"type":"subscribed","channel":channel,"req":req})
        );
        assert_eq!(recv_text(&mut client), envelope(channel, 2, "two"));
        assert_eq!(recv_text(&mut client), envelope(channel, 3, "three"));
    }
    send_json(
        &mut client,
        json!({"type":"unsubscribe","channel":"news","req":5}),
    );
    assert_eq!(
        recv_json(&mut client),
        json!({"type":"unsubscribed","channel":"news","req":5})
    );
    publish(addr, "news", "not for you");
    publish(addr, "private:room", "four");
    assert_eq!(recv_text(&mut client), envelope("private:room", 4, "four"));
}

/// Waits until `channel` has `n` WebSocket members (presence is global as of each
/// owner's last turn).
fn wait_ws_members(addr: std::net::SocketAddr, channel: &str, n: usize) {
    let deadline = Instant::now() + TIMEOUT;
    let want = format!("\"websocket\":{n},");
    loop {
        let answer = get(addr, &format!("/channels/{channel}"), &[]);
        if body(&answer).contains(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "{channel}: {}", body(&answer));
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

fn publish_and_disconnect_reach_every_tab_of_a_user(w: Workers) {
    let server = server(w, &[]);
    let addr = server.addr;
    let alice = mint(json!({"sub":"alice"}));
    let bob = mint(json!({"sub":"bob"}));
    let mut tab_ws = v1(addr, &with_token("/ws/user:alice", &alice));
    let mut tab_sse = sse(addr, &with_token("/sse/user:alice", &alice), &[]);
    let mut bob_ws = v1(addr, &with_token("/ws/user:bob", &bob));
    let mut bob_news = v1(addr, &with_token("/ws/news", &bob));
    wait_ws_members(addr, "user:alice", 1);
    let answer = post(
        addr,
        "/publish/user/alice",
        Some("text/plain"),
        b"hi alice",
        &[],
    );
    assert_json(&answer, "{\"id\":1,\"delivered\":2}");
    assert_eq!(
        recv_text(&mut tab_ws),
        envelope("user:alice", 1, "hi alice")
    );
    assert_eq!(tab_sse.event(), SseEvent::text(1, &["hi alice"]));
    // Bob got nothing: his next message is the one sent to him.
    post(
        addr,
        "/publish/user/bob",
        Some("text/plain"),
        b"hi bob",
        &[],
    );
    assert_eq!(recv_text(&mut bob_ws), envelope("user:bob", 1, "hi bob"));
    // Logout: both of alice's tabs go, bob stays.
    let answer = post(addr, "/disconnect/user/alice", None, b"", &[]);
    assert_json(&answer, "{\"disconnected\":2}");
    let close = read_until_close(&mut tab_ws).expect("a Close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4003, "disconnected")
    );
    assert_sse_ends(&mut tab_sse);
    publish(addr, "news", "still here");
    assert_eq!(recv_text(&mut bob_news), envelope("news", 1, "still here"));
    let answer = post(addr, "/disconnect/user/nobody", None, b"", &[]);
    assert_json(&answer, "{\"disconnected\":0}");
    assert_eq!(get(addr, "/disconnect/user/alice", &[]).status, 405);
}

fn disconnect_answers_a_held_poll_with_403_and_ends_every_transport(w: Workers) {
    let server = server(w, &[]);
    let addr = server.addr;
    let alice = mint(json!({"sub":"alice"}));
    let bob = mint(json!({"sub":"bob"}));
    let mut alice_ws = ws(addr, &with_token("/ws/news", &alice), false);
    let mut alice_sse = sse(addr, &with_token("/sse/news", &alice), &[]);
    let both = with_token("/sse?channel=news&channel=other", &alice);
    let mut alice_both = sse(addr, &both, &[]);
    let hold = |token: &str| {
        let mut stream = tcp(addr);
        let path = with_token("/poll/news", token);
        stream
            .write_all(&request("GET", &path, &[], b""))
            .expect("send the poll");
        stream
    };
    let (mut alice_poll, mut bob_poll) = (hold(&alice), hold(&bob));
    // Nothing new in news: both polls are held (counted as members) before the logout.
    wait_presence(addr, "news", &presence("news", 1, 2, 2, 0));
    let answer = post(addr, "/disconnect/user/alice", None, b"", &[]);
    assert_json(&answer, "{\"disconnected\":4}");
    assert_refused(&read_response(&mut alice_poll), 403, "disconnected");
    let close = read_until_close(&mut alice_ws).expect("a Close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4003, "disconnected")
    );
    assert_sse_ends(&mut alice_sse);
    assert_sse_ends(&mut alice_both);
    // Bob's poll is still held, and gets the next message.
    wait_presence(addr, "news", &presence("news", 0, 0, 1, 0));
    assert_eq!(publish(addr, "news", "for bob"), 1);
    let answer = read_response(&mut bob_poll);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        parse_poll(body(&answer)),
        PollBody {
            messages: texts(&[(1, "for bob")]),
            next: 1,
            truncated: false,
        }
    );
}

// ---------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------

#[test]
fn an_expired_websocket_is_closed_with_4001_unless_refreshed() {
    let server = server(Workers(1), &[]);
    let addr = server.addr;
    // The server's leeway applies to the check at the upgrade, not to the expiry.
    let soon = now() + 2;
    let token = mint(json!({"sub":"alice","exp": soon}));
    let started = Instant::now();
    let mut expiring = v1(addr, &with_token("/ws/news", &token));
    let mut refreshed = v1(addr, &with_token("/ws/news", &token));
    let fresh = mint(json!({"sub":"alice","exp": now() + 600}));
    send_json(
        &mut refreshed,
        json!({"type":"refresh","token":fresh,"req":1}),
    );
    assert_eq!(
        recv_json(&mut refreshed),
        json!({"type":"refreshed","expires": now_plus(&fresh),"req":1})
    );
    // Another user's token does not refresh alice's connection.
    let other = mint(json!({"sub":"bob","exp": now() + 600}));
    send_json(&mut refreshed, json!({"type":"refresh","token":other}));
    assert_eq!(
        recv_json(&mut refreshed),
        json!({"type":"error","code":403,"message":"the token is for another user"})
    );
    let close = read_until_close(&mut expiring).expect("a Close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4001, "token expired")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The refreshed one is still served after the first token's expiry.
    publish(addr, "news", "after");
    assert_eq!(recv_text(&mut refreshed), envelope("news", 1, "after"));
}

/// The `exp` of a token minted by these tests.
fn now_plus(token: &str) -> u64 {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims["exp"].as_u64().unwrap()
}

#[test]
fn the_leave_notice_of_an_expired_connection_names_its_user() {
    let server = server(Workers(1), &["--presence-events"]);
    let addr = server.addr;
    let mut watcher = ws(addr, "/ws/room", false);
    assert_eq!(presence_notice(&mut watcher).2, None);
    let token = mint(json!({"sub":"alice","exp": now() + 2}));
    let mut expiring = ws(addr, &with_token("/ws/room", &token), false);
    let joined = presence_notice(&mut watcher);
    assert_eq!(
        (joined.0.as_str(), joined.2.as_deref()),
        ("join", Some("alice"))
    );
    let close = read_until_close(&mut expiring).expect("a Close frame");
    assert_eq!(u16::from(close.code), 4001);
    let left = presence_notice(&mut watcher);
    assert_eq!(
        (left.0.as_str(), left.1.as_str(), left.2.as_deref(), left.3),
        ("leave", "websocket", Some("alice"), 1)
    );
}

#[test]
fn an_expired_sse_stream_ends() {
    let server = server(Workers(1), &[]);
    let token = mint(json!({"sub":"alice","exp": now() + 2}));
    let mut stream = sse(server.addr, &with_token("/sse/news", &token), &[]);
    assert_sse_ends(&mut stream);
}

/// The next presence notice `client` (a raw member) gets: `(event, transport, user)`,
/// and its subscriber count.
fn presence_notice(client: &mut Client) -> (String, String, Option<String>, u64) {
    let text = recv_text(client);
    let mut notice: serde_json::Value = serde_json::from_str(&text).unwrap();
    let subscribers = notice["subscribers"].as_u64().expect("subscribers");
    let fields = notice.as_object_mut().unwrap();
    fields.remove("subscribers");
    let user = fields
        .remove("user")
        .map(|u| u.as_str().expect("a string").to_owned());
    assert_eq!(
        (&fields["type"], &fields["channel"], fields.len()),
        (&json!("presence"), &json!("room"), 4),
        "{text}"
    );
    let name = |field: &str| fields[field].as_str().unwrap().to_owned();
    (name("event"), name("transport"), user, subscribers)
}

fn presence_events_name_the_user(w: Workers) {
    let server = server(w, &["--presence-events"]);
    let addr = server.addr;
    let alice = mint(json!({"sub":"alice"}));
    let bob = mint(json!({"sub":"bob"}));
    let mut watcher = ws(addr, "/ws/room", false);
    let mut expect = |event: &str, transport: &str, user: Option<&str>, subscribers: u64| {
        let (got_event, got_transport, got_user, got_subscribers) = presence_notice(&mut watcher);
        assert_eq!(
            (
                got_event.as_str(),
                got_transport.as_str(),
                got_user.as_deref()
            ),
            (event, transport, user)
        );
        // With several workers the count is the directory's, as of the owner's last turn.
        if w.0 == 1 {
            assert_eq!(got_subscribers, subscribers, "{event} {user:?}");
        }
    };
    // The watcher's own join is anonymous: no user.
    expect("join", "websocket", None, 1);
    let alice_ws = ws(addr, &with_token("/ws/room", &alice), false);
    expect("join", "websocket", Some("alice"), 2);
    let bob_sse = sse(addr, &with_token("/sse/room", &bob), &[]);
    expect("join", "sse", Some("bob"), 3);
    let bob_both = sse(
        addr,
        &with_token("/sse?channel=other&channel=room", &bob),
        &[],
    );
    expect("join", "sse", Some("bob"), 4);
    drop(alice_ws);
    expect("leave", "websocket", Some("alice"), 3);
    drop(bob_sse);
    expect("leave", "sse", Some("bob"), 2);
    drop(bob_both);
    expect("leave", "sse", Some("bob"), 1);
}

with_one_and_two_workers!(
    private_and_personal_channels,
    publishing_needs_the_publish_claim,
    one_socket_resumes_three_subscriptions,
    publish_and_disconnect_reach_every_tab_of_a_user,
    presence_names_the_users,
    presence_events_name_the_user,
    disconnect_answers_a_held_poll_with_403_and_ends_every_transport,
);

// ---------------------------------------------------------------------------------------
// A second implementation: PyJWT
// ---------------------------------------------------------------------------------------

#[test]
fn tokens_minted_by_pyjwt_get_the_same_answers() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py3/bin/python");
    let how = "run ./test.sh (it installs target/py3 with PyJWT and cryptography)";
    let import = std::process::Command::new(&python)
        .args(["-c", "import jwt, cryptography, websockets"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}: {how}", python.display()));
    assert!(
        import.status.success(),
        "PyJWT test: {}: {how}",
        String::from_utf8_lossy(&import.stderr)
    );
    let server = Workers(1).start(&[
        "--jwt-secret",
        SECRET,
        "--jwt-public-key",
        RSA_PUBLIC,
        "--jwt-audience",
        "app",
    ]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/auth/pyjwt_client.py");
    let mut command = std::process::Command::new(&python);
    command
        .arg(script)
        .arg(server.addr.to_string())
        .arg(SECRET)
        .arg(RSA_PRIVATE);
    let output = output_within(command, Duration::from_secs(60)).expect("finishes in 60 s");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && out.contains("summary: cases=13 ok=13"),
        "pyjwt_client.py: {out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Abuse limits
// ---------------------------------------------------------------------------------------

/// Upgrades `path` until it is accepted (a seat given back is counted on the server's
/// next turn: until then the upgrade gets 429); at most [`TIMEOUT`]. The attempt that
/// succeeds is the connection returned, so no probe holds a seat meanwhile.
fn upgrade_once_free(addr: std::net::SocketAddr, path: &str) -> Client {
    use tungstenite::client::IntoClientRequest;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let request = format!("ws://{addr}{path}")
            .into_client_request()
            .expect("request");
        match tungstenite::client::client(request, common::tcp(addr)) {
            Ok((client, _)) => return client,
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response)))
                if response.status() == 429 => {}
            Err(e) => panic!("upgrade {path}: {e}"),
        }
        assert!(Instant::now() < deadline, "the seat never came back");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn connections_per_address_are_capped_with_429() {
    let server = Workers(2).start(&["--max-connections-per-ip", "2"]);
    let addr = server.addr;
    let first = ws(addr, "/ws/a", false);
    let mut second = ws(addr, "/ws/a", false);
    assert_refused(
        &upgrade(addr, "/ws/a", &[]),
        429,
        "too many connections from this address",
    );
    assert_refused(
        &get(addr, "/sse/a", &[]),
        429,
        "too many connections from this address",
    );
    // Short requests are not counted.
    assert_eq!(get(addr, "/channels", &[]).status, 200);
    drop(first);
    let _third = upgrade_once_free(addr, "/ws/a");
    publish(addr, "a", "still served");
    assert_eq!(recv_text(&mut second), "still served");
}

#[test]
fn connections_per_user_are_capped_on_every_transport() {
    let server = server(Workers(2), &["--max-connections-per-user", "1"]);
    let addr = server.addr;
    let alice = mint(json!({"sub":"alice"}));
    let bob = mint(json!({"sub":"bob"}));
    let _tab = ws(addr, &with_token("/ws/a", &alice), false);
    assert_refused(
        &upgrade(addr, &with_token("/ws/a", &alice), &[]),
        429,
        "too many connections of this user",
    );
    assert_refused(
        &get(addr, &with_token("/sse/a", &alice), &[]),
        429,
        "too many connections of this user",
    );
    assert_eq!(upgrade(addr, &with_token("/ws/a", &bob), &[]).status, 101);
    // Anonymous clients have no user to count.
    assert_eq!(upgrade(addr, "/ws/a", &[]).status, 101);
}

#[test]
fn handshake_rate_answers_429_with_retry_after_per_client_address() {
    let server = Workers(1).start(&["--handshake-rate", "1", "--trusted-proxy", "127.0.0.0/8"]);
    let addr = server.addr;
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    assert_eq!(upgrade(addr, "/ws/a", &from("192.0.2.1")).status, 101);
    let refused = upgrade(addr, "/ws/a", &from("192.0.2.1"));
    assert_refused(&refused, 429, "too many new connections");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_refused(
        &get(addr, "/poll/a", &from("192.0.2.1")),
        429,
        "too many new connections",
    );
    // Another client behind the same proxy has its own bucket.
    assert_eq!(upgrade(addr, "/ws/a", &from("192.0.2.2")).status, 101);
    // A forged hop in front of the proxy's is not the client: the nearest untrusted one is.
    assert_eq!(
        upgrade(addr, "/ws/a", &from("192.0.2.1, 198.51.100.7")).status,
        101
    );
}

fn presence_names_the_users(w: Workers) {
    let server = server(w, &[]);
    let addr = server.addr;
    let alice = mint(json!({"sub":"alice","info":{"name":"Alice"}}));
    let bob = mint(json!({"sub":"bob"}));
    let _tabs = [
        ws(addr, &with_token("/ws/room", &alice), false),
        ws(addr, &with_token("/ws/room", &alice), false),
        ws(addr, &with_token("/ws/room", &bob), false),
        ws(addr, "/ws/room", false),
    ];
    let _stream = sse(addr, &with_token("/sse/room", &bob), &[]);
    wait_ws_members(addr, "room", 4);
    let answer = get(addr, "/channels/room/presence", &[]);
    assert_eq!(answer.status, 200);
    let got: serde_json::Value = serde_json::from_str(body(&answer)).unwrap();
    assert_eq!(
        got,
        json!({"channel":"room","anonymous":1,"users":[
            {"user":"alice","connections":2,"info":{"name":"Alice"}},
            {"user":"bob","connections":2}]})
    );
    let empty = get(addr, "/channels/nobody/presence", &[]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body(&empty)).unwrap(),
        json!({"channel":"nobody","anonymous":0,"users":[]})
    );
}
