//! Key/value calls: get, put, delete (with cas), prefix pages and prefix deletes.

use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use tally_kv::{Access, Command, KeyFilter, Response as KvResponse, Scope, Versioned};
use tally_node::{KvQuery, KvQueryOutput, ReadConsistency, Reply, RequestError};
use tally_raft::ProposeError;

use super::auth::authenticate;
use super::params::{Params, key_from_path};
use super::{ApiError, AppState, HEADER_INDEX, blocking, forward};
use crate::driver::Event;

/// Default number of keys in a page.
const PAGE_LIMIT_DEFAULT: u64 = 100;
/// The most keys in a page.
const PAGE_LIMIT_MAX: u64 = 10_000;
/// A page ends once its keys and values reach this many bytes (`more` is then `true`), so a page of large
/// values cannot make the node copy gigabytes.
const PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The path prefix the key follows in `uri`'s route.
fn key_prefix(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/db/") { "/db/" } else { "/v1/kv/" }
}

/// `GET /v1/kv/{key}` and `GET /db/{key}`.
pub(crate) async fn get_key(State(state): State<AppState>, parts: Parts) -> Response {
    let result = async {
        let uri = &parts.uri;
        let caller = authenticate(&state, &parts.headers)?;
        let key = key_from_path(uri.path(), key_prefix(uri), state.limits.max_key_bytes)?;
        caller.require(Scope::Key(&key), Access::Read)?;
        let params = Params::parse(uri.query(), &["consistency", blocking::WAIT_PARAMS[0], blocking::WAIT_PARAMS[1]])?;
        let consistency = params.consistency()?;
        if let Some(wait) = blocking::parse(&params)? {
            blocking::wait_for_change(&state, KeyFilter::Key(key.clone()), wait).await?;
        }
        if let Some(response) = read_at_leader_if_full(&state, &parts, Bytes::new(), consistency).await? {
            return Ok(response);
        }
        let (index, output) = read(&state, KvQuery::Get(key.clone()), consistency).await?;
        match output {
            KvQueryOutput::Get(Some(versioned)) => Ok(value_response(index, versioned)),
            _ => {
                let mut response = ApiError::not_found(format!("key {:?} does not exist", lossy(&key))).into_response();
                response.headers_mut().insert(HEADER_INDEX, HeaderValue::from(index));
                Ok(response)
            }
        }
    }
    .await;
    state.finish(result)
}

/// The raw value with its indexes in headers.
fn value_response(index: u64, versioned: Versioned) -> Response {
    let mut response = (StatusCode::OK, versioned.value).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(HEADER_INDEX, HeaderValue::from(index));
    headers.insert("x-tally-create-index", HeaderValue::from(versioned.create_index));
    headers.insert("x-tally-modify-index", HeaderValue::from(versioned.modify_index));
    headers.insert("x-tally-version", HeaderValue::from(versioned.version));
    response
}

/// `PUT /v1/kv/{key}[?cas=M]` and `POST /db/{key}`: the body is the value.
pub(crate) async fn put_key(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = request.into_parts();
        let caller = authenticate(&state, &parts.headers)?;
        let key = key_from_path(parts.uri.path(), key_prefix(&parts.uri), state.limits.max_key_bytes)?;
        caller.require(Scope::Key(&key), Access::Write)?;
        let cas = Params::parse(parts.uri.query(), &["cas"])?.u64("cas")?;
        let value = read_body(body, state.limits.max_body_bytes).await?;
        if value.len() > state.limits.max_value_bytes {
            return Err(ApiError::too_large(format!(
                "the value is {} bytes; the limit is {} (--max-value-bytes)",
                value.len(),
                state.limits.max_value_bytes
            )));
        }
        let command = Command::Put { key, value: value.to_vec(), cas };
        write(&state, &parts, value, &command).await
    }
    .await;
    state.finish(result)
}

/// `DELETE /v1/kv/{key}[?cas=M]`.
pub(crate) async fn delete_key(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = request.into_parts();
        let caller = authenticate(&state, &parts.headers)?;
        let key = key_from_path(parts.uri.path(), "/v1/kv/", state.limits.max_key_bytes)?;
        caller.require(Scope::Key(&key), Access::Write)?;
        let cas = Params::parse(parts.uri.query(), &["cas"])?.u64("cas")?;
        let body = read_body(body, state.limits.max_body_bytes).await?;
        write(&state, &parts, body, &Command::Delete { key, cas }).await
    }
    .await;
    state.finish(result)
}

