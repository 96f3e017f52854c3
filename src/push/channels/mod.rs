//! Channels: who is subscribed where, and what each channel published recently.
//!
//! Sans-IO: [`Channels`] keeps the membership index and a bounded history per channel;
//! the caller delivers the shared [`Stored`] messages and tells clients about gaps.
//!
//! Membership is indexed both ways. Each channel lives in a slab slot and maps its members
//! to a seat (transport, and where the slot sits in the member's list); each member lists
//! the slots of its channels. Joining and leaving are O(1), leaving everything is
//! O(channels of that member), and no operation looks at unrelated channels or members.
//! A (channel, member) pair costs 16 bytes in the channel's map plus 4 in the member's list.
//!
//! Ids in a channel's history are consecutive, so a replay finds its start by arithmetic.
//!
//! Here: the public API and the channel slots (creation, the channel cap, removal).
//! `history` keeps each channel's messages within their bounds and answers replays;
//! `members` holds the membership index's two sides.

mod history;
mod members;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use history::{Replay, Stored};

use crate::server::message::Kind;
use history::{Bounds, History};
use members::{Seat, Slots};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The longest channel name, in bytes.
const MAX_NAME: usize = 128;

/// Maps shrink when they are less than a quarter full and have at least this capacity.
const SHRINK_ABOVE: usize = 64;

/// Channel names: 1–128 bytes of `[A-Za-z0-9_.:-]`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// How a member is connected (for presence counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A WebSocket connection.
    WebSocket,
    /// A Server-Sent Events stream.
    Sse,
    /// An HTTP long-poll request.
    LongPoll,
}

impl Transport {
    /// The transport's name in presence notices: `websocket`, `sse`, `long_poll`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::LongPoll => "long_poll",
        }
    }
}

/// A channel as [`Context::channel_list`](crate::Context::channel_list) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// Its members per transport.
    pub counts: Counts,
    /// The id of its newest message (0 before the first).
    pub last_id: u64,
    /// Its members on each worker, all transports (empty with one worker).
    pub workers: Vec<usize>,
}

/// Subscriber counts per transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Members connected by WebSocket.
    pub websocket: usize,
    /// Members connected by Server-Sent Events.
    pub sse: usize,
    /// Members connected by long polling.
    pub long_poll: usize,
}

impl Counts {
    fn of(&mut self, transport: Transport) -> &mut usize {
        match transport {
            Transport::WebSocket => &mut self.websocket,
            Transport::Sse => &mut self.sse,
            Transport::LongPoll => &mut self.long_poll,
        }
    }
}

/// One channel: its members and recent messages.
#[derive(Debug)]
struct Channel {
    name: Arc<str>,
    members: HashMap<u64, Seat>,
    counts: Counts,
    history: History,
    /// Kept even without members or history (other workers have members of it).
    pinned: bool,
}

impl Channel {
    /// A channel with nothing to keep: no members, no history, not pinned.
    fn is_idle(&self) -> bool {
        self.members.is_empty() && self.history.is_empty() && !self.pinned
    }
}

/// The payload bytes a channel's history holds by default.
pub const DEFAULT_HISTORY_BYTES: usize = 256 << 10;

/// Every channel, the membership index both ways, and each channel's history.
#[derive(Debug)]
pub struct Channels {
    /// How much history each channel keeps.
    keep: Bounds,
    /// How many channels may exist before a new one evicts the oldest without members.
    max_channels: usize,
    /// Channel slots in creation order, with their names (a slot reused by a later
    /// channel is recognised by its name): where eviction looks first.
    created: VecDeque<(u32, Arc<str>)>,
    slots: Slab<Channel>,
    by_name: HashMap<Arc<str>, u32>,
    /// Each member's channel slots; a seat's `pos` indexes this list.
    of_member: HashMap<u64, Slots>,
}

impl Channels {
    /// Keeps the last `history` messages of each channel (0 = none), at most 256 KiB of
    /// payload per channel (see [`with_history_bytes`](Self::with_history_bytes)).
    #[cfg(test)]
    pub fn new(history: usize) -> Self {
        Channels::with_history_bytes(history, DEFAULT_HISTORY_BYTES)
    }

    /// Keeps the last `history` messages of each channel, and of those only as many of
    /// the newest as fit in `bytes` of payload, or the newest alone if it is larger (a
    /// client resuming from before what is kept is told of the gap).
    pub fn with_history_bytes(history: usize, bytes: usize) -> Self {
        Channels {
            keep: Bounds {
                messages: history,
                bytes,
            },
            max_channels: usize::MAX,
            created: VecDeque::new(),
            slots: Slab::new(),
            by_name: HashMap::new(),
            of_member: HashMap::new(),
        }
    }

