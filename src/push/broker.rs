//! The one interface between a worker's hub and whatever shares its channels with other
//! workers and hosts: the [`Broker`]. It decides where a channel's ids and history live
//! (here, on another worker, in Redis), carries publishes and subscriptions there, and
//! brings back what the hub must act on ([`Inbound`]): messages to deliver to the members
//! here, the outcome of a publish, the replay a joining member waits for.
//!
//! Two implementations: [`InProcess`](crate::push::in_process::InProcess) (one worker
//! alone, or the workers of one process, each channel owned by one of them) and
//! [`Cluster`](crate::push::redis::cluster::Cluster) (nodes sharing Redis, Redis owning
//! every channel). The loop knows neither; another broker (NATS, say) would be a third
//! implementation, the hub and the loop untouched. Whatever it is, a broker's IO never
//! runs on the loop's thread: it hands work over at the end of a turn
//! ([`end_turn`](Broker::end_turn)) and finds answers at the start of the next
//! ([`receive`](Broker::receive)), woken through the loop's `Waker`.
//!
//! What every broker promises: one order per channel (a member gets a channel's
//! messages in id order, once), a joining member's replay followed by the live messages
//! with nothing between them and nothing twice, and no publish silently lost (its sender
//! gets its id, or a [`Failure`]).

use crate::push::access::ChannelUsers;
use crate::push::channels::{ChannelInfo, Channels, Counts, Replay, Stored, Transport};
use crate::push::stats::BrokerStats;
use crate::server::connection::ConnId;
use crate::server::message::Message;
use std::sync::Arc;

/// Who is waiting for the outcome of a publish that is not decided here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Nobody.
    Nobody,
    /// A WebSocket chat sender, owed an `ack` with the message's id (and its request
    /// number, if it gave one).
    Ack(ConnId, Option<u64>),
    /// A held `POST /publish` request, owed `{"id":..,"delivered":..}` with these headers.
    Http(ConnId, Vec<(String, String)>),
}

/// A publish another worker asked this one to make, as its channel's owner: whoever
/// waits for it there learns the outcome through [`Broker::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forwarded {
    /// The worker that asked.
    pub(crate) from: usize,
    /// Who waits there.
    pub(crate) answer: Answer,
    /// How many members of other workers it was sent to.
    pub(crate) elsewhere: usize,
}

/// Why a publish got no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Never sent: the broker was away (or refused it). HTTP `503`.
    NotSent,
    /// Sent, and the broker was lost before it answered: it may have been published (its
    /// members then get it, the sender too). HTTP `504`.
    Unknown,
}

impl Failure {
    /// The HTTP status (and `pushloop.v1` error code) telling it.
    pub(crate) fn status(self) -> u16 {
        match self {
            Failure::NotSent => 503,
            Failure::Unknown => 504,
        }
    }

    /// The error text telling it.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Failure::NotSent => {
                "broker unavailable: the message was not published, try again later"
            }
            Failure::Unknown => {
                "broker lost before it answered: the message may have been published"
            }
        }
    }
}

/// A member of this worker that asks to join a channel, having seen everything up to
/// `since` (`None`: only what comes from now on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Join {
    pub(crate) channel: Arc<str>,
    pub(crate) member: ConnId,
    pub(crate) transport: Transport,
    pub(crate) since: Option<u64>,
}

/// What became of a publish, as far as the broker decided at once.
#[derive(Debug)]
pub(crate) enum Publishing {
    /// Stored here (this worker owns the channel): the hub delivers `stored` to its own
    /// members; the broker has sent it to the `elsewhere` members of other workers.
    Here {
        stored: Arc<Stored>,
        elsewhere: usize,
    },
    /// On its way: the answer comes as [`Inbound::Published`] or [`Inbound::Refused`].
    Sent,
    /// Refused at once (the broker is away): the hub tells `answer`.
    Refused(Failure, Answer),
}

/// What became of a join, as far as the broker decided at once.
#[derive(Debug)]
pub(crate) enum Joining {
    /// The member joins now, first getting `replay` (what followed `since`; empty when it
    /// asked only for what comes next, `since` then being the channel's last id).
    Now { since: u64, replay: Replay },
    /// It waits for its replay: it comes as [`Inbound::Joined`] (if it still waits then).
    Later,
}

/// A command the API runs on every node, each answering with an [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Close every connection of this user (`POST /disconnect/user/<id>`): how many.
    DisconnectUser(String),
    /// Who is in this channel (`GET /channels/<channel>/presence`).
    ChannelUsers(String),
}

/// What a node answers a [`Command`] with; the answers of every node add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A number (connections closed).
    Count(usize),
    /// A channel's users on that node.
    Users(ChannelUsers),
}

impl Outcome {
    /// Adds another node's answer (of the same command) to this one.
    pub(crate) fn add(&mut self, other: Outcome) {
        match (self, other) {
            (Outcome::Count(n), Outcome::Count(m)) => *n += m,
            (Outcome::Users(users), Outcome::Users(more)) => users.merge(more),
            (_, other) => log::warn!("an answer of another kind was skipped: {other:?}"),
        }
    }
}

