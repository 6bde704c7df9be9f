//! The pure translation between the client's types and the wire: percent-encoded keys in paths and
//! queries, the JSON bodies of writes and pages (with `key_b64`/`value_b64` for bytes that are not UTF-8),
//! and the `X-Tally-*` headers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::error::ClientError;
use crate::types::{DeletePrefixResult, DeleteResult, KeyValue, Page, WriteResult};

/// `X-Tally-Index`: the applied index an answer reflects (for a write: the entry's index).
pub(crate) const HEADER_INDEX: &str = "x-tally-index";
/// `X-Tally-Leader`: the leader's id, when the answering node knows one.
pub(crate) const HEADER_LEADER: &str = "x-tally-leader";
/// `X-Tally-Create-Index` of a `GET /v1/kv/{key}`.
pub(crate) const HEADER_CREATE_INDEX: &str = "x-tally-create-index";
/// `X-Tally-Modify-Index` of a `GET /v1/kv/{key}`.
pub(crate) const HEADER_MODIFY_INDEX: &str = "x-tally-modify-index";
/// `X-Tally-Version` of a `GET /v1/kv/{key}`.
pub(crate) const HEADER_VERSION: &str = "x-tally-version";

/// Every byte but the unreserved ones of RFC 3986 (`A-Z a-z 0-9 - . _ ~`) is percent-encoded, so a key
/// survives any path or query position byte for byte (`/` becomes `%2F`, `+` becomes `%2B`).
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes arbitrary bytes for a URL path segment or query value.
pub fn percent_encode(bytes: &[u8]) -> String {
    // `percent_encode` of the crate takes bytes; non-ASCII bytes are always encoded.
    percent_encoding::percent_encode(bytes, ENCODED).to_string()
}

/// Percent-encodes text (an id) for a query value.
pub(crate) fn percent_encode_str(text: &str) -> String {
    utf8_percent_encode(text, ENCODED).to_string()
}

/// The path of a key: `/v1/kv/{percent-encoded key}`.
///
/// # Errors
/// [`ClientError::InvalidKey`] for the empty key, and for `.` and `..`, which URL parsers resolve as
/// path segments (even percent-encoded) and so cannot be addressed by a path.
pub fn key_path(key: &[u8]) -> Result<String, ClientError> {
    match key {
        b"" => Err(ClientError::InvalidKey { reason: "a key must not be empty".to_string() }),
        b"." | b".." => Err(ClientError::InvalidKey {
            reason: format!(
                "the key {:?} cannot be addressed in a URL path (it is a relative path segment)",
                String::from_utf8_lossy(key)
            ),
        }),
        _ => Ok(format!("/v1/kv/{}", percent_encode(key))),
    }
}

/// Adds `name: text` to `object` if `bytes` is UTF-8, else `{name}_b64: base64`: how the API's JSON carries
/// keys, prefixes and values.
pub fn insert_bytes(object: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.to_string(), serde_json::Value::from(text)),
        Err(_) => object.insert(format!("{name}_b64"), serde_json::Value::from(BASE64.encode(bytes))),
    };
}

/// Decodes a base64 field (`key_b64`, `value_b64`), naming the field on failure.
pub(crate) fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, String> {
    BASE64.decode(text).map_err(|e| format!("{field} is not valid base64: {e}"))
}

/// A `u64` header, `None` when absent.
///
/// # Errors
/// A message naming the header when it is present but not a number.
pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, String> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let parsed = value.to_str().ok().and_then(|text| text.trim().parse::<u64>().ok());
    parsed.map(Some).ok_or_else(|| format!("header {name} is not a number: {value:?}"))
}

/// A text header, `None` when absent, empty or not visible ASCII.
pub(crate) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    let text = headers.get(name)?.to_str().ok()?.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The body of an acknowledged put: `{"index": N}`.
#[derive(Deserialize)]
struct WireWrite {
    /// The entry's index.
    index: Option<u64>,
}

/// The body of an acknowledged delete: `{"index": N, "deleted": bool}`.
#[derive(Deserialize)]
struct WireDelete {
    /// The entry's index.
    index: Option<u64>,
    /// Whether the key existed.
    deleted: bool,
}

/// Decodes the body of an acknowledged put; the index falls back to `X-Tally-Index`.
pub(crate) fn decode_write(body: &[u8], header_index: Option<u64>) -> Result<WriteResult, String> {
    let wire: WireWrite = serde_json::from_slice(body).map_err(|e| format!("bad write answer: {e}"))?;
    let index = wire.index.or(header_index).ok_or("the write answer has no index")?;
    Ok(WriteResult { index })
}

