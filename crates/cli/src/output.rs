//! How answers are shown: bytes for people (escaped when not UTF-8) and for machines (JSON with `key`/`value`
//! as strings, or `key_b64`/`value_b64` when not UTF-8, as the HTTP API does), and hints for common errors.

use std::borrow::Cow;

use serde_json::{Map, Value, json};
use tally_client::{ClientError, KeyValue, Page, insert_bytes};

/// Bytes for a person: the text if UTF-8 without control characters, else escaped (`\xff`, `\n`).
pub fn display_bytes(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => Cow::Borrowed(text),
        Ok(text) => Cow::Owned(text.escape_debug().to_string()),
        Err(_) => Cow::Owned(bytes.escape_ascii().to_string()),
    }
}

/// A key and its value as JSON: `{key | key_b64, value | value_b64, create_index, modify_index, version}`, plus
/// `index` when `with_index`.
pub fn key_value_json(entry: &KeyValue, with_index: bool) -> Value {
    let mut object = Map::new();
    insert_bytes(&mut object, "key", &entry.key);
    insert_bytes(&mut object, "value", &entry.value);
    object.insert("create_index".into(), Value::from(entry.create_index));
    object.insert("modify_index".into(), Value::from(entry.modify_index));
    object.insert("version".into(), Value::from(entry.version));
    if with_index {
        object.insert("index".into(), Value::from(entry.index));
    }
    Value::Object(object)
}

/// A page of keys as JSON, shaped like the HTTP API's: `{index, items, more}`.
pub fn page_json(page: &Page) -> Value {
    json!({
        "index": page.index,
        "items": page.items.iter().map(|entry| key_value_json(entry, false)).collect::<Vec<_>>(),
        "more": page.more,
    })
}

/// One line per key, `KEY<TAB>VALUE`, for a person.
pub fn page_lines(page: &Page) -> String {
    page.items.iter().map(|e| format!("{}\t{}\n", display_bytes(&e.key), display_bytes(&e.value))).collect()
}

/// What to try after `error`, when there is an obvious next step.
pub fn hint_for(error: &anyhow::Error) -> Option<&'static str> {
    match error.downcast_ref::<ClientError>()? {
        ClientError::Connect { detail, .. } if is_tls_trust_error(detail) => Some(
            "the node's certificate is not trusted: pass --cacert FILE (or set TALLY_CACERT) with the CA that signed \
             it (`tally certs init` writes ca.pem)",
        ),
        ClientError::Connect { detail, .. } if is_tls_error(detail) => Some(
            "the TLS handshake failed: an https:// node needs --cacert; one started with --tls-ca also needs a \
             client certificate (--cert and --key); a plain http:// node cannot be reached with https://",
        ),
        ClientError::Connect { .. } => Some(
            "is the cluster running? `tally dev` starts one on the default endpoints; otherwise pass \
             --endpoints URL,... or set TALLY_ENDPOINTS",
        ),
        ClientError::Api(api) if api.is(tally_client::code::NO_LEADER) => {
            Some("a majority of the nodes must be up to elect a leader: check `tally status`")
        }
        ClientError::Api(api) if api.is(tally_client::code::UNAUTHENTICATED) => {
            Some("auth is enabled on this cluster: set TALLY_TOKEN to a user's token")
        }
        _ => None,
    }
}

/// Whether a connection error says the server's certificate was not trusted.
fn is_tls_trust_error(detail: &str) -> bool {
    detail.contains("UnknownIssuer") || detail.contains("invalid peer certificate")
}

/// Whether a connection error comes from a TLS handshake.
fn is_tls_error(detail: &str) -> bool {
    ["tls", "TLS", "certificate", "handshake", "InvalidContentType", "CorruptMessage"]
        .iter()
        .any(|w| detail.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8], value: &[u8]) -> KeyValue {
        KeyValue { key: key.to_vec(), value: value.to_vec(), create_index: 3, modify_index: 5, version: 2, index: 9 }
    }

    #[test]
    fn bytes_display_escaped_when_not_plain_text() {
        assert_eq!(display_bytes(b"hello world"), "hello world");
        assert_eq!(display_bytes(b"two\nlines"), "two\\nlines");
        assert_eq!(display_bytes(&[b'a', 0xff]), "a\\xff");
    }

    #[test]
    fn json_uses_base64_fields_for_binary() {
        assert_eq!(
            key_value_json(&entry(b"user/1", b"alice"), true),
            json!({"key": "user/1", "value": "alice", "create_index": 3, "modify_index": 5, "version": 2, "index": 9})
        );
        assert_eq!(
            key_value_json(&entry(&[0xff], &[0, 0xff]), false),
            json!({"key_b64": "/w==", "value_b64": "AP8=", "create_index": 3, "modify_index": 5, "version": 2})
        );
    }

    #[test]
    fn pages_render_for_people_and_machines() {
        let page = Page { items: vec![entry(b"a", b"1"), entry(b"b", &[0xfe])], more: true, index: 9 };
        assert_eq!(page_lines(&page), "a\t1\nb\t\\xfe\n");
        let value = page_json(&page);
        assert_eq!(value["more"], json!(true));
        assert_eq!(value["items"][1]["value_b64"], json!("/g=="));
    }

    #[test]
    fn connect_errors_hint_at_tally_dev() {
        let error =
            anyhow::Error::new(ClientError::Connect { endpoints: vec!["http://a:1".into()], detail: "refused".into() });
        assert!(hint_for(&error).is_some_and(|hint| hint.contains("tally dev")));
        assert_eq!(hint_for(&anyhow::anyhow!("other")), None);
    }
}
