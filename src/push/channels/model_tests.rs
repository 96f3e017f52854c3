//! The property test of [`Channels`]: random joins, leaves and publishes checked against
//! a plain model (members per channel, last id per channel), with replays from random
//! points and the index's consistency after every step.

use super::tests::{assert_consistent, ids};
use super::{Channels, Kind, Transport};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const TRANSPORTS: [Transport; 3] = [Transport::WebSocket, Transport::Sse, Transport::LongPoll];

#[derive(Debug, Clone)]
enum Op {
    Join(usize, u64, usize),
    Leave(usize, u64),
    LeaveAll(u64),
    Publish(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NAMES.len(), 0u64..6, 0..TRANSPORTS.len()).prop_map(|(c, m, t)| Op::Join(c, m, t)),
        2 => (0..NAMES.len(), 0u64..6).prop_map(|(c, m)| Op::Leave(c, m)),
        1 => (0u64..6).prop_map(Op::LeaveAll),
        3 => (0..NAMES.len()).prop_map(Op::Publish),
    ]
}

/// The plain model: members per channel and last id per channel.
#[derive(Default)]
struct Model {
    members: BTreeMap<&'static str, BTreeMap<u64, Transport>>,
    last: BTreeMap<&'static str, u64>,
}

impl Model {
    /// Forgets channels the real thing must have dropped.
    fn settle(&mut self, name: &'static str, keep: usize) {
        let empty = self.members.get(name).is_none_or(|m| m.is_empty());
        let no_history = keep == 0 || self.last.get(name).is_none_or(|&l| l == 0);
        if empty && no_history {
            self.members.remove(name);
            self.last.remove(name);
        }
    }
}

proptest! {
    #[test]
    fn random_operations_keep_the_index_and_history_right(
        keep in 0usize..4,
        ops in proptest::collection::vec(arb_op(), 0..60),
        sinces in proptest::collection::vec(0u64..12, 4),
    ) {
        let mut c = Channels::new(keep);
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Join(i, m, t) => {
                    let set = model.members.entry(NAMES[i]).or_default();
                    let fresh = !set.contains_key(&m);
                    if fresh {
                        set.insert(m, TRANSPORTS[t]);
                    }
                    prop_assert_eq!(c.join(NAMES[i], m, TRANSPORTS[t]), fresh);
                }
                Op::Leave(i, m) => {
                    let was = model.members.get_mut(NAMES[i]).is_some_and(|s| s.remove(&m).is_some());
                    model.settle(NAMES[i], keep);
                    prop_assert_eq!(c.leave(NAMES[i], m), was);
                }
                Op::LeaveAll(m) => {
                    let mut want = Vec::new();
                    for name in NAMES {
                        if model.members.get_mut(name).is_some_and(|s| s.remove(&m).is_some()) {
                            want.push(name.to_string());
                        }
                        model.settle(name, keep);
                    }
                    let mut got = c.leave_all(m);
                    got.sort();
                    prop_assert_eq!(got, want);
                }
                Op::Publish(i) => {
                    let last = model.last.entry(NAMES[i]).or_default();
                    *last += 1;
                    let want = *last;
                    model.settle(NAMES[i], keep);
                    prop_assert_eq!(c.publish(NAMES[i], Kind::Text, b"m").id, want);
                }
            }
            assert_consistent(&c);
        }
        for name in NAMES {
            let want = model.members.get(name).cloned().unwrap_or_default();
            let got: BTreeMap<u64, Transport> = c.members(name).collect();
            prop_assert_eq!(c.members(name).count(), got.len());
            prop_assert_eq!(got, want);
            for (&m, _) in model.members.get(name).into_iter().flatten() {
                prop_assert!(c.channels_of(m).contains(&name.to_string()));
            }
            let last = model.last.get(name).copied().unwrap_or(0);
            prop_assert_eq!(c.last_id(name), last);
            let first_kept = last - last.min(keep as u64) + 1;
            for &since in &sinces {
                let r = c.replay(name, since);
                let want: Vec<u64> = (since + 1..=last).filter(|&id| id >= first_kept).collect();
                prop_assert_eq!(ids(&r.messages), want);
                prop_assert_eq!(r.truncated, since > last || since + 1 < first_kept);
                prop_assert_eq!(r.last_id, last);
            }
        }
        let listed: Vec<String> = c.list().into_iter().map(|l| l.name).collect();
        let modeled: Vec<String> = model.members.keys().chain(model.last.keys())
            .collect::<BTreeSet<_>>().into_iter().map(|n| n.to_string()).collect();
        prop_assert_eq!(listed, modeled);
    }
}
