//! The Server-Sent Events encoding of watch deliveries (docs/http-api.md, "Watches"). Pure: bytes in, bytes
//! out, no I/O.
//!
//! ```text
//!  event: put                       one event per matching change of an entry, in the entry's order
//!  data: {"index":7,"key":"a",...}
//!                                    (no id: the entry's group is not complete yet)
//!  event: delete
//!  data: {"index":7,"key":"b",...}
//!  id: 7                            the id closes the group: the last event of each index carries it
//!
//!  event: progress                  idle: every matching change up to 9 was sent
//!  data: {"index":9}
//!  id: 9
//!
//!  event: error                     the last event; the stream closes after it
//!  data: {"code":"slow_watcher","resume_from":8}
//! ```
//!
//! Why the id goes only on the last event of a group: an SSE client remembers the last id it saw and sends it
//! back as `Last-Event-ID` when it reconnects, and the server resumes at that id + 1. Had every event of entry
//! 7 carried `id: 7`, a connection cut after the first of them would resume at 8 and lose the rest of entry 7.
//! With the id only on the group's last event, a cut inside a group resumes at the group's start: its events
//! may come twice, never not at all, and a client that reports only complete groups sees each exactly once.

use axum::body::Bytes;
use base64::Engine;
use serde::Serialize;
use tally_kv::{Change, ChangeBatch, ChangeKind, KeyFilter, Versioned};
use tally_node::WatchError;

/// The `data:` of one change.
#[derive(Serialize)]
struct ChangeData<'a> {
    /// The entry's index (the batch's).
    index: u64,
    /// The key, if UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    /// The key in base64, if not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_b64: Option<String>,
    /// The new value, if UTF-8 (puts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    /// The new value in base64, if not UTF-8 (puts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    value_b64: Option<String>,
    /// The key's create index after the change; 0 for a delete.
    create_index: u64,
    /// The entry's index.
    modify_index: u64,
    /// Writes since creation after the change; 0 for a delete.
    version: u64,
    /// With `prev=true`: the state before the entry, `null` if the key was absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<Option<PrevData<'a>>>,
}

/// The state of a key before a change.
#[derive(Serialize)]
struct PrevData<'a> {
    /// The value, if UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    /// The value in base64, if not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    value_b64: Option<String>,
    /// Its create index.
    create_index: u64,
    /// Its modify index.
    modify_index: u64,
    /// Its version.
    version: u64,
}

/// `bytes` as text if UTF-8, else as base64: `(text, base64)`.
fn text_or_base64(bytes: &[u8]) -> (Option<&str>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(bytes))),
    }
}

/// The `prev` of a change.
fn prev_data(versioned: &Versioned) -> PrevData<'_> {
    let (value, value_b64) = text_or_base64(&versioned.value);
    PrevData {
        value,
        value_b64,
        create_index: versioned.create_index,
        modify_index: versioned.modify_index,
        version: versioned.version,
    }
}

/// The `data:` JSON of `change`, entry `index`.
fn change_data(index: u64, change: &Change, prev: bool) -> String {
    let (key, key_b64) = text_or_base64(&change.key);
    let (value, value_b64) = match change.kind {
        ChangeKind::Put => text_or_base64(&change.value),
        ChangeKind::Delete => (None, None),
    };
    let data = ChangeData {
        index,
        key,
        key_b64,
        value,
        value_b64,
        create_index: change.create_index,
        modify_index: change.modify_index,
        version: change.version,
        prev: prev.then(|| change.prev.as_ref().map(prev_data)),
    };
    serde_json::to_string(&data).unwrap_or_else(|error| unreachable!("a change always serializes: {error}"))
}

/// The events of the changes of `batch` that `filter` matches, the last one carrying `id: INDEX`; empty if
/// none matches.
pub(crate) fn changes(batch: &ChangeBatch, filter: &KeyFilter, prev: bool) -> Bytes {
    let mut out = String::new();
    let mut matching = batch.matching(filter).peekable();
    while let Some(change) = matching.next() {
        let event = match change.kind {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
        };
        out.push_str("event: ");
        out.push_str(event);
        out.push_str("\ndata: ");
        out.push_str(&change_data(batch.index, change, prev));
        out.push('\n');
        if matching.peek().is_none() {
            out.push_str(&format!("id: {}\n", batch.index));
        }
        out.push('\n');
    }
    Bytes::from(out)
}

