//! The example programs of `examples/`, each driven by a real client (tungstenite) the
//! way its doc comment says to use it, and the embedding API's cross-thread publish under
//! load.
mod common;

use common::*;
use pushloop::{ConnId, Context, Handler, Message, Refusal, Request, Server, ENVELOPE_PROTOCOL};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message as Ws;

/// The next text message, failing on anything else.
fn text(client: &mut Client) -> String {
    match recv(client) {
        Ws::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// A client that offers the `pushloop.v1` subprotocol.
fn envelope_client(addr: SocketAddr, path: &str) -> Client {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", ENVELOPE_PROTOCOL.parse().unwrap());
    let (client, response) = connect_request(addr, request);
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some(ENVELOPE_PROTOCOL)
    );
    client
}

/// The number after `"key":` in a JSON text.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The string after `"key":` in a JSON text (no escapes in these tests).
fn json_string(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    Some(json[at..].split('"').next()?.to_owned())
}

#[test]
fn nickname_chat_announces_joins_messages_and_leaves_by_nickname() {
    let chat = Example::start("nickname_chat", &[]);
    let (mut ana, _) = connect(chat.addr, "/?nick=ana");
    assert_eq!(text(&mut ana), "* welcome, ana (1 online)");
    let (mut bo, _) = connect(chat.addr, "/?nick=bo%20b");
    assert_eq!(text(&mut bo), "* welcome, bo b (2 online)");
    assert_eq!(text(&mut ana), "* bo b joined");
    ana.send(Ws::text("hello")).unwrap();
    assert_eq!(text(&mut bo), "ana: hello");
    bo.send(Ws::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(text(&mut ana), "bo b sent 3 bytes");
    let (mut guest, _) = connect(chat.addr, "/");
    let welcome = text(&mut guest);
    assert!(welcome.starts_with("* welcome, guest-"), "{welcome}");
    let guest_joined = text(&mut ana);
    assert!(guest_joined.starts_with("* guest-") && guest_joined.ends_with(" joined"));
    assert_eq!(text(&mut bo), guest_joined);
    bo.close(None).unwrap();
    assert_eq!(text(&mut ana), "* bo b left");
    assert_eq!(text(&mut guest), "* bo b left");
}

#[test]
fn backend_thread_sends_to_the_user_and_publishes_to_the_user_s_channel() {
    let backend = Example::start("backend_push", &[]);
    let (mut ana, _) = connect(backend.addr, "/ws?user=ana");
    assert_eq!(text(&mut ana), "welcome ana");
    assert_eq!(text(&mut ana), "ana, you have 3 new notifications");
    let published = backend.lines.recv_timeout(TIMEOUT).expect("backend's line");
    assert_eq!(published, "published #1 to user.ana, delivered to 1");
    // A second tab of ana's: its own welcome, and the publish reaches both tabs.
    let (mut ana2, _) = connect(backend.addr, "/ws?user=ana");
    assert_eq!(text(&mut ana2), "welcome ana");
    assert_eq!(text(&mut ana2), "ana, you have 3 new notifications");
    assert_eq!(text(&mut ana), "ana, you have 3 new notifications");
    let published = backend.lines.recv_timeout(TIMEOUT).expect("backend's line");
    assert_eq!(published, "published #2 to user.ana, delivered to 2");
    // Bo gets his own, never ana's.
    let (mut bo, _) = connect(backend.addr, "/ws?user=bo");
    assert_eq!(text(&mut bo), "welcome bo");
    assert_eq!(text(&mut bo), "bo, you have 3 new notifications");
    let published = backend.lines.recv_timeout(TIMEOUT).expect("backend's line");
    assert_eq!(published, "published #1 to user.bo, delivered to 1");
    // No user: refused with 400 before the upgrade.
    let response = http_exchange(backend.addr, &upgrade_head("/ws", &[], &[]));
    assert_eq!(response.status, 400);
}

#[test]
fn poll_once_program_publishes_a_tick_every_100_ms() {
    let ticker = Example::start("poll_loop", &[]);
    let (mut client, _) = connect(ticker.addr, "/");
    let started = Instant::now();
    let mut last = 0;
    for _ in 0..5 {
        let tick = text(&mut client);
        let n: u64 = tick
            .strip_prefix("tick ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{tick:?}"));
        assert!(n > last, "tick {n} after {last}");
        last = n;
    }
    // Five consecutive ticks take at least four periods.
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn rooms_resume_from_history_and_each_client_gets_its_own_form() {
    let rooms = Example::start("rooms", &[("ANNOUNCE_MS", "100")]);
    let mut raw = connect(rooms.addr, "/rooms/lobby").0;
    let mut enveloped = envelope_client(rooms.addr, "/rooms/lobby");
    // The Handle thread's announcements: raw text, and an envelope with its id.
    let announcement = text(&mut raw);
    assert!(announcement.starts_with("announcement "), "{announcement}");
    let json = text(&mut enveloped);
    assert_eq!(json_string(&json, "type").as_deref(), Some("message"));
    assert_eq!(json_string(&json, "channel").as_deref(), Some("lobby"));
    assert!(json_string(&json, "data")
        .unwrap()
        .starts_with("announcement "));
    // HTTP publishes into a room; both forms arrive.
    let post = b"POST /rooms/kitchen HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let mut cook = connect(rooms.addr, "/rooms/kitchen").0;
    let mut chef = envelope_client(rooms.addr, "/rooms/kitchen");
    let response = http_exchange(rooms.addr, post);
    assert_eq!(response.status, 200);
    let body = String::from_utf8(response.body).unwrap();
    assert_eq!(json_number(&body, "id"), Some(1), "{body}");
    assert_eq!(json_number(&body, "delivered"), Some(2), "{body}");
    assert_eq!(text(&mut cook), "hello");
    let json = text(&mut chef);
    assert_eq!(json_number(&json, "id"), Some(1));
    assert_eq!(json_string(&json, "data").as_deref(), Some("hello"));
    // A client's message goes to the others; its sender (envelope) gets the id in an ack.
    chef.send(Ws::text("soup's on")).unwrap();
    assert_eq!(text(&mut cook), "soup's on");
    let ack = text(&mut chef);
    assert_eq!(json_string(&ack, "type").as_deref(), Some("ack"));
    assert_eq!(json_number(&ack, "id"), Some(2));
    // The cook leaves, two more messages come, the cook resumes from id 2: exactly 3, 4.
    drop(cook);
    for body in ["three", "four"] {
        let head = format!(
            "POST /rooms/kitchen HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(http_exchange(rooms.addr, head.as_bytes()).status, 200);
    }
    let mut cook = connect(rooms.addr, "/rooms/kitchen?since=2").0;
    assert_eq!(text(&mut cook), "three");
    assert_eq!(text(&mut cook), "four");
    let mut late = envelope_client(rooms.addr, "/rooms/kitchen?since=1");
    let ids: Vec<u64> = (0..3)
        .map(|_| json_number(&text(&mut late), "id").unwrap())
        .collect();
    assert_eq!(ids, [2, 3, 4]);
    // Bad rooms are refused before the upgrade.
    let response = http_exchange(rooms.addr, &upgrade_head("/rooms/bad%20room", &[], &[]));
    assert_eq!(response.status, 404);
}

/// Joins every client to `stress` and speaks `pushloop.v1`.
struct Subscribers;

impl Handler for Subscribers {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        _: &Request<'_>,
    ) -> Result<(), Refusal> {
        ctx.join(id, "stress")
            .map_err(|e| Refusal::new(500, e.to_string()))
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {}
}

#[test]
fn handle_publish_from_8_threads_reaches_every_subscriber_once_in_order() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1_250; // 10,000 in all
    const SUBSCRIBERS: usize = 3;
    let config = pushloop::Config::default().protocols([ENVELOPE_PROTOCOL]);
    let server = Server::bind_with("127.0.0.1:0", config).unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    let loop_thread = std::thread::spawn(move || server.run(Subscribers));
    let mut clients: Vec<Client> = (0..SUBSCRIBERS)
        .map(|_| envelope_client(addr, "/ws"))
        .collect();
    // Everyone is a member before the first publish.
    let members = handle
        .defer(|ctx| ctx.channel("stress").map_or(0, |c| c.counts().websocket))
        .wait()
        .unwrap();
    assert_eq!(members, SUBSCRIBERS);
    let publishers: Vec<_> = (0..THREADS)
        .map(|t| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                let mut last = None;
                for seq in 0..PER_THREAD {
                    last = Some(handle.publish("stress", format!("{t}.{seq}")));
                }
                // Waiting for the last one is enough: one thread's work is done in order.
                last.unwrap().wait().expect("server running").id
            })
        })
        .collect();
    for publisher in publishers {
        let last_id = publisher.join().unwrap();
        assert!(last_id >= PER_THREAD as u64);
    }
    let total = THREADS * PER_THREAD;
    for client in &mut clients {
        let mut next_seq = vec![0usize; THREADS];
        let mut seen_ids = 0u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        for _ in 0..total {
            assert!(Instant::now() < deadline, "10,000 messages took over 30 s");
            let json = text(client);
            let id = json_number(&json, "id").expect("an id");
            // Ids are dense and arrive in order: 1, 2, 3, ...
            assert_eq!(id, seen_ids + 1, "{json}");
            seen_ids = id;
            let data = json_string(&json, "data").unwrap();
            let (t, seq) = data.split_once('.').unwrap();
            let (t, seq): (usize, usize) = (t.parse().unwrap(), seq.parse().unwrap());
            // Each thread's messages come once each, in the order it published them.
            assert_eq!(seq, next_seq[t], "thread {t}");
            next_seq[t] += 1;
        }
        assert_eq!(next_seq, vec![PER_THREAD; THREADS]);
    }
    let stats: HashMap<&str, u64> = handle
        .defer(|ctx| HashMap::from([("dropped", ctx.dropped()), ("overflows", ctx.overflows())]))
        .wait()
        .unwrap();
    assert_eq!(stats["dropped"], 0);
    assert_eq!(stats["overflows"], 0);
    handle.stop().unwrap();
    loop_thread.join().unwrap().unwrap();
}

