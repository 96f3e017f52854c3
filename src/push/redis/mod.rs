//! Every host: nodes sharing one Redis (`--redis URL`) behave as one pushloop.
//!
//! Redis gives each channel's messages their ids and keeps their history (one function
//! call per publish: the id, the history write and the `PUBLISH` in one atomic step, so
//! id order is delivery order); each node subscribes to the channels it has members of
//! and delivers what Redis publishes. Resumes, on any node, are answered from Redis's
//! history. Presence is each node's counts with an expiry, summed by Redis.
//!
//! `functions` holds the Lua library and the commands (sans-IO); `link` the connection
//! off the loop (threads, reconnects); `cluster` a worker's state (what it is subscribed
//! to, the replies it is owed); `broker` its [`Broker`](crate::push::broker::Broker)
//! (publish, subscribe, and what Redis sent turned into the hub's work); `commands` the
//! commands for every node (disconnect a user everywhere).
//!
//! Redis is every channel's owner, and one connection per worker carries both the
//! commands and the pub/sub in one order (RESP3), which is what makes a replay followed
//! by live messages gapless without per-member bookkeeping.

pub(crate) mod broker;
pub(crate) mod cluster;
pub(crate) mod commands;
pub(crate) mod functions;
pub(crate) mod link;
