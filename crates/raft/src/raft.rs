//! The Raft node: state, inputs (`step`, `tick`, `propose`, `read_index`) and the `Ready` output.
//! The handlers live in `election.rs`, `replication.rs`, `read_index.rs` and `membership.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::config::Config;
use crate::log::RaftLog;
use crate::message::{CampaignKind, InquiryAnswer, Message, MessageBody};
use crate::progress::{Progress, ReplicationState};
use crate::ready::{ReadState, Ready};
use crate::rng::SplitMix64;
use crate::snapshot::IncomingSnapshot;
use crate::types::{Entry, HardState, LogIndex, Membership, NodeId, Snapshot, Term};

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Follows the leader of the term (or waits for one).
    Follower,
    /// Runs a trial round without having raised its term: a pre-vote (dissertation §9.6) or, in bully mode,
    /// an inquiry.
    PreCandidate,
    /// Runs an election in its term.
    Candidate,
    /// Leads the term.
    Leader,
}

/// What a node restores from durable storage when it starts.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// The persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The newest snapshot. For a brand-new node of a new cluster: index 0 and the initial voters in
    /// `meta.membership`. For a brand-new node that will join an existing cluster: index 0 and an empty
    /// membership (it waits to be contacted by the leader).
    pub snapshot: Snapshot,
    /// The durable entries after the snapshot, consecutive.
    pub entries: Vec<Entry>,
    /// Whether storage recovery cut bytes that may have held a batch whose sync succeeded: entries this node
    /// acknowledged, or a vote, may be lost. The node then runs protocol-aware recovery (see
    /// [`crate::RecoveryStatus`]) before it votes or campaigns.
    pub tail_may_be_acknowledged: bool,
    /// The highest valid hard state found in the cut region, if any: its term (and its vote) is adopted, since
    /// the node may have acted on it.
    pub tail_hard_state: Option<HardState>,
}

/// A read waiting for the leader to confirm it is still the leader.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingRead {
    /// The follower that asked, or `None` for a read of this node's own client.
    pub from: Option<NodeId>,
    /// The asker's identifier of the read.
    pub context: u64,
    /// The commit index when the read arrived.
    pub index: LogIndex,
    /// The heartbeat round that must be acknowledged by a quorum.
    pub read_seq: u64,
}

