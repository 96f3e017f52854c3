//! The notes between the workers of one process: what one worker's broker tells
//! another's ([`Note`]), and the [`Queues`] that carry them: one bounded queue into each
//! worker (a `std::sync::mpsc::sync_channel` of batches) and that worker's loop [`Waker`].
//!
//! A turn's notes for one worker travel as one batch, and a worker is woken at most once
//! per turn by each peer. A full queue is back-pressure, not loss: the batch stays with
//! the sender, which offers it again on its next turn (and turns without waiting until
//! it went). Batches to one worker keep their order, so a channel's owner can answer a
//! subscription with the missed history and follow it with the live messages on the same
//! queue, in order.

use crate::push::broker::Answer;
use crate::push::channels::{Replay, Stored, Transport};
use crate::push::stats::BrokerStats;
use crate::server::connection::ConnId;
use crate::server::message::Kind;
use mio::Waker;
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Batches a worker's queue holds before its senders keep theirs (back-pressure).
const QUEUE_BATCHES: usize = 1024;

/// What one worker's broker tells another's.
#[derive(Debug)]
pub(crate) enum Note {
    /// To a channel's owner: publish this (give it an id, keep it, deliver it).
    Publish {
        channel: Arc<str>,
        kind: Kind,
        data: Box<[u8]>,
        except: Option<ConnId>,
        answer: Answer,
        from: usize,
    },
    /// From the owner to the worker that forwarded a publish: the id it got.
    Published {
        channel: Arc<str>,
        answer: Answer,
        id: u64,
        delivered: usize,
    },
    /// From the owner to a worker with members: deliver this to them.
    Deliver {
        channel: Arc<str>,
        stored: Arc<Stored>,
        except: Option<ConnId>,
    },
    /// To the owner: `member` of worker `from` subscribes by `transport`, having seen
    /// everything up to `since` (`None`: only what comes from now on).
    Join {
        channel: Arc<str>,
        member: ConnId,
        transport: Transport,
        since: Option<u64>,
        from: usize,
    },
    /// From the owner: `member` is subscribed; first send it `replay` (what followed
    /// `since`).
    Joined {
        channel: Arc<str>,
        member: ConnId,
        transport: Transport,
        since: u64,
        replay: Replay,
    },
    /// To the owner: a member of worker `from` left.
    Leave {
        channel: Arc<str>,
        transport: Transport,
        from: usize,
    },
}

/// The worker that owns `channel` among `workers`: it gives the channel's messages their
/// ids and keeps its history (FNV-1a of the name, so every worker agrees).
pub(crate) fn owner(channel: &str, workers: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in channel.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % workers.max(1) as u64) as usize
}

/// One way into a worker: its queue and its loop's waker.
struct Peer {
    queue: SyncSender<Vec<Note>>,
    waker: Arc<Waker>,
}

/// One worker's ends of the queues: its inbox, and a way into every worker.
pub(crate) struct Queues {
    me: usize,
    peers: Vec<Peer>,
    inbox: Receiver<Vec<Note>>,
    /// This turn's notes for each worker.
    outgoing: Vec<Vec<Note>>,
    /// Batches a full queue did not take yet, per worker, oldest first.
    held: Vec<VecDeque<Vec<Note>>>,
    /// Notes posted and taken (the in-process broker is always up).
    stats: BrokerStats,
}

impl Queues {
    /// One set of ends per worker, each waking the others through `wakers` (one per
    /// worker, in worker order).
    pub(crate) fn mesh(wakers: &[Arc<Waker>]) -> Vec<Queues> {
        let (queues, inboxes): (Vec<_>, Vec<_>) = wakers
            .iter()
            .map(|_| mpsc::sync_channel(QUEUE_BATCHES))
            .unzip();
        inboxes
            .into_iter()
            .enumerate()
            .map(|(me, inbox)| Queues {
                me,
                peers: queues
                    .iter()
                    .zip(wakers)
                    .map(|(queue, waker)| Peer {
                        queue: queue.clone(),
                        waker: Arc::clone(waker),
                    })
                    .collect(),
                inbox,
                outgoing: wakers.iter().map(|_| Vec::new()).collect(),
                held: wakers.iter().map(|_| VecDeque::new()).collect(),
                stats: BrokerStats::default(),
            })
            .collect()
    }

