//! Transaction serializability (Raft §5.3 and §8: every node applies one sequence of commands, the log's, so
//! every answer must be that of a sequential execution of the committed log). A reference state machine (the
//! real [`KvStore`], unwrapped, with no fault switch) is fed the **original** committed commands in index order.
//! Then:
//!
//! - every acknowledged write (key write, transaction, prefix delete, auth command) answered at index `i` got
//!   exactly the response the reference gives for the entry at `i`;
//! - every read (get, list, read-only transaction) answered at index `i` equals the same query asked of the
//!   reference at exactly `i` (after entry `i`, before entry `i + 1`), whatever its consistency level: a stale
//!   read must still be a state the log really went through;
//! - the account keys of the transfer workload keep a constant total after every entry.
//!
//! Together with [`super::RealTimeOrder`] (index order agrees with real time) this gives strict
//! serializability of multi-key operations without a search.
//!
//! # Incremental, bounded memory
//!
//! ```text
//!  nodes' applied entries ──record_apply──▶ commands (index → original command)
//!                                                 │ contiguous, up to the floor the simulator gives
//!  answers ──observe──▶ pending (index → answers) │
//!           (index ahead of the reference)        ▼
//!                                 reference KvStore ──apply(i)──▶ check every pending answer at i, drop it
//!           (index the reference passed)          │ every CHECKPOINT_INTERVAL entries
//!  answers ──observe──▶ replay: checkpoint ≤ i ──▶ checkpoints (copies of the reference)
//!                        + commands up to i
//! ```
//!
//! The simulator holds the reference back to the slowest running node that has caught up with it, so most
//! answers arrive ahead of it and are checked as it passes their index. Answers from a node that restarted
//! behind it (a stale read while the node replays its log) are checked on a copy replayed from the newest
//! checkpoint at or below their index. Checked answers are dropped at once; checkpoints and commands are kept
//! only from the oldest state a node could still answer from ([`TxnSerializability::retain_from`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use tally_kv::{ChangeBatch, HistoryLimits, KvStore, Response};
use tally_node::{KvQuery, KvQueryOutput, StateMachine};

use super::{Check, violation};
use crate::show::readable;

/// The reference keeps a copy of itself every this many applied entries (the starting points of replays).
const CHECKPOINT_INTERVAL: u64 = 64;

/// The reference's own watch history keeps only the newest entry: each entry's changes are handed out as it is
/// applied ([`TxnSerializability::take_new_changes`]), and a short history keeps checkpoints cheap to copy.
const REFERENCE_HISTORY: HistoryLimits = HistoryLimits { entries_max: 1, bytes_max: 1 };

/// What a client learned from an operation answered at some index.
#[derive(Clone, Debug)]
pub enum Observation {
    /// An acknowledged write: the response of the entry at its index.
    Write(Response),
    /// An answered read: the query and its answer, from the state applied up to its index.
    Read {
        /// What was asked.
        query: KvQuery,
        /// What the node answered.
        output: KvQueryOutput,
    },
}

/// The accounts of the transfer workload: keys whose values hold a balance (`"<balance>/<tag>"`, the tag keeping
/// values unique per write). They are created together, never deleted, and transfers move amounts between them,
/// so after every entry either none exists or all do with balances summing to `total`.
#[derive(Clone, Debug)]
pub struct Accounts {
    /// The account keys.
    pub keys: Vec<Vec<u8>>,
    /// The sum of the balances once the accounts exist.
    pub total: i64,
}

impl Accounts {
    /// The value of an account holding `balance`, made unique by `tag`.
    pub fn value(balance: i64, tag: &str) -> Vec<u8> {
        format!("{balance}/{tag}").into_bytes()
    }

    /// The balance an account value holds, if it is one.
    pub fn balance(value: &[u8]) -> Option<i64> {
        let text = std::str::from_utf8(value).ok()?;
        text.split_once('/')?.0.parse().ok()
    }
}

/// The reference execution of the committed log and the answers still waiting for it.
pub struct TxnSerializability {
    /// The real state machine, fed the original committed commands in index order.
    reference: KvStore,
    /// Committed commands (`None`: an entry without one, a no-op or membership change), by index: those ahead of
    /// the reference (buffered until contiguous) and those after the oldest checkpoint (for replays).
    commands: BTreeMap<u64, Option<Arc<[u8]>>>,
    /// Copies of the reference at some applied indexes. Invariant: every command after the oldest one, up to
    /// the reference's applied index, is in `commands`.
    checkpoints: BTreeMap<u64, KvStore>,
    /// Answers at indexes the reference has not reached yet, checked (and dropped) as it applies each index.
    pending: BTreeMap<u64, Vec<Observation>>,
    /// The transfer workload's accounts, if the run has one.
    accounts: Option<Accounts>,
    /// Answers checked.
    checked: u64,
    /// Of the answers checked, those checked on a replayed copy (the reference had passed their index).
    replayed: u64,
    /// Answers at an index older than every checkpoint kept (not checked).
    unchecked: u64,
    /// The key changes of the entries the reference applied since the last [`TxnSerializability::take_new_changes`],
    /// in index order: the committed changes, for the watch checker.
    new_changes: Vec<Arc<ChangeBatch>>,
}

