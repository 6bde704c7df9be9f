//! Protocol-aware recovery (after the FAST'18 paper of that name): a node whose storage may have lost
//! entries it acknowledged, or a vote, asks its peers before it helps elect anyone.
//!
//! ```text
//!  Raft::new with Restored::tail_may_be_acknowledged
//!     term := max(restored, tail hard state) + 1   (fences every leader that may hold our lost acks)
//!     Querying: RecoveryQuery { nonce } to every other voter, again every heartbeat interval
//!               grants no vote or pre-vote (no inquiry go-ahead), never campaigns, follows leaders as usual
//!     answers in a term >= fence from a majority of the other voters
//!  ──▶ CatchingUp { floor }: term := max(own, answers), its vote in that term taken (a placeholder for
//!               itself); floor := the freshest (last_log_term, last_log_index) answered
//!               votes only for logs >= max(own, floor), never campaigns
//!     own log reaches the floor
//!  ──▶ a normal node
//! ```
//!
//! Why it is safe is written down in `docs/storage.md`, section "Protocol-aware recovery".

use std::collections::BTreeMap;

use crate::message::MessageBody;
use crate::quorum;
use crate::raft::Raft;
use crate::types::{HardState, LogIndex, NodeId, Term};

/// Where a node stands in protocol-aware recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryStatus {
    /// Nothing was lost, or recovery is over: a normal node.
    Settled,
    /// Waiting for answers from a majority of the other voters; grants no vote and never campaigns.
    Querying,
    /// Answers are in: votes only for candidates whose log reaches `floor` and does not campaign until its own
    /// log does.
    CatchingUp {
        /// The freshest `(last_log_term, last_log_index)` a majority of the other voters answered.
        floor: (Term, LogIndex),
    },
}

/// The terms in which this node may have acknowledged entries, or a vote, that its storage lost.
///
/// A leader of such a term learned this node's match index before the loss and keeps it for its whole term, so
/// the commit index of its heartbeats (capped at that match) may name entries this node no longer holds, or
/// holds in an older version that came back when a later batch was lost. In those terms this node commits on a
/// heartbeat only what an Append of the same term verified ([`Raft::heartbeat_commit_limit`]). The bound is not
/// known at start when the lost region's hard state is unreadable; the recovery answers give it: a majority of
/// the other voters answered past the fence, and it meets every majority that adopted a term in which this node
/// acknowledged, so the highest term answered is at least every such term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LostAcks {
    /// Nothing was lost.
    None,
    /// Something was lost, in terms not known yet (recovery is querying): every term is suspect.
    TermsUnknown,
    /// Something was lost, in no term later than this one.
    UpTo(Term),
}

/// One peer's answer to this node's recovery query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecoveryAnswer {
    /// The peer's term when it answered.
    pub term: Term,
    /// The peer's last log position `(term, index)`.
    pub last: (Term, LogIndex),
}

/// The state of a node in recovery.
///
/// Invariant: while it exists, the node is a follower (it never campaigns), and once `floor` is set, every vote it
/// grants is for a log at least as fresh as the floor.
#[derive(Clone, Debug)]
pub(crate) struct Recovery {
    /// Identifies this start's queries: an answer to an earlier start's query could predate what was lost.
    pub nonce: u64,
    /// The term this node raised itself to at start, past every term it may have acknowledged or voted in. Only
    /// an answer in this term or a later one counts: the answerer had left the terms in which this node
    /// acknowledged, so no leader can commit with our lost acknowledgements and the answerer's after its answer.
    pub fence: Term,
    /// The answers so far, by voter.
    pub answers: BTreeMap<NodeId, RecoveryAnswer>,
    /// Set once a majority of the other voters answered.
    pub floor: Option<(Term, LogIndex)>,
}

