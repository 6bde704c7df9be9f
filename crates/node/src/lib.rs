//! `tally-node`: the one loop that drives the Raft core, durable storage and a state machine. The real
//! server and the simulator both run this code; only the [`Storage`], [`Transport`] and [`Clock`] differ.
//!
//! ```text
//!   receive(message) / advance_clock() / propose(id, command) / read(id, query)
//!                          │
//!                          ▼
//!                  Raft core (sans-IO) ──ready()──▶ 1. Storage: snapshot + entries + hard state, one sync
//!                                                   2. Transport: send messages
//!                                                   3. StateMachine: install snapshot, apply entries
//!                                                   4. answer reads whose index is applied
//!                          │
//!                          ▼
//!                take_completions() ──▶ the caller answers its clients
//! ```
//!
//! Beside the loop, [`WatchHub`] fans the kv store's change history out to watchers, also sans-IO: the caller
//! publishes after each batch of applies and takes each watcher's deliveries when its stream can carry them.
//!
//! It owns no threads and no sockets: callers (a tokio task in the server, the simulator's event loop)
//! decide when inputs arrive.
#![deny(missing_docs)]

pub mod codec;
mod membership_policy;
mod node;
mod request;
mod state_machine;
mod storage;
mod transport;
mod wal_storage;
mod watch;

pub use membership_policy::{MembershipPolicy, PolicyConfig};
pub use node::{Input, Node, NodeConfig, StorageAlarm};
pub use request::{Completion, ReadConsistency, Reply, RequestError, RequestId};
pub use state_machine::{KvQuery, KvQueryOutput, StateMachine};
pub use storage::{Storage, StorageError};
pub use transport::{Clock, ManualClock, Outbox, Transport};
pub use wal_storage::WalStorage;
pub use watch::{Delivery, SubscribeError, WatchConfig, WatchError, WatchFaults, WatchHub, WatchId};
