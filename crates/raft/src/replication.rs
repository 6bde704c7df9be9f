//! Log replication (Raft §5.3), commit (§5.4.2), proposals and snapshots sent to lagging followers.

use crate::error::ProposeError;
use crate::message::{AppendRejection, MessageBody};
use crate::progress::ReplicationState;
use crate::quorum;
use crate::raft::{Raft, Role};
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, Term};

impl Raft {
    /// Appends `data` to the log as a new command entry. It is committed, and may be applied, once a
    /// majority stores it; the returned index (with the current term) identifies it until then: if another
    /// entry shows up at that index, the proposal was lost.
    ///
    /// # Errors
    /// `NotLeader` with a hint, `TransferInProgress`, or `Overloaded` when too much is uncommitted.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        Ok(self.append_and_replicate(EntryPayload::Command(data)))
    }

    /// Appends several commands at once and then replicates them together: one Append per follower for the
    /// whole batch instead of one per command. Each command gets its own result, in order; once one is
    /// refused (e.g. `Overloaded`), the rest are refused too.
    pub fn propose_batch(&mut self, commands: Vec<Vec<u8>>) -> Vec<Result<LogIndex, ProposeError>> {
        let mut appended = false;
        let results = commands
            .into_iter()
            .map(|data| {
                self.check_can_propose()?;
                appended = true;
                Ok(self.log.append_new(self.term, EntryPayload::Command(data)))
            })
            .collect();
        if appended {
            self.broadcast_append();
            self.maybe_commit();
        }
        results
    }

    /// Checks that this node may accept a new entry now.
    pub(crate) fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader_id });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        let uncommitted = (self.log.last_index().0 - self.log.commit().0) as usize;
        if uncommitted >= self.config.max_uncommitted_entries {
            return Err(ProposeError::Overloaded(uncommitted));
        }
        Ok(())
    }

    /// The leader appends one entry of its term and starts replicating it.
    pub(crate) fn append_and_replicate(&mut self, payload: EntryPayload) -> LogIndex {
        assert_eq!(self.role, Role::Leader, "only the leader appends new entries");
        let index = self.log.append_new(self.term, payload);
        self.broadcast_append();
        self.maybe_commit();
        index
    }

    /// Sends whatever each member is missing, as far as its window allows.
    pub(crate) fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_append(peer, false);
        }
    }

    /// Sends `to` its next batch of entries, or the snapshot if the entries it needs are compacted. An empty
    /// Append is sent only to probe a diverged follower or when `send_if_empty` (to spread a new commit index).
    pub(crate) fn send_append(&mut self, to: NodeId, send_if_empty: bool) {
        let Some(progress) = self.progress.get(&to) else { return };
        if progress.is_paused(self.config.max_inflight_messages) {
            return;
        }
        let probing = matches!(progress.state, ReplicationState::Probe { .. });
        let next = progress.next_index;
        let prev_log_index = next.prev();
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            self.start_snapshot_transfer(to);
            return;
        };
        let entries = if next <= self.log.last_index() {
            self.log.entries_from(next, self.config.max_entries_per_message, self.config.max_bytes_per_message)
        } else {
            Vec::new()
        };
        if entries.is_empty() && !probing && !send_if_empty {
            return;
        }
        let last = entries.last().map_or(prev_log_index, |e| e.index);
        let max_inflight = self.config.max_inflight_messages;
        self.progress.get_mut(&to).expect("checked above").sent(last, max_inflight);
        let leader_commit = self.log.commit();
        self.send(to, MessageBody::Append { prev_log_index, prev_log_term, entries, leader_commit });
    }

    /// Sends every member a heartbeat carrying the current ReadIndex round.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        self.start_farewells();
        let commit = self.log.commit();
        let read_seq = self.read_seq;
        let beats: Vec<(NodeId, LogIndex)> =
            self.progress.iter().map(|(&id, p)| (id, commit.min(p.match_index))).collect();
        for (to, commit) in beats {
            self.send(to, MessageBody::Heartbeat { commit, read_seq });
        }
    }

    /// Gives up on Appends unanswered for half an election timeout (lost in the network) and probes again
    /// from the match index; resends snapshot chunks from the acknowledged offset after four election
    /// timeouts without an acknowledgement.
    pub(crate) fn tick_replication(&mut self) {
        let timeout = (self.config.election_timeout_ticks / 2).max(1);
        let snapshot_timeout = self.config.election_timeout_ticks * 4;
        let stalled: Vec<NodeId> = self
            .progress
            .iter_mut()
            .filter_map(|(&id, p)| p.tick_stalled(timeout, snapshot_timeout).then_some(id))
            .collect();
        for id in stalled {
            if self.progress.get(&id).is_some_and(|p| matches!(p.state, ReplicationState::Snapshot(_))) {
                self.resend_snapshot(id);
            } else {
                self.send_append(id, false);
            }
        }
    }

    /// Follower: the consistency check, then append (Raft §5.3, receiver rules 1-5).
    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: &[Entry],
        leader_commit: LogIndex,
    ) {
        if !self.has_membership_base() {
            // A new node that has not been sent a snapshot cannot tell which membership the entries' changes
            // apply to (the initial one is in the snapshot, not the log). Ask for the snapshot first.
            let rejection = AppendRejection {
                rejected_index: prev_log_index,
                hint_index: LogIndex(0),
                hint_term: Term(0),
                needs_snapshot: true,
            };
            self.send(from, MessageBody::AppendResponse { result: Err(rejection) });
            return;
        }
        if prev_log_index < self.log.commit() {
            // Everything up to our commit index is committed, so it matches the leader's log.
            let result = Ok(self.log.commit());
            self.send(from, MessageBody::AppendResponse { result });
            return;
        }
        if !self.log.matches(prev_log_index, prev_log_term) {
            let hint_index = self.log.find_conflict_by_term(prev_log_index, prev_log_term);
            let hint_term = self.log.term_at(hint_index).expect("hint index is held");
            let rejection =
                AppendRejection { rejected_index: prev_log_index, hint_index, hint_term, needs_snapshot: false };
            self.send(from, MessageBody::AppendResponse { result: Err(rejection) });
            return;
        }
        let truncated = self.log.append_after(prev_log_index, entries);
        let has_membership = entries.iter().any(|e| matches!(e.payload, EntryPayload::Membership(_)));
        if truncated.is_some() || has_membership {
            self.recompute_membership();
        }
        let last_new = LogIndex(prev_log_index.0 + entries.len() as u64);
        self.append_verified = (self.term, self.verified_this_term().max(last_new));
        self.log.commit_to(leader_commit.min(last_new));
        self.send(from, MessageBody::AppendResponse { result: Ok(last_new) });
    }

    /// Follower: the leader's heartbeat; advance the commit index and acknowledge the read round.
    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, read_seq: u64) {
        // The leader sends at most what it knows this node holds, so a commit past our log means this node lost
        // entries it had acknowledged (its data was wiped): commit nothing on that word. The leader's next
        // Append is rejected, and it brings this node back from the log or a snapshot.
        // A leader of a term in which this node lost acknowledged entries believes it still holds them: commit
        // only what this term's Appends verified (see `LostAcks`), and depose it if it asks for more.
        let limit = self.heartbeat_commit_limit();
        if limit.is_some_and(|limit| self.should_depose_stale_leader(commit, limit)) {
            self.become_follower(self.term.next(), None);
            self.send(from, MessageBody::HeartbeatResponse { read_seq: 0 });
            return;
        }
        let commit = limit.map_or(commit, |limit| commit.min(limit));
        if commit <= self.log.last_index() {
            self.log.commit_to(commit);
        }
        self.send(from, MessageBody::HeartbeatResponse { read_seq });
    }

    /// Whether this node knows the membership its log's changes apply to: every member of a cluster has a
    /// snapshot (at index 0, the initial one) with at least one voter; a new node that will join an existing
    /// cluster starts with an empty one and gets it from the leader's snapshot.
    pub(crate) fn has_membership_base(&self) -> bool {
        !self.snapshot.meta.membership.voters.is_empty()
    }

    /// Leader: a follower answered an Append, or the snapshot chunk that completed a snapshot.
    ///
    /// A match beyond what this leader offered the follower (see [`crate::progress::Progress::sent_max`]; it
    /// is never beyond the last index) cannot be the follower's answer: it is forged, or from a broken peer,
    /// and is ignored whole, so it can neither advance the commit index nor count the follower as active.
    pub(crate) fn handle_append_response(&mut self, from: NodeId, result: Result<LogIndex, AppendRejection>) {
        if self.role != Role::Leader {
            return;
        }
        if let Ok(index) = result {
            if !self.progress.get(&from).is_some_and(|p| p.may_acknowledge(index)) {
                return;
            }
        }
        let offset = self.log.offset();
        let next = match result {
            Ok(_) => LogIndex(0),
            Err(r) if r.hint_index < offset => r.hint_index.next(),
            Err(r) => self.log.find_conflict_by_term(r.hint_index, r.hint_term).next(),
        };
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        match result {
            Ok(index) => {
                assert!(index <= self.log.last_index(), "{from} matched {index} past our last index");
                // (Checked above: `sent_max` never exceeds the last index, as the leader's log never shrinks.)
                if progress.acknowledge(index) {
                    self.maybe_commit();
                }
                self.maybe_send_timeout_now(from);
            }
            Err(rejection) if rejection.needs_snapshot => {
                if !matches!(progress.state, ReplicationState::Snapshot(_)) {
                    self.start_snapshot_transfer(from);
                }
                return;
            }
            Err(rejection) => {
                if !progress.reject(rejection.rejected_index, next) {
                    return;
                }
            }
        }
        if self.role == Role::Leader {
            self.send_append(from, false);
        }
    }

    /// Leader: a heartbeat was answered; resume a paused probe and count the read round.
    ///
    /// An answer to a round this leader has not started (`read_seq` beyond its own) is forged, or from a broken
    /// peer: counting it would confirm future ReadIndex rounds in advance, so it is ignored whole.
    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, read_seq: u64) {
        if self.role != Role::Leader || read_seq > self.read_seq {
            return;
        }
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        progress.resume_probe();
        progress.read_seq_acked = progress.read_seq_acked.max(read_seq);
        if progress.match_index < last_index {
            // The follower is behind. In probe mode this resends; in replicate mode with nothing new to send
            // it sends an empty Append at the optimistic position, which the follower rejects if it lost the
            // last Appends, so the leader falls back to probing (as etcd does). A full window of lost Appends
            // is reopened by `tick_replication`.
            self.send_append(from, true);
        }
        self.maybe_send_timeout_now(from); // a lost TimeoutNow is sent again
        self.advance_reads();
        self.maybe_end_departure(from, read_seq);
    }

    /// Leader: commit the highest index stored on a majority of voters, if it is of the current term
    /// (§5.4.2: counting replicas never commits an entry of an earlier term directly).
    pub(crate) fn maybe_commit(&mut self) {
        let id = self.config.id;
        let last = self.log.last_index();
        let progress = &self.progress;
        let matched = |voter: NodeId| {
            if voter == id { last } else { progress.get(&voter).map_or(LogIndex(0), |p| p.match_index) }
        };
        let index = quorum::committed_index(&self.membership.voters, matched);
        if index <= self.log.commit() {
            return;
        }
        let of_current_term = self.log.term_at(index) == Some(self.term);
        if !of_current_term && !self.config.faults.commit_previous_term_by_count {
            return;
        }
        self.log.commit_to(index);
        self.on_commit_advanced();
        if self.role == Role::Leader {
            let peers: Vec<NodeId> = self.progress.keys().copied().collect();
            for peer in peers {
                self.send_append(peer, true);
            }
        }
    }
}
