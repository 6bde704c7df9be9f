//! Election Safety (Raft §5.2, Figure 3): at most one leader can be elected in a given term.

use std::collections::BTreeMap;

use tally_raft::{NodeId, Raft, Term};

use super::Violation;

/// Remembers the leader of every term ever observed.
#[derive(Default)]
pub struct ElectionSafety {
    /// term -> the node seen leading it.
    leaders: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// Records the leaders among `nodes`; returns the nodes that became leader of a term for the first time.
    ///
    /// # Errors
    /// Two different leaders seen for one term (at any time, not only at once).
    pub fn check<'a>(&mut self, nodes: impl Iterator<Item = &'a Raft>) -> Result<Vec<NodeId>, Violation> {
        let mut new_leaders = Vec::new();
        for raft in nodes.filter(|r| r.is_leader()) {
            match self.leaders.insert(raft.term(), raft.id()) {
                None => new_leaders.push(raft.id()),
                Some(previous) if previous == raft.id() => {}
                Some(previous) => {
                    let detail = format!("term {} has two leaders: {previous} and {}", raft.term(), raft.id());
                    return Err(Violation { checker: "election_safety", detail });
                }
            }
        }
        Ok(new_leaders)
    }

    /// Number of terms that had a leader.
    pub fn terms_with_leader(&self) -> usize {
        self.leaders.len()
    }
}
