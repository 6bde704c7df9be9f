//! The server process: binds the ports, opens the log, and runs the node loop, the peer transport and the
//! client API until shutdown.
//!
//! ```text
//!  Server::start: bind client + peer ports ─▶ open the WAL (recovery) ─▶ Node::start
//!                 ─▶ driver thread (node loop) ◀─ peer inbox forwarder ◀─ PeerTransport
//!                 ─▶ tally_net::serve (HTTPS if configured) + axum on the client port ──Event──▶ driver thread
//!  Server::shutdown: HTTP stops accepting and drains ─▶ node loop stops (log closed) ─▶ transport stops
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::Duration;

use tally_kv::KvStore;
use tally_node::{MembershipPolicy, Node, NodeConfig, WalStorage};
use tally_raft::{Membership, NodeId};
use tally_wal::{RealDisk, WalOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ServerConfig, peer_host_port};
use crate::discovery;
use crate::driver::{self, Driver, EVENT_QUEUE_MAX, Event, PeerSender, Published, WallClock};
use crate::http;
use crate::peer::{PeerConfig, PeerIdentity, PeerTransport};

/// How long shutdown waits for in-flight HTTP requests before dropping them.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a server could not start (or stopped on its own).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The data directory cannot be opened or its log cannot be trusted.
    #[error("cannot open the data directory: {0}")]
    Storage(String),
    /// The node stopped after a storage failure.
    #[error("node stopped: {0}")]
    Stopped(String),
}

/// A running server.
pub struct Server {
    /// Bound client address.
    client_addr: SocketAddr,
    /// Bound peer address.
    peer_addr: SocketAddr,
    /// The node loop's input.
    events: SyncSender<Event>,
    /// What the node loop publishes.
    published: Arc<Published>,
    /// The node loop's thread.
    driver_thread: JoinHandle<()>,
    /// Tells the HTTP server to stop.
    http_stop: watch::Sender<bool>,
    /// The HTTP server's task.
    http_task: tokio::task::JoinHandle<()>,
    /// The task moving peer messages into the node loop.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The peer transport.
    peers: Arc<PeerTransport>,
    /// The runtime the peer transport runs on.
    peer_runtime: PeerRuntime,
}

/// The TLS configs a server builds from its files at start, so a bad file stops it at once with a message
/// naming the file.
struct Tls {
    /// The client port's (HTTPS), if on.
    client_port: Option<Arc<rustls::ServerConfig>>,
    /// The peer port's mutual-TLS pair, if on.
    peer: Option<tally_net::tls::TlsPair>,
    /// The node's own HTTPS calls: forwarded writes, join calls, the registry.
    outbound: rustls::ClientConfig,
}

impl Tls {
    /// Loads every file; checks that the peer certificate names this node.
    fn build(config: &ServerConfig) -> Result<Tls, ServerError> {
        let fail = |e: crate::config::ParseError| ServerError::Config(e.to_string());
        if config.tls.cert.is_some() && config.tls.ca.is_none() && config.peer_tls.ca.is_none() {
            return Err(ServerError::Config(
                "--tls-cert makes this node's client URL https://, and its peers' too: to forward writes and join \
                 calls to them it must verify their certificates, so give it the CA that signed them (--peer-tls-ca, \
                 which also turns on mutual TLS between peers, or --tls-ca, which also requires client certificates)"
                    .to_string(),
            ));
        }
        if let Some(named) = config.peer_certificate_id().map_err(fail)? {
            crate::config::reconcile_node_id(Some(config.id), Some(named)).map_err(fail)?;
        }
        Ok(Tls {
            client_port: config.client_port_tls().map_err(fail)?,
            peer: config.peer_tls().map_err(fail)?,
            outbound: config.outbound_tls().map_err(fail)?,
        })
    }
}

/// How long the forwarder may take to connect to the leader: short, so a blackholed leader gives a prompt
/// `502 forward_failed` (nothing was sent) rather than a `504` after the whole request timeout.
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The HTTP client that forwards writes to the leader: the cluster's TLS, no proxy (a forwarded write carries
/// the client's credentials), no redirects, its own connect timeout.
fn forwarder(tls: rustls::ClientConfig) -> Result<reqwest::Client, ServerError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(FORWARD_CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(4))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| ServerError::Config(format!("cannot build the forwarding client: {e}")))
}

