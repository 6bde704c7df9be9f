//! Applying a [`Txn`] to the store, and answering a read-only one as a query.
//!
//! The compares are evaluated on the state before the entry, all ANDed (an empty list holds). Then the
//! chosen branch's ops run in order on the live state, each seeing the ones before it: a get after a put of
//! the same key returns the new value, as in etcd. Writes go through the store's choke points
//! ([`KvStore::write_key`], [`KvStore::remove_key`]), so the whole transaction changes keys at its one index.

use crate::{
    Compare, CompareTarget, KvStore, OpList, OpPosition, Response, TXN_READ_BYTES_MAX, Txn, TxnError, TxnOp,
    TxnOpResult, Versioned,
};

/// What the reads of one transaction may still return, in key and value bytes.
///
/// Invariant: `left <= TXN_READ_BYTES_MAX`, and it only shrinks.
struct ReadBudget {
    /// Bytes left; 0 once a read has crossed the budget.
    left: usize,
}

impl ReadBudget {
    /// A transaction's whole budget.
    fn new() -> Self {
        ReadBudget { left: TXN_READ_BYTES_MAX }
    }

    /// Takes `bytes` out of the budget (down to 0: the read that crosses it is answered whole).
    fn charge(&mut self, bytes: usize) {
        let before = self.left;
        self.left = self.left.saturating_sub(bytes);
        assert!(self.left <= before, "read budget grew from {before} to {}", self.left);
    }
}

impl KvStore {
    /// Applies `txn` in entry `index` (already advanced to). A transaction that breaks [`Txn::validate`] is
    /// refused with [`Response::Invalid`] before anything is written, the same way on every node.
    pub(crate) fn apply_txn(&mut self, index: u64, txn: &Txn) -> Response {
        if let Err(error) = txn.validate() {
            return Response::Invalid { index, reason: format!("invalid transaction: {error}") };
        }
        let succeeded = self.compares_hold(&txn.compare);
        let ops = if succeeded { &txn.success } else { &txn.failure };
        let mut budget = ReadBudget::new();
        let results: Vec<TxnOpResult> = ops.iter().map(|op| self.run_op(index, op, &mut budget)).collect();
        assert!(results.len() == ops.len(), "{} results for {} ops", results.len(), ops.len());
        Response::Txn { index, succeeded, results }
    }

    /// Answers a read-only transaction from the current state, exactly as applying it would (the same
    /// compares, results and read budget), without a log entry.
    ///
    /// # Errors
    ///
    /// The transaction breaks [`Txn::validate`], or writes ([`TxnError::NotReadOnly`], naming the first write):
    /// such a transaction must be proposed through the log instead.
    pub fn query_txn(&self, txn: &Txn) -> Result<(bool, Vec<TxnOpResult>), TxnError> {
        txn.validate()?;
        for (list, ops) in [(OpList::Success, &txn.success), (OpList::Failure, &txn.failure)] {
            if let Some((index, op)) = ops.iter().enumerate().find(|(_, op)| op.is_write()) {
                return Err(TxnError::NotReadOnly { at: OpPosition { list, index }, op: op.name() });
            }
        }
        let succeeded = self.compares_hold(&txn.compare);
        let ops = if succeeded { &txn.success } else { &txn.failure };
        let mut budget = ReadBudget::new();
        Ok((succeeded, ops.iter().map(|op| self.read_op(op, &mut budget)).collect()))
    }

    /// Whether every compare holds on the current state (an empty list holds).
    fn compares_hold(&self, compares: &[Compare]) -> bool {
        compares.iter().all(|compare| self.compare_holds(compare))
    }

    /// Whether one compare holds: an absent key has version, create and modify index 0 and does not exist,
    /// and a value compare on it is false whatever the op (etcd's semantics).
    fn compare_holds(&self, compare: &Compare) -> bool {
        let current = self.get(&compare.key);
        let number = |field: fn(&Versioned) -> u64| current.map_or(0, field);
        match &compare.target {
            CompareTarget::Value(operand) => {
                current.is_some_and(|current| compare.op.holds(current.value.as_slice(), operand.as_slice()))
            }
            CompareTarget::Version(operand) => compare.op.holds(&number(|v| v.version), operand),
            CompareTarget::CreateIndex(operand) => compare.op.holds(&number(|v| v.create_index), operand),
            CompareTarget::ModifyIndex(operand) => compare.op.holds(&number(|v| v.modify_index), operand),
            CompareTarget::Exists(operand) => compare.op.holds(&current.is_some(), operand),
        }
    }

    /// Runs one op of the chosen branch in entry `index`.
    fn run_op(&mut self, index: u64, op: &TxnOp, budget: &mut ReadBudget) -> TxnOpResult {
        match op {
            TxnOp::Put { key, value } => {
                let written = self.write_key(index, key, value);
                TxnOpResult::Put { version: written.version, create_index: written.create_index }
            }
            TxnOp::Delete { key } => TxnOpResult::Delete { deleted: self.remove_key(index, key).is_some() },
            TxnOp::DeletePrefix { prefix } => TxnOpResult::DeletePrefix { deleted: self.remove_prefix(index, prefix) },
            TxnOp::Get { .. } | TxnOp::List { .. } => self.read_op(op, budget),
        }
    }

    /// Answers a get or list from the current state, charging what it returns to `budget`. A get is answered
    /// whole (it cannot say `more`) and still charged; a list ends at the budget, after at least one entry,
    /// and once the budget is spent returns no entries, only whether any key matches.
    ///
    /// # Panics
    ///
    /// If `op` is a write: the caller runs those.
    fn read_op(&self, op: &TxnOp, budget: &mut ReadBudget) -> TxnOpResult {
        match op {
            TxnOp::Get { key } => {
                let found = self.get(key).cloned();
                budget.charge(found.as_ref().map_or(0, |found| key.len() + found.value.len()));
                TxnOpResult::Get(found)
            }
            TxnOp::List { prefix, limit } => {
                let limit = if budget.left == 0 { 0 } else { usize::try_from(*limit).unwrap_or(usize::MAX) };
                let (entries, more) = self.scan_within(prefix, None, limit, budget.left);
                budget.charge(entries.iter().map(|(key, versioned)| key.len() + versioned.value.len()).sum());
                TxnOpResult::List { entries, more }
            }
            TxnOp::Put { .. } | TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. } => {
                unreachable!("read_op called with the write {op:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests;
