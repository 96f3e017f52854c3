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
//!
//! Files: `negotiation.rs` checks the offers and builds the response ([`negotiate`],
//! [`Params`]) on the header grammar of `extension_header.rs`; `codec.rs` compresses and
//! inflates messages ([`Compressor`], [`Decompressor`]); this file holds what both share,
//! the RFC constants and [`DeflateConfig`]. The unit tests are in `negotiation/tests.rs`
//! (the header grammar included, through [`negotiate`]) and `codec/tests.rs`.

mod codec;
mod extension_header;
mod negotiation;

pub use codec::{Compressor, Decompressor, InflateError};
pub use negotiation::{negotiate, NegotiationError, Params};

/// The extension token.
pub const EXTENSION: &str = "permessage-deflate";

/// §7.1.2: the largest LZ77 window, 2^15 = 32 KiB, and the one assumed when none is named.
pub const MAX_WINDOW_BITS: u8 = 15;

/// §7.1.2: the smallest window a peer may ask for, 2^8 = 256 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;

/// The smallest window zlib compresses a raw stream with: it refuses 8 ("until 256-byte
/// window bug fixed"), so a window of 8 is served with no LZ77 back-references at all.
pub const MIN_DEFLATE_WINDOW_BITS: u8 = 9;

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
