//! One simulated run: real `tally-node` instances on a simulated network, disk and clock, with clients, a
//! fault schedule, and the checkers run after every simulated millisecond.
//!
//! ```text
//!  seed ──▶ SimParams ──▶ safety phase (faults on) ──▶ liveness phase (healed) ──▶ linearizability check
//!                              each millisecond: faults → deliver messages → tick clocks → clients
//!                                                → send outputs → record applies → completions → watchers
//!                                                → checkers
//!                                                  (the reference execution of the log advances after the
//!                                                   completions, so it never passes an answer of this step)
//! ```

mod checks;
mod clients;
mod failover;
mod faults;
mod membership;
mod txns;
mod watchers;

use std::collections::BTreeMap;

use tally_node::{ManualClock, Node, NodeConfig, Outbox, RequestId, WalStorage, WatchHub};
use tally_raft::{LogIndex, NodeId, Role, SplitMix64, Term};
use tally_wal::{FaultDisk, WalOptions};

use crate::checkers::{
    AuthAgreement, Durability, ElectionSafety, LeaderCompleteness, LogMatching, RealTimeOrder, StateMachineSafety,
    TxnSerializability, Violation, WatchCounts, WatchExactlyOnce,
};
use crate::client::Client;
use crate::linearizability::KvOp;
use crate::network::Network;
pub use crate::params::SimParams;
use crate::state_machine::{Applied, RecordingKv};
use crate::watcher::{WatchParams, Watcher};
pub use failover::FailoverSample;

