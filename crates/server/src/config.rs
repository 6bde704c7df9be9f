//! What a server process is told at start: who it is, where it listens, where its data lives, who its peers
//! are, and its limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tally_net::tls::{CertifiedKeyFiles, ClientTlsFiles, ServerTlsFiles, TlsPair};
use tally_raft::{ElectionMode, NodeId};

pub use tally_net::serve::Limits as ConnectionLimits;
pub use watch::WatchSettings;

mod watch;

/// Request size limits of the client API; a key, value or body over its limit answers `413` with a message
/// naming the limit, a transaction with too many compares or ops `400`.
///
/// Invariant (checked at start): `0 < max_key_bytes`, `max_value_bytes <= max_body_bytes`, a key and a value
/// fit one log entry, and so does a whole body (a transaction's encoding is never longer than its JSON, plus a
/// few bytes), and `1 <= max_txn_ops <= tally_kv::TXN_OPS_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest key (and prefix), in bytes.
    pub max_key_bytes: usize,
    /// The longest value, in bytes.
    pub max_value_bytes: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The most compares, and the most ops per branch, in one transaction (`--max-txn-ops`): each op is work
    /// done at one index on every node, while the node loop waits.
    pub max_txn_ops: usize,
}

impl Default for Limits {
    /// Key 4 KiB, value 1 MiB, body 1.5 MiB, 128 compares and 128 ops per branch.
    fn default() -> Limits {
        Limits { max_key_bytes: 4 * 1024, max_value_bytes: 1024 * 1024, max_body_bytes: 1536 * 1024, max_txn_ops: 128 }
    }
}

/// One member of a static cluster: its id and the address of its peer port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    /// The member's id.
    pub id: NodeId,
    /// Its peer URL, `http://host:port` or `host:port` (the scheme is informative: peers speak Tally's
    /// binary protocol).
    pub peer_url: String,
}

/// TLS files of one side of a node (its client port, or its peer port), as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsPaths {
    /// The node's certificate (`--tls-cert`, `--peer-tls-cert`), PEM, leaf first.
    pub cert: Option<PathBuf>,
    /// Its private key (`--tls-key`, `--peer-tls-key`).
    pub key: Option<PathBuf>,
    /// The CA (`--tls-ca`, `--peer-tls-ca`): on the client port, clients must present a certificate it signed;
    /// on the peer port, peers must, and the node trusts the peers (and the leader it forwards to) it signed.
    pub ca: Option<PathBuf>,
}

/// The configuration of one server process. Its `Debug` output hides the cluster token.
#[derive(Clone)]
pub struct ServerConfig {
    /// This node's id.
    pub id: NodeId,
    /// Where the client HTTP API listens (port 0: any free port).
    pub listen_client: SocketAddr,
    /// Where the peer transport listens (port 0: any free port).
    pub listen_peer: SocketAddr,
    /// The client URL other nodes forward writes to and show in `/v1/cluster`; default
    /// `http://{listen_client}` with the port actually bound.
    pub advertise_client_url: Option<String>,
    /// The peer URL this node tells its peers in the hello that opens each connection; default
    /// `http://{listen_peer}` with the port actually bound.
    pub advertise_peer_url: Option<String>,
    /// The shared cluster secret: peers and joiners must present it (the peer port closes any connection whose
    /// hello does not carry it), and this node presents it to its peers. `None`: anyone who can reach the peer
    /// port is served. At most [`crate::wire::TOKEN_MAX_BYTES`] bytes. It travels in clear text: it keeps out
    /// strangers, not eavesdroppers.
    pub cluster_token: Option<String>,
    /// Serve a peer port that faces a network (not loopback) with neither mutual TLS nor a cluster token, where
    /// anyone who reaches it could claim to be a member. Off by default: such a node refuses to start.
    pub insecure_peer: bool,
    /// The directory of the write-ahead log and snapshots; created if missing.
    pub data_dir: PathBuf,
    /// The members of a new cluster, this node included. Used only when the data dir is empty: afterwards
    /// the membership comes from the log.
    pub initial_cluster: Vec<InitialMember>,
    /// Request size limits.
    pub limits: Limits,
    /// How long a client request may wait for its answer before `504`.
    pub request_timeout: Duration,
    /// Milliseconds per Raft tick (the election timeout is 10 ticks, heartbeats every 2).
    pub tick_interval: Duration,
    /// Seed of the core's election timer; default: drawn from the OS.
    pub seed: Option<u64>,
    /// How a node that lost its leader finds the next one: Raft (the default) or the bully algorithm. Both
    /// elect by majority vote, so a cluster may mix them safely; give every node the same mode all the same.
    pub election: ElectionMode,
    /// Take a snapshot (and compact the log) every this many applied entries.
    pub snapshot_interval_entries: u64,
    /// Log entries kept behind a snapshot, so a follower a little behind catches up from the log.
    pub snapshot_keep_entries: u64,
    /// Past this many bytes in the data directory (log segments and snapshots) the node raises the `quota`
    /// alarm and, while it leads, refuses writes other than deletes (`507 no_space`). 0: no quota. Default
    /// 8 GiB.
    pub quota_bytes: u64,
    /// The size of one write-ahead log segment, preallocated when created (default 64 MiB). Small values
    /// make tests fill a disk quickly.
    pub segment_bytes: u64,
    /// Find the cluster through a registry or a member instead of `initial_cluster` (which must then be
    /// empty), and let the leader manage membership.
    pub discovery: Option<crate::discovery::DiscoveryConfig>,
    /// TLS of the client port: with a certificate and key, the port speaks HTTPS (and the default advertised
    /// client URL is `https://`); with a CA as well, every client must present a certificate it signed.
    pub tls: TlsPaths,
    /// TLS of the peer port (mutual TLS): each file defaults to the client port's (see
    /// [`ServerConfig::peer_tls`]).
    pub peer_tls: TlsPaths,
    /// Timeouts and connection caps of the client port.
    pub connection_limits: ConnectionLimits,
    /// The watch history window and the limits of watchers.
    pub watch: WatchSettings,
}

