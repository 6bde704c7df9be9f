//! The durable write-ahead log of a Tally node.
//!
//! # What this crate owns
//!
//! - [`Wal`]: segmented, append-only log files of checksummed records holding the Raft entries
//!   and hard state of one node, with group commit (many appends, one fsync), segment rolling,
//!   suffix truncation, prefix compaction, and recovery that cuts a torn tail and refuses to
//!   start on corruption.
//! - Snapshot files: written atomically, checksummed, loaded at recovery.
//! - [`Disk`] / [`DiskFile`]: the small storage interface the log runs on, with
//!   [`RealDisk`] (the operating system) and [`FaultDisk`] (in memory, crashable as a real
//!   disk: keeps any subset of unsynced writes torn at sectors, fails syncs and reads, misdirects
//!   writes, flips bits).
//! - [`testing::suite`]: one conformance suite every `Disk` runs.
//!
//! # What it does not own
//!
//! Raft: entries and snapshots are opaque bytes here; the node crate encodes them and decides
//! when to sync, snapshot and compact. No threads, no async, no clock.
//!
//! # Data flow
//!
//! ```text
//!   node ── append(entries) ──┐
//!        ── set_hard_state ───┼─▶ records encoded into a buffer (nothing durable yet)
//!                             │
//!        ── sync() ───────────┴─▶ + batch marker ─▶ one write into the preallocated active
//!                                  segment ─▶ one fdatasync (+ dir fsync if a segment rolled)
//!                                  ─▶ Ok: everything appended so far is durable; acknowledge
//!
//!   segment-…01.wal  segment-…02.wal  segment-…03.wal (active)   snapshot-…0500.snap
//!   └─ compact(i): removes sealed segments whose live entries are all <= i (<= snapshot)
//!
//!   Wal::open ─▶ verify every record (bound to its log, segment and offset) ─▶ tell a torn tail
//!             from damage (a later batch after it) ─▶ replay whole batches ─▶ cut unfinished tail
//!             ─▶ rewrite + fsync what it kept (the page cache may hold bytes never on disk)
//!             ─▶ Recovered { hard_state, snapshot, entries after it, what the cut tail held }
//! ```
//!
//! The byte-level format and the recovery rules are in `FORMAT.md` next to this crate's
//! `Cargo.toml`.
//!
//! # Failure model
//!
//! An I/O error poisons the [`Wal`]: it refuses every later write with
//! [`WalError::Poisoned`] instead of retrying an fsync whose failure may have dropped data. A
//! restart recovers exactly what the last successful [`Wal::sync`] made durable, and makes it
//! durable again before it returns (after a process crash the page cache may hold bytes that never
//! reached the disk). A cut tail may have held an acknowledged batch or a vote:
//! [`Recovered::tail_may_be_acknowledged`] and [`Recovered::tail_hard_state`] say so, for the
//! node's protocol-aware recovery.
//!
//! A full disk is not a failure: segments are allocated ahead of need (a spare), so running out
//! of space fails only the call that needed new space, with [`WalError::NoSpace`] and nothing
//! written, and turns [`Wal::has_space`] off until [`Wal::ensure_space`] succeeds again. See
//! `docs/storage.md`, "Disk full and quota".

#![deny(missing_docs)]

mod disk;
mod error;
mod fault_disk;
mod real_disk;
mod record;
mod recovery;
mod segment;
mod snapshot;
pub mod testing;
mod types;
mod wal;

pub use disk::{Disk, DiskFile};
pub use error::WalError;
pub use fault_disk::{FaultDisk, FaultFile, Misdirection, PowerLoss};
pub use real_disk::{RealDisk, RealFile};
pub use types::{
    ENTRY_DATA_MAX, HardState, INDEX_MAX, Recovered, SEGMENT_BYTES_MIN, SNAPSHOT_DATA_MAX, SnapshotFile, WalEntry,
    WalOptions,
};
pub use wal::Wal;
