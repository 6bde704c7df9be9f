//! No acknowledged write is lost: a write acknowledged to a client at index `i` is the entry every node
//! applies at `i`, and at the end every node has applied it.

use tally_raft::LogIndex;

use super::{Check, StateMachineSafety, violation};

/// The writes acknowledged to clients.
#[derive(Default)]
pub struct Durability {
    /// (index, command fingerprint) of every acknowledged write.
    acknowledged: Vec<(LogIndex, u64)>,
}

impl Durability {
    /// Records an acknowledgement and checks it against what was applied.
    ///
    /// # Errors
    /// The entry applied at `index` is not the acknowledged command.
    pub fn acknowledge(&mut self, index: LogIndex, fingerprint: u64, applied: &StateMachineSafety) -> Check {
        self.acknowledged.push((index, fingerprint));
        match applied.applied.get(&index) {
            Some(&(f, _)) if f == fingerprint => Ok(()),
            other => violation(
                "durability",
                format!("write acknowledged at {index} ({fingerprint:x}) but applied there: {other:?}"),
            ),
        }
    }

    /// At the end: every node has applied past every acknowledged write, and (by state machine safety) the
    /// same entry.
    ///
    /// # Errors
    /// A node that never applied an acknowledged write.
    pub fn check_final(&self, node_applied: &[(tally_raft::NodeId, LogIndex)]) -> Check {
        let Some(&(highest, _)) = self.acknowledged.iter().max_by_key(|(i, _)| *i) else { return Ok(()) };
        for &(node, applied) in node_applied {
            if applied < highest {
                return violation("durability", format!("{node} applied only up to {applied}, acknowledged {highest}"));
            }
        }
        Ok(())
    }

    /// Writes acknowledged.
    pub fn count(&self) -> usize {
        self.acknowledged.len()
    }
}
