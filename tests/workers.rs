//! `--workers N`: channels that span worker threads. Against the real binary: a chat of 200
//! clients spread over every worker (with SSE and long-poll members seeing the same ids),
//! the publish API reaching members on every worker, resume on another worker, SIGTERM.
//! Through the embedding API: `Handle` and `Context` reaching a connection of another
//! worker, a handler panic, `stop`.

mod common;

use common::push::*;
use common::*;
use pushloop::{Config, ConnId, Context, Handler, Message as Msg, Request, Server};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;
use tungstenite::Message;

/// Members of `channel` per worker (all transports), from `GET /channels/<channel>?workers`,
/// once they add up to `total` (asked at most 5,000 times and for [`TIMEOUT`]).
fn members_per_worker(addr: SocketAddr, channel: &str, total: usize) -> Vec<usize> {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = String::new();
    for _ in 0..5_000 {
        let response = get(addr, &format!("/channels/{channel}?workers"), &[]);
        assert_eq!(response.status, 200, "{response:?}");
        last = body(&response).to_owned();
        let per_worker: Vec<usize> = last
            .split_once("\"workers\":[")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| list.split(',').map(|n| n.parse().unwrap()).collect())
            .unwrap_or_default();
        if per_worker.iter().sum::<usize>() == total || Instant::now() > deadline {
            if per_worker.iter().sum::<usize>() == total {
                return per_worker;
            }
            break;
        }
    }
    panic!("{channel} did not reach {total} members: {last}");
}

/// The worker of the only member of `channel`.
fn worker_of_only_member(addr: SocketAddr, channel: &str) -> usize {
    let per_worker = members_per_worker(addr, channel, 1);
    per_worker.iter().position(|&n| n == 1).unwrap()
}

/// The `data` of a text envelope without escapes.
fn envelope_data(text: &str) -> String {
    let (_, rest) = text
        .split_once(",\"data\":\"")
        .unwrap_or_else(|| panic!("no data in {text:?}"));
    rest.strip_suffix("\"}")
        .unwrap_or_else(|| panic!("not a text envelope: {text:?}"))
        .to_owned()
}

/// The id of an `{"type":"ack","channel":..,"id":N}`.
fn ack_id(text: &str) -> Option<u64> {
    text.strip_prefix("{\"type\":\"ack\",")?
        .split_once("\"id\":")?
        .1
        .strip_suffix('}')?
        .parse()
        .ok()
}

/// What one chat client saw: the `(id, data)` it received, in order, and the ids of its
/// own messages (from its acks), in order.
struct Seen {
    received: Vec<(u64, String)>,
    acked: Vec<u64>,
}

/// Client `me` sends `each` messages, then reads until it has every other client's and
/// an ack for each of its own.
fn chat_client(mut client: Client, me: usize, each: usize, others: usize) -> Seen {
    for k in 0..each {
        client.send(Message::text(format!("c{me}-{k}"))).unwrap();
    }
    let mut seen = Seen {
        received: Vec::new(),
        acked: Vec::new(),
    };
    for _ in 0..(others + 1) * each {
        let text = recv_text(&mut client);
        match ack_id(&text) {
            Some(id) => seen.acked.push(id),
            None => seen
                .received
                .push((envelope_id(&text), envelope_data(&text))),
        }
    }
    seen
}

