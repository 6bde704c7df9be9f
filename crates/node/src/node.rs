//! The node loop: inputs go into the Raft core, and each `Ready` that comes out is carried out in its
//! contract's order: persist (one sync), send, apply, answer reads. Storage alarms (a full disk, the
//! quota) are in `space.rs`.

mod reload;
mod space;

use std::collections::BTreeMap;

use tally_raft::{EntryPayload, LogIndex, MembershipChange, Message, NodeId, Raft, Ready, Term};

use crate::request::{Completion, ReadConsistency, Reply, RequestError, RequestId};
use crate::state_machine::StateMachine;
use crate::storage::{Storage, StorageError};
use crate::transport::{Clock, Transport};
use space::Space;
pub use space::StorageAlarm;

/// Configuration of one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The consensus core's configuration.
    pub raft: tally_raft::Config,
    /// Milliseconds per Raft tick.
    pub tick_interval_ms: u64,
    /// Take a state machine snapshot (and compact the log) every this many applied entries.
    pub snapshot_interval_entries: u64,
    /// Log entries kept behind a snapshot, so followers a little behind catch up from the log.
    pub snapshot_keep_entries: u64,
    /// Past this many bytes of storage (log segments and snapshots), the node raises the quota alarm
    /// and refuses writes other than deletes while it leads. 0: no quota.
    pub quota_bytes: u64,
}

impl NodeConfig {
    /// Defaults: 100 ms ticks (1 s minimum election timeout), a snapshot every 10,000 entries, keeping 1,000.
    pub fn new(id: NodeId, seed: u64) -> NodeConfig {
        NodeConfig {
            raft: tally_raft::Config::new(id, seed),
            tick_interval_ms: 100,
            snapshot_interval_entries: 10_000,
            snapshot_keep_entries: 1_000,
            quota_bytes: 0,
        }
    }
}

/// One input to [`Node::handle`]. A batch of inputs is stepped into the core together and then carried out
/// with one `Ready`: the proposals of a batch share one fsync (group commit) and its linearizable reads share
/// one ReadIndex round.
#[derive(Clone, Debug)]
pub enum Input<Q> {
    /// A message from another node.
    Message(Message),
    /// Elapsed clock time: turned into ticks.
    Tick,
    /// A command to replicate and apply; the completion comes once it is applied (or known lost).
    Propose {
        /// The request, unique among requests in flight.
        id: RequestId,
        /// The encoded command.
        command: Vec<u8>,
    },
    /// A membership change; the completion comes once it is applied.
    ProposeMembership {
        /// The request, unique among requests in flight.
        id: RequestId,
        /// The change.
        change: MembershipChange,
    },
    /// A read at the given consistency.
    Read {
        /// The request, unique among requests in flight.
        id: RequestId,
        /// The question.
        query: Q,
        /// How fresh the answer must be.
        consistency: ReadConsistency,
    },
}

/// A read waiting for its read index to be applied.
#[derive(Clone, Debug)]
struct WaitingRead<Q> {
    /// The request.
    id: RequestId,
    /// The question.
    query: Q,
}

/// One Tally node: the Raft core, the state machine, and the I/O it is driven through.
///
/// Invariant: `state_machine.applied_index() == raft.applied_index()` between calls.
pub struct Node<S: StateMachine, D: Storage, T: Transport, C: Clock> {
    /// The consensus core.
    raft: Raft,
    /// The replicated state.
    state_machine: S,
    /// Durable storage.
    storage: D,
    /// Outgoing messages.
    transport: T,
    /// Time, turned into ticks.
    clock: C,
    /// Tuning.
    config: NodeConfig,
    /// The clock reading of the last tick.
    last_tick_ms: u64,
    /// Proposals waiting to be applied: log index -> (term it was proposed in, request).
    proposals: BTreeMap<LogIndex, (Term, RequestId)>,
    /// Linearizable reads waiting for their read index, by the context given to the core (one context per
    /// batch of reads).
    reads_awaiting_index: BTreeMap<u64, Vec<WaitingRead<S::Query>>>,
    /// The context of the next ReadIndex request. Contexts are never reused, not even across restarts (they
    /// start from the clock), so a late answer to an abandoned read can never be taken for a newer read's.
    next_read_context: u64,
    /// Reads whose read index is known, waiting for it to be applied: read index -> reads.
    reads_awaiting_apply: BTreeMap<LogIndex, Vec<WaitingRead<S::Query>>>,
    /// Finished requests not yet taken by the caller.
    completions: Vec<Completion<S>>,
    /// Set after a storage failure: the node then refuses all input (it must be restarted).
    failure: Option<StorageError>,
    /// The term and vote last made durable: a change to either must be synced before any message leaves.
    synced_vote: (Term, Option<NodeId>),
    /// The storage alarms (full disk, quota) and what they need.
    space: Space,
    /// This start began protocol-aware recovery and the storage has not yet been told it is over.
    recovery_unsettled: bool,
    /// After a reload (see [`reload`]) the core hands out again committed entries the state machine already
    /// applied, up to this index: they are skipped. `LogIndex(0)` otherwise, so any other entry handed out
    /// twice still trips the assertion in `apply`.
    reapplied_through: LogIndex,
}