    /// Adds `member` (an opaque u64, the connection id) to `channel` (created if needed).
    /// Returns false if it was already a member (its transport is then left unchanged).
    /// Panics never; the caller validates the name with valid_name.
    pub fn join(&mut self, channel: &str, member: u64, transport: Transport) -> bool {
        let slot = self.slot_or_create(channel);
        if self.slots[slot as usize].members.contains_key(&member) {
            return false;
        }
        let pos = self.enlist(member, slot);
        let ch = &mut self.slots[slot as usize];
        ch.members.insert(member, Seat { transport, pos });
        *ch.counts.of(transport) += 1;
        true
    }

    /// Removes `member` from `channel`; false if it was not a member.
    #[cfg(test)]
    pub fn leave(&mut self, channel: &str, member: u64) -> bool {
        self.leave_seat(channel, member).is_some()
    }

    /// Removes `member` from `channel`; how it was connected, if it was a member.
    pub fn leave_seat(&mut self, channel: &str, member: u64) -> Option<Transport> {
        let &slot = self.by_name.get(channel)?;
        let seat = self.slots[slot as usize].members.remove(&member)?;
        self.unlist(member, seat.pos);
        self.vacate(slot, seat.transport);
        Some(seat.transport)
    }

    /// Removes `member` from every channel it is in; returns those channel names (in no
    /// particular order).
    #[cfg(test)]
    pub fn leave_all(&mut self, member: u64) -> Vec<String> {
        self.leave_all_seats(member)
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Removes `member` from every channel it is in; returns those channels with how it
    /// was connected to each (in no particular order).
    pub fn leave_all_seats(&mut self, member: u64) -> Vec<(Arc<str>, Transport)> {
        let Some(list) = self.of_member.remove(&member) else {
            return Vec::new();
        };
        shrink(&mut self.of_member);
        let mut left = Vec::with_capacity(list.len());
        for &slot in list.as_slice() {
            let ch = &mut self.slots[slot as usize];
            if let Some(seat) = ch.members.remove(&member) {
                left.push((Arc::clone(&ch.name), seat.transport));
                self.vacate(slot, seat.transport);
            }
        }
        left
    }

    /// Keeps `channel` (creating it) while `pinned`, even without members or history, and
    /// never evicts it: its members are elsewhere (on other workers), and its ids must
    /// go on. Unpinned, an idle channel goes.
    pub fn pin(&mut self, channel: &str, pinned: bool) {
        if !pinned && !self.by_name.contains_key(channel) {
            return;
        }
        let slot = self.slot_or_create(channel);
        let ch = &mut self.slots[slot as usize];
        ch.pinned = pinned;
        if ch.is_idle() {
            self.remove(slot);
        }
    }

    /// Whether `member` is in `channel`.
    pub fn is_member(&self, channel: &str, member: u64) -> bool {
        self.channel(channel)
            .is_some_and(|ch| ch.members.contains_key(&member))
    }

    /// Gives the message the channel's next id (ids start at 1 and grow by one per channel),
    /// keeps it in history (dropping the oldest beyond `history`), and returns it shared.
    /// Creates the channel if needed; a channel left with no members and no history (when
    /// `history` is 0) is not kept, so publishing to nobody leaves nothing behind.
    pub fn publish(&mut self, channel: &str, kind: Kind, data: &[u8]) -> Arc<Stored> {
        let slot = self.slot_or_create(channel);
        let ch = &mut self.slots[slot as usize];
        let stored = ch.history.publish(kind, data, self.keep);
        if ch.is_idle() {
            self.remove(slot);
        }
        stored
    }

    /// The members of `channel` with their transports (empty if unknown). Must not scan
    /// members of other channels: membership is an index.
    pub fn members(&self, channel: &str) -> impl Iterator<Item = (u64, Transport)> + '_ {
        self.channel(channel)
            .into_iter()
            .flat_map(|ch| ch.members.iter().map(|(&m, seat)| (m, seat.transport)))
    }

    /// What a subscriber that has seen every id up to and including `since` missed.
    pub fn replay(&self, channel: &str, since: u64) -> Replay {
        let Some(ch) = self.channel(channel) else {
            return Replay {
                messages: Vec::new(),
                truncated: since > 0,
                last_id: 0,
            };
        };
        ch.history.replay(since)
    }

    /// The channel's last id (0 if none was published or the channel is unknown).
    pub fn last_id(&self, channel: &str) -> u64 {
        self.channel(channel).map_or(0, |ch| ch.history.last_id())
    }

