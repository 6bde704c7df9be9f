//! Linearizable reads without writing to the log (dissertation §6.4, ReadIndex):
//!
//! 1. the leader must have committed an entry of its own term (its commit index is then the cluster's);
//! 2. it records its commit index as the read index and starts a heartbeat round `read_seq`;
//! 3. once a quorum acknowledges a round `>= read_seq`, nobody else can have been leader meanwhile,
//!    so state applied up to the read index answers the read linearizably.
//!
//! A follower forwards the request to the leader and gets the read index back.

use crate::error::ProposeError;
use crate::message::MessageBody;
use crate::quorum;
use crate::raft::{PendingRead, Raft, Role};
use crate::ready::ReadState;
use crate::types::NodeId;

impl Raft {
    /// Asks for a read index for the read identified by `context`. The answer comes out in
    /// [`crate::Ready::read_states`]; if leadership changes first, no answer comes and the caller times out.
    ///
    /// # Errors
    /// `NotLeader` when this node is a follower that knows no leader.
    pub fn read_index(&mut self, context: u64) -> Result<(), ProposeError> {
        match (self.role, self.leader_id) {
            (Role::Leader, _) => {
                self.leader_read(None, context);
                Ok(())
            }
            (_, Some(leader)) => {
                self.send(leader, MessageBody::ReadIndexRequest { context });
                Ok(())
            }
            (_, None) => Err(ProposeError::NotLeader { leader: None }),
        }
    }

    /// Leader: a follower asks for a read index on behalf of its client.
    pub(crate) fn handle_read_index_request(&mut self, from: NodeId, context: u64) {
        if self.role == Role::Leader {
            self.leader_read(Some(from), context);
        }
    }

    /// Leader: registers a read and starts its confirmation round.
    fn leader_read(&mut self, from: Option<NodeId>, context: u64) {
        let committed_in_term = self.log.term_at(self.log.commit()) == Some(self.term);
        if !committed_in_term && !self.config.faults.read_without_quorum_check {
            self.reads_awaiting_commit.push((from, context));
            return;
        }
        let index = self.log.commit();
        let alone = self.membership.voters.len() == 1 && self.membership.is_voter(self.config.id);
        if alone || self.config.faults.read_without_quorum_check {
            self.answer_read(PendingRead { from, context, index, read_seq: 0 });
            return;
        }
        self.read_seq += 1;
        let read_seq = self.read_seq;
        self.pending_reads.push_back(PendingRead { from, context, index, read_seq });
        self.broadcast_heartbeat();
    }

    /// Leader: the commit index reached the current term; start the reads that waited for it.
    pub(crate) fn start_reads_awaiting_commit(&mut self) {
        if self.log.term_at(self.log.commit()) != Some(self.term) {
            return;
        }
        for (from, context) in std::mem::take(&mut self.reads_awaiting_commit) {
            self.leader_read(from, context);
        }
    }

    /// Leader: answers every read whose round a quorum (counting this node) has acknowledged.
    pub(crate) fn advance_reads(&mut self) {
        while let Some(read) = self.pending_reads.front().copied() {
            if !self.read_round_confirmed(read.read_seq) {
                break;
            }
            self.pending_reads.pop_front();
            self.answer_read(read);
        }
    }

    /// Whether a quorum of voters (counting this node) acknowledged heartbeat round `read_seq` or later.
    fn read_round_confirmed(&self, read_seq: u64) -> bool {
        let acked = |voter: NodeId| {
            if voter == self.config.id {
                self.read_seq >= read_seq
            } else {
                self.progress.get(&voter).is_some_and(|p| p.read_seq_acked >= read_seq)
            }
        };
        quorum::has_quorum(&self.membership.voters, acked)
    }

    /// Hands a confirmed read to the local client or the follower that asked.
    fn answer_read(&mut self, read: PendingRead) {
        match read.from {
            None => self.read_states.push(ReadState { context: read.context, index: read.index }),
            Some(follower) => {
                let body = MessageBody::ReadIndexResponse { context: read.context, index: read.index };
                self.send(follower, body);
            }
        }
    }
}
