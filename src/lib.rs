//! pushloop: a real-time WebSocket and message-push server on one single-threaded `mio`
//! event loop, to run as a binary or to embed in your own Rust program.
//!
//! You implement [`Handler`] (the shape of Ratchet's components: `on_open`,
//! `on_message`, `on_close`, `on_error`, plus `on_http` for plain requests); every
//! callback gets a [`Context`] to send, broadcast, publish to channels, join and leave,
//! close, and keep per-connection data. Other threads reach the loop through a
//! [`Handle`]. Callbacks run on the loop thread and must not block.
//!
//! # Echo in 15 lines
//!
//! ```no_run
//! use pushloop::{ConnId, Context, Handler, Message, Server};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
//!         ctx.send(id, msg);
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     Server::bind("127.0.0.1:9001")?.run(Echo)
//! }
//! ```
//!
//! # Chat with per-connection data
//!
//! Each connection can carry a value of any type ([`Context::set_data`]), handed to
//! every later callback and dropped after `on_close`. A program that attaches nothing
//! pays nothing for it. `examples/nickname_chat.rs` is the whole program.
//!
//! ```no_run
//! use pushloop::{CloseCode, ConnId, Context, Handler, Message, Refusal, Request};
//!
//! struct Nick(String);
//! struct Chat;
//!
//! impl Handler for Chat {
//!     fn on_open(&mut self, ctx: &mut Context<'_>, id: ConnId, req: &Request<'_>) -> Result<(), Refusal> {
//!         let nick = req.query("nick").map_or_else(|| "guest".to_owned(), |n| n.into_owned());
//!         ctx.broadcast_except(id, format!("* {nick} joined"));
//!         ctx.set_data(id, Nick(nick));
//!         Ok(())
//!     }
//!
//!     fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
//!         if let (Some(Nick(nick)), Message::Text(text)) = (ctx.data::<Nick>(id), msg) {
//!             let line = format!("{nick}: {text}");
//!             ctx.broadcast_except(id, line);
//!         }
//!     }
//!
//!     fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, _: CloseCode, _: &str) {
//!         if let Some(Nick(nick)) = ctx.take_data::<Nick>(id) {
//!             ctx.broadcast(format!("* {nick} left"));
//!         }
//!     }
//! }
//! ```
//!
//! # A backend thread publishing to channels
//!
//! [`Server::handle`] gives a `Clone + Send` [`Handle`]. [`Handle::publish`],
//! [`Handle::join`], [`Handle::leave`] and [`Handle::defer`] (any code, with a
//! [`Context`], on the loop thread) return a [`Pending`] result the caller may wait for
//! or drop; [`Handle::send`], [`Handle::broadcast`], [`Handle::close`] and
//! [`Handle::stop`] just queue the work. A [`ConnId`] converts to a `u64` and back
//! ([`ConnId::from_u64`]), so a backend can store it and address the connection later.
//! `examples/backend_push.rs` pushes to one user, by connection and by the user's channel.
//!
//! ```no_run
//! # use pushloop::{ConnId, Context, Handler, Message, Server};
//! # struct Quiet;
//! # impl Handler for Quiet { fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {} }
//! let server = Server::bind("127.0.0.1:8080")?;
//! let handle = server.handle();
//! std::thread::spawn(move || {
//!     let published = handle.publish("news", "extra, extra").wait();
//!     println!("{published:?}"); // Ok(Published { id: 1, delivered: 0 })
//! });
//! server.run(Quiet)
//! # ; Ok::<(), std::io::Error>(())
//! ```
//!
//! # Your own main loop
//!
//! [`Server::poll_once`] runs one turn and returns; between turns
//! [`Server::with_context`] gives a [`Context`] as a callback would
//! (`examples/poll_loop.rs` publishes a tick every 100 ms this way).
//!
//! ```no_run
//! # use pushloop::{ConnId, Context, Handler, Message, Server};
//! # use std::time::Duration;
//! # struct Quiet;
//! # impl Handler for Quiet { fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: Message<'_>) {} }
//! let mut server = Server::bind("127.0.0.1:8080")?;
//! let mut handler = Quiet;
//! let mut n = 0;
//! while server.poll_once(&mut handler, Some(Duration::from_millis(100)))? {
//!     n += 1;
//!     server.with_context(|ctx| ctx.publish("ticks", format!("tick {n}")));
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Every core: workers
//!
//! [`Config::workers`] runs one such loop per thread, each with its own listener on the
//! same address, and [`Server::run_workers`] gives each its own handler. Each loop stays
//! single-threaded; [`ConnId::worker`] names a connection's worker, a [`Handle`] reaches
//! every worker, and channels span them (one owner per channel gives the ids and keeps
//! the history; resume is exact on any worker).
//!
//! ```no_run
//! # use pushloop::{ConnId, Context, Handler, Message, Server, Config};
//! # struct Echo;
//! # impl Handler for Echo { fn on_message(&mut self, c: &mut Context<'_>, id: ConnId, m: Message<'_>) { c.send(id, m); } }
//! let server = Server::bind_with("127.0.0.1:9001", Config::default().workers(0))?;
//! server.run_workers(|| Echo) // one handler per worker
//! # ; Ok::<(), std::io::Error>(())
//! ```
//!
//! # Channels with history and resume
//!
//! [`Context::publish`] gives a message the channel's next id and keeps the last ones
//! ([`Config::history`]); it reaches WebSocket members, Server-Sent Events streams
//! ([`Context::event_stream`]) and long polls ([`Context::long_poll`]).
//! [`Context::join_since`] first sends a returning client what it missed after the last
//! id it saw, then live messages: no gap, no duplicate. `examples/rooms.rs` is a room
//! server with resume, published into from HTTP and from another thread.
//!
//! ```no_run
//! # use pushloop::{ConnId, Context, Handler, Message, Refusal, Request};
//! struct Rooms;
//!
//! impl Handler for Rooms {
//!     fn on_open(&mut self, ctx: &mut Context<'_>, id: ConnId, req: &Request<'_>) -> Result<(), Refusal> {
//!         let since = req.query("since").and_then(|s| s.parse().ok());
//!         let joined = match since {
//!             Some(since) => ctx.join_since(id, "lobby", since),
//!             None => ctx.join(id, "lobby"),
//!         };
//!         joined.map_err(|e| Refusal::new(400, e.to_string()))
//!     }
//!
//!     fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
//!         ctx.publish_except("lobby", msg, id); // to everyone else, with an id
//!     }
//! }
//! ```
//!
//! # The envelope protocol
//!
//! A client that offers the subprotocol [`ENVELOPE_PROTOCOL`] (`pushloop.v1`; accept it
//! with [`Config::protocols`]) gets every message as JSON:
//! `{"type":"message","channel":"lobby","id":7,"data":"hi"}` for a publish,
//! `{"type":"message","data":"hi"}` for a send or broadcast (no channel, no id, no
//! history), a `gap` notice when history lost part of what it asked for, and an `ack`
//! with the id of its own published message. Binary data is base64 with
//! `"encoding":"base64"`. Other clients get the messages as they are.
//!
//! # Layers
//!
//! The crate is in layers; each depends only on those below it (`docs/architecture.md`):
//!
//! | layer | owns |
//! |---|---|
//! | protocol core, sans-IO | frames, masking, UTF-8, close codes, the decoder, the handshake, permessage-deflate; HTTP request heads and responses |
//! | event loop | mio, connections, outboxes, timers, keepalive, backlog policies, shared codecs |
//! | push | channels, history and resume, SSE and long-poll formats, the envelope protocol |
//! | embedding API | [`Handler`], [`Context`], [`Server`], [`Handle`], [`Config`] |
//!
//! [`codec`] gives the wire formats' building blocks to programs that speak WebSocket
//! themselves (the fuzz targets, the benchmarks, load generators).
//!
//! The `cli` feature (on by default) builds the `pushloop` binary; a library user can
//! turn it off (`default-features = false`) and skip its dependencies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod http;
mod push;
mod server;
mod ws;

