//! Leader Completeness (Raft §5.4, Figure 3): if a log entry is committed in a given term, that entry will
//! be present in the logs of the leaders for all higher-numbered terms.
//!
//! An entry some node applied while in term `t` was committed in a term `<= t`; so every entry applied by a
//! node of a term below a new leader's term must be in the new leader's log (or its snapshot).

use tally_raft::Raft;

use super::{Check, StateMachineSafety, violation};
use crate::hash::applied_fingerprint;

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
        for (&index, &(fingerprint, applied_term)) in applied.applied.range(leader.first_index()..) {
            if applied_term >= term {
                continue;
            }
            let held = leader.entry(index).map(|e| applied_fingerprint(&e.payload));
            if held != Some(fingerprint) {
                let detail = format!(
                    "new leader {} of term {term} lacks committed entry {index} (applied in term {applied_term}): has {held:?}",
                    leader.id()
                );
                return violation("leader_completeness", detail);
            }
        }
        Ok(())
    }
}
