//! A connection's write queue: frames waiting for the socket, written with one `writev`.
//!
//! Small writes are appended to the last owned chunk so that they leave in one syscall;
//! large broadcast frames are shared (`Arc<[u8]>`) among all recipients' queues, and
//! small ones are written once into the loop's [turn buffer](TurnBuffer), which every
//! recipient's queue refers to by a range (consecutive messages of a turn make one range),
//! so a turn's broadcast costs each recipient a range, not a copy. An empty outbox is
//! one null pointer and owns no heap memory.
//!
//! Once a queue holds [`CONGESTED`] bytes its reader is falling behind, and each further
//! data message is kept as a chunk of its own, tagged (with its channel, say), so that a backlog
//! [`Policy`](crate::server::backlog::Policy) can drop whole messages; the bytes queued before
//! that point always go out. Chunk boundaries are frame boundaries, so urgent control
//! frames can be queued ahead of the droppable messages.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

/// Owned chunks grow by appending up to this size before a new chunk starts.
const COALESCE_LIMIT: usize = 64 << 10;

/// A queue this long is congested: further data messages are queued one per chunk
/// (or sooner: see [`congestion_point`](crate::server::backlog::congestion_point)).
pub const CONGESTED: usize = 64 << 10;

/// At most this many chunks go into one `writev`.
const MAX_IOVECS: usize = 64;

/// The turn buffer holds at most this many bytes; later messages of the turn are
/// copied into each recipient's queue as before.
const TURN_BUFFER_LIMIT: usize = 1 << 20;

/// The loop's buffer of this turn's broadcast frames, each written once; queues refer to
/// it by ranges ([`Outbox::push_turn`]). It is emptied once every queue that refers to it
/// was written or [settled](Outbox::settle): see
/// [`Core::flush_dirty`](crate::server::core::Core::flush_dirty).
#[derive(Debug, Default)]
pub struct TurnBuffer {
    bytes: Vec<u8>,
}

impl TurnBuffer {
    /// Appends `frame`; its range, or `None` if the buffer is full for this turn.
    pub fn append(&mut self, frame: &[u8]) -> Option<TurnRange> {
        let start = self.bytes.len();
        if start + frame.len() > TURN_BUFFER_LIMIT {
            return None;
        }
        self.bytes.extend_from_slice(frame);
        Some(TurnRange {
            start: start as u32,
            end: self.bytes.len() as u32,
        })
    }

    /// The bytes of this turn.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// Forgets this turn's frames (keeping the memory). Only once no queue refers to them.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}

/// Where a frame sits in the [`TurnBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnRange {
    start: u32,
    end: u32,
}

/// The bytes of one queued piece of output.
#[derive(Debug)]
enum Bytes {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
    /// A range of the [`TurnBuffer`].
    Turn(TurnRange),
}

/// One queued piece of output and what a backlog policy may do with it.
#[derive(Debug)]
struct Chunk {
    bytes: Bytes,
    /// `Some(tag)`: one whole data message of that tag, which a policy may drop;
    /// `None`: output that always goes (coalesced data, HTTP, control frames).
    tag: Option<u32>,
}

impl Chunk {
    /// The chunk's bytes; `turn`: this turn's buffer, which [`Bytes::Turn`] refers to.
    fn bytes<'a>(&'a self, turn: &'a [u8]) -> &'a [u8] {
        match &self.bytes {
            Bytes::Owned(v) => v,
            Bytes::Shared(s) => s,
            Bytes::Turn(r) => &turn[r.start as usize..r.end as usize],
        }
    }

    fn len(&self) -> usize {
        match &self.bytes {
            Bytes::Owned(v) => v.len(),
            Bytes::Shared(s) => s.len(),
            Bytes::Turn(r) => (r.end - r.start) as usize,
        }
    }

    /// The owned buffer of a chunk that is not a droppable message.
    fn kept_buffer(&mut self) -> Option<&mut Vec<u8>> {
        match (&mut self.bytes, self.tag) {
            (Bytes::Owned(v), None) => Some(v),
            _ => None,
        }
    }
}

