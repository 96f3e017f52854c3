//! The text formats of pushed messages: JSON string literals (RFC 8259), the WebSocket
//! envelope, Server-Sent Events (WHATWG HTML §9.2), and the long-poll, publish and
//! presence bodies.
//!
//! Sans-IO: every function appends to a `Vec<u8>`. A message is given as
//! `(channel, id, kind, data)`, or as the `Stored` messages of a channel's history;
//! text data is UTF-8 (invalid bytes become U+FFFD rather than a panic) and binary data
//! is carried as standard base64.
//!
//! `json` has the JSON building blocks the others share; `envelope` the WebSocket
//! envelope protocol, `sse` the Server-Sent Events, `bodies` the HTTP API's JSON bodies.

mod bodies;
mod envelope;
mod json;
mod sse;
#[cfg(test)]
mod testkit;

pub use bodies::{
    channels_body, poll_body, presence_body, presence_event, publish_body, Presence, PresenceChange,
};
pub use envelope::{ws_ack, ws_direct, ws_error, ws_gap, ws_message, ENVELOPE_PROTOCOL};
pub use json::json_string;
pub use sse::{
    parse_stream_id, sse_event, sse_gap, sse_heartbeat, sse_json_event, sse_retry, sse_stream_id,
    SSE_HEARTBEAT, STREAM_ID_LIST, STREAM_ID_PAIR,
};

#[cfg(test)]
mod tests {
    //! Properties across the formats: invalid UTF-8, appending, base64 in every format.

    use super::testkit::{render, render_json, sse_fields, stored, Json};
    use super::*;
    use crate::server::message::Kind;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;

    #[test]
    fn invalid_utf8_text_is_replaced_not_panicked() {
        let (_, value) = render_json(|out| ws_message("c", 1, Kind::Text, b"a\xffb", out));
        assert_eq!(value.get("data").unwrap().str(), "a\u{fffd}b");
        let event = render(|out| sse_event(1, Kind::Text, b"a\xff\nb", out));
        assert_eq!(event, "id: 1\ndata: a\u{fffd}\ndata: b\n\n");
    }

    #[test]
    fn formatters_append_to_existing_output() {
        let mut out = b"prefix".to_vec();
        json_string("x", &mut out);
        sse_event(1, Kind::Binary, b"\xff", &mut out);
        sse_heartbeat(&mut out);
        assert_eq!(
            out,
            b"prefix\"x\"id: 1\nevent: binary\ndata: /w==\n\n: heartbeat\n\n"
        );
    }

    #[test]
    fn binary_base64_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        for len in [0, 1, 2, 3, 4, 5, 256] {
            let data = &all[all.len() - len..];
            let (_, value) = render_json(|out| ws_message("c", 1, Kind::Binary, data, out));
            assert_eq!(value.get("encoding"), Some(&Json::Str("base64".into())));
            let decoded = BASE64.decode(value.get("data").unwrap().str()).unwrap();
            assert_eq!(decoded, data);
            let event = render(|out| sse_event(1, Kind::Binary, data, out));
            let fields = sse_fields(&event);
            assert_eq!(fields[..2], [("id", "1"), ("event", "binary")]);
            assert_eq!(BASE64.decode(fields[2].1).unwrap(), data);
        }
        let (_, body) =
            render_json(|out| poll_body(&[stored(5, Kind::Binary, &all)], false, 5, out));
        let Json::Arr(messages) = body.get("messages").unwrap() else {
            panic!("messages is an array")
        };
        let decoded = BASE64
            .decode(messages[0].get("data").unwrap().str())
            .unwrap();
        assert_eq!(decoded, all);
    }
}
