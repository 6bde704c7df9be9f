//! [`RegistryClient`]: the registry's API (`tally registry`, crate `tally-registry`) as a node uses it to find
//! its cluster: register and heartbeat, list the live nodes, leave, claim the bootstrap, read the cluster.
//!
//! One call is one HTTP request: no retries and no endpoint list (there is one registry). The calls are safe
//! to repeat (a registration is a heartbeat, a leave of a gone node answers `false`, a repeated claim gets the
//! same answer), so the caller retries on its own schedule, e.g. on its next heartbeat, or after
//! [`RegistryError::WarmingUp`]'s `retry_after`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::percent_encode_str;
use crate::endpoints::normalize_endpoint;

/// The wait reported for a `503 warming_up` that says neither `retry_after_ms` nor `Retry-After`.
const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(1);

/// How much of a body that is not a registry error is kept as the message.
const MESSAGE_LEN_MAX: usize = 200;

/// Why a call to the registry failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// [`RegistryClient::new`] got an unusable URL, token or timeout.
    #[error("bad registry client configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// No connection could be made to the registry: nothing was sent.
    #[error("cannot reach the registry at {url}: {detail}")]
    Unreachable {
        /// The registry's base URL.
        url: String,
        /// The connection error.
        detail: String,
    },
    /// The request was sent but no complete answer came back (timeout, broken connection). The call may or
    /// may not have taken effect; every registry call is safe to repeat.
    #[error("no answer from the registry at {url}: {detail}")]
    Transport {
        /// The registry's base URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// `401`: the registry needs the cluster token, or the one sent is wrong.
    #[error("the registry refused the cluster token: {0}")]
    Unauthorized(String),
    /// `503 warming_up`: the registry started less than one TTL ago and holds no claim yet, so it does not
    /// answer claims; retry after `retry_after`.
    #[error("the registry is warming up; retry the claim in {retry_after:?}")]
    WarmingUp {
        /// How long to wait before claiming again.
        retry_after: Duration,
    },
    /// Any other error answer (`400 bad_request`, `503 full`, ...), with the registry's own message.
    #[error("the registry refused the call: {message} ({status} {code})")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The registry's error code; `http_{status}` when the body was not a registry error.
        code: String,
        /// The registry's message, meant for a person.
        message: String,
    },
    /// A success answer this client cannot read (not the registry, or a different version).
    #[error("cannot read the answer of the registry at {url}: {detail}")]
    BadResponse {
        /// The registry's base URL.
        url: String,
        /// What is wrong with the answer.
        detail: String,
    },
}

/// The answer to [`RegistryClient::register`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Registration {
    /// The registry's TTL: the entry expires this long after the last heartbeat; heartbeat every `ttl_ms / 3`.
    pub ttl_ms: u64,
    /// Whether the node was not live before this call (a first registration, or one after expiry).
    pub new: bool,
}

/// A live node, as listed by [`RegistryClient::nodes`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RegisteredNode {
    /// The node's id.
    pub id: String,
    /// Where clients reach the node.
    pub client_url: String,
    /// Where peers reach the node.
    pub peer_url: String,
    /// The cluster the node said it belongs to in its latest registration; `None`: in no cluster yet.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// How long ago its last heartbeat arrived.
    pub last_seen_ms_ago: u64,
}

/// The answer to [`RegistryClient::claim`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClaimAnswer {
    /// The node that may start the cluster (or, for a claim the registry adopted from a member's registration,
    /// a member of the formed cluster): join it unless you won.
    pub winner: String,
    /// The id of the winner's cluster.
    pub cluster_id: String,
    /// Whether the claimant is the winner and should start a one-node cluster with `cluster_id`.
    pub you_won: bool,
}

/// The cluster the registry knows of, from [`RegistryClient::cluster`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClusterClaim {
    /// The claim's winner (see [`ClaimAnswer::winner`]).
    pub winner: String,
    /// The cluster's id.
    pub cluster_id: String,
}

