//! `pushloop publish`: a tiny HTTP/1.1 client that posts one message to a running
//! server's publish API (over TLS for `https://`), so shell scripts, cron jobs or PHP's `exec` can push.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What to publish and where.
#[derive(Debug, Clone)]
pub struct Publish {
    /// The server's base URL, `http://host:port` or `https://host:port`.
    pub server: String,
    /// The CA certificate (PEM) to trust for `https://`, instead of the system's.
    pub cacert: Option<PathBuf>,
    /// The channel.
    pub channel: String,
    /// The message body.
    pub body: Vec<u8>,
    /// Its content type (text/plain publishes text).
    pub content_type: String,
    /// The bearer token, if the server needs one.
    pub token: Option<String>,
}

/// Where the server is: `http://host:port` or `https://host:port` (path ignored).
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    /// `host:port`.
    authority: &'a str,
    /// Whether to speak TLS.
    tls: bool,
}

/// The [`Target`] of a base URL.
fn target(url: &str) -> io::Result<Target<'_>> {
    let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--server must start with http:// or https://",
            ))
        }
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(Target { authority, tls })
}

/// The host of `host:port` (`[::1]:443` gives `::1`), for SNI and the certificate check.
fn host_of(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// A TLS client trusting `cacert` (PEM) or, without it, the system's CA certificates.
fn tls_config(cacert: Option<&Path>) -> io::Result<ClientConfig> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mut roots = RootCertStore::empty();
    match cacert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| invalid(format!("--cacert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(invalid(format!(
                    "--cacert {}: no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("--cacert {}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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
    let target = target(&p.server)?;
    let mut stream = TcpStream::connect(target.authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let request = request(p, target.authority);
    let mut response = Vec::new();
    if target.tls {
        let host = host_of(target.authority);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let session = ClientConnection::new(Arc::new(tls_config(p.cacert.as_deref())?), name)
            .map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(session, stream);
        tls.write_all(&request)?;
        match tls.read_to_end(&mut response) {
            // A server that closes without close_notify after `Connection: close`.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
            other => drop(other?),
        }
    } else {
        stream.write_all(&request)?;
        stream.read_to_end(&mut response)?;
    }
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
            cacert: None,
        };
        let host = target(&p.server).unwrap().authority;
        let text = String::from_utf8(request(&p, host)).unwrap();
        assert!(text.starts_with("POST /publish/news HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("Authorization: Bearer t\r\n"));
        assert!(text.ends_with("\r\n\r\nhi"));
        assert!(target("ftp://x").is_err());
        let tls = target("https://localhost:8443/x").unwrap();
        assert_eq!((tls.authority, tls.tls), ("localhost:8443", true));
        assert_eq!(host_of("localhost:8443"), "localhost");
        assert_eq!(host_of("[::1]:8443"), "::1");
    }
}