impl Server {
    /// Binds the ports, opens (recovers) the data directory and starts serving.
    ///
    /// # Errors
    /// See [`ServerError`].
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let client_listener = bind(config.listen_client).await?;
        let peer_listener = bind(config.listen_peer).await?;
        Server::start_on(config, client_listener, peer_listener).await
    }

    /// Like [`Server::start`], on listeners bound already (`listen_client` and `listen_peer` are ignored):
    /// tests bind port 0 first and build the cluster's peer URLs from the ports they got.
    ///
    /// # Errors
    /// See [`ServerError`].
    pub async fn start_on(
        config: ServerConfig,
        client_listener: TcpListener,
        peer_listener: TcpListener,
    ) -> Result<Server, ServerError> {
        let peer_config = PeerConfig::default();
        check_config(&config, &peer_config)?;
        let tls = Tls::build(&config)?;
        let client_addr =
            client_listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen_client, source })?;
        let peer_addr =
            peer_listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen_peer, source })?;
        check_peer_authentication(&config, peer_addr)?;
        let discovery = config.discovery.clone();
        let discovery::Prepared { me, registry, start } =
            discovery::prepare(&config, client_addr, peer_addr, &tls.outbound).await?;
        let client_url = me.client_url.clone();
        let bootstrap = match (&discovery, &start) {
            (None, _) => Membership::with_voters(config.initial_cluster.iter().map(|m| m.id)),
            (Some(_), discovery::Start::Form { .. }) => Membership::with_voters([config.id]),
            (Some(_), _) => Membership::default(),
        };

        if let discovery::Start::Form { cluster_id } = &start {
            discovery::record_formed_cluster_id(&config.data_dir, cluster_id)?;
        }
        let storage = open_storage(&config, bootstrap)?;
        let incarnation = discovery::persist_node_id(&config.data_dir, config.id)?;
        // The peer transport runs on its own runtime (one thread), so Appends, acks and heartbeats never wait
        // in a run queue behind client HTTP work: under load that wait, not the network, was the round trip.
        let peer_runtime = PeerRuntime::new()?;
        let peer_handle = peer_runtime.handle();
        let peer_listener = peer_listener.into_std().map_err(|source| ServerError::Bind { addr: peer_addr, source })?;
        let (transport, mut inbox) = {
            let _peer_context = peer_handle.enter();
            let listener =
                TcpListener::from_std(peer_listener).map_err(|source| ServerError::Bind { addr: peer_addr, source })?;
            let identity = PeerIdentity {
                client_url: client_url.clone(),
                peer_url: me.peer_url.clone(),
                token: config.cluster_token.clone(),
            };
            PeerTransport::start(config.id, identity, listener, peer_config, tls.peer)
        };
        let peers = Arc::new(transport);
        let mut background = Vec::new();
        let static_peers: BTreeMap<NodeId, String> =
            config.initial_cluster.iter().map(|m| (m.id, m.peer_url.clone())).collect();
        for (&id, url) in static_peers.iter().filter(|(id, _)| **id != config.id) {
            peers.set_peer(id, url.clone()).map_err(|e| ServerError::Config(e.to_string()))?;
        }

        let seed = config.seed.unwrap_or_else(random_seed);
        let mut node_config = NodeConfig::new(config.id, seed);
        node_config.tick_interval_ms = config.tick_interval.as_millis().max(1) as u64;
        node_config.raft.election = config.election;
        node_config.snapshot_interval_entries = config.snapshot_interval_entries.max(1);
        node_config.snapshot_keep_entries = config.snapshot_keep_entries;
        node_config.quota_bytes = config.quota_bytes;
        let store = KvStore::with_history_limits(config.watch.history_limits());
        let node = Node::start(node_config, storage, PeerSender(Arc::clone(&peers)), WallClock::new(), store)
            .map_err(|e| ServerError::Storage(format!("{}: {e}", config.data_dir.display())))?;
        tracing::info!(id = %config.id, %client_addr, %peer_addr, data_dir = %config.data_dir.display(), "node started");

        let (events, receiver) = std::sync::mpsc::sync_channel(EVENT_QUEUE_MAX);
        let published = Arc::new(Published::default());
        let policy = discovery.as_ref().map(|d| MembershipPolicy::new(d.policy));
        let driver = Driver::new(node, receiver, Arc::clone(&published), static_peers, policy)
            .with_watches(config.watch.hub_config());
        let driver_published = Arc::clone(&published);
        let runtime = tokio::runtime::Handle::current();
        let driver_thread = std::thread::Builder::new()
            .name(format!("tally-node-{}", config.id))
            .spawn(move || {
                let _runtime = runtime.enter();
                // If the loop panics, the guard still marks the node stopped: /livez then fails, `run` returns
                // an error, and requests get "outcome unknown" (their reply channels are dropped).
                let _stopped_on_exit = StoppedOnExit(driver_published);
                driver.run();
            })
            .map_err(|e| ServerError::Config(format!("cannot start the node thread: {e}")))?;

        let peer_events = events.clone();
        background.push(peer_handle.spawn(async move {
            while let Some(message) = inbox.recv().await {
                if !driver::offer(&peer_events, Event::Peer(message)) {
                    tracing::debug!("node loop busy: dropping a peer message");
                }
            }
        }));

        let http_metrics = http::HttpMetrics::default();
        let connection_metrics = Arc::clone(&http_metrics.connections);
        let shared = http::Shared {
            id: config.id,
            client_url,
            peer_url: me.peer_url.clone(),
            cluster_token: config.cluster_token.clone(),
            peer_urls: config.initial_cluster.iter().map(|m| (m.id, m.peer_url.clone())).collect::<BTreeMap<_, _>>(),
            static_membership: config.discovery.is_none(),
            client_certificates_required: config.tls.ca.is_some(),
            events: events.clone(),
            published: Arc::clone(&published),
            peers: Arc::clone(&peers),
            limits: config.limits,
            request_timeout: config.request_timeout,
            forwarder: forwarder(tls.outbound.clone())?,
            http_metrics,
        };
        let router = http::router(Arc::new(shared));
        let (http_stop, mut stop) = watch::channel(false);
        let options = tally_net::serve::Options {
            tls: tls.client_port,
            limits: config.connection_limits,
            metrics: connection_metrics,
        };
        let http_task = tokio::spawn(async move {
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(error) = tally_net::serve::serve(client_listener, router, options, stopping).await {
                tracing::error!(%error, "client API failed");
            }
        });
        if let Some(discovery) = discovery {
            let formed = discovery::formed_cluster_id(&config.data_dir);
            if let Some(registry) = registry.clone() {
                let heartbeat =
                    discovery::heartbeat(config.id, registry, me.clone(), formed.clone(), Arc::clone(&published));
                background.push(tokio::spawn(heartbeat));
            }
            let joiner = discovery::Joiner { id: config.id, me, incarnation, formed };
            let caller = discovery::Caller { token: config.cluster_token.clone(), tls: tls.outbound.clone() };
            let join = discovery::join(joiner, discovery.join, registry, caller, Arc::clone(&published));
            background.push(tokio::spawn(join));
        }
        Ok(Server {
            client_addr,
            peer_addr,
            events,
            published,
            driver_thread,
            http_stop,
            http_task,
            background,
            peers,
            peer_runtime,
        })
    }

    /// The address the client API listens on.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The address the peer transport listens on.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Whether the node loop has stopped (after a storage failure).
    pub fn has_stopped(&self) -> bool {
        self.published.stopped()
    }

    /// Stops serving: the client API stops accepting and drains in-flight requests, then the node loop stops
    /// (closing the log), then the peer transport.
    pub async fn shutdown(self) {
        self.http_stop.send_replace(true);
        let mut http_task = self.http_task;
        if tokio::time::timeout(HTTP_DRAIN_TIMEOUT, &mut http_task).await.is_err() {
            tracing::warn!("in-flight requests did not finish in time; dropping them");
            http_task.abort();
        }
        for task in &self.background {
            task.abort();
        }
        let events = self.events;
        let driver_thread = self.driver_thread;
        let joined = tokio::task::spawn_blocking(move || {
            let _ = events.send(Event::Shutdown);
            driver_thread.join()
        })
        .await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("the node loop panicked");
        }
        for task in self.background {
            let _ = task.await;
        }
        let peer_handle = self.peer_runtime.handle();
        match Arc::try_unwrap(self.peers) {
            Ok(peers) => {
                if let Err(error) = peer_handle.spawn(peers.shutdown()).await {
                    tracing::error!(%error, "the peer transport failed to stop cleanly");
                }
            }
            Err(_) => tracing::debug!("peer transport still shared at shutdown; dropping it"),
        }
        tracing::info!("node stopped");
    }
}

