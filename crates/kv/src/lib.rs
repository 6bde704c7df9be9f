//! The deterministic key/value state machine of Tally.
//!
//! # What this crate owns
//!
//! - [`Command`]: the write commands (put, delete, each with an optional compare-and-set on the
//!   key's modify index; delete of every key under a prefix; [`Txn`], compare guards then one of two
//!   branches of ops, atomically) and their versioned binary encoding, carried as Raft log entry payloads;
//!   also the cluster metadata commands that record member addresses and the cluster id
//!   ([`ClusterInfo`], outside the key space), and the auth commands ([`AuthCommand`]) that manage users,
//!   their token hashes and roles ([`AuthState`], also outside the key space).
//! - [`AuthState::authorize`]: whether a user may read, write or administer a key or prefix, as a pure
//!   function of the replicated auth state.
//! - [`KvStore`]: the state those commands build, a byte-ordered map from key to [`Versioned`]
//!   value (with its create and modify index and its version, the write count) plus the `applied_index`, with
//!   point reads, prefix scans and read-only transactions ([`KvStore::query_txn`]).
//! - Snapshots: [`KvStore::snapshot`] / [`KvStore::restore`], a checksummed encoding of the whole
//!   state, and [`KvStore::state_checksum`], a cheap fingerprint for convergence checks.
//!
//! # What it does not own
//!
//! No I/O, no clock, no randomness, no threads: the node crate feeds it committed entries and
//! stores its snapshots. It enforces no key or value size limits either; those are checked at the
//! HTTP layer before a command is ever proposed.
//!
//! # Determinism
//!
//! Every node applies the same committed entries in the same order and must end in byte-for-byte
//! the same state. So: no `HashMap` iteration reaches an output (the map is a `BTreeMap`), the
//! only indexes used are the log indexes handed in, and even an undecodable payload produces the
//! same [`Response::Invalid`] on every node instead of a local error.
//!
//! # Data flow
//!
//! ```text
//!  committed raft entry (index, payload), in log order
//!        │
//!        ▼
//!  KvStore::apply(index, payload) ──▶ Command::decode ─┬─▶ cas check ──▶ put / delete / delete prefix ─┐
//!        │                                             └─▶ Txn::validate ──▶ compares ──▶ branch ops ──┤
//!        │                                                  every key change: write_key / remove_key   │
//!        ▼                                                                                             ▼
//!  Response ──▶ the waiting client                          BTreeMap<key, Versioned> + applied_index
//!                                                                                                      │
//!                           get / scan / query_txn ◀───────────────────────────────────────────────────┤
//!                           snapshot() ──▶ bytes ──▶ restore() ◀───────────────────────────────────────┤
//!                           state_checksum() ◀─────────────────────────────────────────────────────────┘
//! ```
//!
//! Entries that carry no key/value command (no-ops, membership changes) are recorded with
//! [`KvStore::skip`] so `applied_index` still tracks the log.

#![deny(missing_docs)]

mod auth;
mod cluster;
mod codec;
mod command;
mod error;
mod response;
mod snapshot;
mod store;
mod txn;

pub use auth::{
    AUTH_NAME_MAX_BYTES, AUTH_PREFIX_MAX_BYTES, Access, AuthCommand, AuthError, AuthState, Denied,
    PERMISSIONS_PER_ROLE_MAX, ROLES_MAX, ROLES_PER_USER_MAX, Role, Scope, TokenHash, USERS_MAX, User, check_name,
    show_bytes,
};
pub use cluster::{ClusterInfo, METADATA_TEXT_MAX_BYTES, MemberAddress};
pub use command::Command;
pub use error::DecodeError;
pub use response::Response;
pub use store::{KvStore, Versioned};
pub use txn::{
    Compare, CompareOp, CompareTarget, OpList, OpPosition, TXN_OPS_MAX, TXN_READ_BYTES_MAX, Txn, TxnError, TxnOp,
    TxnOpResult,
};
