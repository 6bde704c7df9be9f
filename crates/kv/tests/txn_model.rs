//! Model-based test of transactions: random transactions over a handful of keys (so compares and writes
//! collide) against a naive `BTreeMap` model written here, independently of the store: responses, read-only
//! query answers and the final state must agree.
//!
//! Values are tiny, so the transaction read budget is never reached here; `store/txn/tests.rs` covers it.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::*;
use tally_kv::{
    Command, Compare, CompareOp, CompareTarget, KvStore, Response, Txn, TxnError, TxnOp, TxnOpResult, Versioned,
};

/// What the model keeps per key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: Vec<u8>,
    create_index: u64,
    modify_index: u64,
    version: u64,
}

type Model = BTreeMap<Vec<u8>, Entry>;

const KEYS: [&str; 5] = ["a", "a/1", "a/2", "b", "b/1"];
const PREFIXES: [&str; 4] = ["a", "a/", "b/", "c"];
const VALUES: [&str; 3] = ["", "x", "y"];

/// A compare operand chosen relative to the key's state when the step runs, so compares often hold.
#[derive(Debug, Clone)]
enum Number {
    Fixed(u64),
    /// The key's current field, plus -1, 0 or +1.
    Current(i8),
}

#[derive(Debug, Clone)]
enum TargetPlan {
    Value(usize),
    Version(Number),
    CreateIndex(Number),
    ModifyIndex(Number),
    Exists(bool),
}

#[derive(Debug, Clone)]
struct ComparePlan {
    key: usize,
    target: TargetPlan,
    op: CompareOp,
}

/// One step of the workload.
#[derive(Debug, Clone)]
enum Step {
    /// A transaction through the log (encoded or not).
    Txn { compare: Vec<ComparePlan>, success: Vec<TxnOp>, failure: Vec<TxnOp>, encoded: bool },
    /// The same kind of transaction asked as a read-only query: nothing changes.
    Query { compare: Vec<ComparePlan>, success: Vec<TxnOp>, failure: Vec<TxnOp> },
    /// A plain put, so versions and indexes move between transactions.
    Put { key: usize, value: usize },
    /// Replace the store by a restore of its own snapshot.
    SnapshotRestore,
}

fn key(i: usize) -> Vec<u8> {
    KEYS[i % KEYS.len()].as_bytes().to_vec()
}

fn arb_number() -> impl Strategy<Value = Number> {
    prop_oneof![(0u64..4).prop_map(Number::Fixed), (-1i8..=1).prop_map(Number::Current)]
}

fn arb_compare() -> impl Strategy<Value = ComparePlan> {
    let target = prop_oneof![
        (0..VALUES.len()).prop_map(TargetPlan::Value),
        arb_number().prop_map(TargetPlan::Version),
        arb_number().prop_map(TargetPlan::CreateIndex),
        arb_number().prop_map(TargetPlan::ModifyIndex),
        any::<bool>().prop_map(TargetPlan::Exists),
    ];
    // Lt and Gt on exists are drawn too: validation must refuse them.
    let op = prop_oneof![4 => Just(CompareOp::Eq), 3 => Just(CompareOp::Ne), 2 => Just(CompareOp::Lt), 2 => Just(CompareOp::Gt)];
    (0..KEYS.len(), target, op).prop_map(|(key, target, op)| ComparePlan { key, target, op })
}

fn arb_op() -> impl Strategy<Value = TxnOp> {
    let value = || (0..VALUES.len()).prop_map(|i| VALUES[i].as_bytes().to_vec());
    let prefix = || (0..PREFIXES.len()).prop_map(|i| PREFIXES[i].as_bytes().to_vec());
    prop_oneof![
        4 => ((0..KEYS.len()), value()).prop_map(|(k, value)| TxnOp::Put { key: key(k), value }),
        2 => (0..KEYS.len()).prop_map(|k| TxnOp::Delete { key: key(k) }),
        1 => prefix().prop_map(|prefix| TxnOp::DeletePrefix { prefix }),
        1 => Just(TxnOp::DeletePrefix { prefix: Vec::new() }),
        3 => (0..KEYS.len()).prop_map(|k| TxnOp::Get { key: key(k) }),
        2 => (prop_oneof![prefix(), Just(Vec::new())], 0u64..4).prop_map(|(prefix, limit)| TxnOp::List { prefix, limit }),
    ]
}

