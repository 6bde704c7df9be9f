//! Transactions: compare guards on keys, then one of two branches of operations, all in one log entry.
//!
//! A [`Txn`] is etcd's transaction: every [`Compare`] is evaluated on the state before the entry, all of them
//! ANDed (an empty list holds); if they hold the `success` ops run, else the `failure` ops, in order, each
//! seeing the effects of the ones before it. The whole transaction has one index and is all or nothing.
//!
//! This module holds the types, [`Txn::validate`] (the rules every node checks the same way, so a bad
//! transaction is refused deterministically) and, in `txn/codec.rs`, the binary encoding carried by
//! [`crate::Command::Txn`]. Applying it is the store's job (`store/txn.rs`).

mod codec;
mod error;

pub use error::{OpList, OpPosition, TxnError};

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::Versioned;

/// The most compares, and the most ops per branch, a transaction may hold: a hard cap of the encoding, so that
/// decoding untrusted bytes stays bounded. The server's own limit (configurable) is lower.
pub const TXN_OPS_MAX: usize = 1024;

/// The most key and value bytes the reads of one transaction may return together. A list that crosses it stops
/// (after at least one entry) and reports `more`; later lists in the same transaction return no entries. Every
/// node computes the same cut, so the answer is deterministic.
pub const TXN_READ_BYTES_MAX: usize = 4 << 20;

/// A transaction: `compare` guards, then `success` ops if they all hold, else `failure` ops.
///
/// Invariant (checked by [`Txn::validate`], which apply and the server both run): at most [`TXN_OPS_MAX`]
/// entries per list; within one branch a key is written at most once and never inside a prefix that branch
/// deletes; every deleted prefix is non-empty; an `Exists` compare uses only `Eq` or `Ne`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Guards, all evaluated on the state before the transaction and ANDed; empty holds.
    pub compare: Vec<Compare>,
    /// The ops run, in order, when every compare holds.
    pub success: Vec<TxnOp>,
    /// The ops run, in order, when a compare fails.
    pub failure: Vec<TxnOp>,
}

/// One guard: `key`'s `target` field compared with `op` against the value inside `target`.
///
/// An absent key has version, create index and modify index 0 and `exists = false`; a value compare on an
/// absent key is false whatever the op (etcd's semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key whose state is compared.
    pub key: Vec<u8>,
    /// Which field of the key, and the operand it is compared with.
    pub target: CompareTarget,
    /// How the key's field relates to the operand: `field op operand`.
    pub op: CompareOp,
}

/// The field of a key a [`Compare`] looks at, with the operand to compare it against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The value bytes; `Lt` and `Gt` compare bytes lexicographically.
    Value(Vec<u8>),
    /// The write count since creation ([`Versioned::version`]); 0 when absent.
    Version(u64),
    /// The index of the entry that created the key; 0 when absent.
    CreateIndex(u64),
    /// The index of the entry that last wrote the key; 0 when absent.
    ModifyIndex(u64),
    /// Whether the key is present; takes only `Eq` and `Ne`.
    Exists(bool),
}

/// How a key's field relates to the operand of a [`Compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// The key's field is less than the operand.
    Lt,
    /// The key's field is greater than the operand.
    Gt,
}

impl CompareOp {
    /// The operator as written in messages and the HTTP API: `==`, `!=`, `<`, `>`.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Gt => ">",
        }
    }

    /// Whether `field op operand` holds.
    pub fn holds<T: Ord + ?Sized>(self, field: &T, operand: &T) -> bool {
        match self {
            CompareOp::Eq => field == operand,
            CompareOp::Ne => field != operand,
            CompareOp::Lt => field < operand,
            CompareOp::Gt => field > operand,
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Create or overwrite `key`.
    Put {
        /// The key to write.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key` if present.
    Delete {
        /// The key to remove.
        key: Vec<u8>,
    },
    /// Remove every key starting with `prefix` (not empty).
    DeletePrefix {
        /// The prefix.
        prefix: Vec<u8>,
    },
    /// Read `key`, as the earlier ops of the branch left it.
    Get {
        /// The key to read.
        key: Vec<u8>,
    },
    /// Read the keys starting with `prefix`, in key order, at most `limit` of them.
    List {
        /// The prefix (may be empty: every key).
        prefix: Vec<u8>,
        /// At most this many entries; 0 returns none but still says whether any match.
        limit: u64,
    },
}

impl TxnOp {
    /// Whether the op changes the state (put, delete, prefix delete) rather than reading it.
    pub fn is_write(&self) -> bool {
        match self {
            TxnOp::Put { .. } | TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. } => true,
            TxnOp::Get { .. } | TxnOp::List { .. } => false,
        }
    }

    /// Whether the op can only remove keys (delete, prefix delete).
    pub fn is_delete(&self) -> bool {
        matches!(self, TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. })
    }

    /// The op's name in messages and the HTTP API.
    pub fn name(&self) -> &'static str {
        match self {
            TxnOp::Put { .. } => "put",
            TxnOp::Delete { .. } => "delete",
            TxnOp::DeletePrefix { .. } => "delete_prefix",
            TxnOp::Get { .. } => "get",
            TxnOp::List { .. } => "list",
        }
    }
}

