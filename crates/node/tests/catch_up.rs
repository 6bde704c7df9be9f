//! Nodes on the real write-ahead log (over the crashable in-memory disk): a node that missed more than
//! the trailing log window catches up by snapshot, and a restart after snapshots and compaction returns
//! the same state.

use tally_kv::{Command, KvStore};
use tally_node::{ManualClock, Node, NodeConfig, Outbox, ReadConsistency, StateMachine, WalStorage};
use tally_raft::{LogIndex, Membership, NodeId};
use tally_wal::{FaultDisk, WalOptions};

type TestNode = Node<KvStore, WalStorage<FaultDisk>, Outbox, ManualClock>;

/// Three nodes, a shared clock, instant and lossless delivery.
struct Cluster {
    nodes: Vec<Option<TestNode>>,
    disks: Vec<FaultDisk>,
    now_ms: u64,
    next_request: u64,
}

const SNAPSHOT_INTERVAL: u64 = 50;
const KEEP: u64 = 10;

impl Cluster {
    fn new() -> Cluster {
        let disks: Vec<FaultDisk> = (1..=3).map(FaultDisk::new).collect();
        let mut cluster = Cluster { nodes: (0..3).map(|_| None).collect(), disks, now_ms: 0, next_request: 1 };
        for i in 0..3 {
            cluster.start(i);
        }
        cluster
    }

    fn start(&mut self, i: usize) {
        let id = NodeId(i as u64 + 1);
        let mut config = NodeConfig::new(id, 7);
        config.tick_interval_ms = 10;
        config.snapshot_interval_entries = SNAPSHOT_INTERVAL;
        config.snapshot_keep_entries = KEEP;
        let voters = Membership::with_voters([1, 2, 3].map(NodeId));
        let options = WalOptions { segment_bytes_max: 4096 };
        let storage = WalStorage::open(self.disks[i].clone(), options, voters).expect("wal opens");
        let clock = ManualClock { now_ms: self.now_ms };
        let node = Node::start(config, storage, Outbox::default(), clock, KvStore::new()).expect("node starts");
        self.nodes[i] = Some(node);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        self.disks[i].crash();
    }

    /// Delivers every pending message until none is left.
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
                if let Some(node) = self.nodes[(message.to.0 - 1) as usize].as_mut() {
                    node.receive(message).expect("storage healthy");
                }
            }
        }
    }

    /// Advances time by one tick on every node, then delivers.
    fn tick(&mut self) {
        self.now_ms += 10;
        for node in self.nodes.iter_mut().flatten() {
            node.clock_mut().now_ms = self.now_ms;
            node.advance_clock().expect("storage healthy");
        }
        self.deliver();
    }

    fn leader(&self) -> Option<usize> {
        (0..3).find(|&i| self.nodes[i].as_ref().is_some_and(|n| n.raft().is_leader()))
    }

    fn wait_for_leader(&mut self) -> usize {
        for _ in 0..1_000 {
            if let Some(leader) = self.leader() {
                return leader;
            }
            self.tick();
        }
        panic!("no leader within 1000 ticks");
    }

    /// Writes `count` keys through the leader and waits until each is applied there.
    fn write(&mut self, count: usize, prefix: &str) {
        for n in 0..count {
            let leader = self.wait_for_leader();
            let request = self.next_request;
            self.next_request += 1;
            let command = Command::Put { key: format!("{prefix}{n}").into_bytes(), value: vec![7; 100], cas: None };
            let node = self.nodes[leader].as_mut().expect("leader is up");
            node.propose(request, command.encode()).expect("storage healthy");
            self.deliver();
            let done = node_completions(self.nodes[leader].as_mut().expect("up"));
            assert_eq!(done, 1, "write {n} not applied at once");
        }
    }

    fn state(&self, i: usize) -> (LogIndex, u64) {
        let node = self.nodes[i].as_ref().expect("up");
        (StateMachine::applied_index(node.state_machine()), StateMachine::state_checksum(node.state_machine()))
    }
}

fn node_completions(node: &mut TestNode) -> usize {
    node.take_completions().into_iter().filter(|c| c.result.is_ok()).count()
}

#[test]
fn node_that_missed_more_than_the_window_catches_up_by_snapshot() {
    // A healthy cluster first.
    let mut cluster = Cluster::new();
    cluster.write(5, "a");
    let leader = cluster.wait_for_leader();
    let lagging = (leader + 1) % 3;

    // The lagging node is down while the others write far more than the kept window: the leader
    // snapshots and compacts its log past what the lagging node has.
    cluster.crash(lagging);
    cluster.write(3 * SNAPSHOT_INTERVAL as usize, "b");
    let leader_raft = cluster.nodes[leader].as_ref().expect("up").raft();
    assert!(leader_raft.snapshot().meta.index.0 >= 2 * SNAPSHOT_INTERVAL, "leader did not snapshot");
    assert!(leader_raft.first_index().0 > 20, "leader did not compact its log");

    // Back up, it cannot be served from the log any more: it gets the snapshot, then the log after it.
    cluster.start(lagging);
    for _ in 0..50 {
        cluster.tick();
    }
    let lagging_raft = cluster.nodes[lagging].as_ref().expect("up").raft();
    assert!(lagging_raft.snapshot().meta.index.0 > 20, "caught up without a snapshot");
    assert_eq!(cluster.state(lagging), cluster.state(leader), "lagging node did not converge");
}

#[test]
fn restart_after_snapshots_and_compaction_returns_the_same_state() {
    // Enough writes for several snapshots and compactions on every node.
    let mut cluster = Cluster::new();
    cluster.write(4 * SNAPSHOT_INTERVAL as usize, "k");
    for _ in 0..5 {
        cluster.tick();
    }
    let before: Vec<_> = (0..3).map(|i| cluster.state(i)).collect();
    let last_key = format!("k{}", 4 * SNAPSHOT_INTERVAL - 1).into_bytes();

    // Power loss on every node at once, then a restart from the disks alone.
    for i in 0..3 {
        cluster.crash(i);
    }
    for i in 0..3 {
        cluster.start(i);
    }
    // The commit index is not synced on its own, so a node may restart having applied less; once a leader
    // is elected (and commits its no-op) every node applies everything again.
    for (i, state) in before.iter().enumerate() {
        assert!(cluster.state(i).0 <= state.0, "node {i} applied more after restart than before");
    }
    cluster.wait_for_leader();
    for _ in 0..20 {
        cluster.tick();
    }
    let after: Vec<_> = (0..3).map(|i| cluster.state(i)).collect();
    assert!(after.iter().all(|s| *s == after[0]), "nodes differ after restart: {after:?}");
    assert!(after[0].0 > before[0].0, "the new leader's no-op was not applied: {after:?} vs {before:?}");
    for i in 0..3 {
        let node = cluster.nodes[i].as_mut().expect("up");
        node.read(1_000_000 + i as u64, tally_node::KvQuery::Get(last_key.clone()), ReadConsistency::Stale)
            .expect("healthy");
        let found = node.take_completions().into_iter().any(|c| {
            matches!(c.result, Ok(tally_node::Reply::Read { output: tally_node::KvQueryOutput::Get(Some(_)), .. }))
        });
        assert!(found, "node {i} lost the last write across the restart");
    }

    // And the restarted cluster still works, reads included.
    cluster.write(3, "z");
    let leader = cluster.wait_for_leader();
    let node = cluster.nodes[leader].as_mut().expect("up");
    node.read(9_999_999, tally_node::KvQuery::Get(b"k7".to_vec()), ReadConsistency::Stale).expect("healthy");
    assert_eq!(node.take_completions().len(), 1);
}
