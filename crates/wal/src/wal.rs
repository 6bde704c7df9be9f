//! [`Wal`]: the writer. Appends records to the active segment, commits them in batches with one
//! fsync, rolls segments, and poisons itself on the first I/O failure.

mod maintenance;
mod open;
mod space;

use std::collections::VecDeque;
use std::io;

use crate::disk::{Disk, DiskFile};
use crate::error::WalError;
use crate::record::{self, BATCH_END_LEN, Binding, PREAMBLE_LEN, RecordRef, align_up};
use crate::recovery::truncate_live;
use crate::segment::Segment;
use crate::types::{ENTRY_DATA_MAX, HardState, INDEX_MAX, WalEntry, WalOptions};
use space::{Plan, Spare};

/// Encoded records are written to the file once this many are buffered, so a caller appending a
/// lot without syncing holds bounded memory. Everything is written at the latest by `sync`.
const BUFFER_FLUSH_BYTES: usize = 1 << 20;

/// The file whose existence says that protocol-aware recovery is not over (see [`Wal::settle_recovery`]).
pub(crate) const RECOVERY_MARKER: &str = "recovery-pending.mark";

/// Zeros for preallocating segments (in `.bss`, costs no binary size).
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// The durable log of one node: entries, hard state and snapshots on a [`Disk`].
///
/// Writes are grouped: [`Wal::append`] and [`Wal::set_hard_state`] only buffer records, and one
/// [`Wal::sync`] makes all of them durable with one fsync, atomically: after a crash, recovery
/// returns either everything a sync covered or none of it. The caller acknowledges only what a
/// successful `sync` covered.
///
/// Invariants (checked by `check_invariants` after every call in debug builds):
/// - `segments` is non-empty and its sequence numbers strictly increase; the last is active.
/// - `snapshot_index <= last_index`, and `terms` holds one term per entry in between.
/// - `hard_state.commit <= max(last_index, snapshot_index)` at every sync.
/// - The buffered records end inside the active segment's preallocated capacity.
/// - Spares are numbered `next_seq`, `next_seq + 1`, ...: a roll takes the first.
/// - Once poisoned, the log never writes again.
pub struct Wal<D: Disk> {
    /// Where the files live.
    disk: D,
    /// Segment size.
    options: WalOptions,
    /// Every segment on disk, oldest first; the last is the active one.
    segments: Vec<Segment>,
    /// The open active segment.
    active: D::File,
    /// Bytes preallocated in the active segment: records go below this.
    active_capacity: u64,
    /// Encoded records not yet written to the active segment.
    buffer: Vec<u8>,
    /// The file offset where `buffer[0]` goes; always a record boundary.
    buffer_offset: u64,
    /// Records since the last batch marker: anything to sync?
    batch_records: u64,
    /// Records since the last batch marker or the start of the active segment, whichever is
    /// later: the count the next marker carries. Per segment, because compaction may remove the
    /// segment holding the start of a batch that spans segments.
    marker_count: u64,
    /// The active segment was written since its last fsync.
    active_unsynced: bool,
    /// A segment was created since the last directory fsync.
    dir_unsynced: bool,
    /// The sequence number of the next segment.
    next_seq: u64,
    /// The index of the last entry (the snapshot's index when no entry follows it).
    last_index: u64,
    /// The term of every entry after the snapshot, oldest first, so appends and snapshots can be
    /// checked against the log. Invariant: `terms.len() == last_index - snapshot_index`.
    terms: VecDeque<u64>,
    /// `(index, term)` of the newest durable snapshot.
    snapshot: Option<(u64, u64)>,
    /// The latest hard state handed in (durable after the next sync).
    hard_state: HardState,
    /// Why the log refuses writes, after the first I/O failure.
    poisoned: Option<String>,
    /// Preallocated files for the next segments, in sequence order from `next_seq` (usually none or
    /// one): a roll takes the first, so it never allocates. See `space.rs`.
    spares: VecDeque<Spare<D::File>>,
    /// Why the last attempt to make room failed on a full disk; `None` while the log has space.
    no_space: Option<String>,
    /// The recovery marker file exists: a recovery cut a tail that may have been acknowledged, and the node has
    /// not yet said it recovered what it may have lost ([`Wal::settle_recovery`]).
    recovery_marked: bool,
    /// The log's random id: in every segment header, and in the seed of every record checksum.
    log_id: u64,
    /// The number of the batch being built: every record carries it, and a marker closes it.
    batch: u64,
    /// The checksum of the last batch marker written (0: none yet), which the next marker chains to.
    last_marker_checksum: u32,
    /// The checksum of the last record in the active segment (0: none): the next segment's header
    /// holds it, binding the sealed segment's end.
    last_checksum: u32,
    /// The chain of the checksums of the records since the last marker in the active segment (what
    /// the next marker holds, next to its count).
    marker_chain: u32,
}

