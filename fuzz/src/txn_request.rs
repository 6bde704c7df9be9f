//! `txn_request`: the JSON body of `POST /v1/txn`, as the node reads it from any client ([`parse_txn`]: shape,
//! limits, [`Txn::validate`]), and the transaction it yields, applied to a [`KvStore`].
//!
//! # Input
//!
//! ```text
//! byte 0  the limits: bits 0-1 --max-txn-ops 1, 2, 4 or 128; bit 2 --max-key-bytes 8 (else 4096);
//!         bit 3 --max-value-bytes 8 (else 1 MiB)
//! rest    the body
//! ```
//!
//! # Oracles
//!
//! - A refusal is `400 bad_request` or `413 too_large`, with a message.
//! - An accepted body is a JSON object, and so is each of its compares, ops and ops' fields; its transaction has at most `--max-txn-ops` compares and ops per list,
//!   no key, prefix or value over its limit, no list asking for more than a page of keys, and passes
//!   [`Txn::validate`].
//! - An accepted transaction survives the log: its command re-encodes to bytes that decode to it, and applying
//!   it to a store answers `Txn` (never `Invalid`, unless its gets are over the read budget) with one result per
//!   op of the branch taken, and leaves the store's invariants whole.

use tally_kv::{Command, CompareTarget, KvStore, Response, Txn, TxnOp};
use tally_server::Limits;
use tally_server::txn_json_fuzzing::{LIST_LIMIT_MAX, parse_txn};

use crate::Seed;

/// The limits byte 0 chooses (see the module documentation).
fn limits(choice: u8) -> Limits {
    Limits {
        max_txn_ops: [1, 2, 4, 128][usize::from(choice & 3)],
        max_key_bytes: if choice & 4 != 0 { 8 } else { 4096 },
        max_value_bytes: if choice & 8 != 0 { 8 } else { 1 << 20 },
        ..Limits::default()
    }
}

/// Runs one input (see the module documentation); panics on a finding.
pub fn run(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else { return };
    let limits = limits(choice);
    match parse_txn(body, &limits) {
        Err(refusal) => {
            let expected = match refusal.status {
                400 => "bad_request",
                413 => "too_large",
                other => panic!("a transaction body was refused with status {other}: {refusal:?}"),
            };
            assert_eq!(refusal.code, expected, "status {} with code {}", refusal.status, refusal.code);
            assert!(!refusal.message.is_empty(), "a refusal without a message");
        }
        Ok(txn) => check_accepted(body, &txn, &limits),
    }
}

/// The oracles of an accepted body.
fn check_accepted(body: &[u8], txn: &Txn, limits: &Limits) {
    let json: serde_json::Value = serde_json::from_slice(body).expect("an accepted body is JSON");
    assert!(json.is_object(), "an accepted body is not a JSON object: {json}");
    for list in ["compare", "success", "failure"] {
        for item in json.get(list).and_then(serde_json::Value::as_array).into_iter().flatten() {
            assert!(item.is_object(), "{list} holds a non-object: {item}");
            if list != "compare" {
                assert!(
                    item.as_object().into_iter().flat_map(|op| op.values()).all(serde_json::Value::is_object),
                    "{item}"
                );
            }
        }
    }
    for (list, count) in
        [("compare", txn.compare.len()), ("success", txn.success.len()), ("failure", txn.failure.len())]
    {
        assert!(count <= limits.max_txn_ops, "{list} has {count} entries, over {}", limits.max_txn_ops);
    }
    for compare in &txn.compare {
        assert!(compare.key.len() <= limits.max_key_bytes, "a compare's key is over the limit");
        if let CompareTarget::Value(value) = &compare.target {
            assert!(value.len() <= limits.max_value_bytes, "a compare's value is over the limit");
        }
    }
    for op in txn.success.iter().chain(&txn.failure) {
        let (key, value) = match op {
            TxnOp::Put { key, value } => (key, Some(value)),
            TxnOp::Delete { key } | TxnOp::Get { key } => (key, None),
            TxnOp::DeletePrefix { prefix } => (prefix, None),
            TxnOp::List { prefix, limit } => {
                assert!(*limit <= LIST_LIMIT_MAX, "a list asks for {limit} keys");
                (prefix, None)
            }
        };
        assert!(key.len() <= limits.max_key_bytes, "{op:?}: the key is over the limit");
        assert!(value.is_none_or(|value| value.len() <= limits.max_value_bytes), "{op:?}: the value is over the limit");
    }
    txn.validate().expect("an accepted transaction is valid");

    let command = Command::Txn(txn.clone());
    let encoded = command.encode();
    assert_eq!(Command::decode(&encoded).as_ref(), Ok(&command), "the command does not decode to itself");
    let mut store = KvStore::new();
    store.apply_command(1, &Command::Put { key: b"k".to_vec(), value: b"v".to_vec(), cas: None });
    match store.apply(2, &encoded) {
        Response::Txn { index, succeeded, results } => {
            assert_eq!(index, 2, "the answer names another index");
            let branch = if succeeded { &txn.success } else { &txn.failure };
            assert_eq!(results.len(), branch.len(), "one result per op of the branch taken");
        }
        Response::Invalid { reason, .. } if reason.contains("over the limit of") => {}
        other => panic!("an accepted transaction answered {other:?}"),
    }
    store.check_invariants();
}

