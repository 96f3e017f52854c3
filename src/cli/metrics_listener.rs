//! `--metrics-listen ADDR`: `GET /metrics` on a listener of its own, served by one plain
//! thread (blocking sockets, one scrape at a time, off the loops), for operators who keep
//! metrics on a private address. No token: bind it where only the scraper reaches.

use crate::cli::metrics;
use pushloop::{Handle, Response};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// How long a scraper has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest request head read.
const MAX_HEAD: usize = 8 << 10;

/// Binds `addr` and serves scrapes on a thread; returns the bound address.
pub fn start(addr: &str, handle: Handle) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("pushloop-metrics-listener".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = serve(stream, &handle) {
                    log::debug!("metrics listener: {e}");
                }
            }
        })?;
    Ok(local)
}

/// Answers one request on `stream`, then closes it.
fn serve(stream: TcpStream, handle: &Handle) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader
        .by_ref()
        .take(MAX_HEAD as u64)
        .read_line(&mut request_line)?;
    // The rest of the head, up to its empty line.
    let mut seen = request_line.len();
    loop {
        let mut line = String::new();
        let n = reader.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
        seen += n;
        if n == 0 || line == "\r\n" || line == "\n" || seen > MAX_HEAD {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => metrics::response(handle),
        (_, "/metrics") => Response::text(405, "use GET").header("Allow", "GET"),
        _ => Response::text(404, "not found"),
    };
    write(stream, &response)
}

/// Writes `response` with `Connection: close`.
fn write(mut stream: TcpStream, response: &Response) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    stream.write_all(out.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()
}

/// The reason phrase of the statuses this listener uses.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    }
}
