//! A node whose disk fills up (or whose data passes the quota) refuses writes while it leads, hands its
//! leadership to a healthy voter, stops taking entries as a follower while still answering heartbeats and
//! serving reads, and resumes by itself when space returns: no acknowledged write is lost, and the node
//! never stops for good.

use std::collections::{BTreeMap, BTreeSet};

use tally_kv::{Command, KvStore};
use tally_node::{
    Input, KvQuery, KvQueryOutput, ManualClock, Node, NodeConfig, Outbox, ReadConsistency, Reply, RequestError,
    StateMachine, StorageAlarm, WalStorage,
};
use tally_raft::{Membership, NodeId};
use tally_wal::testing::BudgetDisk;
use tally_wal::{FaultDisk, WalOptions};

type TestNode = Node<KvStore, WalStorage<BudgetDisk<FaultDisk>>, Outbox, ManualClock>;

/// Three nodes on budgeted disks, a shared clock, instant and lossless delivery.
struct Cluster {
    nodes: Vec<TestNode>,
    disks: Vec<BudgetDisk<FaultDisk>>,
    now_ms: u64,
    next_request: u64,
    /// Keys whose write was acknowledged.
    acknowledged: BTreeSet<String>,
    /// Writes proposed and not finished yet: request -> key ("" for deletes).
    pending: BTreeMap<u64, String>,
    /// Finished writes not yet looked at: request -> outcome.
    outcomes: BTreeMap<u64, Result<(), RequestError>>,
    /// A node cut off from the others: its messages, both ways, are lost, and its clock stands still.
    isolated: Option<usize>,
}

impl Cluster {
    fn new(seed: u64, quota_bytes: u64) -> Cluster {
        Cluster::with_snapshots(seed, quota_bytes, NodeConfig::new(NodeId(1), seed).snapshot_interval_entries)
    }

    /// A cluster whose nodes snapshot every `snapshot_interval_entries` applied entries.
    fn with_snapshots(seed: u64, quota_bytes: u64, snapshot_interval_entries: u64) -> Cluster {
        let disks: Vec<_> = (1..=3).map(|i| BudgetDisk::new(FaultDisk::new(seed + i))).collect();
        let nodes = (0..3)
            .map(|i| {
                let mut config = NodeConfig::new(NodeId(i as u64 + 1), seed);
                config.tick_interval_ms = 10;
                config.quota_bytes = quota_bytes;
                config.snapshot_interval_entries = snapshot_interval_entries;
                config.snapshot_keep_entries = snapshot_interval_entries.min(config.snapshot_keep_entries);
                let voters = Membership::with_voters([1, 2, 3].map(NodeId));
                let options = WalOptions { segment_bytes_max: 8192 };
                let storage = WalStorage::open(disks[i].clone(), options, voters).expect("wal opens");
                Node::start(config, storage, Outbox::default(), ManualClock::default(), KvStore::new()).expect("starts")
            })
            .collect();
        Cluster {
            nodes,
            disks,
            now_ms: 0,
            next_request: 1,
            acknowledged: BTreeSet::new(),
            pending: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            isolated: None,
        }
    }

    fn deliver(&mut self) {
        loop {
            let messages: Vec<_> =
                self.nodes.iter_mut().flat_map(|node| std::mem::take(&mut node.transport_mut().messages)).collect();
            if messages.is_empty() {
                return;
            }
            let isolated = self.isolated.map(|i| NodeId(i as u64 + 1));
            for message in messages.into_iter().filter(|m| Some(m.from) != isolated && Some(m.to) != isolated) {
                let to = (message.to.0 - 1) as usize;
                self.nodes[to].receive(message).expect("a full disk never stops a node");
            }
        }
    }

