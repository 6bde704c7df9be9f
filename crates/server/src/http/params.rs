//! Strict decoding of what a request names: the key in its path and its query parameters. Anything malformed
//! is a `400` that says what is wrong; nothing is guessed.

use tally_node::ReadConsistency;

use super::error::ApiError;

/// Percent-decodes `text` to bytes. In a query, `+` means a space (as in HTML forms).
///
/// Strict: every `%` must be followed by exactly two ASCII hex digits. `%+1` or `%-1` (which a sign-accepting
/// number parser would read as 1) and `%1` at the end are refused, never guessed at.
///
/// # Errors
/// `400` for a `%` not followed by two hex digits.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> Result<Vec<u8>, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let value = match bytes.get(i + 1..i + 3) {
                    Some(&[high, low]) => hex_digit(high).zip(hex_digit(low)).map(|(high, low)| high << 4 | low),
                    _ => None,
                };
                let value = value.ok_or_else(|| {
                    let found = String::from_utf8_lossy(&bytes[i..bytes.len().min(i + 3)]);
                    ApiError::bad_request(format!(
                        "bad percent-encoding {found:?} at byte {i} of {text:?}: '%' must be followed by two hex \
                         digits (write a literal '%' as %25)"
                    ))
                })?;
                out.push(value);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The value of one ASCII hex digit (`0-9`, `a-f`, `A-F`); `None` for any other byte, signs included.
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// A non-negative decimal integer written with ASCII digits only: no sign, no spaces, no `_`, not empty, at
/// most `u64::MAX` (leading zeros are harmless and accepted). `str::parse::<u64>` alone would accept `+3`.
///
/// # Errors
/// What is wrong, in words, for the caller's message.
fn parse_decimal(raw: &[u8]) -> Result<u64, String> {
    if raw.is_empty() {
        return Err("the value is empty".to_owned());
    }
    if let Some(bad) = raw.iter().find(|byte| !byte.is_ascii_digit()) {
        let shown = if bad.is_ascii_graphic() { format!("{:?}", char::from(*bad)) } else { format!("byte {bad:#04x}") };
        return Err(format!("{shown} is not a digit (only 0-9 are allowed: no sign, spaces or separators)"));
    }
    raw.iter()
        .try_fold(0u64, |value, digit| value.checked_mul(10)?.checked_add(u64::from(digit - b'0')))
        .ok_or_else(|| format!("it exceeds the largest accepted value, {}", u64::MAX))
}

/// The key named by a path under `prefix` (e.g. `/v1/kv/`), checked against the key size limit.
///
/// # Errors
/// `400` for an empty or malformed key, `413` for one over `max_key_bytes`.
pub(crate) fn key_from_path(path: &str, prefix: &str, max_key_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let raw = path.strip_prefix(prefix).unwrap_or_default();
    let key = percent_decode(raw, false)?;
    if key.is_empty() {
        return Err(ApiError::bad_request(format!("empty key: use {prefix}KEY")));
    }
    if key.len() > max_key_bytes {
        return Err(ApiError::too_large(format!(
            "the key is {} bytes; the limit is {max_key_bytes} (--max-key-bytes)",
            key.len()
        )));
    }
    Ok(key)
}

/// The decoded query parameters of one request.
#[derive(Debug, Default)]
pub(crate) struct Params {
    /// Name and decoded value, in order.
    pairs: Vec<(String, Vec<u8>)>,
}

impl Params {
    /// Decodes `query`, accepting only the parameter names in `allowed`, each at most once.
    ///
    /// # Errors
    /// `400` for an unknown or repeated parameter or bad encoding.
    pub(crate) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut params = Params::default();
        for part in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = String::from_utf8(percent_decode(name, true)?)
                .map_err(|_| ApiError::bad_request("a query parameter name is not UTF-8"))?;
            if !allowed.contains(&name.as_str()) {
                let accepted = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {name:?}; this call accepts: {accepted}"
                )));
            }
            if params.pairs.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::bad_request(format!("query parameter {name:?} is given twice")));
            }
            params.pairs.push((name, percent_decode(value, true)?));
        }
        Ok(params)
    }

    /// The raw value of `name`.
    pub(crate) fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// The value of `name` as a non-negative integer (see [`parse_decimal`]).
    ///
    /// # Errors
    /// `400` if it is not one: a sign, a space or any other non-digit, an empty value, or more than `u64::MAX`.
    pub(crate) fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        let Some(raw) = self.bytes(name) else { return Ok(None) };
        parse_decimal(raw).map(Some).map_err(|problem| {
            ApiError::bad_request(format!(
                "{name} must be a non-negative integer in ASCII digits, got {:?}: {problem}",
                String::from_utf8_lossy(raw)
            ))
        })
    }

    /// The `consistency` parameter: `linearizable` (default) or `stale`.
    ///
    /// # Errors
    /// `400` for anything else.
    pub(crate) fn consistency(&self) -> Result<ReadConsistency, ApiError> {
        match self.bytes("consistency") {
            None | Some(b"linearizable") => Ok(ReadConsistency::Linearizable),
            Some(b"stale") => Ok(ReadConsistency::Stale),
            Some(other) => Err(ApiError::bad_request(format!(
                "consistency must be \"linearizable\" or \"stale\", got {:?}",
                String::from_utf8_lossy(other)
            ))),
        }
    }
}

