//! [`WatchStream`]: a resumable watch of a key or a prefix (`GET /v1/watch`, docs/http-api.md, "Watches").
//!
//! ```text
//!  connect(endpoint, from_index = resume point) ──▶ SSE bytes ──▶ SseParser ──▶ events
//!     put/delete: gathered into the group of their index; the group is reported once its last event (the one
//!                 whose id is its index) arrived, and the resume point moves past it
//!     progress:   reported; the resume point moves past its index
//!     slow_watcher error, a broken or silent connection, 5xx: reconnect (another endpoint after a failure)
//!                 from the resume point; a half-received group is dropped and comes again whole
//!     compacted (410 or the error event): WatchError::Compacted, the end
//! ```
//!
//! So every change after the start is reported exactly once, in index order, across reconnects.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::codec::{decode_base64, percent_encode};
use crate::endpoints::Route;
use crate::error::ApiError;
use crate::sse::{SseEvent, SseParser};
use crate::{Client, ClientError};

/// The whole-request timeout of a watch stream (reqwest counts the body in it): far longer than any stream, so
/// only the idle timer ends a healthy one.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// What to watch and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// `true`: `target` is one key; `false`: a prefix (the empty prefix watches every key).
    pub is_key: bool,
    /// The key or prefix.
    pub target: Vec<u8>,
    /// The first index to report (inclusive); `None`: changes after the watch starts.
    pub from_index: Option<u64>,
    /// Whether changes carry the key's previous state.
    pub prev: bool,
}

impl WatchOptions {
    /// A watch of every key starting with `prefix`, from now on.
    pub fn prefix(prefix: &[u8]) -> WatchOptions {
        WatchOptions { is_key: false, target: prefix.to_vec(), from_index: None, prev: false }
    }
}

/// Whether a change wrote or removed its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created or overwritten.
    Put,
    /// Removed.
    Delete,
}

/// A key's state before a change.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PrevValue {
    /// The value, if UTF-8.
    #[serde(default)]
    value: Option<String>,
    /// The value in base64, if not.
    #[serde(default)]
    value_b64: Option<String>,
    /// Its create index.
    pub create_index: u64,
    /// Its modify index.
    pub modify_index: u64,
    /// Its version.
    pub version: u64,
}

/// One key's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchChange {
    /// Put or delete.
    pub kind: ChangeKind,
    /// The key.
    pub key: Vec<u8>,
    /// The new value (empty for a delete).
    pub value: Vec<u8>,
    /// The create index after the change (0 for a delete).
    pub create_index: u64,
    /// The index of the entry that made the change.
    pub modify_index: u64,
    /// Writes since creation after the change (0 for a delete).
    pub version: u64,
    /// The state before, when asked for with `prev` (`Some(None)`: the key was absent).
    pub prev: Option<Option<(Vec<u8>, PrevValue)>>,
}

/// What a watch reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// Every watched change of one log entry (a txn or a prefix delete may change several keys at once).
    Changes {
        /// The entry's index.
        index: u64,
        /// Its changes, in the entry's order.
        changes: Vec<WatchChange>,
    },
    /// Every watched change up to `index` was reported.
    Progress {
        /// The index.
        index: u64,
    },
}

/// Why a watch ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The changes from the resume point on are no longer kept: read the current state, then watch again from
    /// its index + 1 (or from `oldest_index`, accepting the gap).
    #[error(
        "changes before index {oldest_index} are no longer kept (compacted): read the current state and watch from its index + 1"
    )]
    Compacted {
        /// The oldest index the node still keeps.
        oldest_index: u64,
    },
    /// The node refused the watch or ended it for a reason a retry does not fix (bad request, permission).
    #[error("{0}")]
    Refused(Box<ApiError>),
    /// No node could be reached, or none kept a connection, within the retry deadline.
    #[error("the watch lost every node: {0}")]
    Unreachable(ClientError),
    /// A node sent something that is not a watch stream.
    #[error("bad watch stream from {endpoint}: {detail}")]
    Protocol {
        /// The node.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
}

