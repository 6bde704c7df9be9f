//! Snapshot transfer in chunks (Raft §7): the leader sends its snapshot to a follower that needs compacted
//! entries (or to a joining node without a membership base) in chunks of at most `max_bytes_per_message`;
//! the follower assembles them, verifies the whole snapshot's CRC32, installs it and continues from the log.
//!
//! ```text
//!  leader: SnapshotTransfer                                 follower: IncomingSnapshot
//!  { acked_offset <= sent_offset <= total_len }             { meta, checksum, data: contiguous prefix }
//!    ── InstallSnapshot [0..c) [c..2c) .. (window) ──────▶  appends a chunk only at offset data.len()
//!    ◀──────────────────────── SnapshotResponse next=.. ──  (each chunk that does not complete it)
//!    ── InstallSnapshot [k..total) done ─────────────────▶  CRC32 matches: install, Ready.snapshot
//!    ◀────────────────────── AppendResponse match=index ──  (mismatch: drop it all, answer next=0)
//! ```
//!
//! Loss, duplication and reordering are handled by one number: the follower ignores any chunk that is not
//! at the offset it expects and answers with that offset. The leader keeps at most a small window of chunks
//! beyond the acknowledged offset in flight and resends from the acknowledged offset (go-back-N) when
//! - an answer repeats the acknowledged offset while later chunks are in flight: a chunk was lost (or
//!   overtaken); done once per acknowledged offset, so duplicates and reordering cannot cause a storm;
//! - nothing is acknowledged for a while (the stall timer, reset by every acknowledged chunk), e.g. when
//!   the last chunk or every answer was lost.
//!
//! A follower's held prefix of a snapshot never shrinks except to nothing (a restart, a checksum mismatch),
//! so an answer below the acknowledged offset is either stale (ignored) or 0: start over.
//!
//! A transfer keeps the snapshot it started with even if the leader snapshots again meanwhile (the data is
//! shared, not copied), so it finishes however often the leader compacts; the follower then catches up from
//! the log, or with the newer snapshot if those entries are compacted too. Whenever a transfer starts over
//! from offset 0, it takes the leader's newest snapshot.

use std::sync::Arc;

use crate::message::{MessageBody, SnapshotChunk};
use crate::progress::ReplicationState;
use crate::raft::{Raft, Role};
use crate::types::{LogIndex, NodeId, Snapshot, SnapshotMeta};

/// Most snapshot chunks a leader keeps in flight to one follower (fewer if `max_inflight_messages` is
/// smaller): enough to keep a link busy, small enough that a lost chunk wastes little.
const MAX_SNAPSHOT_CHUNKS_IN_FLIGHT: u64 = 4;

/// Leader: the progress of sending one snapshot to one follower.
///
/// Invariant: `acked_offset <= sent_offset <= total_len` ([`SnapshotTransfer::assert_valid`]), and at most
/// a window of bytes is in flight (`sent_offset - acked_offset`), asserted where chunks are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTransfer {
    /// The snapshot being sent. Its data is shared with the leader's own (and other transfers'), and kept
    /// even after the leader compacts again, so the transfer can finish.
    snapshot: Snapshot,
    /// CRC32 of the snapshot's data, computed once when the transfer starts and sent with every chunk.
    checksum: u32,
    /// How many bytes the follower said it holds contiguously; only grows, except by starting over.
    acked_offset: u64,
    /// Where the next chunk starts: everything before it was sent at least once (and may be lost).
    sent_offset: u64,
    /// The acknowledged offset from which chunks were last resent because an answer repeated it, so each
    /// offset triggers at most one such resend.
    resent_from: Option<u64>,
    /// The furthest offset any chunk sent so far reached (`sent_offset` goes back on a rewind, this never
    /// does): the follower cannot hold more, so an answer claiming more is forged and ignored.
    sent_offset_max: u64,
}

/// What a follower's [`MessageBody::SnapshotResponse`] means for the transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotAck {
    /// The follower holds more than acknowledged before: send on.
    Progress,
    /// The follower repeated the acknowledged offset while later chunks are in flight: one was lost, so the
    /// transfer was rewound to resend from there.
    Resend,
    /// The follower holds nothing any more (it restarted, or the checksum did not match): start over.
    StartOver,
    /// Old news (a reordered or duplicated answer, or about a transfer given up): ignore it.
    Stale,
}

impl SnapshotTransfer {
    /// A transfer of `snapshot` from its first byte.
    pub fn new(snapshot: Snapshot) -> SnapshotTransfer {
        let checksum = crc32fast::hash(&snapshot.data);
        SnapshotTransfer { snapshot, checksum, acked_offset: 0, sent_offset: 0, resent_from: None, sent_offset_max: 0 }
    }

