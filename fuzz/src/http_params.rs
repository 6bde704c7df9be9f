//! `http_params`: what a client request names, as the node's HTTP API reads it: the key in a `/v1/kv/{key}` path,
//! the query parameters (percent-decoding, names, repeats, integers, `consistency`), and node ids in `?to=`.
//!
//! # Input
//!
//! ```text
//! byte 0  the key size limit: 0..=254 bytes, 255 for 4096
//! rest    a request target as text (lossy UTF-8): PATH[?QUERY]
//! ```
//!
//! # Oracles
//!
//! Every parser agrees with a small reference model written here from the rules (`%` then exactly two hex digits,
//! `+` a space in queries only, integers of ASCII digits only up to `u64::MAX`, ...): same value when accepted,
//! refused (with status 400, or 413 for an oversized key) when the model refuses. And any byte string,
//! percent-encoded, decodes back to itself.

use tally_node::ReadConsistency;
use tally_server::http_params_fuzzing::{Query, Refusal, key_from_path, percent_decode};
use tally_server::parse_node_id;

use crate::Seed;

/// The path prefix of the key routes.
const KEY_PREFIX: &str = "/v1/kv/";

/// Every parameter name some route accepts.
const ALLOWED: [&str; 6] = ["prefix", "limit", "after", "consistency", "cas", "to"];

/// Runs one input (see the module documentation); panics on a finding.
pub fn run(data: &[u8]) {
    let Some((&limit, target)) = data.split_first() else { return };
    let max_key_bytes = if limit == u8::MAX { 4096 } else { usize::from(limit) };
    let target = String::from_utf8_lossy(target);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target.as_ref(), None),
    };
    check_key(path, max_key_bytes);
    check_query(query);
    check_round_trip(data);
}

/// `key_from_path` against the model.
fn check_key(path: &str, max_key_bytes: usize) {
    let actual = key_from_path(path, KEY_PREFIX, max_key_bytes);
    let expected = path.strip_prefix(KEY_PREFIX).and_then(|raw| reference_decode(raw.as_bytes(), false));
    match (expected, &actual) {
        (Some(key), Ok(decoded)) => {
            assert_eq!(decoded, &key, "key of {path:?}");
            assert!(!key.is_empty() && key.len() <= max_key_bytes, "{path:?} accepted a key the limits refuse");
        }
        (Some(key), Err(refusal)) if key.is_empty() => assert_refused(refusal, 400, path),
        (Some(key), Err(refusal)) if key.len() > max_key_bytes => assert_refused(refusal, 413, path),
        (None, Err(refusal)) => assert_refused(refusal, 400, path),
        (expected, actual) => panic!("key of {path:?}: model says {expected:?}, parser says {actual:?}"),
    }
}

/// `Query::parse` and the typed accessors against the model.
fn check_query(query: Option<&str>) {
    let actual = Query::parse(query, &ALLOWED);
    let expected = reference_query(query.unwrap_or_default());
    let parsed = match (expected, actual) {
        (Some(pairs), Ok(parsed)) => {
            let got: Vec<(String, Vec<u8>)> =
                parsed.pairs().map(|(name, value)| (name.to_owned(), value.to_vec())).collect();
            assert_eq!(got, pairs, "parameters of {query:?}");
            parsed
        }
        (None, Err(refusal)) => return assert_refused(&refusal, 400, query.unwrap_or_default()),
        (expected, actual) => panic!("query {query:?}: model says {expected:?}, parser says {actual:?}"),
    };
    let value = |name| parsed.pairs().find(|(n, _)| *n == name).map(|(_, value)| value.to_vec());
    for name in ["limit", "cas"] {
        let expected = value(name).map(|raw| reference_u64(&raw));
        match (expected, parsed.u64(name)) {
            (None, Ok(None)) => {}
            (Some(Some(number)), Ok(Some(got))) => assert_eq!(got, number, "{name} of {query:?}"),
            (Some(None), Err(refusal)) => assert_refused(&refusal, 400, name),
            (expected, actual) => panic!("{name} of {query:?}: model says {expected:?}, parser says {actual:?}"),
        }
    }
    let consistency = parsed.consistency();
    match value("consistency").as_deref() {
        None | Some(b"linearizable") => assert_eq!(consistency, Ok(ReadConsistency::Linearizable)),
        Some(b"stale") => assert_eq!(consistency, Ok(ReadConsistency::Stale)),
        Some(_) => assert_refused(&consistency.expect_err("other consistency"), 400, "consistency"),
    }
    if let Some(to) = value("to") {
        let text = String::from_utf8_lossy(&to);
        let expected = reference_node_id(&text);
        let actual = parse_node_id(&text).ok().map(|id| id.0);
        assert_eq!(actual, expected, "node id {text:?}");
    }
}

