//! [`Client`]: the calls of the HTTP API, each sent to the right endpoint and retried when that is safe.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use tokio::time::Instant;

use crate::builder::ClientBuilder;
use crate::codec::{self, HEADER_CREATE_INDEX, HEADER_INDEX, HEADER_LEADER, HEADER_MODIFY_INDEX, HEADER_VERSION};
use crate::endpoints::{Endpoints, Route};
use crate::error::{ApiError, ClientError, code};
use crate::retry::{Backoff, Failure, Kind, Retry, decide};
use crate::txn::{Txn, TxnResult, decode_txn_result};
use crate::types::{ClusterStatus, Consistency, DeletePrefixResult, DeleteResult, KeyValue, Page, WriteResult};

/// Attempts per call at most, whatever the deadline: a bound on a loop of instant failures.
const ATTEMPTS_MAX: usize = 64;

/// Timeouts and the retry budget of a [`Client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long one attempt may wait for its complete answer (default 10 s). A write that times out is
    /// not retried: it may or may not have been applied.
    pub request_timeout: Duration,
    /// How long connecting to an endpoint may take (default 2 s); a connect timeout is retried elsewhere,
    /// since nothing was sent.
    pub connect_timeout: Duration,
    /// The time after which a call stops retrying and returns its last error (default 10 s).
    pub retry_deadline: Duration,
    /// The first pause before retrying a `503`/`502`, or after every endpoint refused (default 50 ms).
    pub backoff_min: Duration,
    /// The longest pause between retries (default 1 s).
    pub backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            retry_deadline: Duration::from_secs(10),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// An async client of a Tally cluster. Cheap to clone: clones share the connection pool and what was
/// learned about the leader, so many tasks can drive one cluster through one client.
#[derive(Clone)]
pub struct Client {
    /// The shared state.
    inner: Arc<Inner>,
}

/// What the clones of a [`Client`] share.
struct Inner {
    /// The pooled HTTP client (keep-alive connections per endpoint).
    http: reqwest::Client,
    /// Timeouts and retry budget.
    config: ClientConfig,
    /// Endpoints and the leader. A std mutex: it is held for a few field updates, never across an
    /// `.await`.
    endpoints: Mutex<Endpoints>,
}

/// One call of the API, as the retry loop needs it.
pub(crate) struct Request {
    /// The HTTP method.
    pub(crate) method: Method,
    /// Path and query, e.g. `/v1/kv/a%2Fb?cas=3`.
    pub(crate) path: String,
    /// The body, shared cheaply between attempts.
    pub(crate) body: Option<Bytes>,
    /// Read or write: what is safe to retry.
    pub(crate) kind: Kind,
    /// Where it preferably goes.
    pub(crate) route: Route,
}

/// A success answer.
pub(crate) struct Answer {
    /// The endpoint that answered.
    endpoint: String,
    /// Its headers.
    headers: HeaderMap,
    /// Its complete body.
    body: Bytes,
}

impl Answer {
    /// `X-Tally-Index`, if present and valid.
    pub(crate) fn index(&self) -> Result<Option<u64>, ClientError> {
        codec::header_u64(&self.headers, HEADER_INDEX).map_err(|detail| self.decode_error(detail))
    }

    /// A [`ClientError::Decode`] about this answer.
    pub(crate) fn decode_error(&self, detail: String) -> ClientError {
        ClientError::Decode { endpoint: self.endpoint.clone(), detail }
    }

    /// The body as JSON of type `T`.
    pub(crate) fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| self.decode_error(format!("bad JSON answer: {e}")))
    }
}

impl Client {
    /// A client of the cluster reachable at `endpoints` (`http://127.0.0.1:7001`, or bare `host:port`),
    /// with the default [`ClientConfig`].
    ///
    /// # Errors
    /// [`ClientError::InvalidEndpoint`] for an empty list or a malformed URL.
    pub fn new(endpoints: Vec<String>) -> Result<Client, ClientError> {
        Client::with_config(endpoints, ClientConfig::default())
    }

