use proptest::prelude::*;

use super::*;
use crate::{Command, DecodeError};

/// Short byte strings from a small alphabet, so keys collide and prefixes match.
fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'/'), Just(0xff)], 0..4)
}

fn arb_compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        arb_bytes().prop_map(CompareTarget::Value),
        any::<u64>().prop_map(CompareTarget::Version),
        any::<u64>().prop_map(CompareTarget::CreateIndex),
        any::<u64>().prop_map(CompareTarget::ModifyIndex),
        any::<bool>().prop_map(CompareTarget::Exists),
    ];
    let op = prop_oneof![Just(CompareOp::Eq), Just(CompareOp::Ne), Just(CompareOp::Lt), Just(CompareOp::Gt)];
    (arb_bytes(), target, op).prop_map(|(key, target, op)| Compare { key, target, op })
}

fn arb_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        (arb_bytes(), arb_bytes()).prop_map(|(key, value)| TxnOp::Put { key, value }),
        arb_bytes().prop_map(|key| TxnOp::Delete { key }),
        arb_bytes().prop_map(|prefix| TxnOp::DeletePrefix { prefix }),
        arb_bytes().prop_map(|key| TxnOp::Get { key }),
        (arb_bytes(), any::<u64>()).prop_map(|(prefix, limit)| TxnOp::List { prefix, limit }),
    ]
}

/// Any transaction the encoding can carry, well formed or not (validation is not the codec's business).
pub(crate) fn arb_txn() -> impl Strategy<Value = Txn> {
    let ops = || proptest::collection::vec(arb_op(), 0..5);
    (proptest::collection::vec(arb_compare(), 0..4), ops(), ops()).prop_map(|(compare, success, failure)| Txn {
        compare,
        success,
        failure,
    })
}

fn put(key: &str) -> TxnOp {
    TxnOp::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec() }
}

fn delete(key: &str) -> TxnOp {
    TxnOp::Delete { key: key.as_bytes().to_vec() }
}

fn delete_prefix(prefix: &str) -> TxnOp {
    TxnOp::DeletePrefix { prefix: prefix.as_bytes().to_vec() }
}

fn get(key: &str) -> TxnOp {
    TxnOp::Get { key: key.as_bytes().to_vec() }
}

fn branches(success: Vec<TxnOp>, failure: Vec<TxnOp>) -> Txn {
    Txn { compare: Vec::new(), success, failure }
}

/// The message of `txn`'s validation error.
fn refusal(txn: &Txn) -> String {
    txn.validate().expect_err("the transaction is refused").to_string()
}

#[test]
fn duplicate_write_names_the_op() {
    let txn = branches(vec![put("a"), get("a"), put("a")], Vec::new());
    assert_eq!(
        refusal(&txn),
        r#"success[2]: key "a" is written twice (first in success[0]); write each key once per branch"#
    );
    // A delete is a write too, and the failure branch is named as such.
    let txn = branches(vec![put("a")], vec![get("x"), delete("b"), put("b")]);
    assert_eq!(
        txn.validate(),
        Err(TxnError::WrittenTwice {
            at: OpPosition { list: OpList::Failure, index: 2 },
            key: b"b".to_vec(),
            first: OpPosition { list: OpList::Failure, index: 1 },
        })
    );
}

#[test]
fn a_key_may_be_written_in_both_branches() {
    let txn = branches(vec![put("a"), delete("b")], vec![put("a"), put("b")]);
    assert_eq!(txn.validate(), Ok(()));
}

#[test]
fn reads_do_not_count_as_writes() {
    let txn = branches(vec![get("a"), put("a"), get("a"), TxnOp::List { prefix: Vec::new(), limit: 3 }], Vec::new());
    assert_eq!(txn.validate(), Ok(()));
    assert!(!txn.is_read_only());
    assert!(branches(vec![get("a")], vec![TxnOp::List { prefix: b"a".to_vec(), limit: 0 }]).is_read_only());
    assert!(Txn::default().is_read_only());
}