/// Any bytes, percent-encoded, decode back to themselves in a path and in a query.
fn check_round_trip(bytes: &[u8]) {
    let encoded = percent_encode(bytes);
    assert_eq!(percent_decode(&encoded, false), Ok(bytes.to_vec()), "path round trip of {bytes:?}");
    assert_eq!(percent_decode(&encoded, true), Ok(bytes.to_vec()), "query round trip of {bytes:?}");
}

/// Asserts a refusal's status and its code.
fn assert_refused(refusal: &Refusal, status: u16, input: &str) {
    let code = if status == 413 { "too_large" } else { "bad_request" };
    assert_eq!((refusal.status, refusal.code), (status, code), "refusal of {input:?}: {}", refusal.message);
    assert!(!refusal.message.is_empty(), "refusal of {input:?} without a message");
}

/// The model of percent-decoding: `%` and two hex digits is that byte; `+` is a space where `plus_is_space`.
fn reference_decode(text: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'%' => {
                let (digits, tail) = rest.split_first_chunk::<2>()?;
                rest = tail;
                if !digits.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?);
            }
            b'+' if plus_is_space => out.push(b' '),
            other => out.push(other),
        }
    }
    Some(out)
}

/// The model of a query: `&`-separated `name=value` parts (empty parts skipped, a missing `=` is an empty value),
/// names UTF-8, allowed and given once.
fn reference_query(query: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    for part in query.split('&').filter(|part| !part.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = String::from_utf8(reference_decode(name.as_bytes(), true)?).ok()?;
        if !ALLOWED.contains(&name.as_str()) || pairs.iter().any(|(seen, _)| *seen == name) {
            return None;
        }
        pairs.push((name, reference_decode(value.as_bytes(), true)?));
    }
    Some(pairs)
}

/// The model of an integer parameter: one or more ASCII digits, at most `u64::MAX`.
fn reference_u64(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = raw.iter().try_fold(0u128, |value, digit| {
        let value = value * 10 + u128::from(digit - b'0');
        (value <= u128::from(u64::MAX)).then_some(value)
    })?;
    u64::try_from(value).ok()
}

/// The model of a node id: `n` (optional) and a positive integer in ASCII digits.
fn reference_node_id(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('n').unwrap_or(text);
    reference_u64(digits.as_bytes()).filter(|id| *id > 0)
}

/// Percent-encodes every byte but unreserved ones (RFC 3986), in upper and lower case hex alternately.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, &byte) in bytes.iter().enumerate() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else if i % 2 == 0 {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    out
}

/// Request targets of every route that reads a key or parameters, valid and refused.
pub fn seeds() -> Vec<Seed> {
    let targets = [
        ("put", 64, "/v1/kv/greeting"),
        ("put-cas", 64, "/v1/kv/config%2Fleader?cas=17"),
        ("put-cas-absent", 64, "/v1/kv/a%20b?cas=0"),
        ("get-stale", 64, "/v1/kv/k?consistency=stale"),
        ("get-linearizable", 64, "/v1/kv/k?consistency=linearizable"),
        ("list", 64, "/v1/kv/?prefix=app%2F&limit=100&after=app%2Fz"),
        ("list-plus", 64, "/v1/kv/?prefix=a+b%2Bc&limit=00100"),
        ("binary-key", 255, "/v1/kv/%00%FF%c3%28"),
        ("transfer", 16, "/v1/kv/x?to=n2"),
        ("transfer-bare", 16, "/v1/kv/x?to=3"),
        ("max-cas", 16, "/v1/kv/x?cas=18446744073709551615"),
        ("overflow-cas", 16, "/v1/kv/x?cas=18446744073709551616"),
        ("plus-sign-cas", 16, "/v1/kv/x?cas=%2B3&to=n%2B3"),
        ("space-cas", 16, "/v1/kv/x?cas=+3"),
        ("signed-escape", 16, "/v1/kv/%+1?prefix=%-1"),
        ("short-escape", 16, "/v1/kv/%4?after=%"),
        ("repeated", 16, "/v1/kv/x?cas=1&cas=2"),
        ("unknown", 16, "/v1/kv/x?consistency=strong&nope"),
        ("too-long", 3, "/v1/kv/abcd"),
        ("empty-key", 3, "/v1/kv/"),
        ("other-route", 3, "/db/key?x"),
    ];
    targets
        .iter()
        .map(|(name, limit, target)| {
            let mut bytes = vec![*limit];
            bytes.extend_from_slice(target.as_bytes());
            Seed::new(name, bytes)
        })
        .collect()
}
