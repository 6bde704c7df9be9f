//! The answer of `POST /v1/txn`: `{"succeeded", "index", "results"}`, one result per op of the branch that ran,
//! keys and values as in a page of keys (docs/http-api.md, "Transactions").

use serde::Serialize;
use tally_kv::{Txn, TxnOp, TxnOpResult};

use super::super::kv::{PageItem, text_or_base64};

/// The answer to a transaction: `{"succeeded", "index", "results"}`.
#[derive(Serialize)]
pub(crate) struct TxnAnswer {
    /// Whether every compare held (the `success` ops ran).
    succeeded: bool,
    /// The transaction's index (for a read: the applied index it reflects).
    index: u64,
    /// One per op of the branch that ran.
    results: Vec<OpAnswer>,
}

/// What one op produced: `{"put": {...}}` and so on.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum OpAnswer {
    /// The key after the write.
    Put {
        /// The key.
        #[serde(flatten)]
        key: KeyField,
        /// Its version now.
        version: u64,
        /// Its create index.
        create_index: u64,
        /// Its modify index: the transaction's index.
        modify_index: u64,
    },
    /// Whether the key was there.
    Delete {
        /// The key.
        #[serde(flatten)]
        key: KeyField,
        /// Whether it existed.
        deleted: bool,
    },
    /// How many keys went.
    DeletePrefix {
        /// The prefix.
        #[serde(flatten)]
        prefix: PrefixField,
        /// How many keys it removed.
        deleted: u64,
    },
    /// The key's value and indexes, if present.
    Get(GetAnswer),
    /// The keys under a prefix, as in a page.
    List {
        /// The prefix.
        #[serde(flatten)]
        prefix: PrefixField,
        /// The keys, in byte order.
        items: Vec<PageItem>,
        /// Whether more keys match.
        more: bool,
    },
}

/// A `get` result: `{"found": true, key, value, indexes}` or `{key, "found": false}`.
#[derive(Serialize)]
#[serde(untagged)]
enum GetAnswer {
    /// The key is present.
    Found {
        /// Always `true`.
        found: bool,
        /// The key and its value, as in a page.
        #[serde(flatten)]
        item: PageItem,
    },
    /// The key is absent.
    Absent {
        /// The key.
        #[serde(flatten)]
        key: KeyField,
        /// Always `false`.
        found: bool,
    },
}

/// A key as `key` (UTF-8) or `key_b64`.
#[derive(Serialize)]
struct KeyField {
    /// The key, if UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// The key in base64, if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_b64: Option<String>,
}

impl KeyField {
    /// The field of `key`.
    fn new(key: &[u8]) -> KeyField {
        let (key, key_b64) = text_or_base64(key.to_vec());
        KeyField { key, key_b64 }
    }
}

/// A prefix as `prefix` (UTF-8) or `prefix_b64`.
#[derive(Serialize)]
struct PrefixField {
    /// The prefix, if UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    /// The prefix in base64, if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_b64: Option<String>,
}

impl PrefixField {
    /// The field of `prefix`.
    fn new(prefix: &[u8]) -> PrefixField {
        let (prefix, prefix_b64) = text_or_base64(prefix.to_vec());
        PrefixField { prefix, prefix_b64 }
    }
}

/// The answer of `txn` at `index`: `results` are those of the branch `succeeded` picks, one per op, in order.
///
/// # Errors
/// A message if the results do not match the branch's ops (a bug of the state machine, never expected).
pub(crate) fn answer(txn: &Txn, index: u64, succeeded: bool, results: Vec<TxnOpResult>) -> Result<TxnAnswer, String> {
    let ops = if succeeded { &txn.success } else { &txn.failure };
    if ops.len() != results.len() {
        return Err(format!("{} results for {} ops", results.len(), ops.len()));
    }
    let results = ops.iter().zip(results).map(|(op, result)| op_answer(op, result, index)).collect::<Result<_, _>>()?;
    Ok(TxnAnswer { succeeded, index, results })
}

/// What `op` produced, as `result` says, in a transaction at `index`.
fn op_answer(op: &TxnOp, result: TxnOpResult, index: u64) -> Result<OpAnswer, String> {
    Ok(match (op, result) {
        (TxnOp::Put { key, .. }, TxnOpResult::Put { version, create_index }) => {
            OpAnswer::Put { key: KeyField::new(key), version, create_index, modify_index: index }
        }
        (TxnOp::Delete { key }, TxnOpResult::Delete { deleted }) => {
            OpAnswer::Delete { key: KeyField::new(key), deleted }
        }
        (TxnOp::DeletePrefix { prefix }, TxnOpResult::DeletePrefix { deleted }) => {
            OpAnswer::DeletePrefix { prefix: PrefixField::new(prefix), deleted }
        }
        (TxnOp::Get { key }, TxnOpResult::Get(Some(versioned))) => {
            OpAnswer::Get(GetAnswer::Found { found: true, item: PageItem::new(key.clone(), versioned) })
        }
        (TxnOp::Get { key }, TxnOpResult::Get(None)) => {
            OpAnswer::Get(GetAnswer::Absent { key: KeyField::new(key), found: false })
        }
        (TxnOp::List { prefix, .. }, TxnOpResult::List { entries, more }) => OpAnswer::List {
            prefix: PrefixField::new(prefix),
            items: entries.into_iter().map(|(key, versioned)| PageItem::new(key, versioned)).collect(),
            more,
        },
        (op, result) => return Err(format!("a {} was answered with {result:?}", op.name())),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tally_kv::Versioned;

    use super::*;

    #[test]
    fn answers_have_the_documented_shape() {
        let txn = Txn {
            compare: vec![],
            success: vec![
                TxnOp::Put { key: b"a".to_vec(), value: b"1".to_vec() },
                TxnOp::Delete { key: vec![0xff] },
                TxnOp::DeletePrefix { prefix: b"tmp/".to_vec() },
                TxnOp::Get { key: b"a".to_vec() },
                TxnOp::Get { key: b"gone".to_vec() },
                TxnOp::List { prefix: b"a".to_vec(), limit: 10 },
            ],
            failure: vec![],
        };
        let versioned = Versioned { value: b"1".to_vec(), create_index: 3, modify_index: 9, version: 2 };
        let results = vec![
            TxnOpResult::Put { version: 2, create_index: 3 },
            TxnOpResult::Delete { deleted: true },
            TxnOpResult::DeletePrefix { deleted: 4 },
            TxnOpResult::Get(Some(versioned.clone())),
            TxnOpResult::Get(None),
            TxnOpResult::List { entries: vec![(b"a".to_vec(), versioned)], more: false },
        ];
        let answer = answer(&txn, 9, true, results).expect("results match the ops");
        let item = json!({"key": "a", "value": "1", "create_index": 3, "modify_index": 9, "version": 2});
        assert_eq!(
            serde_json::to_value(&answer).expect("serializes"),
            json!({"succeeded": true, "index": 9, "results": [
                {"put": {"key": "a", "version": 2, "create_index": 3, "modify_index": 9}},
                {"delete": {"key_b64": "/w==", "deleted": true}},
                {"delete_prefix": {"prefix": "tmp/", "deleted": 4}},
                {"get": {"found": true, "key": "a", "value": "1", "create_index": 3, "modify_index": 9, "version": 2}},
                {"get": {"key": "gone", "found": false}},
                {"list": {"prefix": "a", "items": [item], "more": false}},
            ]})
        );
        // The failure branch's ops are the ones paired with the results.
        assert!(super::answer(&txn, 9, false, vec![TxnOpResult::Get(None)]).is_err(), "1 result for 0 ops");
    }
}
