//! Slow consumers: what happens when a message finds a connection's backlog (its
//! outbound queue) over `max_backlog` bytes. The layer that sends says which policy
//! applies to each message (the push layer: per channel) and tags it, so that a policy
//! can tell one group of messages (a channel's) from the others.
//!
//! A queue's first bytes, up to its [`congestion_point`] (64 KiB, or half the limit),
//! are treated as in flight and always go out; messages queued behind them are kept one
//! by one, tagged, so that a policy can drop whole messages. Control frames are never
//! dropped: they are queued ahead of the droppable messages.

use crate::server::outbox::{Outbox, CONGESTED};
use std::fmt;
use std::str::FromStr;

/// What to do with a message that finds its connection's queue over the backlog limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Close the connection with 1008 (the Close goes ahead of the queued messages,
    /// which are dropped); an event stream is ended. Nothing is lost silently: the client
    /// learns why and resumes from history. The default.
    #[default]
    Close,
    /// Drop the oldest queued messages of the same stream to make room for the new one
    /// (if there are none, the new one is dropped).
    DropOldest,
    /// Drop the new message; what is queued stays.
    DropNewest,
    /// Conflate: as soon as the reader is behind (its queue reached the congestion
    /// point), a new message replaces the queued ones of its stream, so a ticker's client
    /// gets the latest value, not a backlog of stale ones. At the limit itself (other
    /// streams fill the queue) the new message is dropped.
    Latest,
}

impl Policy {
    /// The policy's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Close => "close",
            Policy::DropOldest => "drop-oldest",
            Policy::DropNewest => "drop-newest",
            Policy::Latest => "latest",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            Policy::Close,
            Policy::DropOldest,
            Policy::DropNewest,
            Policy::Latest,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| {
            format!("unknown backlog policy `{s}` (close, drop-oldest, drop-newest, latest)")
        })
    }
}

/// A change in a connection's backlog, for
/// [`Handler::on_backlog`](crate::Handler::on_backlog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// The queue holds this many bytes, more than half of the backlog limit.
    High(usize),
    /// The queue that was high is empty again.
    Drained,
}

/// The tag of a queued message: messages with the same tag are one group for the
/// policies that drop or replace ([`Policy::DropOldest`], [`Policy::Latest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(pub(crate) u32);

impl Tag {
    /// Messages sent directly or broadcast (not through a named group).
    pub const DIRECT: Tag = Tag(0);

    /// The tag of the group called `name` (a channel): never [`Tag::DIRECT`].
    pub fn named(name: &str) -> Tag {
        // FNV-1a: a collision only makes `latest`/`drop-oldest` treat two groups as one
        // on a congested connection.
        let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Tag(hash.max(1))
    }
}

/// What to do with the message at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Queue it.
    Queue,
    /// Do not queue it (it was counted as dropped).
    Skip,
    /// Do not queue it; close the connection for overflow.
    Close,
}

/// Where a queue of at most `limit` bytes becomes congested: from here on its data
/// messages are queued one by one, so that a policy can drop them (64 KiB, or half the
/// limit if that is less).
pub fn congestion_point(limit: usize) -> usize {
    CONGESTED.min(limit / 2)
}

/// Decides whether a message tagged `tag` may be queued in `outbox` (which may hold
/// `limit` bytes), applying `policy` if the queue is full (or, for [`Policy::Latest`],
/// congested). Returns the verdict and how many messages were dropped (also added to
/// the connection's count, `drops`).
#[inline]
pub(crate) fn admit(
    outbox: &mut Outbox,
    drops: &mut u32,
    tag: Tag,
    policy: Policy,
    limit: usize,
) -> (Verdict, u32) {
    let queued = outbox.len();
    let latest = policy == Policy::Latest && queued >= congestion_point(limit);
    if queued <= limit && !latest {
        return (Verdict::Queue, 0);
    }
    let (verdict, dropped) = match policy {
        Policy::Close => return (Verdict::Close, 0),
        Policy::DropNewest => (Verdict::Skip, 1),
        Policy::DropOldest => match outbox.drop_oldest(tag.0, limit) {
            0 => (Verdict::Skip, 1),
            n => (Verdict::Queue, n),
        },
        Policy::Latest => {
            let n = outbox.drop_tag(tag.0);
            if outbox.len() > limit {
                (Verdict::Skip, n + 1)
            } else {
                (Verdict::Queue, n)
            }
        }
    };
    *drops = drops.saturating_add(dropped);
    (verdict, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_their_cli_names() {
        for p in [
            Policy::Close,
            Policy::DropOldest,
            Policy::DropNewest,
            Policy::Latest,
        ] {
            assert_eq!(p.name().parse::<Policy>(), Ok(p));
        }
        assert!("drop".parse::<Policy>().is_err());
    }

    #[test]
    fn named_tags_are_never_the_direct_tag() {
        assert_ne!(Tag::named(""), Tag::DIRECT);
        assert_ne!(Tag::named("a"), Tag::named("b"));
        assert_eq!(Tag::named("lobby"), Tag::named("lobby"));
    }

    const LIMIT: usize = 1000;

    /// A queue over its congestion point (500 bytes of in-flight output), then `n`
    /// droppable 100-byte messages: tags 1 and 2 alternating.
    fn backed_up(n: usize) -> Outbox {
        let mut outbox = Outbox::default();
        outbox.push_bytes(&[0; 500]);
        for i in 0..n {
            outbox.push_message_vec(1 + (i % 2) as u32, vec![0; 100]);
        }
        outbox
    }

    #[test]
    fn under_the_limit_everything_is_queued() {
        for policy in [Policy::Close, Policy::DropOldest, Policy::DropNewest] {
            let mut outbox = backed_up(4);
            let mut drops = 0;
            let verdict = admit(&mut outbox, &mut drops, Tag(1), policy, LIMIT);
            assert_eq!((verdict, drops), ((Verdict::Queue, 0), 0), "{policy}");
        }
    }

    #[test]
    fn over_the_limit_each_policy_decides() {
        let cases = [
            (Policy::Close, (Verdict::Close, 0), 1100),
            (Policy::DropNewest, (Verdict::Skip, 1), 1100),
            // The oldest messages of tag 1 go until the queue is under the limit.
            (Policy::DropOldest, (Verdict::Queue, 1), 1000),
            // Every queued message of tag 1 goes; the new one is queued.
            (Policy::Latest, (Verdict::Queue, 3), 800),
        ];
        for (policy, want, left) in cases {
            let mut outbox = backed_up(6);
            let mut drops = 0;
            let verdict = admit(&mut outbox, &mut drops, Tag(1), policy, LIMIT);
            assert_eq!(verdict, want, "{policy}");
            assert_eq!((drops, outbox.len()), (want.1, left), "{policy}");
        }
    }

    #[test]
    fn latest_replaces_as_soon_as_the_reader_is_behind() {
        let mut outbox = backed_up(2);
        let mut drops = 0;
        let verdict = admit(&mut outbox, &mut drops, Tag(2), Policy::Latest, LIMIT);
        assert_eq!(verdict, (Verdict::Queue, 1));
        assert_eq!(outbox.len(), 600);
    }

    #[test]
    fn drop_oldest_with_nothing_of_its_tag_drops_the_new_one() {
        let mut outbox = backed_up(6);
        let mut drops = 0;
        let verdict = admit(&mut outbox, &mut drops, Tag(7), Policy::DropOldest, LIMIT);
        assert_eq!(
            (verdict, drops, outbox.len()),
            ((Verdict::Skip, 1), 1, 1100)
        );
    }
}
