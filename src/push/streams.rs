//! Server-Sent Events streams of several channels (`GET /sse?channel=a&channel=b`): one
//! response carrying every channel's messages, each event's data a `pushloop.v1`
//! envelope (which names its channel) and each event's id the stream's position in every
//! channel (`a=5,b=7`, [`sse_stream_id`](format::sse_stream_id)), so a reconnect with
//! the browser-kept `Last-Event-ID` resumes each channel where it stopped.
//!
//! Such a stream is a Server-Sent Events member of each of its channels (presence counts
//! it once per channel); the hub's `Streams` (`positions.rs`) marks it, so the fan-out
//! sends it its own event rather than the shared single-channel one. The envelope is
//! encoded once per message; the event (its id line names this stream's positions) once
//! per stream. The positions live on the worker of the stream's connection: messages of
//! channels kept elsewhere (another worker, Redis) come as the broker's `Deliver` and
//! their replays as its `Joined`, and both move the same positions here.

use crate::push::broker::Joining;
use crate::push::channels::{Replay, Stored, Transport};
use crate::push::format;
use crate::push::hub::{Hub, SSE_RETRY_MS};
use crate::server::backlog::Tag;
use crate::server::connection::ConnId;
use crate::server::core::{Core, Delivery};
use crate::server::encoded::Encoded;
use crate::server::reply::{Heartbeat, Reply, Response};
use std::sync::Arc;

impl Hub {
    /// Answers `id`'s request with one Server-Sent Events stream of several `channels`,
    /// each with the `since` it resumes from (`None`: only what is published from now on):
    /// first what each missed (a `gap` event per channel whose history lost some), then
    /// live messages of all of them, with a comment heartbeat. The channels must be valid
    /// and distinct.
    pub(crate) fn multi_event_stream(
        &mut self,
        id: ConnId,
        channels: &[(&str, Option<u64>)],
        headers: &[(String, String)],
    ) -> Reply {
        let mut response = Response::new(200, "text/event-stream", Vec::new())
            .header("Cache-Control", "no-cache")
            .header("X-Accel-Buffering", "no");
        response.headers.extend_from_slice(headers);
        format::sse_retry(SSE_RETRY_MS, &mut response.body);
        self.streams.start(id, channels);
        for &(channel, since) in channels {
            let joining =
                self.broker
                    .subscribe(&mut self.channels, id, channel, Transport::Sse, since);
            // Else the broker's `Joined` brings the replay (`stream_replay`).
            if let Joining::Now { since, replay } = joining {
                self.replay_into(id, channel, since, &replay, &mut response.body);
                self.channels.join(channel, id.as_u64(), Transport::Sse);
            }
        }
        self.streams.checkpoint(id, &mut response.body);
        Reply::Stream {
            response,
            heartbeat: Some(Heartbeat {
                every: self.settings.heartbeat,
                bytes: format::SSE_HEARTBEAT,
            }),
        }
    }

    /// Appends what the stream `member` missed of `channel` after `since` (the owner of
    /// `channel` on another worker answered its subscription): [`replay_into`], then, if
    /// that sent no message, an id-only block with its new position.
    ///
    /// [`replay_into`]: Hub::replay_into
    pub(crate) fn stream_replay(
        &mut self,
        member: ConnId,
        channel: &str,
        since: u64,
        replay: &Replay,
        out: &mut Vec<u8>,
    ) {
        self.replay_into(member, channel, since, replay, out);
        if replay.messages.is_empty() {
            self.streams.checkpoint(member, out);
        }
    }

    /// Appends what the stream `member` missed of `channel` after `since`: a `gap` event
    /// if history lost some, then the messages, each with the stream's id; its position
    /// in `channel` is then the last of them (or `since`).
    fn replay_into(
        &mut self,
        member: ConnId,
        channel: &str,
        since: u64,
        replay: &Replay,
        out: &mut Vec<u8>,
    ) {
        self.streams.advance(member, channel, since);
        let mut json = Vec::new();
        if replay.truncated {
            format::ws_gap(channel, since, replay.last_id, &mut json);
            format::sse_json_event("gap", None, &json, out);
        }
        for m in &replay.messages {
            json.clear();
            format::ws_message(channel, m.id, m.kind, &m.data, &mut json);
            self.streams.advance(member, channel, m.id);
            let stream_id = self.streams.stream_id(member);
            format::sse_json_event("message", stream_id.as_deref(), &json, out);
        }
    }

    /// Delivers `stored`, published to `channel`, to the streams of several channels
    /// among its members (`members`): the envelope encoded once, the event (with each
    /// stream's own id) per stream. Returns how many it was queued for.
    pub(crate) fn stream_deliver(
        &mut self,
        core: &mut Core,
        channel: &str,
        stored: &Arc<Stored>,
        members: &[ConnId],
    ) -> usize {
        if members.is_empty() {
            return 0;
        }
        let mut json = Vec::new();
        format::ws_message(channel, stored.id, stored.kind, &stored.data, &mut json);
        let at = core.congestion_point();
        let policy = self.settings.policy_for(channel);
        let tag = Tag::named(channel);
        let mut delivered = 0;
        for &id in members {
            self.streams.advance(id, channel, stored.id);
            let stream_id = self.streams.stream_id(id);
            let mut event = Vec::with_capacity(json.len() + 64);
            format::sse_json_event("message", stream_id.as_deref(), &json, &mut event);
            let mut form = Encoded::bytes(event, at);
            if core.deliver(id, &mut form, tag, policy) == Delivery::Queued {
                delivered += 1;
            }
        }
        delivered
    }
}
