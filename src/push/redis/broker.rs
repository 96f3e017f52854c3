//! The [`Broker`] of a node sharing Redis: every publish goes to Redis (which gives the id
//! and keeps the history), every message comes from Redis's pub/sub (in its order, once
//! per node), every join is answered from Redis's history, and while Redis is away
//! publishes are refused and joins wait. What the link read is turned here into the
//! [`Inbound`] work of the hub.

use crate::push::broker::{
    Answer, Asker, Broker, Command, Failure, Forwarded, Inbound, Join, Joining, Outcome,
    Publishing, Reach,
};
use crate::push::channels::{ChannelInfo, Channels, Counts, Replay, Transport};
use crate::push::redis::cluster::{Cluster, Owed};
use crate::push::redis::functions;
use crate::push::redis::link::Event;
use crate::push::stats::BrokerStats;
use crate::server::connection::ConnId;
use crate::server::message::Message;
use redis::{PushKind, Value};
use std::sync::Arc;

impl Cluster {
    fn on_event(&mut self, event: Event, into: &mut Vec<Inbound>) {
        match event {
            Event::Up(epoch) => {
                if self.is_current(epoch) {
                    // The first connection, made before the loop ran: read the list.
                    return self.tick();
                }
                if epoch > 1 {
                    log::warn!("Redis at {} is back: resubscribing", self.target);
                }
                self.went_up(epoch);
                self.resume();
            }
            Event::Down(epoch, error) => {
                let Some(owed) = self.went_down(epoch) else {
                    return;
                };
                log::warn!(
                    "lost Redis at {}: {error}; publishes are refused until it is back",
                    self.target
                );
                for owed in owed {
                    match owed {
                        Owed::Publish { channel, answer } => into.push(Inbound::Refused {
                            channel,
                            answer,
                            failure: Failure::Unknown,
                        }),
                        Owed::Join(join) => self.deferred.push(join),
                        Owed::Command { ticket } => self.command_lost(ticket, into),
                        Owed::CatchUp { .. } | Owed::Channels | Owed::Nothing => {}
                    }
                }
            }
            Event::Tick => self.tick(),
            Event::Value(epoch, value) => {
                if !self.is_current(epoch) {
                    return;
                }
                match value {
                    Value::Push { kind, data } => self.on_push(&kind, data, into),
                    reply => {
                        if let Some(owed) = self.owed.pop_front() {
                            self.on_reply(owed, &reply, into);
                        }
                    }
                }
            }
        }
    }

    /// A pub/sub push: a message of a channel this node is subscribed to is delivered
    /// to its members here (once: ids this node already delivered are skipped), or a
    /// command for every node, or an answer to one this node asked.
    fn on_push(&mut self, kind: &PushKind, data: Vec<Value>, into: &mut Vec<Inbound>) {
        if *kind != PushKind::Message {
            return; // subscribe and unsubscribe confirmations
        }
        let mut data = data.into_iter().rev();
        let (Some(Value::BulkString(payload)), Some(Value::BulkString(topic))) =
            (data.next(), data.next())
        else {
            return;
        };
        self.received();
        if self.on_control(&topic, &payload, into) {
            return;
        }
        let (Some(channel), Some(delivery)) = (
            functions::channel_of_topic(&topic),
            functions::delivery(&payload),
        ) else {
            log::warn!("an unreadable message on a Redis topic was skipped");
            return;
        };
        let Some((name, sub)) = self.subscriptions.get_key_value(channel) else {
            return;
        };
        match sub.last {
            Some(last) if delivery.stored.id > last => {}
            _ => return, // before this node's first replay, or already delivered
        }
        let channel = Arc::clone(name);
        if let Some(sub) = self.subscriptions.get_mut(&channel) {
            sub.last = Some(delivery.stored.id);
        }
        let except = delivery.except.filter(|_| delivery.origin == self.node);
        into.push(Inbound::Deliver {
            channel,
            stored: delivery.stored,
            except,
            forwarded: None,
        });
    }

    fn on_reply(&mut self, owed: Owed, reply: &Value, into: &mut Vec<Inbound>) {
        if let Value::ServerError(e) = reply {
            log::error!("Redis refused a command: {e:?}");
        }
        match owed {
            Owed::Publish { channel, answer } => into.push(match functions::published(reply) {
                Some((id, delivered)) => Inbound::Published {
                    channel,
                    answer,
                    id,
                    delivered,
                },
                None => Inbound::Refused {
                    channel,
                    answer,
                    failure: Failure::NotSent,
                },
            }),
            Owed::Join(join) => self.replayed_join(join, reply, into),
            Owed::CatchUp { channel, since } => {
                if let Some(replay) = functions::replayed(reply) {
                    self.catch_up(channel, since, replay, into);
                }
            }
            Owed::Channels => {
                if let Some(list) = functions::channel_list(reply) {
                    self.set_directory(list);
                }
            }
            Owed::Command { ticket } => self.command_sent(ticket, reply, into),
            Owed::Nothing => {}
        }
    }

