//! Server-Sent Events (WHATWG HTML §9.2): message events, gap notices, heartbeats and
//! the reconnection delay.

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
