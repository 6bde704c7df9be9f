//! Forwarding a write from a follower to the leader: the same request, sent to the leader's client URL, and
//! its answer relayed as it is.

use axum::body::Bytes;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tally_raft::NodeId;

use super::{ApiError, AppState, HEADER_FORWARD_TOKEN, HEADER_FORWARDED_BY};

/// Headers of the leader's answer passed on to the client.
const RELAYED_HEADERS: [&str; 5] =
    ["content-type", "x-tally-index", "x-tally-leader", "x-tally-create-index", "x-tally-modify-index"];

/// Headers of the client's request passed on to the leader.
const FORWARDED_HEADERS: [&str; 2] = ["content-type", "authorization"];

/// Sends the write in `parts` + `body` to `leader` and relays its answer.
///
/// # Errors
/// `503` if the leader's client URL is unknown or it cannot be connected to (nothing was sent), `504` if
/// the request was sent and no answer came (the write may or may not have been applied).
pub(crate) async fn write(state: &AppState, leader: NodeId, parts: &Parts, body: Bytes) -> Result<Response, ApiError> {
    let Some(base) = state.client_url_of(leader) else {
        let mut error = ApiError::no_leader(format!(
            "{leader} leads but its client URL is not known here yet; nothing was written, retry (or send the write to \
             the leader)"
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
                format!("cannot connect to the leader {leader} at {base} ({error}); nothing was written, retry"),
            );
            e.leader = Some(leader);
            return Err(e);
        }
        Err(error) => {
            let mut e = ApiError::outcome_unknown(format!(
                "the write was forwarded to the leader {leader} but no answer came back ({error}): it may or may not \
                 have been applied"
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
    let bytes = answer.bytes().await.map_err(|error| {
        ApiError::outcome_unknown(format!(
            "the leader {leader}'s answer was cut off ({error}): the write may or may not have been applied"
        ))
    })?;
    let mut response = (status, bytes).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}