    /// A client with explicit timeouts and retry budget (plain HTTP, or HTTPS trusting no CA: use
    /// [`Client::builder`] for TLS and tokens).
    ///
    /// # Errors
    /// [`ClientError::InvalidEndpoint`] for an empty list or a malformed URL, or if the HTTP client cannot
    /// be built.
    pub fn with_config(endpoints: Vec<String>, config: ClientConfig) -> Result<Client, ClientError> {
        ClientBuilder::new(endpoints).config(config).build()
    }

    /// A builder, for TLS (a CA, a client certificate) and a bearer token.
    pub fn builder(endpoints: Vec<String>) -> ClientBuilder {
        ClientBuilder::new(endpoints)
    }

    /// The client of `endpoints` over the prepared `http` client builder.
    pub(crate) fn from_parts(
        endpoints: Vec<String>,
        config: ClientConfig,
        http: reqwest::ClientBuilder,
    ) -> Result<Client, ClientError> {
        let endpoints = Endpoints::new(endpoints)?;
        let http = http.build().map_err(|e| ClientError::InvalidEndpoint {
            endpoint: endpoints.preferred().to_string(),
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Client { inner: Arc::new(Inner { http, config, endpoints: Mutex::new(endpoints) }) })
    }

    /// The pooled HTTP client, for calls that stream (watches).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Every endpoint known: the configured ones, then the client URLs learned from cluster views.
    pub fn endpoints(&self) -> Vec<String> {
        self.state().all().to_vec()
    }

    /// The leader's id, as last learned.
    pub fn leader(&self) -> Option<String> {
        self.state().leader_id().map(str::to_string)
    }

    /// The leader's client URL, if its id and URL are known: where writes go.
    pub fn leader_url(&self) -> Option<String> {
        self.state().leader_url().map(str::to_string)
    }

    /// Writes `value` under `key`.
    ///
    /// # Errors
    /// See [`ClientError`]; a write whose outcome is unknown says so ([`ClientError::outcome_unknown`]).
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<WriteResult, ClientError> {
        self.put_at(codec::key_path(key)?, value).await
    }

    /// Writes `value` under `key` only if the key's modify index is `expected_modify_index` (`0`: only if
    /// the key is absent).
    ///
    /// # Errors
    /// A `cas_failed` [`ClientError::Api`] (see [`ClientError::cas_current_modify_index`]) if the
    /// condition did not hold; otherwise as [`Client::put`].
    pub async fn put_cas(
        &self,
        key: &[u8],
        value: &[u8],
        expected_modify_index: u64,
    ) -> Result<WriteResult, ClientError> {
        self.put_at(format!("{}?cas={expected_modify_index}", codec::key_path(key)?), value).await
    }

    /// A put to `path` (with its query).
    async fn put_at(&self, path: String, value: &[u8]) -> Result<WriteResult, ClientError> {
        let request = Request {
            method: Method::PUT,
            path,
            body: Some(Bytes::copy_from_slice(value)),
            kind: Kind::Write,
            route: Route::Leader,
        };
        let answer = self.execute(&request).await?;
        codec::decode_write(&answer.body, answer.index()?).map_err(|detail| answer.decode_error(detail))
    }

    /// Reads `key`: `None` if it does not exist.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get(&self, key: &[u8], consistency: Consistency) -> Result<Option<KeyValue>, ClientError> {
        let mut path = codec::key_path(key)?;
        if consistency == Consistency::Stale {
            path.push_str("?consistency=stale");
        }
        let request = Request { method: Method::GET, path, body: None, kind: Kind::Read, route: route_of(consistency) };
        let answer = match self.execute(&request).await {
            Ok(answer) => answer,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let required = |name: &str| match codec::header_u64(&answer.headers, name) {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(answer.decode_error(format!("the answer has no {name} header"))),
            Err(detail) => Err(answer.decode_error(detail)),
        };
        Ok(Some(KeyValue {
            key: key.to_vec(),
            value: answer.body.to_vec(),
            create_index: required(HEADER_CREATE_INDEX)?,
            modify_index: required(HEADER_MODIFY_INDEX)?,
            // Optional: a server older than key versions does not send it.
            version: codec::header_u64(&answer.headers, HEADER_VERSION)
                .map_err(|detail| answer.decode_error(detail))?
                .unwrap_or(0),
            index: required(HEADER_INDEX)?,
        }))
    }

    /// Deletes `key`; deleting an absent key succeeds with `deleted: false`.
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn delete(&self, key: &[u8]) -> Result<DeleteResult, ClientError> {
        self.delete_at(codec::key_path(key)?).await
    }

    /// Deletes `key` only if its modify index is `expected_modify_index`.
    ///
    /// # Errors
    /// As [`Client::put_cas`].
    pub async fn delete_cas(&self, key: &[u8], expected_modify_index: u64) -> Result<DeleteResult, ClientError> {
        self.delete_at(format!("{}?cas={expected_modify_index}", codec::key_path(key)?)).await
    }

    /// A delete of `path` (with its query).
    async fn delete_at(&self, path: String) -> Result<DeleteResult, ClientError> {
        let request = Request { method: Method::DELETE, path, body: None, kind: Kind::Write, route: Route::Leader };
        let answer = self.execute(&request).await?;
        codec::decode_delete(&answer.body, answer.index()?).map_err(|detail| answer.decode_error(detail))
    }

    /// Deletes every key starting with `prefix` (not empty), in one log entry.
    ///
    /// # Errors
    /// [`ClientError::InvalidKey`] for an empty prefix; otherwise as [`Client::put`].
    pub async fn delete_prefix(&self, prefix: &[u8]) -> Result<DeletePrefixResult, ClientError> {
        if prefix.is_empty() {
            return Err(ClientError::InvalidKey {
                reason: "a prefix delete needs a non-empty prefix (deleting every key at once is not offered)".into(),
            });
        }
        let path = format!("/v1/kv?prefix={}", codec::percent_encode(prefix));
        let request = Request { method: Method::DELETE, path, body: None, kind: Kind::Write, route: Route::Leader };
        let answer = self.execute(&request).await?;
        codec::decode_delete_prefix(&answer.body, answer.index()?).map_err(|detail| answer.decode_error(detail))
    }

    /// Runs `txn` (linearizable): its compares, then its `success` or `failure` ops, atomically at one index. A
    /// failed compare is not an error: [`TxnResult::succeeded`] is `false`.
    ///
    /// A transaction with a write is retried as a put is: only when it certainly was not applied. Its compares
    /// would often make a blind retry harmless, but only the caller knows that: after a
    /// [`ClientError::outcome_unknown`], read again and decide. A read-only one is retried as a read.
    ///
    /// # Errors
    /// See [`ClientError`]; a malformed transaction is a `bad_request` [`ClientError::Api`] naming the compare or
    /// op.
    pub async fn txn(&self, txn: &Txn) -> Result<TxnResult, ClientError> {
        self.txn_with(txn, Consistency::Linearizable).await
    }

    /// Runs `txn` at `consistency`: `Stale` answers a read-only transaction from the answering node's state
    /// (the server refuses it for a transaction with a write).
    ///
    /// # Errors
    /// As [`Client::txn`].
    pub async fn txn_with(&self, txn: &Txn, consistency: Consistency) -> Result<TxnResult, ClientError> {
        self.send_txn(txn.to_json().to_string(), txn.is_read_only(), consistency).await
    }

    /// Runs a transaction given as the JSON of docs/http-api.md (what [`Txn::to_json`] writes), as it is: the
    /// server checks it. It is retried as a read only if every op of both branches is a `get` or a `list`.
    ///
    /// # Errors
    /// As [`Client::txn`].
    pub async fn txn_json(&self, txn: &serde_json::Value, consistency: Consistency) -> Result<TxnResult, ClientError> {
        self.send_txn(txn.to_string(), crate::txn::json_is_read_only(txn), consistency).await
    }

    /// `POST /v1/txn` with `body`: a read (retried as one) if `read_only`.
    async fn send_txn(
        &self,
        body: String,
        read_only: bool,
        consistency: Consistency,
    ) -> Result<TxnResult, ClientError> {
        let mut path = "/v1/txn".to_string();
        if consistency == Consistency::Stale {
            path.push_str("?consistency=stale");
        }
        let (kind, route) = if read_only { (Kind::Read, route_of(consistency)) } else { (Kind::Write, Route::Leader) };
        let request = Request { method: Method::POST, path, body: Some(Bytes::from(body)), kind, route };
        let answer = self.execute(&request).await?;
        decode_txn_result(&answer.body).map_err(|detail| answer.decode_error(detail))
    }

    /// One page of at most `limit` keys starting with `prefix`, after the key `after` (exclusive), in byte
    /// order. Pass the last key of a page with `more` as `after` to get the next.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
        consistency: Consistency,
    ) -> Result<Page, ClientError> {
        let mut path = format!("/v1/kv?prefix={}&limit={limit}", codec::percent_encode(prefix));
        if let Some(after) = after {
            path.push_str(&format!("&after={}", codec::percent_encode(after)));
        }
        if consistency == Consistency::Stale {
            path.push_str("&consistency=stale");
        }
        let request = Request { method: Method::GET, path, body: None, kind: Kind::Read, route: route_of(consistency) };
        let answer = self.execute(&request).await?;
        codec::decode_page(&answer.body, answer.index()?).map_err(|detail| answer.decode_error(detail))
    }

