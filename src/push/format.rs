//! The text formats of pushed messages: JSON string literals (RFC 8259), the WebSocket
//! envelope, Server-Sent Events (WHATWG HTML §9.2), and the long-poll, publish and
//! presence bodies.
//!
//! Sans-IO: every function appends to a `Vec<u8>`. A message is given as
//! `(channel, id, kind, data)`, or as the [`Stored`] messages of a channel's history;
//! text data is UTF-8 (invalid bytes become U+FFFD rather than a panic) and binary data
//! is carried as standard base64.

/// The subprotocol a WebSocket client offers to receive channel messages as JSON
/// envelopes (`{"type":"message","channel":..,"id":..,"data":..}`), gap notices and acks,
/// instead of raw payloads.
pub const ENVELOPE_PROTOCOL: &str = "pushloop.v1";

use crate::push::channels::{Stored, Transport};
use crate::server::message::Kind;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::sync::Arc;

/// Lowercase hex digits for `\u00XX` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

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
}

/// Appends `s` as a JSON string literal (RFC 8259 §7).
///
/// Escapes `"`, `\` and U+0000–U+001F (as `\n` `\r` `\t` `\b` `\f` or `\u00XX`), and
/// also U+2028 and U+2029 so the literal is safe inside a `<script>`; everything else is
/// copied as UTF-8.
pub fn json_string(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (i, c) in s.char_indices() {
        if needs_escape(c) {
            out.extend_from_slice(&bytes[run..i]);
            push_escape(c, out);
            run = i + c.len_utf8();
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Whether `json_string` escapes `c`.
fn needs_escape(c: char) -> bool {
    matches!(c, '"' | '\\' | '\0'..='\x1f' | '\u{2028}' | '\u{2029}')
}

/// Appends the escape sequence for a character `needs_escape` accepts.
fn push_escape(c: char, out: &mut Vec<u8>) {
    let short: &[u8] = match c {
        '"' => b"\\\"",
        '\\' => b"\\\\",
        '\n' => b"\\n",
        '\r' => b"\\r",
        '\t' => b"\\t",
        '\x08' => b"\\b",
        '\x0c' => b"\\f",
        _ => {
            let code = u32::from(c);
            out.extend_from_slice(b"\\u");
            for shift in [12, 8, 4, 0] {
                out.push(HEX[((code >> shift) & 0xf) as usize]);
            }
            return;
        }
    };
    out.extend_from_slice(short);
}

/// Appends the decimal digits of `n`.
fn push_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `data` as standard, padded base64.
fn push_base64(data: &[u8], out: &mut Vec<u8>) {
    // A slice holds at most isize::MAX bytes, whose base64 length always fits a usize.
    let len = base64::encoded_len(data.len(), true).expect("base64 length fits usize");
    let start = out.len();
    out.resize(start + len, 0);
    let written = BASE64
        .encode_slice(data, &mut out[start..])
        .expect("buffer sized by encoded_len");
    out.truncate(start + written);
}

/// Appends `"data":…` for a message, then `,"encoding":"base64"` if it is binary.
fn push_data_field(kind: Kind, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"data\":");
    match kind {
        Kind::Text => json_string(&String::from_utf8_lossy(data), out),
        Kind::Binary => {
            out.push(b'"');
            push_base64(data, out);
            out.extend_from_slice(b"\",\"encoding\":\"base64\"");
        }
    }
}

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

/// Appends the WebSocket acknowledgement of a client's own chat message:
/// `{"type":"ack","channel":"c","id":7}`.
pub fn ws_ack(channel: &str, id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":\"ack\",\"channel\":");
    json_string(channel, out);
    out.extend_from_slice(b",\"id\":");
    push_u64(id, out);
    out.push(b'}');
}

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
/// `{"type":"presence","event":"join","channel":"c","transport":"websocket","subscribers":3}`.
pub fn presence_event(
    change: PresenceChange,
    channel: &str,
    transport: Transport,
    subscribers_total: usize,
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
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A parsed JSON value: just what the formats above produce.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Json {
        Null,
        Bool(bool),
        Int(i128),
        Str(String),
        Arr(Vec<Json>),
        Obj(Vec<(String, Json)>),
    }

    impl Json {
        /// The value of `key` in an object.
        fn get(&self, key: &str) -> Option<&Json> {
            let Json::Obj(fields) = self else { return None };
            fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
        }

        fn str(&self) -> &str {
            match self {
                Json::Str(s) => s,
                other => panic!("not a string: {other:?}"),
            }
        }
    }

    /// A strict recursive-descent JSON parser (RFC 8259) without fractions or exponents.
    struct Parser<'a> {
        s: &'a [u8],
        pos: usize,
    }

    fn parse_json(s: &[u8]) -> Result<Json, String> {
        let mut p = Parser { s, pos: 0 };
        let value = p.value()?;
        p.ws();
        if p.pos != s.len() {
            return Err(format!("trailing bytes at {}", p.pos));
        }
        Ok(value)
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.pos += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.pos).copied()
        }

        fn next(&mut self) -> Result<u8, String> {
            let b = self.peek().ok_or("unexpected end")?;
            self.pos += 1;
            Ok(b)
        }

        fn expect(&mut self, lit: &[u8]) -> Result<(), String> {
            if !self.s[self.pos..].starts_with(lit) {
                return Err(format!("expected {:?} at {}", lit, self.pos));
            }
            self.pos += lit.len();
            Ok(())
        }

        fn value(&mut self) -> Result<Json, String> {
            self.ws();
            match self.peek().ok_or("unexpected end")? {
                b'{' => self.object(),
                b'[' => self.array(),
                b'"' => self.string().map(Json::Str),
                b't' => self.expect(b"true").map(|()| Json::Bool(true)),
                b'f' => self.expect(b"false").map(|()| Json::Bool(false)),
                b'n' => self.expect(b"null").map(|()| Json::Null),
                b'-' | b'0'..=b'9' => self.integer(),
                b => Err(format!("unexpected {:?} at {}", b as char, self.pos)),
            }
        }

        fn object(&mut self) -> Result<Json, String> {
            self.expect(b"{")?;
            let mut fields = Vec::new();
            self.ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Json::Obj(fields));
            }
            loop {
                self.ws();
                let key = self.string()?;
                self.ws();
                self.expect(b":")?;
                fields.push((key, self.value()?));
                self.ws();
                match self.next()? {
                    b',' => {}
                    b'}' => return Ok(Json::Obj(fields)),
                    b => return Err(format!("unexpected {:?} in object", b as char)),
                }
            }
        }

        fn array(&mut self) -> Result<Json, String> {
            self.expect(b"[")?;
            let mut items = Vec::new();
            self.ws();
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Json::Arr(items));
            }
            loop {
                items.push(self.value()?);
                self.ws();
                match self.next()? {
                    b',' => {}
                    b']' => return Ok(Json::Arr(items)),
                    b => return Err(format!("unexpected {:?} in array", b as char)),
                }
            }
        }

        fn integer(&mut self) -> Result<Json, String> {
            let start = self.pos;
            if self.peek() == Some(b'-') {
                self.pos += 1;
            }
            let digits = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            let n = &self.s[digits..self.pos];
            if n.is_empty() || (n.len() > 1 && n[0] == b'0') {
                return Err(format!("bad number at {start}"));
            }
            let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap();
            text.parse().map(Json::Int).map_err(|e| e.to_string())
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let mut code = 0;
            for _ in 0..4 {
                let digit = (self.next()? as char).to_digit(16).ok_or("bad \\u digit")?;
                code = code * 16 + digit;
            }
            Ok(code)
        }

        fn string(&mut self) -> Result<String, String> {
            self.expect(b"\"")?;
            let mut bytes = Vec::new();
            loop {
                match self.next()? {
                    b'"' => return String::from_utf8(bytes).map_err(|e| e.to_string()),
                    b'\\' => {
                        let c = match self.next()? {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\x08',
                            b'f' => '\x0c',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => self.unicode_escape()?,
                            b => return Err(format!("bad escape {:?}", b as char)),
                        };
                        bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    b if b < 0x20 => return Err(format!("raw control byte {b:#04x}")),
                    b => bytes.push(b),
                }
            }
        }

        /// The character of a `\uXXXX` escape (the `\u` consumed), joining surrogate pairs.
        fn unicode_escape(&mut self) -> Result<char, String> {
            let high = self.hex4()?;
            let code = match high {
                0xd800..=0xdbff => {
                    self.expect(b"\\u")?;
                    let low = self.hex4()?;
                    if !(0xdc00..=0xdfff).contains(&low) {
                        return Err("unpaired high surrogate".into());
                    }
                    0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
                }
                0xdc00..=0xdfff => return Err("unpaired low surrogate".into()),
                _ => high,
            };
            char::from_u32(code).ok_or_else(|| "bad code point".into())
        }
    }

    /// Runs a formatter on a fresh buffer and returns its output as a string.
    fn render(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("formats are UTF-8")
    }

    /// Runs a JSON formatter, checks that the output is well-formed, returns both.
    fn render_json(f: impl FnOnce(&mut Vec<u8>)) -> (String, Json) {
        let s = render(f);
        let value = parse_json(s.as_bytes()).unwrap_or_else(|e| panic!("{e}: {s}"));
        (s, value)
    }

    /// A message as history keeps it.
    fn stored(id: u64, kind: Kind, data: &[u8]) -> Arc<Stored> {
        Arc::new(Stored {
            id,
            kind,
            data: data.into(),
        })
    }

    fn quoted(s: &str) -> String {
        render_json(|out| json_string(s, out)).0
    }

    /// The fields of one Server-Sent Event, checking that it is exactly one event.
    fn sse_fields(event: &str) -> Vec<(&str, &str)> {
        let body = event.strip_suffix("\n\n").expect("ends with a blank line");
        assert!(!body.contains('\r'), "{event:?}");
        body.split('\n')
            .map(|line| {
                assert!(!line.is_empty(), "a blank line inside {event:?}");
                let (name, value) = line.split_once(':').expect("a field");
                (name, value.strip_prefix(' ').unwrap_or(value))
            })
            .collect()
    }

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
    fn validator_rejects_malformed_json() {
        for bad in [
            "",
            "\"a",
            "\"a\nb\"",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\u12\"",
            "{\"a\":1,}",
            "[1,]",
            "{\"a\" 1}",
            "{a:1}",
            "01",
            "-",
            "tru",
            "[1] 2",
            "\"\u{ff}\"x",
        ] {
            assert!(parse_json(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_json(b"\"\xff\"").is_err());
        assert_eq!(
            parse_json(br#" {"a": [1, -2, true, false, null, "\ud83d\ude00\/"]} "#),
            Ok(Json::Obj(vec![(
                "a".into(),
                Json::Arr(vec![
                    Json::Int(1),
                    Json::Int(-2),
                    Json::Bool(true),
                    Json::Bool(false),
                    Json::Null,
                    Json::Str("😀/".into()),
                ])
            )]))
        );
    }

    #[test]
    fn json_escapes_every_control_char() {
        for b in 0u8..0x20 {
            let want = match b {
                b'\n' => "\"\\n\"".to_string(),
                b'\r' => "\"\\r\"".to_string(),
                b'\t' => "\"\\t\"".to_string(),
                0x08 => "\"\\b\"".to_string(),
                0x0c => "\"\\f\"".to_string(),
                _ => format!("\"\\u{b:04x}\""),
            };
            let s = char::from(b).to_string();
            assert_eq!(quoted(&s), want, "{b:#04x}");
        }
        assert_eq!(quoted("\0"), r#""\u0000""#);
        assert_eq!(quoted("\x1f"), r#""\u001f""#);
        assert_eq!(quoted("a\x01b\nc"), r#""a\u0001b\nc""#);
    }

    #[test]
    fn json_escapes_quotes_backslash_and_line_separators() {
        assert_eq!(quoted(""), r#""""#);
        assert_eq!(quoted(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quoted(r"C:\dir\"), r#""C:\\dir\\""#);
        assert_eq!(quoted("a\u{2028}b\u{2029}c"), r#""a\u2028b\u2029c""#);
        assert_eq!(quoted("</script>"), r#""</script>""#);
        assert_eq!(quoted("\x7f"), "\"\x7f\"");
    }

    #[test]
    fn json_copies_other_unicode_as_utf8() {
        assert_eq!(
            quoted("😀 é ✓ \u{2027}\u{202a}"),
            "\"😀 é ✓ \u{2027}\u{202a}\""
        );
        assert_eq!(quoted("a😀\"😀"), "\"a😀\\\"😀\"");
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
    fn invalid_utf8_text_is_replaced_not_panicked() {
        let (_, value) = render_json(|out| ws_message("c", 1, Kind::Text, b"a\xffb", out));
        assert_eq!(value.get("data").unwrap().str(), "a\u{fffd}b");
        let event = render(|out| sse_event(1, Kind::Text, b"a\xff\nb", out));
        assert_eq!(event, "id: 1\ndata: a\u{fffd}\ndata: b\n\n");
    }

    #[test]
    fn ws_ack_exact() {
        let (s, _) = render_json(|out| ws_ack("c", 7, out));
        assert_eq!(s, r#"{"type":"ack","channel":"c","id":7}"#);
    }

    #[test]
    fn ws_gap_exact() {
        let (s, _) = render_json(|out| ws_gap("c", 3, 51, out));
        assert_eq!(s, r#"{"type":"gap","channel":"c","since":3,"last_id":51}"#);
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
        };
        let d = Presence {
            channel: "d\\",
            websocket: 0,
            sse: 0,
            long_poll: 10,
            last_id: 0,
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
            presence_event(PresenceChange::Join, "c", Transport::WebSocket, 3, out)
        });
        assert_eq!(
            s,
            r#"{"type":"presence","event":"join","channel":"c","transport":"websocket","subscribers":3}"#
        );
        let (s, _) = render_json(|out| {
            presence_event(PresenceChange::Leave, "c", Transport::LongPoll, 0, out)
        });
        assert_eq!(
            s,
            r#"{"type":"presence","event":"leave","channel":"c","transport":"long_poll","subscribers":0}"#
        );
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

    /// Strings rich in the characters the formats treat specially.
    fn arb_text() -> impl Strategy<Value = String> {
        let special = prop_oneof![
            (0u8..0x20).prop_map(char::from),
            proptest::sample::select(vec!['"', '\\', '\u{2028}', '\u{2029}', '😀', '\u{7f}']),
        ];
        proptest::collection::vec(prop_oneof![any::<char>(), special], 0..64)
            .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn json_string_round_trips(s in arb_text()) {
            let mut out = Vec::new();
            json_string(&s, &mut out);
            prop_assert_eq!(parse_json(&out), Ok(Json::Str(s)));
            prop_assert!(!out.windows(3).any(|w| w == b"\xe2\x80\xa8" || w == b"\xe2\x80\xa9"));
        }

        #[test]
        fn sse_text_data_round_trips(s in arb_text(), id in any::<u64>()) {
            let event = render(|out| sse_event(id, Kind::Text, s.as_bytes(), out));
            let id_line = format!("id: {id}\n");
            prop_assert!(event.starts_with(&id_line));
            let want = s.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(sse_text_data(&event), want);
        }

        #[test]
        fn binary_data_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (_, value) = render_json(|out| ws_message("c", 1, Kind::Binary, &data, out));
            prop_assert_eq!(BASE64.decode(value.get("data").unwrap().str()).unwrap(), data);
        }
    }
}
