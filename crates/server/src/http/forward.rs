//! Forwarding a request from a follower to the leader: the same request, sent to the leader's client URL, and
//! its answer relayed as it is. Writes always go to the leader; a read goes there only when this node cannot
//! answer it soon (its disk is full, so it lags the leader by entries it had to drop).

use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tally_raft::NodeId;

use super::{ApiError, AppState, HEADER_FORWARD_TOKEN, HEADER_FORWARDED_BY};

/// Headers of the leader's answer passed on to the client.
const RELAYED_HEADERS: [&str; 6] = [
    "content-type",
    "x-tally-index",
    "x-tally-leader",
    "x-tally-create-index",
    "x-tally-modify-index",
    "x-tally-version",
];

/// Headers of the client's request passed on to the leader.
const FORWARDED_HEADERS: [&str; 2] = ["content-type", "authorization"];

/// What is forwarded: the errors say what became of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Forwarded {
    /// A write: without an answer, it may or may not have been applied.
    Write,
    /// A read: nothing changes, it is safe to retry.
    Read,
}

impl Forwarded {
    /// What the client may do when nothing was sent.
    fn nothing_sent(self) -> &'static str {
        match self {
            Forwarded::Write => "nothing was written, retry (or send the write to the leader)",
            Forwarded::Read => "retry, or read with consistency=stale",
        }
    }

    /// The `504 timeout` for a request that was sent but whose answer never came whole (`what_happened`): a
    /// write may or may not have been applied, a read is safe to retry.
    fn unanswered(self, what_happened: String) -> ApiError {
        match self {
            Forwarded::Write => {
                ApiError::outcome_unknown(format!("{what_happened}: the write may or may not have been applied"))
            }
            Forwarded::Read => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("{what_happened}; the read is safe to retry"),
            ),
        }
    }
}

/// Sends the write in `parts` + `body` to `leader` and relays its answer.
///
/// # Errors
/// `503` if the leader's client URL is unknown or it cannot be connected to (nothing was sent), `504` if
/// the request was sent and no answer came (the write may or may not have been applied).
pub(crate) async fn write(state: &AppState, leader: NodeId, parts: &Parts, body: Bytes) -> Result<Response, ApiError> {
    relay(state, leader, parts, body, Forwarded::Write).await
}

/// Sends the read in `parts` + `body` (empty but for a read-only transaction) to `leader` and relays its
/// answer.
///
/// # Errors
/// `503` if the leader's client URL is unknown, `502` if it cannot be connected to, `504` if no answer came:
/// in every case nothing changed, and the read is safe to retry.
pub(crate) async fn read(state: &AppState, leader: NodeId, parts: &Parts, body: Bytes) -> Result<Response, ApiError> {
    relay(state, leader, parts, body, Forwarded::Read).await
}

/// Sends `parts` + `body` to `leader` and relays its answer.
async fn relay(
    state: &AppState,
    leader: NodeId,
    parts: &Parts,
    body: Bytes,
    what: Forwarded,
) -> Result<Response, ApiError> {
    let Some(base) = state.client_url_of(leader) else {
        let mut error = ApiError::no_leader(format!(
            "{leader} leads but its client URL is not known here yet; {}",
            what.nothing_sent()
        ));
        error.leader = Some(leader);
        return Err(error);
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let forwarded_by = HeaderValue::from_str(&state.id.to_string()).expect("node ids are ASCII");
    let mut request = state.forwarder.request(parts.method.clone(), &url).header(HEADER_FORWARDED_BY, forwarded_by);
    if let Some(token) = &state.cluster_token {
        let mut proof = HeaderValue::from_str(token).expect("the cluster token was checked to be a header value");
        proof.set_sensitive(true);
        request = request.header(HEADER_FORWARD_TOKEN, proof);
    }
    for name in FORWARDED_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            let mut value = value.clone();
            value.set_sensitive(name == "authorization"); // a token: never shown by any Debug output
            request = request.header(name, value);
        }
    }
    let sent = request.timeout(state.request_timeout).body(body).send().await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) if error.is_connect() => {
            let mut e = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "forward_failed",
                format!("cannot connect to the leader {leader} at {base} ({error}); {}", what.nothing_sent()),
            );
            e.leader = Some(leader);
            return Err(e);
        }
        Err(error) => {
            let mut e = what.unanswered(format!(
                "the request was forwarded to the leader {leader} but no answer came back ({error})"
            ));
            e.leader = Some(leader);
            return Err(e);
        }
    };
    let status = answer.status();
    let mut headers = Vec::new();
    for name in RELAYED_HEADERS {
        if let Some(value) = answer.headers().get(name) {
            headers.push((name, value.clone()));
        }
    }
    let bytes = answer
        .bytes()
        .await
        .map_err(|error| what.unanswered(format!("the leader {leader}'s answer was cut off ({error})")))?;
    let mut response = (status, bytes).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}
