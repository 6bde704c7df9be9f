//! `tally node`: one node of a cluster, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tally_server::{ServerConfig, parse_initial_cluster, parse_node_id};

use crate::signal::shutdown_signal;

/// `tally node --id n1 --listen-client ADDR --listen-peer ADDR --data-dir DIR --initial-cluster ...`.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// This node's id: n1, n2, ... (or 1, 2, ...).
    #[arg(long)]
    pub id: String,
    /// Where the client HTTP API listens, e.g. 127.0.0.1:7001 (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    pub listen_client: SocketAddr,
    /// Where the peer transport listens, e.g. 127.0.0.1:7101.
    #[arg(long, value_name = "ADDR")]
    pub listen_peer: SocketAddr,
    /// The directory of the write-ahead log and snapshots; created if missing.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The members of a new cluster, this node included: n1=PEER_URL,n2=PEER_URL,... Used only when the
    /// data directory is empty; afterwards the membership comes from the log.
    #[arg(long, value_name = "ID=PEER_URL,...")]
    pub initial_cluster: String,
    /// The client URL other nodes and clients are told (default: http://LISTEN_CLIENT).
    #[arg(long, value_name = "URL")]
    pub advertise_client: Option<String>,
    /// The longest key, in bytes (default 4096).
    #[arg(long, value_name = "N")]
    pub max_key_bytes: Option<usize>,
    /// The longest value, in bytes (default 1 MiB).
    #[arg(long, value_name = "N")]
    pub max_value_bytes: Option<usize>,
    /// The largest request body, in bytes (default 1.5 MiB).
    #[arg(long, value_name = "N")]
    pub max_body_bytes: Option<usize>,
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
    /// Seed of the election timer (default: drawn from the OS); for reproducing a run.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

impl NodeArgs {
    /// The server configuration these arguments describe; unset options keep the server's defaults.
    ///
    /// # Errors
    /// A malformed id or `--initial-cluster`, or a zero duration.
    pub fn to_config(&self) -> anyhow::Result<ServerConfig> {
        let id = parse_node_id(&self.id).context("--id")?;
        let mut config = ServerConfig::new(id, self.data_dir.clone());
        config.listen_client = self.listen_client;
        config.listen_peer = self.listen_peer;
        config.advertise_client_url = self.advertise_client.clone();
        config.initial_cluster = parse_initial_cluster(&self.initial_cluster).context("--initial-cluster")?;
        let limits = &mut config.limits;
        limits.max_key_bytes = self.max_key_bytes.unwrap_or(limits.max_key_bytes);
        limits.max_value_bytes = self.max_value_bytes.unwrap_or(limits.max_value_bytes);
        limits.max_body_bytes = self.max_body_bytes.unwrap_or(limits.max_body_bytes);
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
        config.seed = self.seed.or(config.seed);
        Ok(config)
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

    fn parse(extra: &[&str]) -> NodeArgs {
        let mut argv = vec![
            "node",
            "--id",
            "n2",
            "--listen-client",
            "127.0.0.1:7002",
            "--listen-peer",
            "127.0.0.1:7102",
            "--data-dir",
            "/tmp/n2",
            "--initial-cluster",
            "n1=http://127.0.0.1:7101,n2=http://127.0.0.1:7102",
        ];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).expect("valid arguments").node
    }

    #[test]
    fn builds_the_server_configuration() {
        let config = parse(&[
            "--max-key-bytes",
            "100",
            "--request-timeout-ms",
            "250",
            "--tick-ms",
            "20",
            "--snapshot-interval-entries",
            "50",
            "--snapshot-keep-entries",
            "7",
        ])
        .to_config()
        .expect("valid");
        assert_eq!(config.id.to_string(), "n2");
        assert_eq!(config.listen_client.port(), 7002);
        assert_eq!(config.listen_peer.port(), 7102);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/n2"));
        assert_eq!(config.initial_cluster.len(), 2);
        assert_eq!(config.limits.max_key_bytes, 100);
        assert_eq!(config.limits.max_value_bytes, tally_server::Limits::default().max_value_bytes);
        assert_eq!(config.request_timeout, Duration::from_millis(250));
        assert_eq!(config.tick_interval, Duration::from_millis(20));
        assert_eq!((config.snapshot_interval_entries, config.snapshot_keep_entries), (50, 7));
        assert_eq!((config.advertise_client_url, config.seed), (None, None));
    }

    #[test]
    fn refuses_bad_values_with_the_flag_named() {
        let mut args = parse(&[]);
        args.id = "x1".into();
        let error = format!("{:#}", args.to_config().expect_err("bad id"));
        assert!(error.starts_with("--id"), "{error}");
        let error = format!("{:#}", parse(&["--tick-ms", "0"]).to_config().expect_err("zero tick"));
        assert!(error.contains("--tick-ms"), "{error}");
        let mut args = parse(&[]);
        args.initial_cluster = "n1".into();
        let error = format!("{:#}", args.to_config().expect_err("bad cluster"));
        assert!(error.starts_with("--initial-cluster"), "{error}");
    }
}
