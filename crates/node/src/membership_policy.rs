//! The leader's membership policy: which single-server change, if any, to propose next.
//!
//! Nodes join as learners (added by the join call); this policy then, on the leader:
//!
//! 1. **removes a dead voter**: one not heard from for `dead_after_ms`, but only if the voters left behind
//!    still hold a quorum of healthy ones (heard from within `healthy_within_ms`), so a removal never costs
//!    the cluster its majority;
//! 2. **removes a dead learner**, so members that are gone for good do not pile up;
//! 3. **promotes a learner** while there are fewer than `target_voters` voters: the lowest id among the
//!    learners that are healthy and have been caught up ([`Raft::is_caught_up`]) for at least
//!    `promote_after_ms`; a lone voter waits for two such learners, so that the two-voter stage (where any
//!    failure stops the cluster) lasts one commit. The core refuses the promotion on its own if the learner
//!    fell behind meanwhile.
//!
//! Changes go one at a time: nothing is proposed while a membership change is uncommitted. The policy is pure
//! and deterministic: it is told what the leader heard and when, in milliseconds of the node's clock, so the
//! simulator can run it as is. A new leader starts with a fresh policy that counts every member as heard from
//! at the moment it took over, so a leader change never makes members look dead.

use std::collections::BTreeMap;

use tally_raft::{MembershipChange, NodeId, Raft, Term};

/// How the policy decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// How many voters the cluster should have (odd: 1, 3, 5 or 7). Learners beyond it stay learners.
    pub target_voters: usize,
    /// How long a learner must stay caught up and healthy before it is promoted.
    pub promote_after_ms: u64,
    /// How long a member may be silent before it is considered gone for good and removed.
    pub dead_after_ms: u64,
    /// A member heard from within this is healthy (counts towards the quorum a removal must keep).
    pub healthy_within_ms: u64,
}

impl PolicyConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    /// A sentence naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.target_voters, 1 | 3 | 5 | 7) {
            return Err(format!("voters must be 1, 3, 5 or 7, not {}", self.target_voters));
        }
        if self.healthy_within_ms == 0 || self.dead_after_ms < self.healthy_within_ms {
            return Err(format!(
                "the dead-node timeout ({} ms) must be at least the health window ({} ms), which must be positive",
                self.dead_after_ms, self.healthy_within_ms
            ));
        }
        Ok(())
    }
}

/// See the module doc.
///
/// Invariant: the state describes the leadership of `term` only; it is reset whenever the node is not the
/// leader of the term it tracks.
#[derive(Clone, Debug)]
pub struct MembershipPolicy {
    /// How it decides.
    config: PolicyConfig,
    /// The term this node leads and the policy state belongs to; `None` when not leading.
    leading: Option<(Term, u64)>,
    /// When each node was last heard from (any message), in clock milliseconds.
    last_heard: BTreeMap<NodeId, u64>,
    /// Since when each learner has been caught up without interruption.
    caught_up_since: BTreeMap<NodeId, u64>,
}

impl MembershipPolicy {
    /// A policy with `config`, which must be valid.
    ///
    /// # Panics
    /// If `config` is invalid (see [`PolicyConfig::validate`]).
    pub fn new(config: PolicyConfig) -> MembershipPolicy {
        if let Err(error) = config.validate() {
            panic!("invalid membership policy: {error}");
        }
        MembershipPolicy { config, leading: None, last_heard: BTreeMap::new(), caught_up_since: BTreeMap::new() }
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Records that a message from `from` arrived at `now_ms`.
    pub fn heard_from(&mut self, from: NodeId, now_ms: u64) {
        self.last_heard.insert(from, now_ms);
    }

    /// When `id` was last heard from, as far as this leader knows.
    pub fn last_heard(&self, id: NodeId) -> Option<u64> {
        self.last_heard.get(&id).copied().or(self.leading.map(|(_, since)| since))
    }

    /// The change to propose now, if any. Call it regularly (every few ticks) on every node: it does nothing
    /// unless the node leads, and tracks when learners caught up between calls.
    pub fn next_change(&mut self, raft: &Raft, now_ms: u64) -> Option<MembershipChange> {
        if !raft.is_leader() {
            self.leading = None;
            self.caught_up_since.clear();
            return None;
        }
        if self.leading.is_none_or(|(term, _)| term != raft.term()) {
            self.leading = Some((raft.term(), now_ms));
            self.last_heard.clear();
            self.caught_up_since.clear();
        }
        self.track_caught_up(raft, now_ms);
        if raft.membership_index() > raft.commit_index() {
            return None; // one change at a time
        }
        self.dead_voter_to_remove(raft, now_ms)
            .map(MembershipChange::Remove)
            .or_else(|| self.dead_learner(raft, now_ms).map(MembershipChange::Remove))
            .or_else(|| self.learner_to_promote(raft, now_ms).map(MembershipChange::AddVoter))
    }

    /// Updates `caught_up_since` for every learner: set when its match index reaches the commit index,
    /// cleared when it falls behind (or stops being a learner).
    fn track_caught_up(&mut self, raft: &Raft, now_ms: u64) {
        let learners = &raft.membership().learners;
        self.caught_up_since.retain(|id, _| learners.contains(id));
        for &learner in learners {
            if raft.is_caught_up(learner) && self.is_healthy(learner, now_ms) {
                self.caught_up_since.entry(learner).or_insert(now_ms);
            } else {
                self.caught_up_since.remove(&learner);
            }
        }
    }

    /// Whether `id` (never this node) was heard from within the health window.
    fn is_healthy(&self, id: NodeId, now_ms: u64) -> bool {
        self.last_heard(id).is_some_and(|heard| now_ms.saturating_sub(heard) < self.config.healthy_within_ms)
    }

    /// Whether `id` has been silent for the dead-node timeout.
    fn is_dead(&self, id: NodeId, now_ms: u64) -> bool {
        self.last_heard(id).is_some_and(|heard| now_ms.saturating_sub(heard) >= self.config.dead_after_ms)
    }

    /// A dead voter whose removal leaves a quorum of healthy voters, lowest id first.
    fn dead_voter_to_remove(&self, raft: &Raft, now_ms: u64) -> Option<NodeId> {
        let me = raft.id();
        let voters = &raft.membership().voters;
        voters.iter().copied().filter(|&id| id != me && self.is_dead(id, now_ms)).find(|&dead| {
            let remaining = voters.len() - 1;
            let healthy = voters.iter().filter(|&&id| id != dead && (id == me || self.is_healthy(id, now_ms))).count();
            healthy > remaining / 2
        })
    }

    /// A dead learner, lowest id first.
    fn dead_learner(&self, raft: &Raft, now_ms: u64) -> Option<NodeId> {
        raft.membership().learners.iter().copied().find(|&id| self.is_dead(id, now_ms))
    }

    /// The learner to promote, if the cluster is short of voters: the lowest id caught up long enough. A lone
    /// voter waits until two learners are ready: with two voters, either one failing stops the cluster (and
    /// then no leader could remove it), so that state should last one commit, not a promotion delay.
    fn learner_to_promote(&self, raft: &Raft, now_ms: u64) -> Option<NodeId> {
        let voters = raft.membership().voters.len();
        if voters >= self.config.target_voters {
            return None;
        }
        let mut ready = self.caught_up_since.iter().filter(|&(&id, &since)| {
            now_ms.saturating_sub(since) >= self.config.promote_after_ms && self.is_healthy(id, now_ms)
        });
        let first = ready.next().map(|(&id, _)| id);
        if voters == 1 && self.config.target_voters >= 3 && ready.next().is_none() {
            return None;
        }
        first
    }
}