    /// Counts per transport, None for an unknown channel.
    pub fn counts(&self, channel: &str) -> Option<Counts> {
        self.channel(channel).map(|ch| ch.counts)
    }

    /// Every known channel with its counts and last id, sorted by name.
    pub fn list(&self) -> Vec<ChannelInfo> {
        let mut all: Vec<_> = self
            .slots
            .iter()
            .map(|(_, ch)| ChannelInfo {
                name: ch.name.to_string(),
                counts: ch.counts,
                last_id: ch.history.last_id(),
                workers: Vec::new(),
            })
            .collect();
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The name of a channel `member` is in: the first it joined, unless it left that
    /// one (a cheap shared handle, for a handler that needs it on every message).
    pub fn first_channel_of(&self, member: u64) -> Option<Arc<str>> {
        let slot = *self.of_member.get(&member)?.as_slice().first()?;
        Some(Arc::clone(&self.slots[slot as usize].name))
    }

    /// The channels `member` is in (in no particular order).
    pub fn channels_of(&self, member: u64) -> Vec<String> {
        self.of_member.get(&member).map_or_else(Vec::new, |list| {
            list.as_slice()
                .iter()
                .map(|&slot| self.slots[slot as usize].name.to_string())
                .collect()
        })
    }

    fn channel(&self, name: &str) -> Option<&Channel> {
        self.by_name
            .get(name)
            .map(|&slot| &self.slots[slot as usize])
    }

    /// Caps the number of channels: creating one more evicts the oldest channel that has
    /// no members (its history goes; its ids start again at 1 if it comes back). When
    /// every channel has members, the cap is exceeded rather than a member refused.
    pub fn with_max_channels(mut self, max: usize) -> Self {
        self.max_channels = max.max(1);
        self
    }

    /// How many channels exist.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Payload bytes of history kept by every channel (a walk over them).
    pub fn history_bytes(&self) -> usize {
        self.slots.iter().map(|(_, c)| c.history.bytes()).sum()
    }

    /// Makes room for one more channel under the cap, if a channel without members can go.
    fn evict_for_new(&mut self) {
        let mut looked = 0;
        while self.slots.len() >= self.max_channels && looked < self.created.len() {
            let Some((slot, name)) = self.created.pop_front() else {
                return;
            };
            let current = self
                .slots
                .get(slot as usize)
                .filter(|ch| Arc::ptr_eq(&ch.name, &name));
            match current {
                None => {} // removed earlier: a stale entry
                Some(ch) if ch.members.is_empty() && !ch.pinned => {
                    log::debug!("channel cap reached: evicting idle channel {name}");
                    self.remove(slot);
                }
                Some(_) => {
                    looked += 1;
                    self.created.push_back((slot, name));
                }
            }
        }
    }

    fn slot_or_create(&mut self, name: &str) -> u32 {
        if let Some(&slot) = self.by_name.get(name) {
            return slot;
        }
        self.evict_for_new();
        let name: Arc<str> = Arc::from(name);
        let slot = small(self.slots.insert(Channel {
            name: Arc::clone(&name),
            members: HashMap::new(),
            counts: Counts::default(),
            history: History::default(),
            pinned: false,
        }));
        self.created.push_back((slot, Arc::clone(&name)));
        if self.created.len() > 2 * self.slots.len() + 16 {
            // Drop stale entries (channels already gone) so the list stays O(channels).
            let slots = &self.slots;
            self.created.retain(|(slot, name)| {
                slots
                    .get(*slot as usize)
                    .is_some_and(|ch| Arc::ptr_eq(&ch.name, name))
            });
        }
        self.by_name.insert(name, slot);
        slot
    }

    /// Accounts for a member that left `slot`; drops the channel if nothing is left in it.
    fn vacate(&mut self, slot: u32, transport: Transport) {
        let ch = &mut self.slots[slot as usize];
        *ch.counts.of(transport) -= 1;
        shrink(&mut ch.members);
        if ch.is_idle() {
            self.remove(slot);
        }
    }

    fn remove(&mut self, slot: u32) {
        let ch = self.slots.remove(slot as usize);
        self.by_name.remove(&ch.name);
        shrink(&mut self.by_name);
    }
}

/// A slab key or list index as stored in the index. Every channel and every membership
/// takes far more than a byte, so 2^32 of them cannot fit in memory.
fn small(index: usize) -> u32 {
    u32::try_from(index).expect("fewer than 2^32 channels")
}

/// Gives back memory once a map that grew large is mostly empty (amortised O(1)).
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() >= SHRINK_ABOVE && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}
