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

use crate::server::message::Kind;
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

/// A channel as [`Channels::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// Its members per transport.
    pub counts: Counts,
    /// The id of its newest message (0 before the first).
    pub last_id: u64,
}

/// One published message as kept in history and shared by every delivery.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored {
    /// The message's id in its channel (1, 2, 3, …).
    pub id: u64,
    /// Whether the payload is text (valid UTF-8) or binary.
    pub kind: Kind,
    /// The payload.
    pub data: Box<[u8]>,
}

/// What a (re)connecting subscriber missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Messages with id > since still in history, oldest first.
    pub messages: Vec<Arc<Stored>>,
    /// true when some messages after `since` are no longer in history (since < oldest kept − 1),
    /// or when `since` is ahead of the channel (since > last id, e.g. after a server restart);
    /// the subscriber must be told explicitly.
    pub truncated: bool,
    /// The channel's last id (what the subscriber has seen once it took `messages`).
    pub last_id: u64,
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

/// A member's place in one channel.
#[derive(Debug, Clone, Copy)]
struct Seat {
    transport: Transport,
    /// The index of this channel's slot in the member's list.
    pos: u32,
}

/// A member's channel slots: inline for the usual single channel (no allocation), a
/// list beyond that.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slots {
    One(u32),
    // Boxed on purpose: it keeps `Slots` (and every member's index entry) at 16 bytes.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<u32>>),
}