    /// Offers worker `to` its held batches, then this turn's; `true` if it took them all
    /// (or has stopped: nobody is left to tell).
    fn offer(&mut self, to: usize) -> bool {
        let batch = std::mem::take(&mut self.outgoing[to]);
        if !batch.is_empty() {
            self.held[to].push_back(batch);
        }
        let mut sent = false;
        while let Some(batch) = self.held[to].pop_front() {
            match self.peers[to].queue.try_send(batch) {
                Ok(()) => sent = true,
                Err(TrySendError::Full(batch)) => {
                    self.held[to].push_front(batch);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.held[to].clear();
                    break;
                }
            }
        }
        if sent {
            let _ = self.peers[to].waker.wake();
        }
        self.held[to].is_empty()
    }

    /// This worker's number.
    pub(crate) fn me(&self) -> usize {
        self.me
    }

    /// How many workers there are.
    pub(crate) fn workers(&self) -> usize {
        self.peers.len()
    }

    /// Queues `note` for worker `to` (sent at the end of the turn by [`flush`](Self::flush)).
    pub(crate) fn post(&mut self, to: usize, note: Note) {
        self.stats.notes_sent += 1;
        self.outgoing[to].push(note);
    }

    /// What other workers sent, in the order each sent it.
    pub(crate) fn take(&mut self, into: &mut Vec<Note>) {
        while let Ok(batch) = self.inbox.try_recv() {
            self.stats.notes_received += batch.len() as u64;
            into.extend(batch);
        }
    }

    /// How many notes it carried.
    pub(crate) fn stats(&self) -> BrokerStats {
        self.stats
    }

    /// Hands this turn's notes over and wakes their workers; `true` if some are kept
    /// back because a queue is full (they go on a later call).
    pub(crate) fn flush(&mut self) -> bool {
        let mut kept = false;
        for to in 0..self.peers.len() {
            if !self.outgoing[to].is_empty() || !self.held[to].is_empty() {
                kept |= !self.offer(to);
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_spread_and_agree() {
        assert_eq!(owner("lobby", 1), 0);
        let owners: Vec<usize> = (0..64).map(|i| owner(&format!("c{i}"), 4)).collect();
        for w in 0..4 {
            assert!(owners.contains(&w), "no channel owned by worker {w}");
        }
        assert_eq!(owner("news", 4), owner("news", 4));
    }

    #[test]
    fn a_full_queue_keeps_batches_in_order_until_taken() {
        let poll = mio::Poll::new().unwrap();
        let wakers: Vec<_> = (0..2)
            .map(|i| Arc::new(Waker::new(poll.registry(), mio::Token(i)).unwrap()))
            .collect();
        let mut mesh = Queues::mesh(&wakers);
        let mut b = mesh.pop().unwrap();
        let mut a = mesh.pop().unwrap();
        let leave = |n: usize| Note::Leave {
            channel: Arc::from("c"),
            transport: Transport::Sse,
            from: n,
        };
        for n in 0..QUEUE_BATCHES + 3 {
            a.post(1, leave(n));
            let kept = a.flush();
            assert_eq!(kept, n >= QUEUE_BATCHES, "turn {n}");
        }
        let mut got = Vec::new();
        b.take(&mut got);
        assert_eq!(got.len(), QUEUE_BATCHES);
        assert!(!a.flush(), "the held batches go once there is room");
        b.take(&mut got);
        let froms: Vec<usize> = got
            .iter()
            .map(|n| match n {
                Note::Leave { from, .. } => *from,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(froms, (0..QUEUE_BATCHES + 3).collect::<Vec<_>>());
    }
}
