//! Errors the core returns to its caller: all are expected operating conditions, none is fatal.

use crate::types::NodeId;

/// Why a proposal, read or leadership request was refused. Nothing changed in the core.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// Only the leader accepts this; `leader` is the current leader if known.
    #[error("not the leader (leader: {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        /// The leader this node knows of, as a hint for the client.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is under way; proposals are refused until it ends.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// Too many proposals are not committed yet; retry later.
    #[error("too many uncommitted entries ({0}); retry later")]
    Overloaded(usize),
    /// A membership change is already uncommitted, or the leader has not committed an entry in its term yet.
    #[error("another membership change is in progress")]
    MembershipChangePending,
    /// The membership change makes no sense for the current membership.
    #[error("invalid membership change: {0}")]
    InvalidMembershipChange(String),
    /// The transfer target is not a voter other than the leader.
    #[error("cannot transfer leadership to {0}: not another voter")]
    InvalidTransferTarget(NodeId),
}
