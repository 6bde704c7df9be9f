//! Checking histories of Tally's KV API, one key at a time.

use std::collections::BTreeMap;
use std::fmt;

use super::kv_model::{KvCall, KvModel, KvResult};
use super::value_table::ValueTable;
use super::wgl::{CheckResult, Operation, check_counting_steps};

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvInput {
    /// Read the value and its modify index.
    Get,
    /// Write `value`.
    Put {
        /// Unique in the whole history, so it names this write.
        value: Vec<u8>,
    },
    /// Remove the key.
    Delete,
    /// Write `value` only if the key's modify index is `expected` (0: only if absent).
    Cas {
        /// The modify index the key must have; 0 means the key must be absent.
        expected: u64,
        /// Unique in the whole history, so it names this write.
        value: Vec<u8>,
    },
}

/// What a client was told about one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    /// The value and its modify index, or `None` if the key was absent.
    Get(Option<(Vec<u8>, u64)>),
    /// The put was committed at log index `index`.
    Put {
        /// Log index of the write.
        index: u64,
    },
    /// The delete was committed at log index `index`; `deleted` tells whether the key existed.
    Delete {
        /// Log index of the write.
        index: u64,
        /// Whether the key was present.
        deleted: bool,
    },
    /// `Ok(index)`: written at log index `index`; `Err(())`: the modify index did not match
    /// and nothing was written.
    Cas(Result<u64, ()>),
}

/// One client operation on one key, as recorded by the simulator.
///
/// Invariant: `output.is_some()` implies `ret.is_some()`, and `output` answers `input`'s kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOp {
    /// The client that issued it; shown in explanations only.
    pub client: u64,
    /// The key it acts on; operations on different keys are checked independently.
    pub key: Vec<u8>,
    /// Logical time of the call.
    pub call: u64,
    /// Logical time of the return; `None` if it never returned.
    pub ret: Option<u64>,
    /// What the client asked.
    pub input: KvInput,
    /// What the client was told; `None` if the outcome is unknown (timeout, crash): then the
    /// operation may take effect at any time after `call`, or never.
    pub output: Option<KvOutput>,
}

/// One key whose history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvViolation {
    /// The key.
    pub key: Vec<u8>,
    /// Why: contradictory observations, or the longest linearizable prefix found and the
    /// operations that could not be placed after it.
    pub explanation: String,
}

/// The verdict on a whole KV history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvCheckReport {
    /// Keys whose history is not linearizable, in key order.
    pub violations: Vec<KvViolation>,
    /// Keys whose search ran out of budget, in key order.
    pub unknown_keys: Vec<Vec<u8>>,
    /// Number of distinct keys in the history.
    pub keys_checked: usize,
    /// Number of operations in the history.
    pub ops_checked: usize,
}

impl KvCheckReport {
    /// Whether every key was proved linearizable (no violation and no unknown key).
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty() && self.unknown_keys.is_empty()
    }

    /// Whether some key was proved not linearizable.
    pub fn has_violations(&self) -> bool {
        !self.violations.is_empty()
    }
}

impl fmt::Display for KvCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "linearizability: {} ops on {} keys, {} keys violated, {} keys unknown",
            self.ops_checked,
            self.keys_checked,
            self.violations.len(),
            self.unknown_keys.len()
        )?;
        for violation in &self.violations {
            writeln!(f, "key {}: {}", show_bytes(&violation.key), violation.explanation)?;
        }
        for key in &self.unknown_keys {
            writeln!(f, "key {}: search budget exhausted", show_bytes(key))?;
        }
        Ok(())
    }
}

