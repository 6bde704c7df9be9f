//! What the core asks its driver to do, and in which order.

use crate::message::Message;
use crate::types::{Entry, HardState, LogIndex, Snapshot};

/// Everything the driver must do after one or more inputs, taken with [`crate::Raft::ready`].
///
/// The driver handles the fields **in the order they are declared**:
///
/// ```text
///  1. snapshot, entries, hard_state  -> write all three, then ONE fsync      (persist)
///  2. messages                       -> send, only after step 1 is durable   (communicate)
///  3. snapshot, committed_entries    -> install, then apply in order         (apply)
///  4. read_states                    -> answer reads once applied >= index   (read)
/// ```
///
/// Once `ready()` has returned, the core assumes step 1 is done: if the driver cannot make it durable, it
/// must stop (crash) rather than go on, or votes and acknowledged entries could be forgotten.
#[derive(Debug, Default)]
#[must_use = "a Ready must be persisted, sent and applied"]
pub struct Ready {
    /// A snapshot received from the leader: always whole, its chunks assembled and its CRC32 verified by
    /// the core (the driver never sees chunks). Persist it **before** `entries`, which follow it, and before
    /// sending `messages`, which acknowledge it; install it in the state machine before applying
    /// `committed_entries`. Every log entry the driver holds up to `snapshot.meta.index` is superseded and
    /// may be dropped; entries after it are gone from the core's log and must be dropped too.
    pub snapshot: Option<Snapshot>,
    /// With `snapshot`: true if it replaces the whole log (drop every stored entry, restore the state machine
    /// from it); false if it only gives a node without a membership base its base (store it, keep the stored
    /// entries after its index, leave the state machine alone: the log at or below the commit index already
    /// matches it).
    pub snapshot_replaces_log: bool,
    /// Entries to append to the durable log, consecutive. If the first one's index is not past the last
    /// durable index, the durable log is truncated from that index first (a conflicting suffix). Persist
    /// **before** sending `messages`: a follower's acknowledgement and a leader's own vote in the commit
    /// quorum both count these entries as durable.
    pub entries: Vec<Entry>,
    /// The new term, vote and commit index, if any changed. Persist **before** sending `messages`: a vote
    /// sent but forgotten in a crash could be given twice in one term.
    pub hard_state: Option<HardState>,
    /// Messages to send. Send only **after** `snapshot`, `entries` and `hard_state` are durable. They may be
    /// lost, duplicated or reordered by the network: the protocol tolerates all three.
    pub messages: Vec<Message>,
    /// Committed entries to apply to the state machine, consecutive and in log order, each exactly once.
    /// Apply **after** `snapshot` is installed and `entries` are durable (they may be among them).
    pub committed_entries: Vec<Entry>,
    /// Answers to [`crate::Raft::read_index`]: serve the read with context `context` once the state machine
    /// has applied at least `index`.
    pub read_states: Vec<ReadState>,
}

/// A confirmed read index: at the moment the read was requested, the leader was the leader and its commit
/// index was `index`, so a state machine that has applied `index` reflects every write that completed before
/// the read began (linearizability).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's identifier of the read.
    pub context: u64,
    /// Serve the read once applied >= this.
    pub index: LogIndex,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
    }
}
