//! Which node a request goes to: the endpoint list, the preferred endpoint, and what the client has learned
//! about the leader. Pure state, no I/O; the client holds it behind a mutex that is never held across an
//! `.await`.

use std::collections::BTreeMap;

use crate::error::ClientError;
use crate::types::ClusterStatus;

/// Where a request should preferably go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The leader if its URL is known, else the preferred endpoint (which forwards writes): writes and
    /// linearizable reads, which the leader answers without an extra hop.
    Leader,
    /// The preferred endpoint: stale reads, which any node answers.
    Any,
}

/// The endpoints and the leader as far as the client knows.
///
/// Invariant: `endpoints` is not empty, has no duplicates, and `preferred < endpoints.len()`.
#[derive(Debug)]
pub(crate) struct Endpoints {
    /// The configured endpoints, then the client URLs learned from `/v1/cluster`, normalized.
    endpoints: Vec<String>,
    /// The index of the endpoint used when the leader is unknown; it moves on when that endpoint fails.
    preferred: usize,
    /// The leader's id, from the last `X-Tally-Leader` header, error `leader` field or cluster view.
    leader_id: Option<String>,
    /// Client URLs by node id, from cluster views (a node's own answer is the most trusted source).
    urls_by_id: BTreeMap<String, String>,
    /// Set when the leader changed to an id whose URL is unknown: one cluster view should be fetched.
    refresh_wanted: bool,
}

impl Endpoints {
    /// The state for `endpoints`, normalized (see [`normalize_endpoint`]) and deduplicated.
    ///
    /// # Errors
    /// An empty list or a malformed endpoint.
    pub(crate) fn new(endpoints: Vec<String>) -> Result<Endpoints, ClientError> {
        let mut normalized: Vec<String> = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let url = normalize_endpoint(&endpoint)?;
            if !normalized.contains(&url) {
                normalized.push(url);
            }
        }
        if normalized.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                reason: "no endpoints given: expected one or more URLs like http://127.0.0.1:7001".to_string(),
            });
        }
        Ok(Endpoints {
            endpoints: normalized,
            preferred: 0,
            leader_id: None,
            urls_by_id: BTreeMap::new(),
            refresh_wanted: false,
        })
    }

    /// Every known endpoint, configured first.
    pub(crate) fn all(&self) -> &[String] {
        &self.endpoints
    }

    /// The leader's id, if known.
    pub(crate) fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    /// The leader's client URL, if both its id and URL are known.
    pub(crate) fn leader_url(&self) -> Option<&str> {
        self.urls_by_id.get(self.leader_id.as_deref()?).map(String::as_str)
    }

    /// The preferred endpoint.
    pub(crate) fn preferred(&self) -> &str {
        &self.endpoints[self.preferred]
    }

    /// The endpoint for the next request on `route`.
    pub(crate) fn pick(&self, route: Route) -> String {
        match route {
            Route::Leader => self.leader_url().unwrap_or_else(|| self.preferred()).to_string(),
            Route::Any => self.preferred().to_string(),
        }
    }

    /// Whether one cluster view should be fetched to learn the leader's URL; clears the wish.
    pub(crate) fn take_refresh_wanted(&mut self) -> bool {
        std::mem::take(&mut self.refresh_wanted)
    }

    /// Records a leader hint (header or error field). A new leader whose URL is unknown asks for a refresh.
    pub(crate) fn learn_leader(&mut self, leader: Option<&str>) {
        let Some(leader) = leader else { return };
        if self.leader_id.as_deref() == Some(leader) {
            return;
        }
        self.leader_id = Some(leader.to_string());
        if !self.urls_by_id.contains_key(leader) {
            self.refresh_wanted = true;
        }
    }

    /// Records that no leader is known (a `no_leader` answer without a hint).
    pub(crate) fn forget_leader(&mut self) {
        self.leader_id = None;
    }

    /// Records a cluster view answered by `endpoint`: the node's own id maps to `endpoint`, members' client
    /// URLs are learned (and added to the endpoints), and the leader it names becomes the leader.
    pub(crate) fn learn_cluster(&mut self, endpoint: &str, status: &ClusterStatus) {
        for member in &status.members {
            let Some(url) = member.client_url.as_deref() else { continue };
            let Ok(url) = normalize_endpoint(url) else { continue };
            if member.id != status.id {
                self.urls_by_id.insert(member.id.clone(), url.clone());
            }
            if !self.endpoints.contains(&url) {
                self.endpoints.push(url);
            }
        }
        if let Ok(url) = normalize_endpoint(endpoint) {
            self.urls_by_id.insert(status.id.clone(), url);
        }
        if let Some(leader) = status.leader.as_deref() {
            self.leader_id = Some(leader.to_string());
        }
    }

    /// Records that `endpoint` failed (refused a connection, timed out, or is stopping): the preferred
    /// endpoint moves on if it was this one, and the leader's URL is dropped if it was this one, so the next
    /// attempt goes elsewhere.
    pub(crate) fn on_failure(&mut self, endpoint: &str) {
        if self.endpoints[self.preferred] == endpoint {
            self.preferred = (self.preferred + 1) % self.endpoints.len();
        }
        if self.leader_url() == Some(endpoint) {
            self.urls_by_id.retain(|_, url| url != endpoint);
            self.leader_id = None;
        }
    }
}

