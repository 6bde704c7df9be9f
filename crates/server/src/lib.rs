//! `tally-server`: the process around the node loop.
//!
//! ```text
//!  client ──HTTP(S)──▶ tally_net::serve (TLS, timeouts, connection caps) ──▶ http (axum): decode, check limits
//!                      ──▶ follower? forward the write to the leader's client URL (cluster CA, no proxy)
//!                      │ Event + oneshot
//!                      ▼
//!  driver thread: batch events ──▶ Node::handle (one fsync per batch) ──▶ completions ──▶ oneshots
//!                      ▲                         │ messages
//!    peer inbox ───────┘                         ▼
//!  peer::PeerTransport: per peer a control lane (votes, appends) and a bulk lane (snapshot chunks), TCP
//!  wire: Raft Message ──encode──▶ payload ──frame::encode──▶ [magic, version, length, crc32, payload]
//!        TCP bytes ──FrameDecoder──▶ payload (bounded, checked) ──wire::decode_frame──▶ Message | Hello
//! ```
//!
//! TLS: [`ServerConfig`] carries the PEM paths (`tls` for the client port, `peer_tls` for the peer port, each
//! peer file defaulting to the client port's) and builds the rustls configs at start: the client port's
//! server config, the peer port's mutual-TLS pair ([`Server::peer_tls`], for the peer transport), and the
//! client config of the node's own HTTPS calls (forwarded writes, join calls, the registry).
//!
//! A hello opens every peer connection and carries the sender's client URL, which is how a follower knows
//! where to forward writes, its peer URL, and the cluster token, without which a node configured with one
//! closes the connection. Every decoder is total: any byte string gives a message or a clear error, never a
//! panic, and nothing is allocated from an unverified length beyond the configured maximum frame size.
#![deny(missing_docs)]

mod auth;
pub mod config;
pub mod discovery;
mod driver;
pub mod frame;
mod http;
pub mod peer;
mod server;
pub mod wire;

/// The HTTP key and query parsers, for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub use http::params::fuzzing as http_params_fuzzing;
/// The transaction body parser, for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub use http::txn::json::fuzzing as txn_json_fuzzing;

pub use config::{
    ConnectionLimits, InitialMember, Limits, ServerConfig, TlsPaths, WatchSettings, parse_initial_cluster,
    parse_node_id, reconcile_node_id,
};
pub use discovery::{DiscoveryConfig, node_id};
pub use server::{Server, ServerError, run};
pub use tally_node::PolicyConfig;
pub use tally_raft::ElectionMode;
