//! `kv_command`: the payload of a committed log entry, as every node decodes it: the node's entry payload
//! ([`decode_payload`]: no-op, command, membership change) and the kv [`Command`] inside a command entry,
//! applied to a [`KvStore`].
//!
//! # Input
//!
//! The bytes, decoded both as an entry payload and as a bare command.
//!
//! # Oracles
//!
//! - A decoded command or payload re-encodes to exactly its input (both encodings are canonical).
//! - Applying the bytes to a store never panics; it answers `Invalid` exactly when they do not decode or decode
//!   to a transaction that fails [`Txn::validate`]; the store keeps its invariants, and its snapshot restores to
//!   the same store.
//! - A read-only transaction asked as a query of the store before it gets the answer applying it gives.

use tally_kv::{Command, Compare, CompareOp, CompareTarget, KvStore, Response, Txn, TxnOp};
use tally_node::codec::{decode_payload, encode_payload};
use tally_raft::{EntryPayload, MembershipChange, NodeId};

use crate::Seed;

/// Runs one input (see the module documentation); panics on a finding.
pub fn run(data: &[u8]) {
    if let Ok(payload) = decode_payload(data) {
        assert!(encode_payload(&payload) == data, "entry payload {payload:?} re-encodes to other bytes");
        if let EntryPayload::Command(command) = &payload {
            check_command(command);
        }
    }
    check_command(data);
}

/// Decodes and applies `bytes` as a kv command.
fn check_command(bytes: &[u8]) {
    let decoded = Command::decode(bytes);
    if let Ok(command) = &decoded {
        assert!(command.encode() == bytes, "{command:?} re-encodes to other bytes");
    }
    let mut store = populated_store();
    let before = store.clone();
    let index = store.applied_index() + 1;
    let response = store.apply(index, bytes);
    match (&decoded, &response) {
        (Err(_), Response::Invalid { index: answered, .. }) => assert_eq!(*answered, index, "Invalid names the index"),
        (Err(error), other) => panic!("undecodable command ({error}) answered {other:?}"),
        (Ok(Command::Txn(txn)), Response::Invalid { .. }) if txn.validate().is_err() => {
            assert!(store.scan(b"", None, usize::MAX) == before.scan(b"", None, usize::MAX), "an invalid txn wrote");
        }
        (Ok(command), Response::Invalid { reason, .. }) => panic!("{command:?} answered Invalid: {reason}"),
        (Ok(Command::Txn(txn)), Response::Txn { succeeded, results, .. }) if txn.is_read_only() => {
            let answer = before.query_txn(txn);
            assert!(answer == Ok((*succeeded, results.clone())), "query {answer:?} differs from apply");
        }
        (Ok(_), _) => {}
    }
    assert_eq!(store.applied_index(), index, "applying did not advance the applied index");
    store.check_invariants();
    let restored = KvStore::restore(&store.snapshot()).expect("a store's own snapshot restores");
    assert_eq!(restored, store, "the snapshot of the store after the command restores to another store");
}

/// A store with a few keys and members, so cas conditions and deletes meet existing state.
fn populated_store() -> KvStore {
    let mut store = KvStore::new();
    let commands = [
        Command::Put { key: b"k".to_vec(), value: b"v".to_vec(), cas: None },
        Command::Put { key: b"key".to_vec(), value: vec![0, 255], cas: Some(0) },
        Command::SetMember {
            id: 1,
            peer_url: "http://127.0.0.1:7101".to_owned(),
            client_url: "http://127.0.0.1:7001".to_owned(),
            incarnation: 9,
        },
        Command::SetClusterId { cluster_id: "c0ffee".to_owned() },
    ];
    for (index, command) in (1..).zip(commands.iter()) {
        store.apply_command(index, command);
    }
    store
}

