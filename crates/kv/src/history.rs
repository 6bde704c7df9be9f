//! The watch history: the key changes of recent log entries, kept in a bounded window so that watchers can
//! start in the past and resume after a disconnect.
//!
//! ```text
//!  apply(entry i) ──changes──▶ History::append(ChangeBatch i) ──trim oldest past the limits──▶ covered_from
//!                                      │
//!          watch hub / blocking read ◀─┴─ read(from, filter, max_bytes): one bounded page, or Compacted
//! ```
//!
//! # Window
//!
//! [`History::covered_from`] is the oldest index whose changes are all kept: every change of an entry with
//! index `>= covered_from` is in the history. Entries without key changes (no-ops, membership, auth, a failed
//! cas) are covered implicitly, as gaps between batches. A new history covers from 1; dropping the oldest batch
//! `i` moves `covered_from` to `i + 1`. A reader asking for an index below `covered_from` gets [`Compacted`], so
//! it knows to re-read the keys and resume from their index.
//!
//! # Limits
//!
//! The window holds at most [`HistoryLimits::entries_max`] batches and [`HistoryLimits::bytes_max`] bytes (the
//! sum of [`Change::size_bytes`]), except that the newest batch is never dropped: a huge prefix delete is kept
//! whole rather than cut in half. Limits are a node's own setting, not replicated state: they are not part of
//! the snapshot encoding, two histories compare equal whatever their limits, and a history restored from a
//! snapshot is trimmed to the restoring node's limits ([`History::decode`], [`History::set_limits`]).
//!
//! # Snapshots
//!
//! The kv snapshot carries the history as a section after the auth state (see `history/codec.rs` for the
//! bytes), inside the snapshot's CRC but outside the state checksum, because each node trims by its own
//! limits. A store restored from a snapshot without that section starts its history at `applied_index + 1`
//! ([`History::starting_at`]).

mod change;
mod codec;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

pub use change::{CHANGE_OVERHEAD_BYTES, Change, ChangeBatch, ChangeKind, KeyFilter};

use crate::Versioned;
use change::validate_batch;

/// How much history a node keeps. A node's own setting: never replicated, never in a snapshot.
///
/// Invariant: both limits are at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// At most this many batches (log entries with key changes) are kept.
    pub entries_max: usize,
    /// At most this many bytes of changes ([`Change::size_bytes`]) are kept, unless one batch alone is larger.
    pub bytes_max: usize,
}

impl HistoryLimits {
    /// The default window: 100,000 entries with changes, 256 MiB.
    pub const DEFAULT: HistoryLimits = HistoryLimits { entries_max: 100_000, bytes_max: 256 << 20 };

    /// Asserts the invariant.
    fn check(self) {
        assert!(self.entries_max >= 1, "history entries_max is 0: the history must keep at least one entry");
        assert!(self.bytes_max >= 1, "history bytes_max is 0: the history must keep at least one byte");
    }
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits::DEFAULT
    }
}

/// The history no longer holds the changes a reader asked for: they were trimmed away, or this node's history
/// was replaced by a snapshot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "changes before index {oldest} are no longer kept: read the current value, then watch from its index + 1 \
     (or from {oldest} or later)"
)]
pub struct Compacted {
    /// The oldest index the history still covers ([`History::covered_from`]).
    pub oldest: u64,
}

/// One page of [`History::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The batches with at least one change matching the filter, index in `[from, next_from)`, in index order.
    pub batches: Vec<Arc<ChangeBatch>>,
    /// The first index not scanned: the `from` of the next page. Equal to `from` when nothing was scanned.
    pub next_from: u64,
    /// Whether the history holds batches from `next_from` on. When false, every change from `from` up to the
    /// store's applied index was scanned.
    pub more: bool,
    /// The [`ChangeBatch::size_bytes`] of every batch scanned, matching or not: the work this page cost.
    pub scanned_bytes: usize,
}

