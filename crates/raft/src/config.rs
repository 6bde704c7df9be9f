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
    /// How a node that lost its leader finds the next one: Raft's randomized campaigns (the default) or the
    /// bully algorithm. Both elect by the same votes, so both keep Raft's safety; see [`ElectionMode`].
    pub election: ElectionMode,
    /// Bully mode: how long an inquiry waits for a node that outranks this one to answer that it is alive,
    /// before the inquirer claims victory (once a majority said go ahead), and how often it asks again the
    /// voters that refused or did not answer. Below the election timeout.
    pub inquiry_timeout_ticks: u32,
    /// Dissertation §9.6: campaign with a pre-vote round first, so a partitioned node that comes back does
    /// not force the healthy leader to step down. Raft mode only: in bully mode the inquiry is that round.
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
    /// A configuration with the defaults used by Tally: Raft elections with a 10-tick election timeout,
    /// heartbeats every 2 ticks, pre-vote and check-quorum on, 1 MiB messages (and snapshot chunks),
    /// snapshots up to 4 GiB; in bully mode, inquiries wait 2 ticks for an answer.
    pub fn new(id: NodeId, seed: u64) -> Config {
        Config {
            id,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            seed,
            election: ElectionMode::Raft,
            inquiry_timeout_ticks: 2,
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
    /// On a zero id, a heartbeat interval or inquiry timeout not below the election timeout, zero limits, or
    /// bully mode without check-quorum.
    pub fn validate(&self) {
        assert!(self.id != NodeId(0), "node id 0 is reserved");
        assert!(self.election_timeout_ticks >= 2, "election timeout {} too small", self.election_timeout_ticks);
        assert!(
            self.heartbeat_interval_ticks >= 1 && self.heartbeat_interval_ticks < self.election_timeout_ticks,
            "heartbeat interval {} must be in [1, election timeout {})",
            self.heartbeat_interval_ticks,
            self.election_timeout_ticks
        );
        assert!(
            self.inquiry_timeout_ticks >= 1 && self.inquiry_timeout_ticks < self.election_timeout_ticks,
            "inquiry timeout {} must be in [1, election timeout {})",
            self.inquiry_timeout_ticks,
            self.election_timeout_ticks
        );
        // Check-quorum is what deposes a bully leader that lost its majority, and its lease is what keeps a
        // returning higher node from disrupting a healthy leader: bully mode is unsafe to run without it.
        assert!(self.election == ElectionMode::Raft || self.check_quorum, "the bully election mode needs check-quorum");
        assert!(self.max_inflight_messages >= 1, "max_inflight_messages must be >= 1");
        assert!(self.max_entries_per_message >= 1, "max_entries_per_message must be >= 1");
        assert!(self.max_bytes_per_message >= 1, "max_bytes_per_message must be >= 1 (the snapshot chunk size)");
        assert!(self.max_uncommitted_entries >= 1, "max_uncommitted_entries must be >= 1");
    }
}

/// How a node that lost its leader finds the next one. Whatever the mode, a node becomes leader only by
/// winning a Raft election: a majority of voters must vote for it in a new term, each voter votes at most
/// once per term (the vote is persisted) and only for a log at least as up to date as its own (§5.4.1). The
/// modes differ only in who runs for election and when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ElectionMode {
    /// Raft §5.2: a follower whose randomized election timeout runs out campaigns (after a pre-vote round,
    /// dissertation §9.6); the first candidate a majority votes for wins.
    #[default]
    Raft,
    /// The bully algorithm of the original project, made safe. A follower whose election timeout runs out
    /// asks every voter whether one that *outranks* it is alive (an inquiry). Rank is log freshness (last log
    /// term, then last log index), then the node id, so among equal logs the highest id wins. A voter that
    /// outranks the inquirer answers `Alive` and runs its own inquiry; the inquirer then waits for that
    /// node's victory. If no `Alive` comes within `inquiry_timeout_ticks` and a majority said it may go
    /// ahead, the inquirer claims victory: a Raft election in a new term. Requires check-quorum.
    Bully,
}

/// Switches that break the core on purpose. Each one removes one safety mechanism; the simulator's tests
/// turn them on one at a time and show that a checker catches the resulting bug. All off by default, and
/// production code never turns them on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Commit any entry stored on a majority, even one from an earlier term (the Figure 8 bug, Raft §5.4.2).
    pub commit_previous_term_by_count: bool,
    /// Grant votes without checking that the candidate's log is at least as up to date (Raft §5.4.1). In
    /// bully mode, also rank nodes by id alone, as the naive bully algorithm does: otherwise the inquiry,
    /// which only lets a node run once a majority holds no fresher log, would still keep stale nodes out.
    pub skip_vote_log_check: bool,
    /// Answer ReadIndex requests with the commit index at once, without confirming leadership (a deposed
    /// leader then serves stale reads).
    pub read_without_quorum_check: bool,
    /// Do not report a changed vote in the hard state, so it is never persisted and a restarted node may
    /// vote twice in one term.
    pub forget_to_persist_vote: bool,
    /// Ignore [`crate::Restored::tail_may_be_acknowledged`] (and the tail's hard state): a node whose storage
    /// lost acknowledged entries or a vote votes and campaigns at once, as if nothing was lost.
    pub skip_protocol_aware_recovery: bool,
}
