//! A typed transaction builder for `POST /v1/txn` (docs/http-api.md, "Transactions") and its JSON.
//!
//! ```
//! use tally_client::{Compare, Op, Txn};
//!
//! // The issue's create-if-absent of two keys: if acct/a does not exist, create both, else read acct/a.
//! let txn = Txn::new()
//!     .when(Compare::exists("acct/a", false))
//!     .and_then(Op::put("acct/a", "100"))
//!     .and_then(Op::put("acct/b", "0"))
//!     .or_else(Op::get("acct/a"));
//! assert!(!txn.is_read_only());
//! ```
//!
//! The builder checks nothing itself: the server refuses a malformed transaction with a `400` that names the
//! compare or op (`success[1]: key "a" is written twice (first in success[0])`).

mod result;

pub(crate) use result::decode_txn_result;
pub use result::{OpResult, TxnResult};

use serde_json::{Map, Value};

use crate::codec::insert_bytes;

/// A transaction: `compare` guards (all must hold), then the `success` ops if they do, else the `failure` ops,
/// atomically at one log index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    /// The guards, ANDed; none holds.
    pub compare: Vec<Compare>,
    /// The ops run when every guard holds.
    pub success: Vec<Op>,
    /// The ops run when one does not.
    pub failure: Vec<Op>,
}

impl Txn {
    /// An empty transaction: no guard (so it succeeds), no op.
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds a guard; every guard must hold for the `success` ops to run.
    #[must_use]
    pub fn when(mut self, compare: Compare) -> Txn {
        self.compare.push(compare);
        self
    }

    /// Adds an op to run, after the ones added before, when every guard holds.
    #[must_use]
    pub fn and_then(mut self, op: Op) -> Txn {
        self.success.push(op);
        self
    }

    /// Adds an op to run, after the ones added before, when a guard does not hold.
    #[must_use]
    pub fn or_else(mut self, op: Op) -> Txn {
        self.failure.push(op);
        self
    }

    /// Whether neither branch writes: then the transaction is a read (it takes no log entry, may be asked with
    /// `consistency=stale`, and is retried like a read).
    pub fn is_read_only(&self) -> bool {
        !self.success.iter().chain(&self.failure).any(Op::is_write)
    }

    /// The request body: `{"compare": [...], "success": [...], "failure": [...]}`, keys, prefixes and values as
    /// UTF-8 strings, or base64 in `key_b64`, `prefix_b64`, `value_b64` when they are not UTF-8.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("compare".into(), self.compare.iter().map(Compare::to_json).collect());
        body.insert("success".into(), self.success.iter().map(Op::to_json).collect());
        body.insert("failure".into(), self.failure.iter().map(Op::to_json).collect());
        Value::Object(body)
    }
}

/// Whether the transaction JSON `txn` is surely read-only: every element of `success` and `failure` is a
/// `{"get": ...}` or a `{"list": ...}`. Anything else (a write, or something the server will refuse) counts as a
/// write, so it is never retried blindly.
pub(crate) fn json_is_read_only(txn: &Value) -> bool {
    let is_read = |op: &Value| {
        op.as_object().is_some_and(|op| op.len() == 1 && (op.contains_key("get") || op.contains_key("list")))
    };
    ["success", "failure"].iter().all(|branch| match txn.get(branch) {
        None => true,
        Some(ops) => ops.as_array().is_some_and(|ops| ops.iter().all(is_read)),
    })
}

/// How a key's field relates to a compare's operand: `field op operand`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`: the key's field is less than the operand.
    Lt,
    /// `>`: the key's field is greater than the operand.
    Gt,
}

impl CompareOp {
    /// The operator as the API writes it: `==`, `!=`, `<`, `>`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Gt => ">",
        }
    }
}

/// The field of a key a [`Compare`] looks at, with its operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The value's bytes (compared as bytes); a value compare on an absent key is false whatever the op.
    Value(Vec<u8>),
    /// The key's writes since it was created; 0 when absent.
    Version(u64),
    /// The index that created the key; 0 when absent.
    CreateIndex(u64),
    /// The index of the key's last write; 0 when absent.
    ModifyIndex(u64),
    /// Whether the key exists (only with `==` and `!=`).
    Exists(bool),
}

impl Target {
    /// The target's name as the API writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Value(_) => "value",
            Target::Version(_) => "version",
            Target::CreateIndex(_) => "create_index",
            Target::ModifyIndex(_) => "modify_index",
            Target::Exists(_) => "exists",
        }
    }
}

/// One guard: `key`'s `target` field compared with `op` against the operand inside `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key.
    pub key: Vec<u8>,
    /// The field and its operand.
    pub target: Target,
    /// The relation.
    pub op: CompareOp,
}

impl Compare {
    /// `key`'s `target` `op` its operand.
    pub fn new(key: impl AsRef<[u8]>, target: Target, op: CompareOp) -> Compare {
        Compare { key: key.as_ref().to_vec(), target, op }
    }

