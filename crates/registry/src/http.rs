//! The HTTP wrapper around the [`Registry`] table: decode, check, lock, call, encode.
//!
//! | call | answer |
//! | --- | --- |
//! | `PUT /v1/nodes/{id}` body `{"client_url","peer_url","cluster_id"?}` | register or heartbeat: `{"id","client_url","peer_url","cluster_id","new","ttl_ms"}`; `cluster_id` (1-64 of `[A-Za-z0-9_-]`) is sent by members of a formed cluster and may adopt the claim |
//! | `GET /v1/nodes` | `{"nodes":[{"id","client_url","peer_url","cluster_id","last_seen_ms_ago"}]}`, live nodes in id order; `cluster_id` is `null` for nodes in no cluster |
//! | `DELETE /v1/nodes/{id}` | leave: `{"id"}`, or `404` if not registered |
//! | `POST /v1/bootstrap` body `{"id"}` | claim: `{"winner","cluster_id","you_won"}`, or `503 warming_up` |
//! | `GET /v1/bootstrap` | the cluster: `{"winner","cluster_id"}`, or `404` while no claim is held |
//! | `GET /livez` | `ok`; needs no token |
//!
//! Errors are `{"error":{"code","message"}}`. `503 warming_up` (no claim is held and the registry started
//! less than one TTL ago; see the bootstrap rule in the `registry` module) also carries `"retry_after_ms"` in
//! `error` and a `Retry-After` header in whole seconds, rounded up. With a cluster token configured, every
//! call but `/livez` without `Authorization: Bearer TOKEN` is `401 unauthorized`.
//!
//! The table sits behind one `std::sync::Mutex` (never held across an `.await`, so a blocking lock is right
//! and cheaper than tokio's). The clock is read **while holding the lock**, so the times the table sees are
//! in call order and never go backwards, which the table asserts.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ClusterId, Error, NodeId, Registry, RegistryConfig};

/// The largest request body accepted; a registration is well under 1 KiB.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// The configuration of the registry service.
#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    /// The table's configuration.
    pub registry: RegistryConfig,
    /// The shared cluster secret; when set, every call but `/livez` needs `Authorization: Bearer TOKEN`, so a
    /// stranger on the network can neither join nor poison the table.
    pub cluster_token: Option<String>,
    /// HTTPS: the registry's certificate (and, if the config requires them, the CA of client certificates);
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Timeouts and connection caps of the port.
    pub limits: tally_net::serve::Limits,
}

/// The state shared by all handlers. Cheap to clone.
#[derive(Clone)]
pub struct RegistryState {
    /// The shared parts.
    inner: Arc<Shared>,
}

/// What the handlers share.
struct Shared {
    /// The one table; one lock makes every call, and in particular every bootstrap claim, atomic.
    registry: Mutex<Registry>,
    /// The origin of the monotonic milliseconds given to the table.
    started: Instant,
    /// See [`ServiceConfig::cluster_token`].
    cluster_token: Option<String>,
}

impl RegistryState {
    /// The state for `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid table configuration or an empty cluster token.
    pub fn new(config: ServiceConfig) -> Result<RegistryState, Error> {
        config.registry.validate()?;
        if config.cluster_token.as_deref() == Some("") {
            return Err(Error::InvalidConfig("the cluster token is empty".to_string()));
        }
        let shared = Shared {
            registry: Mutex::new(Registry::new(config.registry)),
            started: Instant::now(),
            cluster_token: config.cluster_token,
        };
        Ok(RegistryState { inner: Arc::new(shared) })
    }

    /// Runs `call` on the table with the current time, under the lock.
    fn with_registry<T>(&self, call: impl FnOnce(&mut Registry, u64) -> T) -> Result<T, ApiError> {
        let mut registry = self.lock()?;
        let now_ms = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(call(&mut registry, now_ms))
    }