/// The queue itself, allocated only while it holds bytes (or kept in the thread's spares
/// once drained).
#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// How much of the front chunk was already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    queued: usize,
    /// An empty buffer, kept from a written chunk, for the next owned chunk.
    spare: Vec<u8>,
    /// Whether a chunk may refer to the turn buffer (set by `push_turn`, cleared by
    /// `settle`), so that a blocked slow reader's long queue is not scanned every turn.
    holds_turn: bool,
}

/// Drained queues this thread keeps for reuse, at most.
///
/// A loop that writes to a thousand connections in a turn would otherwise allocate and
/// free a queue, its chunk ring and a frame buffer for each of them, every turn: for a
/// broadcast of a few kilobytes per recipient per turn that is megabytes allocated and
/// freed each turn, which the allocator hands back to the kernel (heap trim) only to fault
/// the pages in again next turn. The spares belong to the thread (each loop runs on its
/// own) and are bounded: at most this many queues (a queue and its chunk ring are a few
/// hundred bytes: a few MiB for all), enough for a turn's broadcast to 10,000 subscribers, each
/// keeping at most [`MAX_SPARE_BUFFER`] bytes of buffer, all of them together
/// [`MAX_SPARE_BYTES`].
const MAX_SPARE_QUEUES: usize = 16384;

/// A written chunk's buffer is kept for reuse only up to this capacity.
const MAX_SPARE_BUFFER: usize = 16 << 10;

/// The buffers the spare queues keep, in bytes, at most (the rest go back to the
/// allocator).
const MAX_SPARE_BYTES: usize = 8 << 20;

/// A drained queue's chunk ring is kept only up to this capacity.
const MAX_SPARE_CHUNKS: usize = 16;

/// The thread's drained queues and the bytes of buffer they keep.
#[derive(Default)]
struct Spares {
    // Boxes, not queues: an outbox holds its queue boxed, and reusing the box is the point.
    #[allow(clippy::vec_box)]
    queues: Vec<Box<Queue>>,
    buffer_bytes: usize,
}

thread_local! {
    static SPARES: RefCell<Spares> = const {
        RefCell::new(Spares { queues: Vec::new(), buffer_bytes: 0 })
    };
}

/// An empty queue: a spare one if the thread has any.
fn new_queue() -> Box<Queue> {
    SPARES
        .with(|spares| {
            let mut spares = spares.borrow_mut();
            let queue = spares.queues.pop()?;
            spares.buffer_bytes -= queue.spare.capacity();
            Some(queue)
        })
        .unwrap_or_default()
}

/// Empties `queue` and keeps it for reuse, unless the thread has enough spares or it
/// grew large; its buffer is kept while the spares' buffers stay within
/// [`MAX_SPARE_BYTES`].
fn recycle(mut queue: Box<Queue>) {
    if queue.chunks.capacity() > MAX_SPARE_CHUNKS {
        return;
    }
    queue.chunks.clear();
    queue.front_written = 0;
    queue.queued = 0;
    queue.holds_turn = false;
    SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.queues.len() >= MAX_SPARE_QUEUES {
            return;
        }
        if spares.buffer_bytes + queue.spare.capacity() > MAX_SPARE_BYTES {
            queue.spare = Vec::new();
        }
        spares.buffer_bytes += queue.spare.capacity();
        spares.queues.push(queue);
    });
}

/// The bytes a connection still has to send.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Option<Box<Queue>>,
}

impl Queue {
    /// The owned, kept chunk at the back that `extra` more bytes may be appended to.
    fn tail(&mut self, extra: usize) -> &mut Vec<u8> {
        let reuse = self
            .chunks
            .back_mut()
            .and_then(Chunk::kept_buffer)
            .is_some_and(|v| v.len() + extra <= COALESCE_LIMIT || v.is_empty());
        if !reuse {
            let mut buffer = std::mem::take(&mut self.spare);
            buffer.reserve(extra);
            self.chunks.push_back(Chunk {
                bytes: Bytes::Owned(buffer),
                tag: None,
            });
        }
        match self.chunks.back_mut().and_then(Chunk::kept_buffer) {
            Some(v) => v,
            None => unreachable!("an owned chunk was just ensured"),
        }
    }