/// Checks that `ops` is linearizable, key by key, with at most `budget_steps_per_key` search
/// steps per key. The report is deterministic (keys in byte order).
///
/// # Panics
/// If an operation's output does not answer its input, it has an output but no return time,
/// it returns before it is called, or two operations on one key write the same value.
pub fn check_kv_history(ops: &[KvOp], budget_steps_per_key: u64) -> KvCheckReport {
    let mut by_key: BTreeMap<&[u8], Vec<&KvOp>> = BTreeMap::new();
    for op in ops {
        assert_output_answers_input(op);
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut report = KvCheckReport { keys_checked: by_key.len(), ops_checked: ops.len(), ..KvCheckReport::default() };
    for (key, key_ops) in by_key {
        match check_key(&key_ops, budget_steps_per_key) {
            CheckResult::Ok => {}
            CheckResult::Violation { explanation } => {
                report.violations.push(KvViolation { key: key.to_vec(), explanation })
            }
            CheckResult::Unknown => report.unknown_keys.push(key.to_vec()),
        }
    }
    report
}

/// Checks the operations of one key.
///
/// A first pass leaves out indeterminate writes whose value no get returned: if the rest is
/// linearizable, so is the whole (they simply never took effect), and leaving them out
/// avoids trying them at every point. Otherwise a second pass, with what is left of the
/// budget, decides with every operation.
fn check_key(ops: &[&KvOp], budget_steps: u64) -> CheckResult {
    let table = match ValueTable::build(ops) {
        Ok(table) => table,
        Err(explanation) => return CheckResult::Violation { explanation },
    };
    let model = KvModel::new(&table);
    // An indeterminate get constrains nothing.
    let relevant: Vec<&KvOp> =
        ops.iter().copied().filter(|op| op.output.is_some() || op.input != KvInput::Get).collect();
    let read: Vec<&KvOp> = relevant.iter().copied().filter(|op| !is_unread_indeterminate_write(op, &table)).collect();
    let mut budget_left = budget_steps;
    if read.len() < relevant.len() {
        let (result, steps) = check_ops(&model, &table, &read, budget_steps);
        if result.is_ok() {
            return result;
        }
        budget_left = budget_steps.saturating_sub(steps);
    }
    check_ops(&model, &table, &relevant, budget_left).0
}

/// Runs the search on `ops`, with indeterminate operations that the model cannot tell apart
/// made interchangeable. Returns the verdict and the steps spent.
fn check_ops(model: &KvModel<'_>, table: &ValueTable, ops: &[&KvOp], budget_steps: u64) -> (CheckResult, u64) {
    let history: Vec<Operation<KvCall, KvResult>> = ops.iter().map(|op| model.operation(op)).collect();
    let mut class_ids: BTreeMap<(u8, u64), usize> = BTreeMap::new();
    let classes: Vec<Option<usize>> = ops
        .iter()
        .map(|op| {
            let key = symmetry_key(op, table)?;
            let next_id = class_ids.len();
            Some(*class_ids.entry(key).or_insert(next_id))
        })
        .collect();
    check_counting_steps(model, &history, &classes, budget_steps)
}

/// Indeterminate operations with equal keys behave identically in the model in every state:
/// deletes; puts of an unread value; cas of an unread value with the same expected index.
fn symmetry_key(op: &KvOp, table: &ValueTable) -> Option<(u8, u64)> {
    match &op.input {
        KvInput::Delete if op.output.is_none() => Some((0, 0)),
        KvInput::Put { .. } if is_unread_indeterminate_write(op, table) => Some((1, 0)),
        KvInput::Cas { expected, .. } if is_unread_indeterminate_write(op, table) => Some((2, *expected)),
        _ => None,
    }
}

/// Whether `op` is a put or cas with unknown outcome whose value no get returned.
fn is_unread_indeterminate_write(op: &KvOp, table: &ValueTable) -> bool {
    match (&op.input, &op.output) {
        (KvInput::Put { value } | KvInput::Cas { value, .. }, None) => {
            table.id(value).is_none_or(|value| !table.is_read(value))
        }
        _ => false,
    }
}

fn assert_output_answers_input(op: &KvOp) {
    let answers = match (&op.input, &op.output) {
        (_, None) => true,
        (KvInput::Get, Some(KvOutput::Get(_))) => true,
        (KvInput::Put { .. }, Some(KvOutput::Put { .. })) => true,
        (KvInput::Delete, Some(KvOutput::Delete { .. })) => true,
        (KvInput::Cas { .. }, Some(KvOutput::Cas(_))) => true,
        (_, Some(_)) => false,
    };
    assert!(answers, "output does not answer input: {}", describe_op(op));
    assert!(op.output.is_none() || op.ret.is_some(), "output without a return time: {}", describe_op(op));
}

/// One line describing `op`, in the format of checker explanations.
pub(super) fn describe_op(op: &KvOp) -> String {
    let ret = op.ret.map_or_else(|| "-".to_string(), |ret| ret.to_string());
    let output = op.output.as_ref().map_or_else(|| "unknown outcome".to_string(), ToString::to_string);
    format!("client {} [call {}, ret {}] {} -> {}", op.client, op.call, ret, op.input, output)
}

/// `bytes` as a quoted string if UTF-8, else as hex.
pub(super) fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => bytes.iter().fold("0x".to_string(), |mut hex, byte| {
            hex.push_str(&format!("{byte:02x}"));
            hex
        }),
    }
}

impl fmt::Display for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInput::Get => f.write_str("get"),
            KvInput::Put { value } => write!(f, "put {}", show_bytes(value)),
            KvInput::Delete => f.write_str("delete"),
            KvInput::Cas { expected, value } => {
                write!(f, "cas expected={expected} {}", show_bytes(value))
            }
        }
    }
}

impl fmt::Display for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Get(None) => f.write_str("absent"),
            KvOutput::Get(Some((value, index))) => write!(f, "{} @{index}", show_bytes(value)),
            KvOutput::Put { index } | KvOutput::Cas(Ok(index)) => write!(f, "ok @{index}"),
            KvOutput::Delete { index, deleted } => write!(f, "deleted={deleted} @{index}"),
            KvOutput::Cas(Err(())) => f.write_str("mismatch"),
        }
    }
}

#[cfg(test)]
mod tests;