/// `DELETE /v1/kv?prefix=P`: every key starting with `P` (not empty), in one entry.
pub(crate) async fn delete_prefix(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = request.into_parts();
        let caller = authenticate(&state, &parts.headers)?;
        let params = Params::parse(parts.uri.query(), &["prefix"])?;
        let prefix = params.bytes("prefix").unwrap_or_default().to_vec();
        if prefix.is_empty() {
            return Err(ApiError::bad_request(
                "DELETE /v1/kv needs a non-empty ?prefix=P (it deletes every key starting with P; deleting every \
                 key at once is not offered); to delete one key use DELETE /v1/kv/KEY",
            ));
        }
        if prefix.len() > state.limits.max_key_bytes {
            return Err(ApiError::too_large(format!(
                "the prefix is {} bytes; the limit is {} (--max-key-bytes)",
                prefix.len(),
                state.limits.max_key_bytes
            )));
        }
        caller.require(Scope::Prefix(&prefix), Access::Write)?;
        let body = read_body(body, state.limits.max_body_bytes).await?;
        write(&state, &parts, body, &Command::DeletePrefix { prefix }).await
    }
    .await;
    state.finish(result)
}

/// One entry of a page (and of a transaction's `list` result).
#[derive(Serialize)]
pub(super) struct PageItem {
    /// The key, if UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// The key in base64, if not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_b64: Option<String>,
    /// The value, if UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// The value in base64, if not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    value_b64: Option<String>,
    /// The index that created the key.
    create_index: u64,
    /// The index that last wrote it.
    modify_index: u64,
    /// Writes since it was created (1 on creation).
    version: u64,
}

impl PageItem {
    /// The item of `key` and its `versioned` value: text where UTF-8, else base64.
    pub(super) fn new(key: Vec<u8>, versioned: Versioned) -> PageItem {
        let (key, key_b64) = text_or_base64(key);
        let (value, value_b64) = text_or_base64(versioned.value);
        PageItem {
            key,
            key_b64,
            value,
            value_b64,
            create_index: versioned.create_index,
            modify_index: versioned.modify_index,
            version: versioned.version,
        }
    }
}

/// A page of keys.
#[derive(Serialize)]
struct Page {
    /// The applied index the page reflects.
    index: u64,
    /// The keys, in byte order.
    items: Vec<PageItem>,
    /// Whether more keys follow.
    more: bool,
}

/// Text if UTF-8, else base64: `(text, base64)`.
pub(super) fn text_or_base64(bytes: Vec<u8>) -> (Option<String>, Option<String>) {
    match String::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(error) => (None, Some(base64::engine::general_purpose::STANDARD.encode(error.as_bytes()))),
    }
}

/// `GET /v1/kv?prefix=P&limit=L&after=K&consistency=C`.
pub(crate) async fn list(State(state): State<AppState>, parts: Parts) -> Response {
    let result = async {
        let caller = authenticate(&state, &parts.headers)?;
        let allowed = ["prefix", "limit", "after", "consistency", blocking::WAIT_PARAMS[0], blocking::WAIT_PARAMS[1]];
        let params = Params::parse(parts.uri.query(), &allowed)?;
        caller.require(Scope::Prefix(params.bytes("prefix").unwrap_or_default()), Access::Read)?;
        let limit = params.u64("limit")?.unwrap_or(PAGE_LIMIT_DEFAULT);
        if limit == 0 || limit > PAGE_LIMIT_MAX {
            return Err(ApiError::bad_request(format!("limit must be between 1 and {PAGE_LIMIT_MAX}, got {limit}")));
        }
        let query = KvQuery::Scan {
            prefix: params.bytes("prefix").unwrap_or_default().to_vec(),
            after: params.bytes("after").map(<[u8]>::to_vec),
            limit: limit as usize,
            max_bytes: PAGE_BYTES_MAX,
        };
        let consistency = params.consistency()?;
        if let Some(wait) = blocking::parse(&params)? {
            let prefix = params.bytes("prefix").unwrap_or_default().to_vec();
            blocking::wait_for_change(&state, KeyFilter::Prefix(prefix), wait).await?;
        }
        if let Some(response) = read_at_leader_if_full(&state, &parts, Bytes::new(), consistency).await? {
            return Ok(response);
        }
        let (index, output) = read(&state, query, consistency).await?;
        let KvQueryOutput::Scan(entries, more) = output else {
            return Err(ApiError::unavailable("internal error: a scan was answered with a get"));
        };
        let items = entries.into_iter().map(|(key, versioned)| PageItem::new(key, versioned)).collect();
        let mut response = axum::Json(Page { index, items, more }).into_response();
        response.headers_mut().insert(HEADER_INDEX, HeaderValue::from(index));
        Ok(response)
    }
    .await;
    state.finish(result)
}

