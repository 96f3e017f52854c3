//! A connection's write queue: frames waiting for the socket, written with one `writev`.
//!
//! Small writes are appended to the last owned chunk so that they leave in one syscall;
//! large broadcast frames are shared (`Arc<[u8]>`) among all recipients' queues. An
//! empty outbox owns no heap memory.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

/// Owned chunks grow by appending up to this size before a new chunk starts.
const COALESCE_LIMIT: usize = 64 << 10;

/// At most this many chunks go into one `writev`.
const MAX_IOVECS: usize = 64;

/// One queued piece of output.
#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(s) => s,
        }
    }
}

/// The bytes a connection still has to send.
#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Chunk>,
    /// How much of the front chunk was already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    queued: usize,
}

impl Outbox {
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// The owned chunk at the back that `extra` more bytes may be appended to.
    fn tail(&mut self, extra: usize) -> &mut Vec<u8> {
        let reuse = matches!(self.chunks.back(), Some(Chunk::Owned(v)) if v.len() + extra <= COALESCE_LIMIT || v.is_empty());
        if !reuse {
            self.chunks
                .push_back(Chunk::Owned(Vec::with_capacity(extra)));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Owned(v)) => v,
            _ => unreachable!("an owned chunk was just ensured"),
        }
    }

    /// Queues a copy of `bytes`, coalescing with what is already queued.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.tail(bytes.len()).extend_from_slice(bytes);
        self.queued += bytes.len();
    }

    /// Lets `fill` append bytes to the tail chunk (for encoding a frame in place).
    pub fn push_with(&mut self, size_hint: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        let tail = self.tail(size_hint);
        let before = tail.len();
        fill(tail);
        self.queued += tail.len() - before;
    }

    /// Queues bytes shared with other connections.
    pub fn push_shared(&mut self, bytes: Arc<[u8]>) {
        if bytes.is_empty() {
            return;
        }
        self.queued += bytes.len();
        self.chunks.push_back(Chunk::Shared(bytes));
    }

    /// Sends `parts` (at most four) in order: straight to `sink` when nothing is queued (no copy), and
    /// queues whatever the kernel did not take. With bytes already queued, queues all.
    pub fn send_now(&mut self, sink: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
        let mut written = 0;
        if self.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            for (slice, part) in slices.iter_mut().zip(parts) {
                *slice = IoSlice::new(part);
            }
            let slices = &slices[..parts.len().min(4)];
            written = loop {
                match sink.write_vectored(slices) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
        }
        for part in parts {
            let skip = written.min(part.len());
            written -= skip;
            self.push_bytes(&part[skip..]);
        }
        Ok(())
    }

    /// Drops everything queued (used when a handshake is refused before anything left).
    pub fn clear(&mut self) {
        *self = Outbox::default();
    }

    /// Writes as much as `sink` takes. Returns `Ok(true)` once the outbox is empty,
    /// `Ok(false)` if the sink would block with bytes left.
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<bool> {
        while !self.is_empty() {
            let written = match self.write_once(sink) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(written);
        }
        self.chunks = VecDeque::new(); // give the memory back while idle
        Ok(true)
    }

    /// One `write` (a single chunk: no iovec array to import) or one `writev`.
    fn write_once(&self, sink: &mut impl Write) -> io::Result<usize> {
        if self.chunks.len() == 1 {
            return sink.write(&self.chunks[0].bytes()[self.front_written..]);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
            let skip = if i == 0 { self.front_written } else { 0 };
            slices[n] = IoSlice::new(&chunk.bytes()[skip..]);
            n += 1;
        }
        sink.write_vectored(&slices[..n])
    }

    /// Removes `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let front_len = self.chunks.front().map_or(0, |c| c.bytes().len());
            let left = front_len - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            self.chunks.pop_front();
            self.front_written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `cap` bytes per call, then blocks after `calls` calls.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let n = buf.len().min(self.cap);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_rest() {
        let mut outbox = Outbox::default();
        outbox.push_bytes(b"hello ");
        outbox.push_shared(Arc::from(&b"shared "[..]));
        outbox.push_bytes(b"world");
        let mut sink = Trickle {
            out: Vec::new(),
            cap: 4,
            calls: 3,
        };
        assert!(!outbox.write_to(&mut sink).unwrap());
        assert!(!sink.out.is_empty() && sink.out.len() < 18);
        assert_eq!(outbox.len(), 18 - sink.out.len());
        sink.calls = 100;
        assert!(outbox.write_to(&mut sink).unwrap());
        assert_eq!(sink.out, b"hello shared world");
        assert!(outbox.is_empty());
    }

    #[test]
    fn send_now_queues_only_what_the_sink_did_not_take() {
        let mut outbox = Outbox::default();
        let mut sink = Trickle {
            out: Vec::new(),
            cap: 3,
            calls: 1,
        };
        outbox.send_now(&mut sink, &[b"ab", b"cdef"]).unwrap();
        assert_eq!(sink.out, b"ab"); // the default write_vectored takes the first slice
        assert_eq!(outbox.len(), 4);
        // With bytes queued, nothing may overtake them.
        sink.calls = 10;
        outbox.send_now(&mut sink, &[b"gh"]).unwrap();
        assert_eq!(sink.out, b"ab");
        assert!(outbox.write_to(&mut sink).unwrap());
        assert_eq!(sink.out, b"abcdefgh");
    }

    #[test]
    fn small_writes_coalesce_into_one_chunk() {
        let mut outbox = Outbox::default();
        for _ in 0..100 {
            outbox.push_bytes(b"0123456789");
        }
        assert_eq!(outbox.chunks.len(), 1);
        let mut sink = Trickle {
            out: Vec::new(),
            cap: usize::MAX,
            calls: 1,
        };
        assert!(outbox.write_to(&mut sink).unwrap());
        assert_eq!(sink.out.len(), 1000);
    }
}
