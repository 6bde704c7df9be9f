//! The `txn` workload: a transfer of 1 between two random accounts, as a client of an account store would do it
//! (etcd's software transactional memory pattern: optimistic, from a cache of what the client last saw).
//!
//! ```text
//!  cache: account -> (balance, modify_index), shared by the workers, fed by every answer
//!  read (cache miss only): POST /v1/txn {"success": [get A, get B]}   read-only (no log entry; --consistency)
//!  write: POST /v1/txn {"compare": [mod(A) == a, mod(B) == b],        one log entry
//!                       "success": [put A = x-1, put B = y+1],        done: the cache learns the new balances
//!                       "failure": [get A, get B]}                    a retry: the cache learns the current ones
//! ```
//!
//! In the steady state a transfer is one request: the cache holds the balances the previous transfers wrote, and
//! a compare that fails (another transfer wrote A or B since) answers with the current balances, so the next
//! attempt needs no read either. The accounts are `bench/acct/0..keys`, preloaded with [`OPENING_BALANCE`]. Their
//! sum never changes. The read may be `stale` (`--consistency stale`): the compares still refuse a transfer
//! computed from an outdated balance, which then shows as a retry.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

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

/// The balances the workers last saw, by account index, shared by all of them.
///
/// Invariant: an account's entry only moves to a higher modify index (answers arriving out of order never put
/// an older balance back).
#[derive(Debug, Default)]
pub(super) struct BalanceCache(Mutex<HashMap<u64, Balance>>);

impl BalanceCache {
    /// The cached balances of both accounts, if both are known.
    fn get(&self, from: u64, to: u64) -> Option<[Balance; 2]> {
        let cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Some([*cache.get(&from)?, *cache.get(&to)?])
    }

    /// Learns a balance seen in an answer, unless a newer one is known already.
    fn learn(&self, account: u64, balance: Balance) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = cache.entry(account).or_insert(balance);
        if balance.modify_index > entry.modify_index {
            *entry = balance;
        }
    }
}

/// Moves 1 from account `from` to account `to` (two different accounts): takes both balances from `cache` (or
/// reads them in one read-only transaction at `consistency` when one is missing), then writes both under
/// `modify_index ==` compares. [`Outcome::Conflict`]: a compare failed (another transfer wrote one of the
/// accounts since the balance was seen), nothing moved, and the cache now holds the current balances.
///
/// # Errors
/// A failed call (the read or the write), or an answer that does not parse.
pub(super) async fn transfer(
    conn: &mut Connection,
    cache: &BalanceCache,
    (from, to): (u64, u64),
    consistency: &str,
) -> Result<Outcome, CallError> {
    assert!(from != to, "a transfer needs two accounts, got {from} twice");
    let (from_key, to_key) = (account(from), account(to));
    let [from_balance, to_balance] = match cache.get(from, to) {
        Some(balances) => balances,
        None => {
            let read = conn.txn(Bytes::from(read_body(&from_key, &to_key)), consistency).await?;
            let [from_read, to_read] = parse_gets(&read).map_err(CallError::Answer)?;
            cache.learn(from, from_read);
            cache.learn(to, to_read);
            // Another worker may have taught the cache newer balances while the read was under way.
            cache.get(from, to).expect("both balances were just learned")
        }
    };
    let write = write_body((&from_key, from_balance), (&to_key, to_balance));
    let answer = conn.txn(Bytes::from(write), "linearizable").await?;
    match parse_write(&answer).map_err(CallError::Answer)? {
        WriteAnswer::Succeeded { index } => {
            cache.learn(from, Balance { amount: from_balance.amount - 1, modify_index: index });
            cache.learn(to, Balance { amount: to_balance.amount + 1, modify_index: index });
            Ok(Outcome::Done)
        }
        WriteAnswer::Failed([from_now, to_now]) => {
            cache.learn(from, from_now);
            cache.learn(to, to_now);
            Ok(Outcome::Conflict)
        }
    }
}

