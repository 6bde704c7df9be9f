//! Recovery: from the files on disk to the durable state and a repair plan.
//!
//! ```text
//! list ─▶ newest valid snapshot ─▶ scan each segment (verify every record, tell a torn tail from
//!      damage) ─▶ replay batches (check batch numbers, marker chains, the segment chain)
//!      ─▶ reconcile log with snapshot ─▶ Recovery { state, kept segments, what to cut }
//! ```
//!
//! This module only reads; [`crate::Wal::open`] carries out the repair plan, which also makes
//! durable everything recovery read (see `FORMAT.md`, "Recovery").

mod replay;

use crate::disk::{Disk, DiskFile};
use crate::error::{WalError, corrupt};
use crate::record::Record;
use crate::segment::{self, ScanContext, ScannedRecord, Segment};
use crate::snapshot;
use crate::types::{HardState, Recovered};

use replay::Replay;
pub(crate) use replay::truncate_live;

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
    /// The sequence number for the next segment: above every segment seen, removed ones included,
    /// so no name is ever reused (a new segment's header names the segment it follows instead).
    pub(crate) next_seq: u64,
    /// The last index of the log (the snapshot's index when no entry follows it).
    pub(crate) last_index: u64,
    /// The log disagrees with the newest snapshot (a `replace_with_snapshot` interrupted after
    /// the snapshot became durable): write `Reset(index, term)` before anything else.
    pub(crate) reset: Option<(u64, u64)>,
    /// The log's id, from the segment headers; `None` when no segment has a valid header.
    pub(crate) log_id: Option<u64>,
    /// The number of the next batch: one past the last committed marker's when segments are
    /// kept, else past every batch number seen.
    pub(crate) next_batch: u64,
    /// The checksum of the last committed batch marker (0: none), which the next marker chains to.
    pub(crate) last_marker_checksum: u32,
}

/// What recovery keeps of each segment it scanned.
struct Scanned {
    name: String,
    seq: u64,
    /// The checksum of its last valid record (0: none).
    last_checksum: u32,
    used_end: u64,
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
    let mut replay = Replay::new(snapshot.as_ref().map_or(0, |s| s.index), snapshot_note);
    let mut scanned: Vec<Scanned> = Vec::new();
    // Whether the last segment holds no valid record while a segment precedes it: see `tail_may_be_acknowledged`.
    let mut rolled_into_nothing = false;
    let mut context = ScanContext::default();
    let mut after_damage = Vec::new();
    for (position, (seq, name)) in segment_names.iter().enumerate() {
        if *seq > segment::SEQ_MAX {
            let reason =
                format!("segment sequence number {seq} is past the largest a log reaches, {}", segment::SEQ_MAX);
            return Err(corrupt(name, 0, reason));
        }
        let mut file = io(disk.open(name), "open", name)?;
        let mut bytes = vec![0; file.len() as usize];
        io(file.read_at(0, &mut bytes), "read", name)?;
        let scan = segment::scan(name, *seq, &bytes, position + 1 == segment_names.len(), context)?;
        if let (Some(before), Some(previous), Some(sealed_last)) = (scanned.last(), scan.previous, scan.sealed_last) {
            // The segment before it on disk is the one it followed: its last record must be the one the
            // writer sealed. Otherwise the sealed segment lost its tail (a lost or misdirected write).
            if previous == before.seq && sealed_last != before.last_checksum {
                let reason = format!(
                    "segment {seq} says segment {previous} ends in a record with checksum {sealed_last:#010x}, but its \
                     last valid record has {:#010x}: the end of segment {previous} was lost",
                    before.last_checksum
                );
                return Err(corrupt(&before.name, before.used_end, reason));
            }
        }
        let missing = match (scanned.last(), scan.previous) {
            (Some(before), Some(previous)) if previous != before.seq => {
                Some(missing_segments(before.seq, *seq, previous))
            }
            _ => None,
        };
        rolled_into_nothing = position > 0 && scan.records.is_empty();
        replay.begin_segment(name, missing);
        context = ScanContext {
            log_id: scan.log_id.or(context.log_id),
            open_batch: scan.records.last().map(ScannedRecord::open_batch_after).or(context.open_batch),
        };
        let last_checksum = scan.records.last().map_or(0, |record| record.checksum);
        for record in scan.records {
            replay.push(position, record)?;
        }
        after_damage = scan.after_damage;
        scanned.push(Scanned { name: scan.name, seq: scan.seq, last_checksum, used_end: scan.used_end });
    }

