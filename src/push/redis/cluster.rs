//! A worker's part in a cluster of nodes sharing one Redis: the commands of this turn
//! (sent as one pipeline at its end), the replies still owed (in order), the channels
//! this worker is subscribed to with the last id it delivered of each, the members
//! waiting for their replay, the presence it reports, and the global channel list it
//! last read.

use crate::push::broker::{Answer, Join};
use crate::push::channels::{ChannelInfo, Counts};
use crate::push::redis::commands::{self, Gathering};
use crate::push::redis::functions::{self, Keep};
use crate::push::redis::link::{Event, Link, Target};
use crate::push::stats::{BrokerState, BrokerStats};
use crate::server::connection::ConnId;
use crate::server::message::Kind;
use mio::Waker;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a node's presence counts stay valid without a refresh.
pub(crate) const PRESENCE_TTL: Duration = Duration::from_secs(45);
/// How often a node refreshes the presence of every channel it has members of.
const PRESENCE_REFRESH: Duration = Duration::from_secs(15);
/// How long Redis may owe replies without sending anything before the connection is
/// given up (a stalled Redis: the senders are then told their publishes failed).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A reply Redis owes, in the order the commands were sent.
#[derive(Debug)]
pub(crate) enum Owed {
    /// A publish; `answer` learns its id (or that it was refused).
    Publish { channel: Arc<str>, answer: Answer },
    /// A member's replay before it joins.
    Join(Join),
    /// A channel's replay after a reconnect, for all its members.
    CatchUp { channel: Arc<str>, since: u64 },
    /// The global channel list.
    Channels,
    /// A command for every node: how many heard it (its answers gathered under the
    /// ticket, if any).
    Command { ticket: Option<u64> },
    /// Nothing to do with it (presence writes).
    Nothing,
}

/// A channel this worker is subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Subscription {
    /// The id of the last message delivered here (`None` until the first replay said).
    pub(crate) last: Option<u64>,
    /// Members waiting for their replay.
    pub(crate) joining: usize,
}

/// One worker's view of the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    link: Link,
    pub(crate) target: String,
    /// This worker's name in presence and on the messages it publishes.
    pub(crate) node: String,
    pub(crate) keep: Keep,
    /// The connection replies are expected on, and whether it is up.
    epoch: u64,
    up: bool,
    /// Commands of this turn, and the replies they will be owed.
    pub(crate) out: Vec<u8>,
    queued: usize,
    pub(crate) owed: VecDeque<Owed>,
    pub(crate) subscriptions: HashMap<Arc<str>, Subscription>,
    /// Members waiting for their replay, by member.
    pending: HashMap<ConnId, Vec<Arc<str>>>,
    /// Joins asked while Redis is away: sent when it is back.
    pub(crate) deferred: Vec<Join>,
    /// Channels whose presence (or subscription) changed this turn.
    pub(crate) dirty: HashSet<Arc<str>>,
    /// The global channel list as last read.
    directory: HashMap<String, ChannelInfo>,
    list: Vec<ChannelInfo>,
    last_refresh: Instant,
    /// When Redis last sent anything on this connection.
    last_heard: Instant,
    stats: BrokerStats,
    /// Events being handled (kept to reuse the allocation).
    pub(crate) events: Vec<Event>,
    /// Commands asked here whose answers are being counted, by ticket.
    pub(crate) gatherings: HashMap<u64, Gathering>,
}

/// A random-enough node name: 16 hex digits from the clock, the process and a hasher.
fn node_name(worker: u8) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(functions::now_ms());
    h.write_u8(worker);
    format!("{:016x}", h.finish())
}

impl Cluster {
    /// Connects worker `worker` to the Redis at `url` (an error names the URL, password
    /// masked, and what went wrong).
    pub(crate) fn connect(
        url: &str,
        keep: Keep,
        worker: u8,
        waker: Arc<Waker>,
    ) -> Result<Cluster, String> {
        let node = node_name(worker);
        let target = Target::parse(url)?.listening(commands::topics(&node));
        let shown = target.shown.clone();
        let link = Link::start(target, &format!("pushloop-worker-{worker}"), waker)
            .map_err(|e| format!("cannot reach Redis at {shown}: {e}"))?;
        Ok(Cluster {
            link,
            target: shown,
            node,
            keep,
            // `Link::start` connected: the link's first connection is epoch 1.
            epoch: 1,
            up: true,
            out: Vec::new(),
            queued: 0,
            owed: VecDeque::new(),
            subscriptions: HashMap::new(),
            pending: HashMap::new(),
            deferred: Vec::new(),
            dirty: HashSet::new(),
            directory: HashMap::new(),
            list: Vec::new(),
            last_refresh: Instant::now(),
            last_heard: Instant::now(),
            stats: BrokerStats::default(),
            events: Vec::new(),
            gatherings: HashMap::new(),
        })
    }