    fn tick(&mut self) {
        self.now_ms += 10;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if Some(i) == self.isolated {
                continue;
            }
            node.clock_mut().now_ms = self.now_ms;
            node.advance_clock().expect("a full disk never stops a node");
        }
        self.deliver();
        self.collect();
    }

    fn ticks(&mut self, count: usize) {
        (0..count).for_each(|_| self.tick());
    }

    fn leader(&mut self) -> usize {
        for _ in 0..1_000 {
            if let Some(leader) = (0..3).find(|&i| Some(i) != self.isolated && self.nodes[i].raft().is_leader()) {
                return leader;
            }
            self.tick();
        }
        panic!("no leader within 1000 ticks");
    }

    /// Proposes a put of `key` on node `i` and returns its outcome once known.
    fn put(&mut self, i: usize, key: &str) -> Result<(), RequestError> {
        self.propose(i, key, put_command(key))
    }

    fn delete(&mut self, i: usize, key: &str) -> Result<(), RequestError> {
        self.propose(i, "", Command::Delete { key: key.as_bytes().to_vec(), cas: None })
    }

    fn propose(&mut self, i: usize, key: &str, command: Command) -> Result<(), RequestError> {
        let request = self.propose_only(i, key, command);
        self.deliver();
        self.collect();
        self.outcomes.remove(&request).unwrap_or_else(|| panic!("write of {key:?} on node {i} not finished at once"))
    }

    /// Proposes without delivering any message; the outcome comes with a later `collect`.
    fn propose_only(&mut self, i: usize, key: &str, command: Command) -> u64 {
        let request = self.next_request;
        self.next_request += 1;
        self.pending.insert(request, key.to_owned());
        self.nodes[i].propose(request, command.encode()).expect("a full disk never stops a node");
        request
    }

    /// Takes every node's completions: acknowledged writes are remembered, outcomes kept by request.
    fn collect(&mut self) {
        for i in 0..3 {
            for completion in self.nodes[i].take_completions() {
                let Some(key) = self.pending.remove(&completion.id) else { continue };
                if completion.result.is_ok() && !key.is_empty() {
                    self.acknowledged.insert(key);
                }
                self.outcomes.insert(completion.id, completion.result.map(|_| ()));
            }
        }
    }

    fn stale_get(&mut self, i: usize, key: &str) -> bool {
        let request = self.next_request;
        self.next_request += 1;
        self.nodes[i].read(request, KvQuery::Get(key.as_bytes().to_vec()), ReadConsistency::Stale).expect("read");
        self.nodes[i]
            .take_completions()
            .into_iter()
            .any(|c| c.id == request && matches!(c.result, Ok(Reply::Read { output: KvQueryOutput::Get(Some(_)), .. })))
    }

    /// Fills node `i`'s disk: no byte more than it holds now.
    fn fill_disk(&self, i: usize) {
        self.disks[i].set_limit(Some(self.disks[i].used_bytes()));
    }

    /// Gives node `i` its space back, lets `ticks` ticks pass, and checks that it cleared its alarms by itself
    /// and that a write after that, like every acknowledged write, is on every node.
    fn free_space_and_catch_up(&mut self, i: usize, ticks: usize) {
        self.disks[i].set_limit(None);
        self.ticks(ticks);
        assert!(self.nodes[i].storage_alarms().is_empty(), "{:?}", self.nodes[i].storage_alarms());
        let leader = self.leader();
        self.put(leader, "after").expect("write after space returned");
        self.ticks(20);
        self.assert_all_acknowledged_everywhere();
    }

    fn assert_all_acknowledged_everywhere(&mut self) {
        for i in 0..3 {
            for key in self.acknowledged.clone() {
                assert!(self.stale_get(i, &key), "node {i} lacks acknowledged {key}");
            }
        }
        let states: Vec<_> = self.nodes.iter().map(|n| StateMachine::state_checksum(n.state_machine())).collect();
        assert!(states.iter().all(|s| *s == states[0]), "nodes differ: {states:?}");
    }
}

fn put_command(key: &str) -> Command {
    Command::Put { key: key.as_bytes().to_vec(), value: vec![7; 200], cas: None }
}

#[test]
fn a_leader_on_a_full_disk_refuses_writes_hands_over_leadership_and_resumes() {
    // Phase: a healthy cluster, then the leader's disk fills up.
    let mut cluster = Cluster::new(10, 0);
    let full = cluster.leader();
    cluster.put(full, "before").expect("healthy write");
    cluster.fill_disk(full);
    // Writes go on until the log cannot prepare its next segment. The write whose sync found the disk full
    // was stored (it will commit); the next one, proposed before any message moved leadership, is refused.
    let mut n = 0;
    while cluster.nodes[full].storage_alarms().is_empty() {
        cluster.propose_only(full, &format!("k{n}"), put_command(&format!("k{n}")));
        n += 1;
        assert!(n < 1_000, "the disk never filled");
        if cluster.nodes[full].storage_alarms().is_empty() {
            cluster.deliver();
        }
    }
    assert!(cluster.nodes[full].raft().is_leader(), "no message was delivered since the alarm");
    let refused = cluster.propose_only(full, "refused", put_command("refused"));
    cluster.collect();
    let refusal = cluster.outcomes.remove(&refused).expect("refused at once").expect_err("refused");
    assert!(matches!(refusal, RequestError::NoSpace(_)), "{refusal:?}");
    assert!(refusal.to_string().contains("nothing was written"), "{refusal}");
    assert_eq!(cluster.nodes[full].storage_alarms(), vec![StorageAlarm::NoSpace]);
    assert!(!cluster.nodes[full].has_failed());
    cluster.deliver();
    // Phase: leadership moves to a healthy voter, which takes writes; the full node still serves reads.
    cluster.ticks(50);
    let leader = cluster.leader();
    assert_ne!(leader, full, "leadership stayed on the full disk");
    for m in 0..20 {
        cluster.put(leader, &format!("during{m}")).expect("the healthy majority takes writes");
    }
    assert!(cluster.stale_get(full, "before"), "reads stop on a full disk");
    assert!(cluster.nodes[full].dropped_for_space() > 0, "the full follower took entries it cannot store");
    // Phase: space returns; within a retry interval the alarm clears and the node catches up by itself.
    cluster.free_space_and_catch_up(full, 150);
}

