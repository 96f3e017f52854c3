//! permessage-deflate on the loop: which codec a connection's messages go through, and
//! compressing a broadcast once for every recipient that agreed to the same window.
//!
//! By default the server answers `server_no_context_takeover` and
//! `client_no_context_takeover`: every message starts from an empty window, so one
//! compressor (per window size) and one decompressor serve the whole loop, a broadcast is
//! compressed once, and a connection costs nothing beyond its [`Deflate`] record (a few
//! bytes, boxed). With context takeover configured, a connection gets its own codecs,
//! allocated when it first needs them (see [`crate::ws::deflate`] for their sizes).

use crate::ws::deflate::{Compressor, Decompressor, DeflateConfig, InflateError, Params};
use crate::ws::frame::{FrameHeader, OpCode, RSV1};

/// What one connection agreed to, and its own codecs when contexts are kept.
#[derive(Debug)]
pub struct Deflate {
    /// The negotiated parameters.
    pub params: Params,
    compressor: Option<Box<Compressor>>,
    decompressor: Option<Box<Decompressor>>,
}

impl Deflate {
    /// A connection that negotiated `params`; no codec is allocated yet.
    pub fn new(params: Params) -> Self {
        Deflate {
            params,
            compressor: None,
            decompressor: None,
        }
    }
}

/// The loop's shared codecs and the settings they follow.
pub struct Codecs {
    /// One compressor per window size in use, for connections without server context
    /// takeover (they reset after every message).
    shared: Vec<(u8, Compressor)>,
    /// For connections without client context takeover (reset after every message).
    inflater: Option<Box<Decompressor>>,
    level: u32,
    threshold: usize,
}

impl Codecs {
    /// Codecs following `config`; nothing is allocated until a message needs it.
    pub fn new(config: &DeflateConfig) -> Self {
        Codecs {
            shared: Vec::new(),
            inflater: None,
            level: config.level,
            threshold: config.threshold,
        }
    }

    /// Inflates a whole compressed message of a connection that negotiated `deflate`,
    /// stopping at `limit` bytes (the decompression bomb guard).
    pub fn inflate(
        &mut self,
        deflate: &mut Deflate,
        data: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        if deflate.params.client_no_context_takeover {
            let inflater = self
                .inflater
                .get_or_insert_with(|| Box::new(Decompressor::new(15)));
            let result = inflater.inflate(data, true, limit, &mut out);
            inflater.reset(); // the next message may be another connection's
            result?;
        } else {
            let bits = deflate.params.client_max_window_bits;
            deflate
                .decompressor
                .get_or_insert_with(|| Box::new(Decompressor::new(bits)))
                .inflate(data, true, limit, &mut out)?;
        }
        Ok(out)
    }

    /// Whether a message of `len` bytes goes out compressed on `deflate`'s connection.
    pub fn compresses(&self, deflate: &Deflate, len: usize) -> bool {
        len >= self.threshold && deflate.params.server_compresses()
    }

    /// The key under which `deflate`'s compressed frames can be shared with other
    /// connections: its window size when it keeps no server context, else `None`.
    pub fn share_key(deflate: &Deflate) -> Option<u8> {
        let params = &deflate.params;
        params
            .server_no_context_takeover
            .then_some(params.server_max_window_bits)
    }

    /// Appends a whole frame carrying `payload` compressed for `deflate`'s connection
    /// (RSV1 set), or plain if compression would not make it smaller and the connection
    /// keeps no server context. Call only when [`compresses`](Self::compresses) says so.
    pub fn frame(
        &mut self,
        deflate: &mut Deflate,
        opcode: OpCode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let mut body = Vec::with_capacity(payload.len() / 2 + 16);
        let bits = deflate.params.server_max_window_bits;
        let level = self.level;
        if deflate.params.server_no_context_takeover {
            self.shared_compressor(bits)
                .compress(payload, &mut body, true);
        } else {
            deflate
                .compressor
                .get_or_insert_with(|| Box::new(Compressor::new(bits, level)))
                .compress(payload, &mut body, false);
        }
        // Without server context takeover any message may go plain (RSV1 clear), so
        // incompressible data (random, already compressed) is not sent larger.
        let plain = deflate.params.server_no_context_takeover && body.len() >= payload.len();
        let (rsv, body) = if plain {
            (0, payload)
        } else {
            (RSV1, &body[..])
        };
        let (header, len) = FrameHeader::encode(true, rsv, opcode, body.len());
        out.reserve(len + body.len());
        out.extend_from_slice(&header[..len]);
        out.extend_from_slice(body);
    }

