//! pushloop: a single-threaded RFC 6455 WebSocket and message-push server on mio.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod close;
mod config;
mod connection;
pub mod error;
pub mod frame;
mod handle;
mod handler;
pub mod handshake;
pub mod mask;
mod outbox;
mod pool;
pub mod protocol;
mod server;
pub mod utf8;

pub use close::CloseCode;
pub use config::Config;
pub use error::{Error, HandshakeError, ProtocolError};
pub use handle::{Handle, Stopped};
pub use handler::{ConnId, Context, Handler, Message, OwnedMessage, Refusal, Response};
pub use handshake::Request;
pub use server::Server;
