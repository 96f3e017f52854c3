//! The hub as one node of several sharing Redis: every publish goes to Redis (which gives
//! the id and keeps the history), every message is delivered from Redis's pub/sub (in
//! its order, once per node), every resume is answered from Redis's history, and while
//! Redis is away publishes are refused visibly and joins wait.

use crate::push::answers::{poll_answer, publish_answer, replay_events, replay_frames, text_frame};
use crate::push::broker::Answer;
use crate::push::channels::{Channels, Replay, Transport};
use crate::push::format;
use crate::push::hub::{Hub, Published};
use crate::push::redis::cluster::{Cluster, Join, Owed};
use crate::push::redis::functions;
use crate::push::redis::link::Event;
use crate::server::connection::ConnId;
use crate::server::core::Core;
use crate::server::message::Message;
use crate::server::reply::{Reply, Response};
use crate::ws::close::CloseCode;
use redis::{PushKind, Value};
use std::sync::Arc;
use std::time::Duration;

/// What became of a publish that got no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Never sent: Redis was away (or refused it). HTTP `503`.
    NotSent,
    /// Sent, and the connection was lost before Redis answered: it may have been
    /// published (its members then get it, the sender too). HTTP `504`.
    Unknown,
}

impl Failure {
    fn status(self) -> u16 {
        match self {
            Failure::NotSent => 503,
            Failure::Unknown => 504,
        }
    }

    fn message(self) -> &'static str {
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

/// The answer to a publish while Redis is away.
pub(crate) fn unavailable(headers: &[(String, String)]) -> Response {
    failed(Failure::NotSent, headers)
}

/// The answer to a publish that got no id.
fn failed(failure: Failure, headers: &[(String, String)]) -> Response {
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"error\":");
    format::json_string(failure.message(), &mut body);
    body.push(b'}');
    let mut response = Response::json(failure.status(), body).header("Retry-After", "1");
    response.headers.extend_from_slice(headers);
    response
}