impl Raft {
    /// At start: enter recovery if the storage says it may have lost acknowledged entries or a vote. Adopts the
    /// highest hard state found in the lost region, raises the term past it (persisted by the first `Ready`, whose
    /// messages are the first queries), and returns whether recovery started.
    pub(crate) fn start_recovery(&mut self, lost_tail: bool, tail_hard_state: Option<HardState>) -> bool {
        if !lost_tail || self.config.faults.skip_protocol_aware_recovery {
            return false;
        }
        if let Some(tail) = tail_hard_state {
            self.term = self.term.max(tail.term);
        }
        self.term = self.term.next();
        self.vote = None;
        let nonce = crate::rng::SplitMix64::new(self.config.seed ^ 0x7265_636f_7665_7279 ^ self.term.0).next_u64();
        self.recovery = Some(Recovery { nonce, fence: self.term, answers: BTreeMap::new(), floor: None });
        self.lost_acks = LostAcks::TermsUnknown;
        self.send_recovery_queries();
        self.maybe_resolve_recovery();
        true
    }

    /// Where this node stands in protocol-aware recovery.
    pub fn recovery_status(&self) -> RecoveryStatus {
        match &self.recovery {
            None => RecoveryStatus::Settled,
            Some(Recovery { floor: None, .. }) => RecoveryStatus::Querying,
            Some(Recovery { floor: Some(floor), .. }) => RecoveryStatus::CatchingUp { floor: *floor },
        }
    }