    /// The table's lock. A poisoned lock means an invariant assertion fired: refuse to serve from it.
    fn lock(&self) -> Result<MutexGuard<'_, Registry>, ApiError> {
        self.inner.registry.lock().map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the registry's table is corrupt (an invariant check failed); restart the registry",
            )
        })
    }
}

/// The router of the registry API (DESIGN.md, "Registry API").
pub fn router(state: RegistryState) -> Router {
    Router::new()
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}", put(put_node).delete(delete_node))
        .route("/v1/bootstrap", get(get_claim).post(post_claim))
        .route("/livez", get(livez))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Serves the registry API on `listener` until `shutdown` completes, then drains in-flight calls (at most
/// the drain timeout of `config.limits`). The port has the timeouts and connection caps of
/// [`tally_net::serve`], and TLS when `config.tls` is set.
///
/// # Errors
/// [`Error::InvalidConfig`] for a bad configuration, [`Error::Io`] if the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config.limits.validate().map_err(Error::InvalidConfig)?;
    let options = tally_net::serve::Options { tls: config.tls.clone(), limits: config.limits, metrics: Arc::default() };
    let state = RegistryState::new(config)?;
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, tls = options.tls.is_some(), "registry listening");
    }
    tally_net::serve::serve(listener, router(state), options, shutdown).await?;
    Ok(())
}

/// `PUT /v1/nodes/{id}` body.
#[derive(Deserialize)]
struct RegisterBody {
    /// Where clients reach the node.
    client_url: String,
    /// Where peers reach the node.
    peer_url: String,
    /// The cluster the node is a member of; absent (or `null`) for a node in none yet.
    #[serde(default)]
    cluster_id: Option<String>,
}

/// `PUT /v1/nodes/{id}` answer.
#[derive(Serialize)]
struct RegisterReply {
    /// The node's id.
    id: String,
    /// The client URL now on record.
    client_url: String,
    /// The peer URL now on record.
    peer_url: String,
    /// The cluster id now on record (`null`: none).
    cluster_id: Option<String>,
    /// Whether the node was not live before.
    new: bool,
    /// Heartbeat well within this.
    ttl_ms: u64,
}

/// An entry of `GET /v1/nodes`.
#[derive(Serialize)]
struct NodeView {
    /// The node's id.
    id: String,
    /// Where clients reach the node.
    client_url: String,
    /// Where peers reach the node.
    peer_url: String,
    /// The cluster the node said it belongs to (`null`: none).
    cluster_id: Option<String>,
    /// How long ago the last heartbeat arrived.
    last_seen_ms_ago: u64,
}

/// `GET /v1/nodes` answer.
#[derive(Serialize)]
struct NodesReply {
    /// The live nodes, in id order.
    nodes: Vec<NodeView>,
}

/// `POST /v1/bootstrap` body.
#[derive(Deserialize)]
struct ClaimBody {
    /// The claimant.
    id: String,
}

/// `POST /v1/bootstrap` answer.
#[derive(Serialize)]
struct ClaimReply {
    /// The node that may start the cluster.
    winner: String,
    /// The cluster's id.
    cluster_id: String,
    /// Whether the claimant is the winner.
    you_won: bool,
}

/// `GET /v1/bootstrap` answer.
#[derive(Serialize)]
struct ClaimView {
    /// The node that may start the cluster.
    winner: String,
    /// The cluster's id.
    cluster_id: String,
}

