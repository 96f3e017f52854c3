//! Server push: a background thread sends a timestamped tick to every client once a
//! second through the server's [`Handle`], while the event loop runs on the main thread.
//!
//! Run: `cargo run --release --example push -- 127.0.0.1:8080`, then connect any
//! WebSocket client, e.g. `examples/chat.html`.
use pushloop::{ConnId, Context, Handle, Handler, Message, Refusal, Request, Server};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Push;

impl Handler for Push {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        _req: &Request<'_>,
    ) -> Result<(), Refusal> {
        let online = ctx.connection_count();
        let greeting = format!("welcome {id}: a tick every second ({online} online)");
        ctx.send(id, &greeting);
        Ok(())
    }

    /// Push only: what clients send is ignored.
    fn on_message(&mut self, _ctx: &mut Context<'_>, _id: ConnId, _msg: Message<'_>) {}
}

/// Broadcasts `tick N at SECS.MILLIS` once a second until the server stops.
fn ticker(handle: Handle) {
    for n in 1u64.. {
        thread::sleep(Duration::from_secs(1));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let tick = format!("tick {n} at {}.{:03}", now.as_secs(), now.subsec_millis());
        if handle.broadcast(tick).is_err() {
            return; // the server stopped
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let server = Server::bind(addr)?;
    let handle = server.handle();
    thread::spawn(move || ticker(handle));
    println!("push server on ws://{}/ws", server.local_addr());
    server.run(Push)
}
