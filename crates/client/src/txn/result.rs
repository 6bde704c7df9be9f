//! The answer of `POST /v1/txn`: [`TxnResult`], one [`OpResult`] per op of the branch that ran, decoded from
//! `{"succeeded", "index", "results": [{"put": {...}}, ...]}`.

use serde::Deserialize;
use serde_json::Value;

use crate::codec::{WireItem, decode_item, text_or_base64};
use crate::types::KeyValue;

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether every compare held, so the `success` ops ran (else the `failure` ops did). A failed compare is
    /// not an error.
    pub succeeded: bool,
    /// The transaction's log index (for a read-only one: the applied index it reflects).
    pub index: u64,
    /// One result per op of the branch that ran, in op order.
    pub results: Vec<OpResult>,
}

/// What one op produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// The key after the write.
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its version now (1 if the put created it).
        version: u64,
        /// Its create index.
        create_index: u64,
        /// Its modify index: the transaction's index.
        modify_index: u64,
    },
    /// A delete.
    Delete {
        /// The key.
        key: Vec<u8>,
        /// Whether it existed.
        deleted: bool,
    },
    /// A prefix delete.
    DeletePrefix {
        /// The prefix.
        prefix: Vec<u8>,
        /// How many keys it removed.
        deleted: u64,
    },
    /// A read of one key.
    Get {
        /// The key.
        key: Vec<u8>,
        /// Its value and indexes (`index` is the transaction's), `None` if absent.
        entry: Option<KeyValue>,
    },
    /// A read of the keys under a prefix.
    List {
        /// The prefix.
        prefix: Vec<u8>,
        /// The keys, in byte order (`index` is the transaction's).
        items: Vec<KeyValue>,
        /// Whether more keys match (the limit, or the transaction's 4 MiB read budget, ended the list).
        more: bool,
    },
}

/// The answer as it travels.
#[derive(Deserialize)]
struct WireTxnResult {
    /// See [`TxnResult::succeeded`].
    succeeded: bool,
    /// See [`TxnResult::index`].
    index: u64,
    /// One per op.
    results: Vec<WireOpResult>,
}

/// One op's result as it travels: `{"put": {...}}` and so on.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireOpResult {
    /// A put's.
    Put(WirePut),
    /// A delete's.
    Delete(WireDelete),
    /// A prefix delete's.
    DeletePrefix(WireDeletePrefix),
    /// A get's: a page item with `found`, or only the key and `found: false`.
    Get(Value),
    /// A list's.
    List(WireList),
}

/// A key as `key` or `key_b64`.
#[derive(Deserialize)]
struct WireKey {
    /// The key, if UTF-8.
    key: Option<String>,
    /// The key in base64.
    key_b64: Option<String>,
}

/// A prefix as `prefix` or `prefix_b64`.
#[derive(Deserialize)]
struct WirePrefix {
    /// The prefix, if UTF-8.
    prefix: Option<String>,
    /// The prefix in base64.
    prefix_b64: Option<String>,
}

/// A put's result.
#[derive(Deserialize)]
struct WirePut {
    /// The key.
    #[serde(flatten)]
    key: WireKey,
    /// See [`OpResult::Put`].
    version: u64,
    /// See [`OpResult::Put`].
    create_index: u64,
    /// See [`OpResult::Put`].
    modify_index: u64,
}

/// A delete's result.
#[derive(Deserialize)]
struct WireDelete {
    /// The key.
    #[serde(flatten)]
    key: WireKey,
    /// Whether it existed.
    deleted: bool,
}

/// A prefix delete's result.
#[derive(Deserialize)]
struct WireDeletePrefix {
    /// The prefix.
    #[serde(flatten)]
    prefix: WirePrefix,
    /// How many keys went.
    deleted: u64,
}

/// A list's result.
#[derive(Deserialize)]
struct WireList {
    /// The prefix.
    #[serde(flatten)]
    prefix: WirePrefix,
    /// The keys, as in a page.
    items: Vec<WireItem>,
    /// Whether more match.
    more: bool,
}

/// Decodes the answer of `POST /v1/txn`.
///
/// # Errors
/// Malformed JSON, an unknown result, or bad base64, with a message saying which result.
pub(crate) fn decode_txn_result(body: &[u8]) -> Result<TxnResult, String> {
    let wire: WireTxnResult = serde_json::from_slice(body).map_err(|e| format!("bad transaction answer: {e}"))?;
    let index = wire.index;
    let results = wire
        .results
        .into_iter()
        .enumerate()
        .map(|(position, result)| decode_op(result, index).map_err(|e| format!("results[{position}]: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(TxnResult { succeeded: wire.succeeded, index, results })
}

/// Decodes one op's result in a transaction at `index`.
fn decode_op(result: WireOpResult, index: u64) -> Result<OpResult, String> {
    let key = |key: WireKey| text_or_base64("key", key.key, key.key_b64);
    let prefix = |prefix: WirePrefix| text_or_base64("prefix", prefix.prefix, prefix.prefix_b64);
    Ok(match result {
        WireOpResult::Put(put) => OpResult::Put {
            key: key(put.key)?,
            version: put.version,
            create_index: put.create_index,
            modify_index: put.modify_index,
        },
        WireOpResult::Delete(delete) => OpResult::Delete { key: key(delete.key)?, deleted: delete.deleted },
        WireOpResult::DeletePrefix(delete) => {
            OpResult::DeletePrefix { prefix: prefix(delete.prefix)?, deleted: delete.deleted }
        }
        WireOpResult::Get(get) => {
            if get.get("found").and_then(Value::as_bool) == Some(true) {
                let item: WireItem = serde_json::from_value(get).map_err(|e| format!("bad get result: {e}"))?;
                let entry = decode_item(item, index)?;
                OpResult::Get { key: entry.key.clone(), entry: Some(entry) }
            } else {
                let wire: WireKey = serde_json::from_value(get).map_err(|e| format!("bad get result: {e}"))?;
                OpResult::Get { key: key(wire)?, entry: None }
            }
        }
        WireOpResult::List(list) => OpResult::List {
            prefix: prefix(list.prefix)?,
            items: list.items.into_iter().map(|item| decode_item(item, index)).collect::<Result<_, _>>()?,
            more: list.more,
        },
    })
}
