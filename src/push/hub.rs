//! Channels on the loop: WebSocket members, Server-Sent Events streams and held long
//! polls, and publishing to all three with an id and a place in history. Built on the
//! loop's primitives: deliver encoded bytes (tagged with the channel, under its backlog
//! policy), stream a response, hold a request and answer it.

use crate::push::answers::{
    failed_answer, opcode, poll_answer, publish_answer, replay_events, replay_frames, text_frame,
};
use crate::push::broker::{
    Answer, Asker, Broker, Command, Failure, Inbound, Joining, Outcome, Publishing,
};
use crate::push::channels::{valid_name, Channels, Stored, Transport};
use crate::push::format::{self, ENVELOPE_PROTOCOL};
use crate::push::in_process::InProcess;
use crate::push::positions::Streams;
use crate::push::stats::{BrokerState, PushStats, Source};
use crate::push::Settings;
use crate::server::backlog::Tag;
use crate::server::connection::ConnId;
use crate::server::core::{Core, Delivery};
use crate::server::encoded::Encoded;
use crate::server::message::Message;
use crate::server::reply::{Heartbeat, Reply, Response};
use crate::ws::frame::OpCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a connection could not join a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The channel name is not 1–128 bytes of `[A-Za-z0-9_.:-]`.
    InvalidName,
    /// The connection is not an open WebSocket (gone, closing, or plain HTTP).
    NotOpen,
    /// The connection is a member already.
    AlreadyMember,
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JoinError::InvalidName => "invalid channel name",
            JoinError::NotOpen => "not an open websocket",
            JoinError::AlreadyMember => "already a member",
        })
    }
}

impl std::error::Error for JoinError {}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's id in its channel (ids grow by one per channel, from 1).
    pub id: u64,
    /// How many subscribers it was queued for (all transports).
    pub delivered: usize,
}

/// Who waits for the sum of every node's answers to a [`Command`] asked here.
pub(crate) type Tally = Box<dyn FnOnce(&mut Core, Outcome) + Send>;

/// How long an EventSource waits before it reconnects (the `retry:` field).
pub(crate) const SSE_RETRY_MS: u64 = 2000;

/// How long a `POST /publish` forwarded to the channel's owner waits for its id.
const FORWARDED_PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// The channels of one loop, the held long polls' answer headers, and the broker that
/// shares the channels with other workers and hosts.
pub(crate) struct Hub {
    pub(crate) channels: Channels,
    pub(crate) settings: Settings,
    /// Extra headers (CORS) for the answer of each held long poll.
    pub(crate) polls: HashMap<ConnId, Vec<(String, String)>>,
    /// Where the channels are shared: this worker alone, the workers of this process,
    /// the nodes sharing Redis.
    pub(crate) broker: Box<dyn Broker>,
    /// What the broker brought, being handled (kept to reuse its allocation).
    pub(crate) inbox: Vec<Inbound>,
    /// Publishes asked for here, by [`Source`].
    pub(crate) publishes: [u64; 4],
    /// The streams of several channels and their positions (`push/positions.rs`).
    pub(crate) streams: Streams,
    /// Commands other nodes asked this one to run (the API runs them).
    pub(crate) commands: Vec<(Command, Option<Asker>)>,
    /// Commands asked here whose answers are awaited, by ticket.
    pub(crate) tallies: HashMap<u64, Tally>,
    /// The ticket of the last command asked here.
    pub(crate) next_ticket: u64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("channels", &self.channels.len())
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub following `settings`.
    pub(crate) fn new(settings: Settings) -> Self {
        Hub {
            channels: Channels::with_history_bytes(settings.history, settings.history_bytes)
                .with_max_channels(settings.max_channels),
            settings,
            polls: HashMap::new(),
            broker: Box::new(InProcess::alone()),
            inbox: Vec::new(),
            publishes: [0; 4],
            streams: Streams::default(),
            commands: Vec::new(),
            tallies: HashMap::new(),
            next_ticket: 0,
        }
    }

    /// Takes the settings of `new` that may change while running
    /// ([`Settings::apply_live`]).
    pub(crate) fn apply_live(&mut self, new: &Settings) {
        self.settings.apply_live(new);
    }

