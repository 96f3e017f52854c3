//! A real `redis-server` for the tests: on a free port of 127.0.0.1, in a fresh
//! temporary directory (its config, log and data files), not daemonized, stopped by PID
//! when dropped. [`RedisServer::restart`] starts it again on the same port and directory,
//! so with AOF on the data comes back. [`RedisServer::command`] speaks RESP over a std
//! socket (a few lines here rather than the `redis` crate and its URL/IDNA dependencies).
//!
//! Every wait is bounded: readiness is polled (connect, `PING` → `+PONG`, `loading:0`)
//! until a deadline, exits are polled until a deadline, then the process is killed.

use super::TIMEOUT;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a [`RedisServer`] is started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisOptions {
    /// `appendonly yes` with `appendfsync always` (every write is on disk before its
    /// answer); else `appendonly no`. RDB snapshots are off either way (`save ""`).
    pub aof: bool,
}

impl RedisOptions {
    /// AOF persistence on.
    pub fn aof() -> RedisOptions {
        RedisOptions { aof: true }
    }
}

/// A running (or stopped, until restarted) `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    opts: RedisOptions,
    /// Deleted when dropped (after the server stopped).
    dir: tempfile::TempDir,
}

/// How many times a start is tried (a free port can be taken between our probe and the
/// server's bind).
const START_ATTEMPTS: usize = 5;