    /// The index of the snapshot being sent.
    pub fn index(&self) -> LogIndex {
        self.snapshot.meta.index
    }

    /// The size of the snapshot being sent.
    fn total_len(&self) -> u64 {
        self.snapshot.data.len() as u64
    }

    /// Whether nothing was sent yet (since the transfer started): the first chunk then goes whatever the
    /// window, as it may be the only one, empty, of an empty snapshot.
    fn is_unsent(&self) -> bool {
        self.sent_offset == 0
    }

    /// Whether another chunk of at most `chunk_bytes` remains and fits in a window of `window_bytes` in
    /// flight.
    fn has_room(&self, chunk_bytes: u64, window_bytes: u64) -> bool {
        let remaining = self.total_len() - self.sent_offset;
        remaining > 0 && self.sent_offset - self.acked_offset + chunk_bytes.min(remaining) <= window_bytes
    }

    /// Takes the next chunk, of at most `chunk_bytes`, to send.
    ///
    /// # Panics
    /// If more than `window_bytes` would be in flight (the caller checks [`Self::has_room`]).
    fn take_chunk(&mut self, chunk_bytes: u64, window_bytes: u64) -> SnapshotChunk {
        let total_len = self.total_len();
        let offset = self.sent_offset;
        let end = offset + chunk_bytes.min(total_len - offset);
        let in_flight = end - self.acked_offset;
        assert!(in_flight <= window_bytes, "{in_flight} bytes in flight > window {window_bytes}");
        self.sent_offset = end;
        self.sent_offset_max = self.sent_offset_max.max(end);
        self.assert_valid();
        let data = self.snapshot.data[offset as usize..end as usize].to_vec();
        let meta = self.snapshot.meta.clone();
        SnapshotChunk { meta, offset, data, total_len, checksum: self.checksum, done: end == total_len }
    }

    /// The follower holds `next_offset` bytes of the snapshot contiguously.
    pub fn acknowledge(&mut self, next_offset: u64) -> SnapshotAck {
        if next_offset > self.sent_offset_max {
            return SnapshotAck::Stale; // more than was ever sent: not the follower's answer
        }
        if next_offset > self.acked_offset && next_offset < self.total_len() {
            self.acked_offset = next_offset;
            self.sent_offset = self.sent_offset.max(next_offset); // it may hold what a rewind resends
            self.assert_valid();
            return SnapshotAck::Progress;
        }
        if next_offset == 0 && self.acked_offset > 0 {
            return SnapshotAck::StartOver;
        }
        if next_offset == self.acked_offset && self.sent_offset > next_offset && self.resent_from != Some(next_offset) {
            self.resent_from = Some(next_offset);
            self.rewind();
            return SnapshotAck::Resend;
        }
        // Below the acknowledged offset but not 0: an answer older than the one acknowledged (a held prefix
        // never shrinks but to nothing). At or past the end: nonsense, as the follower installs a complete
        // snapshot instead of answering this way. Repeating the acknowledged offset: already resent from it.
        SnapshotAck::Stale
    }

    /// Nothing was acknowledged for a stall timeout: presume the chunks after the acknowledged offset lost.
    pub fn rewind(&mut self) {
        self.sent_offset = self.acked_offset;
    }

    /// Asserts `acked_offset <= sent_offset <= total_len`.
    pub fn assert_valid(&self) {
        assert!(self.acked_offset <= self.sent_offset, "acked {} > sent {}", self.acked_offset, self.sent_offset);
        assert!(self.sent_offset <= self.total_len(), "sent {} > total {}", self.sent_offset, self.total_len());
    }
}

/// Follower: a snapshot being received from the leader of the current term, chunk by chunk.
///
/// Invariant: `data.len() < total_len <= max_snapshot_bytes` (a complete one is verified and installed or
/// dropped at once, never kept here). Asserted in [`Raft::check_invariants`].
#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    /// Position and membership of the snapshot; with `total_len` and `checksum`, which snapshot this is.
    pub meta: SnapshotMeta,
    /// The CRC32 the leader announced for the whole snapshot; checked once it is complete.
    pub checksum: u32,
    /// The size the leader announced; within the configured limit, but unverified until the checksum
    /// matches, so nothing is allocated from it.
    pub total_len: u64,
    /// The contiguous prefix received so far; it grows only as chunks arrive.
    pub data: Vec<u8>,
}