impl<S: StateMachine, D: Storage, T: Transport, C: Clock> Node<S, D, T, C> {
    /// Starts a node from what `storage` holds: the snapshot is restored into `state_machine`, and committed
    /// entries after it are re-applied as the core hands them out.
    ///
    /// # Errors
    /// If the storage cannot be read or the snapshot cannot be decoded.
    pub fn start(
        config: NodeConfig,
        mut storage: D,
        transport: T,
        clock: C,
        mut state_machine: S,
    ) -> Result<Self, StorageError> {
        let restored = storage.load()?;
        if restored.snapshot.meta.index > LogIndex(0) {
            state_machine.restore(&restored.snapshot.data).map_err(StorageError::Corrupt)?;
        }
        assert_eq!(
            state_machine.applied_index(),
            restored.snapshot.meta.index,
            "state machine does not match the snapshot"
        );
        let synced_vote = (restored.hard_state.term, restored.hard_state.vote);
        let recovery_unsettled = restored.tail_may_be_acknowledged;
        let raft = Raft::new(config.raft.clone(), restored);
        let last_tick_ms = clock.now_ms();
        let space = Space { quota_bytes: config.quota_bytes, ..Space::default() };
        let mut node = Node {
            raft,
            state_machine,
            storage,
            transport,
            clock,
            config,
            last_tick_ms,
            proposals: BTreeMap::new(),
            reads_awaiting_index: BTreeMap::new(),
            next_read_context: last_tick_ms.wrapping_mul(1 << 20),
            reads_awaiting_apply: BTreeMap::new(),
            completions: Vec::new(),
            failure: None,
            synced_vote,
            space,
            recovery_unsettled,
            reapplied_through: LogIndex(0),
        };
        node.check_space()?;
        node.process_ready()?;
        Ok(node)
    }

    // ----- inputs -----

    /// Steps a batch of inputs into the core, then carries out the resulting `Ready`: every proposal of the
    /// batch goes into one fsync, and every linearizable read of the batch into one ReadIndex round.
    ///
    /// # Errors
    /// A storage failure: the node has stopped.
    pub fn handle(&mut self, inputs: impl IntoIterator<Item = Input<S::Query>>) -> Result<(), StorageError> {
        self.check_running()?;
        if let Err(error) = self.check_space() {
            self.failure = Some(error.clone());
            return Err(error);
        }
        let mut linearizable_reads = Vec::new();
        let mut proposals = Vec::new();
        for input in inputs {
            match input {
                Input::Message(message) if self.space.drops(&message) => self.space.dropped_messages += 1,
                Input::Message(message) => self.raft.step(message),
                Input::Tick => self.tick(),
                Input::Propose { id, command } => proposals.push((id, command)),
                // A membership entry needs log space too; under the quota alone it goes ahead.
                Input::ProposeMembership { id, .. } if self.raft.is_leader() && self.space.no_space.is_some() => {
                    let reason = self.space.refusal(|| true).unwrap_or_default();
                    self.completions.push(Completion { id, result: Err(RequestError::NoSpace(reason)) });
                }
                Input::ProposeMembership { id, change } => {
                    let result = self.raft.propose_membership(change);
                    self.track_proposal(id, result);
                }
                Input::Read { id, query, consistency: ReadConsistency::Stale } => self.answer_read(id, &query),
                Input::Read { id, query, consistency: ReadConsistency::Linearizable } => {
                    linearizable_reads.push(WaitingRead { id, query });
                }
            }
        }
        let proposals = self.admit_proposals(proposals);
        self.propose_batch(proposals);
        self.start_read_round(linearizable_reads);
        self.process_ready()?;
        // The batch may have filled the disk: refuse from now on, and start handing leadership over.
        self.observe_space(false);
        self.process_ready()
    }

