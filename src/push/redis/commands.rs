//! Commands for every node (`POST /disconnect/user/<id>` on any node closes the user's
//! connections on all of them; `GET /channels/<channel>/presence` names the users of every
//! node), carried by Redis pub/sub: the asking node publishes the command on one topic
//! every node listens to, `PUBLISH` answers how many nodes heard it, each node runs it
//! and publishes its [`Outcome`] on the asker's own topic, and the asker adds them up once
//! every node that heard it has answered.

use crate::push::access::ChannelUsers;
use crate::push::broker::{Asker, Command, Inbound, Outcome};
use crate::push::redis::cluster::{Cluster, Owed};
use redis::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The topic every node listens to for commands.
const CONTROL: &str = "pushloop:control";

/// How long a node waits for the answers to a command it asked (the request waiting
/// for them has given up by then).
const GATHER_TIMEOUT: Duration = Duration::from_secs(30);

/// A node's own topic, where the answers to its commands come.
fn answers_topic(node: &str) -> String {
    format!("pushloop:node:{node}")
}

/// The topics `node` listens to: the commands, and the answers to its own (subscribed
/// in every connection's handshake, so a node is reached from before it serves).
pub(crate) fn topics(node: &str) -> Vec<String> {
    vec![CONTROL.to_owned(), answers_topic(node)]
}

/// A command as published: `<verb>|<asker node>|<ticket, or nothing>|<argument>`, the
/// verb `d` (disconnect a user) or `u` (a channel's users).
fn pack(command: &Command, node: &str, ticket: Option<u64>) -> Vec<u8> {
    let ticket = ticket.map(|t| t.to_string()).unwrap_or_default();
    let (verb, argument) = match command {
        Command::DisconnectUser(user) => ("d", user),
        Command::ChannelUsers(channel) => ("u", channel),
    };
    format!("{verb}|{node}|{ticket}|{argument}").into_bytes()
}

/// Parses a published command, and who asked for its answer.
fn unpack(payload: &[u8]) -> Option<(Command, Option<Asker>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(4, '|');
    let (verb, node, ticket, argument) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let command = match verb {
        "d" => Command::DisconnectUser(argument.to_owned()),
        "u" => Command::ChannelUsers(argument.to_owned()),
        _ => return None,
    };
    let asker = match ticket {
        "" => None,
        t => Some(Asker {
            node: Arc::from(node),
            ticket: t.parse().ok()?,
        }),
    };
    Some((command, asker))
}

/// An answer as published: `<ticket>|c<count>`, or `<ticket>|u<users>` with the users
/// as JSON, `{"users":{"alice":[2,"<info JSON text>"]},"anonymous":1}` (the info kept
/// as the text it was).
fn pack_answer(ticket: u64, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Count(n) => format!("{ticket}|c{n}"),
        Outcome::Users(users) => {
            let named: serde_json::Map<String, serde_json::Value> = users
                .users
                .iter()
                .map(|(user, (n, info))| (user.clone(), serde_json::json!([n, info])))
                .collect();
            let json = serde_json::json!({"users": named, "anonymous": users.anonymous});
            format!("{ticket}|u{json}")
        }
    }
}

/// Parses an answer ([`pack_answer`]).
fn unpack_answer(payload: &[u8]) -> Option<(u64, Outcome)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (ticket, answer) = text.split_once('|')?;
    let ticket = ticket.parse().ok()?;
    if let Some(count) = answer.strip_prefix('c') {
        return Some((ticket, Outcome::Count(count.parse().ok()?)));
    }
    let json: serde_json::Value = serde_json::from_str(answer.strip_prefix('u')?).ok()?;
    let mut users = ChannelUsers {
        anonymous: usize::try_from(json.get("anonymous")?.as_u64()?).ok()?,
        ..ChannelUsers::default()
    };
    for (user, entry) in json.get("users")?.as_object()? {
        let n = usize::try_from(entry.get(0)?.as_u64()?).ok()?;
        let info = entry.get(1)?.as_str().map(str::to_owned);
        users.users.insert(user.clone(), (n, info));
    }
    Some((ticket, Outcome::Users(users)))
}

/// The answers to one command asked here.
#[derive(Debug)]
pub(crate) struct Gathering {
    /// How many nodes heard it (known once `PUBLISH` answered).
    expected: Option<usize>,
    answers: usize,
    total: Option<Outcome>,
    asked: Instant,
}

impl Gathering {
    fn is_complete(&self) -> bool {
        self.expected.is_some_and(|n| self.answers >= n)
    }
}

impl Cluster {
    /// Publishes `command` for every node (this one too); with a `ticket`, their counts
    /// are gathered under it.
    pub(crate) fn send_command(&mut self, command: &Command, ticket: Option<u64>) {
        let payload = pack(command, &self.node, ticket);
        redis::cmd("PUBLISH")
            .arg(CONTROL)
            .arg(payload)
            .write_packed_command(&mut self.out);
        self.queue(Owed::Command { ticket });
        if let Some(ticket) = ticket {
            let gathering = Gathering {
                expected: None,
                answers: 0,
                total: None,
                asked: Instant::now(),
            };
            self.gatherings.insert(ticket, gathering);
        }
    }

