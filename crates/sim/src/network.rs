//! The simulated network between nodes: delay (and so reordering), loss, duplication and partitions,
//! all decided by the run's random number generator.

use std::collections::{BTreeMap, BTreeSet};

use tally_raft::{Message, NodeId, SplitMix64};

/// Messages in flight and the current partition.
///
/// Invariant: a message is delivered at most `1 + duplicates` times and never before it was sent.
#[derive(Default)]
pub struct Network {
    /// In-flight messages by (delivery time, sequence number): a deterministic order.
    in_flight: BTreeMap<(u64, u64), Message>,
    /// Sequence number of the next message, to break ties.
    next_seq: u64,
    /// Directed links that drop everything: (from, to).
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Current loss rate, per mille.
    pub loss_permille: u64,
    /// Current duplication rate, per mille.
    pub duplicate_permille: u64,
    /// Delay range in ms.
    pub delay_ms: (u64, u64),
    /// Deliver in order on each link (TCP-like) rather than reordering freely.
    pub fifo_links: bool,
    /// Per link: the latest delivery time scheduled, to keep FIFO links in order.
    last_delivery: BTreeMap<(NodeId, NodeId), u64>,
}

/// What happened to a message handed to the network.
pub enum Fate {
    /// Scheduled for delivery at these times (twice if duplicated).
    Scheduled(Vec<u64>),
    /// Lost.
    Lost,
}

impl Network {
    /// Sends `message` at time `now`: it may be lost, delayed and duplicated.
    pub fn send(&mut self, now: u64, message: Message, rng: &mut SplitMix64) -> Fate {
        if rng.chance(self.loss_permille, 1_000) {
            return Fate::Lost;
        }
        let copies = if rng.chance(self.duplicate_permille, 1_000) { 2 } else { 1 };
        let mut times = Vec::new();
        for _ in 0..copies {
            let mut at = now + rng.range(self.delay_ms.0, self.delay_ms.1 + 1);
            if self.fifo_links {
                let last = self.last_delivery.entry((message.from, message.to)).or_insert(0);
                at = at.max(*last); // same time is fine: the sequence number keeps the order
                *last = at;
            }
            self.in_flight.insert((at, self.next_seq), message.clone());
            self.next_seq += 1;
            times.push(at);
        }
        Fate::Scheduled(times)
    }

    /// Takes the messages due at or before `now`, in delivery order, split into deliverable ones and
    /// ones dropped by the partition.
    pub fn take_due(&mut self, now: u64) -> (Vec<Message>, Vec<Message>) {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        due.into_values().partition(|m| !self.blocked.contains(&(m.from, m.to)))
    }

    /// Cuts the network into `side` and everyone else, both ways.
    pub fn partition(&mut self, side: &BTreeSet<NodeId>, all: &[NodeId]) {
        self.blocked.clear();
        for &a in side {
            for &b in all.iter().filter(|b| !side.contains(b)) {
                self.blocked.insert((a, b));
                self.blocked.insert((b, a));
            }
        }
    }

    /// Blocks the one-way link `from -> to` (in addition to what is blocked already).
    pub fn block_one_way(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Whether any link is blocked.
    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// Drops every message in flight to `node` (it crashed: its sockets are gone).
    pub fn drop_to(&mut self, node: NodeId) {
        self.in_flight.retain(|_, m| m.to != node);
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
