//! The JSON body of `POST /v1/txn` (docs/http-api.md, "Transactions"): its shape and its translation into a
//! [`Txn`], checking every limit with an error that names the compare or op by its JSON path (`success[2]`).
//!
//! The three lists are parsed in two steps, first as lists of any JSON, then element by element, so that a
//! malformed element is reported with its position rather than a line and column.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::Value;
use tally_kv::{Compare, CompareOp, CompareTarget, OpList, OpPosition, Txn, TxnOp};

use super::super::error::ApiError;
use super::super::json::parse_body;
use crate::config::Limits;

/// The expected body, shown in the message of a body that does not parse.
const SHAPE: &str = r#"{"compare": [{"key": "k", "target": "value|version|create_index|modify_index|exists", "op": "==|!=|<|>", "value": ...}], "success": [{"put": {"key", "value"}} | {"delete": {"key"}} | {"delete_prefix": {"prefix"}} | {"get": {"key"}} | {"list": {"prefix", "limit"}}, ...], "failure": [...]}"#;

/// The ops a branch may hold, for messages.
const OP_SHAPE: &str = r#"{"put": {"key", "value"}}, {"delete": {"key"}}, {"delete_prefix": {"prefix"}}, {"get": {"key"}} or {"list": {"prefix", "limit"}}"#;

/// Default number of keys a `list` op returns.
const LIST_LIMIT_DEFAULT: u64 = 100;
/// The most keys a `list` op may ask for, as for a page of keys.
pub const LIST_LIMIT_MAX: u64 = 10_000;

/// The body: three lists (each may be left out: empty), their elements parsed one by one afterwards.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTxn {
    /// The guards.
    #[serde(default)]
    compare: Vec<Value>,
    /// The ops when every guard holds.
    #[serde(default)]
    success: Vec<Value>,
    /// The ops when one does not.
    #[serde(default)]
    failure: Vec<Value>,
}

/// One guard as it travels: the operand's JSON type depends on the target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCompare {
    /// The key, if UTF-8.
    key: Option<String>,
    /// The key in base64.
    key_b64: Option<String>,
    /// `value`, `version`, `create_index`, `modify_index` or `exists`.
    target: String,
    /// `==`, `!=`, `<` or `>`.
    op: String,
    /// The operand: a string, a number or a boolean, by target.
    value: Option<Value>,
    /// A value operand in base64.
    value_b64: Option<String>,
}

/// One op as it travels: `{"put": {...}}` and so on.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireOp {
    /// Write a key.
    Put(WirePut),
    /// Remove a key.
    Delete(WireKey),
    /// Remove the keys under a prefix.
    DeletePrefix(WirePrefix),
    /// Read a key.
    Get(WireKey),
    /// Read the keys under a prefix.
    List(WireList),
}

/// The fields of a `put`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePut {
    /// The key, if UTF-8.
    key: Option<String>,
    /// The key in base64.
    key_b64: Option<String>,
    /// The value, if UTF-8.
    value: Option<String>,
    /// The value in base64.
    value_b64: Option<String>,
}

/// The fields of a `delete` or `get`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireKey {
    /// The key, if UTF-8.
    key: Option<String>,
    /// The key in base64.
    key_b64: Option<String>,
}

/// The fields of a `delete_prefix`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePrefix {
    /// The prefix, if UTF-8.
    prefix: Option<String>,
    /// The prefix in base64.
    prefix_b64: Option<String>,
}

/// The fields of a `list`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireList {
    /// The prefix, if UTF-8 (default: empty, every key).
    prefix: Option<String>,
    /// The prefix in base64.
    prefix_b64: Option<String>,
    /// At most this many keys (default 100).
    limit: Option<u64>,
}

/// Parses a transaction body and checks it against `limits` and [`Txn::validate`].
///
/// # Errors
/// `400 bad_request` for a malformed body, an unknown target, op or field, too many compares or ops, or a
/// transaction [`Txn::validate`] refuses; `413 too_large` for a key or value over its limit. Every error about
/// one compare or op starts with its position (`compare[1]: ...`).
pub(crate) fn parse_txn(body: &[u8], limits: &Limits) -> Result<Txn, ApiError> {
    let wire: WireTxn = parse_body(body, "transaction", SHAPE)?;
    for (list, count) in [
        (OpList::Compare, wire.compare.len()),
        (OpList::Success, wire.success.len()),
        (OpList::Failure, wire.failure.len()),
    ] {
        if count > limits.max_txn_ops {
            let at = OpPosition { list, index: limits.max_txn_ops };
            return Err(ApiError::bad_request(format!(
                "{at}: {list} has {count} entries, over the limit of {} (--max-txn-ops); split the transaction",
                limits.max_txn_ops
            )));
        }
    }
    let position = |list, index| OpPosition { list, index };
    let compare = wire
        .compare
        .into_iter()
        .enumerate()
        .map(|(index, value)| parse_compare(position(OpList::Compare, index), value, limits))
        .collect::<Result<_, _>>()?;
    let success = wire
        .success
        .into_iter()
        .enumerate()
        .map(|(index, value)| parse_op(position(OpList::Success, index), value, limits))
        .collect::<Result<_, _>>()?;
    let failure = wire
        .failure
        .into_iter()
        .enumerate()
        .map(|(index, value)| parse_op(position(OpList::Failure, index), value, limits))
        .collect::<Result<_, _>>()?;
    let txn = Txn { compare, success, failure };
    txn.validate().map_err(|error| ApiError::bad_request(error.to_string()))?;
    Ok(txn)
}