/// One node of a Raft group. Sans-IO: it never touches a clock, a file, a socket or OS randomness.
///
/// Invariants (see [`Raft::check_invariants`]):
/// - the term never decreases; the vote changes only with the term or from `None`;
/// - a leader's log holds an entry of its own term (the no-op) from the moment it is elected;
/// - `log.applied <= log.commit <= log.last_index`, and the commit index never decreases;
/// - `progress` is non-empty only on a leader and holds exactly the other members;
/// - only a follower (or pre-candidate) assembles an incoming snapshot, and only from the leader of its term;
/// - only a bully-mode node inquires, says it lost its last inquiry, or waits to run at its lease's end, and
///   only a node that can campaign inquires;
/// - a node held back from leadership (its storage is full) does not campaign.
pub struct Raft {
    /// Tuning and fault switches.
    pub(crate) config: Config,
    /// Draws election timeouts; seeded from the config, the only randomness.
    pub(crate) rng: SplitMix64,
    /// The current term.
    pub(crate) term: Term,
    /// Whom this node voted for in `term`.
    pub(crate) vote: Option<NodeId>,
    /// This node's role.
    pub(crate) role: Role,
    /// The leader of `term`, once known.
    pub(crate) leader_id: Option<NodeId>,
    /// The log.
    pub(crate) log: RaftLog,
    /// The newest snapshot: the leader sends it to followers that need compacted entries, and its
    /// membership is the base from which the current membership is recomputed.
    pub(crate) snapshot: Snapshot,
    /// The membership in force: the last one in the log, committed or not (dissertation §4.1).
    pub(crate) membership: Membership,
    /// The index of the entry that set `membership` (the snapshot index if none in the log).
    pub(crate) membership_index: LogIndex,
    /// Ticks since the last election timeout reset (followers: since hearing from the leader; leader: since
    /// the last check-quorum round).
    pub(crate) election_elapsed: u32,
    /// This term's election timeout, drawn from `[timeout, 2 * timeout)`.
    pub(crate) randomized_election_timeout: u32,
    /// Ticks since the leader's last heartbeat.
    pub(crate) heartbeat_elapsed: u32,
    /// Votes received in the current (pre-)campaign (in an inquiry: true for Proceed, false for Refused).
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Bully mode: this node's last inquiry ended without a majority's go-ahead (it is cut off from the
    /// majority, or the majority follows a leader): it cannot win now, so it does not answer `Alive`, which
    /// would hold back, perhaps for ever, the nodes that can. Cleared when it hears from a leader or wins an
    /// inquiry.
    pub(crate) lost_last_inquiry: bool,
    /// Bully mode: this follower answered `Alive` while it heard from a leader, so an inquirer waits for it:
    /// it runs as soon as the leader lease runs out. Cleared by any message of the leader.
    pub(crate) run_at_lease_end: bool,
    /// Leader only: each other member's replication progress.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Leader only: nodes a committed change removed that have not yet acknowledged a heartbeat telling them.
    pub(crate) departing: BTreeMap<NodeId, crate::membership::Departure>,
    /// Leader only: the voter leadership is being handed to, and ticks since the transfer began.
    pub(crate) transfer: Option<(NodeId, u32)>,
    /// Leader only: the latest ReadIndex round number. Never decreases.
    pub(crate) read_seq: u64,
    /// Leader only: reads waiting for a quorum to acknowledge their round, oldest first.
    pub(crate) pending_reads: VecDeque<PendingRead>,
    /// Leader only: reads that arrived before the leader committed an entry of its term.
    pub(crate) reads_awaiting_commit: Vec<(Option<NodeId>, u64)>,
    /// Output: messages to hand out in the next `Ready`.
    pub(crate) messages: Vec<Message>,
    /// Output: confirmed reads to hand out in the next `Ready`.
    pub(crate) read_states: Vec<ReadState>,
    /// Output: a snapshot received from the leader, to hand out in the next `Ready`.
    pub(crate) snapshot_to_install: Option<Snapshot>,
    /// Output: whether that snapshot replaces the whole log (false: it only gives a node that had lost its
    /// membership base the base again, and the log after it stays).
    pub(crate) snapshot_replaces_log: bool,
    /// Follower only: the snapshot the leader of this term is sending, chunk by chunk. Dropped with a new
    /// term (another leader sends its own), and never persisted: after a restart the leader starts over.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// The hard state handed out last, to detect changes.
    pub(crate) persisted_hard_state: HardState,
    /// Protocol-aware recovery under way: this node may have lost acknowledged entries or a vote. `None` for a
    /// normal node.
    pub(crate) recovery: Option<crate::recovery::Recovery>,
    /// The terms in which this node may have acknowledged entries its storage has since lost: a leader of such a
    /// term still counts them in this node's match index, so its heartbeats' commit index cannot be trusted.
    pub(crate) lost_acks: crate::recovery::LostAcks,
    /// Follower: the term of the last Append that passed the consistency check, and the index of its last new
    /// entry: up to there this node's log matches that term's leader's.
    pub(crate) append_verified: (Term, LogIndex),
    /// Set by the caller while its storage cannot take entries (a full disk): the node neither campaigns
    /// nor takes a leadership transfer, since as leader it would at once have to store a no-op it cannot.
    /// It still votes and follows (a vote needs only a hard state).
    pub(crate) held_back: bool,
}

impl Raft {
    /// A node restored from `restored` (empty for a brand-new node), as a follower.
    ///
    /// # Panics
    /// If the configuration is invalid or the restored state is inconsistent.
    pub fn new(config: Config, restored: Restored) -> Raft {
        config.validate();
        let log = RaftLog::restore(&restored.snapshot.meta, restored.entries, restored.hard_state.commit);
        let mut raft = Raft {
            rng: SplitMix64::new(config.seed ^ config.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            config,
            term: restored.hard_state.term,
            vote: restored.hard_state.vote,
            role: Role::Follower,
            leader_id: None,
            log,
            membership: restored.snapshot.meta.membership.clone(),
            membership_index: restored.snapshot.meta.index,
            snapshot: restored.snapshot,
            election_elapsed: 0,
            randomized_election_timeout: 0,
            heartbeat_elapsed: 0,
            votes: BTreeMap::new(),
            lost_last_inquiry: false,
            run_at_lease_end: false,
            progress: BTreeMap::new(),
            departing: BTreeMap::new(),
            transfer: None,
            read_seq: 0,
            pending_reads: VecDeque::new(),
            reads_awaiting_commit: Vec::new(),
            messages: Vec::new(),
            read_states: Vec::new(),
            snapshot_to_install: None,
            snapshot_replaces_log: false,
            incoming_snapshot: None,
            persisted_hard_state: restored.hard_state,
            recovery: None,
            lost_acks: crate::recovery::LostAcks::None,
            append_verified: (Term(0), LogIndex(0)),
            held_back: false,
        };
        raft.recompute_membership();
        raft.reset_election_timeout();
        raft.start_recovery(restored.tail_may_be_acknowledged, restored.tail_hard_state);
        raft.check_invariants();
        raft
    }

    // ----- inputs -----

    /// Holds this node back from leadership (`true`) or lets it run again (`false`). Call it when the
    /// storage runs out of room for entries and when the room returns: a node that cannot store entries must
    /// not become leader, since a new leader at once appends a no-op. A campaign under way ends (the node
    /// becomes a follower in the same term, keeping its vote); a leader stays leader (the caller refuses its
    /// proposals and hands leadership over).
    pub fn hold_back(&mut self, held: bool) {
        self.held_back = held;
        if held && matches!(self.role, Role::PreCandidate | Role::Candidate) {
            self.become_follower(self.term, None);
        }
    }

    /// Advances logical time by one tick: followers count towards their election timeout, leaders send
    /// heartbeats and check that a quorum is still in touch.
    pub fn tick(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::PreCandidate if self.is_inquiring() => self.tick_inquiry(),
            Role::Follower if self.is_recovering() => self.tick_recovery(),
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                let due = self.election_elapsed >= self.randomized_election_timeout || self.is_lease_end_run_due();
                if self.can_campaign() && due {
                    self.election_elapsed = 0;
                    self.campaign(self.first_campaign_kind());
                }
            }
        }
    }

