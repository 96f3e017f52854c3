//! SIGHUP: read the settings again (the same flags and variables over the config file)
//! and apply what can change live: the library's limits and policies on every worker
//! through [`Handle::reload`], the application's settings (token, CORS, mode, presence
//! events) through [`Shared`], the log level, the drain. A file that does not load keeps
//! everything as it was; a changed setting that needs a restart is named in the log.

use crate::cli::app::Shared;
use crate::cli::config_file::{self, Loaded};
use crate::cli::flags::{secs, Cli};
use crate::cli::logging;
use pushloop::{Handle, ReloadableJwt};
use std::ffi::OsString;

/// The settings that change on SIGHUP; every other one needs a restart (docs/config.md).
pub const LIVE: &[&str] = &[
    "mode",
    "max-message",
    "max-frame",
    "max-connections",
    "handshake-timeout",
    "close-timeout",
    "shutdown-timeout",
    "origin",
    "max-backlog",
    "backlog-policy",
    "channel-policy",
    "ping-interval",
    "pong-timeout",
    "publish-token",
    "jwt-secret",
    "jwt-public-key",
    "jwt-audience",
    "jwt-issuer",
    "cors-origin",
    "presence-events",
    "drain-timeout",
    "log-level",
    "access-log",
];

/// What a reload needs: the command line, the settings in force, where to apply them.
pub struct Reloader {
    /// The JWT secret in force (masked in `effective`).
    jwt_secret: Option<String>,
    /// The JWT keys every worker checks tokens with (`None` without JWT).
    jwt: Option<ReloadableJwt>,
    args: Vec<OsString>,
    /// The effective settings in force (as `check-config` prints them).
    effective: String,
    /// The publish token in force (masked in `effective`).
    token: Option<String>,
    handle: Handle,
    shared: std::sync::Arc<Shared>,
}

impl Reloader {
    /// A reloader for a server started with `args` and `loaded`.
    pub fn new(
        args: Vec<OsString>,
        loaded: &Loaded,
        handle: Handle,
        shared: std::sync::Arc<Shared>,
        jwt: Option<ReloadableJwt>,
    ) -> Reloader {
        Reloader {
            jwt,
            args,
            effective: loaded.effective.clone(),
            token: loaded.cli.publish_token.clone(),
            jwt_secret: loaded.cli.jwt_secret.clone(),
            handle,
            shared,
        }
    }

    /// Reads the settings again and applies what may change; logs what it did.
    pub fn reload(&mut self) {
        let loaded = match config_file::load(&self.args) {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => return log::error!("reload refused, settings unchanged: {e}"),
            Err(e) => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("");
                return log::error!("reload refused, settings unchanged: {first}");
            }
        };
        let mut changed = changed_keys(&self.effective, &loaded.effective);
        // Secrets are masked in the effective settings: compared here.
        if loaded.cli.publish_token != self.token && !changed.contains(&"publish-token".into()) {
            changed.push("publish-token".into());
        }
        if loaded.cli.jwt_secret != self.jwt_secret && !changed.contains(&"jwt-secret".into()) {
            changed.push("jwt-secret".into());
        }
        let (live, restart): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|k| LIVE.contains(&k.as_str()));
        for key in &restart {
            log::warn!("reload: {key} changed; it needs a restart (the old value stays)");
        }
        if live.is_empty() {
            return log::info!("reload: nothing to change");
        }
        let cli = &loaded.cli;
        // New JWT keys are read before anything changes: a key file that does not load
        // refuses the whole reload.
        let jwt_changed = live.iter().any(|k| k.starts_with("jwt-"));
        let new_keys = match (jwt_changed, &self.jwt, cli.jwt()) {
            (false, _, _) => None,
            (true, Some(_), Ok(Some(jwt))) => Some(jwt),
            (true, _, Err(e)) => return log::error!("reload refused, settings unchanged: {e}"),
            (true, _, Ok(_)) => {
                return log::error!(
                    "reload refused, settings unchanged: turning JWT authentication on or off \
                     needs a restart"
                )
            }
        };
        if self.handle.reload(&cli.config()).is_err() {
            return log::warn!("reload: the server is stopping");
        }
        self.shared.update(|s| apply(s, cli));
        if let (Some(jwt), Some(keys)) = (new_keys, &self.jwt) {
            keys.replace(jwt);
        }
        logging::set_level(cli.log_level);
        log::info!("reload: applied {}", live.join(", "));
        // What is in force now: the live settings new, the others as they were.
        self.effective = merge(&self.effective, &loaded.effective);
        self.token = cli.publish_token.clone();
        self.jwt_secret = cli.jwt_secret.clone();
    }
}

/// The application's live settings from `cli`.
fn apply(settings: &mut crate::cli::app::Settings, cli: &Cli) {
    settings.mode = cli.mode;
    settings.publish_token = cli.publish_token.clone();
    settings.cors_origin = cli.cors_origin.clone();
    settings.presence_events = cli.presence_events;
    settings.access_log = cli.access_log;
    settings.health.set_drain(secs(cli.drain_timeout));
}

/// The key of a `check-config` line.
fn key_of(line: &str) -> &str {
    let line = line.trim_start_matches("# ");
    line.split([' ', '=']).next().unwrap_or("")
}

/// The keys whose lines differ between two `check-config` outputs.
fn changed_keys(old: &str, new: &str) -> Vec<String> {
    old.lines()
        .zip(new.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, _)| key_of(a).to_owned())
        .collect()
}

/// `old` with the lines of live keys taken from `new`.
fn merge(old: &str, new: &str) -> String {
    old.lines()
        .zip(new.lines())
        .map(|(a, b)| if LIVE.contains(&key_of(a)) { b } else { a })
        .flat_map(|line| [line, "\n"])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_changed_keys_and_keeps_restart_ones() {
        let old = "listen = \"a\"\nmax-message = 1\n# cors-origin is not set\n";
        let new = "listen = \"b\"\nmax-message = 2\ncors-origin = \"*\"\n";
        assert_eq!(
            changed_keys(old, new),
            ["listen", "max-message", "cors-origin"]
        );
        assert_eq!(
            merge(old, new),
            "listen = \"a\"\nmax-message = 2\ncors-origin = \"*\"\n"
        );
    }
}
