//! The browser chat page served at `/`, end to end: the binary on a free loopback port,
//! and `tests/browser/e2e.js` driving headless Chromium through playwright-core (two
//! pages chatting over WebSocket, permessage-deflate negotiated on their WebSockets (the
//! handshake's response header, read over the DevTools protocol) with a long message
//! through it, SSE + POST, long polling, resume after close and after a dropped
//! connection, the gap notice); then the same over https and wss:// (`--tls-cert`, a test
//! CA made by rcgen); and `tests/browser/client_e2e.mjs`, pages importing `/pushloop.js`
//! (see [`pushloop_js_in_headless_chromium`]); and `tests/browser/nginx_e2e.mjs`: two
//! `--redis` nodes behind nginx, a page on each chatting through it, one node killed
//! (see [`two_nodes_behind_nginx_in_headless_chromium`]).
//!
//! Needs Debian's `/usr/bin/chromium`, `node`, and `tests/browser/node_modules` (`npm ci`
//! in `tests/browser`), and for the nginx test Debian's `redis-server` and `nginx`;
//! `./test.sh` installs them. A missing one fails this test loudly:
//! it never skips.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest the Node test may run.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// The browser the Node test launches (Debian's package).
const CHROMIUM: &str = "/usr/bin/chromium";

/// Kills a child process when dropped, however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child started in a process group of its own (node): dropped, the group gets SIGTERM
/// (playwright then closes the Chromium it launched), and SIGKILL after 5 s.
struct Group(Child);

impl Group {
    fn signal(&self, signal: libc::c_int) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory
            // is involved.
            unsafe { libc::kill(-pid, signal) };
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let running = |child: &mut Child| matches!(child.try_wait(), Ok(None));
        // Signals only a child not yet reaped, so its pid cannot have been reused.
        if running(&mut self.0) {
            self.signal(libc::SIGTERM);
            let asked = Instant::now();
            while running(&mut self.0) && asked.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if running(&mut self.0) {
                self.signal(libc::SIGKILL);
            }
        }
        let _ = self.0.wait();
    }
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Panics with what to install when something the test needs is missing.
fn require_tools() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "browser test: {CHROMIUM} is missing: run ./test.sh (it installs it)"
    );
    let node = "Node.js 20 or later (node on PATH)";
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "browser test: `node --version` failed ({}): needs {node}",
            out.status
        ),
        Err(e) => panic!(
            "browser test: cannot run node ({e}): needs {node}: run ./test.sh (it installs it)"
        ),
    }
    let playwright = browser_dir().join("node_modules/playwright-core");
    assert!(
        playwright.is_dir(),
        "browser test: {} is missing: run ./test.sh (it installs it)",
        playwright.display()
    );
}

