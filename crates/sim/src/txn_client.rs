//! The transaction workload of a simulated client (runs with [`crate::SimParams::txn_permille`] above 0).
//!
//! It works on its own keys, kept apart from the hot keys `k*` of the linearizability history (whose per-key
//! histories stay as they were): transaction keys `t0 .. tN` (with `N >= 10`, the prefix `t1` covers several)
//! and ten accounts `a0 .. a9`. Requests, in the proportions of [`TxnView::next_intent`]:
//!
//! - transfers: `modify_index ==` on two accounts as last seen, then two puts moving 1 from one to the other
//!   (the failure branch reads both back); a client that has not seen the accounts first creates them all at
//!   once, if absent ([`INITIAL_BALANCE`] each);
//! - writing transactions: random compares on every target with every operator, sometimes right (from what
//!   the client last saw), then puts, deletes and `delete_prefix("t1")`, with gets and lists after them;
//! - read-only transactions and plain lists through the read path, a quarter of them `stale`;
//! - plain prefix deletes ([`Command::DeletePrefix`]).
//!
//! Every value written is unique (it carries the client id, its request number and the op's position), and an
//! account's value is `"<balance>/<that tag>"` ([`Accounts::value`]).

use std::collections::{BTreeMap, BTreeSet};

use tally_kv::{Command, Compare, CompareOp, CompareTarget, Response, Txn, TxnOp, TxnOpResult, Versioned};
use tally_node::{KvQuery, KvQueryOutput, ReadConsistency};
use tally_raft::SplitMix64;

use crate::checkers::Accounts;

/// How many accounts transfers move amounts between.
pub const ACCOUNTS: usize = 10;
/// Each account's balance when the accounts are created.
pub const INITIAL_BALANCE: i64 = 100;
/// Most entries a list returns.
const LIST_LIMIT_MAX: u64 = 12;

/// The accounts of the workload, as the serializability checker checks them.
pub fn accounts() -> Accounts {
    Accounts { keys: (0..ACCOUNTS).map(account_key).collect(), total: ACCOUNTS as i64 * INITIAL_BALANCE }
}

/// The key of account `i`.
fn account_key(i: usize) -> Vec<u8> {
    format!("a{i}").into_bytes()
}

/// A request of the transaction workload.
#[derive(Clone, Debug)]
pub enum TxnRequest {
    /// A command proposed through the log: a transaction or a prefix delete.
    Write(Command),
    /// A query through the read path: a read-only transaction or a list.
    Read {
        /// The query.
        query: KvQuery,
        /// Linearizable, or stale (whatever the node applied).
        consistency: ReadConsistency,
    },
}

/// What a client last saw of each transaction key and account (`None`: absent); its compares and transfers
/// start from it, so they are right when nothing changed since.
#[derive(Default, Debug)]
pub struct TxnView {
    /// Key -> the key's state when last seen.
    seen: BTreeMap<Vec<u8>, Option<Versioned>>,
}

impl TxnView {
    /// Picks the next request; `keys` transaction keys exist, `tag` makes the values written unique.
    pub fn next_intent(&self, rng: &mut SplitMix64, keys: usize, tag: &str) -> (&'static str, TxnRequest) {
        let consistency = |rng: &mut SplitMix64| {
            if rng.chance(1, 4) { ReadConsistency::Stale } else { ReadConsistency::Linearizable }
        };
        match rng.range(0, 100) {
            0..30 => ("transfer", TxnRequest::Write(Command::Txn(self.transfer(rng, tag)))),
            30..60 => ("write txn", TxnRequest::Write(Command::Txn(self.write_txn(rng, keys, tag)))),
            60..80 => {
                let txn = Txn {
                    compare: (0..rng.range(0, 3)).map(|_| self.compare(rng, keys)).collect(),
                    success: read_ops(rng, keys),
                    failure: read_ops(rng, keys),
                };
                ("read-only txn", TxnRequest::Read { query: KvQuery::Txn(txn), consistency: consistency(rng) })
            }
            80..90 => {
                let prefix = [&b"t"[..], b"t1", b"a"][rng.range(0, 3) as usize].to_vec();
                let limit = rng.range(1, LIST_LIMIT_MAX) as usize;
                let query = KvQuery::Scan { prefix, after: None, limit, max_bytes: 1 << 20 };
                ("list", TxnRequest::Read { query, consistency: consistency(rng) })
            }
            _ => {
                let prefix = if rng.chance(3, 4) { b"t1".to_vec() } else { b"t".to_vec() };
                ("delete prefix", TxnRequest::Write(Command::DeletePrefix { prefix }))
            }
        }
    }

