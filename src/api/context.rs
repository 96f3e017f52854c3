//! [`Context`]: what a callback can do with the server's connections and channels.

use crate::api::auth::{Auth, AuthError};
use crate::api::data::Data;
use crate::api::peers::{Peers, Then};
use crate::api::stats::Stats;
use crate::api::users::Users;
use crate::http::Request;
use crate::push::access::{user_channel, ChannelUsers, Identity};
use crate::push::answers::retry_later;
use crate::push::broker::{Answer, Command, Outcome, Reach};
use crate::push::channels::{ChannelInfo, Counts, Replay, Transport};
use crate::push::hub::{Hub, JoinError, Published};
use crate::push::stats::{BrokerState, Source};
use crate::server::connection::ConnId;
use crate::server::core::Core;
use crate::server::message::{Message, OwnedMessage, ToMessage};
use crate::server::reply::{Refusal, Reply, Response};
use crate::server::traffic::Traffic;
use crate::ws::close::CloseCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a callback can do with the server's connections and channels. Writes go
/// straight into the target connections' queues and leave at the end of the loop turn.
///
/// One message model for every way out. A message is text or binary, as the value
/// sent says ([`ToMessage`]: `&str`/`String` text, `&[u8]`/`Vec<u8>` binary).
/// [`publish`](Context::publish) gives it an id in its channel and a place in history,
/// and reaches WebSocket, SSE and long-poll members; [`send`](Context::send) and
/// [`broadcast`](Context::broadcast) reach open WebSockets directly, with no id and no
/// history. A client that negotiated [`ENVELOPE_PROTOCOL`](crate::ENVELOPE_PROTOCOL)
/// (`pushloop.v1`) gets every message as a JSON envelope:
/// `{"type":"message","channel":"news","id":7,"data":"..."}` when published,
/// `{"type":"message","data":"..."}` when sent or broadcast; other clients get the
/// message as it is.
///
/// With [several workers](crate::Config::workers), a callback runs on the worker that
/// owns its connection; what it asks of a connection or channel another worker owns is
/// sent there and done on that worker's next turn (the result says only that it was
/// sent).
pub struct Context<'a> {
    pub(crate) core: &'a mut Core,
    pub(crate) hub: &'a mut Hub,
    pub(crate) data: &'a mut Data,
    /// The identities of this worker's connections.
    pub(crate) users: &'a mut Users,
    /// The configured [`Auth`], if any.
    pub(crate) auth: Option<&'a Auth>,
    /// The other workers, when there are several.
    pub(crate) peers: Option<&'a dyn Peers>,
}

