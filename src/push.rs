//! Channels on the pool: WebSocket members, Server-Sent Events streams and held long
//! polls, and publishing to all three with an id and a place in history.

use crate::backlog::{self, Verdict};
use crate::channel::{valid_name, Transport};
use crate::connection::{HeldPoll, Phase};
use crate::format;
use crate::frame::{encode_frame, OpCode};
use crate::handler::{ConnId, Message};
use crate::http;
use crate::pool::{opcode_of, Encoded, Pool};
use std::time::Duration;

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's id in its channel (ids grow by one per channel, from 1).
    pub id: u64,
    /// How many subscribers it was queued for (all transports).
    pub delivered: usize,
}

/// Appends a WebSocket text frame carrying `json`.
fn ws_frame(json: &[u8], out: &mut Vec<u8>) {
    encode_frame(OpCode::Text, json, out);
}

impl Pool {
    /// Makes the open WebSocket `id` a member of `channel`, first sending it what it
    /// missed after `since` (a `gap` notice if history no longer has all of it).
    pub fn join(&mut self, id: ConnId, channel: &str, since: Option<u64>) -> bool {
        if !valid_name(channel) || !self.get(id).is_some_and(|c| c.is_open()) {
            return false;
        }
        if let Some(since) = since {
            let envelope = self.get(id).is_some_and(|c| c.envelope);
            let replay = self.channels.replay(channel, since);
            let mut out = Vec::new();
            let mut json = Vec::new();
            if replay.truncated && envelope {
                format::ws_gap(channel, since, replay.last_id, &mut json);
                ws_frame(&json, &mut out);
            }
            for m in &replay.messages {
                if envelope {
                    json.clear();
                    format::ws_message(channel, m.id, m.text, &m.data, &mut json);
                    ws_frame(&json, &mut out);
                } else {
                    encode_frame(
                        if m.text { OpCode::Text } else { OpCode::Binary },
                        &m.data,
                        &mut out,
                    );
                }
            }
            if let Some(conn) = self.get(id) {
                conn.outbox.push_bytes(&out);
            }
            self.mark_dirty(id.key());
        }
        self.channels
            .join(channel, id.as_u64(), Transport::WebSocket)
    }

    /// Tells `id`, if it takes envelopes, the id its own message got (chat senders do not
    /// receive their message, but need its id to resume without duplicates).
    pub fn ack(&mut self, id: ConnId, channel: &str, published: u64) {
        if !self.get(id).is_some_and(|c| c.envelope && c.is_open()) {
            return;
        }
        let mut json = Vec::new();
        format::ws_ack(channel, published, &mut json);
        let mut out = Vec::new();
        ws_frame(&json, &mut out);
        if let Some(conn) = self.get(id) {
            conn.outbox.push_bytes(&out);
        }
        self.mark_dirty(id.key());
    }

    /// Removes `id` from `channel`.
    pub fn leave(&mut self, id: ConnId, channel: &str) -> bool {
        self.channels.leave(channel, id.as_u64())
    }