    /// Handles one message from another node. Messages with a stale term are dropped (or answered so the
    /// sender learns the newer term); a newer term makes this node a follower of that term first.
    ///
    /// A message addressed to another node is dropped.
    ///
    /// # Panics
    /// If the message reveals a broken safety invariant (two leaders in one term).
    pub fn step(&mut self, message: Message) {
        if message.to != self.config.id {
            return; // misrouted by a peer: drop it, the sender will retry towards the right node
        }
        if let MessageBody::VoteRequest { kind, .. } = message.body {
            // A trial round asks in the sender's term + 1; only a sender whose own term is not past ours can
            // be told anything (what this leader sends it in its term, a node of a later term rejects).
            let sender_term = match kind {
                CampaignKind::PreVote | CampaignKind::Inquiry => Term(message.term.0.saturating_sub(1)),
                CampaignKind::Election | CampaignKind::Transfer => message.term,
            };
            if sender_term <= self.term {
                self.notice_removed_candidate(message.from);
            }
        }
        if message.term > self.term && self.is_departed_answer(&message) {
            // A removed node that ran elections of its own answers in a later term: it cannot be told of its
            // removal any more, and its term must not depose this leader (it is no member; §4.2.3).
            self.departing.remove(&message.from);
            self.sync_progress();
            return;
        }
        if message.term > self.term && !self.step_higher_term(&message) {
            return;
        }
        if message.term < self.term {
            self.step_lower_term(message);
        } else {
            self.dispatch(message);
        }
        self.maybe_finish_recovery();
    }