/// Decodes the body of an acknowledged delete; the index falls back to `X-Tally-Index`.
pub(crate) fn decode_delete(body: &[u8], header_index: Option<u64>) -> Result<DeleteResult, String> {
    let wire: WireDelete = serde_json::from_slice(body).map_err(|e| format!("bad delete answer: {e}"))?;
    let index = wire.index.or(header_index).ok_or("the delete answer has no index")?;
    Ok(DeleteResult { index, deleted: wire.deleted })
}

/// The body of an acknowledged prefix delete: `{"index": N, "deleted": COUNT}`.
#[derive(Deserialize)]
struct WireDeletePrefix {
    /// The entry's index.
    index: Option<u64>,
    /// How many keys went.
    deleted: u64,
}

/// Decodes the body of an acknowledged prefix delete; the index falls back to `X-Tally-Index`.
pub(crate) fn decode_delete_prefix(body: &[u8], header_index: Option<u64>) -> Result<DeletePrefixResult, String> {
    let wire: WireDeletePrefix = serde_json::from_slice(body).map_err(|e| format!("bad prefix delete answer: {e}"))?;
    let index = wire.index.or(header_index).ok_or("the prefix delete answer has no index")?;
    Ok(DeletePrefixResult { index, deleted: wire.deleted })
}

/// A page of keys as it travels.
#[derive(Deserialize)]
struct WirePage {
    /// The applied index the page reflects.
    index: Option<u64>,
    /// The entries.
    items: Vec<WireItem>,
    /// Whether more keys match.
    #[serde(default)]
    more: bool,
}

/// One entry of a page (and of a transaction's `get` and `list` results): exactly one of `key`/`key_b64` and
/// one of `value`/`value_b64`.
#[derive(Deserialize)]
pub(crate) struct WireItem {
    /// The key, when it is UTF-8.
    key: Option<String>,
    /// The key in standard base64, when it is not UTF-8.
    key_b64: Option<String>,
    /// The value, when it is UTF-8.
    value: Option<String>,
    /// The value in standard base64, when it is not UTF-8.
    value_b64: Option<String>,
    /// See [`KeyValue::create_index`].
    create_index: u64,
    /// See [`KeyValue::modify_index`].
    modify_index: u64,
    /// See [`KeyValue::version`] (absent from an older server's pages).
    #[serde(default)]
    version: u64,
}

/// Decodes a page of keys; its index is the body's `index`, else `X-Tally-Index`, else 0.
///
/// # Errors
/// Malformed JSON, an entry without a key or value, or bad base64, with a message saying which.
pub fn decode_page(body: &[u8], header_index: Option<u64>) -> Result<Page, String> {
    let wire: WirePage = serde_json::from_slice(body).map_err(|e| format!("bad page of keys: {e}"))?;
    let index = wire.index.or(header_index).unwrap_or(0);
    let items = wire.items.into_iter().map(|item| decode_item(item, index)).collect::<Result<Vec<_>, _>>()?;
    Ok(Page { items, more: wire.more, index })
}

/// Decodes one entry of a page, read at `index`.
pub(crate) fn decode_item(item: WireItem, index: u64) -> Result<KeyValue, String> {
    let key = text_or_base64("key", item.key, item.key_b64)?;
    let value = text_or_base64("value", item.value, item.value_b64)
        .map_err(|e| format!("{e} (key {:?})", String::from_utf8_lossy(&key)))?;
    Ok(KeyValue {
        key,
        value,
        create_index: item.create_index,
        modify_index: item.modify_index,
        version: item.version,
        index,
    })
}

