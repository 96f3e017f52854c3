//! The permessage-deflate extension (RFC 7692), without I/O: negotiation of the offer in
//! the opening handshake (§5, §7.1) and the per-message codec (§7.2).
//!
//! A compressed message is raw DEFLATE (RFC 1951) ended by a sync flush with the trailing
//! `00 00 ff ff` removed (§7.2.1); the receiver appends those four octets back before
//! inflating (§7.2.2). Only the first frame of a compressed message has RSV1 set (§6); the
//! frames of one message are inflated one after the other with [`Decompressor::inflate`].
//!
//! Negotiation (§7.1) follows the rule "pick the first acceptable offer, decline
//! unacceptable ones, reject malformed or duplicate parameters": [`negotiate`] answers
//! `Ok(None)` when the connection goes on without the extension and
//! [`NegotiationError`] (HTTP 400) when the header cannot be made sense of.
//!
//! The DEFLATE engine is zlib-rs through flate2. Its `window_bits` must lie in 9..=15 (zlib
//! refuses a raw window of 8, and older versions quietly used 9, which would break a peer
//! that asked for 256 bytes), so a server limited to `server_max_window_bits=8` sends its
//! messages uncompressed; see [`Params::server_compresses`].

use crate::ws::close::CloseCode;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::borrow::Cow;
use std::fmt;

/// The extension token.
pub const EXTENSION: &str = "permessage-deflate";

/// §7.1.2: the largest LZ77 window, 2^15 = 32 KiB, and the one assumed when none is named.
pub const MAX_WINDOW_BITS: u8 = 15;

/// §7.1.2: the smallest window a peer may ask for, 2^8 = 256 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;

/// The smallest window zlib compresses a raw stream with: it refuses 8 ("until 256-byte
/// window bug fixed"), so a window of 8 is served with no LZ77 back-references at all.
pub const MIN_DEFLATE_WINDOW_BITS: u8 = 9;

/// §7.2.1: the octets a sync flush ends with; removed by the sender, appended back by the
/// receiver (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// RFC 1951 §3.2.4: the most bytes one stored (uncompressed) block holds.
const MAX_STORED_BLOCK: usize = 0xffff;

/// The least output room offered to the inflater at a time.
const MIN_INFLATE_ROOM: usize = 1024;

/// Server-side settings (library Config will hold one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Negotiate at all (default true). When false, `Sec-WebSocket-Extensions` is not even
    /// parsed.
    pub enabled: bool,
    /// Largest LZ77 window the server compresses with, 9..=15 (default 15); values outside
    /// are clamped. A compressor costs 371 KiB at 15 and 245 KiB at 9 (see
    /// [`Compressor`]).
    pub server_max_window_bits: u8,
    /// Window the server asks clients to limit themselves to when they offered
    /// `client_max_window_bits`, 8..=15 (default 15); values outside are clamped.
    pub client_max_window_bits: u8,
    /// Keep the server's compression context between messages (default false: the server
    /// always answers `server_no_context_takeover`, so one compressor per loop serves every
    /// connection and a broadcast is compressed once).
    pub server_context_takeover: bool,
    /// Let clients keep theirs (default false: the server answers
    /// `client_no_context_takeover`, which §7.1.1.2 allows even when the client did not
    /// offer it, so one decompressor per loop inflates every connection's messages and an
    /// idle connection holds no inflate state; true costs 18–47 KiB per connection that
    /// sends compressed messages).
    pub client_context_takeover: bool,
    /// Messages shorter than this are sent uncompressed (RSV1 clear) (default 64).
    ///
    /// Measured with zlib-rs on a fresh window (no context takeover), compressed/original:
    /// English prose grows below 64 bytes (1.06 at 32) and breaks even at 64; JSON and HTML
    /// save 3–11% at 32 and 11–23% at 64; all three save 15–31% at 128. Below 64 bytes the
    /// saving is a few bytes at most, not worth the 2–5 µs that compressing a message and
    /// resetting the window cost.
    pub threshold: usize,
    /// zlib level 0..=9 (default 2); 0 sends stored blocks without touching zlib.
    ///
    /// Measured with zlib-rs, level 2 against 6: within 1–8% of the size (prose 16 KiB:
    /// 0.457 against 0.435; JSON 0.056 against 0.048) at 1.5–3.5 times the speed from 16 KiB
    /// up (JSON 870 against 250 MB/s); the same speed below 1 KiB, where the window reset
    /// dominates. Level 1 (zlib-rs "quick", static Huffman only) is faster still but its
    /// prose output is 37% larger (0.63). A single-threaded push server spends its CPU on
    /// the loop, so the knee of the curve is the better default.
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            enabled: true,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            server_context_takeover: false,
            client_context_takeover: false,
            threshold: 64,
            level: 2,
        }
    }
}

/// What was agreed for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// §7.1.1.1: the server starts every message from an empty window; its compressor is
    /// reset after each message (and may be shared between connections).
    pub server_no_context_takeover: bool,
    /// §7.1.1.2: the client starts every message from an empty window.
    pub client_no_context_takeover: bool,
    /// §7.1.2.1: the largest window the server compresses with, 8..=15; 8 means the server
    /// sends every message uncompressed ([`Params::server_compresses`]).
    pub server_max_window_bits: u8,
    /// §7.1.2.2: the largest window the client compresses with, 8..=15 (15 when the offer
    /// did not name `client_max_window_bits`: the client may then use any window).
    pub client_max_window_bits: u8,
    /// The offer carried `server_max_window_bits`, so the response names the agreed value
    /// even at 15 (§7.1.2.1: a server accepts such an offer "by including" the parameter).
    pub server_max_window_bits_offered: bool,
}

impl Params {
    /// The `Sec-WebSocket-Extensions` value of the response, e.g.
    /// `permessage-deflate; server_no_context_takeover; client_max_window_bits=10`.
    ///
    /// Window sizes are named only when they say something: below 15, or (for
    /// `server_max_window_bits`) when the offer asked. `client_max_window_bits` is always
    /// sent with a value (§7.1.2.2), never when the offer lacked it.
    pub fn response_value(&self) -> String {
        let mut value = String::from(EXTENSION);
        if self.server_no_context_takeover {
            push_param(&mut value, Parameter::ServerNoContextTakeover, None);
        }
        if self.client_no_context_takeover {
            push_param(&mut value, Parameter::ClientNoContextTakeover, None);
        }
        let server_bits = self.server_max_window_bits;
        if server_bits < MAX_WINDOW_BITS || self.server_max_window_bits_offered {
            push_param(
                &mut value,
                Parameter::ServerMaxWindowBits,
                Some(server_bits),
            );
        }
        let client_bits = self.client_max_window_bits;
        if client_bits < MAX_WINDOW_BITS {
            push_param(
                &mut value,
                Parameter::ClientMaxWindowBits,
                Some(client_bits),
            );
        }
        value
    }

