//! Simulated clients: each issues one request at a time (get, put, delete, cas on a few hot keys) to the
//! node it believes leads, follows leader hints, and records every operation for the linearizability check.

use std::collections::BTreeMap;

use tally_kv::Command;
use tally_node::RequestId;
use tally_raft::{NodeId, SplitMix64};

use crate::linearizability::KvInput;

/// A request a client is waiting on.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The node's request id.
    pub request: RequestId,
    /// The node it was sent to.
    pub node: NodeId,
    /// Its position in the history.
    pub op: usize,
    /// When it was sent.
    pub sent_at: u64,
    /// For writes: the fingerprint of the encoded command (to match the applied entry).
    pub fingerprint: Option<u64>,
}

/// One simulated client.
pub struct Client {
    /// The client's id (also part of every value it writes, which keeps values unique).
    pub id: u64,
    /// The node it sends its next request to.
    pub target: NodeId,
    /// The request in flight, if any.
    pub pending: Option<Pending>,
    /// Not before this time will it send the next request.
    pub next_at: u64,
    /// Requests issued so far (makes values unique).
    pub seq: u64,
    /// The modify index this client last saw for each key: what it uses as a cas expectation.
    pub seen_index: BTreeMap<Vec<u8>, u64>,
}

/// What a client decided to do next.
pub struct Intent {
    /// The key.
    pub key: Vec<u8>,
    /// The operation, as recorded in the history.
    pub input: KvInput,
    /// For writes, the command to propose.
    pub command: Option<Command>,
}

impl Client {
    /// A client that starts by talking to `target`.
    pub fn new(id: u64, target: NodeId) -> Client {
        Client { id, target, pending: None, next_at: 0, seq: 0, seen_index: BTreeMap::new() }
    }

    /// Picks the next operation: reads and writes mixed, cas expectations sometimes right and sometimes stale.
    pub fn next_intent(&mut self, rng: &mut SplitMix64, keys: usize) -> Intent {
        self.seq += 1;
        let key = format!("k{}", rng.range(0, keys as u64)).into_bytes();
        let value = format!("c{}-{}", self.id, self.seq).into_bytes();
        match rng.range(0, 10) {
            0..=3 => Intent { key, input: KvInput::Get, command: None },
            4..=6 => {
                let command = Command::Put { key: key.clone(), value: value.clone(), cas: None };
                Intent { key, input: KvInput::Put { value }, command: Some(command) }
            }
            7 => {
                let command = Command::Delete { key: key.clone(), cas: None };
                Intent { key, input: KvInput::Delete, command: Some(command) }
            }
            _ => {
                let seen = self.seen_index.get(&key).copied().unwrap_or(0);
                let expected = match rng.range(0, 4) {
                    0 => 0,
                    1 => seen.saturating_sub(rng.range(1, 5)),
                    _ => seen,
                };
                let command = Command::Put { key: key.clone(), value: value.clone(), cas: Some(expected) };
                Intent { key, input: KvInput::Cas { expected, value }, command: Some(command) }
            }
        }
    }
}