/// The default storage quota: 8 GiB (`--quota-bytes`).
pub const QUOTA_BYTES_DEFAULT: u64 = 8 << 30;

impl ServerConfig {
    /// A configuration with the defaults: any free ports on loopback, default limits, 5 s request timeout,
    /// 100 ms ticks, a snapshot every 100,000 entries keeping 10,000 (as etcd: snapshots are whole-state copies,
    /// so taking one every few seconds under load would cost more than the log they save).
    pub fn new(id: NodeId, data_dir: PathBuf) -> ServerConfig {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        ServerConfig {
            id,
            listen_client: loopback,
            listen_peer: loopback,
            advertise_client_url: None,
            advertise_peer_url: None,
            cluster_token: None,
            insecure_peer: false,
            data_dir,
            initial_cluster: Vec::new(),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(5),
            tick_interval: Duration::from_millis(100),
            seed: None,
            election: ElectionMode::Raft,
            snapshot_interval_entries: 100_000,
            snapshot_keep_entries: 10_000,
            quota_bytes: QUOTA_BYTES_DEFAULT,
            segment_bytes: tally_wal::WalOptions::default().segment_bytes_max,
            discovery: None,
            tls: TlsPaths::default(),
            peer_tls: TlsPaths::default(),
            connection_limits: ConnectionLimits::default(),
            watch: WatchSettings::default(),
        }
    }

    /// The rustls config of the client port: `None` without `tls.cert`/`tls.key` (plain HTTP).
    ///
    /// # Errors
    /// A certificate without its key (or the reverse), a CA without a certificate, or a file that cannot be
    /// used (the message names it).
    pub fn client_port_tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ParseError> {
        let TlsPaths { cert, key, ca } = &self.tls;
        let identity = match (cert, key) {
            (Some(certificate), Some(key)) => CertifiedKeyFiles { certificate: certificate.clone(), key: key.clone() },
            (None, None) if ca.is_some() => {
                return Err(ParseError("--tls-ca needs --tls-cert and --tls-key (the client port's own)".into()));
            }
            (None, None) => return Ok(None),
            _ => return Err(ParseError("--tls-cert and --tls-key go together".to_string())),
        };
        let files = ServerTlsFiles { identity, client_ca: ca.clone() };
        tally_net::tls::server_config(&files).map(Some).map_err(|e| ParseError(format!("client port TLS: {e}")))
    }

    /// The peer port's files, each `--peer-tls-*` defaulting to its `--tls-*`: `None` when no CA resolves
    /// (peer TLS off).
    ///
    /// # Errors
    /// A CA without a certificate and key to present, or a certificate without its key.
    pub fn peer_tls_files(&self) -> Result<Option<(CertifiedKeyFiles, PathBuf)>, ParseError> {
        peer_tls_files(&self.tls, &self.peer_tls)
    }

