//! `tally node`: one node of a cluster, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tally_server::{
    ConnectionLimits, DiscoveryConfig, ElectionMode, PolicyConfig, ServerConfig, TlsPaths, parse_initial_cluster,
    parse_node_id, reconcile_node_id,
};

use crate::signal::shutdown_signal;

mod watch_flags;

pub use watch_flags::WatchFlags;

/// `tally node --registry-address URL` (or `--join URL`, or a static `--initial-cluster`).
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// This node's id: n1, n2, ... (or 1, 2, ...). Default: the id stored in the data directory, or a new
    /// random one (stored there, so the node keeps it).
    #[arg(long, env = "TALLY_ID")]
    pub id: Option<String>,
    /// Where the client HTTP API listens (port 0: any free port).
    #[arg(long, value_name = "ADDR", env = "TALLY_LISTEN_CLIENT", default_value = "127.0.0.1:7001")]
    pub listen_client: SocketAddr,
    /// Where the peer transport listens.
    #[arg(long, value_name = "ADDR", env = "TALLY_LISTEN_PEER", default_value = "127.0.0.1:7101")]
    pub listen_peer: SocketAddr,
    /// The directory of the write-ahead log and snapshots; created if missing.
    #[arg(long, value_name = "DIR", env = "TALLY_DATA_DIR", default_value = "tally-node-data")]
    pub data_dir: PathBuf,
    /// The registry to find the cluster through (the original's -ra): the node registers, forms the cluster
    /// if it wins the bootstrap claim, or joins it.
    #[arg(long, alias = "ra", value_name = "URL", env = "TALLY_REGISTRY_ADDRESS")]
    pub registry_address: Option<String>,
    /// Client URLs of members to join through (comma-separated), with or without a registry.
    #[arg(long, value_name = "URL,...", value_delimiter = ',', env = "TALLY_JOIN")]
    pub join: Vec<String>,
    /// Form a new cluster if the data directory is empty, without a registry; other nodes then --join it.
    /// Give it to one node, once.
    #[arg(long, conflicts_with_all = ["registry_address", "join"])]
    pub bootstrap: bool,
    /// A static cluster instead of discovery: n1=PEER_URL,n2=PEER_URL,..., this node included. Used only
    /// when the data directory is empty; afterwards the membership comes from the log.
    #[arg(long, value_name = "ID=PEER_URL,...", conflicts_with_all = ["registry_address", "join", "bootstrap"])]
    pub initial_cluster: Option<String>,
    /// The shared cluster secret: the registry, the peer port and the join call refuse anyone without it.
    #[arg(long, value_name = "TOKEN", env = "TALLY_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// Serve a peer port on a non-loopback address with neither mutual TLS (--peer-tls-*) nor a cluster token:
    /// anyone who reaches it can then pose as a member. Only for a network that is private and trusted.
    #[arg(long, env = "TALLY_INSECURE_PEER")]
    pub insecure_peer: bool,
    /// How many voters the cluster keeps (1, 3, 5 or 7); further nodes stay learners (discovery only).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub voters: usize,
    /// How long a member may be unreachable before the leader removes it, e.g. 5m, 90s (discovery only).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub dead_node_timeout: Duration,
    /// How long a learner must stay caught up before it is promoted to voter, e.g. 2s (discovery only).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub promote_after: Duration,
    /// The client URL other nodes and clients are told (default: http://LISTEN_CLIENT, with a wildcard
    /// address replaced by the local address that reaches the registry).
    #[arg(long, value_name = "URL", env = "TALLY_ADVERTISE_CLIENT")]
    pub advertise_client: Option<String>,
    /// The peer URL other nodes are told (default like --advertise-client, from --listen-peer).
    #[arg(long, value_name = "URL", env = "TALLY_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// The longest key, in bytes (default 4096).
    #[arg(long, value_name = "N")]
    pub max_key_bytes: Option<usize>,
    /// The longest value, in bytes (default 1 MiB).
    #[arg(long, value_name = "N")]
    pub max_value_bytes: Option<usize>,
    /// The largest request body, in bytes (default 1.5 MiB).
    #[arg(long, value_name = "N")]
    pub max_body_bytes: Option<usize>,
    /// The most compares, and the most ops per branch, in one transaction (default 128, at most 1024).
    #[arg(long, value_name = "N")]
    pub max_txn_ops: Option<usize>,
    /// How long a client request may wait for its answer before 504, in milliseconds (default 5000).
    #[arg(long, value_name = "N")]
    pub request_timeout_ms: Option<u64>,
    /// Milliseconds per Raft tick (default 100; the election timeout is 10 ticks).
    #[arg(long, value_name = "N")]
    pub tick_ms: Option<u64>,
    /// Take a snapshot (and compact the log) every N applied entries (default 100,000).
    #[arg(long, value_name = "N")]
    pub snapshot_interval_entries: Option<u64>,
    /// Log entries kept behind a snapshot, so a follower a little behind catches up from the log (default
    /// 10,000).
    #[arg(long, value_name = "N")]
    pub snapshot_keep_entries: Option<u64>,
    /// Past this many bytes in the data directory (log segments and snapshots), the node raises the `quota`
    /// alarm and refuses writes other than deletes while it leads (default 8 GiB; 0: no quota). See the
    /// README, "Disk full".
    #[arg(long, value_name = "N")]
    pub quota_bytes: Option<u64>,
    /// The size of one write-ahead log segment, preallocated when created (default 64 MiB; at least 4096).
    #[arg(long, value_name = "N")]
    pub segment_bytes: Option<u64>,
    /// Seed of the election timer (default: drawn from the OS); for reproducing a run.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// How a node that lost its leader finds the next one: `raft` (randomized timeouts and votes) or `bully`
    /// (the live node with the freshest log, then the highest id, runs; it still needs a majority of votes).
    /// See docs/elections.md.
    #[arg(long, value_enum, default_value_t = Election::Raft, env = "TALLY_ELECTION")]
    pub election: Election,
    /// TLS of the client and peer ports.
    #[command(flatten)]
    pub tls: NodeTlsArgs,
    /// Timeouts and connection caps of the client port.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// The watch history and watcher limits.
    #[command(flatten)]
    pub watch: WatchFlags,
}

