//! The wire formats' building blocks, for programs that speak WebSocket, HTTP or the
//! push formats themselves: the fuzz targets, the benchmarks, load generators, and the
//! binary's own HTTP endpoints ([`format`](mod@format)). An embedding program that uses
//! [`Context`](crate::Context) does not need them.

pub use crate::http::{body_length, parse as parse_request, BodyLength, MAX_HEADERS};
pub use crate::push::format;
pub use crate::ws::close::{encode_payload as encode_close_payload, ClosePayload};
pub use crate::ws::decoder::{parse_close_payload, Decoder, Event, Limits, Payload};
pub use crate::ws::deflate::{negotiate, Compressor, Decompressor, InflateError, Params};
pub use crate::ws::frame::{
    encode_frame, encode_masked_frame, FrameHeader, OpCode, Status, MAX_HEADER_LEN, RSV1,
};
pub use crate::ws::handshake::{accept_key, validate_upgrade, write_accept, Upgrade};
pub use crate::ws::mask::{apply_mask, apply_mask_plain};
pub use crate::ws::utf8::Utf8State;
