//! The push service on top of the loop: channels with members on three transports
//! (WebSocket, Server-Sent Events, long polling), history and resume, the envelope
//! protocol, the publish/SSE/poll/presence formats and per-channel backlog policies.
//!
//! Built only on the loop's primitives (deliver encoded bytes with a tag and a policy,
//! stream a response, hold a request and answer it); an embedding program reaches it
//! through [`Context`](crate::Context) (`publish`, `join`, `event_stream`, `long_poll`).

pub mod access;
pub(crate) mod answers;
pub(crate) mod broker;
pub mod channels;
pub mod format;
pub(crate) mod hub;
pub(crate) mod in_process;
pub mod policy;
pub(crate) mod positions;
pub(crate) mod redis;
pub(crate) mod relay;
pub mod stats;
pub(crate) mod streams;

use crate::server::backlog::Policy;
use policy::ChannelPolicy;
use std::time::Duration;

/// How long Redis keeps a channel nobody publishes to: a day.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The push layer's settings, set through [`Config`](crate::Config)'s setters.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Messages kept per channel.
    pub history: usize,
    /// Payload bytes kept per channel.
    pub history_bytes: usize,
    /// Channels before a new one evicts the oldest one without members.
    pub max_channels: usize,
    /// How often an idle SSE stream gets a comment.
    pub heartbeat: Duration,
    /// Per-channel backlog policies, first match wins.
    pub channel_policies: Vec<ChannelPolicy>,
    /// The policy of channels no rule matches.
    pub default_policy: Policy,
    /// The Redis nodes share (`redis://[user:password@]host:port[/db]`), if any.
    pub redis: Option<String>,
    /// How long Redis keeps a channel's history and ids after its last publish.
    pub history_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            history: 100,
            history_bytes: channels::DEFAULT_HISTORY_BYTES,
            max_channels: 10_000,
            heartbeat: Duration::from_secs(15),
            channel_policies: Vec::new(),
            default_policy: Policy::Close,
            redis: None,
            history_ttl: DEFAULT_HISTORY_TTL,
        }
    }
}

impl Settings {
    /// Takes from `new` what may change while the loop runs: the backlog policies and the
    /// heartbeat (history bounds and the channel cap stay).
    pub fn apply_live(&mut self, new: &Settings) {
        self.channel_policies.clone_from(&new.channel_policies);
        self.default_policy = new.default_policy;
        self.heartbeat = new.heartbeat;
    }

    /// The backlog policy of `channel`.
    pub fn policy_for(&self, channel: &str) -> Policy {
        policy::policy_for(&self.channel_policies, self.default_policy, channel)
    }
}
