//! Storage alarms: what a node does when its disk is full or its data passes the quota.
//!
//! ```text
//!   every Node::handle ── storage.has_space()? ───────────────┐
//!   about once a second ─ storage.retry_space(), disk_bytes() ─┴─▶ alarms { NoSpace, Quota }
//!
//!   NoSpace (the log cannot take entries):            Quota (the data passed --quota-bytes):
//!   - client writes refused while leader (507)        - client writes refused while leader (507),
//!   - leader: hands leadership to the voter with        except deletes (they shrink the state)
//!     the highest match index                         - replication continues: followers keep
//!   - Append carrying entries and snapshots are         storing what the leader commits, so a
//!     dropped before the Raft core sees them, so        delete reaches them too
//!     the core never asks to persist what cannot
//!     be written; heartbeats and votes go on
//!   - it neither campaigns nor takes a transfer
//!     (a new leader must store a no-op at once)
//!   - reads go on everywhere (the server sends a full
//!     follower's linearizable reads to the leader)
//! ```
//!
//! The alarms clear by themselves: `retry_space` recreates the log's spare segment once space is freed,
//! and the leader then sends the entries this node dropped (it never acknowledged them).

use tally_raft::{Message, MessageBody};

use super::Node;
use crate::request::{Completion, RequestError, RequestId};
use crate::state_machine::StateMachine;
use crate::storage::{Storage, StorageError};
use crate::transport::{Clock, Transport};

/// Why a node refuses writes while it keeps serving reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StorageAlarm {
    /// The disk is full: the log cannot make room for its next segment. Replication to this node
    /// pauses; it resumes by itself when space returns.
    NoSpace,
    /// The data directory (log segments and snapshots) passed the configured quota. Deletes are still
    /// accepted; compaction, deleting keys or a larger quota clears it.
    Quota,
}

impl StorageAlarm {
    /// The alarm's name in metrics and the API: `no_space` or `quota`.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageAlarm::NoSpace => "no_space",
            StorageAlarm::Quota => "quota",
        }
    }
}

/// Milliseconds between two retries of a full disk (and two measurements for the quota).
pub(crate) const SPACE_CHECK_INTERVAL_MS: u64 = 1000;

/// The node's view of its storage's space.
///
/// Invariant: `no_space.is_some()` iff the storage said it has no space at the last check.
#[derive(Debug, Default)]
pub(crate) struct Space {
    /// Why the storage has no space (the storage's message), while it has none.
    pub(crate) no_space: Option<String>,
    /// The storage's size at the last measurement, if it could be measured.
    pub(crate) disk_bytes: Option<u64>,
    /// The quota in bytes; 0: none.
    pub(crate) quota_bytes: u64,
    /// The clock reading of the last retry/measurement; `None` before the first.
    pub(crate) last_check_ms: Option<u64>,
    /// Entries messages and snapshots dropped because the disk was full (for tests and metrics).
    pub(crate) dropped_messages: u64,
    /// A write failed on a full disk although the log had room for its next segment (a snapshot larger
    /// than the free space): why, and the clock reading until which the node acts as if the log had no
    /// room (see [`super::reload`]).
    pub(crate) failed_write: Option<(String, u64)>,
    /// Writes refused in a row that way (reset by a stored snapshot or entries): each doubles the time the
    /// node acts as if full, so a snapshot that never fits is not retried every second.
    pub(crate) failed_writes: u32,
}

impl Space {
    /// Whether a retry and a measurement are due at `now_ms`.
    pub(crate) fn check_due(&self, now_ms: u64) -> bool {
        self.last_check_ms.is_none_or(|last| now_ms.saturating_sub(last) >= SPACE_CHECK_INTERVAL_MS)
    }

    /// Whether the last measurement passed the quota.
    pub(crate) fn over_quota(&self) -> bool {
        self.quota_bytes > 0 && self.disk_bytes.is_some_and(|bytes| bytes > self.quota_bytes)
    }

    /// The alarms raised now, sorted.
    pub(crate) fn alarms(&self) -> Vec<StorageAlarm> {
        let mut alarms = Vec::new();
        if self.no_space.is_some() {
            alarms.push(StorageAlarm::NoSpace);
        }
        if self.over_quota() {
            alarms.push(StorageAlarm::Quota);
        }
        alarms
    }

    /// Why a client write is refused now, or `None` if it may go ahead. `frees_space`: whether the command
    /// only shrinks the state (allowed under the quota, not on a full disk: it still needs log space), asked only
    /// when over the quota, because it decodes the command.
    pub(crate) fn refusal(&self, frees_space: impl FnOnce() -> bool) -> Option<String> {
        if let Some(reason) = &self.no_space {
            return Some(format!("this node's disk is full ({reason}); the write was refused"));
        }
        if self.over_quota() && !frees_space() {
            let bytes = self.disk_bytes.unwrap_or_default();
            return Some(format!(
                "this node's data ({bytes} bytes) is over its quota of {} bytes; only deletes are accepted until \
                 compaction, deletes or a larger quota bring it under",
                self.quota_bytes
            ));
        }
        None
    }

