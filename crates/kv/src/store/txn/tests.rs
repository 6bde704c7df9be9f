use crate::{Command, CompareOp, TXN_OPS_MAX, Versioned};

use super::*;

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec() }
}

fn get(key: &str) -> TxnOp {
    TxnOp::Get { key: key.as_bytes().to_vec() }
}

fn list(prefix: &str, limit: u64) -> TxnOp {
    TxnOp::List { prefix: prefix.as_bytes().to_vec(), limit }
}

fn compare(key: &str, target: CompareTarget, op: CompareOp) -> Compare {
    Compare { key: key.as_bytes().to_vec(), target, op }
}

/// A store holding `keys` (each written at its position + 1 with value "v").
fn store_with(keys: &[&str]) -> KvStore {
    let mut store = KvStore::new();
    for (i, key) in keys.iter().enumerate() {
        let command = Command::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec(), cas: None };
        store.apply_command(i as u64 + 1, &command);
    }
    store
}

/// Applies `txn` at `index` and returns (succeeded, results), failing on any other response.
fn apply(store: &mut KvStore, index: u64, txn: Txn) -> (bool, Vec<TxnOpResult>) {
    match store.apply_command(index, &Command::Txn(txn)) {
        Response::Txn { index: answered, succeeded, results } => {
            assert_eq!(answered, index);
            (succeeded, results)
        }
        other => panic!("transaction answered {other:?}"),
    }
}

#[test]
fn value_compare_on_absent_key_is_false() {
    // Every op, even != and the ones an empty value would satisfy, is false on an absent key (etcd).
    let store = KvStore::new();
    for op in [CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Gt] {
        for operand in [&b""[..], b"x"] {
            let txn = Txn { compare: vec![compare("k", CompareTarget::Value(operand.to_vec()), op)], ..Txn::default() };
            assert_eq!(store.query_txn(&txn), Ok((false, Vec::new())), "value {op:?} {operand:?}");
        }
    }
    // The numeric fields of an absent key are 0, and it does not exist.
    let absent = [
        compare("k", CompareTarget::Version(0), CompareOp::Eq),
        compare("k", CompareTarget::CreateIndex(1), CompareOp::Lt),
        compare("k", CompareTarget::ModifyIndex(0), CompareOp::Eq),
        compare("k", CompareTarget::Exists(false), CompareOp::Eq),
    ];
    let txn = Txn { compare: absent.to_vec(), ..Txn::default() };
    assert_eq!(store.query_txn(&txn), Ok((true, Vec::new())));
}

#[test]
fn compares_see_the_state_before_the_entry_and_are_anded() {
    // Phase 1: on a present key, value compares order bytes; one false compare runs the failure branch.
    let mut store = store_with(&["k"]);
    let holds = compare("k", CompareTarget::Value(b"u".to_vec()), CompareOp::Gt);
    let fails = compare("k", CompareTarget::Version(2), CompareOp::Eq);
    let txn = Txn { compare: vec![holds.clone(), fails], success: vec![put("s", "1")], failure: vec![put("f", "1")] };
    let (succeeded, _) = apply(&mut store, 2, txn);
    assert!(!succeeded);
    assert!(store.get(b"f").is_some() && store.get(b"s").is_none());

    // Phase 2: the compares are evaluated once, before the branch: writing the compared key does not re-run
    // them, and the branch's own reads see its write.
    let txn = Txn {
        compare: vec![holds, compare("k", CompareTarget::ModifyIndex(1), CompareOp::Eq)],
        success: vec![put("k", "w"), get("k")],
        failure: Vec::new(),
    };
    let (succeeded, results) = apply(&mut store, 3, txn);
    assert!(succeeded);
    assert_eq!(results[0], TxnOpResult::Put { version: 2, create_index: 1 });
    assert!(matches!(&results[1], TxnOpResult::Get(Some(found)) if found.value == b"w" && found.modify_index == 3));
}