#[test]
fn write_inside_a_deleted_prefix_is_refused_in_either_order() {
    // Phase 1: the put comes after the prefix delete.
    let txn = branches(vec![delete_prefix("a/"), put("a/1")], Vec::new());
    assert_eq!(
        refusal(&txn),
        r#"success[1]: key "a/1" is inside prefix "a/", which success[0] deletes; a branch may not both delete a prefix and write a key under it"#
    );
    // Phase 2: before it, and as a delete.
    let txn = branches(Vec::new(), vec![delete("a/1"), delete_prefix("a")]);
    assert!(matches!(txn.validate(), Err(TxnError::WriteInDeletedPrefix { prefix, .. }) if prefix == b"a"));
    // Phase 3: keys outside the prefix, overlapping prefix deletes and a prefix delete in the other branch are fine.
    let txn = branches(vec![delete_prefix("a/"), delete_prefix("a/b"), put("a"), put("b/1")], vec![put("a/1")]);
    assert_eq!(txn.validate(), Ok(()));
}

#[test]
fn empty_delete_prefix_is_refused() {
    let txn = branches(vec![get("x")], vec![delete_prefix("")]);
    assert_eq!(
        refusal(&txn),
        "failure[0]: delete_prefix needs a non-empty prefix (deleting every key at once is not offered)"
    );
}

#[test]
fn exists_takes_only_eq_and_ne() {
    let compare = |op| Compare { key: b"k".to_vec(), target: CompareTarget::Exists(true), op };
    for op in [CompareOp::Eq, CompareOp::Ne] {
        assert_eq!(Txn { compare: vec![compare(op)], ..Txn::default() }.validate(), Ok(()));
    }
    let version = Compare { key: b"k".to_vec(), target: CompareTarget::Version(1), op: CompareOp::Lt };
    let txn = Txn { compare: vec![version, compare(CompareOp::Gt)], ..Txn::default() };
    assert_eq!(refusal(&txn), "compare[1]: an exists compare takes only == or !=, not >");
}

#[test]
fn lists_over_the_hard_cap_are_refused() {
    let txn = branches((0..=TXN_OPS_MAX).map(|i| get(&i.to_string())).collect(), Vec::new());
    assert_eq!(txn.validate(), Err(TxnError::TooManyOps { list: OpList::Success, count: 1025, max: TXN_OPS_MAX }));
    let txn = branches((0..TXN_OPS_MAX).map(|i| put(&i.to_string())).collect(), Vec::new());
    assert_eq!(txn.validate(), Ok(()));
}