    /// Proposes a batch of commands at once, so they leave in one Append per follower rather than one each.
    fn propose_batch(&mut self, proposals: Vec<(RequestId, Vec<u8>)>) {
        if proposals.is_empty() {
            return;
        }
        let (ids, commands): (Vec<RequestId>, Vec<Vec<u8>>) = proposals.into_iter().unzip();
        let results = self.raft.propose_batch(commands);
        for (id, result) in ids.into_iter().zip(results) {
            self.track_proposal(id, result);
        }
    }

    /// Handles a message from another node.
    ///
    /// # Errors
    /// A storage failure: the node has stopped.
    pub fn receive(&mut self, message: Message) -> Result<(), StorageError> {
        self.handle([Input::Message(message)])
    }

    /// Turns elapsed clock time into ticks.
    ///
    /// # Errors
    /// A storage failure: the node has stopped.
    pub fn advance_clock(&mut self) -> Result<(), StorageError> {
        self.handle([Input::Tick])
    }

    /// Proposes a command; the completion comes once it is applied (or known lost).
    ///
    /// # Errors
    /// A storage failure: the node has stopped.
    pub fn propose(&mut self, id: RequestId, command: Vec<u8>) -> Result<(), StorageError> {
        self.handle([Input::Propose { id, command }])
    }

    /// Proposes a membership change; the completion comes once it is applied.
    ///
    /// # Errors
    /// A storage failure: the node has stopped.
    pub fn propose_membership(&mut self, id: RequestId, change: MembershipChange) -> Result<(), StorageError> {
        self.handle([Input::ProposeMembership { id, change }])
    }

    /// Reads from the state machine at the given consistency. `id` must be unique among requests in flight.
    ///
    /// # Errors
    /// A storage failure: the node has stopped.
    pub fn read(&mut self, id: RequestId, query: S::Query, consistency: ReadConsistency) -> Result<(), StorageError> {
        self.handle([Input::Read { id, query, consistency }])
    }

    /// The milliseconds until the next tick is due (0 if overdue), for callers that sleep between inputs.
    pub fn until_next_tick_ms(&self) -> u64 {
        (self.last_tick_ms + self.config.tick_interval_ms).saturating_sub(self.clock.now_ms())
    }

    /// Turns elapsed clock time into ticks of the core.
    fn tick(&mut self) {
        let now = self.clock.now_ms();
        while now.saturating_sub(self.last_tick_ms) >= self.config.tick_interval_ms {
            self.last_tick_ms += self.config.tick_interval_ms;
            self.raft.tick();
        }
    }

    /// Starts one ReadIndex round for a batch of linearizable reads (or fails them all if there is no leader).
    fn start_read_round(&mut self, reads: Vec<WaitingRead<S::Query>>) {
        if reads.is_empty() {
            return;
        }
        let context = self.next_read_context;
        match self.raft.read_index(context) {
            Ok(()) => {
                self.reads_awaiting_index.insert(context, reads);
                self.next_read_context = self.next_read_context.wrapping_add(1);
            }
            Err(error) => {
                let error: RequestError = error.into();
                for read in reads {
                    self.completions.push(Completion { id: read.id, result: Err(error.clone()) });
                }
            }
        }
    }

    /// Remembers an accepted proposal until its entry is applied, or completes a refused one. A proposal
    /// that was waiting at the same index is now certainly overwritten by this leader's new entry.
    fn track_proposal(&mut self, id: RequestId, result: Result<LogIndex, tally_raft::ProposeError>) {
        match result {
            Ok(index) => {
                if let Some((_, old)) = self.proposals.insert(index, (self.raft.term(), id)) {
                    self.completions.push(Completion { id: old, result: Err(RequestError::Dropped) });
                }
            }
            Err(error) => self.completions.push(Completion { id, result: Err(error.into()) }),
        }
    }

