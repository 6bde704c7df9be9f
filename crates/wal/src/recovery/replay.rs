//! Replay: records in log order, a batch at a time, into the durable state.
//!
//! Besides applying records, replay checks what binds them into one log: batch numbers run
//! without a hole, each marker counts and chains exactly the records before it and chains to the
//! previous marker, and a gap in the segment chain is explained by compaction or a reset.

use std::mem;

use crate::error::{WalError, corrupt};
use crate::record::{self, Record};
use crate::segment::ScannedRecord;
use crate::types::{HardState, INDEX_MAX, WalEntry};

/// Replays records batch by batch: a batch's records take effect only when its marker is read.
pub(super) struct Replay {
    /// The newest valid snapshot's index (0: none). Entries at or below it may be missing.
    snapshot_index: u64,
    /// Notes on skipped invalid snapshots, appended to gap errors.
    snapshot_note: String,
    /// Names of the segments scanned so far, by position.
    names: Vec<String>,
    /// The index just before the first entry held. Invariant: entries hold base+1..=base+len.
    base: u64,
    /// The record that set `base` (a reset or a gap), for error messages.
    base_origin: Option<(usize, u64)>,
    /// Committed entries, consecutive.
    entries: Vec<WalEntry>,
    /// The term of entry `base` when known (set by a reset), else 0.
    base_term: u64,
    /// The latest committed hard state.
    hard_state: HardState,
    /// Where `hard_state` was read (segment position, offset), for error messages.
    hard_state_origin: Option<(usize, u64)>,
    /// Live entry range of each segment, by position (see [`Segment::live`]).
    live: Vec<Option<(u64, u64)>>,
    /// Segment position and offset just past the last batch marker.
    commit: Option<(usize, u64)>,
    /// Records read since the last batch marker: (segment position, record).
    pending: Vec<(usize, ScannedRecord)>,
    /// Entries missing above the snapshot: (lowest missing index, segment position, offset,
    /// what). Fatal at the end unless a later record rewrites the log from at or below the
    /// lowest missing index, or resets it (a crash in the middle of removing the segments a
    /// snapshot replaced can leave such holes).
    gap: Option<(u64, usize, u64, String)>,
    /// The batch the next record must belong to; `None` when unknown (before the first record, and
    /// after a gap in the segment chain, where the next record only has to be of a later batch).
    open_batch: Option<u64>,
    /// `(batch, checksum)` of the last batch marker read: what the next marker chains to.
    pub(super) last_marker: Option<(u64, u32)>,
    /// A gap in the segment chain was crossed since the last marker: the next marker's predecessor
    /// may be in a missing segment, so its link is not checked.
    gap_since_marker: bool,
    /// The chain of the records since the last marker in the current segment (see `Record::BatchEnd`).
    chain: u32,
    /// Gaps in the segment chain: (position of the segment after the gap, what is missing). Fatal at
    /// the end unless compaction or a reset explains them.
    segment_gaps: Vec<(usize, String)>,
}

/// The replayed state after reconciling it with the snapshot.
pub(super) struct Replayed {
    pub(super) hard_state: HardState,
    pub(super) entries: Vec<WalEntry>,
    pub(super) last_index: u64,
    pub(super) reset: Option<(u64, u64)>,
}

impl Replay {
    pub(super) fn new(snapshot_index: u64, snapshot_note: String) -> Replay {
        Replay {
            snapshot_index,
            snapshot_note,
            names: Vec::new(),
            base: 0,
            base_origin: None,
            entries: Vec::new(),
            base_term: 0,
            hard_state: HardState::default(),
            hard_state_origin: None,
            live: Vec::new(),
            commit: None,
            pending: Vec::new(),
            gap: None,
            open_batch: None,
            last_marker: None,
            gap_since_marker: false,
            chain: 0,
            segment_gaps: Vec::new(),
        }
    }

    /// Starts the segment at `position`; `missing` describes the segments missing before it (a gap
    /// in the segment chain), if any.
    pub(super) fn begin_segment(&mut self, name: &str, missing: Option<String>) {
        let position = self.names.len();
        self.names.push(name.to_owned());
        self.live.push(None);
        // A marker counts and chains the records of its own segment only (compaction may remove the
        // segment holding the start of a batch that spans segments).
        self.chain = 0;
        if let Some(missing) = missing {
            self.segment_gaps.push((position, missing));
            self.gap_since_marker = true;
            self.open_batch = None;
        }
    }

