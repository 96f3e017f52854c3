//! The identities of one worker's connections, and each user's connections: kept beside
//! the loop, only for connections that proved an identity (nothing per anonymous one).

use crate::push::access::Identity;
use crate::server::connection::ConnId;
use std::collections::HashMap;
use std::sync::Arc;

/// Identities by connection, connections by user.
#[derive(Default)]
pub(crate) struct Users {
    identities: HashMap<ConnId, Arc<Identity>>,
    connections: HashMap<Arc<str>, Vec<ConnId>>,
    /// How many identities have an expiry.
    expiring: usize,
}

impl Users {
    /// Records that `id` proved `identity` (replacing what it proved before).
    pub fn set(&mut self, id: ConnId, identity: Identity) {
        self.forget(id);
        if let Some(user) = &identity.user {
            self.connections
                .entry(Arc::from(user.as_str()))
                .or_default()
                .push(id);
        }
        self.expiring += usize::from(identity.expires.is_some());
        self.identities.insert(id, Arc::new(identity));
    }

    /// The identity `id` proved.
    pub fn get(&self, id: ConnId) -> Option<&Arc<Identity>> {
        self.identities.get(&id)
    }

    /// The connections of `user` on this worker.
    pub fn connections_of(&self, user: &str) -> &[ConnId] {
        self.connections.get(user).map_or(&[], Vec::as_slice)
    }

    /// Whether some identity expires.
    pub fn has_expiring(&self) -> bool {
        self.expiring > 0
    }

    /// Every connection with an identity that expires, and when.
    pub fn expiring(&self) -> impl Iterator<Item = (ConnId, u64)> + '_ {
        self.identities
            .iter()
            .filter_map(|(&id, who)| Some((id, who.expires?)))
    }

    /// Forgets `id` (its connection ended).
    pub fn forget(&mut self, id: ConnId) {
        let Some(identity) = self.identities.remove(&id) else {
            return;
        };
        self.expiring -= usize::from(identity.expires.is_some());
        if let Some(user) = &identity.user {
            if let Some(ids) = self.connections.get_mut(user.as_str()) {
                ids.retain(|&other| other != id);
                if ids.is_empty() {
                    self.connections.remove(user.as_str());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Identity {
        Identity {
            user: Some(name.into()),
            ..Identity::default()
        }
    }

    #[test]
    fn users_and_their_connections() {
        let mut users = Users::default();
        let (a, b, c) = (
            ConnId::from_u64(1),
            ConnId::from_u64(2),
            ConnId::from_u64(3),
        );
        users.set(a, user("alice"));
        users.set(b, user("alice"));
        users.set(c, user("bob"));
        assert_eq!(users.connections_of("alice"), [a, b]);
        users.forget(a);
        assert_eq!(users.connections_of("alice"), [b]);
        users.set(b, user("carol"));
        assert!(users.connections_of("alice").is_empty());
        assert_eq!(users.get(b).unwrap().user.as_deref(), Some("carol"));
        assert_eq!(users.connections_of("bob"), [c]);
    }
}
