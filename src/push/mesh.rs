//! A worker's part in channels that span workers: which channels it owns, how many
//! members the other workers reported for them, the subscriptions it asked of other
//! owners, and the presence it publishes to the [`Directory`].
//!
//! Each channel has one owner (by a hash of its name): the owner gives the channel's
//! messages their ids, keeps its history, and sends each message once to every worker
//! that has members. Other workers keep only their own members of it (no history) and
//! forward publishes and subscriptions to the owner through the [`Broker`].

use crate::push::broker::{self, Broker, Note};
use crate::push::channels::{Channels, Counts, Transport};
use crate::push::directory::{Directory, Entry};
use crate::push::stats::BrokerStats;
use crate::server::connection::ConnId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One worker's view of the channels shared with the others.
pub(crate) struct Mesh {
    broker: Box<dyn Broker>,
    /// For the channels this worker owns: the members each worker reported.
    remote: HashMap<Arc<str>, Vec<Counts>>,
    /// Subscriptions sent to other owners and not answered yet, by member.
    pending: HashMap<ConnId, Vec<(Arc<str>, Transport)>>,
    /// Owned channels whose presence changed this turn.
    dirty: HashSet<Arc<str>>,
    directory: Arc<Directory>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mesh(worker {} of {})", self.me(), self.workers())
    }
}

/// Adds or removes one member of `transport` in `counts`.
fn count(counts: &mut Counts, transport: Transport, joined: bool) {
    let n = match transport {
        Transport::WebSocket => &mut counts.websocket,
        Transport::Sse => &mut counts.sse,
        Transport::LongPoll => &mut counts.long_poll,
    };
    *n = if joined { *n + 1 } else { n.saturating_sub(1) };
}

fn total(counts: &Counts) -> usize {
    counts.websocket + counts.sse + counts.long_poll
}

impl Mesh {
    /// This worker's part, speaking through `broker`, publishing presence to `directory`.
    pub(crate) fn new(broker: Box<dyn Broker>, directory: Arc<Directory>) -> Self {
        Mesh {
            broker,
            remote: HashMap::new(),
            pending: HashMap::new(),
            dirty: HashSet::new(),
            directory,
        }
    }

    /// This worker's number.
    pub(crate) fn me(&self) -> usize {
        self.broker.me()
    }

    /// How many workers there are.
    pub(crate) fn workers(&self) -> usize {
        self.broker.workers()
    }

    /// The owner of `channel`.
    pub(crate) fn owner(&self, channel: &str) -> usize {
        broker::owner(channel, self.workers())
    }

    /// Whether this worker owns `channel`.
    pub(crate) fn owns(&self, channel: &str) -> bool {
        self.owner(channel) == self.me()
    }

    /// Queues `note` for worker `to`.
    pub(crate) fn post(&mut self, to: usize, note: Note) {
        self.broker.post(to, note);
    }

    /// Queues `note` for the owner of `channel`.
    pub(crate) fn post_owner(&mut self, channel: &str, note: Note) {
        let to = self.owner(channel);
        self.broker.post(to, note);
    }

    /// What other workers sent.
    pub(crate) fn take(&mut self, into: &mut Vec<Note>) {
        self.broker.take(into);
    }

    /// The presence of an owned channel changed (a member, a message).
    pub(crate) fn touch(&mut self, channel: &Arc<str>) {
        if !self.dirty.contains(channel) {
            self.dirty.insert(Arc::clone(channel));
        }
    }

    /// Worker `from` reports a member of the owned `channel` joining or leaving.
    pub(crate) fn remote_member(
        &mut self,
        channel: &Arc<str>,
        from: usize,
        transport: Transport,
        joined: bool,
    ) {
        let workers = self.workers();
        let per_worker = self
            .remote
            .entry(Arc::clone(channel))
            .or_insert_with(|| vec![Counts::default(); workers]);
        count(&mut per_worker[from], transport, joined);
        if per_worker.iter().all(|c| total(c) == 0) {
            self.remote.remove(channel);
        }
        self.touch(channel);
    }

    /// Whether other workers have members of the owned `channel`.
    pub(crate) fn has_remote(&self, channel: &str) -> bool {
        self.remote.contains_key(channel)
    }

    /// The first channel `member` asked another owner to subscribe it to, if any.
    pub(crate) fn first_pending(&self, member: ConnId) -> Option<Arc<str>> {
        let list = self.pending.get(&member)?;
        list.first().map(|(channel, _)| Arc::clone(channel))
    }

    /// The other workers with members of the owned `channel`, and how many each has.
    pub(crate) fn remote_members(
        &self,
        channel: &str,
    ) -> impl Iterator<Item = (usize, usize)> + '_ {
        let me = self.me();
        self.remote
            .get(channel)
            .into_iter()
            .flat_map(|per_worker| per_worker.iter().map(total).enumerate())
            .filter(move |&(worker, n)| n > 0 && worker != me)
    }

    /// `member` asked the owner of `channel` to subscribe it.
    pub(crate) fn add_pending(&mut self, member: ConnId, channel: &Arc<str>, transport: Transport) {
        self.pending
            .entry(member)
            .or_default()
            .push((Arc::clone(channel), transport));
    }

    /// Whether `member` waits for the owner's answer about `channel`.
    pub(crate) fn is_pending(&self, member: ConnId, channel: &str) -> bool {
        self.pending
            .get(&member)
            .is_some_and(|list| list.iter().any(|(c, _)| &**c == channel))
    }

    /// The owner answered (or `member` gave up) about `channel`: `true` if it was waiting.
    pub(crate) fn take_pending(&mut self, member: ConnId, channel: &str) -> bool {
        let Some(list) = self.pending.get_mut(&member) else {
            return false;
        };
        let Some(at) = list.iter().position(|(c, _)| &**c == channel) else {
            return false;
        };
        list.swap_remove(at);
        if list.is_empty() {
            self.pending.remove(&member);
        }
        true
    }

    /// `member` ended: it waits for nothing any more (the owners' answers are then
    /// returned with a `Leave`).
    pub(crate) fn forget(&mut self, member: ConnId) {
        self.pending.remove(&member);
    }

    /// Writes the presence of the owned channels that changed to the directory;
    /// `channels` holds this worker's own members and the history.
    pub(crate) fn publish_presence(&mut self, channels: &Channels) {
        if self.dirty.is_empty() {
            return;
        }
        let workers = self.workers();
        let me = self.me();
        let changes: Vec<_> = self
            .dirty
            .drain()
            .map(|name| {
                let local = channels.counts(&name);
                let remote = self.remote.get(&name);
                if local.is_none() && remote.is_none() {
                    return (name, None);
                }
                let mut per_worker: Vec<Counts> = remote
                    .cloned()
                    .unwrap_or_else(|| vec![Counts::default(); workers]);
                per_worker[me] = local.unwrap_or_default();
                let mut counts = Counts::default();
                for c in &per_worker {
                    counts.websocket += c.websocket;
                    counts.sse += c.sse;
                    counts.long_poll += c.long_poll;
                }
                let entry = Entry {
                    counts,
                    last_id: channels.last_id(&name),
                    workers: per_worker.iter().map(total).collect(),
                };
                (name, Some(entry))
            })
            .collect();
        self.directory.write(me, changes);
    }

    /// The directory of every channel's presence.
    pub(crate) fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The broker's state and counts.
    pub(crate) fn broker_stats(&self) -> BrokerStats {
        self.broker.stats()
    }

    /// Hands this turn's notes over; `true` if some wait for room.
    pub(crate) fn flush(&mut self) -> bool {
        self.broker.flush()
    }
}
