//! The messages Raft nodes exchange. The core never sends them itself: they come out in a
//! [`crate::Ready`] and go in through [`crate::Raft::step`].

use crate::types::{Entry, LogIndex, NodeId, Snapshot, Term};

/// One message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request, the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// Why a node asks for votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignKind {
    /// Dissertation §9.6: a trial election that does not raise anyone's term. It only succeeds if a majority
    /// would vote for the candidate, so a node that rejoins after a partition cannot disrupt a healthy leader.
    PreVote,
    /// A real election after its election timeout (or after a successful pre-vote).
    Election,
    /// An election started by the leader's `TimeoutNow`: voters grant it even while they have a leader
    /// (it bypasses the leader lease of check-quorum), because the leader asked for it.
    Transfer,
}

/// The payload of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// A candidate asks for a (pre-)vote. Granted only if the candidate's log is at least as up to date as
    /// the voter's (Raft §5.4.1): `(last_log_term, last_log_index)` compared lexicographically.
    VoteRequest {
        /// Pre-vote, election or transfer.
        kind: CampaignKind,
        /// Term of the candidate's last entry.
        last_log_term: Term,
        /// Index of the candidate's last entry.
        last_log_index: LogIndex,
    },
    /// The answer to a [`MessageBody::VoteRequest`].
    VoteResponse {
        /// Whether this was an answer to a pre-vote.
        pre_vote: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// The leader replicates entries (Raft §5.3). The follower accepts them only if its log has an entry at
    /// `prev_log_index` with `prev_log_term` (the consistency check).
    Append {
        /// The index just before `entries`.
        prev_log_index: LogIndex,
        /// The term of the entry at `prev_log_index`.
        prev_log_term: Term,
        /// The entries to append, consecutive from `prev_log_index + 1`; may be empty (a probe).
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
    },
    /// The answer to an [`MessageBody::Append`] or [`MessageBody::InstallSnapshot`].
    AppendResponse {
        /// `Ok(match_index)`: the follower's log matches the leader's up to this index.
        /// `Err(rejection)`: the consistency check failed.
        result: Result<LogIndex, AppendRejection>,
    },
    /// The leader asserts its leadership and advances followers' commit index, without entries. It also
    /// confirms leadership for ReadIndex (`read_seq`).
    Heartbeat {
        /// `min(leader commit, follower's match index)`: a follower must never commit past what it matches.
        commit: LogIndex,
        /// The leader's latest ReadIndex round number, echoed back in the response.
        read_seq: u64,
    },
    /// The answer to a [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// Echo of the heartbeat's `read_seq`.
        read_seq: u64,
    },
    /// The leader sends its snapshot to a follower whose needed entries were compacted away.
    InstallSnapshot {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// A follower asks the leader for a read index on behalf of one of its clients.
    ReadIndexRequest {
        /// The follower's own identifier of the read, echoed back.
        context: u64,
    },
    /// The leader's answer: once the follower has applied up to `index`, it may serve the read.
    ReadIndexResponse {
        /// Echo of the request's context.
        context: u64,
        /// The read index.
        index: LogIndex,
    },
    /// The leader tells a caught-up voter to start an election at once (leader transfer, dissertation §3.10).
    TimeoutNow,
}

/// Why a follower rejected an [`MessageBody::Append`], with hints for fast backtracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendRejection {
    /// The `prev_log_index` of the rejected message, so the leader can discard stale rejections.
    pub rejected_index: LogIndex,
    /// The follower's best guess of the last index where its log may still match: the highest index
    /// `<= min(rejected_index, last_index)` whose term is `<= prev_log_term` of the rejected message.
    pub hint_index: LogIndex,
    /// The term of the follower's entry at `hint_index`.
    pub hint_term: Term,
    /// The follower has no membership base (a joining node, possibly restarted before it persisted one):
    /// only the leader's snapshot can bring it up, whatever its log holds.
    pub needs_snapshot: bool,
}

impl Message {
    /// A short name of the body's kind, for traces.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            MessageBody::VoteRequest { kind: CampaignKind::PreVote, .. } => "PreVote",
            MessageBody::VoteRequest { .. } => "Vote",
            MessageBody::VoteResponse { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::VoteResponse { .. } => "VoteResp",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse { .. } => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::InstallSnapshot { .. } => "Snapshot",
            MessageBody::ReadIndexRequest { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
            MessageBody::TimeoutNow => "TimeoutNow",
        }
    }
}