/// Sends a linearizable read (`parts`, and `body` for a read that has one: a read-only transaction) to the
/// leader when this node's disk is full (the `no_space` alarm): a full follower drops the entries it cannot
/// store, so it may never reach the read index the leader gives it until space returns, and the read would
/// only time out. `None`: read here.
///
/// # Errors
/// As [`forward::read`].
pub(super) async fn read_at_leader_if_full(
    state: &AppState,
    parts: &Parts,
    body: Bytes,
    consistency: ReadConsistency,
) -> Result<Option<Response>, ApiError> {
    let full = state.published.metrics.alarm_no_space.load(Ordering::Relaxed);
    if consistency != ReadConsistency::Linearizable || !full || state.published.is_leader() {
        return Ok(None);
    }
    match state.published.leader() {
        Some(leader) if !state.is_forwarded_by_member(parts) => {
            forward::read(state, leader, parts, body).await.map(Some)
        }
        _ => Ok(None),
    }
}

/// Reads through the node loop: `(applied index, answer)`.
pub(super) async fn read(
    state: &AppState,
    query: KvQuery,
    consistency: ReadConsistency,
) -> Result<(u64, KvQueryOutput), ApiError> {
    let result = state.ask(|reply| Event::Read { query, consistency, reply }, false).await?;
    match result {
        Ok(Reply::Read { index, output }) => Ok((index.0, output)),
        Ok(_) => Err(ApiError::unavailable("internal error: a read was answered with a write")),
        Err(error) => Err(ApiError::from_request(&error, false)),
    }
}

/// Reads a whole request body, at most `max` bytes.
///
/// # Errors
/// `413` over the limit, `400` if the body is cut short or unreadable.
pub(super) async fn read_body(body: Body, max: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::too_large(format!("the request body is over the limit of {max} bytes (--max-body-bytes)")))
        }
        Err(error) => Err(ApiError::bad_request(format!("the request body could not be read (truncated?): {error}"))),
    }
}

/// What became of a write.
pub(super) enum Written {
    /// This node follows: the request went to the leader, and this is the leader's answer, to relay as it is.
    Forwarded(Response),
    /// This node leads: the command was applied, and this is what applying it produced.
    Applied(KvResponse),
}

/// Proposes `command` here if this node leads, or forwards the request (`parts` + `body`) to the leader.
pub(super) async fn propose(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: Bytes,
    command: &Command,
) -> Result<Written, ApiError> {
    let forwarded = state.is_forwarded_by_member(parts);
    if !state.published.is_leader() && !forwarded {
        if let Some(leader) = state.published.leader() {
            return forward::write(state, leader, parts, body).await.map(Written::Forwarded);
        }
    }
    let encoded = command.encode();
    let result = state.ask(|reply| Event::Propose { command: encoded, reply }, true).await?;
    match result {
        Ok(Reply::Written { output, .. }) => Ok(Written::Applied(output)),
        Ok(_) => Err(ApiError::unavailable("internal error: a write was answered with a read")),
        Err(RequestError::Rejected(ProposeError::NotLeader { leader: Some(leader) })) if !forwarded => {
            forward::write(state, leader, parts, body).await.map(Written::Forwarded)
        }
        Err(error) => Err(ApiError::from_request(&error, true)),
    }
}

/// Proposes a write here if this node leads, or forwards it to the leader.
async fn write(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: Bytes,
    command: &Command,
) -> Result<Response, ApiError> {
    let cas = command.cas();
    match propose(state, parts, body, command).await? {
        Written::Forwarded(response) => Ok(response),
        Written::Applied(output) => write_response(output, cas),
    }
}

/// The answer to an applied write.
pub(super) fn write_response(output: KvResponse, cas: Option<u64>) -> Result<Response, ApiError> {
    let (index, body) = match output {
        KvResponse::Put { index } => (index, serde_json::json!({ "index": index })),
        KvResponse::Delete { index, deleted } => (index, serde_json::json!({ "index": index, "deleted": deleted })),
        KvResponse::DeletePrefix { index, deleted } => {
            (index, serde_json::json!({ "index": index, "deleted": deleted }))
        }
        KvResponse::Txn { .. } => {
            return Err(ApiError::unavailable("internal error: a key write was answered as a transaction"));
        }
        KvResponse::Cluster { index } | KvResponse::Auth { index } => (index, serde_json::json!({ "index": index })),
        KvResponse::AuthRefused { error, .. } => return Err(ApiError::from_auth(&error)),
        KvResponse::CasFailed { current_modify_index, .. } => {
            return Err(ApiError::cas_failed(cas.unwrap_or_default(), current_modify_index));
        }
        KvResponse::Invalid { reason, .. } => {
            return Err(ApiError::bad_request(format!("the command was rejected when applied: {reason}")));
        }
    };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(HEADER_INDEX, HeaderValue::from(index));
    Ok(response)
}

/// A key for messages: text, lossy.
fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}
