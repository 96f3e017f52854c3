//! The hub's side of the [`Broker`]: what a worker does, once per loop turn, with what
//! the broker brings ([`Inbound`]): messages for its members, the outcome of publishes
//! its senders wait for, the replays its joining members wait for, commands for every
//! node; and the presence questions the broker answers.

use crate::push::answers::{
    failed_answer, poll_answer, publish_answer, replay_events, replay_frames, text_frame,
};
use crate::push::broker::{Answer, Asker, Broker, Command, Failure, Inbound, Join};
use crate::push::channels::{ChannelInfo, Channels, Counts, Replay, Transport};
use crate::push::format;
use crate::push::hub::{Hub, Tally};
use crate::server::connection::ConnId;
use crate::server::core::Core;
use crate::ws::close::CloseCode;
use std::sync::Arc;

impl Hub {
    /// The same hub sharing its channels through `broker`.
    pub(crate) fn with_broker(mut self, broker: Box<dyn Broker>) -> Self {
        self.broker = broker;
        self
    }

    /// The same hub with no history of its own: its broker keeps it (Redis).
    pub(crate) fn history_elsewhere(mut self) -> Self {
        self.channels = Channels::with_history_bytes(0, 0);
        self
    }

    /// Acts on what the broker brought since the last turn.
    pub(crate) fn receive(&mut self, core: &mut Core) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.broker.receive(&mut self.channels, &mut inbox);
        for inbound in inbox.drain(..) {
            self.on_inbound(core, inbound);
        }
        self.inbox = inbox;
    }

    /// The turn ends: the broker hands its work over; `true` if some waits for room.
    pub(crate) fn end_turn(&mut self) -> bool {
        self.broker.end_turn(&self.channels)
    }

    fn on_inbound(&mut self, core: &mut Core, inbound: Inbound) {
        match inbound {
            Inbound::Deliver {
                channel,
                stored,
                except,
                forwarded,
            } => {
                let delivered = self.fan_out(core, &channel, &stored, except);
                if let Some(forwarded) = forwarded {
                    self.broker.settle(forwarded, channel, stored.id, delivered);
                }
            }
            Inbound::Published {
                channel,
                answer,
                id,
                delivered,
            } => match answer {
                Answer::Nobody => {}
                Answer::Ack(member, req) => self.ack(core, member, &channel, id, req),
                Answer::Http(request, headers) => {
                    core.respond(request, &publish_answer(id, delivered, &headers));
                }
            },
            Inbound::Refused {
                channel,
                answer,
                failure,
            } => self.refuse(core, &channel, answer, failure),
            Inbound::Joined {
                join,
                since,
                replay,
            } => {
                if Hub::still_waits(core, join.member, join.transport) {
                    self.admit(core, join, since, replay);
                } else {
                    self.broker
                        .left(&mut self.channels, &join.channel, join.transport);
                }
            }
            Inbound::Gap {
                channel,
                since,
                replay,
            } => self.gap(core, &channel, since, &replay),
            Inbound::Command { command, asker } => self.commands.push((command, asker)),
            Inbound::Tallied { ticket, total } => {
                let tally = self.tallies.remove(&ticket);
                if let (Some(tally), Some(total)) = (tally, total) {
                    tally(core, total);
                }
            }
        }
    }

    /// Tells whoever waits for a publish to `channel` that it got no id: a `pushloop.v1`
    /// sender gets an error (code 503, or 504 when it may have been published), a raw
    /// WebSocket sender is closed with 1013, an HTTP publisher gets `503` or `504`.
    pub(crate) fn refuse(
        &mut self,
        core: &mut Core,
        channel: &str,
        answer: Answer,
        failure: Failure,
    ) {
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
                core.respond(id, &failed_answer(failure, &headers));
            }
        }
    }

    /// Whether `member` is still there to join by `transport`: an open WebSocket, a
    /// stream, a held poll.
    pub(crate) fn still_waits(core: &Core, member: ConnId, transport: Transport) -> bool {
        match transport {
            Transport::WebSocket => core.is_open(member),
            Transport::Sse => core.is_streaming(member),
            Transport::LongPoll => core.is_held(member),
        }
    }

    /// Sends `join.member` what it missed of its channel after `since` and makes it a
    /// member here (a long poll with something to take is answered instead).
    fn admit(&mut self, core: &mut Core, join: Join, since: u64, replay: Replay) {
        let Join {
            channel,
            member,
            transport,
            ..
        } = join;
        let mut out = Vec::new();
        match transport {
            Transport::WebSocket => {
                let envelope = Hub::takes_envelopes(core, member);
                replay_frames(&channel, since, &replay, envelope, &mut out);
            }
            Transport::Sse if self.streams.has(member) => {
                self.stream_replay(member, &channel, since, &replay, &mut out);
            }
            Transport::Sse => replay_events(since, &replay, &mut out),
            Transport::LongPoll => return self.poll_joined(core, channel, member, replay),
        }
        if !out.is_empty() {
            core.push_bytes(member, &out, replay.messages.len());
        }
        self.channels.join(&channel, member.as_u64(), transport);
    }

    /// A held long poll learned what followed its `since`: answered now if anything
    /// did, else it waits here for the next message.
    fn poll_joined(&mut self, core: &mut Core, channel: Arc<str>, member: ConnId, replay: Replay) {
        let headers = self.polls.get(&member).cloned().unwrap_or_default();
        if replay.truncated || !replay.messages.is_empty() {
            self.polls.remove(&member);
            let answer = poll_answer(&replay.messages, replay.truncated, replay.last_id, &headers);
            core.respond(member, &answer);
            return self
                .broker
                .left(&mut self.channels, &channel, Transport::LongPoll);
        }
        let fallback = poll_answer(&[], false, replay.last_id, &headers);
        core.set_fallback(member, fallback);
        self.channels
            .join(&channel, member.as_u64(), Transport::LongPoll);
    }

    /// Every member of `channel` here missed messages the broker lost: each gets the gap
    /// notice from `since`, then what the broker has now (a held poll is answered).
    fn gap(&mut self, core: &mut Core, channel: &Arc<str>, since: u64, replay: &Replay) {
        let members: Vec<(u64, Transport)> = self.channels.members(channel).collect();
        for (member, transport) in members {
            let id = ConnId::from_u64(member);
            let mut out = Vec::new();
            match transport {
                Transport::WebSocket => {
                    let envelope = Hub::takes_envelopes(core, id);
                    replay_frames(channel, since, replay, envelope, &mut out);
                }
                Transport::Sse if self.streams.has(id) => {
                    self.stream_replay(id, channel, since, replay, &mut out);
                }
                Transport::Sse => replay_events(since, replay, &mut out),
                Transport::LongPoll => {
                    self.channels.leave_seat(channel, member);
                    self.broker
                        .left(&mut self.channels, channel, Transport::LongPoll);
                    let headers = self.polls.remove(&id).unwrap_or_default();
                    let answer = poll_answer(&replay.messages, true, replay.last_id, &headers);
                    core.respond(id, &answer);
                    continue;
                }
            }
            core.push_bytes(id, &out, replay.messages.len());
        }
    }

    /// Asks every node the broker reaches to run `command` (see [`Broker::reach`]);
    /// `tally` gets the sum of their counts.
    pub(crate) fn command_everywhere(&mut self, command: Command, tally: Tally) {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.tallies.insert(ticket, tally);
        self.broker.command(command, Some(ticket));
    }

    /// The commands other nodes asked this one to run since the last call.
    pub(crate) fn take_commands(&mut self) -> Vec<(Command, Option<Asker>)> {
        std::mem::take(&mut self.commands)
    }

    /// The first channel `id` joined (unless it left it), or waits to join.
    pub(crate) fn first_channel_of(&self, id: ConnId) -> Option<Arc<str>> {
        let joined = self.channels.first_channel_of(id.as_u64());
        joined.or_else(|| self.broker.first_joining(id))
    }

    /// `channel`'s global counts and last id, if it exists.
    pub(crate) fn presence(&self, channel: &str) -> Option<(Counts, u64)> {
        self.broker.presence(&self.channels, channel)
    }

    /// Every channel's global presence, sorted by name.
    pub(crate) fn channel_list(&self) -> Vec<ChannelInfo> {
        self.broker.channel_list(&self.channels)
    }
}