/// `tally node`'s TLS flags. Each `--peer-tls-*` defaults to its `--tls-*`, so one set serves both ports.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NodeTlsArgs {
    /// The node's certificate (PEM): the client port speaks HTTPS, and its default advertised URL is
    /// https://. `tally certs init` makes one per node (nN.pem). Needs --tls-key.
    #[arg(long, value_name = "FILE", env = "TALLY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", env = "TALLY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A CA certificate (PEM): the client port then requires client certificates signed by it. Also the
    /// default of --peer-tls-ca.
    #[arg(long, value_name = "FILE", env = "TALLY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The certificate the node presents to its peers and on its own HTTPS calls (default: --tls-cert). Its
    /// Common Name is the node id: without --id it gives the id, with --id they must agree.
    #[arg(long, value_name = "FILE", env = "TALLY_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,
    /// The private key of --peer-tls-cert (default: --tls-key).
    #[arg(long, value_name = "FILE", env = "TALLY_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,
    /// The cluster CA (PEM) for mutual TLS between peers: peers must present a certificate it signed, and the
    /// node trusts the peers, the leader it forwards writes to and the registry it signed (default: --tls-ca).
    /// Peer TLS is on when this (or --tls-ca) is given.
    #[arg(long, value_name = "FILE", env = "TALLY_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
}

impl NodeTlsArgs {
    /// The client port's and the peer port's files.
    fn paths(&self) -> (TlsPaths, TlsPaths) {
        let client = TlsPaths { cert: self.tls_cert.clone(), key: self.tls_key.clone(), ca: self.tls_ca.clone() };
        let peer =
            TlsPaths { cert: self.peer_tls_cert.clone(), key: self.peer_tls_key.clone(), ca: self.peer_tls_ca.clone() };
        (client, peer)
    }
}