/// The runtime of the peer transport: one worker thread of its own. Dropping it (even from async code, where a
/// runtime may not block) stops it in the background.
struct PeerRuntime(Option<tokio::runtime::Runtime>);

impl PeerRuntime {
    /// Starts the runtime.
    fn new() -> Result<PeerRuntime, ServerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tally-peer")
            .enable_all()
            .build()
            .map_err(|e| ServerError::Config(format!("cannot start the peer runtime: {e}")))?;
        Ok(PeerRuntime(Some(runtime)))
    }

    /// A handle to spawn on it.
    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("present until dropped").handle().clone()
    }
}

impl Drop for PeerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Marks the node loop stopped when dropped, including by a panic unwinding its thread.
struct StoppedOnExit(Arc<Published>);

impl Drop for StoppedOnExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the node loop panicked: this node stops serving; restart it to recover from its log");
        }
        self.0.mark_stopped();
    }
}

/// Checks the configuration as a whole: how the node finds its cluster, the token, and the limits.
fn check_config(config: &ServerConfig, peer: &PeerConfig) -> Result<(), ServerError> {
    match &config.discovery {
        None if !config.initial_cluster.iter().any(|m| m.id == config.id) => {
            let named: Vec<String> = config.initial_cluster.iter().map(|m| m.id.to_string()).collect();
            return Err(ServerError::Config(format!(
                "--initial-cluster must include this node ({}); it names {}",
                config.id,
                named.join(", ")
            )));
        }
        Some(_) if !config.initial_cluster.is_empty() => {
            return Err(ServerError::Config("--initial-cluster cannot be combined with discovery".to_string()));
        }
        Some(discovery) => discovery.policy.validate().map_err(ServerError::Config)?,
        None => {}
    }
    if let Some(token) = &config.cluster_token {
        if token.is_empty()
            || token.len() > crate::wire::TOKEN_MAX_BYTES
            || !token.bytes().all(|b| (b' '..=b'~').contains(&b))
            || token.trim() != token
        {
            return Err(ServerError::Config(format!(
                "the cluster token (--cluster-token, TALLY_CLUSTER_TOKEN) must be 1 to {} printable ASCII characters, \
                 neither starting nor ending with a space (a header cannot carry control characters); an empty one is refused rather than taken \
                 as no token",
                crate::wire::TOKEN_MAX_BYTES
            )));
        }
    }
    for url in [&config.advertise_client_url, &config.advertise_peer_url].into_iter().flatten() {
        if url.len() > crate::wire::CLIENT_URL_MAX_BYTES || peer_host_port(url).is_err() {
            return Err(ServerError::Config(format!("bad advertised URL {url:?}: expected http://HOST:PORT")));
        }
    }
    config.connection_limits.validate().map_err(ServerError::Config)?;
    config.watch.validate().map_err(ServerError::Config)?;
    check_limits(config, peer)
}

