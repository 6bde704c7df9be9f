//! The operator: single-server membership changes proposed to the leader during the safety phase, and
//! removed nodes shut down once their removal is committed.

use tally_raft::{MembershipChange, NodeId};

use super::{Simulation, Slot};

impl Simulation {
    /// Maybe asks the leader for one membership change: add a spare as learner, promote a learner, or
    /// demote or remove a member (never below three voters, so a crash still leaves a quorum possible).
    pub(super) fn change_membership(&mut self) {
        if !self.rng.chance(self.params.membership_permille, 1_000) {
            return;
        }
        let Some(leader) = self.current_leader() else { return };
        let i = self.slot_of(leader);
        let membership = self.node(i).expect("the leader is up").raft().membership().clone();
        let outsiders: Vec<NodeId> = self
            .ids
            .iter()
            .copied()
            .filter(|&id| !membership.contains(id) && !matches!(self.slots[self.slot_of(id)], Slot::Removed))
            .collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
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

    /// Shuts down, for good, every node whose removal the leader has committed (an operator would
    /// decommission it), so a removed node cannot disrupt the cluster with elections it can never win.
    pub(super) fn shut_down_removed(&mut self) {
        let Some(leader) = self.current_leader() else { return };
        let raft = self.node(self.slot_of(leader)).expect("the leader is up").raft();
        if raft.membership_index() > raft.commit_index() {
            return;
        }
        let membership = raft.membership().clone();
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
