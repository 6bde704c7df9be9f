//! [`Wal::open`]: recovery, then the repair that makes the log writable again and makes durable
//! everything recovery relied on.

use std::io;

use super::{RECOVERY_MARKER, Wal, space, zero_fill};
use crate::disk::{Disk, DiskFile};
use crate::error::WalError;
use crate::record::{RecordRef, align_up};
use crate::recovery::{self, Recovery};
use crate::segment::Segment;
use crate::snapshot;
use crate::types::{HardState, Recovered, SEGMENT_BYTES_MIN, WalOptions};

/// Bytes read and rewritten at a time when the kept part of the last segment is made durable.
const REWRITE_CHUNK_BYTES: u64 = 1 << 20;

impl<D: Disk> Wal<D> {
    /// Opens the log on `disk` (empty or holding an earlier log) and recovers its durable state.
    ///
    /// Recovery verifies every record of every segment and the newest snapshot. An unfinished
    /// batch or a torn write at the end of the log is cut off (durably, before this returns);
    /// damage anywhere else refuses to start. Before it returns, everything it returns is durable:
    /// after a process crash (no power loss) the files may hold bytes that were read back from the
    /// page cache but never reached the disk (a sync that never returned, or failed and had its
    /// pages marked clean), so the kept part of the last segment is written again and fsynced, and
    /// the other segments, the snapshot and the directory are fsynced. The returned [`Recovered`]
    /// holds what the last successful [`Wal::sync`] (or snapshot call) made durable, or possibly
    /// the batch of a sync that did not return. See `FORMAT.md` for the rules.
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
        let mut recovery = recovery::recover(&mut disk)?;
        let marked = mark_recovery(&mut disk, &mut recovery.recovered)?;
        let repaired = repair(&mut disk, &recovery)?;
        let log_id = recovery.log_id.unwrap_or_else(|| disk.new_log_id());
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
            // `repair` fsynced the kept part of the last segment: a later roll never seals unsynced bytes.
            active_unsynced: fresh,
            dir_unsynced: fresh,
            next_seq,
            last_index: recovery.last_index,
            terms: recovery.recovered.entries.iter().map(|entry| entry.term).collect(),
            snapshot: recovery.recovered.snapshot.as_ref().map(|snapshot| (snapshot.index, snapshot.term)),
            hard_state: recovery.recovered.hard_state,
            poisoned: None,
            recovery_marked: marked,
            spares: space::no_spares(),
            no_space: None,
            log_id,
            batch: recovery.next_batch,
            last_marker_checksum: recovery.last_marker_checksum,
            // Recovery truncates the last kept segment right after its last marker.
            last_checksum: recovery.last_marker_checksum,
            marker_chain: 0,
        };
        wal.remove_leftover_spares()?;
        if fresh {
            let seq = wal.segments[0].seq;
            wal.push(RecordRef::SegmentHeader { seq, log_id, previous: 0, sealed_last: 0 })?;
            wal.push(RecordRef::HardState(wal.hard_state))?;
        }
        if let Some((index, term)) = recovery.reset {
            // The snapshot replaced the log but the log does not say so yet: say it now, so
            // entries appended after it are never mistaken for the old log's.
            wal.push_reserved(RecordRef::Reset { index, term })?;
        }
        wal.sync()?;
        assert!(!wal.active_unsynced, "open returns with unsynced bytes in the active segment");
        assert!(!wal.dir_unsynced, "open returns with an unsynced directory");
        // Prepares the spare if the active segment is half full already; a full disk only turns
        // `has_space` off.
        wal.ensure_space()?;
        wal.check_invariants();
        Ok((wal, recovery.recovered))
    }
}