/// Timeouts and connection caps of an HTTP port (`tally node`'s client port, `tally registry`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectionArgs {
    /// The most connections open at once (default 10000, and never more than the file descriptor limit less
    /// 256, kept for the log and peers); past it, new connections are closed at once.
    #[arg(long, value_name = "N", env = "TALLY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// The most connections open at once from one IP address (default: no such cap, since behind a load
    /// balancer or on loopback every client shares one address).
    #[arg(long, value_name = "N", env = "TALLY_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// How long a request head (or a TLS handshake) may take, e.g. 10s (the default); a client that trickles
    /// its headers is cut off then. The timer also runs while a kept-alive connection waits for its next
    /// request.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, env = "TALLY_HEADER_TIMEOUT")]
    pub header_timeout: Option<Duration>,
    /// How long a request body may take to arrive completely, e.g. 30s (the default); past it the answer is
    /// 408 and the connection is closed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, env = "TALLY_BODY_TIMEOUT")]
    pub body_timeout: Option<Duration>,
    /// How long a connection may stay silent with no request in flight before it is closed, e.g. 5s (the
    /// default; it cannot usefully exceed --header-timeout).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, env = "TALLY_IDLE_TIMEOUT")]
    pub idle_timeout: Option<Duration>,
}

impl ConnectionArgs {
    /// The limits these flags describe; unset flags keep the defaults.
    pub fn limits(&self) -> ConnectionLimits {
        let defaults = ConnectionLimits::default();
        ConnectionLimits {
            header_timeout: self.header_timeout.unwrap_or(defaults.header_timeout),
            body_timeout: self.body_timeout.unwrap_or(defaults.body_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(defaults.idle_timeout),
            max_connections: self.max_connections.or(defaults.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(defaults.max_connections_per_ip),
            drain_timeout: defaults.drain_timeout,
        }
    }
}

/// The election modes `--election` accepts.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Raft: randomized election timeouts, pre-vote, then a vote.
    Raft,
    /// The bully algorithm made safe: rank decides who runs, a majority vote who wins.
    Bully,
}

impl From<Election> for ElectionMode {
    fn from(election: Election) -> ElectionMode {
        match election {
            Election::Raft => ElectionMode::Raft,
            Election::Bully => ElectionMode::Bully,
        }
    }
}

impl NodeArgs {
    /// The server configuration these arguments describe; unset options keep the server's defaults.
    ///
    /// # Errors
    /// A malformed id or `--initial-cluster`, or a zero duration.
    pub fn to_config(&self) -> anyhow::Result<ServerConfig> {
        let given = self.id.as_deref().map(parse_node_id).transpose().context("--id")?;
        let (tls, peer_tls) = self.tls.paths();
        let named = tally_server::config::peer_certificate_id(&tls, &peer_tls)?;
        let given = reconcile_node_id(given, named)?;
        let id = tally_server::node_id(&self.data_dir, given)?;
        let mut config = ServerConfig::new(id, self.data_dir.clone());
        config.tls = tls;
        config.peer_tls = peer_tls;
        config.connection_limits = self.connections.limits();
        config.watch = self.watch.settings()?;
        config.connection_limits.validate().map_err(anyhow::Error::msg)?;
        config.listen_client = self.listen_client;
        config.listen_peer = self.listen_peer;
        config.advertise_client_url = self.advertise_client.clone();
        config.advertise_peer_url = self.advertise_peer.clone();
        config.cluster_token = self.cluster_token.clone();
        config.insecure_peer = self.insecure_peer;
        match &self.initial_cluster {
            Some(members) => config.initial_cluster = parse_initial_cluster(members).context("--initial-cluster")?,
            None => {
                anyhow::ensure!(
                    self.registry_address.is_some() || !self.join.is_empty() || self.bootstrap,
                    "tell the node how to find its cluster: --registry-address URL, --join URL (--bootstrap on the \
                     first node without a registry) or --initial-cluster"
                );
                let policy = PolicyConfig {
                    target_voters: self.voters,
                    promote_after_ms: self.promote_after.as_millis() as u64,
                    dead_after_ms: self.dead_node_timeout.as_millis() as u64,
                    healthy_within_ms: 0, // set below, once the tick interval is known
                };
                config.discovery = Some(DiscoveryConfig {
                    registry_address: self.registry_address.clone(),
                    join: self.join.clone(),
                    bootstrap: self.bootstrap,
                    policy,
                });
            }
        }
        let limits = &mut config.limits;
        limits.max_key_bytes = self.max_key_bytes.unwrap_or(limits.max_key_bytes);
        limits.max_value_bytes = self.max_value_bytes.unwrap_or(limits.max_value_bytes);
        limits.max_body_bytes = self.max_body_bytes.unwrap_or(limits.max_body_bytes);
        limits.max_txn_ops = self.max_txn_ops.unwrap_or(limits.max_txn_ops);
        if let Some(ms) = self.request_timeout_ms {
            config.request_timeout = positive_millis("--request-timeout-ms", ms)?;
        }
        if let Some(ms) = self.tick_ms {
            config.tick_interval = positive_millis("--tick-ms", ms)?;
        }
        if let Some(entries) = self.snapshot_interval_entries {
            anyhow::ensure!(entries > 0, "--snapshot-interval-entries must be at least 1");
            config.snapshot_interval_entries = entries;
        }
        config.snapshot_keep_entries = self.snapshot_keep_entries.unwrap_or(config.snapshot_keep_entries);
        config.quota_bytes = self.quota_bytes.unwrap_or(config.quota_bytes);
        if let Some(bytes) = self.segment_bytes {
            anyhow::ensure!(bytes >= 4096, "--segment-bytes must be at least 4096");
            config.segment_bytes = bytes;
        }
        config.seed = self.seed.or(config.seed);
        config.election = self.election.into();
        if let Some(discovery) = config.discovery.as_mut() {
            // Healthy: heard from within three election timeouts (an election timeout is 10 ticks).
            discovery.policy.healthy_within_ms = 30 * config.tick_interval.as_millis() as u64;
            discovery.policy.validate().map_err(anyhow::Error::msg).context("--voters / --dead-node-timeout")?;
        }
        Ok(config)
    }
}

/// Parses a duration: a number and a unit, `ms`, `s`, `m` or `h` (`1500ms`, `90s`, `5m`).
///
/// # Errors
/// Anything else, or zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("bad duration {text:?}: expected a number and a unit, e.g. 500ms, 90s, 5m");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => None,
    };
    match millis {
        Some(0) => Err(format!("the duration {text:?} must be positive")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Err(bad()),
    }
}

