//! [`Wal::open`]: recovery, then the repair that makes the log writable again.

use std::io;

use super::{Wal, space, zero_fill};
use crate::disk::{Disk, DiskFile};
use crate::error::WalError;
use crate::record::{RecordRef, align_up};
use crate::recovery::{self, Recovery};
use crate::segment::Segment;
use crate::types::{Recovered, SEGMENT_BYTES_MIN, WalOptions};

impl<D: Disk> Wal<D> {
    /// Opens the log on `disk` (empty or holding an earlier log) and recovers its durable state.
    ///
    /// Recovery verifies every record of every segment and the newest snapshot. An unfinished
    /// batch or a torn write at the end of the log is cut off (durably, before this returns);
    /// damage anywhere else refuses to start. The returned [`Recovered`] holds exactly what the
    /// last successful [`Wal::sync`] (or snapshot call) made durable. See `FORMAT.md` for the
    /// rules.
    ///
    /// # Errors
    /// [`WalError::Corrupt`] naming the file and offset of damage recovery must not repair;
    /// [`WalError::Io`] if reading or repairing fails.
    ///
    /// # Panics
    /// If `options.segment_bytes_max < SEGMENT_BYTES_MIN`.
    pub fn open(mut disk: D, options: WalOptions) -> Result<(Wal<D>, Recovered), WalError> {
        let segment_bytes_max = options.segment_bytes_max;
        assert!(segment_bytes_max >= SEGMENT_BYTES_MIN, "segment_bytes_max {segment_bytes_max} < {SEGMENT_BYTES_MIN}");
        let recovery = recovery::recover(&mut disk)?;
        let repaired = repair(&mut disk, &recovery)?;
        let (active, segments, next_seq, fresh) = match repaired {
            Some(file) => (file, recovery.segments, recovery.next_seq, false),
            None => {
                let segment = Segment::new(recovery.next_seq);
                let mut file = io(disk.create(&segment.name), "create", &segment.name)?;
                io(zero_fill(&mut file, align_up(segment_bytes_max)), "preallocate", &segment.name)?;
                (file, vec![segment], recovery.next_seq + 1, true)
            }
        };
        let active_capacity = active.len();
        let mut wal = Wal {
            disk,
            options,
            segments,
            active,
            active_capacity,
            buffer: Vec::new(),
            buffer_offset: if fresh { 0 } else { recovery.append_offset },
            batch_records: 0,
            marker_count: 0,
            active_unsynced: fresh,
            dir_unsynced: fresh,
            next_seq,
            last_index: recovery.last_index,
            terms: recovery.recovered.entries.iter().map(|entry| entry.term).collect(),
            snapshot: recovery.recovered.snapshot.as_ref().map(|snapshot| (snapshot.index, snapshot.term)),
            hard_state: recovery.recovered.hard_state,
            poisoned: None,
            spares: space::no_spares(),
            no_space: None,
        };
        wal.remove_leftover_spares()?;
        if fresh {
            let seq = wal.segments[0].seq;
            wal.push(RecordRef::SegmentHeader { seq })?;
            wal.push(RecordRef::HardState(wal.hard_state))?;
        }
        if let Some((index, term)) = recovery.reset {
            // The snapshot replaced the log but the log does not say so yet: say it now, so
            // entries appended after it are never mistaken for the old log's.
            wal.push_reserved(RecordRef::Reset { index, term })?;
        }
        wal.sync()?;
        // Prepares the spare if the active segment is half full already; a full disk only turns
        // `has_space` off.
        wal.ensure_space()?;
        wal.check_invariants();
        Ok((wal, recovery.recovered))
    }
}

/// Carries out the repair plan: removes uncommitted segments and leftover temporary files, cuts
/// the unfinished tail of the last kept segment (truncate, fsync, then preallocate again) and
/// fsyncs the directory. Returns the open last kept segment, if any.
///
/// The tail is truncated rather than overwritten with zeros: a truncation survives a crash
/// whole or not at all, while a crash in the middle of overwriting could leave a valid-looking
/// uncommitted record after zeroed bytes, which the next recovery would take for damage.
fn repair<D: Disk>(disk: &mut D, recovery: &Recovery) -> Result<Option<D::File>, WalError> {
    // Newest first, so a crash part-way leaves a prefix of the log, never a log with a hole.
    for name in recovery.remove.iter().rev() {
        io(disk.remove(name), "remove", name)?;
    }
    let active = match recovery.segments.last() {
        None => None,
        Some(segment) => {
            let name = &segment.name;
            let mut file = io(disk.open(name), "open", name)?;
            if recovery.cut_tail {
                let capacity = file.len();
                io(file.truncate(recovery.append_offset), "truncate", name)?;
                io(file.sync(), "fsync", name)?;
                io(zero_fill(&mut file, capacity), "preallocate", name)?;
                io(file.sync(), "fsync", name)?;
            }
            Some(file)
        }
    };
    if !recovery.remove.is_empty() {
        io(disk.sync_dir(), "fsync", "<directory>")?;
    }
    Ok(active)
}

fn io<T>(result: io::Result<T>, operation: &'static str, file: &str) -> Result<T, WalError> {
    result.map_err(|source| WalError::Io { operation, file: file.to_owned(), source })
}
