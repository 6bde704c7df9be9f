//! State Machine Safety (Raft §5.4.3, Figure 3): if a server has applied a log entry at a given index, no
//! other server will ever apply a different log entry for the same index. Checked on what each node's
//! state machine actually applied, plus the state fingerprint at every applied index (keys, cluster metadata
//! and the auth state: `KvStore::state_checksum` covers all three).

use std::collections::{BTreeMap, HashMap};

use tally_raft::{LogIndex, NodeId, Term};

use super::{Check, violation};

/// Every entry applied anywhere, and the state after it.
#[derive(Default)]
pub struct StateMachineSafety {
    /// index -> (fingerprint of the applied command, or 0 if skipped; the lowest term of a node seen applying
    /// it, an upper bound of the term in which it was committed).
    pub applied: BTreeMap<LogIndex, (u64, Term)>,
    /// Every index some node knew committed -> (term of the entry there, lowest term of a node seen knowing
    /// it committed: an upper bound of the term in which it was committed).
    pub committed: BTreeMap<LogIndex, (Term, Term)>,
    /// applied index -> state checksum after it.
    checksums: HashMap<u64, u64>,
}

impl StateMachineSafety {
    /// Records that `node`, in `term`, applied `fingerprint` at `index`.
    ///
    /// # Errors
    /// Another node applied something else at that index.
    pub fn record_apply(&mut self, node: NodeId, term: Term, index: LogIndex, fingerprint: u64) -> Check {
        let known = self.applied.entry(index).or_insert((fingerprint, term));
        if known.0 != fingerprint {
            let detail = format!("{node} applied {fingerprint:x} at {index} but another node applied {:x}", known.0);
            return violation("state_machine_safety", detail);
        }
        known.1 = known.1.min(term);
        Ok(())
    }

    /// Records that `node`, in `term`, knows the entry of `entry_term` at `index` is committed.
    ///
    /// # Errors
    /// Another node knew a different entry committed at that index.
    pub fn record_commit(&mut self, node: NodeId, term: Term, index: LogIndex, entry_term: Term) -> Check {
        let known = self.committed.entry(index).or_insert((entry_term, term));
        if known.0 != entry_term {
            let detail =
                format!("{node} has entry {index}@{entry_term} committed but another node had {index}@{}", known.0);
            return violation("state_machine_safety", detail);
        }
        known.1 = known.1.min(term);
        Ok(())
    }

    /// Records `node`'s state checksum at `applied`.
    ///
    /// # Errors
    /// Another node had a different state at the same applied index.
    pub fn record_state(&mut self, node: NodeId, applied: LogIndex, checksum: u64) -> Check {
        let known = *self.checksums.entry(applied.0).or_insert(checksum);
        if known != checksum {
            let detail = format!("{node} has state {checksum:x} at applied {applied}, another node had {known:x}");
            return violation("state_machine_safety", detail);
        }
        Ok(())
    }
}
