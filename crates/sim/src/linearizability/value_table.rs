//! What one key's history reveals about each value: its identity and its log index.
//!
//! Values are unique per write, so a value names the write that produced it, and any
//! observation of `(value, index)` (a put or cas acknowledgement, a read's modify index) tells
//! the log index of that write, even when the write itself timed out.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use super::kv::{KvInput, KvOp, KvOutput, describe_op, show_bytes};

/// A distinct value of one key's history, numbered in order of first appearance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct ValueId(usize);

impl ValueId {
    /// Stands for every value that only indeterminate writes wrote and no read returned.
    /// Such writes differ only in a value nobody saw, so the model treats them as one, which
    /// makes them interchangeable (see `indeterminate.rs`).
    pub(super) const UNREAD: ValueId = ValueId(0);
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::UNREAD { f.write_str("unread value") } else { write!(f, "v#{}", self.0) }
    }
}

/// What is known about one value.
#[derive(Clone, Debug, Default)]
struct ValueRecord {
    /// The log index of the write that produced it, if an operation revealed it, and the
    /// position of the first operation that did (for explanations).
    index: Option<(u64, usize)>,
    /// The earliest return time of a get that returned it; `None` if none did.
    first_read_ret: Option<u64>,
    /// The put or cas that writes it.
    writer: Option<usize>,
}

/// The write that a log index was reported for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IndexOwner {
    /// The write of this value.
    Value(ValueId),
    /// The delete at this position.
    Delete(usize),
}

/// The table of one key's values and log indexes.
///
/// Invariant: every value has at most one index and every index names at most one write
/// (`build` rejects histories where this does not hold). Record 0 is [`ValueId::UNREAD`],
/// which has no index and is never read.
#[derive(Debug)]
pub(super) struct ValueTable {
    /// The id of each distinct value.
    ids: HashMap<Vec<u8>, ValueId>,
    /// Indexed by `ValueId`.
    records: Vec<ValueRecord>,
    /// For each reported log index, the write it belongs to and the op that reported it.
    owners: HashMap<u64, (IndexOwner, usize)>,
}

impl ValueTable {
    /// Builds the table of `ops`, all on one key. Returns the explanation of the violation if
    /// the observations contradict each other: one value with two indexes, one index for two
    /// writes, or an index of 0 (log indexes start at 1).
    ///
    /// # Panics
    /// If two operations write the same value: the simulator guarantees unique values.
    pub(super) fn build(ops: &[&KvOp]) -> Result<Self, String> {
        let mut table = Self { ids: HashMap::new(), records: vec![ValueRecord::default()], owners: HashMap::new() };
        for position in 0..ops.len() {
            table.record(ops, position)?;
        }
        Ok(table)
    }

    /// The id of `value`, if it appears in the history.
    pub(super) fn id(&self, value: &[u8]) -> Option<ValueId> {
        self.ids.get(value).copied()
    }

    /// The log index of the write of `value`, if revealed.
    pub(super) fn index(&self, value: ValueId) -> Option<u64> {
        self.records[value.0].index.map(|(index, _)| index)
    }

    /// Whether a get returned `value`.
    pub(super) fn is_read(&self, value: ValueId) -> bool {
        self.records[value.0].first_read_ret.is_some()
    }

    /// The earliest return time of a get that returned `value`, if any did: the write of
    /// `value` must have taken effect by then.
    pub(super) fn first_read_ret(&self, value: ValueId) -> Option<u64> {
        self.records[value.0].first_read_ret
    }

    /// Whether some operation revealed a write with log index `index`.
    pub(super) fn is_known_index(&self, index: u64) -> bool {
        self.owners.contains_key(&index)
    }

    /// Adds what operation `position` reveals.
    fn record(&mut self, ops: &[&KvOp], position: usize) -> Result<(), String> {
        let op = ops[position];
        let written = match &op.input {
            KvInput::Put { value } | KvInput::Cas { value, .. } => Some(self.record_writer(ops, value, position)),
            KvInput::Get | KvInput::Delete => None,
        };
        match (&op.output, written) {
            (Some(KvOutput::Put { index } | KvOutput::Cas(Ok(index))), Some(value)) => {
                self.observe(ops, value, *index, position)
            }
            (Some(KvOutput::Get(Some((bytes, index)))), _) => {
                let value = self.intern(bytes);
                let ret = op.ret.unwrap_or(u64::MAX);
                let first = &mut self.records[value.0].first_read_ret;
                *first = Some(first.map_or(ret, |first| first.min(ret)));
                self.observe(ops, value, *index, position)
            }
            (Some(KvOutput::Delete { index, .. }), _) => {
                self.claim(ops, *index, IndexOwner::Delete(position), position)
            }
            _ => Ok(()),
        }
    }

    /// Interns the value written by operation `position`.
    fn record_writer(&mut self, ops: &[&KvOp], bytes: &[u8], position: usize) -> ValueId {
        let value = self.intern(bytes);
        let writer = self.records[value.0].writer.replace(position);
        assert!(
            writer.is_none(),
            "value {} is written twice, by {} and by {}; the simulator must write unique values",
            show_bytes(bytes),
            writer.map_or_else(String::new, |w| describe_op(ops[w])),
            describe_op(ops[position]),
        );
        value
    }

    fn intern(&mut self, bytes: &[u8]) -> ValueId {
        if let Some(&value) = self.ids.get(bytes) {
            return value;
        }
        let value = ValueId(self.records.len());
        self.records.push(ValueRecord::default());
        self.ids.insert(bytes.to_vec(), value);
        value
    }

    /// Records that operation `witness` saw `value` with log index `index`.
    fn observe(&mut self, ops: &[&KvOp], value: ValueId, index: u64, witness: usize) -> Result<(), String> {
        let record = &mut self.records[value.0];
        match record.index {
            Some((known, first)) if known != index => {
                return Err(format!(
                    "one value seen with two modify indexes: {known} by {} and {index} by {}",
                    describe_op(ops[first]),
                    describe_op(ops[witness]),
                ));
            }
            Some(_) => {}
            None => record.index = Some((index, witness)),
        }
        self.claim(ops, index, IndexOwner::Value(value), witness)
    }

    /// Records that operation `witness` reported log index `index` for the write `owner`.
    fn claim(&mut self, ops: &[&KvOp], index: u64, owner: IndexOwner, witness: usize) -> Result<(), String> {
        if index == 0 {
            return Err(format!("log index 0 reported by {}; log indexes start at 1", describe_op(ops[witness])));
        }
        match self.owners.entry(index) {
            Entry::Vacant(vacant) => {
                vacant.insert((owner, witness));
                Ok(())
            }
            Entry::Occupied(occupied) if occupied.get().0 == owner => Ok(()),
            Entry::Occupied(occupied) => Err(format!(
                "log index {index} reported for two different writes: by {} and by {}",
                describe_op(ops[occupied.get().1]),
                describe_op(ops[witness]),
            )),
        }
    }
}