    /// Counts a publish from `source`.
    pub(crate) fn count(&mut self, source: Source) {
        self.publishes[source.index()] += 1;
    }

    /// The push layer's numbers (a walk over the channels: for a scrape).
    pub(crate) fn stats(&self) -> PushStats {
        PushStats {
            publishes: self.publishes,
            channels: self.channels.len(),
            history_bytes: self.channels.history_bytes() as u64,
            broker: self.broker.stats(),
        }
    }

    /// Whether the broker can take publishes (always, in one process).
    pub(crate) fn broker_state(&self) -> BrokerState {
        if self.broker.is_up() {
            BrokerState::Up
        } else {
            BrokerState::Down
        }
    }

    /// Whether `id` takes channel messages as JSON envelopes.
    pub(crate) fn takes_envelopes(core: &Core, id: ConnId) -> bool {
        core.protocol(id) == Some(ENVELOPE_PROTOCOL)
    }

    /// Makes the open WebSocket `id` a member of `channel`, first sending it what it
    /// missed after `since` (a `gap` notice if history no longer has all of it).
    pub(crate) fn join(
        &mut self,
        core: &mut Core,
        id: ConnId,
        channel: &str,
        since: Option<u64>,
    ) -> Result<(), JoinError> {
        if !valid_name(channel) {
            return Err(JoinError::InvalidName);
        }
        if !core.is_open(id) {
            return Err(JoinError::NotOpen);
        }
        if self.channels.is_member(channel, id.as_u64()) {
            return Err(JoinError::AlreadyMember);
        }
        if self.broker.is_joining(id, channel) {
            return Err(JoinError::AlreadyMember);
        }
        let joining =
            self.broker
                .subscribe(&mut self.channels, id, channel, Transport::WebSocket, since);
        if let Joining::Now { since, replay } = joining {
            if replay.truncated || !replay.messages.is_empty() {
                let envelope = Hub::takes_envelopes(core, id);
                let mut out = Vec::new();
                replay_frames(channel, since, &replay, envelope, &mut out);
                core.push_bytes(id, &out, replay.messages.len());
            }
            self.channels
                .join(channel, id.as_u64(), Transport::WebSocket);
        }
        Ok(())
    }

    /// Sends `msg` to the open WebSocket `id`: as an envelope without channel or id if it
    /// takes envelopes, else as it is.
    pub(crate) fn send(&mut self, core: &mut Core, id: ConnId, msg: Message<'_>) -> bool {
        if !Hub::takes_envelopes(core, id) {
            return core.send(id, msg);
        }
        let mut json = Vec::new();
        format::ws_direct(msg.kind(), msg.as_bytes(), &mut json);
        // The envelope is JSON, so UTF-8: a text message.
        std::str::from_utf8(&json).is_ok_and(|text| core.send(id, Message::Text(text)))
    }

    /// Sends `msg` to every open WebSocket but `except`, encoded once per form (raw, and
    /// an envelope for the clients that take envelopes).
    pub(crate) fn broadcast(
        &mut self,
        core: &mut Core,
        msg: Message<'_>,
        except: Option<ConnId>,
    ) -> usize {
        let at = core.congestion_point();
        let ids = core.open_ids();
        // The envelope is made only if someone takes it.
        let mut json = Vec::new();
        if ids.iter().any(|&id| Hub::takes_envelopes(core, id)) {
            format::ws_direct(msg.kind(), msg.as_bytes(), &mut json);
        }
        let mut envelope = Encoded::frame(OpCode::Text, &json, at);
        let mut raw = Encoded::message(msg, at);
        let policy = self.settings.default_policy;
        let mut count = 0;
        for id in ids {
            if Some(id) == except {
                continue;
            }
            let form = if Hub::takes_envelopes(core, id) {
                &mut envelope
            } else {
                &mut raw
            };
            if core.deliver(id, form, Tag::DIRECT, policy) == Delivery::Queued {
                count += 1;
            }
        }
        count
    }

