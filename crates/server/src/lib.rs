//! `tally-server`: the process around the node loop. So far it holds the peer wire format, the part of
//! the peer transport that needs no sockets:
//!
//! ```text
//!  Raft Message ──wire::encode──▶ payload ──frame::encode──▶ [magic, version, length, crc32, payload] ──▶ TCP
//!  TCP bytes ──FrameDecoder::push/next──▶ payload (length bounded, checksum verified) ──wire::decode──▶ Message
//! ```
//!
//! Every decoder is total: any byte string gives a message or a clear error, never a panic, and nothing is
//! allocated from an unverified length beyond the configured maximum frame size. The tokio transport, the
//! HTTP API and graceful shutdown come with the server issue.
#![deny(missing_docs)]

pub mod frame;
pub mod wire;
