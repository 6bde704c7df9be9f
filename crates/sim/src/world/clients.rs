//! Driving the simulated clients: issuing requests, timing them out, and turning completions into history.

use std::collections::BTreeMap;

use tally_kv::Response;
use tally_node::{Input, KvQuery, KvQueryOutput, ReadConsistency, Reply, RequestError};
use tally_raft::NodeId;

use super::Simulation;
use crate::checkers::Violation;
use crate::client::{Client, Pending, Purpose};
use crate::hash::fnv1a;
use crate::linearizability::{KvInput, KvOp, KvOutput};

impl Simulation {
    /// Each client: give up on a request that took too long, or issue the next one. The requests issued to one
    /// node in the same millisecond reach it as one batch (`Node::handle`), as in the real server: they share
    /// one fsync and one Append per follower, and their reads one ReadIndex round.
    pub(super) fn drive_clients(&mut self) {
        let mut batches: BTreeMap<usize, Vec<Input<KvQuery>>> = BTreeMap::new();
        for c in 0..self.clients.len() {
            if let Some(pending) = &self.clients[c].pending
                && self.now - pending.sent_at > self.params.request_timeout_ms
            {
                let pending = pending.clone();
                self.give_up(c, &pending);
            }
            let client = &self.clients[c];
            if client.pending.is_none() && !self.quiesced && self.now >= client.next_at {
                if let Some((i, input)) = self.issue(c) {
                    batches.entry(i).or_default().push(input);
                }
            }
        }
        for (i, inputs) in batches {
            let node = self.node_mut(i).expect("requests are only issued to running nodes");
            if node.handle(inputs).is_err() {
                self.crash(i, "sync failed on a client request");
            }
        }
    }

    /// A request timed out: a write becomes indeterminate (it may still be applied), a read is discarded.
    fn give_up(&mut self, c: usize, pending: &Pending) {
        let i = self.slot_of(pending.node);
        if let Some(node) = self.node_mut(i) {
            node.abandon(pending.request);
        }
        self.owners.remove(&pending.request);
        self.end_unknown(&pending.purpose);
        let client = &mut self.clients[c];
        client.pending = None;
        client.target = self.ids[self.rng.range(0, self.ids.len() as u64) as usize];
        client.next_at = self.now + 1;
        self.trace_event(|| match pending.purpose {
            Purpose::Kv(op) => format!("client {c}: op {op} timed out"),
            Purpose::Auth => format!("client {c}: auth command timed out"),
            Purpose::Txn(_) => format!("client {c}: txn request timed out"),
        });
    }

    /// Marks an operation whose outcome the client will never learn: reads had no effect, writes may have.
    /// Auth commands and the transaction workload are not in the history: nothing to mark.
    fn end_unknown(&mut self, purpose: &Purpose) {
        let &Purpose::Kv(op) = purpose else { return };
        if self.history[op].output.is_none() && matches!(self.history[op].input, KvInput::Get) {
            self.discarded[op] = true;
        }
    }

    /// Prepares client `c`'s next request to the node it believes leads: `(node slot, input)`.
    fn issue(&mut self, c: usize) -> Option<(usize, Input<KvQuery>)> {
        let target = self.clients[c].target;
        let i = self.slot_of(target);
        if self.node(i).is_none() {
            self.retarget(c, None);
            return None;
        }
        // Drawn only in runs with auth commands, so the other runs replay as before auth existed.
        if self.params.auth_permille > 0 && self.rng.chance(self.params.auth_permille, 1_000) {
            return Some((i, self.issue_auth(c, target)));
        }
        // The same for the transaction workload.
        if self.params.txn_permille > 0 && self.rng.chance(self.params.txn_permille, 1_000) {
            return Some((i, self.issue_txn(c, target)));
        }
        let intent = self.clients[c].next_intent(&mut self.rng, self.params.keys);
        let op = self.history.len();
        let client_id = self.clients[c].id;
        self.history.push(KvOp {
            client: client_id,
            key: intent.key.clone(),
            call: self.now,
            ret: None,
            input: intent.input.clone(),
            output: None,
        });
        self.discarded.push(false);
        let request = self.next_request;
        self.next_request += 1;
        self.owners.insert(request, c);
        let command = intent.command.map(|command| command.encode());
        let fingerprint = command.as_deref().map(fnv1a);
        let purpose = Purpose::Kv(op);
        self.clients[c].pending = Some(Pending { request, node: target, purpose, sent_at: self.now, fingerprint });
        self.trace_event(|| format!("client {c}: op {op} {:?} {} -> {target}", intent.input, show(&intent.key)));
        let input = match command {
            Some(command) => Input::Propose { id: request, command },
            None => {
                Input::Read { id: request, query: KvQuery::Get(intent.key), consistency: ReadConsistency::Linearizable }
            }
        };
        Some((i, input))
    }

