//! Reloading the core from storage after a write found the disk full.
//!
//! The Raft core changes its state in memory before the node persists the `Ready` that says so. When a
//! write of that `Ready` fails with `NoSpace` (the storage's promise: nothing of that call was written),
//! the core is ahead of the disk: it may hold entries, a snapshot from the leader or a vote that are not
//! stored. Its messages of that `Ready` were never sent, so nobody learned of them, but the core must not
//! act on them later either. It happens when the log has room for its next segment but a snapshot from the
//! leader is larger than what is left, or when one batch of entries outgrows the room prepared for it.
//!
//! ```text
//!   persist(ready) ── NoSpace ──▶ storage.reload(): sync what was written, open the log again
//!                                 ├─ core: Raft::new from the stored state (as a process restart would)
//!                                 ├─ state machine: kept (what it applied is committed and stored), and the
//!                                 │  commit index starts from it, so nothing is applied twice; restored from
//!                                 │  the stored snapshot if that got ahead of it (stored before the failure)
//!                                 ├─ proposals past the stored log: dropped (never stored, never sent)
//!                                 ├─ reads waiting for a ReadIndex round: refused (the new core lost the round)
//!                                 └─ space alarm for a retry interval, doubled by each failure in a row (1 s,
//!                                    2 s, 4 s, 8 s): entries and snapshots are dropped and the node does not
//!                                    campaign meanwhile, so a snapshot that never fits is not retried in a loop
//! ```
//!
//! The node never stops for a full disk: it goes on as a follower with what it stored, and catches up once
//! space returns.

use tally_raft::{LogIndex, ProposeError, Raft};

use super::Node;
use super::space::SPACE_CHECK_INTERVAL_MS;
use crate::request::{Completion, RequestError};
use crate::state_machine::StateMachine;
use crate::storage::{Storage, StorageError};
use crate::transport::{Clock, Transport};

/// The most doublings of the retry interval after writes that did not fit (8 s): long enough that a snapshot
/// that never fits is not retried in a loop, short enough that the node resumes soon after space is freed
/// (nothing tells it sooner: the write that failed is the only test).
const BACKOFF_DOUBLINGS_MAX: u32 = 3;

impl<S: StateMachine, D: Storage, T: Transport, C: Clock> Node<S, D, T, C> {
    /// Rebuilds the core from what the storage holds after a write failed with `NoSpace` (`reason`).
    ///
    /// # Errors
    /// If the storage cannot be read again: the node then stops, as for any storage failure.
    ///
    /// # Panics
    /// If the stored state is behind what the state machine applied: a node applies only what it stored.
    pub(super) fn reload_after_no_space(&mut self, reason: String) -> Result<(), StorageError> {
        let mut restored = self.storage.reload()?;
        if restored.snapshot.meta.index > self.state_machine.applied_index() {
            // The snapshot went in before the write that failed (it is stored by itself): take it now.
            self.install_snapshot(&restored.snapshot)?;
        }
        let applied = self.state_machine.applied_index();
        let stored_last = restored.entries.last().map_or(restored.snapshot.meta.index, |entry| entry.index);
        assert!(applied <= stored_last, "the stored log ends at {stored_last}, before the applied index {applied}");
        // Every applied entry is committed: start from there, so the core hands out only what comes after.
        restored.hard_state.commit = restored.hard_state.commit.max(applied);
        // Entries stored in the same batch as a hard state that did not fit may be of a newer term than the
        // stored one: never run in a term older than the log's last entry.
        let last_term = restored.entries.last().map_or(restored.snapshot.meta.term, |entry| entry.term);
        if last_term > restored.hard_state.term {
            restored.hard_state.term = last_term;
            restored.hard_state.vote = None;
        }
        self.synced_vote = (restored.hard_state.term, restored.hard_state.vote);
        self.recovery_unsettled = restored.tail_may_be_acknowledged;
        self.reapplied_through = applied;
        self.raft = Raft::new(self.config.raft.clone(), restored);
        self.drop_unstored_proposals(stored_last);
        for (_, reads) in std::mem::take(&mut self.reads_awaiting_index) {
            for read in reads {
                let error = RequestError::Rejected(ProposeError::NotLeader { leader: None });
                self.completions.push(Completion { id: read.id, result: Err(error) });
            }
        }
        let backoff_ms = SPACE_CHECK_INTERVAL_MS << self.space.failed_writes.min(BACKOFF_DOUBLINGS_MAX);
        self.space.failed_writes = self.space.failed_writes.saturating_add(1);
        let until_ms = self.clock.now_ms() + backoff_ms;
        self.space.failed_write = Some((format!("a write found the disk full: {reason}"), until_ms));
        self.observe_space(false);
        Ok(())
    }

    /// Completes as dropped the proposals whose entries lay past the stored log: this node never stored
    /// them, so it never sent them, and no other leader of their term can exist.
    fn drop_unstored_proposals(&mut self, stored_last: LogIndex) {
        let unstored = self.proposals.split_off(&stored_last.next());
        for (_, (_, id)) in unstored {
            self.completions.push(Completion { id, result: Err(RequestError::Dropped) });
        }
    }
}