/// Normalizes an endpoint: trims it, adds `http://` to a bare `host:port`, drops a trailing `/`.
///
/// # Errors
/// [`ClientError::InvalidEndpoint`] for anything that is not an `http`/`https` URL with a host and no path.
pub fn normalize_endpoint(endpoint: &str) -> Result<String, ClientError> {
    let trimmed = endpoint.trim();
    let bad =
        |reason: &str| ClientError::InvalidEndpoint { endpoint: endpoint.to_string(), reason: reason.to_string() };
    if trimmed.is_empty() {
        return Err(bad("it is empty: expected a URL like http://127.0.0.1:7001"));
    }
    let with_scheme = if trimmed.contains("://") { trimmed.to_string() } else { format!("http://{trimmed}") };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|e| bad(&format!("{e}: expected a URL like http://127.0.0.1:7001")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// (and https://) URLs are supported"));
    }
    let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
        return Err(bad("it has no host"));
    };
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(bad("it must be just a scheme, host and port: expected http://HOST:PORT"));
    }
    Ok(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Member, MemberRole, NodeRole};

    fn view(id: &str, leader: Option<&str>, members: &[(&str, Option<&str>)]) -> ClusterStatus {
        ClusterStatus {
            id: id.to_string(),
            role: if leader == Some(id) { NodeRole::Leader } else { NodeRole::Follower },
            term: 1,
            leader: leader.map(str::to_string),
            commit_index: 0,
            applied_index: 0,
            last_index: 0,
            snapshot_index: 0,
            state_checksum: String::new(),
            members: members
                .iter()
                .map(|(id, url)| Member {
                    id: id.to_string(),
                    role: MemberRole::Voter,
                    peer_url: None,
                    client_url: url.map(str::to_string),
                    match_index: None,
                })
                .collect(),
        }
    }

    #[test]
    fn normalizes_endpoints() {
        assert_eq!(normalize_endpoint(" http://127.0.0.1:7001/ ").expect("valid"), "http://127.0.0.1:7001");
        assert_eq!(normalize_endpoint("localhost:7001").expect("valid"), "http://localhost:7001");
        assert_eq!(normalize_endpoint("http://[::1]:7001").expect("valid"), "http://[::1]:7001");
        for bad in ["", "ftp://h:1", "http://h:1/v1", "http://h:99999", "http://", "h:1?x", "http://u@h:1"] {
            assert!(normalize_endpoint(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Endpoints::new(vec![]).is_err());
        let endpoints = Endpoints::new(vec!["h:1".into(), "http://h:1/".into()]).expect("valid");
        assert_eq!(endpoints.all(), ["http://h:1"]);
    }

    #[test]
    fn writes_go_to_the_leader_once_its_url_is_known() {
        let mut endpoints = Endpoints::new(vec!["http://a:1".into(), "http://b:1".into()]).expect("valid");
        assert_eq!(endpoints.pick(Route::Leader), "http://a:1");
        // A hint names a leader whose URL is unknown: keep the preferred endpoint, ask for a refresh once.
        endpoints.learn_leader(Some("n3"));
        assert_eq!(endpoints.pick(Route::Leader), "http://a:1");
        assert!(endpoints.take_refresh_wanted());
        assert!(!endpoints.take_refresh_wanted());
        // The cluster view tells the URL, and the new endpoint joins the list.
        endpoints.learn_cluster("http://a:1", &view("n1", Some("n3"), &[("n1", None), ("n3", Some("http://c:1"))]));
        assert_eq!(endpoints.pick(Route::Leader), "http://c:1");
        assert_eq!(endpoints.pick(Route::Any), "http://a:1");
        assert_eq!(endpoints.all(), ["http://a:1", "http://b:1", "http://c:1"]);
        // A known leader moving needs no refresh.
        endpoints.learn_leader(Some("n1"));
        assert!(!endpoints.take_refresh_wanted());
        assert_eq!(endpoints.pick(Route::Leader), "http://a:1");
    }

    #[test]
    fn failures_move_on() {
        let mut endpoints = Endpoints::new(vec!["http://a:1".into(), "http://b:1".into()]).expect("valid");
        endpoints.learn_cluster("http://b:1", &view("n2", Some("n2"), &[("n2", Some("http://b:1"))]));
        assert_eq!(endpoints.pick(Route::Leader), "http://b:1");
        // The leader's endpoint fails: the leader is forgotten, the preferred endpoint stays.
        endpoints.on_failure("http://b:1");
        assert_eq!(endpoints.leader_id(), None);
        assert_eq!(endpoints.pick(Route::Leader), "http://a:1");
        // The preferred one fails: move on, wrapping around.
        endpoints.on_failure("http://a:1");
        assert_eq!(endpoints.pick(Route::Any), "http://b:1");
        endpoints.on_failure("http://b:1");
        assert_eq!(endpoints.pick(Route::Any), "http://a:1");
    }
}
