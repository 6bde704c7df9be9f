//! Leader election (Raft §5.2, §5.4.1) with pre-vote (dissertation §9.6), check-quorum (§6.2) and
//! leader transfer (§3.10).

use crate::message::{CampaignKind, MessageBody};
use crate::quorum::{self, VoteResult};
use crate::raft::{Raft, Role};
use crate::types::{EntryPayload, LogIndex, NodeId, Term};

impl Raft {
    /// Starts a pre-vote round or an election. A pre-vote asks for votes in `term + 1` without raising
    /// this node's term; only when a majority would vote does the node run the real election.
    pub(crate) fn campaign(&mut self, kind: CampaignKind) {
        assert!(self.can_campaign(), "{} campaigns but is not a voter", self.config.id);
        let campaign_term = match kind {
            CampaignKind::PreVote | CampaignKind::Inquiry => {
                self.role = Role::PreCandidate;
                self.leader_id = None;
                self.election_elapsed = 0; // an inquiry's timeout counts from here (a pre-vote's was reset by tick)
                self.run_at_lease_end = false; // running now
                self.term.next()
            }
            CampaignKind::Election | CampaignKind::Transfer => {
                self.become_follower(self.term.next(), None);
                self.role = Role::Candidate;
                self.vote = Some(self.config.id);
                self.term
            }
        };
        self.votes.clear();
        self.votes.insert(self.config.id, true);
        self.reset_election_timeout();
        let voters: Vec<NodeId> = self.membership.voters.iter().copied().filter(|&v| v != self.config.id).collect();
        self.request_votes(kind, campaign_term, voters);
        if kind == CampaignKind::Inquiry {
            self.count_inquiry_answers();
        } else {
            self.count_votes();
        }
    }

    /// Sends a (pre-)vote request or inquiry for `campaign_term`, with this node's last log position, to
    /// each of `voters`.
    pub(crate) fn request_votes(&mut self, kind: CampaignKind, campaign_term: Term, voters: Vec<NodeId>) {
        let (last_log_term, last_log_index) = (self.log.last_term(), self.log.last_index());
        for voter in voters {
            let body = MessageBody::VoteRequest { kind, last_log_term, last_log_index };
            self.send_with_term(voter, campaign_term, body);
        }
    }