/// The parsers of this module for the `http_params` fuzz target (`fuzz/` at the repository root), with a plain
/// public error type instead of the crate's `ApiError`. Not an API: re-exported hidden, for the fuzzer only.
#[doc(hidden)]
pub mod fuzzing {
    use tally_node::ReadConsistency;

    use super::ApiError;

    /// An input the parsers refuse, as the client would see it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Refusal {
        /// The HTTP status (400 or 413).
        pub status: u16,
        /// The stable error code.
        pub code: &'static str,
        /// The message.
        pub message: String,
    }

    impl From<ApiError> for Refusal {
        fn from(error: ApiError) -> Refusal {
            Refusal { status: error.status.as_u16(), code: error.code, message: error.message }
        }
    }

    /// See `percent_decode`.
    ///
    /// # Errors
    /// As `percent_decode`.
    pub fn percent_decode(text: &str, plus_is_space: bool) -> Result<Vec<u8>, Refusal> {
        Ok(super::percent_decode(text, plus_is_space)?)
    }

    /// See `key_from_path`.
    ///
    /// # Errors
    /// As `key_from_path`.
    pub fn key_from_path(path: &str, prefix: &str, max_key_bytes: usize) -> Result<Vec<u8>, Refusal> {
        Ok(super::key_from_path(path, prefix, max_key_bytes)?)
    }

    /// Decoded query parameters; see `Params`.
    #[derive(Debug)]
    pub struct Query(super::Params);

    impl Query {
        /// See `Params::parse`.
        ///
        /// # Errors
        /// As `Params::parse`.
        pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Query, Refusal> {
            Ok(Query(super::Params::parse(query, allowed)?))
        }

        /// The names and decoded values, in query order.
        pub fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
            self.0.pairs.iter().map(|(name, value)| (name.as_str(), value.as_slice()))
        }

        /// See `Params::u64`.
        ///
        /// # Errors
        /// As `Params::u64`.
        pub fn u64(&self, name: &str) -> Result<Option<u64>, Refusal> {
            Ok(self.0.u64(name)?)
        }

        /// See `Params::consistency`.
        ///
        /// # Errors
        /// As `Params::consistency`.
        pub fn consistency(&self) -> Result<ReadConsistency, Refusal> {
            Ok(self.0.consistency()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_keys_strictly() {
        assert_eq!(key_from_path("/v1/kv/a%2Fb/c", "/v1/kv/", 10), Ok(b"a/b/c".to_vec()));
        assert_eq!(key_from_path("/v1/kv/a+b", "/v1/kv/", 10), Ok(b"a+b".to_vec()));
        assert_eq!(key_from_path("/v1/kv/%ff%00", "/v1/kv/", 10), Ok(vec![0xff, 0]));
        assert_eq!(key_from_path("/v1/kv/", "/v1/kv/", 10).map_err(|e| e.code), Err("bad_request"));
        assert_eq!(key_from_path("/v1/kv/%zz", "/v1/kv/", 10).map_err(|e| e.code), Err("bad_request"));
        assert_eq!(key_from_path("/v1/kv/%4", "/v1/kv/", 10).map_err(|e| e.code), Err("bad_request"));
        assert_eq!(key_from_path("/v1/kv/abcdefghijk", "/v1/kv/", 10).map_err(|e| e.code), Err("too_large"));
    }

    #[test]
    fn parses_parameters_strictly() {
        let params = Params::parse(Some("cas=7&consistency=stale"), &["cas", "consistency"]).expect("valid");
        assert_eq!(params.u64("cas"), Ok(Some(7)));
        assert_eq!(params.consistency(), Ok(ReadConsistency::Stale));
        assert_eq!(
            Params::parse(Some("prefix=a+b%2B"), &["prefix"]).expect("valid").bytes("prefix"),
            Some(&b"a b+"[..])
        );
        for (query, allowed) in
            [("cas=x", &["cas"][..]), ("cas=-1", &["cas"]), ("x=1", &["cas"]), ("cas=1&cas=2", &["cas"])]
        {
            let params = Params::parse(Some(query), allowed);
            let error = params.and_then(|p| p.u64("cas")).expect_err(query);
            assert_eq!(error.code, "bad_request", "{query}");
        }
        let bad = Params::parse(Some("consistency=strong"), &["consistency"]).expect("parses");
        assert!(bad.consistency().is_err());
    }

    #[test]
    fn a_percent_sign_needs_exactly_two_hex_digits() {
        // Phase: signs, spaces and short or non-hex escapes are refused, in the path and in the query.
        for bad in ["%+1", "%-1", "% 1", "%1", "%", "a%", "%g0", "%0g", "%é1", "%1é", "%%41", "%0x1"] {
            let refused = percent_decode(bad, false).expect_err(bad);
            assert_eq!(refused.code, "bad_request", "{bad}");
            assert!(refused.message.contains("two hex digits"), "{bad}: {}", refused.message);
            let path = format!("/v1/kv/{bad}");
            assert_eq!(key_from_path(&path, "/v1/kv/", 100).map_err(|e| e.code), Err("bad_request"), "{path}");
            let query = format!("prefix={bad}");
            assert_eq!(Params::parse(Some(&query), &["prefix"]).map_err(|e| e.code).err(), Some("bad_request"));
        }
        // Phase: both cases of hex digits decode, and so does every byte value.
        assert_eq!(percent_decode("%4a%4A%25%2b+", true), Ok(b"JJ%+ ".to_vec()));
        for byte in 0..=255u8 {
            assert_eq!(percent_decode(&format!("%{byte:02x}"), false), Ok(vec![byte]));
            assert_eq!(percent_decode(&format!("%{byte:02X}"), true), Ok(vec![byte]));
        }
    }

    #[test]
    fn integer_parameters_are_ascii_digits_only() {
        // Phase: a sign, spaces (`+` is a space in a query), separators, other digits and overflow are refused,
        // each with a message that names the parameter and the problem.
        let refused = [
            ("cas=+3", "byte 0x20 is not a digit"),
            ("cas=%2B3", "'+' is not a digit"),
            ("cas=%2b3", "'+' is not a digit"),
            ("cas=-0", "'-' is not a digit"),
            ("cas=%203", "byte 0x20 is not a digit"),
            ("cas=3%20", "byte 0x20 is not a digit"),
            ("cas=3%09", "byte 0x09 is not a digit"),
            ("cas=%0A3", "byte 0x0a is not a digit"),
            ("cas=1_000", "'_' is not a digit"),
            ("cas=0x10", "'x' is not a digit"),
            ("cas=1e3", "'e' is not a digit"),
            ("cas=%D9%A1", "byte 0xd9 is not a digit"),
            ("cas=", "empty"),
            ("cas", "empty"),
            ("cas=18446744073709551616", "exceeds the largest accepted value, 18446744073709551615"),
            ("cas=99999999999999999999999", "exceeds"),
        ];
        for (query, why) in refused {
            let params = Params::parse(Some(query), &["cas"]).expect(query);
            let error = params.u64("cas").expect_err(query);
            assert_eq!(error.code, "bad_request", "{query}");
            assert!(error.message.starts_with("cas must be a non-negative integer"), "{query}: {}", error.message);
            assert!(error.message.contains(why), "{query}: {:?} should say {why:?}", error.message);
        }
        // Phase: plain digits are accepted, leading zeros and the largest value included.
        for (query, value) in [("cas=0", 0), ("cas=007", 7), ("cas=18446744073709551615", u64::MAX)] {
            let params = Params::parse(Some(query), &["cas"]).expect(query);
            assert_eq!(params.u64("cas"), Ok(Some(value)), "{query}");
        }
        assert_eq!(Params::parse(None, &["cas"]).expect("no query").u64("cas"), Ok(None));
    }

    #[test]
    fn the_fuzzing_wrappers_answer_as_the_parsers_do() {
        use super::fuzzing::{Query, key_from_path as fuzz_key};
        assert_eq!(fuzz_key("/v1/kv/a%2f", "/v1/kv/", 10), Ok(b"a/".to_vec()));
        let too_long = fuzz_key("/v1/kv/abcdefghijk", "/v1/kv/", 10).map_err(|e| (e.status, e.code));
        assert_eq!(too_long, Err((413, "too_large")));
        let query = Query::parse(Some("cas=%2B3&consistency=stale"), &["cas", "consistency"]).expect("parses");
        assert_eq!(query.pairs().collect::<Vec<_>>(), [("cas", &b"+3"[..]), ("consistency", &b"stale"[..])]);
        assert_eq!(query.u64("cas").map_err(|e| e.status), Err(400));
        assert_eq!(query.consistency(), Ok(ReadConsistency::Stale));
    }
}
