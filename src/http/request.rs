//! HTTP/1.1 requests (RFC 9112), sans-IO: the request head parsed over httparse, header
//! lookups, keep-alive, and how the body is framed.

use std::borrow::Cow;
use std::fmt;

/// The most headers a request head may carry.
pub const MAX_HEADERS: usize = 64;

/// A parsed HTTP request head, borrowed from the bytes it was parsed from.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    method: &'a str,
    target: &'a str,
    minor_version: u8,
    headers: &'a [httparse::Header<'a>],
}

/// Why a request head could not be read; each maps to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The request head is not valid HTTP/1.1 syntax.
    Malformed,
    /// The request head is larger than the configured limit.
    HeadTooLarge,
    /// More headers than [`MAX_HEADERS`].
    TooManyHeaders,
}

impl RequestError {
    /// The HTTP status code answered for this error.
    pub fn status(self) -> u16 {
        match self {
            RequestError::Malformed => 400,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::Malformed => "malformed request",
            RequestError::HeadTooLarge => "request head too large",
            RequestError::TooManyHeaders => "too many headers",
        })
    }
}

impl std::error::Error for RequestError {}

/// Parses a request head from the start of `buf` into `headers`.
///
/// Returns `Ok(None)` while the head is incomplete and still within `max_head` bytes,
/// else the request and the length of the head (the bytes after it are frames).
pub fn parse<'a>(
    buf: &'a [u8],
    headers: &'a mut [httparse::Header<'a>],
    max_head: usize,
) -> Result<Option<(Request<'a>, usize)>, RequestError> {
    let mut req = httparse::Request::new(headers);
    let status = match req.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
        Err(_) => return Err(RequestError::Malformed),
    };
    let httparse::Status::Complete(len) = status else {
        return if buf.len() > max_head {
            Err(RequestError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if len > max_head {
        return Err(RequestError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed);
    };
    let request = Request {
        method,
        target,
        minor_version: minor,
        headers: req.headers,
    };
    Ok(Some((request, len)))
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl<'a> Request<'a> {
    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The path, without the query string.
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query string after `?`, or `""`, as it came (not decoded).
    pub fn query_string(&self) -> &'a str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The value of the first query parameter called `name`, percent-decoded (`+` is a
    /// space, as HTML forms send it); `Some("")` for `?name` or `?name=`, `None` if it is
    /// absent. Invalid UTF-8 after decoding becomes U+FFFD.
    ///
    /// ```
    /// # use pushloop::Request;
    /// # let mut headers = [httparse::EMPTY_HEADER; 4];
    /// # let head = b"GET /ws?user=ana%20lu&room=a%2Fb&since=7&flag HTTP/1.1\r\n\r\n";
    /// # let (req, _) = pushloop::codec::parse_request(head, &mut headers, 8192).unwrap().unwrap();
    /// // GET /ws?user=ana%20lu&room=a%2Fb&since=7&flag
    /// assert_eq!(req.query("user").as_deref(), Some("ana lu"));
    /// assert_eq!(req.query("room").as_deref(), Some("a/b"));
    /// assert_eq!(req.query("flag").as_deref(), Some(""));
    /// assert_eq!(req.query("nope"), None);
    /// ```
    pub fn query(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query_string()
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }

    /// The values of every query parameter called `name`, in order, percent-decoded as
    /// [`query`](Request::query) decodes them (`?channel=a&channel=b` gives `a`, `b`).
    ///
    /// ```
    /// # use pushloop::Request;
    /// # let mut headers = [httparse::EMPTY_HEADER; 4];
    /// # let head = b"GET /sse?channel=a&x=1&channel=b%3Ac HTTP/1.1\r\n\r\n";
    /// # let (req, _) = pushloop::codec::parse_request(head, &mut headers, 8192).unwrap().unwrap();
    /// // GET /sse?channel=a&x=1&channel=b%3Ac
    /// let channels: Vec<_> = req.query_all("channel").collect();
    /// assert_eq!(channels, ["a", "b:c"]);
    /// ```
    pub fn query_all<'n>(&self, name: &'n str) -> impl Iterator<Item = Cow<'a, str>> + 'n
    where
        'a: 'n,
    {
        self.query_string()
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(move |(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }

    /// The path's segments between slashes, percent-decoded: `/ws/rooms/a%20b` gives
    /// `ws`, `rooms`, `a b`. Empty segments (`//`, a trailing `/`) are skipped.
    pub fn path_segments(&self) -> impl Iterator<Item = Cow<'a, str>> {
        self.path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|segment| percent_decode_path(segment))
    }

    /// The value of the first header called `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The raw value of the first header called `name` (case-insensitive).
    pub fn header_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.headers_named(name).next()
    }

    /// Every header as (name, raw value), in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The raw values of every header called `name` (case-insensitive), in order.
    pub fn headers_named<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether the client asks to upgrade (an `Upgrade` header is present). A request
    /// without one is plain HTTP.
    pub fn wants_upgrade(&self) -> bool {
        self.header_bytes("upgrade").is_some()
    }

    /// Whether the client keeps the connection for further requests: HTTP/1.1 unless it
    /// sent `Connection: close`.
    pub fn keep_alive(&self) -> bool {
        self.minor_version >= 1
            && !self
                .headers_named("connection")
                .any(|v| has_token(v, "close"))
    }
}

/// Decodes `%XX` escapes and `+` (a space, in a query); a `%` not followed by two hex
/// digits stays as it is.
fn percent_decode(s: &str) -> Cow<'_, str> {
    decode(s, true)
}