/// Refuses a peer port that faces a network (any address but loopback) without a way for peers to prove who
/// they are, mutual TLS or the cluster token, unless `--insecure-peer` says the network is trusted: on such a
/// port anyone could pose as a member, forge votes and acknowledgements, or redirect a member's traffic.
fn check_peer_authentication(config: &ServerConfig, peer_addr: SocketAddr) -> Result<(), ServerError> {
    let peer_tls = config.peer_tls_files().map_err(|e| ServerError::Config(e.to_string()))?;
    if peer_addr.ip().is_loopback() || config.cluster_token.is_some() || config.insecure_peer {
        return Ok(());
    }
    if peer_tls.is_some() && config.discovery.is_some() && config.tls.ca.is_none() {
        return Err(ServerError::Config(
            "with discovery, nodes join through the client port's join call, which mutual TLS between peers does not \
             guard: give the cluster a token (--cluster-token / TALLY_CLUSTER_TOKEN), or require node certificates on \
             the client port too (--tls-ca), or pass --insecure-peer if this network is private and trusted"
                .to_string(),
        ));
    }
    if peer_tls.is_some() {
        return Ok(());
    }
    Err(ServerError::Config(format!(
        "the peer port listens on {peer_addr}, which other hosts can reach, but peers need not prove who they are: \
         give every node mutual TLS (--peer-tls-cert, --peer-tls-key, --peer-tls-ca, or the --tls-* set; `tally \
         certs init` makes them) or a cluster token (--cluster-token / TALLY_CLUSTER_TOKEN), or pass --insecure-peer \
         if this network is private and trusted"
    )))
}

