//! Space: the spare segment, and running out of disk without poisoning the log.
//!
//! A segment roll never allocates. The next segment is created ahead of need as a *spare*
//! (`segment-<seq>.spare`: created, zero-filled to its full size and fsynced), and a roll only renames
//! it into place. Recovery ignores spare files and `Wal::open` removes leftovers, so a spare is never
//! part of the log, whatever state a crash leaves it in.
//!
//! ```text
//!   sync() ── active segment at least half full, no spare ──▶ create spare (create, zero-fill, fsync)
//!                                                             ├─ Ok: has_space() = true
//!                                                             └─ ENOSPC: remove the partial file,
//!                                                                has_space() = false, nothing poisoned
//!   append()/set_hard_state() ── plan: which new segments do these records need? ──▶ reserve spares
//!                                (ENOSPC here: WalError::NoSpace before anything is buffered)
//!   roll ── rename the spare to segment-<seq>.wal (directory fsync with the batch) ── never allocates
//! ```
//!
//! Writes into the active segment go into space zero-filled (hence allocated) when it was created, so
//! they cannot hit `ENOSPC` on file systems that overwrite in place (ext4, xfs, tmpfs); on copy-on-write
//! file systems (btrfs, zfs) they can, and then an `ENOSPC` inside the active segment poisons the log like
//! any other failed write or fsync (an fsync is never retried).

use std::collections::VecDeque;
use std::io;

use super::{Target, Wal, zero_fill};
use crate::disk::{Disk, DiskFile};
use crate::error::{WalError, is_out_of_space};
use crate::record::{BATCH_END_LEN, PREAMBLE_LEN, align_up};

/// A preallocated, fsynced file of zeros waiting to become segment `seq`.
pub(super) struct Spare<F> {
    /// The sequence number it will carry as a segment.
    pub(super) seq: u64,
    /// Its file name while it is a spare.
    pub(super) name: String,
    /// The open file.
    pub(super) file: F,
    /// Its length: all zeros, durable.
    pub(super) capacity: u64,
}

/// `segment-<seq, 20 digits>.spare`: not a segment name, so recovery never reads it as part of the log.
pub(super) fn spare_name(seq: u64) -> String {
    format!("segment-{seq:020}.spare")
}