    /// The first chunk a policy may drop or an urgent frame may precede: not the front
    /// one once writing it has begun.
    fn first_movable(&self) -> usize {
        usize::from(self.front_written > 0)
    }

    /// Drops the oldest movable message chunks of `tag` until at most `target` bytes
    /// are queued; returns how many. They are near the front: no scan of the queue.
    fn drop_oldest(&mut self, tag: u32, target: usize) -> u32 {
        let mut dropped = 0;
        let mut at = self.first_movable();
        while self.queued > target && at < self.chunks.len() {
            if self.chunks[at].tag != Some(tag) {
                at += 1;
                continue;
            }
            if let Some(chunk) = self.chunks.remove(at) {
                self.queued -= chunk.len();
                dropped += 1;
            }
        }
        dropped
    }

    /// Drops every movable chunk from the first droppable message on (a Close goes ahead
    /// of them, and nothing may follow a Close); returns how many messages were dropped.
    fn drop_from_first_message(&mut self) -> u32 {
        let start = self.first_movable();
        let Some(first) = (start..self.chunks.len()).find(|&i| self.chunks[i].tag.is_some()) else {
            return 0;
        };
        let mut dropped = 0;
        for chunk in self.chunks.drain(first..) {
            self.queued -= chunk.len();
            dropped += u32::from(chunk.tag.is_some());
        }
        dropped
    }

    /// Drops the movable message chunks `pick` selects, while `more` allows; returns how many.
    fn drop_messages(
        &mut self,
        mut pick: impl FnMut(u32) -> bool,
        mut more: impl FnMut(usize) -> bool,
    ) -> u32 {
        let start = self.first_movable();
        let (mut index, mut dropped, mut queued) = (0, 0, self.queued);
        self.chunks.retain(|chunk| {
            let here = index;
            index += 1;
            let drop = here >= start && chunk.tag.is_some_and(&mut pick) && more(queued);
            if drop {
                queued -= chunk.len();
                dropped += 1;
            }
            !drop
        });
        self.queued = queued;
        dropped
    }

    /// Writes as much as `sink` takes: `Ok(true)` once empty, `Ok(false)` if it would block.
    fn write_to(&mut self, sink: &mut impl Write, turn: &[u8]) -> io::Result<bool> {
        while self.queued > 0 {
            let written = match self.write_once(sink, turn) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(written);
        }
        Ok(true)
    }

    /// One `write` (a single chunk: no iovec array to import) or one `writev`.
    fn write_once(&self, sink: &mut impl Write, turn: &[u8]) -> io::Result<usize> {
        if self.chunks.len() == 1 {
            return sink.write(&self.chunks[0].bytes(turn)[self.front_written..]);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
            let skip = if i == 0 { self.front_written } else { 0 };
            slices[n] = IoSlice::new(&chunk.bytes(turn)[skip..]);
            n += 1;
        }
        sink.write_vectored(&slices[..n])
    }

    /// Removes `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let front_len = self.chunks.front().map_or(0, Chunk::len);
            let left = front_len - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            if let Some(Chunk {
                bytes: Bytes::Owned(mut buffer),
                ..
            }) = self.chunks.pop_front()
            {
                if buffer.capacity() <= MAX_SPARE_BUFFER
                    && buffer.capacity() > self.spare.capacity()
                {
                    buffer.clear();
                    self.spare = buffer;
                }
            }
            self.front_written = 0;
        }
    }
}

