//! The classic Ratchet chat: every message goes to every other client, and everyone
//! hears who joins and who leaves.
//!
//! Run: `cargo run --release --example chat -- 127.0.0.1:8080`, then open
//! `examples/chat.html` in two browser tabs (or connect any WebSocket client).
use pushloop::{CloseCode, ConnId, Context, Handler, Message, Refusal, Request, Server};

struct Chat;

impl Handler for Chat {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        _req: &Request<'_>,
    ) -> Result<(), Refusal> {
        let online = ctx.connection_count();
        ctx.broadcast_except(id, format!("{id} joined ({online} online)"));
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        ctx.broadcast_except(id, msg);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, _code: CloseCode, _reason: &str) {
        let online = ctx.connection_count();
        ctx.broadcast(format!("{id} left ({online} online)"));
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let server = Server::bind(addr)?;
    println!("chat server on ws://{}/ws", server.local_addr());
    server.run(Chat)
}
