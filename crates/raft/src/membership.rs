//! Single-server membership changes carried in the log (dissertation §4.1): a change takes effect on each
//! node as soon as it is appended, only one may be uncommitted at a time, and the leader accepts one only
//! after committing an entry of its own term (the fix for the bug described in the raft-dev thread of 2015).

use crate::config::ElectionMode;
use crate::error::ProposeError;
use crate::progress::Progress;
use crate::raft::{Raft, Role};
use std::collections::BTreeSet;

use crate::types::{EntryPayload, LogIndex, Membership, MembershipChange, NodeId};

/// Leader only: a node a committed change removed, which may not know it yet (a voter removed directly would
/// otherwise campaign for ever, and could win a later election only to step down at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Departure {
    /// The index of the committed membership entry that removed it.
    pub removal: LogIndex,
    /// The heartbeat round (`read_seq`) that tells it its removal committed, once started: every heartbeat of
    /// that round or later carries a commit index at or past `removal`.
    pub farewell_seq: Option<u64>,
}

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
        if let MembershipChange::AddVoter(id) = change {
            self.check_ready_to_vote(id)?;
        }
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
        self.sync_progress();
    }

    /// The nodes a leader replicates to: every other member, the members an uncommitted change removed, and
    /// those a committed change removed that have not yet acknowledged a commit index past their removal
    /// (`departing`), so that they receive their own removal, learn it committed, and stop campaigning.
    pub(crate) fn replication_targets(&self) -> BTreeSet<NodeId> {
        let mut targets: BTreeSet<NodeId> = self.membership.members().collect();
        if self.membership_index > self.log.commit() {
            targets.extend(self.membership_at(self.log.commit()).members());
        }
        targets.extend(self.departing.keys());
        targets.remove(&self.config.id);
        targets
    }

    /// Leader, on a commit: every node it replicated to that the committed membership no longer holds departs. It
    /// stays a target until it acknowledges a heartbeat round that told it the removal committed.
    fn note_departures(&mut self) {
        let removal = self.membership_index;
        if removal > self.log.commit() || self.role != Role::Leader {
            return;
        }
        let gone: Vec<NodeId> = self.progress.keys().copied().filter(|&id| !self.membership.contains(id)).collect();
        for id in gone {
            // A departure noted for an older removal (the node was added again since) now waits for this one.
            let departure = self.departing.entry(id).or_insert(Departure { removal, farewell_seq: None });
            if departure.removal < removal {
                *departure = Departure { removal, farewell_seq: None };
            }
        }
    }

    /// Leader: `from` asks for votes but is no longer a member. If this leader's log holds the committed
    /// change that removed it, the leader that committed that change may have lost leadership before telling
    /// it (a departure lasts only as long as the leadership that noted it), so it departs again here: it
    /// receives its removal and stops campaigning. A node whose removal the log does not hold (compacted
    /// away, or a node this cluster never had) gets nothing: the log is only sent to nodes it names.
    pub(crate) fn notice_removed_candidate(&mut self, from: NodeId) {
        if self.role != Role::Leader || from == self.config.id || self.membership.contains(from) {
            return;
        }
        if self.departing.contains_key(&from) {
            return;
        }
        let Some(removal) = self.committed_removal_of(from) else { return };
        self.departing.insert(from, Departure { removal, farewell_seq: None });
        self.sync_progress();
    }

    /// Whether `message` answers this leader and comes from a node a committed change removed (a departing
    /// node, not added again since): only such answers are dropped when their term is past the leader's.
    pub(crate) fn is_departed_answer(&self, message: &crate::message::Message) -> bool {
        use crate::message::MessageBody;
        let answer = matches!(
            message.body,
            MessageBody::AppendResponse { .. }
                | MessageBody::HeartbeatResponse { .. }
                | MessageBody::SnapshotResponse { .. }
        );
        let from = message.from;
        answer && self.role == Role::Leader && self.departing.contains_key(&from) && !self.membership.contains(from)
    }

    /// The index of the last committed entry still in the log that removed `id`, if any.
    fn committed_removal_of(&self, id: NodeId) -> Option<LogIndex> {
        let mut index = self.log.commit();
        while index >= self.log.first_index() && index > LogIndex(0) {
            let entry = self.log.entry(index)?;
            if matches!(entry.payload, EntryPayload::Membership(MembershipChange::Remove(removed)) if removed == id) {
                return Some(index);
            }
            index = LogIndex(index.0 - 1);
        }
        None
    }

    /// Leader, before a heartbeat round: a departing node that holds its removal gets a round of its own (a new
    /// `read_seq`), whose heartbeat carries a commit index past the removal; answering it proves it knows.
    pub(crate) fn start_farewells(&mut self) {
        let progress = &self.progress;
        let due: Vec<NodeId> = self
            .departing
            .iter()
            .filter(|(id, d)| d.farewell_seq.is_none() && progress.get(id).is_some_and(|p| p.match_index >= d.removal))
            .map(|(&id, _)| id)
            .collect();
        if due.is_empty() {
            return;
        }
        self.read_seq += 1;
        for id in due {
            self.departing.get_mut(&id).expect("just listed").farewell_seq = Some(self.read_seq);
        }
    }

    /// Leader: `from` answered heartbeat round `read_seq`; if that was its farewell, it knows it was removed:
    /// stop replicating to it.
    pub(crate) fn maybe_end_departure(&mut self, from: NodeId, read_seq: u64) {
        let done = self.departing.get(&from).and_then(|d| d.farewell_seq).is_some_and(|seq| read_seq >= seq);
        if done {
            self.departing.remove(&from);
            self.sync_progress();
        }
    }

    /// Leader: keeps exactly one progress per replication target; new ones start probing at the end of the log.
    pub(crate) fn sync_progress(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let next = self.log.last_index().next();
        let targets = self.replication_targets();
        self.progress.retain(|id, _| targets.contains(id));
        for id in targets {
            self.progress.entry(id).or_insert_with(|| {
                let mut progress = Progress::new(next);
                progress.recent_active = true; // a full round before check-quorum judges it
                progress
            });
        }
    }

    /// The membership in force at `index` (which must not be before the snapshot), and the index that set it.
    pub(crate) fn membership_up_to(&self, index: LogIndex) -> (Membership, LogIndex) {
        let base = &self.snapshot.meta;
        assert!(index >= base.index, "membership at {index} before snapshot {}", base.index);
        if base.membership.voters.is_empty() {
            // No membership base yet (a joining node, possibly restarted with entries but without the base,
            // which is not persisted): the log's changes cannot be interpreted, so no membership is known
            // until the leader sends its snapshot.
            return (Membership::default(), base.index);
        }
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

    /// Leader: whether learner (or follower) `id` has caught up: its match index is within one Append's worth
    /// of entries (`max_entries_per_message`) of the commit index, so one round trip brings it level. Under a
    /// steady stream of writes a follower is always a batch or so behind; requiring an exact match would never
    /// let a learner be promoted.
    pub fn is_caught_up(&self, id: NodeId) -> bool {
        let matched = self.progress.get(&id).map_or(LogIndex(0), |p| p.match_index);
        let slack = self.config.max_entries_per_message as u64;
        self.role == Role::Leader && matched.0.saturating_add(slack) >= self.log.commit().0
    }

    /// Dissertation §4.2.1: a node becomes a voter only once it is a learner that has caught up (see
    /// [`Self::is_caught_up`]), or a slow new voter could stall commits, or cost the cluster its quorum.
    fn check_ready_to_vote(&self, id: NodeId) -> Result<(), ProposeError> {
        if !self.membership.learners.contains(&id) {
            return Err(ProposeError::InvalidMembershipChange(format!("{id} must first be added as a learner")));
        }
        let matched = self.progress.get(&id).map_or(LogIndex(0), |p| p.match_index);
        if !self.is_caught_up(id) {
            let commit = self.log.commit();
            let reason = format!("{id} has not caught up yet (match {matched}, commit {commit})");
            return Err(ProposeError::InvalidMembershipChange(reason));
        }
        Ok(())
    }

    /// Called after the commit index advanced on the leader: start waiting reads, stop replicating to
    /// members whose removal committed, and step down if a committed change removed this leader from the
    /// voters, handing leadership to the most up-to-date voter so the cluster need not wait for a timeout.
    pub(crate) fn on_commit_advanced(&mut self) {
        self.start_reads_awaiting_commit();
        self.advance_reads();
        self.note_departures();
        self.sync_progress();
        let removed = !self.membership.is_voter(self.config.id) && self.membership_index <= self.log.commit();
        if self.role == Role::Leader && removed {
            let successor = self
                .progress
                .iter()
                .filter(|(id, _)| self.membership.is_voter(**id))
                .max_by_key(|(id, p)| (p.match_index, self.successor_preference(**id)))
                .map(|(&id, p)| (id, p.match_index));
            if let Some((successor, matched)) = successor
                && matched == self.log.last_index()
            {
                self.send(successor, crate::message::MessageBody::TimeoutNow);
            }
            self.become_follower(self.term, None);
        }
    }

    /// Among equally caught-up voters, which one a leader that steps down prefers as its successor (the
    /// larger key wins): the lowest id in Raft mode, the highest in bully mode, as a bully election would pick.
    fn successor_preference(&self, id: NodeId) -> u64 {
        match self.config.election {
            ElectionMode::Raft => u64::MAX - id.0,
            ElectionMode::Bully => id.0,
        }
    }
}