    /// Learns from an acknowledged write what it left behind.
    pub fn learn_write(&mut self, command: &Command, response: &Response) {
        match (command, response) {
            (Command::Txn(txn), Response::Txn { index, succeeded, results }) => {
                let branch = if *succeeded { &txn.success } else { &txn.failure };
                for (op, result) in branch.iter().zip(results) {
                    self.learn_op(*index, op, result);
                }
            }
            (Command::DeletePrefix { prefix }, Response::DeletePrefix { .. }) => self.forget_prefix(prefix),
            _ => {}
        }
    }

    /// Learns from an answered read what it saw.
    pub fn learn_read(&mut self, query: &KvQuery, output: &KvQueryOutput) {
        match (query, output) {
            (KvQuery::Txn(txn), KvQueryOutput::Txn { succeeded, results }) => {
                let branch = if *succeeded { &txn.success } else { &txn.failure };
                for (op, result) in branch.iter().zip(results) {
                    self.learn_op(0, op, result); // only reads: the index is not used
                }
            }
            (KvQuery::Scan { prefix, .. }, KvQueryOutput::Scan(entries, more)) => {
                self.learn_list(prefix, entries, *more)
            }
            _ => {}
        }
    }

    /// Learns from one op of a transaction applied at `index`.
    fn learn_op(&mut self, index: u64, op: &TxnOp, result: &TxnOpResult) {
        match (op, result) {
            (TxnOp::Put { key, value }, TxnOpResult::Put { version, create_index }) => {
                let written = Versioned {
                    value: value.clone(),
                    create_index: *create_index,
                    modify_index: index,
                    version: *version,
                };
                self.seen.insert(key.clone(), Some(written));
            }
            (TxnOp::Delete { key }, TxnOpResult::Delete { .. }) => {
                self.seen.insert(key.clone(), None);
            }
            (TxnOp::DeletePrefix { prefix }, TxnOpResult::DeletePrefix { .. }) => self.forget_prefix(prefix),
            (TxnOp::Get { key }, TxnOpResult::Get(value)) => {
                self.seen.insert(key.clone(), value.clone());
            }
            (TxnOp::List { prefix, .. }, TxnOpResult::List { entries, more }) => {
                self.learn_list(prefix, entries, *more)
            }
            _ => {}
        }
    }

    /// Learns a list of `prefix`: its entries, and (when it is complete) that no other key under it exists.
    fn learn_list(&mut self, prefix: &[u8], entries: &[(Vec<u8>, Versioned)], more: bool) {
        if !more {
            self.forget_prefix(prefix);
        }
        for (key, value) in entries {
            self.seen.insert(key.clone(), Some(value.clone()));
        }
    }

    /// Marks every key seen under `prefix` absent.
    fn forget_prefix(&mut self, prefix: &[u8]) {
        for (_, value) in self.seen.iter_mut().filter(|(key, _)| key.starts_with(prefix)) {
            *value = None;
        }
    }

