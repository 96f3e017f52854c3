//! Debian's nginx in front of pushloop nodes, configured by the shipped
//! `docs/deploy/nginx.conf`: [`render`] rewrites only its addresses and paths (the
//! upstream servers, the listen address, the pid file, logs and temp paths into a
//! temporary directory; one worker; the `user` line as the test runs), so the tests
//! exercise the very directives a deployment copies. No root needed, nothing written
//! outside the temporary directory, not daemonized; stopped by PID when dropped.

use super::redis::{free_port, program, wait_exit, wait_until};
use super::TIMEOUT;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shipped configuration, as a deployment copies it.
pub const SHIPPED: &str = include_str!("../../docs/deploy/nginx.conf");

/// A running nginx on a free 127.0.0.1 port, round robin over some upstreams.
pub struct Nginx {
    child: Option<Child>,
    addr: SocketAddr,
    config: String,
    dir: tempfile::TempDir,
}

/// How many ports are tried (a free port can be taken before nginx binds it).
const START_ATTEMPTS: usize = 5;

impl Nginx {
    /// Starts nginx with [`SHIPPED`] rendered for `upstreams` and waits (bounded) until
    /// it accepts connections.
    pub fn start(upstreams: &[SocketAddr]) -> Nginx {
        assert!(!upstreams.is_empty(), "nginx needs an upstream");
        let dir = tempfile::Builder::new()
            .prefix("pushloop-nginx-")
            .tempdir()
            .expect("create the nginx directory");
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config = render(SHIPPED, upstreams, listen, dir.path());
            match spawn(dir.path(), &config, listen) {
                Ok(child) => {
                    return Nginx {
                        child: Some(child),
                        addr: listen,
                        config,
                        dir,
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        panic!("nginx did not start: {errors:#?}");
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The master process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The rendered configuration nginx runs with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The temporary directory (`nginx.conf`, `error.log`, `access.log`, temp paths).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// nginx's error log so far (for failure messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("error.log")).unwrap_or_default()
    }

    /// SIGTERM to the master (fast shutdown: it stops its workers, then exits), waits
    /// (bounded); kills the master and its workers if it does not exit in time.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        let workers = children(pid);
        // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if wait_exit(&mut child, TIMEOUT * 2).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            for worker in workers {
                // SAFETY: the master's children as they were listed; nginx workers that
                // outlive a killed master would keep the port.
                unsafe { libc::kill(worker as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes the config into `dir`, spawns nginx on it, and waits until `listen` accepts
/// connections; on failure nginx is gone and the error says why.
fn spawn(dir: &Path, config: &str, listen: SocketAddr) -> Result<Child, String> {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config).expect("write nginx.conf");
    let error_log = dir.join("error.log");
    let mut child = Command::new(program("nginx", "/usr/sbin/nginx"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        // The log of the start itself (before the config is read), not /var/log/nginx.
        .arg("-e")
        .arg(&error_log)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn nginx: {e} (./test.sh installs it)"))?;
    let log = || std::fs::read_to_string(&error_log).unwrap_or_default();
    let mut exited = None;
    let ready = wait_until(TIMEOUT * 2, || {
        exited = child.try_wait().ok().flatten();
        exited.is_some() || TcpStream::connect_timeout(&listen, TIMEOUT).is_ok()
    });
    if let Some(status) = exited {
        return Err(format!("nginx exited with {status}; error.log:\n{}", log()));
    }
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "nginx not listening on {listen} in time; error.log:\n{}",
            log()
        ));
    }
    Ok(child)
}

/// The process ids of `pid`'s children (Linux: /proc/PID/task/PID/children).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `shipped` with its `upstream pushloop` servers replaced by `upstreams` (keeping the
/// first server line's parameters: `max_fails`, `fail_timeout`), `listen` on `listen`,
/// the pid file, logs and temp paths in `dir`, one worker of 1,024 connections, no
/// `worker_rlimit_nofile`, and `user root` when running as root (else no `user` line:
/// nginx ignores it without root). Panics if a line it rewrites is missing, so a change
/// to the shipped file that the tests no longer exercise fails loudly.
pub fn render(shipped: &str, upstreams: &[SocketAddr], listen: SocketAddr, dir: &Path) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut out = String::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut in_upstream = false;
    let mut servers_done = false;
    for line in shipped.lines() {
        let code = line.split('#').next().unwrap_or("").trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        let name = code.split_whitespace().next().unwrap_or("");
        let replaced: Option<String> = if in_upstream && name == "server" {
            seen.push("server");
            let params: Vec<&str> = code
                .trim_end_matches(';')
                .split_whitespace()
                .skip(2)
                .collect();
            if std::mem::replace(&mut servers_done, true) {
                Some(String::new())
            } else {
                Some(
                    upstreams
                        .iter()
                        .map(|addr| format!("{indent}server {addr} {};\n", params.join(" ")))
                        .collect(),
                )
            }
        } else {
            let directive = match name {
                "user" if is_root() => Some("user root;".to_owned()),
                "user" => Some("# user: not root".to_owned()),
                "worker_processes" => Some("worker_processes 1;".to_owned()),
                "worker_rlimit_nofile" => Some("# worker_rlimit_nofile: the test's".to_owned()),
                "worker_connections" => Some("worker_connections 1024;".to_owned()),
                "pid" => Some(format!("pid {};", path("nginx.pid"))),
                "error_log" => Some(format!("error_log {} info;", path("error.log"))),
                "access_log" => Some(format!("access_log {};", path("access.log"))),
                "listen" => Some(format!("listen {listen};")),
                temp if temp.ends_with("_temp_path") => {
                    let kind = temp.trim_end_matches("_temp_path");
                    Some(format!("{temp} {};", path(&format!("temp-{kind}"))))
                }
                _ => None,
            };
            if directive.is_some() {
                seen.push(name);
            }
            directive.map(|d| format!("{indent}{d}\n"))
        };
        match replaced {
            Some(text) => out.push_str(&text),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
        if code.starts_with("upstream pushloop") {
            in_upstream = true;
        } else if in_upstream && code == "}" {
            in_upstream = false;
        }
    }
    for (name, count) in [
        ("user", 1),
        ("worker_processes", 1),
        ("worker_connections", 1),
        ("pid", 1),
        ("error_log", 1),
        ("access_log", 1),
        ("listen", 1),
        ("client_body_temp_path", 1),
        ("proxy_temp_path", 1),
        ("fastcgi_temp_path", 1),
        ("uwsgi_temp_path", 1),
        ("scgi_temp_path", 1),
    ] {
        let found = seen.iter().filter(|s| **s == name).count();
        assert_eq!(
            found, count,
            "docs/deploy/nginx.conf: {found} `{name}` lines"
        );
    }
    assert!(
        servers_done,
        "docs/deploy/nginx.conf: no server in upstream pushloop"
    );
    out
}

/// The values of every (uncommented) `name` directive in `config`, in order.
pub fn directives(config: &str, name: &str) -> Vec<String> {
    config
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter_map(|code| {
            let rest = code.strip_prefix(name)?;
            rest.starts_with(char::is_whitespace)
                .then(|| rest.trim().trim_end_matches(';').trim().to_owned())
        })
        .collect()
}

/// An nginx time (`90s`, `1m`, `1h`, `500ms`, `30`: seconds).
pub fn nginx_time(value: &str) -> Duration {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("nginx time {value:?}"));
    match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => panic!("nginx time {value:?}: unit {unit:?}"),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
