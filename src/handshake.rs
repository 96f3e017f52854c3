//! The opening handshake (RFC 6455 §4.2): request parsing over httparse, the accept key,
//! and the 101 and error responses.

use crate::error::HandshakeError;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

/// §1.3: the GUID appended to the client's key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The most headers a request head may carry.
pub const MAX_HEADERS: usize = 64;

/// A parsed HTTP request head, borrowed from the bytes it was parsed from.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    method: &'a str,
    target: &'a str,
    minor_version: u8,
    headers: &'a [httparse::Header<'a>],
    protocol: Option<&'a str>,
}

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)) (§4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// Parses a request head from the start of `buf` into `headers`.
///
/// Returns `Ok(None)` while the head is incomplete and still within `max_head` bytes,
/// else the request and the length of the head (the bytes after it are frames).
pub fn parse<'a>(
    buf: &'a [u8],
    headers: &'a mut [httparse::Header<'a>],
    max_head: usize,
) -> Result<Option<(Request<'a>, usize)>, HandshakeError> {
    let mut req = httparse::Request::new(headers);
    let status = match req.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let httparse::Status::Complete(len) = status else {
        return if buf.len() > max_head {
            Err(HandshakeError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if len > max_head {
        return Err(HandshakeError::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HandshakeError::Malformed);
    };
    let request = Request {
        method,
        target,
        minor_version: minor,
        headers: req.headers,
        protocol: None,
    };
    Ok(Some((request, len)))
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl<'a> Request<'a> {
    /// The request method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The path, without the query string.
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The query string after `?`, or `""`.
    pub fn query(&self) -> &'a str {
        self.target.split_once('?').map_or("", |(_, q)| q)
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

    /// The subprotocol the server chose (`Sec-WebSocket-Protocol`), once negotiated.
    pub fn protocol(&self) -> Option<&'a str> {
        self.protocol
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

    /// Checks the WebSocket-specific headers (§4.2.1) and chooses a subprotocol from
    /// `supported` (the server's preference order wins). Returns the accept key.
    pub fn validate_upgrade(&mut self, supported: &[String]) -> Result<String, HandshakeError> {
        // §4.2.1: "An HTTP/1.1 or higher GET request".
        if self.minor_version < 1 {
            return Err(HandshakeError::HttpVersion);
        }
        if self.method != "GET" {
            return Err(HandshakeError::MethodNotGet);
        }
        if self.header_bytes("host").is_none() {
            return Err(HandshakeError::MissingHost);
        }
        if !self
            .headers_named("upgrade")
            .any(|v| has_token(v, "websocket"))
        {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !self
            .headers_named("connection")
            .any(|v| has_token(v, "upgrade"))
        {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        let mut keys = self.headers_named("sec-websocket-key");
        let key = keys.next().ok_or(HandshakeError::BadKey)?;
        if keys.next().is_some() || !is_valid_key(key) {
            return Err(HandshakeError::BadKey);
        }
        // §4.2.2: a version the server does not speak gets 426 and the versions it does.
        if self.header_bytes("sec-websocket-version") != Some(b"13") {
            return Err(HandshakeError::UnsupportedVersion);
        }
        self.protocol = self.choose_protocol(supported);
        Ok(accept_key(key))
    }

    /// The first of `supported` that the client offered, if any.
    fn choose_protocol(&self, supported: &[String]) -> Option<&'a str> {
        let offered = self
            .headers_named("sec-websocket-protocol")
            .flat_map(|v| v.split(|b| *b == b','))
            .map(|t| t.trim_ascii());
        let mut best: Option<(usize, &'a [u8])> = None;
        for token in offered {
            if let Some(rank) = supported.iter().position(|s| s.as_bytes() == token) {
                if best.is_none_or(|(b, _)| rank < b) {
                    best = Some((rank, token));
                }
            }
        }
        best.and_then(|(_, t)| std::str::from_utf8(t).ok())
    }
}

/// §4.1: the key is "a randomly selected 16-byte value that has been base64-encoded".
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24 && BASE64.decode(key).is_ok_and(|k| k.len() == 16)
}

/// Appends the `101 Switching Protocols` response to `out`.
pub fn write_accept(
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    if let Some(p) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"GET /ws/room?since=4 HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

    fn validate(
        head: &[u8],
        supported: &[String],
    ) -> Result<(String, Option<String>), HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (mut req, _) = parse(head, &mut headers, 8192)?.expect("complete");
        let accept = req.validate_upgrade(supported)?;
        Ok((accept, req.protocol().map(str::to_owned)))
    }

    fn without(line: &str) -> Vec<u8> {
        String::from_utf8(GOOD.to_vec())
            .unwrap()
            .replace(line, "")
            .into_bytes()
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn good_request() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (req, len) = parse(GOOD, &mut headers, 8192).unwrap().unwrap();
        assert_eq!(
            (req.path(), req.query(), len),
            ("/ws/room", "since=4", GOOD.len())
        );
        assert_eq!(req.header("HOST"), Some("example.com"));
        let (accept, proto) = validate(GOOD, &["superchat".into(), "chat".into()]).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(proto.as_deref(), Some("superchat"));
        assert_eq!(validate(GOOD, &[]).unwrap().1, None);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for cut in 0..GOOD.len() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            assert!(
                parse(&GOOD[..cut], &mut headers, 8192).unwrap().is_none(),
                "{cut}"
            );
        }
    }

    #[test]
    fn refusals_and_their_statuses() {
        let cases: [(Vec<u8>, HandshakeError); 7] = [
            (
                without("Host: example.com\r\n"),
                HandshakeError::MissingHost,
            ),
            (
                without("Upgrade: WebSocket\r\n"),
                HandshakeError::MissingUpgrade,
            ),
            (
                without("Connection: keep-alive, Upgrade\r\n"),
                HandshakeError::MissingConnectionUpgrade,
            ),
            (
                without("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
                HandshakeError::BadKey,
            ),
            (
                without("Sec-WebSocket-Version: 13\r\n"),
                HandshakeError::UnsupportedVersion,
            ),
            (
                String::from_utf8(GOOD.to_vec())
                    .unwrap()
                    .replace("GET /ws", "PUT /ws")
                    .into_bytes(),
                HandshakeError::MethodNotGet,
            ),
            (
                String::from_utf8(GOOD.to_vec())
                    .unwrap()
                    .replace("HTTP/1.1", "HTTP/1.0")
                    .into_bytes(),
                HandshakeError::HttpVersion,
            ),
        ];
        for (head, want) in cases {
            assert_eq!(
                validate(&head, &[]),
                Err(want),
                "{}",
                String::from_utf8_lossy(&head)
            );
        }
        let short_key = String::from_utf8(GOOD.to_vec())
            .unwrap()
            .replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        assert_eq!(
            validate(short_key.as_bytes(), &[]),
            Err(HandshakeError::BadKey)
        );
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(HandshakeError::BadKey.status(), 400);
        assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
    }

    #[test]
    fn oversized_or_garbage_heads() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nX: aaaa", &mut headers, 10).unwrap_err(),
            HandshakeError::HeadTooLarge
        );
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            parse(b"GET /\x01 HTTP/1.1\r\n\r\n", &mut headers, 8192).unwrap_err(),
            HandshakeError::Malformed
        );
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            parse(head.as_bytes(), &mut headers, 8192).unwrap_err(),
            HandshakeError::TooManyHeaders
        );
    }

    #[test]
    fn error_response_426_names_the_version() {
        let mut out = Vec::new();
        crate::http::write_error(426, "unsupported websocket version", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
    }
}
