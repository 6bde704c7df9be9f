//! Discovery: how a node that knows only the registry's address (or one member's) becomes part of the
//! cluster.
//!
//! ```text
//!  start ──data dir empty?──no──▶ start the node from its log ─────────────────────────┐
//!    │ yes                                                                              │
//!    ├─ --bootstrap: form a one-voter cluster (no registry) ──────────────────────────────┤
//!    ├─ registry: register, then POST /v1/bootstrap                                     │
//!    │    won (and still won after a confirming heartbeat) ─▶ start a one-voter cluster ┤
//!    │    lost ─▶ start with no membership ─────────────────────────────────────────────┤
//!    └─ no registry (--join URL): start with no membership ─────────────────────────────┤
//!                                                                                       ▼
//!  background: heartbeat the registry every ttl/3 (with the cluster id once known), and
//!              POST /v1/cluster/join to this node (if a member) or any member, until it succeeds
//! ```
//!
//! The join call is idempotent and does whatever is missing: adds the node as a learner, or records its new
//! addresses, or nothing. So a node that restarts with its data rejoins as itself, and one whose address
//! changed updates it, through the same call. The leader's membership policy promotes learners.
//!
//! Safety of the bootstrap: only a node with an empty data directory claims, and only the claim's winner
//! forms a cluster. The winner confirms its claim by heartbeating and claims again: only if the answer is
//! still itself with the same cluster id does it start. A confirmed claim is never handed to anyone else, and
//! a restarted registry refuses claims for one TTL while the existing members re-register with their cluster
//! id, which the registry adopts.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tally_client::{RegistryClient, RegistryError};
use tally_node::PolicyConfig;
use tally_raft::NodeId;

use crate::config::{ServerConfig, peer_host_port};
use crate::driver::Published;
use crate::server::ServerError;

/// The file in the data directory that holds the node's id (first line) and incarnation (second line,
/// `incarnation HEX`).
pub const NODE_ID_FILE: &str = "node-id";

/// The file in the data directory of the node that formed the cluster: the cluster id it formed it with.
pub const CLUSTER_ID_FILE: &str = "cluster-id";

/// The first pause between attempts (registry calls, joins); doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
/// The longest pause between attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long one registry or join call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How a node finds its cluster (instead of a static `--initial-cluster`).
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// The registry's URL (`--registry-address`), if any.
    pub registry_address: Option<String>,
    /// Client URLs of members to send the join call to (`--join`), if any.
    pub join: Vec<String>,
    /// Form a new cluster if the data directory is empty, without asking a registry (`--bootstrap`): for a
    /// cluster grown with `--join` and no registry. Give it to one node only, once.
    pub bootstrap: bool,
    /// The leader's membership policy (voters, promotion, dead nodes).
    pub policy: PolicyConfig,
}

/// The addresses this node advertises.
#[derive(Clone, Debug)]
pub(crate) struct Advertised {
    /// Its client URL.
    pub(crate) client_url: String,
    /// Its peer URL.
    pub(crate) peer_url: String,
}

/// What the bootstrap decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The data directory has a log: start from it.
    FromLog,
    /// This node won the bootstrap claim: form a one-voter cluster with this id.
    Form {
        /// The cluster id the registry handed out.
        cluster_id: String,
    },
    /// Start with no membership and join a member.
    Join,
}

/// The node's id: `given` (checked against the one stored in the data directory), or the stored one, or a new
/// random one. A new id is stored by [`persist_node_id`] once the log is open, so a node keeps its id across
/// restarts, and an id without a log means the log was lost.
///
/// # Errors
/// A given id that differs from the stored one, an unreadable id file, or a stored id without a log.
pub fn node_id(data_dir: &Path, given: Option<NodeId>) -> Result<NodeId, ServerError> {
    let path = data_dir.join(NODE_ID_FILE);
    let fail = |e: String| ServerError::Storage(format!("{}: {e}", path.display()));
    let stored = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let first = text.lines().next().unwrap_or_default().trim();
            Some(crate::config::parse_node_id(first).map_err(|e| fail(e.to_string()))?)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(fail(error.to_string())),
    };
    match (given, stored) {
        (Some(given), Some(stored)) if given != stored => Err(ServerError::Config(format!(
            "--id {given} differs from the id {stored} this data directory belongs to ({})",
            path.display()
        ))),
        (_, Some(stored)) if !has_log(data_dir) => Err(ServerError::Storage(format!(
            "{} holds the id {stored} but no log: this node's data was lost. A member that lost its log must not come \
             back as itself (it could vote twice in a term); remove {} to join as a new node",
            data_dir.display(),
            path.display()
        ))),
        (_, Some(stored)) => Ok(stored),
        (given, None) => Ok(given.unwrap_or_else(random_node_id)),
    }
}

