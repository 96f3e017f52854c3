//! One error variant per RFC 6455 rule a peer can break, each mapped to its close code.

use crate::ws::close::CloseCode;
use std::fmt;

/// A rule of RFC 6455 that the peer broke; each maps to the close code sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// §5.2: RSV1-3 set while no extension that defines them was negotiated.
    ReservedBits,
    /// §5.2: opcodes 3-7 and 11-15 are reserved.
    ReservedOpcode(u8),
    /// §5.1: "a client MUST mask all frames that it sends to the server".
    UnmaskedFrame,
    /// §5.2: "the minimal number of bytes MUST be used to encode the length".
    NonMinimalLength,
    /// §5.2: the most significant bit of a 64-bit length MUST be 0.
    LengthMsbSet,
    /// §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    ControlFrameTooLong,
    /// §5.5: "Control frames themselves MUST NOT be fragmented".
    FragmentedControlFrame,
    /// §5.4: a continuation frame arrived with no fragmented message in progress.
    UnexpectedContinuation,
    /// §5.4: a new data frame started while a fragmented message was in progress.
    ExpectedContinuation,
    /// §8.1: a text message (or part of one) is not valid UTF-8.
    InvalidUtf8,
    /// §5.5.1: a Close body of exactly one byte.
    CloseBodyTooShort,
    /// §7.4: a close code that must not be sent on the wire.
    InvalidCloseCode(u16),
    /// §5.5.1: the close reason is not valid UTF-8.
    InvalidCloseReason,
    /// A frame or message is larger than the configured limit (for a compressed
    /// message: once inflated, checked while inflating).
    MessageTooBig,
    /// RFC 7692 §6.2: a compressed message that is not valid DEFLATE data.
    BadCompressedData,
}

impl ProtocolError {
    /// The close code (§7.4.1) to send when failing the connection for this error.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => f.write_str("reserved bits set"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op}"),
            ProtocolError::UnmaskedFrame => f.write_str("unmasked client frame"),
            ProtocolError::BadCompressedData => f.write_str("invalid compressed data"),
            ProtocolError::NonMinimalLength => f.write_str("non-minimal payload length"),
            ProtocolError::LengthMsbSet => f.write_str("payload length too large"),
            ProtocolError::ControlFrameTooLong => f.write_str("control frame too long"),
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::UnexpectedContinuation => f.write_str("unexpected continuation"),
            ProtocolError::ExpectedContinuation => f.write_str("expected continuation"),
            ProtocolError::InvalidUtf8 => f.write_str("invalid utf-8"),
            ProtocolError::CloseBodyTooShort => f.write_str("one-byte close body"),
            ProtocolError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            ProtocolError::InvalidCloseReason => f.write_str("invalid utf-8 in close reason"),
            ProtocolError::MessageTooBig => f.write_str("message too big"),
        }
    }
}

impl std::error::Error for ProtocolError {}
