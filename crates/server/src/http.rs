//! The client HTTP API (docs/http-api.md): axum routes over the node loop.
//!
//! ```text
//!  request ──route──▶ handler: authenticate (401) ─▶ decode key/params/body (400/413 on anything malformed)
//!                               ─▶ authorize against the published auth state (403)
//!     write on a follower ──forward──▶ the leader's client URL (same request), answer relayed
//!     otherwise ──Event──▶ node loop ──oneshot──▶ answer (504 after the request timeout)
//!  every answer ──Shared::finish──▶ + X-Tally-Index (applied index unless set), X-Tally-Leader
//! ```

mod auth;
mod blocking;
mod cluster;
mod error;
mod forward;
mod join;
mod json;
mod kv;
mod metrics;
pub(crate) mod params;
mod sse;
pub(crate) mod txn;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tally_raft::NodeId;
use tokio::sync::oneshot;

use crate::config::Limits;
use crate::driver::{self, Event, Published};
use crate::peer::PeerTransport;
pub(crate) use error::ApiError;
pub(crate) use metrics::HttpMetrics;

/// The applied index an answer reflects.
pub(crate) const HEADER_INDEX: HeaderName = HeaderName::from_static("x-tally-index");
/// The leader's id.
pub(crate) const HEADER_LEADER: HeaderName = HeaderName::from_static("x-tally-leader");
/// Set on a forwarded write: the node that forwarded it (a forwarded write is never forwarded again). Trusted
/// only from a member: see [`Shared::is_forwarded_by_member`].
pub(crate) const HEADER_FORWARDED_BY: HeaderName = HeaderName::from_static("x-tally-forwarded-by");
/// Set on a forwarded write when the cluster has a token: the token, proving that a member forwarded it.
pub(crate) const HEADER_FORWARD_TOKEN: HeaderName = HeaderName::from_static("x-tally-forward-token");

/// What every handler shares.
pub(crate) struct Shared {
    /// This node.
    pub(crate) id: NodeId,
    /// This node's advertised client URL.
    pub(crate) client_url: String,
    /// This node's advertised peer URL.
    pub(crate) peer_url: String,
    /// The shared cluster secret the join call requires, if any.
    pub(crate) cluster_token: Option<String>,
    /// Peer URLs of the configured members.
    pub(crate) peer_urls: BTreeMap<NodeId, String>,
    /// Whether the membership is static (`--initial-cluster`, no discovery): then the join call may change
    /// neither the members nor their addresses, which the operator fixed.
    pub(crate) static_membership: bool,
    /// Whether the client port requires a verified client certificate (`--tls-ca`): then a member proves that
    /// it forwarded a request by its node certificate.
    pub(crate) client_certificates_required: bool,
    /// The node loop's input.
    pub(crate) events: SyncSender<Event>,
    /// What the node loop publishes.
    pub(crate) published: Arc<Published>,
    /// The peer transport (it knows the peers' client URLs).
    pub(crate) peers: Arc<PeerTransport>,
    /// Request size limits.
    pub(crate) limits: Limits,
    /// How long a request may wait for the node.
    pub(crate) request_timeout: Duration,
    /// The HTTP client that forwards writes to the leader.
    pub(crate) forwarder: reqwest::Client,
    /// Answers by status class, for `/metrics`.
    pub(crate) http_metrics: metrics::HttpMetrics,
}

/// The handlers' state.
pub(crate) type AppState = Arc<Shared>;

