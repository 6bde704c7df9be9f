//! Running the checkers: after every step, at the end of the liveness phase, and over the whole history.

use tally_node::StateMachine;
use tally_raft::{LogIndex, NodeId};

use tally_kv::Response;
use tally_node::{KvQuery, KvQueryOutput, ReadConsistency};

use super::{Simulation, Slot};
use crate::checkers::{Observation, OrderKind, TimedOp, Violation};
use crate::client::Pending;
use crate::linearizability::check_kv_history;

/// Search budget of the linearizability checker, per key.
const LINEARIZABILITY_BUDGET_PER_KEY: u64 = 2_000_000;

/// How often (ms) the O(n) invariant checks of each core run.
const DEEP_CHECK_INTERVAL_MS: u64 = 50;

impl Simulation {
    /// Feeds the entries each node applied this step (and those of nodes that crashed since the last step) to
    /// the state machine safety checker and the reference execution of the log.
    pub(super) fn record_applies(&mut self) -> Result<(), Violation> {
        for (id, term, applied) in std::mem::take(&mut self.unrecorded) {
            for entry in applied {
                self.state_machine_safety.record_apply(id, term, entry.index, entry.fingerprint)?;
                self.txn_serializability.record_apply(entry.index.0, entry.command);
            }
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let Slot::Up(node) = slot else { continue };
            let (id, term) = (node.raft().id(), node.raft().term());
            let applied = node.state_machine().take_applied();
            let raft = node.raft();
            let mut index = self.commit_seen[i].max(raft.first_index().prev()).next();
            while index <= raft.commit_index() {
                if let Some(entry_term) = raft.term_at(index) {
                    self.state_machine_safety.record_commit(id, term, index, entry_term)?;
                }
                index = index.next();
            }
            self.commit_seen[i] = raft.commit_index();
            for entry in applied {
                self.state_machine_safety.record_apply(id, term, entry.index, entry.fingerprint)?;
                self.txn_serializability.record_apply(entry.index.0, entry.command);
            }
            let applied_index = node.state_machine().applied_index();
            if applied_index != self.observed[i].2 {
                self.observed[i].2 = applied_index;
                // The auth state first: a difference there is reported as such, not only as a checksum. The
                // checksum is computed only here, when the state may have changed.
                self.auth_agreement.record(id, applied_index, node.state_machine().kv.auth())?;
                let checksum = node.state_machine().state_checksum();
                self.state_machine_safety.record_state(id, applied_index, checksum)?;
            }
        }
        Ok(())
    }

    /// Moves the reference execution of the log forward (handing its changes to the watch checker) and lets the
    /// answer checkers forget what no later answer needs. The reference stops at the slowest running node that
    /// has caught up with it, so the answers of every such node arrive ahead of it (a node that restarted behind
    /// it is checked on a replay); it keeps its past back to the oldest snapshot a node could restart from.
    pub(super) fn check_answers(&mut self) -> Result<(), Violation> {
        let reference = self.txn_serializability.applied_index();
        let mut target = u64::MAX;
        for i in 0..self.slots.len() {
            match &self.slots[i] {
                Slot::Up(node) => {
                    let applied = node.state_machine().applied_index().0;
                    if applied >= reference {
                        target = target.min(applied);
                    }
                    if applied > 0 {
                        self.restart_floor[i] = Some(node.raft().snapshot().meta.index.0);
                    }
                }
                Slot::Removed => self.restart_floor[i] = None,
                Slot::Down { .. } | Slot::Empty => {}
            }
        }
        self.txn_serializability.advance(target)?;
        let changes = self.txn_serializability.take_new_changes();
        self.watch_exactly_once.advance(changes, self.txn_serializability.applied_index())?;
        let floor = self.restart_floor.iter().flatten().min().copied().unwrap_or(u64::MAX);
        self.txn_serializability.retain_from(floor);
        let oldest_call = self.clients.iter().filter_map(|c| c.pending.as_ref()).map(|p| p.sent_at).min();
        let oldest_call = oldest_call.into_iter().chain(self.oldest_watch_read()).min();
        self.real_time_order.forget_before(oldest_call.unwrap_or(self.now));
        Ok(())
    }

    /// Hands an acknowledged write to the answer checkers: its response must be the log's at `index`, and
    /// `index` must follow every index returned before it was called.
    pub(super) fn check_write(
        &mut self,
        pending: &Pending,
        index: LogIndex,
        response: &Response,
    ) -> Result<(), Violation> {
        self.txn_serializability.observe(index.0, Observation::Write(response.clone()))?;
        let op = TimedOp {
            request: pending.request,
            call: pending.sent_at,
            ret: self.now,
            index: index.0,
            kind: OrderKind::Write,
        };
        self.real_time_order.record(op)
    }

    /// Hands an answered read to the answer checkers: its answer must be the state at `index`, and a
    /// linearizable one must not be older than anything returned before it was called (a stale read promises
    /// no recency).
    pub(super) fn check_read(
        &mut self,
        pending: &Pending,
        index: LogIndex,
        query: KvQuery,
        output: &KvQueryOutput,
        consistency: ReadConsistency,
    ) -> Result<(), Violation> {
        self.txn_serializability.observe(index.0, Observation::Read { query, output: output.clone() })?;
        if consistency == ReadConsistency::Stale {
            return Ok(());
        }
        let op = TimedOp {
            request: pending.request,
            call: pending.sent_at,
            ret: self.now,
            index: index.0,
            kind: OrderKind::Read,
        };
        self.real_time_order.record(op)
    }

