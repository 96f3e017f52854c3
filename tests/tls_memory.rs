//! What an idle TLS connection costs the server in heap memory: the rustls session the
//! loop keeps per connection (`Connection::tls`), after a full handshake and a message
//! each way, measured with a counting allocator (so this file is a test binary of its
//! own). Prints the figures (`--nocapture`) and bounds them, so a change that makes
//! idle TLS connections fatter fails here.
//!
//!     cargo test --release --test tls_memory -- --nocapture

mod common;

use common::tls::Certs;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConfig, ServerConnection};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Moves every record one side has for the other.
fn pump(from: &mut dyn FnMut(&mut Vec<u8>), to: &mut dyn FnMut(&[u8])) {
    let mut wire = Vec::new();
    from(&mut wire);
    if !wire.is_empty() {
        to(&wire);
    }
}

/// A session as the server's loop keeps it, after a handshake and one message each way,
/// with every buffer drained; and the client that talked to it.
fn idle_session(
    server: Arc<ServerConfig>,
    certs: &Certs,
) -> (Box<ServerConnection>, ClientConnection) {
    let mut srv = Box::new(ServerConnection::new(server).unwrap());
    srv.set_buffer_limit(Some(64 << 10));
    let name = ServerName::try_from("localhost").unwrap();
    let mut cli = ClientConnection::new(Arc::new(certs.client_config()), name).unwrap();
    let mut plain = vec![0u8; 64 << 10];
    for _ in 0..10 {
        pump(
            &mut |w| {
                while cli.wants_write() {
                    cli.write_tls(w).unwrap();
                }
            },
            &mut |mut r| {
                while !r.is_empty() {
                    srv.read_tls(&mut r).unwrap();
                    srv.process_new_packets().unwrap();
                }
            },
        );
        pump(
            &mut |w| {
                while srv.wants_write() {
                    srv.write_tls(w).unwrap();
                }
            },
            &mut |mut r| {
                while !r.is_empty() {
                    cli.read_tls(&mut r).unwrap();
                    cli.process_new_packets().unwrap();
                }
            },
        );
        if !cli.is_handshaking() && !srv.is_handshaking() && !cli.wants_write() {
            break;
        }
    }
    assert!(!srv.is_handshaking(), "handshake done");
    cli.writer()
        .write_all(b"GET /channels HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    pump(
        &mut |w| {
            while cli.wants_write() {
                cli.write_tls(w).unwrap();
            }
        },
        &mut |mut r| {
            while !r.is_empty() {
                srv.read_tls(&mut r).unwrap();
                srv.process_new_packets().unwrap();
            }
        },
    );
    let n = srv.reader().read(&mut plain).unwrap();
    assert!(n > 0);
    srv.writer()
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .unwrap();
    pump(
        &mut |w| {
            while srv.wants_write() {
                srv.write_tls(w).unwrap();
            }
        },
        &mut |mut r| {
            while !r.is_empty() {
                cli.read_tls(&mut r).unwrap();
                cli.process_new_packets().unwrap();
            }
        },
    );
    (srv, cli)
}

#[test]
fn an_idle_tls_session_holds_a_few_kilobytes() {
    let certs = Certs::new("memory", 1);
    let tls = pushloop::Tls::from_pem_files(certs.cert(), certs.key()).unwrap();
    let config = tls_config(&tls);
    // Warm-up: one-time allocations (provider tables, the session cache) out of the way.
    drop(idle_session(config.clone(), &certs));
    let mut sessions = Vec::new();
    for _ in 0..100 {
        let (srv, cli) = idle_session(config.clone(), &certs);
        drop(cli);
        sessions.push(srv);
    }
    let before = LIVE.load(Ordering::Relaxed);
    let heap = std::mem::size_of::<ServerConnection>();
    drop(sessions);
    let per_session = (before - LIVE.load(Ordering::Relaxed)) / 100;
    println!(
        "idle TLS session: {per_session} bytes of heap per connection \
         (ServerConnection itself {heap} bytes, boxed; the rest its buffers and keys)"
    );
    assert!(per_session > 0);
    assert!(
        per_session < 16 << 10,
        "{per_session} bytes per idle session"
    );
}

/// The server configuration the binary would use (one `Tls` is one config).
fn tls_config(tls: &pushloop::Tls) -> Arc<ServerConfig> {
    tls.server_config()
}