    /// Whether the server compresses its messages at all: not when the client limited it to
    /// a 256-byte window, which zlib cannot honour. Every message may be sent uncompressed
    /// (RSV1 clear) whatever was negotiated, and the client's messages are still inflated.
    pub fn server_compresses(&self) -> bool {
        self.server_max_window_bits >= MIN_DEFLATE_WINDOW_BITS
    }
}

/// Appends `; name` or `; name=bits` to a response value.
fn push_param(value: &mut String, parameter: Parameter, bits: Option<u8>) {
    value.push_str("; ");
    value.push_str(parameter.name());
    if let Some(bits) = bits {
        value.push('=');
        value.push_str(&bits.to_string());
    }
}

/// An offer the server cannot even parse → the handshake is answered 400.
///
/// RFC 7692 §7.1 would have the server decline such an offer; the issue this implements
/// chose to reject the handshake instead, so that a broken client is told at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiationError {
    /// RFC 6455 §9.1: a `Sec-WebSocket-Extensions` value does not follow the
    /// extension-list grammar (in any extension, not only permessage-deflate: the header
    /// as a whole is malformed).
    Malformed,
    /// RFC 7692 §7.1: "the negotiation offer contains multiple extension parameters with
    /// the same name".
    DuplicateParameter(&'static str),
    /// §7.1.1.1, §7.1.1.2: the `*_no_context_takeover` parameters have no value.
    UnexpectedValue(&'static str),
    /// §7.1.2.1: `server_max_window_bits` needs a value.
    MissingValue(&'static str),
    /// §7.1.2: a window size is a decimal integer without leading zeroes, 8 to 15.
    InvalidValue(&'static str),
}

impl NegotiationError {
    /// The HTTP status answered for this error: 400 Bad Request.
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::Malformed => f.write_str("malformed sec-websocket-extensions"),
            NegotiationError::DuplicateParameter(p) => write!(f, "duplicate parameter {p}"),
            NegotiationError::UnexpectedValue(p) => write!(f, "parameter {p} takes no value"),
            NegotiationError::MissingValue(p) => write!(f, "parameter {p} needs a value"),
            NegotiationError::InvalidValue(p) => write!(f, "invalid value for {p}"),
        }
    }
}

impl std::error::Error for NegotiationError {}

/// Picks the first acceptable permessage-deflate offer among all `Sec-WebSocket-Extensions`
/// header values (in order; a value may hold several comma-separated extensions and other
/// extensions are ignored).
///
/// Ok(None): nothing offered or every offer declined (connect without the extension —
/// never fail the handshake for an unacceptable but well-formed offer). An offer is
/// declined when it names a parameter RFC 7692 does not define for offers; every other
/// well-formed offer is acceptable. Every value is parsed to the end, so a malformed value
/// or offer is an error even after an acceptable offer. When `config.enabled` is false the
/// values are not looked at.
pub fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    config: &DeflateConfig,
) -> Result<Option<Params>, NegotiationError> {
    if !config.enabled {
        return Ok(None);
    }
    let mut chosen = None;
    for value in values {
        for extension in parse_extension_list(value)? {
            if !extension.name.eq_ignore_ascii_case(EXTENSION.as_bytes()) {
                continue;
            }
            let offer = Offer::parse(&extension.params)?;
            if chosen.is_none() {
                chosen = offer.map(|offer| offer.accept(config));
            }
        }
    }
    Ok(chosen)
}

/// The parameters RFC 7692 defines (§7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parameter {
    /// §7.1.1.1.
    ServerNoContextTakeover,
    /// §7.1.1.2.
    ClientNoContextTakeover,
    /// §7.1.2.1.
    ServerMaxWindowBits,
    /// §7.1.2.2.
    ClientMaxWindowBits,
}

impl Parameter {
    const ALL: [Parameter; 4] = [
        Parameter::ServerNoContextTakeover,
        Parameter::ClientNoContextTakeover,
        Parameter::ServerMaxWindowBits,
        Parameter::ClientMaxWindowBits,
    ];

    /// The parameter's name on the wire.
    fn name(self) -> &'static str {
        match self {
            Parameter::ServerNoContextTakeover => "server_no_context_takeover",
            Parameter::ClientNoContextTakeover => "client_no_context_takeover",
            Parameter::ServerMaxWindowBits => "server_max_window_bits",
            Parameter::ClientMaxWindowBits => "client_max_window_bits",
        }
    }

    /// The parameter called `name` (case-insensitive), if RFC 7692 defines it.
    fn named(name: &[u8]) -> Option<Parameter> {
        Parameter::ALL
            .into_iter()
            .find(|p| name.eq_ignore_ascii_case(p.name().as_bytes()))
    }
}

/// One permessage-deflate offer, its parameters checked (§7.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(15)` for the parameter without a value: the client merely supports it.
    client_max_window_bits: Option<u8>,
}

