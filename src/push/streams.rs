//! Server-Sent Events streams of several channels (`GET /sse?channel=a&channel=b`): one
//! response carrying every channel's messages, each event's data a `pushloop.v1`
//! envelope (which names its channel) and each event's id the stream's position in every
//! channel (`a=5,b=7`, [`sse_stream_id`](format::sse_stream_id)), so a reconnect with
//! the browser-kept `Last-Event-ID` resumes each channel where it stopped.
//!
//! Such a stream is a Server-Sent Events member of each of its channels (presence counts
//! it once per channel); [`Streams`] marks it so the hub's fan-out sends it its own event
//! rather than the shared single-channel one. The envelope is encoded once per message;
//! the event (its id line names this stream's positions) once per stream. The positions
//! live on the worker of the stream's connection: messages of channels owned by other
//! workers come in `Deliver` notes and their replays in `Joined` notes, and both move the
//! same positions here.

use crate::push::channels::{Replay, Stored, Transport};
use crate::push::format;
use crate::push::hub::{Hub, SSE_RETRY_MS};
use crate::server::backlog::Tag;
use crate::server::connection::ConnId;
use crate::server::core::{Core, Delivery};
use crate::server::encoded::Encoded;
use crate::server::reply::{Heartbeat, Reply, Response};
use std::collections::HashMap;
use std::sync::Arc;

/// A stream's channels in its order, each with its position (`None`: not known yet).
type Positions = Vec<(Arc<str>, Option<u64>)>;

/// The streams of several channels on this worker, and each one's position in each of
/// its channels: the id of the last message it was sent (or the channel's last id when it
/// joined, or the `since` it resumed from); `None` while the owner of a channel on
/// another worker has not answered a subscription that named no `since`.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    positions: HashMap<ConnId, Positions>,
}

impl Streams {
    /// Whether `id` is a stream of several channels.
    pub(crate) fn has(&self, id: ConnId) -> bool {
        self.positions.contains_key(&id)
    }

    /// Forgets `id` (its stream ended).
    pub(crate) fn forget(&mut self, id: ConnId) {
        self.positions.remove(&id);
    }

    /// Moves `id`'s position in `channel` to `last`.
    fn advance(&mut self, id: ConnId, channel: &str, last: u64) {
        let Some(positions) = self.positions.get_mut(&id) else {
            return;
        };
        if let Some((_, at)) = positions.iter_mut().find(|(c, _)| &**c == channel) {
            *at = Some(last);
        }
    }

    /// The stream id of `id` now (its known positions, in the stream's order); `None`
    /// if it knows none yet.
    fn stream_id(&self, id: ConnId) -> Option<Vec<u8>> {
        let positions = self.positions.get(&id)?;
        let known = positions
            .iter()
            .filter_map(|(channel, at)| Some((&**channel, (*at)?)));
        let mut out = Vec::new();
        format::sse_stream_id(known, &mut out);
        (!out.is_empty()).then_some(out)
    }

    /// Appends an id-only block (`id: a=5,b=7`, no data): the browser keeps the id as its
    /// `Last-Event-ID` and dispatches nothing (WHATWG HTML §9.2.6), so a reconnect before
    /// the next message still resumes every channel from here.
    fn checkpoint(&self, id: ConnId, out: &mut Vec<u8>) {
        if let Some(stream_id) = self.stream_id(id) {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(&stream_id);
            out.extend_from_slice(b"\n\n");
        }
    }
}

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
        let positions = channels
            .iter()
            .map(|&(channel, since)| (Arc::from(channel), since))
            .collect();
        self.streams.positions.insert(id, positions);
        for &(channel, since) in channels {
            if self.forwarder(channel).is_some() {
                // The owner's `Joined` brings the replay (`stream_replay`).
                self.subscribe_remote(id, channel, Transport::Sse, since);
                continue;
            }
            let since = since.unwrap_or_else(|| self.channels.last_id(channel));
            let replay = self.channels.replay(channel, since);
            self.replay_into(id, channel, since, &replay, &mut response.body);
            self.channels.join(channel, id.as_u64(), Transport::Sse);
            self.joined_here(channel);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_follow_positions_in_the_streams_order() {
        let mut streams = Streams::default();
        let id = ConnId::from_u64(7);
        assert_eq!(streams.stream_id(id), None);
        streams
            .positions
            .insert(id, vec![(Arc::from("b"), None), (Arc::from("a"), Some(3))]);
        assert!(streams.has(id));
        assert_eq!(streams.stream_id(id).as_deref(), Some(&b"a=3"[..]));
        streams.advance(id, "b", 9);
        streams.advance(id, "not-in-it", 1);
        assert_eq!(streams.stream_id(id).as_deref(), Some(&b"b=9,a=3"[..]));
        let mut out = Vec::new();
        streams.checkpoint(id, &mut out);
        assert_eq!(out, b"id: b=9,a=3\n\n");
        streams.forget(id);
        assert!(!streams.has(id));
        out.clear();
        streams.checkpoint(id, &mut out);
        assert!(out.is_empty());
    }
}
