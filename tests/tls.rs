//! TLS on the loop (`--tls-cert`/`--tls-key`) against the real binary: Python
//! `websockets` over `wss://` (echo and chat at the frame-size boundaries,
//! permessage-deflate on), curl over `https://` (SSE, long polling, the publish API), a
//! rustls client; bad input on raw sockets (plain HTTP, a truncated ClientHello, no
//! common cipher suite, a stalled handshake, an unasked client certificate, a
//! renegotiation), each answered and closed while others are served; certificate reload
//! on SIGHUP; bad files at start.
//!
//! Certificates are made by the tests (rcgen), in `CARGO_TARGET_TMPDIR`.

mod common;

use common::tls::{peer_serial, Certs};
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the binary serving TLS with `certs`, plus `args`.
fn start(certs: &Certs, args: &[&str]) -> Binary {
    let tls = certs.args();
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    Binary::start(&all)
}

/// The virtualenv's Python (made by ./test.sh).
fn python() -> std::path::PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py3/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run ./test.sh (target/py3 with websockets==17.4)",
        python.display()
    );
    python
}

/// Runs `tests/tls/client.py MODE URL CA` (bounded) and returns its summary line.
fn python_client(mode: &str, url: &str, certs: &Certs) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/client.py");
    let mut command = Command::new(python());
    command.arg(script).args([mode, url]).arg(certs.ca());
    let output = output_within(command, Duration::from_secs(60)).expect("client.py in time");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "client.py {mode} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn python_websockets_echo_over_wss_at_the_frame_size_boundaries() {
    let certs = Certs::new("py-echo", 1);
    let server = start(&certs, &["--mode", "echo"]);
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let out = python_client("echo", &url, &certs);
    // 6 sizes x (text, compressible binary, random binary).
    assert!(out.contains("summary: echo messages=18 ok=18"), "{out}");
    assert!(out.contains("/http/1.1"), "ALPN http/1.1 expected: {out}");
}

#[test]
fn python_websockets_chat_over_wss() {
    let certs = Certs::new("py-chat", 1);
    let server = start(&certs, &[]);
    let url = format!("wss://localhost:{}/ws/room", server.addr.port());
    let out = python_client("chat", &url, &certs);
    assert!(out.contains("summary: chat messages=36 ok=36"), "{out}");
}

