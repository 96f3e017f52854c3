//! What the format tests share: a strict JSON parser (RFC 8259, without fractions or
//! exponents) to check that every JSON format is well-formed, helpers that render a
//! formatter's output, a splitter for one Server-Sent Event, and text strategies rich in
//! the characters the formats treat specially.

use crate::push::channels::Stored;
use crate::server::message::Kind;
use proptest::prelude::*;
use std::sync::Arc;

/// A parsed JSON value: just what the formats produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The value of `key` in an object.
    pub(super) fn get(&self, key: &str) -> Option<&Json> {
        let Json::Obj(fields) = self else { return None };
        fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(super) fn str(&self) -> &str {
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

pub(super) fn parse_json(s: &[u8]) -> Result<Json, String> {
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
pub(super) fn render(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    String::from_utf8(out).expect("formats are UTF-8")
}

/// Runs a JSON formatter, checks that the output is well-formed, returns both.
pub(super) fn render_json(f: impl FnOnce(&mut Vec<u8>)) -> (String, Json) {
    let s = render(f);
    let value = parse_json(s.as_bytes()).unwrap_or_else(|e| panic!("{e}: {s}"));
    (s, value)
}

/// A message as history keeps it.
pub(super) fn stored(id: u64, kind: Kind, data: &[u8]) -> Arc<Stored> {
    Arc::new(Stored {
        id,
        kind,
        data: data.into(),
    })
}

/// The fields of one Server-Sent Event, checking that it is exactly one event.
pub(super) fn sse_fields(event: &str) -> Vec<(&str, &str)> {
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

/// Strings rich in the characters the formats treat specially.
pub(super) fn arb_text() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        (0u8..0x20).prop_map(char::from),
        proptest::sample::select(vec!['"', '\\', '\u{2028}', '\u{2029}', '😀', '\u{7f}']),
    ];
    proptest::collection::vec(prop_oneof![any::<char>(), special], 0..64)
        .prop_map(|chars| chars.into_iter().collect())
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
