//! The embedding API: what a Rust program uses to run pushloop in its own process. A
//! [`Handler`](handler::Handler) gets a [`Context`](context::Context) in every callback
//! (send, broadcast, close, publish, join, stream, hold); a [`Server`](server::Server)
//! binds, runs or is driven turn by turn; a [`Config`](config::Config) sets every limit.

pub(crate) mod auth;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod data;
pub(crate) mod handle;
pub(crate) mod handler;
pub(crate) mod peers;
pub(crate) mod server;
pub(crate) mod users;
pub(crate) mod worker;