/// The lines of a run's trace, shared between the run and its caller (so a panicking run still leaves its
/// trace behind for the report).
#[derive(Clone, Default, Debug)]
pub struct Trace(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Trace {
    /// Appends a line.
    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
    }

    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A node as the simulator runs it.
pub type SimNode = Node<RecordingKv, WalStorage<FaultDisk>, Outbox, ManualClock>;

/// A node's slot: running, or crashed with its disk waiting for a restart.
enum Slot {
    /// Running.
    Up(Box<SimNode>),
    /// Crashed; restarts from its disk at `restart_at`.
    Down {
        /// When it comes back (in the safety phase; the liveness phase restarts everyone).
        restart_at: u64,
    },
    /// Removed from the cluster and shut down for good (ids are never reused).
    Removed,
    /// Transiently empty while being replaced.
    Empty,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The first violation found, if any.
    pub violation: Option<Violation>,
    /// Client operations that completed (acknowledged writes and answered reads).
    pub ops: u64,
    /// Terms that had a leader.
    pub elections: usize,
    /// Keys whose history was too costly to check for linearizability within the search budget.
    pub unchecked_keys: usize,
    /// What the watchers saw (all zero in runs without watchers).
    pub watch: WatchCounts,
    /// The trace, if it was asked for (also in [`Trace`], which survives a panic).
    pub trace: Vec<String>,
}

/// A simulated cluster and everything around it.
pub struct Simulation {
    /// The run's knobs.
    pub(crate) params: SimParams,
    /// The only source of randomness of the run (besides each core's own seeded generator).
    pub(crate) rng: SplitMix64,
    /// Simulated time in ms.
    pub(crate) now: u64,
    /// Node ids, `ids[i]` lives in `slots[i]`.
    pub(crate) ids: Vec<NodeId>,
    /// The nodes.
    slots: Vec<Slot>,
    /// The newest committed membership seen, with the commit index it was seen at.
    committed_membership: (LogIndex, tally_raft::Membership),
    /// Per node: its simulated disk (a handle; the node's write-ahead log holds another). It outlives
    /// crashes: a restarted node recovers from it.
    disks: Vec<FaultDisk>,
    /// Per node: a sync failure was injected and has not happened yet.
    dying_disk: Vec<bool>,
    /// Per node: its last synced batch was damaged at its crash and it has not restarted since (once it has,
    /// the recovery marker on its disk says it is still recovering).
    damaged_down: Vec<bool>,
    /// Per node: whether it was ever a member since the start (spares become members when added).
    added: Vec<bool>,
    /// Restarts per node, mixed into the core's seed so a restarted node draws new timeouts.
    restarts: Vec<u64>,
    /// Messages in flight and partitions.
    pub(crate) network: Network,
    /// The clients.
    pub(crate) clients: Vec<Client>,
    /// Whether faults are injected (the safety phase) or not (the liveness phase).
    faults_on: bool,
    /// Clients stop issuing requests once quiesced (end of the liveness phase).
    pub(crate) quiesced: bool,
    /// Every operation issued, in call order.
    pub(crate) history: Vec<KvOp>,
    /// Operations known to have had no effect (refused, dropped, or reads that timed out).
    pub(crate) discarded: Vec<bool>,
    /// Request id -> client index.
    pub(crate) owners: BTreeMap<RequestId, usize>,
    /// Next request id.
    pub(crate) next_request: RequestId,
    /// Completed client operations.
    pub(crate) ops: u64,
    /// Writes acknowledged.
    pub(crate) writes_acked: u64,
    /// Checkers.
    pub(crate) election_safety: ElectionSafety,
    pub(crate) log_matching: LogMatching,
    pub(crate) leader_completeness: LeaderCompleteness,
    pub(crate) state_machine_safety: StateMachineSafety,
    pub(crate) durability: Durability,
    pub(crate) auth_agreement: AuthAgreement,
    pub(crate) txn_serializability: TxnSerializability,
    pub(crate) real_time_order: RealTimeOrder,
    /// Entries that nodes applied and the checkers have not seen, taken from nodes as they crashed (with the
    /// node's id and term): every committed index must reach the reference execution of the log.
    unrecorded: Vec<(NodeId, Term, Vec<Applied>)>,
    /// Per node: the index of the oldest state it could answer from again (its snapshot, where a restart
    /// resumes), once it has applied anything; kept while it is down.
    restart_floor: Vec<Option<u64>>,
    /// Per node: the last (role, term) traced, and the last applied index checked.
    observed: Vec<(Role, Term, LogIndex)>,
    /// Keys the linearizability checker could not decide within its budget.
    unchecked_keys: usize,
    /// Per node: the commit index up to which committed entries were recorded.
    commit_seen: Vec<LogIndex>,
    /// The trace, when enabled: shared with the caller so it survives a panic in the run.
    trace: Option<Trace>,
    /// Per node: its membership policy (acts only while it leads), when the run uses the policy.
    policies: Vec<tally_node::MembershipPolicy>,
    /// The watchers (none in runs without them).
    watchers: Vec<Watcher>,
    /// Per node: its watch hub while it runs, in runs with watchers (a restarted node starts a new one).
    hubs: Vec<Option<WatchHub>>,
    /// Request id of a watcher's read -> the watcher.
    watch_reads: BTreeMap<RequestId, usize>,
    /// The watchers' own generator, so that the run's main one draws as in runs without watchers.
    watch_rng: SplitMix64,
    /// The watch checker.
    watch_exactly_once: WatchExactlyOnce,
}

impl Simulation {
    /// Sets up the cluster of `params`: every node a voter, empty logs.
    pub fn new(params: SimParams, trace: Option<Trace>) -> Simulation {
        let ids: Vec<NodeId> = (1..=(params.nodes + params.spares) as u64).map(NodeId).collect();
        let voters = &ids[..params.nodes];
        let mut rng = SplitMix64::new(params.seed);
        let clients = (0..params.clients)
            .map(|c| Client::new(c as u64, voters[rng.range(0, voters.len() as u64) as usize]))
            .collect();
        let mut watch_rng = SplitMix64::new(params.seed ^ 0x5741_5443_4845_5253);
        let watchers = watchers::new_watchers(params.watch.as_ref().map_or(0, |watch| watch.watchers), &mut watch_rng);
        let filters = watchers.iter().map(|watcher| watcher.filter.clone()).collect();
        let mut network = Network::default();
        network.loss_permille = params.loss_permille;
        network.duplicate_permille = params.duplicate_permille;
        network.delay_ms = params.delay_ms;
        network.fifo_links = params.fifo_links;
        let mut sim = Simulation {
            rng,
            now: 0,
            slots: Vec::new(),
            restarts: vec![0; ids.len()],
            added: vec![false; ids.len()],
            disks: (0..ids.len() as u64)
                .map(|i| FaultDisk::new(params.seed ^ (i + 1).wrapping_mul(0x9E37_79B9)))
                .collect(),
            dying_disk: vec![false; ids.len()],
            damaged_down: vec![false; ids.len()],
            committed_membership: (
                LogIndex(0),
                tally_raft::Membership::with_voters(ids[..params.nodes].iter().copied()),
            ),
            network,
            clients,
            faults_on: true,
            quiesced: false,
            history: Vec::new(),
            discarded: Vec::new(),
            owners: BTreeMap::new(),
            next_request: 1,
            ops: 0,
            writes_acked: 0,
            election_safety: ElectionSafety::default(),
            log_matching: LogMatching::default(),
            leader_completeness: LeaderCompleteness,
            state_machine_safety: StateMachineSafety::default(),
            durability: Durability::default(),
            auth_agreement: AuthAgreement::default(),
            txn_serializability: TxnSerializability::new((params.txn_permille > 0).then(crate::txn_client::accounts)),
            real_time_order: RealTimeOrder::default(),
            unrecorded: Vec::new(),
            restart_floor: vec![None; ids.len()],
            observed: vec![(Role::Follower, Term(0), LogIndex(0)); ids.len()],
            commit_seen: vec![LogIndex(0); ids.len()],
            unchecked_keys: 0,
            trace,
            policies: match params.membership_policy {
                Some(config) => (0..ids.len()).map(|_| tally_node::MembershipPolicy::new(config)).collect(),
                None => Vec::new(),
            },
            watchers,
            hubs: (0..ids.len()).map(|_| None).collect(),
            watch_reads: BTreeMap::new(),
            watch_rng,
            watch_exactly_once: WatchExactlyOnce::new(filters),
            ids,
            params,
        };
        let params = format!("{:?}", sim.params);
        sim.trace_event(|| params);
        for i in 0..sim.ids.len() {
            sim.slots.push(Slot::Down { restart_at: 0 });
            sim.start_node(i).expect("a fresh node starts");
        }
        sim
    }

    /// Runs the safety phase, then the liveness phase, then the final checks.
    pub fn run(mut self) -> Outcome {
        let result = self.run_phases();
        Outcome {
            violation: result.err(),
            ops: self.ops,
            elections: self.election_safety.terms_with_leader(),
            unchecked_keys: self.unchecked_keys,
            watch: self.watch_exactly_once.counts(),
            trace: self.trace.map(|t| t.lines()).unwrap_or_default(),
        }
    }

    /// The phases; stops at the first violation.
    fn run_phases(&mut self) -> Result<(), Violation> {
        while self.now < self.params.safety_ms {
            self.step()?;
        }
        self.faults_on = false;
        self.trace_event(|| "=== liveness phase: heal everything ===".to_string());
        self.heal_everything()?;
        let healed_at = self.now;
        let acked_before = self.writes_acked;
        while self.now < healed_at + self.params.liveness_ms / 2 {
            self.step()?;
        }
        self.quiesce();
        // Converged, and (in runs with watchers) every watcher caught up with the final applied index.
        let mut lag_traced = false;
        while self.now < healed_at + self.params.liveness_ms {
            if !self.converged() {
                self.step()?;
                continue;
            }
            let Some(lag) = self.watchers_lagging() else { break };
            if !std::mem::replace(&mut lag_traced, true) {
                self.trace_event(|| format!("converged; waiting for the watchers: {lag}"));
            }
            self.step()?;
        }
        self.check_liveness(acked_before)?;
        self.check_final()
    }

    /// One simulated millisecond.
    fn step(&mut self) -> Result<(), Violation> {
        self.now += 1;
        if self.faults_on {
            self.inject_faults();
            self.change_membership();
        }
        if self.now % 10 == 0 {
            self.shut_down_removed(); // O(log) per call: every 10 ms is soon enough
        }
        self.restart_due()?;
        self.deliver_messages();
        self.advance_clocks();
        self.drive_clients();
        self.flush_outboxes();
        self.record_applies()?;
        self.collect_completions()?;
        self.drive_watchers()?;
        self.check_answers()?;
        self.check_step()
    }

    /// Appends a line to the trace, if tracing.
    pub(crate) fn trace_event(&mut self, line: impl FnOnce() -> String) {
        let now = self.now;
        if let Some(trace) = self.trace.as_ref() {
            trace.push(format!("{now:>6} {}", line()));
        }
    }

    /// The running node in slot `i`.
    pub(crate) fn node(&self, i: usize) -> Option<&SimNode> {
        match &self.slots[i] {
            Slot::Up(node) => Some(node),
            _ => None,
        }
    }

    /// The running node in slot `i`, mutably.
    pub(crate) fn node_mut(&mut self, i: usize) -> Option<&mut SimNode> {
        match &mut self.slots[i] {
            Slot::Up(node) => Some(node),
            _ => None,
        }
    }

    /// Slot index of a node id.
    pub(crate) fn slot_of(&self, id: NodeId) -> usize {
        (id.0 - 1) as usize
    }

    /// The node's configuration for its current incarnation.
    fn node_config(&self, i: usize) -> NodeConfig {
        let id = self.ids[i];
        let seed = self.params.seed.wrapping_mul(31).wrapping_add(self.restarts[i]);
        let mut config = NodeConfig::new(id, seed);
        config.raft.faults = self.params.faults;
        config.raft.election = self.params.election;
        config.raft.inquiry_timeout_ticks = self.params.inquiry_timeout_ticks;
        config.raft.pre_vote = self.params.pre_vote;
        config.raft.check_quorum = self.params.check_quorum;
        config.raft.heartbeat_interval_ticks = self.params.heartbeat_interval_ticks;
        config.raft.max_entries_per_message = self.params.max_entries_per_message;
        config.raft.max_inflight_messages = self.params.max_inflight_messages;
        config.raft.max_bytes_per_message = self.params.max_bytes_per_message;
        config.tick_interval_ms = self.params.tick_interval_ms;
        config.snapshot_interval_entries = self.params.snapshot_interval_entries;
        config.snapshot_keep_entries = self.params.snapshot_keep_entries;
        config
    }

    /// The node's local clock reading: simulated time at its own rate (tick skew).
    pub(crate) fn local_time(&self, i: usize) -> u64 {
        self.now * self.params.clock_rate_permille[i] / 1_000
    }

    /// Starts (or restarts) the node in slot `i` from its disk: the write-ahead log recovers what was
    /// synced. The initial voters know the initial membership; spares start with none.
    fn start_node(&mut self, i: usize) -> Result<(), Violation> {
        let Slot::Down { .. } = std::mem::replace(&mut self.slots[i], Slot::Empty) else {
            unreachable!("starting node {} that is not down", self.ids[i]);
        };
        let voters = &self.ids[..self.params.nodes];
        let bootstrap = if i < voters.len() {
            tally_raft::Membership::with_voters(voters.iter().copied())
        } else {
            tally_raft::Membership::default()
        };
        let options = WalOptions { segment_bytes_max: self.params.segment_bytes };
        let recovery =
            |error| Violation { checker: "recovery", detail: format!("{} failed to restart: {error}", self.ids[i]) };
        let storage = WalStorage::open(self.disks[i].clone(), options, bootstrap).map_err(recovery)?;
        let clock = ManualClock { now_ms: self.local_time(i) };
        // The auth fault breaks n1's state machine only: the other replicas show what applying is meant to do. The
        // stale compare fault breaks every node alike: only the reference execution of the log shows it.
        let state_machine = RecordingKv::with_misapplied_auth(self.params.misapply_auth && i == 0)
            .with_history_limits(WatchParams::history_limits(self.params.watch.as_ref(), i))
            .with_stale_txn_compare(self.params.stale_txn_compare);
        let node =
            Node::start(self.node_config(i), storage, Outbox::default(), clock, state_machine).map_err(|error| {
                Violation { checker: "recovery", detail: format!("{} failed to restart: {error}", self.ids[i]) }
            })?;
        self.slots[i] = Slot::Up(Box::new(node));
        self.start_hub(i);
        self.observed[i].2 = LogIndex(0);
        self.commit_seen[i] = LogIndex(0);
        self.dying_disk[i] = false;
        self.damaged_down[i] = false;
        Ok(())
    }

    /// Delivers the messages due now; messages across a partition or to a crashed node are dropped.
    fn deliver_messages(&mut self) {
        let (deliverable, blocked) = self.network.take_due(self.now);
        for message in blocked {
            self.trace_event(|| format!("drop (partition) {message}"));
        }
        for message in deliverable {
            let i = self.slot_of(message.to);
            let local_now = self.local_time(i);
            if let Some(policy) = self.policies.get_mut(i) {
                policy.heard_from(message.from, local_now);
            }
            let tracing = self.trace.is_some();
            let Some(node) = self.node_mut(i) else { continue };
            // Formatted only when tracing: rendering every message (entries and all) is costly.
            let line = tracing.then(|| format!("deliver {message}"));
            let result = node.receive(message);
            if let Some(line) = line {
                self.trace_event(|| line);
            }
            if result.is_err() {
                self.crash(i, "sync failed while handling a message");
            }
        }
    }

    /// Moves every node's clock to the current time at its own rate.
    fn advance_clocks(&mut self) {
        for i in 0..self.slots.len() {
            let now = self.local_time(i);
            let Some(node) = self.node_mut(i) else { continue };
            node.clock_mut().now_ms = now;
            if node.advance_clock().is_err() {
                self.crash(i, "sync failed on a tick");
            }
        }
    }

    /// Hands every message the nodes sent to the network; in chaos runs a node may crash right after an
    /// interesting send, and a leader may be cut off right after it advanced its commit index (see
    /// [`SimParams::crash_after_event_permille`]).
    fn flush_outboxes(&mut self) {
        for i in 0..self.slots.len() {
            let Some(node) = self.node_mut(i) else { continue };
            let messages = std::mem::take(&mut node.transport_mut().messages);
            let interesting = messages.iter().any(is_interesting);
            let raft = node.raft();
            let leader_committed = raft.is_leader() && raft.commit_index() > self.commit_seen[i];
            if leader_committed && self.faults_on && self.rng.chance(self.params.crash_after_event_permille, 1_000) {
                // The leader just advanced its commit index: cut it off before its followers hear of it.
                let id = self.ids[i];
                self.network.partition(&std::collections::BTreeSet::from([id]), &self.ids);
                self.trace_event(|| format!("partition: leader {id} isolated right after committing"));
            }
            let crash = interesting && self.faults_on && self.rng.chance(self.params.crash_after_event_permille, 1_000);
            if crash && self.rng.chance(1, 2) {
                // Between steps 1 and 2 of the Ready contract: durable, but nothing sent.
                self.crash(i, "crash after persisting an interesting Ready, before sending it");
                continue;
            }
            for message in messages {
                // Copied for the trace only when tracing: the network takes the message.
                let traced = self.trace.is_some().then(|| message.clone());
                let fate = self.network.send(self.now, message, &mut self.rng);
                if let (crate::network::Fate::Lost, Some(message)) = (fate, traced) {
                    self.trace_event(|| format!("lose {message}"));
                }
            }
            if crash {
                self.crash(i, "crash right after an interesting send");
            }
        }
    }
}

/// A send after which a crash is most likely to expose a bug: a vote granted, or entries replicated.
fn is_interesting(message: &tally_raft::Message) -> bool {
    match &message.body {
        tally_raft::MessageBody::VoteResponse { pre_vote: false, granted: true } => true,
        tally_raft::MessageBody::Append { entries, .. } => !entries.is_empty(),
        _ => false,
    }
}
