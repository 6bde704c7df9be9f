//! The bully election mode ([`ElectionMode::Bully`]): rank decides who runs for leader, as in the original
//! project's bully algorithm; a Raft election still decides who becomes leader.
//!
//! ```text
//!  follower, election timeout runs out ──▶ PreCandidate: Inquiry(term + 1, last log) to every other voter
//!     a voter that outranks it ─────────▶ InquiryResponse Alive, and runs its own inquiry (it takes over);
//!                                          if it hears from a leader, only once that leader's lease ends
//!     a voter that does not ────────────▶ InquiryResponse Proceed, or Refused (it hears from a leader, its
//!                                          log is fresher, it voted in that term, it knows no membership)
//!  PreCandidate:
//!     an Alive arrives ─────────────────▶ follower again: waits one election timeout for the victory
//!     a majority Proceed, and every voter answered or inquiry_timeout_ticks passed
//!                      ─────────────────▶ claims victory: a Raft election in term + 1 (campaign Election)
//!     every inquiry_timeout_ticks ──────▶ asks again the voters that refused or did not answer
//!     no majority Proceed within its election timeout
//!                      ─────────────────▶ inquires anew, and stops saying Alive until it hears from a
//!                                          leader or wins an inquiry (it cannot win now: it must not hold
//!                                          back the nodes that can)
//! ```
//!
//! Rank is `(last log term, last log index, node id)`: the freshest log first, so the node that would win
//! Raft's vote is the one that runs, and among equal logs the highest id, as in the original.
//!
//! Why this keeps Raft's safety where the naive bully algorithm loses writes: a victory is a Raft election,
//! so it needs the votes of a majority of voters, each voter votes at most once per term (persisted) and only
//! for a log at least as up to date as its own (§5.4.1); a leader of an old term is fenced off by the higher
//! term of any message from the new one; and check-quorum (required in this mode) makes a leader that lost
//! its majority step down, while its lease makes voters that hear from a leader refuse inquiries (or answer
//! Alive without running) and ignore claims, so a higher node that returns follows the current leader
//! instead of bullying it. Nothing in an inquiry round changes a term or a vote: only its timing decides
//! who runs.

use crate::config::ElectionMode;
use crate::message::{CampaignKind, InquiryAnswer, MessageBody};
use crate::quorum::{self, VoteResult};
use crate::raft::{Raft, Role};
use crate::types::{LogIndex, NodeId, Term};

impl Raft {
    /// Whether this node runs a bully inquiry now.
    pub(crate) fn is_inquiring(&self) -> bool {
        self.role == Role::PreCandidate && self.config.election == ElectionMode::Bully
    }

    /// The campaign a node starts when its election timeout runs out (or when it takes over an inquiry): a
    /// bully inquiry, a pre-vote, or (pre-vote off) an election straight away.
    pub(crate) fn first_campaign_kind(&self) -> CampaignKind {
        match self.config.election {
            ElectionMode::Bully => CampaignKind::Inquiry,
            ElectionMode::Raft if self.config.pre_vote => CampaignKind::PreVote,
            ElectionMode::Raft => CampaignKind::Election,
        }
    }

    /// Whether this node outranks `other`, whose last entry is `last_log_index@last_log_term`: the fresher
    /// log first, then the higher id. Ids are unique, so of two distinct nodes exactly one outranks the other.
    fn outranks(&self, other: NodeId, last_log_term: Term, last_log_index: LogIndex) -> bool {
        if self.config.faults.skip_vote_log_check {
            return self.config.id > other; // the naive bully algorithm: the highest id, whatever its log
        }
        (self.log.last_term(), self.log.last_index(), self.config.id) > (last_log_term, last_log_index, other)
    }

    /// Answers `from`'s inquiry, sent in `term` (the term it would claim). A voter that outranks the
    /// inquirer says it is alive and runs for leader itself: the bully takes over. It says so even while it
    /// hears from a leader (the leader itself included), so that the inquirer waits instead of winning with
    /// the votes of lower nodes; a follower then runs only once the lease has run out without news of the
    /// leader.
    pub(crate) fn handle_inquiry(&mut self, from: NodeId, term: Term, last_log_term: Term, last_log_index: LogIndex) {
        let answer = if self.may_say_alive() && self.outranks(from, last_log_term, last_log_index) {
            InquiryAnswer::Alive
        } else if self.in_leader_lease() {
            InquiryAnswer::Refused // a live leader: nobody needs to run (§4.2.3)
        } else if self.would_vote_for(from, term, true, last_log_term, last_log_index) {
            InquiryAnswer::Proceed
        } else {
            InquiryAnswer::Refused
        };
        // Like a pre-vote answer: a go-ahead is counted in the inquiry's term; a refusal carries ours, so a
        // stale inquirer learns the newer term.
        let reply_term = if answer == InquiryAnswer::Refused { self.term } else { term };
        self.send_with_term(from, reply_term, MessageBody::InquiryResponse { answer });
        if answer == InquiryAnswer::Alive && self.role == Role::Follower {
            if self.in_leader_lease() {
                self.run_at_lease_end = true; // cleared by the next message of the leader, if it is alive
            } else {
                self.campaign(self.first_campaign_kind());
            }
        }
    }