#[test]
fn a_follower_on_a_full_disk_keeps_its_leader_and_catches_up_when_space_returns() {
    // Phase: a follower's disk fills up while the leader keeps writing with the other follower.
    let mut cluster = Cluster::new(20, 0);
    let leader = cluster.leader();
    let full = (leader + 1) % 3;
    cluster.fill_disk(full);
    for n in 0..200 {
        cluster.put(leader, &format!("k{n}")).expect("the leader and one follower are a majority");
        if n % 10 == 0 {
            cluster.ticks(1);
        }
    }
    assert_eq!(cluster.nodes[full].storage_alarms(), vec![StorageAlarm::NoSpace]);
    assert!(cluster.nodes[full].dropped_for_space() > 0);
    // It still answers heartbeats: no election, the same leader, and it serves (stale) reads.
    let term = cluster.nodes[leader].raft().term();
    cluster.ticks(100);
    assert_eq!(cluster.leader(), leader, "a full follower disturbed the leader");
    assert_eq!(cluster.nodes[leader].raft().term(), term);
    assert!(cluster.stale_get(full, "k0"), "reads stop on a full disk");
    // Phase: space returns: it catches up with no restart.
    cluster.free_space_and_catch_up(full, 150);
}

#[test]
fn over_the_quota_the_leader_refuses_puts_but_takes_deletes() {
    // Phase: a quota smaller than the data: the alarm comes at the next measurement.
    let mut cluster = Cluster::new(30, 20_000);
    let leader = cluster.leader();
    let mut n = 0;
    while cluster.nodes[leader].storage_alarms().is_empty() {
        cluster.put(leader, &format!("k{n}")).expect("under the quota");
        n += 1;
        cluster.ticks(5);
        assert!(n < 1_000, "the quota alarm never came");
    }
    assert!(cluster.nodes[leader].storage_alarms().contains(&StorageAlarm::Quota));
    assert!(cluster.nodes[leader].storage_bytes().is_some_and(|bytes| bytes > 20_000));
    // Phase: puts are refused with nothing written; deletes go through and replicate.
    let error = cluster.put(leader, "refused").expect_err("a put over the quota");
    assert!(matches!(error, RequestError::NoSpace(ref m) if m.contains("quota")), "{error:?}");
    cluster.delete(leader, "k0").expect("a delete over the quota");
    cluster.acknowledged.remove("k0");
    cluster.ticks(5);
    assert!(!cluster.stale_get((leader + 1) % 3, "k0"), "the delete did not replicate");
    assert!(!cluster.stale_get(leader, "refused"));
    cluster.assert_all_acknowledged_everywhere();
}