impl<D: Disk> std::fmt::Debug for Wal<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("segments", &self.segments.len())
            .field("last_index", &self.last_index)
            .field("snapshot", &self.snapshot)
            .field("hard_state", &self.hard_state)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Which file an I/O failure happened on, resolved to a name only on the error path.
enum Target<'a> {
    Active,
    Directory,
    Named(&'a str),
}

impl<D: Disk> Wal<D> {
    /// Appends entries (buffered: durable after the next [`Wal::sync`]). If `entries[0].index`
    /// is not past the last index, the entries from there on are replaced: a follower's
    /// conflicting suffix. The replacement is logical (see `FORMAT.md`), so a crash before the
    /// next sync leaves the old suffix, as the last sync left it.
    ///
    /// # Errors
    /// [`WalError::NoSpace`] if the entries need a new segment and the disk is full: nothing was
    /// appended and the log is not poisoned. [`WalError::Poisoned`] after an earlier failure;
    /// [`WalError::Io`] if a write fails (a segment roll writes and fsyncs), which poisons the log.
    ///
    /// # Panics
    /// On a programmer error: a gap after the last index, indexes not consecutive, terms going
    /// down, replacing an entry at or below the commit index or the snapshot, an entry larger
    /// than [`ENTRY_DATA_MAX`], or an index past [`INDEX_MAX`].
    pub fn append(&mut self, entries: &[WalEntry]) -> Result<(), WalError> {
        self.check_writable()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        self.check_append(entries);
        let plan = self.plan(entries.iter().map(|entry| RecordRef::Entry(entry).encoded_len()));
        self.reserve(&plan)?;
        if first.index <= self.last_index {
            self.terms.truncate((first.index - 1 - self.snapshot_index()) as usize);
            let mut live: Vec<_> = self.segments.iter().map(|segment| segment.live).collect();
            truncate_live(&mut live, first.index);
            self.segments.iter_mut().zip(live).for_each(|(segment, live)| segment.live = live);
        }
        for entry in entries {
            self.push(RecordRef::Entry(entry))?;
            let segment = self.segments.last_mut().unwrap_or_else(|| unreachable!("no active segment"));
            segment.live = Some((segment.live.map_or(entry.index, |(first, _)| first), entry.index));
            self.last_index = entry.index;
            self.terms.push_back(entry.term);
        }
        self.check_invariants();
        Ok(())
    }

    fn check_append(&self, entries: &[WalEntry]) {
        let first = &entries[0];
        let snapshot_index = self.snapshot_index();
        assert!(first.index > snapshot_index, "append at {} rewrites the snapshot at {snapshot_index}", first.index);
        assert!(first.index <= self.last_index + 1, "append at {} leaves a gap after {}", first.index, self.last_index);
        if first.index <= self.last_index {
            let commit = self.hard_state.commit;
            assert!(first.index > commit, "append at {} replaces committed entries (commit {commit})", first.index);
        }
        let previous = self.term_at(first.index - 1);
        assert!(first.term >= previous, "append term {} < term {previous} of entry {}", first.term, first.index - 1);
        for pair in entries.windows(2) {
            assert_eq!(pair[1].index, pair[0].index + 1, "append indexes not consecutive");
            assert!(pair[1].term >= pair[0].term, "append terms go down: {} then {}", pair[0].term, pair[1].term);
        }
        let last = entries[entries.len() - 1].index;
        assert!(last <= INDEX_MAX, "append at {last} past the largest index {INDEX_MAX}");
        for entry in entries {
            assert!(entry.data.len() <= ENTRY_DATA_MAX, "entry {} of {} bytes > max", entry.index, entry.data.len());
        }
    }

