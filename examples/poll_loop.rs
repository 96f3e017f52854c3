//! A program that owns its main loop: it drives the server one turn at a time with
//! `poll_once` and, between turns, does its own periodic work: every 100 ms it publishes
//! a tick to the channel `ticks`, which every client joins on connect.
//!
//! Run: `cargo run --release --example poll_loop -- 127.0.0.1:8080`, then connect to
//! `ws://127.0.0.1:8080/`.
use pushloop::{ConnId, Context, Handler, Message, Refusal, Request, Server};
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(100);

struct Ticks;

impl Handler for Ticks {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        _: &Request<'_>,
    ) -> Result<(), Refusal> {
        ctx.join(id, "ticks")
            .map_err(|e| Refusal::new(500, e.to_string()))
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {}
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let mut server = Server::bind(addr)?;
    println!("listening on ws://{}/", server.local_addr());
    let mut handler = Ticks;
    let mut next = Instant::now() + TICK;
    let mut n = 0u64;
    loop {
        // Wait for the network at most until the next tick is due.
        let wait = next.saturating_duration_since(Instant::now());
        if !server.poll_once(&mut handler, Some(wait))? {
            return Ok(()); // stopped
        }
        let now = Instant::now();
        if now >= next {
            n += 1;
            server.with_context(|ctx| ctx.publish("ticks", format!("tick {n}")));
            // The next multiple of the period: ticks missed while busy are skipped, so
            // two ticks are never closer than the period.
            while next <= now {
                next += TICK;
            }
        }
    }
}
