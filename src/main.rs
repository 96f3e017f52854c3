//! The `pushloop` binary: flags, logging, signals; the application is in `app.rs`.

mod cli;

use clap::Parser;
use cli::app::{App, Mode, Settings};
use cli::{client, static_files, subscribe};
use pushloop::{
    valid_channel_name, Auth, ChannelPolicy, Config, DeflateConfig, Jwt, JwtSettings, Policy,
    Server, ENVELOPE_PROTOCOL,
};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::time::Duration;

/// A single-threaded RFC 6455 WebSocket push server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// `publish`: post one message to a running server instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Worker threads, each an event loop with its own listener on the address (the
    /// kernel spreads connections); channels span them. 0: one per core.
    #[arg(long, default_value_t = 1, value_name = "N")]
    workers: usize,
    /// chat: each message goes to every other client; echo: back to its sender.
    #[arg(long, value_enum, default_value_t = Mode::Chat)]
    mode: Mode,
    /// A subprotocol to accept (repeatable, in order of preference).
    #[arg(long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
    /// Largest message in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    max_message: usize,
    /// Largest frame payload in bytes; larger ones close the connection with 1009.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    max_frame: usize,
    /// Most simultaneous connections per worker; more get 503.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_connections: usize,
    /// Seconds a client has to send its request head.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    handshake_timeout: f64,
    /// Seconds to wait for the peer's answer to a Close frame.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    close_timeout: f64,
    /// An Origin allowed to open WebSockets (repeatable; default: every origin). Others
    /// get 403.
    #[arg(long = "origin", value_name = "ORIGIN")]
    origins: Vec<String>,
    /// Bytes a client may have queued for it before the backlog policy applies.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    max_backlog: usize,
    /// What a message finds at --max-backlog: close (WebSocket closed with 1008, SSE
    /// stream ended; clients resume from history), drop-oldest (queued messages of the
    /// channel make room), drop-newest (the new message is dropped), latest (only the
    /// newest message of the channel stays queued, for tickers).
    #[arg(long, default_value_t = Policy::Close, value_name = "POLICY")]
    backlog_policy: Policy,
    /// The backlog policy of some channels, as CHANNEL=POLICY; CHANNEL may end in `*`
    /// to match a prefix (repeatable, first match wins), e.g. `ticker.*=latest`.
    #[arg(long = "channel-policy", value_name = "CHANNEL=POLICY")]
    channel_policies: Vec<ChannelPolicy>,
    /// Seconds an open WebSocket may stay quiet before the server pings it (0: never).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    ping_interval: f64,
    /// Seconds a pinged client has to answer before it is dropped.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pong_timeout: f64,
    /// Messages kept per channel for clients that resume with `since`.
    #[arg(long, default_value_t = 100, value_name = "N")]
    history: usize,
    /// Payload bytes of history kept per channel (the newest message is always kept).
    #[arg(long, default_value_t = 256 << 10, value_name = "BYTES")]
    history_bytes: usize,
    /// Most channels kept (per worker, of the channels it owns); a new one beyond it
    /// evicts the oldest channel that has no members (and its history).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_channels: usize,
    /// Token the publish API requires as `Authorization: Bearer TOKEN` (without one, the
    /// publish API answers only on a loopback listener).
    #[arg(
        long,
        env = "PUSHLOOP_PUBLISH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    publish_token: Option<String>,
    /// HMAC secret (HS256/384/512) that signs the clients' JWTs (docs/auth.md).
    #[arg(
        long,
        env = "PUSHLOOP_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,
    /// PEM public key file (RSA, EC or Ed25519) that verifies the clients' JWTs.
    #[arg(long, value_name = "FILE")]
    jwt_public_key: Option<std::path::PathBuf>,
    /// The `aud` a client's JWT must name.
    #[arg(long, value_name = "AUD")]
    jwt_audience: Option<String>,
    /// The `iss` a client's JWT must name.
    #[arg(long, value_name = "ISS")]
    jwt_issuer: Option<String>,
    /// optional: anonymous clients use public channels; required: every WebSocket, SSE
    /// and poll request needs a valid token (needs --jwt-secret or --jwt-public-key).
    #[arg(long, value_enum, default_value_t = AuthMode::Optional, value_name = "MODE")]
    auth: AuthMode,
    /// Most WebSockets and SSE streams per user (all workers); more get 429.
    #[arg(long, value_name = "N")]
    max_connections_per_user: Option<usize>,
    /// Most WebSockets and SSE streams per client address (all workers); more get 429.
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// New connections (upgrades, SSE streams, polls) per second per client address (a
    /// token bucket with a burst of N); more get 429 with Retry-After.
    #[arg(long, value_name = "N")]
    handshake_rate: Option<u32>,
    /// A proxy (CIDR, e.g. 10.0.0.0/8; repeatable) whose X-Forwarded-For is believed
    /// for the client address of the limits.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// `Access-Control-Allow-Origin` for the HTTP endpoints (e.g. `*`).
    #[arg(long, value_name = "ORIGIN")]
    cors_origin: Option<String>,
    /// Publish `{"type":"presence","event":"join"|"leave",..}` into a channel when a
    /// WebSocket or SSE subscriber joins or leaves it.
    #[arg(long)]
    presence_events: bool,
    /// Serve the files of DIR (read at start) instead of the built-in page at `/`.
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<std::path::PathBuf>,
    /// permessage-deflate (RFC 7692) compression, negotiated with clients that offer it.
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "on|off")]
    deflate: Switch,
    /// Largest compression window (2^N bytes) the server uses, 9-15; a smaller one saves
    /// memory per compressor.
    #[arg(long, default_value_t = 15, value_name = "N", value_parser = clap::value_parser!(u8).range(9..=15))]
    deflate_window_bits: u8,
    /// Largest window (2^N bytes) clients are asked to use when they offer to limit it, 8-15.
    #[arg(long, default_value_t = 15, value_name = "N", value_parser = clap::value_parser!(u8).range(8..=15))]
    deflate_client_window_bits: u8,
    /// Keep compression contexts between messages, both ways: better ratios for small
    /// similar messages, but a compressor (~300 KiB) and a decompressor (~20-47 KiB) per
    /// connection, and no compress-once broadcast. Default: no context takeover, one
    /// shared compressor and decompressor for the whole loop.
    #[arg(long)]
    deflate_context_takeover: bool,
    /// Messages shorter than this many bytes are sent uncompressed.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    deflate_threshold: usize,
    /// zlib compression level 0-9 (0: stored blocks, no compression).
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=9))]
    deflate_level: u32,
    /// Seconds a graceful shutdown (SIGINT/SIGTERM) waits for clients to close.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    shutdown_timeout: f64,
}

