//! Tests of [`Channels`]: names, ids, history bounds, replay, the channel cap, and the
//! membership index both ways. The random-operation model is in `model_tests`.

use super::*;

fn info(name: &str, counts: Counts, last_id: u64) -> ChannelInfo {
    ChannelInfo {
        name: name.to_owned(),
        counts,
        last_id,
        workers: Vec::new(),
    }
}

/// The ids of `messages`, in order.
pub(super) fn ids(messages: &[Arc<Stored>]) -> Vec<u64> {
    messages.iter().map(|m| m.id).collect()
}

/// A channel with `history` kept that received `published` messages.
fn published(history: usize, published: u64) -> Channels {
    let mut c = Channels::new(history);
    for i in 0..published {
        c.publish("ch", Kind::Text, i.to_string().as_bytes());
    }
    c
}

/// Checks that both indexes, the counts and the name map agree.
pub(super) fn assert_consistent(c: &Channels) {
    assert_eq!(c.by_name.len(), c.slots.len());
    for (slot, ch) in &c.slots {
        assert_eq!(c.by_name[&ch.name] as usize, slot);
        assert!(!ch.is_idle(), "idle channel {} kept", ch.name);
        assert!(ch.history.messages().len() <= c.keep.messages);
        let mut counts = Counts::default();
        for (m, seat) in &ch.members {
            *counts.of(seat.transport) += 1;
            assert_eq!(c.of_member[m].as_slice()[seat.pos as usize] as usize, slot);
        }
        assert_eq!(ch.counts, counts);
    }
    for (m, list) in &c.of_member {
        assert!(!list.is_empty());
        for (pos, &slot) in list.as_slice().iter().enumerate() {
            assert_eq!(c.slots[slot as usize].members[m].pos as usize, pos);
        }
    }
}

#[test]
fn name_validation() {
    assert!(!valid_name(""));
    assert!(valid_name(&"a".repeat(128)));
    assert!(!valid_name(&"a".repeat(129)));
    for ok in ["a", "Z", "0", "_", ".", ":", "-", "room:42.b_c-D"] {
        assert!(valid_name(ok), "{ok:?}");
    }
    for bad in [
        "a b",
        " ",
        "a/b",
        "/",
        "é",
        "ch\u{0}",
        "a\tb",
        "a*",
        "a#b",
        "ü".repeat(64).as_str(),
    ] {
        assert!(!valid_name(bad), "{bad:?}");
    }
}

#[test]
fn ids_grow_by_one_per_channel() {
    let mut c = Channels::new(4);
    assert_eq!(c.publish("a", Kind::Text, b"1").id, 1);
    assert_eq!(c.publish("a", Kind::Text, b"2").id, 2);
    assert_eq!(c.publish("b", Kind::Binary, b"x").id, 1);
    assert_eq!(c.publish("a", Kind::Text, b"3").id, 3);
    assert_eq!(c.publish("b", Kind::Binary, b"y").id, 2);
    assert_eq!((c.last_id("a"), c.last_id("b"), c.last_id("c")), (3, 2, 0));
    let m = c.publish("b", Kind::Binary, b"z");
    assert_eq!(
        *m,
        Stored {
            id: 3,
            kind: Kind::Binary,
            data: Box::from(&b"z"[..])
        }
    );
}

#[test]
fn history_is_bounded() {
    let c = published(3, 10);
    let ch = c.channel("ch").unwrap();
    assert_eq!(
        ch.history
            .messages()
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        [8, 9, 10]
    );
    assert_eq!(&*ch.history.messages()[0].data, b"7");
    assert!(published(0, 5).channel("ch").is_none());
}

#[test]
fn history_is_bounded_in_bytes_too() {
    let mut c = Channels::with_history_bytes(100, 10);
    for data in [&b"aaaa"[..], b"bbbb", b"cccc", b"dd"] {
        c.publish("ch", Kind::Text, data);
    }
    let ids = |c: &Channels| -> Vec<u64> {
        c.channel("ch")
            .unwrap()
            .history
            .messages()
            .iter()
            .map(|m| m.id)
            .collect()
    };
    assert_eq!(ids(&c), [2, 3, 4], "10 bytes: bbbb cccc dd");
    c.publish("ch", Kind::Text, &[b'x'; 11]);
    assert_eq!(
        ids(&c),
        [5],
        "alone over the budget, it stays (and so do the ids)"
    );
    let replay = c.replay("ch", 3);
    assert!(replay.truncated);
    assert_eq!(c.publish("ch", Kind::Text, b"y").id, 6);
    assert_eq!(ids(&c), [6]);
}

