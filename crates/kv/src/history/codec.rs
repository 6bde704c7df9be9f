//! The history section of the kv snapshot.
//!
//! ```text
//! u64 covered_from          1 <= covered_from <= applied_index + 1
//! u64 batch_count           then per batch, indexes strictly increasing, covered_from <= index <= applied_index:
//!     u64 index
//!     u64 change_count      at least 1
//!     change_count times:
//!         u8  kind          1 put, 2 delete
//!         u32 len + key
//!         u32 len + value   empty for a delete
//!         u64 create_index  0 for a delete
//!         u64 version       0 for a delete
//!         u8  has_prev      0 or 1, then if 1:
//!             u32 len + value, u64 create_index, u64 modify_index, u64 version
//! ```
//!
//! Integers are little-endian; a change's `modify_index` is not written, it is the batch's index. Reading checks
//! every invariant of [`History`] (well-formed batches, the prev chain), so a decoded history is one that
//! applying entries could have built. The limits are not written: the reader trims to its own.

use super::change::validate_batch;
use super::{Change, ChangeBatch, ChangeKind, History, HistoryLimits, check_prev_chain};
use crate::codec::{Reader, Sink};
use crate::{DecodeError, Versioned};

/// The kind byte of a put.
const KIND_PUT: u8 = 1;
/// The kind byte of a delete.
const KIND_DELETE: u8 = 2;

impl History {
    /// Writes the snapshot section (the format is in this module's doc).
    ///
    /// # Panics
    /// If a key or value is longer than `u32::MAX` bytes (the HTTP layer's limits are far lower).
    pub(crate) fn encode(&self, sink: &mut impl Sink) {
        sink.put_u64(self.covered_from);
        sink.put_u64(self.batches.len() as u64);
        for batch in &self.batches {
            sink.put_u64(batch.index);
            sink.put_u64(batch.changes.len() as u64);
            for change in &batch.changes {
                write_change(sink, change);
            }
        }
    }

    /// Reads what [`History::encode`] wrote, for a store whose applied index is `applied_index`, and trims it to
    /// `limits` (the reading node's own).
    ///
    /// # Errors
    /// Truncation, a bad kind or flag byte, or a history that breaks an invariant ([`DecodeError::BadHistory`]).
    /// Never panics and never allocates more than the input's size, whatever the input.
    pub(crate) fn decode(
        reader: &mut Reader<'_>,
        applied_index: u64,
        limits: HistoryLimits,
    ) -> Result<History, DecodeError> {
        let offset = reader.offset();
        let covered_from = reader.u64()?;
        if covered_from == 0 || covered_from.saturating_sub(1) > applied_index {
            let detail = format!("covered_from {covered_from} is outside 1..={applied_index} + 1");
            return Err(DecodeError::BadHistory { offset, detail });
        }
        let mut history =
            History::starting_at(covered_from, HistoryLimits { entries_max: usize::MAX, bytes_max: usize::MAX });
        for _ in 0..reader.u64()? {
            let offset = reader.offset();
            let batch = read_batch(reader)?;
            let bad = |detail: String| DecodeError::BadHistory { offset, detail };
            let last = history.last_index().unwrap_or(0);
            if batch.index < covered_from || batch.index <= last || batch.index > applied_index {
                return Err(bad(format!(
                    "batch {} is not in order after {last} within {covered_from}..={applied_index}",
                    batch.index
                )));
            }
            validate_batch(&batch).map_err(bad)?;
            history.bytes = history.bytes.saturating_add(batch.size_bytes());
            history.batches.push_back(batch.into());
        }
        check_prev_chain(covered_from, history.batches.iter().map(|batch| &**batch))
            .map_err(|detail| DecodeError::BadHistory { offset, detail })?;
        history.set_limits(limits);
        Ok(history)
    }
}

/// Writes one change (its `modify_index` is the batch's).
fn write_change(sink: &mut impl Sink, change: &Change) {
    sink.put_u8(match change.kind {
        ChangeKind::Put => KIND_PUT,
        ChangeKind::Delete => KIND_DELETE,
    });
    sink.put_bytes(&change.key);
    sink.put_bytes(&change.value);
    sink.put_u64(change.create_index);
    sink.put_u64(change.version);
    match &change.prev {
        None => sink.put_u8(0),
        Some(prev) => {
            sink.put_u8(1);
            sink.put_bytes(&prev.value);
            sink.put_u64(prev.create_index);
            sink.put_u64(prev.modify_index);
            sink.put_u64(prev.version);
        }
    }
}

/// Reads one batch; its checks against the history are the caller's.
fn read_batch(reader: &mut Reader<'_>) -> Result<ChangeBatch, DecodeError> {
    let index = reader.u64()?;
    let mut changes = Vec::new();
    for _ in 0..reader.u64()? {
        changes.push(read_change(reader, index)?);
    }
    Ok(ChangeBatch { index, changes })
}

/// Reads one change of the batch at `index`.
fn read_change(reader: &mut Reader<'_>, index: u64) -> Result<Change, DecodeError> {
    let offset = reader.offset();
    let kind = match reader.u8()? {
        KIND_PUT => ChangeKind::Put,
        KIND_DELETE => ChangeKind::Delete,
        tag => return Err(DecodeError::BadTag { what: "history change kind", tag, offset }),
    };
    let key = reader.bytes()?.to_vec();
    let value = reader.bytes()?.to_vec();
    let create_index = reader.u64()?;
    let version = reader.u64()?;
    let offset = reader.offset();
    let prev = match reader.u8()? {
        0 => None,
        1 => {
            let value = reader.bytes()?.to_vec();
            let (create_index, modify_index, version) = (reader.u64()?, reader.u64()?, reader.u64()?);
            Some(Versioned { value, create_index, modify_index, version })
        }
        tag => return Err(DecodeError::BadTag { what: "history prev flag", tag, offset }),
    };
    Ok(Change { key, kind, value, create_index, modify_index: index, version, prev })
}