    /// Segment position and offset just past the last batch marker.
    pub(super) fn commit(&self) -> Option<(usize, u64)> {
        self.commit
    }

    /// Records read since the last batch marker: the unfinished batch.
    pub(super) fn pending(&self) -> impl Iterator<Item = &ScannedRecord> {
        self.pending.iter().map(|(_, record)| record)
    }

    /// Live entry range of each segment, by position.
    pub(super) fn live(&self) -> &[Option<(u64, u64)>] {
        &self.live
    }

    pub(super) fn push(&mut self, position: usize, scanned: ScannedRecord) -> Result<(), WalError> {
        self.check_batch(position, &scanned)?;
        let Record::BatchEnd { records, previous, chain } = scanned.record else {
            self.chain = record::chain(self.chain, scanned.checksum);
            self.pending.push((position, scanned));
            return Ok(());
        };
        let name = &self.names[position];
        // The marker counts the batch's records in its own segment (see `FORMAT.md`).
        let held = self.pending.iter().filter(|(at, _)| *at == position).count() as u64;
        if records != held {
            let reason =
                format!("batch marker counts {records} records, the segment holds {held} since the last marker");
            return Err(corrupt(name, scanned.offset, reason));
        }
        if chain != self.chain {
            let reason = format!("batch marker chains {chain:#010x}, the records before it chain {:#010x}", self.chain);
            return Err(corrupt(name, scanned.offset, reason));
        }
        if let Some((batch, checksum)) = self.last_marker.filter(|_| !self.gap_since_marker) {
            if previous != checksum {
                let reason = format!(
                    "batch marker links to a previous marker with checksum {previous:#010x}, but the marker of batch \
                     {batch} has {checksum:#010x}"
                );
                return Err(corrupt(name, scanned.offset, reason));
            }
        }
        for (position, record) in mem::take(&mut self.pending) {
            self.apply(position, record)?;
        }
        self.commit = Some((position, scanned.end));
        self.last_marker = Some((scanned.batch, scanned.checksum));
        self.open_batch = Some(scanned.batch + 1);
        self.gap_since_marker = false;
        self.chain = 0;
        Ok(())
    }

    /// Batch numbers run without a hole: every record belongs to the open batch (a marker opens the
    /// next). Where the open batch is unknown, the record opens it, above the last marker's.
    fn check_batch(&mut self, position: usize, scanned: &ScannedRecord) -> Result<(), WalError> {
        let fail = |reason: String| Err(corrupt(&self.names[position], scanned.offset, reason));
        match (self.open_batch, self.last_marker) {
            (Some(open), _) if scanned.batch != open => {
                fail(format!("record of batch {} where batch {open} is open", scanned.batch))
            }
            (None, Some((last, _))) if scanned.batch <= last => {
                fail(format!("record of batch {} after the marker of batch {last}", scanned.batch))
            }
            (None, _) => {
                self.open_batch = Some(scanned.batch);
                Ok(())
            }
            (Some(_), _) => Ok(()),
        }
    }