    /// A transfer of 1 between two accounts as last seen, or (if either was never seen) the creation of every
    /// account if none exists yet.
    fn transfer(&self, rng: &mut SplitMix64, tag: &str) -> Txn {
        let from = rng.range(0, ACCOUNTS as u64) as usize;
        let to = (from + rng.range(1, ACCOUNTS as u64) as usize) % ACCOUNTS;
        let (from_key, to_key) = (account_key(from), account_key(to));
        let balance = |key: &Vec<u8>| {
            let seen = self.seen.get(key).cloned().flatten()?;
            Some((Accounts::balance(&seen.value)?, seen.modify_index))
        };
        let (Some((from_balance, from_index)), Some((to_balance, to_index))) = (balance(&from_key), balance(&to_key))
        else {
            let success = (0..ACCOUNTS)
                .map(|i| TxnOp::Put {
                    key: account_key(i),
                    value: Accounts::value(INITIAL_BALANCE, &format!("{tag}-{i}")),
                })
                .collect();
            let compare =
                vec![Compare { key: account_key(0), target: CompareTarget::Exists(false), op: CompareOp::Eq }];
            let failure = vec![TxnOp::List { prefix: b"a".to_vec(), limit: ACCOUNTS as u64 }];
            return Txn { compare, success, failure };
        };
        let unchanged = |key: &Vec<u8>, index| Compare {
            key: key.clone(),
            target: CompareTarget::ModifyIndex(index),
            op: CompareOp::Eq,
        };
        Txn {
            compare: vec![unchanged(&from_key, from_index), unchanged(&to_key, to_index)],
            success: vec![
                TxnOp::Put { key: from_key.clone(), value: Accounts::value(from_balance - 1, &format!("{tag}-0")) },
                TxnOp::Put { key: to_key.clone(), value: Accounts::value(to_balance + 1, &format!("{tag}-1")) },
            ],
            failure: vec![TxnOp::Get { key: from_key }, TxnOp::Get { key: to_key }],
        }
    }

    /// A transaction with random compares and writes in both branches (or reads in the failure branch).
    fn write_txn(&self, rng: &mut SplitMix64, keys: usize, tag: &str) -> Txn {
        let compare = (0..rng.range(0, 4)).map(|_| self.compare(rng, keys)).collect();
        let success = write_ops(rng, keys, &format!("{tag}-s"));
        let failure = if rng.chance(1, 2) { read_ops(rng, keys) } else { write_ops(rng, keys, &format!("{tag}-f")) };
        Txn { compare, success, failure }
    }

    /// A compare on a transaction key or an account, on any target with any operator; half the time its operand
    /// is what the client last saw (then mostly with `==`), else something near it.
    fn compare(&self, rng: &mut SplitMix64, keys: usize) -> Compare {
        let key =
            if rng.chance(1, 5) { account_key(rng.range(0, ACCOUNTS as u64) as usize) } else { txn_key(rng, keys) };
        let seen = self.seen.get(&key).cloned().flatten();
        let right = rng.chance(1, 2);
        let near =
            |rng: &mut SplitMix64, seen: u64| if right { seen } else { (seen + rng.range(0, 5)).saturating_sub(2) };
        let target = match rng.range(0, 5) {
            0 => CompareTarget::Value(match &seen {
                Some(versioned) if right => versioned.value.clone(),
                _ => format!("c{}-{}-s0", rng.range(0, 6), rng.range(0, 60)).into_bytes(),
            }),
            1 => CompareTarget::Version(near(rng, seen.as_ref().map_or(0, |v| v.version))),
            2 => CompareTarget::CreateIndex(near(rng, seen.as_ref().map_or(0, |v| v.create_index))),
            3 => CompareTarget::ModifyIndex(near(rng, seen.as_ref().map_or(0, |v| v.modify_index))),
            _ => CompareTarget::Exists(if right { seen.is_some() } else { rng.chance(1, 2) }),
        };
        let ops: &[CompareOp] = match target {
            CompareTarget::Exists(_) => &[CompareOp::Eq, CompareOp::Ne],
            _ => &[CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Gt],
        };
        let op = if right && rng.chance(2, 3) { CompareOp::Eq } else { ops[rng.range(0, ops.len() as u64) as usize] };
        Compare { key, target, op }
    }
}

/// One of the `keys` transaction keys.
fn txn_key(rng: &mut SplitMix64, keys: usize) -> Vec<u8> {
    format!("t{}", rng.range(0, keys as u64)).into_bytes()
}

