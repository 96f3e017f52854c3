//! The membership index, both ways: a channel maps each member to its [`Seat`] (its
//! transport, and where the channel's slot sits in the member's list); a member lists
//! the slots of its channels in [`Slots`]. A seat's `pos` lets a member leave one channel
//! in O(1); the list lets it leave all of them without looking at other channels.

use super::{shrink, small, Channels, Transport};

/// A member's place in one channel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seat {
    pub(super) transport: Transport,
    /// The index of this channel's slot in the member's list.
    pub(super) pos: u32,
}

/// A member's channel slots: inline for the usual single channel (no allocation), a
/// list beyond that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Slots {
    One(u32),
    // Boxed on purpose: it keeps `Slots` (and every member's index entry) at 16 bytes.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<u32>>),
}

impl Slots {
    pub(super) fn as_slice(&self) -> &[u32] {
        match self {
            Slots::One(slot) => std::slice::from_ref(slot),
            Slots::Many(list) => list,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    pub(super) fn len(&self) -> usize {
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

impl Channels {
    /// Adds `slot` to `member`'s list; returns its position there (the seat's `pos`).
    pub(super) fn enlist(&mut self, member: u64, slot: u32) -> u32 {
        match self.of_member.get_mut(&member) {
            Some(list) => {
                list.push(slot);
                small(list.len() - 1)
            }
            None => {
                self.of_member.insert(member, Slots::One(slot));
                0
            }
        }
    }

    /// Takes the entry at `pos` out of `member`'s list, moving the last entry into its
    /// place and updating that channel's seat.
    pub(super) fn unlist(&mut self, member: u64, pos: u32) {
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
}
