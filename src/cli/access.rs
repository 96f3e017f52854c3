//! `--access-log`: one line (target `pushloop::access`) when a WebSocket or an SSE
//! stream ends: transport, peer, channel, duration, messages and payload bytes received,
//! messages and bytes sent, bytes received on the wire, close code.
//!
//! What came in as messages is counted here, in the handler; what went out (and the
//! wire bytes in) is the library's count, [`Context::traffic`](pushloop::Context::traffic),
//! which `--access-log` turns on ([`Config::count_traffic`](pushloop::Config::count_traffic)):
//! the loop counts once per write and per read syscall, and per message queued, in a
//! table beside its connections that exists only while counting is on. Out is counted
//! where it is written: the bytes the kernel took (with TLS, the plaintext handed to the
//! TLS session, like the `bytes_out` metric), including the `101` head or the SSE
//! response head, every frame or event, heartbeats and the Close frame: a connection's
//! last bytes are written before the line is logged.
//!
//! Kept in the handler, beside the loop, and only while enabled: nothing per connection
//! otherwise.

use pushloop::{ConnId, Traffic};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// A connection being followed.
#[derive(Debug)]
struct Entry {
    transport: &'static str,
    peer: Option<SocketAddr>,
    channel: Box<str>,
    since: Instant,
    messages: u64,
    bytes: u64,
}

/// The connections of one worker that the access log follows.
#[derive(Debug, Default)]
pub struct AccessLog {
    open: HashMap<ConnId, Entry>,
}

impl AccessLog {
    /// Starts following `id`.
    pub fn opened(
        &mut self,
        id: ConnId,
        transport: &'static str,
        peer: Option<SocketAddr>,
        channel: &str,
    ) {
        let entry = Entry {
            transport,
            peer,
            channel: channel.into(),
            since: Instant::now(),
            messages: 0,
            bytes: 0,
        };
        self.open.insert(id, entry);
    }

    /// `id` sent a message of `len` bytes.
    pub fn message(&mut self, id: ConnId, len: usize) {
        if let Some(entry) = self.open.get_mut(&id) {
            entry.messages += 1;
            entry.bytes += len as u64;
        }
    }

    /// `id` ended (`code`: its close code, for a WebSocket; `traffic`: what the library
    /// counted, if it did); logs its line.
    pub fn closed(&mut self, id: ConnId, code: Option<u16>, traffic: Option<Traffic>) {
        let Some(entry) = self.open.remove(&id) else {
            return;
        };
        let peer = entry.peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
        let duration_ms = u64::try_from(entry.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        let code = code.unwrap_or(0);
        if let Some(t) = traffic {
            return log::info!(
                target: "pushloop::access",
                transport = entry.transport,
                channel = &*entry.channel,
                duration_ms = duration_ms,
                messages_in = entry.messages,
                bytes_in = entry.bytes,
                messages_out = t.messages_out,
                bytes_out = t.bytes_out,
                wire_bytes_in = t.bytes_in,
                code = code;
                "{id} ({peer}): {} on {} closed {code} after {duration_ms} ms, {} messages in \
                 ({} bytes), {} messages out; {} bytes in, {} bytes out on the wire",
                entry.transport, entry.channel, entry.messages, entry.bytes, t.messages_out,
                t.bytes_in, t.bytes_out
            );
        }
        // Opened while counting was off (the access log was turned on by a reload).
        log::info!(
            target: "pushloop::access",
            transport = entry.transport,
            channel = &*entry.channel,
            duration_ms = duration_ms,
            messages_in = entry.messages,
            bytes_in = entry.bytes,
            code = code;
            "{id} ({peer}): {} on {} closed {code} after {duration_ms} ms, {} messages in ({} bytes)",
            entry.transport, entry.channel, entry.messages, entry.bytes
        );
    }
}