/// The issue's example, every compare target and op, base64 fields, and refusals of each kind.
pub fn seeds() -> Vec<Seed> {
    let bodies: [(&str, u8, &[u8]); 11] = [
        (
            "create-if-absent",
            3,
            br#"{"compare": [{"key": "acct/a", "target": "exists", "op": "==", "value": false}],
 "success": [{"put": {"key": "acct/a", "value": "100"}}, {"put": {"key": "acct/b", "value": "0"}}],
 "failure": [{"get": {"key": "acct/a"}}]}"#,
        ),
        (
            "every-target",
            3,
            br#"{"compare": [{"key": "k", "target": "value", "op": "<", "value": "w"},
 {"key": "k", "target": "version", "op": "!=", "value": 3},
 {"key": "k", "target": "create_index", "op": ">", "value": 0},
 {"key_b64": "aw==", "target": "modify_index", "op": "==", "value": 1},
 {"key": "k", "target": "value", "op": "==", "value_b64": "dg=="}]}"#,
        ),
        (
            "every-op",
            3,
            br#"{"success": [{"put": {"key": "a", "value_b64": "AP8="}}, {"delete": {"key": "k"}},
 {"delete_prefix": {"prefix": "p/"}}, {"get": {"key_b64": "YQ=="}}, {"list": {"prefix": "", "limit": 5}}],
 "failure": [{"list": {"prefix_b64": "cA=="}}]}"#,
        ),
        ("empty", 3, b"{}"),
        ("same-key-twice", 3, br#"{"success": [{"put": {"key": "a", "value": "1"}}, {"delete": {"key": "a"}}]}"#),
        ("unknown-target", 3, br#"{"compare": [{"key": "a", "target": "vers", "op": "==", "value": 1}]}"#),
        ("too-many-ops", 0, br#"{"success": [{"get": {"key": "a"}}, {"get": {"key": "b"}}]}"#),
        ("key-too-long", 4, br#"{"success": [{"get": {"key": "a-key-of-many-bytes"}}]}"#),
        ("not-an-object", 3, b"[[], [], []]"),
        ("op-fields-as-array", 3, br#"{"success": [{"put": ["k", null, "v", null]}]}"#),
        ("invalid-utf8", 3, b"{\"success\": [{\"put\": {\"key\": \"\xff\", \"value\": \"v\"}}]}"),
    ];
    bodies
        .into_iter()
        .map(|(name, choice, body)| {
            let mut bytes = vec![choice];
            bytes.extend_from_slice(body);
            Seed::new(name, bytes)
        })
        .collect()
}
