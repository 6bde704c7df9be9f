//! `POST /v1/cluster/join`: a node asks to be part of the cluster.
//!
//! The call is idempotent, so a joiner simply retries it until it succeeds, whatever went wrong. On the
//! leader it brings the replicated state in line with the request, one step at a time, re-reading the state
//! after each:
//!
//! 1. the cluster id, if the request names one and the cluster has none yet (the node that formed the cluster
//!    names it this way);
//! 2. the joiner's addresses in the replicated metadata (new node, or a node whose address changed);
//! 3. the joiner as a learner, if it is not a member yet. The leader's membership policy promotes it later.
//!
//! It refuses (`409`) a node of another cluster, and a node that claims a member's id without being that
//! member (a different incarnation: the member lost its data, or another node uses its id).
//!
//! A node of a static cluster (`--initial-cluster`) refuses every join (`403 static_membership`): its members and
//! their addresses are fixed by the operator. A follower forwards the call to the leader. With a cluster token
//! configured, the call needs `Authorization: Bearer TOKEN` (`401` otherwise). With client auth on, the cluster
//! token still admits the call (a joining node has no user token), and otherwise it needs a user with admin on
//! the whole keyspace.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tally_kv::{Access, Command, METADATA_TEXT_MAX_BYTES, MemberAddress, Scope};
use tally_net::serve::ConnectionInfo;
use tally_node::{Reply, RequestError};
use tally_raft::{MembershipChange, NodeId, ProposeError};

use super::json::parse_body;
use super::params::Params;
use super::{ApiError, AppState};
use crate::auth::{bearer_token, token_matches};
use crate::config::{parse_node_id, peer_host_port};
use crate::driver::{Event, NodeStatus};

/// The largest join request body; a request is a few hundred bytes.
const JOIN_BODY_MAX: usize = 16 * 1024;

/// The pause before asking again while another membership change is pending.
const PENDING_RETRY: Duration = Duration::from_millis(100);

/// The body of a join request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    /// The joiner's id (`n4` or `4`).
    id: String,
    /// Where its peer port is reached.
    peer_url: String,
    /// Where its client API is reached.
    client_url: String,
    /// Drawn when its data directory was created: tells it from a node that reuses its id.
    incarnation: u64,
    /// The cluster id the joiner belongs to, if it knows one (it formed the cluster, or is a member).
    #[serde(default)]
    cluster_id: Option<String>,
}

/// A checked join request.
struct Joiner {
    /// Its id.
    id: NodeId,
    /// Its addresses.
    address: MemberAddress,
    /// The cluster id it names.
    cluster_id: Option<String>,
}

/// `POST /v1/cluster/join`.
pub(crate) async fn join(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, body) = request.into_parts();
        let certified = check_token(&state, &parts)?;
        Params::parse(parts.uri.query(), &[])?;
        let body = super::kv::read_body(body, JOIN_BODY_MAX).await?;
        let joiner = parse_request(&body)?;
        if let Some(certified) = certified.filter(|&id| id != joiner.id) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "certificate_mismatch",
                format!("the client certificate is node {certified}'s, so it cannot join as {}", joiner.id),
            ));
        }
        if state.static_membership {
            return Err(static_membership_refusal(&joiner));
        }
        if joiner.id == state.id && joiner.address.peer_url != state.peer_url {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "id_in_use",
                format!("{} is this node's id, and this node's peer URL is {}", joiner.id, state.peer_url),
            ));
        }
        if !state.published.is_leader() && !state.is_forwarded_by_member(&parts) {
            let Some(leader) = state.published.leader() else {
                return Err(ApiError::no_leader("no leader is known here yet; retry the join"));
            };
            return super::forward::write(&state, leader, &parts, body).await;
        }
        admit(&state, &joiner).await
    }
    .await;
    state.finish(result)
}

/// `403` for any join on a node of a static cluster: its members and their addresses are what the operator
/// listed in `--initial-cluster`, so a join could only add a stranger or redirect a member's traffic.
fn static_membership_refusal(joiner: &Joiner) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "static_membership",
        format!(
            "this node runs a static cluster (--initial-cluster): its members and their addresses cannot be changed \
             by a join call, so {} was not added or changed (start nodes with --registry-address, --bootstrap or \
             --join to let nodes join)",
            joiner.id
        ),
    )
}

/// `401` unless the request carries the cluster token (when one is configured) or comes over a connection
/// whose verified client certificate is a node's (client-port mutual TLS: the joiner presents its node
/// certificate); with client auth on, a user token with admin on the whole keyspace will do instead
/// (`401`/`403` otherwise). Gives the node id of that certificate, when it was the proof: the joiner must then
/// join under that id.
fn check_token(state: &AppState, parts: &Parts) -> Result<Option<NodeId>, ApiError> {
    let headers = &parts.headers;
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    let cluster_token = state.cluster_token.as_deref();
    if let (Some(expected), Some(token)) = (cluster_token, presented)
        && token_matches(expected, token)
    {
        return Ok(None);
    }
    let node_certificate = parts.extensions.get::<ConnectionInfo>().and_then(|c| c.client_node_name.as_deref());
    if let Some(id) = node_certificate.and_then(|name| parse_node_id(name).ok()) {
        return Ok(Some(id));
    }
    if state.published.auth().is_enabled() {
        return super::auth::authenticate(state, headers)?.require(Scope::Keyspace, Access::Admin).map(|()| None);
    }
    if cluster_token.is_none() {
        return Ok(None);
    }
    match presented {
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong cluster token")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this cluster needs a token: send Authorization: Bearer TOKEN (--cluster-token / TALLY_CLUSTER_TOKEN)",
        )),
    }
}

