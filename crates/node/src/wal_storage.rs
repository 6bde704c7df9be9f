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
    /// The log.
    wal: Wal<D>,
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
        Ok(WalStorage { wal, recovered: Some(recovered), bootstrap })
    }

    /// The log, for inspection.
    pub fn wal(&self) -> &Wal<D> {
        &self.wal
    }
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
        let recovered = self.recovered.take().expect("load is called once, at start");
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

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let records: Vec<WalEntry> = entries
            .iter()
            .map(|e| WalEntry { index: e.index.0, term: e.term.0, data: encode_payload(&e.payload) })
            .collect();
        self.wal.append(&records).map_err(storage_error)
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        let record = tally_wal::HardState {
            term: hard_state.term.0,
            vote: hard_state.vote.map_or(0, |v| v.0),
            commit: hard_state.commit.0,
        };
        self.wal.set_hard_state(record).map_err(storage_error)
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
        let result = if replace { self.wal.replace_with_snapshot(&file) } else { self.wal.save_snapshot(&file) };
        result.map_err(storage_error)
    }

    fn compact(&mut self, index: LogIndex) -> Result<(), StorageError> {
        self.wal.compact(index.0).map_err(storage_error)
    }

    fn settle_recovery(&mut self) -> Result<(), StorageError> {
        self.wal.settle_recovery().map_err(storage_error)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.wal.sync().map_err(storage_error)
    }

    fn has_space(&self) -> bool {
        self.wal.has_space()
    }

    fn retry_space(&mut self) -> Result<bool, StorageError> {
        self.wal.ensure_space().map_err(storage_error)
    }

    fn disk_bytes(&mut self) -> Option<u64> {
        self.wal.disk_bytes().ok()
    }
}