#[test]
fn the_channel_cap_evicts_the_oldest_channel_without_members() {
    let mut c = Channels::new(10).with_max_channels(3);
    assert!(c.join("a", 1, Transport::WebSocket));
    c.publish("b", Kind::Text, b"old");
    c.publish("c", Kind::Text, b"old");
    c.publish("d", Kind::Text, b"new"); // evicts b: a has a member
    assert_eq!(c.len(), 3);
    assert_eq!(c.last_id("b"), 0, "b is gone");
    assert_eq!(c.last_id("c"), 1);
    assert!(c.is_member("a", 1));
    assert!(c.join("e", 2, Transport::Sse)); // evicts c
    assert_eq!(c.last_id("c"), 0);
    assert!(c.join("f", 3, Transport::Sse)); // evicts d; now every channel has members
    assert!(
        c.join("g", 4, Transport::Sse),
        "over the cap rather than refusing"
    );
    assert_eq!(c.len(), 4);
    for round in 0..1000 {
        c.publish(&format!("t{round}"), Kind::Text, b"x"); // churn: the list stays small
    }
    assert!(c.created.len() <= 2 * c.len() + 16, "{}", c.created.len());
    assert_consistent(&c);
}

#[test]
fn replay_at_last_is_empty() {
    let r = published(3, 5).replay("ch", 5);
    assert_eq!(
        r,
        Replay {
            messages: vec![],
            truncated: false,
            last_id: 5
        }
    );
}

#[test]
fn replay_inside_history_gives_the_later_ones_in_order() {
    let c = published(5, 8);
    let r = c.replay("ch", 5);
    assert_eq!(
        (ids(&r.messages), r.truncated, r.last_id),
        (vec![6, 7, 8], false, 8)
    );
    // Just before the oldest kept (4): nothing is missing.
    let r = c.replay("ch", 3);
    assert_eq!(
        (ids(&r.messages), r.truncated),
        (vec![4, 5, 6, 7, 8], false)
    );
}

#[test]
fn replay_older_than_history_is_truncated() {
    let r = published(3, 10).replay("ch", 4);
    assert_eq!(
        (ids(&r.messages), r.truncated, r.last_id),
        (vec![8, 9, 10], true, 10)
    );
}

#[test]
fn replay_from_zero_after_a_drop_is_truncated() {
    let r = published(3, 4).replay("ch", 0);
    assert_eq!((ids(&r.messages), r.truncated), (vec![2, 3, 4], true));
}

#[test]
fn replay_from_zero_with_nothing_dropped_gives_all() {
    let r = published(3, 3).replay("ch", 0);
    assert_eq!(
        (ids(&r.messages), r.truncated, r.last_id),
        (vec![1, 2, 3], false, 3)
    );
}

#[test]
fn replay_ahead_of_the_channel_is_truncated() {
    let r = published(3, 3).replay("ch", 7);
    assert_eq!(
        r,
        Replay {
            messages: vec![],
            truncated: true,
            last_id: 3
        }
    );
    let r = Channels::new(3).replay("unknown", 1);
    assert_eq!(
        r,
        Replay {
            messages: vec![],
            truncated: true,
            last_id: 0
        }
    );
    let r = Channels::new(3).replay("unknown", 0);
    assert_eq!(
        r,
        Replay {
            messages: vec![],
            truncated: false,
            last_id: 0
        }
    );
}

#[test]
fn replay_without_history_reports_every_gap() {
    let mut c = Channels::new(0);
    c.join("ch", 1, Transport::Sse);
    c.publish("ch", Kind::Text, b"a");
    c.publish("ch", Kind::Text, b"b");
    let r = c.replay("ch", 1);
    assert_eq!(
        r,
        Replay {
            messages: vec![],
            truncated: true,
            last_id: 2
        }
    );
    assert!(!c.replay("ch", 2).truncated);
}

#[test]
fn replay_shares_the_published_message() {
    let mut c = Channels::new(2);
    let m = c.publish("ch", Kind::Binary, b"bin");
    let r = c.replay("ch", 0);
    assert!(Arc::ptr_eq(&m, &r.messages[0]));
    assert_eq!(r.messages[0].kind, Kind::Binary);
}

#[test]
fn join_twice_returns_false_and_keeps_the_transport() {
    let mut c = Channels::new(0);
    assert!(c.join("ch", 7, Transport::WebSocket));
    assert!(!c.join("ch", 7, Transport::Sse));
    assert_eq!(
        c.members("ch").collect::<Vec<_>>(),
        [(7, Transport::WebSocket)]
    );
    assert_eq!(c.counts("ch").unwrap().websocket, 1);
    assert_eq!(c.counts("ch").unwrap().sse, 0);
    assert_consistent(&c);
}

