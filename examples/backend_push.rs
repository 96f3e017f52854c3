//! A Swoole-style backend: clients connect as a user (`/ws?user=ana`), and a backend
//! thread, which owns no socket, pushes to them through a `Handle`: a direct message to
//! the connection it was told about, and a publish to the user's own channel
//! (`user.ana`), which every tab of that user receives and which is kept in history.
//!
//! Run: `cargo run --release --example backend_push -- 127.0.0.1:8080`, then connect to
//! `ws://127.0.0.1:8080/ws?user=ana`.
use pushloop::{ConnId, Context, Handle, Handler, Message, Refusal, Request, Server};
use std::sync::mpsc::{self, Receiver, Sender};

/// What the loop tells the backend: a user connected on this connection.
struct Online {
    user: String,
    id: ConnId,
}

struct Users {
    backend: Sender<Online>,
}

impl Handler for Users {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        let Some(user) = req
            .query("user")
            .filter(|u| pushloop::valid_channel_name(u))
        else {
            return Err(Refusal::new(
                400,
                "?user=NAME required (A-Z a-z 0-9 _ . : -)",
            ));
        };
        let channel = format!("user.{user}");
        if let Err(e) = ctx.join(id, &channel) {
            return Err(Refusal::new(400, e.to_string()));
        }
        let _ = self.backend.send(Online {
            user: user.into_owned(),
            id,
        });
        Ok(())
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {}
}

/// The backend: greets each user on its connection, then publishes to the user's
/// channel. It runs until the server stops.
fn backend(online: Receiver<Online>, handle: Handle) {
    for Online { user, id } in online {
        if handle.send(id, format!("welcome {user}")).is_err() {
            return;
        }
        let channel = format!("user.{user}");
        let published = handle.publish(channel, format!("{user}, you have 3 new notifications"));
        match published.wait() {
            Ok(p) => println!(
                "published #{} to user.{user}, delivered to {}",
                p.id, p.delivered
            ),
            Err(_) => return,
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let server = Server::bind(addr)?;
    println!("listening on ws://{}/ws", server.local_addr());
    let (tx, rx) = mpsc::channel();
    let handle = server.handle();
    std::thread::spawn(move || backend(rx, handle));
    server.run(Users { backend: tx })
}
