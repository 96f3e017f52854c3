//! The per-message codec (RFC 7692 §7.2): [`Compressor`] turns a message into raw DEFLATE
//! without its sync-flush tail, [`Decompressor`] inflates the frames of a compressed
//! message under a size limit.

use super::{MAX_WINDOW_BITS, MIN_DEFLATE_WINDOW_BITS};
use crate::ws::close::CloseCode;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::fmt;

/// §7.2.1: the octets a sync flush ends with; removed by the sender, appended back by the
/// receiver (§7.2.2).
pub(super) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// RFC 1951 §3.2.4: the most bytes one stored (uncompressed) block holds.
const MAX_STORED_BLOCK: usize = 0xffff;

/// The least output room offered to the inflater at a time.
const MIN_INFLATE_ROOM: usize = 1024;

/// Compresses whole messages (RFC 7692 §7.2.1): raw deflate, sync flush, the trailing
/// 00 00 ff ff removed.
///
/// Memory (zlib-rs, memLevel 8, which flate2 does not let us lower): one allocation of
/// 4·2^window bytes (window and chain) + 128 KiB of hash heads + 112 KiB of
/// literal/pending buffers + 3 KiB of state: 371 KiB at window 15, 259 KiB at 12,
/// 245 KiB at 9. Measured resident over 1,000 compressors: 312 KiB each at window 15,
/// 200 KiB at 12, 188 KiB at 9 — window, chain and heads are zeroed at creation, so they
/// are resident at once. A window of 8 or level 0 allocates nothing (stored blocks are
/// written by hand). Hence the default `server_no_context_takeover`: one compressor per
/// window size serves every connection.
pub struct Compressor {
    engine: Engine,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

/// How a [`Compressor`] produces DEFLATE data.
enum Engine {
    /// zlib-rs with the window and level given; `dirty` once it holds history.
    Zlib { deflate: Compress, dirty: bool },
    /// RFC 1951 stored blocks only: no back-references, valid for any window.
    Stored,
}

impl Compressor {
    /// A compressor with an LZ77 window of 2^`window_bits` bytes at zlib `level`.
    ///
    /// `window_bits` 9..=15 (larger is clamped to 15); 8 or less, like level 0, yields
    /// stored blocks, which reference nothing and so fit any window. `level` above 9 is
    /// clamped to 9.
    pub fn new(window_bits: u8, level: u32) -> Self {
        let engine = if window_bits < MIN_DEFLATE_WINDOW_BITS || level == 0 {
            Engine::Stored
        } else {
            let level = Compression::new(level.min(9));
            let bits = window_bits.min(MAX_WINDOW_BITS);
            Engine::Zlib {
                deflate: Compress::new_with_window_bits(level, false, bits),
                dirty: false,
            }
        };
        Compressor { engine }
    }

    /// Appends the compressed form of `payload` to `out`. `reset_after`: no context
    /// takeover → the next message starts from an empty window.
    ///
    /// An empty payload is the single octet `00` (§7.2.3.6). With context takeover the
    /// peer's window must see exactly what this compressor saw: every compressed message
    /// must then be sent, compressed. Only with `reset_after` may the caller drop the
    /// output and send the message uncompressed instead (e.g. when it did not shrink), and
    /// only then may one compressor serve several connections (same or larger agreed
    /// window).
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>, reset_after: bool) {
        match &mut self.engine {
            Engine::Zlib { deflate, dirty } if !payload.is_empty() => {
                *dirty = true;
                let start = out.len();
                if deflate_sync(deflate, payload, out) {
                    out.truncate(out.len() - TAIL.len());
                } else {
                    // Not expected from zlib; still send a valid message and start over.
                    out.truncate(start);
                    deflate.reset();
                    stored_blocks(payload, out);
                }
            }
            // Stored blocks, or an empty message: no history is added either way.
            _ => stored_blocks(payload, out),
        }
        if reset_after {
            self.forget_window();
        }
    }

    /// Starts the next message from an empty window (no context takeover, §7.1.1.1).
    fn forget_window(&mut self) {
        if let Engine::Zlib { deflate, dirty } = &mut self.engine {
            // Resetting zeroes 128 KiB of hash heads: skip it when nothing was added.
            if std::mem::take(dirty) {
                deflate.reset();
            }
        }
    }
}

/// Deflates `input` onto `out` and flushes to a byte boundary (zlib's Z_SYNC_FLUSH).
/// Returns whether the output ends with the empty stored block the flush writes (§7.2.1).
fn deflate_sync(deflate: &mut Compress, mut input: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    loop {
        out.reserve(input.len() / 2 + 64);
        let before = deflate.total_in();
        if deflate
            .compress_vec(input, out, FlushCompress::Sync)
            .is_err()
        {
            return false;
        }
        input = &input[(deflate.total_in() - before) as usize..];
        // zlib: the flush is complete once a call returns with output room to spare.
        if input.is_empty() && out.len() < out.capacity() {
            return out[start..].ends_with(&TAIL);
        }
    }
}

