//! Server-Sent Events (WHATWG HTML §9.2): message events, gap notices, heartbeats and
//! the reconnection delay; and the events of a stream of several channels, whose data is
//! a `pushloop.v1` envelope and whose id is a [stream id](sse_stream_id).

use super::json::{push_base64, push_u64};
use crate::server::message::Kind;

/// Appends one Server-Sent Event for a message (WHATWG HTML §9.2.6).
///
/// Text: `id: 7\n`, then a `data: ` line for each line of the text (split on `\r\n`,
/// `\n` and `\r` alike, so an empty text gives one empty `data: ` line and a trailing
/// terminator a final empty one), then a blank line. Binary:
/// `id: 7\nevent: binary\ndata: <base64>\n\n`.
pub fn sse_event(id: u64, kind: Kind, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"id: ");
    push_u64(id, out);
    out.push(b'\n');
    match kind {
        Kind::Text => sse_data_lines(String::from_utf8_lossy(data).as_bytes(), out),
        Kind::Binary => {
            out.extend_from_slice(b"event: binary\ndata: ");
            push_base64(data, out);
            out.push(b'\n');
        }
    }
    out.push(b'\n');
}

/// Appends a `data: ` line for each line of `text`, splitting on `\r\n`, `\n` and `\r`.
fn sse_data_lines(text: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let terminator = match (text[i], text.get(i + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r' | b'\n', _) => 1,
            _ => 0,
        };
        if terminator == 0 {
            i += 1;
            continue;
        }
        sse_data_line(&text[start..i], out);
        i += terminator;
        start = i;
    }
    sse_data_line(&text[start..], out);
}

/// Appends `data: <line>\n`.
fn sse_data_line(line: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// Appends the Server-Sent Event that history no longer holds every message after `since`:
/// `event: gap\ndata: {"since":3,"last_id":51}\n\n` (no id, so the client's last event id
/// stays put).
pub fn sse_gap(since: u64, last_id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: gap\ndata: {\"since\":");
    push_u64(since, out);
    out.extend_from_slice(b",\"last_id\":");
    push_u64(last_id, out);
    out.extend_from_slice(b"}\n\n");
}

/// Appends an SSE comment that keeps the stream alive: `: heartbeat\n\n`.
pub fn sse_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(SSE_HEARTBEAT);
}

/// The SSE heartbeat: a comment block that keeps proxies from closing an idle stream.
pub const SSE_HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Appends the SSE reconnection delay in milliseconds: `retry: 2000\n\n`.
pub fn sse_retry(ms: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"retry: ");
    push_u64(ms, out);
    out.extend_from_slice(b"\n\n");
}

/// The separator between a channel and its last id in a stream id (not in the channel
/// name alphabet `[A-Za-z0-9_.:-]`).
pub const STREAM_ID_PAIR: u8 = b'=';

/// The separator between the channels of a stream id.
pub const STREAM_ID_LIST: u8 = b',';

/// Appends the id of an event of a stream of several channels: each channel the stream
/// knows a position in, with the id of the last message it was sent of it (or the
/// channel's last id when it joined), in the stream's order: `a=5,b=7,c=0`.
///
/// Names are `[A-Za-z0-9_.:-]`, ids decimal, so `=` and `,` cannot be confused with
/// either; [`parse_stream_id`] reads it back.
pub fn sse_stream_id<'a>(positions: impl IntoIterator<Item = (&'a str, u64)>, out: &mut Vec<u8>) {
    for (i, (channel, id)) in positions.into_iter().enumerate() {
        if i > 0 {
            out.push(STREAM_ID_LIST);
        }
        out.extend_from_slice(channel.as_bytes());
        out.push(STREAM_ID_PAIR);
        push_u64(id, out);
    }
}

/// Reads a stream id ([`sse_stream_id`]): the `(channel, last id)` pairs in order, or
/// `None` if it is malformed (an empty part, a part without `=`, an invalid channel
/// name, an id that is not a decimal `u64`, a channel named twice). An empty id is an
/// empty list.
pub fn parse_stream_id(id: &str) -> Option<Vec<(&str, u64)>> {
    let mut pairs: Vec<(&str, u64)> = Vec::new();
    if id.is_empty() {
        return Some(pairs);
    }
    for part in id.split(char::from(STREAM_ID_LIST)) {
        let (channel, last) = part.rsplit_once(char::from(STREAM_ID_PAIR))?;
        let digits = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit());
        if !digits || !crate::push::channels::valid_name(channel) {
            return None;
        }
        if pairs.iter().any(|&(seen, _)| seen == channel) {
            return None;
        }
        pairs.push((channel, last.parse().ok()?));
    }
    Some(pairs)
}

