//! HTTP/1.1 heads from the client's side: request heads out (the opening handshake of
//! RFC 6455 §4.1 among them), response heads in.
//!
//! [`ResponseHead::parse`] is incremental like the frame parser: `Ok(None)` until the
//! buffer holds the blank line that ends the head. It is strict about what pushloop
//! sends: `HTTP/1.1`, a 3-digit status, CRLF line ends, `name: value` header lines with
//! token names, UTF-8.

use std::error::Error;
use std::fmt;

/// The headers of an upgrade request (§4.1), in the order [`upgrade_request`] writes
/// them: `Host`, `Upgrade`, `Connection`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`.
pub const fn upgrade_headers<'a>(host: &'a str, key: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
}

/// Appends a request head: `METHOD target HTTP/1.1`, one line per header, the blank line.
/// Nothing is checked, so that broken requests can be written too.
pub fn write_request_head<'h>(
    method: &str,
    target: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    out: &mut Vec<u8>,
) {
    for part in [method, " ", target, " HTTP/1.1\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    for (name, value) in headers {
        for part in [name, ": ", value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A `GET target` upgrade request head: the [`upgrade_headers`], then `extra` (a
/// `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`, ...).
pub fn upgrade_request(target: &str, host: &str, key: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    let headers = upgrade_headers(host, key);
    write_request_head(
        "GET",
        target,
        headers.into_iter().chain(extra.iter().copied()),
        &mut out,
    );
    out
}

/// The length of the head at the start of `buf`, blank line included, once it is all
/// there.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// A response head that is not one (or not one pushloop would send).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// The head is not UTF-8.
    NotUtf8,
    /// Not `HTTP/1.1 NNN reason`.
    StatusLine(String),
    /// Not `name: value`, or a CR or LF inside a line.
    HeaderLine(String),
    /// A `Content-Length` that is not a decimal number, or two that differ.
    ContentLength(String),
    /// No `Content-Length` where a body was asked for.
    NoContentLength,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::NotUtf8 => write!(f, "the response head is not UTF-8"),
            HeadError::StatusLine(line) => write!(f, "bad status line {line:?}"),
            HeadError::HeaderLine(line) => write!(f, "bad header line {line:?}"),
            HeadError::ContentLength(value) => write!(f, "bad Content-Length {value:?}"),
            HeadError::NoContentLength => write!(f, "no Content-Length"),
        }
    }
}

impl Error for HeadError {}

/// A response head, borrowed from the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The status code.
    pub status: u16,
    /// The reason phrase (possibly empty).
    pub reason: &'a str,
    /// The head's length in bytes, blank line included: where a body or frames start.
    pub len: usize,
    /// The header lines in order, names as sent, values without surrounding whitespace.
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> ResponseHead<'a> {
    /// Parses the head at the start of `buf`: `Ok(None)` until its blank line is there.
    pub fn parse(buf: &'a [u8]) -> Result<Option<ResponseHead<'a>>, HeadError> {
        let Some(len) = head_len(buf) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&buf[..len - 4]).map_err(|_| HeadError::NotUtf8)?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let (status, reason) = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| {
                let (code, reason) = rest.split_at_checked(3)?;
                let reason = match reason {
                    "" => "",
                    _ => reason.strip_prefix(' ')?,
                };
                let status = code
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| code.parse().ok())??;
                (!reason.contains(['\r', '\n'])).then_some((status, reason))
            })
            .ok_or_else(|| HeadError::StatusLine(status_line.to_owned()))?;
        let headers = lines
            .map(|line| {
                line.split_once(':')
                    .filter(|(name, value)| is_token(name) && !value.contains(['\r', '\n']))
                    .map(|(name, value)| (name, value.trim_matches([' ', '\t'])))
                    .ok_or_else(|| HeadError::HeaderLine(line.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(ResponseHead {
            status,
            reason,
            len,
            headers,
        }))
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }

    /// The values of every header called `name` (case-insensitive), in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Whether a header called `name` lists `token` (comma-separated, case-insensitive):
    /// `Connection: Upgrade` in `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case(token))
    }

    /// The `Content-Length`, if there is one.
    pub fn content_length(&self) -> Result<Option<usize>, HeadError> {
        let mut length = None;
        for value in self.header_values("content-length") {
            let bad = || HeadError::ContentLength(value.to_owned());
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: usize = value.parse().map_err(|_| bad())?;
            if length.is_some_and(|l| l != n) {
                return Err(bad());
            }
            length = Some(n);
        }
        Ok(length)
    }

    /// The body after this head in `buf` (the buffer the head was parsed from, or a
    /// longer one), by its `Content-Length`: `Ok(None)` until all of it is there.
    pub fn body<'b>(&self, buf: &'b [u8]) -> Result<Option<&'b [u8]>, HeadError> {
        let n = self.content_length()?.ok_or(HeadError::NoContentLength)?;
        Ok(buf.get(self.len..self.len + n))
    }
}

