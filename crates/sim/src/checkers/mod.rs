//! The safety properties of Raft (paper Figure 3), checked after every simulated millisecond, one file per
//! property, plus the client-visible ones (acknowledged writes survive, linearizability, every answer equals a
//! sequential execution of the committed log, index order agrees with real time, every watcher gets exactly the
//! committed changes it follows) and agreement on the replicated auth state.

mod auth_agreement;
mod durability;
mod election_safety;
mod leader_completeness;
mod log_matching;
mod real_time_order;
mod state_machine_safety;
mod txn_serializability;
mod watch_exactly_once;

pub use auth_agreement::AuthAgreement;
pub use durability::Durability;
pub use election_safety::ElectionSafety;
pub use leader_completeness::LeaderCompleteness;
pub use log_matching::LogMatching;
pub use real_time_order::{OrderKind, RealTimeOrder, TimedOp};
pub use state_machine_safety::StateMachineSafety;
pub use txn_serializability::{Accounts, Observation, TxnSerializability};
pub use watch_exactly_once::{WatchCounts, WatchEvent, WatchExactlyOnce};

use std::fmt;

/// A broken property: which checker saw it, and what it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker's name, e.g. `election_safety`.
    pub checker: &'static str,
    /// What went wrong, with the values involved.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.checker, self.detail)
    }
}

/// Shorthand for a checker result.
pub type Check = Result<(), Violation>;

/// Builds a violation.
pub fn violation(checker: &'static str, detail: String) -> Check {
    Err(Violation { checker, detail })
}