/// Whether clients need a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    /// Anonymous clients are allowed where the channel allows them.
    Optional,
    /// Every client needs a valid token.
    Required,
}

/// The clients' authentication from the flags: `None` without a JWT key.
fn auth_of(cli: &Cli) -> Result<Option<Auth>, String> {
    let settings = JwtSettings {
        secret: cli.jwt_secret.clone(),
        public_key: cli.jwt_public_key.clone(),
        audience: cli.jwt_audience.clone(),
        issuer: cli.jwt_issuer.clone(),
        leeway: JWT_LEEWAY_SECS,
    };
    if settings.secret.is_none() && settings.public_key.is_none() {
        return match cli.auth {
            AuthMode::Required => {
                Err("--auth required needs --jwt-secret or --jwt-public-key".into())
            }
            AuthMode::Optional => Ok(None),
        };
    }
    let jwt = Jwt::from_settings(&settings)?;
    Ok(Some(Auth::new(jwt, cli.auth == AuthMode::Required)))
}

/// Seconds of clock skew allowed on a token's `exp` and `nbf`.
const JWT_LEEWAY_SECS: u64 = 5;

/// On or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Subcommands.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Publish a message to a channel of a running server (prints its JSON answer).
    Publish {
        /// The channel.
        channel: String,
        /// The message; `-` or nothing reads it from standard input.
        message: Option<String>,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
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

/// Runs `pushloop subscribe` until every channel is refused (exit 1); Ctrl-C stops it.
fn subscribe_command(opts: subscribe::Subscribe) -> ! {
    if let Some(bad) = opts.channels.iter().find(|c| !valid_channel_name(c)) {
        eprintln!("pushloop subscribe: {bad}: channel names are 1-128 of A-Z a-z 0-9 _ . : -");
        std::process::exit(2);
    }
    for why in subscribe::subscribe(opts) {
        eprintln!("pushloop subscribe: {why}");
    }
    std::process::exit(1)
}

/// Runs a subcommand.
fn run_command(command: Command) -> ! {
    match command {
        Command::Publish {
            channel,
            message,
            server,
            token,
            content_type,
        } => publish_command(channel, message, server, token, content_type),
        Command::Subscribe {
            channels,
            since,
            server,
            token,
            json,
        } => subscribe_command(subscribe::Subscribe {
            server,
            channels,
            since,
            token,
            json,
        }),
    }
}

/// Runs `pushloop publish`; exits 0 on 200.
fn publish_command(
    channel: String,
    message: Option<String>,
    server: String,
    token: Option<String>,
    content_type: String,
) -> ! {
    if !valid_channel_name(&channel) {
        eprintln!("pushloop publish: channel names are 1-128 of A-Z a-z 0-9 _ . : -");
        std::process::exit(2);
    }
    let body = match message.as_deref() {
        Some("-") | None => {
            let mut body = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut body) {
                eprintln!("pushloop publish: cannot read standard input: {e}");
                std::process::exit(1);
            }
            body
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    let request = client::Publish {
        server,
        channel,
        body,
        content_type,
        token,
    };
    match client::publish(&request) {
        Ok((200, body)) => {
            println!("{body}");
            std::process::exit(0)
        }
        Ok((status, body)) => {
            eprintln!("pushloop publish: {status} {body}");
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("pushloop publish: {e}");
            std::process::exit(1)
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut cli = Cli::parse();
    if let Some(command) = cli.command.take() {
        run_command(command);
    }
    // Every connection is a file descriptor: take the whole hard limit, so users need no
    // `ulimit -n` before serving thousands of clients.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!("file descriptor limit: {limit}"),
        Err(e) => log::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let mut protocols = vec![ENVELOPE_PROTOCOL.to_owned()];
    protocols.extend(cli.protocols.iter().cloned());
    let mut config = Config::default()
        .workers(cli.workers)
        .protocols(protocols)
        .history(cli.history)
        .history_bytes(cli.history_bytes)
        .max_channels(cli.max_channels)
        .max_backlog(cli.max_backlog)
        .backlog_policy(cli.backlog_policy)
        .ping_interval(Some(secs(cli.ping_interval)))
        .pong_timeout(secs(cli.pong_timeout))
        .origins(cli.origins.clone())
        .max_message(cli.max_message)
        .max_frame(cli.max_frame)
        .max_connections(cli.max_connections)
        .handshake_timeout(secs(cli.handshake_timeout))
        .close_timeout(secs(cli.close_timeout))
        .shutdown_timeout(secs(cli.shutdown_timeout))
        .deflate(DeflateConfig {
            enabled: cli.deflate == Switch::On,
            server_max_window_bits: cli.deflate_window_bits,
            client_max_window_bits: cli.deflate_client_window_bits,
            server_context_takeover: cli.deflate_context_takeover,
            client_context_takeover: cli.deflate_context_takeover,
            threshold: cli.deflate_threshold,
            level: cli.deflate_level,
        });
    match auth_of(&cli) {
        Ok(Some(auth)) => config = config.auth(auth),
        Ok(None) => {}
        Err(e) => {
            eprintln!("pushloop: {e}");
            std::process::exit(2);
        }
    }
    for rule in &cli.channel_policies {
        config = config.channel_policy(rule.pattern.clone(), rule.policy);
    }
    let server = match Server::bind_with(&cli.listen, config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("pushloop: cannot listen on {}: {e}", cli.listen);
            std::process::exit(1);
        }
    };
    let handle = server.handle();
    match Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    log::info!("signal {sig}: stopping");
                    let _ = handle.stop();
                }
            });
        }
        Err(e) => log::warn!("cannot watch signals: {e}"),
    }
    let workers = match server.workers() {
        1 => String::new(),
        n => format!(", {n} workers"),
    };
    println!(
        "pushloop listening on ws://{}/ws ({:?} mode{workers})",
        server.local_addr(),
        cli.mode
    );
    let static_files =
        cli.static_dir
            .as_deref()
            .map(|dir| match static_files::StaticFiles::load(dir) {
                Ok(files) => files,
                Err(e) => {
                    eprintln!("pushloop: cannot read --static {}: {e}", dir.display());
                    std::process::exit(1);
                }
            });
    let settings = std::sync::Arc::new(Settings {
        static_files,
        presence_events: cli.presence_events,
        mode: cli.mode,
        publish_token: cli.publish_token.clone(),
        loopback: server.local_addr().ip().is_loopback(),
        cors_origin: cli.cors_origin.clone(),
        limits: cli::limits::Limits::new(
            cli.max_connections_per_ip,
            cli.max_connections_per_user,
            cli.handshake_rate.map(f64::from),
            cli.trusted_proxies.clone(),
        ),
    });
    if let Err(e) = server.run_workers(|| App::new(settings.clone())) {
        eprintln!("pushloop: {e}");
        std::process::exit(1);
    }
    log::info!("stopped");
}
