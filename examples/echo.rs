//! The smallest pushloop program: echo every message back to its sender.
//! Run: `cargo run --release --example echo -- 127.0.0.1:9001`
use pushloop::{ConnId, Context, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        ctx.send(id, msg);
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = Server::bind(addr)?;
    println!("echo server on ws://{}", server.local_addr());
    server.run(Echo)
}
