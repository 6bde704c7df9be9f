//! The operator: single-server membership changes and leadership transfers asked of the leader during the
//! safety phase, and removed nodes shut down once their removal is committed.
//!
//! Two operators: random changes of every kind, or (in half the membership runs) the server's own
//! [`tally_node::MembershipPolicy`], with spares joining as learners as the join call adds them.

use tally_raft::{Membership, MembershipChange, NodeId};

use super::{Simulation, Slot};

impl Simulation {
    /// Maybe asks the leader for one membership change: with the policy operator, see [`Self::run_policy`];
    /// otherwise at random, add a spare as learner, promote a learner, or demote or remove a member (never
    /// below three voters, so a crash still leaves a quorum possible), or transfer leadership.
    pub(super) fn change_membership(&mut self) {
        if self.params.membership_policy.is_some() {
            return self.run_policy();
        }
        if !self.rng.chance(self.params.membership_permille, 1_000) {
            return;
        }
        let Some(leader) = self.current_leader() else { return };
        let i = self.slot_of(leader);
        let membership = self.node(i).expect("the leader is up").raft().membership().clone();
        let outsiders = self.outsiders(&membership);
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
        if self.rng.chance(1, 4) && voters.len() > 1 {
            let target = self.pick(&voters);
            if target != leader {
                let result = self.node_mut(i).expect("the leader is up").transfer_leader(target);
                self.trace_event(|| format!("operator: transfer leadership {leader} -> {target}: {result:?}"));
                if let Err(tally_node::RequestError::Stopped(_)) = result {
                    self.crash(i, "sync failed on a leadership transfer");
                }
            }
            return;
        }
        let change = match self.rng.range(0, 4) {
            0 if !outsiders.is_empty() => MembershipChange::AddLearner(self.pick(&outsiders)),
            1 if !learners.is_empty() => MembershipChange::AddVoter(self.pick(&learners)),
            2 if voters.len() > 3 => MembershipChange::DemoteVoter(self.pick(&voters)),
            3 if voters.len() > 3 || !learners.is_empty() => {
                let candidates = if voters.len() > 3 { [voters, learners].concat() } else { learners };
                MembershipChange::Remove(self.pick(&candidates))
            }
            _ => return,
        };
        self.propose_change(i, leader, change);
    }

    /// The policy operator: spares join as learners now and then (the join call), and every 10 ms the leader's
    /// membership policy may propose one change (promote a caught-up learner, remove a member down too long).
    fn run_policy(&mut self) {
        let Some(leader) = self.current_leader() else { return };
        let i = self.slot_of(leader);
        let membership = self.node(i).expect("the leader is up").raft().membership().clone();
        let outsiders = self.outsiders(&membership);
        let change = if !outsiders.is_empty() && self.rng.chance(self.params.membership_permille, 1_000) {
            Some(MembershipChange::AddLearner(self.pick(&outsiders)))
        } else if self.now % 10 == 0 {
            let now = self.local_time(i);
            let Slot::Up(node) = &self.slots[i] else { unreachable!("the leader is up") };
            self.policies[i].next_change(node.raft(), now)
        } else {
            None
        };
        if let Some(change) = change {
            self.propose_change(i, leader, change);
        }
    }

    /// Spares that may be added: never members (ids are never reused) and not removed.
    fn outsiders(&self, membership: &Membership) -> Vec<NodeId> {
        self.ids
            .iter()
            .copied()
            .filter(|&id| {
                let i = self.slot_of(id);
                !membership.contains(id)
                    && i >= self.params.nodes
                    && !self.added[i]
                    && !matches!(self.slots[i], Slot::Removed)
            })
            .collect()
    }

    /// Proposes `change` to `leader`, in slot `i`.
    fn propose_change(&mut self, i: usize, leader: NodeId, change: MembershipChange) {
        let request = self.next_request;
        self.next_request += 1;
        let node = self.node_mut(i).expect("the leader is up");
        let result = node.propose_membership(request, change);
        self.trace_event(|| format!("operator: {change:?} proposed to {leader}"));
        if result.is_err() {
            self.crash(i, "sync failed on a membership change");
        }
    }

    /// Picks one of `ids` at random.
    fn pick(&mut self, ids: &[NodeId]) -> NodeId {
        ids[self.rng.range(0, ids.len() as u64) as usize]
    }

    /// Shuts down, for good, every node whose removal has been committed (an operator would
    /// decommission it), so a removed node cannot disrupt the cluster with elections it can never win.
    pub(super) fn shut_down_removed(&mut self) {
        // The newest committed membership ever known: the one at the highest commit index seen (not just
        // the leader's, which may be stale, nor only the running nodes', since the most advanced may crash).
        // Spares that were never added know no membership at all.
        let newest = (0..self.ids.len())
            .filter_map(|i| self.node(i))
            .map(|n| n.raft())
            .filter(|r| !r.membership().voters.is_empty())
            .max_by_key(|r| r.commit_index());
        if let Some(raft) = newest
            && raft.commit_index() > self.committed_membership.0
        {
            self.committed_membership = (raft.commit_index(), raft.committed_membership());
        }
        let membership = self.committed_membership.1.clone();
        let bootstrapped = self.params.nodes;
        for i in 0..self.ids.len() {
            let id = self.ids[i];
            // A spare that was never added is not removed; one that was added and is no longer a member is.
            let ever_member = i < bootstrapped || self.added[i];
            if membership.contains(id) {
                self.added[i] = true;
                continue;
            }
            if ever_member && !matches!(self.slots[i], Slot::Removed) {
                if self.node(i).is_some() {
                    self.crash(i, "removed from the cluster");
                }
                self.slots[i] = Slot::Removed;
                self.trace_event(|| format!("{id}: removed from the cluster and shut down"));
            }
        }
    }
}
