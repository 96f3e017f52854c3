//! The `pushloop` binary's own parts: the push application and its routes, the
//! `publish` client, the `subscribe` client, static files.

pub mod app;
pub mod client;
pub mod client_js;
pub mod limits;
pub mod protocol;
pub mod static_files;
pub mod subscribe;
