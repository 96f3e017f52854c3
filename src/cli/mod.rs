//! The `pushloop` binary's own parts: its flags and config file, the push application
//! and its routes, the `publish` and `subscribe` clients, the browser client, static
//! files, metrics, logging.

pub mod access;
pub mod app;
pub mod client;
pub mod client_js;
pub mod config_file;
pub mod flags;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod metrics_listener;
pub mod protocol;
pub mod reload;
pub mod static_files;
pub mod subscribe;