    /// The mutual-TLS configs of the peer port: a server that requires a certificate signed by the peer CA,
    /// and a client that trusts it and presents the node's certificate. `None` when peer TLS is off.
    ///
    /// # Errors
    /// As [`ServerConfig::peer_tls_files`], or a file that cannot be used.
    pub fn peer_tls(&self) -> Result<Option<TlsPair>, ParseError> {
        let Some((identity, ca)) = self.peer_tls_files()? else { return Ok(None) };
        tally_net::tls::mutual_pair(&identity, &ca).map(Some).map_err(|e| ParseError(format!("peer TLS: {e}")))
    }

    /// The TLS config of the node's own HTTPS calls (forwarded writes, join calls, the registry): trusts the
    /// peer CA (`--peer-tls-ca`, else `--tls-ca`) and presents the peer certificate (else the client port's),
    /// when given. Without a CA it trusts no one: `https://` calls then fail their handshake.
    ///
    /// # Errors
    /// A file that cannot be used.
    pub fn outbound_tls(&self) -> Result<rustls::ClientConfig, ParseError> {
        let pick = |peer: &Option<PathBuf>, client: &Option<PathBuf>| peer.clone().or_else(|| client.clone());
        let identity = match (pick(&self.peer_tls.cert, &self.tls.cert), pick(&self.peer_tls.key, &self.tls.key)) {
            (Some(certificate), Some(key)) => Some(CertifiedKeyFiles { certificate, key }),
            _ => None,
        };
        let files = ClientTlsFiles { ca: pick(&self.peer_tls.ca, &self.tls.ca), identity };
        tally_net::tls::client_config(&files).map_err(|e| ParseError(format!("outbound TLS: {e}")))
    }

    /// The node id the peer certificate names (its Common Name), when peer TLS is on: peers bind a
    /// connection to that id, so it must be this node's.
    ///
    /// # Errors
    /// As [`ServerConfig::peer_tls_files`]; a certificate that cannot be read or whose Common Name is not a
    /// node id.
    pub fn peer_certificate_id(&self) -> Result<Option<NodeId>, ParseError> {
        peer_certificate_id(&self.tls, &self.peer_tls)
    }
}

/// The peer port's files from the client port's (`tls`) and the peer port's (`peer_tls`) flags: each peer
/// file defaults to the client port's; `None` when no CA resolves (peer TLS off).
///
/// # Errors
/// A CA without a certificate and key to present, or a peer certificate without a CA.
pub fn peer_tls_files(tls: &TlsPaths, peer_tls: &TlsPaths) -> Result<Option<(CertifiedKeyFiles, PathBuf)>, ParseError> {
    let pick = |peer: &Option<PathBuf>, client: &Option<PathBuf>| peer.clone().or_else(|| client.clone());
    let cert = pick(&peer_tls.cert, &tls.cert);
    let key = pick(&peer_tls.key, &tls.key);
    let ca = pick(&peer_tls.ca, &tls.ca);
    match (cert, key, ca) {
        (Some(certificate), Some(key), Some(ca)) => Ok(Some((CertifiedKeyFiles { certificate, key }, ca))),
        (None, None, None) => Ok(None),
        (_, _, None) if peer_tls.cert.is_some() || peer_tls.key.is_some() => Err(ParseError(
            "peer TLS is mutual: --peer-tls-cert and --peer-tls-key need --peer-tls-ca (or --tls-ca)".into(),
        )),
        (_, _, None) => Ok(None),
        _ => Err(ParseError(
            "peer TLS needs a certificate and key: --peer-tls-cert and --peer-tls-key (or --tls-cert and --tls-key)"
                .into(),
        )),
    }
}

/// The node id the peer certificate names (its Common Name), when peer TLS is on (see [`peer_tls_files`]).
///
/// # Errors
/// As [`peer_tls_files`]; a certificate that cannot be read or whose Common Name is not a node id.
pub fn peer_certificate_id(tls: &TlsPaths, peer_tls: &TlsPaths) -> Result<Option<NodeId>, ParseError> {
    let Some((identity, _)) = peer_tls_files(tls, peer_tls)? else { return Ok(None) };
    let name = tally_net::tls::certificate_common_name(&identity.certificate)
        .map_err(|e| ParseError(format!("peer TLS: {e}")))?;
    parse_node_id(&name).map(Some).map_err(|e| {
        ParseError(format!(
            "the peer certificate {} names {name:?}, which is not a node id ({e})",
            identity.certificate.display()
        ))
    })
}

