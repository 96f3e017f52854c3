//! The `pushloop` binary's own parts: the push application and its routes, the
//! `publish` client, static files, metrics.

pub mod app;
pub mod client;
pub mod metrics;
pub mod metrics_listener;
pub mod static_files;