impl IncomingSnapshot {
    /// Starts assembling the snapshot `chunk` belongs to, with nothing received yet.
    fn start(chunk: &SnapshotChunk) -> IncomingSnapshot {
        IncomingSnapshot {
            meta: chunk.meta.clone(),
            checksum: chunk.checksum,
            total_len: chunk.total_len,
            data: Vec::new(),
        }
    }

    /// Whether `chunk` belongs to this snapshot.
    fn is_of(&self, chunk: &SnapshotChunk) -> bool {
        self.meta == chunk.meta && self.checksum == chunk.checksum && self.total_len == chunk.total_len
    }

    /// How many bytes are held: the offset of the next chunk accepted.
    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }

    /// Appends `chunk` if it is the next one (a well-formed chunk of this snapshot). Returns whether it was.
    fn append(&mut self, chunk: &SnapshotChunk) -> bool {
        if chunk.offset != self.len() {
            return false;
        }
        self.data.extend_from_slice(&chunk.data);
        assert!(self.len() <= self.total_len, "assembled {} bytes of {}", self.len(), self.total_len);
        assert_eq!(
            chunk.done,
            self.len() == self.total_len,
            "chunk done={} at {} of {}",
            chunk.done,
            self.len(),
            self.total_len
        );
        true
    }

    /// The complete snapshot, if its checksum matches.
    fn into_verified(self) -> Option<Snapshot> {
        assert_eq!(self.len(), self.total_len, "verifying an incomplete snapshot");
        (crc32fast::hash(&self.data) == self.checksum).then(|| Snapshot { meta: self.meta, data: Arc::new(self.data) })
    }

    /// Asserts the invariant against the configured limit.
    pub fn assert_valid(&self, max_snapshot_bytes: u64) {
        assert!(self.len() < self.total_len, "kept a complete snapshot ({} bytes)", self.total_len);
        assert!(
            self.total_len <= max_snapshot_bytes,
            "snapshot of {} bytes > limit {max_snapshot_bytes}",
            self.total_len
        );
    }
}

impl Raft {
    // ----- leader -----

    /// Leader: starts sending the newest snapshot to `to`, a follower that needs compacted entries or a
    /// membership base.
    pub(crate) fn start_snapshot_transfer(&mut self, to: NodeId) {
        assert!(
            self.snapshot.meta.index >= self.log.offset(),
            "snapshot {} older than compaction point {}",
            self.snapshot.meta.index,
            self.log.offset()
        );
        let transfer = SnapshotTransfer::new(self.snapshot.clone());
        self.progress.get_mut(&to).expect("caller checked").become_snapshot(transfer);
        self.send_snapshot_chunks(to);
    }

    /// Leader: sends `to` the chunks of its snapshot transfer that fit in the window.
    fn send_snapshot_chunks(&mut self, to: NodeId) {
        let chunk_bytes = self.config.max_bytes_per_message as u64;
        let window_bytes = chunk_bytes * MAX_SNAPSHOT_CHUNKS_IN_FLIGHT.min(self.config.max_inflight_messages as u64);
        let Some(ReplicationState::Snapshot(transfer)) = self.progress.get_mut(&to).map(|p| &mut p.state) else {
            return;
        };
        let mut chunks = Vec::new();
        if transfer.is_unsent() {
            chunks.push(transfer.take_chunk(chunk_bytes, window_bytes));
        }
        while transfer.has_room(chunk_bytes, window_bytes) {
            chunks.push(transfer.take_chunk(chunk_bytes, window_bytes));
        }
        for chunk in chunks {
            self.send(to, MessageBody::InstallSnapshot(chunk));
        }
    }

    /// Leader: the stall timer found nothing acknowledged for a while and rewound the transfer to `to`:
    /// resend from the acknowledged offset, or, if nothing was acknowledged, start over with the newest
    /// snapshot.
    pub(crate) fn resend_snapshot(&mut self, to: NodeId) {
        let Some(ReplicationState::Snapshot(transfer)) = self.progress.get(&to).map(|p| &p.state) else { return };
        if transfer.acked_offset == 0 {
            self.start_snapshot_transfer(to);
        } else {
            self.send_snapshot_chunks(to);
        }
    }

    /// Leader: a follower holds `next_offset` bytes of the snapshot at `index`.
    pub(crate) fn handle_snapshot_response(&mut self, from: NodeId, index: LogIndex, next_offset: u64) {
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.recent_active = true;
        match progress.acknowledge_snapshot(index, next_offset) {
            SnapshotAck::Progress | SnapshotAck::Resend => self.send_snapshot_chunks(from),
            SnapshotAck::StartOver => self.start_snapshot_transfer(from),
            SnapshotAck::Stale => {}
        }
    }