/// 200 chat clients in one channel, spread over every worker; each sends two messages.
fn chat_spans_workers(workers: usize) {
    const CLIENTS: usize = 200;
    const EACH: usize = 2;
    const TOTAL: u64 = (CLIENTS * EACH) as u64;
    let server = Workers(workers).start(&["--mode", "chat", "--history", "1000"]);
    let addr = server.addr;
    let mut stream = sse(addr, "/sse/room", &[]);
    let clients: Vec<Client> = (0..CLIENTS).map(|_| ws(addr, "/ws/room", true)).collect();
    let per_worker = members_per_worker(addr, "room", CLIENTS + 1);
    assert_eq!(per_worker.len(), workers);
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");

    let poller = thread::spawn(move || {
        let mut got = Vec::new();
        let mut conn = tcp(addr);
        for _ in 0..TOTAL {
            let since = got.last().map_or(0, |&(id, _)| id);
            let answer = poll_on(&mut conn, &format!("/poll/room?since={since}&timeout=5"));
            assert!(!answer.truncated, "{answer:?}");
            got.extend(answer.messages.into_iter().map(|(id, data, _)| (id, data)));
            if got.len() as u64 >= TOTAL {
                break;
            }
        }
        got
    });
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(me, client)| thread::spawn(move || chat_client(client, me, EACH, CLIENTS - 1)))
        .collect();
    let seen: Vec<Seen> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    // The channel's order, as the SSE member saw it: ids 1..=400, each sender in order.
    let order: Vec<(u64, String)> = (0..TOTAL)
        .map(|_| {
            let event = stream.event();
            (event.id.expect("an id"), event.data.concat())
        })
        .collect();
    assert_eq!(
        order.iter().map(|m| m.0).collect::<Vec<_>>(),
        (1..=TOTAL).collect::<Vec<_>>()
    );
    let data_of: BTreeMap<u64, &str> = order.iter().map(|(id, d)| (*id, d.as_str())).collect();
    let mut next_k: HashMap<String, usize> = HashMap::new();
    for (_, data) in &order {
        let (sender, k) = data.split_once('-').unwrap();
        let expected = next_k.entry(sender.to_owned()).or_default();
        assert_eq!(
            k.parse::<usize>().unwrap(),
            *expected,
            "{sender} out of order"
        );
        *expected += 1;
    }
    assert_eq!(poller.join().unwrap(), order, "long polls saw other ids");

    for (me, seen) in seen.iter().enumerate() {
        // Every other message exactly once, in the channel's order; its own acked, in order.
        let mut ids: Vec<u64> = seen.received.iter().map(|m| m.0).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "client {me}: {ids:?}");
        assert!(seen.acked.windows(2).all(|w| w[0] < w[1]), "client {me}");
        for (id, data) in &seen.received {
            assert_eq!(data_of[id], data, "client {me}: data of {id}");
            assert!(
                !data.starts_with(&format!("c{me}-")),
                "client {me} got its own"
            );
        }
        for (k, id) in seen.acked.iter().enumerate() {
            assert_eq!(data_of[id], format!("c{me}-{k}"), "client {me}: ack {k}");
        }
        ids.extend(&seen.acked);
        ids.sort_unstable();
        assert_eq!(ids, (1..=TOTAL).collect::<Vec<_>>(), "client {me}");
    }
}

#[test]
fn chat_of_200_clients_spans_2_workers() {
    chat_spans_workers(2);
}

#[test]
fn chat_of_200_clients_spans_4_workers() {
    chat_spans_workers(4);
}

#[test]
fn publish_api_reaches_members_on_every_worker() {
    let server = Workers(2).start(&[]);
    let addr = server.addr;
    let mut members = Vec::new();
    for n in 1..=64 {
        members.push(ws(addr, "/ws/news", false));
        if n >= 8 && members_per_worker(addr, "news", n).iter().all(|&m| m > 0) {
            break;
        }
    }
    assert!(members_per_worker(addr, "news", members.len())
        .iter()
        .all(|&m| m > 0));
    // Each publish on a fresh connection: the kernel spreads them over the workers too.
    for i in 1..=20 {
        assert_eq!(publish(addr, "news", &format!("n{i}")), i);
    }
    for member in &mut members {
        for i in 1..=20 {
            assert_eq!(recv(member), Message::text(format!("n{i}")));
        }
    }
}