/// Checks that the request limits fit what the log and the peer transport can carry: a value that passed the
/// HTTP checks must never be refused (or trip an assertion) further down.
fn check_limits(config: &ServerConfig, peer: &PeerConfig) -> Result<(), ServerError> {
    /// Room for the command's encoding and the entry header around key and value.
    const COMMAND_OVERHEAD: usize = 64;
    /// Room for one transaction op's encoding beyond its JSON.
    const TXN_OP_OVERHEAD: usize = 16;
    let limits = config.limits;
    let entry = limits.max_key_bytes + limits.max_value_bytes + COMMAND_OVERHEAD;
    let ceiling = tally_wal::ENTRY_DATA_MAX.min(peer.max_frame_bytes / 2);
    if entry > ceiling {
        return Err(ServerError::Config(format!(
            "--max-key-bytes ({}) + --max-value-bytes ({}) is too large: together they must stay under {} bytes",
            limits.max_key_bytes,
            limits.max_value_bytes,
            ceiling - COMMAND_OVERHEAD
        )));
    }
    if limits.max_key_bytes == 0 || limits.max_value_bytes > limits.max_body_bytes {
        return Err(ServerError::Config(format!(
            "limits must have --max-key-bytes > 0 and --max-value-bytes ({}) <= --max-body-bytes ({})",
            limits.max_value_bytes, limits.max_body_bytes
        )));
    }
    if limits.max_txn_ops == 0 || limits.max_txn_ops > tally_kv::TXN_OPS_MAX {
        return Err(ServerError::Config(format!(
            "--max-txn-ops must be between 1 and {}, got {}",
            tally_kv::TXN_OPS_MAX,
            limits.max_txn_ops
        )));
    }
    // A transaction's body becomes one entry. Its encoding is shorter than its JSON but for a few bytes per
    // op at most (an 11-byte `{"list":{}}` encodes in 13), in three lists of at most `max_txn_ops`.
    let txn_entry = limits.max_body_bytes + COMMAND_OVERHEAD + TXN_OP_OVERHEAD * 3 * limits.max_txn_ops;
    if txn_entry > ceiling {
        return Err(ServerError::Config(format!(
            "--max-body-bytes ({}) is too large: a transaction's body becomes one log entry, which must stay under \
             {} bytes (with --max-txn-ops {})",
            limits.max_body_bytes,
            ceiling.saturating_sub(txn_entry - limits.max_body_bytes),
            limits.max_txn_ops
        )));
    }
    Ok(())
}

/// Binds a listener.
async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

/// Opens (recovering) the write-ahead log in the data directory.
fn open_storage(config: &ServerConfig, bootstrap: Membership) -> Result<WalStorage<RealDisk>, ServerError> {
    let dir = &config.data_dir;
    let fail = |e: String| ServerError::Storage(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let disk = RealDisk::open(dir).map_err(|e| fail(e.to_string()))?;
    let options = WalOptions { segment_bytes_max: config.segment_bytes };
    WalStorage::open(disk, options, bootstrap).map_err(|e| fail(e.to_string()))
}

/// A seed for the election timer that differs between nodes and runs.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// Runs a server until `shutdown` resolves (e.g. Ctrl-C or SIGTERM), then stops it gracefully.
///
/// # Errors
/// If it cannot start, or the node stops after a storage failure.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let mut shutdown = std::pin::pin!(shutdown);
    // Starting may wait for the registry (a new node must know whether a cluster exists): a signal ends it.
    let server = tokio::select! {
        server = Server::start(config) => server?,
        () = &mut shutdown => return Ok(()),
    };
    let stopped = {
        let published = Arc::clone(&server.published);
        async move {
            while !published.stopped() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let failed = tokio::select! {
        () = &mut shutdown => false,
        () = stopped => true,
    };
    server.shutdown().await;
    if failed {
        return Err(ServerError::Stopped("storage failed; restart the node to recover from its log".to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_must_fit_an_entry_and_a_frame() {
        let mut config = ServerConfig::new(NodeId(1), std::path::PathBuf::from("unused"));
        let peer = PeerConfig::default();
        assert!(check_limits(&config, &peer).is_ok(), "the defaults fit");
        config.limits.max_value_bytes = 40_000_000;
        config.limits.max_body_bytes = 40_000_000;
        let error = check_limits(&config, &peer).expect_err("a 40 MB value cannot be one entry");
        assert!(error.to_string().contains("--max-value-bytes"), "{error}");
        config.limits = crate::Limits { max_key_bytes: 0, ..crate::Limits::default() };
        assert!(check_limits(&config, &peer).is_err(), "a zero key limit");
        config.limits = crate::Limits { max_body_bytes: 40_000_000, ..crate::Limits::default() };
        let error = check_limits(&config, &peer).expect_err("a 40 MB transaction cannot be one entry");
        assert!(error.to_string().contains("--max-body-bytes"), "{error}");
        for max_txn_ops in [0, tally_kv::TXN_OPS_MAX + 1] {
            config.limits = crate::Limits { max_txn_ops, ..crate::Limits::default() };
            let error = check_limits(&config, &peer).expect_err("out of range");
            assert!(error.to_string().contains("--max-txn-ops"), "{error}");
        }
    }
}