/// Stores the node's id and a new random incarnation in its data directory, if not there yet, and returns the
/// incarnation. Called once the log is open. The incarnation tells the cluster this node from one that reuses
/// its id after losing its data.
pub(crate) fn persist_node_id(data_dir: &Path, id: NodeId) -> Result<u64, ServerError> {
    let path = data_dir.join(NODE_ID_FILE);
    let fail = |e: String| ServerError::Storage(format!("{}: {e}", path.display()));
    let stored =
        match std::fs::read_to_string(&path) {
            Ok(text) => text.lines().nth(1).and_then(|line| line.strip_prefix("incarnation ")).map(|hex| {
                u64::from_str_radix(hex.trim(), 16).map_err(|e| fail(format!("bad incarnation {hex:?}: {e}")))
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(fail(error.to_string())),
        };
    if let Some(incarnation) = stored {
        return incarnation;
    }
    let incarnation = random_u64();
    write_durably(&path, format!("{id}\nincarnation {incarnation:016x}\n").as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    Ok(incarnation)
}

/// Writes a small file atomically and durably: temporary file, fsync, rename, directory fsync.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A random id in `1..2^31`: short enough to read, and two nodes of one cluster collide with a chance of
/// about one in a few hundred million.
fn random_node_id() -> NodeId {
    NodeId(1 + random_u64() % ((1 << 31) - 1))
}

/// 64 random bits from the OS-seeded hasher.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()))
}

/// Whether the data directory holds a write-ahead log (a segment or a snapshot file; other files, such as
/// `lost+found` on a fresh volume, do not count): such a node never claims the bootstrap.
pub(crate) fn has_log(data_dir: &Path) -> bool {
    let is_log = |name: &str| {
        (name.starts_with("segment-") && name.ends_with(".wal"))
            || (name.starts_with("snapshot-") && name.ends_with(".snap"))
    };
    match std::fs::read_dir(data_dir) {
        Ok(entries) => entries.flatten().any(|entry| entry.file_name().to_str().is_some_and(is_log)),
        Err(_) => false,
    }
}

/// The cluster id this node formed its cluster with, if it did: written before its log was created, so a
/// crash before the id is replicated cannot leave the cluster nameless.
pub(crate) fn formed_cluster_id(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(CLUSTER_ID_FILE)).ok()?;
    Some(text.trim().to_string()).filter(|id| !id.is_empty())
}

/// Records, durably, that this node forms the cluster `cluster_id` (before its log is created).
pub(crate) fn record_formed_cluster_id(data_dir: &Path, cluster_id: &str) -> Result<(), ServerError> {
    let path = data_dir.join(CLUSTER_ID_FILE);
    std::fs::create_dir_all(data_dir)
        .and_then(|()| write_durably(&path, format!("{cluster_id}\n").as_bytes()))
        .map_err(|e| ServerError::Storage(format!("{}: {e}", path.display())))
}

/// The host to advertise for a listener bound to `addr`: itself, unless it is a wildcard (`0.0.0.0`, `::`),
/// in which case the local address that routes to `toward` (the registry or a member), else loopback.
pub(crate) async fn advertised_ip(addr: SocketAddr, toward: Option<&str>) -> IpAddr {
    if !addr.ip().is_unspecified() {
        return addr.ip();
    }
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let Some(host_port) = toward.and_then(|url| peer_host_port(url).ok()) else { return loopback };
    let Ok(Some(target)) = tokio::net::lookup_host(host_port).await.map(|mut addrs| addrs.next()) else {
        return loopback;
    };
    // Connecting a UDP socket sends nothing; it only asks the kernel which local address routes there.
    let local = std::net::UdpSocket::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0))
        .and_then(|socket| socket.connect(target).and_then(|()| socket.local_addr()));
    match local {
        Ok(local) if !local.ip().is_unspecified() => local.ip(),
        _ => loopback,
    }
}

/// What discovery settled before the node starts.
pub(crate) struct Prepared {
    /// The addresses this node advertises.
    pub(crate) me: Advertised,
    /// The registry, if the node uses one.
    pub(crate) registry: Option<RegistryClient>,
    /// How the node starts.
    pub(crate) start: Start,
}