impl Offer {
    /// Checks the parameters of one offer. `Ok(None)`: a parameter this server does not
    /// know, so the offer is declined.
    fn parse(params: &[Param<'_>]) -> Result<Option<Offer>, NegotiationError> {
        let mut offer = Offer::default();
        let mut seen = [false; Parameter::ALL.len()];
        let mut unknown = false;
        for param in params {
            let Some(parameter) = Parameter::named(param.name) else {
                unknown = true;
                continue;
            };
            let name = parameter.name();
            if std::mem::replace(&mut seen[parameter as usize], true) {
                return Err(NegotiationError::DuplicateParameter(name));
            }
            let value = param.value.as_deref();
            match parameter {
                Parameter::ServerNoContextTakeover => {
                    no_value(value, name)?;
                    offer.server_no_context_takeover = true;
                }
                Parameter::ClientNoContextTakeover => {
                    no_value(value, name)?;
                    offer.client_no_context_takeover = true;
                }
                Parameter::ServerMaxWindowBits => {
                    let value = value.ok_or(NegotiationError::MissingValue(name))?;
                    offer.server_max_window_bits = Some(window_bits(value, name)?);
                }
                Parameter::ClientMaxWindowBits => {
                    let bits = value.map_or(Ok(MAX_WINDOW_BITS), |v| window_bits(v, name))?;
                    offer.client_max_window_bits = Some(bits);
                }
            }
        }
        Ok((!unknown).then_some(offer))
    }

    /// The response to this offer under `config` (§7.1.1, §7.1.2).
    fn accept(self, config: &DeflateConfig) -> Params {
        let server_limit = config
            .server_max_window_bits
            .clamp(MIN_DEFLATE_WINDOW_BITS, MAX_WINDOW_BITS);
        let client_limit = config
            .client_max_window_bits
            .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        Params {
            // §7.1.1.1: the server may add it unasked; it must honour it when asked.
            server_no_context_takeover: self.server_no_context_takeover
                || !config.server_context_takeover,
            // §7.1.1.2: echoing the client's hint is allowed.
            client_no_context_takeover: self.client_no_context_takeover
                || !config.client_context_takeover,
            // §7.1.2.1: "the same or smaller value as the offer", or any value unasked.
            server_max_window_bits: self
                .server_max_window_bits
                .unwrap_or(MAX_WINDOW_BITS)
                .min(server_limit),
            // §7.1.2.2: only when offered, then no more than the client's own hint.
            client_max_window_bits: self
                .client_max_window_bits
                .map_or(MAX_WINDOW_BITS, |offered| offered.min(client_limit)),
            server_max_window_bits_offered: self.server_max_window_bits.is_some(),
        }
    }
}

/// §7.1.1: the context takeover parameters have no value.
fn no_value(value: Option<&[u8]>, name: &'static str) -> Result<(), NegotiationError> {
    match value {
        None => Ok(()),
        Some(_) => Err(NegotiationError::UnexpectedValue(name)),
    }
}

/// §7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15, inclusive".
fn window_bits(value: &[u8], name: &'static str) -> Result<u8, NegotiationError> {
    match value {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err(NegotiationError::InvalidValue(name)),
    }
}

/// One element of an extension list (RFC 6455 §9.1): its token and parameters.
#[derive(Debug)]
struct Extension<'a> {
    name: &'a [u8],
    params: Vec<Param<'a>>,
}

/// `extension-param = token [ "=" (token | quoted-string) ]`, the value unquoted.
#[derive(Debug)]
struct Param<'a> {
    name: &'a [u8],
    value: Option<Cow<'a, [u8]>>,
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
fn parse_extension_list(value: &[u8]) -> Result<Vec<Extension<'_>>, NegotiationError> {
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

/// Compresses whole messages (RFC 7692 §7.2.1): raw deflate, sync flush, the trailing
/// 00 00 ff ff removed.
///
/// Memory (zlib-rs, memLevel 8, which flate2 does not let us lower): one allocation of
/// 4·2^window bytes (window and chain) + 128 KiB of hash heads + 112 KiB of
/// literal/pending buffers + 3 KiB of state: 371 KiB at window 15, 259 KiB at 12,
/// 245 KiB at 9. Measured resident over 1,000 compressors: 312 KiB each at window 15,
/// 200 KiB at 12, 188 KiB at 9 — window, chain and heads are zeroed at creation, so they
/// are resident at once. A window of 8 or level 0 allocates nothing (stored blocks are
/// written by hand). Hence the default `server_no_context_takeover`: one compressor per
/// window size serves every connection.
pub struct Compressor {
    engine: Engine,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

/// How a [`Compressor`] produces DEFLATE data.
enum Engine {
    /// zlib-rs with the window and level given; `dirty` once it holds history.
    Zlib { deflate: Compress, dirty: bool },
    /// RFC 1951 stored blocks only: no back-references, valid for any window.
    Stored,
}

impl Compressor {
    /// A compressor with an LZ77 window of 2^`window_bits` bytes at zlib `level`.
    ///
    /// `window_bits` 9..=15 (larger is clamped to 15); 8 or less, like level 0, yields
    /// stored blocks, which reference nothing and so fit any window. `level` above 9 is
    /// clamped to 9.
    pub fn new(window_bits: u8, level: u32) -> Self {
        let engine = if window_bits < MIN_DEFLATE_WINDOW_BITS || level == 0 {
            Engine::Stored
        } else {
            let level = Compression::new(level.min(9));
            let bits = window_bits.min(MAX_WINDOW_BITS);
            Engine::Zlib {
                deflate: Compress::new_with_window_bits(level, false, bits),
                dirty: false,
            }
        };
        Compressor { engine }
    }

    /// Appends the compressed form of `payload` to `out`. `reset_after`: no context
    /// takeover → the next message starts from an empty window.
    ///
    /// An empty payload is the single octet `00` (§7.2.3.6). With context takeover the
    /// peer's window must see exactly what this compressor saw: every compressed message
    /// must then be sent, compressed. Only with `reset_after` may the caller drop the
    /// output and send the message uncompressed instead (e.g. when it did not shrink), and
    /// only then may one compressor serve several connections (same or larger agreed
    /// window).
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>, reset_after: bool) {
        match &mut self.engine {
            Engine::Zlib { deflate, dirty } if !payload.is_empty() => {
                *dirty = true;
                let start = out.len();
                if deflate_sync(deflate, payload, out) {
                    out.truncate(out.len() - TAIL.len());
                } else {
                    // Not expected from zlib; still send a valid message and start over.
                    out.truncate(start);
                    deflate.reset();
                    stored_blocks(payload, out);
                }
            }
            // Stored blocks, or an empty message: no history is added either way.
            _ => stored_blocks(payload, out),
        }
        if reset_after {
            self.forget_window();
        }
    }

    /// Starts the next message from an empty window (no context takeover, §7.1.1.1).
    fn forget_window(&mut self) {
        if let Engine::Zlib { deflate, dirty } = &mut self.engine {
            // Resetting zeroes 128 KiB of hash heads: skip it when nothing was added.
            if std::mem::take(dirty) {
                deflate.reset();
            }
        }
    }
}