    // ----- follower -----

    /// Follower: a chunk of the leader's snapshot. Answer at once if the log already covers the snapshot;
    /// else add the chunk to the snapshot being assembled, and install the snapshot once it is complete and
    /// verified.
    pub(crate) fn handle_snapshot_chunk(&mut self, from: NodeId, chunk: SnapshotChunk) {
        if !chunk.is_well_formed() || chunk.total_len > self.config.max_snapshot_bytes {
            return; // from a confused or misconfigured leader: buffer nothing, and nothing to answer
        }
        if self.answer_if_covered(from, &chunk.meta) {
            return;
        }
        if let Some(snapshot) = self.assemble(from, &chunk) {
            self.install_snapshot(from, snapshot);
        }
    }

    /// Follower: if the log already holds what the snapshot at `meta` covers, acknowledges the match
    /// without its data (as an Append would be answered) and returns true. A joining node without a
    /// membership base still needs the data.
    fn answer_if_covered(&mut self, from: NodeId, meta: &SnapshotMeta) -> bool {
        let commit = self.log.commit();
        let matched = if meta.index <= commit {
            if !self.has_membership_base() {
                return false; // a new node takes the leader's snapshot at (or before) its commit for its base
            }
            commit
        } else if self.log.matches(meta.index, meta.term) {
            self.log.commit_to(meta.index); // our log already holds it: no need to replace anything
            meta.index
        } else {
            return false;
        };
        if self.incoming_snapshot.as_ref().is_some_and(|s| s.meta.index <= self.log.commit()) {
            self.incoming_snapshot = None; // covered by the log now: its bytes are of no use
        }
        self.send(from, MessageBody::AppendResponse { result: Ok(matched) });
        true
    }

    /// Follower: adds `chunk` to the snapshot being assembled, answering with what is held; returns the
    /// snapshot if the chunk completed it and its checksum matches.
    fn assemble(&mut self, from: NodeId, chunk: &SnapshotChunk) -> Option<Snapshot> {
        let current = self.incoming_snapshot.as_ref();
        let is_current = current.is_some_and(|s| s.is_of(chunk));
        // A new snapshot starts with its first chunk; a delayed first chunk of an older one than the one
        // being assembled (of a transfer the leader gave up) must not replace it.
        if !is_current && chunk.offset == 0 && current.is_none_or(|s| chunk.meta.index >= s.meta.index) {
            self.incoming_snapshot = Some(IncomingSnapshot::start(chunk));
        }
        let Some(incoming) = self.incoming_snapshot.as_mut().filter(|s| s.is_of(chunk)) else {
            // Not the start of the snapshot being assembled (its start was lost: ask for it) or older.
            let (index, next_offset) =
                self.incoming_snapshot.as_ref().map_or((chunk.meta.index, 0), |s| (s.meta.index, s.len()));
            self.send(from, MessageBody::SnapshotResponse { index, next_offset });
            return None;
        };
        if !incoming.append(chunk) || incoming.len() < incoming.total_len {
            // Out of order (lost, duplicated or reordered: answer with what we expect), or more to come.
            let (index, next_offset) = (incoming.meta.index, incoming.len());
            self.send(from, MessageBody::SnapshotResponse { index, next_offset });
            return None;
        }
        let incoming = self.incoming_snapshot.take().expect("assembled above");
        let index = incoming.meta.index;
        let verified = incoming.into_verified();
        if verified.is_none() {
            self.send(from, MessageBody::SnapshotResponse { index, next_offset: 0 }); // corrupted: start over
        }
        verified
    }

    /// Follower: installs a complete, verified snapshot the log did not cover, and acknowledges the match up
    /// to its index.
    fn install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        self.snapshot_replaces_log = index > self.log.commit();
        if self.snapshot_replaces_log {
            assert!(!self.log.matches(index, snapshot.meta.term), "installing snapshot {index} the log holds");
            self.log.install_snapshot(&snapshot.meta);
        } else {
            // A node without a membership base (a new node, or one restarted before it persisted the base)
            // takes the leader's snapshot at or below its commit index as the base only: its log, which
            // matches the leader's up to the commit index, stays.
            assert!(!self.has_membership_base(), "snapshot {index} within commit {} not needed", self.log.commit());
        }
        self.snapshot = snapshot.clone();
        self.snapshot_to_install = Some(snapshot);
        self.recompute_membership();
        self.send(from, MessageBody::AppendResponse { result: Ok(index) });
    }
}

#[cfg(test)]
mod tests;
