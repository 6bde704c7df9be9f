//! The checker on small hand-made histories: answers that match a sequential execution of the log pass, wrong
//! ones fail, whether they arrive before or after the reference reaches their index.

use std::sync::Arc;

use tally_kv::{Command, KvStore, Response, Versioned};
use tally_node::{KvQuery, KvQueryOutput};

use super::{Accounts, Observation, TxnSerializability};

/// The encoded put of `value` at `key`.
fn put(key: &str, value: &[u8]) -> Option<Arc<[u8]>> {
    let command = Command::Put { key: key.as_bytes().to_vec(), value: value.to_vec(), cas: None };
    Some(command.encode().into())
}

/// A read of `key` that returned `value` written at `modify_index` (created there, first version).
fn read(key: &str, value: Option<(&[u8], u64)>) -> Observation {
    let output = value.map(|(value, index)| Versioned {
        value: value.to_vec(),
        create_index: index,
        modify_index: index,
        version: 1,
    });
    Observation::Read { query: KvQuery::Get(key.as_bytes().to_vec()), output: KvQueryOutput::Get(output) }
}

/// A log: put x=1 at 1, a no-op at 2, put y=2 at 3, put z=3 at 4.
fn log() -> Vec<(u64, Option<Arc<[u8]>>)> {
    vec![(1, put("x", b"1")), (2, None), (3, put("y", b"2")), (4, put("z", b"3"))]
}

#[test]
fn answers_matching_the_log_pass_ahead_at_and_behind_the_reference() {
    // Why: answers reach the checker in any order relative to the reference: ahead of it (pending), at its index,
    // and behind it (a replay from a checkpoint), and the entries themselves arrive out of order.
    let mut checker = TxnSerializability::new(None);
    for (index, command) in log().into_iter().rev() {
        checker.record_apply(index, command);
    }
    checker.observe(3, Observation::Write(Response::Put { index: 3 })).expect("pending write");
    checker.observe(4, read("y", Some((b"2", 3)))).expect("pending read");
    checker.advance(2).expect("up to the no-op");
    assert_eq!(checker.applied_index(), 2);
    checker.observe(2, read("x", Some((b"1", 1)))).expect("a read at the reference's index");
    checker.advance(10).expect("the rest");
    checker.observe(1, Observation::Write(Response::Put { index: 1 })).expect("a write behind the reference");
    checker.observe(0, read("x", None)).expect("a stale read of the empty state");
    checker.observe(2, read("y", None)).expect("a stale read before y was written");
    checker.finish().expect("every answer checked");
    assert_eq!(checker.counts(), (6, 3, 0));
}

#[test]
fn a_read_of_a_state_the_log_never_had_at_its_index_fails() {
    // Why: a node answering from the wrong state (here y's value one entry too early) must be caught, both when
    // the answer waits for the reference and when it is checked on a replay.
    let mut checker = TxnSerializability::new(None);
    for (index, command) in log() {
        checker.record_apply(index, command);
    }
    checker.observe(2, read("y", Some((b"2", 3)))).expect("pending until the reference reaches 2");
    let error = checker.advance(4).expect_err("y does not exist at 2");
    assert_eq!(error.checker, "txn_serializability");
    assert!(error.detail.contains("answered at index 2"), "{}", error.detail);
    let mut checker = TxnSerializability::new(None);
    for (index, command) in log() {
        checker.record_apply(index, command);
    }
    checker.advance(4).expect("no answers yet");
    let replayed = checker.observe(3, read("z", Some((b"3", 4)))).expect_err("z does not exist at 3 either");
    assert!(replayed.detail.contains("answered at index 3"), "{}", replayed.detail);
}

#[test]
fn a_write_answered_differently_from_the_log_fails() {
    // Why: a node that applied a command differently (a cas taken as failed) answered something a sequential
    // execution of the log does not.
    let mut checker = TxnSerializability::new(None);
    for (index, command) in log() {
        checker.record_apply(index, command);
    }
    let failed = Response::CasFailed { index: 3, current_modify_index: 0 };
    checker.observe(3, Observation::Write(failed)).expect("pending");
    let error = checker.advance(4).expect_err("the entry at 3 is a plain put");
    assert!(error.detail.contains("write acknowledged at index 3"), "{}", error.detail);
}

#[test]
fn an_answer_past_a_gap_is_reported_at_the_end() {
    // Why: an answer at an index whose entry no node reported can never be checked: the end says so.
    let mut checker = TxnSerializability::new(None);
    checker.record_apply(2, put("x", b"1"));
    checker.observe(2, Observation::Write(Response::Put { index: 2 })).expect("pending");
    let error = checker.finish().expect_err("entry 1 never reported");
    assert!(error.detail.contains("entry 1 (gap)"), "{}", error.detail);
}

#[test]
fn accounts_whose_total_changes_fail() {
    // Why: transfers move amounts between accounts; an entry after which the total differs breaks atomicity.
    let keys = vec![b"a0".to_vec(), b"a1".to_vec()];
    let mut checker = TxnSerializability::new(Some(Accounts { keys, total: 20 }));
    let both = Command::Put { key: b"a0".to_vec(), value: Accounts::value(10, "c0-1"), cas: None };
    checker.record_apply(1, Some(both.encode().into()));
    let error = checker.advance(1).expect_err("one of two accounts exists");
    assert!(error.detail.contains("1 of 2 accounts"), "{}", error.detail);

    let mut store = KvStore::new();
    store.apply(1, &both.encode());
    assert_eq!(Accounts::balance(&store.get(b"a0").expect("written").value), Some(10));
}

#[test]
fn dropped_checkpoints_leave_old_answers_unchecked() {
    // Why: memory stays bounded: once no node can answer from before a checkpoint, older answers are not kept.
    let mut checker = TxnSerializability::new(None);
    for index in 1..=200 {
        checker.record_apply(index, put(&format!("k{index}"), index.to_string().as_bytes()));
    }
    checker.advance(200).expect("plain puts");
    checker.retain_from(150);
    assert_eq!(checker.checkpoints.keys().copied().collect::<Vec<_>>(), vec![128, 192]);
    assert_eq!(checker.commands.keys().next(), Some(&129));
    checker.observe(100, read("k1", Some((b"1", 1)))).expect("too old to check");
    checker.observe(130, read("k130", Some((b"130", 130)))).expect("replayed from 128");
    assert_eq!(checker.counts(), (1, 1, 1));
}
