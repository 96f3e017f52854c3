//! The in-process [`Broker`]: one worker alone, or the workers of one process sharing
//! channels through [`Queues`].
//!
//! Alone, every channel is this worker's: a publish is stored here, a join is answered
//! from this worker's history, presence is its own counts.
//!
//! With several workers, each channel has one owner (by a hash of its name): the owner
//! gives the channel's messages their ids, keeps its history, and sends each message once
//! to every worker that has members. Other workers keep only their own members of it (no
//! history) and forward publishes and subscriptions to the owner. The owner's answer to a
//! subscription (what the member missed) goes on the queue that carries the channel's
//! later messages to that worker, so nothing can come between them. Owners write the
//! presence of their channels to the shared [`Directory`].

pub(crate) mod directory;
pub(crate) mod queues;

use crate::push::broker::{
    Answer, Asker, Broker, Command, Forwarded, Inbound, Join, Joining, Outcome, Publishing, Reach,
};
use crate::push::channels::{ChannelInfo, Channels, Counts, Transport};
use crate::push::stats::BrokerStats;
use crate::server::connection::ConnId;
use crate::server::message::Message;
use directory::{Directory, Entry};
pub(crate) use queues::owner;
use queues::{Note, Queues};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The broker of one worker of this process.
#[derive(Debug, Default)]
pub(crate) struct InProcess {
    /// With several workers: this worker's part in the channels they share.
    shared: Option<Shared>,
}

/// One worker's part in the channels shared with the other workers.
struct Shared {
    queues: Queues,
    /// For the channels this worker owns: the members each worker reported.
    remote: HashMap<Arc<str>, Vec<Counts>>,
    /// Subscriptions sent to other owners and not answered yet, by member.
    pending: HashMap<ConnId, Vec<(Arc<str>, Transport)>>,
    /// Owned channels whose presence changed this turn.
    dirty: HashSet<Arc<str>>,
    directory: Arc<Directory>,
    /// Notes from other workers being handled (kept to reuse the allocation).
    inbox: Vec<Note>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (me, workers) = (self.queues.me(), self.queues.workers());
        write!(f, "Shared(worker {me} of {workers})")
    }
}

/// Adds or removes one member of `transport` in `counts`.
fn count(counts: &mut Counts, transport: Transport, joined: bool) {
    let n = match transport {
        Transport::WebSocket => &mut counts.websocket,
        Transport::Sse => &mut counts.sse,
        Transport::LongPoll => &mut counts.long_poll,
    };
    *n = if joined { *n + 1 } else { n.saturating_sub(1) };
}

fn total(counts: &Counts) -> usize {
    counts.websocket + counts.sse + counts.long_poll
}

/// What followed `since` in `channel` (`None`: from its last id, so nothing).
fn replay_from(channels: &Channels, channel: &str, since: Option<u64>) -> Joining {
    let since = since.unwrap_or_else(|| channels.last_id(channel));
    let replay = channels.replay(channel, since);
    Joining::Now { since, replay }
}

impl InProcess {
    /// The broker of a worker alone: every channel is its own.
    pub(crate) fn alone() -> Self {
        InProcess { shared: None }
    }

    /// One broker per worker of this process, each waking the others through `wakers`
    /// (one per worker, in worker order) and writing presence to one directory.
    pub(crate) fn workers(wakers: &[Arc<mio::Waker>]) -> Vec<InProcess> {
        let directory = Directory::new(wakers.len());
        Queues::mesh(wakers)
            .into_iter()
            .map(|queues| InProcess {
                shared: Some(Shared {
                    queues,
                    remote: HashMap::new(),
                    pending: HashMap::new(),
                    dirty: HashSet::new(),
                    directory: Arc::clone(&directory),
                    inbox: Vec::new(),
                }),
            })
            .collect()
    }

    /// The shared part, if `channel` is owned by another worker.
    fn forwarder(&mut self, channel: &str) -> Option<&mut Shared> {
        self.shared.as_mut().filter(|s| !s.owns(channel))
    }
}

impl Shared {
    fn me(&self) -> usize {
        self.queues.me()
    }

    fn owner(&self, channel: &str) -> usize {
        owner(channel, self.queues.workers())
    }

    fn owns(&self, channel: &str) -> bool {
        self.owner(channel) == self.me()
    }

    fn touch(&mut self, channel: &str) {
        if !self.dirty.contains(channel) {
            self.dirty.insert(Arc::from(channel));
        }
    }

    /// Sends `note` to the owner of `channel`.
    fn post_owner(&mut self, channel: &str, note: Note) {
        let to = self.owner(channel);
        self.queues.post(to, note);
    }