    /// Redis said what `join.member` missed: it gets it and joins (if it still waits).
    fn replayed_join(&mut self, join: Join, reply: &Value, into: &mut Vec<Inbound>) {
        let replay = functions::replayed(reply).unwrap_or_else(|| Replay {
            // Unreadable: told as a gap from where it stood.
            messages: Vec::new(),
            truncated: join.since.is_some(),
            last_id: join.since.unwrap_or(0),
        });
        if let Some(sub) = self.subscriptions.get_mut(&join.channel) {
            sub.last = Some(sub.last.map_or(replay.last_id, |l| l.max(replay.last_id)));
        }
        if self.take_pending(join.member, &join.channel) {
            let since = join.since.unwrap_or(replay.last_id);
            into.push(Inbound::Joined {
                join,
                since,
                replay,
            });
        }
    }

    /// After Redis came back: the members of `channel` get what was published while this
    /// node could not hear it, in order (or, if Redis lost some, a gap notice first
    /// followed by what Redis still has).
    fn catch_up(&mut self, channel: Arc<str>, since: u64, replay: Replay, into: &mut Vec<Inbound>) {
        let Some(sub) = self.subscriptions.get_mut(&channel) else {
            return;
        };
        let last = sub.last.unwrap_or(since);
        // Ids that went back mean Redis lost its data: they start again from there.
        sub.last = Some(if replay.last_id < since {
            replay.last_id
        } else {
            last.max(replay.last_id)
        });
        self.touch(&channel);
        if replay.truncated {
            return into.push(Inbound::Gap {
                channel,
                since,
                replay,
            });
        }
        for stored in replay.messages.into_iter().filter(|m| m.id > last) {
            into.push(Inbound::Deliver {
                channel: Arc::clone(&channel),
                stored,
                except: None,
                forwarded: None,
            });
        }
    }
}

impl Broker for Cluster {
    fn stats(&self) -> Option<BrokerStats> {
        Some(Cluster::stats(self))
    }

    fn is_up(&self) -> bool {
        Cluster::is_up(self)
    }

    fn publish(
        &mut self,
        _channels: &mut Channels,
        channel: &str,
        msg: Message<'_>,
        except: Option<ConnId>,
        answer: Answer,
    ) -> Publishing {
        if !Cluster::is_up(self) {
            return Publishing::Refused(Failure::NotSent, answer);
        }
        Cluster::publish(self, channel, (msg.kind(), msg.as_bytes()), except, answer);
        Publishing::Sent
    }

    fn settle(&mut self, _forwarded: Forwarded, _channel: Arc<str>, _id: u64, _delivered: usize) {
        // Redis owns every channel: no node publishes for another.
    }

    fn subscribe(
        &mut self,
        _channels: &mut Channels,
        member: ConnId,
        channel: &str,
        transport: Transport,
        since: Option<u64>,
    ) -> Joining {
        let live = Cluster::subscribe(self, channel).last;
        match (since, live) {
            // Subscribed already, and only what comes next is wanted: it joins now.
            (None, Some(last)) => {
                self.touch(channel);
                let replay = Replay {
                    messages: Vec::new(),
                    truncated: false,
                    last_id: last,
                };
                Joining::Now {
                    since: last,
                    replay,
                }
            }
            _ => {
                self.ask_replay(Join {
                    channel: Arc::from(channel),
                    member,
                    transport,
                    since,
                });
                Joining::Later
            }
        }
    }

    fn is_joining(&self, member: ConnId, channel: &str) -> bool {
        self.is_pending(member, channel)
    }

    fn first_joining(&self, member: ConnId) -> Option<Arc<str>> {
        self.first_pending(member)
    }

    fn withdraw(&mut self, member: ConnId, channel: &str) -> bool {
        self.take_pending(member, channel)
    }

    fn left(&mut self, _channels: &mut Channels, channel: &str, _transport: Transport) {
        self.touch(channel);
    }

    fn forget(&mut self, member: ConnId) {
        Cluster::forget(self, member);
    }

    fn receive(&mut self, _channels: &mut Channels, into: &mut Vec<Inbound>) {
        let mut events = self.take_events();
        for event in events.drain(..) {
            self.on_event(event, into);
        }
        self.expire_gatherings(into);
        self.events = events;
    }

    fn end_turn(&mut self, channels: &Channels) -> bool {
        Cluster::end_turn(self, |name| channels.counts(name));
        false
    }

    fn presence(&self, channels: &Channels, channel: &str) -> Option<(Counts, u64)> {
        // The list is read once a second; the last id this node delivered is newer.
        let heard = self.subscriptions.get(channel).and_then(|s| s.last);
        match (self.channel(channel), heard) {
            (Some(c), heard) => Some((c.counts, c.last_id.max(heard.unwrap_or(0)))),
            (None, Some(last)) => Some((channels.counts(channel)?, last)),
            (None, None) => None,
        }
    }

    fn channel_list(&self, _channels: &Channels) -> Vec<ChannelInfo> {
        Cluster::channel_list(self)
    }

    fn reach(&self) -> Reach {
        if Cluster::is_up(self) {
            Reach::Everywhere
        } else {
            Reach::Unavailable
        }
    }

    fn command(&mut self, command: Command, ticket: Option<u64>) {
        if Cluster::is_up(self) {
            self.send_command(&command, ticket);
        }
    }

    fn answer(&mut self, asker: Asker, outcome: Outcome) {
        self.send_answer(&asker, &outcome);
    }
}
