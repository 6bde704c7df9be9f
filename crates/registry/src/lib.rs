//! `tally-registry`: where nodes find each other, and who may start the cluster.
//!
//! ```text
//!  node ──PUT /v1/nodes/{id} (heartbeat)──▶ http: auth, byte limit, decode, validate
//!  node ──POST /v1/bootstrap──────────────▶      │ lock, read the monotonic clock
//!                                                ▼
//!                          Registry (pure table: entries with a TTL, one bootstrap claim)
//! ```
//!
//! [`Registry`] is the whole logic: a deterministic table with no clock, no I/O and no randomness (time and
//! a seed are passed in). [`http`] is a thin axum shell around it. State lives in memory only: nodes
//! re-register on every heartbeat, so a restarted registry is full again within one TTL, and members that say
//! which cluster they belong to restore the bootstrap claim (it is *adopted*). Until then, for one TTL after
//! start, the registry refuses claims (*warm-up*), so a new node cannot start a second cluster beside the one
//! the registry forgot; the rule is in the `registry` module's doc ("The bootstrap rule"). The registry is
//! needed to join a cluster, not to run one. This crate does not own the node-side join flow or the CLI.
#![deny(missing_docs)]

mod error;
pub mod http;
mod registry;
mod validate;

pub use error::Error;
pub use http::{BODY_BYTES_MAX, RegistryState, ServiceConfig, router, serve};
pub use registry::{Claim, NodeEntry, Registry, RegistryConfig};
pub use validate::{CLUSTER_ID_LEN_MAX, ClusterId, NODE_ID_LEN_MAX, NodeId, URL_LEN_MAX, validate_url};
