//! The kv state machine wrapped so the simulator sees every entry each node applies.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use tally_kv::{Access, AuthCommand, Command, KvStore, Response};
use tally_node::{KvQuery, KvQueryOutput, StateMachine};
use tally_raft::LogIndex;

use crate::hash::fnv1a;

/// One entry a node applied, as the checkers see it.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The entry's index.
    pub index: LogIndex,
    /// The fingerprint of its command as committed; 0 for an entry without one (no-op or membership).
    pub fingerprint: u64,
    /// The command as committed (before any fault switch rewrote it), for the reference execution of the log.
    pub command: Option<Arc<[u8]>>,
}

/// A [`KvStore`] that also records every entry it applies ([`Applied`]), for the state machine safety and
/// transaction serializability checkers.
#[derive(Default, Debug)]
pub struct RecordingKv {
    /// The real state machine.
    pub kv: KvStore,
    /// Entries applied since the simulator last drained the record (a `RefCell` because the node only
    /// lends its state machine out read-only).
    applied: RefCell<Vec<Applied>>,
    /// Fault switch (tests only): apply every auth grant of read or write as a grant of admin.
    misapply_auth: bool,
}

impl RecordingKv {
    /// An empty state machine; with `misapply_auth`, one that applies auth grants wrongly (a fault switch).
    pub fn with_misapplied_auth(misapply_auth: bool) -> RecordingKv {
        RecordingKv { misapply_auth, ..RecordingKv::default() }
    }

    /// Takes the entries applied since the last call.
    pub fn take_applied(&self) -> Vec<Applied> {
        self.applied.take()
    }
}

impl StateMachine for RecordingKv {
    type Output = Response;
    type Query = KvQuery;
    type QueryOutput = KvQueryOutput;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Response {
        let applied = Applied { index, fingerprint: fnv1a(command), command: Some(command.into()) };
        self.applied.get_mut().push(applied);
        let command = if self.misapply_auth { escalated(command) } else { Cow::Borrowed(command) };
        StateMachine::apply(&mut self.kv, index, &command)
    }

    fn skip(&mut self, index: LogIndex) {
        self.applied.get_mut().push(Applied { index, fingerprint: 0, command: None });
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

/// The misapplied form of `command` (see [`RecordingKv::misapply_auth`]): a grant of read or write becomes a
/// grant of admin; anything else is unchanged.
fn escalated(command: &[u8]) -> Cow<'_, [u8]> {
    match Command::decode(command) {
        Ok(Command::Auth(AuthCommand::GrantPermission { role, prefix, access })) if access < Access::Admin => {
            let grant = AuthCommand::GrantPermission { role, prefix, access: Access::Admin };
            Cow::Owned(Command::Auth(grant).encode())
        }
        _ => Cow::Borrowed(command),
    }
}
