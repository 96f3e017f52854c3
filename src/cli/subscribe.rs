//! `pushloop subscribe`: a terminal subscriber. It follows each channel as a
//! Server-Sent Events stream (`GET /sse/<channel>?since=<id>`), prints every message as
//! it arrives, and when the stream breaks (the server restarted, the network dropped)
//! reconnects with backoff and jitter and resumes from the last id it printed, so
//! nothing is lost or printed twice.
//!
//! One thread per channel, each with a blocking socket: this is a command-line tool, not
//! the server's loop.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server's heartbeat comes every 15 s; three missed ones mean a dead stream.
const READ_TIMEOUT: Duration = Duration::from_secs(45);
/// The first reconnect delay; it doubles up to [`MAX_DELAY`].
const MIN_DELAY: Duration = Duration::from_millis(250);
/// The longest reconnect delay.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A stream that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What to follow and how to print it.
#[derive(Debug, Clone)]
pub struct Subscribe {
    /// The server's base URL, `http://host:port`.
    pub server: String,
    /// The channels.
    pub channels: Vec<String>,
    /// Resume every channel after this id (`None`: only new messages).
    pub since: Option<u64>,
    /// A token for channels that need one (`?token=`).
    pub token: Option<String>,
    /// One JSON object per line (`{"channel":..,"id":..,"data":..}`) instead of the data.
    pub json: bool,
}

/// One Server-Sent Event, as the server formats messages (docs/push.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message: its id, whether binary (base64 data), its data.
    Message {
        /// The message's id in its channel.
        id: Option<u64>,
        /// True for `event: binary` (the data is base64).
        binary: bool,
        /// The data lines joined with `\n`.
        data: String,
    },
    /// `event: gap`: history no longer holds everything after the id asked for.
    Gap(String),
}

/// Collects the lines of one event until its blank line (WHATWG HTML §9.2.6).
#[derive(Debug, Default)]
pub struct EventParser {
    id: Option<u64>,
    event: String,
    data: Vec<String>,
}

impl EventParser {
    /// Takes one line (without its end); returns an event at a blank line.
    pub fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let id = self.id.take();
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(match event.as_str() {
                "gap" => Event::Gap(data),
                kind => Event::Message {
                    id,
                    binary: kind == "binary",
                    data,
                },
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = value.parse().ok(),
            "event" => self.event = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// How one attempt ended.
enum Ended {
    /// The stream broke or could not be opened: try again.
    Retry(String),
    /// The server refused for good (401, 403, 404, 400): stop.
    Refused(String),
}

/// `host:port` from `http://host:port[/...]`.
fn authority(url: &str) -> io::Result<&str> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "--server must start with http://",
        )
    })?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