/// The key changes of recent log entries, oldest first.
///
/// Invariants (checked by [`History::check_invariants`]):
/// - `covered_from >= 1`; batch indexes strictly increase, and each is `>= covered_from`;
/// - every batch is well formed ([`ChangeBatch`]), and a change's `prev` is the state its key's previous change
///   in the history left (absent after a delete);
/// - `bytes` is the sum of [`ChangeBatch::size_bytes`] over the batches;
/// - `len <= entries_max`, and `bytes <= bytes_max` unless only one batch is left.
///
/// The owner also keeps `covered_from <= applied_index + 1` and every batch index `<= applied_index`.
#[derive(Clone)]
pub struct History {
    /// The kept batches, oldest first. Shared with watchers' queues, so a change is never copied per watcher.
    batches: VecDeque<Arc<ChangeBatch>>,
    /// The oldest index whose changes are all kept.
    covered_from: u64,
    /// The sum of `size_bytes` over `batches`, kept so trimming is O(1) per check.
    bytes: usize,
    /// This node's window; not part of the history's value (ignored by `==`).
    limits: HistoryLimits,
}

impl History {
    /// An empty history covering from index 1: a new store's.
    ///
    /// # Panics
    /// If a limit is 0.
    pub fn new(limits: HistoryLimits) -> History {
        History::starting_at(1, limits)
    }

    /// An empty history covering from `covered_from`: a store restored from a snapshot that carries no history
    /// starts at its `applied_index + 1`, since nothing before that is known.
    ///
    /// # Panics
    /// If `covered_from` is 0 or a limit is 0.
    pub fn starting_at(covered_from: u64, limits: HistoryLimits) -> History {
        assert!(covered_from >= 1, "history covered_from is 0: log indexes start at 1");
        limits.check();
        History { batches: VecDeque::new(), covered_from, bytes: 0, limits }
    }

    /// The oldest index whose changes are all kept; a read from below it is [`Compacted`].
    pub fn covered_from(&self) -> u64 {
        self.covered_from
    }

    /// The index of the newest kept batch, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.batches.back().map(|batch| batch.index)
    }

    /// How many batches are kept.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether no batch is kept.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The kept bytes, as the byte limit counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// This node's window.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// Replaces the window and trims to it at once: a history restored from another node's snapshot keeps the
    /// restoring node's limits.
    ///
    /// # Panics
    /// If a limit is 0.
    pub fn set_limits(&mut self, limits: HistoryLimits) {
        limits.check();
        self.limits = limits;
        self.trim();
    }

    /// Adds the changes of entry `batch.index`, then drops the oldest batches past the limits (never the newest).
    ///
    /// # Panics
    /// If the batch is malformed (see [`ChangeBatch`]), its index is not above every kept batch's, or it is below
    /// `covered_from`: entries are applied once each, in log order.
    pub fn append(&mut self, batch: ChangeBatch) {
        if let Err(broken) = validate_batch(&batch) {
            panic!("history append of a malformed batch: {broken}");
        }
        assert!(
            batch.index >= self.covered_from,
            "history append of batch {} below covered_from {}",
            batch.index,
            self.covered_from
        );
        if let Some(last) = self.last_index() {
            assert!(batch.index > last, "history append of batch {} after batch {last}", batch.index);
        }
        self.bytes = self.bytes.saturating_add(batch.size_bytes());
        self.batches.push_back(Arc::new(batch));
        self.trim();
    }

    /// One page of the changes matching `filter` from index `from` (inclusive) on.
    ///
    /// The page scans batches in index order: always the first, then more while the scanned bytes stay within
    /// `max_bytes`, so a page costs at most `max(max_bytes, one batch)` of work and a reader pages on with
    /// [`HistoryPage::next_from`] until [`HistoryPage::more`] is false.
    ///
    /// # Errors
    /// [`Compacted`] if `from < covered_from`: the changes from `from` on are no longer all kept.
    pub fn read(&self, from: u64, filter: &KeyFilter, max_bytes: usize) -> Result<HistoryPage, Compacted> {
        if from < self.covered_from {
            return Err(Compacted { oldest: self.covered_from });
        }
        let mut page = HistoryPage { batches: Vec::new(), next_from: from, more: false, scanned_bytes: 0 };
        for (position, batch) in self.batches_from(from).enumerate() {
            let size = batch.size_bytes();
            if position > 0 && page.scanned_bytes.saturating_add(size) > max_bytes {
                page.more = true;
                break;
            }
            page.scanned_bytes = page.scanned_bytes.saturating_add(size);
            page.next_from = batch.index + 1;
            if batch.matches(filter) {
                page.batches.push(Arc::clone(batch));
            }
        }
        Ok(page)
    }

    /// The kept batches with index `>= from`, oldest first. Unlike [`History::read`] it neither filters nor
    /// checks `covered_from`: a caller that needs every change from `from` on compares `from` with
    /// [`History::covered_from`] first.
    pub fn batches_from(&self, from: u64) -> impl Iterator<Item = &Arc<ChangeBatch>> {
        let start = self.batches.partition_point(|batch| batch.index < from);
        self.batches.range(start..)
    }

    /// Checks every invariant of [`History`], in O(changes · log keys). For tests and the simulator.
    ///
    /// # Panics
    /// If one is broken, naming it.
    pub fn check_invariants(&self) {
        assert!(self.covered_from >= 1, "history covered_from is 0");
        let mut previous: Option<u64> = None;
        for batch in &self.batches {
            assert!(batch.index >= self.covered_from, "batch {} below covered_from {}", batch.index, self.covered_from);
            if let Some(previous) = previous {
                assert!(batch.index > previous, "batch {} follows batch {previous}", batch.index);
            }
            previous = Some(batch.index);
            if let Err(broken) = validate_batch(batch) {
                panic!("history holds a malformed batch: {broken}");
            }
        }
        if let Err(broken) = check_prev_chain(self.covered_from, self.batches.iter().map(|batch| &**batch)) {
            panic!("history prev chain broken: {broken}");
        }
        let bytes = self.batches.iter().fold(0usize, |sum, batch| sum.saturating_add(batch.size_bytes()));
        assert_eq!(self.bytes, bytes, "history bytes {} but its batches add up to {bytes}", self.bytes);
        let (len, limits) = (self.batches.len(), self.limits);
        assert!(len <= limits.entries_max, "history keeps {len} batches, over entries_max {}", limits.entries_max);
        assert!(
            self.bytes <= limits.bytes_max || len <= 1,
            "history keeps {} bytes in {len} batches, over bytes_max {}",
            self.bytes,
            limits.bytes_max
        );
    }

    /// Drops the oldest batches while a limit is exceeded and more than one batch is left.
    fn trim(&mut self) {
        while self.batches.len() > 1
            && (self.batches.len() > self.limits.entries_max || self.bytes > self.limits.bytes_max)
        {
            let Some(dropped) = self.batches.pop_front() else { unreachable!("trim of an empty history") };
            let size = dropped.size_bytes();
            assert!(size <= self.bytes, "history drops a {size}-byte batch but holds only {} bytes", self.bytes);
            self.bytes -= size;
            self.covered_from = dropped.index + 1;
        }
    }
}

