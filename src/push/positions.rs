//! The position of each Server-Sent Events stream of several channels in each of its
//! channels (sans-IO): what its event ids say, `a=5,b=7`. Kept by the hub, used by
//! `streams.rs`.

use crate::push::format;
use crate::server::connection::ConnId;
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
    /// `id` is a stream of `channels`, in this order, each from the id it resumes after
    /// (`None`: not known yet).
    pub(crate) fn start(&mut self, id: ConnId, channels: &[(&str, Option<u64>)]) {
        let positions = channels
            .iter()
            .map(|&(channel, since)| (Arc::from(channel), since))
            .collect();
        self.positions.insert(id, positions);
    }

    /// Whether `id` is a stream of several channels.
    pub(crate) fn has(&self, id: ConnId) -> bool {
        self.positions.contains_key(&id)
    }

    /// Forgets `id` (its stream ended).
    pub(crate) fn forget(&mut self, id: ConnId) {
        self.positions.remove(&id);
    }

    /// Moves `id`'s position in `channel` to `last`.
    pub(crate) fn advance(&mut self, id: ConnId, channel: &str, last: u64) {
        let Some(positions) = self.positions.get_mut(&id) else {
            return;
        };
        if let Some((_, at)) = positions.iter_mut().find(|(c, _)| &**c == channel) {
            *at = Some(last);
        }
    }

    /// The stream id of `id` now (its known positions, in the stream's order); `None`
    /// if it knows none yet.
    pub(crate) fn stream_id(&self, id: ConnId) -> Option<Vec<u8>> {
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
    pub(crate) fn checkpoint(&self, id: ConnId, out: &mut Vec<u8>) {
        if let Some(stream_id) = self.stream_id(id) {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(&stream_id);
            out.extend_from_slice(b"\n\n");
        }
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
        streams.start(id, &[("b", None), ("a", Some(3))]);
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