/// A client of one registry. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct RegistryClient {
    /// The pooled HTTP client, with the timeout of every call.
    http: reqwest::Client,
    /// `http://host:port`, normalized, no trailing slash.
    base_url: String,
    /// `Bearer TOKEN`, marked sensitive, when a cluster token is set.
    authorization: Option<HeaderValue>,
    /// The timeout of every call, for error messages.
    timeout: Duration,
}

impl fmt::Debug for RegistryClient {
    /// Never shows the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base_url", &self.base_url)
            .field("token", &self.authorization.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `PUT /v1/nodes/{id}` body.
#[derive(Serialize)]
struct RegisterBody<'a> {
    /// See [`RegisteredNode::client_url`].
    client_url: &'a str,
    /// See [`RegisteredNode::peer_url`].
    peer_url: &'a str,
    /// See [`RegisteredNode::cluster_id`]; left out when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_id: Option<&'a str>,
}

/// `GET /v1/nodes` answer.
#[derive(Deserialize)]
struct NodesReply {
    /// The live nodes, in id order.
    nodes: Vec<RegisteredNode>,
}

/// An error answer: `{"error": {"code", "message", "retry_after_ms"?}}`.
#[derive(Deserialize)]
struct WireErrorBody {
    /// The error.
    error: WireError,
}

/// The `error` object of an error answer.
#[derive(Deserialize)]
struct WireError {
    /// The registry's error code.
    code: String,
    /// What happened, for a person.
    #[serde(default)]
    message: String,
    /// For `503 warming_up`: when to retry, more precise than `Retry-After`.
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

impl RegistryClient {
    /// A client of the registry at `base_url` (`http://10.0.0.5:8080`, or bare `host:port`), sending
    /// `Authorization: Bearer TOKEN` with every call when `token` is set; each call fails after `timeout`.
    /// For an `https://` registry use [`RegistryClient::with_tls`].
    ///
    /// # Errors
    /// [`RegistryError::InvalidConfig`] for a malformed URL (anything but scheme, host and port), an empty
    /// token or one that cannot be sent in a header, a zero timeout, or an HTTP client that cannot be built.
    pub fn new(base_url: &str, token: Option<String>, timeout: Duration) -> Result<RegistryClient, RegistryError> {
        RegistryClient::with_tls(base_url, token, timeout, None)
    }

