//! TLS for the tests: a private CA and server certificates made with rcgen (nothing with
//! a private key is checked in), the binary serving TLS, and a rustls client.
#![allow(dead_code)]

use super::TIMEOUT;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A private CA and the files of a server certificate it signed, in a folder of their
/// own: `ca.pem`, `cert.pem` (the server's certificate, then the CA's: a chain), `key.pem`.
pub struct Certs {
    pub dir: PathBuf,
    ca_key: KeyPair,
    ca_params: CertificateParams,
}

impl Certs {
    /// A new CA and a server certificate for `localhost` and `127.0.0.1` with serial
    /// `serial`, in a fresh folder named after `name`.
    pub fn new(name: &str, serial: u64) -> Certs {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the certificate folder");
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pushloop test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
        let certs = Certs {
            dir,
            ca_key,
            ca_params,
        };
        certs.issue(serial);
        certs
    }

    /// Writes a new server key and certificate (serial `serial`) over `cert.pem` and
    /// `key.pem`; returns the certificate's DER.
    pub fn issue(&self, serial: u64) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        let ca = self.ca_params.self_signed(&self.ca_key).expect("CA again");
        // The chain: the server's certificate, then its issuer's.
        let chain = format!("{}{}", cert.pem(), ca.pem());
        // Written beside and renamed over, so a reload never reads half a file.
        let (tmp_cert, tmp_key) = (self.dir.join("cert.tmp"), self.dir.join("key.tmp"));
        std::fs::write(&tmp_cert, chain).expect("write cert");
        std::fs::write(&tmp_key, key.serialize_pem()).expect("write key");
        std::fs::rename(&tmp_key, self.key()).expect("rename key");
        std::fs::rename(&tmp_cert, self.cert()).expect("rename cert");
        cert.der().to_vec()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// `--tls-cert CERT --tls-key KEY`, as owned strings.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert().display().to_string(),
            "--tls-key".into(),
            self.key().display().to_string(),
        ]
    }

    /// A rustls client configuration trusting only this CA (TLS 1.2 and 1.3, ALPN
    /// `http/1.1`).
    pub fn client_config(&self) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca()).expect("read ca.pem") {
            roots
                .add(cert.expect("CA certificate"))
                .expect("add the CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// A TLS connection to `addr` whose handshake has finished (bounded by the tests'
    /// timeout).
    pub fn connect(&self, addr: SocketAddr) -> Tls {
        connect_with(addr, Arc::new(self.client_config()))
    }
}

/// A client TLS stream over TCP.
pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` as `localhost` with `config` and completes the handshake.
pub fn connect_with(addr: SocketAddr, config: Arc<ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).expect("client session");
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("TLS handshake with the server");
    }
    tls
}

/// The serial number of the certificate the server presented on `tls`.
pub fn peer_serial(tls: &Tls) -> Vec<u8> {
    let chain = tls.conn.peer_certificates().expect("a certificate");
    serial_of(&chain[0])
}

/// The serial number in a DER certificate (RFC 5280 §4.1: Certificate ::= SEQUENCE {
/// tbsCertificate SEQUENCE { [0] version, serialNumber INTEGER, ... } ... }), without
/// leading zero bytes.
pub fn serial_of(der: &[u8]) -> Vec<u8> {
    let (_, cert) = tlv(der);
    let (_, tbs) = tlv(cert);
    let (tag, first) = tlv(tbs);
    let rest = if tag == 0xa0 {
        &tbs[tlv_len(tbs)..]
    } else {
        let _ = first;
        tbs
    };
    let (tag, serial) = tlv(rest);
    assert_eq!(tag, 0x02, "serialNumber is an INTEGER");
    let skip = serial.iter().take_while(|&&b| b == 0).count();
    serial[skip..].to_vec()
}

/// The tag and contents of the DER value at the start of `der`.
fn tlv(der: &[u8]) -> (u8, &[u8]) {
    let total = tlv_len(der);
    let head = total - content_len(der);
    (der[0], &der[head..total])
}

/// The length of the DER value at the start of `der`, header included.
fn tlv_len(der: &[u8]) -> usize {
    let n = content_len(der);
    let head = if der[1] < 0x80 {
        2
    } else {
        2 + (der[1] & 0x7f) as usize
    };
    head + n
}

fn content_len(der: &[u8]) -> usize {
    if der[1] < 0x80 {
        return der[1] as usize;
    }
    let bytes = (der[1] & 0x7f) as usize;
    der[2..2 + bytes]
        .iter()
        .fold(0, |n, &b| n << 8 | b as usize)
}

/// One HTTP/1.1 request over a fresh TLS connection; returns the whole response
/// (`Connection: close`).
pub fn https(certs: &Certs, addr: SocketAddr, head: &str) -> String {
    let mut tls = certs.connect(addr);
    tls.write_all(head.as_bytes()).expect("write the request");
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A peer that closed the TCP connection without close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("read the response: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}