#[test]
fn binary_keys_are_shown_escaped() {
    let key = vec![0xff, b'a'];
    let txn = branches(vec![TxnOp::Delete { key: key.clone() }, TxnOp::Put { key, value: Vec::new() }], Vec::new());
    assert!(refusal(&txn).starts_with(r#"success[1]: key "\xffa" is written twice"#), "{}", refusal(&txn));
}

#[test]
fn compare_ops_hold_as_named() {
    assert!(CompareOp::Lt.holds(&b"ab"[..], &b"b"[..]));
    assert!(CompareOp::Gt.holds(&2u64, &1));
    assert!(!CompareOp::Gt.holds(&1u64, &1));
    assert!(CompareOp::Ne.holds(&b""[..], &b"a"[..]));
    assert!(CompareOp::Eq.holds(&0u64, &0));
}

#[test]
fn encoding_is_the_documented_layout() {
    let txn = Txn {
        compare: vec![Compare { key: b"k".to_vec(), target: CompareTarget::Exists(false), op: CompareOp::Ne }],
        success: vec![TxnOp::List { prefix: b"p".to_vec(), limit: 2 }],
        failure: Vec::new(),
    };
    let mut expected = vec![1, 7];
    expected.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0, b'k', 5, 0, 2]);
    expected.extend_from_slice(&[1, 0, 0, 0, 5, 1, 0, 0, 0, b'p', 2, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(Command::Txn(txn).encode(), expected);
}

#[test]
fn txn_decode_refuses_more_than_hard_cap() {
    // Phase 1: a count over the cap is refused at the count, before any item is read (none follow here).
    for list in 0..3 {
        let mut bytes = vec![1, 7];
        for _ in 0..list {
            bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        let count = TXN_OPS_MAX as u32 + 1;
        bytes.extend_from_slice(&count.to_le_bytes());
        let offset = 2 + 4 * list;
        let what = ["txn compares", "txn success ops", "txn failure ops"][list];
        assert_eq!(
            Command::decode(&bytes),
            Err(DecodeError::TooMany { what, count: u64::from(count), max: TXN_OPS_MAX, offset })
        );
    }
    // Phase 2: a huge count is refused the same way, not read as a truncation after allocating.
    let mut bytes = vec![1, 7];
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(Command::decode(&bytes), Err(DecodeError::TooMany { count, .. }) if count == u64::from(u32::MAX)));

    // Phase 3: exactly the cap decodes.
    let txn = branches(Vec::new(), (0..TXN_OPS_MAX).map(|_| get("k")).collect());
    assert_eq!(Command::decode(&Command::Txn(txn.clone()).encode()), Ok(Command::Txn(txn)));
}

#[test]
#[should_panic(expected = "a txn list of 1025 entries is over the cap of 1024")]
fn txn_encode_refuses_more_than_hard_cap() {
    Command::Txn(Txn { compare: Vec::new(), success: vec![get("k"); TXN_OPS_MAX + 1], failure: Vec::new() }).encode();
}

#[test]
fn txn_decode_names_bad_tags() {
    let with_compare = |tail: &[u8]| {
        let mut bytes = vec![1, 7, 1, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(tail);
        Command::decode(&bytes)
    };
    assert_eq!(with_compare(&[9]), Err(DecodeError::BadTag { what: "txn compare target", tag: 9, offset: 10 }));
    assert_eq!(with_compare(&[5, 2]), Err(DecodeError::BadTag { what: "txn exists flag", tag: 2, offset: 11 }));
    assert_eq!(with_compare(&[5, 1, 0]), Err(DecodeError::BadTag { what: "txn compare op", tag: 0, offset: 12 }));
    let bytes = [1, 7, 0, 0, 0, 0, 1, 0, 0, 0, 6];
    assert_eq!(Command::decode(&bytes), Err(DecodeError::BadTag { what: "txn op", tag: 6, offset: 10 }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn validate_matches_a_naive_check(txn in arb_txn()) {
        // Naive restatement: the rules, pair by pair.
        let branch_ok = |ops: &[TxnOp]| {
            let written: Vec<&[u8]> = ops.iter().filter_map(|op| match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } => Some(key.as_slice()),
                _ => None,
            }).collect();
            let prefixes: Vec<&[u8]> = ops.iter().filter_map(|op| match op {
                TxnOp::DeletePrefix { prefix } => Some(prefix.as_slice()),
                _ => None,
            }).collect();
            let unique = written.iter().enumerate().all(|(i, a)| written[..i].iter().all(|b| a != b));
            let outside = written.iter().all(|key| prefixes.iter().all(|prefix| !key.starts_with(prefix)));
            unique && outside && prefixes.iter().all(|prefix| !prefix.is_empty())
        };
        let compares_ok = txn.compare.iter().all(|c| {
            !matches!(c.target, CompareTarget::Exists(_)) || matches!(c.op, CompareOp::Eq | CompareOp::Ne)
        });
        let expected = compares_ok && branch_ok(&txn.success) && branch_ok(&txn.failure);
        prop_assert_eq!(txn.validate().is_ok(), expected, "{:?}", txn.validate());
    }

    #[test]
    fn random_bytes_after_a_txn_header_never_panic(
        counts in proptest::array::uniform3(0u8..3),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // Small counts, so the garbage behind them is read as compares and ops.
        let mut bytes = vec![1, 7];
        bytes.extend_from_slice(&u32::from(counts[0]).to_le_bytes());
        bytes.extend_from_slice(&tail);
        if let Ok(command) = Command::decode(&bytes) {
            prop_assert_eq!(command.encode(), bytes);
        }
        let mut bytes = vec![1, 7, counts[0], 0, 0, 0];
        bytes.extend_from_slice(&tail);
        bytes.extend_from_slice(&u32::from(counts[1]).to_le_bytes());
        bytes.extend_from_slice(&u32::from(counts[2]).to_le_bytes());
        if let Ok(command) = Command::decode(&bytes) {
            prop_assert_eq!(command.encode(), bytes);
        }
    }
}