/// A progress event: every matching change up to `index` was sent, so `index` is where a resume starts after.
pub(crate) fn progress(index: u64) -> Bytes {
    Bytes::from(format!("event: progress\ndata: {{\"index\":{index}}}\nid: {index}\n\n"))
}

/// The error event that ends a stream the node cut off.
pub(crate) fn error(error: WatchError) -> Bytes {
    let data = match error {
        WatchError::SlowWatcher { resume_from } => {
            format!("{{\"code\":\"slow_watcher\",\"resume_from\":{resume_from}}}")
        }
        WatchError::Compacted { oldest } => format!("{{\"code\":\"compacted\",\"oldest_index\":{oldest}}}"),
    };
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

/// The error event that ends a stream whose caller lost the right to read what it watches; `message` says
/// which permission.
pub(crate) fn permission_denied(message: &str) -> Bytes {
    let data = serde_json::json!({ "code": "permission_denied", "message": message });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entry 7: a put overwriting `a`, a put of a new non-UTF-8 value under `b`, and a delete of `c`.
    fn batch() -> ChangeBatch {
        let old = Versioned { value: b"0".to_vec(), create_index: 2, modify_index: 3, version: 2 };
        let a = Versioned { value: b"1".to_vec(), create_index: 2, modify_index: 7, version: 3 };
        let b = Versioned { value: vec![0xff], create_index: 7, modify_index: 7, version: 1 };
        let gone = Versioned { value: b"x".to_vec(), create_index: 4, modify_index: 4, version: 1 };
        let changes =
            vec![Change::put(b"p/a", &a, Some(old)), Change::put(b"p/b", &b, None), Change::delete(b"q/c", 7, gone)];
        ChangeBatch { index: 7, changes }
    }

    #[test]
    fn a_group_carries_its_id_on_the_last_event_only() {
        let bytes = changes(&batch(), &KeyFilter::Prefix(Vec::new()), false);
        let expected = "event: put\n\
            data: {\"index\":7,\"key\":\"p/a\",\"value\":\"1\",\"create_index\":2,\"modify_index\":7,\"version\":3}\n\n\
            event: put\n\
            data: {\"index\":7,\"key\":\"p/b\",\"value_b64\":\"/w==\",\"create_index\":7,\"modify_index\":7,\"version\":1}\n\n\
            event: delete\n\
            data: {\"index\":7,\"key\":\"q/c\",\"create_index\":0,\"modify_index\":7,\"version\":0}\n\
            id: 7\n\n";
        assert_eq!(std::str::from_utf8(&bytes).expect("utf-8"), expected);
    }

    #[test]
    fn prev_is_shown_only_when_asked_and_null_for_a_create() {
        let bytes = changes(&batch(), &KeyFilter::Prefix(b"p/".to_vec()), true);
        let expected = "event: put\n\
            data: {\"index\":7,\"key\":\"p/a\",\"value\":\"1\",\"create_index\":2,\"modify_index\":7,\"version\":3,\
            \"prev\":{\"value\":\"0\",\"create_index\":2,\"modify_index\":3,\"version\":2}}\n\n\
            event: put\n\
            data: {\"index\":7,\"key\":\"p/b\",\"value_b64\":\"/w==\",\"create_index\":7,\"modify_index\":7,\"version\":1,\
            \"prev\":null}\n\
            id: 7\n\n";
        assert_eq!(std::str::from_utf8(&bytes).expect("utf-8"), expected);
        assert!(changes(&batch(), &KeyFilter::Key(b"none".to_vec()), true).is_empty(), "no match, no bytes");
    }

    #[test]
    fn progress_and_errors() {
        assert_eq!(&progress(9)[..], b"event: progress\ndata: {\"index\":9}\nid: 9\n\n");
        let slow = error(WatchError::SlowWatcher { resume_from: 8 });
        assert_eq!(&slow[..], b"event: error\ndata: {\"code\":\"slow_watcher\",\"resume_from\":8}\n\n");
        let compacted = error(WatchError::Compacted { oldest: 40 });
        assert_eq!(&compacted[..], b"event: error\ndata: {\"code\":\"compacted\",\"oldest_index\":40}\n\n");
        let denied = permission_denied("no read on \"p/\"");
        let expected = "event: error\ndata: {\"code\":\"permission_denied\",\"message\":\"no read on \\\"p/\\\"\"}\n\n";
        assert_eq!(std::str::from_utf8(&denied).expect("utf-8"), expected);
    }
}
