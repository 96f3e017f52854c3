//! The `pushloop` binary's own parts: the push application and its routes, the
//! `publish` client, static files.

pub mod app;
pub mod client;
pub mod limits;
pub mod protocol;
pub mod static_files;