/// `application/x-www-form-urlencoded`-safe text for a query value.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request line's target: `/sse/<channel>?since=..&token=..`.
fn target(channel: &str, since: Option<u64>, token: Option<&str>) -> String {
    let mut query = Vec::new();
    if let Some(since) = since {
        query.push(format!("since={since}"));
    }
    if let Some(token) = token {
        query.push(format!("token={}", query_escape(token)));
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    format!("/sse/{channel}{query}")
}

/// One line of output for a message.
fn render(channel: &str, event: &Event, json: bool) -> Option<String> {
    match (event, json) {
        (Event::Message { data, .. }, false) => Some(data.clone()),
        (Event::Message { id, binary, data }, true) => {
            let mut out = Vec::new();
            out.extend_from_slice(b"{\"channel\":");
            pushloop::codec::format::json_string(channel, &mut out);
            if let Some(id) = id {
                out.extend_from_slice(format!(",\"id\":{id}").as_bytes());
            }
            out.extend_from_slice(b",\"data\":");
            pushloop::codec::format::json_string(data, &mut out);
            if *binary {
                out.extend_from_slice(b",\"encoding\":\"base64\"");
            }
            out.push(b'}');
            Some(String::from_utf8_lossy(&out).into_owned())
        }
        (Event::Gap(body), true) => {
            let mut out = Vec::new();
            out.extend_from_slice(b"{\"type\":\"gap\",\"channel\":");
            pushloop::codec::format::json_string(channel, &mut out);
            out.extend_from_slice(b",\"gap\":");
            out.extend_from_slice(body.as_bytes());
            out.push(b'}');
            Some(String::from_utf8_lossy(&out).into_owned())
        }
        (Event::Gap(_), false) => None,
    }
}

/// Follows one channel until the server refuses it; returns why.
fn follow(opts: &Subscribe, channel: &str, out: &Mutex<io::Stdout>) -> String {
    let mut last = opts.since;
    let mut delay = MIN_DELAY;
    loop {
        let started = Instant::now();
        match stream(opts, channel, &mut last, out) {
            Ended::Refused(why) => return why,
            Ended::Retry(why) => {
                if started.elapsed() >= STABLE_AFTER {
                    delay = MIN_DELAY;
                }
                let wait = jitter(delay);
                eprintln!(
                    "pushloop subscribe: {channel}: {why}; reconnecting in {} ms{}",
                    wait.as_millis(),
                    last.map_or(String::new(), |id| format!(" (resuming after {id})"))
                );
                std::thread::sleep(wait);
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

/// Half the delay plus a random part of the other half.
fn jitter(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let half = delay / 2;
    half + half.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// One connection: the request, the head, then events until the stream ends.
fn stream(
    opts: &Subscribe,
    channel: &str,
    last: &mut Option<u64>,
    out: &Mutex<io::Stdout>,
) -> Ended {
    let host = match authority(&opts.server) {
        Ok(host) => host,
        Err(e) => return Ended::Refused(e.to_string()),
    };
    let mut socket = match TcpStream::connect(host) {
        Ok(socket) => socket,
        Err(e) => return Ended::Retry(format!("cannot connect to {host}: {e}")),
    };
    let _ = socket.set_read_timeout(Some(READ_TIMEOUT));
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n",
        target(channel, *last, opts.token.as_deref())
    );
    if let Err(e) = socket.write_all(request.as_bytes()) {
        return Ended::Retry(e.to_string());
    }
    let mut reader = BufReader::new(socket);
    let mut status_line = String::new();
    if let Err(e) = reader.read_line(&mut status_line) {
        return Ended::Retry(e.to_string());
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ended::Retry("the server closed the connection".into()),
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
            Err(e) => return Ended::Retry(e.to_string()),
        }
    }
    if status != 200 {
        let mut body = String::new();
        let _ = reader.take(4096).read_to_string(&mut body);
        let why = format!("{} {}", status, body.trim());
        return match status {
            400 | 401 | 403 | 404 => Ended::Refused(why),
            _ => Ended::Retry(why),
        };
    }
    let mut parser = EventParser::default();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ended::Retry("the stream ended".into()),
            Ok(_) => {}
            Err(e) => return Ended::Retry(e.to_string()),
        }
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let text = text.strip_suffix('\r').unwrap_or(text);
        let Some(event) = parser.line(text) else {
            continue;
        };
        if let Event::Message { id: Some(id), .. } = event {
            if last.is_some_and(|seen| id <= seen) {
                continue;
            }
            *last = Some(id);
        }
        if let Event::Gap(body) = &event {
            // What history still holds follows, up to `last_id`. A `last_id` below the id
            // asked for means the server restarted without persistent history and its
            // ids started again: go on from there.
            eprintln!("pushloop subscribe: {channel}: gap: {body}");
            if let Some(id) = gap_last_id(body) {
                if last.is_none_or(|seen| id < seen) {
                    *last = Some(id);
                }
            }
        }
        if let Some(text) = render(channel, &event, opts.json) {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                // Standard output closed (`| head`): nothing more to do.
                std::process::exit(0);
            }
        }
    }
}

/// The `last_id` of a gap event's data, `{"since":3,"last_id":51}`.
fn gap_last_id(body: &str) -> Option<u64> {
    let rest = &body[body.find("\"last_id\":")? + "\"last_id\":".len()..];
    let digits = rest.trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Follows every channel; returns only when all were refused (the reasons, in order).
pub fn subscribe(opts: Subscribe) -> Vec<String> {
    let out = Arc::new(Mutex::new(io::stdout()));
    let opts = Arc::new(opts);
    let threads: Vec<_> = opts
        .channels
        .iter()
        .cloned()
        .map(|channel| {
            let (opts, out) = (Arc::clone(&opts), Arc::clone(&out));
            std::thread::spawn(move || {
                let why = follow(&opts, &channel, &out);
                format!("{channel}: {why}")
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| "a thread panicked".into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Event> {
        let mut p = EventParser::default();
        text.lines().filter_map(|l| p.line(l)).collect()
    }

    #[test]
    fn events_as_the_server_writes_them() {
        let events = parse(": hi\n\nid: 7\ndata: a\ndata: b\n\nid: 8\nevent: binary\ndata: AAE=\n\nevent: gap\ndata: {\"since\":1,\"last_id\":9}\n\n");
        assert_eq!(
            events,
            vec![
                Event::Message {
                    id: Some(7),
                    binary: false,
                    data: "a\nb".into()
                },
                Event::Message {
                    id: Some(8),
                    binary: true,
                    data: "AAE=".into()
                },
                Event::Gap("{\"since\":1,\"last_id\":9}".into()),
            ]
        );
    }

    #[test]
    fn a_gap_says_where_history_ends() {
        assert_eq!(gap_last_id(r#"{"since":50,"last_id":0}"#), Some(0));
        assert_eq!(gap_last_id(r#"{"since":3, "last_id": 51}"#), Some(51));
        assert_eq!(gap_last_id("{}"), None);
    }

    #[test]
    fn targets_resume_and_escape_the_token() {
        assert_eq!(target("news", None, None), "/sse/news");
        assert_eq!(
            target("news", Some(5), Some("a b+c")),
            "/sse/news?since=5&token=a%20b%2Bc"
        );
    }

    #[test]
    fn json_lines_name_the_channel_and_id() {
        let m = Event::Message {
            id: Some(3),
            binary: false,
            data: "say \"hi\"".into(),
        };
        assert_eq!(
            render("c", &m, true).unwrap(),
            r#"{"channel":"c","id":3,"data":"say \"hi\""}"#
        );
        assert_eq!(render("c", &m, false).unwrap(), "say \"hi\"");
        let g = Event::Gap("{\"since\":1,\"last_id\":9}".into());
        assert_eq!(render("c", &g, false), None);
        assert_eq!(
            render("c", &g, true).unwrap(),
            r#"{"type":"gap","channel":"c","gap":{"since":1,"last_id":9}}"#
        );
    }
}