/// Starts the binary on a free loopback port; returns it, its `host:port`, and its
/// stdout (kept open so the server never writes to a closed pipe).
fn start_server(
    log: &Path,
    args: &[String],
) -> (Running, String, BufReader<std::process::ChildStdout>) {
    let stderr = std::fs::File::create(log).expect("create the server log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushloop"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start the pushloop binary");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let running = Running(child);
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("read the listening line");
    // "pushloop listening on ws://127.0.0.1:PORT/ws (Chat mode)" (wss:// with TLS)
    let addr = line
        .strip_prefix("pushloop listening on ws://")
        .or_else(|| line.strip_prefix("pushloop listening on wss://"))
        .and_then(|rest| rest.split_once("/ws"))
        .map(|(addr, _)| addr.to_owned())
        .unwrap_or_else(|| panic!("no address in the server's first line {line:?}"));
    (running, addr, stdout)
}

/// Reads a pipe to the end on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[test]
fn chat_page_in_headless_chromium() {
    require_tools();
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-server.log");
    let (_server, addr, _stdout) = start_server(&log, &[]);
    run_node("e2e.js", &format!("http://{addr}"), &[], &server_log(&log));
}

/// The same page served over https (`--tls-cert`), its WebSockets over wss://.
#[test]
fn chat_page_over_https_in_headless_chromium() {
    require_tools();
    let certs = common::tls::Certs::new("browser", 1);
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-tls-server.log");
    let (_server, addr, _stdout) = start_server(&log, &certs.args());
    let port = addr.rsplit(':').next().expect("a port");
    let ca = certs.ca().display().to_string();
    run_node(
        "e2e.js",
        &format!("https://localhost:{port}"),
        &[("NODE_EXTRA_CA_CERTS", &ca)],
        &server_log(&log),
    );
}

/// pushloop.js in Chromium (tests/browser/client_e2e.mjs starts and restarts the binary
/// itself): three subscriptions on one socket with a private one and a token refresh,
/// publish acks, the server killed and restarted during 500 messages, and the SSE and
/// long-poll fallbacks with WebSockets blocked by a proxy, and the way back.
#[test]
fn pushloop_js_in_headless_chromium() {
    require_tools();
    run_node(
        "client_e2e.mjs",
        "",
        &[("PUSHLOOP_BIN", env!("CARGO_BIN_EXE_pushloop"))],
        "the server's stderr is in node's",
    );
}

/// Two nodes sharing one Redis (`--redis`) behind nginx (the shipped
/// `docs/deploy/nginx.conf`: round robin, no stickiness), and two Chromium pages loaded
/// from nginx (`tests/browser/nginx_e2e.mjs`): their WebSockets on different nodes (the
/// nodes' `/metrics` tell), they chat through nginx (each message once, in order, with
/// Redis's ids), then the node holding page 1's socket is killed (SIGKILL, by the Node
/// script, by pid): page 1 resumes on the other node through nginx and gets everything
/// page 2 published meanwhile, once, in order, and chats again.
#[test]
fn two_nodes_behind_nginx_in_headless_chromium() {
    require_tools();
    let redis = common::redis::RedisServer::start(common::redis::RedisOptions::default());
    let url = redis.url();
    let statics = browser_dir().join("static").display().to_string();
    let args = ["--redis", &url, "--static", &statics, "--history", "1000"];
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let logs = [
        tmp.join("browser-nginx-node-0.log"),
        tmp.join("browser-nginx-node-1.log"),
    ];
    let nodes = [
        common::Binary::start_logging(&args, &logs[0]),
        common::Binary::start_logging(&args, &logs[1]),
    ];
    let nginx = common::nginx::Nginx::start(&[nodes[0].addr, nodes[1].addr]);
    let addrs = format!("{},{}", nodes[0].addr, nodes[1].addr);
    let pids = format!("{},{}", nodes[0].pid(), nodes[1].pid());
    let ran = std::panic::catch_unwind(|| {
        run_node(
            "nginx_e2e.mjs",
            &format!("http://{}", nginx.addr()),
            &[("PUSHLOOP_NODES", &addrs), ("PUSHLOOP_PIDS", &pids)],
            &format!(
                "node logs: {} and {} (nginx's and Redis's logs follow)",
                logs[0].display(),
                logs[1].display()
            ),
        )
    });
    if let Err(panic) = ran {
        // Their directories go when they are dropped: their logs, now.
        eprintln!("--- nginx error.log ---\n{}", nginx.error_log());
        eprintln!("--- redis.log ---\n{}", redis.log());
        std::panic::resume_unwind(panic);
    }
}

fn server_log(log: &Path) -> String {
    format!("server log: {}", log.display())
}

/// Runs `node tests/browser/SCRIPT [BASE]` with `env` (its own process group, bounded
/// by [`TIME_LIMIT`]); fails with its output and `server_log`.
fn run_node(script: &str, base: &str, env: &[(&str, &str)], server_log: &str) {
    let mut node = Command::new("node")
        .arg(browser_dir().join(script))
        .args((!base.is_empty()).then_some(base))
        .envs(env.iter().copied())
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start node");
    let out = collect(node.stdout.take().expect("node stdout"));
    let err = collect(node.stderr.take().expect("node stderr"));
    let mut node = Group(node);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = node.0.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > TIME_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(node); // kills what is still running of it, closing its pipes
    let out = out.join().expect("node stdout reader");
    let err = err.join().expect("node stderr reader");
    println!("{out}");
    eprintln!("{err}");
    let verdict = match status {
        None => format!("timed out after {TIME_LIMIT:?}"),
        Some(status) if status.success() => return,
        Some(status) => format!("failed ({status})"),
    };
    panic!(
        "browser test {script} {verdict}; {server_log}\n--- node stdout ---\n{out}\n--- node stderr ---\n{err}"
    );
}
