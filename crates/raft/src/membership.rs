//! Single-server membership changes carried in the log (dissertation §4.1): a change takes effect on each
//! node as soon as it is appended, only one may be uncommitted at a time, and the leader accepts one only
//! after committing an entry of its own term (the fix for the bug described in the raft-dev thread of 2015).

use crate::error::ProposeError;
use crate::progress::Progress;
use crate::raft::{Raft, Role};
use crate::types::{EntryPayload, LogIndex, Membership, MembershipChange, NodeId};

impl Raft {
    /// Proposes a membership change.
    ///
    /// # Errors
    /// `NotLeader`, `TransferInProgress`, `MembershipChangePending` while another change is uncommitted or
    /// the leader has not committed in its term, `InvalidMembershipChange` for a change that makes no sense.
    pub fn propose_membership(&mut self, change: MembershipChange) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        let committed_in_term = self.log.term_at(self.log.commit()) == Some(self.term);
        if self.membership_index > self.log.commit() || !committed_in_term {
            return Err(ProposeError::MembershipChangePending);
        }
        self.membership.validate(change).map_err(ProposeError::InvalidMembershipChange)?;
        let index = self.log.append_new(self.term, EntryPayload::Membership(change));
        self.recompute_membership();
        self.broadcast_append();
        self.maybe_commit();
        Ok(index)
    }

    /// Recomputes the membership from the snapshot's and the membership entries after it, and (on a leader)
    /// keeps one progress per other member. Called whenever membership entries are appended or truncated.
    pub(crate) fn recompute_membership(&mut self) {
        let (membership, index) = self.membership_up_to(self.log.last_index());
        self.membership = membership;
        self.membership_index = index;
        if self.role != Role::Leader {
            return;
        }
        let next = self.log.last_index().next();
        let members: Vec<NodeId> = self.membership.members().filter(|&m| m != self.config.id).collect();
        self.progress.retain(|id, _| members.contains(id));
        for id in members {
            self.progress.entry(id).or_insert_with(|| {
                let mut progress = Progress::new(next);
                progress.recent_active = true;
                progress
            });
        }
    }

    /// The membership in force at `index` (which must not be before the snapshot), and the index that set it.
    pub(crate) fn membership_up_to(&self, index: LogIndex) -> (Membership, LogIndex) {
        let base = &self.snapshot.meta;
        assert!(index >= base.index, "membership at {index} before snapshot {}", base.index);
        let mut membership = base.membership.clone();
        let mut set_at = base.index;
        let mut i = base.index.next();
        while i <= index {
            let entry = self.log.entry(i).expect("entries after the snapshot are held");
            if let EntryPayload::Membership(change) = entry.payload {
                // A follower appends what the leader validated; re-validate to fail loudly on a bad log.
                membership = membership.apply(change);
                set_at = i;
            }
            i = i.next();
        }
        (membership, set_at)
    }

    /// The membership in force at `index`.
    pub(crate) fn membership_at(&self, index: LogIndex) -> Membership {
        self.membership_up_to(index).0
    }

    /// Called after the commit index advanced on the leader: start waiting reads, and step down if a
    /// committed change removed this leader from the voters.
    pub(crate) fn on_commit_advanced(&mut self) {
        self.start_reads_awaiting_commit();
        self.advance_reads();
        let removed = !self.membership.is_voter(self.config.id) && self.membership_index <= self.log.commit();
        if self.role == Role::Leader && removed {
            self.become_follower(self.term, None);
        }
    }
}
