use tally_kv::{Command, TxnOp};

use super::*;

/// The encoding of a put of `key`.
fn put(key: &str) -> Vec<u8> {
    Command::Put { key: key.as_bytes().to_vec(), value: b"v".to_vec(), cas: None }.encode()
}

#[test]
fn delete_prefix_frees_space() {
    // A node over its quota still takes deletes of one key or of a prefix, so an operator can make room.
    let store = KvStore::new();
    let delete_prefix = Command::DeletePrefix { prefix: b"logs/".to_vec() }.encode();
    assert!(StateMachine::frees_space(&store, &delete_prefix));
    assert!(StateMachine::frees_space(&store, &Command::Delete { key: b"k".to_vec(), cas: None }.encode()));

    // Writes that grow the state, and payloads that do not decode (an empty prefix), are not deletes.
    assert!(!StateMachine::frees_space(&store, &put("k")));
    assert!(!StateMachine::frees_space(&store, &[1, 8, 0, 0, 0, 0]));
}

#[test]
fn apply_and_query_go_to_the_store() {
    let mut store = KvStore::new();
    let response = StateMachine::apply(&mut store, LogIndex(1), &put("logs/1"));
    assert_eq!(response, Response::Put { index: 1 });
    let delete_prefix = Command::DeletePrefix { prefix: b"logs/".to_vec() }.encode();
    let response = StateMachine::apply(&mut store, LogIndex(2), &delete_prefix);
    assert_eq!(response, Response::DeletePrefix { index: 2, deleted: 1 });
    assert_eq!(StateMachine::query(&store, &KvQuery::Get(b"logs/1".to_vec())), KvQueryOutput::Get(None));
}

#[test]
fn only_a_txn_that_deletes_and_never_puts_frees_space() {
    let store = KvStore::new();
    let txn = |success, failure| Command::Txn(Txn { compare: Vec::new(), success, failure }).encode();
    let delete = TxnOp::DeletePrefix { prefix: b"old/".to_vec() };
    let get = TxnOp::Get { key: b"k".to_vec() };
    let put = TxnOp::Put { key: b"k".to_vec(), value: b"v".to_vec() };
    assert!(StateMachine::frees_space(&store, &txn(vec![get.clone(), delete.clone()], Vec::new())));
    // A delete added to puts, in the same branch or the other, does not get the puts past the quota.
    assert!(!StateMachine::frees_space(&store, &txn(vec![put.clone(), delete.clone()], Vec::new())));
    assert!(!StateMachine::frees_space(&store, &txn(vec![delete], vec![put.clone()])));
    assert!(!StateMachine::frees_space(&store, &txn(vec![put], Vec::new())));
    assert!(!StateMachine::frees_space(&store, &txn(vec![get], Vec::new())));
}

#[test]
fn read_only_txn_is_a_query_and_a_writing_one_is_refused() {
    // Phase 1: a read-only transaction is answered from the state.
    let mut store = KvStore::new();
    StateMachine::apply(&mut store, LogIndex(1), &put("k"));
    let get = TxnOp::Get { key: b"k".to_vec() };
    let txn = Txn { compare: Vec::new(), success: vec![get], failure: Vec::new() };
    let KvQueryOutput::Txn { succeeded, results } = StateMachine::query(&store, &KvQuery::Txn(txn)) else {
        panic!("a read-only transaction is answered");
    };
    assert!(succeeded);
    assert!(matches!(&results[..], [TxnOpResult::Get(Some(found))] if found.value == b"v"));

    // Phase 2: one that writes is refused, naming the write, and changes nothing.
    let put = TxnOp::Put { key: b"k".to_vec(), value: b"w".to_vec() };
    let txn = Txn { compare: Vec::new(), success: Vec::new(), failure: vec![put] };
    let output = StateMachine::query(&store, &KvQuery::Txn(txn));
    assert!(matches!(&output, KvQueryOutput::TxnRefused(TxnError::NotReadOnly { op: "put", .. })), "{output:?}");
    assert_eq!(store.get(b"k").map(|v| v.value.clone()), Some(b"v".to_vec()));
}

#[test]
fn restore_keeps_this_nodes_history_window() {
    // The sender keeps a large window; the receiver's own, smaller one applies to what it installs.
    let mut leader = KvStore::new();
    for index in 1..=10 {
        StateMachine::apply(&mut leader, LogIndex(index), &put(&format!("k{index}")));
    }
    let limits = tally_kv::HistoryLimits { entries_max: 4, bytes_max: usize::MAX };
    let mut follower = KvStore::with_history_limits(limits);
    StateMachine::restore(&mut follower, &StateMachine::snapshot(&leader)).expect("restores");
    assert_eq!(follower.history().limits(), limits);
    assert_eq!((follower.history().covered_from(), follower.history().len()), (7, 4));
    assert_eq!(StateMachine::state_checksum(&follower), StateMachine::state_checksum(&leader));
}

#[test]
fn applied_query_answers_nothing_but_the_index() {
    // The watch's read index comes from the read's `Reply::Read { index }`: the query itself reads no state.
    let mut store = KvStore::new();
    StateMachine::apply(&mut store, LogIndex(1), &put("a"));
    assert_eq!(StateMachine::query(&store, &KvQuery::Applied), KvQueryOutput::Applied);
}
