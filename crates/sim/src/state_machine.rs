//! The kv state machine wrapped so the simulator sees every entry each node applies.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use tally_kv::{
    Access, AuthCommand, Command, Compare, CompareOp, CompareTarget, HistoryLimits, KvStore, Response, Txn,
};
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

/// The watch history window of a simulated node in runs without watchers: small, because the history travels in
/// every snapshot and the simulator sends snapshots in tiny chunks (a production-sized window made snapshots so
/// large that catch-up missed the liveness bound). Runs with watchers draw a wider one per node
/// ([`crate::watcher::WatchParams::history`]).
pub(crate) const SIM_HISTORY_LIMITS: HistoryLimits = HistoryLimits { entries_max: 4, bytes_max: 1024 };

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
    /// Fault switch (tests only): when set, the state one entry back (before the last entry applied), on which
    /// every transaction's compares are evaluated; the transaction is rewritten to take the branch they pick.
    /// Every node does the same, so the replicas agree with each other but not with the log.
    before_last: Option<Box<KvStore>>,
}

impl RecordingKv {
    /// An empty state machine; with `misapply_auth`, one that applies auth grants wrongly (a fault switch).
    pub fn with_misapplied_auth(misapply_auth: bool) -> RecordingKv {
        RecordingKv { misapply_auth, kv: KvStore::with_history_limits(SIM_HISTORY_LIMITS), ..RecordingKv::default() }
    }

    /// The same state machine keeping a watch history window of `limits` (set before any other builder, which may
    /// copy the store).
    pub fn with_history_limits(mut self, limits: HistoryLimits) -> RecordingKv {
        self.kv.set_history_limits(limits);
        self
    }

    /// The same state machine evaluating every transaction's compares on the state one entry back, a stale
    /// read of the guards (a fault switch, see [`RecordingKv::before_last`]).
    pub fn with_stale_txn_compare(mut self, stale_txn_compare: bool) -> RecordingKv {
        self.before_last = stale_txn_compare.then(|| Box::new(self.kv.clone()));
        self
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
        let command = match &self.before_last {
            _ if self.misapply_auth => escalated(command),
            Some(before_last) => stale_compared(command, before_last),
            None => Cow::Borrowed(command),
        };
        if let Some(before_last) = &mut self.before_last {
            before_last.as_mut().clone_from(&self.kv);
        }
        StateMachine::apply(&mut self.kv, index, &command)
    }

    fn skip(&mut self, index: LogIndex) {
        self.applied.get_mut().push(Applied { index, fingerprint: 0, command: None });
        if let Some(before_last) = &mut self.before_last {
            before_last.as_mut().clone_from(&self.kv);
        }
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
        StateMachine::restore(&mut self.kv, data)?;
        if let Some(before_last) = &mut self.before_last {
            before_last.as_mut().clone_from(&self.kv); // the state before the snapshot's last entry is not known
        }
        Ok(())
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

/// The form of `command` that the stale-compare fault applies (see [`RecordingKv::before_last`]): a transaction
/// whose compares, evaluated on `before_last`, pick a branch, rewritten to take that branch whatever the
/// current state (no compares: success; a compare that never holds, `version < 0`: failure). Anything else, and
/// a transaction without compares or one that does not validate, is unchanged.
fn stale_compared<'a>(command: &'a [u8], before_last: &KvStore) -> Cow<'a, [u8]> {
    let Ok(Command::Txn(txn)) = Command::decode(command) else { return Cow::Borrowed(command) };
    let Some(first) = txn.compare.first() else { return Cow::Borrowed(command) };
    let guards = Txn { compare: txn.compare.clone(), success: Vec::new(), failure: Vec::new() };
    let KvQueryOutput::Txn { succeeded, .. } = before_last.query(&KvQuery::Txn(guards)) else {
        return Cow::Borrowed(command);
    };
    let never = Compare { key: first.key.clone(), target: CompareTarget::Version(0), op: CompareOp::Lt };
    let compare = if succeeded { Vec::new() } else { vec![never] };
    Cow::Owned(Command::Txn(Txn { compare, ..txn }).encode())
}

#[cfg(test)]
mod tests {
    use tally_kv::{Command, Compare, CompareOp, CompareTarget, Response, Txn, TxnOp};
    use tally_node::StateMachine;
    use tally_raft::LogIndex;

    use super::RecordingKv;

    /// A put of `value` at key `t`.
    fn put(value: &[u8]) -> Vec<u8> {
        Command::Put { key: b"t".to_vec(), value: value.to_vec(), cas: None }.encode()
    }

    #[test]
    fn stale_compare_fault_takes_the_branch_of_the_state_one_entry_back() {
        // Why: the fault must break exactly one thing, the compares' view of the state, and record the command as
        // committed so the reference execution sees the difference.
        let guarded = Txn {
            compare: vec![Compare {
                key: b"t".to_vec(),
                target: CompareTarget::Value(b"2".to_vec()),
                op: CompareOp::Eq,
            }],
            success: vec![TxnOp::Get { key: b"t".to_vec() }],
            failure: Vec::new(),
        };
        let txn = Command::Txn(guarded).encode();
        let mut answers = Vec::new();
        for stale in [false, true] {
            let mut kv = RecordingKv::default().with_stale_txn_compare(stale);
            kv.apply(LogIndex(1), &put(b"1"));
            kv.apply(LogIndex(2), &put(b"2"));
            answers.push(kv.apply(LogIndex(3), &txn));
            let recorded = kv.take_applied().pop().expect("three entries applied");
            assert_eq!(recorded.command.as_deref(), Some(&txn[..]), "the original command is recorded");
        }
        assert!(matches!(answers[0], Response::Txn { succeeded: true, .. }), "{:?}", answers[0]);
        assert!(matches!(answers[1], Response::Txn { succeeded: false, .. }), "{:?}", answers[1]);
    }
}