impl Shared {
    /// Sends `make(reply)` to the node loop and waits for the answer, at most the request timeout.
    ///
    /// # Errors
    /// `503` if the loop is overloaded or gone, `504` on timeout (`is_write` picks the message).
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Event,
        is_write: bool,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let admitted = self.published.admit_client_request();
        if !admitted || !driver::offer(&self.events, make(reply)) {
            if admitted {
                self.published.release_client_request();
            }
            return Err(if self.published.stopped() {
                ApiError::unavailable("this node has stopped; nothing was written")
            } else {
                ApiError::unavailable("this node is overloaded (its request queue is full); nothing was written, retry")
            });
        }
        match tokio::time::timeout(self.request_timeout, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) if is_write => Err(ApiError::write_unknown("this node stopped")),
            Ok(Err(_)) => Err(ApiError::unavailable("this node stopped while handling the request")),
            Err(_) if is_write => Err(ApiError::write_timeout(self.request_timeout.as_millis())),
            Err(_) => Err(ApiError::read_timeout(self.request_timeout.as_millis())),
        }
    }

    /// Turns a handler's result into the response: adds the leader hint to errors, and `X-Tally-Index`
    /// (the applied index, unless the handler set it) and `X-Tally-Leader` to every answer. Every handler
    /// ends here, so this is cheaper than a middleware layer.
    pub(crate) fn finish(&self, result: Result<Response, ApiError>) -> Response {
        let leader = self.published.leader();
        let mut response = match result {
            Ok(response) => response,
            Err(mut error) => {
                if error.leader.is_none() {
                    error.leader = leader;
                }
                error.into_response()
            }
        };
        self.http_metrics.count(response.status());
        let headers = response.headers_mut();
        if !headers.contains_key(HEADER_INDEX) {
            headers.insert(HEADER_INDEX, HeaderValue::from(self.published.applied_index()));
        }
        if let Some(value) = leader.and_then(|l| HeaderValue::from_str(&l.to_string()).ok()) {
            headers.insert(HEADER_LEADER, value);
        }
        response
    }

    /// Whether `parts` is a request a member forwarded (so it must not be forwarded again): it carries
    /// [`HEADER_FORWARDED_BY`], and a proof that a member sent it when one is possible: the cluster token in
    /// [`HEADER_FORWARD_TOKEN`], or a verified node certificate (client-port mutual TLS, where
    /// the forwarder presents its node certificate). A cluster with neither cannot tell a member from anyone
    /// else, and takes the header at its word as before. An unproven header is ignored: the request is handled
    /// as any client's.
    pub(crate) fn is_forwarded_by_member(&self, parts: &axum::http::request::Parts) -> bool {
        if !parts.headers.contains_key(HEADER_FORWARDED_BY) {
            return false;
        }
        let certificate =
            parts.extensions.get::<tally_net::serve::ConnectionInfo>().and_then(|c| c.client_node_name.as_deref());
        if certificate.is_some_and(|name| crate::config::parse_node_id(name).is_ok()) {
            return true;
        }
        match self.cluster_token.as_deref() {
            Some(expected) => parts
                .headers
                .get(HEADER_FORWARD_TOKEN)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|presented| crate::auth::token_matches(expected, presented)),
            None => !self.client_certificates_required,
        }
    }

    /// The client URL of `id`, if known.
    pub(crate) fn client_url_of(&self, id: NodeId) -> Option<String> {
        if id == self.id { Some(self.client_url.clone()) } else { self.peers.client_url(id) }
    }
}

/// The router of the client API.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/kv", get(kv::list).delete(kv::delete_prefix))
        .route("/v1/kv/", get(kv::get_key).put(kv::put_key).delete(kv::delete_key))
        .route("/v1/kv/{*key}", get(kv::get_key).put(kv::put_key).delete(kv::delete_key))
        .route("/db/{*key}", get(kv::get_key).post(kv::put_key))
        .route("/v1/txn", post(txn::post_txn))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/transfer-leader", post(cluster::transfer_leader))
        .route("/v1/cluster/join", post(join::join))
        .route("/livez", get(cluster::livez))
        .route("/readyz", get(cluster::readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(auth::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// `404` for an unknown route.
async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    let message = format!(
        "no such route: {} {}; the API is under /v1/kv, /v1/txn, /v1/cluster, /v1/auth, /livez, /readyz (see docs/http-api.md)",
        request.method(),
        request.uri().path()
    );
    state.finish(Err(ApiError::not_found(message)))
}

/// `405` for a known route with the wrong method.
async fn method_not_allowed(State(state): State<AppState>, request: Request) -> Response {
    let message = format!("{} is not allowed on {}", request.method(), request.uri().path());
    state.finish(Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)))
}
