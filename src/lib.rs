//! pushloop: a single-threaded RFC 6455 WebSocket and message-push server on mio.
//!
//! The crate is in layers; each depends only on those below it:
//!
//! | layer | module | owns |
//! |---|---|---|
//! | protocol core, sans-IO | `ws`, `http` | frames, masking, UTF-8, close codes, the decoder, the handshake, permessage-deflate; HTTP request heads and responses |
//! | event loop | `server` | mio, connections, outboxes, timers, keepalive, backlog policies, shared codecs |
//! | push | `push` | channels, history and resume, SSE and long-poll formats, the envelope protocol |
//! | embedding API | `api` (re-exported here) | [`Handler`], [`Context`], [`Server`], [`Config`] |
//!
//! [`codec`] gives the protocol core's building blocks to programs that speak WebSocket
//! themselves (the fuzz targets, the benchmarks, load generators).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod http;
mod push;
mod server;
mod ws;

pub mod codec;

pub use api::config::Config;
pub use api::context::Context;
pub use api::handle::{Handle, Pending, Stopped};
pub use api::handler::Handler;
pub use api::server::Server;
pub use http::{Request, RequestError};
pub use push::channels::{
    valid_name as valid_channel_name, ChannelInfo, Channels, Counts, Transport,
};
pub use push::format::ENVELOPE_PROTOCOL;
pub use push::hub::Published;
pub use push::policy::ChannelPolicy;
pub use server::backlog::{Backlog, Policy};
pub use server::clock::{Clock, ManualClock, SystemClock};
pub use server::connection::ConnId;
pub use server::error::Error;
pub use server::message::{Kind, Message, OwnedMessage};
pub use server::reply::{Heartbeat, Refusal, Reply, Response};
pub use ws::close::CloseCode;
pub use ws::deflate::DeflateConfig;
pub use ws::error::ProtocolError;
pub use ws::handshake::HandshakeError;
