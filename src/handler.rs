//! The embedding API: the [`Handler`] trait a program implements, and the [`Context`]
//! its callbacks use to reach connections.

use crate::close::CloseCode;
use crate::error::Error;
use crate::handshake::Request;
use crate::pool::Pool;
use crate::push::Published;
use std::fmt;
use std::net::SocketAddr;

/// A connection's id: its slot plus a serial number, so an id that outlived its
/// connection never reaches the next client in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    pub(crate) fn new(key: usize, serial: u32) -> Self {
        ConnId((serial as u64) << 32 | key as u64)
    }

    pub(crate) fn key(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    pub(crate) fn serial(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The id as one number (stable for the connection's lifetime, for logs and maps).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.key(), self.serial())
    }
}

/// A message, borrowed: what handlers receive, and what they send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&'a str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

impl<'a> From<&'a str> for Message<'a> {
    fn from(t: &'a str) -> Self {
        Message::Text(t)
    }
}

impl<'a> From<&'a String> for Message<'a> {
    fn from(t: &'a String) -> Self {
        Message::Text(t)
    }
}

impl<'a> From<&'a [u8]> for Message<'a> {
    fn from(b: &'a [u8]) -> Self {
        Message::Binary(b)
    }
}

impl<'a> From<&'a Vec<u8>> for Message<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Message::Binary(b)
    }
}

/// An owned message, for sending from other threads through a [`Handle`](crate::Handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedMessage {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl OwnedMessage {
    /// A borrowed view.
    pub fn as_message(&self) -> Message<'_> {
        match self {
            OwnedMessage::Text(t) => Message::Text(t),
            OwnedMessage::Binary(b) => Message::Binary(b),
        }
    }
}

impl From<String> for OwnedMessage {
    fn from(t: String) -> Self {
        OwnedMessage::Text(t)
    }
}

impl From<&str> for OwnedMessage {
    fn from(t: &str) -> Self {
        OwnedMessage::Text(t.to_owned())
    }
}

impl From<Vec<u8>> for OwnedMessage {
    fn from(b: Vec<u8>) -> Self {
        OwnedMessage::Binary(b)
    }
}

impl From<Message<'_>> for OwnedMessage {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Text(t) => OwnedMessage::Text(t.to_owned()),
            Message::Binary(b) => OwnedMessage::Binary(b.to_vec()),
        }
    }
}

/// A refused upgrade: the HTTP status and a short body sent instead of `101`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status, e.g. 403 or 404.
    pub status: u16,
    /// A short plain-text body.
    pub body: String,
}

impl Refusal {
    /// A refusal with `status` and `body`.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Refusal {
            status,
            body: body.into(),
        }
    }
}

/// A plain HTTP response to a request that did not ask for an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`, which the server writes.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, a `Content-Type` and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A `text/plain` response; a newline is added to the body.
    pub fn text(status: u16, body: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    /// An `application/json` response.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status, "application/json", body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What the server does with a plain HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send a response. Statuses below 400 keep the connection for the next request
    /// (HTTP/1.1 keep-alive) unless the client asked to close; errors close it.
    Response(Response),
    /// Answer with a Server-Sent Events stream of `channel` (`text/event-stream`), first
    /// the messages after `since`, then live ones, with a comment heartbeat.
    EventStream {
        /// The channel.
        channel: String,
        /// The last id the client saw (`Last-Event-ID`), if it is resuming.
        since: Option<u64>,
        /// Extra response headers (e.g. CORS).
        headers: Vec<(String, String)>,
    },
    /// Answer with the messages of `channel` after `since` as JSON; if there are none,
    /// hold the request until one is published or `timeout` passes.
    LongPoll {
        /// The channel.
        channel: String,
        /// The last id the client saw; `None`: only messages published from now on.
        since: Option<u64>,
        /// How long to hold the request.
        timeout: std::time::Duration,
        /// Extra response headers (e.g. CORS).
        headers: Vec<(String, String)>,
    },
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::Response(response)
    }
}

