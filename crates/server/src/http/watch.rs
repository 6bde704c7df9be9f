//! `GET /v1/watch`: a watch of a key or a prefix as Server-Sent Events (docs/http-api.md, "Watches").
//!
//! ```text
//!  request ─▶ authenticate, parse, authorize (read on the key or prefix)
//!          ─▶ linearizable read of nothing (KvQuery::Applied): the read index, so the watch never starts in the
//!             past, even on a follower
//!          ─▶ Event::Watch ─▶ node loop subscribes ─▶ 410 compacted / 400 / 503, or a channel
//!          ─▶ 200 text/event-stream, X-Tally-Index: read index; body = the channel's deliveries, encoded
//! ```
//!
//! The stream checks the caller's permission again whenever the published auth state changes (seen when the
//! next delivery arrives, at the latest with the next progress event), and ends with `permission_denied` once
//! the caller may no longer read what it watches.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tally_kv::{Access, AuthState, KeyFilter, Scope};
use tally_node::{KvQuery, ReadConsistency, SubscribeError};
use tokio::sync::mpsc;

use super::auth::{authenticate, authenticate_with};
use super::params::Params;
use super::{ApiError, AppState, HEADER_INDEX, sse};
use crate::driver::watch::{WatchItem, WatchMessage, WatchRequest};
use crate::driver::{Event, Published};

/// The header an SSE client resends on reconnect: the id of the last event it received.
const LAST_EVENT_ID: &str = "last-event-id";

/// `GET /v1/watch?prefix=P|key=K&from_index=N&prev=true`.
pub(crate) async fn watch(State(state): State<AppState>, parts: Parts) -> Response {
    let result = async {
        // Taken before the permission check, so a revoke applied at any point after it (during the read or the
        // subscribe, say) differs from `seen` and is checked again at the first delivery.
        let seen = state.published.auth();
        let caller = authenticate(&state, &parts.headers)?;
        let params = Params::parse(parts.uri.query(), &["prefix", "key", "from_index", "prev"])?;
        let filter = filter_of(&params, state.limits.max_key_bytes)?;
        caller.require(scope_of(&filter), Access::Read)?;
        let from = start_of(&params, &parts.headers)?;
        let prev = flag(&params, "prev")?;
        let (read_index, _) = super::kv::read(&state, KvQuery::Applied, ReadConsistency::Linearizable).await?;
        let request = WatchRequest { filter: filter.clone(), prev, from, read_index: Some(read_index) };
        let messages = subscribe(&state, request).await?;
        let check = AuthCheck { published: Arc::clone(&state.published), seen, headers: credentials(&parts.headers) };
        Ok(stream_response(read_index, WatchStream { messages, filter, prev, check, done: false }))
    }
    .await;
    state.finish(result)
}

/// Asks the node loop for a subscription.
///
/// # Errors
/// `410 compacted` (with `oldest_index`), `400` for a start of 0 or in the future, `503` when the node serves
/// as many watchers as allowed, or the node loop's own errors.
pub(super) async fn subscribe(
    state: &AppState,
    request: WatchRequest,
) -> Result<mpsc::Receiver<WatchMessage>, ApiError> {
    match state.ask(|reply| Event::Watch { request, reply }, false).await? {
        Ok(messages) => Ok(messages),
        Err(error @ SubscribeError::Compacted { oldest, .. }) => Err(ApiError::compacted(error.to_string(), oldest)),
        Err(error @ SubscribeError::TooManyWatchers { .. }) => Err(ApiError::unavailable(error.to_string())),
        Err(error) => Err(ApiError::bad_request(error.to_string())),
    }
}

/// The keys watched: `key=K` or `prefix=P` (the empty prefix, or neither, watches every key).
///
/// # Errors
/// `400` for both at once or an empty key, `413` for a key or prefix over the key limit.
fn filter_of(params: &Params, max_key_bytes: usize) -> Result<KeyFilter, ApiError> {
    let filter = match (params.bytes("key"), params.bytes("prefix")) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give key=K or prefix=P, not both")),
        (Some([]), None) => return Err(ApiError::bad_request("key= is empty: name a key, or watch a prefix")),
        (Some(key), None) => KeyFilter::Key(key.to_vec()),
        (None, prefix) => KeyFilter::Prefix(prefix.unwrap_or_default().to_vec()),
    };
    let (KeyFilter::Key(bytes) | KeyFilter::Prefix(bytes)) = &filter;
    if bytes.len() > max_key_bytes {
        return Err(ApiError::too_large(format!(
            "the key or prefix is {} bytes; the limit is {max_key_bytes} (--max-key-bytes)",
            bytes.len()
        )));
    }
    Ok(filter)
}