    /// Prepares client `c`'s next request as an auth command to `target`: proposed like a key write, outside the
    /// linearizability history.
    fn issue_auth(&mut self, c: usize, target: NodeId) -> Input<KvQuery> {
        let command = Client::next_auth_command(&mut self.rng);
        let encoded = command.encode();
        let request = self.next_request;
        self.next_request += 1;
        self.owners.insert(request, c);
        let fingerprint = Some(fnv1a(&encoded));
        let purpose = Purpose::Auth;
        self.clients[c].pending = Some(Pending { request, node: target, purpose, sent_at: self.now, fingerprint });
        self.trace_event(|| format!("client {c}: auth {command:?} -> {target}"));
        Input::Propose { id: request, command: encoded }
    }

    /// Points client `c` at the hinted leader, or a random node, and makes it wait a little.
    pub(super) fn retarget(&mut self, c: usize, hint: Option<NodeId>) {
        let random = self.ids[self.rng.range(0, self.ids.len() as u64) as usize];
        let delay = self.rng.range(1, 10);
        let client: &mut Client = &mut self.clients[c];
        client.target = hint.unwrap_or(random);
        client.next_at = self.now + delay;
    }

    /// Ends the requests of clients waiting on a node that crashed.
    pub(crate) fn fail_requests_at(&mut self, node: NodeId) {
        for c in 0..self.clients.len() {
            let Some(pending) = self.clients[c].pending.take_if(|p| p.node == node) else { continue };
            self.owners.remove(&pending.request);
            self.end_unknown(&pending.purpose);
            self.retarget(c, None);
        }
    }

    /// Clients stop issuing requests and give up on the ones in flight.
    pub(super) fn quiesce(&mut self) {
        self.quiesced = true;
        for c in 0..self.clients.len() {
            if let Some(pending) = self.clients[c].pending.clone() {
                self.give_up(c, &pending);
            }
        }
    }

    /// Turns every node's finished requests into history entries.
    pub(super) fn collect_completions(&mut self) -> Result<(), Violation> {
        for i in 0..self.ids.len() {
            let Some(node) = self.node_mut(i) else { continue };
            for completion in node.take_completions() {
                if let Some(w) = self.watch_reads.remove(&completion.id) {
                    self.complete_watch_read(w, completion.result)?;
                    continue;
                }
                let Some(c) = self.owners.remove(&completion.id) else { continue };
                let pending = self.clients[c].pending.take().expect("owner has a pending request");
                assert_eq!(pending.request, completion.id, "completion for another request");
                self.complete(c, &pending, completion.result)?;
            }
        }
        Ok(())
    }

