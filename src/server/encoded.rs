//! A message encoded once for many recipients: the bytes, shared among the queues when
//! large, and for WebSocket messages compressed once per window size for the
//! recipients that negotiated permessage-deflate.

use crate::server::codecs::Codecs;
use crate::server::connection::Connection;
use crate::server::message::Message;
use crate::ws::frame::{encode_frame, OpCode};
use std::sync::Arc;

/// Frames up to this size are copied into each queue (and coalesce with other
/// writes); larger ones are shared.
const SHARE_ABOVE: usize = 1024;

/// One encoding of a message: the bytes, and a shared copy once one is needed.
struct Form {
    bytes: Vec<u8>,
    shared: Option<Arc<[u8]>>,
}

impl Form {
    fn new(bytes: Vec<u8>) -> Self {
        let shared = (bytes.len() > SHARE_ABOVE).then(|| Arc::from(&bytes[..]));
        Form { bytes, shared }
    }

    /// Queues these bytes for `conn`: large ones shared, small ones copied (where they
    /// coalesce), except into congested queues, which get a shared copy made on first need.
    fn queue(&mut self, conn: &mut Connection, tag: u32, congested_at: usize) {
        if conn.outbox.is_congested(congested_at) && self.shared.is_none() {
            self.shared = Some(Arc::from(&self.bytes[..]));
        }
        conn.outbox
            .push_message(tag, &self.bytes, self.shared.as_ref(), congested_at);
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

    /// Queues the message for `conn` as a message tagged `tag`.
    pub(crate) fn queue(&mut self, conn: &mut Connection, tag: u32, codecs: &mut Codecs) {
        let at = self.congested_at;
        let Some((opcode, payload)) = self.source else {
            return self.plain.queue(conn, tag, at);
        };
        let Some(deflate) = conn
            .deflate
            .as_deref_mut()
            .filter(|d| codecs.compresses(d, payload.len()))
        else {
            return self.plain.queue(conn, tag, at);
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
        form.queue(conn, tag, at);
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
