//! `tally-raft`: the consensus core of Tally, sans-IO.
//!
//! It owns the Raft protocol (election with pre-vote and check-quorum, or by the bully algorithm deciding by
//! the same votes; log replication with pipelining and fast backtracking, commit, ReadIndex, learners and
//! single-server membership changes, leader transfer, snapshot transfer in verified chunks). It owns no I/O: no clock, no files, no sockets, no threads, no OS randomness.
//! The driver (`tally-node`) feeds it inputs and carries out its outputs:
//!
//! ```text
//!             step(message) ─┐
//!                    tick() ─┤      ┌──────────┐      ready() ──▶ Ready {
//!            propose(data) ──┼────▶ │   Raft   │ ───▶             snapshot, entries, hard_state  → persist, fsync
//!       read_index(context) ─┤      └──────────┘                  messages                       → send
//!  propose_membership(change)┘                                    committed_entries              → apply
//!                                                                 read_states                    → serve reads }
//! ```
//!
//! The same seed and the same inputs always produce the same outputs, which is what lets the simulator
//! replay any run from its seed.
//!
//! A node whose storage may have lost entries it acknowledged, or a vote ([`Restored::tail_may_be_acknowledged`]),
//! runs protocol-aware recovery before it votes or campaigns ([`RecoveryStatus`]; the rule and why it is safe are
//! in `docs/storage.md`).
//!
//! Messages come from the network, so an answer is believed only as far as it answers something this node
//! asked: a leader ignores a match beyond what it offered that follower (or beyond its log), an
//! acknowledgement of a ReadIndex round it has not started, and a snapshot offset beyond what it sent; a
//! follower takes read indexes only from its leader. Terms and indexes from peers are bounded by the transport
//! ([`Term::ACCEPTED_MAX`], [`LogIndex::ACCEPTED_MAX`]), so `Term::next` and `LogIndex::next` never overflow.
//! Who may send at all (a message's `from` is what it claims) is the transport's to prove, not the core's.
#![deny(missing_docs)]

mod bully;
mod config;
mod display;
mod election;
mod error;
mod log;
mod membership;
mod message;
mod progress;
mod quorum;
mod raft;
mod read_index;
mod ready;
mod recovery;
mod replication;
mod rng;
mod snapshot;
mod types;

pub use config::{Config, ElectionMode, Faults};
pub use error::ProposeError;
pub use message::{AppendRejection, CampaignKind, InquiryAnswer, Message, MessageBody, SnapshotChunk};
pub use raft::{Raft, Restored, Role};
pub use ready::{ReadState, Ready};
pub use recovery::RecoveryStatus;
pub use rng::SplitMix64;
pub use types::{
    Entry, EntryPayload, HardState, LogIndex, Membership, MembershipChange, NodeId, Snapshot, SnapshotMeta, Term,
    change_target,
};