/// `400` about the compare or op at `at`.
fn bad(at: OpPosition, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("{at}: {message}"))
}

/// `400` unless `value` is a JSON object: serde also fills a struct from an array of its fields in order.
fn require_object(at: OpPosition, value: &Value, what: &str) -> Result<(), ApiError> {
    match value {
        Value::Object(_) => Ok(()),
        other => Err(bad(at, format!("{what} must be a JSON object, not {}", json_kind(other)))),
    }
}

/// The kind of a JSON value, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One guard.
fn parse_compare(at: OpPosition, value: Value, limits: &Limits) -> Result<Compare, ApiError> {
    require_object(at, &value, "a compare")?;
    let wire: WireCompare = serde_json::from_value(value)
        .map_err(|error| bad(at, format!("{error}; a compare is {{\"key\", \"target\", \"op\", \"value\"}}")))?;
    let key = key(at, "key", wire.key, wire.key_b64, limits)?;
    let op = match wire.op.as_str() {
        "==" => CompareOp::Eq,
        "!=" => CompareOp::Ne,
        "<" => CompareOp::Lt,
        ">" => CompareOp::Gt,
        other => return Err(bad(at, format!("unknown op {other:?}; expected \"==\", \"!=\", \"<\" or \">\""))),
    };
    let target = match wire.target.as_str() {
        "value" => CompareTarget::Value(value_operand(at, wire.value, wire.value_b64, limits)?),
        "version" => CompareTarget::Version(number_operand(at, "version", wire.value, wire.value_b64)?),
        "create_index" => CompareTarget::CreateIndex(number_operand(at, "create_index", wire.value, wire.value_b64)?),
        "modify_index" => CompareTarget::ModifyIndex(number_operand(at, "modify_index", wire.value, wire.value_b64)?),
        "exists" => match (wire.value, wire.value_b64) {
            (Some(Value::Bool(exists)), None) => CompareTarget::Exists(exists),
            (value, _) => {
                return Err(bad(at, format!("an exists compare takes true or false as value, got {}", shown(&value))));
            }
        },
        other => {
            return Err(bad(
                at,
                format!(
                    "unknown target {other:?}; expected \"value\", \"version\", \"create_index\", \"modify_index\" or \
                     \"exists\""
                ),
            ));
        }
    };
    Ok(Compare { key, target, op })
}

/// The operand of a value compare: a string as `value`, or base64 as `value_b64`.
fn value_operand(
    at: OpPosition,
    value: Option<Value>,
    value_b64: Option<String>,
    limits: &Limits,
) -> Result<Vec<u8>, ApiError> {
    let text = match value {
        None => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            return Err(bad(
                at,
                format!("a value compare takes a string as value (or base64 as value_b64), got {other}"),
            ));
        }
    };
    match bytes(at, "value", text, value_b64)? {
        Some(operand) => check_value(at, operand, limits),
        None => Err(bad(at, "a value compare needs value (a string) or value_b64")),
    }
}

/// The operand of a `target` compare on a number: a non-negative integer as `value`.
fn number_operand(
    at: OpPosition,
    target: &str,
    value: Option<Value>,
    value_b64: Option<String>,
) -> Result<u64, ApiError> {
    let number = match (&value, value_b64) {
        (Some(Value::Number(number)), None) => number.as_u64(),
        _ => None,
    };
    number.ok_or_else(|| {
        bad(at, format!("a {target} compare takes a non-negative integer as value, got {}", shown(&value)))
    })
}

/// A JSON operand for a message.
fn shown(value: &Option<Value>) -> String {
    value.as_ref().map_or_else(|| "nothing (or value_b64)".to_string(), Value::to_string)
}

