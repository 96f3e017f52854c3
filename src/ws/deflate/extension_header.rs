//! The grammar of a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1, with the token,
//! quoted-string and list rules of RFC 7230): a list of extensions, each a token and its
//! parameters. It knows nothing of permessage-deflate; a value it cannot parse is
//! [`NegotiationError::Malformed`].

use super::NegotiationError;
use std::borrow::Cow;

/// One element of an extension list (RFC 6455 §9.1): its token and parameters.
#[derive(Debug)]
pub(super) struct Extension<'a> {
    pub(super) name: &'a [u8],
    pub(super) params: Vec<Param<'a>>,
}

/// `extension-param = token [ "=" (token | quoted-string) ]`, the value unquoted.
#[derive(Debug)]
pub(super) struct Param<'a> {
    pub(super) name: &'a [u8],
    pub(super) value: Option<Cow<'a, [u8]>>,
}

/// Parses one header value (RFC 6455 §9.1):
///
/// ```text
/// extension-list = 1#extension
/// extension = extension-token *( ";" extension-param )
/// extension-param = token [ "=" (token | quoted-string) ]
/// ```
///
/// with optional whitespace around separators and empty list elements allowed (RFC 7230
/// §7). A quoted value must be a token once unescaped.
pub(super) fn parse_extension_list(value: &[u8]) -> Result<Vec<Extension<'_>>, NegotiationError> {
    let mut cursor = Cursor { rest: value };
    let mut extensions = Vec::new();
    loop {
        cursor.skip_whitespace();
        if cursor.rest.is_empty() {
            return Ok(extensions);
        }
        if cursor.eat(b',') {
            continue;
        }
        extensions.push(cursor.extension().ok_or(NegotiationError::Malformed)?);
        cursor.skip_whitespace();
        if !cursor.rest.is_empty() && !cursor.eat(b',') {
            return Err(NegotiationError::Malformed);
        }
    }
}

/// A position in a header value.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// `extension-token *( ";" extension-param )`.
    fn extension(&mut self) -> Option<Extension<'a>> {
        let name = self.token()?;
        let mut params = Vec::new();
        loop {
            self.skip_whitespace();
            if !self.eat(b';') {
                return Some(Extension { name, params });
            }
            self.skip_whitespace();
            let name = self.token()?;
            self.skip_whitespace();
            let value = if self.eat(b'=') {
                self.skip_whitespace();
                Some(self.param_value()?)
            } else {
                None
            };
            params.push(Param { name, value });
        }
    }

    /// `token | quoted-string`, where the quoted string must hold a token.
    fn param_value(&mut self) -> Option<Cow<'a, [u8]>> {
        if self.rest.first() != Some(&b'"') {
            return self.token().map(Cow::Borrowed);
        }
        let value = self.quoted_string()?;
        (!value.is_empty() && value.iter().all(|&b| is_tchar(b))).then_some(value)
    }

    /// RFC 7230 §3.2.6: `DQUOTE *( qdtext / quoted-pair ) DQUOTE`, unescaped.
    fn quoted_string(&mut self) -> Option<Cow<'a, [u8]>> {
        let body = &self.rest[1..];
        let mut unescaped: Option<Vec<u8>> = None;
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'"' => {
                    self.rest = &body[i + 1..];
                    return Some(unescaped.map_or(Cow::Borrowed(&body[..i]), Cow::Owned));
                }
                b'\\' => {
                    let escaped = *body.get(i + 1)?;
                    if !is_quoted_pair_char(escaped) {
                        return None;
                    }
                    unescaped
                        .get_or_insert_with(|| body[..i].to_vec())
                        .push(escaped);
                    i += 2;
                }
                b if is_qdtext(b) => {
                    if let Some(unescaped) = &mut unescaped {
                        unescaped.push(b);
                    }
                    i += 1;
                }
                _ => return None,
            }
        }
        None
    }

    /// `token = 1*tchar`.
    fn token(&mut self) -> Option<&'a [u8]> {
        let len = self.rest.iter().take_while(|&&b| is_tchar(b)).count();
        if len == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(token)
    }

    /// Consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((&b, rest)) if b == byte => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// `OWS = *( SP / HTAB )`.
    fn skip_whitespace(&mut self) {
        let len = self.rest.iter().take_while(|&&b| is_whitespace(b)).count();
        self.rest = &self.rest[len..];
    }
}

/// RFC 7230 §3.2.3: `OWS` is made of spaces and horizontal tabs.
fn is_whitespace(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 7230 §3.2.6: `tchar`, the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 7230 §3.2.6: `qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text`.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// RFC 7230 §3.2.6: what may follow a backslash: `HTAB / SP / VCHAR / obs-text`.
fn is_quoted_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}
