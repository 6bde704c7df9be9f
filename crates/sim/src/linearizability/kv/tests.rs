//! Tests of the KV history check: known bugs are caught, correct histories accepted.

use super::{KvCheckReport, KvInput, KvOp, KvOutput, check_kv_history};

const BUDGET: u64 = 1_000_000;

fn op(client: u64, call: u64, ret: Option<u64>, input: KvInput, output: Option<KvOutput>) -> KvOp {
    KvOp { client, key: b"k".to_vec(), call, ret, input, output }
}

fn get(client: u64, call: u64, ret: u64, seen: Option<(&str, u64)>) -> KvOp {
    let seen = seen.map(|(value, index)| (value.as_bytes().to_vec(), index));
    op(client, call, Some(ret), KvInput::Get, Some(KvOutput::Get(seen)))
}

fn put(client: u64, call: u64, ret: u64, value: &str, index: u64) -> KvOp {
    let input = KvInput::Put { value: value.as_bytes().to_vec() };
    op(client, call, Some(ret), input, Some(KvOutput::Put { index }))
}

fn put_unknown(client: u64, call: u64, ret: Option<u64>, value: &str) -> KvOp {
    let input = KvInput::Put { value: value.as_bytes().to_vec() };
    op(client, call, ret, input, None)
}

fn delete(client: u64, call: u64, ret: u64, index: u64, deleted: bool) -> KvOp {
    let output = KvOutput::Delete { index, deleted };
    op(client, call, Some(ret), KvInput::Delete, Some(output))
}

fn delete_unknown(client: u64, call: u64) -> KvOp {
    op(client, call, None, KvInput::Delete, None)
}

fn cas(client: u64, call: u64, ret: u64, expected: u64, value: &str, result: Result<u64, ()>) -> KvOp {
    let input = KvInput::Cas { expected, value: value.as_bytes().to_vec() };
    op(client, call, Some(ret), input, Some(KvOutput::Cas(result)))
}

fn check(ops: &[KvOp]) -> KvCheckReport {
    check_kv_history(ops, BUDGET)
}

fn assert_linearizable(ops: &[KvOp]) {
    let report = check(ops);
    assert!(report.is_linearizable(), "{report}");
}

/// Asserts a violation on key "k" and returns its explanation.
fn assert_violation(ops: &[KvOp]) -> String {
    let report = check(ops);
    assert!(report.unknown_keys.is_empty(), "{report}");
    assert_eq!(report.violations.len(), 1, "{report}");
    report.violations[0].explanation.clone()
}

#[test]
fn sequential_history_is_linearizable() {
    assert_linearizable(&[
        get(1, 0, 1, None),
        put(1, 2, 3, "a", 1),
        get(2, 4, 5, Some(("a", 1))),
        cas(1, 6, 7, 1, "b", Ok(2)),
        get(2, 8, 9, Some(("b", 2))),
        delete(1, 10, 11, 3, true),
        get(2, 12, 13, None),
        delete(2, 14, 15, 4, false),
        cas(1, 16, 17, 0, "c", Ok(5)),
        cas(2, 18, 19, 2, "d", Err(())),
        get(1, 20, 21, Some(("c", 5))),
    ]);
}

#[test]
fn concurrent_put_and_get_may_linearize_either_way() {
    // The get overlaps the second put: it may see the old or the new value.
    for seen in [("a", 1), ("b", 2)] {
        assert_linearizable(&[put(1, 0, 1, "a", 1), put(1, 2, 10, "b", 2), get(2, 3, 5, Some(seen))]);
    }
    // Two overlapping puts, read after both: whichever has the larger index wins.
    assert_linearizable(&[put(1, 0, 5, "a", 2), put(2, 1, 4, "b", 1), get(3, 6, 7, Some(("a", 2)))]);
    assert_violation(&[put(1, 0, 5, "a", 2), put(2, 1, 4, "b", 1), get(3, 6, 7, Some(("b", 1)))]);
}

