//! [`Config`]: every limit with its default, set through chained setters; it feeds the
//! loop's settings and the push layer's.

use crate::api::auth::Auth;
use crate::push::policy::ChannelPolicy;
use crate::server::backlog::Policy;
use crate::server::clock::Clock;
use crate::server::settings::Settings;
use crate::server::tls::Tls;
use crate::ws::deflate::DeflateConfig;
use std::sync::Arc;
use std::time::Duration;

/// Limits and timeouts of a [`Server`](crate::Server).
///
/// ```
/// use pushloop::Config;
/// use std::time::Duration;
/// let config = Config::default()
///     .max_message(1 << 20)
///     .protocols(["chat"])
///     .close_timeout(Duration::from_secs(2));
/// assert_eq!(config.get_max_message(), 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// The event loop's settings.
    pub(crate) server: Settings,
    /// The push layer's settings.
    pub(crate) push: crate::push::Settings,
    /// How many workers (event loops on their own threads); 0: one per core.
    pub(crate) workers: usize,
    /// Who may connect: checked on every upgrade, and when a handler asks.
    pub(crate) auth: Option<Auth>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: Settings::default(),
            push: crate::push::Settings::default(),
            workers: 1,
            auth: None,
        }
    }
}

impl Config {
    /// Checks every WebSocket upgrade with `auth` before
    /// [`Handler::on_open`](crate::Handler::on_open) (a bad credential, or none when
    /// required, gets `401` with `{"error":"…"}`), and plain requests when the handler
    /// calls [`Context::authenticate`](crate::Context::authenticate). Default: none.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Largest reassembled message in bytes (default 16 MiB); larger closes with 1009.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.server.max_message = bytes;
        self
    }

    /// Largest single frame payload in bytes (default 16 MiB); larger closes with 1009.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.server.max_frame = bytes;
        self
    }

    /// Largest HTTP request head in bytes (default 8 KiB); larger gets 431.
    pub fn max_head(mut self, bytes: usize) -> Self {
        self.server.max_head = bytes;
        self
    }

    /// How many workers serve (default 1: one event loop, on the thread that calls
    /// [`run`](crate::Server::run); 0: one per available core). Each worker is an event
    /// loop on its own thread with its own listener on the same address
    /// (`SO_REUSEPORT`: the kernel spreads connections among them); run them with
    /// [`Server::run_workers`](crate::Server::run_workers). Channels span workers: each
    /// channel is owned by one worker, which gives its messages their ids and keeps its
    /// history, and sends every message once to each worker with members.
    ///
    /// Limits are per worker: `max_connections` and `max_backlog` apply to each
    /// worker's connections, `max_channels` to the channels each worker owns, `history`
    /// and `history_bytes` to each channel (kept once, by its owner).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// The number of workers [`workers`](Self::workers) asks for (0 resolved to the
    /// number of available cores).
    pub fn get_workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(usize::from(u8::MAX) + 1)
    }

    /// Most simultaneous sockets (default 10,000); more get 503.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.server.max_connections = n;
        self
    }

    /// Subprotocols the server speaks, in order of preference (default none).
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.server.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Time a client has to send its whole request head (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.server.handshake_timeout = timeout;
        self
    }

    /// Time the peer has to answer a server-initiated close, or to close the TCP connection
    /// after the close handshake (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.server.close_timeout = timeout;
        self
    }

    /// Time a graceful shutdown waits for close handshakes (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.server.shutdown_timeout = timeout;
        self
    }

    /// Serve TLS only (`wss://`, `https://`) with this certificate and key (default:
    /// plain TCP). The handshake timeout covers the TLS handshake too. Keep a clone to
    /// [`reload`](Tls::reload) the files later (e.g. on `SIGHUP`): every worker's next
    /// handshakes present the new certificate, open connections keep theirs.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.server.tls = Some(tls);
        self
    }

    /// The certificate [`tls`](Self::tls) set, if any.
    pub fn get_tls(&self) -> Option<&Tls> {
        self.server.tls.as_ref()
    }

    /// Size of the one read buffer the loop shares among all connections (default 64 KiB).
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.server.read_buffer = bytes.max(1024);
        self
    }

    /// The listen queue: connections the kernel holds before `accept` (default 1024,
    /// capped by the kernel's `net.core.somaxconn`).
    pub fn listen_queue(mut self, connections: u32) -> Self {
        self.server.listen_queue = connections;
        self
    }

    /// Origins allowed to open WebSockets (`Origin` header, exact match, e.g.
    /// `https://example.com`). Default: empty, which allows every origin and requests
    /// without one (non-browser clients); otherwise others get 403.
    pub fn origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.server.origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Bytes a connection may have queued for a slow reader (default 4 MiB). A message
    /// that finds the queue over it is handled by the backlog [`Policy`] (default
    /// [`Policy::Close`]: a WebSocket is closed with 1008, an SSE stream is ended; both
    /// resume from history); other clients are not slowed. Past half of it the handler
    /// gets [`on_backlog`](crate::Handler::on_backlog) with [`Backlog::High`](crate::Backlog::High),
    /// and [`Backlog::Drained`](crate::Backlog::Drained) once the queue is empty again.
    pub fn max_backlog(mut self, bytes: usize) -> Self {
        self.server.max_backlog = bytes;
        self
    }

    /// Whether to count what each connection sends and receives (default off), for
    /// [`Context::traffic`](crate::Context::traffic) (the binary's `--access-log` turns
    /// it on). Off, it costs nothing per connection; on, 40 bytes per connection, beside
    /// the connection (see [`Traffic`](crate::Traffic)). Connections accepted while it is
    /// off are not counted. It may change while the server runs
    /// ([`Handle::reload`](crate::Handle::reload)).
    pub fn count_traffic(mut self, on: bool) -> Self {
        self.server.count_traffic = on;
        self
    }

    /// What happens at `max_backlog` to messages sent directly, broadcast, or published
    /// to a channel that no [`channel_policy`](Self::channel_policy) matches (default
    /// [`Policy::Close`]).
    pub fn backlog_policy(mut self, policy: Policy) -> Self {
        self.server.backlog_policy = policy;
        self.push.default_policy = policy;
        self
    }

    /// The backlog policy for channels matching `pattern`: an exact name, or a prefix
    /// ending in `*` (`ticker.*`). The first matching pattern wins.
    pub fn channel_policy(mut self, pattern: impl Into<String>, policy: Policy) -> Self {
        self.push.channel_policies.push(ChannelPolicy {
            pattern: pattern.into(),
            policy,
        });
        self
    }

    /// permessage-deflate (RFC 7692): whether it is negotiated, window sizes, context
    /// takeover, the size under which messages go uncompressed (default: on, no context
    /// takeover either way, windows of 15 bits, 64 bytes, level 2; see [`DeflateConfig`]).
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.server.deflate = deflate;
        self
    }

    /// The clock the loop reads (default the system's monotonic clock). Tests pass a
    /// [`ManualClock`](crate::ManualClock) to run timeouts without waiting.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.server.clock = Arc::new(clock);
        self
    }

    /// How long an open WebSocket may stay quiet before the server pings it (default
    /// 30 s; `None` turns keepalive off).
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.server.ping_interval = interval.filter(|d| !d.is_zero());
        self
    }

    /// How long a pinged peer has to answer before it is dropped (default 10 s; the
    /// handler sees close code 1006).
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.server.pong_timeout = timeout;
        self
    }

    /// Messages kept per channel for clients that resume (default 100).
    pub fn history(mut self, messages: usize) -> Self {
        self.push.history = messages;
        self
    }

    /// Payload bytes each channel's history may hold (default 256 KiB); the oldest go
    /// first, but the newest message is kept even if it alone is larger.
    pub fn history_bytes(mut self, bytes: usize) -> Self {
        self.push.history_bytes = bytes;
        self
    }

    /// Most channels kept (default 10,000): a new channel beyond it evicts the oldest
    /// channel without members, with its history. History is bounded by
    /// `max_channels × history_bytes` in all (2.5 GiB at the defaults, if every channel
    /// holds 256 KiB).
    pub fn max_channels(mut self, channels: usize) -> Self {
        self.push.max_channels = channels;
        self
    }

    /// Makes this server one node of several sharing the Redis (7 or later) at `url`,
    /// `redis://[user:password@]host:port[/db]`: Redis gives each channel's messages
    /// their ids and keeps their history, and every node delivers every channel's
    /// messages to its own members, so a client may connect, resume or poll on any node.
    /// [`Server::bind_with`](crate::Server::bind_with) fails if Redis cannot be reached.
    pub fn redis(mut self, url: &str) -> Self {
        self.push.redis = Some(url.to_owned());
        self
    }

    /// With [`redis`](Config::redis): how long Redis keeps a channel's history and ids
    /// after its last publish (default a day; a client resuming later is told of the gap).
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.push.history_ttl = ttl;
        self
    }

    /// Interval of the comment heartbeat on Server-Sent Events streams (default 15 s).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.push.heartbeat = interval;
        self
    }

    /// The configured maximum message size.
    pub fn get_max_message(&self) -> usize {
        self.server.max_message
    }

    /// The configured subprotocols.
    pub fn get_protocols(&self) -> &[String] {
        &self.server.protocols
    }
}
