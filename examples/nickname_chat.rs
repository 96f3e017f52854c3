//! A Ratchet-style chat with nicknames: each client picks one with `?nick=`, keeps it as
//! its per-connection data, and everyone hears who joins, who says what, who leaves.
//!
//! Run: `cargo run --release --example nickname_chat -- 127.0.0.1:8080`, then connect
//! to `ws://127.0.0.1:8080/?nick=ana` with any WebSocket client.
use pushloop::{CloseCode, ConnId, Context, Handler, Message, Refusal, Request, Server};

/// A client's nickname: its per-connection data.
struct Nick(String);

struct Chat;

impl Handler for Chat {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        let nick = match req.query("nick") {
            Some(nick) if !nick.trim().is_empty() => nick.trim().to_owned(),
            _ => format!("guest-{}", id.as_u64() & 0xffff),
        };
        ctx.broadcast_except(id, format!("* {nick} joined"));
        ctx.send(
            id,
            format!("* welcome, {nick} ({} online)", ctx.connection_count()),
        );
        ctx.set_data(id, Nick(nick));
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        let Some(Nick(nick)) = ctx.data::<Nick>(id) else {
            return;
        };
        let line = match msg {
            Message::Text(text) => format!("{nick}: {text}"),
            Message::Binary(bytes) => format!("{nick} sent {} bytes", bytes.len()),
        };
        ctx.broadcast_except(id, line);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, _: CloseCode, _: &str) {
        // The data is still there during on_close; it is dropped right after.
        if let Some(Nick(nick)) = ctx.take_data::<Nick>(id) {
            ctx.broadcast(format!("* {nick} left"));
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let server = Server::bind(addr)?;
    println!("listening on ws://{}/", server.local_addr());
    server.run(Chat)
}
