//! Slow consumers: what happens when a message finds a connection's queue over
//! `max_backlog`. The policy is set per channel (by name or `prefix*` pattern) and as a
//! default for everything else (direct sends, broadcasts, unmatched channels).
//!
//! A queue's first bytes, up to its [`congestion_point`] (64 KiB, or half the limit),
//! are treated as in flight and always go out; messages queued behind them are kept one by one, tagged
//! with their stream (channel), so that a policy can drop whole messages. Control frames
//! are never dropped: they are queued ahead of the droppable messages.

use crate::connection::Connection;
use crate::outbox::CONGESTED;
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

/// A channel pattern with its policy: an exact name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPolicy {
    /// `ticker`, or `ticker.*` for every channel starting with `ticker.`.
    pub pattern: String,
    /// The policy for matching channels.
    pub policy: Policy,
}

impl ChannelPolicy {
    /// Whether `channel` matches the pattern.
    pub fn matches(&self, channel: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => channel == self.pattern,
        }
    }
}

impl FromStr for ChannelPolicy {
    type Err = String;

    /// Parses `PATTERN=POLICY`, e.g. `ticker.*=latest`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (pattern, policy) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected CHANNEL=POLICY, e.g. ticker.*=latest"))?;
        if pattern.is_empty() {
            return Err(format!("`{s}`: empty channel pattern"));
        }
        Ok(ChannelPolicy {
            pattern: pattern.to_owned(),
            policy: policy.parse()?,
        })
    }
}

/// The first matching channel policy, else `default`.
pub fn policy_for(rules: &[ChannelPolicy], default: Policy, channel: &str) -> Policy {
    rules
        .iter()
        .find(|r| r.matches(channel))
        .map_or(default, |r| r.policy)
}

/// The tag of a channel's messages in a queue (never 0, which tags direct sends).
pub fn stream_of(channel: &str) -> u32 {
    // FNV-1a: a collision only makes `latest`/`drop-oldest` treat two channels as one
    // on a congested connection.
    let hash = channel.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash.max(1)
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

/// Decides whether a message of `stream` may be queued for `conn` (whose queue may hold
/// `limit` bytes), applying `policy` if the queue is full (or, for [`Policy::Latest`],
/// congested). Returns the verdict and how many messages were dropped (also added to
/// the connection's own count).
#[inline]
pub(crate) fn admit(
    conn: &mut Connection,
    stream: u32,
    policy: Policy,
    limit: usize,
) -> (Verdict, u32) {
    let queued = conn.outbox.len();
    let latest = policy == Policy::Latest && queued >= congestion_point(limit);
    if queued <= limit && !latest {
        return (Verdict::Queue, 0);
    }
    let (verdict, dropped) = match policy {
        Policy::Close => return (Verdict::Close, 0),
        Policy::DropNewest => (Verdict::Skip, 1),
        Policy::DropOldest => match conn.outbox.drop_oldest(stream, limit) {
            0 => (Verdict::Skip, 1),
            n => (Verdict::Queue, n),
        },
        Policy::Latest => {
            let n = conn.outbox.drop_stream(stream);
            if conn.outbox.len() > limit {
                (Verdict::Skip, n + 1)
            } else {
                (Verdict::Queue, n)
            }
        }
    };
    conn.drops = conn.drops.saturating_add(dropped);
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
    fn channel_patterns_match_exactly_or_by_prefix() {
        let rules: Vec<ChannelPolicy> = ["ticker.*=latest", "chat=drop-newest", "*=drop-oldest"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            policy_for(&rules, Policy::Close, "ticker.eur"),
            Policy::Latest
        );
        assert_eq!(
            policy_for(&rules, Policy::Close, "chat"),
            Policy::DropNewest
        );
        assert_eq!(
            policy_for(&rules, Policy::Close, "chat2"),
            Policy::DropOldest
        );
        assert_eq!(
            policy_for(&rules[..2], Policy::Close, "other"),
            Policy::Close
        );
        assert!("ticker".parse::<ChannelPolicy>().is_err());
        assert!("=latest".parse::<ChannelPolicy>().is_err());
        assert!("a=fast".parse::<ChannelPolicy>().is_err());
    }

    #[test]
    fn streams_are_never_the_direct_tag() {
        assert_ne!(stream_of(""), 0);
        assert_ne!(stream_of("a"), stream_of("b"));
        assert_eq!(stream_of("lobby"), stream_of("lobby"));
    }
}
