//! RFC 6455 §5 framing from the client's side: masked frames out, the server's unmasked
//! frames in.
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
//!
//! RSV bits are kept where they are in the first byte: a frame's `rsv` is `b0 & 0x70`,
//! so "compressed" (RFC 7692 §6) is `rsv & RSV1 != 0` with the one [`RSV1`] constant.
//!
//! Parsing is incremental and borrows: [`parse_frame`] returns `Ok(None)` until the
//! buffer holds a whole frame, then the frame with its payload as a slice of the buffer
//! and the number of bytes it took. It allocates nothing.

use std::error::Error;
use std::fmt;
use std::ops::Range;

/// FIN in the first byte: the final fragment of a message.
pub const FIN: u8 = 0x80;
/// RSV1 in the first byte; "Per-Message Compressed" with permessage-deflate (RFC 7692 §6).
pub const RSV1: u8 = 0x40;
/// RSV2 in the first byte.
pub const RSV2: u8 = 0x20;
/// RSV3 in the first byte.
pub const RSV3: u8 = 0x10;
/// The three RSV bits of the first byte.
pub const RSV_BITS: u8 = RSV1 | RSV2 | RSV3;
/// MASK in the second byte: a masking key follows the length.
pub const MASK: u8 = 0x80;
/// The largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame's opcode (§5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// A reserved opcode: 0x3-0x7 (data) or 0xB-0xF (control). [`OpCode::from_bits`]
    /// never makes one holding another value.
    Reserved(u8),
}

impl OpCode {
    /// The opcode in the low four bits of `byte` (a frame's first byte will do).
    #[inline]
    pub const fn from_bits(byte: u8) -> OpCode {
        match byte & 0x0f {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => OpCode::Reserved(other),
        }
    }

    /// The 4-bit wire value.
    #[inline]
    pub const fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
            OpCode::Reserved(bits) => bits & 0x0f,
        }
    }

    /// Whether it is a control opcode: the high bit of the four set (§5.5), reserved
    /// ones included.
    #[inline]
    pub const fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }

    /// Whether it is one of 0x3-0x7 and 0xB-0xF.
    #[inline]
    pub const fn is_reserved(self) -> bool {
        matches!(self, OpCode::Reserved(_))
    }
}

impl From<OpCode> for u8 {
    fn from(opcode: OpCode) -> u8 {
        opcode.bits()
    }
}

/// How a header writes the payload length. §5.2 wants [`Length::Minimal`]; the wide
/// forms write whatever they are given in a field of their size, to test a peer's
/// checks (non-minimal lengths, the 64-bit MSB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// 7 bits below 126, else 16 bits below 65536, else 64 bits.
    Minimal(u64),
    /// 126 and a 16-bit length.
    Wide16(u16),
    /// 127 and a 64-bit length.
    Wide64(u64),
}

/// The first byte of a frame: FIN, the RSV bits given in place (`rsv & 0x70`), opcode.
#[inline]
pub const fn first_byte(fin: bool, rsv: u8, opcode: OpCode) -> u8 {
    (if fin { FIN } else { 0 }) | (rsv & RSV_BITS) | opcode.bits()
}

/// The length of a header from its second byte: 2, 4 or 10 bytes, and 4 more for a
/// masking key. For reading a header from a stream in two steps.
#[inline]
pub const fn header_len(second_byte: u8) -> usize {
    let ext = match second_byte & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if second_byte & MASK != 0 { 4 } else { 0 }
}

