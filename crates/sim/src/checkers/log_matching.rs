//! Log Matching (Raft §5.3, Figure 3): if two logs contain an entry with the same index and term, the logs
//! are identical in all entries up through that index.
//!
//! Checked incrementally: every `(index, term)` ever seen in any log must always carry the same payload and
//! follow an entry of the same term. By induction on the index, that is exactly the property.

use std::collections::HashMap;

use tally_raft::{LogIndex, Raft, Term};

use super::{Check, violation};
use crate::hash::entry_fingerprint;

/// What is known of every `(index, term)` seen, and how far each node's log was verified.
#[derive(Default)]
pub struct LogMatching {
    /// (index, term) -> (payload fingerprint, term of the previous entry).
    seen: HashMap<(u64, u64), (u64, u64)>,
    /// Per node: the last index verified, with its term then. Entries up to it are re-verified only if
    /// that entry changed (the log was truncated below it).
    verified: HashMap<u64, (LogIndex, Term)>,
}

impl LogMatching {
    /// Verifies the entries of `raft`'s log not verified yet.
    ///
    /// # Errors
    /// An `(index, term)` with two different payloads or predecessors.
    pub fn check(&mut self, raft: &Raft) -> Check {
        let (mut from, term) = self.verified.get(&raft.id().0).copied().unwrap_or_default();
        if from > LogIndex(0) && raft.term_at(from) != Some(term) {
            from = raft.commit_index().min(from).prev(); // truncated or compacted: re-verify the unsure part
        }
        from = from.max(raft.first_index().prev());
        let mut index = from.next();
        while index <= raft.last_index() {
            let entry = raft.entry(index).expect("held");
            let prev_term = raft.term_at(index.prev()).map_or(u64::MAX, |t| t.0);
            let fact = (entry_fingerprint(&entry.payload), prev_term);
            let known = *self.seen.entry((index.0, entry.term.0)).or_insert(fact);
            let prev_unknown = known.1 == u64::MAX || prev_term == u64::MAX;
            if known.0 != fact.0 || (!prev_unknown && known.1 != fact.1) {
                let detail = format!(
                    "{} holds entry {}@{} (payload {:x}, prev term {}) but another log had (payload {:x}, prev term {})",
                    raft.id(),
                    index,
                    entry.term,
                    fact.0,
                    fact.1,
                    known.0,
                    known.1
                );
                return violation("log_matching", detail);
            }
            index = index.next();
        }
        let last = raft.last_index();
        self.verified.insert(raft.id().0, (last, raft.last_term()));
        Ok(())
    }
}
