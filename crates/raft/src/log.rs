//! The in-memory Raft log: every entry after the last compaction point, plus the commit, persist and apply
//! cursors the core needs to fill a [`crate::Ready`].
//!
//! ```text
//!   compacted | entries ......................................................|
//!   ..offset] [offset+1 ....... applied] ...... commit] ....... persisted] ... last]
//!                   handed out for apply | committed, not yet handed out        |
//!                                              handed out for persistence | unstable
//! ```

use crate::types::{Entry, LogIndex, SnapshotMeta, Term};

/// The log of one node.
///
/// Invariants (checked by [`RaftLog::check_invariants`], cheap ones asserted where state changes):
/// - `entries[i].index == offset + 1 + i` and terms never decrease along the log;
/// - `offset <= applied <= commit <= last_index`;
/// - `offset <= persisted <= last_index`.
#[derive(Clone, Debug)]
pub struct RaftLog {
    /// Index of the last entry dropped by compaction (or covered by an installed snapshot). Entries up to
    /// it are gone from memory; the snapshot covers them.
    offset: LogIndex,
    /// Term of the entry at `offset`, kept so the consistency check still works at the boundary.
    offset_term: Term,
    /// The entries after `offset`, consecutive.
    entries: Vec<Entry>,
    /// The highest index known to be committed. Never decreases.
    commit: LogIndex,
    /// The highest index handed to the driver for persistence. Entries above it are unstable: the next
    /// `Ready` hands them out. It moves back when a conflicting suffix is truncated.
    persisted: LogIndex,
    /// The highest index handed to the driver for application. Never decreases.
    applied: LogIndex,
}

impl RaftLog {
    /// A log that starts after `meta` (the empty log is `SnapshotMeta::default()`) and holds `entries`
    /// restored from disk, which are persisted by definition.
    ///
    /// # Panics
    /// If the entries do not follow `meta` consecutively, or `commit` is past the last entry.
    pub fn restore(meta: &SnapshotMeta, entries: Vec<Entry>, commit: LogIndex) -> RaftLog {
        let mut log = RaftLog {
            offset: meta.index,
            offset_term: meta.term,
            entries,
            commit: meta.index.max(commit),
            persisted: meta.index,
            applied: meta.index,
        };
        log.persisted = log.last_index();
        assert!(log.commit <= log.last_index(), "commit {} > last {}", log.commit, log.last_index());
        log.check_invariants();
        log
    }

    /// The index of the last entry (the offset if the log is empty).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.offset.0 + self.entries.len() as u64)
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// The first index still held in memory.
    pub fn first_index(&self) -> LogIndex {
        self.offset.next()
    }

    /// The compaction point.
    pub fn offset(&self) -> LogIndex {
        self.offset
    }

    /// The commit index.
    pub fn commit(&self) -> LogIndex {
        self.commit
    }

