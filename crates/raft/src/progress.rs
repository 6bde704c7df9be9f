//! What the leader knows about each follower's log, and how it paces replication to it.

use std::collections::VecDeque;

use crate::snapshot::{SnapshotAck, SnapshotTransfer};
use crate::types::LogIndex;

/// How the leader is currently replicating to one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// The follower's log may have diverged: send one Append at a time and wait for its answer (or the
    /// next heartbeat response) before sending another, backtracking `next` until the logs match.
    Probe {
        /// An Append was sent and not answered yet.
        paused: bool,
    },
    /// The follower's log matches: stream Appends optimistically, up to the in-flight window.
    Replicate,
    /// The follower needs entries that were compacted; a snapshot is on its way, in chunks. No Appends are
    /// sent until the follower acknowledges a match at the snapshot's index (or beyond).
    Snapshot(SnapshotTransfer),
}

/// The leader's view of one follower.
///
/// Invariant: `match_index < next_index`, and `match_index <= sent_max`.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The highest index known to match the leader's log.
    pub match_index: LogIndex,
    /// The next index to send.
    pub next_index: LogIndex,
    /// Probe, replicate or snapshot.
    pub state: ReplicationState,
    /// Last index of each Append in flight, oldest first; at most `max_inflight` of them.
    inflight: VecDeque<LogIndex>,
    /// Whether the follower sent anything since the last check-quorum round.
    pub recent_active: bool,
    /// The highest ReadIndex round (`read_seq`) the follower acknowledged.
    pub read_seq_acked: u64,
    /// The highest index this leader offered the follower: the last entry (or, for an empty Append, the
    /// previous index) of any Append sent, or the index of a snapshot sent. A follower can only acknowledge what
    /// it was offered, so a match beyond it is forged (or from a bug) and is ignored. Only grows.
    ///
    /// Invariant: `match_index <= sent_max`.
    pub sent_max: LogIndex,
    /// Ticks without progress while something is in flight (Appends in replicate mode, or snapshot chunks);
    /// past a timeout the leader assumes the messages were lost: it probes again from the match index, or
    /// resends snapshot chunks from the acknowledged offset. Any acknowledged progress resets it.
    pub stalled_ticks: u32,
}