fn arb_read_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        (0..KEYS.len()).prop_map(|k| TxnOp::Get { key: key(k) }),
        (prop_oneof![Just(b"a".to_vec()), Just(Vec::new())], 0u64..4)
            .prop_map(|(prefix, limit)| TxnOp::List { prefix, limit }),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    let compares = || proptest::collection::vec(arb_compare(), 0..3);
    let ops = || proptest::collection::vec(arb_op(), 0..4);
    // Queries mostly read only (to compare answers), sometimes with a write (to be refused).
    let query_ops = || prop_oneof![3 => proptest::collection::vec(arb_read_op(), 0..4), 1 => ops()];
    prop_oneof![
        6 => (compares(), ops(), ops(), any::<bool>())
            .prop_map(|(compare, success, failure, encoded)| Step::Txn { compare, success, failure, encoded }),
        2 => (compares(), query_ops(), query_ops()).prop_map(|(compare, success, failure)| Step::Query { compare, success, failure }),
        2 => (0..KEYS.len(), 0..VALUES.len()).prop_map(|(key, value)| Step::Put { key, value }),
        1 => Just(Step::SnapshotRestore),
    ]
}

/// Resolves an operand against the model.
fn number(number: &Number, current: u64) -> u64 {
    match number {
        Number::Fixed(n) => *n,
        Number::Current(delta) => current.saturating_add_signed(i64::from(*delta)),
    }
}

fn resolve(model: &Model, plan: &ComparePlan) -> Compare {
    let entry = model.get(&key(plan.key));
    let field = |f: fn(&Entry) -> u64| entry.map_or(0, f);
    let target = match &plan.target {
        TargetPlan::Value(i) => CompareTarget::Value(VALUES[*i].as_bytes().to_vec()),
        TargetPlan::Version(n) => CompareTarget::Version(number(n, field(|e| e.version))),
        TargetPlan::CreateIndex(n) => CompareTarget::CreateIndex(number(n, field(|e| e.create_index))),
        TargetPlan::ModifyIndex(n) => CompareTarget::ModifyIndex(number(n, field(|e| e.modify_index))),
        TargetPlan::Exists(b) => CompareTarget::Exists(*b),
    };
    Compare { key: key(plan.key), target, op: plan.op }
}

/// The naive well-formedness rules, pair by pair.
fn model_valid(txn: &Txn) -> bool {
    let exists_ok = txn.compare.iter().all(|c| match c.target {
        CompareTarget::Exists(_) => matches!(c.op, CompareOp::Eq | CompareOp::Ne),
        _ => true,
    });
    let branch_ok = |ops: &[TxnOp]| {
        let mut written: Vec<&[u8]> = Vec::new();
        let mut prefixes: Vec<&[u8]> = Vec::new();
        for op in ops {
            match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } => {
                    if written.contains(&key.as_slice()) {
                        return false;
                    }
                    written.push(key);
                }
                TxnOp::DeletePrefix { prefix } => {
                    if prefix.is_empty() {
                        return false;
                    }
                    prefixes.push(prefix);
                }
                TxnOp::Get { .. } | TxnOp::List { .. } => {}
            }
        }
        written.iter().all(|key| prefixes.iter().all(|prefix| !key.starts_with(prefix)))
    };
    exists_ok && branch_ok(&txn.success) && branch_ok(&txn.failure)
}

fn ordering_holds(op: CompareOp, ordering: Ordering) -> bool {
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Gt => ordering == Ordering::Greater,
    }
}

fn model_compare(model: &Model, compare: &Compare) -> bool {
    let entry = model.get(&compare.key);
    let field = |f: fn(&Entry) -> u64| entry.map_or(0, f);
    match &compare.target {
        CompareTarget::Value(value) => entry.is_some_and(|e| ordering_holds(compare.op, e.value.cmp(value))),
        CompareTarget::Version(n) => ordering_holds(compare.op, field(|e| e.version).cmp(n)),
        CompareTarget::CreateIndex(n) => ordering_holds(compare.op, field(|e| e.create_index).cmp(n)),
        CompareTarget::ModifyIndex(n) => ordering_holds(compare.op, field(|e| e.modify_index).cmp(n)),
        CompareTarget::Exists(b) => ordering_holds(compare.op, entry.is_some().cmp(b)),
    }
}

fn versioned(entry: &Entry) -> Versioned {
    Versioned {
        value: entry.value.clone(),
        create_index: entry.create_index,
        modify_index: entry.modify_index,
        version: entry.version,
    }
}

