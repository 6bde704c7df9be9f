//! Driving the transaction workload ([`crate::txn_client`]): issuing its requests and recording their answers.
//! They stay out of the linearizability history; the answer checkers (`txn_serializability`,
//! `real_time_order`) and the durability checker see them.

use tally_node::{Input, KvQuery, Reply, RequestError};
use tally_raft::NodeId;

use super::Simulation;
use crate::checkers::Violation;
use crate::client::{Pending, Purpose};
use crate::hash::fnv1a;
use crate::show::readable;
use crate::state_machine::RecordingKv;
use crate::txn_client::TxnRequest;

impl Simulation {
    /// Prepares client `c`'s next request of the transaction workload to `target`.
    pub(super) fn issue_txn(&mut self, c: usize, target: NodeId) -> Input<KvQuery> {
        let client = &mut self.clients[c];
        client.seq += 1;
        let tag = format!("c{}-{}", client.id, client.seq);
        let (kind, request) = client.txn_view.next_intent(&mut self.rng, self.params.txn_keys, &tag);
        let id = self.next_request;
        self.next_request += 1;
        self.owners.insert(id, c);
        let (input, fingerprint) = match &request {
            TxnRequest::Write(command) => {
                let command = command.encode();
                let fingerprint = fnv1a(&command);
                (Input::Propose { id, command }, Some(fingerprint))
            }
            TxnRequest::Read { query, consistency } => {
                (Input::Read { id, query: query.clone(), consistency: *consistency }, None)
            }
        };
        self.trace_event(|| readable(&format!("client {c}: {kind} {request:?} -> {target}")));
        let purpose = Purpose::Txn(request);
        self.clients[c].pending = Some(Pending { request: id, node: target, purpose, sent_at: self.now, fingerprint });
        input
    }

    /// Records how a request of the transaction workload ended: an acknowledged write is durable and answered
    /// as the log says, a read answered as the state at its index; the client learns from both.
    pub(super) fn complete_txn(
        &mut self,
        c: usize,
        pending: &Pending,
        request: &TxnRequest,
        result: Result<Reply<RecordingKv>, RequestError>,
    ) -> Result<(), Violation> {
        self.clients[c].next_at = self.now + self.rng.range(0, 5);
        match (request, result) {
            (TxnRequest::Write(command), Ok(Reply::Written { index, output })) => {
                let fingerprint = pending.fingerprint.expect("a write has a fingerprint");
                self.durability.acknowledge(index, fingerprint, &self.state_machine_safety)?;
                self.check_write(pending, index, &output)?;
                self.clients[c].txn_view.learn_write(command, &output);
                self.writes_acked += 1;
                self.ops += 1;
                self.trace_event(|| readable(&format!("client {c}: txn request at {index} -> {output:?}")));
            }
            (TxnRequest::Read { query, consistency }, Ok(Reply::Read { index, output })) => {
                self.check_read(pending, index, query.clone(), &output, *consistency)?;
                self.clients[c].txn_view.learn_read(query, &output);
                self.ops += 1;
                self.trace_event(|| readable(&format!("client {c}: txn read at {index} -> {output:?}")));
            }
            (_, Ok(other)) => {
                let detail = format!("{request:?} answered with {other:?}");
                return Err(Violation { checker: "kv_response", detail });
            }
            (_, Err(RequestError::Indeterminate(_) | RequestError::Stopped(_))) => {}
            (_, Err(error)) => self.retarget(c, error.leader_hint()),
        }
        Ok(())
    }
}
