//! The event loop: one `mio::Poll` per server, a slab of connections, their outboxes
//! (written with `writev` until `WouldBlock`), timers, keepalive, backlog policies and
//! the shared permessage-deflate codecs.
//!
//! It offers generic primitives to the layer above: send or broadcast a message, deliver
//! bytes encoded once (with a tag and a backlog policy) to a WebSocket or a streamed
//! HTTP response, answer an HTTP request at once, stream it, or hold it and answer it
//! later. It knows no channels, no history and no JSON.

pub mod backlog;
pub(crate) mod clock;
pub(crate) mod codecs;
pub(crate) mod connection;
pub(crate) mod core;
pub(crate) mod dispatch;
pub(crate) mod encoded;
pub(crate) mod error;
pub(crate) mod event_loop;
pub(crate) mod exchange;
pub(crate) mod keepalive;
pub(crate) mod message;
pub mod metrics;
pub(crate) mod outbox;
pub(crate) mod reply;
pub(crate) mod service;
pub(crate) mod settings;
pub(crate) mod timers;
pub(crate) mod tls;
pub(crate) mod traffic;