    let (kept, append_offset) = replay.commit().map_or((0, 0), |(position, end)| (position + 1, end));
    let mut remove: Vec<String> = names.iter().filter(|name| snapshot::is_temp_name(name)).cloned().collect();
    remove.extend(scanned[kept..].iter().map(|segment| segment.name.clone()));
    let mut discarded: u64 = scanned[kept..].iter().map(|segment| segment.used_end).sum();
    let mut cut_tail = false;
    if let Some(last) = kept.checked_sub(1).map(|last| &scanned[last]) {
        assert!(last.used_end >= append_offset, "commit point {append_offset} past used end {}", last.used_end);
        discarded += last.used_end - append_offset;
        cut_tail = last.used_end > append_offset;
    }
    let next_seq = scanned.last().map_or(1, |segment| segment.seq + 1);
    let tail_hard_state = highest_hard_state(replay.pending().chain(&after_damage));
    let (next_batch, last_marker_checksum) = match replay.last_marker {
        Some((batch, checksum)) if kept > 0 => (batch + 1, checksum),
        // Nothing kept: every segment is removed (durably, before the new one is created), so no record of the
        // old log survives to be confused with the new one, whose numbering starts over. (Starting above the
        // batch numbers found in the removed bytes could start past what recovery accepts, if those bytes are
        // garbage: the next recovery would then cut the new log whole.)
        _ => (1, 0),
    };
    let mut segments: Vec<Segment> = scanned[..kept]
        .iter()
        .zip(replay.live())
        .map(|(segment, live)| Segment { seq: segment.seq, name: segment.name.clone(), live: *live })
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
            // A segment is renamed into place only by a roll, in the batch that then writes its header: a last
            // segment that holds nothing (all zeros) may have lost a batch whose sync returned (a lost or
            // misdirected write), though no byte of it is left to cut.
            tail_may_be_acknowledged: discarded > 0 || rolled_into_nothing,
            tail_hard_state,
        },
        segments,
        append_offset,
        cut_tail,
        remove,
        next_seq,
        last_index: state.last_index,
        reset: state.reset,
        log_id: context.log_id,
        next_batch,
        last_marker_checksum,
    })
}

/// Describes the segments missing between segment `before` and segment `seq`, whose header says
/// it followed segment `previous`.
fn missing_segments(before: u64, seq: u64, previous: u64) -> String {
    if previous > before {
        format!(
            "segment {} is missing (segment {seq} follows segment {previous}, the segment before it on disk is {before})",
            before + 1
        )
    } else {
        format!(
            "segment {seq} follows segment {previous}, but segment {before} is on disk before it: segments \
             {before}..{seq} do not form one log"
        )
    }
}

/// The highest hard state among `records` (cut from the tail): by term, then whether it holds a
/// vote, then commit index.
fn highest_hard_state<'a>(records: impl Iterator<Item = &'a ScannedRecord>) -> Option<HardState> {
    records
        .filter_map(|scanned| match scanned.record {
            Record::HardState(hard_state) => Some(hard_state),
            _ => None,
        })
        .max_by_key(|hs| (hs.term, hs.vote != 0, hs.commit))
}

fn io<T>(result: std::io::Result<T>, operation: &'static str, file: &str) -> Result<T, WalError> {
    result.map_err(|source| WalError::Io { operation, file: file.to_owned(), source })
}

#[cfg(test)]
mod tests;
