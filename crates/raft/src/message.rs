//! The messages Raft nodes exchange. The core never sends them itself: they come out in a
//! [`crate::Ready`] and go in through [`crate::Raft::step`].

use crate::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

/// One message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term; for a pre-vote or inquiry, and for a granted pre-vote or an inquiry's `Proceed` or
    /// `Alive`, the term the campaign would run in.
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
    /// Bully mode's trial round (the bully algorithm's "election" message): is a voter that outranks the
    /// sender alive? Like a pre-vote it is sent in `term + 1` and changes no one's term or vote; a voter
    /// that hears from its leader refuses it (unless it outranks the sender: then it says it is alive). It is
    /// answered with a [`MessageBody::InquiryResponse`], and asked again while unanswered or refused.
    Inquiry,
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
    /// The answer to a [`CampaignKind::Inquiry`]. `Proceed` and `Alive` are sent in the inquiry's term (like
    /// a granted pre-vote), `Refused` in the answering node's own term so a stale inquirer learns it.
    InquiryResponse {
        /// What the voter says.
        answer: InquiryAnswer,
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
    /// The answer to an [`MessageBody::Append`], or to the [`MessageBody::InstallSnapshot`] chunk that
    /// completed a snapshot (or showed the follower already holds what the snapshot covers).
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
    /// One chunk of the leader's snapshot, for a follower whose needed entries were compacted away (or a
    /// joining node without a membership base). The leader sends the chunks in order, a few ahead of the
    /// follower's acknowledgements. The follower keeps only a contiguous prefix and answers each chunk that
    /// does not complete the snapshot with a [`MessageBody::SnapshotResponse`]; the chunk that completes it
    /// (checksum verified, snapshot installed) with an [`MessageBody::AppendResponse`] matching up to
    /// `meta.index`, as an Append would be answered.
    InstallSnapshot(SnapshotChunk),
    /// A follower's answer to a snapshot chunk that did not complete the snapshot: how much of the snapshot
    /// at `index` it holds, so the leader sends on from there. Lost, duplicated and reordered chunks are
    /// all handled by this one number: the follower ignores a chunk not at `next_offset`.
    SnapshotResponse {
        /// `meta.index` of the snapshot the follower is assembling, so the leader can tell answers about a
        /// transfer it gave up from answers about the current one.
        index: LogIndex,
        /// How many bytes of the snapshot the follower holds contiguously from its start: the offset of the
        /// next chunk it accepts. 0 after a checksum mismatch (the leader starts over).
        next_offset: u64,
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
    /// A node in protocol-aware recovery (its storage may have lost entries it acknowledged, or a vote) asks a
    /// voter for its state; sent again every heartbeat interval until a majority of the other voters answered.
    RecoveryQuery {
        /// Identifies the asker's start, so answers to an earlier start's queries are not taken.
        nonce: u64,
    },
    /// The answer to a [`MessageBody::RecoveryQuery`], from the answerer's real state (recovering or not).
    RecoveryAnswer {
        /// Echo of the query's nonce.
        nonce: u64,
        /// The answerer's current term.
        term: Term,
        /// The index of the answerer's last entry.
        last_log_index: LogIndex,
        /// The term of the answerer's last entry.
        last_log_term: Term,
    },
}

/// A voter's answer to a bully inquiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InquiryAnswer {
    /// The voter knows no live leader and would vote for the inquirer, and does not claim to outrank it (it
    /// does not, or it may not say Alive: it runs in Raft mode, or just lost an inquiry of its own): go ahead.
    Proceed,
    /// The voter would not vote for the inquirer now: it hears from a leader, its log is fresher, it already
    /// voted in that term, or it knows no membership.
    Refused,
    /// The bully's "I am alive": the voter outranks the inquirer and leads, runs, or will run once its leader
    /// lease ends, so the inquirer waits for its victory instead of claiming one.
    Alive,
}

/// One piece of a snapshot in transfer: `data` holds the snapshot's bytes `offset..offset + data.len()`.
///
/// Invariant of a well-formed chunk ([`SnapshotChunk::is_well_formed`]; checked by the receiver, since it
/// comes from the network): `offset + data.len() <= total_len`, and `done` exactly when the chunk ends at
/// `total_len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// Position and membership of the snapshot. With `total_len` and `checksum` it identifies which
    /// snapshot the chunk belongs to, so chunks of different snapshots are never mixed.
    pub meta: SnapshotMeta,
    /// Where `data` starts in the snapshot's bytes.
    pub offset: u64,
    /// The bytes: at most `max_bytes_per_message` of the leader's config, empty only in the single chunk of
    /// an empty snapshot.
    pub data: Vec<u8>,
    /// The size of the whole snapshot, so the follower can refuse one beyond its limit before it buffers
    /// anything. Unverified until the checksum matches: never allocate from it.
    pub total_len: u64,
    /// CRC32 of the whole snapshot's bytes, in every chunk: the follower verifies the assembled snapshot
    /// before installing it, so a corrupted or mis-assembled one is never installed.
    pub checksum: u32,
    /// Whether this is the last chunk.
    pub done: bool,
}

impl SnapshotChunk {
    /// The offset just past this chunk's bytes (saturating: a malformed chunk must not overflow).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.data.len() as u64)
    }

    /// Whether the chunk is consistent with itself: it ends within the snapshot, and is marked `done`
    /// exactly when it ends at its end.
    pub fn is_well_formed(&self) -> bool {
        let end = self.offset.checked_add(self.data.len() as u64);
        end.is_some_and(|end| end <= self.total_len && self.done == (end == self.total_len))
    }
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
            MessageBody::VoteRequest { kind: CampaignKind::Inquiry, .. } => "Inquiry",
            MessageBody::VoteRequest { .. } => "Vote",
            MessageBody::VoteResponse { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::VoteResponse { .. } => "VoteResp",
            MessageBody::InquiryResponse { .. } => "InquiryResp",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse { .. } => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::InstallSnapshot(_) => "SnapshotChunk",
            MessageBody::SnapshotResponse { .. } => "SnapshotResp",
            MessageBody::ReadIndexRequest { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::RecoveryQuery { .. } => "RecoveryQuery",
            MessageBody::RecoveryAnswer { .. } => "RecoveryAnswer",
        }
    }
}