    /// The shared compressor for a window of `bits`.
    fn shared_compressor(&mut self, bits: u8) -> &mut Compressor {
        let at = match self.shared.iter().position(|(b, _)| *b == bits) {
            Some(at) => at,
            None => {
                self.shared.push((bits, Compressor::new(bits, self.level)));
                self.shared.len() - 1
            }
        };
        &mut self.shared[at].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::deflate::{negotiate, DeflateConfig};

    fn agreed(offer: &str) -> Deflate {
        let params = negotiate([offer.as_bytes()], &DeflateConfig::default())
            .unwrap()
            .unwrap();
        Deflate::new(params)
    }

    /// The payload of a one-frame message, checking its header: FIN, RSV1, `opcode`.
    fn payload_of(frame: &[u8], opcode: OpCode) -> &[u8] {
        assert_eq!(frame[0], 0x80 | 0x40 | opcode as u8);
        let (len, at) = match frame[1] {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        assert_eq!(frame.len(), at + len);
        &frame[at..]
    }

    #[test]
    fn shared_codecs_round_trip_for_several_connections() {
        let mut codecs = Codecs::new(&DeflateConfig::default());
        let (mut a, mut b) = (agreed("permessage-deflate"), agreed("permessage-deflate"));
        assert!(a.params.server_no_context_takeover && a.params.client_no_context_takeover);
        assert_eq!(Codecs::share_key(&a), Some(15));
        let text = "a chat message that is long enough to be compressed, a chat message".repeat(3);
        assert!(codecs.compresses(&a, text.len()) && !codecs.compresses(&a, 10));
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        codecs.frame(&mut a, OpCode::Text, text.as_bytes(), &mut fa);
        codecs.frame(&mut b, OpCode::Text, text.as_bytes(), &mut fb);
        assert_eq!(fa, fb, "no context: the same bytes for everyone");
        let body = payload_of(&fa, OpCode::Text).to_vec();
        assert!(body.len() < text.len() / 2);
        // Each connection's copy inflates on the shared decompressor, one after the other.
        for d in [&mut a, &mut b] {
            assert_eq!(codecs.inflate(d, &body, 1 << 20).unwrap(), text.as_bytes());
        }
        assert_eq!(codecs.inflate(&mut a, &body, 10), Err(InflateError::TooBig));
        assert_eq!(
            codecs.inflate(&mut b, &body, 1 << 20).unwrap(),
            text.as_bytes()
        );
        assert_eq!(
            codecs.inflate(&mut a, &[0xff, 0xff], 1 << 20),
            Err(InflateError::Corrupt)
        );
        // Incompressible: sent plain rather than larger.
        let noise: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut plain = Vec::new();
        codecs.frame(&mut a, OpCode::Binary, &noise, &mut plain);
        assert_eq!(plain[0], 0x82, "FIN, RSV1 clear, binary");
        assert_eq!(&plain[plain.len() - noise.len()..], &noise[..]);
    }

    #[test]
    fn context_takeover_uses_the_connection_s_own_codecs() {
        let config = DeflateConfig {
            server_context_takeover: true,
            client_context_takeover: true,
            ..DeflateConfig::default()
        };
        let mut codecs = Codecs::new(&config);
        let params = negotiate([&b"permessage-deflate"[..]], &config)
            .unwrap()
            .unwrap();
        let mut d = Deflate::new(params);
        assert_eq!(Codecs::share_key(&d), None);
        let text = b"the same sentence, twice over, shrinks the second time around".repeat(2);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        codecs.frame(&mut d, OpCode::Binary, &text, &mut first);
        codecs.frame(&mut d, OpCode::Binary, &text, &mut second);
        assert!(
            second.len() < first.len(),
            "{} vs {}",
            second.len(),
            first.len()
        );
        // A client keeping its context: our own inflater must keep it too.
        let mut peer = Deflate::new(params);
        let one = payload_of(&first, OpCode::Binary).to_vec();
        let two = payload_of(&second, OpCode::Binary).to_vec();
        assert_eq!(codecs.inflate(&mut peer, &one, 1 << 20).unwrap(), text);
        assert_eq!(codecs.inflate(&mut peer, &two, 1 << 20).unwrap(), text);
    }
}
