//! [`Context`]: what a callback can do with the server's connections and channels.

use crate::api::data::Data;
use crate::push::channels::Channels;
use crate::push::hub::{Hub, Published};
use crate::server::connection::ConnId;
use crate::server::core::Core;
use crate::server::message::Message;
use crate::server::reply::{Reply, Response};
use crate::ws::close::CloseCode;
use std::net::SocketAddr;
use std::time::Duration;

/// What a callback can do with the server's connections. Writes go straight into the
/// target connections' queues and leave at the end of the loop turn.
pub struct Context<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) hub: &'a mut Hub,
    pub(crate) data: &'a mut Data,
}

impl Context<'_> {
    /// Sends `msg` to `id`. Returns `false` if `id` is not an open connection.
    pub fn send<'m>(&mut self, id: ConnId, msg: impl Into<Message<'m>>) -> bool {
        self.core.send(id, msg.into())
    }

    /// Sends `msg` to every open connection; returns how many it was queued for.
    pub fn broadcast<'m>(&mut self, msg: impl Into<Message<'m>>) -> usize {
        self.core.broadcast(msg.into(), None)
    }

    /// Sends `msg` to every open connection but `except`.
    pub fn broadcast_except<'m>(&mut self, except: ConnId, msg: impl Into<Message<'m>>) -> usize {
        self.core.broadcast(msg.into(), Some(except))
    }

    /// Starts the close handshake with `code` and `reason` (cut to fit a control frame).
    pub fn close(&mut self, id: ConnId, code: impl Into<CloseCode>, reason: &str) -> bool {
        self.core.close(id, code.into(), reason)
    }

    /// The number of open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.core.open_count()
    }

    /// The ids of all open connections.
    pub fn connections(&self) -> Vec<ConnId> {
        self.core.open_ids()
    }

    /// How many connections were closed because their queue passed the backlog limit.
    pub fn overflows(&self) -> u64 {
        self.core.overflows()
    }

    /// How many messages backlog policies dropped (or discarded from the queue of a
    /// connection closed for overflow), all connections together.
    pub fn dropped(&self) -> u64 {
        self.core.dropped()
    }

    /// How many messages backlog policies dropped on `id`, or `None` if `id` is gone.
    pub fn dropped_on(&self, id: ConnId) -> Option<u64> {
        self.core.dropped_on(id)
    }

    /// Bytes queued for `id` that the kernel has not taken yet (like a browser's
    /// `bufferedAmount`), or `None` if `id` is gone.
    pub fn buffered(&self, id: ConnId) -> Option<usize> {
        self.core.buffered(id)
    }

    /// Makes `id` (an open WebSocket) a member of `channel`; false if the name is
    /// invalid, `id` is not open, or it already was a member.
    pub fn join(&mut self, id: ConnId, channel: &str) -> bool {
        self.hub.join(self.core, id, channel, None)
    }

    /// Like [`join`](Context::join), after sending `id` what `channel` published after
    /// `since` (or a `gap` notice when history no longer holds all of it).
    pub fn join_since(&mut self, id: ConnId, channel: &str, since: u64) -> bool {
        self.hub.join(self.core, id, channel, Some(since))
    }

    /// Removes `id` from `channel`.
    pub fn leave(&mut self, id: ConnId, channel: &str) -> bool {
        self.hub.leave(id, channel)
    }

    /// Publishes `msg` to every subscriber of `channel` (WebSocket, SSE, long poll) and
    /// keeps it in the channel's history.
    pub fn publish<'m>(&mut self, channel: &str, msg: impl Into<Message<'m>>) -> Published {
        self.hub.publish(self.core, channel, msg.into(), None)
    }

    /// Like [`publish`](Context::publish), but not to `except` (a chat message's
    /// sender), who gets an `ack` with the message's id instead if it takes envelopes.
    pub fn publish_except<'m>(
        &mut self,
        channel: &str,
        msg: impl Into<Message<'m>>,
        except: ConnId,
    ) -> Published {
        let published = self
            .hub
            .publish(self.core, channel, msg.into(), Some(except));
        self.hub.ack(self.core, except, channel, published.id);
        published
    }

    /// The channels' subscriber counts and last ids.
    pub fn channels(&self) -> &Channels {
        &self.hub.channels
    }

    /// The peer address of `id`, if it is still connected.
    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.core.peer_addr(id)
    }

    /// The subprotocol `id` agreed to in its upgrade (`Sec-WebSocket-Protocol`), if any.
    pub fn protocol(&self, id: ConnId) -> Option<&str> {
        self.core.protocol(id)
    }

    /// Answers a request with a Server-Sent Events stream of `channel`
    /// (`text/event-stream`): first the messages after `since` (a client's
    /// `Last-Event-ID`), then live ones, with a comment heartbeat. Return the reply from
    /// [`Handler::on_http`](crate::Handler::on_http); `headers` are added (e.g. CORS).
    pub fn event_stream(
        &mut self,
        id: ConnId,
        channel: &str,
        since: Option<u64>,
        headers: &[(String, String)],
    ) -> Reply {
        self.hub.event_stream(id, channel, since, headers)
    }

    /// Answers a long poll of `channel`: at once with the messages after `since` (`None`:
    /// only those published from now on), or, if there are none, held until one is
    /// published or `timeout` passes. Return the reply from
    /// [`Handler::on_http`](crate::Handler::on_http).
    pub fn long_poll(
        &mut self,
        id: ConnId,
        channel: &str,
        since: Option<u64>,
        timeout: Duration,
        headers: &[(String, String)],
    ) -> Reply {
        self.hub.long_poll(id, channel, since, timeout, headers)
    }

    /// Answers the request held on `id` ([`Reply::Hold`]); `false` if none is held there.
    pub fn respond(&mut self, id: ConnId, response: &Response) -> bool {
        self.core.respond(id, response)
    }

    /// Attaches `value` to connection `id` (replacing what was attached): every later
    /// callback for `id` can reach it with [`data`](Context::data) or
    /// [`data_mut`](Context::data_mut); it is dropped when the connection ends, after
    /// `on_close`. A program that attaches nothing pays nothing per connection.
    pub fn set_data<T: Send + 'static>(&mut self, id: ConnId, value: T) {
        self.data.set(id, value);
    }

    /// The value of type `T` attached to `id`, if any.
    pub fn data<T: Send + 'static>(&self, id: ConnId) -> Option<&T> {
        self.data.get(id)
    }

    /// The value of type `T` attached to `id`, to change.
    pub fn data_mut<T: Send + 'static>(&mut self, id: ConnId) -> Option<&mut T> {
        self.data.get_mut(id)
    }

    /// Detaches and returns the value of type `T` attached to `id`.
    pub fn take_data<T: Send + 'static>(&mut self, id: ConnId) -> Option<T> {
        self.data.take(id)
    }

    /// Stops the server gracefully once this turn is done: no new connections, Close 1001
    /// to every client, and `run` returns once they are closed or the shutdown timeout
    /// passed.
    pub fn stop(&mut self) {
        self.core.stop_requested = true;
    }
}
