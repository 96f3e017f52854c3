//! The binary's flags: one struct that clap parses from the command line and the
//! environment (`PUSHLOOP_<FLAG>`), and that the config file fills through the same
//! definitions ([`config_file`](crate::cli::config_file)): a new flag is a new field here,
//! and gets its key and its variable with it.

use crate::cli::app::Mode;
use clap::Parser;
use pushloop::{
    Auth, ChannelPolicy, Config, DeflateConfig, Jwt, JwtSettings, Policy, ReloadableJwt,
    ENVELOPE_PROTOCOL,
};
use std::time::Duration;

/// A single-threaded RFC 6455 WebSocket push server.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Cli {
    /// `publish`: post one message to a running server; `check-config`: print the
    /// effective configuration.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A TOML file of settings: each key is a flag's name (`max-message = 1048576`);
    /// flags and `PUSHLOOP_<FLAG>` variables override it. SIGHUP reads it again.
    #[arg(long, value_name = "FILE", env = "PUSHLOOP_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Worker threads, each an event loop with its own listener on the address (the
    /// kernel spreads connections); channels span them. 0: one per core.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// chat: each message goes to every other client; echo: back to its sender.
    #[arg(long, value_enum, default_value_t = Mode::Chat)]
    pub mode: Mode,
    /// A subprotocol to accept (repeatable, in order of preference).
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,
    /// Largest message in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub max_message: usize,
    /// Largest frame payload in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub max_frame: usize,
    /// Most simultaneous connections per worker; more get 503.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a client has to send its request head.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub handshake_timeout: f64,
    /// Seconds to wait for the peer's answer to a Close frame.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub close_timeout: f64,
    /// An Origin allowed to open WebSockets (repeatable; default: every origin). Others
    /// get 403.
    #[arg(long = "origin", value_name = "ORIGIN")]
    pub origins: Vec<String>,
    /// Bytes a client may have queued for it before the backlog policy applies.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub max_backlog: usize,
    /// What a message finds at --max-backlog: close (WebSocket closed with 1008, SSE
    /// stream ended; clients resume from history), drop-oldest (queued messages of the
    /// channel make room), drop-newest (the new message is dropped), latest (only the
    /// newest message of the channel stays queued, for tickers).
    #[arg(long, default_value_t = Policy::Close, value_name = "POLICY")]
    pub backlog_policy: Policy,
    /// The backlog policy of some channels, as CHANNEL=POLICY; CHANNEL may end in `*`
    /// to match a prefix (repeatable, first match wins), e.g. `ticker.*=latest`.
    #[arg(long = "channel-policy", value_name = "CHANNEL=POLICY")]
    pub channel_policies: Vec<ChannelPolicy>,
    /// Seconds an open WebSocket may stay quiet before the server pings it (0: never).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub ping_interval: f64,
    /// Seconds a pinged client has to answer before it is dropped.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub pong_timeout: f64,
    /// Messages kept per channel for clients that resume with `since`.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub history: usize,
    /// Payload bytes of history kept per channel (the newest message is always kept).
    #[arg(long, default_value_t = 256 << 10, value_name = "BYTES")]
    pub history_bytes: usize,
    /// Most channels kept (per worker, of the channels it owns); a new one beyond it
    /// evicts the oldest channel that has no members (and its history).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_channels: usize,
    /// Share channels, history and presence with every node on this Redis (7 or later):
    /// `redis://[user:password@]host:port[/db]` (docs/deploy.md).
    #[arg(
        long,
        env = "PUSHLOOP_REDIS",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,
    /// With --redis: seconds Redis keeps a channel's history and ids after its last
    /// publish.
    #[arg(long, default_value_t = 86_400, value_name = "SECS")]
    pub history_ttl: u64,
    /// Token the publish API requires as `Authorization: Bearer TOKEN` (without one, the
    /// publish API answers only on a loopback listener).
    #[arg(
        long,
        env = "PUSHLOOP_PUBLISH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub publish_token: Option<String>,
    /// HMAC secret (HS256/384/512) that signs the clients' JWTs (docs/auth.md).
    #[arg(
        long,
        env = "PUSHLOOP_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// PEM public key file (RSA, EC or Ed25519) that verifies the clients' JWTs.
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// The `aud` a client's JWT must name.
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// The `iss` a client's JWT must name.
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// optional: anonymous clients use public channels; required: every WebSocket, SSE
    /// and poll request needs a valid token (needs --jwt-secret or --jwt-public-key).
    #[arg(long, value_enum, default_value_t = AuthMode::Optional, value_name = "MODE")]
    pub auth: AuthMode,
    /// Most WebSockets and SSE streams per user (all workers); more get 429.
    #[arg(long, value_name = "N")]
    pub max_connections_per_user: Option<usize>,
    /// Most WebSockets and SSE streams per client address (all workers); more get 429.
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// New connections (upgrades, SSE streams, polls) per second per client address (a
    /// token bucket with a burst of N); more get 429 with Retry-After.
    #[arg(long, value_name = "N")]
    pub handshake_rate: Option<u32>,
    /// A proxy (CIDR, e.g. 10.0.0.0/8; repeatable) whose X-Forwarded-For is believed
    /// for the client address of the limits.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `Access-Control-Allow-Origin` for the HTTP endpoints (e.g. `*`).
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Option<String>,
    /// Publish `{"type":"presence","event":"join"|"leave",..}` into a channel when a
    /// WebSocket or SSE subscriber joins or leaves it.
    #[arg(long)]
    pub presence_events: bool,
    /// Serve the files of DIR (read at start) instead of the built-in page at `/`.
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<std::path::PathBuf>,
    /// permessage-deflate (RFC 7692) compression, negotiated with clients that offer it.
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "on|off")]
    pub deflate: Switch,
    /// Largest compression window (2^N bytes) the server uses, 9-15; a smaller one saves
    /// memory per compressor.
    #[arg(long, default_value_t = 15, value_name = "N", value_parser = clap::value_parser!(u8).range(9..=15))]
    pub deflate_window_bits: u8,
    /// Largest window (2^N bytes) clients are asked to use when they offer to limit it, 8-15.
    #[arg(long, default_value_t = 15, value_name = "N", value_parser = clap::value_parser!(u8).range(8..=15))]
    pub deflate_client_window_bits: u8,
    /// Keep compression contexts between messages, both ways: better ratios for small
    /// similar messages, but a compressor (~300 KiB) and a decompressor (~20-47 KiB) per
    /// connection, and no compress-once broadcast. Default: no context takeover, one
    /// shared compressor and decompressor for the whole loop.
    #[arg(long)]
    pub deflate_context_takeover: bool,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    pub deflate_threshold: usize,
    /// zlib compression level 0-9 (0: stored blocks, no compression).
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=9))]
    pub deflate_level: u32,
    /// Serve TLS only (wss://, https://) with this PEM certificate chain (the server's
    /// certificate first); needs --tls-key. SIGHUP reads both files again.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key (PKCS#8, RSA or EC) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Seconds a graceful shutdown (SIGINT/SIGTERM) waits for clients to close.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub shutdown_timeout: f64,
    /// Seconds to drain before the shutdown on SIGINT/SIGTERM: the listener stays open,
    /// `/readyz` and new WebSocket, SSE and poll requests get 503, current clients are
    /// served; then they get Close 1001.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub drain_timeout: f64,
    /// Serve `GET /metrics` on this address instead of the main listener (no token:
    /// bind it where only the scraper reaches).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Log lines as text, or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "text|json")]
    pub log_format: LogFormat,
    /// Least severe level logged: error, warn, info, debug, trace or off (`RUST_LOG`
    /// takes precedence when set).
    #[arg(long, default_value_t = log::LevelFilter::Info, value_name = "LEVEL")]
    pub log_level: log::LevelFilter,
    /// Log one line when each WebSocket or HTTP exchange ends (transport, duration,
    /// bytes, messages, close code).
    #[arg(long)]
    pub access_log: bool,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL target] message`.
    Text,
    /// `{"ts":..,"level":..,"target":..,"msg":..}`, one object a line.
    Json,
}

/// On or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Check a config file with the flags and environment given, and print the
    /// effective configuration (secrets masked); exit 2 naming the key and line of an
    /// error.
    CheckConfig {
        /// The TOML file.
        file: std::path::PathBuf,
    },
    /// Publish a message to a channel of a running server (prints its JSON answer).
    Publish {
        /// The channel.
        channel: String,
        /// The message; `-` or nothing reads it from standard input.
        message: Option<String>,
        /// The server's base URL (http:// or https://).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The CA certificate (PEM) to trust for an https:// server (default: the
        /// system's CA certificates).
        #[arg(long, value_name = "FILE")]
        cacert: Option<std::path::PathBuf>,
        /// The publish token (else from PUSHLOOP_PUBLISH_TOKEN).
        #[arg(long, env = "PUSHLOOP_PUBLISH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The message's content type (text/* or JSON publishes text, else binary).
        #[arg(long, default_value = "text/plain; charset=utf-8")]
        content_type: String,
    },
    /// Follow channels of a running server and print each message as it arrives;
    /// reconnects and resumes by itself (over Server-Sent Events).
    Subscribe {
        /// The channels.
        #[arg(required = true)]
        channels: Vec<String>,
        /// Start after this id (every channel); without it, only new messages.
        #[arg(long)]
        since: Option<u64>,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// A token for channels that need one (else from PUSHLOOP_TOKEN).
        #[arg(long, env = "PUSHLOOP_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// One JSON object per line: {"channel":..,"id":..,"data":..}.
        #[arg(long)]
        json: bool,
    },
}

/// Seconds as a duration (negative: zero).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Whether clients need a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Anonymous clients are allowed where the channel allows them.
    Optional,
    /// Every client needs a valid token.
    Required,
}

/// Seconds of clock skew allowed on a token's `exp` and `nbf`.
const JWT_LEEWAY_SECS: u64 = 5;

impl Cli {
    /// The JWT verification the flags describe: `None` without a key; an error names a
    /// key file that cannot be read.
    pub fn jwt(&self) -> Result<Option<Jwt>, String> {
        let settings = JwtSettings {
            secret: self.jwt_secret.clone(),
            public_key: self.jwt_public_key.clone(),
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway: JWT_LEEWAY_SECS,
        };
        if settings.secret.is_none() && settings.public_key.is_none() {
            return Ok(None);
        }
        Jwt::from_settings(&settings).map(Some)
    }

    /// The clients' authentication from the flags, with its keys replaceable on SIGHUP
    /// (the [`ReloadableJwt`] to replace them): `None` without a JWT key; an error names
    /// a key file that cannot be read, or `--auth required` without a key.
    pub fn auth(&self) -> Result<Option<(Auth, ReloadableJwt)>, String> {
        match self.jwt()? {
            Some(jwt) => {
                let keys = ReloadableJwt::new(jwt);
                let auth = Auth::new(keys.clone(), self.auth == AuthMode::Required);
                Ok(Some((auth, keys)))
            }
            None if self.auth == AuthMode::Required => {
                Err("--auth required needs --jwt-secret or --jwt-public-key".into())
            }
            None => Ok(None),
        }
    }

    /// The library's configuration these flags describe.
    pub fn config(&self) -> Config {
        let mut protocols = vec![ENVELOPE_PROTOCOL.to_owned()];
        protocols.extend(self.protocols.iter().cloned());
        let mut config = Config::default()
            .workers(self.workers)
            .protocols(protocols)
            .history(self.history)
            .history_bytes(self.history_bytes)
            .max_channels(self.max_channels)
            .history_ttl(Duration::from_secs(self.history_ttl))
            .max_backlog(self.max_backlog)
            .backlog_policy(self.backlog_policy)
            .ping_interval(Some(secs(self.ping_interval)))
            .pong_timeout(secs(self.pong_timeout))
            .origins(self.origins.clone())
            .max_message(self.max_message)
            .max_frame(self.max_frame)
            .max_connections(self.max_connections)
            .handshake_timeout(secs(self.handshake_timeout))
            .close_timeout(secs(self.close_timeout))
            .shutdown_timeout(secs(self.shutdown_timeout))
            // What the access log reports as sent: counted only while it is on.
            .count_traffic(self.access_log)
            .deflate(DeflateConfig {
                enabled: self.deflate == Switch::On,
                server_max_window_bits: self.deflate_window_bits,
                client_max_window_bits: self.deflate_client_window_bits,
                server_context_takeover: self.deflate_context_takeover,
                client_context_takeover: self.deflate_context_takeover,
                threshold: self.deflate_threshold,
                level: self.deflate_level,
            });
        if let Some(url) = &self.redis {
            config = config.redis(url);
        }
        for rule in &self.channel_policies {
            config = config.channel_policy(rule.pattern.clone(), rule.policy);
        }
        config
    }
}