/// The callbacks of a WebSocket application (the shape of Ratchet's components).
///
/// Only [`on_message`](Handler::on_message) is required; the others default to logging.
/// Callbacks run on the loop thread: they must not block.
pub trait Handler {
    /// A client asks to upgrade. Return `Err` to refuse with an HTTP status. `req` lives
    /// only during the call: keep what you need (the server keeps no headers).
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        let _ = ctx;
        log::debug!("{id} open {}", req.path());
        Ok(())
    }

    /// A whole message arrived.
    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>);

    /// The connection ended; called exactly once for every connection that was opened.
    /// `code` is the peer's close code, the server's when it closed first, or 1006
    /// ([`ABNORMAL`](crate::close::ABNORMAL)) when the connection was lost.
    fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, code: CloseCode, reason: &str) {
        let _ = ctx;
        log::debug!("{id} closed {code} {reason}");
    }

    /// Something went wrong on the connection (a protocol error or a timeout);
    /// [`on_close`](Handler::on_close) follows.
    fn on_error(&mut self, ctx: &mut Context<'_>, id: ConnId, error: &Error) {
        let _ = ctx;
        log::debug!("{id} error: {error}");
    }

    /// The peer pinged (the pong is already queued).
    fn on_ping(&mut self, ctx: &mut Context<'_>, id: ConnId, payload: &[u8]) {
        let _ = (ctx, id, payload);
    }

    /// The peer answered the server's keepalive ping after `rtt`.
    fn on_pong(&mut self, ctx: &mut Context<'_>, id: ConnId, rtt: std::time::Duration) {
        let _ = ctx;
        log::trace!("{id} round trip {rtt:?}");
    }

    /// A Server-Sent Events stream started by [`Reply::EventStream`] ended.
    fn on_event_stream_end(&mut self, ctx: &mut Context<'_>, id: ConnId) {
        let _ = ctx;
        log::debug!("{id} event stream ended");
    }

    /// `id`'s outbound queue passed half of the backlog limit ([`Backlog::High`]: its
    /// reader is slow; consider sending less), or emptied again afterwards
    /// ([`Backlog::Drained`]).
    fn on_backlog(&mut self, ctx: &mut Context<'_>, id: ConnId, backlog: Backlog) {
        let _ = ctx;
        log::debug!("{id} backlog {backlog:?}");
    }

    /// A plain HTTP request (no `Upgrade` header) with its whole body. The default
    /// answers 426.
    fn on_http(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
        let _ = (ctx, id, req, body);
        Response::text(426, "websocket upgrade required").into()
    }
}

impl<H: Handler + ?Sized> Handler for &mut H {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<(), Refusal> {
        (**self).on_open(ctx, id, req)
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, id: ConnId, msg: Message<'_>) {
        (**self).on_message(ctx, id, msg)
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, id: ConnId, code: CloseCode, reason: &str) {
        (**self).on_close(ctx, id, code, reason)
    }
    fn on_error(&mut self, ctx: &mut Context<'_>, id: ConnId, error: &Error) {
        (**self).on_error(ctx, id, error)
    }
    fn on_http(
        &mut self,
        ctx: &mut Context<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) -> Reply {
        (**self).on_http(ctx, id, req, body)
    }
    fn on_event_stream_end(&mut self, ctx: &mut Context<'_>, id: ConnId) {
        (**self).on_event_stream_end(ctx, id)
    }
    fn on_backlog(&mut self, ctx: &mut Context<'_>, id: ConnId, backlog: Backlog) {
        (**self).on_backlog(ctx, id, backlog)
    }
    fn on_ping(&mut self, ctx: &mut Context<'_>, id: ConnId, payload: &[u8]) {
        (**self).on_ping(ctx, id, payload)
    }
    fn on_pong(&mut self, ctx: &mut Context<'_>, id: ConnId, rtt: std::time::Duration) {
        (**self).on_pong(ctx, id, rtt)
    }
}

/// A change in a connection's outbound queue, for [`Handler::on_backlog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// The queue holds this many bytes, more than half of the backlog limit.
    High(usize),
    /// The queue that was high is empty again.
    Drained,
}