    /// Records a new hard state (buffered: durable with the entries of the same batch, after the
    /// next [`Wal::sync`]). A hard state equal to the current one writes nothing.
    ///
    /// # Errors
    /// As [`Wal::append`].
    ///
    /// # Panics
    /// If the term goes down, the vote changes within a term, or the commit index goes down.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), WalError> {
        self.check_writable()?;
        let old = self.hard_state;
        assert!(hard_state.term >= old.term, "hard state term {} < {}", hard_state.term, old.term);
        if hard_state.term == old.term && old.vote != 0 {
            assert_eq!(hard_state.vote, old.vote, "vote changed within term {}", old.term);
        }
        assert!(hard_state.commit >= old.commit, "commit {} < {}", hard_state.commit, old.commit);
        if hard_state == old {
            return Ok(());
        }
        self.push_reserved(RecordRef::HardState(hard_state))?;
        self.hard_state = hard_state;
        Ok(())
    }

    /// Makes every record since the last sync durable, as one atomic batch: writes them and a
    /// batch marker, fsyncs the active segment once, and fsyncs the directory if a segment was
    /// created. Does nothing if nothing was appended. This is the group commit: one call covers
    /// any number of appends.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] after an earlier failure; [`WalError::Io`] if the write or an
    /// fsync fails. Then the log is poisoned and nothing of the batch may be acknowledged.
    ///
    /// # Panics
    /// If the hard state's commit index is past the last index.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_writable()?;
        if self.batch_records == 0 {
            assert!(self.buffer.is_empty(), "buffered bytes without records");
            assert!(!self.dir_unsynced, "segment created outside a batch");
            return Ok(());
        }
        let bound = self.last_index.max(self.snapshot_index());
        assert!(self.hard_state.commit <= bound, "commit {} > last index {bound}", self.hard_state.commit);
        self.push(RecordRef::BatchEnd {
            records: self.marker_count,
            previous: self.last_marker_checksum,
            chain: self.marker_chain,
        })?;
        self.flush()?;
        if let Err(source) = self.active.sync() {
            return Err(self.fail("fsync", Target::Active, source));
        }
        self.active_unsynced = false;
        if self.dir_unsynced {
            if let Err(source) = self.disk.sync_dir() {
                return Err(self.fail("fsync", Target::Directory, source));
            }
            self.dir_unsynced = false;
        }
        self.batch_records = 0;
        // The batch is durable whatever happens next. Preparing the next segment now keeps the
        // allocation off the roll; a full disk only turns `has_space` off, and any other failure
        // poisons the log for the next call.
        if self.spares.is_empty() && self.active_offset() >= self.active_capacity / 2 {
            let _ = self.ensure_space();
        }
        self.check_invariants();
        Ok(())
    }

    /// Says the node recovered what a cut tail may have lost (protocol-aware recovery is over): removes the
    /// recovery marker, durably. Until then every [`Wal::open`] reports
    /// [`crate::Recovered::tail_may_be_acknowledged`], so a restart in the middle of that recovery starts it
    /// again instead of forgetting it. Does nothing when there is no marker.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] after an earlier failure; [`WalError::Io`] if the removal or the directory fsync
    /// fails, which poisons the log.
    pub fn settle_recovery(&mut self) -> Result<(), WalError> {
        self.check_writable()?;
        if !self.recovery_marked {
            return Ok(());
        }
        if let Err(source) = self.disk.remove(RECOVERY_MARKER) {
            return Err(self.fail("remove", Target::Named(RECOVERY_MARKER), source));
        }
        if let Err(source) = self.disk.sync_dir() {
            return Err(self.fail("fsync", Target::Directory, source));
        }
        self.recovery_marked = false;
        Ok(())
    }

    /// Whether a recovery marker is in place (see [`Wal::settle_recovery`]).
    pub fn is_recovery_marked(&self) -> bool {
        self.recovery_marked
    }

    /// The index of the last entry (the snapshot's index when no entry follows it, 0 for an
    /// empty log).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The index of the first entry recovery would return: one past the snapshot.
    pub fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    /// The term of entry `index`, which must lie between the snapshot and the last index (the
    /// snapshot's own index gives the snapshot's term; 0 gives 0).
    fn term_at(&self, index: u64) -> u64 {
        let snapshot_index = self.snapshot_index();
        assert!(index >= snapshot_index && index <= self.last_index, "no term for {index}");
        match index.checked_sub(snapshot_index + 1) {
            None => self.snapshot.map_or(0, |(_, term)| term),
            Some(offset) => self.terms[offset as usize],
        }
    }

    /// The index of the newest durable snapshot, 0 if there is none.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.map_or(0, |(index, _)| index)
    }

    /// The latest hard state handed in.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Closes the log and gives back its disk and options, to open it again with [`Wal::open`]
    /// (after a write that failed with [`WalError::NoSpace`], the caller's view of the log may be
    /// ahead of the files: opening them again is a restart without the process restart). Records
    /// buffered since the last [`Wal::sync`] are dropped, as a crash would drop them.
    pub fn into_disk(self) -> (D, WalOptions) {
        (self.disk, self.options)
    }

    /// Whether an I/O failure poisoned the log: it then refuses every write, and the node must
    /// stop accepting writes.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn check_writable(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(cause) => Err(WalError::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Poisons the log and builds the error for a failed I/O call.
    fn fail(&mut self, operation: &'static str, target: Target<'_>, source: io::Error) -> WalError {
        let file = match target {
            Target::Active => self.segments.last().map_or_else(String::new, |segment| segment.name.clone()),
            Target::Directory => "<directory>".to_owned(),
            Target::Named(name) => name.to_owned(),
        };
        let error = WalError::Io { operation, file, source };
        if self.poisoned.is_none() {
            self.poisoned = Some(error.to_string());
        }
        error
    }

    /// The file offset the next record goes to.
    fn active_offset(&self) -> u64 {
        self.buffer_offset + self.buffer.len() as u64
    }

    /// Reserves the space one record needs (see `space.rs`), then pushes it.
    fn push_reserved(&mut self, record: RecordRef<'_>) -> Result<(), WalError> {
        let plan = self.plan([record.encoded_len()]);
        self.reserve(&plan)?;
        self.push(record)
    }

    /// Encodes one record into the buffer, rolling to the next segment first if it would not
    /// leave room for the batch marker. The caller reserved the space (`reserve`), so this never
    /// allocates.
    fn push(&mut self, record: RecordRef<'_>) -> Result<(), WalError> {
        let len = record.encoded_len();
        let is_marker = matches!(record, RecordRef::BatchEnd { .. });
        if !is_marker && self.active_offset() + len + BATCH_END_LEN > self.active_capacity {
            let offset = self.active_offset();
            assert!(offset > PREAMBLE_LEN, "record of {len} bytes at {offset}: the active segment was not grown");
            self.roll(len)?;
        }
        let offset = self.active_offset();
        let seq = self.segments.last().unwrap_or_else(|| unreachable!("no active segment")).seq;
        let checksum = record.encode(Binding { log_id: self.log_id, seq }, offset, self.batch, &mut self.buffer);
        self.last_checksum = checksum;
        assert!(self.active_offset() <= self.active_capacity, "record at {offset} passes the segment capacity");
        if is_marker {
            self.marker_count = 0;
            self.marker_chain = 0;
            self.last_marker_checksum = checksum;
            self.batch += 1;
        } else {
            self.batch_records += 1;
            self.marker_count += 1;
            self.marker_chain = record::chain(self.marker_chain, checksum);
        }
        if self.buffer.len() >= BUFFER_FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered records to the active segment (not durable until fsync).
    fn flush(&mut self) -> Result<(), WalError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.active.write_at(self.buffer_offset, &self.buffer) {
            return Err(self.fail("write", Target::Active, source));
        }
        self.buffer_offset += self.buffer.len() as u64;
        self.buffer.clear();
        self.active_unsynced = true;
        Ok(())
    }

    /// Seals the active segment and starts the next one, with room for a record of `len` bytes:
    /// the reserved spare, renamed into place (the directory fsync comes with the batch's sync).
    /// The sealed segment is fsynced *before* the new one exists, so only the last segment can
    /// ever hold a torn write.
    fn roll(&mut self, len: u64) -> Result<(), WalError> {
        self.flush()?;
        if self.active_unsynced {
            if let Err(source) = self.active.sync() {
                return Err(self.fail("fsync", Target::Active, source));
            }
            self.active_unsynced = false;
        }
        if self.dir_unsynced {
            // A batch rolls twice: make the previous segment's name durable before the next one
            // appears, so a crash can never keep a later segment without an earlier one (a gap
            // recovery must refuse).
            if let Err(source) = self.disk.sync_dir() {
                return Err(self.fail("fsync", Target::Directory, source));
            }
            self.dir_unsynced = false;
        }
        let segment = Segment::new(self.next_seq);
        let capacity = align_up(self.options.segment_bytes_max.max(PREAMBLE_LEN + len + BATCH_END_LEN));
        let spare = self.take_spare(capacity);
        if let Err(source) = self.disk.rename(&spare.name, &segment.name) {
            return Err(self.fail("rename", Target::Named(&spare.name), source));
        }
        self.next_seq += 1;
        self.active = spare.file;
        self.active_capacity = spare.capacity;
        self.active_unsynced = true;
        self.buffer_offset = 0;
        self.marker_count = 0;
        self.marker_chain = 0;
        self.dir_unsynced = true;
        let seq = segment.seq;
        let previous = self.segments.last().map_or(0, |sealed| sealed.seq);
        let sealed_last = self.last_checksum;
        self.segments.push(segment);
        self.push(RecordRef::SegmentHeader { seq, log_id: self.log_id, previous, sealed_last })?;
        self.push(RecordRef::HardState(self.hard_state))?;
        assert_eq!(self.active_offset(), PREAMBLE_LEN, "a new segment's preamble is {PREAMBLE_LEN} bytes");
        Ok(())
    }

    /// Debug-build check of the invariants in the type's doc comment.
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert!(!self.segments.is_empty(), "no active segment");
        for pair in self.segments.windows(2) {
            assert!(pair[0].seq < pair[1].seq, "segment sequence {} then {}", pair[0].seq, pair[1].seq);
        }
        let last_seq = self.segments[self.segments.len() - 1].seq;
        assert!(last_seq < self.next_seq, "next sequence {} <= {last_seq}", self.next_seq);
        let ranges: Vec<(u64, u64)> = self.segments.iter().filter_map(|segment| segment.live).collect();
        for pair in ranges.windows(2) {
            assert_eq!(pair[1].0, pair[0].1 + 1, "live ranges {:?} and {:?} not contiguous", pair[0], pair[1]);
        }
        if let Some(&(_, last)) = ranges.last() {
            assert_eq!(last, self.last_index, "live entries end at {last}, last index {}", self.last_index);
        }
        assert!(
            self.snapshot_index() <= self.last_index,
            "snapshot {} > last {}",
            self.snapshot_index(),
            self.last_index
        );
        assert!(self.active_offset() <= self.active_capacity, "buffer passes the segment capacity");
        for (position, spare) in self.spares.iter().enumerate() {
            let seq = self.next_seq + position as u64;
            assert_eq!(spare.seq, seq, "spare {} at position {position}, expected {seq}", spare.seq);
        }
        assert_eq!(self.buffer_offset % 8, 0, "buffer offset {} not aligned", self.buffer_offset);
        assert!(self.buffer.is_empty() || self.batch_records > 0, "buffered bytes without records");
        assert!(
            self.marker_count <= self.batch_records,
            "marker count {} > batch {}",
            self.marker_count,
            self.batch_records
        );
    }
}

/// Appends zeros to `file` until it is `capacity` bytes long.
fn zero_fill<F: DiskFile>(file: &mut F, capacity: u64) -> io::Result<()> {
    while file.len() < capacity {
        let chunk = (capacity - file.len()).min(ZEROS.len() as u64) as usize;
        file.append(&ZEROS[..chunk])?;
    }
    Ok(())
}
