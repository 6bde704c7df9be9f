use tally_kv::Command;

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