/// An HTTP token (RFC 9110 §5.6.2): what a header name must be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SAMPLE_ACCEPT, SAMPLE_KEY};

    /// The server's answer in RFC 6455 §1.3.
    const RFC_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\r\n";

    fn whole(buf: &[u8]) -> ResponseHead<'_> {
        ResponseHead::parse(buf).unwrap().expect("a whole head")
    }

    #[test]
    fn writes_the_opening_handshake() {
        let request = upgrade_request(
            "/chat",
            "server.example.com",
            SAMPLE_KEY,
            &[("Sec-WebSocket-Protocol", "chat, superchat")],
        );
        assert_eq!(
            String::from_utf8(request).unwrap(),
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n"
        );
        let mut out = Vec::new();
        write_request_head("HEAD", "/", [], &mut out);
        assert_eq!(out, b"HEAD / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn parses_the_rfc_answer_and_looks_headers_up_in_any_case() {
        let head = whole(RFC_101);
        assert_eq!((head.status, head.reason), (101, "Switching Protocols"));
        assert_eq!(head.len, RFC_101.len());
        assert_eq!(head.headers.len(), 4);
        assert_eq!(head.header("sec-websocket-accept"), Some(SAMPLE_ACCEPT));
        assert_eq!(head.header("UPGRADE"), Some("websocket"));
        assert!(head.has_token("connection", "upgrade"));
        assert!(!head.has_token("upgrade", "upgrade"));
        assert_eq!(head.header("content-length"), None);
        assert_eq!(head.content_length(), Ok(None));
        assert_eq!(head.body(RFC_101), Err(HeadError::NoContentLength));
    }

    #[test]
    fn every_split_point_is_partial_until_the_blank_line() {
        for cut in 0..RFC_101.len() {
            assert_eq!(
                ResponseHead::parse(&RFC_101[..cut]),
                Ok(None),
                "cut at {cut}"
            );
        }
        // Frames after the head are not part of it.
        let mut more = RFC_101.to_vec();
        more.extend_from_slice(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!(whole(&more).len, RFC_101.len());
    }

    #[test]
    fn bodies_by_content_length_at_every_split_point() {
        let response =
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nConnection: keep-alive\r\n\r\nhello\
            HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let first = whole(response);
        assert_eq!(first.content_length(), Ok(Some(5)));
        assert_eq!(first.body(response), Ok(Some(&b"hello"[..])));
        for cut in first.len..first.len + 5 {
            assert_eq!(first.body(&response[..cut]), Ok(None), "cut at {cut}");
        }
        let next = &response[first.len + 5..];
        assert_eq!(whole(next).body(next), Ok(Some(&b""[..])));
    }

    #[test]
    fn lenient_where_http_allows_it() {
        let head =
            whole(b"HTTP/1.1 426 \r\nSec-WebSocket-Version:13\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n");
        assert_eq!((head.status, head.reason), (426, ""));
        assert_eq!(head.header("sec-websocket-version"), Some("13"));
        assert_eq!(head.header("x-empty"), Some(""));
        assert_eq!(head.header("x-tab"), Some("v"));
        assert_eq!(whole(b"HTTP/1.1 204\r\n\r\n").status, 204);
        let two = whole(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(two.content_length(), Ok(Some(3)));
    }

    #[test]
    fn strict_about_what_pushloop_never_sends() {
        let bad = |head: &[u8]| ResponseHead::parse(head).unwrap_err();
        for line in [
            "HTTP/1.0 200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1 +20 OK",
            "nonsense",
        ] {
            let head = format!("{line}\r\n\r\n");
            assert_eq!(bad(head.as_bytes()), HeadError::StatusLine(line.into()));
        }
        assert_eq!(
            bad(b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n"),
            HeadError::HeaderLine("No colon".into())
        );
        assert_eq!(
            bad(b"HTTP/1.1 200 OK\r\nBad name: v\r\n\r\n"),
            HeadError::HeaderLine("Bad name: v".into())
        );
        assert_eq!(
            bad(b"HTTP/1.1 200 OK\r\n folded: v\r\n\r\n"),
            HeadError::HeaderLine(" folded: v".into())
        );
        assert_eq!(
            bad(b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n"),
            HeadError::HeaderLine("A: b\nC: d".into())
        );
        assert_eq!(bad(b"HTTP/1.1 200 \xff\r\n\r\n"), HeadError::NotUtf8);
        for value in ["-1", "", "1, 1", "99999999999999999999999"] {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                whole(head.as_bytes()).content_length(),
                Err(HeadError::ContentLength(value.into()))
            );
        }
        let two = whole(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(
            two.content_length(),
            Err(HeadError::ContentLength("4".into()))
        );
    }
}