impl TxnSerializability {
    /// A checker whose reference starts empty (index 0); `accounts` when the run transfers between accounts.
    pub fn new(accounts: Option<Accounts>) -> TxnSerializability {
        let reference = KvStore::with_history_limits(REFERENCE_HISTORY);
        TxnSerializability {
            commands: BTreeMap::new(),
            checkpoints: BTreeMap::from([(0, reference.clone())]),
            reference,
            pending: BTreeMap::new(),
            accounts,
            checked: 0,
            replayed: 0,
            unchecked: 0,
            new_changes: Vec::new(),
        }
    }

    /// The index the reference has applied.
    pub fn applied_index(&self) -> u64 {
        self.reference.applied_index()
    }

    /// The key changes of the entries the reference applied since the last call, in index order (entries that
    /// changed no key have none).
    pub fn take_new_changes(&mut self) -> Vec<Arc<ChangeBatch>> {
        std::mem::take(&mut self.new_changes)
    }

    /// Answers checked so far, how many of them on a replayed copy, and answers too old to check (older than
    /// every checkpoint kept).
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.checked, self.replayed, self.unchecked)
    }

    /// Records the committed command some node applied at `index` (`None` for an entry without one). The first
    /// report of an index is kept: the state machine safety checker sees that every node applied the same.
    pub fn record_apply(&mut self, index: u64, command: Option<Arc<[u8]>>) {
        if index > self.reference.applied_index() {
            self.commands.entry(index).or_insert(command);
        }
    }

    /// Checks what a client learned at `index`: at once if the reference passed that index (on a replayed
    /// copy), else when it gets there.
    ///
    /// # Errors
    /// The answer differs from the reference's at `index`.
    pub fn observe(&mut self, index: u64, observation: Observation) -> Check {
        let applied = self.reference.applied_index();
        if index > applied {
            self.pending.entry(index).or_default().push(observation);
            return Ok(());
        }
        if index == applied
            && let Observation::Read { .. } = observation
        {
            self.checked += 1;
            return compare(index, &observation, None, &self.reference);
        }
        self.check_past(index, &observation)
    }

    /// Applies the buffered commands to the reference, in order, up to `target` or the first index no node has
    /// reported yet, checking the answers pending at each index.
    ///
    /// # Errors
    /// An answer differs from the reference's, or the accounts' total changed.
    pub fn advance(&mut self, target: u64) -> Check {
        while self.reference.applied_index() < target {
            let next = self.reference.applied_index() + 1;
            let Some(command) = self.commands.get(&next).cloned() else { break };
            self.apply_next(next, command.as_deref())?;
        }
        Ok(())
    }

    /// Drops the checkpoints and commands no replay can need any more: every node's answers will come from the
    /// state at `floor` or later (the oldest snapshot a node could restart from).
    pub fn retain_from(&mut self, floor: u64) {
        let floor = floor.min(self.reference.applied_index());
        let Some(&keep) = self.checkpoints.range(..=floor).next_back().map(|(index, _)| index) else { return };
        while let Some(oldest) = self.checkpoints.first_entry()
            && *oldest.key() < keep
        {
            oldest.remove();
        }
        while let Some(oldest) = self.commands.first_entry()
            && *oldest.key() <= keep
        {
            oldest.remove();
        }
    }

    /// At the end of the run: applies everything reported, then every answer must have been checked.
    ///
    /// # Errors
    /// An answer differs from the reference's, or answers wait on an index no node ever reported applying.
    pub fn finish(&mut self) -> Check {
        self.advance(u64::MAX)?;
        let Some((&first, _)) = self.pending.first_key_value() else { return Ok(()) };
        let waiting: usize = self.pending.values().map(Vec::len).sum();
        let gap = self.reference.applied_index() + 1;
        violation(
            "txn_serializability",
            format!(
                "{waiting} answers at index {first} and later were never checked: no node reported applying entry \
                 {gap} (gap)"
            ),
        )
    }

    /// Applies entry `index` to the reference, keeps a checkpoint if due, and checks the answers pending at it.
    fn apply_next(&mut self, index: u64, command: Option<&[u8]>) -> Check {
        let response = match command {
            Some(bytes) => Some(self.reference.apply(index, bytes)),
            None => {
                self.reference.skip(index);
                None
            }
        };
        assert_eq!(self.reference.applied_index(), index, "the reference skipped an entry");
        if let Some(changes) = self.reference.history().batches_from(index).next() {
            self.new_changes.push(Arc::clone(changes));
        }
        if index % CHECKPOINT_INTERVAL == 0 {
            self.checkpoints.insert(index, self.reference.clone());
        }
        if response.is_some() {
            self.check_accounts(index)?;
        }
        for observation in self.pending.remove(&index).unwrap_or_default() {
            self.checked += 1;
            compare(index, &observation, response.as_ref(), &self.reference)?;
        }
        Ok(())
    }

    /// Checks an answer at `index`, which the reference has passed, on a copy replayed from a checkpoint.
    fn check_past(&mut self, index: u64, observation: &Observation) -> Check {
        let before = match observation {
            Observation::Write(_) => index.checked_sub(1),
            Observation::Read { .. } => Some(index),
        };
        let Some(mut state) = before.and_then(|before| self.replay(before)) else {
            self.unchecked += 1;
            return Ok(());
        };
        let response = match observation {
            Observation::Write(_) => {
                let command = self.commands.get(&index).expect("replayed up to the index before");
                command.as_deref().map(|bytes| state.apply(index, bytes))
            }
            Observation::Read { .. } => None,
        };
        self.checked += 1;
        self.replayed += 1;
        compare(index, observation, response.as_ref(), &state)
    }

    /// A copy of the reference as it was at `index` (at most its applied index), replayed from the newest
    /// checkpoint at or below it; `None` if every such checkpoint was dropped.
    fn replay(&self, index: u64) -> Option<KvStore> {
        assert!(index <= self.reference.applied_index(), "replay to {index}, ahead of the reference");
        let (&from, checkpoint) = self.checkpoints.range(..=index).next_back()?;
        let mut state = checkpoint.clone();
        for next in from + 1..=index {
            match self.commands.get(&next).unwrap_or_else(|| panic!("command {next} dropped after checkpoint {from}")) {
                Some(bytes) => {
                    state.apply(next, bytes);
                }
                None => state.skip(next),
            }
        }
        Some(state)
    }

    /// The accounts after entry `index`: none, or all with the constant total.
    fn check_accounts(&self, index: u64) -> Check {
        let Some(accounts) = &self.accounts else { return Ok(()) };
        let mut present = 0;
        let mut total = 0;
        for key in &accounts.keys {
            let Some(versioned) = self.reference.get(key) else { continue };
            let Some(balance) = Accounts::balance(&versioned.value) else {
                let value = String::from_utf8_lossy(&versioned.value);
                let key = String::from_utf8_lossy(key);
                return violation("txn_serializability", format!("after entry {index} account {key} holds {value:?}"));
            };
            present += 1;
            total += balance;
        }
        if present == 0 || (present == accounts.keys.len() && total == accounts.total) {
            return Ok(());
        }
        let expected = accounts.total;
        let detail = format!(
            "after entry {index} {present} of {} accounts exist with a total of {total} (expected none, or all \
             with {expected})",
            accounts.keys.len()
        );
        violation("txn_serializability", detail)
    }
}

/// Compares an answer at `index` with the reference: a write with `response` (the reference's answer to the
/// entry at `index`, `None` if it holds no command), a read with `state` (the reference as of `index`).
fn compare(index: u64, observation: &Observation, response: Option<&Response>, state: &KvStore) -> Check {
    match observation {
        Observation::Write(answered) => match response {
            Some(expected) if expected == answered => Ok(()),
            Some(expected) => violation(
                "txn_serializability",
                readable(&format!(
                    "write acknowledged at index {index} answered {answered:?}, but executing the committed log in \
                     index order answers {expected:?}"
                )),
            ),
            None => violation(
                "txn_serializability",
                format!("write acknowledged at index {index} ({answered:?}), where the log holds no command"),
            ),
        },
        Observation::Read { query, output } => {
            let expected = StateMachine::query(state, query);
            if expected == *output {
                return Ok(());
            }
            violation(
                "txn_serializability",
                readable(&format!(
                    "read {query:?} answered at index {index} returned {output:?}, but the committed log up to \
                     {index} gives {expected:?}"
                )),
            )
        }
    }
}

#[cfg(test)]
mod tests;