/// Appends a frame header: the first byte, MASK and the length as `len` says, then
/// `mask` if there is one.
pub fn encode_header(
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: Length,
    out: &mut Vec<u8>,
) {
    let mask_bit = if mask.is_some() { MASK } else { 0 };
    out.push(first_byte(fin, rsv, opcode));
    match len {
        Length::Minimal(n) if n < 126 => out.push(mask_bit | n as u8),
        Length::Minimal(n) if n <= u64::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        Length::Minimal(n) | Length::Wide64(n) => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Length::Wide16(n) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// Appends a whole frame with a minimal length: masked with `mask` (what a client must
/// send, §5.3), or as a server sends it with `None`.
#[inline]
pub fn encode_frame(
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    out.reserve(14 + payload.len());
    encode_header(
        fin,
        rsv,
        opcode,
        mask,
        Length::Minimal(payload.len() as u64),
        out,
    );
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
}

/// Appends a whole frame as a client sends most of them: FIN, no RSV bits, masked with
/// `key`. [`encode_frame`] with `true, 0, opcode, Some(key)`.
#[inline]
pub fn encode_client_frame(opcode: OpCode, payload: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    encode_frame(true, 0, opcode, Some(key), payload, out);
}

/// Masks (or unmasks) `data` in place with `key` (§5.3), the key starting at `data[0]`.
/// Eight bytes at a time.
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // Eight is a multiple of four: the remainder starts at key[0].
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// A server frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN: the final fragment of a message.
    pub fin: bool,
    /// The RSV bits in place (`b0 & 0x70`); 0 without an extension.
    pub rsv: u8,
    /// The opcode; reserved ones are the caller's to refuse.
    pub opcode: OpCode,
    /// The payload length.
    pub payload_len: u64,
    /// The header's length in bytes: 2, 4 or 10.
    pub len: usize,
}

/// A whole server frame, borrowed from the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// FIN: the final fragment of a message.
    pub fin: bool,
    /// The RSV bits in place (`b0 & 0x70`); 0 without an extension.
    pub rsv: u8,
    /// The opcode; reserved ones are the caller's to refuse.
    pub opcode: OpCode,
    /// The payload.
    pub payload: &'a [u8],
    /// The header's length in bytes: where the payload starts.
    pub header_len: usize,
    /// The bytes the frame took from the start of the buffer: header and payload.
    pub len: usize,
}

impl Frame<'_> {
    /// Where the payload is in the buffer the frame was parsed from.
    pub fn payload_range(&self) -> Range<usize> {
        self.header_len..self.len
    }
}

/// A server frame that breaks a rule of RFC 6455 whatever the extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The MASK bit is set: a server must not mask (§5.1).
    Masked,
    /// A 16-bit length under 126, or a 64-bit one under 65536 (§5.2).
    NonMinimalLength(u64),
    /// A 64-bit length with its most significant bit set (§5.2).
    LengthMsbSet,
    /// A control frame with more than 125 bytes of payload (§5.5).
    ControlTooLong(OpCode, u64),
    /// A control frame without FIN (§5.5).
    FragmentedControl(OpCode),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Masked => write!(f, "masked frame from the server (RFC 6455 §5.1)"),
            FrameError::NonMinimalLength(n) => {
                write!(f, "length {n} not minimally encoded (RFC 6455 §5.2)")
            }
            FrameError::LengthMsbSet => {
                write!(f, "64-bit length with its high bit set (RFC 6455 §5.2)")
            }
            FrameError::ControlTooLong(op, n) => {
                write!(f, "{op:?} frame of {n} bytes, over 125 (RFC 6455 §5.5)")
            }
            FrameError::FragmentedControl(op) => {
                write!(f, "{op:?} frame without FIN (RFC 6455 §5.5)")
            }
        }
    }
}

impl Error for FrameError {}

/// Parses a server frame's header from the start of `buf`: `Ok(None)` while it is
/// incomplete. A rule is checked as soon as the bytes that can break it are there (the
/// mask bit and a control frame's FIN with the first two bytes).
#[inline]
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let (b0, b1) = (*b0, *b1);
    if b1 & MASK != 0 {
        return Err(FrameError::Masked);
    }
    let fin = b0 & FIN != 0;
    let opcode = OpCode::from_bits(b0);
    if opcode.is_control() && !fin {
        return Err(FrameError::FragmentedControl(opcode));
    }
    let (payload_len, ext) = match b1 & 0x7f {
        126 => {
            let Some(&[hi, lo]) = rest.first_chunk::<2>() else {
                return Ok(None);
            };
            let n = u64::from(u16::from_be_bytes([hi, lo]));
            if n < 126 {
                return Err(FrameError::NonMinimalLength(n));
            }
            (n, 2)
        }
        127 => {
            let Some(bytes) = rest.first_chunk::<8>() else {
                return Ok(None);
            };
            let n = u64::from_be_bytes(*bytes);
            if n >> 63 != 0 {
                return Err(FrameError::LengthMsbSet);
            }
            if n <= u64::from(u16::MAX) {
                return Err(FrameError::NonMinimalLength(n));
            }
            (n, 8)
        }
        n => (u64::from(n), 0),
    };
    if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD {
        return Err(FrameError::ControlTooLong(opcode, payload_len));
    }
    Ok(Some(Header {
        fin,
        rsv: b0 & RSV_BITS,
        opcode,
        payload_len,
        len: 2 + ext,
    }))
}

