//! A message encoded once for many recipients: the bytes, written once into the loop's
//! turn buffer when small or shared among the queues when large, and for WebSocket
//! messages compressed once per window size for the recipients that negotiated
//! permessage-deflate.

use crate::server::codecs::Codecs;
use crate::server::connection::Connection;
use crate::server::message::Message;
use crate::server::outbox::{TurnBuffer, TurnRange};
use crate::ws::frame::{encode_frame, OpCode};
use std::sync::Arc;

/// Frames up to this size go into the turn buffer (where a turn's consecutive messages
/// make one range per recipient); larger ones are shared. (What the kernel does not take
/// at once is copied into the recipient's queue, so the copies of a slow reader are of
/// frames this small; a shared frame stays shared.)
const SHARE_ABOVE: usize = 4096;

/// Where the bytes of a [`Form`] live once queued somewhere.
enum Place {
    /// Not queued yet.
    Nowhere,
    /// In the loop's turn buffer.
    Turn(TurnRange),
    /// The turn buffer is full: copied into each queue.
    Copied,
}

/// One encoding of a message: the bytes, its place in the turn buffer, and a shared
/// copy once one is needed.
struct Form {
    bytes: Vec<u8>,
    place: Place,
    shared: Option<Arc<[u8]>>,
}

impl Form {
    fn new(bytes: Vec<u8>) -> Self {
        let shared = (bytes.len() > SHARE_ABOVE).then(|| Arc::from(&bytes[..]));
        Form {
            bytes,
            place: Place::Nowhere,
            shared,
        }
    }

    /// Queues these bytes for `conn`: large ones shared, small ones as a range of the
    /// turn buffer (copied once, on first use), except into congested queues, which get
    /// a droppable shared copy made on first need.
    fn queue(
        &mut self,
        conn: &mut Connection,
        tag: u32,
        congested_at: usize,
        turn: &mut TurnBuffer,
    ) {
        if conn.outbox.is_congested(congested_at) {
            let shared = self
                .shared
                .get_or_insert_with(|| Arc::from(&self.bytes[..]));
            return conn
                .outbox
                .push_message(tag, &self.bytes, Some(shared), congested_at);
        }
        if let Some(shared) = &self.shared {
            return conn.outbox.push_shared(shared.clone());
        }
        if let Place::Nowhere = self.place {
            self.place = match turn.append(&self.bytes) {
                Some(range) => Place::Turn(range),
                None => Place::Copied,
            };
        }
        match self.place {
            Place::Turn(range) => conn.outbox.push_turn(range),
            _ => conn.outbox.push_bytes(&self.bytes),
        }
    }
}

/// A message encoded once for many recipients.
pub struct Encoded<'a> {
    plain: Form,
    /// The opcode and payload to compress, for WebSocket messages.
    source: Option<(OpCode, &'a [u8])>,
    /// Compressed frames by window size.
    deflated: Vec<(u8, Form)>,
    congested_at: usize,
}

impl<'a> Encoded<'a> {
    /// Bytes that go as they are (an SSE event, say), never compressed; queues of
    /// `congested_at` bytes or more keep them as a droppable message.
    pub fn bytes(bytes: Vec<u8>, congested_at: usize) -> Self {
        Encoded {
            plain: Form::new(bytes),
            source: None,
            deflated: Vec::new(),
            congested_at,
        }
    }

    /// A WebSocket message, which recipients that negotiated permessage-deflate get
    /// compressed.
    pub fn message(msg: Message<'a>, congested_at: usize) -> Self {
        Encoded::frame(opcode_of(&msg), msg.as_bytes(), congested_at)
    }

    /// A WebSocket message of `opcode` carrying `payload`, which recipients that
    /// negotiated permessage-deflate get compressed.
    pub fn frame(opcode: OpCode, payload: &'a [u8], congested_at: usize) -> Self {
        let mut frame = Vec::new();
        encode_frame(opcode, payload, &mut frame);
        Encoded {
            source: Some((opcode, payload)),
            ..Encoded::bytes(frame, congested_at)
        }
    }

    /// The message's payload length (before framing and compression); for bytes that go
    /// as they are, their length.
    pub fn payload_len(&self) -> usize {
        self.source
            .map_or(self.plain.bytes.len(), |(_, payload)| payload.len())
    }

    /// Queues the message for `conn` as a message tagged `tag`.
    pub(crate) fn queue(
        &mut self,
        conn: &mut Connection,
        tag: u32,
        codecs: &mut Codecs,
        turn: &mut TurnBuffer,
    ) {
        let at = self.congested_at;
        let Some((opcode, payload)) = self.source else {
            return self.plain.queue(conn, tag, at, turn);
        };
        let Some(deflate) = conn
            .deflate
            .as_deref_mut()
            .filter(|d| codecs.compresses(d, payload.len()))
        else {
            return self.plain.queue(conn, tag, at, turn);
        };
        let Some(bits) = Codecs::share_key(deflate) else {
            // The connection keeps a compression context: its own bytes.
            let mut frame = Vec::new();
            codecs.frame(deflate, opcode, payload, &mut frame);
            return if conn.outbox.is_congested(at) {
                conn.outbox.push_message_vec(tag, frame)
            } else {
                conn.outbox.push_vec(frame)
            };
        };
        let form = match self.deflated.iter().position(|(b, _)| *b == bits) {
            Some(i) => &mut self.deflated[i].1,
            None => {
                let mut frame = Vec::new();
                codecs.frame(deflate, opcode, payload, &mut frame);
                self.deflated.push((bits, Form::new(frame)));
                &mut self.deflated.last_mut().expect("just pushed").1
            }
        };
        form.queue(conn, tag, at, turn);
    }
}

/// The data opcode for a message.
pub(crate) fn opcode_of(msg: &Message<'_>) -> OpCode {
    if msg.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    }
}
