//! The per-connection frame decoder and message assembler (RFC 6455 §5, §6.2).
//!
//! Sans-IO: [`Decoder::decode`] takes the bytes that arrived, unmasks them in place and
//! returns at most one [`Event`] per call together with how many bytes it consumed.
//! It never writes; answering pings and closes is the connection's job.
//!
//! An unfragmented frame that arrived whole is handed out as a slice of the input (no
//! copy). Fragments and frames cut by a read are copied into an assembly buffer that
//! exists only while the message is incomplete. Text is checked as it arrives, so an
//! invalid sequence fails the connection at once, even in the first fragment.

use crate::ws::close::{CloseCode, ClosePayload};
use crate::ws::error::ProtocolError;
use crate::ws::frame::{FrameHeader, OpCode, Status, MAX_HEADER_LEN, RSV1};
use crate::ws::mask::apply_mask;
use crate::ws::utf8::Utf8State;
use std::borrow::Cow;
use std::ops::Deref;

/// Size limits the decoder enforces as soon as a header announces a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload of one frame.
    pub max_frame: usize,
    /// The largest reassembled message.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 16 << 20,
            max_message: 16 << 20,
        }
    }
}

/// A payload: borrowed from the read buffer when the frame arrived whole, owned when it
/// had to be assembled.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Unmasked in place in the caller's buffer.
    Borrowed(&'a [u8]),
    /// Assembled from fragments or from several reads.
    Owned(Vec<u8>),
}

impl Deref for Payload<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }
}

