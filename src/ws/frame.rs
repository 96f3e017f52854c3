//! The base framing protocol (RFC 6455 §5.2): frame headers, decoded and encoded.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! ```

use crate::ws::error::ProtocolError;

/// The longest possible header: 2 bytes, 8 bytes of extended length, 4 of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (§5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: the continuation of a fragmented message.
    Continuation,
    /// 0x1: a text frame (UTF-8).
    Text,
    /// 0x2: a binary frame.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The opcode for the 4-bit value `bits`, or the reserved-opcode error.
    pub fn from_bits(bits: u8) -> Result<OpCode, ProtocolError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong are control frames (§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2 and RSV3 as the three low bits.
    pub rsv: u8,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// The outcome of decoding from a buffer that may hold only part of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// The whole item and the number of bytes it took.
    Complete(T, usize),
    /// More bytes are needed; nothing was consumed.
    Partial,
}

/// FIN: the high bit of the first byte.
fn fin(b0: u8) -> bool {
    b0 & 0x80 != 0
}

/// RSV1 in [`FrameHeader::rsv`] (bit 6 of the first byte): "Per-Message Compressed"
/// when permessage-deflate was negotiated (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

/// RSV1-3: bits 4-6 of the first byte.
fn rsv(b0: u8) -> u8 {
    (b0 >> 4) & 0x7
}

/// The opcode: the low nibble of the first byte.
fn opcode(b0: u8) -> Result<OpCode, ProtocolError> {
    OpCode::from_bits(b0 & 0x0f)
}

/// MASK: the high bit of the second byte.
fn masked(b1: u8) -> bool {
    b1 & 0x80 != 0
}

/// Decodes "Payload len" and its extension from `buf` (the bytes after the first two).
/// Returns the length and how many extension bytes it used.
fn payload_len(len7: u8, buf: &[u8]) -> Result<Status<u64>, ProtocolError> {
    match len7 {
        126 => {
            let Some(ext) = buf.get(..2) else {
                return Ok(Status::Partial);
            };
            let len = u16::from_be_bytes([ext[0], ext[1]]) as u64;
            if len < 126 {
                return Err(ProtocolError::NonMinimalLength);
            }
            Ok(Status::Complete(len, 2))
        }
        127 => {
            let Some(ext) = buf.get(..8) else {
                return Ok(Status::Partial);
            };
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(ext);
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthMsbSet);
            }
            if len <= u16::MAX as u64 {
                return Err(ProtocolError::NonMinimalLength);
            }
            Ok(Status::Complete(len, 8))
        }
        short => Ok(Status::Complete(short as u64, 0)),
    }
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`, checking the rules that a header alone
    /// can break (reserved opcodes, length encoding, control frame size and fragmentation).
    /// Rules that depend on the connection (masking, RSV, continuation) are the caller's.
    pub fn decode(buf: &[u8]) -> Result<Status<FrameHeader>, ProtocolError> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(Status::Partial);
        };
        let opcode = opcode(*b0)?;
        let fin = fin(*b0);
        let Status::Complete(payload_len, ext) = payload_len(b1 & 0x7f, rest)? else {
            return Ok(Status::Partial);
        };
        if opcode.is_control() {
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
        }
        let mut used = 2 + ext;
        let mask = if masked(*b1) {
            let Some(key) = buf.get(used..used + 4) else {
                return Ok(Status::Partial);
            };
            used += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            rsv: rsv(*b0),
            opcode,
            mask,
            payload_len,
        };
        Ok(Status::Complete(header, used))
    }

    /// Encodes an unmasked (server) header for a frame and returns it with its length.
    pub fn encode(fin: bool, rsv: u8, opcode: OpCode, payload_len: usize) -> ([u8; 10], usize) {
        let mut out = [0u8; 10];
        out[0] = (fin as u8) << 7 | (rsv & 0x7) << 4 | opcode.bits();
        let used = if payload_len < 126 {
            out[1] = payload_len as u8;
            2
        } else if payload_len <= u16::MAX as usize {
            out[1] = 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        } else {
            out[1] = 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        (out, used)
    }
}

/// Appends a complete unfragmented server frame (header + payload) to `out`.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let (header, len) = FrameHeader::encode(true, 0, opcode, payload.len());
    out.reserve(len + payload.len());
    out.extend_from_slice(&header[..len]);
    out.extend_from_slice(payload);
}

/// Appends a masked (client) frame to `out`: what a client sends, for load generators
/// and tests. `fin: false` makes a fragment.
pub fn encode_masked_frame(
    fin: bool,
    opcode: OpCode,
    payload: &[u8],
    key: [u8; 4],
    out: &mut Vec<u8>,
) {
    let (mut header, len) = FrameHeader::encode(fin, 0, opcode, payload.len());
    header[1] |= 0x80;
    out.reserve(len + 4 + payload.len());
    out.extend_from_slice(&header[..len]);
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    crate::ws::mask::apply_mask(&mut out[start..], key, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(buf: &[u8]) -> (FrameHeader, usize) {
        match FrameHeader::decode(buf).unwrap() {
            Status::Complete(h, n) => (h, n),
            Status::Partial => panic!("partial"),
        }
    }

    #[test]
    fn rfc_examples() {
        // §5.7: a single-frame unmasked text message "Hello".
        let (h, n) = decode_all(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        // A single-frame masked text message.
        let (h, n) = decode_all(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f]);
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        // A fragmented unmasked text message: first fragment, then the last.
        assert!(!decode_all(&[0x01, 0x03]).0.fin);
        assert_eq!(decode_all(&[0x80, 0x02]).0.opcode, OpCode::Continuation);
        // 256 bytes binary message in a single unmasked frame.
        assert_eq!(decode_all(&[0x82, 0x7E, 0x01, 0x00]).0.payload_len, 256);
        // 64 KiB binary message in a single unmasked frame.
        let (h, n) = decode_all(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn every_prefix_of_a_header_is_partial() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(
                FrameHeader::decode(&full[..cut]),
                Ok(Status::Partial),
                "{cut}"
            );
        }
        assert_eq!(decode_all(&full).1, 14);
    }

    #[test]
    fn header_rules() {
        assert_eq!(
            FrameHeader::decode(&[0x83, 0x80]),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            FrameHeader::decode(&[0x8B, 0x80]),
            Err(ProtocolError::ReservedOpcode(11))
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 0x7E, 0, 125]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthMsbSet)
        );
        assert_eq!(
            FrameHeader::decode(&[0x89, 0x7E, 0, 126]),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert_eq!(
            FrameHeader::decode(&[0x09, 0x80]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(decode_all(&[0xF1, 0x80, 0, 0, 0, 0]).0.rsv, 7);
    }

    #[test]
    fn encode_round_trips_every_length_class() {
        for len in [0usize, 125, 126, 65535, 65536, 1 << 20] {
            let (bytes, n) = FrameHeader::encode(true, 0, OpCode::Binary, len);
            let (h, used) = decode_all(&bytes[..n]);
            assert_eq!((h.payload_len, used, h.mask), (len as u64, n, None));
        }
    }
}
