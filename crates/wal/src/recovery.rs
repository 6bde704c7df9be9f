//! Recovery: from the files on disk to the durable state and a repair plan.
//!
//! ```text
//! list ─▶ newest valid snapshot ─▶ scan each segment (verify every record) ─▶ replay batches
//!      ─▶ reconcile log with snapshot ─▶ Recovery { state, kept segments, what to cut }
//! ```
//!
//! This module only reads; [`crate::Wal::open`] carries out the repair plan.

use std::mem;

use crate::disk::{Disk, DiskFile};
use crate::error::{WalError, corrupt};
use crate::record::Record;
use crate::segment::{self, ScannedRecord, Segment};
use crate::snapshot;
use crate::types::{HardState, INDEX_MAX, Recovered, WalEntry};

/// The durable state and what must be repaired before the log accepts writes.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// What the caller gets back.
    pub(crate) recovered: Recovered,
    /// Kept segments in log order; the last becomes the active one. Empty: start a new log.
    pub(crate) segments: Vec<Segment>,
    /// Offset just past the last committed record of the last kept segment: appends go here.
    pub(crate) append_offset: u64,
    /// Whether the last kept segment holds bytes after `append_offset` (an unfinished batch or a
    /// torn write) that must be cut before anything is appended.
    pub(crate) cut_tail: bool,
    /// Files to remove: segments holding only uncommitted records, and leftover temporary
    /// snapshot files.
    pub(crate) remove: Vec<String>,
    /// The sequence number for the next segment: above every segment seen, removed ones included.
    pub(crate) next_seq: u64,
    /// The last index of the log (the snapshot's index when no entry follows it).
    pub(crate) last_index: u64,
    /// The log disagrees with the newest snapshot (a `replace_with_snapshot` interrupted after
    /// the snapshot became durable): write `Reset(index, term)` before anything else.
    pub(crate) reset: Option<(u64, u64)>,
}

/// Reads and verifies everything on `disk`.
///
/// # Errors
/// [`WalError::Corrupt`] for damage recovery must not repair; [`WalError::Io`] if a read fails.
pub(crate) fn recover<D: Disk>(disk: &mut D) -> Result<Recovery, WalError> {
    let names = io(disk.list(), "list", "<directory>")?;
    let (snapshot, snapshot_note) = io(snapshot::load_newest(disk, &names), "read", "snapshot files")?;
    let segment_names: Vec<(u64, &String)> =
        names.iter().filter_map(|name| segment::parse_segment_name(name).map(|seq| (seq, name))).collect();
    let mut replay = Replay {
        snapshot_index: snapshot.as_ref().map_or(0, |s| s.index),
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
    };
    // (name, seq, used_end) of every segment scanned.
    let mut scanned = Vec::new();
    for (position, (seq, name)) in segment_names.iter().enumerate() {
        if *seq > segment::SEQ_MAX {
            let reason =
                format!("segment sequence number {seq} is past the largest a log reaches, {}", segment::SEQ_MAX);
            return Err(corrupt(name, 0, reason));
        }
        let mut file = io(disk.open(name), "open", name)?;
        let mut bytes = vec![0; file.len() as usize];
        io(file.read_at(0, &mut bytes), "read", name)?;
        let scan = segment::scan(name, *seq, &bytes, position + 1 == segment_names.len())?;
        replay.names.push(scan.name.clone());
        replay.live.push(None);
        for record in scan.records {
            replay.push(position, record)?;
        }
        scanned.push((scan.name, scan.seq, scan.used_end));
    }

    let (kept, append_offset) = replay.commit.map_or((0, 0), |(position, end)| (position + 1, end));
    let mut remove: Vec<String> = names.iter().filter(|name| snapshot::is_temp_name(name)).cloned().collect();
    remove.extend(scanned[kept..].iter().map(|(name, _, _)| name.clone()));
    let mut discarded: u64 = scanned[kept..].iter().map(|(_, _, used_end)| used_end).sum();
    let mut cut_tail = false;
    if let Some((_, _, used_end)) = kept.checked_sub(1).map(|last| &scanned[last]) {
        assert!(*used_end >= append_offset, "commit point {append_offset} past used end {used_end}");
        discarded += used_end - append_offset;
        cut_tail = *used_end > append_offset;
    }
    let next_seq = scanned.last().map_or(1, |(_, seq, _)| seq + 1);
    let live = replay.live.clone();
    let mut segments: Vec<Segment> = scanned[..kept]
        .iter()
        .zip(live)
        .map(|((name, seq, _), live)| Segment { seq: *seq, name: name.clone(), live })
        .collect();

    let state = replay.finish(snapshot.as_ref().map(|s| (s.index, s.term)))?;
    if state.reset.is_some() {
        segments.iter_mut().for_each(|segment| segment.live = None);
    }
    Ok(Recovery {
        recovered: Recovered {
            hard_state: state.hard_state,
            snapshot,
            entries: state.entries,
            tail_bytes_discarded: discarded,
            tail_may_be_acknowledged: discarded > 0,
        },
        segments,
        append_offset,
        cut_tail,
        remove,
        next_seq,
        last_index: state.last_index,
        reset: state.reset,
    })
}

fn io<T>(result: std::io::Result<T>, operation: &'static str, file: &str) -> Result<T, WalError> {
    result.map_err(|source| WalError::Io { operation, file: file.to_owned(), source })
}

/// Replays records batch by batch: a batch's records take effect only when its marker is read.
struct Replay {
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
}

/// The replayed state after reconciling it with the snapshot.
struct Replayed {
    hard_state: HardState,
    entries: Vec<WalEntry>,
    last_index: u64,
    reset: Option<(u64, u64)>,
}

impl Replay {
    fn push(&mut self, position: usize, scanned: ScannedRecord) -> Result<(), WalError> {
        let Record::BatchEnd { records } = scanned.record else {
            self.pending.push((position, scanned));
            return Ok(());
        };
        // The marker counts the batch's records in its own segment (see `FORMAT.md`).
        let held = self.pending.iter().filter(|(at, _)| *at == position).count() as u64;
        if records != held {
            let name = &self.names[position];
            let reason =
                format!("batch marker counts {records} records, the segment holds {held} since the last marker");
            return Err(corrupt(name, scanned.offset, reason));
        }
        for (position, record) in mem::take(&mut self.pending) {
            self.apply(position, record)?;
        }
        self.commit = Some((position, scanned.end));
        Ok(())
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
    fn finish(self, snapshot: Option<(u64, u64)>) -> Result<Replayed, WalError> {
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

#[cfg(test)]
mod tests;
