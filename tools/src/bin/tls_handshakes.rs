//! Full TLS handshakes per second against a server (bench/tls.sh).
//!
//! ```text
//! tls_handshakes --url 127.0.0.1:PORT -c 20 -t 5 [--tls12]
//! ```
//!
//! One thread, one `mio::Poll`, `-c` connections at a time. Each connects, makes a full
//! handshake (rustls with ring, no session resumption, any certificate accepted but the
//! server's signature checked), sends close_notify, half-closes and waits for the server
//! to close: then it counts and the next connection starts. The last stdout line is
//! `RESULT handshakes=N secs=S per_s=R errors=E`; exit 1 if any failed. Loopback only.

use clap::Parser;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use pushloop_tools::tls::{client_config, Stream};
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

/// Full TLS handshakes per second.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Cli {
    /// Server address HOST:PORT (loopback only).
    #[arg(long)]
    url: SocketAddr,
    /// Handshakes under way at once.
    #[arg(short = 'c', long = "conns", default_value_t = 20)]
    conns: usize,
    /// Seconds to run.
    #[arg(short = 't', long = "secs", default_value_t = 5.0)]
    secs: f64,
}

/// A connection's state.
struct Slot {
    stream: Stream,
    /// close_notify sent and the write side shut: waiting for the server's end.
    closing: bool,
}

fn main() {
    let cli = Cli::parse();
    if !cli.url.ip().is_loopback() {
        eprintln!("tls_handshakes: loopback targets only");
        std::process::exit(2);
    }
    match run(&cli) {
        Ok(errors) => std::process::exit(i32::from(errors > 0)),
        Err(e) => {
            eprintln!("tls_handshakes: {e}");
            std::process::exit(1);
        }
    }
}

fn run(cli: &Cli) -> io::Result<u64> {
    let config = client_config(None)?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Slot>> = (0..cli.conns).map(|_| None).collect();
    let open = |poll: &mut Poll, idx: usize| -> io::Result<Slot> {
        let mut tcp = TcpStream::connect(cli.url)?;
        poll.registry().register(
            &mut tcp,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Slot {
            stream: Stream::tls(tcp, config.clone())?,
            closing: false,
        })
    };
    for (idx, slot) in slots.iter_mut().enumerate() {
        *slot = Some(open(&mut poll, idx)?);
    }
    let (mut done, mut errors) = (0u64, 0u64);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(cli.secs.max(0.0));
    let mut buf = vec![0u8; 16 << 10];
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in events.iter() {
            let idx = event.token().0;
            let Some(slot) = slots[idx].as_mut() else {
                continue;
            };
            let finished = match step(slot, &mut buf) {
                Ok(finished) => finished,
                Err(e) => {
                    errors += 1;
                    if errors <= 10 {
                        eprintln!("tls_handshakes: {e}");
                    }
                    true
                }
            };
            if finished {
                if let Some(mut old) = slots[idx].take() {
                    let _ = poll.registry().deregister(&mut old.stream.tcp);
                    if !old.closing {
                        // Failed: counted above.
                    } else {
                        done += 1;
                    }
                }
                if Instant::now() < end {
                    slots[idx] = Some(open(&mut poll, idx)?);
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "RESULT handshakes={done} secs={secs:.3} per_s={:.0} errors={errors}",
        done as f64 / secs
    );
    Ok(errors)
}

/// Drives `slot` on readiness; `Ok(true)` once the server closed after a finished
/// handshake.
fn step(slot: &mut Slot, buf: &mut [u8]) -> io::Result<bool> {
    slot.stream.flush_records()?;
    loop {
        match slot.stream.read(buf) {
            Ok(0) if slot.closing => return Ok(true),
            Ok(0) => return Err(io::Error::other("closed during the handshake")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if slot.closing && e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(true)
            }
            Err(e) if slot.closing && e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    if !slot.closing && !slot.stream.is_handshaking() {
        slot.stream.close_notify()?;
        let _ = slot.stream.tcp.shutdown(Shutdown::Write);
        slot.closing = true;
    }
    Ok(false)
}
