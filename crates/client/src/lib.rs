//! `tally-client`: an async client for a Tally cluster over its HTTP API (see `docs/http-api.md`), and
//! [`RegistryClient`], the client of the registry service through which nodes find their cluster.
//!
//! ```text
//!  Client::put/get/delete/delete_prefix/list/txn/cluster/transfer_leader
//!    ──codec: percent-encoded key path, query──▶ execute (retry loop, see below)
//!        ──Endpoints::pick(route)──▶ leader URL | preferred endpoint ──reqwest (pooled, keep-alive)──▶ node
//!    ◀──codec: JSON body, X-Tally-* headers── answer ── X-Tally-Leader / error `leader` ──▶ Endpoints
//! ```
//!
//! It owns the wire format of the client API (keys percent-encoded in paths: every byte that is not
//! unreserved; values as raw bodies; pages with `key_b64`/`value_b64` for bytes that are not UTF-8;
//! transactions built with [`Txn`] and answered as [`TxnResult`]), typed
//! errors ([`ClientError`]), and the choice of endpoint and retries. It does not own any cluster state:
//! everything it knows about the leader is a hint.
//!
//! # Endpoints
//!
//! The client keeps a list of endpoints (the configured ones, then the client URLs of members learned from
//! `/v1/cluster`) and a *preferred* endpoint, the first at start. It learns the leader's id from the
//! `X-Tally-Leader` header of every answer and the `leader` field of errors, and the leader's URL from
//! cluster views (a node's own answer maps its id to the endpoint that gave it; members' `client_url` map
//! theirs). When the leader changes to a node whose URL is unknown, the next write first fetches one
//! cluster view. Writes and linearizable reads go to the leader when its URL is known, else to the
//! preferred endpoint (followers forward writes anyway, so this only saves a hop); stale reads go to the
//! preferred endpoint. An endpoint that fails stops being preferred, and stops being taken for the leader.
//!
//! # Retries
//!
//! A call retries only what is certainly safe, until it succeeds or [`ClientConfig::retry_deadline`]
//! (default 10 s) passes, and then returns the last error:
//!
//! - a connection that could not be made (nothing was sent) is retried at once on the next endpoint; after
//!   every endpoint refused in a row, with a backoff;
//! - `503 no_leader`, `503 unavailable` and `502 forward_failed` (nothing was written) are retried after a
//!   short exponential backoff (50 ms doubling to 1 s), on the leader if known, else on the next endpoint;
//! - reads are also retried, on the next endpoint, after a timeout (the client's, or a `504`) or a
//!   connection that broke after sending;
//! - writes (put, delete, cas, prefix delete, a transaction with a write, leader transfer) that timed out or
//!   whose connection broke after sending are **not** retried: the error says that the write may or may not
//!   have been applied ([`ClientError::outcome_unknown`]). A transaction's compares often make a retry safe,
//!   but only the caller knows: read again, then decide. A read-only transaction is a read;
//! - 4xx answers are never retried.
//!
//! Each attempt has its own timeout ([`ClientConfig::request_timeout`], default 10 s); connections are
//! pooled and kept alive (4 s at most while idle, under the server's idle timeout). Redirects are never
//! followed.
//!
//! # TLS and tokens
//!
//! `https://` endpoints need the CA that signed the nodes' certificates ([`ClientBuilder::ca_file`]); nodes
//! that require client certificates need one ([`ClientBuilder::client_certificate`]); a bearer token
//! ([`ClientBuilder::token`]) goes in `Authorization: Bearer` on every call. TLS is rustls with the ring
//! provider.
//!
//! # Server-Sent Events
//!
//! [`sse`] is a pure, incremental parser of `text/event-stream` bodies (the WHATWG rules), for the watch
//! streams of a node: push the body's chunks as they arrive, get the events they completed.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), tally_client::ClientError> {
//! use tally_client::{Client, Consistency};
//!
//! let client = Client::new(vec!["http://127.0.0.1:7001".into(), "http://127.0.0.1:7002".into()])?;
//! let written = client.put(b"greeting", b"hello").await?;
//! let read = client.get(b"greeting", Consistency::Linearizable).await?.expect("just written");
//! assert_eq!(read.modify_index, written.index);
//! client.put_cas(b"greeting", b"hi", written.index).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod auth;
mod builder;
mod client;
mod codec;
mod endpoints;
mod error;
mod registry;
mod retry;
pub mod sse;
mod txn;
mod types;
mod watch;

pub use auth::{Access, AuthStatus, NewToken, Permission, RoleInfo, UserInfo};
pub use builder::ClientBuilder;
pub use client::{Client, ClientConfig};
pub use codec::{decode_page, insert_bytes, key_path, percent_encode};
pub use endpoints::normalize_endpoint;
pub use error::{ApiError, ClientError, code};
pub use registry::{ClaimAnswer, ClusterClaim, RegisteredNode, Registration, RegistryClient, RegistryError};
pub use txn::{Compare, CompareOp, Op, OpResult, Target, Txn, TxnResult};
pub use types::{
    ClusterStatus, Consistency, DeletePrefixResult, DeleteResult, KeyValue, Member, MemberRole, NodeRole, Page,
    WriteResult,
};
pub use watch::{ChangeKind, PrevValue, WatchChange, WatchError, WatchEvent, WatchOptions, WatchStream};