    /// Routes a message whose term is current (or a pre-vote message from a future term) to its handler.
    fn dispatch(&mut self, message: Message) {
        let from = message.from;
        match message.body {
            MessageBody::VoteRequest { kind: CampaignKind::Inquiry, last_log_term, last_log_index } => {
                self.handle_inquiry(from, message.term, last_log_term, last_log_index)
            }
            MessageBody::VoteRequest { kind, last_log_term, last_log_index } => {
                self.handle_vote_request(from, message.term, kind, last_log_term, last_log_index)
            }
            MessageBody::InquiryResponse { answer } => self.handle_inquiry_response(from, message.term, answer),
            MessageBody::VoteResponse { pre_vote, granted } => {
                self.handle_vote_response(from, message.term, pre_vote, granted)
            }
            MessageBody::Append { prev_log_index, prev_log_term, entries, leader_commit } => {
                self.become_follower_of(from);
                self.handle_append(from, prev_log_index, prev_log_term, &entries, leader_commit);
            }
            MessageBody::Heartbeat { commit, read_seq } => {
                self.become_follower_of(from);
                self.handle_heartbeat(from, commit, read_seq);
            }
            MessageBody::InstallSnapshot(chunk) => {
                self.become_follower_of(from);
                self.handle_snapshot_chunk(from, chunk);
            }
            MessageBody::AppendResponse { result } => self.handle_append_response(from, result),
            MessageBody::SnapshotResponse { index, next_offset } => {
                self.handle_snapshot_response(from, index, next_offset)
            }
            MessageBody::HeartbeatResponse { read_seq } => self.handle_heartbeat_response(from, read_seq),
            MessageBody::ReadIndexRequest { context } => self.handle_read_index_request(from, context),
            MessageBody::ReadIndexResponse { context, index } => {
                // Only the leader of this term hands out read indexes: from anyone else the answer is forged
                // (or stale), and serving a read at its index could return stale data.
                if self.leader_id == Some(from) && self.role != Role::Leader {
                    self.read_states.push(ReadState { context, index });
                }
            }
            MessageBody::TimeoutNow => {
                if self.can_campaign() {
                    self.campaign(CampaignKind::Transfer);
                }
            }
            MessageBody::RecoveryQuery { nonce } => self.handle_recovery_query(from, nonce),
            MessageBody::RecoveryAnswer { nonce, term, last_log_index, last_log_term } => {
                self.handle_recovery_answer(from, nonce, term, (last_log_term, last_log_index))
            }
        }
    }

    /// A message from a newer term. Returns whether to go on handling it.
    fn step_higher_term(&mut self, message: &Message) -> bool {
        match &message.body {
            MessageBody::VoteRequest { kind, .. } => {
                let exempt = matches!(kind, CampaignKind::Transfer | CampaignKind::Inquiry); // see handle_inquiry
                if !exempt && self.in_leader_lease() {
                    return false; // §4.2.3: a node that hears from a leader ignores disruptive campaigns
                }
                if matches!(kind, CampaignKind::PreVote | CampaignKind::Inquiry) {
                    return true; // a trial round never changes the voter's term
                }
                self.become_follower(message.term, None);
            }
            MessageBody::VoteResponse { pre_vote: true, granted: true } => {} // counted by the pre-candidate
            MessageBody::InquiryResponse { answer: InquiryAnswer::Proceed | InquiryAnswer::Alive } => {} // likewise
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot(_) => {
                self.become_follower(message.term, Some(message.from));
            }
            _ => self.become_follower(message.term, None),
        }
        true
    }

    /// A message from an older term: tell a stale leader or candidate about the newer term so it steps down,
    /// answer a recovery query and count a recovery answer (their terms are checked against the recovering
    /// node's fence, not its current term), drop everything else.
    fn step_lower_term(&mut self, message: Message) {
        if matches!(message.body, MessageBody::RecoveryQuery { .. } | MessageBody::RecoveryAnswer { .. }) {
            self.dispatch(message);
            return;
        }
        match &message.body {
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot(_) => {
                self.send(message.from, MessageBody::HeartbeatResponse { read_seq: 0 });
            }
            MessageBody::VoteRequest { kind: CampaignKind::Inquiry, .. } => {
                self.send(message.from, MessageBody::InquiryResponse { answer: InquiryAnswer::Refused });
            }
            MessageBody::VoteRequest { kind, .. } => {
                let pre_vote = *kind == CampaignKind::PreVote;
                self.send(message.from, MessageBody::VoteResponse { pre_vote, granted: false });
            }
            _ => {}
        }
    }

