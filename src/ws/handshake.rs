//! The opening handshake (RFC 6455 §4.2): the WebSocket rules a request must follow,
//! the subprotocol choice, the accept key, and the 101 and refusal responses.

use crate::http::request::has_token;
use crate::http::Request;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::fmt;

/// §1.3: the GUID appended to the client's key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)) (§4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// An upgrade request that follows the rules: what the 101 answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade<'a> {
    /// `Sec-WebSocket-Accept` (§4.2.2).
    pub accept: String,
    /// The subprotocol chosen, if the client offered one the server speaks.
    pub protocol: Option<&'a str>,
}

/// Why an upgrade request was refused (§4.2.1); each maps to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// §4.2.1: the method must be GET.
    MethodNotGet,
    /// §4.2.1: the version must be HTTP/1.1 or higher.
    HttpVersion,
    /// §4.2.1: a Host header is required.
    MissingHost,
    /// §4.2.1: `Upgrade` must contain `websocket`.
    MissingUpgrade,
    /// §4.2.1: `Connection` must contain the `Upgrade` token.
    MissingConnectionUpgrade,
    /// §4.2.1: `Sec-WebSocket-Key` must be base64 of 16 bytes.
    BadKey,
    /// §4.2.2: `Sec-WebSocket-Version` is not 13.
    UnsupportedVersion,
}

impl HandshakeError {
    /// The HTTP status code answered for this error.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The headers the refusal must carry besides the usual ones.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            HandshakeError::UnsupportedVersion => &UPGRADE_REQUIRED_HEADERS,
            _ => &[],
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::MethodNotGet => "method must be get",
            HandshakeError::HttpVersion => "http/1.1 required",
            HandshakeError::MissingHost => "missing host header",
            HandshakeError::MissingUpgrade => "missing upgrade: websocket",
            HandshakeError::MissingConnectionUpgrade => "connection header lacks upgrade",
            HandshakeError::BadKey => "bad sec-websocket-key",
            HandshakeError::UnsupportedVersion => "unsupported websocket version",
        })
    }
}

impl std::error::Error for HandshakeError {}

/// §4.2.2: "If this version does not match a version understood by the server, the
/// server MUST abort the WebSocket handshake ... and instead send an appropriate HTTP
/// error code (such as 426 Upgrade Required) and a |Sec-WebSocket-Version| header field
/// indicating the version(s) the server is capable of understanding."
pub const UPGRADE_REQUIRED_HEADERS: [(&str, &str); 2] =
    [("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")];

/// Checks the WebSocket-specific headers of `req` (§4.2.1) and chooses a subprotocol
/// from `supported` (the server's preference order wins).
pub fn validate_upgrade<'a>(
    req: &Request<'a>,
    supported: &[String],
) -> Result<Upgrade<'a>, HandshakeError> {
    // §4.2.1: "An HTTP/1.1 or higher GET request".
    if req.minor_version() < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    if req.method() != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if req.header_bytes("host").is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !req
        .headers_named("upgrade")
        .any(|v| has_token(v, "websocket"))
    {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !req
        .headers_named("connection")
        .any(|v| has_token(v, "upgrade"))
    {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let mut keys = req.headers_named("sec-websocket-key");
    let key = keys.next().ok_or(HandshakeError::BadKey)?;
    if keys.next().is_some() || !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    // §4.2.2: a version the server does not speak gets 426 and the versions it does.
    if req.header_bytes("sec-websocket-version") != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(Upgrade {
        accept: accept_key(key),
        protocol: choose_protocol(req, supported),
    })
}

/// The first of `supported` that the client offered, if any.
fn choose_protocol<'a>(req: &Request<'a>, supported: &[String]) -> Option<&'a str> {
    let offered = req
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
    use crate::http::request::{parse, MAX_HEADERS};

    const GOOD: &[u8] = b"GET /ws/room?since=4 HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

    fn validate(
        head: &[u8],
        supported: &[String],
    ) -> Result<(String, Option<String>), HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (req, _) = parse(head, &mut headers, 8192).unwrap().expect("complete");
        let upgrade = validate_upgrade(&req, supported)?;
        Ok((upgrade.accept, upgrade.protocol.map(str::to_owned)))
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
        let (accept, proto) = validate(GOOD, &["superchat".into(), "chat".into()]).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(proto.as_deref(), Some("superchat"));
        assert_eq!(validate(GOOD, &[]).unwrap().1, None);
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
    }

    #[test]
    fn error_response_426_names_the_version() {
        let mut out = Vec::new();
        let error = HandshakeError::UnsupportedVersion;
        crate::http::write_error_with(error.status(), error.headers(), "unsupported", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
    }
}