/// Decodes `%XX` escapes in a path segment (`+` stays a plus).
fn percent_decode_path(s: &str) -> Cow<'_, str> {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> Cow<'_, str> {
    if !(s.contains('%') || plus_is_space && s.contains('+')) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: &u8| (*b as char).to_digit(16).map(|d| d as u8);
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(text) => Cow::Owned(text),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// How the body of a request is framed (RFC 9112 §6.3), as far as this server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// `Content-Length: n` (0 when absent).
    Fixed(usize),
    /// Larger than the limit: answer 413 without reading it.
    TooLarge,
    /// `Transfer-Encoding` (not supported: answer 411), or a malformed or repeated
    /// `Content-Length` (answer 400).
    Unsupported(u16),
}

/// The body length `req` announces, checked against `max` bytes.
pub fn body_length(req: &Request<'_>, max: usize) -> BodyLength {
    if req.header_bytes("transfer-encoding").is_some() {
        return BodyLength::Unsupported(411);
    }
    let mut values = req
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    let Some((_, value)) = values.next() else {
        return BodyLength::Fixed(0);
    };
    if values.next().is_some() {
        return BodyLength::Unsupported(400);
    }
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return BodyLength::Unsupported(400);
    }
    match std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<usize>().ok())
    {
        Some(n) if n <= max => BodyLength::Fixed(n),
        _ => BodyLength::TooLarge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length_of(head: &str, max: usize) -> BodyLength {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (req, _) = parse(head.as_bytes(), &mut headers, 8192).unwrap().unwrap();
        body_length(&req, max)
    }

    #[test]
    fn body_framing() {
        assert_eq!(
            length_of("GET / HTTP/1.1\r\nHost: h\r\n\r\n", 10),
            BodyLength::Fixed(0)
        );
        assert_eq!(
            length_of("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n", 10),
            BodyLength::Fixed(10)
        );
        assert_eq!(
            length_of("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 10),
            BodyLength::TooLarge
        );
        assert_eq!(
            length_of(
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                10
            ),
            BodyLength::TooLarge
        );
        assert_eq!(
            length_of("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 10),
            BodyLength::Unsupported(400)
        );
        assert_eq!(
            length_of(
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                10
            ),
            BodyLength::Unsupported(400)
        );
        assert_eq!(
            length_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 10),
            BodyLength::Unsupported(411)
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let keep = |head: &str| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            parse(head.as_bytes(), &mut headers, 8192)
                .unwrap()
                .unwrap()
                .0
                .keep_alive()
        };
        assert!(keep("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
    }

    #[test]
    fn good_request() {
        let head = b"GET /ws/room?since=4 HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (req, len) = parse(head, &mut headers, 8192).unwrap().unwrap();
        assert_eq!(
            (req.path(), req.query_string(), len),
            ("/ws/room", "since=4", head.len())
        );
        assert_eq!(req.header("HOST"), Some("example.com"));
    }

    const HEAD: &[u8] =
        b"GET /ws/room?since=4 HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\n\r\n";

    #[test]
    fn every_prefix_is_incomplete() {
        for cut in 0..HEAD.len() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            assert!(
                parse(&HEAD[..cut], &mut headers, 8192).unwrap().is_none(),
                "{cut}"
            );
        }
    }

    #[test]
    fn oversized_or_garbage_heads() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nX: aaaa", &mut headers, 10).unwrap_err(),
            RequestError::HeadTooLarge
        );
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            parse(b"GET /\x01 HTTP/1.1\r\n\r\n", &mut headers, 8192).unwrap_err(),
            RequestError::Malformed
        );
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            parse(head.as_bytes(), &mut headers, 8192).unwrap_err(),
            RequestError::TooManyHeaders
        );
    }

    #[test]
    fn query_parameters_and_path_segments_are_decoded() {
        let head =
            b"GET /ws/rooms/a%20b/?user=ana%20lu&q=1+2&bad=%zz&tail=%4&u=%C3%A9&x HTTP/1.1\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (req, _) = parse(head, &mut headers, 8192).unwrap().unwrap();
        assert_eq!(req.query("user").as_deref(), Some("ana lu"));
        assert_eq!(req.query("q").as_deref(), Some("1 2"));
        assert_eq!(req.query("bad").as_deref(), Some("%zz"));
        assert_eq!(req.query("tail").as_deref(), Some("%4"));
        assert_eq!(req.query("u").as_deref(), Some("é"));
        assert_eq!(req.query("x").as_deref(), Some(""));
        assert_eq!(req.query("missing"), None);
        let segments: Vec<_> = req.path_segments().collect();
        assert_eq!(segments, ["ws", "rooms", "a b"]);
        assert_eq!(decode("%ff", false), "\u{fffd}");
    }
}
