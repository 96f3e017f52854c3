//! HTTP on the loop's connections: answer a request at once (keep-alive or not), refuse
//! it, stream the response's body, or hold the request and answer it later.

use crate::http;
use crate::server::connection::{ConnId, Held, Phase};
use crate::server::core::Core;
use crate::server::reply::{Heartbeat, Response};
use std::time::Duration;

/// The most bytes of pipelined requests kept behind a held request: one request head.
const MAX_PIPELINED: usize = 16 << 10;

impl Core {
    /// Answers `key`'s request with an HTTP error (with `headers`) and drains. An upgrade
    /// accepted a moment ago (its 101 still queued) is taken back without telling the
    /// handler.
    pub(crate) fn http_error(
        &mut self,
        key: usize,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) {
        let conn = &mut self.conns[key];
        if conn.is_announced() {
            self.open -= 1;
        }
        conn.outbox.clear();
        conn.outbox.push_with(160 + body.len(), |out| {
            http::write_error_with(status, headers, body, out)
        });
        self.drain(key);
    }

    /// Queues `response` to `key`'s request (without the body for a HEAD request); keeps
    /// the connection for the next request if `keep_alive`, else drains.
    pub(crate) fn http_reply(
        &mut self,
        key: usize,
        response: &Response,
        head_only: bool,
        keep_alive: bool,
    ) {
        let idle_timeout = self.settings.handshake_timeout;
        let conn = &mut self.conns[key];
        conn.outbox.push_with(160 + response.body.len(), |out| {
            // A HEAD answer is the GET answer without its body (RFC 9110 §9.3.2).
            let len = Some(response.body.len());
            http::write_head(response.status, &response.headers, len, keep_alive, out);
            if !head_only {
                out.extend_from_slice(&response.body);
            }
        });
        if keep_alive {
            self.set_deadline(key, self.now() + idle_timeout);
            self.mark_dirty(key);
        } else {
            self.drain(key);
        }
    }

    /// Answers `key`'s request with `response`'s head and body and keeps the body open
    /// ([`Phase::Streaming`]), with a heartbeat when quiet.
    pub(crate) fn stream(&mut self, key: usize, response: &Response, heartbeat: Option<Heartbeat>) {
        let conn = &mut self.conns[key];
        conn.outbox.push_with(160 + response.body.len(), |out| {
            http::write_head(response.status, &response.headers, None, false, out);
            out.extend_from_slice(&response.body);
        });
        conn.phase = Phase::Streaming(heartbeat.map(Box::new));
        match heartbeat {
            Some(beat) => self.set_deadline(key, self.now() + beat.every),
            None => self.conns[key].deadline = 0,
        }
        self.mark_dirty(key);
    }

    /// Holds `key`'s request until [`respond`](Self::respond) or, after `timeout`, the
    /// `fallback` answer.
    pub(crate) fn hold(
        &mut self,
        key: usize,
        timeout: Duration,
        fallback: Response,
        keep_alive: bool,
    ) {
        self.conns[key].phase = Phase::Held(Box::new(Held {
            fallback,
            keep_alive,
            pipelined: Vec::new(),
        }));
        self.set_deadline(key, self.now() + timeout);
    }

    /// Replaces the answer the request held on `id` gets when its deadline passes;
    /// `false` if none is held there.
    pub(crate) fn set_fallback(&mut self, id: ConnId, fallback: Response) -> bool {
        match self.get(id).map(|c| &mut c.phase) {
            Some(Phase::Held(held)) => {
                held.fallback = fallback;
                true
            }
            _ => false,
        }
    }

    /// Whether `id` is a streamed response (e.g. Server-Sent Events).
    pub(crate) fn is_streaming(&self, id: ConnId) -> bool {
        self.conns
            .get(id.key())
            .is_some_and(|c| c.serial == id.serial() && matches!(c.phase, Phase::Streaming(_)))
    }

    /// Whether `id` is a request held open.
    pub(crate) fn is_held(&self, id: ConnId) -> bool {
        self.conns
            .get(id.key())
            .is_some_and(|c| c.serial == id.serial() && matches!(c.phase, Phase::Held(_)))
    }

    /// Ends the streamed response on `id` (what is queued is written first) and tells the
    /// handler (`on_http_end`); `false` if `id` is not a stream.
    pub(crate) fn end_stream(&mut self, id: ConnId) -> bool {
        if !self.is_streaming(id) {
            return false;
        }
        self.exchanges_ended.push(id);
        self.drain(id.key());
        true
    }

    /// Answers the request held on `id`; `false` if none is held there.
    pub(crate) fn respond(&mut self, id: ConnId, response: &Response) -> bool {
        match self.get(id).map(|c| &c.phase) {
            Some(Phase::Held(_)) => {
                self.answer_held(id.key(), Some(response));
                true
            }
            _ => false,
        }
    }

    /// Answers the request held on `key` with `response`, or its fallback, and goes back
    /// to reading requests (or drains if it was the last).
    fn answer_held(&mut self, key: usize, response: Option<&Response>) {
        let idle_timeout = self.settings.handshake_timeout;
        let conn = &mut self.conns[key];
        let Phase::Held(held) = std::mem::replace(&mut conn.phase, Phase::Reading(Vec::new()))
        else {
            return;
        };
        let response = response.unwrap_or(&held.fallback);
        conn.outbox.push_with(200 + response.body.len(), |out| {
            http::write_response(
                response.status,
                &response.headers,
                &response.body,
                held.keep_alive,
                out,
            )
        });
        if !held.keep_alive {
            return self.drain(key);
        }
        if !held.pipelined.is_empty() {
            self.conns[key].phase = Phase::Reading(held.pipelined);
            self.refeed.push(key);
        }
        self.set_deadline(key, self.now() + idle_timeout);
        self.mark_dirty(key);
    }

    /// Keeps bytes of requests pipelined behind a held request, up to one request head;
    /// beyond that the client is not waiting for answers in order, and the rest is
    /// dropped.
    pub(crate) fn hold_pipelined(held: &mut Held, bytes: &[u8]) {
        let room = MAX_PIPELINED.saturating_sub(held.pipelined.len());
        held.pipelined
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// A deadline passed on a stream (send its heartbeat) or a held request (answer it
    /// with its fallback). Returns false for other phases, whose deadline ends the
    /// connection.
    pub(crate) fn exchange_timer(&mut self, key: usize) -> bool {
        match &self.conns[key].phase {
            Phase::Streaming(Some(beat)) => {
                let (every, bytes) = (beat.every, beat.bytes);
                self.conns[key].outbox.push_bytes(bytes);
                self.set_deadline(key, self.now() + every);
                self.mark_dirty(key);
                true
            }
            Phase::Held(_) => {
                self.exchanges_ended.push(self.id(key));
                self.answer_held(key, None);
                true
            }
            _ => false,
        }
    }
}
