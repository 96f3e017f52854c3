//! pushloop: a single-threaded RFC 6455 WebSocket and message-push server on mio.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backlog;
pub mod channel;
pub mod clock;
pub mod close;
mod compress;
mod config;
mod connection;
pub mod deflate;
mod dispatch;
pub mod error;
pub mod format;
pub mod frame;
mod handle;
mod handler;
pub mod handshake;
pub mod http;
mod keepalive;
pub mod mask;
mod outbox;
mod pool;
pub mod protocol;
mod push;
mod server;
pub mod utf8;

pub use backlog::Policy;
pub use clock::{Clock, ManualClock, SystemClock};
pub use close::CloseCode;
pub use config::Config;
pub use error::{Error, HandshakeError, ProtocolError};
pub use handle::{Handle, Stopped};
pub use handler::{
    Backlog, ConnId, Context, Handler, Message, OwnedMessage, Refusal, Reply, Response,
};
pub use handshake::Request;
pub use push::Published;
pub use server::Server;
