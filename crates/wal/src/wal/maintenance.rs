//! Snapshots and compaction: the calls that change which files exist.

use super::{Plan, Target, Wal};
use crate::disk::Disk;
use crate::error::{WalError, is_out_of_space};
use crate::record::{RecordRef, align_up};
use crate::snapshot::{self, parse_snapshot_name};
use crate::types::{INDEX_MAX, SNAPSHOT_DATA_MAX, SnapshotFile};

impl<D: Disk> Wal<D> {
    /// Saves a snapshot of this node's own state (taken at an applied, hence committed, index).
    /// First syncs pending records. The file is written atomically (temporary file, fsync,
    /// rename, directory fsync); the previous snapshot is kept until the new one is durable and
    /// removed after. The log is unchanged: call [`Wal::compact`] to drop what the snapshot
    /// covers.
    ///
    /// # Errors
    /// [`WalError::NoSpace`] if the disk is full while the snapshot file is written: the temporary
    /// file is removed, the log is unchanged and not poisoned. Otherwise as [`Wal::sync`]; a
    /// failure poisons the log, and recovery then finds either the previous or the new snapshot,
    /// whole.
    ///
    /// # Panics
    /// If `snapshot.index` is 0, older than the current snapshot, past the last index or past
    /// [`INDEX_MAX`], if its term is not the term of that entry in the log, or its data is larger
    /// than [`SNAPSHOT_DATA_MAX`].
    pub fn save_snapshot(&mut self, snapshot: &SnapshotFile) -> Result<(), WalError> {
        self.check_writable()?;
        self.sync()?;
        self.check_snapshot(snapshot);
        assert!(
            snapshot.index <= self.last_index,
            "snapshot at {} past last index {}",
            snapshot.index,
            self.last_index
        );
        let term = self.term_at(snapshot.index);
        assert_eq!(
            snapshot.term, term,
            "snapshot at {} has term {}, the log has {term}",
            snapshot.index, snapshot.term
        );
        let covered = snapshot.index - self.snapshot_index();
        self.write_snapshot(snapshot)?;
        self.terms.drain(..covered as usize);
        let older = self.older_snapshots(snapshot.index)?;
        self.remove_files(&older)?;
        self.check_invariants();
        Ok(())
    }

    /// Removes whole sealed segments whose live entries are all `<= index` (the active segment
    /// is never removed), oldest first, with a directory fsync after each removal. First syncs
    /// pending records.
    ///
    /// # Errors
    /// As [`Wal::sync`]. A crash part-way leaves the newest of the segments (a suffix of the
    /// log), which recovery accepts because the snapshot covers their entries.
    ///
    /// # Panics
    /// If `index` is past the newest saved snapshot: compaction must never drop entries that
    /// nothing else holds.
    pub fn compact(&mut self, index: u64) -> Result<(), WalError> {
        self.check_writable()?;
        self.sync()?;
        let snapshot_index = self.snapshot_index();
        assert!(index <= snapshot_index, "compact({index}) past the snapshot at {snapshot_index}");
        let sealed = &self.segments[..self.segments.len() - 1];
        let count = sealed.iter().take_while(|segment| segment.live.is_none_or(|(_, last)| last <= index)).count();
        if count == 0 {
            return Ok(());
        }
        let names: Vec<String> = self.segments[..count].iter().map(|segment| segment.name.clone()).collect();
        // One removal per directory fsync, oldest first: unsynced directory changes may persist in any
        // order, and a later segment may hold entries that replace entries of an earlier one. Were its
        // removal to persist without the earlier one's, recovery would find the replaced entries again,
        // with nothing after them to replace them. So the kept segments are always a suffix of the log,
        // exactly what a compaction that removed fewer segments leaves.
        for name in &names {
            if let Err(source) = self.disk.remove(name) {
                return Err(self.fail("remove", Target::Named(name), source));
            }
            if let Err(source) = self.disk.sync_dir() {
                return Err(self.fail("fsync", Target::Directory, source));
            }
        }
        self.segments.drain(..count);
        self.check_invariants();
        Ok(())
    }

