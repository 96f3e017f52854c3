//! The HTTP API's JSON bodies: the long-poll answer, the publish answer, channel presence
//! and presence notices.

use super::json::{json_string, push_data_field, push_u64};
use crate::push::channels::{Stored, Transport};
use std::sync::Arc;

/// A channel's subscriber counts per transport and its newest message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence<'a> {
    /// The channel's name.
    pub channel: &'a str,
    /// Subscribers over WebSocket.
    pub websocket: usize,
    /// Subscribers over Server-Sent Events.
    pub sse: usize,
    /// Subscribers waiting in a long poll.
    pub long_poll: usize,
    /// The id of the newest message published to the channel (0 before the first).
    pub last_id: u64,
    /// Subscribers on each worker, all transports (empty: one worker, not shown).
    pub workers: &'a [usize],
}

/// Appends a long-poll response body for stored messages:
/// `{"messages":[{"id":7,"data":"hi"},{"id":8,"data":"AAE=","encoding":"base64"}],"next":8,"truncated":false}`.
pub fn poll_body(messages: &[Arc<Stored>], truncated: bool, next: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"messages\":[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        push_u64(m.id, out);
        out.push(b',');
        push_data_field(m.kind, &m.data, out);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"next\":");
    push_u64(next, out);
    out.extend_from_slice(if truncated {
        b",\"truncated\":true}"
    } else {
        b",\"truncated\":false}"
    });
}

/// Appends the publish API's answer: `{"id":7,"delivered":3}`.
pub fn publish_body(id: u64, delivered: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    push_u64(id, out);
    out.extend_from_slice(b",\"delivered\":");
    push_u64(delivered as u64, out);
    out.push(b'}');
}

/// Appends a channel's presence:
/// `{"channel":"c","subscribers":{"websocket":2,"sse":1,"long_poll":0},"last_id":9}`.
pub fn presence_body(presence: &Presence<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"channel\":");
    json_string(presence.channel, out);
    out.extend_from_slice(b",\"subscribers\":{\"websocket\":");
    push_u64(presence.websocket as u64, out);
    out.extend_from_slice(b",\"sse\":");
    push_u64(presence.sse as u64, out);
    out.extend_from_slice(b",\"long_poll\":");
    push_u64(presence.long_poll as u64, out);
    out.extend_from_slice(b"},\"last_id\":");
    push_u64(presence.last_id, out);
    if !presence.workers.is_empty() {
        out.extend_from_slice(b",\"workers\":[");
        for (i, &n) in presence.workers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_u64(n as u64, out);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// Appends the presence of several channels: `{"channels":[<presence>,...]}`.
pub fn channels_body(channels: &[Presence<'_>], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"channels\":[");
    for (i, presence) in channels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        presence_body(presence, out);
    }
    out.extend_from_slice(b"]}");
}

/// A member came or went, for a presence notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// A member joined.
    Join,
    /// A member left.
    Leave,
}

impl PresenceChange {
    /// The notice's `event` field: `join` or `leave`.
    pub fn name(self) -> &'static str {
        match self {
            PresenceChange::Join => "join",
            PresenceChange::Leave => "leave",
        }
    }
}

/// Appends a presence notice:
/// `{"type":"presence","event":"join","channel":"c","transport":"websocket","subscribers":3,"user":"alice"}`,
/// where `user` names the user of the connection that joined or left (its token's
/// `sub`); an anonymous connection's notice has no `user`.
pub fn presence_event(
    change: PresenceChange,
    channel: &str,
    transport: Transport,
    subscribers_total: usize,
    user: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"type\":\"presence\",\"event\":");
    json_string(change.name(), out);
    out.extend_from_slice(b",\"channel\":");
    json_string(channel, out);
    out.extend_from_slice(b",\"transport\":");
    json_string(transport.name(), out);
    out.extend_from_slice(b",\"subscribers\":");
    push_u64(subscribers_total as u64, out);
    if let Some(user) = user {
        out.extend_from_slice(b",\"user\":");
        json_string(user, out);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::format::testkit::{render_json, stored};
    use crate::server::message::Kind;

    #[test]
    fn poll_body_exact() {
        let messages = [
            stored(7, Kind::Text, b"hi"),
            stored(8, Kind::Binary, &[0, 1]),
        ];
        let (s, _) = render_json(|out| poll_body(&messages, false, 8, out));
        assert_eq!(
            s,
            r#"{"messages":[{"id":7,"data":"hi"},{"id":8,"data":"AAE=","encoding":"base64"}],"next":8,"truncated":false}"#
        );
        let (s, _) = render_json(|out| poll_body(&[], true, 12, out));
        assert_eq!(s, r#"{"messages":[],"next":12,"truncated":true}"#);
    }

    #[test]
    fn publish_body_exact() {
        let (s, _) = render_json(|out| publish_body(7, 3, out));
        assert_eq!(s, r#"{"id":7,"delivered":3}"#);
        let (s, _) = render_json(|out| publish_body(0, 0, out));
        assert_eq!(s, r#"{"id":0,"delivered":0}"#);
    }

    #[test]
    fn presence_and_channels_bodies() {
        let c = Presence {
            channel: "c",
            websocket: 2,
            sse: 1,
            long_poll: 0,
            last_id: 9,
            workers: &[],
        };
        let d = Presence {
            channel: "d\\",
            websocket: 0,
            sse: 0,
            long_poll: 10,
            last_id: 0,
            workers: &[],
        };
        let c_json =
            r#"{"channel":"c","subscribers":{"websocket":2,"sse":1,"long_poll":0},"last_id":9}"#;
        let d_json =
            r#"{"channel":"d\\","subscribers":{"websocket":0,"sse":0,"long_poll":10},"last_id":0}"#;
        assert_eq!(render_json(|out| presence_body(&c, out)).0, c_json);
        assert_eq!(
            render_json(|out| channels_body(&[c, d], out)).0,
            format!(r#"{{"channels":[{c_json},{d_json}]}}"#)
        );
        assert_eq!(
            render_json(|out| channels_body(&[], out)).0,
            r#"{"channels":[]}"#
        );
    }

    #[test]
    fn presence_event_exact() {
        let (s, _) = render_json(|out| {
            presence_event(
                PresenceChange::Join,
                "c",
                Transport::WebSocket,
                3,
                None,
                out,
            )
        });
        assert_eq!(
            s,
            r#"{"type":"presence","event":"join","channel":"c","transport":"websocket","subscribers":3}"#
        );
        let (s, _) = render_json(|out| {
            presence_event(
                PresenceChange::Leave,
                "c",
                Transport::LongPoll,
                0,
                None,
                out,
            )
        });
        assert_eq!(
            s,
            r#"{"type":"presence","event":"leave","channel":"c","transport":"long_poll","subscribers":0}"#
        );
        let (s, _) = render_json(|out| {
            presence_event(
                PresenceChange::Leave,
                "c",
                Transport::Sse,
                1,
                Some("a\"b"),
                out,
            )
        });
        assert_eq!(
            s,
            r#"{"type":"presence","event":"leave","channel":"c","transport":"sse","subscribers":1,"user":"a\"b"}"#
        );
    }
}
