//! The client side of the WebSocket wire, for pushloop's tests and tools: RFC 6455
//! frames (masked ones out, the server's in), Close bodies, and HTTP/1.1 heads (the
//! upgrade request out, response heads in).
//!
//! It is written apart from the server's codec on purpose, and does not depend on the
//! `pushloop` crate: a test that checks the server with the server's own parser would
//! miss the bugs both share. It has no dependencies either, unless the `accept` feature
//! asks for `accept_key`.
//!
//! Parsers are incremental and borrow from the buffer (`Ok(None)`: not all there yet), so
//! a load generator can decode frames without allocating. Everything here is from the
//! client's point of view: a masked frame from the server is an error.
//!
//! ```
//! use pushloop_wire::{encode_frame, parse_frame, OpCode};
//!
//! let mut out = Vec::new();
//! encode_frame(true, 0, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), b"Hello", &mut out);
//! assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
//!
//! let from_server = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
//! assert_eq!(parse_frame(&from_server[..3]), Ok(None));
//! let frame = parse_frame(&from_server).unwrap().unwrap();
//! assert_eq!((frame.opcode, frame.payload, frame.len), (OpCode::Text, &b"Hello"[..], 7));
//! ```

pub mod close;
pub mod frame;
pub mod http;

pub use close::{close_code, close_payload, parse_close, valid_close_code, CloseError, NO_STATUS};
pub use frame::{
    apply_mask, encode_client_frame, encode_frame, encode_header, first_byte, header_len,
    parse_frame, parse_header, Frame, FrameError, Header, Length, OpCode, FIN, MASK,
    MAX_CONTROL_PAYLOAD, RSV1, RSV2, RSV3, RSV_BITS,
};
pub use http::{
    head_len, upgrade_headers, upgrade_request, write_request_head, HeadError, ResponseHead,
};

/// The sample `Sec-WebSocket-Key` of RFC 6455 §1.3.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The `Sec-WebSocket-Accept` for [`SAMPLE_KEY`], as RFC 6455 §1.3 gives it (not computed,
/// so that it checks the server's computation).
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The GUID appended to the key for the accept value (RFC 6455 §1.3).
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
#[cfg(feature = "accept")]
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(all(test, feature = "accept"))]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_sample_key_gives_the_rfc_accept() {
        assert_eq!(accept_key(SAMPLE_KEY.as_bytes()), SAMPLE_ACCEPT);
    }
}