pub mod codec;

pub use api::auth::{
    token_of, unauthorized, Auth, AuthError, Authenticator, Jwt, JwtSettings, ReloadableJwt,
};
/// What a running server counts, for metrics: [`Stats`](stats::Stats) per worker, from
/// [`Context::stats`].
pub mod stats {
    pub use crate::api::stats::Stats;
    pub use crate::push::stats::{BrokerState, BrokerStats, PushStats, Source};
    pub use crate::server::metrics::{
        Connections, Counters, Histogram, LoopStats, CLOSE_CODES, LATENCY_BUCKETS, POLICIES,
        REFUSAL_STATUSES,
    };
}

pub use api::config::Config;
pub use api::context::{ChannelView, Context};
pub use api::handle::{Handle, Pending, Stopped};
pub use api::handler::Handler;
pub use api::server::Server;
pub use http::{Request, RequestError};
pub use push::access::{
    grants, may_publish, may_subscribe, user_channel, ChannelKind, ChannelUsers, Denied, Identity,
};
pub use push::channels::{
    valid_name as valid_channel_name, ChannelInfo, Counts, Replay, Stored, Transport,
};
pub use push::format::ENVELOPE_PROTOCOL;
pub use push::hub::{JoinError, Published};
pub use push::policy::ChannelPolicy;
pub use server::backlog::{Backlog, Policy};
pub use server::clock::{Clock, ManualClock, SystemClock};
pub use server::connection::ConnId;
pub use server::error::Error;
pub use server::message::{Kind, Message, OwnedMessage, ToMessage};
pub use server::reply::{Heartbeat, Refusal, Reply, Response};
pub use server::tls::{Tls, TlsError};
pub use server::traffic::Traffic;
pub use ws::close::CloseCode;
pub use ws::deflate::DeflateConfig;
pub use ws::error::ProtocolError;
pub use ws::handshake::HandshakeError;
