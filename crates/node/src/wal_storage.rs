//! [`Storage`] on the write-ahead log of `tally-wal`: Raft entries, hard state and snapshots mapped onto
//! the log's opaque records (see [`crate::codec`]).
//!
//! A joining node's membership base (the index-0 snapshot the leader sends it, which carries only the
//! initial membership) is stored as a snapshot at index 0, so a restarted joiner still knows it.

use std::sync::Arc;

use tally_raft::{Entry, HardState, LogIndex, Membership, NodeId, Restored, Snapshot, SnapshotMeta, Term};
use tally_wal::{Disk, Recovered, SnapshotFile, Wal, WalEntry, WalError, WalOptions};

use crate::codec::{decode_payload, decode_snapshot, encode_payload, encode_snapshot};
use crate::storage::{Storage, StorageError};

/// A node's durable state in a [`Wal`] over any [`Disk`].
pub struct WalStorage<D: Disk> {
    /// The log. `None` only after opening it again ([`Storage::reload`]) failed: every call then fails, as
    /// the node has stopped.
    wal: Option<Wal<D>>,
    /// What recovery found, until the node loads it.
    recovered: Option<Recovered>,
    /// The membership of a node with no snapshot: the initial voters of a new cluster, or empty for a node
    /// that will join an existing one.
    bootstrap: Membership,
}

impl<D: Disk> WalStorage<D> {
    /// Opens (recovering) the log on `disk`.
    ///
    /// # Errors
    /// `Corrupt` if recovery found damage it must not repair (the message names the file and offset), `Io`
    /// if the disk failed.
    pub fn open(disk: D, options: WalOptions, bootstrap: Membership) -> Result<WalStorage<D>, StorageError> {
        let (wal, recovered) = Wal::open(disk, options).map_err(storage_error)?;
        Ok(WalStorage { wal: Some(wal), recovered: Some(recovered), bootstrap })
    }

    /// The log, for inspection.
    ///
    /// # Panics
    /// If opening it again failed (the node has stopped).
    pub fn wal(&self) -> &Wal<D> {
        self.wal.as_ref().expect("the log is open unless reopening it failed")
    }

    /// The log, for a write; an error once reopening it failed.
    fn log(&mut self) -> Result<&mut Wal<D>, StorageError> {
        self.wal.as_mut().ok_or_else(closed)
    }
}

/// The error of every call once reopening the log failed.
fn closed() -> StorageError {
    StorageError::Io("the log is closed: opening it again failed".to_string())
}

/// Maps a log failure to the node's storage error.
fn storage_error(error: WalError) -> StorageError {
    match error {
        WalError::Corrupt { .. } => StorageError::Corrupt(error.to_string()),
        WalError::NoSpace { .. } => StorageError::NoSpace(error.to_string()),
        other => StorageError::Io(other.to_string()),
    }
}

/// The Raft form of a hard state read from the log (vote 0 means none).
fn raft_hard_state(stored: tally_wal::HardState) -> HardState {
    HardState {
        term: Term(stored.term),
        vote: (stored.vote != 0).then_some(NodeId(stored.vote)),
        commit: LogIndex(stored.commit),
    }
}

impl<D: Disk> Storage for WalStorage<D> {
    fn load(&mut self) -> Result<Restored, StorageError> {
        let recovered = self.recovered.take().expect("load is called once after each open");
        let hard_state = raft_hard_state(recovered.hard_state);
        let snapshot = match recovered.snapshot {
            Some(file) => {
                let (membership, state) = decode_snapshot(&file.data)?;
                let meta = SnapshotMeta { index: LogIndex(file.index), term: Term(file.term), membership };
                Snapshot { meta, data: Arc::new(state) }
            }
            None => Snapshot {
                meta: SnapshotMeta { membership: self.bootstrap.clone(), ..SnapshotMeta::default() },
                data: Arc::new(Vec::new()),
            },
        };
        let entries = recovered
            .entries
            .into_iter()
            .map(|e| Ok(Entry { index: LogIndex(e.index), term: Term(e.term), payload: decode_payload(&e.data)? }))
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(Restored {
            hard_state,
            snapshot,
            entries,
            tail_may_be_acknowledged: recovered.tail_may_be_acknowledged,
            tail_hard_state: recovered.tail_hard_state.map(raft_hard_state),
        })
    }

    fn reload(&mut self) -> Result<Restored, StorageError> {
        let mut wal = self.wal.take().ok_or_else(closed)?;
        if wal.is_poisoned() {
            // A failed write or fsync is never retried in the same process (the fsync-gate lesson): the operator
            // restarts the node.
            self.wal = Some(wal);
            return Err(StorageError::Io("the log is poisoned: restart the node to recover from its files".into()));
        }
        // What the failed call's predecessors wrote is consistent (the failed call wrote nothing): make it
        // durable, so opening again finds finished batches and nothing to cut.
        if let Err(error) = wal.sync() {
            self.wal = Some(wal);
            return Err(storage_error(error));
        }
        let (disk, options) = wal.into_disk();
        let (wal, recovered) = Wal::open(disk, options).map_err(storage_error)?;
        self.wal = Some(wal);
        self.recovered = Some(recovered);
        self.load()
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let records: Vec<WalEntry> = entries
            .iter()
            .map(|e| WalEntry { index: e.index.0, term: e.term.0, data: encode_payload(&e.payload) })
            .collect();
        self.log()?.append(&records).map_err(storage_error)
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        let record = tally_wal::HardState {
            term: hard_state.term.0,
            vote: hard_state.vote.map_or(0, |v| v.0),
            commit: hard_state.commit.0,
        };
        self.log()?.set_hard_state(record).map_err(storage_error)
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot, replace_log: bool) -> Result<(), StorageError> {
        let meta = &snapshot.meta;
        let file = SnapshotFile {
            index: meta.index.0,
            term: meta.term.0,
            data: encode_snapshot(&meta.membership, &snapshot.data),
        };
        // An index-0 snapshot (a joining node's membership base) covers no entry: nothing to replace.
        let replace = replace_log && meta.index > LogIndex(0);
        let wal = self.log()?;
        let result = if replace { wal.replace_with_snapshot(&file) } else { wal.save_snapshot(&file) };
        result.map_err(storage_error)
    }

    fn compact(&mut self, index: LogIndex) -> Result<(), StorageError> {
        self.log()?.compact(index.0).map_err(storage_error)
    }

    fn settle_recovery(&mut self) -> Result<(), StorageError> {
        self.log()?.settle_recovery().map_err(storage_error)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.log()?.sync().map_err(storage_error)
    }

    fn has_space(&self) -> bool {
        self.wal.as_ref().is_some_and(Wal::has_space)
    }

    fn retry_space(&mut self) -> Result<bool, StorageError> {
        self.log()?.ensure_space().map_err(storage_error)
    }

    fn disk_bytes(&mut self) -> Option<u64> {
        self.wal.as_mut()?.disk_bytes().ok()
    }
}