impl Outbox {
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.queued)
    }

    /// Whether data messages are queued one per chunk: the queue holds `at` bytes or
    /// more (the reader is behind), or droppable messages are still queued (a message
    /// coalesced behind them could outlive them, leaving a gap in the middle).
    pub fn is_congested(&self, at: usize) -> bool {
        self.queue
            .as_ref()
            .is_some_and(|q| q.queued >= at || q.chunks.back().is_some_and(|c| c.tag.is_some()))
    }

    fn queue(&mut self) -> &mut Queue {
        self.queue.get_or_insert_with(new_queue)
    }

    /// Gives the queue back (to the thread's spares) once nothing is left in it.
    fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.release();
        }
    }

    /// Gives the queue back, whatever it holds.
    fn release(&mut self) {
        if let Some(queue) = self.queue.take() {
            recycle(queue);
        }
    }

    /// Queues a copy of `bytes`, coalescing with what is already queued.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let queue = self.queue();
        queue.tail(bytes.len()).extend_from_slice(bytes);
        queue.queued += bytes.len();
    }

    /// Lets `fill` append bytes to the tail chunk (for encoding a frame in place).
    pub fn push_with(&mut self, size_hint: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        let queue = self.queue();
        let tail = queue.tail(size_hint);
        let before = tail.len();
        fill(tail);
        queue.queued += tail.len() - before;
        self.release_if_empty();
    }

    /// Queues an encoded frame that is already the caller's own: appended when it fits
    /// the tail chunk (small frames coalesce), else queued as it is, without a copy.
    pub fn push_vec(&mut self, frame: Vec<u8>) {
        let queue = self.queue();
        let fits = queue
            .chunks
            .back_mut()
            .and_then(Chunk::kept_buffer)
            .is_some_and(|v| v.len() + frame.len() <= COALESCE_LIMIT);
        if fits || frame.is_empty() {
            return self.push_bytes(&frame);
        }
        queue.queued += frame.len();
        queue.chunks.push_back(Chunk {
            bytes: Bytes::Owned(frame),
            tag: None,
        });
    }

    /// Queues bytes shared with other connections.
    pub fn push_shared(&mut self, bytes: Arc<[u8]>) {
        if bytes.is_empty() {
            return;
        }
        let queue = self.queue();
        queue.queued += bytes.len();
        queue.chunks.push_back(Chunk {
            bytes: Bytes::Shared(bytes),
            tag: None,
        });
    }

    /// Queues a range of the loop's [`TurnBuffer`], extending the last chunk when it is
    /// the range just before (a turn's consecutive messages go out as one slice).
    pub fn push_turn(&mut self, range: TurnRange) {
        let len = (range.end - range.start) as usize;
        if len == 0 {
            return;
        }
        let queue = self.queue();
        queue.queued += len;
        queue.holds_turn = true;
        if let Some(Chunk {
            bytes: Bytes::Turn(last),
            tag: None,
        }) = queue.chunks.back_mut()
        {
            if last.end == range.start {
                last.end = range.end;
                return;
            }
        }
        queue.chunks.push_back(Chunk {
            bytes: Bytes::Turn(range),
            tag: None,
        });
    }

    /// Copies whatever still refers to the [`TurnBuffer`] (`turn`) into the queue's own
    /// memory, so that the turn buffer can be emptied.
    pub fn settle(&mut self, turn: &[u8]) {
        let Some(queue) = self.queue.as_deref_mut().filter(|q| q.holds_turn) else {
            return;
        };
        queue.holds_turn = false;
        for chunk in queue.chunks.iter_mut() {
            if let Bytes::Turn(r) = chunk.bytes {
                chunk.bytes = Bytes::Owned(turn[r.start as usize..r.end as usize].to_vec());
            }
        }
    }

    /// Queues one whole data message (`frame`, or the same bytes `shared`) of `tag`:
    /// coalesced while the queue is shorter than `congested_at`, else a droppable chunk
    /// of its own.
    pub fn push_message(
        &mut self,
        tag: u32,
        frame: &[u8],
        shared: Option<&Arc<[u8]>>,
        congested_at: usize,
    ) {
        if !self.is_congested(congested_at) {
            return match shared {
                Some(bytes) => self.push_shared(bytes.clone()),
                None => self.push_bytes(frame),
            };
        }
        let bytes = match shared {
            Some(bytes) => Bytes::Shared(bytes.clone()),
            None => Bytes::Owned(frame.to_vec()),
        };
        self.push_chunk(tag, bytes, frame.len());
    }

    /// Queues an encoded data message of `tag` as a droppable chunk of its own (the
    /// caller checked [`is_congested`](Self::is_congested)).
    pub fn push_message_vec(&mut self, tag: u32, frame: Vec<u8>) {
        let len = frame.len();
        self.push_chunk(tag, Bytes::Owned(frame), len);
    }

    fn push_chunk(&mut self, tag: u32, bytes: Bytes, len: usize) {
        if len == 0 {
            return;
        }
        let queue = self.queue();
        queue.queued += len;
        queue.chunks.push_back(Chunk {
            bytes,
            tag: Some(tag),
        });
    }

    /// Queues a control frame ahead of every droppable message (after the frame being
    /// written and after earlier control frames). It is never dropped.
    pub fn push_urgent(&mut self, frame: &[u8]) {
        let queue = self.queue();
        let at = queue
            .chunks
            .iter()
            .position(|c| c.tag.is_some())
            .unwrap_or(queue.chunks.len())
            .max(queue.first_movable());
        queue.queued += frame.len();
        if let Some(before) = at
            .checked_sub(1)
            .and_then(|i| queue.chunks[i].kept_buffer())
        {
            return before.extend_from_slice(frame);
        }
        queue.chunks.insert(
            at,
            Chunk {
                bytes: Bytes::Owned(frame.to_vec()),
                tag: None,
            },
        );
    }

    /// Drops the oldest droppable messages of `tag` until at most `target` bytes are
    /// queued (or none is left). Returns how many were dropped.
    pub fn drop_oldest(&mut self, tag: u32, target: usize) -> u32 {
        let Some(queue) = self.queue.as_deref_mut() else {
            return 0;
        };
        let dropped = queue.drop_oldest(tag, target);
        self.release_if_empty();
        dropped
    }

    /// Drops every droppable message of `tag`. Returns how many.
    pub fn drop_tag(&mut self, tag: u32) -> u32 {
        let Some(queue) = self.queue.as_deref_mut() else {
            return 0;
        };
        let dropped = queue.drop_messages(|s| s == tag, |_| true);
        self.release_if_empty();
        dropped
    }

    /// Drops every droppable message and whatever was queued after the first of them
    /// (a Close is about to go ahead of them: what went before it is whole and in
    /// order). Returns how many messages were dropped.
    pub fn drop_all_messages(&mut self) -> u32 {
        let Some(queue) = self.queue.as_deref_mut() else {
            return 0;
        };
        let dropped = queue.drop_from_first_message();
        self.release_if_empty();
        dropped
    }

    /// Sends `parts` (at most four) in order: straight to `sink` when nothing is queued (no copy), and
    /// queues whatever the kernel did not take, as one chunk. With bytes already queued,
    /// queues all. Returns how many bytes the kernel took.
    pub fn send_now(&mut self, sink: &mut impl Write, parts: &[&[u8]]) -> io::Result<usize> {
        let parts = &parts[..parts.len().min(4)];
        let mut written = 0;
        if self.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            for (slice, part) in slices.iter_mut().zip(parts) {
                *slice = IoSlice::new(part);
            }
            written = loop {
                match sink.write_vectored(&slices[..parts.len()]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
        }
        let taken = written;
        let rest = parts.iter().map(|p| p.len()).sum::<usize>() - written;
        if rest > 0 {
            self.push_with(rest, |out| {
                for part in parts {
                    let skip = written.min(part.len());
                    written -= skip;
                    out.extend_from_slice(&part[skip..]);
                }
            });
        }
        Ok(taken)
    }

    /// Drops everything queued (used when a handshake is refused before anything left).
    pub fn clear(&mut self) {
        self.release();
    }

    /// Writes as much as `sink` takes. Returns `Ok(true)` once the outbox is empty (and
    /// has given its memory back), `Ok(false)` if the sink would block with bytes left.
    /// `turn` is this turn's [`TurnBuffer`], which queued ranges refer to.
    pub fn write_to(&mut self, sink: &mut impl Write, turn: &[u8]) -> io::Result<bool> {
        let Some(queue) = self.queue.as_deref_mut() else {
            return Ok(true);
        };
        let done = queue.write_to(sink, turn)?;
        if done {
            self.release();
        }
        Ok(done)
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
        assert!(!outbox.write_to(&mut sink, &[]).unwrap());
        assert!(!sink.out.is_empty() && sink.out.len() < 18);
        assert_eq!(outbox.len(), 18 - sink.out.len());
        sink.calls = 100;
        assert!(outbox.write_to(&mut sink, &[]).unwrap());
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
        assert!(outbox.write_to(&mut sink, &[]).unwrap());
        assert_eq!(sink.out, b"abcdefgh");
    }

    #[test]
    fn small_writes_coalesce_into_one_chunk() {
        let mut outbox = Outbox::default();
        for _ in 0..100 {
            outbox.push_bytes(b"0123456789");
        }
        assert_eq!(outbox.queue.as_ref().unwrap().chunks.len(), 1);
        let mut sink = Trickle {
            out: Vec::new(),
            cap: usize::MAX,
            calls: 1,
        };
        assert!(outbox.write_to(&mut sink, &[]).unwrap());
        assert_eq!(sink.out.len(), 1000);
    }

    /// Fills `outbox` to the congestion point with kept bytes.
    fn congested() -> Outbox {
        let mut outbox = Outbox::default();
        outbox.push_bytes(&vec![b'k'; CONGESTED]);
        assert!(outbox.is_congested(CONGESTED));
        outbox
    }

    fn drain(outbox: &mut Outbox) -> Vec<u8> {
        let mut sink = Trickle {
            out: Vec::new(),
            cap: usize::MAX,
            calls: usize::MAX,
        };
        assert!(outbox.write_to(&mut sink, &[]).unwrap());
        assert!(outbox.queue.is_none(), "an empty outbox owns no memory");
        sink.out
    }

    /// The bytes after the first `CONGESTED` (the kept prefix).
    fn tail_of(mut outbox: Outbox) -> Vec<u8> {
        drain(&mut outbox)[CONGESTED..].to_vec()
    }

    #[test]
    fn short_queues_coalesce_messages_and_keep_them() {
        let mut outbox = Outbox::default();
        outbox.push_message(1, b"a", None, CONGESTED);
        outbox.push_message(1, b"b", None, CONGESTED);
        assert_eq!(outbox.drop_tag(1), 0);
        assert_eq!(outbox.drop_oldest(1, 0), 0);
        assert_eq!(drain(&mut outbox), b"ab");
    }

    #[test]
    fn drop_oldest_removes_the_tag_s_oldest_until_under_target() {
        let mut outbox = congested();
        for m in [b"1a", b"2a", b"1b", b"2b", b"1c"] {
            outbox.push_message(u32::from(m[0] - b'0'), m, None, CONGESTED);
        }
        assert_eq!(outbox.drop_oldest(1, CONGESTED + 8), 1);
        assert_eq!(outbox.len(), CONGESTED + 8);
        assert_eq!(outbox.drop_oldest(1, 0), 2);
        assert_eq!(outbox.drop_oldest(1, 0), 0);
        assert_eq!(tail_of(outbox), b"2a2b");
    }

    #[test]
    fn drop_tag_conflates_one_tag_and_keeps_the_others() {
        let mut outbox = congested();
        let shared: Arc<[u8]> = Arc::from(&b"2s"[..]);
        outbox.push_message(1, b"1a", None, CONGESTED);
        outbox.push_message(2, b"2s", Some(&shared), CONGESTED);
        outbox.push_message(1, b"1b", None, CONGESTED);
        assert_eq!(outbox.drop_tag(1), 2);
        outbox.push_message(1, b"1c", None, CONGESTED);
        assert_eq!(tail_of(outbox), b"2s1c");
    }

    #[test]
    fn urgent_frames_go_ahead_of_droppable_messages_in_their_own_order() {
        let mut outbox = congested();
        outbox.push_message(1, b"m1", None, CONGESTED);
        outbox.push_urgent(b"P1");
        outbox.push_message(1, b"m2", None, CONGESTED);
        outbox.push_urgent(b"P2");
        assert_eq!(tail_of(outbox), b"P1P2m1m2");
    }

    #[test]
    fn the_message_being_written_is_never_dropped_nor_split() {
        let mut outbox = Outbox::default();
        outbox.push_message_vec(1, b"first".to_vec());
        outbox.push_message_vec(1, b"second".to_vec());
        let mut sink = Trickle {
            out: Vec::new(),
            cap: 2,
            calls: 1,
        };
        assert!(!outbox.write_to(&mut sink, &[]).unwrap());
        outbox.push_urgent(b"!");
        assert_eq!(outbox.drop_all_messages(), 1);
        assert_eq!(drain(&mut outbox), b"rst!");
    }

    #[test]
    fn nothing_coalesces_behind_droppable_messages() {
        let mut outbox = congested();
        outbox.push_message(1, b"m1", None, CONGESTED);
        outbox.push_message(1, b"m2", None, CONGESTED);
        let mut sink = Trickle {
            out: Vec::new(),
            cap: 1024,
            calls: 1,
        };
        assert!(!outbox.write_to(&mut sink, &[]).unwrap());
        // Below the congestion point now, but m1 and m2 are still droppable.
        assert!(outbox.is_congested(CONGESTED));
        outbox.push_message(1, b"m3", None, CONGESTED);
        outbox.push_bytes(b"ack"); // kept, but behind droppable messages
        assert_eq!(outbox.drop_all_messages(), 3);
        outbox.push_urgent(b"CLOSE");
        let mut all = sink.out;
        all.extend(drain(&mut outbox));
        assert_eq!(&all[CONGESTED..], b"CLOSE", "no message from after a gap");
    }

    #[test]
    fn own_frames_coalesce_when_small_and_move_in_when_large() {
        let mut outbox = Outbox::default();
        outbox.push_vec(b"small".to_vec());
        outbox.push_vec(b" frames".to_vec());
        assert_eq!(outbox.queue.as_ref().unwrap().chunks.len(), 1);
        let large = vec![b'L'; COALESCE_LIMIT];
        outbox.push_vec(large.clone());
        assert_eq!(outbox.queue.as_ref().unwrap().chunks.len(), 2);
        let mut expected = b"small frames".to_vec();
        expected.extend(large);
        assert_eq!(drain(&mut outbox), expected);
    }

    #[test]
    fn dropping_everything_frees_the_queue() {
        let mut outbox = Outbox::default();
        outbox.push_message_vec(3, b"x".to_vec());
        assert_eq!(outbox.drop_all_messages(), 1);
        assert!(outbox.is_empty() && outbox.queue.is_none());
    }

    #[test]
    fn send_now_queues_a_partial_frame_as_one_chunk() {
        let mut outbox = Outbox::default();
        let mut sink = Trickle {
            out: Vec::new(),
            cap: 1,
            calls: 1,
        };
        let payload = vec![7u8; COALESCE_LIMIT + 10];
        outbox.send_now(&mut sink, &[b"hd", &payload]).unwrap();
        assert_eq!(outbox.queue.as_ref().unwrap().chunks.len(), 1);
        outbox.push_urgent(b"U");
        let rest = drain(&mut outbox);
        assert_eq!(rest.len(), 1 + payload.len() + 1);
        assert_eq!(rest.last(), Some(&b'U'));
    }

    #[test]
    fn drained_queues_are_kept_for_reuse_and_bounded() {
        let spares = || SPARES.with(|s| s.borrow().queues.len());
        let before = spares();
        let mut outbox = Outbox::default();
        outbox.push_bytes(&[1; 100]);
        let mut sink = Vec::new();
        assert!(outbox.write_to(&mut sink, &[]).unwrap());
        assert_eq!(sink.len(), 100);
        assert_eq!(spares(), before + 1, "the drained queue is kept");
        // The next queue is that one, with the written chunk's buffer ready.
        outbox.push_bytes(&[2; 10]);
        assert_eq!(spares(), before);
        assert_eq!(outbox.len(), 10);
        outbox.clear();
        assert_eq!(spares(), before + 1);
        // Never more than the bound.
        let mut many: Vec<Outbox> = (0..MAX_SPARE_QUEUES + 10)
            .map(|_| Outbox::default())
            .collect();
        for o in &mut many {
            o.push_bytes(b"x");
        }
        for o in &mut many {
            o.clear();
        }
        assert_eq!(spares(), MAX_SPARE_QUEUES);
    }

    #[test]
    fn spare_buffers_are_kept_within_the_byte_budget() {
        let spare_bytes = || SPARES.with(|s| s.borrow().buffer_bytes);
        let before = spare_bytes();
        // A broadcast turn: many queues each grow a buffer of several kilobytes.
        let mut many: Vec<Outbox> = (0..1000).map(|_| Outbox::default()).collect();
        for o in &mut many {
            for _ in 0..16 {
                o.push_bytes(&[b'm'; 600]);
            }
        }
        let mut sink = Vec::new();
        for o in &mut many {
            assert!(o.write_to(&mut sink, &[]).unwrap());
        }
        assert_eq!(sink.len(), 1000 * 16 * 600);
        let kept = spare_bytes() - before;
        assert!(kept > MAX_SPARE_BYTES / 2, "most buffers kept: {kept}");
        assert!(
            spare_bytes() <= MAX_SPARE_BYTES,
            "bounded: {}",
            spare_bytes()
        );
        // The next turn reuses them: no buffer grows from nothing.
        for o in &mut many {
            o.push_bytes(&[b'n'; 600]);
        }
        assert!(spare_bytes() < before + kept);
        for o in &mut many {
            o.clear();
        }
    }

    #[test]
    fn a_turn_s_consecutive_ranges_go_out_as_one_slice() {
        let mut turn = TurnBuffer::default();
        let a = turn.append(b"first ").unwrap();
        let b = turn.append(b"second ").unwrap();
        let mut outbox = Outbox::default();
        outbox.push_turn(a);
        outbox.push_turn(b);
        assert_eq!(outbox.queue.as_ref().unwrap().chunks.len(), 1, "one range");
        outbox.push_bytes(b"own ");
        let c = turn.append(b"third").unwrap();
        outbox.push_turn(c);
        assert_eq!(outbox.queue.as_ref().unwrap().chunks.len(), 3);
        assert_eq!(outbox.len(), 22);
        let mut sink = Vec::new();
        assert!(outbox.write_to(&mut sink, turn.as_slice()).unwrap());
        assert_eq!(sink, b"first second own third");
    }

    #[test]
    fn settled_ranges_outlive_the_turn_buffer() {
        let mut turn = TurnBuffer::default();
        let mut outbox = Outbox::default();
        outbox.push_turn(turn.append(b"0123456789").unwrap());
        let mut sink = Trickle {
            out: Vec::new(),
            cap: 4,
            calls: 1,
        };
        assert!(!outbox.write_to(&mut sink, turn.as_slice()).unwrap());
        outbox.settle(turn.as_slice());
        turn.clear();
        turn.append(b"something else entirely").unwrap();
        let mut rest = Vec::new();
        assert!(outbox.write_to(&mut rest, turn.as_slice()).unwrap());
        assert_eq!(rest, b"456789");
    }

    #[test]
    fn the_turn_buffer_is_bounded() {
        let mut turn = TurnBuffer::default();
        let big = vec![0u8; TURN_BUFFER_LIMIT / 2];
        assert!(turn.append(&big).is_some() && turn.append(&big).is_some());
        assert_eq!(turn.append(b"x"), None);
        turn.clear();
        assert!(turn.append(b"x").is_some());
    }
}
