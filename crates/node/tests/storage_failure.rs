//! After its write-ahead log fails an fsync, a node stops: it refuses every further input with the
//! storage error instead of retrying the fsync, and a restart recovers what was durable.

use tally_kv::{Command, KvStore};
use tally_node::{ManualClock, Node, NodeConfig, Outbox, StateMachine, StorageError, WalStorage};
use tally_raft::{Membership, NodeId};
use tally_wal::{FaultDisk, WalOptions};

type TestNode = Node<KvStore, WalStorage<FaultDisk>, Outbox, ManualClock>;

fn start(disk: &FaultDisk) -> TestNode {
    let mut config = NodeConfig::new(NodeId(1), 3);
    config.tick_interval_ms = 10;
    let storage =
        WalStorage::open(disk.clone(), WalOptions::default(), Membership::with_voters([NodeId(1)])).expect("wal opens");
    Node::start(config, storage, Outbox::default(), ManualClock::default(), KvStore::new()).expect("starts")
}

fn put(node: &mut TestNode, id: u64, key: &str) -> Result<(), StorageError> {
    let command = Command::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec(), cas: None };
    node.propose(id, command.encode())
}

#[test]
fn failed_fsync_stops_the_node_and_restart_recovers_the_durable_state() {
    // A single-node cluster elects itself and accepts a write.
    let disk = FaultDisk::new(11);
    let mut node = start(&disk);
    for _ in 0..40 {
        node.clock_mut().now_ms += 10;
        node.advance_clock().expect("healthy");
    }
    assert!(node.raft().is_leader(), "single node did not elect itself");
    put(&mut node, 1, "durable").expect("healthy");
    assert_eq!(node.take_completions().len(), 1, "write not acknowledged");

    // The next fsync fails: the write is refused with a storage error, and so is everything after it.
    disk.fail_sync_after(0);
    let error = put(&mut node, 2, "lost").expect_err("a failed fsync must surface");
    assert!(matches!(error, StorageError::Io(_)), "unexpected error {error:?}");
    assert!(node.has_failed());
    assert!(put(&mut node, 3, "refused").is_err(), "a stopped node accepted a write");
    assert!(node.advance_clock().is_err(), "a stopped node kept ticking");
    assert!(node.take_completions().is_empty(), "the failed write was acknowledged");

    // Power cycle: the acknowledged write is there (the unacknowledged one may or may not be).
    drop(node);
    disk.crash();
    let node = start(&disk);
    let kv = node.state_machine();
    assert!(kv.get(b"durable").is_some(), "acknowledged write lost");
    assert!(StateMachine::applied_index(kv).0 >= 2, "noop + the acknowledged write not applied");
}
