//! Client requests as the node sees them, and how they end.

use tally_raft::{LogIndex, NodeId, ProposeError};

use crate::state_machine::StateMachine;

/// The caller's identifier of a request; unique among the requests in flight on one node.
pub type RequestId = u64;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read began (ReadIndex round through the leader).
    Linearizable,
    /// Whatever this node has applied; may be behind the leader.
    Stale,
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The core refused it (not the leader, overloaded, ...). Nothing was written: safe to retry elsewhere.
    #[error(transparent)]
    Rejected(#[from] ProposeError),
    /// The proposal's log slot was taken by another leader's entry: it was definitely not applied.
    #[error("the proposal was overwritten by a new leader and not applied")]
    Dropped,
    /// The outcome is unknown (e.g. a snapshot replaced the log before the proposal's entry was seen):
    /// the write may or may not have been applied.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// This node's storage is full or over its quota (see [`crate::StorageAlarm`]): the write was refused
    /// before anything was written. Safe to retry later, or through another node once leadership moved.
    #[error("{0}; nothing was written")]
    NoSpace(String),
    /// The node's storage failed; it accepts nothing more.
    #[error("node stopped after a storage failure: {0}")]
    Stopped(String),
}

impl RequestError {
    /// The leader hint, if the error carries one.
    pub fn leader_hint(&self) -> Option<NodeId> {
        match self {
            RequestError::Rejected(ProposeError::NotLeader { leader }) => *leader,
            _ => None,
        }
    }
}

/// A successful request's result.
#[derive(Clone, Debug)]
pub enum Reply<S: StateMachine> {
    /// A command was committed and applied at `index`.
    Written {
        /// The entry's index.
        index: LogIndex,
        /// What applying it produced.
        output: S::Output,
    },
    /// A membership change was committed at `index`.
    MembershipChanged {
        /// The entry's index.
        index: LogIndex,
    },
    /// A read was answered from state applied up to `index`.
    Read {
        /// The applied index the answer reflects.
        index: LogIndex,
        /// The answer.
        output: S::QueryOutput,
    },
}

/// The end of one request.
#[derive(Clone, Debug)]
pub struct Completion<S: StateMachine> {
    /// The request.
    pub id: RequestId,
    /// How it ended.
    pub result: Result<Reply<S>, RequestError>,
}
