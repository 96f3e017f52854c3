//! The commands pushloop sends Redis and what their answers mean: the function library
//! (`functions.lua`, loaded at every connect), each call packed for a pipeline, and the
//! entries and replies parsed back. Sans-IO: bytes out, [`Value`]s in.

use crate::push::channels::{ChannelInfo, Counts, Replay, Stored};
use crate::server::connection::ConnId;
use crate::server::message::Kind;
use redis::Value;
use std::sync::Arc;

/// The function library (Redis 7 `FUNCTION LOAD REPLACE`).
pub(crate) const LIBRARY: &str = include_str!("functions.lua");

/// The sorted set of channel names, scored by when each expires.
const CHANNELS: &str = "pushloop:channels";

/// The pub/sub channel of `channel`'s messages.
pub(crate) fn topic(channel: &str) -> String {
    format!("pushloop:m:{channel}")
}

/// The channel a pub/sub topic carries, if it is one of ours.
pub(crate) fn channel_of_topic(topic: &[u8]) -> Option<&str> {
    std::str::from_utf8(topic.strip_prefix(b"pushloop:m:")?).ok()
}

fn key(channel: &str, part: &str) -> String {
    format!("pushloop:{{{channel}}}:{part}")
}

fn kind_char(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "t",
        Kind::Binary => "b",
    }
}

/// How much history Redis keeps per channel, and for how long after the last publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keep {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
    pub(crate) ttl_secs: u64,
}

/// Milliseconds since the Unix epoch (presence expiry is wall-clock, shared by nodes).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Packs `FCALL pushloop_publish`: the message gets its id, a place in history, and goes
/// to every node subscribed to the channel, tagged with `origin` (this node) and
/// `except` (a member of this node not to deliver it to).
pub(crate) fn publish(
    out: &mut Vec<u8>,
    channel: &str,
    (kind, data): (Kind, &[u8]),
    keep: Keep,
    origin: &str,
    except: Option<ConnId>,
) {
    let tag = match except {
        Some(id) => format!("{origin}:{}", id.as_u64()),
        None => format!("{origin}:"),
    };
    redis::cmd("FCALL")
        .arg("pushloop_publish")
        .arg(5)
        .arg(key(channel, "seq"))
        .arg(key(channel, "h"))
        .arg(key(channel, "b"))
        .arg(key(channel, "p"))
        .arg(CHANNELS)
        .arg(channel)
        .arg(kind_char(kind))
        .arg(data)
        .arg(keep.messages)
        .arg(keep.bytes)
        .arg(keep.ttl_secs.max(1))
        .arg(now_ms())
        .arg(tag)
        .write_packed_command(out);
}

/// Packs `FCALL pushloop_replay`: what followed `since` (`None`: only the last id). With
/// `all`, a `since` ahead of the channel (Redis lost its data) gets every entry kept.
pub(crate) fn replay(out: &mut Vec<u8>, channel: &str, since: Option<u64>, all: bool) {
    let since = since.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
    redis::cmd("FCALL")
        .arg("pushloop_replay")
        .arg(2)
        .arg(key(channel, "seq"))
        .arg(key(channel, "h"))
        .arg(since)
        .arg(if all { "1" } else { "0" })
        .write_packed_command(out);
}

/// Packs `FCALL pushloop_presence`: this node's members of `channel` (none: removed),
/// valid until `expires` (ms).
pub(crate) fn presence(out: &mut Vec<u8>, channel: &str, node: &str, counts: Counts, expires: u64) {
    let total = counts.websocket + counts.sse + counts.long_poll;
    let counts = if total == 0 {
        String::new()
    } else {
        format!("{} {} {}", counts.websocket, counts.sse, counts.long_poll)
    };
    redis::cmd("FCALL")
        .arg("pushloop_presence")
        .arg(2)
        .arg(key(channel, "p"))
        .arg(CHANNELS)
        .arg(channel)
        .arg(node)
        .arg(counts)
        .arg(expires)
        .arg(now_ms())
        .write_packed_command(out);
}

/// Packs `FCALL pushloop_channels`: every live channel with its global counts.
pub(crate) fn channels(out: &mut Vec<u8>) {
    redis::cmd("FCALL")
        .arg("pushloop_channels")
        .arg(1)
        .arg(CHANNELS)
        .arg(now_ms())
        .write_packed_command(out);
}

/// Packs `SUBSCRIBE` or `UNSUBSCRIBE` of `channel`'s topic.
pub(crate) fn subscription(out: &mut Vec<u8>, channel: &str, subscribe: bool) {
    let verb = if subscribe {
        "SUBSCRIBE"
    } else {
        "UNSUBSCRIBE"
    };
    redis::cmd(verb)
        .arg(topic(channel))
        .write_packed_command(out);
}

/// A message as Redis carries it on a topic.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Delivery<'a> {
    /// The node that published it.
    pub(crate) origin: &'a str,
    /// The member of `origin` that must not get it (the chat message's sender).
    pub(crate) except: Option<ConnId>,
    /// The message.
    pub(crate) stored: Arc<Stored>,
}