/// Parses a whole server frame from the start of `buf`: `Ok(None)` until all of it is
/// there (use [`parse_header`] to see a long frame's length before it arrives).
#[inline]
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, FrameError> {
    let Some(header) = parse_header(buf)? else {
        return Ok(None);
    };
    let end = usize::try_from(header.payload_len)
        .ok()
        .and_then(|n| n.checked_add(header.len));
    let Some(payload) = end.and_then(|end| buf.get(header.len..end)) else {
        return Ok(None);
    };
    Ok(Some(Frame {
        fin: header.fin,
        rsv: header.rsv,
        opcode: header.opcode,
        payload,
        header_len: header.len,
        len: header.len + payload.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The masking key of RFC 6455 §5.7.
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// §5.7: a single-frame unmasked text message "Hello".
    const HELLO: &[u8] = &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    /// §5.7: a single-frame masked text message "Hello".
    const HELLO_MASKED: &[u8] = &[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    /// §5.7: a fragmented unmasked text message, "Hel" then "lo".
    const HEL: &[u8] = &[0x01, 0x03, 0x48, 0x65, 0x6c];
    const LO: &[u8] = &[0x80, 0x02, 0x6c, 0x6f];
    /// §5.7: an unmasked Ping "Hello".
    const PING: &[u8] = &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    /// §5.7: a masked Pong "Hello" (the answer to that Ping).
    const PONG_MASKED: &[u8] = &[
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    /// §5.7: 256 bytes of binary data in a single unmasked frame.
    fn binary_256() -> Vec<u8> {
        let mut frame = vec![0x82, 0x7E, 0x01, 0x00];
        frame.extend((0..=255u8).rev());
        frame
    }

    /// §5.7: 64 KiB of binary data in a single unmasked frame.
    fn binary_64k() -> Vec<u8> {
        let mut frame = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        frame.extend((0..65536u32).map(|i| (i * 7) as u8));
        frame
    }

    /// The unmasked examples with what they hold: (bytes, fin, opcode, payload).
    fn server_examples() -> Vec<(Vec<u8>, bool, OpCode, Vec<u8>)> {
        let b256 = binary_256();
        let b64k = binary_64k();
        vec![
            (HELLO.to_vec(), true, OpCode::Text, b"Hello".to_vec()),
            (HEL.to_vec(), false, OpCode::Text, b"Hel".to_vec()),
            (LO.to_vec(), true, OpCode::Continuation, b"lo".to_vec()),
            (PING.to_vec(), true, OpCode::Ping, b"Hello".to_vec()),
            (b256.clone(), true, OpCode::Binary, b256[4..].to_vec()),
            (b64k.clone(), true, OpCode::Binary, b64k[10..].to_vec()),
        ]
    }

    fn whole(buf: &[u8]) -> Frame<'_> {
        parse_frame(buf).unwrap().expect("a whole frame")
    }

    #[test]
    fn parses_the_rfc_examples() {
        for (bytes, fin, opcode, payload) in server_examples() {
            let frame = whole(&bytes);
            assert_eq!(
                (frame.fin, frame.rsv, frame.opcode, frame.payload, frame.len),
                (fin, 0, opcode, &payload[..], bytes.len())
            );
            assert_eq!(&bytes[frame.payload_range()], &payload[..]);
        }
    }

    #[test]
    fn every_split_point_is_partial_until_the_frame_is_whole() {
        for (bytes, ..) in server_examples() {
            for cut in 0..bytes.len() {
                assert_eq!(parse_frame(&bytes[..cut]), Ok(None), "cut at {cut}");
            }
            // Bytes after the frame are left alone.
            let mut more = bytes.clone();
            more.extend_from_slice(HELLO);
            assert_eq!(whole(&more).len, bytes.len());
        }
    }

    #[test]
    fn a_stream_fed_in_two_pieces_at_every_split_point_gives_the_same_frames() {
        let examples = server_examples();
        let stream: Vec<u8> = examples.iter().flat_map(|e| e.0.clone()).collect();
        let want: Vec<(bool, OpCode, Vec<u8>)> = examples
            .iter()
            .map(|(_, fin, op, payload)| (*fin, *op, payload.clone()))
            .collect();
        // Every split of the small frames; a sample across the 64 KiB one.
        let splits = (0..300).chain((300..stream.len()).step_by(997));
        for split in splits.chain([stream.len()]) {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in [&stream[..split], &stream[split..]] {
                buf.extend_from_slice(piece);
                let mut pos = 0;
                while let Some(frame) = parse_frame(&buf[pos..]).unwrap() {
                    got.push((frame.fin, frame.opcode, frame.payload.to_vec()));
                    pos += frame.len;
                }
                buf.drain(..pos);
            }
            assert!(buf.is_empty(), "split {split}: {} bytes left", buf.len());
            assert!(got == want, "split {split}");
        }
    }

    #[test]
    fn encodes_the_rfc_examples() {
        let mut out = Vec::new();
        encode_frame(true, 0, OpCode::Text, Some(KEY), b"Hello", &mut out);
        assert_eq!(out, HELLO_MASKED);
        out.clear();
        encode_client_frame(OpCode::Pong, b"Hello", KEY, &mut out);
        assert_eq!(out, PONG_MASKED);
        for (bytes, fin, opcode, payload) in server_examples() {
            out.clear();
            encode_frame(fin, 0, opcode, None, &payload, &mut out);
            assert_eq!(out, bytes, "{opcode:?} of {} bytes", payload.len());
        }
    }

    #[test]
    fn masked_frames_unmask_to_their_payload_at_every_length_class() {
        for len in [0usize, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let mut out = Vec::new();
            encode_frame(false, RSV1, OpCode::Binary, Some(KEY), &payload, &mut out);
            assert_eq!(out[0], RSV1 | 0x2, "{len}");
            assert_eq!(header_len(out[1]), out.len() - len, "{len}");
            let mut data = out[out.len() - len..].to_vec();
            apply_mask(&mut data, KEY);
            assert!(data == payload, "{len}");
        }
    }

    #[test]
    fn apply_mask_is_the_rfc_formula() {
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut data = original.clone();
            apply_mask(&mut data, KEY);
            let want: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ KEY[i % 4])
                .collect();
            assert_eq!(data, want, "{len}");
        }
    }

    #[test]
    fn wide_lengths_are_written_as_asked() {
        let mut out = Vec::new();
        encode_header(
            true,
            0,
            OpCode::Text,
            Some(KEY),
            Length::Wide16(5),
            &mut out,
        );
        assert_eq!(out, [0x81, 0xFE, 0, 5, 0x37, 0xfa, 0x21, 0x3d]);
        out.clear();
        encode_header(
            true,
            0,
            OpCode::Binary,
            None,
            Length::Wide64(1 << 63 | 5),
            &mut out,
        );
        assert_eq!(out, [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(parse_header(&out), Err(FrameError::LengthMsbSet));
    }

    #[test]
    fn rules_are_checked_as_soon_as_their_bytes_are_there() {
        // A masked frame: after two bytes.
        assert_eq!(parse_frame(&HELLO_MASKED[..2]), Err(FrameError::Masked));
        assert_eq!(parse_frame(HELLO_MASKED), Err(FrameError::Masked));
        // A fragmented ping: after two bytes.
        assert_eq!(
            parse_header(&[0x09, 0x05]),
            Err(FrameError::FragmentedControl(OpCode::Ping))
        );
        // Non-minimal lengths and the MSB: once the extended length is there.
        let wide16 = [0x82, 0x7E, 0, 125];
        assert_eq!(parse_header(&wide16[..3]), Ok(None));
        assert_eq!(
            parse_header(&wide16),
            Err(FrameError::NonMinimalLength(125))
        );
        let wide64 = [0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        assert_eq!(parse_header(&wide64[..9]), Ok(None));
        assert_eq!(
            parse_header(&wide64),
            Err(FrameError::NonMinimalLength(65535))
        );
        // A long control frame.
        assert_eq!(
            parse_header(&[0x8A, 0x7E, 0, 126]),
            Err(FrameError::ControlTooLong(OpCode::Pong, 126))
        );
        // Reserved opcodes and RSV bits are reported, not refused.
        let header = parse_header(&[0xF3, 0x00]).unwrap().unwrap();
        assert_eq!(
            (header.rsv, header.opcode, header.len),
            (RSV_BITS, OpCode::Reserved(3), 2)
        );
        assert!(OpCode::from_bits(0xB).is_control());
    }

    #[test]
    fn opcodes_round_trip_through_their_bits() {
        for bits in 0..16u8 {
            let op = OpCode::from_bits(bits);
            assert_eq!(op.bits(), bits);
            assert_eq!(u8::from(op), bits);
            assert_eq!(op.is_control(), bits >= 8);
            assert_eq!(op.is_reserved(), !matches!(bits, 0..=2 | 8..=10));
        }
        assert_eq!(OpCode::from_bits(0x81), OpCode::Text);
    }
}
