//! `pushloop subscribe`, the terminal subscriber, against the real binary: it prints what
//! `pushloop publish` sent, resumes without loss or duplicates when its connection drops
//! (a proxy cuts it while messages are published), and survives a server restart (the
//! gap notice, then the new messages).

mod common;

use common::proxy::Proxy;
use common::push::{body, get};
use common::{Binary, TIMEOUT};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A running `pushloop subscribe`, its stdout lines on a channel; killed when dropped.
struct Subscriber {
    child: Child,
    lines: Receiver<String>,
}

impl Subscriber {
    fn start(server: SocketAddr, args: &[&str]) -> Subscriber {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pushloop"))
            .arg("subscribe")
            .args(args)
            .args(["--server", &format!("http://{server}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pushloop subscribe");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Subscriber { child, lines }
    }

    /// The next `n` lines, each within `TIMEOUT * 2`.
    fn take(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.lines
                    .recv_timeout(TIMEOUT * 2)
                    .unwrap_or_else(|_| panic!("line {} of {n} did not come", i + 1))
            })
            .collect()
    }

    /// Fails if a line comes within `wait`.
    fn assert_quiet(&self, wait: Duration) {
        if let Ok(line) = self.lines.recv_timeout(wait) {
            panic!("unexpected line {line:?}");
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pushloop publish` to `server`; returns the id.
fn publish(server: SocketAddr, channel: &str, text: &str) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_pushloop"))
        .args([
            "publish",
            channel,
            text,
            "--server",
            &format!("http://{server}"),
        ])
        .output()
        .expect("run pushloop publish");
    assert!(out.status.success(), "publish failed: {out:?}");
    let body = String::from_utf8_lossy(&out.stdout);
    let id = body
        .split("\"id\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|n| n.parse().ok());
    id.unwrap_or_else(|| panic!("no id in {body:?}"))
}

/// Waits (bounded) until `channel` has `n` SSE subscribers.
fn wait_sse(server: SocketAddr, channel: &str, n: usize) {
    let want = format!(r#""sse":{n},"#);
    let deadline = Instant::now() + TIMEOUT * 2;
    let mut last = String::new();
    while Instant::now() < deadline {
        let response = get(server, &format!("/channels/{channel}"), &[]);
        last = body(&response).to_owned();
        if response.status == 200 && last.contains(&want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{channel} never had {n} SSE subscribers: {last}");
}

fn json_line(channel: &str, id: u64, data: &str) -> String {
    format!(r#"{{"channel":"{channel}","id":{id},"data":"{data}"}}"#)
}

#[test]
fn prints_what_publish_sent_in_order_on_every_channel() {
    let server = Binary::start(&[]);
    publish(server.addr, "news", "before");
    let sub = Subscriber::start(server.addr, &["news", "alerts", "--since", "0", "--json"]);
    assert_eq!(sub.take(1), vec![json_line("news", 1, "before")]);
    wait_sse(server.addr, "alerts", 1);
    for i in 2..=40 {
        assert_eq!(publish(server.addr, "news", &format!("n{i}")), i);
    }
    for i in 1..=5 {
        assert_eq!(publish(server.addr, "alerts", &format!("a{i}")), i);
    }
    let got = sub.take(44);
    let news: Vec<_> = got
        .iter()
        .filter(|l| l.contains(r#""news""#))
        .cloned()
        .collect();
    let alerts: Vec<_> = got
        .iter()
        .filter(|l| l.contains(r#""alerts""#))
        .cloned()
        .collect();
    assert_eq!(
        news,
        (2..=40)
            .map(|i| json_line("news", i, &format!("n{i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        alerts,
        (1..=5)
            .map(|i| json_line("alerts", i, &format!("a{i}")))
            .collect::<Vec<_>>()
    );
    sub.assert_quiet(Duration::from_millis(300));

    // Without --json: the data alone, one message per line.
    let plain = Subscriber::start(server.addr, &["news", "--since", "38"]);
    assert_eq!(plain.take(2), vec!["n39", "n40"]);
}

#[test]
fn resumes_without_loss_when_its_connection_drops() {
    let server = Binary::start(&["--history", "1000"]);
    let proxy = Proxy::start(server.addr);
    let sub = Subscriber::start(proxy.addr, &["ticker", "--json"]);
    wait_sse(server.addr, "ticker", 1);
    for i in 1..=10 {
        publish(server.addr, "ticker", &format!("t{i}"));
    }
    assert_eq!(
        sub.take(10).last().unwrap(),
        &json_line("ticker", 10, "t10")
    );

    // The path breaks; 300 messages are published while the subscriber cannot connect.
    proxy.pause();
    wait_sse(server.addr, "ticker", 0);
    for i in 11..=310 {
        publish(server.addr, "ticker", &format!("t{i}"));
    }
    proxy.resume();
    let got = sub.take(300);
    assert_eq!(
        got,
        (11..=310)
            .map(|i| json_line("ticker", i, &format!("t{i}")))
            .collect::<Vec<_>>()
    );
    // Live again after the replay.
    wait_sse(server.addr, "ticker", 1);
    publish(server.addr, "ticker", "t311");
    assert_eq!(sub.take(1), vec![json_line("ticker", 311, "t311")]);
    sub.assert_quiet(Duration::from_millis(300));
}

#[test]
fn survives_a_server_restart() {
    let first = Binary::start(&[]);
    let addr = first.addr;
    let sub = Subscriber::start(addr, &["news", "--json"]);
    wait_sse(addr, "news", 1);
    for i in 1..=3 {
        publish(addr, "news", &format!("old{i}"));
    }
    assert_eq!(sub.take(3).last().unwrap(), &json_line("news", 3, "old3"));

    drop(first);
    // The same port again (bounded retries while the old socket goes away).
    let listen = addr.to_string();
    let deadline = Instant::now() + TIMEOUT;
    let second = loop {
        match std::panic::catch_unwind(|| Binary::start(&["--listen", &listen])) {
            Ok(server) => break server,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => std::panic::resume_unwind(e),
        }
    };
    // History did not survive the restart (it is in memory): the subscriber is told,
    // then gets the new server's messages from id 1.
    assert_eq!(
        sub.take(1),
        vec![r#"{"type":"gap","channel":"news","gap":{"since":3,"last_id":0}}"#.to_owned()]
    );
    wait_sse(addr, "news", 1);
    for i in 1..=5 {
        assert_eq!(publish(second.addr, "news", &format!("new{i}")), i);
    }
    assert_eq!(
        sub.take(5),
        (1..=5)
            .map(|i| json_line("news", i, &format!("new{i}")))
            .collect::<Vec<_>>()
    );
}
