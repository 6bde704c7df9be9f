//! Why a transaction is refused: [`TxnError`], naming the compare or op by its position.

use std::fmt;

use super::CompareOp;
use crate::show_bytes;

/// One of a transaction's three lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpList {
    /// The guards.
    Compare,
    /// The ops run when the guards hold.
    Success,
    /// The ops run when a guard fails.
    Failure,
}

impl OpList {
    /// The list's name as in the HTTP API's JSON: `compare`, `success`, `failure`.
    pub fn name(self) -> &'static str {
        match self {
            OpList::Compare => "compare",
            OpList::Success => "success",
            OpList::Failure => "failure",
        }
    }
}

impl fmt::Display for OpList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a compare or op sits in its transaction; shown as `success[2]`, the JSON path a client wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpPosition {
    /// Which list.
    pub list: OpList,
    /// Its 0-based position in that list.
    pub index: usize,
}

impl fmt::Display for OpPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)
    }
}

/// Why a transaction is not well formed, or cannot be run the way it was asked to. Deterministic: every node
/// refuses the same transaction the same way (at apply it becomes [`crate::Response::Invalid`]).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// A list holds more than the hard cap.
    #[error("{list} has {count} entries, over the limit of {max}; split the transaction")]
    TooManyOps {
        /// Which list.
        list: OpList,
        /// How many it holds.
        count: usize,
        /// The cap ([`super::TXN_OPS_MAX`]).
        max: usize,
    },
    /// One branch writes (puts or deletes) the same key twice.
    #[error("{at}: key {} is written twice (first in {first}); write each key once per branch", show_bytes(key))]
    WrittenTwice {
        /// The second write.
        at: OpPosition,
        /// The key.
        key: Vec<u8>,
        /// The first write.
        first: OpPosition,
    },
    /// One branch writes a key inside a prefix it also deletes.
    #[error(
        "{at}: key {} is inside prefix {}, which {prefix_at} deletes; a branch may not both delete a prefix and \
         write a key under it",
        show_bytes(key),
        show_bytes(prefix)
    )]
    WriteInDeletedPrefix {
        /// The write of the key.
        at: OpPosition,
        /// The key.
        key: Vec<u8>,
        /// The deleted prefix.
        prefix: Vec<u8>,
        /// The prefix delete.
        prefix_at: OpPosition,
    },
    /// A prefix delete names the empty prefix.
    #[error("{at}: delete_prefix needs a non-empty prefix (deleting every key at once is not offered)")]
    EmptyDeletePrefix {
        /// The prefix delete.
        at: OpPosition,
    },
    /// An `exists` compare with `<` or `>`.
    #[error("{at}: an exists compare takes only == or !=, not {}", op.symbol())]
    OrderedExists {
        /// The compare.
        at: OpPosition,
        /// The op given.
        op: CompareOp,
    },
    /// A transaction with writes was asked as a read-only query.
    #[error("{at} is a {op}, so the transaction writes and must go through the log, not be asked as a read")]
    NotReadOnly {
        /// The first write.
        at: OpPosition,
        /// Its name (`put`, `delete`, `delete_prefix`).
        op: &'static str,
    },
}
