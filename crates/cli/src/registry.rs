//! `tally registry`: the registry service through which nodes find each other, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tally_net::tls::{CertifiedKeyFiles, ServerTlsFiles};
use tally_registry::{RegistryConfig, ServiceConfig};

use crate::node::ConnectionArgs;

use crate::signal::shutdown_signal;

/// `tally registry --listen ADDR [--ttl-ms N] [--cluster-token TOKEN] [--tls-cert FILE --tls-key FILE [--tls-ca FILE]]`.
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
    /// The registry's certificate (PEM): it then speaks HTTPS. Needs --tls-key.
    #[arg(long, value_name = "FILE", env = "TALLY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", env = "TALLY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A CA certificate (PEM): every caller must present a certificate it signed (nodes present their node
    /// certificate). Needs --tls-cert.
    #[arg(long, value_name = "FILE", env = "TALLY_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Timeouts and connection caps.
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

impl RegistryArgs {
    /// The TLS config of the port, if --tls-cert is given.
    ///
    /// # Errors
    /// A file that cannot be used; the message names it.
    fn tls(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        let (Some(certificate), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        let identity = CertifiedKeyFiles { certificate: certificate.clone(), key: key.clone() };
        let files = ServerTlsFiles { identity, client_ca: self.tls_ca.clone() };
        Ok(Some(tally_net::tls::server_config(&files)?))
    }
}

/// Runs the registry until a shutdown signal.
///
/// # Errors
/// The address cannot be bound, or the configuration is invalid.
pub async fn run(args: RegistryArgs) -> anyhow::Result<ExitCode> {
    crate::node::raise_fd_limit();
    let tls = args.tls()?;
    let limits = args.connections.limits();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let registry = RegistryConfig { ttl_ms: args.ttl_ms, max_nodes: args.max_nodes, cluster_id_seed: seed };
    let config = ServiceConfig { registry, cluster_token: args.cluster_token, tls, limits };
    tracing::info!(listen = %args.listen, ttl_ms = args.ttl_ms, "registry started");
    tally_registry::serve(listener, config, shutdown_signal()).await.context("registry")?;
    tracing::info!("registry stopped");
    Ok(ExitCode::SUCCESS)
}