/// The permission a watch of `filter` needs.
fn scope_of(filter: &KeyFilter) -> Scope<'_> {
    match filter {
        KeyFilter::Key(key) => Scope::Key(key),
        KeyFilter::Prefix(prefix) => Scope::Prefix(prefix),
    }
}

/// Where the watch starts: `from_index` if given, else the `Last-Event-ID` + 1, else `None` (right after the
/// read index).
///
/// # Errors
/// `400` for a `from_index` of 0 or not a number, or a `Last-Event-ID` that is not a number.
fn start_of(params: &Params, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    if let Some(from) = params.u64("from_index")? {
        if from == 0 {
            return Err(ApiError::bad_request("from_index 0 is not a log index: indexes start at 1"));
        }
        return Ok(Some(from));
    }
    let Some(value) = headers.get(LAST_EVENT_ID) else { return Ok(None) };
    let last: u64 = value.to_str().ok().and_then(|text| text.trim().parse().ok()).ok_or_else(|| {
        ApiError::bad_request("Last-Event-ID must be the index of the last event received (a number)")
    })?;
    Ok(Some(last.saturating_add(1)))
}

/// A `true`/`false` parameter, `false` when absent.
///
/// # Errors
/// `400` for any other value.
pub(super) fn flag(params: &Params, name: &str) -> Result<bool, ApiError> {
    match params.bytes(name) {
        None | Some(b"false") => Ok(false),
        Some(b"true" | b"") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} must be true or false, got {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// The `200` whose body is the event stream.
fn stream_response(read_index: u64, stream: WatchStream) -> Response {
    let events = futures_util::stream::unfold(stream, |mut stream| async move {
        let bytes = stream.next().await?;
        Some((Ok::<Bytes, Infallible>(bytes), stream))
    });
    let mut response = (StatusCode::OK, Body::from_stream(events)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(HEADER_INDEX, HeaderValue::from(read_index));
    response
}

/// The request's credentials (its `Authorization` header), copied: a stream lives long, and the request's own
/// header values share the connection's read buffer (8 KiB), which they would keep alive for every watcher.
fn credentials(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let copied = HeaderValue::from_bytes(value.as_bytes()).expect("a header value's bytes make a header value");
        kept.insert(header::AUTHORIZATION, copied);
    }
    kept
}

/// Whether the caller may still read what it watches.
struct AuthCheck {
    /// Where the auth state is published.
    published: Arc<Published>,
    /// The auth state last checked against.
    seen: Arc<AuthState>,
    /// The request's credentials (a copy of its token), to authenticate again against a new state.
    headers: HeaderMap,
}

impl AuthCheck {
    /// `Ok` while the caller may read `filter`; checks again only when the published state changed.
    ///
    /// # Errors
    /// Why not any more.
    fn still_allowed(&mut self, filter: &KeyFilter) -> Result<(), ApiError> {
        let current = self.published.auth();
        if Arc::ptr_eq(&current, &self.seen) {
            return Ok(());
        }
        self.seen = Arc::clone(&current);
        authenticate_with(current, &self.headers)?.require(scope_of(filter), Access::Read)
    }
}

/// One watch's stream: deliveries from the node loop, encoded.
struct WatchStream {
    /// The deliveries.
    messages: mpsc::Receiver<WatchMessage>,
    /// The keys watched.
    filter: KeyFilter,
    /// Whether previous values are shown.
    prev: bool,
    /// The permission check.
    check: AuthCheck,
    /// Set after the last event: the stream ends.
    done: bool,
}

impl WatchStream {
    /// The bytes of the next deliveries; `None` when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let message = self.messages.recv().await?;
        if let Err(denied) = self.check.still_allowed(&self.filter) {
            self.done = true;
            return Some(sse::permission_denied(&denied.message));
        }
        match message {
            WatchMessage::End(error) => {
                self.done = true;
                Some(sse::error(error))
            }
            WatchMessage::Items(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        WatchItem::Changes { batch, encoded } => {
                            let bytes = encoded.get_or_init(|| sse::changes(&batch, &self.filter, self.prev));
                            out.extend_from_slice(bytes);
                        }
                        WatchItem::Progress(index) => out.extend_from_slice(&sse::progress(index)),
                    }
                }
                Some(Bytes::from(out))
            }
        }
    }
}