/// The `data:` of a put or delete event.
#[derive(Deserialize)]
struct ChangeData {
    /// The entry's index.
    index: u64,
    /// The key, if UTF-8.
    #[serde(default)]
    key: Option<String>,
    /// The key in base64.
    #[serde(default)]
    key_b64: Option<String>,
    /// The value, if UTF-8.
    #[serde(default)]
    value: Option<String>,
    /// The value in base64.
    #[serde(default)]
    value_b64: Option<String>,
    /// See [`WatchChange::create_index`].
    create_index: u64,
    /// See [`WatchChange::modify_index`].
    modify_index: u64,
    /// See [`WatchChange::version`].
    version: u64,
    /// Present (maybe `null`) with `prev=true`.
    #[serde(default, deserialize_with = "present")]
    prev: Option<Option<PrevValue>>,
}

/// Deserializes a field that may be `null` as `Some(None)`, so an absent field stays `None`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<PrevValue>>, D::Error> {
    Option::<PrevValue>::deserialize(deserializer).map(Some)
}

/// The `data:` of an error event.
#[derive(Deserialize)]
struct ErrorData {
    /// `slow_watcher`, `compacted`, `permission_denied`.
    code: String,
    /// For `slow_watcher`.
    #[serde(default)]
    resume_from: Option<u64>,
    /// For `compacted`.
    #[serde(default)]
    oldest_index: Option<u64>,
    /// For others.
    #[serde(default)]
    message: String,
}

/// A resumable watch; see the module doc. Made by [`Client::watch`].
pub struct WatchStream {
    /// The client (endpoints, TLS, token).
    client: Client,
    /// What is watched.
    options: WatchOptions,
    /// Where a new connection starts: right after the last complete group or progress received (maybe not
    /// reported yet); `None` before any.
    received_from: Option<u64>,
    /// Right after the last event reported by [`WatchStream::next`]: where a new watch must start to go on
    /// exactly where the caller is.
    reported_from: Option<u64>,
    /// The open stream and its endpoint.
    connection: Option<(String, reqwest::Response)>,
    /// The parser of the open stream.
    parser: SseParser,
    /// The events of the group under way, not reported yet.
    group: Vec<(u64, WatchChange)>,
    /// Events ready to report, each with the resume point right after it.
    ready: VecDeque<(WatchEvent, u64)>,
    /// Since when no connection worked (for the retry deadline).
    failing_since: Option<Instant>,
    /// Set once the watch ended with an error.
    ended: bool,
    /// The error that ended the watch, reported once the events received before it were.
    final_error: Option<WatchError>,
}

impl Client {
    /// A watch of `options`; it connects on the first [`WatchStream::next`].
    pub fn watch(&self, options: WatchOptions) -> WatchStream {
        let resume_from = options.from_index;
        WatchStream {
            client: self.clone(),
            options,
            received_from: resume_from,
            reported_from: resume_from,
            connection: None,
            parser: SseParser::new(),
            group: Vec::new(),
            ready: VecDeque::new(),
            failing_since: None,
            ended: false,
            final_error: None,
        }
    }
}

impl WatchStream {
    /// The next event, reconnecting as needed.
    ///
    /// # Errors
    /// [`WatchError`]; after one, the stream is over and every call returns [`WatchError::Protocol`].
    pub async fn next(&mut self) -> Result<WatchEvent, WatchError> {
        loop {
            if let Some((event, resume_from)) = self.ready.pop_front() {
                self.reported_from = Some(resume_from);
                return Ok(event);
            }
            if let Some(error) = self.final_error.take() {
                return Err(error);
            }
            if self.ended {
                return Err(WatchError::Protocol { endpoint: String::new(), detail: "the watch already ended".into() });
            }
            let result = self.step().await;
            if let Err(error) = result {
                match error {
                    Step::Retry => self.back_off().await?,
                    Step::End(error) => {
                        self.ended = true;
                        self.final_error = Some(error);
                    }
                }
            }
        }
    }