/// Runs a handler callback so that a panic in it cannot stop the loop: the panic is
/// caught and logged, and the caller fails only the connection concerned. `None` if the
/// callback panicked.
pub(crate) fn guard<R>(callback: &str, id: ConnId, f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => Some(result),
        Err(_) => {
            log::error!("{id}: the handler panicked in {callback}");
            None
        }
    }
}

/// What a callback can do with the server's connections. Writes go straight into the
/// target connections' queues and leave at the end of the loop turn.
pub struct Context<'a> {
    pub(crate) pool: &'a mut Pool,
}

impl Context<'_> {
    /// Sends `msg` to `id`. Returns `false` if `id` is not an open connection.
    pub fn send<'m>(&mut self, id: ConnId, msg: impl Into<Message<'m>>) -> bool {
        self.pool.send(id, msg.into())
    }

    /// Sends `msg` to every open connection; returns how many it was queued for.
    pub fn broadcast<'m>(&mut self, msg: impl Into<Message<'m>>) -> usize {
        self.pool.broadcast(msg.into(), None)
    }

    /// Sends `msg` to every open connection but `except`.
    pub fn broadcast_except<'m>(&mut self, except: ConnId, msg: impl Into<Message<'m>>) -> usize {
        self.pool.broadcast(msg.into(), Some(except))
    }

    /// Starts the close handshake with `code` and `reason` (cut to fit a control frame).
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        self.pool.close(id, code, reason)
    }

    /// The number of open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.pool.open_count()
    }

    /// The ids of all open connections.
    pub fn connections(&self) -> Vec<ConnId> {
        self.pool.open_ids()
    }

    /// How many connections were closed because their queue passed the backlog limit.
    pub fn overflows(&self) -> u64 {
        self.pool.overflows()
    }

    /// How many messages backlog policies dropped (or discarded from the queue of a
    /// connection closed for overflow), all connections together.
    pub fn dropped(&self) -> u64 {
        self.pool.dropped()
    }

    /// How many messages backlog policies dropped on `id`, or `None` if `id` is gone.
    pub fn dropped_on(&self, id: ConnId) -> Option<u64> {
        self.pool.dropped_on(id)
    }

    /// Bytes queued for `id` that the kernel has not taken yet (like a browser's
    /// `bufferedAmount`), or `None` if `id` is gone.
    pub fn buffered(&self, id: ConnId) -> Option<usize> {
        self.pool.buffered(id)
    }

    /// Makes `id` (an open WebSocket) a member of `channel`; false if the name is
    /// invalid, `id` is not open, or it already was a member.
    pub fn join(&mut self, id: ConnId, channel: &str) -> bool {
        self.pool.join(id, channel, None)
    }

    /// Like [`join`](Context::join), after sending `id` what `channel` published after
    /// `since` (or a `gap` notice when history no longer holds all of it).
    pub fn join_since(&mut self, id: ConnId, channel: &str, since: u64) -> bool {
        self.pool.join(id, channel, Some(since))
    }

    /// Removes `id` from `channel`.
    pub fn leave(&mut self, id: ConnId, channel: &str) -> bool {
        self.pool.leave(id, channel)
    }

    /// Publishes `msg` to every subscriber of `channel` (WebSocket, SSE, long poll) and
    /// keeps it in the channel's history.
    pub fn publish<'m>(&mut self, channel: &str, msg: impl Into<Message<'m>>) -> Published {
        self.pool.publish(channel, msg.into(), None)
    }

    /// Like [`publish`](Context::publish), but not to `except` (a chat message's
    /// sender), who gets an `ack` with the message's id instead if it takes envelopes.
    pub fn publish_except<'m>(
        &mut self,
        channel: &str,
        msg: impl Into<Message<'m>>,
        except: ConnId,
    ) -> Published {
        let published = self.pool.publish(channel, msg.into(), Some(except));
        self.pool.ack(except, channel, published.id);
        published
    }

    /// The channels' subscriber counts and last ids.
    pub fn channels(&self) -> &crate::channel::Channels {
        &self.pool.channels
    }

    /// The peer address of `id`, if it is still connected.
    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.pool.peer_addr(id)
    }
}