/// Works out the advertised addresses and, with discovery, how the node starts (which may wait for the
/// registry; see [`decide_start`]). A static cluster always starts from its log (or its `--initial-cluster`).
///
/// # Errors
/// A bad registry address, or the registry refused this node.
pub(crate) async fn prepare(
    config: &ServerConfig,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    tls: &rustls::ClientConfig,
) -> Result<Prepared, ServerError> {
    let discovery = config.discovery.as_ref();
    let registry = match discovery.and_then(|d| d.registry_address.as_deref()) {
        Some(address) => Some(
            RegistryClient::with_tls(address, config.cluster_token.clone(), CALL_TIMEOUT, Some(tls.clone()))
                .map_err(|e| ServerError::Config(format!("--registry-address: {e}")))?,
        ),
        None => None,
    };
    // A wildcard listener is advertised under the local address that reaches the registry (or a member).
    let toward = discovery.and_then(|d| d.registry_address.as_deref().or(d.join.first().map(String::as_str)));
    let advertise = async |given: &Option<String>, addr: SocketAddr, scheme: &str| match given {
        Some(url) => url.clone(),
        None => format!("{scheme}://{}", SocketAddr::new(advertised_ip(addr, toward).await, addr.port())),
    };
    // The scheme tells clients (and the forwarder) to use TLS; on the peer URL it is informative.
    let client_scheme = if config.tls.cert.is_some() { "https" } else { "http" };
    let peer_scheme = if config.peer_tls_files().is_ok_and(|files| files.is_some()) { "https" } else { "http" };
    let me = Advertised {
        client_url: advertise(&config.advertise_client_url, client_addr, client_scheme).await,
        peer_url: advertise(&config.advertise_peer_url, peer_addr, peer_scheme).await,
    };
    let start = match discovery {
        None => Start::FromLog,
        Some(d) => decide_start(config.id, &config.data_dir, d.bootstrap, registry.as_ref(), &me).await?,
    };
    Ok(Prepared { me, registry, start })
}

/// The registry id of a node: `n` and its number.
fn registry_id(id: NodeId) -> String {
    id.to_string()
}

/// Decides how the node starts (module doc). Waits for the registry as long as it takes when the data
/// directory is empty: without it, the node cannot know whether a cluster exists.
///
/// # Errors
/// The registry refused this node (wrong token, bad registration).
pub(crate) async fn decide_start(
    id: NodeId,
    data_dir: &Path,
    bootstrap: bool,
    registry: Option<&RegistryClient>,
    me: &Advertised,
) -> Result<Start, ServerError> {
    if has_log(data_dir) {
        return Ok(Start::FromLog);
    }
    if bootstrap {
        let cluster_id = format!("{:016x}", random_u64());
        tracing::info!(cluster = %cluster_id, "--bootstrap: forming a new cluster");
        return Ok(Start::Form { cluster_id });
    }
    let Some(registry) = registry else { return Ok(Start::Join) };
    let mut backoff = Backoff::new();
    let name = registry_id(id);
    let refused = |message: String| ServerError::Config(format!("the registry refused this node: {message}"));
    loop {
        let registered = registry.register(&name, &me.client_url, &me.peer_url, None).await;
        let answer = match registered {
            Ok(_) => registry.claim(&name).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok(claim) if !claim.you_won => {
                tracing::info!(winner = %claim.winner, cluster = %claim.cluster_id, "a cluster exists or is forming: joining it");
                return Ok(Start::Join);
            }
            Ok(claim) => match confirm_claim(registry, &name, me, &claim.cluster_id).await {
                Ok(true) => {
                    tracing::info!(cluster = %claim.cluster_id, "won the bootstrap claim: forming a new cluster");
                    return Ok(Start::Form { cluster_id: claim.cluster_id });
                }
                Ok(false) => return Ok(Start::Join),
                Err(RegistryError::Unauthorized(message)) => return Err(refused(message)),
                Err(error) => {
                    tracing::warn!(%error, "could not confirm the bootstrap claim; asking again");
                    backoff.wait().await;
                }
            },
            Err(RegistryError::Unauthorized(message)) => return Err(refused(message)),
            Err(RegistryError::Rejected { status, message, .. }) if status < 500 => {
                return Err(refused(format!("{status}: {message}")));
            }
            Err(RegistryError::WarmingUp { retry_after }) => {
                tracing::info!(?retry_after, "the registry restarted recently; waiting before claiming");
                tokio::time::sleep(retry_after.max(RETRY_MIN)).await;
            }
            Err(error) => {
                tracing::warn!(%error, "waiting for the registry (needed to find or form the cluster)");
                backoff.wait().await;
            }
        }
    }
}