    /// `PUBLISH` of the command asked under `ticket` answered how many nodes heard it.
    pub(crate) fn command_sent(
        &mut self,
        ticket: Option<u64>,
        reply: &Value,
        into: &mut Vec<Inbound>,
    ) {
        let Some(ticket) = ticket else {
            return;
        };
        let heard = match reply {
            Value::Int(n) => usize::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        if let Some(gathering) = self.gatherings.get_mut(&ticket) {
            gathering.expected = Some(heard);
        }
        self.complete(ticket, into);
    }

    /// The connection was lost before `PUBLISH` answered: the answers cannot be counted
    /// (whoever waits gives up).
    pub(crate) fn command_lost(&mut self, ticket: Option<u64>, into: &mut Vec<Inbound>) {
        if let Some(ticket) = ticket {
            self.gatherings.remove(&ticket);
            into.push(Inbound::Tallied {
                ticket,
                total: None,
            });
        }
    }

    /// Publishes this node's `outcome` on the topic of the node that asked.
    pub(crate) fn send_answer(&mut self, asker: &Asker, outcome: &Outcome) {
        if !self.is_up() {
            return; // The asker gives up waiting.
        }
        redis::cmd("PUBLISH")
            .arg(answers_topic(&asker.node))
            .arg(pack_answer(asker.ticket, outcome))
            .write_packed_command(&mut self.out);
        self.queue(Owed::Nothing);
    }

    /// A message on the command topic or this node's own: acted on, `true`; any other
    /// topic, `false`.
    pub(crate) fn on_control(
        &mut self,
        topic: &[u8],
        payload: &[u8],
        into: &mut Vec<Inbound>,
    ) -> bool {
        if topic == CONTROL.as_bytes() {
            match unpack(payload) {
                Some((command, asker)) => into.push(Inbound::Command { command, asker }),
                None => log::warn!("an unreadable command on {CONTROL} was skipped"),
            }
            return true;
        }
        if topic != answers_topic(&self.node).as_bytes() {
            return false;
        }
        match unpack_answer(payload) {
            Some((ticket, outcome)) => {
                if let Some(gathering) = self.gatherings.get_mut(&ticket) {
                    gathering.answers += 1;
                    match &mut gathering.total {
                        Some(total) => total.add(outcome),
                        None => gathering.total = Some(outcome),
                    }
                }
                self.complete(ticket, into);
            }
            None => log::warn!("an unreadable answer to a command was skipped"),
        }
        true
    }

    fn complete(&mut self, ticket: u64, into: &mut Vec<Inbound>) {
        if self
            .gatherings
            .get(&ticket)
            .is_some_and(Gathering::is_complete)
        {
            if let Some(gathering) = self.gatherings.remove(&ticket) {
                into.push(Inbound::Tallied {
                    ticket,
                    total: gathering.total,
                });
            }
        }
    }

    /// Gives up the commands whose answers did not all come in time.
    pub(crate) fn expire_gatherings(&mut self, into: &mut Vec<Inbound>) {
        if self.gatherings.is_empty() {
            return;
        }
        let late: Vec<u64> = self
            .gatherings
            .iter()
            .filter(|(_, g)| g.asked.elapsed() >= GATHER_TIMEOUT)
            .map(|(&ticket, _)| ticket)
            .collect();
        for ticket in late {
            self.command_lost(Some(ticket), into);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_survives_packing_with_any_user_name() {
        let user = "a|b c:d".to_owned();
        let packed = pack(
            &Command::DisconnectUser(user.clone()),
            "0123abcd-1",
            Some(7),
        );
        let (command, asker) = unpack(&packed).unwrap();
        assert_eq!(command, Command::DisconnectUser(user));
        let asker = asker.unwrap();
        assert_eq!((&*asker.node, asker.ticket), ("0123abcd-1", 7));
        let packed = pack(&Command::DisconnectUser("u".into()), "n", None);
        assert_eq!(unpack(&packed).unwrap().1, None);
        let packed = pack(&Command::ChannelUsers("room".into()), "n", Some(1));
        assert_eq!(
            unpack(&packed).unwrap().0,
            Command::ChannelUsers("room".into())
        );
        assert_eq!(unpack(b"x|n||u"), None);
        assert_eq!(unpack(b"d|n|notanumber|u"), None);
    }

    #[test]
    fn answers_survive_packing() {
        let count = Outcome::Count(3);
        let packed = pack_answer(12, &count);
        assert_eq!(packed, "12|c3");
        assert_eq!(unpack_answer(packed.as_bytes()), Some((12, count)));
        let mut users = ChannelUsers {
            anonymous: 2,
            ..ChannelUsers::default()
        };
        let info = r#"{"name":"A|b","z":1,"a":[1,2]}"#;
        users.users.insert("alice".into(), (2, Some(info.into())));
        users.users.insert("bob|x".into(), (1, None));
        let users = Outcome::Users(users);
        let packed = pack_answer(7, &users);
        assert_eq!(unpack_answer(packed.as_bytes()), Some((7, users)));
        assert_eq!(unpack_answer(b"12"), None);
        assert_eq!(unpack_answer(b"x|c3"), None);
        assert_eq!(unpack_answer(b"1|x3"), None);
        assert_eq!(unpack_answer(b"1|u{\"users\":[]}"), None);
    }
}
