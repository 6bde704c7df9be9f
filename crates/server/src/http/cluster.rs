//! Cluster calls: the cluster view, leadership transfer, liveness and readiness.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tally_kv::{Access, Scope};
use tally_raft::Role;

use super::auth::authenticate;
use super::params::Params;
use super::{ApiError, AppState};
use crate::config::parse_node_id;
use crate::driver::{Event, NodeStatus};

/// A member in the cluster view.
#[derive(Serialize)]
struct MemberView {
    /// Its id.
    id: String,
    /// `voter` or `learner`.
    role: &'static str,
    /// Its peer URL, if configured here.
    peer_url: Option<String>,
    /// Its client URL, once known.
    client_url: Option<String>,
    /// Its match index (on the leader).
    match_index: Option<u64>,
}

/// The cluster view (`GET /v1/cluster`).
#[derive(Serialize)]
struct ClusterView {
    /// This node.
    id: String,
    /// The cluster's id (clusters formed through the registry).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
    /// Its role.
    role: &'static str,
    /// Its term.
    term: u64,
    /// The leader it knows.
    leader: Option<String>,
    /// Commit index.
    commit_index: u64,
    /// Applied index.
    applied_index: u64,
    /// Last log index.
    last_index: u64,
    /// Latest snapshot's index.
    snapshot_index: u64,
    /// The oldest index the watch history covers: a watch or blocking read from an older one answers
    /// `410 compacted`.
    oldest_index: u64,
    /// Fingerprint of the applied state, hex.
    state_checksum: String,
    /// The storage failure that stopped this node, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
    /// This node's storage alarms: `"no_space"` (the disk is full) and `"quota"` (the data passed
    /// `--quota-bytes`). While one is raised the node refuses writes as leader and keeps serving reads.
    alarms: Vec<&'static str>,
    /// The members.
    members: Vec<MemberView>,
}

/// The name of a role.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Candidate | Role::PreCandidate => "candidate",
        Role::Follower => "follower",
    }
}

/// `GET /v1/cluster`.
pub(crate) async fn status(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let result = async {
        authenticate(&state, &headers)?; // any user: clients learn the members' URLs here
        Params::parse(uri.query(), &[])?;
        let status: NodeStatus = state.ask(|reply| Event::Status { reply }, false).await?;
        let members = status
            .members
            .iter()
            .map(|m| MemberView {
                id: m.id.to_string(),
                role: if m.voter { "voter" } else { "learner" },
                peer_url: status
                    .addresses
                    .get(&m.id)
                    .map(|a| a.peer_url.clone())
                    .or_else(|| state.peer_urls.get(&m.id).cloned()),
                client_url: status
                    .addresses
                    .get(&m.id)
                    .map(|a| a.client_url.clone())
                    .or_else(|| state.client_url_of(m.id)),
                match_index: m.match_index.map(|i| i.0),
            })
            .collect();
        let view = ClusterView {
            id: state.id.to_string(),
            cluster_id: status.cluster_id.clone(),
            role: role_name(status.role),
            term: status.term,
            leader: status.leader.map(|l| l.to_string()),
            commit_index: status.commit_index.0,
            applied_index: status.applied_index.0,
            last_index: status.last_index.0,
            snapshot_index: status.snapshot_index.0,
            oldest_index: state.published.metrics.watch.history_oldest_index.load(std::sync::atomic::Ordering::Relaxed),
            state_checksum: format!("{:016x}", status.state_checksum),
            failure: status.failure,
            alarms: status.alarms.iter().map(|alarm| alarm.as_str()).collect(),
            members,
        };
        Ok(axum::Json(view).into_response())
    }
    .await;
    state.finish(result)
}

/// `POST /v1/cluster/transfer-leader?to=ID`: answers once `ID` leads (as this node sees it).
pub(crate) async fn transfer_leader(State(state): State<AppState>, request: Request) -> Response {
    let result = async {
        let (parts, _) = request.into_parts();
        authenticate(&state, &parts.headers)?.require(Scope::Keyspace, Access::Admin)?;
        let params = Params::parse(parts.uri.query(), &["to"])?;
        let to = params.bytes("to").ok_or_else(|| ApiError::bad_request("missing ?to=ID (e.g. ?to=n2)"))?;
        let to = parse_node_id(&String::from_utf8_lossy(to)).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let leader = state.published.leader();
        if let Some(leader) = leader.filter(|&l| l != state.id && l != to && !state.is_forwarded_by_member(&parts)) {
            return super::forward::write(&state, leader, &parts, axum::body::Bytes::new()).await;
        }
        if leader != Some(to) {
            let accepted = state.ask(|reply| Event::TransferLeader { to, reply }, false).await?;
            accepted.map_err(|error| ApiError::from_request(&error, false))?;
        }
        let deadline = Instant::now() + state.request_timeout;
        while state.published.leader() != Some(to) {
            if Instant::now() >= deadline {
                return Err(ApiError::read_timeout(state.request_timeout.as_millis()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(axum::Json(serde_json::json!({ "leader": to.to_string() })).into_response())
    }
    .await;
    state.finish(result)
}

/// `GET /livez`: the process runs and its node loop is healthy.
pub(crate) async fn livez(State(state): State<AppState>) -> Response {
    if state.published.stopped() {
        return state.finish(Err(ApiError::unavailable("the node loop has stopped (storage failure or shutdown)")));
    }
    state.finish(Ok((StatusCode::OK, "ok\n").into_response()))
}

/// `GET /readyz`: a leader is known and this node has applied everything it knows to be committed.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let published = &state.published;
    let result = if published.stopped() {
        Err(ApiError::unavailable("the node loop has stopped (storage failure or shutdown)"))
    } else if published.leader().is_none() {
        Err(ApiError::no_leader("no leader is known yet"))
    } else if published.applied_index() < published.commit_index() {
        Err(ApiError::unavailable(format!(
            "catching up: applied {} of {} committed entries",
            published.applied_index(),
            published.commit_index()
        )))
    } else {
        Ok((StatusCode::OK, "ok\n").into_response())
    };
    state.finish(result)
}