    /// Whether this node heard from a leader within the minimum election timeout, so it must not help
    /// anyone depose it (check-quorum's leader lease).
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && self.leader_id.is_some()
            && self.election_elapsed < self.config.election_timeout_ticks
    }

    // ----- output -----

    /// Whether [`Raft::ready`] would return anything.
    pub fn has_ready(&self) -> bool {
        !self.messages.is_empty()
            || !self.read_states.is_empty()
            || self.snapshot_to_install.is_some()
            || self.log.has_ready()
            || self.hard_state_to_persist() != self.persisted_hard_state
    }

    /// Takes everything the driver must persist, send and apply. See [`Ready`] for the order. Once it
    /// returns, the core considers the entries and hard state durable.
    pub fn ready(&mut self) -> Ready {
        let hard_state = self.hard_state_to_persist();
        let changed = hard_state != self.persisted_hard_state;
        self.persisted_hard_state = hard_state;
        Ready {
            snapshot: self.snapshot_to_install.take(),
            snapshot_replaces_log: self.snapshot_replaces_log,
            entries: self.log.take_unstable(),
            hard_state: changed.then_some(hard_state),
            messages: std::mem::take(&mut self.messages),
            committed_entries: self.log.take_committed(),
            read_states: std::mem::take(&mut self.read_states),
        }
    }

    /// The hard state that the next `Ready` persists.
    fn hard_state_to_persist(&self) -> HardState {
        let vote = if self.config.faults.forget_to_persist_vote {
            // Fault: the vote is never written; what is on disk stays whatever it was for this term.
            (self.persisted_hard_state.term == self.term).then_some(self.persisted_hard_state.vote).flatten()
        } else {
            self.vote
        };
        HardState { term: self.term, vote, commit: self.log.commit() }
    }

    // ----- snapshots -----

    /// The driver took a snapshot of its state machine at `index` (which it has applied): remember it for
    /// followers that fall behind, and forget log entries up to `index - keep_entries`.
    ///
    /// # Panics
    /// If `index` has not been handed out for application yet.
    pub fn compact(&mut self, index: LogIndex, data: Vec<u8>, keep_entries: u64) {
        assert!(index <= self.log.applied(), "snapshot at {index} past applied {}", self.log.applied());
        if index <= self.snapshot.meta.index {
            return;
        }
        let term = self.log.term_at(index).expect("applied entry is held in the log");
        let membership = self.membership_at(index);
        self.snapshot = Snapshot { meta: crate::types::SnapshotMeta { index, term, membership }, data: Arc::new(data) };
        self.log.compact_to(LogIndex(index.0.saturating_sub(keep_entries)).max(self.log.offset()));
    }

    // ----- introspection -----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The vote in the current term.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// The leader of the current term, if known.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }

    /// The commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.log.commit()
    }

    /// The highest index handed out for application.
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied()
    }

    /// The last log index.
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The term of the last log entry.
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }

    /// The first index held in memory (entries before it are compacted into the snapshot).
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The term of the entry at `index`, if known.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    /// The membership in force.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The index of the entry that set the membership in force (the snapshot's index if none in the log).
    /// The membership is committed once the commit index reaches it.
    pub fn membership_index(&self) -> LogIndex {
        self.membership_index
    }

    /// The membership in force at the commit index: the newest this node knows to be committed. O(entries
    /// since the snapshot).
    pub fn committed_membership(&self) -> Membership {
        self.membership_at(self.log.commit())
    }

    /// The newest snapshot held.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Leader only: the match index of each other member.
    pub fn match_indexes(&self) -> BTreeMap<NodeId, LogIndex> {
        self.progress.iter().map(|(&id, p)| (id, p.match_index)).collect()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Checks every invariant, including O(n) ones. Call it after each step in tests and the simulator.
    ///
    /// # Panics
    /// On any broken invariant.
    pub fn check_invariants(&self) {
        self.log.check_invariants();
        self.membership.assert_valid();
        assert!(self.term >= self.persisted_hard_state.term, "term went back");
        if self.role == Role::Leader {
            assert_eq!(self.leader_id, Some(self.config.id), "leader does not know it leads");
            assert!(self.log.last_term() == self.term, "leader's last entry is not of its term");
            let targets = self.replication_targets();
            for (id, progress) in &self.progress {
                assert!(targets.contains(id), "progress for {id}, not a replication target");
                if let ReplicationState::Snapshot(transfer) = &progress.state {
                    transfer.assert_valid();
                }
            }
        } else {
            assert!(self.progress.is_empty(), "non-leader keeps progress");
        }
        if self.config.election == crate::config::ElectionMode::Raft {
            assert!(!self.lost_last_inquiry && !self.run_at_lease_end, "bully state in a Raft-mode node");
        }
        if self.is_inquiring() {
            assert!(self.can_campaign(), "{} inquires but cannot campaign", self.config.id);
        }
        if self.held_back {
            assert!(!matches!(self.role, Role::PreCandidate | Role::Candidate), "a held-back node campaigns");
        }
        self.check_recovery_invariants();
        if let Some(incoming) = &self.incoming_snapshot {
            assert!(matches!(self.role, Role::Follower | Role::PreCandidate), "{:?} assembles a snapshot", self.role);
            incoming.assert_valid(self.config.max_snapshot_bytes);
        }
    }

    // ----- helpers shared by the handlers -----

    /// Queues a message to `to` in the current term.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    /// Queues a message with an explicit term (pre-votes carry the term they would campaign in).
    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        assert!(to != self.config.id, "{} sending to itself", self.config.id);
        self.messages.push(Message { from: self.config.id, to, term, body });
    }

    /// Whether this node may start an election: only voters campaign.
    ///
    /// A node that an uncommitted change removed (or demoted) still campaigns while it is a voter of the
    /// committed membership: it may be needed to elect a leader until the change commits (dissertation
    /// §4.2.2). It does not count its own vote then, since vote counting uses the latest membership.
    ///
    /// A node in protocol-aware recovery never campaigns: it may have lost what made its log fresh enough.
    /// Nor does a node held back by [`Raft::hold_back`].
    pub(crate) fn can_campaign(&self) -> bool {
        let id = self.config.id;
        if self.is_recovering() || self.held_back {
            return false;
        }
        self.membership.is_voter(id)
            || (self.membership_index > self.log.commit() && self.membership_at(self.log.commit()).is_voter(id))
    }

    /// Draws a new election timeout in `[timeout, 2 * timeout)`.
    pub(crate) fn reset_election_timeout(&mut self) {
        let base = u64::from(self.config.election_timeout_ticks);
        self.randomized_election_timeout = self.rng.range(base, 2 * base) as u32;
    }

    /// Becomes a follower of `term` (raising the term if newer, which clears the vote) with `leader` if known.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "term going back from {} to {term}", self.term);
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.incoming_snapshot = None; // only the leader of its term may complete it
        }
        self.role = Role::Follower;
        self.leader_id = leader;
        self.run_at_lease_end = false;
        self.election_elapsed = 0;
        self.reset_election_timeout();
        self.clear_leader_state();
    }

    /// A message from the leader of the current term arrived: follow it.
    ///
    /// # Panics
    /// If this node is itself the leader of the term: two leaders in one term break Election Safety.
    fn become_follower_of(&mut self, leader: NodeId) {
        assert!(self.role != Role::Leader, "two leaders in term {}: {} and {leader}", self.term, self.config.id);
        self.lost_last_inquiry = false;
        self.run_at_lease_end = false;
        if self.role != Role::Follower || self.leader_id != Some(leader) {
            self.become_follower(self.term, Some(leader));
        }
        self.election_elapsed = 0;
    }

    /// Forgets everything only a leader or candidate keeps.
    fn clear_leader_state(&mut self) {
        self.votes.clear();
        self.progress.clear();
        self.departing.clear();
        self.transfer = None;
        self.pending_reads.clear();
        self.reads_awaiting_commit.clear();
    }
}