    /// Publishes to `channel`: an id, a place in history, and delivery to every member
    /// but `except`: WebSockets get a JSON envelope, SSE streams an event, held long polls
    /// their answer. Each form is encoded once.
    pub fn publish(
        &mut self,
        channel: &str,
        msg: Message<'_>,
        except: Option<ConnId>,
    ) -> Published {
        let stored = self
            .channels
            .publish(channel, msg.is_text(), msg.as_bytes());
        // Encode each form once, and only for the transports the channel has members on.
        let counts = self.channels.counts(channel).unwrap_or_default();
        let (mut json, mut sse) = (Vec::new(), Vec::new());
        if counts.websocket > 0 {
            format::ws_message(channel, stored.id, stored.text, &stored.data, &mut json);
        }
        if counts.sse > 0 {
            format::sse_event(stored.id, stored.text, &stored.data, &mut sse);
        }
        let at = backlog::congestion_point(self.config.max_backlog);
        let (mut ws, mut raw, mut sse) = if counts.websocket > 0 {
            (
                Encoded::websocket(OpCode::Text, &json, at),
                Encoded::websocket(opcode_of(&msg), msg.as_bytes(), at),
                Encoded::new(sse, at),
            )
        } else {
            (
                Encoded::new(Vec::new(), at),
                Encoded::new(Vec::new(), at),
                Encoded::new(sse, at),
            )
        };
        let mut delivered = 0;
        let mut polls = Vec::new();
        let mut over = Vec::new();
        let limit = self.config.max_backlog;
        let policy = self.config.policy_for(channel);
        let stream = backlog::stream_of(channel);
        for (member, transport) in self.channels.members(channel) {
            let id = ConnId(member);
            if Some(id) == except {
                continue;
            }
            let Some(conn) = self
                .conns
                .get_mut(id.key())
                .filter(|c| c.serial == id.serial())
            else {
                continue;
            };
            if matches!(conn.phase, Phase::Open | Phase::Stream) {
                let (verdict, dropped) = backlog::admit(conn, stream, policy, limit);
                self.dropped += u64::from(dropped);
                match verdict {
                    Verdict::Queue => {}
                    Verdict::Skip => continue,
                    Verdict::Close => {
                        over.push(id.key());
                        continue;
                    }
                }
            }
            match (transport, &conn.phase) {
                (Transport::WebSocket, Phase::Open) if conn.envelope => {
                    ws.queue(conn, stream, &mut self.codecs)
                }
                (Transport::WebSocket, Phase::Open) => raw.queue(conn, stream, &mut self.codecs),
                (Transport::Sse, Phase::Stream) => sse.queue(conn, stream, &mut self.codecs),
                (Transport::LongPoll, Phase::Polling(_)) => polls.push(id),
                _ => continue,
            }
            delivered += 1;
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(id.key());
            }
        }
        for key in over {
            self.overflow(key);
        }
        let one = [(stored.id, stored.text, &stored.data[..])];
        for id in polls {
            self.answer_poll(id.key(), &one, false, stored.id);
        }
        Published {
            id: stored.id,
            delivered,
        }
    }

    /// Turns `key`'s request into a Server-Sent Events stream of `channel`, starting
    /// with what it missed after `since`.
    pub fn start_stream(
        &mut self,
        key: usize,
        channel: &str,
        since: Option<u64>,
        headers: &[(String, String)],
    ) {
        let mut all = vec![
            ("Content-Type".to_owned(), "text/event-stream".to_owned()),
            ("Cache-Control".to_owned(), "no-cache".to_owned()),
            ("X-Accel-Buffering".to_owned(), "no".to_owned()),
        ];
        all.extend_from_slice(headers);
        let mut out = Vec::new();
        http::write_head(200, &all, None, false, &mut out);
        format::sse_retry(2000, &mut out);
        if let Some(since) = since {
            let replay = self.channels.replay(channel, since);
            if replay.truncated {
                format::sse_gap(since, replay.last_id, &mut out);
            }
            for m in &replay.messages {
                format::sse_event(m.id, m.text, &m.data, &mut out);
            }
        }
        let id = self.id(key);
        self.channels.join(channel, id.as_u64(), Transport::Sse);
        let heartbeat = self.config.heartbeat;
        let conn = &mut self.conns[key];
        conn.outbox.push_bytes(&out);
        conn.phase = Phase::Stream;
        self.set_deadline(key, self.now() + heartbeat);
        self.mark_dirty(key);
    }

    /// Answers `key`'s long poll of `channel` now if anything came after `since` (or
    /// history lost some of it), else holds it until a message or `timeout`.
    pub fn start_poll(
        &mut self,
        key: usize,
        channel: &str,
        since: Option<u64>,
        timeout: Duration,
        headers: &[(String, String)],
        keep_alive: bool,
    ) {
        let since = since.unwrap_or_else(|| self.channels.last_id(channel));
        let replay = self.channels.replay(channel, since);
        self.conns[key].phase = Phase::Polling(Box::new(HeldPoll {
            channel: channel.into(),
            since,
            keep_alive,
            headers: headers.to_vec(),
            pipelined: Vec::new(),
        }));
        if replay.truncated || !replay.messages.is_empty() {
            let messages: Vec<(u64, bool, &[u8])> = replay
                .messages
                .iter()
                .map(|m| (m.id, m.text, &m.data[..]))
                .collect();
            return self.answer_poll(key, &messages, replay.truncated, replay.last_id);
        }
        let id = self.id(key);
        self.channels
            .join(channel, id.as_u64(), Transport::LongPoll);
        self.set_deadline(key, self.now() + timeout);
    }

    /// Answers the poll held on `key` and goes back to reading requests.
    fn answer_poll(
        &mut self,
        key: usize,
        messages: &[(u64, bool, &[u8])],
        truncated: bool,
        next: u64,
    ) {
        let idle_timeout = self.config.handshake_timeout;
        let conn = &mut self.conns[key];
        let Phase::Polling(poll) =
            std::mem::replace(&mut conn.phase, Phase::Handshaking(Vec::new()))
        else {
            return;
        };
        let mut body = Vec::new();
        format::poll_body(messages, truncated, next, &mut body);
        let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        headers.extend(poll.headers);
        conn.outbox.push_with(200 + body.len(), |out| {
            http::write_response(200, &headers, &body, poll.keep_alive, out)
        });
        let id = self.id(key);
        self.channels.leave(&poll.channel, id.as_u64());
        if !poll.keep_alive {
            return self.drain(key);
        }
        if !poll.pipelined.is_empty() {
            self.conns[key].phase = Phase::Handshaking(poll.pipelined);
            self.refeed.push(key);
        }
        self.set_deadline(key, self.now() + idle_timeout);
        self.mark_dirty(key);
    }

    /// A deadline passed on a stream or a held poll: a heartbeat, or an empty answer.
    /// Returns false for other phases (their deadline ends the connection).
    pub fn push_timer(&mut self, key: usize) -> bool {
        match &self.conns[key].phase {
            Phase::Stream => {
                let heartbeat = self.config.heartbeat;
                let mut out = Vec::new();
                format::sse_heartbeat(&mut out);
                self.conns[key].outbox.push_bytes(&out);
                self.set_deadline(key, self.now() + heartbeat);
                self.mark_dirty(key);
                true
            }
            Phase::Polling(poll) => {
                let since = poll.since;
                self.answer_poll(key, &[], false, since);
                true
            }
            _ => false,
        }
    }
}
