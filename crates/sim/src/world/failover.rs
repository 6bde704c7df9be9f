//! Measuring one failover: a calm cluster loses its leader for good, and the time until a new leader has
//! committed an entry of its own term is counted, with every checker running throughout.

use tally_raft::{NodeId, Term};

use super::{Simulation, Slot};
use crate::checkers::Violation;

/// How long a calm cluster gets to elect its first leader and commit in its term, in simulated ms.
const FIRST_LEADER_BOUND_MS: u64 = 10_000;
/// How long the survivors get to elect a new leader that commits, in simulated ms.
const FAILOVER_BOUND_MS: u64 = 20_000;

/// One measured failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverSample {
    /// Simulated ms from the leader's crash until a new leader committed an entry of its term.
    pub ms: u64,
    /// The same in ticks of the nodes' (nominal) clocks.
    pub ticks: u64,
    /// Elections held: the new leader's term minus the crashed leader's (1: the first election won).
    pub rounds: u64,
    /// Whether the new leader is the surviving voter with the highest id.
    pub highest_id_won: bool,
}

impl Simulation {
    /// Runs the cluster until it has a leader that committed in its term (and at least `warmup_ms` passed),
    /// crashes that leader for good, and measures the failover.
    ///
    /// # Errors
    /// A checker's violation, or no leader within the bounds (reported as `liveness`).
    pub fn measure_failover(mut self, warmup_ms: u64) -> Result<FailoverSample, Violation> {
        let (leader, old_term) = loop {
            self.step()?;
            match self.leader_committed_in_term(Term(0)) {
                Some(found) if self.now >= warmup_ms => break found,
                _ if self.now >= warmup_ms + FIRST_LEADER_BOUND_MS => {
                    return Err(liveness(format!("no leader within {FIRST_LEADER_BOUND_MS} ms")));
                }
                _ => {}
            }
        };
        let i = self.slot_of(leader);
        self.crash(i, "crash for good (failover measurement)");
        self.slots[i] = Slot::Removed;
        let crashed_at = self.now;
        let (new_leader, new_term) = loop {
            self.step()?;
            if let Some(found) = self.leader_committed_in_term(old_term.next()) {
                break found;
            }
            if self.now >= crashed_at + FAILOVER_BOUND_MS {
                return Err(liveness(format!("no new leader within {FAILOVER_BOUND_MS} ms of {leader}'s crash")));
            }
        };
        let highest_survivor = self.ids.iter().copied().filter(|&id| id != leader).max();
        let ms = self.now - crashed_at;
        Ok(FailoverSample {
            ms,
            ticks: ms / self.params.tick_interval_ms,
            rounds: new_term.0 - old_term.0,
            highest_id_won: Some(new_leader) == highest_survivor,
        })
    }

    /// The running leader, with its term, if its term is at least `min_term` and its commit index covers
    /// an entry of that term (its no-op: from then on it serves writes).
    fn leader_committed_in_term(&self, min_term: Term) -> Option<(NodeId, Term)> {
        let leader = self.current_leader()?;
        let raft = self.node(self.slot_of(leader))?.raft();
        let committed_own = raft.term_at(raft.commit_index()) == Some(raft.term());
        (raft.term() >= min_term && committed_own).then(|| (leader, raft.term()))
    }
}

/// A failover that did not happen in time.
fn liveness(detail: String) -> Violation {
    Violation { checker: "liveness", detail }
}
