//! A channel's history: its newest messages, bounded in number and in payload bytes, and
//! its last id.
//!
//! Ids in a history are consecutive, so a replay finds its start by arithmetic.

use crate::server::message::Kind;
use std::collections::VecDeque;
use std::sync::Arc;

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

/// How much history each channel keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    /// How many messages (0 = none).
    pub(super) messages: usize,
    /// How many payload bytes; the newest message stays even alone over this.
    pub(super) bytes: usize,
}

/// One channel's recent messages and its last id.
#[derive(Debug, Default)]
pub(super) struct History {
    /// The consecutive ids oldest..=last_id (none when empty).
    messages: VecDeque<Arc<Stored>>,
    /// Payload bytes in `messages`.
    bytes: usize,
    /// The id of the newest message published, kept or not (0 before the first).
    last_id: u64,
}

impl History {
    /// Payload bytes kept.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives the message the next id (ids start at 1 and grow by one), keeps it (dropping
    /// the oldest beyond `bounds`), and returns it shared.
    pub(super) fn publish(&mut self, kind: Kind, data: &[u8], bounds: Bounds) -> Arc<Stored> {
        self.last_id += 1;
        let stored = Arc::new(Stored {
            id: self.last_id,
            kind,
            data: data.into(),
        });
        if bounds.messages > 0 {
            self.bytes += data.len();
            self.messages.push_back(Arc::clone(&stored));
            // The newest message stays even alone over the budget: the channel (and its
            // ids) must outlive it.
            while self.messages.len() > bounds.messages
                || (self.messages.len() > 1 && self.bytes > bounds.bytes)
            {
                let Some(old) = self.messages.pop_front() else {
                    break;
                };
                self.bytes -= old.data.len();
            }
        }
        stored
    }

    /// Whether no message is kept.
    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The id of the newest message (0 before the first).
    pub(super) fn last_id(&self) -> u64 {
        self.last_id
    }

    /// What a subscriber that has seen every id up to and including `since` missed.
    pub(super) fn replay(&self, since: u64) -> Replay {
        let last_id = self.last_id;
        if since >= last_id {
            return Replay {
                messages: Vec::new(),
                truncated: since > last_id,
                last_id,
            };
        }
        let oldest = self.messages.front().map_or(last_id + 1, |m| m.id);
        let skip = usize::try_from((since + 1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        Replay {
            messages: self.messages.iter().skip(skip).cloned().collect(),
            truncated: since + 1 < oldest,
            last_id,
        }
    }

    /// The kept messages, oldest first.
    #[cfg(test)]
    pub(super) fn messages(&self) -> &VecDeque<Arc<Stored>> {
        &self.messages
    }
}
