//! The loop's settings: limits, timeouts, subprotocols, compression, the clock. Set
//! through [`Config`](crate::Config)'s setters.

use crate::server::backlog::Policy;
use crate::server::clock::{Clock, SystemClock};
use crate::server::tls::Tls;
use crate::ws::decoder::Limits;
use crate::ws::deflate::DeflateConfig;
use std::sync::Arc;
use std::time::Duration;

/// What the event loop needs to know; every field has the default the CLI documents.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub max_message: usize,
    pub max_frame: usize,
    pub max_head: usize,
    pub max_connections: usize,
    pub protocols: Vec<String>,
    pub handshake_timeout: Duration,
    pub close_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub read_buffer: usize,
    /// The listen queue: connections the kernel may hold before they are accepted.
    pub listen_queue: u32,
    pub origins: Vec<String>,
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
    /// The most bytes a connection's backlog may hold.
    pub max_backlog: usize,
    /// The policy for direct sends and broadcasts, and the default for everything else.
    pub backlog_policy: Policy,
    pub clock: Arc<dyn Clock>,
    pub deflate: DeflateConfig,
    /// Which worker this loop is (0 to 255): the low byte of every [`ConnId`] serial it
    /// hands out, so an id names its worker.
    ///
    /// [`ConnId`]: crate::server::connection::ConnId
    pub worker: u8,
    /// Whether the listener shares its address with other workers' (`SO_REUSEPORT`).
    pub reuse_port: bool,
    /// The certificate to serve TLS with; `None`: plain TCP.
    pub tls: Option<Tls>,
    /// Whether each connection's [`Traffic`](crate::server::traffic::Traffic) is counted
    /// (from the next connection accepted).
    pub count_traffic: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_message: 16 << 20,
            max_frame: 16 << 20,
            max_head: 8 << 10,
            max_connections: 10_000,
            protocols: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            read_buffer: 64 << 10,
            listen_queue: 1024,
            origins: Vec::new(),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            max_backlog: 4 << 20,
            backlog_policy: Policy::Close,
            clock: Arc::new(SystemClock),
            deflate: DeflateConfig::default(),
            worker: 0,
            reuse_port: false,
            tls: None,
            count_traffic: false,
        }
    }
}

impl Settings {
    /// Takes from `new` what may change while the loop runs: limits, timeouts, origins,
    /// keepalive, the backlog limit and policy, whether traffic is counted. They apply to what comes next (the next
    /// frame, the next upgrade, the next message queued); the listener, the workers,
    /// the subprotocols, compression, the read buffer and the clock stay.
    pub fn apply_live(&mut self, new: &Settings) {
        self.max_message = new.max_message;
        self.max_frame = new.max_frame;
        self.max_head = new.max_head;
        self.max_connections = new.max_connections;
        self.handshake_timeout = new.handshake_timeout;
        self.close_timeout = new.close_timeout;
        self.shutdown_timeout = new.shutdown_timeout;
        self.origins.clone_from(&new.origins);
        self.ping_interval = new.ping_interval;
        self.pong_timeout = new.pong_timeout;
        self.max_backlog = new.max_backlog;
        self.backlog_policy = new.backlog_policy;
        self.count_traffic = new.count_traffic;
    }

    /// The decoder's size limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame: self.max_frame,
            max_message: self.max_message,
        }
    }
}