impl RedisServer {
    /// Starts `redis-server` on a free 127.0.0.1 port in a new temporary directory and
    /// waits (bounded) until it answers `PING`.
    pub fn start(opts: RedisOptions) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("pushloop-redis-")
            .tempdir()
            .expect("create the Redis directory");
        let mut server = RedisServer {
            child: None,
            port: 0,
            opts,
            dir,
        };
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => errors.push(e),
            }
        }
        panic!("redis-server did not start: {errors:#?}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temporary directory: `redis.conf`, `redis.log`, the data files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded) for the exit: Redis writes and fsyncs the AOF
    /// first. Does nothing when already stopped.
    pub fn stop(&mut self) {
        self.end(libc::SIGTERM);
    }

    /// SIGKILL, then waits for the exit: no chance to write anything more.
    pub fn kill(&mut self) {
        self.end(libc::SIGKILL);
    }

    /// SIGSTOP: the server keeps its port and connections but answers nothing (a hung
    /// broker) until [`resume`](RedisServer::resume).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`pause`](RedisServer::pause).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.pid().expect("redis-server is not running") as libc::pid_t;
        // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Stops it if it runs, then starts it again on the same port and directory (the
    /// AOF, when on, is loaded again); retries (bounded) while the port is busy.
    pub fn restart(&mut self) {
        self.stop();
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS * 4 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => errors.push(e),
            }
            // The port may be held a moment longer by the old process' socket.
            wait_until(Duration::from_millis(250), || port_is_free(self.port));
        }
        panic!(
            "redis-server did not restart on port {}: {errors:#?}",
            self.port
        );
    }

    /// Sends one command on a fresh connection and returns the reply (an error reply
    /// is returned, not a panic; I/O failures panic).
    pub fn command(&self, args: &[&str]) -> Resp {
        let mut stream = connect(self.addr())
            .unwrap_or_else(|e| panic!("connect to Redis at {}: {e}", self.addr()));
        request(&mut stream, args).unwrap_or_else(|e| panic!("Redis {args:?}: {e}"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("redis.log")
    }

    /// Writes `redis.conf` (for the current port), spawns the server and waits until it
    /// is ready; on failure the process is gone and the error says why.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server already running");
        let dir = self.dir().to_owned();
        let conf = dir.join("redis.conf");
        let aof = if self.opts.aof {
            "appendonly yes\nappendfsync always\n"
        } else {
            "appendonly no\n"
        };
        let text = format!(
            "bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\n\
             dir {dir}\nlogfile {log}\nsave \"\"\n{aof}",
            port = self.port,
            dir = dir.display(),
            log = self.log_path().display(),
        );
        std::fs::write(&conf, text).expect("write redis.conf");
        let child = Command::new(program("redis-server", "/usr/bin/redis-server"))
            .arg(&conf)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e} (./test.sh installs it)"))?;
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT * 2;
        for _ in 0..10_000 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "redis-server exited with {status} on port {}; its log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if self.ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        Err(format!(
            "redis-server on port {} not ready in time; its log:\n{}",
            self.port,
            self.log()
        ))
    }

    /// Whether it answers `PING` with `+PONG` and has finished loading its data.
    fn ready(&self) -> bool {
        let Ok(mut stream) = connect(self.addr()) else {
            return false;
        };
        matches!(request(&mut stream, &["PING"]), Ok(Resp::Simple(ref s)) if s == "PONG")
            && matches!(
                request(&mut stream, &["INFO", "persistence"]),
                Ok(Resp::Bulk(Some(ref info)))
                    if String::from_utf8_lossy(info).contains("loading:0")
            )
    }

    /// Sends `signal` to the server by PID and waits (bounded) for it to exit; kills it
    /// if it does not.
    fn end(&mut self, signal: libc::c_int) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
        // SIGCONT first: a paused server would not act on SIGTERM.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, signal);
        }
        if wait_exit(&mut child, TIMEOUT * 2).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "redis-server (pid {pid}) did not exit after signal {signal}; its log:\n{}",
                self.log()
            );
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as libc::pid_t;
            // SAFETY: as in `end`.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGTERM);
            }
            if wait_exit(&mut child, TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:7`
    Integer(i64),
    /// `$3\r\nabc` (`None`: `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*2 ...` (`None`: `*-1`)
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The integer of an integer reply, or a panic.
    pub fn int(&self) -> i64 {
        match self {
            Resp::Integer(n) => *n,
            other => panic!("expected an integer reply, got {other}"),
        }
    }

    /// The text of a simple or bulk string; `None` for a nil bulk string; a panic else.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(b) => b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            other => panic!("expected a string reply, got {other}"),
        }
    }

    /// The texts of an array of strings (e.g. `KEYS *`, `PUBSUB CHANNELS`), sorted; a
    /// panic for anything else.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Resp::Array(Some(items)) => {
                let mut all: Vec<String> = items
                    .iter()
                    .map(|i| i.text().expect("a nil in the array"))
                    .collect();
                all.sort();
                all
            }
            Resp::Array(None) => Vec::new(),
            other => panic!("expected an array reply, got {other}"),
        }
    }
}

/// As `redis-cli` would print it, on one line.
impl fmt::Display for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Simple(s) => write!(f, "{s}"),
            Resp::Error(e) => write!(f, "(error) {e}"),
            Resp::Integer(n) => write!(f, "(integer) {n}"),
            Resp::Bulk(None) | Resp::Array(None) => write!(f, "(nil)"),
            Resp::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Resp::Array(Some(items)) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Sends `args` as a RESP array of bulk strings and reads one reply.
fn request(stream: &mut TcpStream, args: &[&str]) -> io::Result<Resp> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    read_reply(&mut BufReader::new(stream))
}

/// Reads one RESP2 reply (nested arrays included).
fn read_reply(reader: &mut impl BufRead) -> io::Result<Resp> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let Some(body) = line.strip_suffix("\r\n") else {
        return Err(bad(format!("truncated RESP line {line:?}")));
    };
    let (kind, rest) = body.split_at(body.len().min(1));
    let number = || -> io::Result<i64> {
        rest.parse()
            .map_err(|_| bad(format!("bad RESP number {line:?}")))
    };
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Integer(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Resp::Bulk(None),
            Ok(len) if len > 64 << 20 => return Err(bad(format!("bulk of {len} bytes"))),
            Ok(len) => {
                let mut data = vec![0; len + 2];
                reader.read_exact(&mut data)?;
                data.truncate(len);
                Resp::Bulk(Some(data))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Resp::Array(None),
            Ok(n) if n > 1_000_000 => return Err(bad(format!("array of {n} items"))),
            Ok(n) => Resp::Array(Some(
                (0..n)
                    .map(|_| read_reply(reader))
                    .collect::<io::Result<_>>()?,
            )),
        },
        _ => return Err(bad(format!("unknown RESP reply {line:?}"))),
    })
}

/// A connection with read and write timeouts, or the connect error.
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// A port of 127.0.0.1 that was free a moment ago (the caller retries if it is taken).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether `port` of 127.0.0.1 can be bound now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Polls `done` every 10 ms until it is true or `limit` passed; whether it became true.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `child` until it exited (its status) or `limit` passed (`None`).
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// `name` found on PATH, else `fallback` (Debian's place; /usr/sbin is often not on a
/// non-root PATH).
pub fn program(name: &str, fallback: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(fallback))
}
