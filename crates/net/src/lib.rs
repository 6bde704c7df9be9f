//! `tally-net`: Tally's network edge, shared by the server, the registry, the client and the CLI.
//!
//! It owns what every port needs to face a hostile network, and nothing of Raft or key/value semantics:
//!
//! - [`identity`]: who a certificate names (a node id or a user name in its Subject Common Name).
//! - [`tls`]: rustls server and client configs from PEM files (ring provider, explicitly), with errors that
//!   name the file at fault; the mutual-TLS pair of a peer port.
//! - [`certs`]: a CA and node and user certificates made with rcgen (`tally certs init`).
//! - [`serve`]: the HTTP accept loop every Tally port uses: hyper 1 under an axum `Router`, optional TLS,
//!   header, body and idle timeouts, connection caps derived from the file descriptor limit, counters for
//!   `/metrics`, graceful shutdown.
//! - [`fd`]: the process's file descriptor limit.
//!
//! ```text
//!  PEM files ──tls──▶ rustls configs ──▶ serve (client port, registry) / reqwest (clients) / peer transport
//!  certs init ──▶ ca.pem, nN.pem, USER.pem (+ keys)        identity: certificate ──▶ node id or user name
//! ```
#![deny(missing_docs)]

pub mod certs;
pub mod fd;
pub mod identity;
pub mod serve;
pub mod tls;
