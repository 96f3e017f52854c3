//! The presence of every channel across workers, for `GET /channels` and
//! [`Context::channel_list`](crate::Context::channel_list) when there are several workers.
//!
//! Each channel's owner knows its global counts (its own members and how many each other
//! worker reported) and its last id. At the end of a turn in which some of them changed,
//! it writes those channels into its shard of the directory: one uncontended lock per
//! owner turn, never one per message. Any worker reads the shards to answer. A reader
//! sees each owner as of the end of that owner's last turn.

use super::queues::owner;
use crate::push::channels::{ChannelInfo, Counts};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A channel's presence as its owner last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Members per transport, all workers.
    pub(crate) counts: Counts,
    /// The channel's last id.
    pub(crate) last_id: u64,
    /// Members per worker.
    pub(crate) workers: Vec<usize>,
}

/// One shard per owner.
#[derive(Debug)]
pub(crate) struct Directory {
    shards: Vec<Mutex<HashMap<Arc<str>, Entry>>>,
}

impl Directory {
    /// An empty directory for `workers` owners.
    pub(crate) fn new(workers: usize) -> Arc<Directory> {
        Arc::new(Directory {
            shards: (0..workers).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    fn shard(&self, worker: usize) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        // A poisoned shard still holds whole entries: each is replaced in one step.
        self.shards[worker]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Owner `worker` writes the channels that changed (`None`: the channel is gone).
    pub(crate) fn write(
        &self,
        worker: usize,
        changes: impl IntoIterator<Item = (Arc<str>, Option<Entry>)>,
    ) {
        let mut shard = self.shard(worker);
        for (name, entry) in changes {
            match entry {
                Some(entry) => {
                    shard.insert(name, entry);
                }
                None => {
                    shard.remove(&name);
                }
            }
        }
    }

    /// `channel`'s presence, if it exists.
    pub(crate) fn get(&self, channel: &str) -> Option<ChannelInfo> {
        let shard = self.shard(owner(channel, self.shards.len()));
        shard.get(channel).map(|entry| info(channel, entry))
    }

    /// Every channel, sorted by name.
    pub(crate) fn list(&self) -> Vec<ChannelInfo> {
        let mut all = Vec::new();
        for worker in 0..self.shards.len() {
            let shard = self.shard(worker);
            all.extend(shard.iter().map(|(name, entry)| info(name, entry)));
        }
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

fn info(name: &str, entry: &Entry) -> ChannelInfo {
    ChannelInfo {
        name: name.to_owned(),
        counts: entry.counts,
        last_id: entry.last_id,
        workers: entry.workers.clone(),
    }
}
