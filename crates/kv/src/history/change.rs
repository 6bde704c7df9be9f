//! One key's change ([`Change`]), the changes of one log entry ([`ChangeBatch`]), and which keys a watcher
//! follows ([`KeyFilter`]).
//!
//! A change records the key's state after the entry (value, create and modify index, version) and its state
//! before (`prev`, always kept so a watcher can ask for it, as etcd's `prev_kv`). [`validate_batch`] states
//! what a well-formed batch looks like; [`History::append`](super::History::append) asserts it and the snapshot
//! decoder refuses anything else.

use std::collections::BTreeSet;

use crate::Versioned;

/// Bytes counted for one change besides its key and values: about the size of the struct itself, so a history
/// of many tiny changes is still bounded by its byte limit. Part of the documented per-change size,
/// [`Change::size_bytes`].
pub const CHANGE_OVERHEAD_BYTES: usize = 128;

/// Whether a change wrote or removed its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// The key was created or overwritten.
    Put,
    /// The key was removed (it existed before the entry: deleting an absent key changes nothing).
    Delete,
}

/// One key's change in one log entry.
///
/// Invariant (checked by [`History::append`](super::History::append) and the snapshot decoder, for a batch at
/// index `i`): `modify_index == i`, `prev` (if any) is a state the store could hold before `i`
/// (`1 <= create <= modify < i`, `1 <= version <= modify - create + 1`), and
/// - a put has `version >= 1` and either `prev == None`, `create_index == i`, `version == 1` (a create), or
///   `create_index == prev.create_index`, `version == prev.version + 1` (an overwrite);
/// - a delete has an empty `value`, `create_index == 0`, `version == 0` and `prev == Some(..)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key changed.
    pub key: Vec<u8>,
    /// Put or delete.
    pub kind: ChangeKind,
    /// The new value; empty for a delete.
    pub value: Vec<u8>,
    /// The key's create index after the change; 0 for a delete (the key no longer exists, as in etcd).
    pub create_index: u64,
    /// The index of the entry that made the change (the batch's index), for puts and deletes alike.
    pub modify_index: u64,
    /// The key's version after the change (writes since creation); 0 for a delete.
    pub version: u64,
    /// The key's state before the entry, `None` if it was absent. Always kept, whether or not a watcher asks for
    /// it, so that one history serves every watcher.
    pub prev: Option<Versioned>,
}

impl Change {
    /// The change of a put that left `key` as `current`; `prev` is its state before the entry.
    pub fn put(key: &[u8], current: &Versioned, prev: Option<Versioned>) -> Change {
        Change {
            key: key.to_vec(),
            kind: ChangeKind::Put,
            value: current.value.clone(),
            create_index: current.create_index,
            modify_index: current.modify_index,
            version: current.version,
            prev,
        }
    }

    /// The change of a delete in entry `index` that removed `key`, whose state before was `prev`.
    pub fn delete(key: &[u8], index: u64, prev: Versioned) -> Change {
        Change {
            key: key.to_vec(),
            kind: ChangeKind::Delete,
            value: Vec::new(),
            create_index: 0,
            modify_index: index,
            version: 0,
            prev: Some(prev),
        }
    }

    /// The bytes this change counts for against the history's byte limit: key + value + previous value +
    /// [`CHANGE_OVERHEAD_BYTES`]. Deterministic, so every node with the same limits trims at the same place.
    pub fn size_bytes(&self) -> usize {
        let prev = self.prev.as_ref().map_or(0, |prev| prev.value.len());
        CHANGE_OVERHEAD_BYTES.saturating_add(self.key.len()).saturating_add(self.value.len()).saturating_add(prev)
    }
}

/// The changes one log entry made, in apply order: a txn's in op order, a prefix delete's in key order.
///
/// Invariant: at least one change, every change at `index` (see [`Change`]), no key twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The log index of the entry.
    pub index: u64,
    /// The changes, in the order the entry made them.
    pub changes: Vec<Change>,
}

impl ChangeBatch {
    /// The sum of [`Change::size_bytes`] over the batch.
    pub fn size_bytes(&self) -> usize {
        self.changes.iter().fold(0, |sum, change| sum.saturating_add(change.size_bytes()))
    }