/// The read-only transaction reading both accounts.
fn read_body(from: &str, to: &str) -> String {
    format!(r#"{{"success":[{}]}}"#, gets(from, to))
}

/// The two get ops, as a JSON list's items.
fn gets(from: &str, to: &str) -> String {
    format!(r#"{{"get":{{"key":"{from}"}}}},{{"get":{{"key":"{to}"}}}}"#)
}

/// The transaction moving 1 from `from` to `to` if neither changed since its balance was seen, and reading both
/// if one did.
fn write_body((from, from_balance): (&str, Balance), (to, to_balance): (&str, Balance)) -> String {
    let compare = |key: &str, balance: Balance| {
        format!(r#"{{"key":"{key}","target":"modify_index","op":"==","value":{}}}"#, balance.modify_index)
    };
    let put = |key: &str, amount: i64| format!(r#"{{"put":{{"key":"{key}","value":"{amount}"}}}}"#);
    format!(
        r#"{{"compare":[{},{}],"success":[{},{}],"failure":[{}]}}"#,
        compare(from, from_balance),
        compare(to, to_balance),
        put(from, from_balance.amount - 1),
        put(to, to_balance.amount + 1),
        gets(from, to)
    )
}

/// A transaction's answer: the branch taken, its index and its results.
#[derive(Deserialize)]
struct TxnAnswer {
    /// Whether the compares held.
    succeeded: bool,
    /// The entry's index (the read's, for a read-only transaction).
    index: u64,
    /// One per op of the branch taken.
    results: Vec<serde_json::Value>,
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

/// What the write came to.
#[derive(Debug, PartialEq, Eq)]
enum WriteAnswer {
    /// The transfer happened at `index`.
    Succeeded {
        /// The entry's index: both accounts' new modify index.
        index: u64,
    },
    /// A compare failed; the accounts' current balances.
    Failed([Balance; 2]),
}

/// The answer of the write transaction.
fn parse_write(body: &[u8]) -> Result<WriteAnswer, String> {
    let answer: TxnAnswer = serde_json::from_slice(body).map_err(|e| format!("bad transaction answer: {e}"))?;
    match answer.succeeded {
        true => Ok(WriteAnswer::Succeeded { index: answer.index }),
        false => Ok(WriteAnswer::Failed(balances(answer.results)?)),
    }
}

/// The two balances of an answer whose branch was the two gets.
fn parse_gets(body: &[u8]) -> Result<[Balance; 2], String> {
    let answer: TxnAnswer = serde_json::from_slice(body).map_err(|e| format!("bad read answer: {e}"))?;
    balances(answer.results)
}

/// The balances of two get results.
fn balances(results: Vec<serde_json::Value>) -> Result<[Balance; 2], String> {
    let balance = |result: serde_json::Value| -> Result<Balance, String> {
        let result: ReadResult = serde_json::from_value(result).map_err(|e| format!("bad get result: {e}"))?;
        let amount = match &result.get.value {
            Some(text) => text.parse().map_err(|_| format!("an account holds {text:?}, not a number"))?,
            None => 0,
        };
        Ok(Balance { amount, modify_index: result.get.modify_index })
    };
    let count = results.len();
    match <[serde_json::Value; 2]>::try_from(results) {
        Ok([from, to]) => Ok([balance(from)?, balance(to)?]),
        Err(_) => Err(format!("{count} results, not the 2 gets")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_documented_json() {
        let read: serde_json::Value = serde_json::from_str(&read_body("bench/acct/1", "bench/acct/2")).expect("JSON");
        let gets = serde_json::json!([{"get": {"key": "bench/acct/1"}}, {"get": {"key": "bench/acct/2"}}]);
        assert_eq!(read, serde_json::json!({"success": gets}));
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
                "failure": gets,
            })
        );
    }

    #[test]
    fn answers_parse() {
        let read = br#"{"succeeded": true, "index": 9, "results": [
            {"get": {"key": "a", "found": true, "value": "12", "create_index": 1, "modify_index": 4, "version": 2}},
            {"get": {"key": "b", "found": false}}]}"#;
        let expected = [Balance { amount: 12, modify_index: 4 }, Balance { amount: 0, modify_index: 0 }];
        assert_eq!(parse_gets(read), Ok(expected));
        assert!(parse_gets(br#"{"index": 1, "succeeded": true, "results": [{"get": {"value": "x"}}]}"#).is_err());
        let succeeded = br#"{"succeeded": true, "index": 12, "results": [{"put": {}}, {"put": {}}]}"#;
        assert_eq!(parse_write(succeeded), Ok(WriteAnswer::Succeeded { index: 12 }));
        let failed = br#"{"succeeded": false, "index": 3, "results": [
            {"get": {"key": "a", "found": true, "value": "12", "create_index": 1, "modify_index": 4, "version": 2}},
            {"get": {"key": "b", "found": false}}]}"#;
        assert_eq!(parse_write(failed), Ok(WriteAnswer::Failed(expected)));
        assert!(parse_write(br#"{"succeeded": false, "index": 3, "results": []}"#).is_err());
        assert!(parse_write(b"{}").is_err());
    }

    #[test]
    fn cache_never_goes_back_to_an_older_balance() {
        let cache = BalanceCache::default();
        assert_eq!(cache.get(1, 2), None);
        cache.learn(1, Balance { amount: 10, modify_index: 5 });
        cache.learn(2, Balance { amount: 3, modify_index: 2 });
        cache.learn(1, Balance { amount: 99, modify_index: 4 });
        cache.learn(2, Balance { amount: 4, modify_index: 6 });
        let balances = [Balance { amount: 10, modify_index: 5 }, Balance { amount: 4, modify_index: 6 }];
        assert_eq!(cache.get(1, 2), Some(balances));
        assert_eq!(cache.get(1, 3), None);
    }
}