/// What a complete frame or message means for the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message: borrowed when it arrived whole, else assembled.
    Text(Cow<'a, str>),
    /// A whole binary message.
    Binary(Payload<'a>),
    /// A ping: answer with a pong carrying the same payload (§5.5.2).
    Ping(Payload<'a>),
    /// A pong (§5.5.3).
    Pong(Payload<'a>),
    /// A close frame whose body is valid (parse it with [`parse_close_payload`]).
    Close(Payload<'a>),
    /// A whole message sent compressed (RSV1 on its first frame, RFC 7692 §6): inflate
    /// it; a text message's UTF-8 is checked only then.
    Compressed {
        /// Whether it is a text message.
        text: bool,
        /// The compressed payload of all its frames.
        data: Payload<'a>,
    },
}

/// The frame whose payload is still arriving.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    len: u64,
    read: u64,
}

/// A data message that is being assembled.
#[derive(Debug)]
struct Assembly {
    text: bool,
    /// RSV1 was set on the first frame: the data is compressed (checked once inflated).
    compressed: bool,
    data: Vec<u8>,
    utf8: Utf8State,
}

/// What a connection holds between reads when a read ended inside a frame or message.
#[derive(Debug, Default)]
struct Partial {
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    frame: Option<FrameInProgress>,
    message: Option<Assembly>,
    control: Vec<u8>,
}

impl Partial {
    fn is_empty(&self) -> bool {
        self.header_len == 0 && self.frame.is_none() && self.message.is_none()
    }
}

/// Decoder state for one connection: 16 bytes inline, and heap memory only while a
/// frame or message is cut across reads.
#[derive(Debug, Default)]
pub struct Decoder {
    partial: Option<Box<Partial>>,
    /// RSV bits that a negotiated extension gives a meaning to.
    rsv_allowed: u8,
}

impl Decoder {
    /// A decoder with no extension negotiated.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Accepts RSV1 on the first frame of a data message: permessage-deflate was
    /// negotiated (RFC 7692 §6).
    pub fn allow_compression(&mut self) {
        self.rsv_allowed |= RSV1;
    }

    /// Whether the decoder holds part of a frame or message.
    pub fn is_mid_message(&self) -> bool {
        self.partial.is_some()
    }

    /// The state kept between reads, created on first use.
    fn partial(&mut self) -> &mut Partial {
        self.partial.get_or_insert_with(Box::default)
    }

    /// Gives the between-reads state back once it holds nothing.
    fn release_if_idle(&mut self) {
        if self.partial.as_ref().is_some_and(|p| p.is_empty()) {
            self.partial = None;
        }
    }

    /// Decodes from `input`, unmasking in place. Returns the bytes consumed and the event
    /// completed, if any. Call again with the rest until everything is consumed.
    pub fn decode<'a>(
        &mut self,
        input: &'a mut [u8],
        limits: &Limits,
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let mut pos = 0;
        if self.partial.as_ref().is_none_or(|p| p.frame.is_none()) {
            let Some((header, used)) = self.take_header(input)? else {
                return Ok((input.len(), None));
            };
            self.check(&header, limits)?;
            pos = used;
            let len = header.payload_len as usize;
            let whole = input.len() - pos >= len;
            if whole
                && (header.opcode.is_control()
                    || (header.fin && header.opcode != OpCode::Continuation))
            {
                let payload = &mut input[pos..pos + len];
                apply_mask(payload, header.mask.unwrap_or_default(), 0);
                let event = if header.rsv & RSV1 != 0 {
                    Event::Compressed {
                        text: header.opcode == OpCode::Text,
                        data: Payload::Borrowed(payload),
                    }
                } else {
                    complete_frame(header.opcode, Payload::Borrowed(payload))?
                };
                self.release_if_idle();
                return Ok((pos + len, Some(event)));
            }
            self.start_frame(&header);
        }
        let (taken, event) = self.continue_frame(&mut input[pos..])?;
        self.release_if_idle();
        Ok((pos + taken, event))
    }

    /// The next frame header: from `input`, or from the bytes kept from an earlier read
    /// completed by `input`. `None` when the header is still incomplete (input kept).
    fn take_header(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let kept = self.partial.as_ref().map_or(0, |p| p.header_len as usize);
        if kept == 0 {
            return match FrameHeader::decode(input)? {
                Status::Complete(header, used) => Ok(Some((header, used))),
                Status::Partial => {
                    // A partial header is shorter than the longest header: it fits.
                    let partial = self.partial();
                    partial.header[..input.len()].copy_from_slice(input);
                    partial.header_len = input.len() as u8;
                    Ok(None)
                }
            };
        }
        let partial = self.partial();
        let copied = (MAX_HEADER_LEN - kept).min(input.len());
        partial.header[kept..kept + copied].copy_from_slice(&input[..copied]);
        match FrameHeader::decode(&partial.header[..kept + copied])? {
            Status::Complete(header, used) => {
                partial.header_len = 0;
                Ok(Some((header, used - kept)))
            }
            Status::Partial => {
                partial.header_len = (kept + copied) as u8;
                Ok(None)
            }
        }
    }

    /// The rules that depend on the connection's state (§5.1, §5.2, §5.4) and the limits.
    fn check(&self, header: &FrameHeader, limits: &Limits) -> Result<(), ProtocolError> {
        // §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
        if header.mask.is_none() {
            return Err(ProtocolError::UnmaskedFrame);
        }
        // §5.2: "If a nonzero value is received and none of the negotiated extensions defines
        // the meaning of such a nonzero value, the receiving endpoint MUST _Fail_".
        if header.rsv & !self.rsv_allowed != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        // RFC 7692 §6: RSV1 marks a message, so it is set on the first frame only, never on
        // a continuation (§6.1) or control frame (§6).
        if header.rsv & RSV1 != 0 && !matches!(header.opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::ReservedBits);
        }
        let message = self.partial.as_ref().and_then(|p| p.message.as_ref());
        match (header.opcode, message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        if header.opcode.is_control() {
            return Ok(());
        }
        let so_far = message.map_or(0, |m| m.data.len() as u64);
        if header.payload_len > limits.max_frame as u64
            || so_far + header.payload_len > limits.max_message as u64
        {
            return Err(ProtocolError::MessageTooBig);
        }
        Ok(())
    }

    /// Records a frame whose payload will arrive in pieces; opens an assembly for data.
    fn start_frame(&mut self, header: &FrameHeader) {
        let partial = self.partial();
        partial.frame = Some(FrameInProgress {
            opcode: header.opcode,
            fin: header.fin,
            mask: header.mask.unwrap_or_default(),
            len: header.payload_len,
            read: 0,
        });
        if matches!(header.opcode, OpCode::Text | OpCode::Binary) {
            partial.message = Some(Assembly {
                text: header.opcode == OpCode::Text,
                compressed: header.rsv & RSV1 != 0,
                data: Vec::new(),
                utf8: Utf8State::default(),
            });
        }
    }

    /// Takes as much of the current frame's payload as `input` holds. Returns the bytes
    /// taken and the event, if the frame (and for data, the message) is now complete.
    fn continue_frame<'a>(
        &mut self,
        input: &mut [u8],
    ) -> Result<(usize, Option<Event<'a>>), ProtocolError> {
        let Some(partial) = self.partial.as_deref_mut() else {
            return Ok((0, None));
        };
        let Some(frame) = partial.frame.as_mut() else {
            return Ok((0, None));
        };
        let take = (frame.len - frame.read).min(input.len() as u64) as usize;
        let chunk = &mut input[..take];
        apply_mask(chunk, frame.mask, (frame.read % 4) as usize);
        frame.read += take as u64;
        let frame = *frame;
        if frame.opcode.is_control() {
            partial.control.extend_from_slice(chunk);
        } else {
            let message = partial
                .message
                .as_mut()
                .expect("data frame without assembly");
            if message.text && !message.compressed {
                message
                    .utf8
                    .feed(chunk)
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            message.data.extend_from_slice(chunk);
        }
        if frame.read < frame.len {
            return Ok((take, None));
        }
        partial.frame = None;
        if frame.opcode.is_control() {
            let payload = Payload::Owned(std::mem::take(&mut partial.control));
            return Ok((take, Some(complete_frame(frame.opcode, payload)?)));
        }
        if !frame.fin {
            return Ok((take, None));
        }
        let mut message = partial.message.take().expect("data frame without assembly");
        if message.compressed {
            let event = Event::Compressed {
                text: message.text,
                data: Payload::Owned(message.data),
            };
            return Ok((take, Some(event)));
        }
        message
            .utf8
            .finish()
            .map_err(|_| ProtocolError::InvalidUtf8)?;
        let event = if message.text {
            // Checked piece by piece already; the standard check is what proves it to the type.
            let text = String::from_utf8(message.data).map_err(|_| ProtocolError::InvalidUtf8)?;
            Event::Text(Cow::Owned(text))
        } else {
            Event::Binary(Payload::Owned(message.data))
        };
        Ok((take, Some(event)))
    }
}

/// The event for a frame whose whole payload is unmasked: checks text and close bodies.
fn complete_frame(opcode: OpCode, payload: Payload<'_>) -> Result<Event<'_>, ProtocolError> {
    Ok(match opcode {
        OpCode::Text => Event::Text(match payload {
            Payload::Borrowed(bytes) => {
                Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8)?)
            }
            Payload::Owned(bytes) => {
                Cow::Owned(String::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8)?)
            }
        }),
        OpCode::Binary => Event::Binary(payload),
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong(payload),
        OpCode::Close => {
            parse_close_payload(&payload)?;
            Event::Close(payload)
        }
        OpCode::Continuation => unreachable!("continuations complete through an assembly"),
    })
}