    /// Holds if `key` exists (`exists` true) or is absent (`exists` false).
    pub fn exists(key: impl AsRef<[u8]>, exists: bool) -> Compare {
        Compare::new(key, Target::Exists(exists), CompareOp::Eq)
    }

    /// Holds if `key`'s value `op` `value` (bytes); never for an absent key.
    pub fn value(key: impl AsRef<[u8]>, op: CompareOp, value: impl AsRef<[u8]>) -> Compare {
        Compare::new(key, Target::Value(value.as_ref().to_vec()), op)
    }

    /// Holds if `key`'s version `op` `version` (0 for an absent key).
    pub fn version(key: impl AsRef<[u8]>, op: CompareOp, version: u64) -> Compare {
        Compare::new(key, Target::Version(version), op)
    }

    /// Holds if `key`'s create index `op` `index` (0 for an absent key).
    pub fn create_index(key: impl AsRef<[u8]>, op: CompareOp, index: u64) -> Compare {
        Compare::new(key, Target::CreateIndex(index), op)
    }

    /// Holds if `key`'s modify index `op` `index` (0 for an absent key): `Eq` with the index a read returned
    /// is the compare-and-swap guard ("nobody wrote it since").
    pub fn modify_index(key: impl AsRef<[u8]>, op: CompareOp, index: u64) -> Compare {
        Compare::new(key, Target::ModifyIndex(index), op)
    }

    /// The compare as the API writes it: `{"key", "target", "op", "value"}`.
    fn to_json(&self) -> Value {
        let mut compare = Map::new();
        insert_bytes(&mut compare, "key", &self.key);
        compare.insert("target".into(), Value::from(self.target.name()));
        compare.insert("op".into(), Value::from(self.op.as_str()));
        match &self.target {
            Target::Value(value) => insert_bytes(&mut compare, "value", value),
            Target::Version(number) | Target::CreateIndex(number) | Target::ModifyIndex(number) => {
                compare.insert("value".into(), Value::from(*number));
            }
            Target::Exists(exists) => {
                compare.insert("value".into(), Value::from(*exists));
            }
        }
        Value::Object(compare)
    }
}

/// One operation of a branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite `key`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// Remove `key` if present.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Remove every key starting with `prefix` (not empty).
    DeletePrefix {
        /// The prefix.
        prefix: Vec<u8>,
    },
    /// Read `key` as the earlier ops of the branch left it.
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Read the keys starting with `prefix`, in byte order.
    List {
        /// The prefix (empty: every key).
        prefix: Vec<u8>,
        /// At most this many (the server's default, 100, if `None`; at most 10,000).
        limit: Option<u32>,
    },
}

impl Op {
    /// Writes `value` under `key`.
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Op {
        Op::Put { key: key.as_ref().to_vec(), value: value.as_ref().to_vec() }
    }

    /// Deletes `key`.
    pub fn delete(key: impl AsRef<[u8]>) -> Op {
        Op::Delete { key: key.as_ref().to_vec() }
    }

    /// Deletes every key starting with `prefix`.
    pub fn delete_prefix(prefix: impl AsRef<[u8]>) -> Op {
        Op::DeletePrefix { prefix: prefix.as_ref().to_vec() }
    }

    /// Reads `key`.
    pub fn get(key: impl AsRef<[u8]>) -> Op {
        Op::Get { key: key.as_ref().to_vec() }
    }

    /// Reads at most `limit` keys starting with `prefix`.
    pub fn list(prefix: impl AsRef<[u8]>, limit: u32) -> Op {
        Op::List { prefix: prefix.as_ref().to_vec(), limit: Some(limit) }
    }

    /// Whether the op changes keys.
    pub fn is_write(&self) -> bool {
        matches!(self, Op::Put { .. } | Op::Delete { .. } | Op::DeletePrefix { .. })
    }

    /// The op's name as the API writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Put { .. } => "put",
            Op::Delete { .. } => "delete",
            Op::DeletePrefix { .. } => "delete_prefix",
            Op::Get { .. } => "get",
            Op::List { .. } => "list",
        }
    }

    /// The op as the API writes it: `{"put": {"key", "value"}}` and so on.
    fn to_json(&self) -> Value {
        let mut fields = Map::new();
        match self {
            Op::Put { key, value } => {
                insert_bytes(&mut fields, "key", key);
                insert_bytes(&mut fields, "value", value);
            }
            Op::Delete { key } | Op::Get { key } => insert_bytes(&mut fields, "key", key),
            Op::DeletePrefix { prefix } => insert_bytes(&mut fields, "prefix", prefix),
            Op::List { prefix, limit } => {
                insert_bytes(&mut fields, "prefix", prefix);
                if let Some(limit) = limit {
                    fields.insert("limit".into(), Value::from(*limit));
                }
            }
        }
        let mut op = Map::new();
        op.insert(self.name().into(), Value::Object(fields));
        Value::Object(op)
    }
}

#[cfg(test)]
mod tests;
