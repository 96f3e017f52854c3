//! The hub as one worker of several: which channels go through their owner on another
//! worker, telling owners of members that come and go, and presence read from the
//! directory. With one worker (no mesh) each of these is a no-op or the local answer.

use crate::push::broker::Note;
use crate::push::channels::{ChannelInfo, Counts, Stored, Transport};
use crate::push::hub::Hub;
use crate::push::mesh::Mesh;
use crate::server::connection::ConnId;
use std::sync::Arc;

impl Hub {
    /// The same hub as one worker of several, sharing channels through `mesh`.
    pub(crate) fn with_mesh(mut self, mesh: Mesh) -> Self {
        self.mesh = Some(mesh);
        self
    }

    /// The mesh, if `channel` is owned by another worker (its id, history and presence
    /// live there).
    pub(crate) fn forwarder(&mut self, channel: &str) -> Option<&mut Mesh> {
        self.mesh.as_mut().filter(|mesh| !mesh.owns(channel))
    }

    /// A member of `channel` (this worker's) came: the owner's presence changed.
    pub(crate) fn joined_here(&mut self, channel: &str) {
        if let Some(cluster) = &mut self.cluster {
            cluster.touch(channel);
        }
        if let Some(mesh) = &mut self.mesh {
            mesh.touch(&Arc::from(channel));
        }
    }

    /// A member of `channel` (this worker's) left by `transport`: the owner learns it.
    pub(crate) fn left(&mut self, channel: &str, transport: Transport) {
        if let Some(cluster) = &mut self.cluster {
            cluster.touch(channel);
        }
        let Some(mesh) = &mut self.mesh else {
            return;
        };
        let channel: Arc<str> = Arc::from(channel);
        if mesh.owns(&channel) {
            mesh.touch(&channel);
        } else {
            let from = mesh.me();
            mesh.post_owner(
                &channel.clone(),
                Note::Leave {
                    channel,
                    transport,
                    from,
                },
            );
        }
    }

    /// Asks the owner of `channel` to subscribe `member`, having seen `since`; its answer
    /// brings what the member missed, and the member joins here when it comes.
    pub(crate) fn subscribe_remote(
        &mut self,
        member: ConnId,
        channel: &str,
        transport: Transport,
        since: Option<u64>,
    ) {
        let Some(mesh) = &mut self.mesh else {
            return;
        };
        let channel: Arc<str> = Arc::from(channel);
        mesh.add_pending(member, &channel, transport);
        let from = mesh.me();
        mesh.post_owner(
            &channel.clone(),
            Note::Join {
                channel,
                member,
                transport,
                since,
                from,
            },
        );
    }

    /// The first channel `id` joined (unless it left it), or asked to join of another
    /// worker that has not answered yet.
    pub(crate) fn first_channel_of(&self, id: ConnId) -> Option<Arc<str>> {
        let joined = self.channels.first_channel_of(id.as_u64());
        joined
            .or_else(|| self.mesh.as_ref()?.first_pending(id))
            .or_else(|| self.cluster.as_ref()?.first_pending(id))
    }

    /// `channel`'s counts and last id: this worker's with one worker, else the owner's
    /// as the directory last showed it.
    pub(crate) fn presence(&self, channel: &str) -> Option<(Counts, u64)> {
        if let Some(cluster) = &self.cluster {
            // The list is read once a second; the last id this node delivered is newer.
            let heard = cluster.subscriptions.get(channel).and_then(|s| s.last);
            return match (cluster.channel(channel), heard) {
                (Some(c), heard) => Some((c.counts, c.last_id.max(heard.unwrap_or(0)))),
                (None, Some(last)) => Some((self.channels.counts(channel)?, last)),
                (None, None) => None,
            };
        }
        match &self.mesh {
            None => Some((
                self.channels.counts(channel)?,
                self.channels.last_id(channel),
            )),
            Some(mesh) => mesh
                .directory()
                .get(channel)
                .map(|info| (info.counts, info.last_id)),
        }
    }

    /// Every channel's presence, sorted by name (across workers with several).
    pub(crate) fn channel_list(&self) -> Vec<ChannelInfo> {
        if let Some(cluster) = &self.cluster {
            return cluster.channel_list();
        }
        match &self.mesh {
            None => self.channels.list(),
            Some(mesh) => mesh.directory().list(),
        }
    }

    /// Sends `stored` (published to the owned `channel`) once to every other worker with
    /// members of it; returns how many members those workers have (but `except`).
    pub(crate) fn spread(
        &mut self,
        channel: &str,
        stored: &Arc<Stored>,
        except: Option<ConnId>,
    ) -> usize {
        let Some(mesh) = &mut self.mesh else {
            return 0;
        };
        let channel: Arc<str> = Arc::from(channel);
        mesh.touch(&channel);
        let workers: Vec<(usize, usize)> = mesh.remote_members(&channel).collect();
        let mut members = 0;
        for (worker, n) in workers {
            members += n.saturating_sub(usize::from(except.is_some_and(|e| e.worker() == worker)));
            let note = Note::Deliver {
                channel: Arc::clone(&channel),
                stored: Arc::clone(stored),
                except,
            };
            mesh.post(worker, note);
        }
        members
    }
}