/// One op of a branch.
fn parse_op(at: OpPosition, value: Value, limits: &Limits) -> Result<TxnOp, ApiError> {
    require_object(at, &value, "an op")?;
    if let Some(fields) = value.as_object().and_then(|op| op.values().next()) {
        require_object(at, fields, "an op's fields")?;
    }
    let wire: WireOp =
        serde_json::from_value(value).map_err(|error| bad(at, format!("{error}; an op is one of {OP_SHAPE}")))?;
    Ok(match wire {
        WireOp::Put(put) => {
            let key = key(at, "key", put.key, put.key_b64, limits)?;
            let Some(value) = bytes(at, "value", put.value, put.value_b64)? else {
                return Err(bad(at, "a put needs value (a string) or value_b64"));
            };
            TxnOp::Put { key, value: check_value(at, value, limits)? }
        }
        WireOp::Delete(delete) => TxnOp::Delete { key: key(at, "key", delete.key, delete.key_b64, limits)? },
        WireOp::DeletePrefix(delete) => {
            let prefix = prefix(at, delete.prefix, delete.prefix_b64, limits)?;
            if prefix.is_empty() {
                return Err(bad(at, "delete_prefix needs a non-empty prefix (or prefix_b64)"));
            }
            TxnOp::DeletePrefix { prefix }
        }
        WireOp::Get(get) => TxnOp::Get { key: key(at, "key", get.key, get.key_b64, limits)? },
        WireOp::List(list) => {
            let limit = list.limit.unwrap_or(LIST_LIMIT_DEFAULT);
            if limit > LIST_LIMIT_MAX {
                return Err(bad(at, format!("limit must be at most {LIST_LIMIT_MAX}, got {limit}")));
            }
            TxnOp::List { prefix: prefix(at, list.prefix, list.prefix_b64, limits)?, limit }
        }
    })
}

/// The bytes of a `name` / `name_b64` pair, `None` if neither is given.
///
/// # Errors
/// `400` if both are given or the base64 is bad.
fn bytes(at: OpPosition, name: &str, text: Option<String>, b64: Option<String>) -> Result<Option<Vec<u8>>, ApiError> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(bad(at, format!("give {name} or {name}_b64, not both"))),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(b64)) => {
            BASE64.decode(b64).map(Some).map_err(|error| bad(at, format!("{name}_b64 is not valid base64: {error}")))
        }
        (None, None) => Ok(None),
    }
}

/// A key: given, not empty, within the key limit.
fn key(
    at: OpPosition,
    name: &str,
    text: Option<String>,
    b64: Option<String>,
    limits: &Limits,
) -> Result<Vec<u8>, ApiError> {
    let Some(key) = bytes(at, name, text, b64)? else {
        return Err(bad(at, format!("{name} (or {name}_b64) is missing")));
    };
    if key.is_empty() {
        return Err(bad(at, format!("the {name} is empty")));
    }
    check_key_length(at, "key", key, limits)
}

/// A prefix (empty if not given), within the key limit.
fn prefix(at: OpPosition, text: Option<String>, b64: Option<String>, limits: &Limits) -> Result<Vec<u8>, ApiError> {
    let prefix = bytes(at, "prefix", text, b64)?.unwrap_or_default();
    check_key_length(at, "prefix", prefix, limits)
}

/// `413` for a key or prefix over `--max-key-bytes`.
fn check_key_length(at: OpPosition, what: &str, key: Vec<u8>, limits: &Limits) -> Result<Vec<u8>, ApiError> {
    if key.len() > limits.max_key_bytes {
        return Err(ApiError::too_large(format!(
            "{at}: the {what} is {} bytes; the limit is {} (--max-key-bytes)",
            key.len(),
            limits.max_key_bytes
        )));
    }
    Ok(key)
}

/// `413` for a value over `--max-value-bytes`.
fn check_value(at: OpPosition, value: Vec<u8>, limits: &Limits) -> Result<Vec<u8>, ApiError> {
    if value.len() > limits.max_value_bytes {
        return Err(ApiError::too_large(format!(
            "{at}: the value is {} bytes; the limit is {} (--max-value-bytes)",
            value.len(),
            limits.max_value_bytes
        )));
    }
    Ok(value)
}

/// [`parse_txn`] for the `txn_request` fuzz target (`fuzz/` at the repository root), with the plain public error
/// type of the parameter parsers' wrappers. Not an API: re-exported hidden, for the fuzzer only.
#[doc(hidden)]
pub mod fuzzing {
    use tally_kv::Txn;

    pub use super::LIST_LIMIT_MAX;
    use crate::config::Limits;
    use crate::http::params::fuzzing::Refusal;

    /// See `parse_txn`.
    ///
    /// # Errors
    /// As `parse_txn`.
    pub fn parse_txn(body: &[u8], limits: &Limits) -> Result<Txn, Refusal> {
        super::parse_txn(body, limits).map_err(Refusal::from)
    }
}

#[cfg(test)]
mod tests;