/// What one op of the branch that ran produced, at the same position as the op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResult {
    /// The key was written.
    Put {
        /// Its version after the write (1 if the put created it).
        version: u64,
        /// Its create index (the transaction's index if the put created it).
        create_index: u64,
    },
    /// The delete ran.
    Delete {
        /// Whether the key was present.
        deleted: bool,
    },
    /// The prefix delete ran.
    DeletePrefix {
        /// How many keys it removed.
        deleted: u64,
    },
    /// The key's value and versions, `None` if absent.
    Get(Option<Versioned>),
    /// The matching keys in key order.
    List {
        /// The entries returned.
        entries: Vec<(Vec<u8>, Versioned)>,
        /// Whether more matching keys exist past the last one returned (the limit or the transaction's read
        /// budget ended the list).
        more: bool,
    },
}

impl Txn {
    /// Whether neither branch writes: such a transaction can be answered as a read, without a log entry.
    pub fn is_read_only(&self) -> bool {
        !self.success.iter().chain(&self.failure).any(TxnOp::is_write)
    }

    /// Whether some op of either branch deletes (a key or a prefix).
    pub fn has_delete(&self) -> bool {
        self.success.iter().chain(&self.failure).any(TxnOp::is_delete)
    }

    /// Checks the rules of a well-formed transaction (see [`Txn`]'s invariant). The two branches are checked
    /// separately: a key may be written in both, as only one runs.
    ///
    /// # Errors
    ///
    /// The first rule broken, naming the op by its position (`success[2]: key "a" is written twice (first in
    /// success[0])`).
    pub fn validate(&self) -> Result<(), TxnError> {
        for (list, len) in [
            (OpList::Compare, self.compare.len()),
            (OpList::Success, self.success.len()),
            (OpList::Failure, self.failure.len()),
        ] {
            if len > TXN_OPS_MAX {
                return Err(TxnError::TooManyOps { list, count: len, max: TXN_OPS_MAX });
            }
        }
        for (index, compare) in self.compare.iter().enumerate() {
            let ordered = matches!(compare.op, CompareOp::Lt | CompareOp::Gt);
            if ordered && matches!(compare.target, CompareTarget::Exists(_)) {
                let at = OpPosition { list: OpList::Compare, index };
                return Err(TxnError::OrderedExists { at, op: compare.op });
            }
        }
        validate_branch(OpList::Success, &self.success)?;
        validate_branch(OpList::Failure, &self.failure)
    }
}

/// Checks one branch: non-empty prefixes, each key written once, no write inside a prefix the branch deletes.
fn validate_branch(list: OpList, ops: &[TxnOp]) -> Result<(), TxnError> {
    let at = |index| OpPosition { list, index };
    let mut written: BTreeMap<&[u8], usize> = BTreeMap::new();
    let mut prefixes: Vec<(&[u8], usize)> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        match op {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => {
                if let Some(&first) = written.get(key.as_slice()) {
                    return Err(TxnError::WrittenTwice { at: at(index), key: key.clone(), first: at(first) });
                }
                written.insert(key, index);
            }
            TxnOp::DeletePrefix { prefix } if prefix.is_empty() => {
                return Err(TxnError::EmptyDeletePrefix { at: at(index) });
            }
            TxnOp::DeletePrefix { prefix } => prefixes.push((prefix, index)),
            TxnOp::Get { .. } | TxnOp::List { .. } => {}
        }
    }
    // Each key against each deleted prefix: the branch sizes are capped, so this stays small; `written` is
    // ordered, so only the keys in the prefix's range are visited.
    for &(prefix, prefix_index) in &prefixes {
        let inside = written
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix));
        if let Some((key, &index)) = inside.min_by_key(|(_, index)| **index) {
            return Err(TxnError::WriteInDeletedPrefix {
                at: at(index),
                key: key.to_vec(),
                prefix: prefix.to_vec(),
                prefix_at: at(prefix_index),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