#[test]
fn resume_on_another_worker_gets_exactly_the_missed_messages() {
    let server = Workers(2).start(&["--history", "400"]);
    let addr = server.addr;
    let mut first = ws(addr, "/ws/resume", true);
    let first_worker = worker_of_only_member(addr, "resume");
    for i in 1..=5 {
        assert_eq!(publish(addr, "resume", &format!("m{i}")), i);
        assert_eq!(
            recv_text(&mut first),
            envelope("resume", i, &format!("m{i}"))
        );
    }
    assert_eq!(close_client(&mut first, 1000, ""), Some(1000));
    members_per_worker(addr, "resume", 0);
    for i in 6..=305 {
        assert_eq!(publish(addr, "resume", &format!("m{i}")), i);
    }
    for attempt in 0..40 {
        let mut again = ws(addr, "/ws/resume?since=5", true);
        for i in 6..=305 {
            assert_eq!(
                recv_text(&mut again),
                envelope("resume", i, &format!("m{i}"))
            );
        }
        if worker_of_only_member(addr, "resume") != first_worker {
            // Nothing more than the missed ones: the next is the next live message.
            assert_eq!(publish(addr, "resume", "live"), 306);
            assert_eq!(recv_text(&mut again), envelope("resume", 306, "live"));
            return;
        }
        assert_eq!(close_client(&mut again, 1000, ""), Some(1000), "{attempt}");
        members_per_worker(addr, "resume", 0);
    }
    panic!("40 reconnections all landed on worker {first_worker}");
}

#[test]
fn a_chat_message_sent_right_after_the_upgrade_is_not_lost() {
    // A new member's join may still be on its way to the channel's owner when its first
    // message arrives: the message must be published all the same.
    let server = Workers(2).start(&["--mode", "chat"]);
    let addr = server.addr;
    let mut listener = ws(addr, "/ws/fast", true);
    members_per_worker(addr, "fast", 1);
    for i in 0..20 {
        let mut sender = ws(addr, "/ws/fast", true);
        sender.send(Message::text(format!("hi{i}"))).unwrap();
        let text = recv_text(&mut listener);
        assert_eq!(envelope_data(&text), format!("hi{i}"), "{text}");
        assert_eq!(envelope_id(&text), i + 1);
        assert_eq!(ack_id(&recv_text(&mut sender)), Some(i + 1));
        assert_eq!(close_client(&mut sender, 1000, ""), Some(1000));
    }
}

#[test]
fn sigterm_closes_the_clients_of_every_worker_with_1001() {
    let mut server = Workers(2).start(&["--shutdown-timeout", "2"]);
    let addr = server.addr;
    let mut clients = Vec::new();
    for n in 1..=64 {
        clients.push(ws(addr, "/ws", false));
        if n >= 4 && members_per_worker(addr, "lobby", n).iter().all(|&m| m > 0) {
            break;
        }
    }
    server.signal("TERM");
    for client in &mut clients {
        let frame = read_until_close(client).expect("a close frame with a code");
        assert_eq!(u16::from(frame.code), 1001);
    }
    drop(clients);
    let status = server.wait_exit(TIMEOUT * 2);
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

// ---------------------------------------------------------------------------------------
// Embedding
// ---------------------------------------------------------------------------------------

/// Reports each open as `(peer, id)`; `to N` sends `relayed` to connection N, `panic`
/// panics, anything else is echoed.
struct Relay {
    opens: mpsc::Sender<(SocketAddr, ConnId)>,
}

impl Handler for Relay {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        _req: &Request<'_>,
    ) -> Result<(), pushloop::Refusal> {
        let _ = self.opens.send((ctx.peer_addr(id).unwrap(), id));
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Msg<'_>) {
        match msg.as_text() {
            Some("panic") => panic!("asked to"),
            Some(text) if text.starts_with("to ") => {
                let to = ConnId::from_u64(text[3..].parse().unwrap());
                assert!(ctx.send(to, "relayed"));
            }
            _ => {
                ctx.send(id, msg);
            }
        }
    }
}