/// The node id: `given` (`--id`), or the one the peer certificate names; they must agree when both are known.
///
/// # Errors
/// Both known and different, with both named.
pub fn reconcile_node_id(given: Option<NodeId>, certificate: Option<NodeId>) -> Result<Option<NodeId>, ParseError> {
    match (given, certificate) {
        (Some(given), Some(named)) if given != named => Err(ParseError(format!(
            "--id {given} differs from the node id {named} that the peer certificate names (its Common Name): use \
             the certificate made for {given}, or drop --id"
        ))),
        (given, named) => Ok(given.or(named)),
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let ServerConfig {
            id,
            listen_client,
            listen_peer,
            advertise_client_url,
            advertise_peer_url,
            cluster_token,
            insecure_peer,
            data_dir,
            initial_cluster,
            limits,
            request_timeout,
            tick_interval,
            seed,
            election,
            snapshot_interval_entries,
            snapshot_keep_entries,
            quota_bytes,
            segment_bytes,
            discovery,
            tls,
            peer_tls,
            connection_limits,
            watch,
        } = self;
        f.debug_struct("ServerConfig")
            .field("id", id)
            .field("listen_client", listen_client)
            .field("listen_peer", listen_peer)
            .field("advertise_client_url", advertise_client_url)
            .field("advertise_peer_url", advertise_peer_url)
            .field("cluster_token", &cluster_token.as_ref().map(|_| "<redacted>"))
            .field("insecure_peer", insecure_peer)
            .field("data_dir", data_dir)
            .field("initial_cluster", initial_cluster)
            .field("limits", limits)
            .field("request_timeout", request_timeout)
            .field("tick_interval", tick_interval)
            .field("seed", seed)
            .field("election", election)
            .field("snapshot_interval_entries", snapshot_interval_entries)
            .field("discovery", discovery)
            .field("snapshot_keep_entries", snapshot_keep_entries)
            .field("quota_bytes", quota_bytes)
            .field("segment_bytes", segment_bytes)
            .field("tls", tls)
            .field("peer_tls", peer_tls)
            .field("connection_limits", connection_limits)
            .field("watch", watch)
            .finish()
    }
}

/// A malformed `--initial-cluster`, node id or peer URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// Parses a node id: `n3` or `3` (a positive integer in ASCII digits).
///
/// # Errors
/// Anything else, `n+3` included (`u64::from_str` alone accepts a sign).
pub fn parse_node_id(text: &str) -> Result<NodeId, ParseError> {
    let digits = text.strip_prefix('n').unwrap_or(text);
    match u64::from_str(digits) {
        Ok(id) if id > 0 && digits.bytes().all(|byte| byte.is_ascii_digit()) => Ok(NodeId(id)),
        _ => Err(ParseError(format!("bad node id {text:?}: expected n1, n2, ... (or 1, 2, ...)"))),
    }
}

/// Parses `n1=http://10.0.0.1:7101,n2=http://10.0.0.2:7101,...`: unique ids, one peer URL each.
///
/// # Errors
/// A malformed entry or a repeated id, with a message saying which.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<InitialMember>, ParseError> {
    let mut members: Vec<InitialMember> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, url)) = entry.split_once('=') else {
            return Err(ParseError(format!("bad --initial-cluster entry {entry:?}: expected ID=PEER_URL")));
        };
        let id = parse_node_id(id.trim())?;
        if members.iter().any(|m| m.id == id) {
            return Err(ParseError(format!("--initial-cluster names {id} twice")));
        }
        let url = url.trim();
        peer_host_port(url)?;
        members.push(InitialMember { id, peer_url: url.to_string() });
    }
    if members.is_empty() {
        return Err(ParseError("--initial-cluster is empty: expected ID=PEER_URL,...".to_string()));
    }
    Ok(members)
}