    /// Worker `from` reports a member of the owned `channel` joining or leaving. The
    /// channel is kept (and its ids go on) while other workers have members.
    fn remote_member(
        &mut self,
        channels: &mut Channels,
        channel: &Arc<str>,
        from: usize,
        transport: Transport,
        joined: bool,
    ) {
        let workers = self.queues.workers();
        let had = self.remote.contains_key(channel);
        let per_worker = self
            .remote
            .entry(Arc::clone(channel))
            .or_insert_with(|| vec![Counts::default(); workers]);
        count(&mut per_worker[from], transport, joined);
        if per_worker.iter().all(|c| total(c) == 0) {
            self.remote.remove(channel);
        }
        let has = self.remote.contains_key(channel);
        if had != has {
            channels.pin(channel, has);
        }
        self.touch(channel);
    }

    /// Sends `stored` (published to the owned `channel`) once to every other worker with
    /// members of it; how many members those workers have (but `except`).
    fn spread(
        &mut self,
        channel: &str,
        stored: &Arc<crate::push::channels::Stored>,
        except: Option<ConnId>,
    ) -> usize {
        self.touch(channel);
        let Some(per_worker) = self.remote.get(channel) else {
            return 0;
        };
        let me = self.queues.me();
        let channel: Arc<str> = Arc::from(channel);
        let mut members = 0;
        let others = per_worker.iter().map(total).enumerate();
        for (worker, n) in others.filter(|&(worker, n)| n > 0 && worker != me) {
            members += n.saturating_sub(usize::from(except.is_some_and(|e| e.worker() == worker)));
            let note = Note::Deliver {
                channel: Arc::clone(&channel),
                stored: Arc::clone(stored),
                except,
            };
            self.queues.post(worker, note);
        }
        members
    }

    /// `member` no longer waits for the owner's answer about `channel`; `true` if it did.
    fn take_pending(&mut self, member: ConnId, channel: &str) -> bool {
        let Some(list) = self.pending.get_mut(&member) else {
            return false;
        };
        let Some(at) = list.iter().position(|(c, _)| &**c == channel) else {
            return false;
        };
        list.swap_remove(at);
        if list.is_empty() {
            self.pending.remove(&member);
        }
        true
    }

    /// Acts on one note from another worker: owners' work is done here, what the hub
    /// must do goes to `into`.
    fn on_note(&mut self, channels: &mut Channels, note: Note, into: &mut Vec<Inbound>) {
        match note {
            Note::Publish {
                channel,
                kind,
                data,
                except,
                answer,
                from,
            } => {
                let stored = channels.publish(&channel, kind, &data);
                let elsewhere = self.spread(&channel, &stored, except);
                into.push(Inbound::Deliver {
                    channel,
                    stored,
                    except,
                    forwarded: Some(Forwarded {
                        from,
                        answer,
                        elsewhere,
                    }),
                });
            }
            Note::Published {
                channel,
                answer,
                id,
                delivered,
            } => into.push(Inbound::Published {
                channel,
                answer,
                id,
                delivered,
            }),
            Note::Deliver {
                channel,
                stored,
                except,
            } => into.push(Inbound::Deliver {
                channel,
                stored,
                except,
                forwarded: None,
            }),
            Note::Join {
                channel,
                member,
                transport,
                since,
                from,
            } => {
                // As the owner: what it missed, on the queue its later messages take.
                let since = since.unwrap_or_else(|| channels.last_id(&channel));
                let replay = channels.replay(&channel, since);
                self.remote_member(channels, &channel, from, transport, true);
                let note = Note::Joined {
                    channel,
                    member,
                    transport,
                    since,
                    replay,
                };
                self.queues.post(from, note);
            }
            Note::Joined {
                channel,
                member,
                transport,
                since,
                replay,
            } => {
                if !self.take_pending(member, &channel) {
                    // It left (or ended) meanwhile: the owner counted it.
                    let from = self.me();
                    let leave = Note::Leave {
                        channel: Arc::clone(&channel),
                        transport,
                        from,
                    };
                    return self.post_owner(&channel, leave);
                }
                let join = Join {
                    channel,
                    member,
                    transport,
                    since: Some(since),
                };
                into.push(Inbound::Joined {
                    join,
                    since,
                    replay,
                });
            }
            Note::Leave {
                channel,
                transport,
                from,
            } => self.remote_member(channels, &channel, from, transport, false),
        }
    }

    /// Writes the presence of the owned channels that changed to the directory.
    fn publish_presence(&mut self, channels: &Channels) {
        if self.dirty.is_empty() {
            return;
        }
        let workers = self.queues.workers();
        let me = self.me();
        let changes: Vec<_> = self
            .dirty
            .drain()
            .map(|name| {
                let local = channels.counts(&name);
                let remote = self.remote.get(&name);
                if local.is_none() && remote.is_none() {
                    return (name, None);
                }
                let mut per_worker: Vec<Counts> = remote
                    .cloned()
                    .unwrap_or_else(|| vec![Counts::default(); workers]);
                per_worker[me] = local.unwrap_or_default();
                let mut counts = Counts::default();
                for c in &per_worker {
                    counts.websocket += c.websocket;
                    counts.sse += c.sse;
                    counts.long_poll += c.long_poll;
                }
                let entry = Entry {
                    counts,
                    last_id: channels.last_id(&name),
                    workers: per_worker.iter().map(total).collect(),
                };
                (name, Some(entry))
            })
            .collect();
        self.directory.write(me, changes);
    }
}