/// §7.2.3.3: `payload` as DEFLATE blocks with no compression, then the header of an empty
/// one whose LEN/NLEN are the removed tail (§7.2.1). "Hello" gives
/// `00 05 00 fa ff 48 65 6c 6c 6f 00`.
fn stored_blocks(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + payload.len() / MAX_STORED_BLOCK * 5 + 6);
    for block in payload.chunks(MAX_STORED_BLOCK) {
        // BFINAL 0, BTYPE 00, padding to the byte, then LEN and NLEN little-endian.
        let len = block.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.push(0x00);
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The message would exceed the limit (close 1009).
    TooBig,
    /// Not valid deflate data (close 1007).
    Corrupt,
}

impl InflateError {
    /// The close code (RFC 6455 §7.4.1) to send when failing the connection for this error.
    pub fn close_code(self) -> CloseCode {
        match self {
            InflateError::TooBig => CloseCode::MESSAGE_TOO_BIG,
            InflateError::Corrupt => CloseCode::INVALID_PAYLOAD,
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InflateError::TooBig => "inflated message too big",
            InflateError::Corrupt => "invalid deflate data",
        })
    }
}

impl std::error::Error for InflateError {}

/// Inflates messages (§7.2.2), frame by frame, with a size limit checked while inflating.
///
/// Memory (zlib-rs): one allocation of 46 KiB (state and a 32 KiB window, whatever the
/// window size). Measured resident over 1,000 decompressors: 18 KiB each when new, 20 KiB
/// after a 1.6 KiB message, 47 KiB once a message of 32 KiB or more has filled the
/// window.
pub struct Decompressor {
    inflate: Decompress,
    /// The message so far ended with a BFINAL block (§7.2.3.4): the rest of it is ignored
    /// and the next message starts a new DEFLATE stream.
    stream_ended: bool,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for a peer that agreed to a window of 2^`window_bits` bytes.
    ///
    /// It always inflates with window 15: that accepts any smaller window, including peers
    /// told 8 whose zlib quietly uses 9, and zlib-rs allocates the full 32 KiB window
    /// anyway.
    pub fn new(_window_bits: u8) -> Self {
        Decompressor {
            inflate: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            stream_ended: false,
        }
    }

    /// Inflates `input` (the payload of one frame of a compressed message) appending to
    /// `out`; on `fin` appends the 00 00 ff ff tail first (§7.2.2). Fails with TooBig as soon
    /// as `out.len()` would exceed `limit` — never inflate the whole thing first
    /// (decompression bomb guard: a 1 KB input that inflates to gigabytes must stop at the
    /// limit, quickly, using memory ~limit).
    ///
    /// `out` holds the message so far (the limit counts its earlier frames); it grows to at
    /// most `limit + 1` bytes (more only if the caller gave it more capacity). After an
    /// error the decompressor is reset; the connection is expected to be failed with
    /// [`InflateError::close_code`]. With `client_no_context_takeover`, calling
    /// [`Decompressor::reset`] after each message is allowed but not needed: a client that
    /// does not take over its context never refers to the kept window.
    pub fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let mut result = self.inflate_data(input, limit, out);
        if fin && result.is_ok() {
            result = self.inflate_data(&TAIL, limit, out);
        }
        if result.is_err() || (fin && self.stream_ended) {
            self.reset();
        }
        result
    }

    /// Forget the window (client_no_context_takeover, or after an error).
    pub fn reset(&mut self) {
        self.inflate.reset(false);
        self.stream_ended = false;
    }

    /// Feeds `input` to the inflater, giving it output room up to `limit + 1` bytes of
    /// `out`, until all of it is consumed and no output is pending.
    fn inflate_data(
        &mut self,
        mut input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        // Every call ends with no output pending, so an empty frame has nothing to give.
        if input.is_empty() {
            return Ok(());
        }
        while !self.stream_ended {
            make_room(out, input.len(), limit)?;
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (self.inflate.total_in() - in_before) as usize;
            let produced = self.inflate.total_out() - out_before;
            input = &input[consumed..];
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            match status {
                // §7.2.3.4: a block with BFINAL set ends the DEFLATE stream.
                Status::StreamEnd => self.stream_ended = true,
                _ if out.len() < out.capacity() => {
                    // Room was left, so the inflater wants input: done if there is none.
                    if input.is_empty() {
                        return Ok(());
                    }
                    if consumed == 0 && produced == 0 {
                        return Err(InflateError::Corrupt);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Makes sure `out` has spare capacity for the inflater without letting it grow past
/// `limit + 1` bytes (one byte over is how the limit is seen to be crossed).
fn make_room(out: &mut Vec<u8>, input_len: usize, limit: usize) -> Result<(), InflateError> {
    let allowed = limit.saturating_add(1).saturating_sub(out.len());
    if allowed == 0 {
        return Err(InflateError::TooBig);
    }
    if out.len() == out.capacity() {
        let guess = out
            .len()
            .max(input_len.saturating_mul(4))
            .max(MIN_INFLATE_ROOM);
        out.reserve_exact(guess.min(allowed));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