/// Runs curl with `args` trusting the test CA (bounded); returns its stdout.
fn curl(certs: &Certs, args: &[&str]) -> String {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(certs.ca())
        .args(args);
    let output = output_within(command, Duration::from_secs(15)).expect("curl in time");
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn curl_publishes_polls_and_streams_over_https() {
    let certs = Certs::new("curl", 1);
    let server = start(&certs, &[]);
    let base = format!("https://localhost:{}", server.addr.port());

    let answer = curl(
        &certs,
        &[
            "-H",
            "content-type: text/plain",
            "-d",
            "one",
            &format!("{base}/publish/news"),
        ],
    );
    assert_eq!(answer, "{\"id\":1,\"delivered\":0}");
    let poll = curl(&certs, &[&format!("{base}/poll/news?since=0")]);
    assert!(poll.contains("\"data\":\"one\""), "{poll}");

    // SSE: curl streams; once the server counts it, a publish reaches it.
    let mut sse = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "10", "--cacert"])
        .arg(certs.ca())
        .arg(format!("{base}/sse/news?since=1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn curl");
    let mut lines = BufReader::new(sse.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + TIMEOUT;
    while !curl(&certs, &[&format!("{base}/channels/news")]).contains("\"sse\":1") {
        assert!(
            Instant::now() < deadline,
            "the SSE stream was never counted"
        );
    }
    let answer = curl(
        &certs,
        &[
            "-H",
            "content-type: text/plain",
            "-d",
            "two",
            &format!("{base}/publish/news"),
        ],
    );
    assert_eq!(answer, "{\"id\":2,\"delivered\":1}");
    let mut seen = Vec::new();
    for line in lines.by_ref().take(20) {
        let line = line.expect("an SSE line");
        let done = line == "data: two";
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = sse.kill();
    let _ = sse.wait();
    assert!(seen.contains(&"id: 2".to_owned()), "{seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("data: two"),
        "{seen:?}"
    );
}

#[test]
fn the_page_and_keep_alive_requests_over_one_tls_connection() {
    let certs = Certs::new("keepalive", 1);
    let server = start(&certs, &[]);
    let mut tls = certs.connect(server.addr);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    for _ in 0..3 {
        tls.write_all(b"GET /channels HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).ends_with("{\"channels\":[]}") {
            let n = tls.read(&mut buf).expect("read the answer");
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    let page = common::tls::https(
        &certs,
        server.addr,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("<html"), "the page");
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

/// A TLS 1.2 ClientHello offering `suites`, for ECDSA P-256 key exchange and signatures
/// (no SNI, no ALPN).
fn client_hello(suites: &[u16]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, // supported_groups: secp256r1
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, // signature_algorithms: ecdsa p256
    ];
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(extensions);
    handshake_record(1, &body)
}

/// One handshake message of type `kind` in a plaintext TLS record.
fn handshake_record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend_from_slice(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(message.len() as u16).to_be_bytes());
    record.extend_from_slice(&message);
    record
}

/// Everything the server sends until it closes (bounded by the read timeout).
fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("expected the server to close, got {e} after {out:02x?}"),
        }
    }
    panic!("no end of stream");
}

/// A fatal TLS alert record with `description`.
fn alert(description: u8) -> Vec<u8> {
    vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

/// A well-behaved TLS client still gets served.
fn assert_still_serving_tls(certs: &Certs, addr: SocketAddr) {
    let answer = common::tls::https(
        certs,
        addr,
        "GET /channels HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

#[test]
fn plain_http_to_the_tls_port_gets_a_decode_error_alert() {
    let certs = Certs::new("plain", 1);
    let server = start(&certs, &[]);
    let mut a_client = certs.connect(server.addr);
    let mut stream = tcp(server.addr);
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_to_eof(&mut stream), alert(50)); // decode_error
                                                     // A WebSocket upgrade in the clear, and garbage: the same.
    let mut stream = tcp(server.addr);
    stream.write_all(&upgrade_head("/ws", &[], &[])).unwrap();
    assert_eq!(read_to_eof(&mut stream), alert(50));
    let mut stream = tcp(server.addr);
    stream.write_all(&[0xff; 64]).unwrap();
    assert_eq!(read_to_eof(&mut stream), alert(50));
    // The connection opened before is untouched.
    a_client
        .write_all(b"GET /channels HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = a_client.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_still_serving_tls(&certs, server.addr);
}

#[test]
fn a_client_hello_with_no_common_cipher_gets_handshake_failure() {
    let certs = Certs::new("cipher", 1);
    let server = start(&certs, &[]);
    let mut stream = tcp(server.addr);
    // TLS_RSA_WITH_AES_128_CBC_SHA and TLS_RSA_WITH_3DES_EDE_CBC_SHA: not offered.
    stream.write_all(&client_hello(&[0x002f, 0x000a])).unwrap();
    assert_eq!(read_to_eof(&mut stream), alert(40)); // handshake_failure
    assert_still_serving_tls(&certs, server.addr);
}

#[test]
fn a_truncated_client_hello_is_closed_at_the_end_of_stream_or_the_timeout() {
    let certs = Certs::new("truncated", 1);
    let server = start(&certs, &["--handshake-timeout", "1"]);
    let hello = client_hello(&[0xc02b]);
    // Half a ClientHello, then the client's FIN: closed at once.
    let mut stream = tcp(server.addr);
    stream.write_all(&hello[..hello.len() / 2]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut stream), b"");
    // Half a ClientHello, then nothing: closed by the handshake timeout.
    let mut stream = tcp(server.addr);
    stream.write_all(&hello[..hello.len() / 2]).unwrap();
    let started = Instant::now();
    assert_eq!(read_to_eof(&mut stream), b"");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_still_serving_tls(&certs, server.addr);
}

/// Reads TLS records until the server's ServerHelloDone (TLS 1.2), bounded.
fn read_server_flight(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        if got.ends_with(&[0x0e, 0, 0, 0]) {
            return got;
        }
        let n = stream.read(&mut buf).expect("the server's flight");
        assert!(n > 0, "closed during the server's flight");
        got.extend_from_slice(&buf[..n]);
    }
    panic!("no ServerHelloDone");
}

#[test]
fn a_client_that_stops_mid_handshake_is_dropped_at_the_timeout() {
    let certs = Certs::new("stall", 1);
    let server = start(&certs, &["--handshake-timeout", "1"]);
    let mut stream = tcp(server.addr);
    stream.write_all(&client_hello(&[0xc02b])).unwrap();
    let flight = read_server_flight(&mut stream);
    assert_eq!(&flight[..3], &[0x16, 0x03, 0x03], "a TLS 1.2 ServerHello");
    // No ClientKeyExchange: the handshake timeout ends it (the TLS slowloris).
    let started = Instant::now();
    assert_eq!(read_to_eof(&mut stream), b"");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_still_serving_tls(&certs, server.addr);
}

#[test]
fn an_unasked_client_certificate_gets_unexpected_message() {
    let certs = Certs::new("client-cert", 1);
    let server = start(&certs, &[]);
    let mut stream = tcp(server.addr);
    stream.write_all(&client_hello(&[0xc02b])).unwrap();
    read_server_flight(&mut stream);
    // A Certificate message (empty list) where ClientKeyExchange belongs: the server
    // sent no CertificateRequest.
    stream.write_all(&handshake_record(11, &[0, 0, 0])).unwrap();
    assert_eq!(read_to_eof(&mut stream), alert(10)); // unexpected_message
    assert_still_serving_tls(&certs, server.addr);
}

#[test]
fn a_renegotiation_is_refused() {
    let certs = Certs::new("reneg", 1);
    let server = start(&certs, &[]);
    // openssl s_client's `R` asks for a TLS 1.2 renegotiation.
    let mut client = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect"])
        .arg(server.addr.to_string())
        .arg("-CAfile")
        .arg(certs.ca())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (Debian's openssl package)");
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..200 {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 || line.contains("Verify return code") {
            break;
        }
    }
    assert!(line.contains("Verify return code: 0"), "handshake: {line}");
    client.stdin.as_mut().unwrap().write_all(b"R\n").unwrap();
    let output = output_of(client, stdout);
    assert!(
        output.contains("RENEGOTIATING") && output.contains("no renegotiation"),
        "{output}"
    );
    assert_still_serving_tls(&certs, server.addr);
}

/// What a child still writes (stdout and stderr) until it exits; killed after the tests'
/// timeout.
fn output_of(mut child: std::process::Child, mut stdout: impl Read) -> String {
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    });
    let mut out = String::new();
    let _ = stdout.read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut out);
    let _ = child.wait();
    drop(killer);
    out
}