/// The bytes of a `field` / `field_b64` pair: the text if present, else the decoded base64.
pub(crate) fn text_or_base64(field: &str, text: Option<String>, b64: Option<String>) -> Result<Vec<u8>, String> {
    match (text, b64) {
        (Some(text), _) => Ok(text.into_bytes()),
        (None, Some(b64)) => decode_base64(&format!("{field}_b64"), &b64),
        (None, None) => Err(format!("an entry has neither {field} nor {field}_b64")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_encode_every_reserved_byte() {
        assert_eq!(key_path(b"user/1").expect("valid"), "/v1/kv/user%2F1");
        assert_eq!(key_path(b"a b+c?d#e%f&g=h").expect("valid"), "/v1/kv/a%20b%2Bc%3Fd%23e%25f%26g%3Dh");
        assert_eq!(key_path(b"Az09-._~").expect("valid"), "/v1/kv/Az09-._~");
        assert_eq!(key_path(&[0x00, 0xff, b'x']).expect("valid"), "/v1/kv/%00%FFx");
        assert_eq!(key_path("é".as_bytes()).expect("valid"), "/v1/kv/%C3%A9");
        assert_eq!(key_path(b"...").expect("valid"), "/v1/kv/...");
    }

    #[test]
    fn unaddressable_keys_are_refused() {
        for key in [&b""[..], b".", b".."] {
            assert!(matches!(key_path(key), Err(ClientError::InvalidKey { .. })), "{key:?} was accepted");
        }
    }

    #[test]
    fn encoded_keys_survive_url_parsing() {
        for key in [&b"a/../b"[..], b"..x", b"%2e%2e", b"?q=1", b"\xff\xfe"] {
            let path = key_path(key).expect("valid");
            let url = reqwest::Url::parse(&format!("http://127.0.0.1:1{path}")).expect("parses");
            assert_eq!(url.path(), path, "the URL parser rewrote {key:?}");
        }
    }

    #[test]
    fn pages_decode_text_and_base64() {
        let body = br#"{"index": 42, "items": [
            {"key": "user/1", "value": "alice", "create_index": 7, "modify_index": 9, "version": 2},
            {"key": "user/2", "value_b64": "AP8=", "create_index": 8, "modify_index": 8, "version": 1},
            {"key_b64": "/w==", "value": "", "create_index": 10, "modify_index": 11}
        ], "more": true}"#;
        let page = decode_page(body, Some(99)).expect("valid page");
        assert_eq!((page.index, page.more, page.items.len()), (42, true, 3));
        assert_eq!(page.items[0].key, b"user/1");
        assert_eq!(page.items[0].value, b"alice");
        assert_eq!((page.items[0].create_index, page.items[0].modify_index, page.items[0].index), (7, 9, 42));
        assert_eq!((page.items[0].version, page.items[1].version, page.items[2].version), (2, 1, 0));
        assert_eq!(page.items[1].value, vec![0x00, 0xff]);
        assert_eq!(page.items[2].key, vec![0xff]);
        assert_eq!(page.items[2].value, b"");
    }

    #[test]
    fn page_index_falls_back_to_the_header() {
        let page = decode_page(br#"{"items": [], "more": false}"#, Some(5)).expect("valid page");
        assert_eq!((page.index, page.more, page.items.len()), (5, false, 0));
    }

    #[test]
    fn bad_pages_say_what_is_wrong() {
        let no_value = br#"{"items": [{"key": "k", "create_index": 1, "modify_index": 1}], "more": false}"#;
        let error = decode_page(no_value, None).expect_err("an entry without a value");
        assert!(error.contains("neither value nor value_b64"), "{error}");
        let bad_b64 = br#"{"items": [{"key": "k", "value_b64": "!!", "create_index": 1, "modify_index": 1}]}"#;
        let error = decode_page(bad_b64, None).expect_err("bad base64");
        assert!(error.contains("value_b64 is not valid base64") && error.contains("\"k\""), "{error}");
        assert!(decode_page(b"not json", None).is_err());
    }

    #[test]
    fn write_answers_decode() {
        assert_eq!(decode_write(br#"{"index": 7}"#, None), Ok(WriteResult { index: 7 }));
        assert_eq!(decode_write(br#"{}"#, Some(8)), Ok(WriteResult { index: 8 }));
        assert!(decode_write(br#"{}"#, None).is_err());
        assert_eq!(
            decode_delete(br#"{"index": 9, "deleted": false}"#, None),
            Ok(DeleteResult { index: 9, deleted: false })
        );
    }

    #[test]
    fn headers_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_INDEX, "42".parse().expect("valid header"));
        headers.insert(HEADER_LEADER, "n2".parse().expect("valid header"));
        headers.insert(HEADER_MODIFY_INDEX, "x".parse().expect("valid header"));
        assert_eq!(header_u64(&headers, HEADER_INDEX), Ok(Some(42)));
        assert_eq!(header_u64(&headers, HEADER_CREATE_INDEX), Ok(None));
        assert!(header_u64(&headers, HEADER_MODIFY_INDEX).is_err());
        assert_eq!(header_str(&headers, HEADER_LEADER).as_deref(), Some("n2"));
    }
}