    /// Records how one request ended.
    fn complete(
        &mut self,
        c: usize,
        pending: &Pending,
        result: Result<Reply<crate::state_machine::RecordingKv>, RequestError>,
    ) -> Result<(), Violation> {
        let op = match pending.purpose {
            Purpose::Kv(op) => op,
            Purpose::Auth => return self.complete_auth(c, pending, result),
            Purpose::Txn(ref request) => return self.complete_txn(c, pending, request, result),
        };
        self.clients[c].next_at = self.now + self.rng.range(0, 5);
        match result {
            Ok(Reply::Written { index, output }) => {
                let fingerprint = pending.fingerprint.expect("a write has a fingerprint");
                self.durability.acknowledge(index, fingerprint, &self.state_machine_safety)?;
                self.check_write(pending, index, &output)?;
                let output = write_output(&self.history[op].input, &output)?;
                self.finish(c, op, output);
                self.writes_acked += 1;
            }
            Ok(Reply::Read { index, output }) => {
                let query = KvQuery::Get(self.history[op].key.clone());
                self.check_read(pending, index, query, &output, ReadConsistency::Linearizable)?;
                let KvQueryOutput::Get(value) = output else { unreachable!("a get answered with {output:?}") };
                let output = KvOutput::Get(value.map(|v| (v.value, v.modify_index)));
                self.finish(c, op, output);
            }
            Ok(other) => unreachable!("unexpected reply {other:?}"),
            Err(RequestError::Indeterminate(_) | RequestError::Stopped(_)) => self.end_unknown(&Purpose::Kv(op)),
            Err(error) => {
                // Refused or overwritten: certainly no effect.
                self.discarded[op] = true;
                self.retarget(c, error.leader_hint());
            }
        }
        let outcome = format!("{:?}", self.history[op].output);
        self.trace_event(|| format!("client {c}: op {op} -> {outcome}"));
        Ok(())
    }

    /// Records how an auth command ended: an acknowledged one must be the entry applied at its index (and stay
    /// applied everywhere: the durability checker), answered as an auth command.
    fn complete_auth(
        &mut self,
        c: usize,
        pending: &Pending,
        result: Result<Reply<crate::state_machine::RecordingKv>, RequestError>,
    ) -> Result<(), Violation> {
        self.clients[c].next_at = self.now + self.rng.range(0, 5);
        match result {
            Ok(Reply::Written { index, output: output @ (Response::Auth { .. } | Response::AuthRefused { .. }) }) => {
                let fingerprint = pending.fingerprint.expect("a write has a fingerprint");
                self.durability.acknowledge(index, fingerprint, &self.state_machine_safety)?;
                self.check_write(pending, index, &output)?;
                self.writes_acked += 1;
                self.trace_event(|| format!("client {c}: auth -> {output:?}"));
            }
            Ok(other) => {
                let detail = format!("an auth command answered with {other:?}");
                return Err(Violation { checker: "kv_response", detail });
            }
            Err(RequestError::Indeterminate(_) | RequestError::Stopped(_)) => {}
            Err(error) => self.retarget(c, error.leader_hint()),
        }
        Ok(())
    }

    /// Records a completed operation and what the client learned from it.
    fn finish(&mut self, c: usize, op: usize, output: KvOutput) {
        let seen = match &output {
            KvOutput::Get(Some((_, index))) | KvOutput::Put { index } | KvOutput::Cas(Ok(index)) => Some(*index),
            KvOutput::Get(None) | KvOutput::Delete { .. } => Some(0),
            KvOutput::Cas(Err(())) => None,
        };
        if let Some(index) = seen {
            self.clients[c].seen_index.insert(self.history[op].key.clone(), index);
        }
        self.history[op].ret = Some(self.now);
        self.history[op].output = Some(output);
        self.ops += 1;
    }
}

/// Maps the kv store's response to what the history records for the operation's kind.
fn write_output(input: &KvInput, response: &Response) -> Result<KvOutput, Violation> {
    let output = match (input, response) {
        (KvInput::Put { .. }, Response::Put { index }) => KvOutput::Put { index: *index },
        (KvInput::Cas { .. }, Response::Put { index }) => KvOutput::Cas(Ok(*index)),
        (KvInput::Cas { .. }, Response::CasFailed { .. }) => KvOutput::Cas(Err(())),
        (KvInput::Delete, Response::Delete { index, deleted }) => KvOutput::Delete { index: *index, deleted: *deleted },
        _ => {
            let detail = format!("{input:?} answered with {response:?}");
            return Err(Violation { checker: "kv_response", detail });
        }
    };
    Ok(output)
}

/// A key for the trace.
fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}