/// `PUT /v1/nodes/{id}`: register or heartbeat.
async fn put_node(
    State(state): State<RegistryState>,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = node_id_from_path(path)?;
    let bytes = read_body(body).await?;
    let request: RegisterBody = parse_json(
        &bytes,
        r#"{"client_url":"http://host:port","peer_url":"http://host:port"} with an optional "cluster_id":"ID""#,
    )?;
    let cluster_id = request.cluster_id.as_deref().map(ClusterId::parse).transpose()?;
    let (is_new, ttl_ms) = state.with_registry(|registry, now_ms| {
        let is_new = registry.register(id.clone(), &request.client_url, &request.peer_url, cluster_id.clone(), now_ms);
        (is_new, registry.config().ttl_ms)
    })?;
    let is_new = is_new?;
    if is_new {
        tracing::info!(
            %id,
            client_url = %request.client_url,
            peer_url = %request.peer_url,
            cluster_id = cluster_id.as_ref().map_or("-", ClusterId::as_str),
            "node registered"
        );
    }
    let reply = RegisterReply {
        id: id.to_string(),
        client_url: request.client_url,
        peer_url: request.peer_url,
        cluster_id: cluster_id.map(|cluster_id| cluster_id.to_string()),
        new: is_new,
        ttl_ms,
    };
    Ok(axum::Json(reply).into_response())
}

/// `GET /v1/nodes`: the live nodes.
async fn list_nodes(State(state): State<RegistryState>) -> Result<Response, ApiError> {
    let nodes = state.with_registry(|registry, now_ms| {
        let entries = registry.live_nodes(now_ms);
        entries
            .into_iter()
            .map(|entry| NodeView {
                id: entry.id.to_string(),
                client_url: entry.client_url,
                peer_url: entry.peer_url,
                cluster_id: entry.cluster_id.map(|cluster_id| cluster_id.to_string()),
                last_seen_ms_ago: now_ms - entry.last_seen_ms,
            })
            .collect()
    })?;
    Ok(axum::Json(NodesReply { nodes }).into_response())
}

/// `DELETE /v1/nodes/{id}`: leave.
async fn delete_node(
    State(state): State<RegistryState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = node_id_from_path(path)?;
    let was_live = state.with_registry(|registry, now_ms| {
        let _ = registry.live_nodes(now_ms);
        registry.leave(&id)
    })?;
    if !was_live {
        return Err(ApiError::not_found(format!("node {id} is not registered (never, or its entry expired)")));
    }
    tracing::info!(%id, "node left");
    Ok(axum::Json(serde_json::json!({ "id": id.as_str() })).into_response())
}

/// `POST /v1/bootstrap`: claim the right to start the cluster.
async fn post_claim(State(state): State<RegistryState>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(body).await?;
    let request: ClaimBody = parse_json(&bytes, r#"{"id":"n1"}"#)?;
    let id = NodeId::parse(&request.id)?;
    let claim = state.with_registry(|registry, now_ms| registry.bootstrap_claim(id.clone(), now_ms))??;
    if claim.new {
        tracing::info!(winner = %claim.winner, cluster_id = %claim.cluster_id, "bootstrap claimed");
    }
    let reply = ClaimReply {
        you_won: claim.winner == id,
        winner: claim.winner.to_string(),
        cluster_id: claim.cluster_id.to_string(),
    };
    Ok(axum::Json(reply).into_response())
}

/// `GET /v1/bootstrap`: the cluster (the held claim, granted or adopted), or 404.
async fn get_claim(State(state): State<RegistryState>) -> Result<Response, ApiError> {
    let claim = state.lock()?.current_claim();
    let Some(claim) = claim else {
        return Err(ApiError::not_found(
            "no cluster is known: no node has claimed the bootstrap yet, and no member of a cluster has registered",
        ));
    };
    let view = ClaimView { winner: claim.winner.to_string(), cluster_id: claim.cluster_id.to_string() };
    Ok(axum::Json(view).into_response())
}

/// `GET /livez`: the process serves and its table is sound.
async fn livez(State(state): State<RegistryState>) -> Result<Response, ApiError> {
    drop(state.lock()?);
    Ok((StatusCode::OK, "ok\n").into_response())
}

/// `404` for an unknown route.
async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such route: {} {}; the registry API is /v1/nodes, /v1/nodes/{{id}}, /v1/bootstrap and /livez",
        request.method(),
        request.uri().path()
    ))
}

/// `405` for a known route with the wrong method.
async fn method_not_allowed(request: Request) -> ApiError {
    let message = format!("{} is not allowed on {}", request.method(), request.uri().path());
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
}