/// A branch that writes: sometimes `delete_prefix("t1")` first, then one to three puts and deletes of distinct
/// keys outside any deleted prefix (a valid branch), sometimes followed by reads (which see the writes).
fn write_ops(rng: &mut SplitMix64, keys: usize, tag: &str) -> Vec<TxnOp> {
    let mut ops = Vec::new();
    let deleted_prefix = rng.chance(1, 6).then(|| b"t1".to_vec());
    if let Some(prefix) = &deleted_prefix {
        ops.push(TxnOp::DeletePrefix { prefix: prefix.clone() });
    }
    let mut written = BTreeSet::new();
    for position in 0..rng.range(1, 4) {
        let key = txn_key(rng, keys);
        let inside_deleted = deleted_prefix.as_ref().is_some_and(|prefix| key.starts_with(prefix));
        if inside_deleted || !written.insert(key.clone()) {
            continue;
        }
        ops.push(if rng.chance(1, 4) {
            TxnOp::Delete { key }
        } else {
            TxnOp::Put { key, value: format!("{tag}{position}").into_bytes() }
        });
    }
    if rng.chance(1, 3) {
        ops.extend(read_ops(rng, keys));
    }
    ops
}

/// One or two reads: a get of a transaction key or an account, or a list of `t`, `t1`, `a` or everything.
fn read_ops(rng: &mut SplitMix64, keys: usize) -> Vec<TxnOp> {
    (0..rng.range(1, 3))
        .map(|_| match rng.range(0, 4) {
            0 => TxnOp::Get { key: account_key(rng.range(0, ACCOUNTS as u64) as usize) },
            1 => TxnOp::Get { key: txn_key(rng, keys) },
            _ => {
                let prefix = [&b"t"[..], b"t1", b"a", b""][rng.range(0, 4) as usize].to_vec();
                TxnOp::List { prefix, limit: rng.range(0, LIST_LIMIT_MAX) }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tally_kv::{Command, KvStore, Response};
    use tally_node::{KvQueryOutput, StateMachine};
    use tally_raft::SplitMix64;

    use super::{ACCOUNTS, INITIAL_BALANCE, TxnRequest, TxnView, accounts};
    use crate::checkers::Accounts;

    #[test]
    fn a_lone_client_sends_valid_requests_and_its_transfers_keep_the_total() {
        // Why: the workload means to exercise transactions, not their refusal: every transaction it writes must
        // validate and every read must be read-only; and a client alone sees the current state, so its
        // transfers all succeed and move balances while the total stays the same.
        let seed = 7;
        let mut rng = SplitMix64::new(seed);
        let (mut view, mut store) = (TxnView::default(), KvStore::new());
        let mut transfers = 0;
        for index in 1..=2_000 {
            let (kind, request) = view.next_intent(&mut rng, 12, &format!("c0-{index}"));
            match request {
                TxnRequest::Write(command) => {
                    if let Command::Txn(txn) = &command {
                        assert_eq!(txn.validate(), Ok(()), "seed {seed}: {kind} {txn:?}");
                    }
                    let response = store.apply(index, &command.encode());
                    assert!(!matches!(response, Response::Invalid { .. }), "seed {seed}: {kind}: {response:?}");
                    if kind == "transfer" && matches!(response, Response::Txn { succeeded: true, .. }) {
                        transfers += 1;
                    }
                    view.learn_write(&command, &response);
                }
                TxnRequest::Read { query, .. } => {
                    let output = StateMachine::query(&store, &query);
                    assert!(!matches!(output, KvQueryOutput::TxnRefused(_)), "seed {seed}: {kind}: {output:?}");
                    view.learn_read(&query, &output);
                    store.skip(index);
                }
            }
        }
        let balances: Vec<i64> = accounts()
            .keys
            .iter()
            .map(|key| {
                Accounts::balance(&store.get(key).expect("created by the first transfer").value).expect("a balance")
            })
            .collect();
        assert_eq!(balances.iter().sum::<i64>(), ACCOUNTS as i64 * INITIAL_BALANCE, "seed {seed}");
        assert!(transfers > 400, "seed {seed}: only {transfers} transfers succeeded");
        assert!(balances.iter().any(|&balance| balance != INITIAL_BALANCE), "seed {seed}: {balances:?}");
    }
}
