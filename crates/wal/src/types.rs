//! The values the WAL stores and returns. It knows nothing of Raft messages: entries and
//! snapshots carry opaque bytes that the node crate encodes.

/// The largest `data` of one entry, in bytes. Tally's requests are at most 1.5 MiB; the margin
/// leaves room for the node to batch commands into one entry. Asserted on append.
pub const ENTRY_DATA_MAX: usize = 16 << 20;

/// The largest log index the WAL stores (of an entry, a reset or a snapshot). Raft never gets near it; the bound
/// leaves room for `index + 1` everywhere (here and in the Raft core above), so recovery refuses a larger index as
/// damage and [`crate::Wal::append`] asserts it.
pub const INDEX_MAX: u64 = u64::MAX / 2;

/// The largest `data` of one snapshot, in bytes. Snapshots are built in memory, so this only
/// guards against a corrupted length. Asserted on save.
pub const SNAPSHOT_DATA_MAX: u64 = 4 << 30;

/// The smallest accepted [`WalOptions::segment_bytes_max`]: a segment must hold its preamble, one
/// small entry and the batch marker. Tests use tiny segments to exercise rolling.
pub const SEGMENT_BYTES_MIN: u64 = 256;

/// One log entry. Entries handed to [`crate::Wal::append`] have consecutive indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalEntry {
    /// The Raft log index, `>= 1`.
    pub index: u64,
    /// The term the entry was proposed in; never decreases along the log.
    pub term: u64,
    /// The entry's payload, opaque to the WAL (at most [`ENTRY_DATA_MAX`] bytes).
    pub data: Vec<u8>,
}

/// The Raft state that must survive a restart besides the log: persisted with the entries it
/// guards, in the same batch and the same fsync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen; never decreases.
    pub term: u64,
    /// The node voted for in `term`, `0` for none; set at most once per term.
    pub vote: u64,
    /// The highest index known committed; never decreases.
    pub commit: u64,
}

/// A snapshot of the replicated state as of log entry `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The last log index the snapshot covers; 0 (with term 0) for a snapshot that covers no entry and only
    /// carries the caller's data (a joining node's initial membership).
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// Membership and state machine, encoded by the caller; opaque here.
    pub data: Vec<u8>,
}

/// Tuning of a [`crate::Wal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Size of one segment file. Segments are preallocated (zero-filled) to this size when
    /// created, so an fsync never has to persist a file size change; a segment rolls when the
    /// next record would not fit. A single record larger than this gets a segment of its own.
    /// [`crate::FaultDisk`] keeps only written bytes in memory, but recovery reads whole
    /// segments, so simulations should use small segments (say 1 MiB). At least
    /// [`SEGMENT_BYTES_MIN`].
    pub segment_bytes_max: u64,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions { segment_bytes_max: 64 << 20 }
    }
}

/// What [`crate::Wal::open`] found on disk: exactly the state the last successful sync made
/// durable (or, after a crash in the middle of a sync, possibly that sync's state too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The latest durable hard state (all zero for a new log).
    pub hard_state: HardState,
    /// The newest valid snapshot, if any.
    pub snapshot: Option<SnapshotFile>,
    /// The durable entries after the snapshot (all of them if there is none), consecutive.
    pub entries: Vec<WalEntry>,
    /// Bytes of unacknowledged tail (an unfinished batch, a torn write) that recovery cut off:
    /// for the operator's log line, `0` after a clean shutdown.
    pub tail_bytes_discarded: u64,
    /// Whether the cut tail may have held a batch whose sync succeeded (and was therefore acknowledged, or
    /// carried a vote): recovery cannot tell a torn unsynced write from damage to the last synced batch. True
    /// whenever recovery cut any non-zero byte or record, or the last segment holds nothing while another
    /// precedes it (a roll's batch whose write was lost or misdirected); false otherwise. The node must then run
    /// protocol-aware recovery before it votes or counts toward a commit (see `FORMAT.md` and
    /// `docs/storage.md`).
    pub tail_may_be_acknowledged: bool,
    /// The highest hard state (by term, then vote, then commit) among the valid records of the cut tail: those
    /// after the last complete batch whose checksums verify, including any found past the damage. `None` when
    /// the cut tail held none. The cut batch may have been synced, so the node adopts at least this term and
    /// this vote (it may have been cast) before it takes part in an election.
    pub tail_hard_state: Option<HardState>,
}
