//! The WebSocket envelope protocol: channel messages, gap notices and acks as JSON, for
//! clients that offer [`ENVELOPE_PROTOCOL`].

use super::json::{json_string, push_data_field, push_u64};
use crate::server::message::Kind;

/// The subprotocol a WebSocket client offers to receive channel messages as JSON
/// envelopes (`{"type":"message","channel":..,"id":..,"data":..}`), gap notices and acks,
/// instead of raw payloads.
pub const ENVELOPE_PROTOCOL: &str = "pushloop.v1";

/// Appends the JSON envelope a WebSocket subscriber receives for a message:
/// `{"type":"message","channel":"c","id":7,"data":"hello"}`, with
/// `,"encoding":"base64"` after a base64 `data` when the message is binary.
pub fn ws_message(channel: &str, id: u64, kind: Kind, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"message\",\"channel\":");
    json_string(channel, out);
    out.extend_from_slice(b",\"id\":");
    push_u64(id, out);
    out.push(b',');
    push_data_field(kind, data, out);
    out.push(b'}');
}

/// Appends the envelope of a message sent to one client or broadcast, not published to
/// a channel (so it has no channel, no id and no place in history):
/// `{"type":"message","data":"hello"}`.
pub fn ws_direct(kind: Kind, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"message\",");
    push_data_field(kind, data, out);
    out.push(b'}');
}

/// Appends the WebSocket notice that history no longer holds every message after `since`:
/// `{"type":"gap","channel":"c","since":3,"last_id":51}`.
pub fn ws_gap(channel: &str, since: u64, last_id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"gap\",\"channel\":");
    json_string(channel, out);
    out.extend_from_slice(b",\"since\":");
    push_u64(since, out);
    out.extend_from_slice(b",\"last_id\":");
    push_u64(last_id, out);
    out.push(b'}');
}

/// Appends the WebSocket notice that a request was refused:
/// `{"type":"error","code":503,"message":"…"}`, with `"req":N` when the client numbered
/// its request.
pub fn ws_error(code: u16, message: &str, req: Option<u64>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"error\",\"code\":");
    push_u64(u64::from(code), out);
    out.extend_from_slice(b",\"message\":");
    json_string(message, out);
    if let Some(req) = req {
        out.extend_from_slice(b",\"req\":");
        push_u64(req, out);
    }
    out.push(b'}');
}

/// Appends the WebSocket acknowledgement of a client's own chat message:
/// `{"type":"ack","channel":"c","id":7}`, with `"req":N` when the client numbered its
/// request.
pub fn ws_ack(channel: &str, id: u64, req: Option<u64>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"ack\",\"channel\":");
    json_string(channel, out);
    out.extend_from_slice(b",\"id\":");
    push_u64(id, out);
    if let Some(req) = req {
        out.extend_from_slice(b",\"req\":");
        push_u64(req, out);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::format::testkit::render_json;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;
    use proptest::prelude::*;

    #[test]
    fn ws_direct_has_no_channel_and_no_id() {
        let (text, _) = render_json(|out| ws_direct(Kind::Text, b"hi \"you\"", out));
        assert_eq!(text, r#"{"type":"message","data":"hi \"you\""}"#);
        let (binary, _) = render_json(|out| ws_direct(Kind::Binary, &[0, 1], out));
        assert_eq!(
            binary,
            r#"{"type":"message","data":"AAE=","encoding":"base64"}"#
        );
    }

    #[test]
    fn ws_message_text_and_binary() {
        let (text, _) = render_json(|out| ws_message("c", 7, Kind::Text, b"hello", out));
        assert_eq!(
            text,
            r#"{"type":"message","channel":"c","id":7,"data":"hello"}"#
        );
        let (binary, _) = render_json(|out| ws_message("c", 7, Kind::Binary, &[0, 1], out));
        assert_eq!(
            binary,
            r#"{"type":"message","channel":"c","id":7,"data":"AAE=","encoding":"base64"}"#
        );
        let (escaped, _) = render_json(|out| {
            ws_message("a\"b", u64::MAX, Kind::Text, "x\ny\u{2028}".as_bytes(), out)
        });
        assert_eq!(
            escaped,
            r#"{"type":"message","channel":"a\"b","id":18446744073709551615,"data":"x\ny\u2028"}"#
        );
    }

    #[test]
    fn ws_ack_exact() {
        let (s, _) = render_json(|out| ws_ack("c", 7, None, out));
        assert_eq!(s, r#"{"type":"ack","channel":"c","id":7}"#);
        let (s, _) = render_json(|out| ws_ack("c", 7, Some(2), out));
        assert_eq!(s, r#"{"type":"ack","channel":"c","id":7,"req":2}"#);
    }

    #[test]
    fn ws_gap_exact() {
        let (s, _) = render_json(|out| ws_gap("c", 3, 51, out));
        assert_eq!(s, r#"{"type":"gap","channel":"c","since":3,"last_id":51}"#);
    }

    proptest! {
        #[test]
        fn binary_data_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (_, value) = render_json(|out| ws_message("c", 1, Kind::Binary, &data, out));
            prop_assert_eq!(BASE64.decode(value.get("data").unwrap().str()).unwrap(), data);
        }
    }
}
