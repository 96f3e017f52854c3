//! A TCP proxy between test clients and the server, to break the path without stopping
//! the server: [`Proxy::pause`] drops every connection and refuses new ones (closes them
//! at once) until [`Proxy::resume`].
//!
//! Threads: one accepting, two per connection (one each way); sockets have timeouts, and
//! dropping the proxy stops it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Shared {
    refuse: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// A running proxy to `upstream`, listening on [`Proxy::addr`].
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy to `upstream` on a free loopback port, forwarding.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            refuse: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if s.refuse.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(client, upstream, &s));
            }
        });
        Proxy { addr, shared }
    }

    /// Drops every open connection and refuses new ones.
    pub fn pause(&self) {
        self.shared.refuse.store(true, Ordering::SeqCst);
        self.drop_open();
    }

    /// Forwards again.
    pub fn resume(&self) {
        self.shared.refuse.store(false, Ordering::SeqCst);
    }

    /// Closes every connection it is carrying (both sides).
    fn drop_open(&self) {
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.drop_open();
        // Wakes the accepting thread so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(mut client: TcpStream, upstream: SocketAddr, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        return;
    };
    {
        let mut open = shared.open.lock().unwrap();
        for s in [&client, &server] {
            if let Ok(s) = s.try_clone() {
                open.push(s);
            }
        }
    }
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pump(&mut client_in, &mut server_out));
    pump(&mut server, &mut client);
    let _ = up.join();
}

/// Copies `from` to `to` until either ends, then shuts both down.
fn pump(from: &mut TcpStream, to: &mut TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
