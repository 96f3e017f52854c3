//! Plain HTTP/1.1 on the loop's connections: request bodies, responses, keep-alive.

use crate::handshake::Request;

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

/// The reason phrase for the statuses this server sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Appends a status line and headers. `body_len: None` starts a stream that ends with
/// the connection (no `Content-Length`).
pub fn write_head(
    status: u16,
    headers: &[(String, String)],
    body_len: Option<usize>,
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    if status == 426 {
        head.push_str("Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n");
    }
    // RFC 9110 §8.6: no Content-Length on 1xx and 204 answers.
    if let Some(len) = body_len.filter(|_| status >= 200 && status != 204) {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.extend_from_slice(head.as_bytes());
}

/// Appends a whole response with a body.
pub fn write_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    write_head(status, headers, Some(body.len()), keep_alive, out);
    out.extend_from_slice(body);
}

/// Appends an error response with a short plain-text body; the connection closes after it.
pub fn write_error(status: u16, body: &str, out: &mut Vec<u8>) {
    let headers = [(
        "Content-Type".to_owned(),
        "text/plain; charset=utf-8".to_owned(),
    )];
    write_response(status, &headers, format!("{body}\n").as_bytes(), false, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{parse, MAX_HEADERS};

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
    fn responses() {
        let mut out = Vec::new();
        write_error(426, "unsupported websocket version", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        let mut out = Vec::new();
        write_response(200, &[], b"hi", true, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi"
        );
    }
}