/// Carries out the repair plan and makes durable what recovery read: removes uncommitted
/// segments and leftover temporary files; writes the kept part of the last kept segment again,
/// cuts its unfinished tail (truncate), fsyncs it, and preallocates it again; fsyncs every other
/// kept segment and the newest snapshot; fsyncs the directory. Returns the open last kept
/// segment, if any.
///
/// Only the last segment can hold bytes that never reached the disk (a segment is fsynced before
/// its successor is created, and a failed fsync poisons the log so no successor follows), so only
/// it is written again: the write re-dirties pages that a failed fsync marked clean, which a bare
/// fsync would skip. The others are fsynced anyway, which costs nothing when they are clean.
///
/// The tail is truncated rather than overwritten with zeros: a truncation survives a crash
/// whole or not at all, while a crash in the middle of overwriting could leave a valid-looking
/// uncommitted record after zeroed bytes, which the next recovery would take for damage.
fn repair<D: Disk>(disk: &mut D, recovery: &Recovery) -> Result<Option<D::File>, WalError> {
    // Newest first, one per directory fsync (unsynced directory changes may persist in any subset), so a
    // crash part-way leaves a prefix of the log, never a log with a hole; and all of them durable before the
    // last kept segment is cut, so no removed segment's header can outlive the record it names.
    for name in recovery.remove.iter().rev() {
        io(disk.remove(name), "remove", name)?;
        io(disk.sync_dir(), "fsync", "<directory>")?;
    }
    let Some((last, sealed)) = recovery.segments.split_last() else {
        sync_snapshot(disk, &recovery.recovered)?;
        io(disk.sync_dir(), "fsync", "<directory>")?;
        return Ok(None);
    };
    for segment in sealed {
        io(io(disk.open(&segment.name), "open", &segment.name)?.sync(), "fsync", &segment.name)?;
    }
    let name = &last.name;
    let mut file = io(disk.open(name), "open", name)?;
    let capacity = file.len();
    rewrite(&mut file, recovery.append_offset).map_err(|source| WalError::Io {
        operation: "rewrite",
        file: name.clone(),
        source,
    })?;
    if recovery.cut_tail {
        io(file.truncate(recovery.append_offset), "truncate", name)?;
    }
    io(file.sync(), "fsync", name)?;
    if recovery.cut_tail {
        io(zero_fill(&mut file, capacity), "preallocate", name)?;
        io(file.sync(), "fsync", name)?;
    }
    sync_snapshot(disk, &recovery.recovered)?;
    io(disk.sync_dir(), "fsync", "<directory>")?;
    Ok(Some(file))
}

/// Keeps protocol-aware recovery alive across restarts, before the repair changes anything: if this recovery
/// cut a tail that may have been acknowledged, or an earlier one's marker is still there, the marker file holds
/// the highest term the node may have acknowledged or voted in (u64 LE), durably (file and directory fsynced).
/// Sets `recovered` to report it: `tail_may_be_acknowledged`, and a `tail_hard_state` at least that term.
/// Returns whether the marker exists.
fn mark_recovery<D: Disk>(disk: &mut D, recovered: &mut Recovered) -> Result<bool, WalError> {
    let exists = io(disk.list(), "list", "<directory>")?.iter().any(|name| name == RECOVERY_MARKER);
    let mut marked_term = 0;
    if exists {
        let mut file = io(disk.open(RECOVERY_MARKER), "open", RECOVERY_MARKER)?;
        let mut bytes = [0u8; 8];
        if file.len() >= 8 {
            io(file.read_at(0, &mut bytes), "read", RECOVERY_MARKER)?;
        }
        marked_term = u64::from_le_bytes(bytes);
    }
    if !exists && !recovered.tail_may_be_acknowledged {
        return Ok(false);
    }
    let cut_term = recovered.tail_hard_state.map_or(0, |tail| tail.term).max(recovered.hard_state.term);
    let term = cut_term.max(marked_term);
    if !exists || term > marked_term {
        let mut file = match exists {
            true => io(disk.open(RECOVERY_MARKER), "open", RECOVERY_MARKER)?,
            false => io(disk.create(RECOVERY_MARKER), "create", RECOVERY_MARKER)?,
        };
        io(file.write_at(0, &term.to_le_bytes()), "write", RECOVERY_MARKER)?;
        io(file.sync(), "fsync", RECOVERY_MARKER)?;
        io(disk.sync_dir(), "fsync", "<directory>")?;
    }
    recovered.tail_may_be_acknowledged = true;
    if recovered.tail_hard_state.is_none_or(|tail| tail.term < term) {
        recovered.tail_hard_state = Some(HardState { term, vote: 0, commit: 0 });
    }
    Ok(true)
}

/// Writes bytes `0..len` of `file` again, as they are: reads return what the page cache holds,
/// which may never have reached the disk.
fn rewrite<F: DiskFile>(file: &mut F, len: u64) -> io::Result<()> {
    let mut chunk = Vec::new();
    let mut offset = 0;
    while offset < len {
        chunk.resize((len - offset).min(REWRITE_CHUNK_BYTES) as usize, 0);
        file.read_at(offset, &mut chunk)?;
        file.write_at(offset, &chunk)?;
        offset += chunk.len() as u64;
    }
    Ok(())
}

/// Fsyncs the newest snapshot file, which recovery returned.
fn sync_snapshot<D: Disk>(disk: &mut D, recovered: &Recovered) -> Result<(), WalError> {
    let Some(snapshot) = &recovered.snapshot else {
        return Ok(());
    };
    let name = snapshot::snapshot_name(snapshot.index);
    io(io(disk.open(&name), "open", &name)?.sync(), "fsync", &name)
}

fn io<T>(result: io::Result<T>, operation: &'static str, file: &str) -> Result<T, WalError> {
    result.map_err(|source| WalError::Io { operation, file: file.to_owned(), source })
}
