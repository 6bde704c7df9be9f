//! `tally-net`: Tally's network edge, shared by the server, the registry, the client and the CLI.
//!
//! It owns what every port needs to face a hostile network, and nothing of Raft or key/value semantics:
//!
//! - [`identity`]: who a certificate names (a node id or a user name in its Subject Common Name).
#![deny(missing_docs)]

pub mod identity;
