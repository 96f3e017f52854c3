//! The hub's side of the notes between workers: what a worker does with the publishes,
//! subscriptions and deliveries the others send it, once per loop turn.

use crate::push::answers::{poll_answer, publish_answer, replay_events, replay_frames};
use crate::push::broker::{Answer, Note};
use crate::push::channels::{Replay, Transport};
use crate::push::hub::Hub;
use crate::server::connection::ConnId;
use crate::server::core::Core;
use crate::server::message::{Kind, Message};
use std::sync::Arc;

/// A stored payload as a message (text history is valid UTF-8 by construction).
fn message_of(kind: Kind, data: &[u8]) -> Message<'_> {
    match (kind, std::str::from_utf8(data)) {
        (Kind::Text, Ok(text)) => Message::Text(text),
        _ => Message::Binary(data),
    }
}

impl Hub {
    /// Acts on what other workers sent (nothing with one worker).
    pub(crate) fn receive(&mut self, core: &mut Core) {
        self.receive_cluster(core);
        let Some(mesh) = &mut self.mesh else {
            return;
        };
        let mut notes = std::mem::take(&mut self.inbox);
        mesh.take(&mut notes);
        for note in notes.drain(..) {
            self.on_note(core, note);
        }
        self.inbox = notes;
    }

    /// The turn ends: publishes the owned channels' presence and hands the turn's notes
    /// over; `true` if some wait for room in a full queue.
    pub(crate) fn end_turn(&mut self) -> bool {
        if let Some(cluster) = &mut self.cluster {
            let channels = &self.channels;
            cluster.end_turn(|name| channels.counts(name));
        }
        let Some(mesh) = &mut self.mesh else {
            return false;
        };
        mesh.publish_presence(&self.channels);
        mesh.flush()
    }

    fn on_note(&mut self, core: &mut Core, note: Note) {
        match note {
            Note::Publish {
                channel,
                kind,
                data,
                except,
                answer,
                from,
            } => {
                let msg = message_of(kind, &data);
                let published = self.publish(core, &channel, msg, except, Answer::Nobody);
                if answer != Answer::Nobody {
                    let note = Note::Published {
                        channel,
                        answer,
                        id: published.id,
                        delivered: published.delivered,
                    };
                    self.post(from, note);
                }
            }
            Note::Published {
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
            Note::Deliver {
                channel,
                stored,
                except,
            } => {
                self.fan_out(core, &channel, &stored, except);
            }
            Note::Join {
                channel,
                member,
                transport,
                since,
                from,
            } => self.remote_join(channel, member, transport, since, from),
            Note::Joined {
                channel,
                member,
                transport,
                since,
                replay,
            } => self.joined(core, (channel, member, transport), since, replay),
            Note::Leave {
                channel,
                transport,
                from,
            } => self.remote_member(&channel, from, transport, false),
        }
    }

    /// As the owner of `channel`: a member of worker `from` joined or left. The channel
    /// is kept (and its ids go on) while other workers have members.
    fn remote_member(
        &mut self,
        channel: &Arc<str>,
        from: usize,
        transport: Transport,
        joined: bool,
    ) {
        let Some(mesh) = &mut self.mesh else {
            return;
        };
        let had = mesh.has_remote(channel);
        mesh.remote_member(channel, from, transport, joined);
        let has = mesh.has_remote(channel);
        if had != has {
            self.channels.pin(channel, has);
        }
    }

    fn post(&mut self, to: usize, note: Note) {
        if let Some(mesh) = &mut self.mesh {
            mesh.post(to, note);
        }
    }

    /// As the owner of `channel`: worker `from` subscribes `member`. The answer, with
    /// what it missed after `since`, goes on the queue that carries the channel's later
    /// messages to `from`, so nothing can come between them.
    fn remote_join(
        &mut self,
        channel: Arc<str>,
        member: ConnId,
        transport: Transport,
        since: Option<u64>,
        from: usize,
    ) {
        let since = since.unwrap_or_else(|| self.channels.last_id(&channel));
        let replay = self.channels.replay(&channel, since);
        self.remote_member(&channel, from, transport, true);
        let note = Note::Joined {
            channel,
            member,
            transport,
            since,
            replay,
        };
        self.post(from, note);
    }

    /// The owner of `channel` subscribed `member`: send it what it missed, then make it a
    /// member here. If it ended or left meanwhile, the owner is told it left.
    fn joined(
        &mut self,
        core: &mut Core,
        (channel, member, transport): (Arc<str>, ConnId, Transport),
        since: u64,
        replay: Replay,
    ) {
        let waiting = self
            .mesh
            .as_mut()
            .is_some_and(|mesh| mesh.take_pending(member, &channel));
        let alive = Hub::still_waits(core, member, transport);
        if !(waiting && alive) {
            return self.left(&channel, transport);
        }
        self.admit(core, (channel, member, transport), since, replay);
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

    /// Sends `member` what it missed of `channel` after `since` and makes it a member
    /// here (a long poll with something to take is answered instead).
    pub(crate) fn admit(
        &mut self,
        core: &mut Core,
        (channel, member, transport): (Arc<str>, ConnId, Transport),
        since: u64,
        replay: Replay,
    ) {
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

    /// A held long poll of a channel owned elsewhere learned what followed its `since`:
    /// answered now if anything did, else it waits here for the next message.
    fn poll_joined(&mut self, core: &mut Core, channel: Arc<str>, member: ConnId, replay: Replay) {
        let headers = self.polls.get(&member).cloned().unwrap_or_default();
        if replay.truncated || !replay.messages.is_empty() {
            self.polls.remove(&member);
            let answer = poll_answer(&replay.messages, replay.truncated, replay.last_id, &headers);
            core.respond(member, &answer);
            return self.left(&channel, Transport::LongPoll);
        }
        let fallback = poll_answer(&[], false, replay.last_id, &headers);
        core.set_fallback(member, fallback);
        self.channels
            .join(&channel, member.as_u64(), Transport::LongPoll);
    }
}
