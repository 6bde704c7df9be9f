//! Strict decoding of what a request names: the key in its path and its query parameters. Anything malformed
//! is a `400` that says what is wrong; nothing is guessed.

use tally_node::ReadConsistency;

use super::error::ApiError;

/// Percent-decodes `text` to bytes. In a query, `+` means a space (as in HTML forms).
///
/// # Errors
/// A `%` not followed by two hex digits.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> Result<Vec<u8>, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let value = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "bad percent-encoding at byte {i} of {text:?}: '%' must be followed by two hex digits"
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

    /// The value of `name` as a non-negative integer.
    ///
    /// # Errors
    /// `400` if it is not one.
    pub(crate) fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        let Some(raw) = self.bytes(name) else { return Ok(None) };
        std::str::from_utf8(raw).ok().and_then(|t| t.parse::<u64>().ok()).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be a non-negative integer, got {:?}",
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
}