/// Deflates `input` onto `out` and flushes to a byte boundary (zlib's Z_SYNC_FLUSH).
/// Returns whether the output ends with the empty stored block the flush writes (§7.2.1).
fn deflate_sync(deflate: &mut Compress, mut input: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    loop {
        out.reserve(input.len() / 2 + 64);
        let before = deflate.total_in();
        if deflate
            .compress_vec(input, out, FlushCompress::Sync)
            .is_err()
        {
            return false;
        }
        input = &input[(deflate.total_in() - before) as usize..];
        // zlib: the flush is complete once a call returns with output room to spare.
        if input.is_empty() && out.len() < out.capacity() {
            return out[start..].ends_with(&TAIL);
        }
    }
}

/// §7.2.3.3: `payload` as DEFLATE blocks with no compression, then the header of an empty
/// one whose LEN/NLEN are the removed tail (§7.2.1). "Hello" gives
/// `00 05 00 fa ff 48 65 6c 6c 6f 00`.
fn stored_blocks(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + payload.len() / MAX_STORED_BLOCK * 5 + 6);
    for block in payload.chunks(MAX_STORED_BLOCK) {
        // BFINAL 0, BTYPE 00, padding to the byte, then LEN and NLEN little-endian.
        let len = block.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.push(0x00);
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The message would exceed the limit (close 1009).
    TooBig,
    /// Not valid deflate data (close 1007).
    Corrupt,
}

impl InflateError {
    /// The close code (RFC 6455 §7.4.1) to send when failing the connection for this error.
    pub fn close_code(self) -> CloseCode {
        match self {
            InflateError::TooBig => CloseCode::MESSAGE_TOO_BIG,
            InflateError::Corrupt => CloseCode::INVALID_PAYLOAD,
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InflateError::TooBig => "inflated message too big",
            InflateError::Corrupt => "invalid deflate data",
        })
    }
}

impl std::error::Error for InflateError {}

/// Inflates messages (§7.2.2), frame by frame, with a size limit checked while inflating.
///
/// Memory (zlib-rs): one allocation of 46 KiB (state and a 32 KiB window, whatever the
/// window size). Measured resident over 1,000 decompressors: 18 KiB each when new, 20 KiB
/// after a 1.6 KiB message, 47 KiB once a message of 32 KiB or more has filled the
/// window.
pub struct Decompressor {
    inflate: Decompress,
    /// The message so far ended with a BFINAL block (§7.2.3.4): the rest of it is ignored
    /// and the next message starts a new DEFLATE stream.
    stream_ended: bool,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for a peer that agreed to a window of 2^`window_bits` bytes.
    ///
    /// It always inflates with window 15: that accepts any smaller window, including peers
    /// told 8 whose zlib quietly uses 9, and zlib-rs allocates the full 32 KiB window
    /// anyway.
    pub fn new(_window_bits: u8) -> Self {
        Decompressor {
            inflate: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            stream_ended: false,
        }
    }

