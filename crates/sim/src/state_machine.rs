//! The kv state machine wrapped so the simulator sees every entry each node applies.

use std::cell::RefCell;

use tally_kv::{KvStore, Response};
use tally_node::{KvQuery, KvQueryOutput, StateMachine};
use tally_raft::LogIndex;

use crate::hash::fnv1a;

/// A [`KvStore`] that also records `(index, fingerprint)` of every entry it applies, for the
/// state machine safety checker. A skipped entry (no-op or membership) has fingerprint 0.
#[derive(Default, Debug)]
pub struct RecordingKv {
    /// The real state machine.
    pub kv: KvStore,
    /// Entries applied since the simulator last drained the record (a `RefCell` because the node only
    /// lends its state machine out read-only).
    applied: RefCell<Vec<(LogIndex, u64)>>,
}

impl RecordingKv {
    /// Takes the `(index, fingerprint)` of the entries applied since the last call.
    pub fn take_applied(&self) -> Vec<(LogIndex, u64)> {
        self.applied.take()
    }
}

impl StateMachine for RecordingKv {
    type Output = Response;
    type Query = KvQuery;
    type QueryOutput = KvQueryOutput;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Response {
        self.applied.get_mut().push((index, fnv1a(command)));
        StateMachine::apply(&mut self.kv, index, command)
    }

    fn skip(&mut self, index: LogIndex) {
        self.applied.get_mut().push((index, 0));
        StateMachine::skip(&mut self.kv, index);
    }

    fn query(&self, query: &KvQuery) -> KvQueryOutput {
        self.kv.query(query)
    }

    fn applied_index(&self) -> LogIndex {
        StateMachine::applied_index(&self.kv)
    }

    fn snapshot(&self) -> Vec<u8> {
        StateMachine::snapshot(&self.kv)
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        StateMachine::restore(&mut self.kv, data)
    }

    fn state_checksum(&self) -> u64 {
        StateMachine::state_checksum(&self.kv)
    }
}
