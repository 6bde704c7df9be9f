//! The server process: binds the ports, opens the log, and runs the node loop, the peer transport and the
//! client API until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use crate::config::ServerConfig;

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
}

impl Server {
    /// Binds the ports, opens (recovers) the data directory and starts serving.
    ///
    /// # Errors
    /// See [`ServerError`].
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let _ = config;
        todo!("in progress")
    }

    /// The address the client API listens on.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The address the peer transport listens on.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Stops serving: the client API stops accepting, in-flight requests finish, the node loop stops and the
    /// log is closed.
    pub async fn shutdown(self) {}
}

/// Runs a server until `shutdown` resolves (e.g. Ctrl-C or SIGTERM), then stops it gracefully.
///
/// # Errors
/// If it cannot start, or the node stops after a storage failure.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let server = Server::start(config).await?;
    shutdown.await;
    server.shutdown().await;
    Ok(())
}