fn model_op(model: &mut Model, index: u64, op: &TxnOp) -> TxnOpResult {
    match op {
        TxnOp::Put { key, value } => {
            let (create_index, version) = model.get(key).map_or((index, 1), |e| (e.create_index, e.version + 1));
            model.insert(key.clone(), Entry { value: value.clone(), create_index, modify_index: index, version });
            TxnOpResult::Put { version, create_index }
        }
        TxnOp::Delete { key } => TxnOpResult::Delete { deleted: model.remove(key).is_some() },
        TxnOp::DeletePrefix { prefix } => {
            let before = model.len();
            model.retain(|key, _| !key.starts_with(prefix));
            TxnOpResult::DeletePrefix { deleted: (before - model.len()) as u64 }
        }
        TxnOp::Get { key } => TxnOpResult::Get(model.get(key).map(versioned)),
        TxnOp::List { prefix, limit } => {
            let matching: Vec<_> = model
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .map(|(k, e)| (k.clone(), versioned(e)))
                .collect();
            let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
            let more = matching.len() > limit;
            TxnOpResult::List { entries: matching.into_iter().take(limit).collect(), more }
        }
    }
}

/// The model's answer to `txn` at `index`: `None` if it is refused.
fn model_txn(model: &mut Model, index: u64, txn: &Txn) -> Option<(bool, Vec<TxnOpResult>)> {
    if !model_valid(txn) {
        return None;
    }
    let succeeded = txn.compare.iter().all(|c| model_compare(model, c));
    let ops = if succeeded { &txn.success } else { &txn.failure };
    let results = ops.iter().map(|op| model_op(model, index, op)).collect();
    Some((succeeded, results))
}

fn assert_same(store: &KvStore, model: &Model) -> Result<(), TestCaseError> {
    store.check_invariants();
    let (all, more) = store.scan(b"", None, usize::MAX);
    prop_assert!(!more);
    let expected: Vec<(Vec<u8>, Versioned)> = model.iter().map(|(k, e)| (k.clone(), versioned(e))).collect();
    prop_assert_eq!(all, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn txns_match_naive_model(steps in proptest::collection::vec((arb_step(), 1u64..3), 1..40)) {
        let mut store = KvStore::new();
        let mut model = Model::new();
        let mut index = 0;
        for (step, gap) in steps {
            index += gap;
            match step {
                Step::Txn { compare, success, failure, encoded } => {
                    let compare = compare.iter().map(|plan| resolve(&model, plan)).collect();
                    let txn = Txn { compare, success, failure };
                    let command = Command::Txn(txn.clone());
                    let response =
                        if encoded { store.apply(index, &command.encode()) } else { store.apply_command(index, &command) };
                    match (model_txn(&mut model, index, &txn), response) {
                        (Some((succeeded, results)), actual) => {
                            prop_assert_eq!(actual, Response::Txn { index, succeeded, results });
                        }
                        (None, Response::Invalid { index: answered, reason }) => {
                            prop_assert_eq!(answered, index);
                            prop_assert!(reason.starts_with("invalid transaction: "), "{}", reason);
                        }
                        (None, other) => prop_assert!(false, "invalid {:?} answered {:?}", txn, other),
                    }
                }
                Step::Query { compare, success, failure } => {
                    index -= gap; // no entry
                    let compare = compare.iter().map(|plan| resolve(&model, plan)).collect();
                    let txn = Txn { compare, success, failure };
                    let writes = txn.success.iter().chain(&txn.failure).any(|op| {
                        matches!(op, TxnOp::Put { .. } | TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. })
                    });
                    let answer = store.query_txn(&txn);
                    if !model_valid(&txn) {
                        prop_assert!(answer.is_err(), "invalid {:?} answered {:?}", txn, answer);
                    } else if writes {
                        prop_assert!(matches!(answer, Err(TxnError::NotReadOnly { .. })), "{:?}", answer);
                    } else {
                        let mut scratch = model.clone();
                        let expected = model_txn(&mut scratch, index, &txn);
                        prop_assert_eq!(&scratch, &model, "a read-only transaction changed the model");
                        prop_assert_eq!(answer.ok(), expected);
                    }
                }
                Step::Put { key: k, value } => {
                    let value = VALUES[value].as_bytes().to_vec();
                    store.apply_command(index, &Command::Put { key: key(k), value: value.clone(), cas: None });
                    model_op(&mut model, index, &TxnOp::Put { key: key(k), value });
                }
                Step::SnapshotRestore => {
                    index -= gap;
                    let restored = KvStore::restore(&store.snapshot());
                    prop_assert_eq!(restored.as_ref(), Ok(&store));
                    store = restored.map_err(|error| TestCaseError::fail(error.to_string()))?;
                }
            }
            assert_same(&store, &model)?;
            prop_assert_eq!(store.applied_index(), index);
        }
    }
}