/// Refuses calls without the cluster token, when one is configured. `/livez` stays open for health probes.
async fn require_token(State(state): State<RegistryState>, request: Request, next: Next) -> Response {
    let Some(token) = state.inner.cluster_token.as_deref() else {
        return next.run(request).await;
    };
    if request.uri().path() == "/livez" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let problem = match presented {
        None => "this registry requires the cluster token as `Authorization: Bearer TOKEN`",
        Some(presented) if !constant_time_eq(presented.as_bytes(), token.as_bytes()) => "the cluster token is wrong",
        Some(_) => return next.run(request).await,
    };
    let message = format!("{problem}; pass --cluster-token or set TALLY_CLUSTER_TOKEN to the cluster's token");
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Whether `a == b`, in time that depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        difference |= std::hint::black_box(x ^ y);
    }
    difference == 0
}

/// The node id in the path.
fn node_id_from_path(path: Result<Path<String>, PathRejection>) -> Result<NodeId, ApiError> {
    let Path(id) = path.map_err(|rejection| ApiError::bad_request(format!("bad path: {}", rejection.body_text())))?;
    Ok(NodeId::parse(&id)?)
}

/// Reads the whole body, at most [`BODY_BYTES_MAX`] bytes.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    match Limited::new(body, BODY_BYTES_MAX).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over the limit of {BODY_BYTES_MAX} bytes"),
        )),
        Err(error) => Err(ApiError::bad_request(format!("the request body could not be read: {error}"))),
    }
}

/// Decodes a JSON body; `expected` shows the right shape in the error.
fn parse_json<T: DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        // serde skips unknown fields without checking their bytes: refuse what no JSON parser accepts.
        ApiError::bad_request(format!("the body is not UTF-8 ({error}); expected {expected}"))
    })?;
    // serde also fills a struct from an array of its fields: only an object is a body (JSON whitespace first).
    if text.trim_start_matches([' ', '\t', '\n', '\r']).as_bytes().first() != Some(&b'{') {
        return Err(ApiError::bad_request(format!("the body is not a JSON object; expected {expected}")));
    }
    serde_json::from_str(text).map_err(|error| {
        let what = match error.classify() {
            serde_json::error::Category::Data => "the JSON body has the wrong shape",
            _ => "the body is not valid JSON",
        };
        ApiError::bad_request(format!("{what}: {error}; expected {expected}"))
    })
}

/// A failed call: the same JSON shape as the node API, `{"error":{"code","message"}}`.
#[derive(Debug)]
struct ApiError {
    /// The HTTP status.
    status: StatusCode,
    /// A stable machine-readable code.
    code: &'static str,
    /// What happened and what to do about it.
    message: String,
    /// For `503 warming_up`: when to retry, sent as `error.retry_after_ms` and as `Retry-After` (seconds).
    retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error.
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after_ms: None }
    }

    /// `400 bad_request`.
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// `404 not_found`.
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        let (status, code) = match &error {
            Error::InvalidNodeId { .. } | Error::InvalidClusterId { .. } | Error::InvalidUrl { .. } => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Error::Full { .. } => (StatusCode::SERVICE_UNAVAILABLE, "full"),
            Error::WarmingUp { .. } => (StatusCode::SERVICE_UNAVAILABLE, "warming_up"),
            Error::InvalidConfig(_) | Error::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let retry_after_ms = match &error {
            Error::WarmingUp { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        };
        ApiError { retry_after_ms, ..ApiError::new(status, code, error.to_string()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(retry_after_ms) = self.retry_after_ms {
            error["retry_after_ms"] = retry_after_ms.into();
        }
        let mut response = (self.status, axum::Json(serde_json::json!({ "error": error }))).into_response();
        if let Some(retry_after_ms) = self.retry_after_ms {
            let seconds = retry_after_ms.div_ceil(1_000);
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