    /// The highest index handed out for application.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The term of the entry at `index`, or `None` if it was compacted away or does not exist yet.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index.0 - self.offset.0 - 1) as usize)
    }

    /// Whether the log holds an entry at `index` with `term` (the index may be the offset).
    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term_at(index) == Some(term)
    }

    /// Raft §5.4.1: a log whose last entry is `(last_term, last_index)` is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_term: Term, last_index: LogIndex) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Entries from `from` on, at most `max_count` of them and about `max_bytes` (at least one).
    ///
    /// # Panics
    /// If `from` is compacted away; the caller sends a snapshot instead.
    pub fn entries_from(&self, from: LogIndex, max_count: usize, max_bytes: usize) -> Vec<Entry> {
        assert!(from > self.offset, "entries from {from} requested but compacted up to {}", self.offset);
        let start = (from.0 - self.offset.0 - 1) as usize;
        let mut bytes = 0;
        let mut out = Vec::new();
        for entry in self.entries.iter().skip(start).take(max_count) {
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// The leader appends a new entry of `term` at the end; returns its index.
    pub fn append_new(&mut self, term: Term, payload: crate::types::EntryPayload) -> LogIndex {
        assert!(term >= self.last_term(), "appending term {term} after last term {}", self.last_term());
        let index = self.last_index().next();
        self.entries.push(Entry { term, index, payload });
        index
    }

    /// A follower appends `entries` that follow `prev_index` (which must match). Entries already present
    /// with the same term are skipped; the first conflicting entry and everything after it is truncated
    /// (Raft §5.3). Returns the index of the first entry truncated, if any.
    ///
    /// # Panics
    /// If the truncation would remove a committed entry: that would break the State Machine Safety property.
    pub fn append_after(&mut self, prev_index: LogIndex, entries: &[Entry]) -> Option<LogIndex> {
        let mut truncated = None;
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, LogIndex(prev_index.0 + 1 + i as u64), "entries not consecutive");
            if entry.index <= self.offset {
                continue; // already compacted: committed, so it matches
            }
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    assert!(
                        entry.index > self.commit,
                        "truncating committed entry {} (commit {})",
                        entry.index,
                        self.commit
                    );
                    self.truncate_from(entry.index);
                    truncated = Some(entry.index);
                }
                None => {}
            }
            self.entries.extend(entries[i..].iter().cloned());
            break;
        }
        truncated
    }

    /// Drops `index` and every entry after it.
    fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.offset, "truncating compacted index {index}");
        self.entries.truncate((index.0 - self.offset.0 - 1) as usize);
        self.persisted = self.persisted.min(index.prev());
    }

    /// Advances the commit index. Never moves it back.
    ///
    /// # Panics
    /// If `index` is past the last entry.
    pub fn commit_to(&mut self, index: LogIndex) {
        if index <= self.commit {
            return;
        }
        assert!(index <= self.last_index(), "commit {index} > last {}", self.last_index());
        self.commit = index;
    }

    /// The largest index `<= index` whose term is `<= term`: where a log with entry `(index, term)`'s
    /// history may still agree with ours. Used for fast conflict backtracking.
    pub fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> LogIndex {
        let mut i = index.min(self.last_index());
        while i > self.offset {
            match self.term_at(i) {
                Some(t) if t <= term => return i,
                _ => i = i.prev(),
            }
        }
        i
    }

    /// Hands out the entries not yet handed out for persistence.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let from = self.persisted.next();
        let out = if from <= self.last_index() { self.entries_from(from, usize::MAX, usize::MAX) } else { Vec::new() };
        self.persisted = self.last_index();
        out
    }

    /// Hands out committed entries not yet handed out for application, in order.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        if self.commit <= self.applied {
            return Vec::new();
        }
        let count = (self.commit.0 - self.applied.0) as usize;
        let out = self.entries_from(self.applied.next(), count, usize::MAX);
        assert_eq!(out.len(), count, "missing committed entries");
        self.applied = self.commit;
        out
    }

    /// Whether there is anything for the driver to persist or apply.
    pub fn has_ready(&self) -> bool {
        self.persisted < self.last_index() || self.applied < self.commit
    }

    /// Replaces the whole log with a snapshot's position: everything up to `meta.index` is covered by the
    /// snapshot and the entries after it are dropped (they may conflict with the leader's).
    ///
    /// # Panics
    /// If the snapshot does not reach past the commit index (an old snapshot must be ignored by the caller).
    pub fn install_snapshot(&mut self, meta: &SnapshotMeta) {
        assert!(meta.index > self.commit, "snapshot {} not past commit {}", meta.index, self.commit);
        self.offset = meta.index;
        self.offset_term = meta.term;
        self.entries.clear();
        self.commit = meta.index;
        self.persisted = meta.index;
        self.applied = meta.index;
        self.check_invariants();
    }

    /// Forgets entries up to `index`, which the driver's snapshot covers. A no-op if already compacted.
    ///
    /// # Panics
    /// If `index` was not yet handed out for application: the snapshot cannot cover it.
    pub fn compact_to(&mut self, index: LogIndex) {
        if index <= self.offset {
            return;
        }
        assert!(index <= self.applied, "compacting {index} past applied {}", self.applied);
        let term = self.term_at(index).expect("applied entry is held");
        self.entries.drain(..(index.0 - self.offset.0) as usize);
        self.offset = index;
        self.offset_term = term;
    }

    /// Checks every invariant of the log. O(n): call it from tests and the simulator.
    ///
    /// # Panics
    /// On any broken invariant, with the values involved.
    pub fn check_invariants(&self) {
        let mut prev_term = self.offset_term;
        for (i, entry) in self.entries.iter().enumerate() {
            assert_eq!(entry.index.0, self.offset.0 + 1 + i as u64, "entry index gap at position {i}");
            assert!(entry.term >= prev_term, "term decreases at {}: {} < {prev_term}", entry.index, entry.term);
            prev_term = entry.term;
        }
        assert!(self.offset <= self.applied, "applied {} < offset {}", self.applied, self.offset);
        assert!(self.applied <= self.commit, "applied {} > commit {}", self.applied, self.commit);
        assert!(self.commit <= self.last_index(), "commit {} > last {}", self.commit, self.last_index());
        assert!(self.offset <= self.persisted, "persisted {} < offset {}", self.persisted, self.offset);
        assert!(self.persisted <= self.last_index(), "persisted {} > last {}", self.persisted, self.last_index());
    }
}
