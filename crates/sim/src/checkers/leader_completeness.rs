//! Leader Completeness (Raft §5.4, Figure 3): if a log entry is committed in a given term, that entry will
//! be present in the logs of the leaders for all higher-numbered terms.
//!
//! An entry some node knew committed while in term `t` was committed in a term `<= t`; so every entry known
//! committed by a node of a term below a new leader's term must be in the new leader's log (or snapshot).

use tally_raft::Raft;

use super::{Check, StateMachineSafety, violation};

/// Stateless: it reads what [`StateMachineSafety`] recorded.
#[derive(Default)]
pub struct LeaderCompleteness;

impl LeaderCompleteness {
    /// Checks a node that just became leader.
    ///
    /// # Errors
    /// A committed entry of an earlier term missing from, or different in, the new leader's log.
    pub fn check(&self, leader: &Raft, applied: &StateMachineSafety) -> Check {
        let term = leader.term();
        for (&index, &(entry_term, commit_term)) in applied.committed.range(leader.first_index()..) {
            if commit_term >= term {
                continue;
            }
            let held = leader.term_at(index);
            if held != Some(entry_term) {
                let detail = format!(
                    "new leader {} of term {term} lacks entry {index}@{entry_term} committed by term {commit_term}: has {held:?}",
                    leader.id()
                );
                return violation("leader_completeness", detail);
            }
        }
        Ok(())
    }
}