#[test]
fn leave_updates_both_indexes_and_counts() {
    let mut c = Channels::new(0);
    for ch in ["a", "b", "c"] {
        c.join(ch, 1, Transport::WebSocket);
        c.join(ch, 2, Transport::LongPoll);
    }
    // Leaving the first of member 1's channels moves its last one into place.
    assert!(c.leave("a", 1));
    assert!(!c.leave("a", 1));
    assert!(!c.leave("nowhere", 1));
    assert_consistent(&c);
    assert!(!c.is_member("a", 1));
    assert!(c.is_member("a", 2));
    let mut of1 = c.channels_of(1);
    of1.sort();
    assert_eq!(of1, ["b", "c"]);
    assert_eq!(
        c.counts("a"),
        Some(Counts {
            websocket: 0,
            sse: 0,
            long_poll: 1
        })
    );
    assert!(c.leave("c", 1));
    assert!(c.leave("b", 1));
    assert_consistent(&c);
    assert!(c.channels_of(1).is_empty());
    assert!(!c.of_member.contains_key(&1));
}

#[test]
fn leave_all_updates_both_indexes_and_counts() {
    let mut c = Channels::new(0);
    for ch in ["a", "b", "c"] {
        c.join(ch, 1, Transport::Sse);
    }
    c.join("b", 2, Transport::Sse);
    let mut left = c.leave_all(1);
    left.sort();
    assert_eq!(left, ["a", "b", "c"]);
    assert!(c.leave_all(1).is_empty());
    assert_consistent(&c);
    assert!(c.channels_of(1).is_empty());
    assert_eq!(c.members("b").collect::<Vec<_>>(), [(2, Transport::Sse)]);
    assert_eq!(
        c.counts("b"),
        Some(Counts {
            websocket: 0,
            sse: 1,
            long_poll: 0
        })
    );
    assert_eq!(c.counts("a"), None);
}

#[test]
fn empty_channel_without_history_disappears() {
    let mut c = Channels::new(0);
    c.join("a", 1, Transport::WebSocket);
    c.publish("a", Kind::Text, b"x");
    assert_eq!(c.list().len(), 1);
    c.leave("a", 1);
    assert!(c.list().is_empty());
    assert_eq!(c.members("a").count(), 0);
    assert_eq!(c.last_id("a"), 0);
    // Publishing to nobody without history leaves nothing behind.
    assert_eq!(c.publish("b", Kind::Text, b"x").id, 1);
    assert!(c.list().is_empty());
    assert_consistent(&c);
}

#[test]
fn channel_with_history_stays_and_its_ids_keep_growing() {
    let mut c = Channels::new(2);
    c.join("h", 1, Transport::WebSocket);
    c.join("n", 1, Transport::WebSocket);
    c.publish("h", Kind::Text, b"x");
    c.publish("h", Kind::Text, b"y");
    c.leave_all(1);
    assert_eq!(c.list(), [info("h", Counts::default(), 2)]);
    c.join("h", 2, Transport::Sse);
    assert_eq!(c.publish("h", Kind::Text, b"z").id, 3);
    assert_eq!(ids(&c.replay("h", 1).messages), [2, 3]);
    assert_consistent(&c);
}

#[test]
fn counts_per_transport_and_sorted_list() {
    let mut c = Channels::new(0);
    c.join("z", 1, Transport::WebSocket);
    c.join("z", 2, Transport::WebSocket);
    c.join("z", 3, Transport::Sse);
    c.join("z", 4, Transport::LongPoll);
    c.join("a", 4, Transport::LongPoll);
    c.publish("z", Kind::Text, b"x");
    let z = Counts {
        websocket: 2,
        sse: 1,
        long_poll: 1,
    };
    let a = Counts {
        websocket: 0,
        sse: 0,
        long_poll: 1,
    };
    assert_eq!(c.counts("z"), Some(z));
    assert_eq!(c.counts("y"), None);
    assert_eq!(c.list(), [info("a", a, 0), info("z", z, 1)]);
    let mut members: Vec<_> = c.members("z").collect();
    members.sort_by_key(|m| m.0);
    assert_eq!(members[2], (3, Transport::Sse));
    assert_eq!(members.len(), 4);
}

#[test]
fn maps_shrink_after_a_crowd_leaves() {
    let mut c = Channels::new(1);
    c.publish("ch", Kind::Text, b"x");
    for m in 0..1000 {
        c.join("ch", m, Transport::WebSocket);
    }
    for m in 0..1000 {
        c.leave_all(m);
    }
    assert!(c.channel("ch").unwrap().members.capacity() < SHRINK_ABOVE);
    assert!(c.of_member.capacity() < SHRINK_ABOVE);
    assert_consistent(&c);
}

#[test]
fn a_pinned_channel_stays_and_keeps_its_ids_without_members_or_history() {
    let mut c = Channels::new(0).with_max_channels(1);
    c.pin("shared", true);
    assert_eq!(c.publish("shared", Kind::Text, b"a").id, 1);
    assert_eq!(c.publish("shared", Kind::Text, b"b").id, 2);
    // The cap evicts only channels without members that are not pinned.
    assert_eq!(c.publish("other", Kind::Text, b"c").id, 1);
    assert_eq!(c.last_id("shared"), 2);
    c.pin("shared", false);
    assert_eq!(c.counts("shared"), None);
    c.pin("never-seen", false);
    assert_eq!(c.len(), 0);
}