#[test]
fn a_snapshot_larger_than_the_free_space_leaves_the_follower_running_and_it_catches_up_later() {
    // Phase: a follower is cut off while the others write and compact past its log, so it will need a
    // snapshot; its disk keeps room for the log's next segment (the spare) but not for the snapshot.
    let mut cluster = Cluster::with_snapshots(40, 0, 50);
    let leader = cluster.leader();
    let behind = (leader + 1) % 3;
    cluster.put(leader, "early").expect("healthy write");
    cluster.ticks(5);
    cluster.isolated = Some(behind);
    for n in 0..300 {
        cluster.put(leader, &format!("k{n}")).expect("the leader and one follower are a majority");
    }
    cluster.disks[behind].set_limit(Some(cluster.disks[behind].used_bytes() + 4096));
    assert!(cluster.nodes[behind].storage_alarms().is_empty(), "the spare is in place: no alarm yet");
    // Phase: it hears from the leader again. Storing the snapshot fails; the node starts its core again from
    // what it stored instead of stopping, raises the alarm, keeps its leader and serves (stale) reads.
    cluster.isolated = None;
    let term = cluster.nodes[leader].raft().term();
    cluster.ticks(100);
    assert!(!cluster.nodes[behind].has_failed(), "a full disk stopped the node");
    assert!(cluster.nodes[behind].storage_alarms().contains(&StorageAlarm::NoSpace));
    assert_eq!(cluster.leader(), leader, "the full follower disturbed the leader");
    assert_eq!(cluster.nodes[leader].raft().term(), term);
    assert!(cluster.stale_get(behind, "early"), "reads stop on a full disk");
    assert!(!cluster.stale_get(behind, "k299"), "the snapshot was stored after all: the test proves nothing");
    // Phase: space returns: the snapshot goes in with no restart, and nothing acknowledged is lost.
    cluster.free_space_and_catch_up(behind, 200);
}

#[test]
fn a_batch_larger_than_the_room_left_is_dropped_and_the_leader_goes_on_as_a_follower() {
    // Phase: the leader's disk keeps room for its spare segment, not for a batch that needs two more.
    let mut cluster = Cluster::new(50, 0);
    let leader = cluster.leader();
    cluster.put(leader, "before").expect("healthy write");
    cluster.ticks(5);
    cluster.disks[leader].set_limit(Some(cluster.disks[leader].used_bytes() + 1024));
    let requests: Vec<u64> = (0..6).map(|n| cluster.next_request + n).collect();
    cluster.next_request += 6;
    let inputs = requests.iter().map(|&id| {
        let key = format!("big{id}");
        cluster.pending.insert(id, key.clone());
        Input::Propose { id, command: Command::Put { key: key.into_bytes(), value: vec![9; 3000], cas: None }.encode() }
    });
    let inputs: Vec<_> = inputs.collect();
    // Storing the batch fails: the node starts its core again from what it stored instead of stopping. The
    // proposals were never stored nor sent, so they are dropped (certainly not applied).
    cluster.nodes[leader].handle(inputs).expect("a full disk never stops a node");
    cluster.collect();
    assert!(!cluster.nodes[leader].has_failed());
    assert!(!cluster.nodes[leader].raft().is_leader(), "the reloaded node starts as a follower");
    for id in &requests {
        let outcome = cluster.outcomes.remove(id).expect("completed at once");
        assert!(matches!(outcome, Err(RequestError::Dropped)), "{outcome:?}");
    }
    assert_eq!(cluster.nodes[leader].storage_alarms(), vec![StorageAlarm::NoSpace]);
    // Phase: another node leads and takes writes; the full node still serves reads.
    cluster.ticks(100);
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader, "the node whose batch did not fit leads again");
    cluster.put(new_leader, "during").expect("the others take writes");
    assert!(cluster.stale_get(leader, "before"));
    // Phase: space returns: it catches up, and nothing acknowledged is lost.
    cluster.free_space_and_catch_up(leader, 300);
}

#[test]
fn with_every_disk_full_the_leader_stays_and_serves_linearizable_reads() {
    // Phase: all three disks fill up together (replicas hold the same data).
    let mut cluster = Cluster::new(60, 0);
    for i in 0..3 {
        cluster.fill_disk(i);
    }
    let mut n = 0;
    while (0..3).any(|i| cluster.nodes[i].storage_alarms().is_empty()) {
        let leader = cluster.leader();
        let _ = cluster.put(leader, &format!("k{n}"));
        n += 1;
        assert!(n < 2_000, "the disks never filled");
        if n % 10 == 0 {
            cluster.ticks(1);
        }
    }
    // Phase: no node can take entries, so none may take leadership over: the leader stays, and linearizable
    // reads (a heartbeat round, no entry) keep being answered.
    cluster.ticks(300);
    let leader = cluster.leader();
    for m in 0..20 {
        let id = 1_000_000 + m;
        let query = KvQuery::Get(b"k0".to_vec());
        cluster.nodes[leader].read(id, query, ReadConsistency::Linearizable).expect("read");
        cluster.deliver();
        let answered = cluster.nodes[leader].take_completions().into_iter().any(|c| c.id == id && c.result.is_ok());
        assert!(answered, "linearizable read {m} not answered with every disk full");
        cluster.ticks(5);
        assert_eq!(cluster.leader(), leader, "leadership moved to a node that cannot store its no-op");
    }
    assert!((0..3).all(|i| !cluster.nodes[i].has_failed()));
}