    /// Tells `id`, if it takes envelopes, the id its own message got (chat senders do not
    /// receive their message, but need its id to resume without duplicates).
    pub(crate) fn ack(
        &mut self,
        core: &mut Core,
        id: ConnId,
        channel: &str,
        published: u64,
        req: Option<u64>,
    ) {
        if !Hub::takes_envelopes(core, id) {
            return;
        }
        let mut json = Vec::new();
        format::ws_ack(channel, published, req, &mut json);
        let mut out = Vec::new();
        text_frame(&json, &mut out);
        core.push_bytes(id, &out, 0);
    }

    /// Removes `id` from `channel` (or withdraws its subscription still on its way).
    pub(crate) fn leave(&mut self, id: ConnId, channel: &str) -> bool {
        match self.channels.leave_seat(channel, id.as_u64()) {
            Some(transport) => {
                self.broker.left(&mut self.channels, channel, transport);
                true
            }
            None => self.broker.withdraw(id, channel),
        }
    }

    /// Removes `id` from every channel (its connection or its exchange ended).
    pub(crate) fn forget(&mut self, id: ConnId) {
        self.polls.remove(&id);
        self.streams.forget(id);
        let left = self.channels.leave_all_seats(id.as_u64());
        self.broker.forget(id);
        for (channel, transport) in left {
            self.broker.left(&mut self.channels, &channel, transport);
        }
    }

    /// Publishes to `channel`: an id, a place in history, and delivery to every member
    /// but `except`: WebSockets get a JSON envelope (or the raw message), SSE streams an
    /// event, held long polls their answer. Each form is encoded once.
    ///
    /// When the broker keeps the channel elsewhere (another worker owns it, Redis), the
    /// publish is sent there and `answer` learns its id when it is known (the result
    /// here then has id 0); if the broker is away, `answer` is refused at once.
    pub(crate) fn publish(
        &mut self,
        core: &mut Core,
        channel: &str,
        msg: Message<'_>,
        except: Option<ConnId>,
        answer: Answer,
    ) -> Published {
        // Not decided here: no id (yet).
        let undecided = Published {
            id: 0,
            delivered: 0,
        };
        match self
            .broker
            .publish(&mut self.channels, channel, msg, except, answer)
        {
            Publishing::Here { stored, elsewhere } => Published {
                id: stored.id,
                delivered: self.fan_out(core, channel, &stored, except) + elsewhere,
            },
            Publishing::Sent => undecided,
            Publishing::Refused(failure, answer) => {
                self.refuse(core, channel, answer, failure);
                undecided
            }
        }
    }

    /// Answers `POST /publish` on `id`: at once when this worker owns `channel` (or is
    /// the only one), else held until the owner has given the message its id.
    pub(crate) fn publish_request(
        &mut self,
        core: &mut Core,
        id: ConnId,
        channel: &str,
        msg: Message<'_>,
        headers: &[(String, String)],
    ) -> Reply {
        if !self.broker.is_up() {
            return failed_answer(Failure::NotSent, headers).into();
        }
        let answer = Answer::Http(id, headers.to_vec());
        let published = self.publish(core, channel, msg, None, answer);
        if published.id == 0 {
            let mut fallback = Response::text(503, "publish not confirmed in time");
            fallback.headers.extend_from_slice(headers);
            return Reply::Hold {
                timeout: FORWARDED_PUBLISH_TIMEOUT,
                fallback,
            };
        }
        publish_answer(published.id, published.delivered, headers).into()
    }

