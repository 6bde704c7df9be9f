//! Durable storage of the Raft log, hard state and snapshot, behind a small trait so the simulator can
//! crash it. The in-memory implementation models what a real disk promises: writes are volatile until
//! `sync` returns, and a crash loses every write since the last successful sync.

use tally_raft::{Entry, HardState, LogIndex, Restored, Snapshot};

/// A storage failure. After one, the node stops: it must not send messages that depend on writes that
/// may not be durable (the fsync-gate lesson: never retry a failed fsync).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The disk failed a write or a sync.
    #[error("disk I/O failed: {0}")]
    Io(String),
    /// The stored data is inconsistent or corrupt.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
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
}

/// The contents of a [`MemStorage`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageState {
    /// The hard state.
    pub hard_state: HardState,
    /// The newest snapshot (index 0 with the bootstrap membership for a new node).
    pub snapshot: Snapshot,
    /// Entries after the compaction point, consecutive.
    pub entries: Vec<Entry>,
}

impl StorageState {
    /// Applies one write.
    fn apply(&mut self, write: &Write) {
        match write {
            Write::Append(entries) => {
                let Some(first) = entries.first() else { return };
                self.entries.retain(|e| e.index < first.index);
                if let Some(last) = self.entries.last() {
                    assert_eq!(last.index.next(), first.index, "append leaves a gap after {}", last.index);
                }
                self.entries.extend(entries.iter().cloned());
            }
            Write::HardState(hard_state) => self.hard_state = *hard_state,
            Write::Snapshot(snapshot, replace_log) => {
                let index = snapshot.meta.index;
                if *replace_log {
                    self.entries.clear();
                } else {
                    self.entries.retain(|e| e.index > index);
                }
                self.snapshot = snapshot.clone();
            }
            Write::Compact(index) => self.entries.retain(|e| e.index > *index),
        }
    }
}

/// One buffered write of a [`MemStorage`].
#[derive(Clone, Debug)]
enum Write {
    Append(Vec<Entry>),
    HardState(HardState),
    Snapshot(Snapshot, bool),
    Compact(LogIndex),
}

/// An in-memory disk: writes are buffered until `sync`, so a simulated crash loses exactly the unsynced ones.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    /// What survives a crash.
    durable: StorageState,
    /// Writes since the last sync, in order.
    pending: Vec<Write>,
    /// Test hook: the next sync fails (and the node must stop).
    fail_next_sync: bool,
}

impl MemStorage {
    /// A disk holding `state` durably (e.g. the bootstrap membership of a new node).
    pub fn new(state: StorageState) -> MemStorage {
        MemStorage { durable: state, pending: Vec::new(), fail_next_sync: false }
    }

    /// Simulates a power loss: every write since the last successful sync is gone.
    pub fn crash(&mut self) {
        self.pending.clear();
        self.fail_next_sync = false;
    }

    /// Makes the next `sync` fail, as a dying disk would.
    pub fn fail_next_sync(&mut self) {
        self.fail_next_sync = true;
    }

    /// Cancels a sync failure injected with [`MemStorage::fail_next_sync`] that has not happened yet.
    pub fn clear_injected_failure(&mut self) {
        self.fail_next_sync = false;
    }

    /// The durable contents.
    pub fn durable(&self) -> &StorageState {
        &self.durable
    }
}

impl Storage for MemStorage {
    fn load(&mut self) -> Result<Restored, StorageError> {
        assert!(self.pending.is_empty(), "load with unsynced writes");
        let state = &self.durable;
        Ok(Restored { hard_state: state.hard_state, snapshot: state.snapshot.clone(), entries: state.entries.clone() })
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.pending.push(Write::Append(entries.to_vec()));
        Ok(())
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        self.pending.push(Write::HardState(hard_state));
        Ok(())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot, replace_log: bool) -> Result<(), StorageError> {
        self.pending.push(Write::Snapshot(snapshot.clone(), replace_log));
        Ok(())
    }

    fn compact(&mut self, index: LogIndex) -> Result<(), StorageError> {
        self.pending.push(Write::Compact(index));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if self.fail_next_sync {
            self.fail_next_sync = false;
            return Err(StorageError::Io("injected sync failure".to_string()));
        }
        for write in std::mem::take(&mut self.pending) {
            self.durable.apply(&write);
        }
        Ok(())
    }
}