impl Hub {
    /// The same hub as one node of a cluster sharing Redis through `cluster`: no history
    /// is kept here.
    pub(crate) fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.channels = Channels::with_history_bytes(0, 0);
        self.cluster = Some(cluster);
        self
    }

    /// Whether this hub is a node of a cluster whose Redis is away.
    pub(crate) fn cluster_down(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| !c.is_up())
    }

    /// Publishes through Redis: the id comes with its reply (`answer` learns it), the
    /// members get it from the pub/sub. Refused at once while Redis is away.
    pub(crate) fn publish_cluster(
        &mut self,
        core: &mut Core,
        channel: &str,
        msg: Message<'_>,
        except: Option<ConnId>,
        answer: Answer,
    ) -> Published {
        let refused = Published {
            id: 0,
            delivered: 0,
        };
        let Some(cluster) = &mut self.cluster else {
            return refused;
        };
        if !cluster.is_up() {
            self.refuse(core, channel, answer, Failure::NotSent);
            return refused;
        }
        cluster.publish(channel, (msg.kind(), msg.as_bytes()), except, answer);
        refused
    }

    /// Tells whoever waits for a publish to `channel` that it got no id: a `pushloop.v1`
    /// sender gets an error (code 503, or 504 when it may have been published), a raw
    /// WebSocket sender is closed with 1013, an HTTP publisher gets `503` or `504`.
    fn refuse(&mut self, core: &mut Core, channel: &str, answer: Answer, failure: Failure) {
        match answer {
            Answer::Nobody => log::warn!("a publish to {channel}: {}", failure.message()),
            Answer::Ack(id, req) if Hub::takes_envelopes(core, id) => {
                let mut json = Vec::new();
                format::ws_error(failure.status(), failure.message(), req, &mut json);
                let mut out = Vec::new();
                text_frame(&json, &mut out);
                core.push_bytes(id, &out, 0);
            }
            Answer::Ack(id, _) => {
                core.close(id, CloseCode::TRY_AGAIN_LATER, "try again later");
            }
            Answer::Http(id, headers) => {
                core.respond(id, &failed(failure, &headers));
            }
        }
    }

    /// Subscribes `member` to `channel` through the cluster: at once when this node is
    /// already subscribed and the member wants only what comes next, else once Redis has
    /// answered with what it missed after `since`.
    pub(crate) fn subscribe_cluster(
        &mut self,
        member: ConnId,
        channel: &str,
        transport: Transport,
        since: Option<u64>,
    ) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let channel: Arc<str> = Arc::from(channel);
        let live = cluster.subscribe(&channel).last;
        match (since, live) {
            (None, Some(_)) => {
                cluster.touch(&channel);
                self.channels.join(&channel, member.as_u64(), transport);
            }
            _ => cluster.ask_replay(Join {
                channel,
                member,
                transport,
                since,
            }),
        }
    }

    /// A long poll through the cluster: held until Redis said what followed `since`
    /// (answered then if anything did), and then until the next message or `timeout`.
    pub(crate) fn long_poll_cluster(
        &mut self,
        id: ConnId,
        channel: &str,
        since: Option<u64>,
        timeout: Duration,
        headers: &[(String, String)],
    ) -> Reply {
        let last = self
            .cluster
            .as_ref()
            .and_then(|c| c.subscriptions.get(channel)?.last);
        // From now on: the last id this node delivered is where it starts.
        let since = since.or(last);
        self.subscribe_cluster(id, channel, Transport::LongPoll, since);
        self.polls.insert(id, headers.to_vec());
        Reply::Hold {
            timeout,
            fallback: poll_answer(&[], false, since.unwrap_or(0), headers),
        }
    }

    /// Acts on what Redis sent since the last turn.
    pub(crate) fn receive_cluster(&mut self, core: &mut Core) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let mut events = cluster.take_events();
        for event in events.drain(..) {
            self.on_event(core, event);
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.events = events;
        }
    }

    fn on_event(&mut self, core: &mut Core, event: Event) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        match event {
            Event::Up(epoch) => {
                if cluster.is_current(epoch) {
                    // The first connection, made before the loop ran: read the list.
                    return cluster.tick();
                }
                if epoch > 1 {
                    log::warn!("Redis at {} is back: resubscribing", cluster.target);
                }
                cluster.went_up(epoch);
                cluster.resume();
            }
            Event::Down(epoch, error) => {
                let Some(owed) = cluster.went_down(epoch) else {
                    return;
                };
                log::warn!(
                    "lost Redis at {}: {error}; publishes are refused until it is back",
                    cluster.target
                );
                for owed in owed {
                    match owed {
                        Owed::Publish { channel, answer } => {
                            self.refuse(core, &channel, answer, Failure::Unknown);
                        }
                        Owed::Join(join) => {
                            if let Some(cluster) = &mut self.cluster {
                                cluster.deferred.push(join);
                            }
                        }
                        Owed::CatchUp { .. } | Owed::Channels | Owed::Nothing => {}
                    }
                }
            }
            Event::Tick => cluster.tick(),
            Event::Value(epoch, value) => {
                if !cluster.is_current(epoch) {
                    return;
                }
                match value {
                    Value::Push { kind, data } => self.on_push(core, &kind, data),
                    reply => {
                        if let Some(owed) = cluster.owed.pop_front() {
                            self.on_reply(core, owed, &reply);
                        }
                    }
                }
            }
        }
    }

    /// A pub/sub push: a message of a channel this node is subscribed to is delivered
    /// to its members here (once: ids this node already delivered are skipped).
    fn on_push(&mut self, core: &mut Core, kind: &PushKind, data: Vec<Value>) {
        if *kind != PushKind::Message {
            return; // subscribe and unsubscribe confirmations
        }
        let mut data = data.into_iter().rev();
        let (Some(Value::BulkString(payload)), Some(Value::BulkString(topic))) =
            (data.next(), data.next())
        else {
            return;
        };
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.received();
        let (Some(channel), Some(delivery)) = (
            functions::channel_of_topic(&topic),
            functions::delivery(&payload),
        ) else {
            log::warn!("an unreadable message on a Redis topic was skipped");
            return;
        };
        let Some((name, sub)) = cluster.subscriptions.get_key_value(channel) else {
            return;
        };
        match sub.last {
            Some(last) if delivery.stored.id > last => {}
            _ => return, // before this node's first replay, or already delivered
        }
        let channel = Arc::clone(name);
        if let Some(sub) = cluster.subscriptions.get_mut(&channel) {
            sub.last = Some(delivery.stored.id);
        }
        let except = delivery.except.filter(|_| delivery.origin == cluster.node);
        self.fan_out(core, &channel, &delivery.stored, except);
    }

    fn on_reply(&mut self, core: &mut Core, owed: Owed, reply: &Value) {
        if let Value::ServerError(e) = reply {
            log::error!("Redis refused a command: {e:?}");
        }
        match owed {
            Owed::Publish { channel, answer } => match functions::published(reply) {
                Some((id, members)) => match answer {
                    Answer::Nobody => {}
                    Answer::Ack(member, req) => self.ack(core, member, &channel, id, req),
                    Answer::Http(request, headers) => {
                        core.respond(request, &publish_answer(id, members, &headers));
                    }
                },
                None => self.refuse(core, &channel, answer, Failure::NotSent),
            },
            Owed::Join(join) => self.replayed_join(core, join, reply),
            Owed::CatchUp { channel, since } => {
                if let Some(replay) = functions::replayed(reply) {
                    self.catch_up(core, &channel, since, replay);
                }
            }
            Owed::Channels => {
                if let (Some(list), Some(cluster)) =
                    (functions::channel_list(reply), &mut self.cluster)
                {
                    cluster.set_directory(list);
                }
            }
            Owed::Nothing => {}
        }
    }

    /// Redis said what `join.member` missed: it gets it and joins (if it still waits).
    fn replayed_join(&mut self, core: &mut Core, join: Join, reply: &Value) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let replay = functions::replayed(reply).unwrap_or_else(|| Replay {
            // Unreadable: told as a gap from where it stood.
            messages: Vec::new(),
            truncated: join.since.is_some(),
            last_id: join.since.unwrap_or(0),
        });
        if let Some(sub) = cluster.subscriptions.get_mut(&join.channel) {
            sub.last = Some(sub.last.map_or(replay.last_id, |l| l.max(replay.last_id)));
        }
        let waiting = cluster.take_pending(join.member, &join.channel);
        let alive = Hub::still_waits(core, join.member, join.transport);
        if waiting && alive {
            let since = join.since.unwrap_or(replay.last_id);
            self.admit(
                core,
                (join.channel, join.member, join.transport),
                since,
                replay,
            );
        }
    }

    /// After Redis came back: the members of `channel` get what was published while this
    /// node could not hear it, in order (or a gap notice first, each member its own,
    /// followed by what Redis still has).
    fn catch_up(&mut self, core: &mut Core, channel: &Arc<str>, since: u64, replay: Replay) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let Some(sub) = cluster.subscriptions.get_mut(channel) else {
            return;
        };
        let last = sub.last.unwrap_or(since);
        // Ids that went back mean Redis lost its data: they start again from there.
        sub.last = Some(if replay.last_id < since {
            replay.last_id
        } else {
            last.max(replay.last_id)
        });
        if !replay.truncated {
            for stored in replay.messages.iter().filter(|m| m.id > last) {
                self.fan_out(core, channel, stored, None);
            }
            return;
        }
        let members: Vec<(u64, Transport)> = self.channels.members(channel).collect();
        for (member, transport) in members {
            let id = ConnId::from_u64(member);
            let mut out = Vec::new();
            match transport {
                Transport::WebSocket => {
                    let envelope = Hub::takes_envelopes(core, id);
                    replay_frames(channel, since, &replay, envelope, &mut out);
                }
                Transport::Sse => replay_events(since, &replay, &mut out),
                Transport::LongPoll => {
                    self.channels.leave_seat(channel, member);
                    let headers = self.polls.remove(&id).unwrap_or_default();
                    let answer = poll_answer(&replay.messages, true, replay.last_id, &headers);
                    core.respond(id, &answer);
                    continue;
                }
            }
            core.push_bytes(id, &out, replay.messages.len());
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.touch(channel);
        }
    }
}
