//! The `pushloop` binary: a WebSocket chat or echo server at `/ws`.

use clap::{Parser, ValueEnum};
use pushloop::{
    Config, ConnId, Context, Handler, Message, Refusal, Reply, Request, Response, Server,
};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::time::Duration;

/// A single-threaded RFC 6455 WebSocket push server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
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
    /// Most simultaneous connections; more get 503.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_connections: usize,
    /// Seconds a client has to send its request head.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    handshake_timeout: f64,
    /// Seconds to wait for the peer's answer to a Close frame.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    close_timeout: f64,
    /// Seconds a graceful shutdown (SIGINT/SIGTERM) waits for clients to close.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    shutdown_timeout: f64,
}

/// What the server does with a client's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Send it to every other client.
    Chat,
    /// Send it back to its sender.
    Echo,
}

/// The binary's handler: WebSocket at `/ws` and below, 404 elsewhere.
struct App {
    mode: Mode,
}

/// Whether `path` is served by the WebSocket endpoint.
fn is_ws_path(path: &str) -> bool {
    path == "/ws" || path.starts_with("/ws/")
}

impl Handler for App {
    fn on_open(
        &mut self,
        _ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        if !is_ws_path(req.path()) {
            return Err(Refusal::new(404, "not found"));
        }
        log::debug!("{id} open {}", req.path());
        Ok(())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        match self.mode {
            Mode::Chat => {
                ctx.broadcast_except(id, msg);
            }
            Mode::Echo => {
                ctx.send(id, msg);
            }
        }
    }

    fn on_http(
        &mut self,
        _ctx: &mut Context<'_>,
        _id: ConnId,
        req: &Request<'_>,
        _body: &[u8],
    ) -> Reply {
        if is_ws_path(req.path()) {
            Response::text(426, "websocket upgrade required").into()
        } else {
            Response::text(404, "not found").into()
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    // Every connection is a file descriptor: take the whole hard limit, so users need no
    // `ulimit -n` before serving thousands of clients.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!("file descriptor limit: {limit}"),
        Err(e) => log::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let config = Config::default()
        .protocols(cli.protocols.clone())
        .max_message(cli.max_message)
        .max_frame(cli.max_frame)
        .max_connections(cli.max_connections)
        .handshake_timeout(secs(cli.handshake_timeout))
        .close_timeout(secs(cli.close_timeout))
        .shutdown_timeout(secs(cli.shutdown_timeout));
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
    println!(
        "pushloop listening on ws://{}/ws ({:?} mode)",
        server.local_addr(),
        cli.mode
    );
    if let Err(e) = server.run(App { mode: cli.mode }) {
        eprintln!("pushloop: {e}");
        std::process::exit(1);
    }
    log::info!("stopped");
}