/// The node that asked for a [`Command`] and the number it waits for the answers under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asker {
    pub(crate) node: Arc<str>,
    pub(crate) ticket: u64,
}

/// How far a broker takes a [`Command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// To no node beyond this process: the API runs it on this process's workers.
    Process,
    /// To every node, this one included: each runs it as an [`Inbound::Command`].
    Everywhere,
    /// Nowhere: the broker is away.
    Unavailable,
}

/// What the broker brings the hub at the start of a turn.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Deliver this message of `channel` to the members here (but `except`); if it was
    /// published here for another worker, then [`settle`](Broker::settle) `forwarded`
    /// with how many it was queued for.
    Deliver {
        channel: Arc<str>,
        stored: Arc<Stored>,
        except: Option<ConnId>,
        forwarded: Option<Forwarded>,
    },
    /// A publish got its id: tell `answer`.
    Published {
        channel: Arc<str>,
        answer: Answer,
        id: u64,
        delivered: usize,
    },
    /// A publish got no id: tell `answer`.
    Refused {
        channel: Arc<str>,
        answer: Answer,
        failure: Failure,
    },
    /// `join.member` (still waiting) gets `replay`, what followed `since`, then joins.
    Joined {
        join: Join,
        since: u64,
        replay: Replay,
    },
    /// Every member of `channel` here missed messages the broker no longer has: each
    /// gets the gap notice from `since`, then `replay` (what it has now).
    Gap {
        channel: Arc<str>,
        since: u64,
        replay: Replay,
    },
    /// Run `command` here; `asker`, if any, waits for the count
    /// ([`Broker::answer`]).
    Command {
        command: Command,
        asker: Option<Asker>,
    },
    /// Every node answered the command asked under `ticket`: `total` is their sum
    /// (`None`: not all of them could, and whoever waits is let go).
    Tallied { ticket: u64, total: Option<Outcome> },
}

/// How a worker's hub shares channels beyond itself. `channels` is the worker's table:
/// its members of every channel, and the history of the channels this worker owns.
pub(crate) trait Broker: Send + std::fmt::Debug {
    /// Its state and counts (`None`: nothing to tell, a worker alone).
    fn stats(&self) -> Option<BrokerStats>;

    /// Whether it can take publishes now.
    fn is_up(&self) -> bool;

    /// Publishes to `channel` (stored here if this worker owns it, else sent to the
    /// owner, `answer` waiting for the outcome).
    fn publish(
        &mut self,
        channels: &mut Channels,
        channel: &str,
        msg: Message<'_>,
        except: Option<ConnId>,
        answer: Answer,
    ) -> Publishing;

    /// Tells the worker that forwarded a publish what became of it: its `id`, and that
    /// it was queued for `delivered` members here (this worker owns its channel).
    fn settle(&mut self, forwarded: Forwarded, channel: Arc<str>, id: u64, delivered: usize);

    /// `member` asks to join `channel` by `transport`, having seen `since` (a broker
    /// keeps a [`Join`] only when the answer comes later).
    fn subscribe(
        &mut self,
        channels: &mut Channels,
        member: ConnId,
        channel: &str,
        transport: Transport,
        since: Option<u64>,
    ) -> Joining;

    /// Whether `member` waits to join `channel`.
    fn is_joining(&self, member: ConnId, channel: &str) -> bool;

    /// The first channel `member` waits to join.
    fn first_joining(&self, member: ConnId) -> Option<Arc<str>>;

    /// `member` no longer waits to join `channel`; `true` if it did.
    fn withdraw(&mut self, member: ConnId, channel: &str) -> bool;

    /// A member of `channel` here left by `transport`.
    fn left(&mut self, channels: &mut Channels, channel: &str, transport: Transport);

    /// `member` ended: it waits to join nothing.
    fn forget(&mut self, member: ConnId);

    /// What came since the last call, in order.
    fn receive(&mut self, channels: &mut Channels, into: &mut Vec<Inbound>);

    /// The turn ends: hands its work over; `true` if some waits for room (the loop turns
    /// again without waiting).
    fn end_turn(&mut self, channels: &Channels) -> bool;

    /// `channel`'s global counts and last id, if it exists.
    fn presence(&self, channels: &Channels, channel: &str) -> Option<(Counts, u64)>;

    /// Every channel's global presence, sorted by name.
    fn channel_list(&self, channels: &Channels) -> Vec<ChannelInfo>;

    /// How far a [`Command`] would go now.
    fn reach(&self) -> Reach;

    /// Takes `command` to every node (when [`reach`](Broker::reach) is
    /// [`Reach::Everywhere`]); the sum of their outcomes comes back as
    /// [`Inbound::Tallied`] under `ticket`, if one is given.
    fn command(&mut self, command: Command, ticket: Option<u64>);

    /// This node ran a command `asker` asked for: `outcome` is its part of the answer.
    fn answer(&mut self, asker: Asker, outcome: Outcome);
}