/// Parses a history entry, `<id>:<t|b><payload>`.
pub(crate) fn entry(bytes: &[u8]) -> Option<Arc<Stored>> {
    let colon = bytes.iter().position(|&b| b == b':')?;
    let id = std::str::from_utf8(&bytes[..colon]).ok()?.parse().ok()?;
    let kind = match bytes.get(colon + 1)? {
        b't' => Kind::Text,
        b'b' => Kind::Binary,
        _ => return None,
    };
    let data = &bytes[colon + 2..];
    if kind == Kind::Text && std::str::from_utf8(data).is_err() {
        return None;
    }
    Some(Arc::new(Stored {
        id,
        kind,
        data: data.into(),
    }))
}

/// Parses a topic's message, `<node>:<except>|<entry>`.
pub(crate) fn delivery(bytes: &[u8]) -> Option<Delivery<'_>> {
    let bar = bytes.iter().position(|&b| b == b'|')?;
    let tag = std::str::from_utf8(&bytes[..bar]).ok()?;
    let (origin, except) = tag.split_once(':')?;
    let except = match except {
        "" => None,
        n => Some(ConnId::from_u64(n.parse().ok()?)),
    };
    Some(Delivery {
        origin,
        except,
        stored: entry(&bytes[bar + 1..])?,
    })
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn uint(value: &Value) -> Option<u64> {
    u64::try_from(int(value)?).ok()
}

/// The answer to [`publish`]: the id and how many members were present.
pub(crate) fn published(value: &Value) -> Option<(u64, usize)> {
    let Value::Array(items) = value else {
        return None;
    };
    let id = uint(items.first()?)?;
    let members = usize::try_from(uint(items.get(1)?)?).ok()?;
    Some((id, members))
}

/// The answer to [`replay`].
pub(crate) fn replayed(value: &Value) -> Option<Replay> {
    let Value::Array(items) = value else {
        return None;
    };
    let last_id = uint(items.first()?)?;
    let truncated = uint(items.get(1)?)? != 0;
    let messages = items[2..]
        .iter()
        .map(|item| match item {
            Value::BulkString(bytes) => entry(bytes),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Replay {
        messages,
        truncated,
        last_id,
    })
}

/// The answer to [`channels`], sorted by name.
pub(crate) fn channel_list(value: &Value) -> Option<Vec<ChannelInfo>> {
    let Value::Array(items) = value else {
        return None;
    };
    let mut list = Vec::with_capacity(items.len() / 5);
    for row in items.chunks(5) {
        let [name, ws, sse, lp, last] = row else {
            return None;
        };
        let name = match name {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            _ => return None,
        };
        let count = |v: &Value| uint(v).and_then(|n| usize::try_from(n).ok());
        list.push(ChannelInfo {
            name,
            counts: Counts {
                websocket: count(ws)?,
                sse: count(sse)?,
                long_poll: count(lp)?,
            },
            last_id: uint(last)?,
            workers: Vec::new(),
        });
    }
    list.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_deliveries_parse_back() {
        let stored = entry(b"17:thello").unwrap();
        assert_eq!(
            (stored.id, stored.kind, &*stored.data),
            (17, Kind::Text, &b"hello"[..])
        );
        let stored = entry(b"3:b\xff:|").unwrap();
        assert_eq!(
            (stored.id, stored.kind, &*stored.data),
            (3, Kind::Binary, &b"\xff:|"[..])
        );
        assert_eq!(entry(b"3:t\xff"), None, "text must be UTF-8");
        assert_eq!(entry(b"x:thi"), None);
        assert_eq!(entry(b"3:xhi"), None);

        let d = delivery(b"ab12:77|5:thi|there").unwrap();
        assert_eq!(d.origin, "ab12");
        assert_eq!(d.except, Some(ConnId::from_u64(77)));
        assert_eq!(&*d.stored.data, b"hi|there");
        let d = delivery(b"ab12:|5:b").unwrap();
        assert_eq!((d.except, d.stored.data.len()), (None, 0));
        assert_eq!(delivery(b"ab12|5:thi"), None);
    }

    #[test]
    fn replies_parse() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Int(9),
            Value::Int(1),
            bulk("8:ta"),
            bulk("9:bb"),
        ]);
        let replay = replayed(&reply).unwrap();
        assert_eq!((replay.last_id, replay.truncated), (9, true));
        let ids: Vec<u64> = replay.messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, [8, 9]);
        assert_eq!(
            published(&Value::Array(vec![Value::Int(4), Value::Int(2)])),
            Some((4, 2))
        );
        let list = Value::Array(vec![
            bulk("b"),
            Value::Int(1),
            Value::Int(0),
            Value::Int(2),
            Value::Int(7),
            bulk("a"),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            Value::Int(3),
        ]);
        let list = channel_list(&list).unwrap();
        assert_eq!(list[0].name, "a");
        assert_eq!((list[1].counts.long_poll, list[1].last_id), (2, 7));
    }

    #[test]
    fn commands_are_packed_for_a_pipeline() {
        let mut out = Vec::new();
        replay(&mut out, "room", Some(4), false);
        subscription(&mut out, "room", true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("*7\r\n$5\r\nFCALL\r\n$15\r\npushloop_replay\r\n"));
        assert!(text.contains("pushloop:{room}:seq"));
        assert!(text.ends_with("*2\r\n$9\r\nSUBSCRIBE\r\n$15\r\npushloop:m:room\r\n"));
    }
}