/// The `host:port` of a peer URL (`http://host:port`, `https://host:port`, `tcp://host:port` or `host:port`;
/// the scheme is informative).
///
/// # Errors
/// A URL with a path, no port, or a bad port.
pub fn peer_host_port(url: &str) -> Result<&str, ParseError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let bad = || ParseError(format!("bad peer URL {url:?}: expected http://HOST:PORT"));
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || rest.contains('/') || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_cluster() {
        let members = parse_initial_cluster("n1=http://127.0.0.1:7101, 2=127.0.0.1:7102").expect("valid");
        assert_eq!(members[0], InitialMember { id: NodeId(1), peer_url: "http://127.0.0.1:7101".into() });
        assert_eq!(members[1].id, NodeId(2));
        assert_eq!(peer_host_port(&members[1].peer_url), Ok("127.0.0.1:7102"));
    }

    #[test]
    fn debug_output_hides_the_cluster_token() {
        let mut config = ServerConfig::new(NodeId(1), PathBuf::from("data"));
        config.cluster_token = Some("hunter2".to_owned());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("cluster_token: Some(\"<redacted>\")"), "{shown}");
    }

    /// A certificate directory with a CA and nodes n1 and n2.
    fn certificates() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = tally_net::certs::InitPlan { nodes: vec!["n1".into(), "n2".into()], ..Default::default() };
        tally_net::certs::init(dir.path(), &plan).expect("certs");
        dir
    }

    #[test]
    fn peer_tls_defaults_to_the_client_side_files() {
        let dir = certificates();
        let d = dir.path();
        let mut config = ServerConfig::new(NodeId(1), PathBuf::from("data"));
        assert_eq!(config.peer_tls_files(), Ok(None), "no TLS at all");
        assert!(config.client_port_tls().expect("plain").is_none());

        // Client port TLS without a CA: HTTPS, no client certificates, and no peer TLS.
        config.tls = TlsPaths { cert: Some(d.join("n1.pem")), key: Some(d.join("n1-key.pem")), ca: None };
        assert!(config.client_port_tls().expect("HTTPS").is_some());
        assert_eq!(config.peer_tls_files(), Ok(None));

        // A peer CA turns peer TLS on with the client port's certificate.
        config.peer_tls.ca = Some(d.join("ca.pem"));
        let (identity, ca) = config.peer_tls_files().expect("valid").expect("on");
        assert_eq!((identity.certificate, ca), (d.join("n1.pem"), d.join("ca.pem")));
        assert!(config.peer_tls().expect("builds").is_some());
        assert_eq!(config.peer_certificate_id(), Ok(Some(NodeId(1))));
        config.outbound_tls().expect("outbound");

        // Half a pair, or a CA with nothing to present, is refused with the flags named.
        let mut half = ServerConfig::new(NodeId(1), PathBuf::from("data"));
        half.tls.cert = Some(d.join("n1.pem"));
        assert!(half.client_port_tls().expect_err("no key").to_string().contains("--tls-key"));
        let mut ca_only = ServerConfig::new(NodeId(1), PathBuf::from("data"));
        ca_only.tls.ca = Some(d.join("ca.pem"));
        assert!(ca_only.client_port_tls().is_err());
        assert!(ca_only.peer_tls_files().is_err());
        let mut peer_cert_only = ServerConfig::new(NodeId(1), PathBuf::from("data"));
        peer_cert_only.peer_tls = TlsPaths { cert: Some(d.join("n1.pem")), key: Some(d.join("n1-key.pem")), ca: None };
        let error = peer_cert_only.peer_tls_files().expect_err("no CA");
        assert!(error.to_string().contains("--peer-tls-ca"), "{error}");
    }

    #[test]
    fn the_node_id_and_the_certificate_must_agree() {
        assert_eq!(reconcile_node_id(None, Some(NodeId(2))), Ok(Some(NodeId(2))));
        assert_eq!(reconcile_node_id(Some(NodeId(2)), None), Ok(Some(NodeId(2))));
        assert_eq!(reconcile_node_id(Some(NodeId(2)), Some(NodeId(2))), Ok(Some(NodeId(2))));
        let error = reconcile_node_id(Some(NodeId(1)), Some(NodeId(2))).expect_err("they differ");
        assert!(error.to_string().contains("--id n1") && error.to_string().contains("n2"), "{error}");
    }

    #[test]
    fn refuses_bad_clusters() {
        for bad in [
            "",
            "n1",
            "n0=127.0.0.1:1",
            "x=127.0.0.1:1",
            "n1=127.0.0.1",
            "n1=h:99999",
            "n1=h:1,n1=h:2",
            "n1=http://h:1/x",
        ] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn node_ids_are_ascii_digits_only() {
        assert_eq!(parse_node_id("n3"), Ok(NodeId(3)));
        assert_eq!(parse_node_id("3"), Ok(NodeId(3)));
        for bad in ["n+3", "+3", "n-3", "n 3", " 3", "n0", "0", "n", "", "nn3", "n3x", "n18446744073709551616"] {
            assert!(parse_node_id(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