/// Raises the soft file descriptor limit to the hard one, so the connection cap derived from it is as high as
/// the system allows; a failure is logged, and the cap then follows the lower limit.
pub fn raise_fd_limit() {
    match tally_net::fd::raise_soft_limit() {
        Ok(limit) => tracing::debug!(limit, "file descriptor limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the file descriptor limit; connection caps follow it"),
    }
}

/// `ms` milliseconds, refusing zero.
fn positive_millis(flag: &str, ms: u64) -> anyhow::Result<Duration> {
    anyhow::ensure!(ms > 0, "{flag} must be at least 1");
    Ok(Duration::from_millis(ms))
}

/// Runs the node until Ctrl-C or SIGTERM, then stops it gracefully.
///
/// # Errors
/// A bad configuration, or the server failing to start or stopping on its own.
pub async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    raise_fd_limit();
    let config = args.to_config()?;
    let id = config.id;
    tally_server::run(config, shutdown_signal()).await.with_context(|| format!("node {id}"))?;
    tracing::info!(%id, "node stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A parser for the node arguments alone.
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        node: NodeArgs,
    }

    /// Parses the node arguments plus `extra`, with a data directory of their own (the id is kept there).
    fn parse(extra: &[&str]) -> (NodeArgs, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().to_path_buf();
        let mut argv = vec![
            "node",
            "--id",
            "n2",
            "--listen-client",
            "127.0.0.1:7002",
            "--listen-peer",
            "127.0.0.1:7102",
            "--data-dir",
            data_dir.to_str().expect("utf-8 temp path"),
            "--initial-cluster",
            "n1=http://127.0.0.1:7101,n2=http://127.0.0.1:7102",
        ];
        argv.extend_from_slice(extra);
        (Wrapper::try_parse_from(argv).expect("valid arguments").node, dir)
    }

    #[test]
    fn watch_flags_reach_the_server_configuration() {
        let (args, _dir) = parse(&["--watch-history-entries", "20", "--watch-progress-interval", "250ms"]);
        let config = args.to_config().expect("valid");
        assert_eq!(config.watch.history_entries_max, 20);
        assert_eq!(config.watch.progress_interval, Duration::from_millis(250));
        assert_eq!(config.watch.max_watchers, tally_server::WatchSettings::default().max_watchers);
        let (args, _dir) = parse(&["--max-watchers", "0"]);
        let error = args.to_config().expect_err("0 watchers is refused").to_string();
        assert!(error.contains("--max-watchers"), "{error}");
    }

    #[test]
    fn builds_the_server_configuration() {
        let (args, _dir) = parse(&[
            "--max-key-bytes",
            "100",
            "--max-txn-ops",
            "16",
            "--request-timeout-ms",
            "250",
            "--tick-ms",
            "20",
            "--snapshot-interval-entries",
            "50",
            "--snapshot-keep-entries",
            "7",
        ]);
        let config = args.to_config().expect("valid");
        assert_eq!(config.id.to_string(), "n2");
        assert_eq!(config.listen_client.port(), 7002);
        assert_eq!(config.listen_peer.port(), 7102);
        assert!(!config.data_dir.join("node-id").exists(), "the id is stored only once the log is open");
        assert_eq!(config.initial_cluster.len(), 2);
        assert_eq!(config.limits.max_key_bytes, 100);
        assert_eq!(config.limits.max_value_bytes, tally_server::Limits::default().max_value_bytes);
        assert_eq!(config.limits.max_txn_ops, 16);
        assert_eq!(config.request_timeout, Duration::from_millis(250));
        assert_eq!(config.tick_interval, Duration::from_millis(20));
        assert_eq!((config.snapshot_interval_entries, config.snapshot_keep_entries), (50, 7));
        assert_eq!((config.advertise_client_url, config.seed), (None, None));
    }

    #[test]
    fn refuses_bad_values_with_the_flag_named() {
        let (mut args, _dir) = parse(&[]);
        args.id = Some("x1".into());
        let error = format!("{:#}", args.to_config().expect_err("bad id"));
        assert!(error.starts_with("--id"), "{error}");
        let (args, _dir2) = parse(&["--tick-ms", "0"]);
        let error = format!("{:#}", args.to_config().expect_err("zero tick"));
        assert!(error.contains("--tick-ms"), "{error}");
        let (mut args, _dir3) = parse(&[]);
        args.initial_cluster = Some("n1".into());
        let error = format!("{:#}", args.to_config().expect_err("bad cluster"));
        assert!(error.starts_with("--initial-cluster"), "{error}");
    }

    #[test]
    fn the_peer_certificate_names_the_node() {
        let certs = tempfile::tempdir().expect("tempdir");
        let plan = tally_net::certs::InitPlan { nodes: vec!["n2".into()], ..Default::default() };
        tally_net::certs::init(certs.path(), &plan).expect("certs");
        let file = |name: &str| certs.path().join(name).display().to_string();
        let tls = ["--tls-cert", &file("n2.pem"), "--tls-key", &file("n2-key.pem"), "--peer-tls-ca", &file("ca.pem")];
        let (mut args, _dir) = parse(&tls);
        args.id = None;
        let config = args.to_config().expect("the certificate gives the id");
        assert_eq!(config.id.to_string(), "n2");
        assert_eq!(config.peer_tls.ca.as_deref(), Some(certs.path().join("ca.pem").as_path()));
        args.id = Some("n1".into());
        let error = format!("{:#}", args.to_config().expect_err("--id n1 with n2's certificate"));
        assert!(error.contains("--id n1") && error.contains("n2"), "{error}");
    }

    #[test]
    fn connection_limits_come_from_their_flags() {
        let (args, _dir) = parse(&["--max-connections", "500", "--header-timeout", "2s", "--idle-timeout", "1s"]);
        let limits = args.to_config().expect("valid").connection_limits;
        assert_eq!(limits.max_connections, Some(500));
        assert_eq!((limits.header_timeout, limits.idle_timeout), (Duration::from_secs(2), Duration::from_secs(1)));
        assert_eq!(limits.body_timeout, ConnectionLimits::default().body_timeout);
        let (args, _dir) = parse(&["--max-connections", "0"]);
        assert!(args.to_config().is_err(), "a zero cap");
    }

    #[test]
    fn durations_need_a_unit_and_a_positive_value() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        for bad in ["", "5", "m", "0s", "5 m", "-1s", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