    /// Whether Redis is reachable (as of the last event).
    pub(crate) fn is_up(&self) -> bool {
        self.up
    }

    /// The link's state and counts.
    pub(crate) fn stats(&self) -> BrokerStats {
        BrokerStats {
            state: if self.up {
                BrokerState::Up
            } else {
                BrokerState::Down
            },
            ..self.stats
        }
    }

    /// What the link read since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.events);
        self.link.take(&mut events);
        events
    }

    /// Connection `epoch` is up.
    pub(crate) fn went_up(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.last_heard = Instant::now();
        self.up = true;
        self.out.clear();
        self.queued = 0;
    }

    /// Connection `epoch` is lost: the replies it owed never come.
    pub(crate) fn went_down(&mut self, epoch: u64) -> Option<VecDeque<Owed>> {
        if epoch != self.epoch || !self.up {
            return None;
        }
        self.up = false;
        self.out.clear();
        self.queued = 0;
        Some(std::mem::take(&mut self.owed))
    }

    /// Whether `epoch` is the connection replies are expected on (and, if so, Redis was
    /// heard from just now).
    pub(crate) fn is_current(&mut self, epoch: u64) -> bool {
        let current = self.up && epoch == self.epoch;
        if current {
            self.last_heard = Instant::now();
        }
        current
    }

    pub(crate) fn queue(&mut self, owed: Owed) {
        self.queued += 1;
        self.owed.push_back(owed);
    }

    /// Queues a publish (the caller checked Redis is up).
    pub(crate) fn publish(
        &mut self,
        channel: &str,
        message: (Kind, &[u8]),
        except: Option<ConnId>,
        answer: Answer,
    ) {
        functions::publish(
            &mut self.out,
            channel,
            message,
            self.keep,
            &self.node,
            except,
        );
        self.stats.notes_sent += 1;
        self.queue(Owed::Publish {
            channel: Arc::from(channel),
            answer,
        });
    }

    /// Subscribes this worker to `channel` if it is not; its subscription.
    pub(crate) fn subscribe(&mut self, channel: &str) -> &mut Subscription {
        if !self.subscriptions.contains_key(channel) {
            if self.up {
                functions::subscription(&mut self.out, channel, true);
            }
            self.subscriptions
                .insert(Arc::from(channel), Subscription::default());
        }
        self.subscriptions.get_mut(channel).expect("just inserted")
    }

    /// `join.member` waits for what it missed of `join.channel`: asked now, or when Redis
    /// is back.
    pub(crate) fn ask_replay(&mut self, join: Join) {
        self.subscribe(&join.channel).joining += 1;
        self.pending
            .entry(join.member)
            .or_default()
            .push(Arc::clone(&join.channel));
        if self.up {
            functions::replay(&mut self.out, &join.channel, join.since, false);
            self.queue(Owed::Join(join));
        } else {
            self.deferred.push(join);
        }
    }

    /// Asks again, once Redis is back, for what every subscribed channel's members missed,
    /// re-subscribing them, and sends the joins that waited.
    pub(crate) fn resume(&mut self) {
        let channels: Vec<(Arc<str>, Option<u64>)> = self
            .subscriptions
            .iter()
            .map(|(name, sub)| (Arc::clone(name), sub.last))
            .collect();
        for (channel, last) in channels {
            functions::subscription(&mut self.out, &channel, true);
            if let Some(since) = last {
                // What the members missed while this node could not hear.
                functions::replay(&mut self.out, &channel, Some(since), true);
                self.queue(Owed::CatchUp { channel, since });
            }
        }
        for join in std::mem::take(&mut self.deferred) {
            functions::replay(&mut self.out, &join.channel, join.since, false);
            self.queue(Owed::Join(join));
        }
        // Presence is written again for every channel.
        let names: Vec<Arc<str>> = self.subscriptions.keys().cloned().collect();
        self.dirty.extend(names);
        self.tick();
    }

    /// The reply to `join` came (or it gave up): `true` if the member was still waiting.
    pub(crate) fn take_pending(&mut self, member: ConnId, channel: &str) -> bool {
        let Some(list) = self.pending.get_mut(&member) else {
            return false;
        };
        let Some(at) = list.iter().position(|c| &**c == channel) else {
            return false;
        };
        list.swap_remove(at);
        if list.is_empty() {
            self.pending.remove(&member);
        }
        if let Some(sub) = self.subscriptions.get_mut(channel) {
            sub.joining = sub.joining.saturating_sub(1);
        }
        self.dirty.insert(Arc::from(channel));
        true
    }

    /// Whether `member` waits to join `channel`.
    pub(crate) fn is_pending(&self, member: ConnId, channel: &str) -> bool {
        self.pending
            .get(&member)
            .is_some_and(|list| list.iter().any(|c| &**c == channel))
    }

    /// The first channel `member` waits to join.
    pub(crate) fn first_pending(&self, member: ConnId) -> Option<Arc<str>> {
        self.pending.get(&member)?.first().cloned()
    }

    /// `member` ended: it waits for nothing.
    pub(crate) fn forget(&mut self, member: ConnId) {
        if let Some(list) = self.pending.remove(&member) {
            for channel in list {
                if let Some(sub) = self.subscriptions.get_mut(&channel) {
                    sub.joining = sub.joining.saturating_sub(1);
                }
                self.dirty.insert(channel);
            }
        }
        self.deferred.retain(|join| join.member != member);
    }

    /// The presence of `channel` changed.
    pub(crate) fn touch(&mut self, channel: &str) {
        if !self.dirty.contains(channel) {
            self.dirty.insert(Arc::from(channel));
        }
    }

    /// At the end of a turn: writes the presence of the channels that changed (`counts`
    /// gives this worker's members), drops the subscriptions nobody needs, refreshes
    /// every presence now and then, and sends the turn's commands as one pipeline.
    pub(crate) fn end_turn(&mut self, counts: impl Fn(&str) -> Option<Counts>) {
        if self.up && self.last_refresh.elapsed() >= PRESENCE_REFRESH {
            self.last_refresh = Instant::now();
            let names: Vec<Arc<str>> = self.subscriptions.keys().cloned().collect();
            self.dirty.extend(names);
        }
        if !self.dirty.is_empty() {
            let expires = functions::now_ms() + PRESENCE_TTL.as_millis() as u64;
            for channel in std::mem::take(&mut self.dirty) {
                let local = counts(&channel);
                let idle = local.is_none()
                    && self
                        .subscriptions
                        .get(&channel)
                        .is_some_and(|s| s.joining == 0);
                if idle {
                    self.subscriptions.remove(&channel);
                    if self.up {
                        functions::subscription(&mut self.out, &channel, false);
                    }
                }
                if self.up {
                    let local = local.unwrap_or_default();
                    functions::presence(&mut self.out, &channel, &self.node, local, expires);
                    self.queue(Owed::Nothing);
                }
            }
        }
        if self.up && !self.out.is_empty() {
            self.stats.round_trips += 1;
            self.stats.commands += self.queued as u64;
            self.queued = 0;
            self.link.write(self.epoch, std::mem::take(&mut self.out));
        }
    }

    /// A second passed: read the global channel list again, or give the connection up if
    /// Redis owes replies and has said nothing for [`REPLY_TIMEOUT`].
    pub(crate) fn tick(&mut self) {
        if self.up && !self.owed.is_empty() && self.last_heard.elapsed() >= REPLY_TIMEOUT {
            log::warn!(
                "Redis at {} owes {} replies and said nothing for {:?}: reconnecting",
                self.target,
                self.owed.len(),
                REPLY_TIMEOUT
            );
            self.link.reset(self.epoch);
            return;
        }
        if self.up {
            functions::channels(&mut self.out);
            self.queue(Owed::Channels);
        }
    }

    /// The global channel list came.
    pub(crate) fn set_directory(&mut self, list: Vec<ChannelInfo>) {
        self.directory = list.iter().map(|c| (c.name.clone(), c.clone())).collect();
        self.list = list;
    }

    /// `channel` in the global list, as last read.
    pub(crate) fn channel(&self, channel: &str) -> Option<&ChannelInfo> {
        self.directory.get(channel)
    }

    /// The global list, as last read, sorted by name.
    pub(crate) fn channel_list(&self) -> Vec<ChannelInfo> {
        self.list.clone()
    }

    /// Counts a message read from Redis.
    pub(crate) fn received(&mut self) {
        self.stats.notes_received += 1;
    }
}
