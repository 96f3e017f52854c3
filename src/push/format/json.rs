//! JSON building blocks: string literals (RFC 8259 §7), decimal numbers, and a message's
//! `data` field (a JSON string for text, base64 for binary).

use crate::server::message::Kind;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// Lowercase hex digits for `\u00XX` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

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
pub(super) fn push_u64(mut n: u64, out: &mut Vec<u8>) {
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
pub(super) fn push_base64(data: &[u8], out: &mut Vec<u8>) {
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
pub(super) fn push_data_field(kind: Kind, data: &[u8], out: &mut Vec<u8>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::format::testkit::{arb_text, parse_json, render_json, Json};
    use proptest::prelude::*;

    fn quoted(s: &str) -> String {
        render_json(|out| json_string(s, out)).0
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

    proptest! {
        #[test]
        fn json_string_round_trips(s in arb_text()) {
            let mut out = Vec::new();
            json_string(&s, &mut out);
            prop_assert_eq!(parse_json(&out), Ok(Json::Str(s)));
            prop_assert!(!out.windows(3).any(|w| w == b"\xe2\x80\xa8" || w == b"\xe2\x80\xa9"));
        }
    }
}