// ---------------------------------------------------------------------------------------
// Certificates: reload and bad files
// ---------------------------------------------------------------------------------------

/// Opens connections until one presents the serial `want` (the reload is asynchronous),
/// bounded by the tests' timeout.
fn wait_for_serial(certs: &Certs, addr: SocketAddr, want: &[u8]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let serial = peer_serial(&certs.connect(addr));
        if serial == want {
            return;
        }
        assert!(Instant::now() < deadline, "serial still {serial:02x?}");
    }
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let certs = Certs::new("reload", 0x1111);
    let log = certs.dir.join("server.log");
    let tls = certs.args();
    let args: Vec<&str> = tls.iter().map(String::as_str).collect();
    let server = Binary::start_logging(&args, &log);
    let mut before = certs.connect(server.addr);
    assert_eq!(peer_serial(&before), vec![0x11, 0x11]);

    certs.issue(0x2222);
    server.signal("HUP");
    wait_for_serial(&certs, server.addr, &[0x22, 0x22]);
    // The connection opened before the reload still works, with its certificate.
    before
        .write_all(b"GET /channels HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = before.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(peer_serial(&before), vec![0x11, 0x11]);

    // A broken file: one line in the log, and the certificate stays.
    std::fs::write(certs.cert(), "not a certificate").unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + TIMEOUT;
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("kept the old certificate"))
        {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line about the bad file: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(line.contains("cert.pem"), "{line}");
    assert_eq!(peer_serial(&certs.connect(server.addr)), vec![0x22, 0x22]);
}

#[test]
fn bad_files_at_start_exit_1_naming_the_file() {
    let certs = Certs::new("bad-files", 1);
    let other = Certs::new("bad-files-other", 1);
    let garbage = certs.dir.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let missing = certs.dir.join("missing.pem");
    let (cert, key) = (certs.cert(), certs.key());
    let cases = [
        (&missing, &key, &missing, "No such file"),
        (&key, &key, &key, "no certificate in the file"),
        (&cert, &cert, &cert, "no private key"),
        (&garbage, &key, &garbage, "not a PEM certificate chain"),
        (
            &cert,
            &other.key(),
            &other.key(),
            "does not match the certificate",
        ),
    ];
    for (cert, key, at_fault, reason) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushloop"));
        command
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key);
        let output = output_within(command, TIMEOUT).expect("exit in time");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let message = format!("pushloop: cannot serve TLS: {}: ", at_fault.display());
        assert!(stderr.contains(&message), "{stderr}");
        assert!(stderr.contains(reason), "{reason}: {stderr}");
    }
    // One of the two flags alone is a usage error.
    let (status, _) = run_binary(&["--tls-cert", &certs.cert().display().to_string()]);
    assert_eq!(status.code(), Some(2));
}

#[test]
fn pushloop_publish_over_https_trusts_cacert() {
    let certs = Certs::new("publish", 1);
    let server = start(&certs, &[]);
    let url = format!("https://localhost:{}", server.addr.port());
    let publish = |extra: &[&std::ffi::OsStr]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushloop"));
        command
            .env_remove("PUSHLOOP_PUBLISH_TOKEN")
            .args(["publish", "news", "hello", "--server", &url])
            .args(extra);
        output_within(command, TIMEOUT).expect("publish in time")
    };
    let ok = publish(&["--cacert".as_ref(), certs.ca().as_os_str()]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "{\"id\":1,\"delivered\":0}\n"
    );
    // Without the private CA the certificate is not trusted: exit 1, saying why.
    let refused = publish(&[]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    // A plain http:// URL to the TLS port is not an HTTP answer.
    let plain = format!("http://{}", server.addr);
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushloop"));
    command.args(["publish", "news", "hello", "--server", &plain]);
    let output = output_within(command, TIMEOUT).expect("publish in time");
    assert_eq!(output.status.code(), Some(1));
}
