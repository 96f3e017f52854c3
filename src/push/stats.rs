//! What the push layer counts: publishes by where they came from (plain integers on the
//! loop's thread), and, when asked, its channels, their history and the broker's state.

/// Where a publish came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The HTTP publish API ([`Context::publish_request`](crate::Context::publish_request)).
    Api,
    /// A client's message to its channel ([`Context::publish_except`](crate::Context::publish_except): chat).
    Chat,
    /// The program's handler ([`Context::publish`](crate::Context::publish)).
    Handler,
    /// Another thread ([`Handle::publish`](crate::Handle::publish)).
    Handle,
}

impl Source {
    /// Every source, in the order of [`PushStats::publishes`].
    pub const ALL: [Source; 4] = [Source::Api, Source::Chat, Source::Handler, Source::Handle];

    /// Its name in metrics (`api`, `chat`, `handler`, `handle`).
    pub fn name(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Chat => "chat",
            Source::Handler => "handler",
            Source::Handle => "handle",
        }
    }

    /// Its index in [`PushStats::publishes`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Whether the broker between workers (or hosts) can carry notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerState {
    /// It carries notes (always so for the in-process broker, and with one worker).
    #[default]
    Up,
    /// It cannot reach its peers (Redis is away).
    Down,
}

/// The broker's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Up or down.
    pub state: BrokerState,
    /// Notes posted to other workers.
    pub notes_sent: u64,
    /// Notes taken from other workers.
    pub notes_received: u64,
    /// Pipelines written to Redis (one per loop turn that had commands; 0 without Redis).
    pub round_trips: u64,
    /// Commands in them.
    pub commands: u64,
}

/// One worker's push numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Publishes asked for on this worker, by [`Source`] (counted where asked, so a
    /// publish forwarded to the channel's owner counts once).
    pub publishes: [u64; 4],
    /// Channels this worker keeps (with several, the ones it owns and the ones it has
    /// members of).
    pub channels: usize,
    /// Payload bytes of history these channels hold.
    pub history_bytes: u64,
    /// The broker, when there are several workers.
    pub broker: Option<BrokerStats>,
}