/// After winning a claim: confirms it (a heartbeat after the claim), then checks that it is still this node's
/// and that no member of a cluster with its id is registered. `Ok(false)`: join instead. A claim taken over
/// while this node stalled, or one this node won before (it lost its data and came back with the same id
/// while its cluster lives on), must not give a second cluster.
async fn confirm_claim(
    registry: &RegistryClient,
    name: &str,
    me: &Advertised,
    cluster_id: &str,
) -> Result<bool, RegistryError> {
    registry.register(name, &me.client_url, &me.peer_url, None).await?;
    let again = registry.claim(name).await?;
    if !again.you_won || again.cluster_id != cluster_id {
        tracing::warn!(winner = %again.winner, "the bootstrap claim was taken over: joining instead");
        return Ok(false);
    }
    let members = registry.nodes().await?;
    if let Some(member) = members.iter().find(|n| n.id != name && n.cluster_id.as_deref() == Some(cluster_id)) {
        tracing::warn!(
            member = %member.id,
            cluster = %cluster_id,
            "this node won the claim before, and its cluster exists: joining it (this data directory is new)"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Heartbeats the registry forever, every third of its TTL: with the cluster id once known, so that a
/// restarted registry learns that the cluster exists. The cluster keeps serving while the registry is down.
///
/// `formed` is the cluster id this node formed the cluster with, sent until the replicated one is known.
pub(crate) async fn heartbeat(
    id: NodeId,
    registry: RegistryClient,
    me: Advertised,
    formed: Option<String>,
    published: Arc<Published>,
) {
    let name = registry_id(id);
    let mut interval = Duration::from_millis(500);
    let mut healthy = true;
    let mut backoff = Backoff::new();
    loop {
        let cluster_id = published.cluster_id().or_else(|| formed.clone());
        match registry.register(&name, &me.client_url, &me.peer_url, cluster_id.as_deref()).await {
            Ok(registration) => {
                if !healthy {
                    tracing::info!("the registry is reachable again");
                }
                healthy = true;
                backoff = Backoff::new();
                interval = Duration::from_millis((registration.ttl_ms / 3).max(50));
                tokio::time::sleep(interval).await;
            }
            Err(error) => {
                if healthy {
                    tracing::warn!(%error, "cannot heartbeat the registry; the cluster keeps serving, retrying");
                }
                healthy = false;
                backoff.wait_at_most(interval).await;
            }
        }
    }
}

/// The join call's body.
#[derive(Serialize)]
struct JoinBody<'a> {
    /// This node.
    id: String,
    /// Its peer URL.
    peer_url: &'a str,
    /// Its client URL.
    client_url: &'a str,
    /// Its incarnation, drawn when its data directory was created.
    incarnation: u64,
    /// The cluster id this node knows it belongs to (it formed the cluster, or is a member), if any: the
    /// leader refuses a node of another cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
}

/// Who joins: this node's id, addresses and incarnation, and the cluster id it formed, if any.
#[derive(Clone, Debug)]
pub(crate) struct Joiner {
    /// Its id.
    pub(crate) id: NodeId,
    /// Its addresses.
    pub(crate) me: Advertised,
    /// Its incarnation.
    pub(crate) incarnation: u64,
    /// The cluster id it formed its cluster with, if it did.
    pub(crate) formed: Option<String>,
}

/// How long a node that joined may find itself outside the membership before it joins again (a member
/// removed while it was unreachable, or an addition lost in a leader change).
const REJOIN_AFTER: Duration = Duration::from_secs(10);

/// How the node makes its join calls. No `Debug`: it holds the cluster token.
#[derive(Clone)]
pub(crate) struct Caller {
    /// The cluster token, sent as `Authorization: Bearer`.
    pub(crate) token: Option<String>,
    /// TLS for `https://` members: the cluster CA, the node's certificate.
    pub(crate) tls: rustls::ClientConfig,
}

/// Keeps this node in the cluster, for as long as it runs: sends the join call until one succeeds (to this
/// node itself while it is a member, which forwards it to the leader, to the `--join` URLs, and to every node
/// the registry lists), then watches the membership and joins again if this node stays out of it.
///
/// The calls never go through a proxy (they carry the cluster token) and never follow redirects.
pub(crate) async fn join(
    joiner: Joiner,
    seeds: Vec<String>,
    registry: Option<RegistryClient>,
    caller: Caller,
    published: Arc<Published>,
) {
    let built = reqwest::Client::builder()
        .use_preconfigured_tls(caller.tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(CALL_TIMEOUT)
        .build();
    let http = match built {
        Ok(http) => http,
        Err(error) => return tracing::error!(%error, "cannot build the HTTP client of the join calls; not joining"),
    };
    let token = caller.token;
    loop {
        join_once(&joiner, &seeds, registry.as_ref(), token.as_deref(), &published, &http).await;
        let mut outside_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if published.is_member() {
                outside_since = None;
                continue;
            }
            let since = *outside_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= REJOIN_AFTER {
                tracing::warn!("this node is not a member of the cluster (removed?): joining again");
                break;
            }
        }
    }
}

/// Sends the join call until one succeeds.
async fn join_once(
    joiner: &Joiner,
    seeds: &[String],
    registry: Option<&RegistryClient>,
    token: Option<&str>,
    published: &Published,
    http: &reqwest::Client,
) {
    let mut backoff = Backoff::new();
    let mut attempts = 0u64;
    let me = &joiner.me;
    loop {
        let body = JoinBody {
            id: joiner.id.to_string(),
            peer_url: &me.peer_url,
            client_url: &me.client_url,
            incarnation: joiner.incarnation,
            cluster_id: published.cluster_id().or_else(|| joiner.formed.clone()),
        };
        let mut targets = Vec::new();
        if published.is_member() {
            targets.push(me.client_url.clone());
        }
        targets.extend(seeds.iter().cloned());
        if let Some(registry) = registry {
            match registry.nodes().await {
                Ok(nodes) => {
                    let others = nodes.into_iter().filter(|n| n.id != joiner.id.to_string());
                    targets.extend(others.map(|n| n.client_url));
                }
                Err(error) => tracing::debug!(%error, "cannot list the registry's nodes"),
            }
        }
        let mut last_error = String::from("no member known yet (registry empty or unreachable, no --join URL)");
        for target in targets {
            let url = format!("{}/v1/cluster/join", target.trim_end_matches('/'));
            let mut request = http.post(&url).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(answer) if answer.status().is_success() => {
                    let text = answer.text().await.unwrap_or_default();
                    return tracing::info!(via = %target, answer = %text.trim(), "joined the cluster");
                }
                Ok(answer) => {
                    let status = answer.status();
                    let text = answer.text().await.unwrap_or_default();
                    match status {
                        reqwest::StatusCode::UNAUTHORIZED => {
                            tracing::error!(via = %target, answer = %text.trim(), "join refused: wrong or missing cluster token");
                        }
                        reqwest::StatusCode::CONFLICT => {
                            tracing::error!(via = %target, answer = %text.trim(), "join refused");
                        }
                        _ => {}
                    }
                    last_error = format!("{target}: {status} {}", text.trim());
                }
                Err(error) => last_error = format!("{target}: {error}"),
            }
        }
        attempts += 1;
        if attempts % 10 == 1 {
            tracing::info!(attempts, last = %last_error, "not joined yet; retrying with backoff");
        }
        backoff.wait().await;
    }
}

/// Exponential backoff between [`RETRY_MIN`] and [`RETRY_MAX`].
struct Backoff(Duration);

impl Backoff {
    /// Starts at the minimum.
    fn new() -> Backoff {
        Backoff(RETRY_MIN)
    }

    /// Sleeps the current pause, then doubles it.
    async fn wait(&mut self) {
        self.wait_at_most(RETRY_MAX).await;
    }

    /// Sleeps the current pause (at most `max`), then doubles it.
    async fn wait_at_most(&mut self, max: Duration) {
        tokio::time::sleep(self.0.min(max)).await;
        self.0 = (self.0 * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_its_id_and_a_given_id_must_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = node_id(dir.path(), Some(NodeId(7))).expect("new id");
        assert_eq!(first, NodeId(7));
        std::fs::write(dir.path().join("segment-1.wal"), b"log").expect("a log");
        persist_node_id(dir.path(), first).expect("stored");
        assert_eq!(node_id(dir.path(), None).expect("stored"), first);
        assert_eq!(node_id(dir.path(), Some(first)).expect("same"), first);
        let error = node_id(dir.path(), Some(NodeId(8))).expect_err("a different --id is refused");
        assert!(error.to_string().contains("differs"), "{error}");
    }

    #[test]
    fn an_id_without_a_log_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        persist_node_id(dir.path(), NodeId(3)).expect("stored");
        assert!(!has_log(dir.path()), "the id file alone is not a log");
        let error = node_id(dir.path(), None).expect_err("the log was lost");
        assert!(error.to_string().contains("data was lost"), "{error}");
    }

    #[test]
    fn random_ids_are_positive_and_short() {
        for _ in 0..100 {
            let id = random_node_id();
            assert!(id.0 >= 1 && id.0 < 1 << 31);
        }
    }
}
