//! `pushloop publish`: a tiny HTTP/1.1 client that posts one message to a running
//! server's publish API, so shell scripts, cron jobs or PHP's `exec` can push.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What to publish and where.
#[derive(Debug, Clone)]
pub struct Publish {
    /// The server's base URL, `http://host:port`.
    pub server: String,
    /// The channel.
    pub channel: String,
    /// The message body.
    pub body: Vec<u8>,
    /// Its content type (text/plain publishes text).
    pub content_type: String,
    /// The bearer token, if the server needs one.
    pub token: Option<String>,
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

/// The request bytes.
fn request(p: &Publish, host: &str) -> Vec<u8> {
    let mut head = format!(
        "POST /publish/{} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        p.channel,
        p.content_type,
        p.body.len()
    );
    if let Some(token) = &p.token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&p.body);
    out
}

/// Posts the message; returns the status and the response body.
pub fn publish(p: &Publish) -> io::Result<(u16, String)> {
    let host = authority(&p.server)?;
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(&request(p, host))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
    Ok((status, body.trim_end().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape() {
        let p = Publish {
            server: "http://127.0.0.1:8080".into(),
            channel: "news".into(),
            body: b"hi".to_vec(),
            content_type: "text/plain".into(),
            token: Some("t".into()),
        };
        let host = authority(&p.server).unwrap();
        let text = String::from_utf8(request(&p, host)).unwrap();
        assert!(text.starts_with("POST /publish/news HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("Authorization: Bearer t\r\n"));
        assert!(text.ends_with("\r\n\r\nhi"));
        assert!(authority("https://x").is_err());
    }
}
