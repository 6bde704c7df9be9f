//! `tally-server`: the process around the node loop. So far it holds the peer wire format and the tokio
//! peer transport that carries it:
//!
//! ```text
//!  Raft Message ──wire::encode──▶ payload ──frame::encode──▶ [magic, version, length, crc32, payload] ──▶ TCP
//!  TCP bytes ──FrameDecoder::push/next──▶ payload (length bounded, checksum verified) ──wire::decode_frame──▶ Message | Hello
//!
//!  peer::PeerTransport::send ──▶ per peer: control lane (votes, appends, heartbeats) ──TCP──▶ peer
//!                                          bulk lane (snapshot chunks)             ──TCP──▶ peer
//!  listener ──▶ per connection: frames ──▶ messages for this node ──▶ bounded inbox ──▶ node loop
//!                                        └─▶ hellos ──▶ the peers' client URLs (for forwarding writes)
//! ```
//!
//! Every decoder is total: any byte string gives a message or a clear error, never a panic, and nothing is
//! allocated from an unverified length beyond the configured maximum frame size. The HTTP API and graceful
//! shutdown of the whole process come with the server issue.
#![deny(missing_docs)]

pub mod config;
mod driver;
pub mod frame;
mod http;
pub mod peer;
mod server;
pub mod wire;

pub use config::{InitialMember, Limits, ServerConfig, parse_initial_cluster, parse_node_id};
pub use server::{Server, ServerError, run};