    /// The index right after the last event [`WatchStream::next`] returned (or the start, before any): a new
    /// watch from there goes on exactly where this one is, with nothing repeated or lost.
    pub fn resume_from(&self) -> Option<u64> {
        self.reported_from
    }

    /// Connects if needed, then reads one chunk and handles its events.
    async fn step(&mut self) -> Result<(), Step> {
        if self.connection.is_none() {
            self.connect().await?;
        }
        let idle = self.client.config().request_timeout.max(Duration::from_secs(3));
        let Some((endpoint, response)) = self.connection.as_mut() else { unreachable!("connected above") };
        let endpoint = endpoint.clone();
        let chunk = match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            _ => return Err(self.broken(&endpoint)),
        };
        self.failing_since = None;
        for event in self.parser.push(&chunk) {
            let event = event.map_err(|e| self.protocol(&endpoint, e.to_string()))?;
            self.handle(&endpoint, event)?;
        }
        Ok(())
    }

    /// Opens a stream at the client's preferred endpoint, from the resume point.
    async fn connect(&mut self) -> Result<(), Step> {
        let endpoint = self.client.state().pick(Route::Any);
        let name = if self.options.is_key { "key" } else { "prefix" };
        let mut url = format!("{endpoint}/v1/watch?{name}={}", percent_encode(&self.options.target));
        if let Some(from) = self.received_from {
            url.push_str(&format!("&from_index={from}"));
        }
        if self.options.prev {
            url.push_str("&prev=true");
        }
        let connect_timeout = self.client.config().request_timeout;
        // The client's request timeout would also cut the body, and a watch's body lasts for ever: this request
        // gets a long one of its own, and a dead stream is noticed by the idle timer in `step`.
        let request = self.client.http().get(&url).timeout(STREAM_TIMEOUT);
        let answer = tokio::time::timeout(connect_timeout, request.send()).await;
        let Ok(Ok(response)) = answer else { return Err(self.broken(&endpoint)) };
        let status = response.status().as_u16();
        if status == 200 {
            // A fresh watch starts right after the node's read index: should this connection break before its
            // first complete group, the next one resumes there rather than at a later node's "now".
            if self.received_from.is_none() {
                let read_index = response.headers().get("x-tally-index").and_then(|v| v.to_str().ok());
                self.received_from = read_index.and_then(|v| v.parse::<u64>().ok()).map(|index| index + 1);
                self.reported_from = self.reported_from.or(self.received_from);
            }
            self.parser = SseParser::new();
            self.group.clear();
            self.connection = Some((endpoint, response));
            return Ok(());
        }
        let body = response.bytes().await.unwrap_or_default();
        let error = ApiError::from_response(&endpoint, status, None, &body);
        if status == 410 {
            let oldest = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["oldest_index"].as_u64())
                .unwrap_or(0);
            return Err(Step::End(WatchError::Compacted { oldest_index: oldest }));
        }
        if status >= 500 {
            return Err(self.broken(&endpoint));
        }
        Err(Step::End(WatchError::Refused(Box::new(error))))
    }

    /// Handles one event of the stream at `endpoint`.
    fn handle(&mut self, endpoint: &str, event: SseEvent) -> Result<(), Step> {
        match event.event.as_str() {
            "put" | "delete" => {
                let data: ChangeData =
                    serde_json::from_str(&event.data).map_err(|e| self.protocol(endpoint, e.to_string()))?;
                let index = data.index;
                if self.group.first().is_some_and(|(first, _)| *first != index) {
                    return Err(self.protocol(endpoint, format!("group {index} began before the last one ended")));
                }
                let change = change_of(event.event == "put", data).map_err(|e| self.protocol(endpoint, e))?;
                self.group.push((index, change));
                if event.id.as_deref() == Some(index.to_string().as_str()) {
                    let changes = self.group.drain(..).map(|(_, change)| change).collect();
                    self.received_from = Some(index + 1);
                    self.ready.push_back((WatchEvent::Changes { index, changes }, index + 1));
                }
            }
            "progress" => {
                let data: serde_json::Value =
                    serde_json::from_str(&event.data).map_err(|e| self.protocol(endpoint, e.to_string()))?;
                let Some(index) = data["index"].as_u64() else {
                    return Err(self.protocol(endpoint, "a progress event without an index".into()));
                };
                let resume_from = self.received_from.unwrap_or(0).max(index + 1);
                self.received_from = Some(resume_from);
                self.ready.push_back((WatchEvent::Progress { index }, resume_from));
            }
            "error" => {
                let data: ErrorData =
                    serde_json::from_str(&event.data).map_err(|e| self.protocol(endpoint, e.to_string()))?;
                self.connection = None;
                match (data.code.as_str(), data.resume_from, data.oldest_index) {
                    ("slow_watcher", Some(resume_from), _) => {
                        self.received_from = Some(resume_from);
                        return Ok(());
                    }
                    ("compacted", _, Some(oldest_index)) => {
                        return Err(Step::End(WatchError::Compacted { oldest_index }));
                    }
                    _ => {
                        let body = serde_json::json!({"error": {"code": data.code, "message": data.message}});
                        let error = ApiError::from_response(endpoint, 200, None, body.to_string().as_bytes());
                        return Err(Step::End(WatchError::Refused(Box::new(error))));
                    }
                }
            }
            _ => {} // unknown event types are ignored, as the SSE standard asks
        }
        Ok(())
    }

    /// Drops a connection that broke or went silent; the next step connects to another endpoint.
    fn broken(&mut self, endpoint: &str) -> Step {
        self.connection = None;
        self.client.state().on_failure(endpoint);
        self.failing_since.get_or_insert_with(Instant::now);
        Step::Retry
    }

    /// The end for a stream that is not one.
    fn protocol(&mut self, endpoint: &str, detail: String) -> Step {
        self.connection = None;
        Step::End(WatchError::Protocol { endpoint: endpoint.to_string(), detail })
    }

    /// Waits before the next connection, or gives up once nothing worked for the retry deadline.
    async fn back_off(&mut self) -> Result<(), WatchError> {
        let Some(since) = self.failing_since else { return Ok(()) };
        let config = self.client.config();
        if since.elapsed() > config.retry_deadline {
            self.ended = true;
            let endpoints = self.client.endpoints();
            let detail = "no node kept a watch open".to_string();
            return Err(WatchError::Unreachable(ClientError::Connect { endpoints, detail }));
        }
        tokio::time::sleep(config.backoff_min).await;
        Ok(())
    }
}

/// Why a step did not complete.
enum Step {
    /// Reconnect (after a pause).
    Retry,
    /// The watch is over.
    End(WatchError),
}

/// A change from its event data.
fn change_of(is_put: bool, data: ChangeData) -> Result<WatchChange, String> {
    let bytes = |field: &str, text: Option<String>, b64: Option<String>| match (text, b64) {
        (Some(text), _) => Ok(text.into_bytes()),
        (None, Some(b64)) => decode_base64(field, &b64),
        (None, None) => Ok(Vec::new()),
    };
    let prev = match data.prev {
        None => None,
        Some(None) => Some(None),
        Some(Some(prev)) => {
            let value = bytes("prev.value_b64", prev.value.clone(), prev.value_b64.clone())?;
            Some(Some((value, prev)))
        }
    };
    Ok(WatchChange {
        kind: if is_put { ChangeKind::Put } else { ChangeKind::Delete },
        key: bytes("key_b64", data.key, data.key_b64)?,
        value: bytes("value_b64", data.value, data.value_b64)?,
        create_index: data.create_index,
        modify_index: data.modify_index,
        version: data.version,
        prev,
    })
}

#[cfg(test)]
mod tests;