/// Appends an event of a stream of several channels: `id: <stream id>` (when given),
/// an `event:` line unless it is a plain `message`, and `data: <json>` (a `pushloop.v1`
/// envelope, one line: JSON strings escape line breaks).
pub fn sse_json_event(event: &str, stream_id: Option<&[u8]>, json: &[u8], out: &mut Vec<u8>) {
    if let Some(id) = stream_id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id);
        out.push(b'\n');
    }
    if event != "message" {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    sse_data_line(json, out);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::format::testkit::{arb_text, parse_json, render, sse_fields};
    use proptest::prelude::*;

    /// What a browser's EventSource dispatches as `data` for a text event.
    fn sse_text_data(event: &str) -> String {
        let fields = sse_fields(event);
        let data: Vec<&str> = fields
            .iter()
            .filter(|(name, _)| *name == "data")
            .map(|(_, value)| *value)
            .collect();
        assert_eq!(fields.len(), data.len() + 1, "{event:?}");
        data.join("\n")
    }

    #[test]
    fn sse_text_lines_split_on_every_terminator() {
        for (text, lines) in [
            ("hello", "data: hello\n"),
            ("a\nb", "data: a\ndata: b\n"),
            ("a\r\nb", "data: a\ndata: b\n"),
            ("a\rb", "data: a\ndata: b\n"),
            ("", "data: \n"),
            ("a\n", "data: a\ndata: \n"),
            ("\n\n", "data: \ndata: \ndata: \n"),
            ("a\r", "data: a\ndata: \n"),
            ("\r\r\n", "data: \ndata: \ndata: \n"),
            ("\n\r", "data: \ndata: \ndata: \n"),
            (" x: y", "data:  x: y\n"),
        ] {
            let event = render(|out| sse_event(7, Kind::Text, text.as_bytes(), out));
            assert_eq!(event, format!("id: 7\n{lines}\n"), "{text:?}");
        }
    }

    #[test]
    fn sse_binary_event() {
        let event = render(|out| sse_event(7, Kind::Binary, &[0, 1], out));
        assert_eq!(event, "id: 7\nevent: binary\ndata: AAE=\n\n");
        let event = render(|out| sse_event(0, Kind::Binary, b"", out));
        assert_eq!(event, "id: 0\nevent: binary\ndata: \n\n");
    }

    #[test]
    fn sse_gap_heartbeat_and_retry() {
        let gap = render(|out| sse_gap(3, 51, out));
        assert_eq!(gap, "event: gap\ndata: {\"since\":3,\"last_id\":51}\n\n");
        let data = gap.strip_prefix("event: gap\ndata: ").unwrap();
        parse_json(data.trim_end().as_bytes()).unwrap();
        assert_eq!(render(sse_heartbeat), ": heartbeat\n\n");
        assert_eq!(render(|out| sse_retry(2000, out)), "retry: 2000\n\n");
        assert_eq!(render(|out| sse_retry(0, out)), "retry: 0\n\n");
    }

    #[test]
    fn stream_ids_round_trip_and_refuse_what_is_ambiguous() {
        let id = render(|out| sse_stream_id([("a", 5), ("private:b.c", 7), ("d", 0)], out));
        assert_eq!(id, "a=5,private:b.c=7,d=0");
        assert_eq!(
            parse_stream_id(&id),
            Some(vec![("a", 5), ("private:b.c", 7), ("d", 0)])
        );
        assert_eq!(render(|out| sse_stream_id([], out)), "");
        assert_eq!(parse_stream_id(""), Some(vec![]));
        for bad in [
            "a",
            "a=",
            "=5",
            "a=5,",
            ",a=5",
            "a=5,,b=1",
            "a=x",
            "a=-1",
            "a=5,a=6",
            "a b=1",
            "a=1=2",
            "a=18446744073709551616",
            "a=+1",
        ] {
            assert_eq!(parse_stream_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn json_events_exact() {
        let event = render(|out| sse_json_event("message", Some(b"a=5,b=7"), b"{\"x\":1}", out));
        assert_eq!(event, "id: a=5,b=7\ndata: {\"x\":1}\n\n");
        let gap = render(|out| sse_json_event("gap", None, b"{}", out));
        assert_eq!(gap, "event: gap\ndata: {}\n\n");
    }

    proptest! {
        #[test]
        fn sse_text_data_round_trips(s in arb_text(), id in any::<u64>()) {
            let event = render(|out| sse_event(id, Kind::Text, s.as_bytes(), out));
            let id_line = format!("id: {id}\n");
            prop_assert!(event.starts_with(&id_line));
            let want = s.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(sse_text_data(&event), want);
        }
    }
}