impl Progress {
    /// A progress for a follower believed to need entries from `next_index` on.
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ReplicationState::Probe { paused: false },
            inflight: VecDeque::new(),
            recent_active: false,
            read_seq_acked: 0,
            sent_max: LogIndex(0),
            stalled_ticks: 0,
        }
    }

    /// Whether the leader must hold off sending more Appends.
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ReplicationState::Probe { paused } => paused,
            ReplicationState::Replicate => self.inflight.len() >= max_inflight,
            ReplicationState::Snapshot(_) => true,
        }
    }

    /// Records that an Append ending at `last_index` was sent. In replicate mode `next_index` moves past it
    /// optimistically; in probe mode the leader waits for the answer.
    pub fn sent(&mut self, last_index: LogIndex, max_inflight: usize) {
        self.sent_max = self.sent_max.max(last_index);
        match self.state {
            ReplicationState::Replicate => {
                if last_index >= self.next_index {
                    self.next_index = last_index.next();
                    self.inflight.push_back(last_index);
                    assert!(
                        self.inflight.len() <= max_inflight,
                        "inflight {} > max {max_inflight}",
                        self.inflight.len()
                    );
                }
            }
            ReplicationState::Probe { .. } => self.state = ReplicationState::Probe { paused: true },
            ReplicationState::Snapshot(_) => unreachable!("append sent while a snapshot is in flight"),
        }
    }

    /// Whether the follower may acknowledge a match up to `index`: only what it was offered
    /// ([`Progress::sent_max`]).
    pub fn may_acknowledge(&self, index: LogIndex) -> bool {
        index <= self.sent_max
    }

    /// The follower acknowledged a match up to `index`. Returns whether `match_index` advanced.
    ///
    /// # Panics
    /// If `index` was never offered to the follower (the caller checks [`Progress::may_acknowledge`]).
    pub fn acknowledge(&mut self, index: LogIndex) -> bool {
        assert!(index <= self.sent_max, "acknowledging {index} beyond the {} offered", self.sent_max);
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.stalled_ticks = 0;
        }
        if self.next_index <= index {
            self.next_index = index.next();
        }
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        match &self.state {
            ReplicationState::Probe { .. } => self.become_replicate(),
            ReplicationState::Snapshot(transfer) if self.match_index >= transfer.index() => self.become_probe(),
            ReplicationState::Snapshot(_) | ReplicationState::Replicate => {}
        }
        self.assert_valid();
        advanced
    }

    /// The follower answered a chunk of the snapshot at `index` with how much of it it holds. Progress
    /// resets the stall timer, so a long transfer that keeps moving never times out.
    pub fn acknowledge_snapshot(&mut self, index: LogIndex, next_offset: u64) -> SnapshotAck {
        let ReplicationState::Snapshot(transfer) = &mut self.state else {
            return SnapshotAck::Stale; // the transfer ended (or was never started) in this leader's view
        };
        if transfer.index() != index {
            return SnapshotAck::Stale; // about a transfer the leader gave up
        }
        let ack = transfer.acknowledge(next_offset);
        if ack == SnapshotAck::Progress {
            self.stalled_ticks = 0;
        }
        ack
    }

    /// The follower rejected an Append: move `next_index` back to `next` (never at or below the match
    /// index) and probe from there. Returns false if the rejection was stale and ignored.
    pub fn reject(&mut self, rejected_index: LogIndex, next: LogIndex) -> bool {
        match self.state {
            ReplicationState::Replicate if rejected_index <= self.match_index => return false,
            ReplicationState::Probe { .. } if rejected_index != self.next_index.prev() => return false,
            ReplicationState::Snapshot(_) => return false,
            _ => {}
        }
        self.next_index = next.min(rejected_index).max(self.match_index.next());
        self.become_probe();
        true
    }

    /// Switch to probing: one message at a time from `next_index`.
    pub fn become_probe(&mut self) {
        if let ReplicationState::Snapshot(transfer) = &self.state {
            self.next_index = self.match_index.max(transfer.index()).next();
        }
        self.state = ReplicationState::Probe { paused: false };
        self.inflight.clear();
        self.stalled_ticks = 0;
        self.assert_valid();
    }

    /// Switch to streaming from the match index.
    fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index.next();
        self.inflight.clear();
    }

    /// Switch to sending a snapshot, from its first chunk.
    pub fn become_snapshot(&mut self, transfer: SnapshotTransfer) {
        self.sent_max = self.sent_max.max(transfer.index());
        self.state = ReplicationState::Snapshot(transfer);
        self.inflight.clear();
        self.stalled_ticks = 0;
    }

    /// A heartbeat response arrived: a paused probe may send again (the Append may have been lost).
    pub fn resume_probe(&mut self) {
        if let ReplicationState::Probe { .. } = self.state {
            self.state = ReplicationState::Probe { paused: false };
        }
    }

    /// Counts a tick; returns true when messages in flight went unanswered so long that they must have
    /// been lost (the caller then sends again): Appends after switching to probe mode from the match index,
    /// snapshot chunks after rewinding to the acknowledged offset.
    /// Appends are given `timeout_ticks`; snapshot chunks, whose last one may take the follower long to
    /// persist and install, `snapshot_timeout_ticks` since the last acknowledged progress.
    pub fn tick_stalled(&mut self, timeout_ticks: u32, snapshot_timeout_ticks: u32) -> bool {
        let timeout = match self.state {
            ReplicationState::Replicate if !self.inflight.is_empty() => timeout_ticks,
            ReplicationState::Snapshot(_) => snapshot_timeout_ticks,
            ReplicationState::Replicate | ReplicationState::Probe { .. } => {
                self.stalled_ticks = 0;
                return false;
            }
        };
        self.stalled_ticks += 1;
        if self.stalled_ticks < timeout {
            return false;
        }
        self.stalled_ticks = 0;
        if let ReplicationState::Snapshot(transfer) = &mut self.state {
            transfer.rewind(); // the chunks after the acknowledged offset are presumed lost
            return true;
        }
        self.become_probe();
        self.next_index = self.match_index.next(); // whatever was in flight is presumed lost
        true
    }

    /// Asserts `match_index < next_index` and `match_index <= sent_max`.
    pub fn assert_valid(&self) {
        assert!(self.match_index < self.next_index, "match {} >= next {}", self.match_index, self.next_index);
        assert!(self.match_index <= self.sent_max, "match {} > sent {}", self.match_index, self.sent_max);
    }
}
