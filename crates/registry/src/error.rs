//! The errors at the registry's boundary: bad input, a full table and a warming-up registry, which a caller can
//! act on.

/// A call to the registry that was refused. Nothing was changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A node id is not 1-64 characters of `[A-Za-z0-9_-]`.
    #[error("invalid node id {id:?}: {reason}")]
    InvalidNodeId {
        /// The id as given (truncated if very long).
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A cluster id is not 1-64 characters of `[A-Za-z0-9_-]`.
    #[error("invalid cluster id {id:?}: {reason}")]
    InvalidClusterId {
        /// The id as given (truncated if very long).
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A URL is not of the form `http://host:port` (or `https://`).
    #[error("invalid {field} {url:?}: {reason} (expected http://host:port, e.g. http://10.0.0.1:7001, or https://)")]
    InvalidUrl {
        /// Which field (`client_url`, `peer_url`).
        field: &'static str,
        /// The URL as given (truncated if very long).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The table already holds `max_nodes` live nodes and refuses new ones (heartbeats still work).
    #[error("the registry is full: it holds {max_nodes} live nodes (its max_nodes); new nodes are refused")]
    Full {
        /// The configured maximum.
        max_nodes: usize,
    },
    /// A bootstrap claim arrived while no claim is held and the registry started less than one TTL ago. The
    /// members of an existing cluster may not have re-registered yet (the registry keeps no state across a
    /// restart), so no one may win a claim yet: the claimant must retry after `retry_after_ms`.
    #[error(
        "the registry started less than one TTL ago; members of an existing cluster re-register within that time; \
         retry in {retry_after_ms} ms"
    )]
    WarmingUp {
        /// How long until the warm-up ends; at least 1.
        retry_after_ms: u64,
    },
    /// The configuration is unusable.
    #[error("invalid registry configuration: {0}")]
    InvalidConfig(String),
    /// The listener failed while serving.
    #[error("registry server I/O error: {0}")]
    Io(#[from] std::io::Error),
}
