//! TLS on the loop: [`Tls`], the certificate and key a server presents (loaded from PEM
//! files, reloadable while connections stay up), and [`TlsSink`], which encrypts what a
//! connection's outbox writes.
//!
//! A TLS connection is its TCP socket plus a rustls [`ServerConnection`], which is
//! sans-IO: the loop reads records from the socket into its read buffer and hands them
//! to rustls, takes the plaintext out into a second loop buffer and feeds it to the
//! protocol as it would a plain socket's bytes. Writes go the other way through
//! [`TlsSink`]: the outbox's plaintext (a broadcast encoded once for every recipient)
//! is encrypted per connection into rustls's send buffer, then written to the socket.
//! The crypto provider is *ring* (see `docs/deploy.md` for why).

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The most encrypted bytes rustls holds for a connection before its sink reports
/// `WouldBlock` (what the socket did not take stays in the outbox, as plaintext).
const SEND_LIMIT: usize = 64 << 10;

/// The certificate chain and private key a TLS server presents, from PEM files.
///
/// Clones share the same certificate: [`reload`](Tls::reload) on one (e.g. on `SIGHUP`)
/// changes what every loop presents in its next handshakes; connections already open
/// keep theirs.
///
/// ```no_run
/// use pushloop::{Config, Tls};
/// let tls = Tls::from_pem_files("cert.pem", "key.pem")?;
/// let config = Config::default().tls(tls.clone());
/// // later, after the files were replaced:
/// tls.reload()?;
/// # Ok::<(), pushloop::TlsError>(())
/// ```
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Why a certificate or key could not be used: the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for TlsError {}

/// The certificate handshakes present now; swapped by [`Tls::reload`].
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .map_or_else(|e| e.into_inner().clone(), |k| k.clone()),
        )
    }
}

impl Tls {
    /// Loads the certificate chain (`cert`: the server's certificate first, then its
    /// intermediates) and the private key (`key`: PKCS#8, PKCS#1 RSA or SEC1 EC) from PEM
    /// files, and checks that they belong together. Offers TLS 1.2 and 1.3 and ALPN
    /// `http/1.1`.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Tls, TlsError> {
        let (cert, key) = (cert.as_ref().to_owned(), key.as_ref().to_owned());
        let current = Arc::new(Current(RwLock::new(load(&cert, &key)?)));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError {
                    file: cert.clone(),
                    reason: e.to_string(),
                })?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            current,
            cert,
            key,
        })
    }

    /// Reads the same two files again; from then on new handshakes present the new
    /// certificate, and connections already open are not touched. On an error nothing
    /// changes: handshakes keep presenting the certificate they did.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load(&self.cert, &self.key)?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The key file.
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The rustls configuration the handshakes use (TLS 1.2 and 1.3, ALPN `http/1.1`,
    /// no client authentication, the certificate [`reload`](Tls::reload) swaps).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// A server-side TLS session for a connection just accepted.
    pub(crate) fn session(&self) -> Result<ServerConnection, rustls::Error> {
        let mut session = ServerConnection::new(self.config.clone())?;
        session.set_buffer_limit(Some(SEND_LIMIT));
        Ok(session)
    }
}

/// Reads and checks a certificate chain and its key.
fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let fail = |file: &Path, reason: String| TlsError {
        file: file.to_owned(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| fail(cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(fail(cert, "no certificate in the file".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| fail(key, e.to_string()))?;
    let der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| fail(key, format!("no private key in the file: {e}")))?;
    let signer = provider::sign::any_supported_type(&der)
        .map_err(|e| fail(key, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => fail(
            key,
            format!("does not match the certificate in {}", cert.display()),
        ),
        e => fail(cert, format!("unusable certificate: {e}")),
    })?;
    Ok(Arc::new(certified))
}

/// The TLS sessions of a loop's connections, by slab key, beside the slab rather than in
/// [`Connection`](crate::server::connection::Connection): a plain listener's connections
/// pay nothing for TLS (the vector stays empty), a TLS listener's one pointer each.
#[derive(Default)]
pub(crate) struct Sessions(Vec<Option<Box<ServerConnection>>>);

impl Sessions {
    /// The session of the connection in slot `key`, if it has one.
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut ServerConnection> {
        self.0.get_mut(key)?.as_deref_mut()
    }

    /// Gives slot `key` its session (a connection just accepted).
    pub(crate) fn insert(&mut self, key: usize, session: Box<ServerConnection>) {
        if self.0.len() <= key {
            self.0.resize_with(key + 1, || None);
        }
        self.0[key] = Some(session);
    }

    /// Drops slot `key`'s session (its connection is gone).
    pub(crate) fn remove(&mut self, key: usize) {
        if let Some(slot) = self.0.get_mut(key) {
            *slot = None;
        }
    }

    /// Whether slot `key`'s session has records to send.
    pub(crate) fn wants_write(&self, key: usize) -> bool {
        self.0
            .get(key)
            .and_then(Option::as_deref)
            .is_some_and(|tls| tls.wants_write())
    }
}

/// A connection's socket seen through its TLS session: writing plaintext encrypts it
/// and sends the records. It takes plaintext only once rustls has written everything it
/// held, so what the socket cannot take waits in the outbox (shared, unencrypted), not in
/// rustls.
pub(crate) struct TlsSink<'a, S> {
    pub(crate) tls: &'a mut ServerConnection,
    pub(crate) socket: &'a mut S,
}

impl<S: Write> TlsSink<'_, S> {
    /// Writes the records rustls holds: `Ok(true)` when none is left, `Ok(false)` when the
    /// socket would block first.
    pub(crate) fn send_records(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl<S: Write> Write for TlsSink<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if !self.send_records()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // Only before the handshake completes (the server answers requests, which
            // come after it): try again when the socket is writable.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.send_records()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_records().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pushloop-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loads_a_pair_and_names_the_file_at_fault() {
        let dir = temp_dir("load");
        let (cert, key) = write_pair(&dir, "a");
        let (_, other_key) = write_pair(&dir, "b");
        assert!(Tls::from_pem_files(&cert, &key).is_ok());

        let missing = Tls::from_pem_files(dir.join("nope.crt"), &key).unwrap_err();
        assert_eq!(missing.file, dir.join("nope.crt"));

        let swapped = Tls::from_pem_files(&key, &key).unwrap_err();
        assert_eq!(swapped.file, key);
        assert_eq!(swapped.reason, "no certificate in the file");

        let no_key = Tls::from_pem_files(&cert, &cert).unwrap_err();
        assert_eq!(no_key.file, cert);
        assert!(
            no_key.reason.starts_with("no private key"),
            "{}",
            no_key.reason
        );

        let wrong = Tls::from_pem_files(&cert, &other_key).unwrap_err();
        assert_eq!(wrong.file, other_key);
        assert!(
            wrong.reason.starts_with("does not match"),
            "{}",
            wrong.reason
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate() {
        let dir = temp_dir("reload");
        let (cert, key) = write_pair(&dir, "a");
        let tls = Tls::from_pem_files(&cert, &key).unwrap();
        let before = tls.current.0.read().unwrap().cert[0].clone();
        std::fs::write(&cert, "garbage").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.current.0.read().unwrap().cert[0], before);

        let (c2, k2) = write_pair(&dir, "b");
        std::fs::rename(c2, &cert).unwrap();
        std::fs::rename(k2, &key).unwrap();
        tls.reload().unwrap();
        assert_ne!(tls.current.0.read().unwrap().cert[0], before);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
