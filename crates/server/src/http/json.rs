//! JSON request bodies: strict UTF-8 first, then the shape the route expects.

use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Decodes a JSON object body into `T`; `what` names the request and `shape` shows the expected JSON in the error.
///
/// The whole body must be UTF-8 (RFC 8259 §8.1), including strings in fields the route ignores: serde
/// skips unknown fields without checking their bytes, so without this a body no JSON parser accepts could
/// be taken as valid. And it must be an object: serde also fills a struct from an array of its fields in
/// order (`["n1", "http://..."]`, even `[]` for one whose fields all have defaults), which no route documents.
///
/// # Errors
/// `400 bad_request` naming what is wrong and the expected shape.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8], what: &str, shape: &str) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|error| {
        ApiError::bad_request(format!("bad {what}: the body is not UTF-8 ({error}); expected {shape}"))
    })?;
    // JSON's whitespace (RFC 8259 §2), not Rust's (which also counts form feeds).
    if text.trim_start_matches([' ', '\t', '\n', '\r']).as_bytes().first() != Some(&b'{') {
        return Err(ApiError::bad_request(format!("bad {what}: the body is not a JSON object; expected {shape}")));
    }
    serde_json::from_str(text).map_err(|error| ApiError::bad_request(format!("bad {what} ({error}); expected {shape}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[allow(dead_code)]
        id: String,
    }

    #[test]
    fn invalid_utf8_in_an_ignored_field_is_refused() {
        let body = b"{\"id\":\"n1\",\"other\":\"a\x9cb\"}";
        assert!(serde_json::from_slice::<Body>(body).is_ok(), "serde alone skips the bad bytes");
        let error = parse_body::<Body>(body, "request", "{\"id\": ...}").expect_err("invalid UTF-8 refused");
        assert_eq!(error.code, "bad_request");
        assert!(error.message.contains("not UTF-8"), "{}", error.message);
    }

    #[test]
    fn only_an_object_is_a_body() {
        #[derive(serde::Deserialize, Debug)]
        struct Defaults {
            #[serde(default)]
            #[allow(dead_code)]
            list: Vec<u64>,
        }
        assert!(serde_json::from_slice::<Body>(b"[\"n1\"]").is_ok(), "serde alone takes an array");
        for body in [&b"[\"n1\"]"[..], b"  []", b"\"n1\"", b"", b"\x0c{\"id\":\"n1\"}"] {
            let error = parse_body::<Defaults>(body, "request", "S").expect_err("not an object");
            assert!(error.message.contains("not a JSON object"), "{}", error.message);
        }
        assert!(parse_body::<Defaults>(b" \r\n\t{}", "request", "S").is_ok());
    }

    #[test]
    fn a_good_body_parses_and_a_wrong_shape_names_the_expected_one() {
        assert!(parse_body::<Body>(b"{\"id\":\"n1\"}", "request", "S").is_ok());
        let error = parse_body::<Body>(b"{\"id\":1}", "request", "{\"id\": \"n1\"}").expect_err("a number is no id");
        assert!(error.message.contains("expected {\"id\": \"n1\"}"), "{}", error.message);
    }
}