#[test]
fn stale_read_is_a_violation() {
    // "b" was acknowledged before the read began, yet the read returns "a".
    let explanation = assert_violation(&[put(1, 0, 1, "a", 1), put(1, 2, 3, "b", 2), get(2, 4, 5, Some(("a", 1)))]);
    assert!(explanation.contains("longest linearizable prefix found places 2 of the 3"), "{explanation}");
    assert!(explanation.contains("client 2 [call 4, ret 5] get -> \"a\" @1"), "{explanation}");
}

#[test]
fn lost_write_is_a_violation() {
    // An acknowledged put, then later reads that miss it.
    assert_violation(&[put(1, 0, 1, "a", 1), get(2, 2, 3, None)]);
    assert_violation(&[
        put(1, 0, 1, "a", 1),
        put(1, 2, 3, "b", 2),
        get(2, 4, 5, Some(("b", 2))),
        get(2, 6, 7, Some(("a", 1))),
    ]);
}

#[test]
fn cas_success_without_its_condition_is_a_violation() {
    // Sequential: both cas expected index 1, but the first changed it to 2.
    assert_violation(&[put(1, 0, 1, "a", 1), cas(1, 2, 3, 1, "b", Ok(2)), cas(2, 4, 5, 1, "c", Ok(3))]);
    // Concurrent: at most one of two cas on the same expected index can win.
    assert_violation(&[put(1, 0, 1, "a", 1), cas(1, 2, 6, 1, "b", Ok(2)), cas(2, 3, 5, 1, "c", Ok(3))]);
    // Expected absent while present.
    assert_violation(&[put(1, 0, 1, "a", 1), cas(2, 2, 3, 0, "b", Ok(2))]);
    // One winner and one loser is fine.
    assert_linearizable(&[put(1, 0, 1, "a", 1), cas(1, 2, 6, 1, "b", Ok(2)), cas(2, 3, 5, 1, "c", Err(()))]);
}

#[test]
fn cas_mismatch_while_condition_holds_is_a_violation() {
    assert_violation(&[put(1, 0, 1, "a", 1), cas(2, 2, 3, 1, "b", Err(()))]);
    assert_violation(&[cas(2, 0, 1, 0, "b", Err(()))]);
    // A concurrent write explains the mismatch.
    assert_linearizable(&[put(1, 0, 1, "a", 1), put(1, 2, 6, "c", 2), cas(2, 3, 5, 1, "b", Err(()))]);
}

#[test]
fn indeterminate_write_may_be_seen_late_or_never_but_not_undone() {
    // Not seen, then seen (long after it timed out): fine.
    assert_linearizable(&[put_unknown(1, 0, Some(1), "a"), get(2, 2, 3, None), get(2, 4, 5, Some(("a", 7)))]);
    // Never seen: fine.
    assert_linearizable(&[put_unknown(1, 0, None, "a"), get(2, 2, 3, None)]);
    // Seen, then not seen by a later read: a write cannot be undone.
    assert_violation(&[put_unknown(1, 0, None, "a"), get(2, 2, 3, Some(("a", 7))), get(2, 4, 5, None)]);
}

#[test]
fn indeterminate_write_revealed_by_a_read_keeps_index_order() {
    // "x" has index 2 (revealed by the read), so it precedes "y" (index 3), which completed
    // before the read: the read cannot see "x".
    assert_violation(&[put_unknown(1, 0, None, "x"), put(2, 1, 2, "y", 3), get(3, 3, 4, Some(("x", 2)))]);
    // With index 4 it follows "y": fine.
    assert_linearizable(&[put_unknown(1, 0, None, "x"), put(2, 1, 2, "y", 3), get(3, 3, 4, Some(("x", 4)))]);
}

#[test]
fn unobserved_indeterminate_write_can_explain_deletes_and_cas() {
    // Only the timed-out put can have made the key present for these.
    assert_linearizable(&[put_unknown(1, 0, None, "a"), delete(2, 1, 2, 3, true)]);
    assert_linearizable(&[put_unknown(1, 0, None, "a"), cas(2, 1, 2, 0, "b", Err(()))]);
    // A cas on its (unknown) index 7 succeeded.
    assert_linearizable(&[put_unknown(1, 0, None, "a"), cas(2, 1, 2, 7, "b", Ok(8)), get(2, 3, 4, Some(("b", 8)))]);
    // But not on an index below one linearized before it: "a" would follow "y" (index 9).
    assert_violation(&[
        put(3, 0, 1, "z", 7),
        put(3, 2, 3, "y", 9),
        put_unknown(1, 2, None, "a"),
        cas(2, 4, 5, 7, "b", Ok(10)),
    ]);
}

