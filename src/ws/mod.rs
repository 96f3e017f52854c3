//! The WebSocket protocol core, sans-IO: everything RFC 6455 and RFC 7692 define, as
//! pure functions and small state machines over `&[u8]`, tested without sockets.
//!
//! | module | owns |
//! |---|---|
//! | [`frame`] | frame headers (§5.2), opcodes, encoding |
//! | [`mask`] | client-to-server masking (§5.3) |
//! | [`utf8`] | incremental UTF-8 validation of text (§8.1) |
//! | [`close`] | close codes (§7.4) and the Close payload (§5.5.1) |
//! | [`error`] | one [`ProtocolError`](error::ProtocolError) per rule a peer can break |
//! | [`decoder`] | the per-connection decoder and message assembler (§5, §6.2) |
//! | [`handshake`] | the opening handshake's rules, accept key and answers (§4.2) |
//! | [`deflate`] | permessage-deflate (RFC 7692): negotiation and codecs |

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;