    /// Installs a snapshot received from the leader in place of the whole log: afterwards
    /// recovery returns this snapshot and no older entry, and the next entry appended is
    /// `snapshot.index + 1`.
    ///
    /// Steps: sync pending records; write the snapshot atomically; start a new segment holding a
    /// `Reset(index, term)` record and sync it (with a directory fsync); remove every older
    /// segment (newest first) and older snapshot; fsync the directory. A crash after the
    /// snapshot is durable but before the reset is finds the snapshot next to the old log;
    /// recovery then applies Raft's rule: it keeps the entries after the snapshot only if the
    /// log holds the snapshot's last entry with the same term, and otherwise completes the
    /// replacement.
    ///
    /// # Errors
    /// [`WalError::NoSpace`] if the disk is full before anything changed (allocating the new
    /// segment, writing the snapshot file): the log is unchanged and not poisoned. Otherwise as
    /// [`Wal::sync`].
    ///
    /// # Panics
    /// If `snapshot.index` is 0, older than the current snapshot or past [`INDEX_MAX`], or its
    /// data is larger than [`SNAPSHOT_DATA_MAX`].
    pub fn replace_with_snapshot(&mut self, snapshot: &SnapshotFile) -> Result<(), WalError> {
        self.check_writable()?;
        self.sync()?;
        self.check_snapshot(snapshot);
        // The new segment is allocated first, so a full disk fails the call with nothing changed.
        self.reserve(&Plan { segments: vec![align_up(self.options.segment_bytes_max)], grow_to: None })?;
        self.write_snapshot(snapshot)?;
        let mut obsolete: Vec<String> = self.segments.iter().map(|segment| segment.name.clone()).collect();
        self.roll(0)?;
        self.push(RecordRef::Reset { index: snapshot.index, term: snapshot.term })?;
        self.segments.iter_mut().for_each(|segment| segment.live = None);
        self.last_index = snapshot.index;
        self.terms.clear();
        self.sync()?;
        // The older segments are about to go, so the new segment's one batch would hold the only copy
        // of the hard state: damage confined to the last batch (cut, as it may be a torn write) would
        // then lose more than that batch. A second batch repeating the hard state keeps it.
        self.push(RecordRef::HardState(self.hard_state))?;
        self.sync()?;
        obsolete.extend(self.older_snapshots(snapshot.index)?);
        self.remove_files(&obsolete)?;
        let count = self.segments.len() - 1;
        self.segments.drain(..count);
        self.check_invariants();
        Ok(())
    }

    fn check_snapshot(&self, snapshot: &SnapshotFile) {
        let current = self.snapshot_index();
        // Index 0 is the empty prefix: a snapshot there covers no entry and only carries the caller's data (for
        // Tally, a joining node's initial membership), so its term must be 0 too.
        assert!(snapshot.index >= 1 || snapshot.term == 0, "snapshot at index 0 with term {}", snapshot.term);
        assert!(snapshot.index >= current, "snapshot at {} older than the current one at {current}", snapshot.index);
        assert!(snapshot.index <= INDEX_MAX, "snapshot at {} past the largest index {INDEX_MAX}", snapshot.index);
        let len = snapshot.data.len() as u64;
        assert!(len <= SNAPSHOT_DATA_MAX, "snapshot of {len} bytes > max {SNAPSHOT_DATA_MAX}");
    }

    /// Writes the snapshot file. A full disk before the rename (creating, writing or syncing the
    /// temporary file) removes the temporary file and fails with [`WalError::NoSpace`] without
    /// poisoning: the log holds nothing of it. Any other failure poisons.
    fn write_snapshot(&mut self, snapshot: &SnapshotFile) -> Result<(), WalError> {
        if let Err(failure) = snapshot::write_atomic(&mut self.disk, snapshot) {
            let temp = snapshot::temp_name(snapshot.index);
            if failure.file == temp && is_out_of_space(&failure.source) {
                return match self.disk.remove(&temp) {
                    Ok(()) => {
                        Err(WalError::NoSpace { operation: failure.operation, file: temp, source: failure.source })
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        Err(WalError::NoSpace { operation: failure.operation, file: temp, source: failure.source })
                    }
                    Err(source) => Err(self.fail("remove", Target::Named(&temp), source)),
                };
            }
            return Err(self.fail(failure.operation, Target::Named(&failure.file), failure.source));
        }
        self.snapshot = Some((snapshot.index, snapshot.term));
        Ok(())
    }

    /// Names of snapshot files older than `index`.
    fn older_snapshots(&mut self, index: u64) -> Result<Vec<String>, WalError> {
        match self.disk.list() {
            Ok(names) => {
                Ok(names.into_iter().filter(|name| parse_snapshot_name(name).is_some_and(|i| i < index)).collect())
            }
            Err(source) => Err(self.fail("list", Target::Directory, source)),
        }
    }

    /// Removes `names`, last first, then fsyncs the directory (if there was anything to remove).
    fn remove_files(&mut self, names: &[String]) -> Result<(), WalError> {
        if names.is_empty() {
            return Ok(());
        }
        for name in names.iter().rev() {
            if let Err(source) = self.disk.remove(name) {
                return Err(self.fail("remove", Target::Named(name), source));
            }
        }
        if let Err(source) = self.disk.sync_dir() {
            return Err(self.fail("fsync", Target::Directory, source));
        }
        Ok(())
    }
}