    /// Asks the leader to hand leadership to `target`.
    ///
    /// # Errors
    /// A storage failure, or the core's refusal.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), RequestError> {
        self.check_running().map_err(|e| RequestError::Stopped(e.to_string()))?;
        self.raft.transfer_leader(target)?;
        self.process_ready().map_err(|e| RequestError::Stopped(e.to_string()))
    }

    /// Takes the requests finished since the last call.
    pub fn take_completions(&mut self) -> Vec<Completion<S>> {
        std::mem::take(&mut self.completions)
    }

    /// Forgets a request the caller gave up on (timed out): its completion will not be reported. A write may
    /// still be applied.
    pub fn abandon(&mut self, id: RequestId) {
        self.proposals.retain(|_, (_, request)| *request != id);
        for reads in self.reads_awaiting_index.values_mut() {
            reads.retain(|r| r.id != id);
        }
        self.reads_awaiting_index.retain(|_, reads| !reads.is_empty());
        for reads in self.reads_awaiting_apply.values_mut() {
            reads.retain(|r| r.id != id);
        }
    }

    // ----- the Ready loop -----

    /// Carries out every `Ready` the core has, in contract order.
    fn process_ready(&mut self) -> Result<(), StorageError> {
        while self.raft.has_ready() {
            let ready = self.raft.ready();
            let result = match self.handle_ready(ready) {
                // The core is ahead of the disk: start it again from what is stored.
                Err(StorageError::NoSpace(reason)) => self.reload_after_no_space(reason),
                other => other,
            };
            if let Err(error) = result {
                self.failure = Some(error.clone());
                return Err(error);
            }
        }
        Ok(())
    }

    /// Persist, send, apply, answer reads, maybe snapshot.
    fn handle_ready(&mut self, ready: Ready) -> Result<(), StorageError> {
        self.persist(&ready)?;
        if ready.snapshot.is_some() || !ready.entries.is_empty() {
            self.space.failed_writes = 0; // what a full disk refused before fitted now
        }
        if self.recovery_unsettled && self.raft.may_settle_recovery() {
            // What recovery waited for (the floor's entries, the fenced term) is durable now: say it is over.
            self.storage.settle_recovery()?;
            self.recovery_unsettled = false;
        }
        for message in ready.messages {
            self.transport.send(message);
        }
        if let Some(snapshot) = ready.snapshot.as_ref().filter(|_| ready.snapshot_replaces_log) {
            self.install_snapshot(snapshot)?;
        }
        let reapplied_through = self.reapplied_through;
        for entry in ready.committed_entries.iter().filter(|entry| entry.index > reapplied_through) {
            self.apply(entry);
        }
        if ready.committed_entries.last().is_some_and(|entry| entry.index > reapplied_through) {
            self.reapplied_through = LogIndex(0); // every entry handed out again is behind: back to full strength
        }
        for read in ready.read_states {
            if let Some(waiting) = self.reads_awaiting_index.remove(&read.context) {
                self.reads_awaiting_apply.entry(read.index).or_default().extend(waiting);
            }
        }
        self.answer_applied_reads();
        self.maybe_snapshot()
    }

    /// Step 1 of the contract: snapshot, entries and hard state, then one sync.
    fn persist(&mut self, ready: &Ready) -> Result<(), StorageError> {
        if let Some(snapshot) = &ready.snapshot {
            self.storage.save_snapshot(snapshot, ready.snapshot_replaces_log)?;
        }
        if !ready.entries.is_empty() {
            self.storage.append(&ready.entries)?;
        }
        // A commit index alone need not be durable (after a crash it is learned again from the leader), so a
        // Ready that only advances it is written but not synced: the next sync carries it. On a full disk it
        // is not even written, to keep the log's remaining room for terms and votes.
        let vote_changed = ready.hard_state.is_some_and(|h| (h.term, h.vote) != self.synced_vote);
        if let Some(hard_state) = ready.hard_state.filter(|_| vote_changed || self.storage.has_space()) {
            self.storage.set_hard_state(hard_state)?;
        }
        if ready.snapshot.is_some() || !ready.entries.is_empty() || vote_changed {
            self.storage.sync()?;
            if let Some(hard_state) = ready.hard_state {
                self.synced_vote = (hard_state.term, hard_state.vote);
            }
        }
        Ok(())
    }

    /// Replaces the state machine with a snapshot from the leader. Proposals it covers end indeterminate:
    /// the snapshot does not say which entries it holds.
    fn install_snapshot(&mut self, snapshot: &tally_raft::Snapshot) -> Result<(), StorageError> {
        let index = snapshot.meta.index;
        if index == LogIndex(0) {
            return Ok(()); // a joining node's membership base: no state to restore
        }
        self.state_machine.restore(&snapshot.data).map_err(StorageError::Corrupt)?;
        assert_eq!(self.state_machine.applied_index(), index, "snapshot data does not match its index");
        let covered: Vec<LogIndex> = self.proposals.range(..=index).map(|(&i, _)| i).collect();
        for i in covered {
            let (_, id) = self.proposals.remove(&i).expect("listed above");
            let result = Err(RequestError::Indeterminate("log replaced by a snapshot".to_string()));
            self.completions.push(Completion { id, result });
        }
        Ok(())
    }

    /// Applies one committed entry and completes the proposal waiting on it.
    fn apply(&mut self, entry: &tally_raft::Entry) {
        let reply = match &entry.payload {
            EntryPayload::Command(data) => {
                Reply::Written { index: entry.index, output: self.state_machine.apply(entry.index, data) }
            }
            EntryPayload::Noop => {
                self.state_machine.skip(entry.index);
                Reply::MembershipChanged { index: entry.index }
            }
            EntryPayload::Membership(_) => {
                self.state_machine.skip(entry.index);
                Reply::MembershipChanged { index: entry.index }
            }
        };
        assert_eq!(self.state_machine.applied_index(), entry.index, "state machine skipped an entry");
        if let Some((term, id)) = self.proposals.remove(&entry.index) {
            let result = if term == entry.term { Ok(reply) } else { Err(RequestError::Dropped) };
            self.completions.push(Completion { id, result });
        }
    }

    /// Answers the reads whose read index is now applied.
    fn answer_applied_reads(&mut self) {
        let applied = self.state_machine.applied_index();
        let ready: Vec<LogIndex> = self.reads_awaiting_apply.range(..=applied).map(|(&i, _)| i).collect();
        for index in ready {
            for read in self.reads_awaiting_apply.remove(&index).expect("listed above") {
                self.answer_read(read.id, &read.query);
            }
        }
    }

    /// Answers a read from the current state.
    fn answer_read(&mut self, id: RequestId, query: &S::Query) {
        let output = self.state_machine.query(query);
        let index = self.state_machine.applied_index();
        self.completions.push(Completion { id, result: Ok(Reply::Read { index, output }) });
    }

    /// Every `snapshot_interval_entries` applied entries: snapshot the state machine, store it, and let
    /// the core compact its log.
    fn maybe_snapshot(&mut self) -> Result<(), StorageError> {
        let applied = self.state_machine.applied_index();
        let last_snapshot = self.raft.snapshot().meta.index;
        if applied.0 - last_snapshot.0 < self.config.snapshot_interval_entries {
            return Ok(());
        }
        let data = self.state_machine.snapshot();
        self.raft.compact(applied, data, self.config.snapshot_keep_entries);
        match self.storage.save_snapshot(self.raft.snapshot(), false) {
            // Nothing was written and the stored log still holds every entry: the core's snapshot lives in
            // memory until the next interval tries again (with space freed, maybe).
            Err(StorageError::NoSpace(_)) => return Ok(()),
            other => other?,
        }
        self.storage.compact(self.raft.first_index().prev())?;
        self.storage.sync()
    }

    /// Refuses input after a storage failure.
    fn check_running(&self) -> Result<(), StorageError> {
        self.failure.clone().map_or(Ok(()), Err)
    }

    // ----- introspection -----

    /// The consensus core, read-only.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state machine, read-only.
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }

    /// The transport (to drain an [`crate::Outbox`]).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The clock (to move a [`crate::ManualClock`]).
    pub fn clock_mut(&mut self) -> &mut C {
        &mut self.clock
    }

    /// The storage (to inject faults).
    pub fn storage_mut(&mut self) -> &mut D {
        &mut self.storage
    }

    /// Stops the node and returns its storage (to restart it, or crash it first).
    pub fn into_storage(self) -> D {
        self.storage
    }

    /// Whether the node stopped after a storage failure.
    pub fn has_failed(&self) -> bool {
        self.failure.is_some()
    }
}