#[test]
fn writes_acknowledged_out_of_index_order_are_a_violation() {
    // w1 returned before w2 was called, but w1's index is larger.
    assert_violation(&[put(1, 0, 1, "a", 5), put(2, 2, 3, "b", 4)]);
    assert_violation(&[delete(1, 0, 1, 5, false), put(2, 2, 3, "b", 4)]);
    // Overlapping: the index decides the order.
    assert_linearizable(&[put(1, 0, 3, "a", 5), put(2, 1, 2, "b", 4)]);
}

#[test]
fn contradictory_indexes_are_a_violation() {
    let explanation = assert_violation(&[put(1, 0, 1, "a", 1), get(2, 2, 3, Some(("a", 2)))]);
    assert!(explanation.contains("two modify indexes"), "{explanation}");
    let explanation = assert_violation(&[put(1, 0, 1, "a", 1), put(2, 2, 3, "b", 1)]);
    assert!(explanation.contains("two different writes"), "{explanation}");
    let explanation = assert_violation(&[put(1, 0, 1, "a", 0)]);
    assert!(explanation.contains("index 0"), "{explanation}");
}

#[test]
fn delete_reports_whether_the_key_existed() {
    assert_linearizable(&[delete(1, 0, 1, 1, false), put(1, 2, 3, "a", 2), delete(1, 4, 5, 3, true)]);
    assert_violation(&[delete(1, 0, 1, 1, true)]);
    assert_violation(&[put(1, 0, 1, "a", 1), delete(1, 2, 3, 2, false)]);
    assert_violation(&[put(1, 0, 1, "a", 1), delete(1, 2, 3, 2, true), get(2, 4, 5, Some(("a", 1)))]);
}

#[test]
fn indeterminate_delete_may_remove_the_key_once() {
    assert_linearizable(&[put(1, 0, 1, "a", 1), delete_unknown(2, 2), get(3, 4, 5, None)]);
    assert_linearizable(&[put(1, 0, 1, "a", 1), delete_unknown(2, 2), get(3, 4, 5, Some(("a", 1)))]);
    assert_violation(&[put(1, 0, 1, "a", 1), delete_unknown(2, 2), get(3, 4, 5, None), get(3, 6, 7, Some(("a", 1)))]);
}

#[test]
fn keys_are_checked_independently() {
    // "k" is fine; "x" has a stale read. Per-key: the report names only "x".
    let mut ops = vec![put(1, 0, 1, "a", 1), get(2, 2, 3, Some(("a", 1)))];
    let mut bad = vec![put(1, 4, 5, "b", 2), put(1, 6, 7, "c", 3), get(2, 8, 9, Some(("b", 2)))];
    for op in &mut bad {
        op.key = b"x".to_vec();
    }
    ops.append(&mut bad);
    let report = check(&ops);
    assert_eq!(report.keys_checked, 2);
    assert_eq!(report.ops_checked, 5);
    assert_eq!(report.violations.len(), 1);
    assert_eq!(report.violations[0].key, b"x");
    assert!(report.has_violations());
    assert!(report.to_string().contains("key \"x\": not linearizable"), "{report}");
}

#[test]
fn exhausted_budget_reports_the_key_as_unknown() {
    let report = check_kv_history(&[put(1, 0, 1, "a", 1), get(2, 2, 3, Some(("a", 1)))], 1);
    assert_eq!(report.unknown_keys, vec![b"k".to_vec()]);
    assert!(!report.is_linearizable());
    assert!(!report.has_violations());
}

#[test]
#[should_panic(expected = "output does not answer input")]
fn mismatched_output_panics() {
    check(&[op(1, 0, Some(1), KvInput::Get, Some(KvOutput::Put { index: 1 }))]);
}

#[test]
#[should_panic(expected = "written twice")]
fn duplicate_written_values_panic() {
    check(&[put(1, 0, 1, "a", 1), put(1, 2, 3, "a", 2)]);
}

mod randomized;
mod reference;