    /// Delivers `stored` to this worker's members of `channel` but `except`; returns how
    /// many it was queued for.
    pub(crate) fn fan_out(
        &mut self,
        core: &mut Core,
        channel: &str,
        stored: &Arc<Stored>,
        except: Option<ConnId>,
    ) -> usize {
        core.metrics.published(core.now());
        // Encode each form once, and only for the transports the channel has members on.
        let counts = self.channels.counts(channel).unwrap_or_default();
        let (mut json, mut sse) = (Vec::new(), Vec::new());
        if counts.websocket > 0 {
            format::ws_message(channel, stored.id, stored.kind, &stored.data, &mut json);
        }
        if counts.sse > 0 {
            format::sse_event(stored.id, stored.kind, &stored.data, &mut sse);
        }
        let at = core.congestion_point();
        let (mut envelope, mut raw) = if counts.websocket > 0 {
            (
                Encoded::frame(OpCode::Text, &json, at),
                Encoded::frame(opcode(stored.kind), &stored.data, at),
            )
        } else {
            (
                Encoded::bytes(Vec::new(), at),
                Encoded::bytes(Vec::new(), at),
            )
        };
        let mut sse = Encoded::bytes(sse, at);
        let policy = self.settings.policy_for(channel);
        let tag = Tag::named(channel);
        let mut delivered = 0;
        let (mut polls, mut streams) = (Vec::new(), Vec::new());
        for (member, transport) in self.channels.members(channel) {
            let id = ConnId::from_u64(member);
            if Some(id) == except {
                continue;
            }
            let form = match transport {
                Transport::WebSocket if Hub::takes_envelopes(core, id) => &mut envelope,
                Transport::WebSocket => &mut raw,
                Transport::Sse if self.streams.has(id) => {
                    streams.push(id);
                    continue;
                }
                Transport::Sse => &mut sse,
                Transport::LongPoll => {
                    polls.push(id);
                    continue;
                }
            };
            if core.deliver(id, form, tag, policy) == Delivery::Queued {
                delivered += 1;
            }
        }
        delivered += self.stream_deliver(core, channel, stored, &streams);
        if !polls.is_empty() {
            let one = std::slice::from_ref(stored);
            for id in polls {
                if self.answer_poll(core, id, channel, one, false, stored.id) {
                    delivered += 1;
                }
            }
        }
        delivered
    }

    /// Answers `id`'s request with a Server-Sent Events stream of `channel`, starting
    /// with what it missed after `since`.
    pub(crate) fn event_stream(
        &mut self,
        core: &mut Core,
        id: ConnId,
        channel: &str,
        since: Option<u64>,
        headers: &[(String, String)],
    ) -> Reply {
        let mut response = Response::new(200, "text/event-stream", Vec::new())
            .header("Cache-Control", "no-cache")
            .header("X-Accel-Buffering", "no");
        response.headers.extend_from_slice(headers);
        format::sse_retry(SSE_RETRY_MS, &mut response.body);
        let joining = self
            .broker
            .subscribe(&mut self.channels, id, channel, Transport::Sse, since);
        if let Joining::Now { since, replay } = joining {
            replay_events(since, &replay, &mut response.body);
            core.count_messages_out(id, replay.messages.len());
            self.channels.join(channel, id.as_u64(), Transport::Sse);
        }
        Reply::Stream {
            response,
            heartbeat: Some(Heartbeat {
                every: self.settings.heartbeat,
                bytes: format::SSE_HEARTBEAT,
            }),
        }
    }

    /// Answers `id`'s long poll of `channel` now if anything came after `since` (or
    /// history lost some of it), else holds it until a message or `timeout`.
    pub(crate) fn long_poll(
        &mut self,
        id: ConnId,
        channel: &str,
        since: Option<u64>,
        timeout: Duration,
        headers: &[(String, String)],
    ) -> Reply {
        let joining =
            self.broker
                .subscribe(&mut self.channels, id, channel, Transport::LongPoll, since);
        let since = match joining {
            Joining::Now { since, replay } => {
                if replay.truncated || !replay.messages.is_empty() {
                    let (messages, last) = (&replay.messages, replay.last_id);
                    return poll_answer(messages, replay.truncated, last, headers).into();
                }
                self.channels
                    .join(channel, id.as_u64(), Transport::LongPoll);
                since
            }
            // The broker answers with what followed `since` (or its last id).
            Joining::Later => since.unwrap_or(0),
        };
        self.polls.insert(id, headers.to_vec());
        Reply::Hold {
            timeout,
            fallback: poll_answer(&[], false, since, headers),
        }
    }

    /// Answers the poll held on `id` with `messages`; false if it is no longer held.
    fn answer_poll(
        &mut self,
        core: &mut Core,
        id: ConnId,
        channel: &str,
        messages: &[Arc<Stored>],
        truncated: bool,
        next: u64,
    ) -> bool {
        if let Some(transport) = self.channels.leave_seat(channel, id.as_u64()) {
            self.broker.left(&mut self.channels, channel, transport);
        }
        let headers = self.polls.remove(&id).unwrap_or_default();
        core.respond(id, &poll_answer(messages, truncated, next, &headers))
    }
}