/// Waits (at most 5,000 looks and [`TIMEOUT`]) until `channel` counts `n` WebSocket
/// members: a join of a channel another worker owns takes effect when the owner answers.
fn wait_for_members(handle: &pushloop::Handle, channel: &'static str, n: usize) {
    let deadline = Instant::now() + TIMEOUT;
    for _ in 0..5_000 {
        let counts = handle
            .defer(move |ctx| ctx.channel(channel).map(|c| c.counts().websocket))
            .wait()
            .unwrap();
        if counts == Some(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel}: {counts:?} members, not {n}"
        );
    }
    panic!("{channel} never had {n} members");
}

#[test]
fn handle_and_context_reach_connections_of_another_worker_and_stop_closes_all() {
    let config = Config::default()
        .workers(2)
        .shutdown_timeout(std::time::Duration::from_secs(2));
    let server = Server::bind_with("127.0.0.1:0", config).expect("bind");
    assert_eq!(server.workers(), 2);
    let (addr, handle) = (server.local_addr(), server.handle());
    assert_eq!(handle.workers(), 2);
    let (opens_tx, opens) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let runner = thread::spawn(move || {
        let result = server.run_workers(move || Relay {
            opens: opens_tx.clone(),
        });
        let _ = done_tx.send(result.is_ok());
    });

    // Clients until both workers have one: [worker 0's, worker 1's].
    let mut by_worker: [Option<(Client, ConnId)>; 2] = [None, None];
    let mut spare = Vec::new();
    for _ in 0..64 {
        let (client, _) = connect(addr, "/");
        let peer = client.get_ref().local_addr().unwrap();
        let (seen, id) = opens.recv_timeout(TIMEOUT).expect("on_open");
        assert_eq!(seen, peer);
        match &mut by_worker[id.worker()] {
            slot @ None => *slot = Some((client, id)),
            Some(_) => spare.push(client),
        }
        if by_worker.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some((mut c0, id0)), Some((mut c1, id1))] = by_worker else {
        panic!("64 connections all on one worker");
    };

    handle.send(id1, "to worker 1").unwrap();
    assert_eq!(recv(&mut c1), Message::text("to worker 1"));
    handle.send(id0, "to worker 0").unwrap();
    assert_eq!(recv(&mut c0), Message::text("to worker 0"));
    // A callback on worker 0 sends to worker 1's connection, and back.
    c0.send(Message::text(format!("to {}", id1.as_u64())))
        .unwrap();
    assert_eq!(recv(&mut c1), Message::text("relayed"));
    c1.send(Message::text(format!("to {}", id0.as_u64())))
        .unwrap();
    assert_eq!(recv(&mut c0), Message::text("relayed"));
    // Channels and broadcasts from another thread reach both workers.
    for id in [id0, id1] {
        assert_eq!(handle.join(id, "room").wait(), Ok(Ok(())));
    }
    wait_for_members(&handle, "room", 2);
    let published = handle.publish("room", "to the room").wait().unwrap();
    assert_eq!((published.id, published.delivered), (1, 2));
    handle.broadcast("to all").unwrap();
    for client in [&mut c0, &mut c1] {
        // The owner's delivery to the other worker and the broadcast come by different
        // queues: both arrive, in either order.
        let mut got = [recv(client), recv(client)];
        got.sort_by_key(|m| m.to_text().map(str::to_owned).unwrap_or_default());
        assert_eq!(got, [Message::text("to all"), Message::text("to the room")]);
    }
    // A panic on worker 0 closes only that connection.
    c0.send(Message::text("panic")).unwrap();
    let frame = read_until_close(&mut c0).expect("a close frame");
    assert_eq!(u16::from(frame.code), 1011);
    assert_echo(&mut c1, Message::text("still here"));

    handle.stop().unwrap();
    for client in spare.iter_mut().chain([&mut c1]) {
        let frame = read_until_close(client).expect("a close frame");
        assert_eq!(u16::from(frame.code), 1001);
    }
    assert_eq!(
        done.recv_timeout(TIMEOUT * 2),
        Ok(true),
        "run_workers result"
    );
    runner.join().unwrap();
}