/// Decodes and checks the body.
fn parse_request(body: &[u8]) -> Result<Joiner, ApiError> {
    let request: JoinRequest = parse_body(
        body,
        "join request",
        "{\"id\": \"n4\", \"peer_url\": \"http://HOST:PORT\", \"client_url\": \"http://HOST:PORT\"}",
    )?;
    let id = parse_node_id(&request.id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    for (name, url) in [("peer_url", &request.peer_url), ("client_url", &request.client_url)] {
        if url.len() > METADATA_TEXT_MAX_BYTES
            || !(url.starts_with("http://") || url.starts_with("https://"))
            || peer_host_port(url).is_err()
        {
            return Err(ApiError::bad_request(format!("bad {name} {url:?}: expected http(s)://HOST:PORT")));
        }
    }
    if let Some(cluster_id) = &request.cluster_id {
        let valid = (1..=64).contains(&cluster_id.len())
            && cluster_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(ApiError::bad_request(format!("bad cluster_id {cluster_id:?}: 1-64 of [A-Za-z0-9_-]")));
        }
    }
    let address =
        MemberAddress { peer_url: request.peer_url, client_url: request.client_url, incarnation: request.incarnation };
    Ok(Joiner { id, address, cluster_id: request.cluster_id })
}

/// On the leader: applies the steps of the module doc until the joiner is a member with its addresses.
async fn admit(state: &AppState, joiner: &Joiner) -> Result<Response, ApiError> {
    let deadline = Instant::now() + state.request_timeout;
    loop {
        if Instant::now() >= deadline {
            return Err(ApiError::unavailable(
                "the join did not finish in time (another membership change in progress?); retry, it is idempotent",
            ));
        }
        let status: NodeStatus = state.ask(|reply| Event::Status { reply }, false).await?;
        if status.role != tally_raft::Role::Leader {
            return Err(ApiError::no_leader("this node stopped leading; retry the join"));
        }
        check_same_node(joiner, &status)?;
        let pending = if let Some(cluster_id) = joiner.cluster_id.clone().filter(|_| status.cluster_id.is_none()) {
            write(state, Command::SetClusterId { cluster_id }).await?
        } else if status.addresses.get(&joiner.id) != Some(&joiner.address) {
            let MemberAddress { peer_url, client_url, incarnation } = joiner.address.clone();
            write(state, Command::SetMember { id: joiner.id.0, peer_url, client_url, incarnation }).await?
        } else if let Some(member) = status.members.iter().find(|m| m.id == joiner.id) {
            let role = if member.voter { "voter" } else { "learner" };
            tracing::info!(node = %joiner.id, role, "join: member with its addresses");
            let body =
                serde_json::json!({ "id": joiner.id.to_string(), "role": role, "cluster_id": status.cluster_id });
            return Ok(axum::Json(body).into_response());
        } else {
            tracing::info!(node = %joiner.id, peer_url = %joiner.address.peer_url, "join: adding a learner");
            let change = MembershipChange::AddLearner(joiner.id);
            match state.ask(|reply| Event::ProposeMembership { change, reply }, true).await? {
                Ok(_) => false,
                Err(RequestError::Rejected(ProposeError::MembershipChangePending)) => true,
                Err(error) => return Err(ApiError::from_request(&error, true)),
            }
        };
        if pending {
            tokio::time::sleep(PENDING_RETRY).await;
        }
    }
}

/// `409` if the joiner belongs to another cluster, or claims the id of a member it is not (another
/// incarnation: the member lost its data, or another node uses its id). Either would let two histories mix.
fn check_same_node(joiner: &Joiner, status: &NodeStatus) -> Result<(), ApiError> {
    if let (Some(theirs), Some(ours)) = (&joiner.cluster_id, &status.cluster_id)
        && theirs != ours
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cluster_mismatch",
            format!("{} belongs to cluster {theirs}, this is cluster {ours}", joiner.id),
        ));
    }
    let is_member = status.members.iter().any(|m| m.id == joiner.id);
    if let Some(known) = status.addresses.get(&joiner.id).filter(|_| is_member)
        && known.incarnation != joiner.address.incarnation
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "incarnation_mismatch",
            format!(
                "{id} is a member, but this is not the node that joined as {id} (it lost its data, or another node \
                 uses its id): join under a new id (remove --id), or remove {id} from the cluster first",
                id = joiner.id
            ),
        ));
    }
    Ok(())
}

/// Proposes a metadata command and waits for it to apply; `Ok(false)`: done, go on with the next step.
async fn write(state: &AppState, command: Command) -> Result<bool, ApiError> {
    match state.ask(|reply| Event::Propose { command: command.encode(), reply }, true).await? {
        Ok(Reply::Written { .. }) => Ok(false),
        Ok(_) => Err(ApiError::unavailable("internal error: a write was answered with a read")),
        Err(error) => Err(ApiError::from_request(&error, true)),
    }
}