impl Broker for InProcess {
    fn stats(&self) -> Option<BrokerStats> {
        self.shared.as_ref().map(|s| s.queues.stats())
    }

    fn is_up(&self) -> bool {
        true
    }

    fn publish(
        &mut self,
        channels: &mut Channels,
        channel: &str,
        msg: Message<'_>,
        except: Option<ConnId>,
        answer: Answer,
    ) -> Publishing {
        if let Some(shared) = self.forwarder(channel) {
            let from = shared.me();
            let note = Note::Publish {
                channel: Arc::from(channel),
                kind: msg.kind(),
                data: msg.as_bytes().into(),
                except,
                answer,
                from,
            };
            shared.post_owner(channel, note);
            return Publishing::Sent;
        }
        let stored = channels.publish(channel, msg.kind(), msg.as_bytes());
        let elsewhere = match &mut self.shared {
            Some(shared) => shared.spread(channel, &stored, except),
            None => 0,
        };
        Publishing::Here { stored, elsewhere }
    }

    fn settle(&mut self, forwarded: Forwarded, channel: Arc<str>, id: u64, delivered: usize) {
        let Some(shared) = &mut self.shared else {
            return;
        };
        if forwarded.answer == Answer::Nobody {
            return;
        }
        let note = Note::Published {
            channel,
            answer: forwarded.answer,
            id,
            delivered: delivered + forwarded.elsewhere,
        };
        shared.queues.post(forwarded.from, note);
    }

    fn subscribe(
        &mut self,
        channels: &mut Channels,
        member: ConnId,
        channel: &str,
        transport: Transport,
        since: Option<u64>,
    ) -> Joining {
        let Some(shared) = self.forwarder(channel) else {
            if let Some(shared) = &mut self.shared {
                shared.touch(channel);
            }
            return replay_from(channels, channel, since);
        };
        let name: Arc<str> = Arc::from(channel);
        shared
            .pending
            .entry(member)
            .or_default()
            .push((Arc::clone(&name), transport));
        let from = shared.me();
        let note = Note::Join {
            channel: name,
            member,
            transport,
            since,
            from,
        };
        shared.post_owner(channel, note);
        Joining::Later
    }

    fn is_joining(&self, member: ConnId, channel: &str) -> bool {
        self.shared.as_ref().is_some_and(|s| {
            s.pending
                .get(&member)
                .is_some_and(|list| list.iter().any(|(c, _)| &**c == channel))
        })
    }

    fn first_joining(&self, member: ConnId) -> Option<Arc<str>> {
        let list = self.shared.as_ref()?.pending.get(&member)?;
        list.first().map(|(channel, _)| Arc::clone(channel))
    }

    fn withdraw(&mut self, member: ConnId, channel: &str) -> bool {
        // The owner's answer comes all the same, and is returned with a `Leave`.
        self.shared
            .as_mut()
            .is_some_and(|s| s.take_pending(member, channel))
    }

    fn left(&mut self, _channels: &mut Channels, channel: &str, transport: Transport) {
        let Some(shared) = &mut self.shared else {
            return;
        };
        if shared.owns(channel) {
            return shared.touch(channel);
        }
        let from = shared.me();
        let note = Note::Leave {
            channel: Arc::from(channel),
            transport,
            from,
        };
        shared.post_owner(channel, note);
    }

    fn forget(&mut self, member: ConnId) {
        // The owners' answers to its subscriptions are returned with a `Leave`.
        if let Some(shared) = &mut self.shared {
            shared.pending.remove(&member);
        }
    }

    fn receive(&mut self, channels: &mut Channels, into: &mut Vec<Inbound>) {
        let Some(shared) = &mut self.shared else {
            return;
        };
        let mut notes = std::mem::take(&mut shared.inbox);
        shared.queues.take(&mut notes);
        for note in notes.drain(..) {
            shared.on_note(channels, note, into);
        }
        shared.inbox = notes;
    }

    fn end_turn(&mut self, channels: &Channels) -> bool {
        let Some(shared) = &mut self.shared else {
            return false;
        };
        shared.publish_presence(channels);
        shared.queues.flush()
    }

    fn presence(&self, channels: &Channels, channel: &str) -> Option<(Counts, u64)> {
        match &self.shared {
            None => Some((channels.counts(channel)?, channels.last_id(channel))),
            Some(shared) => shared
                .directory
                .get(channel)
                .map(|info| (info.counts, info.last_id)),
        }
    }

    fn channel_list(&self, channels: &Channels) -> Vec<ChannelInfo> {
        match &self.shared {
            None => channels.list(),
            Some(shared) => shared.directory.list(),
        }
    }

    fn reach(&self) -> Reach {
        Reach::Process
    }

    fn command(&mut self, _command: Command, _ticket: Option<u64>) {}

    fn answer(&mut self, _asker: Asker, _outcome: Outcome) {}
}
