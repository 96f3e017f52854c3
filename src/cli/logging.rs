//! The binary's log lines, through `env_logger`: text (`[time LEVEL target] message`), or
//! with `--log-format json` one JSON object a line: `ts`, `level`, `target`, `msg`, the
//! connection (`conn`) and `peer` when the message starts with them, and every key-value
//! the log call carried (the access log's `transport`, `bytes_in`, ...).
//!
//! The level is `--log-format`'s `--log-level` (SIGHUP may change it: [`set_level`]),
//! unless `RUST_LOG` is set, which then rules as usual.

use crate::cli::flags::LogFormat;
use log::kv::{Key, Value, VisitSource};
use std::io::Write;

/// Starts logging in `format` at `level`.
pub fn init(format: LogFormat, level: log::LevelFilter) {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let mut builder = if from_env {
        env_logger::Builder::from_env(env_logger::Env::default())
    } else {
        let mut builder = env_logger::Builder::new();
        // Everything passes env_logger's filter; `log::set_max_level` decides, so that
        // SIGHUP can change it.
        builder.filter_level(log::LevelFilter::Trace);
        builder
    };
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let mut line = serde_json::Map::new();
            line.insert("ts".into(), buf.timestamp_millis().to_string().into());
            line.insert("level".into(), record.level().as_str().into());
            line.insert("target".into(), record.target().into());
            let msg = record.args().to_string();
            if let Some((conn, peer)) = subject(&msg) {
                line.insert("conn".into(), conn.into());
                if let Some(peer) = peer {
                    line.insert("peer".into(), peer.into());
                }
            }
            line.insert("msg".into(), msg.into());
            let mut fields = Fields(&mut line);
            let _ = record.key_values().visit(&mut fields);
            writeln!(buf, "{}", serde_json::Value::Object(line))
        });
    }
    builder.init();
    if !from_env {
        log::set_max_level(level);
    }
}

/// Changes the level (unless `RUST_LOG` rules).
pub fn set_level(level: log::LevelFilter) {
    if std::env::var_os("RUST_LOG").is_none() {
        log::set_max_level(level);
    }
}

/// The connection a message is about, and its peer: `#3.512 (127.0.0.1:5000): ...`.
fn subject(msg: &str) -> Option<(&str, Option<&str>)> {
    let end = msg.find([' ', ':']).unwrap_or(msg.len());
    let conn = &msg[..end];
    let (key, serial) = conn.strip_prefix('#')?.split_once('.')?;
    if key.is_empty()
        || serial.is_empty()
        || !(key.bytes().chain(serial.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let peer = msg[end..]
        .strip_prefix(" (")
        .and_then(|rest| rest.split_once(')'))
        .map(|(peer, _)| peer);
    Some((conn, peer))
}

/// Copies a record's key-values into the JSON line.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_f64() {
            serde_json::Value::from(n)
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_connection_and_its_peer() {
        assert_eq!(
            subject("#3.512 (127.0.0.1:5000): 10 bytes queued"),
            Some(("#3.512", Some("127.0.0.1:5000")))
        );
        assert_eq!(subject("#3.512 timed out"), Some(("#3.512", None)));
        assert_eq!(subject("shutting down"), None);
        assert_eq!(subject("#x.1 no"), None);
    }
}