/// Parses a Close frame body (§5.5.1): empty, or a 2-byte code followed by UTF-8.
pub fn parse_close_payload(payload: &[u8]) -> Result<ClosePayload<'_>, ProtocolError> {
    match payload {
        [] => Ok(ClosePayload {
            code: CloseCode::NO_STATUS,
            reason: "",
        }),
        // "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned integer".
        [_] => Err(ProtocolError::CloseBodyTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let code = CloseCode::from(code);
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(ClosePayload { code, reason })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_masked_frame;
    use proptest::prelude::*;

    /// An owned copy of an event, for comparing runs.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Vec<u8>),
        Compressed(bool, Vec<u8>),
    }

    fn own(e: Event<'_>) -> Ev {
        match e {
            Event::Text(t) => Ev::Text(t.as_bytes().to_vec()),
            Event::Binary(p) => Ev::Binary(p.to_vec()),
            Event::Ping(p) => Ev::Ping(p.to_vec()),
            Event::Pong(p) => Ev::Pong(p.to_vec()),
            Event::Close(p) => Ev::Close(p.to_vec()),
            Event::Compressed { text, data } => Ev::Compressed(text, data.to_vec()),
        }
    }

    /// Feeds `bytes` in the given pieces; returns the events, or the first error.
    fn run(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Ev>, ProtocolError> {
        run_on(Decoder::new(), bytes, cuts)
    }

    /// [`run`] with permessage-deflate negotiated.
    fn run_compressed(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Ev>, ProtocolError> {
        let mut dec = Decoder::new();
        dec.allow_compression();
        run_on(dec, bytes, cuts)
    }

    fn run_on(mut dec: Decoder, bytes: &[u8], cuts: &[usize]) -> Result<Vec<Ev>, ProtocolError> {
        let limits = Limits {
            max_frame: 1 << 20,
            max_message: 1 << 20,
        };
        let mut events = Vec::new();
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| (*c).min(bytes.len())).collect();
        bounds.sort_unstable();
        bounds.push(bytes.len());
        for end in bounds {
            let mut piece = bytes[start..end.max(start)].to_vec();
            let mut pos = 0;
            while pos < piece.len() {
                let (used, ev) = dec.decode(&mut piece[pos..], &limits)?;
                assert!(used > 0, "no progress");
                pos += used;
                events.extend(ev.map(own));
            }
            start = end.max(start);
        }
        Ok(events)
    }

    fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_masked_frame(fin, op, payload, [1, 2, 3, 4], &mut out);
        out
    }

    #[test]
    fn whole_frame_is_borrowed() {
        let mut bytes = frame(true, OpCode::Text, b"Hello");
        let mut dec = Decoder::new();
        let (used, ev) = dec.decode(&mut bytes, &Limits::default()).unwrap();
        assert_eq!(used, 11);
        assert_eq!(ev, Some(Event::Text(Cow::Borrowed("Hello"))));
        assert!(!dec.is_mid_message());
    }

    #[test]
    fn fragments_with_a_ping_between_them() {
        let mut bytes = frame(false, OpCode::Text, b"Hel");
        bytes.extend(frame(true, OpCode::Ping, b"p"));
        bytes.extend(frame(false, OpCode::Continuation, b""));
        bytes.extend(frame(true, OpCode::Continuation, b"lo"));
        let want = vec![Ev::Ping(b"p".to_vec()), Ev::Text(b"Hello".to_vec())];
        for cut in 0..=bytes.len() {
            assert_eq!(run(&bytes, &[cut]).unwrap(), want, "cut at {cut}");
        }
    }

    /// A masked frame with RSV1 set.
    fn rsv1(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut f = frame(fin, op, payload);
        f[0] |= 0x40;
        f
    }

    #[test]
    fn compressed_messages_are_assembled_unchecked_around_control_frames() {
        // Not valid UTF-8 as it stands: only the inflated text is checked.
        let mut bytes = rsv1(false, OpCode::Text, &[0xf2, 0x48]);
        bytes.extend(frame(true, OpCode::Ping, b"p"));
        bytes.extend(frame(true, OpCode::Continuation, &[0xcd, 0xc9, 0xff]));
        bytes.extend(rsv1(true, OpCode::Binary, &[0xff]));
        bytes.extend(frame(true, OpCode::Text, b"plain"));
        let want = vec![
            Ev::Ping(b"p".to_vec()),
            Ev::Compressed(true, vec![0xf2, 0x48, 0xcd, 0xc9, 0xff]),
            Ev::Compressed(false, vec![0xff]),
            Ev::Text(b"plain".to_vec()),
        ];
        for cut in 0..=bytes.len() {
            assert_eq!(
                run_compressed(&bytes, &[cut]).unwrap(),
                want,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn rsv1_only_on_the_first_frame_of_a_message() {
        let mut on_continuation = frame(false, OpCode::Text, b"a");
        on_continuation.extend(rsv1(true, OpCode::Continuation, b"b"));
        for bad in [
            on_continuation,
            rsv1(true, OpCode::Ping, b""),
            rsv1(true, OpCode::Close, b""),
        ] {
            assert_eq!(run_compressed(&bad, &[]), Err(ProtocolError::ReservedBits));
        }
        // Without the extension, RSV1 is never allowed.
        assert_eq!(
            run(&rsv1(true, OpCode::Text, b"x"), &[]),
            Err(ProtocolError::ReservedBits)
        );
    }

    #[test]
    fn connection_rules() {
        let mut unmasked = vec![0x81, 0x00];
        assert_eq!(
            Decoder::new().decode(&mut unmasked, &Limits::default()),
            Err(ProtocolError::UnmaskedFrame)
        );
        let mut rsv = frame(true, OpCode::Text, b"");
        rsv[0] |= 0x40;
        assert_eq!(run(&rsv, &[]), Err(ProtocolError::ReservedBits));
        assert_eq!(
            run(&frame(true, OpCode::Continuation, b"x"), &[]),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut two_starts = frame(false, OpCode::Text, b"a");
        two_starts.extend(frame(true, OpCode::Binary, b"b"));
        assert_eq!(
            run(&two_starts, &[]),
            Err(ProtocolError::ExpectedContinuation)
        );
        let mut close = frame(true, OpCode::Close, &[0x03]);
        assert_eq!(run(&close, &[]), Err(ProtocolError::CloseBodyTooShort));
        close = frame(true, OpCode::Close, &1004u16.to_be_bytes());
        assert_eq!(run(&close, &[]), Err(ProtocolError::InvalidCloseCode(1004)));
    }

    #[test]
    fn invalid_utf8_fails_in_the_first_fragment() {
        // The first fragment alone is already invalid; the message never completes.
        let bytes = frame(false, OpCode::Text, b"ok\xed\xa0\x80");
        assert_eq!(run(&bytes, &[]), Err(ProtocolError::InvalidUtf8));
        // A single frame whose payload arrives in pieces fails before its end arrives.
        let whole = frame(
            true,
            OpCode::Text,
            b"\xce\xba\xf4\x90\x80\x80 and more text",
        );
        let first_piece = &whole[..6 + 4];
        assert_eq!(run(first_piece, &[]), Err(ProtocolError::InvalidUtf8));
        // Split across fragments, cut inside a character.
        let mut split = frame(false, OpCode::Text, b"\xe2\x82");
        split.extend(frame(true, OpCode::Continuation, b"\xac"));
        assert_eq!(
            run(&split, &[]).unwrap(),
            vec![Ev::Text("€".as_bytes().to_vec())]
        );
        let mut bad = frame(false, OpCode::Text, b"\xe2\x82");
        bad.extend(frame(true, OpCode::Continuation, b""));
        assert_eq!(run(&bad, &[]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn limits_apply_as_soon_as_the_header_arrives() {
        let limits = Limits {
            max_frame: 10,
            max_message: 15,
        };
        let mut dec = Decoder::new();
        // Only the header of an 11-byte frame: refused before any payload.
        let mut header = frame(true, OpCode::Binary, &[0; 11])[..6].to_vec();
        assert_eq!(
            dec.decode(&mut header, &limits),
            Err(ProtocolError::MessageTooBig)
        );
        let mut dec = Decoder::new();
        let mut bytes = frame(false, OpCode::Binary, &[0; 10]);
        bytes.extend(frame(true, OpCode::Continuation, &[0; 6]));
        let mut pos = 0;
        let result = loop {
            match dec.decode(&mut bytes[pos..], &limits) {
                Ok((used, _)) => pos += used,
                Err(e) => break e,
            }
        };
        assert_eq!(result, ProtocolError::MessageTooBig);
    }

    /// One frame of a generated stream.
    fn arb_message() -> impl Strategy<Value = (Vec<Vec<u8>>, bool)> {
        (
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4),
            any::<bool>(),
        )
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_events(
            messages in proptest::collection::vec(arb_message(), 1..6),
            cuts in proptest::collection::vec(0usize..3000, 0..8),
        ) {
            let mut bytes = Vec::new();
            let mut want = Vec::new();
            for (fragments, text) in &messages {
                let last = fragments.len() - 1;
                let mut whole = Vec::new();
                for (i, part) in fragments.iter().enumerate() {
                    let op = match (i, text) { (0, true) => OpCode::Text, (0, false) => OpCode::Binary, _ => OpCode::Continuation };
                    // Text fragments carry hex so they stay UTF-8.
                    let part: Vec<u8> = if *text { part.iter().map(|b| b"0123456789abcdef"[(*b & 15) as usize]).collect() } else { part.clone() };
                    bytes.extend(frame(i == last, op, &part));
                    whole.extend(part);
                    if i == 0 && last > 0 {
                        bytes.extend(frame(true, OpCode::Ping, b"mid"));
                        want.push(Ev::Ping(b"mid".to_vec()));
                    }
                }
                want.push(if *text { Ev::Text(whole) } else { Ev::Binary(whole) });
            }
            prop_assert_eq!(run(&bytes, &cuts).unwrap(), want);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                    cuts in proptest::collection::vec(0usize..200, 0..4)) {
            let _ = run(&bytes, &cuts);
        }
    }
}

#[cfg(test)]
mod close_payload_tests {
    use super::*;

    #[test]
    fn empty_body_means_no_status() {
        assert_eq!(parse_close_payload(&[]).unwrap().code, CloseCode::NO_STATUS);
    }

    #[test]
    fn one_byte_body_is_a_protocol_error() {
        assert_eq!(
            parse_close_payload(&[3]),
            Err(ProtocolError::CloseBodyTooShort)
        );
    }

    #[test]
    fn codes_follow_the_registry() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(CloseCode::from(ok).is_sendable(), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode::from(bad).is_sendable(), "{bad}");
            let body = u16::to_be_bytes(bad);
            assert_eq!(
                parse_close_payload(&body),
                Err(ProtocolError::InvalidCloseCode(bad))
            );
        }
    }

    #[test]
    fn reason_must_be_utf8() {
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidCloseReason)
        );
        let p = parse_close_payload(b"\x03\xe8bye").unwrap();
        assert_eq!((p.code, p.reason), (CloseCode::NORMAL, "bye"));
    }
}
