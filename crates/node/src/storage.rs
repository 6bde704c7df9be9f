//! Durable storage of the Raft log, hard state and snapshot, behind a small trait. The implementation is
//! [`crate::WalStorage`], over a real disk or the crashable in-memory one of `tally-wal`: writes are volatile
//! until `sync` returns, and a crash loses every write since the last successful sync.

use tally_raft::{Entry, HardState, LogIndex, Restored, Snapshot};

/// A storage failure. After `Io` or `Corrupt`, the node stops: it must not send messages that depend on
/// writes that may not be durable (the fsync-gate lesson: never retry a failed fsync). `NoSpace` is
/// different: nothing of the call was written and the storage is intact, so it can be retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The disk failed a write or a sync.
    #[error("disk I/O failed: {0}")]
    Io(String),
    /// The stored data is inconsistent or corrupt.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The disk is full (or over its quota): nothing of the call was written, the storage is not damaged
    /// and takes writes again once space is freed.
    #[error("no space left on the disk: {0}")]
    NoSpace(String),
}

/// Durable storage for one node's Raft state.
///
/// Contract: writes (`append`, `set_hard_state`, `save_snapshot`, `compact`) may be buffered; after `sync`
/// returns `Ok`, every earlier write survives a crash. `load` returns exactly the state of the writes made
/// durable so far, applied in the order they were made.
pub trait Storage {
    /// Reads back the durable state at start-up.
    ///
    /// # Errors
    /// `Corrupt` if the stored state cannot be trusted.
    fn load(&mut self) -> Result<Restored, StorageError>;
    /// Appends consecutive entries. If the first one's index is not past the last stored index, the stored
    /// log is first truncated from that index (a conflicting suffix).
    ///
    /// # Errors
    /// `Io` on failure.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;
    /// Replaces the hard state.
    ///
    /// # Errors
    /// `Io` on failure.
    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError>;
    /// Stores a snapshot. A snapshot received from the leader supersedes the whole log: stored entries up to
    /// and including its index are dropped, and so are later ones if `replace_log` (they may conflict).
    ///
    /// # Errors
    /// `Io` on failure.
    fn save_snapshot(&mut self, snapshot: &Snapshot, replace_log: bool) -> Result<(), StorageError>;
    /// Drops stored entries up to `index`, which a stored snapshot covers.
    ///
    /// # Errors
    /// `Io` on failure.
    fn compact(&mut self, index: LogIndex) -> Result<(), StorageError>;
    /// Makes every earlier write durable.
    ///
    /// # Errors
    /// `Io` on failure; then nothing since the last successful sync may be assumed durable.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Reads the durable state again, as a restart of the process would, after a write that failed with
    /// `NoSpace` left the node's view ahead of what is stored. Writes not yet synced may be dropped.
    ///
    /// # Errors
    /// As [`Storage::load`]; `Io` if this storage cannot read itself again (the node then stops).
    fn reload(&mut self) -> Result<Restored, StorageError> {
        Err(StorageError::Io("this storage cannot be read again without a restart".to_string()))
    }

    /// Says protocol-aware recovery is over (the core's `is_recovering` turned false after a start that reported
    /// `tail_may_be_acknowledged`), durably: until this is called, every start reports the tail as possibly
    /// acknowledged again, so a restart in the middle of the recovery starts it over instead of forgetting it.
    ///
    /// # Errors
    /// `Io` on failure.
    fn settle_recovery(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Whether new entries can be stored: `false` once making room failed on a full disk. Hard states
    /// (terms, votes) can still be stored then. The node stops taking entries while it is `false`.
    fn has_space(&self) -> bool {
        true
    }

    /// Tries again to make room after [`Storage::has_space`] turned `false`; returns whether there is
    /// room now. Called about once a second while there is none.
    ///
    /// # Errors
    /// `Io` if the disk failed (not merely filled up): the node then stops.
    fn retry_space(&mut self) -> Result<bool, StorageError> {
        Ok(self.has_space())
    }

    /// The bytes this storage takes on disk (log segments, snapshots), for the quota; `None` if unknown.
    fn disk_bytes(&mut self) -> Option<u64> {
        None
    }
}
