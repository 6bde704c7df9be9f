//! Tuning knobs of one Raft node, and the test-only fault switches.

use crate::types::NodeId;

/// Configuration of one Raft node. All times are in ticks: the core has no clock, the driver calls
/// [`crate::Raft::tick`] at a fixed interval.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id.
    pub id: NodeId,
    /// The minimum election timeout. Each follower waits a random number of ticks in
    /// `[election_timeout_ticks, 2 * election_timeout_ticks)` without hearing from a leader before it
    /// campaigns, so that split votes are rare (Raft §5.2).
    pub election_timeout_ticks: u32,
    /// How often a leader sends heartbeats. Must be well below `election_timeout_ticks`.
    pub heartbeat_interval_ticks: u32,
    /// Seed of the random number generator that draws election timeouts. The core has no other source of
    /// randomness, so the same seed and the same inputs give the same outputs.
    pub seed: u64,
    /// Dissertation §9.6: campaign with a pre-vote round first, so a partitioned node that comes back does
    /// not force the healthy leader to step down.
    pub pre_vote: bool,
    /// Dissertation §6.2: a leader that has not heard from a quorum within an election timeout steps
    /// down, and followers that heard from a leader recently ignore vote requests (the leader lease).
    pub check_quorum: bool,
    /// Most Append messages in flight to one follower before the leader waits for acknowledgements.
    pub max_inflight_messages: usize,
    /// Most entries in one Append message.
    pub max_entries_per_message: usize,
    /// Most payload bytes in one Append message (at least one entry is always sent), and the size of a
    /// snapshot chunk, so that no message grows past it whatever the snapshot's size. At least 1.
    pub max_bytes_per_message: usize,
    /// The largest snapshot a follower accepts from a leader. Chunks of a bigger one are ignored before
    /// anything is buffered, so a corrupted or hostile `total_len` cannot make a follower grow without
    /// bound (the buffer grows only as chunks arrive, never from the announced size).
    pub max_snapshot_bytes: u64,
    /// Most proposals the leader accepts that are not yet committed; beyond it proposals are refused, so
    /// an overloaded leader pushes back instead of growing without bound.
    pub max_uncommitted_entries: usize,
    /// Deliberately broken behaviour, for proving the simulator's checkers can fail. Production code never
    /// sets it; see [`Faults`].
    pub faults: Faults,
}

impl Config {
    /// A configuration with the defaults used by Tally: 10-tick election timeout, heartbeats every
    /// 2 ticks, pre-vote and check-quorum on, 1 MiB messages (and snapshot chunks), snapshots up to 4 GiB.
    pub fn new(id: NodeId, seed: u64) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            seed,
            pre_vote: true,
            check_quorum: true,
            max_inflight_messages: 64,
            max_entries_per_message: 256,
            max_bytes_per_message: 1 << 20,
            max_snapshot_bytes: 4 << 30,
            max_uncommitted_entries: 10_000,
            faults: Faults::default(),
        }
    }

    /// Asserts the configuration is usable.
    ///
    /// # Panics
    /// On a zero id, a heartbeat interval not below the election timeout, or zero limits.
    pub fn validate(&self) {
        assert!(self.id != NodeId(0), "node id 0 is reserved");
        assert!(self.election_timeout_ticks >= 2, "election timeout {} too small", self.election_timeout_ticks);
        assert!(
            self.heartbeat_interval_ticks >= 1 && self.heartbeat_interval_ticks < self.election_timeout_ticks,
            "heartbeat interval {} must be in [1, election timeout {})",
            self.heartbeat_interval_ticks,
            self.election_timeout_ticks
        );
        assert!(self.max_inflight_messages >= 1, "max_inflight_messages must be >= 1");
        assert!(self.max_entries_per_message >= 1, "max_entries_per_message must be >= 1");
        assert!(self.max_bytes_per_message >= 1, "max_bytes_per_message must be >= 1 (the snapshot chunk size)");
        assert!(self.max_uncommitted_entries >= 1, "max_uncommitted_entries must be >= 1");
    }
}

/// Switches that break the core on purpose. Each one removes one safety mechanism; the simulator's tests
/// turn them on one at a time and show that a checker catches the resulting bug. All off by default, and
/// production code never turns them on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Commit any entry stored on a majority, even one from an earlier term (the Figure 8 bug, Raft §5.4.2).
    pub commit_previous_term_by_count: bool,
    /// Grant votes without checking that the candidate's log is at least as up to date (Raft §5.4.1).
    pub skip_vote_log_check: bool,
    /// Answer ReadIndex requests with the commit index at once, without confirming leadership (a deposed
    /// leader then serves stale reads).
    pub read_without_quorum_check: bool,
    /// Do not report a changed vote in the hard state, so it is never persisted and a restarted node may
    /// vote twice in one term.
    pub forget_to_persist_vote: bool,
}
