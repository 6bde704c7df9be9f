//! What applying one log entry produced, returned to the client waiting on that entry.

use crate::{AuthError, TxnOpResult};

/// What applying one command produced.
///
/// Every variant carries the entry's `index`, which the HTTP layer returns as `X-Tally-Index` and
/// which a client can use as the cas value for its next write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The put was applied.
    Put {
        /// The entry's index, now the key's modify index.
        index: u64,
    },
    /// The delete was applied.
    Delete {
        /// The entry's index.
        index: u64,
        /// Whether the key existed; `false` is still a success (deletes are idempotent).
        deleted: bool,
    },
    /// The prefix delete was applied.
    DeletePrefix {
        /// The entry's index.
        index: u64,
        /// How many keys it removed; 0 is still a success.
        deleted: u64,
    },
    /// The transaction was applied: its compares were evaluated and one branch ran.
    Txn {
        /// The entry's index, the modify index of every key the branch wrote.
        index: u64,
        /// Whether every compare held, so the `success` branch ran (else `failure`).
        succeeded: bool,
        /// One result per op of the branch that ran, in op order.
        results: Vec<TxnOpResult>,
    },
    /// The cas condition did not hold; nothing changed.
    CasFailed {
        /// The entry's index.
        index: u64,
        /// The key's modify index at that point, 0 when absent, so the client can retry with it.
        current_modify_index: u64,
    },
    /// A cluster metadata command (member addresses, cluster id) was applied.
    Cluster {
        /// The entry's index.
        index: u64,
    },
    /// An auth command was applied.
    Auth {
        /// The entry's index.
        index: u64,
    },
    /// An auth command was refused (unknown name, no-lockout rule, ...); nothing changed. Deterministic, so it
    /// is returned to the client.
    AuthRefused {
        /// The entry's index.
        index: u64,
        /// Why.
        error: AuthError,
    },
    /// The payload did not decode, or decoded to a transaction that breaks [`crate::Txn::validate`]; nothing
    /// changed. This is deterministic (every node gets the same answer), so it is returned to the client rather
    /// than treated as a local failure.
    Invalid {
        /// The entry's index.
        index: u64,
        /// The decode or validation error, rendered for the client.
        reason: String,
    },
}

impl Response {
    /// The index of the entry that produced this response.
    pub fn index(&self) -> u64 {
        match self {
            Response::Put { index }
            | Response::Delete { index, .. }
            | Response::DeletePrefix { index, .. }
            | Response::Txn { index, .. }
            | Response::CasFailed { index, .. }
            | Response::Cluster { index }
            | Response::Auth { index }
            | Response::AuthRefused { index, .. }
            | Response::Invalid { index, .. } => *index,
        }
    }
}