/// Records nothing; joins nobody.
struct Plain;

impl Handler for Plain {
    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        // A `String` is a text message, a `Vec<u8>` a binary one: no guessing.
        match msg {
            Message::Text(text) => ctx.send(id, format!("you said {text}")),
            Message::Binary(bytes) => ctx.send(id, bytes.to_vec()),
        };
    }
}

#[test]
fn the_embedding_api_from_another_thread_and_between_turns() {
    let config = pushloop::Config::default().protocols([ENVELOPE_PROTOCOL]);
    let mut server = Server::bind_with("127.0.0.1:0", config).unwrap();
    let addr = server.local_addr();
    let handle = server.handle();
    // Between turns of a loop the program drives: publish before anyone listens.
    let first = server.with_context(|ctx| ctx.publish_text("news", "before anyone"));
    assert_eq!((first.id, first.delivered), (1, 0));
    let loop_thread = std::thread::spawn(move || server.run(Plain));

    let mut raw = connect(addr, "/").0;
    let mut enveloped = envelope_client(addr, "/");
    let ids = handle.defer(|ctx| ctx.connections()).wait().unwrap();
    assert_eq!(ids.len(), 2);
    let (raw_id, env_id) = {
        let envelope_id = handle
            .defer(move |ctx| {
                ids.into_iter()
                    .find(|&id| ctx.protocol(id) == Some(ENVELOPE_PROTOCOL))
                    .unwrap()
            })
            .wait()
            .unwrap();
        let all = handle.defer(|ctx| ctx.connections()).wait().unwrap();
        (
            all.into_iter().find(|&id| id != envelope_id).unwrap(),
            envelope_id,
        )
    };
    // ConnId round-trips through u64.
    assert_eq!(ConnId::from_u64(raw_id.as_u64()), raw_id);

    // One message model: a direct send or broadcast is an envelope for pushloop.v1.
    handle.send(env_id, "direct").unwrap();
    assert_eq!(
        text(&mut enveloped),
        r#"{"type":"message","data":"direct"}"#
    );
    handle.broadcast(vec![0u8, 1]).unwrap();
    assert_eq!(recv(&mut raw), Ws::binary(vec![0u8, 1]));
    assert_eq!(
        text(&mut enveloped),
        r#"{"type":"message","data":"AAE=","encoding":"base64"}"#
    );
    raw.send(Ws::text("hi")).unwrap();
    assert_eq!(text(&mut raw), "you said hi");

    // Joining says why not.
    use pushloop::JoinError;
    assert_eq!(
        handle.join(raw_id, "bad name").wait().unwrap(),
        Err(JoinError::InvalidName)
    );
    assert_eq!(handle.join(raw_id, "news").wait().unwrap(), Ok(()));
    assert_eq!(
        handle.join(raw_id, "news").wait().unwrap(),
        Err(JoinError::AlreadyMember)
    );
    assert_eq!(handle.join(env_id, "news").wait().unwrap(), Ok(()));
    let gone = ConnId::from_u64(u64::MAX);
    assert_eq!(
        handle.join(gone, "news").wait().unwrap(),
        Err(JoinError::NotOpen)
    );

    // Publish from this thread: raw and envelope forms, with the id.
    let published = handle.publish("news", "extra").wait().unwrap();
    assert_eq!((published.id, published.delivered), (2, 2));
    assert_eq!(text(&mut raw), "extra");
    assert_eq!(
        text(&mut enveloped),
        r#"{"type":"message","channel":"news","id":2,"data":"extra"}"#
    );

    // The read-only view of a channel.
    let (last_id, members, replayed) = handle
        .defer(move |ctx| {
            let news = ctx.channel("news").unwrap();
            let mut members: Vec<ConnId> = news.members().map(|(id, _)| id).collect();
            members.sort();
            let replayed: Vec<u64> = news.replay(0).messages.iter().map(|m| m.id).collect();
            (news.last_id(), members, replayed)
        })
        .wait()
        .unwrap();
    let mut both = vec![raw_id, env_id];
    both.sort();
    assert_eq!((last_id, members, replayed), (2, both, vec![1, 2]));
    assert!(handle.leave(raw_id, "news").wait().unwrap());
    assert!(!handle.leave(raw_id, "news").wait().unwrap());

    // Per-connection data lives as long as the connection.
    handle
        .defer(move |ctx| ctx.set_data(raw_id, String::from("ana")))
        .wait()
        .unwrap();
    let nick = handle
        .defer(move |ctx| ctx.data::<String>(raw_id).cloned())
        .wait()
        .unwrap();
    assert_eq!(nick.as_deref(), Some("ana"));
    // The server answers a Close after on_close has run, and the data goes with it.
    assert_eq!(close_client(&mut raw, 1000, "bye"), Some(1000));
    let gone = handle
        .defer(move |ctx| ctx.data::<String>(raw_id).is_none())
        .wait()
        .unwrap();
    assert!(gone, "data outlived its connection");
    handle.stop().unwrap();
    loop_thread.join().unwrap().unwrap();
    // After the stop, pending work reports it.
    assert!(handle.publish("news", "late").wait().is_err());
}