    /// Answers a (pre-)vote request. `term` is the request's term (for a pre-vote, possibly above ours).
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        kind: CampaignKind,
        last_log_term: Term,
        last_log_index: LogIndex,
    ) {
        let pre_vote = kind == CampaignKind::PreVote;
        let granted = self.would_vote_for(from, term, pre_vote, last_log_term, last_log_index);
        if granted && !pre_vote {
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        // A granted pre-vote answers in the requested term so the pre-candidate can count it; everything
        // else answers in ours so a stale candidate learns the newer term.
        let reply_term = if granted && pre_vote { term } else { self.term };
        self.send_with_term(from, reply_term, MessageBody::VoteResponse { pre_vote, granted });
    }

    /// Whether this node would vote for `from` in `term` (a trial round: would it, were `from` to campaign).
    pub(crate) fn would_vote_for(
        &self,
        from: NodeId,
        term: Term,
        trial: bool,
        last_log_term: Term,
        last_log_index: LogIndex,
    ) -> bool {
        // etcd's rule: we may vote for `from` if we already did in this term, or have not voted and know no
        // leader, or (trial round) the request is for a later term than ours.
        let free_to_vote =
            self.vote == Some(from) || (self.vote.is_none() && self.leader_id.is_none()) || (trial && term > self.term);
        let log_ok = self.config.faults.skip_vote_log_check || self.log.is_up_to_date(last_log_term, last_log_index);
        // A node that knows no membership has joined no cluster yet (it waits for the leader's snapshot), or
        // lost its data: its empty log would agree to any candidate, so it must not vote at all.
        let knows_membership = !self.membership.voters.is_empty();
        // Dissertation §9.6: a node that heard from a leader within the election timeout refuses a pre-vote,
        // whatever check-quorum says (with it on, such requests never get here: see `in_leader_lease`).
        let no_live_leader = !trial || !self.hears_from_leader();
        free_to_vote
            && log_ok
            && knows_membership
            && no_live_leader
            && self.recovery_allows_vote((last_log_term, last_log_index))
    }

    /// Whether this node is the leader, or heard from the leader of its term within the minimum election
    /// timeout.
    pub(crate) fn hears_from_leader(&self) -> bool {
        self.leader_id.is_some() && self.election_elapsed < self.config.election_timeout_ticks
    }

    /// Counts a (pre-)vote response, if it belongs to the campaign under way.
    pub(crate) fn handle_vote_response(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        let current = match self.role {
            Role::PreCandidate => pre_vote && (term == self.term.next() || (!granted && term == self.term)),
            Role::Candidate => !pre_vote && term == self.term,
            Role::Follower | Role::Leader => false,
        };
        if current {
            self.votes.insert(from, granted);
            self.count_votes();
        }
    }

    /// Acts on the votes counted so far: a won pre-vote starts the election, a won election makes this node
    /// leader, a lost one makes it a follower again.
    fn count_votes(&mut self) {
        match (quorum::tally(&self.membership.voters, &self.votes), self.role) {
            (VoteResult::Won, Role::PreCandidate) => self.campaign(CampaignKind::Election),
            (VoteResult::Won, Role::Candidate) => self.become_leader(),
            (VoteResult::Lost, Role::PreCandidate | Role::Candidate) => self.become_follower(self.term, None),
            _ => {}
        }
    }

    /// Takes over the term: set up replication to every other member and append the no-op that lets the
    /// leader commit (§5.4.2: entries of earlier terms commit only together with one of the leader's own).
    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "only a candidate becomes leader");
        self.role = Role::Leader;
        self.leader_id = Some(self.config.id);
        self.votes.clear();
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.sync_progress();
        self.log.append_new(self.term, EntryPayload::Noop);
        self.broadcast_append();
        self.maybe_commit();
    }

    /// A leader's tick: heartbeats, the check-quorum round and the transfer deadline.
    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        self.tick_replication();
        if let Some((_, elapsed)) = self.transfer.as_mut() {
            *elapsed += 1;
            if *elapsed >= self.config.election_timeout_ticks {
                self.transfer = None; // the target did not take over in time: keep leading
            }
        }
        if self.election_elapsed < self.config.election_timeout_ticks {
            return;
        }
        self.election_elapsed = 0;
        if self.config.check_quorum {
            let id = self.config.id;
            let progress = &self.progress;
            let active = |voter: NodeId| voter == id || progress.get(&voter).is_some_and(|p| p.recent_active);
            if !quorum::has_quorum(&self.membership.voters, active) {
                self.become_follower(self.term, None); // lost touch with the majority: step down
                return;
            }
            for progress in self.progress.values_mut() {
                progress.recent_active = false;
            }
        }
    }

    /// Hands leadership to `target`: stop accepting proposals, bring the target up to date, then tell it
    /// to campaign at once.
    ///
    /// # Errors
    /// If this node is not the leader or `target` is not another voter.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), crate::ProposeError> {
        if self.role != Role::Leader {
            return Err(crate::ProposeError::NotLeader { leader: self.leader_id });
        }
        if target == self.config.id || !self.membership.is_voter(target) {
            return Err(crate::ProposeError::InvalidTransferTarget(target));
        }
        self.transfer = Some((target, 0));
        self.maybe_send_timeout_now(target);
        Ok(())
    }

    /// Sends `TimeoutNow` to the transfer target once its log matches ours, else keeps replicating to it.
    pub(crate) fn maybe_send_timeout_now(&mut self, target: NodeId) {
        if self.transfer.map(|(t, _)| t) != Some(target) {
            return;
        }
        let caught_up = self.progress.get(&target).is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.send(target, MessageBody::TimeoutNow);
        } else {
            self.send_append(target, true);
        }
    }
}
