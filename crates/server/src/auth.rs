//! The shared cluster secret: who may join the cluster, talk on the peer port or use the registry.

/// Whether `presented` equals `expected`. Every byte of `expected` is looked at whatever `presented` holds, so
/// the time taken depends on the lengths only, not on how long a prefix matches.
pub(crate) fn token_matches(expected: &str, presented: &str) -> bool {
    let (expected, presented) = (expected.as_bytes(), presented.as_bytes());
    let mut difference = u8::from(expected.len() != presented.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ presented.get(index).copied().unwrap_or(0);
    }
    // Keeps the optimiser from turning the loop back into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

/// The token of an `Authorization: Bearer TOKEN` header value, if it has that form.
pub(crate) fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches("secret", "secret"));
        assert!(token_matches("", ""));
        for other in ["", "s", "secre", "secreT", "secret ", "secretsecret", "xecret"] {
            assert!(!token_matches("secret", other), "{other:?} matched");
        }
        assert!(!token_matches("", "x"));
    }

    #[test]
    fn bearer_tokens_are_parsed() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
