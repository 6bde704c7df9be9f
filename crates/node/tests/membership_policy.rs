//! The leader's membership policy on real nodes: a one-node cluster that four nodes join grows to three
//! voters and two learners; a voter gone for good is removed and a learner is promoted in its place; a
//! learner gone for good is removed.

use tally_kv::KvStore;
use tally_node::{ManualClock, MembershipPolicy, Node, NodeConfig, Outbox, PolicyConfig, WalStorage};
use tally_raft::{Membership, MembershipChange, NodeId};
use tally_wal::{FaultDisk, WalOptions};

type TestNode = Node<KvStore, WalStorage<FaultDisk>, Outbox, ManualClock>;

const TICK_MS: u64 = 10;
const POLICY: PolicyConfig =
    PolicyConfig { target_voters: 3, promote_after_ms: 200, dead_after_ms: 2_000, healthy_within_ms: 500 };

/// Five node slots (ids 1..=5) on a shared clock; node 1 forms the cluster, the others start empty.
struct Cluster {
    nodes: Vec<Option<TestNode>>,
    policies: Vec<MembershipPolicy>,
    now_ms: u64,
    next_request: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let mut cluster = Cluster {
            nodes: (0..5).map(|_| None).collect(),
            policies: (0..5).map(|_| MembershipPolicy::new(POLICY)).collect(),
            now_ms: 0,
            next_request: 1,
        };
        for i in 0..5 {
            let bootstrap = if i == 0 { Membership::with_voters([NodeId(1)]) } else { Membership::default() };
            let mut config = NodeConfig::new(NodeId(i as u64 + 1), 11 + i as u64);
            config.tick_interval_ms = TICK_MS;
            let storage = WalStorage::open(FaultDisk::new(i as u64), WalOptions::default(), bootstrap).expect("opens");
            let clock = ManualClock { now_ms: 0 };
            cluster.nodes[i] =
                Some(Node::start(config, storage, Outbox::default(), clock, KvStore::new()).expect("ok"));
        }
        cluster
    }

    fn deliver(&mut self) {
        loop {
            let mut messages = Vec::new();
            for node in self.nodes.iter_mut().flatten() {
                messages.append(&mut node.transport_mut().messages);
            }
            if messages.is_empty() {
                return;
            }
            for message in messages {
                let to = (message.to.0 - 1) as usize;
                if let Some(node) = self.nodes[to].as_mut() {
                    self.policies[to].heard_from(message.from, self.now_ms);
                    node.receive(message).expect("storage healthy");
                }
            }
        }
    }

    /// One tick everywhere, then the policy of every node (it acts only on the leader).
    fn tick(&mut self) {
        self.now_ms += TICK_MS;
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            let Some(node) = slot.as_mut() else { continue };
            node.clock_mut().now_ms = self.now_ms;
            node.advance_clock().expect("storage healthy");
            if let Some(change) = self.policies[i].next_change(node.raft(), self.now_ms) {
                node.propose_membership(self.next_request, change).expect("storage healthy");
                self.next_request += 1;
            }
        }
        self.deliver();
    }

    fn leader(&self) -> Option<&TestNode> {
        self.nodes.iter().flatten().find(|n| n.raft().is_leader())
    }

    fn membership(&self) -> Membership {
        self.leader().map(|n| n.raft().committed_membership()).unwrap_or_default()
    }

    /// What the join call does: the leader adds `id` as a learner (retried until the core accepts it).
    fn join(&mut self, id: u64) {
        for _ in 0..500 {
            if self.membership().contains(NodeId(id)) {
                return;
            }
            let request = self.next_request;
            self.next_request += 1;
            if let Some(leader) = self.nodes.iter_mut().flatten().find(|n| n.raft().is_leader()) {
                leader.propose_membership(request, MembershipChange::AddLearner(NodeId(id))).expect("healthy");
            }
            self.tick();
        }
        panic!("n{id} could not join");
    }

    fn run_until(&mut self, what: &str, done: impl Fn(&Cluster) -> bool) {
        for _ in 0..2_000 {
            if done(self) {
                return;
            }
            self.tick();
        }
        panic!("not reached within 2,000 ticks: {what}; membership {:?}", self.membership());
    }
}

fn ids(set: &std::collections::BTreeSet<NodeId>) -> Vec<u64> {
    set.iter().map(|id| id.0).collect()
}

#[test]
fn joiners_become_voters_up_to_the_target_and_a_dead_voter_is_replaced() {
    let mut cluster = Cluster::new();
    cluster.run_until("node 1 leads", |c| c.leader().is_some());
    for id in 2..=5 {
        cluster.join(id);
    }
    cluster.run_until("three voters", |c| c.membership().voters.len() == 3);
    for _ in 0..100 {
        cluster.tick();
    }
    let membership = cluster.membership();
    assert_eq!(ids(&membership.voters), [1, 2, 3], "the lowest caught-up learners are promoted, no more");
    assert_eq!(ids(&membership.learners), [4, 5]);

    // A voter that is not the leader goes away for good: it is removed after the timeout and the lowest
    // learner takes its place. The cluster keeps three voters' worth of quorum throughout.
    let leader = cluster.leader().expect("leader").raft().id();
    let victim = *membership.voters.iter().find(|&&id| id != leader).expect("another voter");
    cluster.nodes[(victim.0 - 1) as usize] = None;
    let removed_before = cluster.now_ms;
    cluster.run_until("the dead voter is removed", |c| c.leader().is_some() && !c.membership().contains(victim));
    let elapsed = cluster.now_ms - removed_before;
    // It was last heard from up to a tick before it died.
    assert!(elapsed + TICK_MS >= POLICY.dead_after_ms, "removed {elapsed} ms after it died, before the timeout");
    cluster.run_until("a learner replaces it", |c| c.membership().voters.len() == 3);
    let membership = cluster.membership();
    assert!(membership.voters.contains(&NodeId(4)), "n4 promoted: {membership:?}");
    assert_eq!(ids(&membership.learners), [5]);

    // A learner gone for good is removed too, and nothing is promoted past the target.
    cluster.nodes[4] = None;
    cluster.run_until("the dead learner is removed", |c| c.leader().is_some() && !c.membership().contains(NodeId(5)));
    assert_eq!(cluster.membership().voters.len(), 3);
}