    /// Whether this node may answer an inquiry that it is alive (if it outranks the inquirer): only a voter
    /// in bully mode (a node in Raft mode answers like a pre-vote, so a mixed cluster never waits on it)
    /// that did not just fail to win an inquiry of its own.
    fn may_say_alive(&self) -> bool {
        self.config.election == ElectionMode::Bully && self.can_campaign() && !self.lost_last_inquiry
    }

    /// Whether a follower that answered Alive while it heard from a leader should run now: the lease ran out
    /// without news of the leader.
    pub(crate) fn is_lease_end_run_due(&self) -> bool {
        self.run_at_lease_end && self.election_elapsed >= self.config.election_timeout_ticks
    }

    /// Counts an answer to this node's inquiry, if it belongs to the inquiry under way.
    pub(crate) fn handle_inquiry_response(&mut self, from: NodeId, term: Term, answer: InquiryAnswer) {
        let current = self.is_inquiring()
            && match answer {
                InquiryAnswer::Proceed | InquiryAnswer::Alive => term == self.term.next(),
                InquiryAnswer::Refused => term == self.term, // a newer term made us a follower on arrival
            };
        if !current {
            return;
        }
        match answer {
            // A voter that outranks us runs: wait for its victory, one election timeout, then inquire anew. A
            // node that is no voter here (a stale answer of a since removed or demoted member) cannot win.
            InquiryAnswer::Alive if !self.membership.is_voter(from) => {}
            InquiryAnswer::Alive => self.become_follower(self.term, None),
            InquiryAnswer::Proceed | InquiryAnswer::Refused => {
                // A go-ahead stands for the round: a refusal to an earlier ask, delivered late, must not undo it.
                *self.votes.entry(from).or_insert(false) |= answer == InquiryAnswer::Proceed;
                self.count_inquiry_answers();
            }
        }
    }

    /// Claims victory once a majority said go ahead and either every voter answered (none can still say it
    /// is alive) or the inquiry timeout has passed; else waits. Refusals never end the round early: most
    /// are leader leases that run out when the leader is dead, and the voters are asked again.
    pub(crate) fn count_inquiry_answers(&mut self) {
        assert!(self.is_inquiring(), "{} counts inquiry answers as {:?}", self.config.id, self.role);
        let won = quorum::tally(&self.membership.voters, &self.votes) == VoteResult::Won;
        let waited = self.election_elapsed >= self.config.inquiry_timeout_ticks;
        let all_answered = self.membership.voters.iter().all(|v| self.votes.contains_key(v));
        if won && (waited || all_answered) {
            self.lost_last_inquiry = false;
            self.claim_victory();
        }
    }

    /// An inquirer's tick. After `inquiry_timeout_ticks` without an `Alive`, no node that outranks this one
    /// is reachable: claim victory as soon as a majority said go ahead (answers slower than the inquiry
    /// timeout still count, so a slow network delays elections instead of preventing them). Meanwhile, every
    /// `inquiry_timeout_ticks`, ask again the voters that refused or did not answer: a refusal because of a
    /// leader lease turns into a go-ahead once the dead leader's lease runs out, and a lost message is sent
    /// again. A node that lost its last round asks only once per round, like a pre-vote. Without a majority's
    /// go-ahead within the election timeout, this node cannot win now: it stops saying `Alive` (it would hold
    /// back, maybe for ever, nodes that can win) and inquires anew.
    ///
    /// # Panics
    /// If this node cannot campaign: every change of membership or commit index reaches an inquirer through
    /// a message of a leader, which makes it a follower first.
    pub(crate) fn tick_inquiry(&mut self) {
        assert!(self.can_campaign(), "{} inquires but cannot campaign", self.config.id);
        if self.election_elapsed >= self.randomized_election_timeout {
            self.lost_last_inquiry = true;
            self.campaign(CampaignKind::Inquiry);
            return;
        }
        let timeout = self.config.inquiry_timeout_ticks;
        if self.election_elapsed < timeout {
            return;
        }
        self.count_inquiry_answers();
        if self.is_inquiring() && !self.lost_last_inquiry && self.election_elapsed % timeout == 0 {
            let votes = &self.votes;
            let ask_again: Vec<NodeId> = self
                .membership
                .voters
                .iter()
                .copied()
                .filter(|&v| v != self.config.id && votes.get(&v) != Some(&true))
                .collect();
            self.request_votes(CampaignKind::Inquiry, self.term.next(), ask_again);
        }
    }

    /// The bully's victory message is a Raft election in the next term: it wins only with a majority of
    /// votes, under every rule of §5.2 and §5.4.1.
    fn claim_victory(&mut self) {
        self.campaign(CampaignKind::Election);
    }
}
