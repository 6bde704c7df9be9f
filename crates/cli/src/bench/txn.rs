//! The `txn` workload: a transfer of 1 between two random accounts, as a client of an account store would do it.
//!
//! ```text
//!  read:  POST /v1/txn {"success": [get A, get B]}             one read-only txn (no log entry; --consistency)
//!  write: POST /v1/txn {"compare": [mod(A) == a, mod(B) == b],  one log entry; the compares fail if another
//!                       "success": [put A = x-1, put B = y+1]}   transfer wrote A or B in between: a retry
//! ```
//!
//! The accounts are `bench/acct/0..keys`, preloaded with [`OPENING_BALANCE`]. Their sum never changes. The read
//! may be `stale` (`--consistency stale`: answered from the leader's state, no ReadIndex round): the compares
//! still refuse a transfer computed from an outdated balance, which then shows as a retry.

use bytes::Bytes;
use serde::Deserialize;

use super::Outcome;
use super::conn::{CallError, Connection};

/// The prefix of the accounts.
pub(super) const ACCOUNT_PREFIX: &str = "bench/acct/";
/// What each account holds after the preload.
pub(super) const OPENING_BALANCE: &str = "1000";

/// The key of account `index`.
pub(super) fn account(index: u64) -> String {
    format!("{ACCOUNT_PREFIX}{index}")
}

/// One account as read: its balance and the modify index a compare must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Balance {
    /// The balance (0 if the account is absent).
    amount: i64,
    /// The account's modify index (0 if absent: the compare then requires it to be absent still).
    modify_index: u64,
}

/// Moves 1 from account `from` to account `to` (two different accounts): reads both in one read-only
/// transaction at `consistency`, then writes both under `modify_index ==` compares. [`Outcome::Conflict`]: a compare failed
/// (another transfer wrote one of the accounts after the read), nothing moved.
///
/// # Errors
/// A failed call (the read or the write), or an answer that does not parse.
pub(super) async fn transfer(
    conn: &mut Connection,
    from: u64,
    to: u64,
    consistency: &str,
) -> Result<Outcome, CallError> {
    assert!(from != to, "a transfer needs two accounts, got {from} twice");
    let (from, to) = (account(from), account(to));
    let read = conn.txn(Bytes::from(read_body(&from, &to)), consistency).await?;
    let [from_balance, to_balance] = parse_read(&read).map_err(CallError::Answer)?;
    let write = write_body((&from, from_balance), (&to, to_balance));
    let answer = conn.txn(Bytes::from(write), "linearizable").await?;
    match parse_succeeded(&answer).map_err(CallError::Answer)? {
        true => Ok(Outcome::Done),
        false => Ok(Outcome::Conflict),
    }
}

/// The read-only transaction reading both accounts.
fn read_body(from: &str, to: &str) -> String {
    format!(r#"{{"success":[{{"get":{{"key":"{from}"}}}},{{"get":{{"key":"{to}"}}}}]}}"#)
}

/// The transaction moving 1 from `from` to `to`, if neither changed since it was read.
fn write_body((from, from_balance): (&str, Balance), (to, to_balance): (&str, Balance)) -> String {
    let compare = |key: &str, balance: Balance| {
        format!(r#"{{"key":"{key}","target":"modify_index","op":"==","value":{}}}"#, balance.modify_index)
    };
    let put = |key: &str, amount: i64| format!(r#"{{"put":{{"key":"{key}","value":"{amount}"}}}}"#);
    format!(
        r#"{{"compare":[{},{}],"success":[{},{}]}}"#,
        compare(from, from_balance),
        compare(to, to_balance),
        put(from, from_balance.amount - 1),
        put(to, to_balance.amount + 1)
    )
}

/// The answer of the read: two `get` results.
#[derive(Deserialize)]
struct ReadAnswer {
    /// One per get.
    results: Vec<ReadResult>,
}

/// One `{"get": {...}}` result.
#[derive(Deserialize)]
struct ReadResult {
    /// The get's fields.
    get: GetResult,
}

/// The fields of a get result that matter here.
#[derive(Deserialize)]
struct GetResult {
    /// The value, if found (balances are UTF-8).
    value: Option<String>,
    /// The modify index, if found.
    #[serde(default)]
    modify_index: u64,
}

/// The two balances of the read's answer.
fn parse_read(body: &[u8]) -> Result<[Balance; 2], String> {
    let answer: ReadAnswer = serde_json::from_slice(body).map_err(|e| format!("bad read answer: {e}"))?;
    let balance = |result: &ReadResult| -> Result<Balance, String> {
        let amount = match &result.get.value {
            Some(text) => text.parse().map_err(|_| format!("an account holds {text:?}, not a number"))?,
            None => 0,
        };
        Ok(Balance { amount, modify_index: result.get.modify_index })
    };
    match answer.results.as_slice() {
        [from, to] => Ok([balance(from)?, balance(to)?]),
        other => Err(format!("the read answered {} results, not 2", other.len())),
    }
}

/// Whether the write's compares held.
fn parse_succeeded(body: &[u8]) -> Result<bool, String> {
    /// The one field that matters.
    #[derive(Deserialize)]
    struct Answer {
        /// Whether the compares held.
        succeeded: bool,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| format!("bad transaction answer: {e}"))?;
    Ok(answer.succeeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_documented_json() {
        let read: serde_json::Value = serde_json::from_str(&read_body("bench/acct/1", "bench/acct/2")).expect("JSON");
        assert_eq!(
            read,
            serde_json::json!({"success": [{"get": {"key": "bench/acct/1"}}, {"get": {"key": "bench/acct/2"}}]})
        );
        let write = write_body(
            ("bench/acct/1", Balance { amount: 0, modify_index: 7 }),
            ("bench/acct/2", Balance { amount: 5, modify_index: 0 }),
        );
        let write: serde_json::Value = serde_json::from_str(&write).expect("JSON");
        assert_eq!(
            write,
            serde_json::json!({
                "compare": [
                    {"key": "bench/acct/1", "target": "modify_index", "op": "==", "value": 7},
                    {"key": "bench/acct/2", "target": "modify_index", "op": "==", "value": 0},
                ],
                "success": [
                    {"put": {"key": "bench/acct/1", "value": "-1"}},
                    {"put": {"key": "bench/acct/2", "value": "6"}},
                ],
            })
        );
    }

    #[test]
    fn answers_parse() {
        let read = br#"{"succeeded": true, "index": 9, "results": [
            {"get": {"key": "a", "found": true, "value": "12", "create_index": 1, "modify_index": 4, "version": 2}},
            {"get": {"key": "b", "found": false}}]}"#;
        assert_eq!(
            parse_read(read),
            Ok([Balance { amount: 12, modify_index: 4 }, Balance { amount: 0, modify_index: 0 }])
        );
        assert!(parse_read(br#"{"results": [{"get": {"found": true, "value": "x", "modify_index": 1}}]}"#).is_err());
        assert_eq!(parse_succeeded(br#"{"succeeded": false, "index": 3, "results": []}"#), Ok(false));
        assert!(parse_succeeded(b"{}").is_err());
    }
}