    /// The cluster as one node sees it (the preferred endpoint, or the next that answers). It also teaches
    /// the client the leader and the members' client URLs.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        let request = cluster_request();
        let answer = self.execute(&request).await?;
        let status: ClusterStatus = answer.json()?;
        self.state().learn_cluster(&answer.endpoint, &status);
        Ok(status)
    }

    /// The cluster as the node at `endpoint` sees it: one attempt, no retry, so a dead node fails fast.
    ///
    /// # Errors
    /// See [`ClientError`]; [`ClientError::Connect`] if the node is down.
    pub async fn cluster_of(&self, endpoint: &str) -> Result<ClusterStatus, ClientError> {
        let endpoint = crate::endpoints::normalize_endpoint(endpoint)?;
        let request = cluster_request();
        let answer = match self.send_once(&endpoint, &request).await {
            Ok(answer) => answer,
            Err(failure) => return Err(self.to_error(&endpoint, failure, Kind::Read)),
        };
        let status: ClusterStatus = answer.json()?;
        self.state().learn_cluster(&answer.endpoint, &status);
        Ok(status)
    }

    /// Hands leadership to the voter `to` (`n2`); returns the new leader once it leads.
    ///
    /// # Errors
    /// See [`ClientError`]; a timeout leaves it unknown whether the transfer happened.
    pub async fn transfer_leader(&self, to: &str) -> Result<String, ClientError> {
        /// The answer: `{"leader": "n2"}`.
        #[derive(Deserialize)]
        struct Transferred {
            /// The leader now.
            leader: String,
        }
        let path = format!("/v1/cluster/transfer-leader?to={}", codec::percent_encode_str(to));
        let request = Request { method: Method::POST, path, body: None, kind: Kind::Write, route: Route::Leader };
        let answer = self.execute(&request).await?;
        let transferred: Transferred = answer.json()?;
        self.state().learn_leader(Some(&transferred.leader));
        Ok(transferred.leader)
    }

    /// The endpoint state, even if a panicking thread poisoned the lock (its updates are single field
    /// writes, always consistent).
    pub(crate) fn state(&self) -> MutexGuard<'_, Endpoints> {
        self.inner.endpoints.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `request` until it succeeds, fails for good, or the retry deadline passes (see the crate doc).
    pub(crate) async fn execute(&self, request: &Request) -> Result<Answer, ClientError> {
        if request.route == Route::Leader && self.state().take_refresh_wanted() {
            self.refresh_leader_url().await;
        }
        let config = &self.inner.config;
        let deadline = Instant::now() + config.retry_deadline;
        let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
        let mut refused: Vec<String> = Vec::new();
        let mut refused_in_row = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let endpoint = self.state().pick(request.route);
            let failure = match self.send_once(&endpoint, request).await {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            let pause = match decide(request.kind, &failure) {
                Retry::No => return Err(self.to_error(&endpoint, failure, request.kind)),
                Retry::Elsewhere if matches!(failure, Failure::Connect(_)) => {
                    if !refused.contains(&endpoint) {
                        refused.push(endpoint.clone());
                    }
                    // Every endpoint refused in a row: pause before the next round.
                    refused_in_row += 1;
                    if refused_in_row >= self.state().all().len() {
                        refused_in_row = 0;
                        backoff.next_pause()
                    } else {
                        Duration::ZERO
                    }
                }
                Retry::Elsewhere => Duration::ZERO,
                Retry::AfterBackoff => backoff.next_pause(),
            };
            let error = self.to_error(&endpoint, failure, request.kind);
            if Instant::now() + pause >= deadline || attempt >= ATTEMPTS_MAX {
                return Err(match error {
                    ClientError::Connect { detail, .. } => ClientError::Connect { endpoints: refused, detail },
                    other => other,
                });
            }
            tracing::debug!(%error, attempt, ?pause, "retrying");
            tokio::time::sleep(pause).await;
        }
    }

    /// Fetches one cluster view from the preferred endpoint to learn the leader's URL; errors are ignored
    /// (the request then goes to the preferred endpoint, which forwards writes).
    async fn refresh_leader_url(&self) {
        let preferred = self.state().preferred().to_string();
        if let Err(error) = self.cluster_of(&preferred).await {
            tracing::debug!(%error, "cannot refresh the leader's URL");
        }
    }

    /// One attempt of `request` at `endpoint`; the answer's leader hint is learned on the way.
    async fn send_once(&self, endpoint: &str, request: &Request) -> Result<Answer, Failure> {
        let mut builder = self.inner.http.request(request.method.clone(), format!("{endpoint}{}", request.path));
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.map_err(send_failure)?;
        let status = response.status();
        let headers = response.headers().clone();
        let leader = codec::header_str(&headers, HEADER_LEADER);
        self.state().learn_leader(leader.as_deref());
        let body = response.bytes().await.map_err(send_failure)?;
        if status.is_success() {
            return Ok(Answer { endpoint: endpoint.to_string(), headers, body });
        }
        Err(Failure::Api(ApiError::from_response(endpoint, status.as_u16(), leader, &body)))
    }

    /// Turns a failed attempt at `endpoint` into the error to report, updating what the client knows: a
    /// failing endpoint is moved away from, a leader hint is learned.
    fn to_error(&self, endpoint: &str, failure: Failure, kind: Kind) -> ClientError {
        let write = kind == Kind::Write;
        let mut state = self.state();
        match failure {
            Failure::Connect(detail) => {
                state.on_failure(endpoint);
                ClientError::Connect { endpoints: vec![endpoint.to_string()], detail }
            }
            Failure::Timeout => {
                state.on_failure(endpoint);
                ClientError::Timeout { endpoint: endpoint.to_string(), after: self.inner.config.request_timeout, write }
            }
            Failure::Interrupted(detail) => {
                state.on_failure(endpoint);
                ClientError::Interrupted { endpoint: endpoint.to_string(), detail, write }
            }
            Failure::Api(mut error) => {
                if matches!(error.code.as_str(), code::NO_LEADER | code::UNAVAILABLE | code::FORWARD_FAILED) {
                    state.on_failure(endpoint);
                }
                if error.is(code::NO_LEADER) && error.leader.is_none() {
                    state.forget_leader();
                }
                state.learn_leader(error.leader.as_deref());
                error.outcome_unknown = write && error.is(code::TIMEOUT);
                ClientError::from(error)
            }
        }
    }
}

/// Where a read of `consistency` goes: linearizable reads to the leader (no read-index hop), stale reads to
/// the preferred endpoint.
fn route_of(consistency: Consistency) -> Route {
    match consistency {
        Consistency::Linearizable => Route::Leader,
        Consistency::Stale => Route::Any,
    }
}

/// Classifies a reqwest error: connect failures (nothing sent) apart from timeouts and broken connections.
fn send_failure(error: reqwest::Error) -> Failure {
    if error.is_connect() {
        Failure::Connect(root_cause(&error))
    } else if error.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Interrupted(root_cause(&error))
    }
}

/// The innermost cause of an error, which says what actually failed (`Connection refused (os error 111)`)
/// without the layers that repeat the URL or name the library.
fn root_cause(error: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// `GET /v1/cluster`, answered by any node.
fn cluster_request() -> Request {
    Request { method: Method::GET, path: "/v1/cluster".into(), body: None, kind: Kind::Read, route: Route::Any }
}
