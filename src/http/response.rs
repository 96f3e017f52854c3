//! HTTP/1.1 responses (RFC 9112), sans-IO: status lines, heads, whole responses.

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
        429 => "Too Many Requests",
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
    write_error_with(status, &[], body, out);
}

/// Appends an error response with `extra` headers and a short plain-text body; the
/// connection closes after it.
pub fn write_error_with(status: u16, extra: &[(&str, &str)], body: &str, out: &mut Vec<u8>) {
    let mut headers = Vec::new();
    if !extra
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        headers.push((
            "Content-Type".to_owned(),
            "text/plain; charset=utf-8".to_owned(),
        ));
    }
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    write_response(status, &headers, format!("{body}\n").as_bytes(), false, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_error_with(
            426,
            &[("Sec-WebSocket-Version", "13")],
            "unsupported",
            &mut out,
        );
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
