//! The replicated state machine the node drives, and its key/value implementation.

use std::sync::Arc;

use tally_kv::{AuthState, Command, KvStore, Response, Txn, TxnError, TxnOpResult, Versioned};
use tally_raft::LogIndex;

/// A deterministic state machine fed with committed log entries. Every node applies the same entries in
/// the same order and must reach the same state: implementations must not read clocks, randomness or
/// anything local.
pub trait StateMachine {
    /// What applying one command produced, returned to the client that proposed it.
    type Output: Clone + std::fmt::Debug;
    /// A read-only question asked of the state.
    type Query: Clone + std::fmt::Debug;
    /// The answer to a query.
    type QueryOutput: Clone + std::fmt::Debug;

    /// Applies the command carried by entry `index`. Called once per entry, in strictly increasing index
    /// order. A command that cannot be applied must produce a deterministic error output, never a panic.
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Self::Output;
    /// Records that entry `index` carried no command (a no-op or membership entry).
    fn skip(&mut self, index: LogIndex);
    /// Answers a query from the current state.
    fn query(&self, query: &Self::Query) -> Self::QueryOutput;
    /// The index of the last entry applied (or skipped).
    fn applied_index(&self) -> LogIndex;
    /// Encodes the whole state.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a decoded snapshot.
    ///
    /// # Errors
    /// If the bytes are not a valid snapshot; the state is then unchanged.
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
    /// A fingerprint of the state: equal on two nodes iff their states are equal.
    fn state_checksum(&self) -> u64;
    /// Whether `command` can only shrink the state (a delete): a node over its storage quota still
    /// accepts those, so an operator can free space by deleting keys. `false` if unsure.
    fn frees_space(&self, command: &[u8]) -> bool {
        let _ = command;
        false
    }
}

/// A question about the key/value state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvQuery {
    /// One key.
    Get(Vec<u8>),
    /// Keys starting with `prefix`, strictly after `after`, at most `limit`.
    Scan {
        /// The key prefix.
        prefix: Vec<u8>,
        /// Resume after this key.
        after: Option<Vec<u8>>,
        /// At most this many results.
        limit: usize,
        /// The page ends once its keys and values reach this many bytes (at least one result is returned).
        max_bytes: usize,
    },
    /// The users, roles and whether auth is on.
    Auth,
    /// A read-only transaction, answered from the state exactly as applying it would be, without a log entry.
    Txn(Txn),
    /// Nothing: answered with [`KvQueryOutput::Applied`]. Its `Reply::Read { index }` is what the caller wants,
    /// the read index: a linearizable read of it names an index no older than any write acknowledged before the
    /// read began (where a watch starts, so that it never starts in the past).
    Applied,
}

/// The answer to a [`KvQuery`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvQueryOutput {
    /// The key's value, if present.
    Get(Option<Versioned>),
    /// One page of a scan and whether more remain.
    Scan(Vec<(Vec<u8>, Versioned)>, bool),
    /// The auth state (shared, not copied).
    Auth(Arc<AuthState>),
    /// A read-only transaction's answer.
    Txn {
        /// Whether every compare held, so the `success` branch ran (else `failure`).
        succeeded: bool,
        /// One result per op of the branch that ran.
        results: Vec<TxnOpResult>,
    },
    /// The transaction was not answered: it breaks [`Txn::validate`], or it writes and must be proposed
    /// through the log instead. Deterministic, so any node refuses it the same way.
    TxnRefused(TxnError),
    /// The answer to [`KvQuery::Applied`]: nothing but the read's index.
    Applied,
}

impl StateMachine for KvStore {
    type Output = Response;
    type Query = KvQuery;
    type QueryOutput = KvQueryOutput;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Response {
        KvStore::apply(self, index.0, command)
    }

    fn skip(&mut self, index: LogIndex) {
        KvStore::skip(self, index.0);
    }

    fn query(&self, query: &KvQuery) -> KvQueryOutput {
        match query {
            KvQuery::Get(key) => KvQueryOutput::Get(self.get(key).cloned()),
            KvQuery::Scan { prefix, after, limit, max_bytes } => {
                let (page, more) = self.scan_within(prefix, after.as_deref(), *limit, *max_bytes);
                KvQueryOutput::Scan(page, more)
            }
            KvQuery::Auth => KvQueryOutput::Auth(Arc::clone(self.auth())),
            KvQuery::Applied => KvQueryOutput::Applied,
            KvQuery::Txn(txn) => match self.query_txn(txn) {
                Ok((succeeded, results)) => KvQueryOutput::Txn { succeeded, results },
                Err(error) => KvQueryOutput::TxnRefused(error),
            },
        }
    }

    fn applied_index(&self) -> LogIndex {
        LogIndex(KvStore::applied_index(self))
    }

    fn snapshot(&self) -> Vec<u8> {
        KvStore::snapshot(self)
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        // The watch history window is this node's own setting, not the sender's: keep it.
        *self = KvStore::restore_with_history_limits(data, self.history().limits()).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn state_checksum(&self) -> u64 {
        KvStore::state_checksum(self)
    }

    /// Deletes of a key or a prefix, and transactions that delete and never put (so "delete under a guard" works
    /// on a full node, while a delete added to a transaction of puts does not get the puts past the quota).
    fn frees_space(&self, command: &[u8]) -> bool {
        match Command::decode(command) {
            Ok(Command::Delete { .. } | Command::DeletePrefix { .. }) => true,
            Ok(Command::Txn(txn)) => txn.only_frees_space(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