    /// The changes whose key `filter` matches, in batch order.
    pub fn matching<'a>(&'a self, filter: &'a KeyFilter) -> impl Iterator<Item = &'a Change> + 'a {
        self.changes.iter().filter(move |change| filter.matches(&change.key))
    }

    /// Whether any change's key matches `filter`.
    pub fn matches(&self, filter: &KeyFilter) -> bool {
        self.matching(filter).next().is_some()
    }

    /// The sum of [`Change::size_bytes`] over the changes `filter` matches: what a watcher with that filter is
    /// sent of this batch.
    pub fn matching_bytes(&self, filter: &KeyFilter) -> usize {
        self.matching(filter).fold(0, |sum, change| sum.saturating_add(change.size_bytes()))
    }
}

/// Which keys a reader of the history (a watcher, a blocking read) follows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyFilter {
    /// Exactly this key.
    Key(Vec<u8>),
    /// Every key starting with these bytes; the empty prefix matches every key.
    Prefix(Vec<u8>),
}

impl KeyFilter {
    /// Whether `key` is one the filter follows.
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            KeyFilter::Key(wanted) => wanted == key,
            KeyFilter::Prefix(prefix) => key.starts_with(prefix),
        }
    }
}

/// Checks the [`ChangeBatch`] invariant, naming the first broken rule.
///
/// # Errors
/// A message naming the change (by position and key) and the rule it breaks.
pub(crate) fn validate_batch(batch: &ChangeBatch) -> Result<(), String> {
    if batch.index == 0 {
        return Err("batch index is 0 (log indexes start at 1)".to_string());
    }
    if batch.changes.is_empty() {
        return Err(format!("batch {} has no changes (entries without changes are not stored)", batch.index));
    }
    let mut keys = BTreeSet::new();
    for (position, change) in batch.changes.iter().enumerate() {
        let at = || format!("batch {} change {position} (key {:?})", batch.index, change.key);
        if !keys.insert(change.key.as_slice()) {
            return Err(format!("{}: the key changes twice in one entry", at()));
        }
        validate_change(change, batch.index).map_err(|rule| format!("{}: {rule}", at()))?;
    }
    Ok(())
}

/// Checks one change of the batch at `index` against the [`Change`] invariant.
fn validate_change(change: &Change, index: u64) -> Result<(), String> {
    let Change { kind, create_index, modify_index, version, .. } = *change;
    if modify_index != index {
        return Err(format!("modify_index {modify_index} is not the entry's index {index}"));
    }
    if let Some(prev) = &change.prev {
        validate_prev(prev, index)?;
    }
    match (kind, &change.prev) {
        (ChangeKind::Put, None) if create_index != index || version != 1 => {
            Err(format!("a create has create_index {create_index} and version {version}, not {index} and 1"))
        }
        (ChangeKind::Put, Some(prev))
            if create_index != prev.create_index || prev.version.checked_add(1) != Some(version) =>
        {
            Err(format!(
                "an overwrite has create_index {create_index} and version {version}, not {} and {} + 1",
                prev.create_index, prev.version
            ))
        }
        (ChangeKind::Put, _) => Ok(()),
        (ChangeKind::Delete, None) => Err("a delete has no previous value".to_string()),
        (ChangeKind::Delete, Some(_)) if !change.value.is_empty() || create_index != 0 || version != 0 => Err(format!(
            "a delete has a {}-byte value, create_index {create_index}, version {version}",
            change.value.len()
        )),
        (ChangeKind::Delete, Some(_)) => Ok(()),
    }
}

/// Checks that a previous state is one the store could have held before entry `index`.
fn validate_prev(prev: &Versioned, index: u64) -> Result<(), String> {
    let Versioned { create_index, modify_index, version, .. } = *prev;
    let indexes_ok = 1 <= create_index && create_index <= modify_index && modify_index < index;
    if indexes_ok && 1 <= version && version <= modify_index - create_index + 1 {
        Ok(())
    } else {
        Err(format!(
            "prev has create_index {create_index}, modify_index {modify_index}, version {version} \
             (needs 1 <= create <= modify < {index} and 1 <= version <= modify - create + 1)"
        ))
    }
}