    fn last(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    fn apply(&mut self, position: usize, scanned: ScannedRecord) -> Result<(), WalError> {
        let fail = |reason: String| corrupt(&self.names[position], scanned.offset, reason);
        match scanned.record {
            Record::SegmentHeader { .. } | Record::BatchEnd { .. } => {}
            Record::HardState(hs) => {
                let old = self.hard_state;
                if hs.term < old.term || hs.commit < old.commit {
                    return Err(fail(format!("hard state {hs:?} goes back from {old:?}")));
                }
                if hs.term == old.term && old.vote != 0 && hs.vote != old.vote {
                    return Err(fail(format!("hard state {hs:?} changes the vote of term {}", old.term)));
                }
                self.hard_state = hs;
                self.hard_state_origin = Some((position, scanned.offset));
            }
            Record::Reset { index, .. } | Record::Entry(WalEntry { index, .. }) if index > INDEX_MAX => {
                return Err(fail(format!("index {index} is past the largest the log holds, {INDEX_MAX}")));
            }
            Record::Reset { index, term } => {
                self.entries.clear();
                self.base = index;
                self.base_origin = Some((position, scanned.offset));
                self.base_term = term;
                self.gap = None;
                self.live.iter_mut().for_each(|live| *live = None);
            }
            Record::Entry(entry) => {
                if entry.index == 0 {
                    return Err(fail("entry at index 0".to_owned()));
                }
                let last = self.last();
                if entry.index > last + 1 || entry.index <= self.base {
                    self.restart(position, scanned.offset, entry.index);
                } else {
                    if entry.index <= last {
                        let commit = self.hard_state.commit;
                        if entry.index <= commit {
                            return Err(fail(format!(
                                "entry {} replaces a committed entry (commit {commit})",
                                entry.index
                            )));
                        }
                        self.entries.truncate((entry.index - 1 - self.base) as usize);
                        truncate_live(&mut self.live, entry.index);
                    }
                    // Pairs the writer's check: terms never go down along the log.
                    let previous = self.entries.last().map_or(self.base_term, |entry| entry.term);
                    if entry.term < previous {
                        let reason =
                            format!("entry {} has term {} < previous term {previous}", entry.index, entry.term);
                        return Err(fail(reason));
                    }
                }
                let live = &mut self.live[position];
                *live = Some((live.map_or(entry.index, |(first, _)| first), entry.index));
                self.entries.push(entry);
            }
        }
        Ok(())
    }

    /// The log restarts at entry `index`: it jumps past the last entry, or rewrites before the
    /// first one held. Fine where a snapshot covers everything before it (compaction removes
    /// whole segments, so the oldest kept segment may start with entries a later record
    /// replaced, and an interrupted compaction may leave holes); otherwise a gap is noted.
    fn restart(&mut self, position: usize, offset: u64, index: u64) {
        if self.gap.as_ref().is_some_and(|(missing, ..)| index <= *missing) {
            self.gap = None;
        }
        if index - 1 > self.snapshot_index && self.gap.is_none() {
            let last = self.last();
            let missing = if index > last + 1 { last + 1 } else { 1 }.max(self.snapshot_index + 1);
            let held = if last > self.base {
                format!("it held {}..={last}", self.base + 1)
            } else {
                "it held none".to_owned()
            };
            let reason = format!(
                "the log restarts at entry {index} ({held}): entries from {missing} are missing and no snapshot covers \
                 them ({})",
                self.snapshot_description()
            );
            self.gap = Some((missing, position, offset, reason));
        }
        self.entries.clear();
        self.base = index - 1;
        self.base_term = 0;
        self.base_origin = Some((position, offset));
        self.live.iter_mut().for_each(|live| *live = None);
    }

    /// Which snapshot recovery uses, and which it skipped, for error messages.
    fn snapshot_description(&self) -> String {
        match self.snapshot_index {
            0 => format!("there is no valid snapshot{}", self.snapshot_note),
            index => format!("newest valid snapshot: index {index}{}", self.snapshot_note),
        }
    }

    /// Reconciles the log with the newest valid snapshot `(index, term)`, then checks the hard state against the
    /// result. The writer never syncs a commit index past its last entry or snapshot (it asserts so), and the
    /// entries up to the commit index are never replaced, so a hard state committing past the recovered log is
    /// damage; starting from it would trip the same assertion at the first write, or the Raft core's.
    pub(super) fn finish(self, snapshot: Option<(u64, u64)>) -> Result<Replayed, WalError> {
        self.check_segment_gaps()?;
        let origin = self.hard_state_origin.map(|(position, offset)| (self.names[position].clone(), offset));
        let replayed = self.reconcile(snapshot)?;
        let commit = replayed.hard_state.commit;
        if commit > replayed.last_index {
            let (file, offset) = origin.unwrap_or_else(|| ("<log>".to_owned(), 0));
            let reason = format!(
                "the hard state commits index {commit} but the log ends at index {}: committed entries are missing",
                replayed.last_index
            );
            return Err(corrupt(&file, offset, reason));
        }
        Ok(replayed)
    }

    /// A gap in the segment chain (a segment that names a predecessor other than the segment before
    /// it on disk) is explained when everything before it may be gone: compaction removes sealed
    /// segments whose live entries the snapshot covers (a crash can persist those removals in any
    /// order), and a reset discards every entry before it (`replace_with_snapshot` removes the old
    /// segments newest first). Otherwise a segment was lost.
    fn check_segment_gaps(&self) -> Result<(), WalError> {
        for (position, missing) in &self.segment_gaps {
            let uncovered = self.live[..*position]
                .iter()
                .enumerate()
                .find(|(_, live)| live.is_some_and(|(_, last)| last > self.snapshot_index));
            if let Some((before, live)) = uncovered {
                let reason = format!(
                    "{missing}: a segment was lost (neither compaction nor a reset explains the gap: {} before it \
                     holds live entries {live:?} past the snapshot; {})",
                    self.names[before],
                    self.snapshot_description()
                );
                return Err(corrupt(&self.names[*position], 0, reason));
            }
        }
        Ok(())
    }

    /// Reconciles the log with the newest valid snapshot `(index, term)`.
    fn reconcile(mut self, snapshot: Option<(u64, u64)>) -> Result<Replayed, WalError> {
        if let Some((_, position, offset, reason)) = self.gap.take() {
            return Err(corrupt(&self.names[position], offset, reason));
        }
        let origin = |replay: &Replay| {
            replay
                .base_origin
                .map_or(("<log>".to_owned(), 0), |(position, offset)| (replay.names[position].clone(), offset))
        };
        let Some((index, term)) = snapshot else {
            if self.base > 0 {
                let (file, offset) = origin(&self);
                let reason = format!(
                    "the log starts after index {} but there is no valid snapshot{}",
                    self.base, self.snapshot_note
                );
                return Err(corrupt(&file, offset, reason));
            }
            if self.base_term != 0 {
                // Only a reset writes a term for `base`, and a reset to index 0 is to the empty prefix (term 0):
                // entries after it may not be held to a term the writer, which knows no snapshot, cannot know.
                let (file, offset) = origin(&self);
                let reason =
                    format!("the log was reset to index 0 with term {}, but index 0 has no term", self.base_term);
                return Err(corrupt(&file, offset, reason));
            }
            let last_index = self.last();
            return Ok(Replayed { hard_state: self.hard_state, entries: self.entries, last_index, reset: None });
        };
        if self.base > index {
            let (file, offset) = origin(&self);
            let reason = format!(
                "the log starts after index {} but the newest valid snapshot ends at {index}: entries {}..={} are missing{}",
                self.base,
                index + 1,
                self.base,
                self.snapshot_note
            );
            return Err(corrupt(&file, offset, reason));
        }
        let last = self.last();
        // Raft's rule for an installed snapshot: keep the entries after it only if the log holds
        // the snapshot's last entry with the same term; otherwise the snapshot replaces the log.
        // At `base` the log knows the term only from a reset (`base_term` 0: unknown, as after
        // compaction); a reset to the snapshot's index with another term disagrees too, and so
        // does an unknown one followed by an entry of a lower term than the snapshot's (terms
        // never go down along a log, so the log cannot hold the snapshot's last entry).
        let agrees = if index == self.base {
            let next_term = self.entries.first().map_or(term, |entry| entry.term);
            (self.base_term == 0 || self.base_term == term) && next_term >= term
        } else {
            last >= index && self.entries[(index - self.base - 1) as usize].term == term
        };
        if !agrees {
            return Ok(Replayed {
                hard_state: self.hard_state,
                entries: Vec::new(),
                last_index: index,
                reset: Some((index, term)),
            });
        }
        self.entries.drain(..(index - self.base) as usize);
        Ok(Replayed { hard_state: self.hard_state, entries: self.entries, last_index: last, reset: None })
    }
}

/// Marks entries `>= index` as replaced in every segment's live range.
pub(crate) fn truncate_live(live: &mut [Option<(u64, u64)>], index: u64) {
    for range in live.iter_mut() {
        *range = match *range {
            Some((first, _)) if first >= index => None,
            Some((first, last)) => Some((first, last.min(index - 1))),
            None => None,
        };
    }
}