    /// Like [`RegistryClient::new`], with `tls` for an `https://` registry (trusting the CA that signed the
    /// registry's certificate, presenting the node's certificate if the registry asks for one). `None`: a
    /// TLS config that trusts no one, so an `https://` registry fails its handshake with a clear error.
    ///
    /// The client never uses a proxy (a node's calls carry the cluster token) and never follows redirects.
    ///
    /// # Errors
    /// As [`RegistryClient::new`].
    pub fn with_tls(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<RegistryClient, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidConfig { reason };
        let base_url = normalize_endpoint(base_url).map_err(|error| invalid(error.to_string()))?;
        if timeout.is_zero() {
            return Err(invalid("the timeout must be more than zero".to_string()));
        }
        let authorization = match token {
            None => None,
            Some(token) if token.is_empty() => return Err(invalid("the cluster token is empty".to_string())),
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| invalid("the cluster token has characters not allowed in a header".to_string()))?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let tls = match tls {
            Some(tls) => tls,
            None => tally_net::tls::client_config(&tally_net::tls::ClientTlsFiles::default())
                .map_err(|error| invalid(error.to_string()))?,
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(crate::builder::POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|error| invalid(format!("cannot build the HTTP client: {error}")))?;
        Ok(RegistryClient { http, base_url, authorization, timeout })
    }

    /// The registry's base URL, normalized (`http://host:port`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Registers node `id`, or heartbeats it: `PUT /v1/nodes/{id}` with `{"client_url","peer_url"}`, plus
    /// `"cluster_id"` when the node is a member of a cluster. A member must send its cluster id: after a
    /// registry restart, that is what restores the registry's knowledge of the cluster, so that no second
    /// cluster is started beside it.
    ///
    /// # Errors
    /// [`RegistryError::Rejected`] `400` for a bad id, URL or cluster id, `503 full` when the registry holds
    /// its maximum of nodes; otherwise see [`RegistryError`].
    pub async fn register(
        &self,
        id: &str,
        client_url: &str,
        peer_url: &str,
        cluster_id: Option<&str>,
    ) -> Result<Registration, RegistryError> {
        let body = RegisterBody { client_url, peer_url, cluster_id };
        let bytes = self.send(Method::PUT, &node_path(id), Some(&body)).await?;
        self.decode(&bytes)
    }

    /// The live nodes, in id order: `GET /v1/nodes`.
    ///
    /// # Errors
    /// See [`RegistryError`].
    pub async fn nodes(&self) -> Result<Vec<RegisteredNode>, RegistryError> {
        let bytes = self.send::<()>(Method::GET, "/v1/nodes", None).await?;
        Ok(self.decode::<NodesReply>(&bytes)?.nodes)
    }

    /// Removes node `id`: `DELETE /v1/nodes/{id}`. Returns whether it was registered (`404`: it was not, or
    /// its entry had expired).
    ///
    /// # Errors
    /// See [`RegistryError`].
    pub async fn leave(&self, id: &str) -> Result<bool, RegistryError> {
        match self.send::<()>(Method::DELETE, &node_path(id), None).await {
            Ok(_) => Ok(true),
            Err(RegistryError::Rejected { status: 404, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Claims the right to start the cluster for node `id`: `POST /v1/bootstrap` with `{"id"}`. The first
    /// claimant wins; every claimant learns the winner and the cluster id. Only a node without data may
    /// claim; a winner starts a one-node cluster, the others join the winner's.
    ///
    /// # Errors
    /// [`RegistryError::WarmingUp`] while the registry's warm-up lasts (no claim held and it started less
    /// than one TTL ago): claim again after `retry_after`; otherwise see [`RegistryError`].
    pub async fn claim(&self, id: &str) -> Result<ClaimAnswer, RegistryError> {
        /// `POST /v1/bootstrap` body.
        #[derive(Serialize)]
        struct ClaimBody<'a> {
            /// The claimant.
            id: &'a str,
        }
        let bytes = self.send(Method::POST, "/v1/bootstrap", Some(&ClaimBody { id })).await?;
        self.decode(&bytes)
    }

    /// The cluster the registry knows of (the held claim, granted or adopted): `GET /v1/bootstrap`; `None`
    /// (`404`) while it knows none.
    ///
    /// # Errors
    /// See [`RegistryError`].
    pub async fn cluster(&self) -> Result<Option<ClusterClaim>, RegistryError> {
        match self.send::<()>(Method::GET, "/v1/bootstrap", None).await {
            Ok(bytes) => self.decode(&bytes).map(Some),
            Err(RegistryError::Rejected { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Sends one request and returns the body of a success answer, or the error the answer maps to.
    async fn send<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<Bytes, RegistryError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| self.transport_error(&error))?;
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.map_err(|error| self.transport_error(&error))?;
        if status.is_success() { Ok(bytes) } else { Err(error_of(status.as_u16(), &headers, &bytes)) }
    }

    /// A request that failed without an answer: [`RegistryError::Unreachable`] if nothing was sent.
    fn transport_error(&self, error: &reqwest::Error) -> RegistryError {
        let url = self.base_url.clone();
        if error.is_connect() {
            RegistryError::Unreachable { url, detail: root_cause(error) }
        } else if error.is_timeout() {
            RegistryError::Transport { url, detail: format!("no answer within {:?}", self.timeout) }
        } else {
            RegistryError::Transport { url, detail: root_cause(error) }
        }
    }

    /// A success answer's JSON body.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, RegistryError> {
        serde_json::from_slice(bytes).map_err(|error| RegistryError::BadResponse {
            url: self.base_url.clone(),
            detail: format!("bad JSON answer: {error}"),
        })
    }
}

/// The path of node `id`; the id is percent-encoded so the registry sees it as given (and refuses it if bad).
fn node_path(id: &str) -> String {
    format!("/v1/nodes/{}", percent_encode_str(id))
}

/// The error an answer with a non-success `status`, `headers` and `body` maps to.
fn error_of(status: u16, headers: &HeaderMap, body: &[u8]) -> RegistryError {
    let (code, message, retry_after_ms) = match serde_json::from_slice::<WireErrorBody>(body) {
        Ok(WireErrorBody { error }) => (error.code, error.message, error.retry_after_ms),
        Err(_) => (format!("http_{status}"), first_line(status, body), None),
    };
    match (status, code.as_str()) {
        (401, _) => RegistryError::Unauthorized(message),
        (503, "warming_up") => {
            let retry_after = retry_after_ms.map(Duration::from_millis).or_else(|| retry_after_header(headers));
            RegistryError::WarmingUp { retry_after: retry_after.unwrap_or(RETRY_AFTER_DEFAULT) }
        }
        _ => RegistryError::Rejected { status, code, message },
    }
}

/// `Retry-After` in seconds, if present and a number (the HTTP date form is not used by the registry).
fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(seconds))
}

/// The first line of a body that is not a registry error (a proxy's page, say), as the message.
fn first_line(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        format!("HTTP {status} with no error body")
    } else {
        line.chars().take(MESSAGE_LEN_MAX).collect()
    }
}

/// The innermost cause of an error, which says what failed (`Connection refused (os error 111)`) without the
/// layers that repeat the URL or name the library (as the cluster client reports it).
fn root_cause(error: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn warming_up_prefers_the_body_then_the_header_then_a_default() {
        let body = br#"{"error":{"code":"warming_up","message":"m","retry_after_ms":1234}}"#;
        let error = error_of(503, &headers(Some("2")), body);
        assert!(
            matches!(error, RegistryError::WarmingUp { retry_after } if retry_after == Duration::from_millis(1234))
        );
        let body = br#"{"error":{"code":"warming_up","message":"m"}}"#;
        let error = error_of(503, &headers(Some("2")), body);
        assert!(matches!(error, RegistryError::WarmingUp { retry_after } if retry_after == Duration::from_secs(2)));
        let error = error_of(503, &headers(None), body);
        assert!(matches!(error, RegistryError::WarmingUp { retry_after } if retry_after == RETRY_AFTER_DEFAULT));
    }

    #[test]
    fn other_errors_keep_the_registry_code_and_message() {
        let body = br#"{"error":{"code":"full","message":"the registry is full"}}"#;
        let error = error_of(503, &headers(Some("1")), body);
        assert_eq!(error.to_string(), "the registry refused the call: the registry is full (503 full)");
        let error = error_of(401, &headers(None), br#"{"error":{"code":"unauthorized","message":"wrong token"}}"#);
        assert!(matches!(&error, RegistryError::Unauthorized(message) if message == "wrong token"), "{error}");
    }

    #[test]
    fn foreign_bodies_keep_their_first_line() {
        let error = error_of(502, &headers(None), b"Bad Gateway\n<html>...</html>");
        let RegistryError::Rejected { status, code, message } = error else { unreachable!("{error:?}") };
        assert_eq!((status, code.as_str(), message.as_str()), (502, "http_502", "Bad Gateway"));
        let error = error_of(500, &headers(None), b"");
        assert!(error.to_string().contains("HTTP 500 with no error body"), "{error}");
    }

    #[test]
    fn node_ids_are_percent_encoded_in_the_path() {
        assert_eq!(node_path("n1"), "/v1/nodes/n1");
        assert_eq!(node_path("a b/c"), "/v1/nodes/a%20b%2Fc");
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let client = RegistryClient::new("127.0.0.1:8080", Some("s3cret".into()), Duration::from_secs(1));
        let debug = format!("{:?}", client.expect("valid"));
        assert!(!debug.contains("s3cret") && debug.contains("http://127.0.0.1:8080"), "{debug}");
    }
}