    /// The per-step checks: election safety, log matching, leader completeness, core invariants.
    pub(super) fn check_step(&mut self) -> Result<(), Violation> {
        let rafts: Vec<_> =
            self.slots.iter().filter_map(|s| if let Slot::Up(n) = s { Some(n.raft()) } else { None }).collect();
        let new_leaders = self.election_safety.check(rafts.iter().copied())?;
        for raft in &rafts {
            self.log_matching.check(raft)?;
        }
        for id in new_leaders {
            let raft = rafts.iter().find(|r| r.id() == id).expect("leader is up");
            self.leader_completeness.check(raft, &self.state_machine_safety)?;
        }
        if self.now % DEEP_CHECK_INTERVAL_MS == 0 {
            for raft in &rafts {
                raft.check_invariants();
            }
        }
        self.trace_role_changes();
        Ok(())
    }

    /// Traces each node's role and term when they change.
    fn trace_role_changes(&mut self) {
        for i in 0..self.ids.len() {
            let Some(node) = self.node(i) else { continue };
            let (role, term) = (node.raft().role(), node.raft().term());
            if (role, term) != (self.observed[i].0, self.observed[i].1) {
                self.observed[i].0 = role;
                self.observed[i].1 = term;
                let id = self.ids[i];
                self.trace_event(|| format!("{id}: {role:?} in term {term}"));
            }
        }
    }

    /// Whether every node is up, one leader leads them all, and every node applied the same last index
    /// with the same state.
    pub(super) fn converged(&self) -> bool {
        self.convergence_problem().is_none()
    }

    /// What keeps the cluster from having converged, if anything: every member of the leader's membership
    /// must be up, follow the one leader, and have applied the leader's last index with the same state.
    fn convergence_problem(&self) -> Option<String> {
        let up: Vec<_> = (0..self.ids.len()).filter_map(|i| self.node(i)).collect();
        let leaders: Vec<_> = up.iter().filter(|n| n.raft().is_leader()).collect();
        let [leader] = leaders.as_slice() else { return Some(format!("{} leaders", leaders.len())) };
        let target = (leader.raft().last_index(), leader.state_machine().state_checksum());
        for member in leader.raft().membership().members() {
            let Some(node) = self.node(self.slot_of(member)) else { return Some(format!("member {member} is down")) };
            let raft = node.raft();
            if raft.leader_id() != Some(leader.raft().id()) || raft.term() != leader.raft().term() {
                return Some(format!("{} follows {:?} in term {}", raft.id(), raft.leader_id(), raft.term()));
            }
            let state = (node.state_machine().applied_index(), node.state_machine().state_checksum());
            if state != target {
                return Some(format!(
                    "{} applied {} (state {:x}), leader has {:?}",
                    raft.id(),
                    state.0,
                    state.1,
                    target
                ));
            }
        }
        None
    }

    /// After healing: a leader was elected, a write committed, and all nodes converged within the bound.
    pub(super) fn check_liveness(&self, acked_before_heal: u64) -> Result<(), Violation> {
        if let Some(problem) = self.convergence_problem() {
            let detail = format!("not converged {} ms after healing: {problem}", self.params.liveness_ms);
            return Err(Violation { checker: "liveness", detail });
        }
        if self.writes_acked == acked_before_heal {
            let detail = format!("no write acknowledged within {} ms of healing", self.params.liveness_ms);
            return Err(Violation { checker: "liveness", detail });
        }
        Ok(())
    }

    /// End of run: every acknowledged write is on every node, every watcher caught up, and the history is
    /// linearizable.
    pub(super) fn check_final(&mut self) -> Result<(), Violation> {
        let leader = self.current_leader().expect("converged: one leader");
        let members: Vec<NodeId> = self.node(self.slot_of(leader)).expect("up").raft().membership().members().collect();
        let applied: Vec<(NodeId, LogIndex)> = members
            .iter()
            .filter_map(|&id| self.node(self.slot_of(id)))
            .map(|n| (n.raft().id(), n.state_machine().applied_index()))
            .collect();
        self.durability.check_final(&applied)?;
        self.txn_serializability.finish()?;
        self.check_watchers_final()?;
        let (checked, replayed, unchecked) = self.txn_serializability.counts();
        let ordered = self.real_time_order.checked();
        self.trace_event(|| {
            format!("answers: {checked} equal the log's at their index ({replayed} on a replay, {unchecked} too old to check), {ordered} in real-time order")
        });
        let ops: Vec<_> = self
            .history
            .iter()
            .zip(&self.discarded)
            .filter(|(_, discarded)| !**discarded)
            .map(|(op, _)| op.clone())
            .collect();
        let report = check_kv_history(&ops, LINEARIZABILITY_BUDGET_PER_KEY);
        self.unchecked_keys = report.unknown_keys.len();
        if let Some(violation) = report.violations.first() {
            let detail = format!("key {}: {}", String::from_utf8_lossy(&violation.key), violation.explanation);
            return Err(Violation { checker: "linearizability", detail });
        }
        Ok(())
    }
}