#[test]
fn txn_reads_see_earlier_writes() {
    // Phase 1: a branch that reads, writes and reads again, through every kind of write.
    let mut store = store_with(&["a", "b/1", "b/2", "d/1"]);
    let txn = Txn {
        compare: Vec::new(),
        success: vec![
            get("a"),
            put("a", "new"),
            get("a"),
            TxnOp::Delete { key: b"b/1".to_vec() },
            list("b/", 10),
            put("c", "x"),
            TxnOp::DeletePrefix { prefix: b"d/".to_vec() },
            list("", 10),
            get("d/1"),
        ],
        failure: Vec::new(),
    };
    let (succeeded, results) = apply(&mut store, 5, txn);

    // Phase 2: each read reflects the ops before it, at the transaction's one index.
    assert!(succeeded);
    let versioned = |value: &str, create_index, modify_index, version| Versioned {
        value: value.as_bytes().to_vec(),
        create_index,
        modify_index,
        version,
    };
    let b2 = (b"b/2".to_vec(), versioned("v", 3, 3, 1));
    let after = vec![(b"a".to_vec(), versioned("new", 1, 5, 2)), b2.clone(), (b"c".to_vec(), versioned("x", 5, 5, 1))];
    assert_eq!(
        results,
        [
            TxnOpResult::Get(Some(versioned("v", 1, 1, 1))),
            TxnOpResult::Put { version: 2, create_index: 1 },
            TxnOpResult::Get(Some(versioned("new", 1, 5, 2))),
            TxnOpResult::Delete { deleted: true },
            TxnOpResult::List { entries: vec![b2], more: false },
            TxnOpResult::Put { version: 1, create_index: 5 },
            TxnOpResult::DeletePrefix { deleted: 1 },
            TxnOpResult::List { entries: after.clone(), more: false },
            TxnOpResult::Get(None),
        ]
    );
    assert_eq!(store.scan(b"", None, 10), (after, false));
    store.check_invariants();
}

#[test]
fn txn_read_budget_sets_more() {
    // Phase 1: six keys of 1 MiB values; the 4 MiB budget is crossed by the fifth.
    let mut store = KvStore::new();
    let value = vec![7u8; 1 << 20];
    for i in 0..6u64 {
        let command = Command::Put { key: format!("big/{i}").into_bytes(), value: value.clone(), cas: None };
        store.apply_command(i + 1, &command);
    }
    store.apply_command(7, &Command::Put { key: b"small".to_vec(), value: b"s".to_vec(), cas: None });

    // Phase 2: the list stops after the entry that crosses the budget and says more; a later list gets no
    // entries but a true `more`, or a false one when nothing matches; a get is still answered whole.
    let txn = Txn {
        compare: Vec::new(),
        success: vec![list("big/", 100), list("small", 5), list("none", 5), get("small")],
        failure: Vec::new(),
    };
    let (_, results) = store.query_txn(&txn).expect("read only");
    let TxnOpResult::List { entries, more } = &results[0] else { panic!("{:?}", results[0]) };
    assert_eq!(entries.len(), 4);
    assert!(more);
    assert_eq!(results[1], TxnOpResult::List { entries: Vec::new(), more: true });
    assert_eq!(results[2], TxnOpResult::List { entries: Vec::new(), more: false });
    assert!(matches!(&results[3], TxnOpResult::Get(Some(found)) if found.value == b"s"));

    // Phase 3: applying it through the log gives the same answer, so every node returns the same.
    let applied = apply(&mut store, 8, txn);
    assert_eq!(applied, (true, results));

    // Phase 4: a list that fits the budget is whole.
    let (_, results) = store.query_txn(&Txn { success: vec![list("big/", 3)], ..Txn::default() }).expect("read only");
    assert!(matches!(&results[0], TxnOpResult::List { entries, more: true } if entries.len() == 3));
}

#[test]
fn invalid_txn_at_apply_writes_nothing() {
    // Phase 1: a transaction whose first ops are fine but a later one breaks a rule.
    let mut store = store_with(&["a", "b"]);
    let before = store.clone();
    let txn = Txn {
        compare: Vec::new(),
        success: vec![put("c", "1"), TxnOp::Delete { key: b"a".to_vec() }, TxnOp::DeletePrefix { prefix: Vec::new() }],
        failure: Vec::new(),
    };

    // Phase 2: refused as Invalid naming the op, nothing written, the index still consumed.
    let response = store.apply(3, &Command::Txn(txn).encode());
    let Response::Invalid { index: 3, reason } = response else { panic!("{response:?}") };
    assert_eq!(
        reason,
        "invalid transaction: success[2]: delete_prefix needs a non-empty prefix (deleting every key at once is \
         not offered)"
    );
    assert_eq!(store.scan(b"", None, 10), before.scan(b"", None, 10));
    assert_eq!(store.applied_index(), 3);

    // Phase 3: the same for a list over the hard cap, which only code (not the decoder) can build.
    let txn = Txn { success: vec![get("a"); TXN_OPS_MAX + 1], ..Txn::default() };
    assert!(matches!(store.apply_command(4, &Command::Txn(txn)), Response::Invalid { index: 4, .. }));
}

#[test]
fn query_txn_refuses_writes_by_name() {
    let store = store_with(&["a"]);
    let txn = Txn { compare: Vec::new(), success: vec![get("a")], failure: vec![get("a"), put("b", "1")] };
    let error = store.query_txn(&txn).expect_err("writes");
    assert_eq!(error, TxnError::NotReadOnly { at: OpPosition { list: OpList::Failure, index: 1 }, op: "put" });
    assert_eq!(
        error.to_string(),
        "failure[1] is a put, so the transaction writes and must go through the log, not be asked as a read"
    );
}
