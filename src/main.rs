//! The `pushloop` binary: flags, logging, signals; the application is in `app.rs`.

mod cli;

use cli::app::{App, Health, Settings, Shared};
use cli::flags::{secs, Command};
use cli::metrics::Scraper;
use cli::reload::Reloader;
use cli::{client, config_file, logging, metrics_listener, static_files, subscribe};
use pushloop::{valid_channel_name, Server, Tls};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::Arc;
use std::time::Duration;

/// Runs a subcommand (`check-config` is handled before).
fn run_command(command: Command) -> ! {
    match command {
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
        publish => publish_command(publish),
    }
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

/// Runs `pushloop publish`; exits 0 on 200.
fn publish_command(command: Command) -> ! {
    let Command::Publish {
        channel,
        message,
        server,
        cacert,
        token,
        content_type,
    } = command
    else {
        unreachable!("check-config and subscribe are handled before")
    };
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
        cacert,
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

/// SIGINT/SIGTERM: drain for `--drain-timeout` (the listener open, `/readyz` and new
/// clients 503), then stop (Close 1001 to every client, exit 0 once they closed); a
/// second signal stops at once. SIGHUP: [`Reloader::reload`], and with `--tls-cert` the
/// certificate and key read again (on this thread, not a loop's): new handshakes present
/// the new certificate; a bad file changes nothing.
fn watch_signals(
    handle: pushloop::Handle,
    health: Arc<Health>,
    mut reloader: Reloader,
    tls: Option<Tls>,
) {
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => return log::warn!("cannot watch signals: {e}"),
    };
    std::thread::spawn(move || {
        let mut stopping = None;
        while stopping.is_none() {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    log::info!("signal {sig}: reloading the settings");
                    reloader.reload();
                    if let Some(tls) = &tls {
                        match tls.reload() {
                            Ok(()) => log::info!("SIGHUP: reloaded {}", tls.cert_path().display()),
                            Err(e) => log::error!("SIGHUP: kept the old certificate: {e}"),
                        }
                    }
                } else {
                    stopping = Some(sig);
                    break;
                }
            }
        }
        let sig = stopping.unwrap_or(SIGTERM);
        let drain = health.drain();
        health.start_draining();
        if !drain.is_zero() {
            log::info!(
                "signal {sig}: draining for {:.1} s (/readyz and new clients get 503)",
                drain.as_secs_f64()
            );
            let until = std::time::Instant::now() + drain;
            'drain: while std::time::Instant::now() < until {
                for again in signals.pending() {
                    if again != SIGHUP {
                        log::info!("signal {again}: stopping now");
                        break 'drain;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        log::info!("signal {sig}: stopping (Close 1001 to every client)");
        let _ = handle.stop();
    });
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let loaded = match config_file::load(&args) {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => {
            eprintln!("pushloop: {e}");
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
    let mut cli = loaded.cli.clone();
    if config_file::is_check(&cli.command) {
        print!("{}", loaded.effective);
        std::process::exit(0);
    }
    if let Some(command) = cli.command.take() {
        run_command(command);
    }
    logging::init(cli.log_format, cli.log_level);
    // Every connection is a file descriptor: take the whole hard limit, so users need no
    // `ulimit -n` before serving thousands of clients.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!("file descriptor limit: {limit}"),
        Err(e) => log::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let mut config = cli.config();
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => match Tls::from_pem_files(cert, key) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("pushloop: cannot serve TLS: {e}");
                std::process::exit(1);
            }
        },
        (None, None) => None,
        // Checked here, not by clap: the config file's keys are parsed one at a time.
        _ => {
            eprintln!("pushloop: --tls-cert and --tls-key go together");
            std::process::exit(2);
        }
    };
    if let Some(tls) = &tls {
        config = config.tls(tls.clone());
    }
    let jwt = match cli.auth() {
        Ok(Some((auth, keys))) => {
            config = config.auth(auth);
            Some(keys)
        }
        Ok(None) => None,
        Err(e) => {
            eprintln!("pushloop: {e}");
            std::process::exit(2);
        }
    };
    let server = match Server::bind_with(&cli.listen, config) {
        Ok(server) => server,
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
            eprintln!("pushloop: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("pushloop: cannot listen on {}: {e}", cli.listen);
            std::process::exit(1);
        }
    };
    let handle = server.handle();
    let health = Arc::new(Health::new(secs(cli.drain_timeout)));
    let workers = match server.workers() {
        1 => String::new(),
        n => format!(", {n} workers"),
    };
    println!(
        "pushloop listening on {}://{}/ws ({:?} mode{workers})",
        if tls.is_some() { "wss" } else { "ws" },
        server.local_addr(),
        cli.mode
    );
    if let Some(addr) = &cli.metrics_listen {
        match metrics_listener::start(addr, handle.clone()) {
            Ok(local) => println!("pushloop metrics on http://{local}/metrics"),
            Err(e) => {
                eprintln!("pushloop: cannot listen on --metrics-listen {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
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
    let shared = Shared::new(Settings {
        static_files: static_files.map(Arc::new),
        presence_events: cli.presence_events,
        mode: cli.mode,
        publish_token: cli.publish_token.clone(),
        loopback: server.local_addr().ip().is_loopback(),
        cors_origin: cli.cors_origin.clone(),
        scraper: (server.workers() > 1 && cli.metrics_listen.is_none())
            .then(|| Scraper::start(handle.clone())),
        metrics_here: cli.metrics_listen.is_none(),
        health: health.clone(),
        access_log: cli.access_log,
        limits: Arc::new(cli::limits::Limits::new(
            cli.max_connections_per_ip,
            cli.max_connections_per_user,
            cli.handshake_rate.map(f64::from),
            cli.trusted_proxies.clone(),
        )),
    });
    let reloader = Reloader::new(args, &loaded, handle.clone(), shared.clone(), jwt);
    watch_signals(handle.clone(), health, reloader, tls);
    if let Err(e) = server.run_workers(|| App::new(shared.clone())) {
        eprintln!("pushloop: {e}");
        std::process::exit(1);
    }
    log::info!("stopped");
}
