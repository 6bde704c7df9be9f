//! `tally registry`: the registry service through which nodes find each other, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use tally_registry::{RegistryConfig, ServiceConfig};

use crate::signal::shutdown_signal;

/// `tally registry --listen ADDR [--ttl-ms N] [--cluster-token TOKEN]`.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Where the registry's HTTP API listens.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// A node's entry expires this many milliseconds after its last heartbeat.
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    pub ttl_ms: u64,
    /// The most nodes registered at once.
    #[arg(long, value_name = "N", default_value_t = 1_024)]
    pub max_nodes: usize,
    /// A shared secret: every call but /livez must carry `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN", env = "TALLY_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
}

/// Runs the registry until a shutdown signal.
///
/// # Errors
/// The address cannot be bound, or the configuration is invalid.
pub async fn run(args: RegistryArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let registry = RegistryConfig { ttl_ms: args.ttl_ms, max_nodes: args.max_nodes, cluster_id_seed: seed };
    let config = ServiceConfig { registry, cluster_token: args.cluster_token, ..ServiceConfig::default() };
    tracing::info!(listen = %args.listen, ttl_ms = args.ttl_ms, "registry started");
    tally_registry::serve(listener, config, shutdown_signal()).await.context("registry")?;
    tracing::info!("registry stopped");
    Ok(ExitCode::SUCCESS)
}