impl Default for History {
    /// An empty history with the default limits.
    fn default() -> Self {
        History::new(HistoryLimits::DEFAULT)
    }
}

/// Equal when the same changes are kept over the same window; the limits are a node's own setting and do not
/// count.
impl PartialEq for History {
    fn eq(&self, other: &Self) -> bool {
        self.covered_from == other.covered_from && self.batches == other.batches
    }
}

impl Eq for History {}

/// A summary: the window and its size, not every change (a history can hold millions).
impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("covered_from", &self.covered_from)
            .field("last_index", &self.last_index())
            .field("len", &self.batches.len())
            .field("bytes", &self.bytes)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Checks that each change's `prev` is the state the previous change of its key left behind, and that the first
/// kept change of a key has a `prev` written before `covered_from` (or none): a window that covers an index
/// holds every change made there.
///
/// # Errors
/// A message naming the batch and key whose `prev` disagrees.
fn check_prev_chain<'a>(covered_from: u64, batches: impl Iterator<Item = &'a ChangeBatch>) -> Result<(), String> {
    let mut last_state: BTreeMap<&[u8], Option<Versioned>> = BTreeMap::new();
    for batch in batches {
        for change in &batch.changes {
            let after = match change.kind {
                ChangeKind::Put => Some(Versioned {
                    value: change.value.clone(),
                    create_index: change.create_index,
                    modify_index: change.modify_index,
                    version: change.version,
                }),
                ChangeKind::Delete => None,
            };
            match last_state.insert(&change.key, after) {
                Some(expected) if expected != change.prev => {
                    return Err(format!(
                        "batch {} key {:?} has prev {:?}, but the key's previous change left {expected:?}",
                        batch.index, change.key, change.prev
                    ));
                }
                None if change.prev.as_ref().is_some_and(|prev| prev.modify_index >= covered_from) => {
                    return Err(format!(
                        "batch {} key {:?} has prev {:?}, written at or after covered_from {covered_from}, \
                         but the history holds no change of the key there",
                        batch.index, change.key, change.prev
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