/// Transactions: every compare target and op, every op kind, read-only, and one that fails validation.
fn txns() -> [(&'static str, Txn); 3] {
    let compare = |key: &[u8], target, op| Compare { key: key.to_vec(), target, op };
    let full = Txn {
        compare: vec![
            compare(b"k", CompareTarget::Value(b"v".to_vec()), CompareOp::Eq),
            compare(b"key", CompareTarget::Version(1), CompareOp::Ne),
            compare(b"k", CompareTarget::CreateIndex(2), CompareOp::Lt),
            compare(b"key", CompareTarget::ModifyIndex(1), CompareOp::Gt),
            compare(b"absent", CompareTarget::Exists(false), CompareOp::Eq),
        ],
        success: vec![
            TxnOp::Put { key: b"new".to_vec(), value: b"n".to_vec() },
            TxnOp::Delete { key: b"k".to_vec() },
            TxnOp::DeletePrefix { prefix: b"ke".to_vec() },
            TxnOp::Get { key: b"new".to_vec() },
            TxnOp::List { prefix: Vec::new(), limit: 10 },
        ],
        failure: vec![TxnOp::Put { key: b"k".to_vec(), value: b"failed".to_vec() }],
    };
    let read_only = Txn {
        compare: vec![compare(b"k", CompareTarget::Exists(true), CompareOp::Eq)],
        success: vec![TxnOp::Get { key: b"k".to_vec() }, TxnOp::List { prefix: b"k".to_vec(), limit: 1 }],
        failure: vec![TxnOp::Get { key: b"absent".to_vec() }],
    };
    let invalid = Txn {
        compare: Vec::new(),
        success: vec![TxnOp::Put { key: b"a".to_vec(), value: Vec::new() }, TxnOp::Delete { key: b"a".to_vec() }],
        failure: Vec::new(),
    };
    [("txn", full), ("txn-read-only", read_only), ("txn-invalid", invalid)]
}

/// Every command kind, with and without cas, in text and binary; and the node's payload kinds around them.
pub fn seeds() -> Vec<Seed> {
    let commands = [
        ("put", Command::Put { key: b"k".to_vec(), value: b"hello".to_vec(), cas: None }),
        ("put-cas", Command::Put { key: b"key".to_vec(), value: b"v2".to_vec(), cas: Some(2) }),
        ("put-cas-absent", Command::Put { key: b"new".to_vec(), value: Vec::new(), cas: Some(0) }),
        ("put-binary", Command::Put { key: vec![0, 1, 0xff], value: vec![0xc3, 0x28, 0], cas: Some(u64::MAX) }),
        ("put-empty-key", Command::Put { key: Vec::new(), value: b"x".to_vec(), cas: None }),
        ("delete", Command::Delete { key: b"k".to_vec(), cas: None }),
        ("delete-cas", Command::Delete { key: b"key".to_vec(), cas: Some(2) }),
        ("delete-prefix", Command::DeletePrefix { prefix: b"k".to_vec() }),
        ("delete-prefix-binary", Command::DeletePrefix { prefix: vec![0xff, 0] }),
        (
            "set-member",
            Command::SetMember {
                id: 2,
                peer_url: "http://10.0.0.2:7101".to_owned(),
                client_url: "https://n2.example:7001".to_owned(),
                incarnation: 0x1234_5678_9abc_def0,
            },
        ),
        ("remove-member", Command::RemoveMember { id: 1 }),
        ("set-cluster-id", Command::SetClusterId { cluster_id: "prod-east-1".to_owned() }),
        ("set-cluster-id-unicode", Command::SetClusterId { cluster_id: "nœud ☃".to_owned() }),
    ];
    let mut seeds = Vec::new();
    for (name, txn) in txns() {
        seeds.push(Seed::new(name, Command::Txn(txn).encode()));
    }
    for (name, command) in &commands {
        seeds.push(Seed::new(name, command.encode()));
    }
    let payloads = [
        ("payload-noop", EntryPayload::Noop),
        ("payload-command", EntryPayload::Command(commands[1].1.encode())),
        ("payload-add-learner", EntryPayload::Membership(MembershipChange::AddLearner(NodeId(4)))),
        ("payload-add-voter", EntryPayload::Membership(MembershipChange::AddVoter(NodeId(4)))),
        ("payload-demote", EntryPayload::Membership(MembershipChange::DemoteVoter(NodeId(2)))),
        ("payload-remove", EntryPayload::Membership(MembershipChange::Remove(NodeId(u64::MAX)))),
    ];
    for (name, payload) in &payloads {
        seeds.push(Seed::new(name, encode_payload(payload)));
    }
    seeds
}
