//! Rooms with history and resume. A client joins a room at `/rooms/<room>`, and with
//! `?since=<id>` first gets what it missed; its messages go to the room's other members.
//! A web backend publishes with `POST /rooms/<room>`; a thread of this program publishes
//! an announcement to `lobby` every `ANNOUNCE_MS` (default 500) through a `Handle`.
//! Clients that offer the `pushloop.v1` subprotocol get JSON envelopes with ids; the
//! others get the messages as they are.
//!
//! Run: `cargo run --release --example rooms -- 127.0.0.1:8080`, then connect to
//! `ws://127.0.0.1:8080/rooms/lobby`, and `curl -d hi http://127.0.0.1:8080/rooms/lobby`.
use pushloop::{
    valid_channel_name, Config, ConnId, Context, Handler, Message, Refusal, Reply, Request,
    Response, Server, ENVELOPE_PROTOCOL,
};
use std::time::Duration;

/// The room a path names: `/rooms/<room>`.
fn room_of(req: &Request<'_>) -> Option<String> {
    let mut segments = req.path_segments();
    match (segments.next().as_deref(), segments.next(), segments.next()) {
        (Some("rooms"), Some(room), None) if valid_channel_name(&room) => Some(room.into_owned()),
        _ => None,
    }
}

struct Rooms;

impl Handler for Rooms {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        let room = room_of(req).ok_or_else(|| Refusal::new(404, "use /rooms/<room>"))?;
        let joined = match req.query("since") {
            None => ctx.join(id, &room),
            Some(since) => {
                let since = since
                    .parse()
                    .map_err(|_| Refusal::new(400, "since must be an id"))?;
                ctx.join_since(id, &room, since)
            }
        };
        joined.map_err(|e| Refusal::new(400, e.to_string()))
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        if let Some(room) = ctx.first_channel_of(id) {
            ctx.publish_except(&room, msg, id);
        }
    }

    fn on_http(
        &mut self,
        ctx: &mut Context<'_>,
        _: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
        let Some(room) = room_of(req) else {
            return Response::text(404, "use /rooms/<room>").into();
        };
        if req.method() != "POST" {
            return Response::upgrade_required().into();
        }
        let published = match std::str::from_utf8(body) {
            Ok(text) => ctx.publish_text(&room, text),
            Err(_) => ctx.publish_binary(&room, body),
        };
        let json = format!(
            r#"{{"id":{},"delivered":{}}}"#,
            published.id, published.delivered
        );
        Response::json(200, json).into()
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let every = std::env::var("ANNOUNCE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_millis(500), Duration::from_millis);
    let config = Config::default()
        .protocols([ENVELOPE_PROTOCOL])
        .history(100);
    let server = Server::bind_with(addr, config)?;
    println!("listening on ws://{}/rooms/lobby", server.local_addr());
    let handle = server.handle();
    std::thread::spawn(move || {
        for n in 1.. {
            std::thread::sleep(every);
            if handle
                .publish("lobby", format!("announcement {n}"))
                .wait()
                .is_err()
            {
                return; // the server stopped
            }
        }
    });
    server.run(Rooms)
}