impl Context<'_> {
    /// The other workers, if `id` belongs to another one.
    fn elsewhere(&self, id: ConnId) -> Option<&dyn Peers> {
        self.peers
            .filter(|_| id.worker() != usize::from(self.core.settings.worker))
    }

    /// Sends `msg` to `id`. Returns `false` if `id` is not an open connection (a
    /// connection of another worker: `true` if the message was sent there).
    pub fn send(&mut self, id: ConnId, msg: impl ToMessage) -> bool {
        if let Some(peers) = self.elsewhere(id) {
            return peers.send(id, OwnedMessage::from(msg.to_message()));
        }
        self.hub.send(self.core, id, msg.to_message())
    }

    /// Sends `msg` to `id` as it is, even if `id` takes `pushloop.v1` envelopes (a
    /// protocol message of the program's own). `false` if `id` is not open here.
    pub fn send_unwrapped(&mut self, id: ConnId, msg: impl ToMessage) -> bool {
        self.core.send(id, msg.to_message())
    }

    /// Sends `msg` to every open connection; returns how many of this worker's it was
    /// queued for (other workers queue it on their next turn).
    pub fn broadcast(&mut self, msg: impl ToMessage) -> usize {
        self.broadcast_all(msg.to_message(), None)
    }

    /// Sends `msg` to every open connection but `except`.
    pub fn broadcast_except(&mut self, except: ConnId, msg: impl ToMessage) -> usize {
        self.broadcast_all(msg.to_message(), Some(except))
    }

    fn broadcast_all(&mut self, msg: Message<'_>, except: Option<ConnId>) -> usize {
        if let Some(peers) = self.peers {
            let me = usize::from(self.core.settings.worker);
            peers.broadcast_others(me, msg.into(), except);
        }
        self.broadcast_here(msg, except)
    }

    /// Broadcasts to this worker's connections only.
    pub(crate) fn broadcast_here(&mut self, msg: Message<'_>, except: Option<ConnId>) -> usize {
        self.hub.broadcast(self.core, msg, except)
    }

    /// Starts the close handshake with `code` and `reason` (cut to fit a control frame).
    pub fn close(&mut self, id: ConnId, code: impl Into<CloseCode>, reason: &str) -> bool {
        if let Some(peers) = self.elsewhere(id) {
            return peers.close(id, code.into(), reason);
        }
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

    /// How many connections were dropped because their TLS handshake or session failed
    /// (plain HTTP or garbage on a TLS port, no common cipher suite, a message out of
    /// place), since the server started.
    pub fn tls_failures(&self) -> u64 {
        self.core.tls_failures()
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

    /// What `id` sent and received so far ([`Traffic`]: bytes and messages, in and out),
    /// or `None` if its traffic is not counted (see
    /// [`Config::count_traffic`](crate::Config::count_traffic); a connection accepted while
    /// counting was off is not) or `id` is gone.
    ///
    /// In [`Handler::on_close`](crate::Handler::on_close) and
    /// [`Handler::on_http_end`](crate::Handler::on_http_end) the counts are final: what
    /// the connection still had queued when it ended (the echo of the peer's Close, a
    /// held request's fallback answer, the rest of a stream) was written before the
    /// callback, as far as the kernel took it. A connection carries every request made
    /// on it: for a long poll on a keep-alive connection, the counts include the
    /// earlier requests and answers.
    pub fn traffic(&self, id: ConnId) -> Option<Traffic> {
        self.core.traffic(id)
    }

    /// Makes `id` (an open WebSocket) a member of `channel`, or says why not.
    ///
    /// With several workers, a channel owned by another worker is joined once its owner
    /// answers (on a later turn): messages published before that are not delivered.
    pub fn join(&mut self, id: ConnId, channel: &str) -> Result<(), JoinError> {
        self.hub.join(self.core, id, channel, None)
    }

    /// Like [`join`](Context::join), after sending `id` what `channel` published after
    /// `since` (or a `gap` notice when history no longer holds all of it).
    pub fn join_since(&mut self, id: ConnId, channel: &str, since: u64) -> Result<(), JoinError> {
        self.hub.join(self.core, id, channel, Some(since))
    }

    /// Removes `id` from `channel`; `false` if it was not a member.
    pub fn leave(&mut self, id: ConnId, channel: &str) -> bool {
        self.hub.leave(id, channel)
    }

    /// Publishes `msg` to every subscriber of `channel` (WebSocket, SSE, long poll) and
    /// keeps it in the channel's history.
    ///
    /// With several workers, a channel owned by another worker gets the message through
    /// its owner, which gives it its id: the result here then has id 0 and delivered 0
    /// (use [`Handle::publish`](crate::Handle::publish), which runs on the owner, or
    /// [`publish_request`](Context::publish_request) to learn the id).
    pub fn publish(&mut self, channel: &str, msg: impl ToMessage) -> Published {
        self.publish_counted(Source::Handler, channel, msg.to_message())
    }

    /// [`publish`](Context::publish), counted as coming from `source`.
    pub(crate) fn publish_counted(
        &mut self,
        source: Source,
        channel: &str,
        msg: Message<'_>,
    ) -> Published {
        self.hub.count(source);
        self.hub
            .publish(self.core, channel, msg, None, Answer::Nobody)
    }

    /// Answers an HTTP publish request on `id` with `{"id":..,"delivered":..}` (and
    /// `headers`) once `msg` is published to `channel`: at once, or with several
    /// workers, when the channel's owner has given it its id. Return the reply from
    /// [`Handler::on_http`](crate::Handler::on_http).
    pub fn publish_request(
        &mut self,
        id: ConnId,
        channel: &str,
        msg: impl ToMessage,
        headers: &[(String, String)],
    ) -> Reply {
        self.hub.count(Source::Api);
        self.hub
            .publish_request(self.core, id, channel, msg.to_message(), headers)
    }

    /// [`publish`](Context::publish) of a text message.
    pub fn publish_text(&mut self, channel: &str, text: &str) -> Published {
        self.publish(channel, Message::Text(text))
    }

    /// [`publish`](Context::publish) of a binary message (even if it is valid UTF-8).
    pub fn publish_binary(&mut self, channel: &str, bytes: &[u8]) -> Published {
        self.publish(channel, Message::Binary(bytes))
    }

    /// Like [`publish`](Context::publish), but not to `except` (a chat message's
    /// sender), who gets an `ack` with the message's id instead if it takes envelopes.
    pub fn publish_except(
        &mut self,
        channel: &str,
        msg: impl ToMessage,
        except: ConnId,
    ) -> Published {
        self.publish_from(channel, msg, except, None)
    }

    /// [`publish_except`](Context::publish_except) of a request numbered `req` by its
    /// sender: the `ack` carries `"req":N` (the `pushloop.v1` `publish` message).
    pub fn publish_from(
        &mut self,
        channel: &str,
        msg: impl ToMessage,
        sender: ConnId,
        req: Option<u64>,
    ) -> Published {
        let answer = Answer::Ack(sender, req);
        self.hub.count(Source::Chat);
        let published =
            self.hub
                .publish(self.core, channel, msg.to_message(), Some(sender), answer);
        if published.id != 0 {
            self.hub.ack(self.core, sender, channel, published.id, req);
        }
        published
    }

    /// This worker's numbers: counters since it started, connections, queued bytes,
    /// channels and history now (a walk over its connections and channels: meant for a
    /// metrics scrape, not for every message). With several workers, gather every
    /// worker's with [`Handle::defer_on`](crate::Handle::defer_on).
    pub fn stats(&self) -> Stats {
        Stats {
            worker: usize::from(self.core.settings.worker),
            server: self.core.stats(),
            push: self.hub.stats(),
        }
    }

    /// Whether the broker between workers can carry notes (always
    /// [`BrokerState::Up`] with one worker or the in-process broker; a broker between
    /// hosts is down while it cannot reach its peers). For a readiness check.
    pub fn broker_state(&self) -> BrokerState {
        self.hub.broker_state()
    }

    /// A read-only view of `channel`, if it exists (it has had members or messages).
    /// With several workers, its counts and last id are global (as of the owner's last
    /// turn), its members and replay this worker's.
    pub fn channel(&self, channel: &str) -> Option<ChannelView<'_>> {
        let (counts, last_id) = self.hub.presence(channel)?;
        Some(ChannelView {
            hub: self.hub,
            name: channel.to_owned(),
            counts,
            last_id,
        })
    }

    /// Every channel with its counts and last id, sorted by name (with several workers:
    /// every worker's channels, as of each owner's last turn, with members per worker).
    pub fn channel_list(&self) -> Vec<ChannelInfo> {
        self.hub.channel_list()
    }

    /// The channels `id` is a member of (in no particular order).
    pub fn channels_of(&self, id: ConnId) -> Vec<String> {
        self.hub.channels.channels_of(id.as_u64())
    }

    /// Whether `id` is a member of `channel`, or its join is on its way to the channel's
    /// owner (another worker).
    pub fn has_joined(&self, id: ConnId, channel: &str) -> bool {
        self.hub.channels.is_member(channel, id.as_u64()) || self.hub.broker.is_joining(id, channel)
    }

    /// The first channel `id` joined (unless it left it): a cheap shared name, for a
    /// handler that needs it on every message.
    pub fn first_channel_of(&self, id: ConnId) -> Option<Arc<str>> {
        self.hub.first_channel_of(id)
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
        self.hub
            .event_stream(self.core, id, channel, since, headers)
    }

    /// Answers a request with one Server-Sent Events stream of several `channels`, each
    /// with the id it resumes after (`None`: only what is published from now on). Every
    /// event's data is a `pushloop.v1` envelope naming its channel
    /// (`{"type":"message","channel":"a","id":5,"data":".."}`; a `gap` event per channel
    /// whose history lost some), and every event's id is the stream's position in each
    /// channel (`a=5,b=7`), which [`parse_stream_id`](crate::codec::format::parse_stream_id)
    /// reads back from a reconnect's `Last-Event-ID`. The channels must be valid names
    /// ([`valid_channel_name`](crate::valid_channel_name)) and distinct. Return the reply
    /// from [`Handler::on_http`](crate::Handler::on_http); `headers` are added (e.g. CORS).
    pub fn multi_event_stream(
        &mut self,
        id: ConnId,
        channels: &[(&str, Option<u64>)],
        headers: &[(String, String)],
    ) -> Reply {
        self.hub.multi_event_stream(id, channels, headers)
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

    /// Whether an [`Auth`] is configured ([`Config::auth`](crate::Config::auth)).
    pub fn auth_enabled(&self) -> bool {
        self.auth.is_some()
    }

    /// The identity `id` proved (its upgrade's credential, or what
    /// [`authenticate`](Context::authenticate) or [`set_identity`](Context::set_identity)
    /// recorded); `None` for an anonymous connection.
    pub fn identity(&self, id: ConnId) -> Option<&Identity> {
        self.users.get(id).map(|who| &**who)
    }

    /// The user `id` proved to be, if any.
    pub fn user_of(&self, id: ConnId) -> Option<&str> {
        self.identity(id)?.user.as_deref()
    }

    /// Checks the credential of `req` (a plain request on `id`, e.g. before a
    /// Server-Sent Events stream) with the configured [`Auth`] and records the identity
    /// for `id`: `Ok(None)` for an anonymous client (or when no `Auth` is configured),
    /// `Err` with the `401` to answer.
    pub fn authenticate(
        &mut self,
        id: ConnId,
        req: &Request<'_>,
    ) -> Result<Option<&Identity>, Refusal> {
        let Some(auth) = self.auth else {
            return Ok(None);
        };
        match auth.check(req)? {
            Some(identity) => {
                self.users.set(id, identity);
                Ok(self.identity(id))
            }
            None => {
                self.users.forget(id);
                Ok(None)
            }
        }
    }

    /// Records `identity` for `id` (a program's own check); it is forgotten when the
    /// connection ends.
    pub fn set_identity(&mut self, id: ConnId, identity: Identity) {
        self.users.set(id, identity);
    }

    /// The connections of `user` on this worker.
    pub fn connections_of_user(&self, user: &str) -> Vec<ConnId> {
        self.users.connections_of(user).to_vec()
    }

    /// Publishes `msg` to `user`'s personal channel `user:<user>`: every connection of
    /// that user subscribed to it gets it, on any worker (with an id and history, so
    /// resume works).
    pub fn send_to_user(&mut self, user: &str, msg: impl ToMessage) -> Published {
        self.publish(&user_channel(user), msg)
    }

    /// Closes every connection of `user`, on every worker (and with
    /// [`Config::redis`](crate::Config::redis) on every node): WebSockets with 4003
    /// "disconnected", Server-Sent Events streams ended, held long polls answered `403`.
    /// Returns how many of this worker's were closed (other workers and nodes close
    /// theirs on their next turn).
    pub fn disconnect_user(&mut self, user: &str) -> usize {
        let command = Command::DisconnectUser(user.to_owned());
        match self.hub.broker.reach() {
            // Every node hears it, this one too (a second close is a no-op).
            Reach::Everywhere => self.hub.broker.command(command, None),
            Reach::Unavailable => {
                log::warn!("the broker is away: {user} is disconnected on this process only");
                self.disconnect_user_on_workers(user);
            }
            Reach::Process => self.disconnect_user_on_workers(user),
        }
        self.disconnect_user_here(user)
    }

    /// Asks the other workers of this process to close `user`'s connections.
    fn disconnect_user_on_workers(&mut self, user: &str) {
        if let Some(peers) = self.peers {
            let me = usize::from(self.core.settings.worker);
            peers.disconnect_user(user, Some(me), Then::Nothing);
        }
    }

    /// Answers an HTTP request on `id` with `{"disconnected":N}` once every worker (and
    /// node) has closed `user`'s connections ([`disconnect_user`](Context::disconnect_user));
    /// with Redis away, `503` and nothing is closed. Return the reply from
    /// [`Handler::on_http`](crate::Handler::on_http).
    pub fn disconnect_user_request(
        &mut self,
        id: ConnId,
        user: &str,
        headers: &[(String, String)],
    ) -> Reply {
        let answer = |n: usize, headers: &[(String, String)]| {
            let mut response = Response::json(200, format!("{{\"disconnected\":{n}}}"));
            response.headers.extend_from_slice(headers);
            response
        };
        match (self.hub.broker.reach(), self.peers) {
            (Reach::Unavailable, _) => {
                let why = "broker unavailable: nobody was disconnected, try again later";
                return retry_later(503, why, headers).into();
            }
            // One worker alone: done now.
            (Reach::Process, None) => {
                return answer(self.disconnect_user_here(user), headers).into();
            }
            _ => {}
        }
        let extra = headers.to_vec();
        let then = Then::Respond(id, Box::new(move |n| answer(n, &extra)));
        self.disconnect_user_everywhere(user, then);
        let mut fallback = Response::text(503, "disconnect not confirmed in time");
        fallback.headers.extend_from_slice(headers);
        Reply::Hold {
            timeout: Duration::from_secs(30),
            fallback,
        }
    }

    /// Closes `user`'s connections on every worker and node the broker reaches, then
    /// does `then` with how many were closed (with the broker away: on this process's
    /// workers, and a warning is logged).
    pub(crate) fn disconnect_user_everywhere(&mut self, user: &str, then: Then) {
        match self.hub.broker.reach() {
            Reach::Everywhere => {
                let tally = Box::new(move |core: &mut Core, outcome| {
                    if let Outcome::Count(n) = outcome {
                        then.run(core, n);
                    }
                });
                let command = Command::DisconnectUser(user.to_owned());
                self.hub.command_everywhere(command, tally);
            }
            reach => {
                if reach == Reach::Unavailable {
                    log::warn!("the broker is away: {user} is disconnected on this process only");
                }
                match self.peers {
                    Some(peers) => peers.disconnect_user(user, None, then),
                    None => {
                        let n = self.disconnect_user_here(user);
                        then.run(self.core, n);
                    }
                }
            }
        }
    }

    /// Runs a command another node (or this one) asked every node to run; this node's
    /// part of the answer.
    pub(crate) fn run_command(&mut self, command: &Command) -> Outcome {
        match command {
            Command::DisconnectUser(user) => Outcome::Count(self.disconnect_user_here(user)),
            Command::ChannelUsers(channel) => Outcome::Users(self.channel_users_here(channel)),
        }
    }

    /// Verifies a bare token (a `pushloop.v1` `refresh`) with the configured
    /// authenticator: `None` if there is none, or it does not take bare tokens.
    pub fn verify_token(&self, token: &str) -> Option<Result<Identity, AuthError>> {
        self.auth?.verify_token(token)
    }

    /// Ends the connections whose identity expired by `now` (Unix seconds): WebSockets
    /// are closed with 4001 "token expired", Server-Sent Events streams ended. Their
    /// identity stays until they are gone, so the handler's `on_close`/`on_http_end`
    /// still knows whose connection ended (a closing one is not ended twice).
    pub(crate) fn expire_identities(&mut self, now: u64) {
        let expired: Vec<ConnId> = self
            .users
            .expiring()
            .filter(|&(_, at)| at <= now)
            .map(|(id, _)| id)
            .collect();
        for id in expired {
            if self.core.is_open(id) {
                self.core.close(id, CloseCode::from(4001), "token expired");
            } else if self.core.is_streaming(id) {
                self.core.end_stream(id);
            }
        }
    }

    /// Answers an HTTP request on `id` with who is in `channel`, on every worker (and
    /// with [`Config::redis`](crate::Config::redis) on every node):
    /// `{"channel":"c","users":[{"user":"alice","connections":2,"info":{..}}],"anonymous":1}`;
    /// `503` while Redis is away. Return the reply from
    /// [`Handler::on_http`](crate::Handler::on_http).
    pub fn channel_users_request(
        &mut self,
        id: ConnId,
        channel: &str,
        headers: &[(String, String)],
    ) -> Reply {
        let name = channel.to_owned();
        let extra = headers.to_vec();
        let answer = move |users: ChannelUsers| {
            let mut response = Response::json(200, users.to_json(&name));
            response.headers.extend(extra);
            response
        };
        match (self.hub.broker.reach(), self.peers) {
            (Reach::Unavailable, _) => {
                let why = "broker unavailable: presence of other nodes unknown, try again later";
                return retry_later(503, why, headers).into();
            }
            (Reach::Everywhere, _) => {
                let tally = Box::new(move |core: &mut Core, outcome| {
                    if let Outcome::Users(users) = outcome {
                        core.respond(id, &answer(users));
                    }
                });
                let command = Command::ChannelUsers(channel.to_owned());
                self.hub.command_everywhere(command, tally);
            }
            (Reach::Process, Some(peers)) => peers.channel_users(channel, id, Box::new(answer)),
            (Reach::Process, None) => return answer(self.channel_users_here(channel)).into(),
        }
        let mut fallback = Response::text(503, "presence not gathered in time");
        fallback.headers.extend_from_slice(headers);
        Reply::Hold {
            timeout: Duration::from_secs(30),
            fallback,
        }
    }

    /// Who is in `channel` on this worker.
    pub fn channel_users_here(&self, channel: &str) -> ChannelUsers {
        let mut users = ChannelUsers::default();
        for (member, _) in self.hub.channels.members(channel) {
            users.add(self.identity(ConnId::from_u64(member)));
        }
        users
    }

    /// Closes `user`'s connections on this worker; how many.
    pub(crate) fn disconnect_user_here(&mut self, user: &str) -> usize {
        let mut closed = 0;
        for id in self.users.connections_of(user).to_vec() {
            let done = if self.core.is_open(id) {
                self.core.close(id, CloseCode::from(4003), "disconnected")
            } else if self.core.is_streaming(id) {
                self.core.end_stream(id)
            } else if self
                .core
                .respond(id, &Refusal::json(403, "disconnected").into_response())
            {
                // A held long poll: answered, so no longer a member of its channel (the
                // connection may stay open for its next request, which proves its own
                // identity again).
                self.hub.forget(id);
                self.users.forget(id);
                true
            } else {
                false
            };
            if done {
                closed += 1;
            }
        }
        closed
    }

    /// Stops the server gracefully once this turn is done: no new connections, Close 1001
    /// to every client, and `run` returns once they are closed or the shutdown timeout
    /// passed.
    pub fn stop(&mut self) {
        self.core.stop_requested = true;
        if let Some(peers) = self.peers {
            peers.stop_all();
        }
    }
}

/// A channel as a callback may look at it: its members, its last id, what it would
/// replay. From [`Context::channel`].
#[derive(Debug)]
pub struct ChannelView<'a> {
    hub: &'a Hub,
    name: String,
    counts: Counts,
    last_id: u64,
}

impl ChannelView<'_> {
    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its members per transport.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The id of its newest message (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Its members and how each is connected.
    pub fn members(&self) -> impl Iterator<Item = (ConnId, Transport)> + '_ {
        self.hub
            .channels
            .members(&self.name)
            .map(|(member, transport)| (ConnId::from_u64(member), transport))
    }

    /// Whether `id` is a member.
    pub fn has_member(&self, id: ConnId) -> bool {
        self.hub.channels.is_member(&self.name, id.as_u64())
    }

    /// What a client that saw `since` would be sent: the messages after it still in
    /// history, and whether some are lost. The history of this worker: with several
    /// workers only the channel's owner has it, and with [`Config::redis`](crate::Config::redis)
    /// Redis has it (a join with `since` is answered from there); elsewhere this finds
    /// no messages.
    pub fn replay(&self, since: u64) -> Replay {
        self.hub.channels.replay(&self.name, since)
    }
}