/// Whether `name` is a spare file (a leftover one is removed at open).
pub(super) fn is_spare_name(name: &str) -> bool {
    name.strip_prefix("segment-")
        .and_then(|rest| rest.strip_suffix(".spare"))
        .is_some_and(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// What pushing some records needs beyond the active segment's free space.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// The capacity of each new segment the records roll into, in order.
    pub(super) segments: Vec<u64>,
    /// The capacity the active segment must grow to first (it holds only its preamble and the first
    /// record is larger than a segment).
    pub(super) grow_to: Option<u64>,
}

impl<D: Disk> Wal<D> {
    /// Whether the log can take entries: `false` after making room for the next segment failed because
    /// the file system is full (or over a quota). Nothing is poisoned then; the log still takes hard
    /// states and entries that fit in the active segment, and [`Wal::ensure_space`] tries again.
    pub fn has_space(&self) -> bool {
        self.no_space.is_none()
    }

    /// Why [`Wal::has_space`] is `false`: the message of the failure, for the operator.
    pub fn no_space_reason(&self) -> Option<&str> {
        self.no_space.as_deref()
    }

    /// Makes sure the next segment is ready when it will soon be needed: creates the spare if there is
    /// none and the active segment is at least half full, or if the last attempt failed. Call it again
    /// (say every second) while [`Wal::has_space`] is `false`: it resumes by itself when space returns.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] after an earlier failure; [`WalError::Io`] if creating the spare failed for
    /// another reason than a full disk (the log is then poisoned, as the disk is failing). A full disk is
    /// not an error here: it returns `Ok(false)`.
    pub fn ensure_space(&mut self) -> Result<bool, WalError> {
        self.check_writable()?;
        let half_full = self.active_offset() >= self.active_capacity / 2;
        if self.spares.is_empty() && (half_full || self.no_space.is_some()) {
            let capacity = align_up(self.options.segment_bytes_max);
            match self.create_spare(capacity) {
                Ok(()) | Err(WalError::NoSpace { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(self.has_space())
    }

    /// The bytes of every file in the log's directory (segments, snapshots, spares), as the file system
    /// reports their lengths: what a quota is measured against. Reads only; never poisons the log.
    ///
    /// # Errors
    /// If listing the directory or opening a file fails.
    pub fn disk_bytes(&mut self) -> io::Result<u64> {
        let mut total = 0;
        for name in self.disk.list()? {
            match self.disk.open(&name) {
                Ok(file) => total += file.len(),
                // Removed between the listing and the open: it takes no space.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(total)
    }

    /// Which new segments (and growth) pushing records of `lens` bytes would need, replaying the
    /// decisions of `push`: a record that does not leave room for the batch marker rolls to a new segment
    /// (header and hard state first), or grows a segment that holds nothing but its preamble.
    pub(super) fn plan(&self, lens: impl IntoIterator<Item = u64>) -> Plan {
        let mut plan = Plan::default();
        let mut offset = self.active_offset();
        let mut capacity = self.active_capacity;
        for len in lens {
            if offset + len + BATCH_END_LEN > capacity {
                if offset > PREAMBLE_LEN {
                    capacity = align_up(self.options.segment_bytes_max.max(PREAMBLE_LEN + len + BATCH_END_LEN));
                    plan.segments.push(capacity);
                    offset = PREAMBLE_LEN;
                } else {
                    // Only the active segment can hold nothing but its preamble: a rolled one already
                    // holds the record it was sized for.
                    assert!(plan.segments.is_empty(), "grow after a roll at offset {offset}");
                    capacity = align_up(offset + len + BATCH_END_LEN);
                    plan.grow_to = Some(capacity);
                }
            }
            offset += len;
        }
        plan
    }

    /// Allocates everything `plan` needs before a single record is buffered, so a full disk fails the
    /// call with nothing changed: grows the active segment, and creates spares until there is one of at
    /// least the planned capacity for every new segment.
    ///
    /// # Errors
    /// [`WalError::NoSpace`] (not poisoning) if the file system is full; [`WalError::Io`] (poisoning) for
    /// any other failure.
    pub(super) fn reserve(&mut self, plan: &Plan) -> Result<(), WalError> {
        if let Some(capacity) = plan.grow_to {
            self.grow_active(capacity)?;
        }
        for (position, &capacity) in plan.segments.iter().enumerate() {
            if position < self.spares.len() && self.spares[position].capacity < capacity {
                // Too small for an oversized record: replace it (and those after it, to keep the order).
                self.drop_spares_from(position)?;
            }
            if position == self.spares.len() {
                self.create_spare(capacity)?;
            }
        }
        Ok(())
    }

    /// Creates the next spare: create, zero-fill to `capacity`, fsync. On a full disk the partial file is
    /// removed, [`Wal::has_space`] turns `false` and nothing is poisoned.
    fn create_spare(&mut self, capacity: u64) -> Result<(), WalError> {
        let seq = self.next_seq + self.spares.len() as u64;
        let name = spare_name(seq);
        let result = self.disk.create(&name).map_err(|source| ("create", source)).and_then(|mut file| {
            zero_fill(&mut file, capacity).map_err(|source| ("preallocate", source))?;
            file.sync().map_err(|source| ("fsync", source))?;
            Ok(file)
        });
        match result {
            Ok(file) => {
                self.spares.push_back(Spare { seq, name, file, capacity });
                self.no_space = None;
                Ok(())
            }
            Err((operation, source)) if is_out_of_space(&source) => {
                let error = WalError::NoSpace { operation, file: name.clone(), source };
                self.no_space = Some(error.to_string());
                // The partial spare holds nothing of the log: remove it to give the space back. If even
                // that fails, the disk is failing, not full.
                match self.disk.remove(&name) {
                    Ok(()) => Ok(()),
                    Err(source) if source.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(self.fail("remove", Target::Named(&name), source)),
                }?;
                Err(error)
            }
            Err((operation, source)) => Err(self.fail(operation, Target::Named(&name), source)),
        }
    }

    /// Removes the spares from `position` on (newest first).
    fn drop_spares_from(&mut self, position: usize) -> Result<(), WalError> {
        while self.spares.len() > position {
            let spare = self.spares.pop_back().unwrap_or_else(|| unreachable!("len > position"));
            drop(spare.file);
            if let Err(source) = self.disk.remove(&spare.name) {
                return Err(self.fail("remove", Target::Named(&spare.name), source));
            }
        }
        Ok(())
    }

    /// Removes spare files left by an earlier run: a crash may have left one half renamed or half
    /// written, so none is trusted. Called at open, before any spare of this run exists.
    pub(super) fn remove_leftover_spares(&mut self) -> Result<(), WalError> {
        assert!(self.spares.is_empty(), "leftover spares removed after this run created {}", self.spares.len());
        let names = match self.disk.list() {
            Ok(names) => names,
            Err(source) => return Err(self.fail("list", Target::Directory, source)),
        };
        for name in names.iter().filter(|name| is_spare_name(name)) {
            if let Err(source) = self.disk.remove(name) {
                return Err(self.fail("remove", Target::Named(name), source));
            }
        }
        Ok(())
    }

    /// Extends the active segment (holding only its preamble) with zeros to `capacity`. On a full disk
    /// the zeros written so far are cut again and the call fails with nothing changed.
    fn grow_active(&mut self, capacity: u64) -> Result<(), WalError> {
        assert!(capacity > self.active_capacity, "grow to {capacity} from {}", self.active_capacity);
        match zero_fill(&mut self.active, capacity) {
            Ok(()) => {
                self.active_capacity = capacity;
                self.active_unsynced = true;
                Ok(())
            }
            Err(source) if is_out_of_space(&source) => {
                let file = self.segments.last().map_or_else(String::new, |segment| segment.name.clone());
                let error = WalError::NoSpace { operation: "preallocate", file, source };
                if let Err(source) = self.active.truncate(self.active_capacity) {
                    return Err(self.fail("truncate", Target::Active, source));
                }
                Err(error)
            }
            Err(source) => Err(self.fail("preallocate", Target::Active, source)),
        }
    }

    /// Takes the spare for the next segment, which `reserve` made sure exists with room for `capacity`.
    pub(super) fn take_spare(&mut self, capacity: u64) -> Spare<D::File> {
        let spare = self.spares.pop_front().unwrap_or_else(|| unreachable!("roll without a reserved spare"));
        assert_eq!(spare.seq, self.next_seq, "spare {} is not the next segment {}", spare.seq, self.next_seq);
        assert!(spare.capacity >= capacity, "spare of {} bytes for a segment of {capacity}", spare.capacity);
        spare
    }
}

/// A spare queue, empty.
pub(super) fn no_spares<F>() -> VecDeque<Spare<F>> {
    VecDeque::new()
}