    /// Whether this node is in protocol-aware recovery: it may have lost what it acknowledged, so it neither
    /// campaigns nor votes as a normal node would.
    pub fn is_recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// Sends the recovery query to every other voter that has not answered.
    fn send_recovery_queries(&mut self) {
        let Some(recovery) = &self.recovery else { return };
        if recovery.floor.is_some() {
            return;
        }
        let nonce = recovery.nonce;
        let asked: Vec<NodeId> = self
            .membership
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.config.id && !recovery.answers.contains_key(&v))
            .collect();
        for voter in asked {
            self.send(voter, MessageBody::RecoveryQuery { nonce });
        }
    }

    /// A recovering node's tick: ask again every heartbeat interval until a majority answered.
    pub(crate) fn tick_recovery(&mut self) {
        if self.recovery.as_ref().is_none_or(|r| r.floor.is_some()) {
            return;
        }
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            // The membership may have changed since the last answer (voters removed): the answers in hand may
            // be a majority of the other voters now, with nobody left to send another.
            self.maybe_resolve_recovery();
            if self.recovery.as_ref().is_some_and(|r| r.floor.is_none()) {
                self.send_recovery_queries();
            }
        }
    }

    /// Any node: answers a recovery query from its real state.
    pub(crate) fn handle_recovery_query(&mut self, from: NodeId, nonce: u64) {
        let body = MessageBody::RecoveryAnswer {
            nonce,
            term: self.term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        self.send(from, body);
    }

    /// A recovering node counts an answer to its query (of this start, from a voter, past the fence).
    pub(crate) fn handle_recovery_answer(&mut self, from: NodeId, nonce: u64, term: Term, last: (Term, LogIndex)) {
        let is_voter = self.membership.is_voter(from) && from != self.config.id;
        let Some(recovery) = self.recovery.as_mut() else { return };
        if recovery.nonce != nonce || recovery.floor.is_some() || term < recovery.fence || !is_voter {
            return;
        }
        recovery.answers.insert(from, RecoveryAnswer { term, last });
        self.maybe_resolve_recovery();
    }

    /// Resolves once a majority of the other voters answered (at once without other voters): takes the highest
    /// term answered, with its vote taken (this node may have voted in it and lost the vote), and the floor.
    fn maybe_resolve_recovery(&mut self) {
        let id = self.config.id;
        let Some(recovery) = self.recovery.as_mut() else { return };
        if recovery.floor.is_some() {
            return;
        }
        let others: std::collections::BTreeSet<NodeId> =
            self.membership.voters.iter().copied().filter(|&v| v != id).collect();
        if !others.is_empty() && !quorum::has_quorum(&others, |v| recovery.answers.contains_key(&v)) {
            return;
        }
        let answers: Vec<RecoveryAnswer> =
            recovery.answers.iter().filter(|(v, _)| others.contains(v)).map(|(_, a)| *a).collect();
        let floor = answers.iter().map(|a| a.last).max().unwrap_or((Term(0), LogIndex(0)));
        recovery.floor = Some(floor);
        let term = answers.iter().map(|a| a.term).max().unwrap_or(self.term).max(self.term);
        self.lost_acks = LostAcks::UpTo(term);
        if term > self.term {
            self.become_follower(term, None);
        }
        if self.vote.is_none() {
            self.vote = Some(id); // a placeholder: never granted to anyone, so no second vote in this term
        }
        self.maybe_finish_recovery();
    }

    /// Ends recovery once this node's log reaches the floor.
    pub(crate) fn maybe_finish_recovery(&mut self) {
        let Some(Recovery { floor: Some(floor), .. }) = self.recovery else { return };
        if (self.log.last_term(), self.log.last_index()) >= floor {
            self.recovery = None;
        }
    }

    /// Whether recovery lets this node grant a (pre-)vote to a log ending at `last`: never while querying, and
    /// once answered only to a log that reaches the floor.
    pub(crate) fn recovery_allows_vote(&self, last: (Term, LogIndex)) -> bool {
        match &self.recovery {
            None => true,
            Some(Recovery { floor: None, .. }) => false,
            Some(Recovery { floor: Some(floor), .. }) => last >= *floor,
        }
    }

    /// Whether a leader of the current term may still count entries this node lost (see [`LostAcks`]).
    fn in_suspect_term(&self) -> bool {
        match self.lost_acks {
            LostAcks::None => false,
            LostAcks::TermsUnknown => true,
            LostAcks::UpTo(bound) => self.term <= bound,
        }
    }

    /// Whether the storage may say that recovery is over: it is, and the term is past every term in which this
    /// node may have acknowledged what it lost. Until then a restart must run recovery again (its marker stays),
    /// because the restarted core would not know which terms' leaders to distrust.
    pub fn may_settle_recovery(&self) -> bool {
        !self.is_recovering() && !self.in_suspect_term()
    }

    /// Follower: the highest index a heartbeat of the current term may commit, if this node may have lost entries
    /// the leader of this term believes it holds (see [`LostAcks`]): what an Append of this term verified.
    pub(crate) fn heartbeat_commit_limit(&self) -> Option<LogIndex> {
        self.in_suspect_term().then(|| self.verified_this_term())
    }

    /// Follower: up to where an Append of the current term found this node's log matching the leader's (0 if none
    /// did yet).
    pub(crate) fn verified_this_term(&self) -> LogIndex {
        let (verified_term, verified) = self.append_verified;
        if verified_term == self.term { verified } else { LogIndex(0) }
    }

    /// Follower, on a heartbeat whose commit index `commit` is past what this node may commit on it: whether to
    /// depose the leader by moving to the next term. Only once recovery resolved the bound, in the bound's term
    /// itself (the node's term never goes below it after resolving), so the next term is one in which this node
    /// never acted: its vote there is free. The leader of the bound's term keeps a match index from before the
    /// loss for its whole term and would never send the Appends that repair this node (it believes them
    /// matched), so without a new term this node's commit index would stay where it is.
    pub(crate) fn should_depose_stale_leader(&self, commit: LogIndex, limit: LogIndex) -> bool {
        matches!(self.lost_acks, LostAcks::UpTo(bound) if bound == self.term) && commit > limit.max(self.log.commit())
    }

    /// Asserts the recovery invariants.
    pub(crate) fn check_recovery_invariants(&self) {
        if let Some(recovery) = &self.recovery {
            assert_eq!(self.role, crate::raft::Role::Follower, "{} recovers as {:?}", self.config.id, self.role);
            if let Some(floor) = recovery.floor {
                assert!((self.log.last_term(), self.log.last_index()) < floor, "recovery past its floor {floor:?}");
            }
        }
    }
}