    /// Inflates `input` (the payload of one frame of a compressed message) appending to
    /// `out`; on `fin` appends the 00 00 ff ff tail first (§7.2.2). Fails with TooBig as soon
    /// as `out.len()` would exceed `limit` — never inflate the whole thing first
    /// (decompression bomb guard: a 1 KB input that inflates to gigabytes must stop at the
    /// limit, quickly, using memory ~limit).
    ///
    /// `out` holds the message so far (the limit counts its earlier frames); it grows to at
    /// most `limit + 1` bytes (more only if the caller gave it more capacity). After an
    /// error the decompressor is reset; the connection is expected to be failed with
    /// [`InflateError::close_code`]. With `client_no_context_takeover`, calling
    /// [`Decompressor::reset`] after each message is allowed but not needed: a client that
    /// does not take over its context never refers to the kept window.
    pub fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let mut result = self.inflate_data(input, limit, out);
        if fin && result.is_ok() {
            result = self.inflate_data(&TAIL, limit, out);
        }
        if result.is_err() || (fin && self.stream_ended) {
            self.reset();
        }
        result
    }

    /// Forget the window (client_no_context_takeover, or after an error).
    pub fn reset(&mut self) {
        self.inflate.reset(false);
        self.stream_ended = false;
    }

    /// Feeds `input` to the inflater, giving it output room up to `limit + 1` bytes of
    /// `out`, until all of it is consumed and no output is pending.
    fn inflate_data(
        &mut self,
        mut input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        // Every call ends with no output pending, so an empty frame has nothing to give.
        if input.is_empty() {
            return Ok(());
        }
        while !self.stream_ended {
            make_room(out, input.len(), limit)?;
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (self.inflate.total_in() - in_before) as usize;
            let produced = self.inflate.total_out() - out_before;
            input = &input[consumed..];
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            match status {
                // §7.2.3.4: a block with BFINAL set ends the DEFLATE stream.
                Status::StreamEnd => self.stream_ended = true,
                _ if out.len() < out.capacity() => {
                    // Room was left, so the inflater wants input: done if there is none.
                    if input.is_empty() {
                        return Ok(());
                    }
                    if consumed == 0 && produced == 0 {
                        return Err(InflateError::Corrupt);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Makes sure `out` has spare capacity for the inflater without letting it grow past
/// `limit + 1` bytes (one byte over is how the limit is seen to be crossed).
fn make_room(out: &mut Vec<u8>, input_len: usize, limit: usize) -> Result<(), InflateError> {
    let allowed = limit.saturating_add(1).saturating_sub(out.len());
    if allowed == 0 {
        return Err(InflateError::TooBig);
    }
    if out.len() == out.capacity() {
        let guess = out
            .len()
            .max(input_len.saturating_mul(4))
            .max(MIN_INFLATE_ROOM);
        out.reserve_exact(guess.min(allowed));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, but letting clients keep their context, so that responses show
    /// exactly what the offer asked for.
    fn client_keeps_context() -> DeflateConfig {
        DeflateConfig {
            client_context_takeover: true,
            ..DeflateConfig::default()
        }
    }

    #[test]
    fn default_answers_no_context_takeover_both_ways() {
        let params = negotiate(
            [&b"permessage-deflate; client_max_window_bits"[..]],
            &DeflateConfig::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            params.response_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }
    use proptest::prelude::*;

    fn offer(values: &[&str]) -> Result<Option<Params>, NegotiationError> {
        offer_with(values, &client_keeps_context())
    }

    fn offer_with(
        values: &[&str],
        config: &DeflateConfig,
    ) -> Result<Option<Params>, NegotiationError> {
        negotiate(values.iter().map(|v| v.as_bytes()), config)
    }

    /// The response value for `values` under the default config, or "" when declined.
    fn response(values: &[&str]) -> String {
        response_with(values, &client_keeps_context())
    }

    fn response_with(values: &[&str], config: &DeflateConfig) -> String {
        offer_with(values, config)
            .expect("well-formed")
            .map(|p| p.response_value())
            .unwrap_or_default()
    }

    /// A config with context takeover on both sides and 15-bit windows: the neutral answer.
    fn neutral() -> DeflateConfig {
        DeflateConfig {
            server_context_takeover: true,
            ..client_keeps_context()
        }
    }

    #[test]
    fn nothing_offered() {
        assert_eq!(offer(&[]), Ok(None));
        assert_eq!(offer(&[""]), Ok(None));
        assert_eq!(offer(&[" , ,"]), Ok(None));
        assert_eq!(offer(&["x-webkit-deflate-frame"]), Ok(None));
        assert_eq!(offer(&["foo; bar=1; baz=\"q\", deflate-stream"]), Ok(None));
    }

    #[test]
    fn plain_offer() {
        let params = offer(&["permessage-deflate"]).unwrap().unwrap();
        assert_eq!(
            params,
            Params {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
                server_max_window_bits_offered: false,
            }
        );
        assert_eq!(
            params.response_value(),
            "permessage-deflate; server_no_context_takeover"
        );
        assert!(params.server_compresses());
        assert_eq!(
            response_with(&["permessage-deflate"], &neutral()),
            "permessage-deflate"
        );
    }

    #[test]
    fn each_parameter_alone() {
        let c = neutral();
        let cases = [
            (
                "permessage-deflate; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover",
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                "permessage-deflate; client_no_context_takeover",
            ),
            (
                "permessage-deflate; server_max_window_bits=10",
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=15",
            ),
            (
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate",
            ),
            (
                "permessage-deflate; client_max_window_bits=12",
                "permessage-deflate; client_max_window_bits=12",
            ),
            (
                "permessage-deflate; client_max_window_bits=15",
                "permessage-deflate",
            ),
        ];
        for (offered, answered) in cases {
            assert_eq!(response_with(&[offered], &c), answered, "{offered}");
        }
    }

    #[test]
    fn client_max_window_bits_with_and_without_value() {
        let limited = DeflateConfig {
            client_max_window_bits: 10,
            ..neutral()
        };
        let params = |v: &str| offer_with(&[v], &limited).unwrap().unwrap();
        // Offered without a value: we may name any window.
        let p = params("permessage-deflate; client_max_window_bits");
        assert_eq!(p.client_max_window_bits, 10);
        assert_eq!(
            p.response_value(),
            "permessage-deflate; client_max_window_bits=10"
        );
        // Offered with a value: no more than the client's hint.
        assert_eq!(
            params("permessage-deflate; client_max_window_bits=9").client_max_window_bits,
            9
        );
        assert_eq!(
            params("permessage-deflate; client_max_window_bits=12").client_max_window_bits,
            10
        );
        // Not offered: we must not name it, and the client may use 15.
        let p = params("permessage-deflate");
        assert_eq!(p.client_max_window_bits, 15);
        assert_eq!(p.response_value(), "permessage-deflate");
        // A limit of 8 is sent as is (we inflate with 15 anyway).
        let eight = DeflateConfig {
            client_max_window_bits: 8,
            ..neutral()
        };
        assert_eq!(
            response_with(&["permessage-deflate; client_max_window_bits"], &eight),
            "permessage-deflate; client_max_window_bits=8"
        );
    }

    #[test]
    fn combinations() {
        let params = offer_with(
            &[
                "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; \
               client_max_window_bits=11; server_no_context_takeover",
            ],
            &neutral(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            params,
            Params {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 10,
                client_max_window_bits: 11,
                server_max_window_bits_offered: true,
            }
        );
        assert_eq!(
            params.response_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=11"
        );
    }

    #[test]
    fn first_acceptable_offer_wins() {
        // An unknown parameter declines that offer only.
        let value = "permessage-deflate; x_custom=1; server_max_window_bits=9, \
                     permessage-deflate; server_max_window_bits=10, permessage-deflate";
        assert_eq!(
            response_with(&[value], &neutral()),
            "permessage-deflate; server_max_window_bits=10"
        );
        // Every offer declined: connect without the extension.
        assert_eq!(
            offer(&["permessage-deflate; foo, permessage-deflate; bar=2"]),
            Ok(None)
        );
        // Other extensions in between are skipped.
        assert_eq!(
            response_with(
                &["foo, permessage-deflate; client_no_context_takeover, bar"],
                &neutral()
            ),
            "permessage-deflate; client_no_context_takeover"
        );
    }

    #[test]
    fn several_header_values_in_order() {
        let values = ["foo; a=b", "permessage-deflate; server_max_window_bits=12"];
        assert_eq!(
            response_with(&values, &neutral()),
            "permessage-deflate; server_max_window_bits=12"
        );
        let values = [
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits=11",
            "permessage-deflate",
        ];
        assert_eq!(
            response_with(&values, &neutral()),
            "permessage-deflate; server_max_window_bits=11"
        );
    }

    #[test]
    fn quoted_values() {
        let c = neutral();
        assert_eq!(
            response_with(&["permessage-deflate; server_max_window_bits=\"10\""], &c),
            "permessage-deflate; server_max_window_bits=10"
        );
        assert_eq!(
            response_with(&["permessage-deflate; client_max_window_bits=\"1\\1\""], &c),
            "permessage-deflate; client_max_window_bits=11"
        );
        // An unknown parameter with a quoted token value is still well-formed.
        assert_eq!(offer(&["permessage-deflate; x=\"a.b\""]), Ok(None));
        // The unquoted content must be a token.
        for bad in [
            "permessage-deflate; server_max_window_bits=\"1 0\"",
            "permessage-deflate; server_max_window_bits=\"\"",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; x=\"a,b\"",
            "permessage-deflate; x=\"a\\",
        ] {
            assert_eq!(offer(&[bad]), Err(NegotiationError::Malformed), "{bad}");
        }
    }

    #[test]
    fn whitespace_and_case() {
        let c = neutral();
        for value in [
            "permessage-deflate;server_max_window_bits=10",
            "  permessage-deflate ;\tserver_max_window_bits = 10  ",
            "Permessage-Deflate; SERVER_MAX_WINDOW_BITS=10",
            ", permessage-deflate; server_max_window_bits=10 ,",
        ] {
            assert_eq!(
                response_with(&[value], &c),
                "permessage-deflate; server_max_window_bits=10",
                "{value:?}"
            );
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        for (value, name) in [
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                "server_no_context_takeover",
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                "client_no_context_takeover",
            ),
            (
                "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
                "server_max_window_bits",
            ),
            (
                "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
                "client_max_window_bits",
            ),
            // Even in an offer that would be declined for its unknown parameter.
            (
                "permessage-deflate; foo; client_max_window_bits; Client_Max_Window_Bits",
                "client_max_window_bits",
            ),
        ] {
            assert_eq!(
                offer(&[value]),
                Err(NegotiationError::DuplicateParameter(name)),
                "{value}"
            );
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        use NegotiationError::*;
        let s = "server_max_window_bits";
        let c = "client_max_window_bits";
        for (value, err) in [
            (
                "permessage-deflate; server_max_window_bits=7",
                InvalidValue(s),
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                InvalidValue(s),
            ),
            (
                "permessage-deflate; server_max_window_bits=08",
                InvalidValue(s),
            ),
            (
                "permessage-deflate; server_max_window_bits=010",
                InvalidValue(s),
            ),
            (
                "permessage-deflate; server_max_window_bits=0x0a",
                InvalidValue(s),
            ),
            (
                "permessage-deflate; server_max_window_bits=+9",
                InvalidValue(s),
            ),
            (
                "permessage-deflate; server_max_window_bits",
                MissingValue(s),
            ),
            (
                "permessage-deflate; client_max_window_bits=0",
                InvalidValue(c),
            ),
            (
                "permessage-deflate; client_max_window_bits=99",
                InvalidValue(c),
            ),
            (
                "permessage-deflate; server_no_context_takeover=1",
                UnexpectedValue("server_no_context_takeover"),
            ),
            (
                "permessage-deflate; client_no_context_takeover=\"x\"",
                UnexpectedValue("client_no_context_takeover"),
            ),
        ] {
            assert_eq!(offer(&[value]), Err(err.clone()), "{value}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn syntax_errors_are_rejected() {
        for value in [
            "permessage-deflate;",
            "permessage-deflate; ; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate server_no_context_takeover",
            "permessage-deflate; a b",
            "permessage-deflate; a=b=c",
            "\"permessage-deflate\"",
            ";permessage-deflate",
            "permessage-deflate; a=\u{e9}",
            // A broken other extension makes the whole header malformed.
            "permessage-deflate, foo;",
            "foo bar, permessage-deflate",
        ] {
            assert_eq!(
                offer(&[value]),
                Err(NegotiationError::Malformed),
                "{value:?}"
            );
        }
        // Also after an acceptable offer, and in a later header.
        assert_eq!(
            offer(&[
                "permessage-deflate",
                "permessage-deflate; client_max_window_bits=20"
            ]),
            Err(NegotiationError::InvalidValue("client_max_window_bits"))
        );
    }

    #[test]
    fn config_variations() {
        // Disabled: not even parsed.
        let off = DeflateConfig {
            enabled: false,
            ..client_keeps_context()
        };
        assert_eq!(offer_with(&["permessage-deflate"], &off), Ok(None));
        assert_eq!(offer_with(&["permessage-deflate;;"], &off), Ok(None));
        // The default keeps no server context.
        assert_eq!(
            response(&["permessage-deflate"]),
            "permessage-deflate; server_no_context_takeover"
        );
        // No client context takeover: answered even unasked.
        let no_client = DeflateConfig {
            client_context_takeover: false,
            ..neutral()
        };
        assert_eq!(
            response_with(&["permessage-deflate"], &no_client),
            "permessage-deflate; client_no_context_takeover"
        );
        // Server window: the smaller of the request and the config, named even unasked.
        let small = DeflateConfig {
            server_max_window_bits: 11,
            ..neutral()
        };
        assert_eq!(
            response_with(&["permessage-deflate"], &small),
            "permessage-deflate; server_max_window_bits=11"
        );
        assert_eq!(
            response_with(&["permessage-deflate; server_max_window_bits=13"], &small),
            "permessage-deflate; server_max_window_bits=11"
        );
        assert_eq!(
            response_with(&["permessage-deflate; server_max_window_bits=9"], &small),
            "permessage-deflate; server_max_window_bits=9"
        );
        // Out-of-range config values are clamped.
        let silly = DeflateConfig {
            server_max_window_bits: 3,
            client_max_window_bits: 40,
            ..neutral()
        };
        let p = offer_with(&["permessage-deflate; client_max_window_bits"], &silly)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (9, 15)
        );
    }

    #[test]
    fn server_window_8_is_accepted_without_compression() {
        let p = offer_with(
            &["permessage-deflate; server_max_window_bits=8"],
            &neutral(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.server_max_window_bits, 8);
        assert!(!p.server_compresses());
        assert_eq!(
            p.response_value(),
            "permessage-deflate; server_max_window_bits=8"
        );
        // Should a compressor be made for it anyway, its output fits a 256-byte window.
        let data = b"abcdefgh".repeat(200);
        let mut out = Vec::new();
        Compressor::new(8, 9).compress(&data, &mut out, false);
        let mut tiny = Decompress::new_with_window_bits(false, 9);
        out.extend_from_slice(&TAIL);
        let mut back = Vec::with_capacity(data.len() + 16);
        tiny.decompress_vec(&out, &mut back, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn autobahn_offers() {
        // The offers of Autobahn|Testsuite 0.8.2 cases 12.* and 13.1–13.7, and what we
        // answer under the default config. Its client wants client_max_window_bits with a
        // value in any response and accepts whatever we choose.
        let base = "permessage-deflate; client_no_context_takeover; client_max_window_bits";
        let cases = [
            (base.to_string(), ""),
            (format!("{base}; server_no_context_takeover"), ""),
            (
                format!("{base}; server_max_window_bits=9"),
                "; server_max_window_bits=9",
            ),
            (
                format!("{base}; server_max_window_bits=15"),
                "; server_max_window_bits=15",
            ),
            (
                format!("{base}; server_no_context_takeover; server_max_window_bits=9"),
                "; server_max_window_bits=9",
            ),
            (
                format!("{base}; server_no_context_takeover; server_max_window_bits=15"),
                "; server_max_window_bits=15",
            ),
            (
                format!(
                    "{base}; server_no_context_takeover; server_max_window_bits=9, \
                     {base}; server_no_context_takeover, {base}"
                ),
                "; server_max_window_bits=9",
            ),
        ];
        for (offered, tail) in cases {
            assert_eq!(
                response(&[&offered]),
                format!(
                    "permessage-deflate; server_no_context_takeover; \
                     client_no_context_takeover{tail}"
                ),
                "{offered}"
            );
        }
    }

    // ---- the codec ----

    const HELLO: &[u8] = b"Hello";

    /// Inflates one whole message (one frame).
    fn inflate_message(d: &mut Decompressor, payload: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        d.inflate(payload, true, usize::MAX, &mut out)?;
        Ok(out)
    }

    fn compress_message(c: &mut Compressor, payload: &[u8], reset_after: bool) -> Vec<u8> {
        let mut out = Vec::new();
        c.compress(payload, &mut out, reset_after);
        out
    }

    #[test]
    fn rfc_7692_examples() {
        let mut d = Decompressor::new(15);
        // §7.2.3.1: a message compressed in one block.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_message(&mut d, &hello).unwrap(), HELLO);
        // §7.2.3.2: the same, sharing the LZ77 window of the previous message.
        assert_eq!(
            inflate_message(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap(),
            HELLO
        );
        // §7.2.3.3: a block with no compression.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_message(&mut d, &stored).unwrap(), HELLO);
        let mut out = Vec::new();
        stored_blocks(HELLO, &mut out);
        assert_eq!(out, stored);
        // §7.2.3.4: a block with BFINAL set; the next message starts a new stream.
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_message(&mut d, &last).unwrap(), HELLO);
        assert_eq!(inflate_message(&mut d, &hello).unwrap(), HELLO);
        // §7.2.3.5: two DEFLATE blocks in one message.
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate_message(&mut d, &two).unwrap(), HELLO);
        // §7.2.3.6: an empty message is one octet 00.
        assert_eq!(inflate_message(&mut d, &[0x00]).unwrap(), b"");
        assert_eq!(inflate_message(&mut d, &hello).unwrap(), HELLO);
    }

    #[test]
    fn compressing_hello_matches_the_rfc() {
        let mut c = Compressor::new(15, 6);
        let first = compress_message(&mut c, HELLO, false);
        assert_eq!(first, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut d = Decompressor::new(15);
        assert_eq!(inflate_message(&mut d, &first).unwrap(), HELLO);
        let second = compress_message(&mut c, HELLO, false);
        assert!(second.len() < first.len(), "{second:02x?}");
        assert_eq!(inflate_message(&mut d, &second).unwrap(), HELLO);
    }

    #[test]
    fn empty_messages() {
        for (bits, level) in [(15, 2), (9, 9), (8, 6), (15, 0)] {
            let mut c = Compressor::new(bits, level);
            let mut d = Decompressor::new(bits);
            for reset_after in [false, true] {
                assert_eq!(compress_message(&mut c, b"", reset_after), [0x00]);
                let some = compress_message(&mut c, b"some text", reset_after);
                assert_eq!(inflate_message(&mut d, &[0x00]).unwrap(), b"");
                assert_eq!(inflate_message(&mut d, &some).unwrap(), b"some text");
                // Empty after a message, with the window still held.
                let empty = compress_message(&mut c, b"", reset_after);
                assert_eq!(inflate_message(&mut d, &empty).unwrap(), b"");
                let again = compress_message(&mut c, b"some text", reset_after);
                assert_eq!(inflate_message(&mut d, &again).unwrap(), b"some text");
            }
        }
    }

    fn sample_json(i: usize) -> Vec<u8> {
        format!(
            r#"{{"type":"quote","symbol":"ACME","bid":{}.25,"ask":{}.27,"venue":"XNAS","seq":{i}}}"#,
            100 + i,
            100 + i
        )
        .into_bytes()
    }

    #[test]
    fn context_takeover_across_messages() {
        let mut c = Compressor::new(15, 2);
        let mut d = Decompressor::new(15);
        let sizes: Vec<usize> = (0..5)
            .map(|i| {
                let msg = sample_json(i);
                let z = compress_message(&mut c, &msg, false);
                assert_eq!(inflate_message(&mut d, &z).unwrap(), msg);
                z.len()
            })
            .collect();
        assert!(sizes[1..].iter().all(|&s| s < sizes[0] / 2), "{sizes:?}");
    }

    #[test]
    fn no_context_takeover_across_messages() {
        let mut c = Compressor::new(15, 2);
        let mut d = Decompressor::new(15);
        let msg = sample_json(1);
        let outputs: Vec<Vec<u8>> = (0..4)
            .map(|_| compress_message(&mut c, &msg, true))
            .collect();
        for z in &outputs {
            assert_eq!(z, &outputs[0]);
            assert_eq!(inflate_message(&mut d, z).unwrap(), msg);
            d.reset();
        }
        // The decompressor may also keep its window: the client never refers to it.
        for z in &outputs {
            assert_eq!(inflate_message(&mut d, z).unwrap(), msg);
        }
    }

    #[test]
    fn shared_compressor_serves_several_peers() {
        let mut shared = Compressor::new(15, 2);
        let mut peers = [Decompressor::new(15), Decompressor::new(15)];
        for i in 0..6 {
            let msg = sample_json(i);
            let z = compress_message(&mut shared, &msg, true);
            // Each peer sees only some of the messages.
            let peer = &mut peers[i % 2];
            assert_eq!(inflate_message(peer, &z).unwrap(), msg);
        }
    }

    #[test]
    fn fragmented_inflate() {
        let msg: Vec<u8> = (0..50).flat_map(sample_json).collect();
        let mut c = Compressor::new(15, 6);
        let z = compress_message(&mut c, &msg, false);
        for frame_len in [1, 2, 3, 7, 100, z.len()] {
            let mut d = Decompressor::new(15);
            let mut out = Vec::new();
            let frames: Vec<&[u8]> = z.chunks(frame_len).collect();
            for (i, frame) in frames.iter().enumerate() {
                d.inflate(frame, i + 1 == frames.len(), usize::MAX, &mut out)
                    .unwrap();
            }
            assert_eq!(out, msg, "frames of {frame_len}");
        }
        // Empty frames, including an empty final one.
        let mut d = Decompressor::new(15);
        let mut out = Vec::new();
        d.inflate(&[], false, usize::MAX, &mut out).unwrap();
        d.inflate(&z, false, usize::MAX, &mut out).unwrap();
        d.inflate(&[], true, usize::MAX, &mut out).unwrap();
        assert_eq!(out, msg);
    }

    #[test]
    fn window_9_output_fits_a_512_byte_window() {
        let msg: Vec<u8> = (0..200).flat_map(sample_json).collect();
        let mut c = Compressor::new(9, 9);
        let z = compress_message(&mut c, &msg, false);
        assert!(z.len() < msg.len() / 2);
        let mut strict = Decompress::new_with_window_bits(false, 9);
        let mut back = Vec::with_capacity(msg.len() + 16);
        let mut input = z.clone();
        input.extend_from_slice(&TAIL);
        strict
            .decompress_vec(&input, &mut back, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn incompressible_and_large_messages() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for (bits, level) in [(15, 2), (15, 0), (8, 2)] {
            let mut c = Compressor::new(bits, level);
            let mut d = Decompressor::new(15);
            for _ in 0..2 {
                let z = compress_message(&mut c, &noise, false);
                assert!(z.len() < noise.len() + noise.len() / 100 + 64);
                assert_eq!(inflate_message(&mut d, &z).unwrap(), noise);
            }
        }
    }

    /// About `mib` MiB of zeros, deflated at window 15 in chunks (never held whole).
    fn bomb(mib: usize) -> Vec<u8> {
        let zeros = vec![0u8; 1 << 20];
        let mut deflate = Compress::new_with_window_bits(Compression::best(), false, 15);
        let mut out = Vec::with_capacity(mib * 1100);
        for i in 0..mib {
            let flush = if i + 1 == mib {
                FlushCompress::Sync
            } else {
                FlushCompress::None
            };
            let start = deflate.total_in();
            while deflate.total_in() - start < zeros.len() as u64 {
                let done = (deflate.total_in() - start) as usize;
                out.reserve(4096);
                deflate
                    .compress_vec(&zeros[done..], &mut out, flush)
                    .unwrap();
            }
        }
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }

    #[test]
    fn decompression_bomb_stops_at_the_limit() {
        let z = bomb(128);
        assert!(z.len() < 200 * 1024, "{}", z.len());
        const LIMIT: usize = 1 << 20;
        let started = std::time::Instant::now();
        // In one frame.
        let mut d = Decompressor::new(15);
        let mut out = Vec::new();
        assert_eq!(
            d.inflate(&z, true, LIMIT, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= LIMIT + 1, "{}", out.capacity());
        // In frames of 1 KiB: it fails within the first few.
        let mut d = Decompressor::new(15);
        let mut out = Vec::new();
        let mut frames = 0;
        let result = z.chunks(1024).try_for_each(|frame| {
            frames += 1;
            d.inflate(frame, false, LIMIT, &mut out)
        });
        assert_eq!(result, Err(InflateError::TooBig));
        assert!(frames <= 2, "{frames}");
        assert!(out.capacity() <= LIMIT + 1);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // After the error the decompressor is usable again.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_message(&mut d, &hello).unwrap(), HELLO);
    }

    #[test]
    fn limit_is_inclusive_and_counts_earlier_frames() {
        let msg = vec![b'a'; 10_000];
        let z = compress_message(&mut Compressor::new(15, 6), &msg, true);
        let mut d = Decompressor::new(15);
        let mut out = Vec::new();
        d.inflate(&z, true, msg.len(), &mut out).unwrap();
        assert_eq!(out, msg);
        out.clear();
        assert_eq!(
            d.inflate(&z, true, msg.len() - 1, &mut out),
            Err(InflateError::TooBig)
        );
        // Earlier frames already in `out` count.
        let mut out = vec![b'x'; 10];
        assert_eq!(
            d.inflate(&z, true, msg.len() + 9, &mut out),
            Err(InflateError::TooBig)
        );
        let mut out = vec![b'x'; 10];
        d.inflate(&z, true, msg.len() + 10, &mut out).unwrap();
        assert_eq!(out.len(), msg.len() + 10);
    }

    #[test]
    fn corrupt_input() {
        let mut d = Decompressor::new(15);
        for bad in [
            &[0xff, 0xff, 0xff][..],                      // BTYPE 11 is reserved
            &[0x00, 0x05, 0x00, 0x00, 0x00, 1, 2, 3][..], // NLEN is not ~LEN
            &[0x0c, 0xff, 0xff, 0xff, 0xff][..],          // bad dynamic block
        ] {
            assert_eq!(
                inflate_message(&mut d, bad),
                Err(InflateError::Corrupt),
                "{bad:02x?}"
            );
            assert_eq!(
                inflate_message(&mut d, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]).unwrap(),
                HELLO
            );
        }
        // A back-reference before the start of the stream.
        let mut d = Decompressor::new(15);
        assert_eq!(
            inflate_message(&mut d, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            Err(InflateError::Corrupt)
        );
        assert_eq!(
            InflateError::Corrupt.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(
            InflateError::TooBig.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
    }

    /// Bytes that are sometimes compressible: runs, a small alphabet, or noise.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000),
            proptest::collection::vec(prop::sample::select(b"ab \n{}".to_vec()), 0..5000),
            (any::<u8>(), 0usize..70_000).prop_map(|(b, n)| vec![b; n]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip_under_any_split(
            messages in proptest::collection::vec(message(), 1..5),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            bits in 8u8..=15,
            level in 0u32..=9,
            reset_after in any::<bool>(),
        ) {
            let mut c = Compressor::new(bits, level);
            let mut d = Decompressor::new(bits);
            for msg in &messages {
                let z = compress_message(&mut c, msg, reset_after);
                let mut points: Vec<usize> = cuts.iter().map(|i| i.index(z.len() + 1)).collect();
                points.push(0);
                points.push(z.len());
                points.sort_unstable();
                let mut out = Vec::new();
                for (i, pair) in points.windows(2).enumerate() {
                    let fin = i + 2 == points.len();
                    d.inflate(&z[pair[0]..pair[1]], fin, usize::MAX, &mut out).unwrap();
                }
                prop_assert_eq!(&out, msg);
            }
        }
    }
}