    /// Whether `message` must be dropped before the Raft core sees it: on a full disk, anything that
    /// would make the core ask to persist entries or a snapshot. Heartbeats (an Append without entries)
    /// and votes go through: they need at most a hard state, which fits in the room kept in the log.
    pub(crate) fn drops(&self, message: &Message) -> bool {
        if self.no_space.is_none() {
            return false;
        }
        match &message.body {
            MessageBody::Append { entries, .. } => !entries.is_empty(),
            MessageBody::InstallSnapshot { .. } => true,
            _ => false,
        }
    }
}

impl<S: StateMachine, D: Storage, T: Transport, C: Clock> Node<S, D, T, C> {
    /// Refreshes the alarms: the cheap "has space" every call, the retry of a full disk and the
    /// quota measurement about once a second.
    ///
    /// # Errors
    /// A storage failure while retrying (the disk failed rather than filled up).
    pub(super) fn check_space(&mut self) -> Result<(), StorageError> {
        let now = self.clock.now_ms();
        let due = self.space.check_due(now);
        if due {
            self.space.last_check_ms = Some(now);
            if !self.storage.has_space() {
                self.storage.retry_space()?;
            }
            self.space.disk_bytes = self.storage.disk_bytes().or(self.space.disk_bytes);
        }
        self.observe_space(due);
        Ok(())
    }

    /// Reads the storage's "has space". While it has none and this node leads, hands leadership to the
    /// voter that holds the most of the log (the one that can take over soonest): when the alarm is
    /// raised, and again at every check (`due`) in case a transfer timed out.
    pub(super) fn observe_space(&mut self, due: bool) {
        let was_full = self.space.no_space.is_some();
        let now = self.clock.now_ms();
        if self.space.failed_write.as_ref().is_some_and(|(_, until_ms)| now >= *until_ms) {
            self.space.failed_write = None;
        }
        let has_space = self.storage.has_space() && self.space.failed_write.is_none();
        self.space.no_space = match (has_space, self.space.no_space.take()) {
            (true, _) => None,
            (false, Some(reason)) => Some(reason),
            (false, None) => Some(match &self.space.failed_write {
                Some((reason, _)) => reason.clone(),
                None => "no space left: the log cannot allocate its next segment".to_string(),
            }),
        };
        let raised = !was_full && self.space.no_space.is_some();
        // A node that cannot take entries must not win an election or take a transfer: a new leader appends a
        // no-op at once, and the full followers, which drop entries, would never let it commit, so it could serve
        // nothing. When every disk is full, the leader stays where it is and keeps serving reads.
        self.raft.hold_back(self.space.no_space.is_some());
        if (raised || due) && self.space.no_space.is_some() && self.raft.is_leader() {
            let me = self.raft.id();
            let voters = &self.raft.membership().voters;
            let target = self
                .raft
                .match_indexes()
                .into_iter()
                .filter(|(id, _)| *id != me && voters.contains(id))
                .max_by_key(|(id, index)| (*index, std::cmp::Reverse(*id)));
            if let Some((target, _)) = target {
                // Refused only if the target stopped being a voter meanwhile: the next check picks again.
                let _ = self.raft.transfer_leader(target);
            }
        }
    }

    /// Takes the proposals that may go ahead and refuses the rest (the leader of a node in alarm).
    pub(super) fn admit_proposals(&mut self, proposals: Vec<(RequestId, Vec<u8>)>) -> Vec<(RequestId, Vec<u8>)> {
        if !self.raft.is_leader() {
            return proposals; // refused by the core with a leader hint: the write goes to the leader
        }
        let mut admitted = Vec::with_capacity(proposals.len());
        for (id, command) in proposals {
            match self.space.refusal(|| self.state_machine.frees_space(&command)) {
                None => admitted.push((id, command)),
                Some(reason) => self.completions.push(Completion { id, result: Err(RequestError::NoSpace(reason)) }),
            }
        }
        admitted
    }

    /// The storage alarms raised now (empty when healthy), sorted.
    pub fn storage_alarms(&self) -> Vec<StorageAlarm> {
        self.space.alarms()
    }

    /// The storage's size on disk at the last measurement (about once a second).
    pub fn storage_bytes(&self) -> Option<u64> {
        self.space.disk_bytes
    }

    /// The storage quota in bytes (0: none).
    pub fn storage_quota_bytes(&self) -> u64 {
        self.space.quota_bytes
    }

    /// Messages dropped before the core because the disk was full (entries and snapshots).
    pub fn dropped_for_space(&self) -> u64 {
        self.space.dropped_messages
    }
}