impl Slots {
    fn as_slice(&self) -> &[u32] {
        match self {
            Slots::One(slot) => std::slice::from_ref(slot),
            Slots::Many(list) => list,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn push(&mut self, slot: u32) {
        match self {
            Slots::One(first) => *self = Slots::Many(Box::new(vec![*first, slot])),
            Slots::Many(list) => list.push(slot),
        }
    }

    /// Removes the entry at `pos`, moving the last one into its place.
    fn swap_remove(&mut self, pos: usize) {
        match self {
            Slots::One(_) => *self = Slots::Many(Box::default()),
            Slots::Many(list) => {
                list.swap_remove(pos);
            }
        }
    }
}

/// One channel: its members and recent messages.
#[derive(Debug)]
struct Channel {
    name: Arc<str>,
    members: HashMap<u64, Seat>,
    counts: Counts,
    history: VecDeque<Arc<Stored>>,
    /// Payload bytes in `history`.
    history_bytes: usize,
    last_id: u64,
}

impl Channel {
    /// A channel with nothing to keep: no members and no history.
    fn is_idle(&self) -> bool {
        self.members.is_empty() && self.history.is_empty()
    }
}

/// The payload bytes a channel's history holds by default.
pub const DEFAULT_HISTORY_BYTES: usize = 256 << 10;

/// Every channel, the membership index both ways, and each channel's history.
#[derive(Debug)]
pub struct Channels {
    /// How many messages each channel keeps.
    keep: usize,
    /// How many payload bytes each channel's history may hold.
    keep_bytes: usize,
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
    pub fn new(history: usize) -> Self {
        Channels::with_history_bytes(history, DEFAULT_HISTORY_BYTES)
    }

    /// Keeps the last `history` messages of each channel, and of those only as many of
    /// the newest as fit in `bytes` of payload, or the newest alone if it is larger (a
    /// client resuming from before what is kept is told of the gap).
    pub fn with_history_bytes(history: usize, bytes: usize) -> Self {
        Channels {
            keep: history,
            keep_bytes: bytes,
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
        let ch = &mut self.slots[slot as usize];
        if ch.members.contains_key(&member) {
            return false;
        }
        let pos = match self.of_member.get_mut(&member) {
            Some(list) => {
                list.push(slot);
                small(list.len() - 1)
            }
            None => {
                self.of_member.insert(member, Slots::One(slot));
                0
            }
        };
        ch.members.insert(member, Seat { transport, pos });
        *ch.counts.of(transport) += 1;
        true
    }

    /// Removes `member` from `channel`; false if it was not a member.
    pub fn leave(&mut self, channel: &str, member: u64) -> bool {
        let Some(&slot) = self.by_name.get(channel) else {
            return false;
        };
        let Some(seat) = self.slots[slot as usize].members.remove(&member) else {
            return false;
        };
        self.unlist(member, seat.pos);
        self.vacate(slot, seat.transport);
        true
    }

    /// Removes `member` from every channel it is in; returns those channel names (in no
    /// particular order).
    pub fn leave_all(&mut self, member: u64) -> Vec<String> {
        let Some(list) = self.of_member.remove(&member) else {
            return Vec::new();
        };
        shrink(&mut self.of_member);
        let mut names = Vec::with_capacity(list.len());
        for &slot in list.as_slice() {
            let ch = &mut self.slots[slot as usize];
            names.push(ch.name.to_string());
            if let Some(seat) = ch.members.remove(&member) {
                self.vacate(slot, seat.transport);
            }
        }
        names
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
        ch.last_id += 1;
        let stored = Arc::new(Stored {
            id: ch.last_id,
            kind,
            data: data.into(),
        });
        if self.keep > 0 {
            ch.history_bytes += data.len();
            ch.history.push_back(Arc::clone(&stored));
            // The newest message stays even alone over the budget: the channel (and its
            // ids) must outlive it.
            while ch.history.len() > self.keep
                || (ch.history.len() > 1 && ch.history_bytes > self.keep_bytes)
            {
                let Some(old) = ch.history.pop_front() else {
                    break;
                };
                ch.history_bytes -= old.data.len();
            }
        }
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
        let last_id = ch.last_id;
        if since >= last_id {
            return Replay {
                messages: Vec::new(),
                truncated: since > last_id,
                last_id,
            };
        }
        // History holds the consecutive ids oldest..=last_id (none when empty).
        let oldest = ch.history.front().map_or(last_id + 1, |m| m.id);
        let skip = usize::try_from((since + 1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        Replay {
            messages: ch.history.iter().skip(skip).cloned().collect(),
            truncated: since + 1 < oldest,
            last_id,
        }
    }

    /// The channel's last id (0 if none was published or the channel is unknown).
    pub fn last_id(&self, channel: &str) -> u64 {
        self.channel(channel).map_or(0, |ch| ch.last_id)
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
                last_id: ch.last_id,
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
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no channel exists.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
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
                Some(ch) if ch.members.is_empty() => {
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
            history: VecDeque::new(),
            history_bytes: 0,
            last_id: 0,
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

    /// Takes the entry at `pos` out of `member`'s list, moving the last entry into its
    /// place and updating that channel's seat.
    fn unlist(&mut self, member: u64, pos: u32) {
        let Some(list) = self.of_member.get_mut(&member) else {
            return;
        };
        list.swap_remove(pos as usize);
        if let Some(&moved) = list.as_slice().get(pos as usize) {
            if let Some(seat) = self.slots[moved as usize].members.get_mut(&member) {
                seat.pos = pos;
            }
        } else if list.is_empty() {
            self.of_member.remove(&member);
            shrink(&mut self.of_member);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, counts: Counts, last_id: u64) -> ChannelInfo {
        ChannelInfo {
            name: name.to_owned(),
            counts,
            last_id,
        }
    }
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn ids(messages: &[Arc<Stored>]) -> Vec<u64> {
        messages.iter().map(|m| m.id).collect()
    }

    /// A channel with `history` kept that received `published` messages.
    fn published(history: usize, published: u64) -> Channels {
        let mut c = Channels::new(history);
        for i in 0..published {
            c.publish("ch", Kind::Text, i.to_string().as_bytes());
        }
        c
    }

    /// Checks that both indexes, the counts and the name map agree.
    fn assert_consistent(c: &Channels) {
        assert_eq!(c.by_name.len(), c.slots.len());
        for (slot, ch) in &c.slots {
            assert_eq!(c.by_name[&ch.name] as usize, slot);
            assert!(!ch.is_idle(), "idle channel {} kept", ch.name);
            assert!(ch.history.len() <= c.keep);
            let mut counts = Counts::default();
            for (m, seat) in &ch.members {
                *counts.of(seat.transport) += 1;
                assert_eq!(c.of_member[m].as_slice()[seat.pos as usize] as usize, slot);
            }
            assert_eq!(ch.counts, counts);
        }
        for (m, list) in &c.of_member {
            assert!(!list.is_empty());
            for (pos, &slot) in list.as_slice().iter().enumerate() {
                assert_eq!(c.slots[slot as usize].members[m].pos as usize, pos);
            }
        }
    }

    #[test]
    fn name_validation() {
        assert!(!valid_name(""));
        assert!(valid_name(&"a".repeat(128)));
        assert!(!valid_name(&"a".repeat(129)));
        for ok in ["a", "Z", "0", "_", ".", ":", "-", "room:42.b_c-D"] {
            assert!(valid_name(ok), "{ok:?}");
        }
        for bad in [
            "a b",
            " ",
            "a/b",
            "/",
            "é",
            "ch\u{0}",
            "a\tb",
            "a*",
            "a#b",
            "ü".repeat(64).as_str(),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_grow_by_one_per_channel() {
        let mut c = Channels::new(4);
        assert_eq!(c.publish("a", Kind::Text, b"1").id, 1);
        assert_eq!(c.publish("a", Kind::Text, b"2").id, 2);
        assert_eq!(c.publish("b", Kind::Binary, b"x").id, 1);
        assert_eq!(c.publish("a", Kind::Text, b"3").id, 3);
        assert_eq!(c.publish("b", Kind::Binary, b"y").id, 2);
        assert_eq!((c.last_id("a"), c.last_id("b"), c.last_id("c")), (3, 2, 0));
        let m = c.publish("b", Kind::Binary, b"z");
        assert_eq!(
            *m,
            Stored {
                id: 3,
                kind: Kind::Binary,
                data: Box::from(&b"z"[..])
            }
        );
    }

    #[test]
    fn history_is_bounded() {
        let c = published(3, 10);
        let ch = c.channel("ch").unwrap();
        assert_eq!(
            ch.history.iter().map(|m| m.id).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert_eq!(&*ch.history[0].data, b"7");
        assert!(published(0, 5).channel("ch").is_none());
    }

    #[test]
    fn history_is_bounded_in_bytes_too() {
        let mut c = Channels::with_history_bytes(100, 10);
        for data in [&b"aaaa"[..], b"bbbb", b"cccc", b"dd"] {
            c.publish("ch", Kind::Text, data);
        }
        let ids = |c: &Channels| -> Vec<u64> {
            c.channel("ch")
                .unwrap()
                .history
                .iter()
                .map(|m| m.id)
                .collect()
        };
        assert_eq!(ids(&c), [2, 3, 4], "10 bytes: bbbb cccc dd");
        c.publish("ch", Kind::Text, &[b'x'; 11]);
        assert_eq!(
            ids(&c),
            [5],
            "alone over the budget, it stays (and so do the ids)"
        );
        let replay = c.replay("ch", 3);
        assert!(replay.truncated);
        assert_eq!(c.publish("ch", Kind::Text, b"y").id, 6);
        assert_eq!(ids(&c), [6]);
    }

    #[test]
    fn the_channel_cap_evicts_the_oldest_channel_without_members() {
        let mut c = Channels::new(10).with_max_channels(3);
        assert!(c.join("a", 1, Transport::WebSocket));
        c.publish("b", Kind::Text, b"old");
        c.publish("c", Kind::Text, b"old");
        c.publish("d", Kind::Text, b"new"); // evicts b: a has a member
        assert_eq!(c.len(), 3);
        assert_eq!(c.last_id("b"), 0, "b is gone");
        assert_eq!(c.last_id("c"), 1);
        assert!(c.is_member("a", 1));
        assert!(c.join("e", 2, Transport::Sse)); // evicts c
        assert_eq!(c.last_id("c"), 0);
        assert!(c.join("f", 3, Transport::Sse)); // evicts d; now every channel has members
        assert!(
            c.join("g", 4, Transport::Sse),
            "over the cap rather than refusing"
        );
        assert_eq!(c.len(), 4);
        for round in 0..1000 {
            c.publish(&format!("t{round}"), Kind::Text, b"x"); // churn: the list stays small
        }
        assert!(c.created.len() <= 2 * c.len() + 16, "{}", c.created.len());
        assert_consistent(&c);
    }

    #[test]
    fn replay_at_last_is_empty() {
        let r = published(3, 5).replay("ch", 5);
        assert_eq!(
            r,
            Replay {
                messages: vec![],
                truncated: false,
                last_id: 5
            }
        );
    }

    #[test]
    fn replay_inside_history_gives_the_later_ones_in_order() {
        let c = published(5, 8);
        let r = c.replay("ch", 5);
        assert_eq!(
            (ids(&r.messages), r.truncated, r.last_id),
            (vec![6, 7, 8], false, 8)
        );
        // Just before the oldest kept (4): nothing is missing.
        let r = c.replay("ch", 3);
        assert_eq!(
            (ids(&r.messages), r.truncated),
            (vec![4, 5, 6, 7, 8], false)
        );
    }

    #[test]
    fn replay_older_than_history_is_truncated() {
        let r = published(3, 10).replay("ch", 4);
        assert_eq!(
            (ids(&r.messages), r.truncated, r.last_id),
            (vec![8, 9, 10], true, 10)
        );
    }

    #[test]
    fn replay_from_zero_after_a_drop_is_truncated() {
        let r = published(3, 4).replay("ch", 0);
        assert_eq!((ids(&r.messages), r.truncated), (vec![2, 3, 4], true));
    }

    #[test]
    fn replay_from_zero_with_nothing_dropped_gives_all() {
        let r = published(3, 3).replay("ch", 0);
        assert_eq!(
            (ids(&r.messages), r.truncated, r.last_id),
            (vec![1, 2, 3], false, 3)
        );
    }

    #[test]
    fn replay_ahead_of_the_channel_is_truncated() {
        let r = published(3, 3).replay("ch", 7);
        assert_eq!(
            r,
            Replay {
                messages: vec![],
                truncated: true,
                last_id: 3
            }
        );
        let r = Channels::new(3).replay("unknown", 1);
        assert_eq!(
            r,
            Replay {
                messages: vec![],
                truncated: true,
                last_id: 0
            }
        );
        let r = Channels::new(3).replay("unknown", 0);
        assert_eq!(
            r,
            Replay {
                messages: vec![],
                truncated: false,
                last_id: 0
            }
        );
    }

    #[test]
    fn replay_without_history_reports_every_gap() {
        let mut c = Channels::new(0);
        c.join("ch", 1, Transport::Sse);
        c.publish("ch", Kind::Text, b"a");
        c.publish("ch", Kind::Text, b"b");
        let r = c.replay("ch", 1);
        assert_eq!(
            r,
            Replay {
                messages: vec![],
                truncated: true,
                last_id: 2
            }
        );
        assert!(!c.replay("ch", 2).truncated);
    }

    #[test]
    fn replay_shares_the_published_message() {
        let mut c = Channels::new(2);
        let m = c.publish("ch", Kind::Binary, b"bin");
        let r = c.replay("ch", 0);
        assert!(Arc::ptr_eq(&m, &r.messages[0]));
        assert_eq!(r.messages[0].kind, Kind::Binary);
    }

    #[test]
    fn join_twice_returns_false_and_keeps_the_transport() {
        let mut c = Channels::new(0);
        assert!(c.join("ch", 7, Transport::WebSocket));
        assert!(!c.join("ch", 7, Transport::Sse));
        assert_eq!(
            c.members("ch").collect::<Vec<_>>(),
            [(7, Transport::WebSocket)]
        );
        assert_eq!(c.counts("ch").unwrap().websocket, 1);
        assert_eq!(c.counts("ch").unwrap().sse, 0);
        assert_consistent(&c);
    }

    #[test]
    fn leave_updates_both_indexes_and_counts() {
        let mut c = Channels::new(0);
        for ch in ["a", "b", "c"] {
            c.join(ch, 1, Transport::WebSocket);
            c.join(ch, 2, Transport::LongPoll);
        }
        // Leaving the first of member 1's channels moves its last one into place.
        assert!(c.leave("a", 1));
        assert!(!c.leave("a", 1));
        assert!(!c.leave("nowhere", 1));
        assert_consistent(&c);
        assert!(!c.is_member("a", 1));
        assert!(c.is_member("a", 2));
        let mut of1 = c.channels_of(1);
        of1.sort();
        assert_eq!(of1, ["b", "c"]);
        assert_eq!(
            c.counts("a"),
            Some(Counts {
                websocket: 0,
                sse: 0,
                long_poll: 1
            })
        );
        assert!(c.leave("c", 1));
        assert!(c.leave("b", 1));
        assert_consistent(&c);
        assert!(c.channels_of(1).is_empty());
        assert!(!c.of_member.contains_key(&1));
    }

    #[test]
    fn leave_all_updates_both_indexes_and_counts() {
        let mut c = Channels::new(0);
        for ch in ["a", "b", "c"] {
            c.join(ch, 1, Transport::Sse);
        }
        c.join("b", 2, Transport::Sse);
        let mut left = c.leave_all(1);
        left.sort();
        assert_eq!(left, ["a", "b", "c"]);
        assert!(c.leave_all(1).is_empty());
        assert_consistent(&c);
        assert!(c.channels_of(1).is_empty());
        assert_eq!(c.members("b").collect::<Vec<_>>(), [(2, Transport::Sse)]);
        assert_eq!(
            c.counts("b"),
            Some(Counts {
                websocket: 0,
                sse: 1,
                long_poll: 0
            })
        );
        assert_eq!(c.counts("a"), None);
    }

    #[test]
    fn empty_channel_without_history_disappears() {
        let mut c = Channels::new(0);
        c.join("a", 1, Transport::WebSocket);
        c.publish("a", Kind::Text, b"x");
        assert_eq!(c.list().len(), 1);
        c.leave("a", 1);
        assert!(c.list().is_empty());
        assert_eq!(c.members("a").count(), 0);
        assert_eq!(c.last_id("a"), 0);
        // Publishing to nobody without history leaves nothing behind.
        assert_eq!(c.publish("b", Kind::Text, b"x").id, 1);
        assert!(c.list().is_empty());
        assert_consistent(&c);
    }

    #[test]
    fn channel_with_history_stays_and_its_ids_keep_growing() {
        let mut c = Channels::new(2);
        c.join("h", 1, Transport::WebSocket);
        c.join("n", 1, Transport::WebSocket);
        c.publish("h", Kind::Text, b"x");
        c.publish("h", Kind::Text, b"y");
        c.leave_all(1);
        assert_eq!(c.list(), [info("h", Counts::default(), 2)]);
        c.join("h", 2, Transport::Sse);
        assert_eq!(c.publish("h", Kind::Text, b"z").id, 3);
        assert_eq!(ids(&c.replay("h", 1).messages), [2, 3]);
        assert_consistent(&c);
    }

    #[test]
    fn counts_per_transport_and_sorted_list() {
        let mut c = Channels::new(0);
        c.join("z", 1, Transport::WebSocket);
        c.join("z", 2, Transport::WebSocket);
        c.join("z", 3, Transport::Sse);
        c.join("z", 4, Transport::LongPoll);
        c.join("a", 4, Transport::LongPoll);
        c.publish("z", Kind::Text, b"x");
        let z = Counts {
            websocket: 2,
            sse: 1,
            long_poll: 1,
        };
        let a = Counts {
            websocket: 0,
            sse: 0,
            long_poll: 1,
        };
        assert_eq!(c.counts("z"), Some(z));
        assert_eq!(c.counts("y"), None);
        assert_eq!(c.list(), [info("a", a, 0), info("z", z, 1)]);
        let mut members: Vec<_> = c.members("z").collect();
        members.sort_by_key(|m| m.0);
        assert_eq!(members[2], (3, Transport::Sse));
        assert_eq!(members.len(), 4);
    }

    #[test]
    fn maps_shrink_after_a_crowd_leaves() {
        let mut c = Channels::new(1);
        c.publish("ch", Kind::Text, b"x");
        for m in 0..1000 {
            c.join("ch", m, Transport::WebSocket);
        }
        for m in 0..1000 {
            c.leave_all(m);
        }
        assert!(c.channel("ch").unwrap().members.capacity() < SHRINK_ABOVE);
        assert!(c.of_member.capacity() < SHRINK_ABOVE);
        assert_consistent(&c);
    }

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    const TRANSPORTS: [Transport; 3] = [Transport::WebSocket, Transport::Sse, Transport::LongPoll];

    #[derive(Debug, Clone)]
    enum Op {
        Join(usize, u64, usize),
        Leave(usize, u64),
        LeaveAll(u64),
        Publish(usize),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..NAMES.len(), 0u64..6, 0..TRANSPORTS.len()).prop_map(|(c, m, t)| Op::Join(c, m, t)),
            2 => (0..NAMES.len(), 0u64..6).prop_map(|(c, m)| Op::Leave(c, m)),
            1 => (0u64..6).prop_map(Op::LeaveAll),
            3 => (0..NAMES.len()).prop_map(Op::Publish),
        ]
    }

    /// The plain model: members per channel and last id per channel.
    #[derive(Default)]
    struct Model {
        members: BTreeMap<&'static str, BTreeMap<u64, Transport>>,
        last: BTreeMap<&'static str, u64>,
    }

    impl Model {
        /// Forgets channels the real thing must have dropped.
        fn settle(&mut self, name: &'static str, keep: usize) {
            let empty = self.members.get(name).is_none_or(|m| m.is_empty());
            let no_history = keep == 0 || self.last.get(name).is_none_or(|&l| l == 0);
            if empty && no_history {
                self.members.remove(name);
                self.last.remove(name);
            }
        }
    }

    proptest! {
        #[test]
        fn random_operations_keep_the_index_and_history_right(
            keep in 0usize..4,
            ops in proptest::collection::vec(arb_op(), 0..60),
            sinces in proptest::collection::vec(0u64..12, 4),
        ) {
            let mut c = Channels::new(keep);
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Join(i, m, t) => {
                        let set = model.members.entry(NAMES[i]).or_default();
                        let fresh = !set.contains_key(&m);
                        if fresh {
                            set.insert(m, TRANSPORTS[t]);
                        }
                        prop_assert_eq!(c.join(NAMES[i], m, TRANSPORTS[t]), fresh);
                    }
                    Op::Leave(i, m) => {
                        let was = model.members.get_mut(NAMES[i]).is_some_and(|s| s.remove(&m).is_some());
                        model.settle(NAMES[i], keep);
                        prop_assert_eq!(c.leave(NAMES[i], m), was);
                    }
                    Op::LeaveAll(m) => {
                        let mut want = Vec::new();
                        for name in NAMES {
                            if model.members.get_mut(name).is_some_and(|s| s.remove(&m).is_some()) {
                                want.push(name.to_string());
                            }
                            model.settle(name, keep);
                        }
                        let mut got = c.leave_all(m);
                        got.sort();
                        prop_assert_eq!(got, want);
                    }
                    Op::Publish(i) => {
                        let last = model.last.entry(NAMES[i]).or_default();
                        *last += 1;
                        let want = *last;
                        model.settle(NAMES[i], keep);
                        prop_assert_eq!(c.publish(NAMES[i], Kind::Text, b"m").id, want);
                    }
                }
                assert_consistent(&c);
            }
            for name in NAMES {
                let want = model.members.get(name).cloned().unwrap_or_default();
                let got: BTreeMap<u64, Transport> = c.members(name).collect();
                prop_assert_eq!(c.members(name).count(), got.len());
                prop_assert_eq!(got, want);
                for (&m, _) in model.members.get(name).into_iter().flatten() {
                    prop_assert!(c.channels_of(m).contains(&name.to_string()));
                }
                let last = model.last.get(name).copied().unwrap_or(0);
                prop_assert_eq!(c.last_id(name), last);
                let first_kept = last - last.min(keep as u64) + 1;
                for &since in &sinces {
                    let r = c.replay(name, since);
                    let want: Vec<u64> = (since + 1..=last).filter(|&id| id >= first_kept).collect();
                    prop_assert_eq!(ids(&r.messages), want);
                    prop_assert_eq!(r.truncated, since > last || since + 1 < first_kept);
                    prop_assert_eq!(r.last_id, last);
                }
            }
            let listed: Vec<String> = c.list().into_iter().map(|l| l.name).collect();
            let modeled: Vec<String> = model.members.keys().chain(model.last.keys())
                .collect::<BTreeSet<_>>().into_iter().map(|n| n.to_string()).collect();
            prop_assert_eq!(listed, modeled);
        }
    }
}
