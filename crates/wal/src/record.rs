//! Record framing: the byte layout of one log record (see `FORMAT.md`).
//!
//! ```text
//! offset  size  field
//!   0      4    payload_length  u32 LE, <= PAYLOAD_MAX
//!   4      1    record_type     1..=5
//!   5      7    batch           u56 LE, 1..=BATCH_MAX (2^55): the batch the record belongs to
//!  12      4    checksum        CRC32C(log id u64 ‖ segment sequence u64 ‖ file offset u64
//!                                      ‖ bytes 0..12 ‖ payload ‖ padding)
//!  16      n    payload
//! 16+n     p    padding         zero, so the next record starts 8-aligned
//! ```
//!
//! The checksum's seed binds a record to one log, one segment and one offset: a record copied or
//! misdirected anywhere else, or a stale block of a removed segment read back in a new file, does
//! not verify. The batch number tells recovery which batch a record after damage belongs to.

use crate::types::{ENTRY_DATA_MAX, HardState, WalEntry};

/// Bytes of a record header.
pub(crate) const HEADER_LEN: u64 = 16;

/// Every record starts at a multiple of this, so a record never straddles in a way a torn
/// sector could splice into something valid-looking at a shifted offset.
pub(crate) const ALIGN: u64 = 8;

/// The largest payload: an entry's index and term plus its data.
pub(crate) const PAYLOAD_MAX: u64 = ENTRY_DATA_MAX as u64 + 16;

/// The largest batch number recovery accepts. At a million syncs a second a log reaches it after
/// a thousand years; the bound leaves the writer room to count on (up to the 7 header bytes'
/// limit, which it asserts), whatever numbers a damaged log holds.
pub(crate) const BATCH_MAX: u64 = 1 << 55;

/// The largest batch number the 7 header bytes hold.
const BATCH_ENCODABLE_MAX: u64 = (1 << 56) - 1;

/// Identifies a segment file; also rejects a file that is not ours.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"TALLYWAL";

/// The segment format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// Payload bytes of a segment header: magic, version, sealed_last, sequence, log id, previous.
const SEGMENT_HEADER_PAYLOAD: u64 = 40;

/// Where the log id sits in a segment header record (header, then magic, version, sealed_last, sequence).
const LOG_ID_AT: usize = HEADER_LEN as usize + 24;

/// Encoded size of the records every segment starts with (header then hard state).
pub(crate) const PREAMBLE_LEN: u64 = HEADER_LEN + SEGMENT_HEADER_PAYLOAD + HEADER_LEN + 24;

/// Encoded size of a batch marker; room for one is always kept free in the active segment.
pub(crate) const BATCH_END_LEN: u64 = HEADER_LEN + 16;

/// The kinds of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordType {
    /// First record of every segment: magic, version, sequence number, log id, predecessor.
    SegmentHeader = 1,
    /// A new hard state; the last one in the log wins.
    HardState = 2,
    /// A log entry. An index `<= last` replaces the suffix from there (logical truncation).
    Entry = 3,
    /// The log now starts after (index, term): every earlier entry is discarded.
    Reset = 4,
    /// Commits the records since the previous marker: recovery applies a batch only with it.
    BatchEnd = 5,
}

impl RecordType {
    fn from_byte(byte: u8) -> Option<RecordType> {
        Some(match byte {
            1 => RecordType::SegmentHeader,
            2 => RecordType::HardState,
            3 => RecordType::Entry,
            4 => RecordType::Reset,
            5 => RecordType::BatchEnd,
            _ => return None,
        })
    }
}

/// What a record's checksum is seeded with besides its offset: the log and the segment it was
/// written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The log's random id, chosen when the log was created (every segment header holds it).
    pub(crate) log_id: u64,
    /// The segment's sequence number.
    pub(crate) seq: u64,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// See [`RecordType::SegmentHeader`].
    SegmentHeader {
        /// Must match the sequence number in the file name.
        seq: u64,
        /// The log's id: the same in every segment of one log.
        log_id: u64,
        /// The sequence number of the segment this one followed when it was created (0: none).
        previous: u64,
        /// The checksum of the last record of segment `previous` (0: none): binds the sealed
        /// segment's end, so a lost write of its tail is not read as its end.
        sealed_last: u32,
    },
    /// See [`RecordType::HardState`].
    HardState(HardState),
    /// See [`RecordType::Entry`].
    Entry(WalEntry),
    /// See [`RecordType::Reset`].
    Reset {
        /// The last index the snapshot that replaced the log covers.
        index: u64,
        /// The term of that index.
        term: u64,
    },
    /// See [`RecordType::BatchEnd`].
    BatchEnd {
        /// Records of the batch in this segment (pairs with the writer's count).
        records: u64,
        /// The checksum of the previous batch marker of the log (0 for the first).
        previous: u32,
        /// CRC32C over the checksums (u32 LE) of the `records` records it commits, in order.
        chain: u32,
    },
}

/// Rounds `n` up to a multiple of [`ALIGN`].
pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// The encoded size of a record with `payload_len` payload bytes.
pub(crate) fn encoded_len(payload_len: u64) -> u64 {
    HEADER_LEN + align_up(payload_len)
}

/// A record to encode, borrowing the entry so appends do not copy payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordRef<'a> {
    /// See [`Record::SegmentHeader`].
    SegmentHeader {
        /// The segment's sequence number.
        seq: u64,
        /// The log's id.
        log_id: u64,
        /// The segment this one follows (0: none).
        previous: u64,
        /// The checksum of that segment's last record (0: none).
        sealed_last: u32,
    },
    /// See [`Record::HardState`].
    HardState(HardState),
    /// See [`Record::Entry`].
    Entry(&'a WalEntry),
    /// See [`Record::Reset`].
    Reset {
        /// The snapshot's last index.
        index: u64,
        /// The snapshot's last term.
        term: u64,
    },
    /// See [`Record::BatchEnd`].
    BatchEnd {
        /// Records of the batch in this segment.
        records: u64,
        /// Checksum of the previous batch marker.
        previous: u32,
        /// CRC32C over the checksums of the records it commits.
        chain: u32,
    },
}

impl Record {
    /// This record as a [`RecordRef`], to compare or re-encode it.
    pub(crate) fn as_ref(&self) -> RecordRef<'_> {
        match self {
            Record::SegmentHeader { seq, log_id, previous, sealed_last } => {
                RecordRef::SegmentHeader { seq: *seq, log_id: *log_id, previous: *previous, sealed_last: *sealed_last }
            }
            Record::HardState(hs) => RecordRef::HardState(*hs),
            Record::Entry(entry) => RecordRef::Entry(entry),
            Record::Reset { index, term } => RecordRef::Reset { index: *index, term: *term },
            Record::BatchEnd { records, previous, chain } => {
                RecordRef::BatchEnd { records: *records, previous: *previous, chain: *chain }
            }
        }
    }
}

impl RecordRef<'_> {
    fn record_type(&self) -> RecordType {
        match self {
            RecordRef::SegmentHeader { .. } => RecordType::SegmentHeader,
            RecordRef::HardState(_) => RecordType::HardState,
            RecordRef::Entry(_) => RecordType::Entry,
            RecordRef::Reset { .. } => RecordType::Reset,
            RecordRef::BatchEnd { .. } => RecordType::BatchEnd,
        }
    }

    /// The payload length of this record.
    pub(crate) fn payload_len(&self) -> u64 {
        match self {
            RecordRef::SegmentHeader { .. } => SEGMENT_HEADER_PAYLOAD,
            RecordRef::HardState(_) => 24,
            RecordRef::Entry(entry) => 16 + entry.data.len() as u64,
            RecordRef::Reset { .. } | RecordRef::BatchEnd { .. } => 16,
        }
    }

    /// The encoded length of this record, padding included.
    pub(crate) fn encoded_len(&self) -> u64 {
        encoded_len(self.payload_len())
    }

    /// Appends this record, as it must sit at file offset `offset` of the segment `binding`
    /// names, as part of batch `batch`, to `out`. Returns its checksum (batch markers chain them).
    pub(crate) fn encode(&self, binding: Binding, offset: u64, batch: u64, out: &mut Vec<u8>) -> u32 {
        assert_eq!(offset % ALIGN, 0, "record offset {offset} not aligned");
        assert!((1..=BATCH_ENCODABLE_MAX).contains(&batch), "batch number {batch} outside 1..={BATCH_ENCODABLE_MAX}");
        let payload_len = self.payload_len();
        assert!(payload_len <= PAYLOAD_MAX, "record payload {payload_len} > max {PAYLOAD_MAX}");
        let start = out.len();
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.push(self.record_type() as u8);
        out.extend_from_slice(&batch.to_le_bytes()[..7]);
        out.extend_from_slice(&[0; 4]); // checksum, filled in below
        match self {
            RecordRef::SegmentHeader { seq, log_id, previous, sealed_last } => {
                assert_eq!(*seq, binding.seq, "segment header for {seq} encoded into segment {}", binding.seq);
                assert_eq!(*log_id, binding.log_id, "segment header of log {log_id} encoded for {}", binding.log_id);
                out.extend_from_slice(&SEGMENT_MAGIC);
                out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
                out.extend_from_slice(&sealed_last.to_le_bytes());
                for word in [*seq, *log_id, *previous] {
                    out.extend_from_slice(&word.to_le_bytes());
                }
            }
            RecordRef::HardState(hs) => {
                for word in [hs.term, hs.vote, hs.commit] {
                    out.extend_from_slice(&word.to_le_bytes());
                }
            }
            RecordRef::Entry(entry) => {
                out.extend_from_slice(&entry.index.to_le_bytes());
                out.extend_from_slice(&entry.term.to_le_bytes());
                out.extend_from_slice(&entry.data);
            }
            RecordRef::Reset { index, term } => {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(&term.to_le_bytes());
            }
            RecordRef::BatchEnd { records, previous, chain } => {
                out.extend_from_slice(&records.to_le_bytes());
                out.extend_from_slice(&previous.to_le_bytes());
                out.extend_from_slice(&chain.to_le_bytes());
            }
        }
        out.resize(start + encoded_len(payload_len) as usize, 0);
        assert_eq!((out.len() - start) as u64, self.encoded_len(), "encoded length disagrees with encoded_len");
        let checksum = checksum(binding, offset, &out[start..]);
        out[start + 12..start + 16].copy_from_slice(&checksum.to_le_bytes());
        // Pair assertion: what we wrote must read back as itself (recovery checks it again). Past
        // BATCH_MAX recovery would refuse it, but no log gets there (see BATCH_MAX).
        debug_assert!(
            batch > BATCH_MAX
                || decode(&out[start..], binding, offset).is_ok_and(|decoded| decoded.record.as_ref() == *self
                    && decoded.len == out.len() - start
                    && decoded.batch == batch),
            "record at {offset} does not decode to itself"
        );
        checksum
    }
}

/// CRC32C over the record's binding and position, its header before the checksum, and everything
/// after it.
fn checksum(binding: Binding, offset: u64, record: &[u8]) -> u32 {
    // The binding, the position and the header go through the CRC in one call (the same value as three).
    let mut head = [0u8; 36];
    head[..8].copy_from_slice(&binding.log_id.to_le_bytes());
    head[8..16].copy_from_slice(&binding.seq.to_le_bytes());
    head[16..24].copy_from_slice(&offset.to_le_bytes());
    head[24..].copy_from_slice(&record[..12]);
    crc32c::crc32c_append(crc32c::crc32c(&head), &record[16..])
}

/// Extends a batch marker's chain with the checksum of one more record of its batch.
pub(crate) fn chain(chain: u32, checksum: u32) -> u32 {
    crc32c::crc32c_append(chain, &checksum.to_le_bytes())
}

/// One record decoded from bytes that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// The record.
    pub(crate) record: Record,
    /// The batch it belongs to.
    pub(crate) batch: u64,
    /// Its stored (and verified) checksum.
    pub(crate) checksum: u32,
    /// Its encoded length, padding included.
    pub(crate) len: usize,
}

/// Decodes the record at the start of `bytes`, which sits at file offset `offset` of the segment
/// `binding` names. A segment header is verified against the log id it holds itself (it is what
/// tells recovery the log id); the caller compares that id with the other segments'. Returns the
/// record, or why the bytes are not a valid record.
pub(crate) fn decode(bytes: &[u8], binding: Binding, offset: u64) -> Result<Decoded, String> {
    let frame = decode_frame(bytes, binding, offset)?;
    let record = parse_payload(frame.record_type, frame.payload)?;
    Ok(Decoded { record, batch: frame.batch, checksum: frame.checksum, len: frame.len })
}

/// A record whose framing and checksum verified.
struct Frame<'a> {
    record_type: RecordType,
    batch: u64,
    checksum: u32,
    payload: &'a [u8],
    len: usize,
}

/// Checks framing and checksum only: cheap rejections first, so scanning garbage is fast.
fn decode_frame(bytes: &[u8], binding: Binding, offset: u64) -> Result<Frame<'_>, String> {
    if (bytes.len() as u64) < HEADER_LEN {
        return Err(format!("record header cut short: {} of {HEADER_LEN} bytes", bytes.len()));
    }
    let Some(record_type) = RecordType::from_byte(bytes[4]) else {
        return Err(format!("invalid record type {}", bytes[4]));
    };
    let mut batch = [0u8; 8];
    batch[..7].copy_from_slice(&bytes[5..12]);
    let batch = u64::from_le_bytes(batch);
    if batch == 0 || batch > BATCH_MAX {
        return Err(format!("batch number {batch} outside 1..={BATCH_MAX}"));
    }
    let payload_len = u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
    if payload_len > PAYLOAD_MAX {
        return Err(format!("payload length {payload_len} > max {PAYLOAD_MAX}"));
    }
    let len = encoded_len(payload_len);
    if len > bytes.len() as u64 {
        return Err(format!("record of {len} bytes passes the end of the file ({} bytes left)", bytes.len()));
    }
    let record = &bytes[..len as usize];
    let mut binding = binding;
    if record_type == RecordType::SegmentHeader && payload_len == SEGMENT_HEADER_PAYLOAD {
        binding.log_id = word(record, LOG_ID_AT);
    }
    let stored = u32::from_le_bytes([record[12], record[13], record[14], record[15]]);
    let computed = checksum(binding, offset, record);
    if stored != computed {
        return Err(format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    let payload_end = (HEADER_LEN + payload_len) as usize;
    Ok(Frame {
        record_type,
        batch,
        checksum: stored,
        payload: &record[HEADER_LEN as usize..payload_end],
        len: len as usize,
    })
}

/// The little-endian u64 at byte `at` of `bytes`.
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn half(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn parse_payload(record_type: RecordType, payload: &[u8]) -> Result<Record, String> {
    let expect = |len: u64| {
        if payload.len() as u64 == len {
            Ok(())
        } else {
            Err(format!("{record_type:?} payload of {} bytes, expected {len}", payload.len()))
        }
    };
    Ok(match record_type {
        RecordType::SegmentHeader => {
            expect(SEGMENT_HEADER_PAYLOAD)?;
            if payload[..8] != SEGMENT_MAGIC {
                return Err("segment header magic is not TALLYWAL".to_owned());
            }
            let version = half(payload, 8);
            if version != FORMAT_VERSION {
                return Err(format!("segment format version {version}, this build reads {FORMAT_VERSION}"));
            }
            Record::SegmentHeader {
                seq: word(payload, 16),
                log_id: word(payload, 24),
                previous: word(payload, 32),
                sealed_last: half(payload, 12),
            }
        }
        RecordType::HardState => {
            expect(24)?;
            Record::HardState(HardState { term: word(payload, 0), vote: word(payload, 8), commit: word(payload, 16) })
        }
        RecordType::Entry => {
            if payload.len() < 16 {
                return Err(format!("entry payload of {} bytes, expected at least 16", payload.len()));
            }
            let data = payload[16..].to_vec();
            Record::Entry(WalEntry { index: word(payload, 0), term: word(payload, 8), data })
        }
        RecordType::Reset => {
            expect(16)?;
            Record::Reset { index: word(payload, 0), term: word(payload, 8) }
        }
        RecordType::BatchEnd => {
            expect(16)?;
            Record::BatchEnd { records: word(payload, 0), previous: half(payload, 8), chain: half(payload, 12) }
        }
    })
}

/// The log id a segment header at the start of `bytes` holds, read without verifying it: the best
/// guess at the log's id when the header of a log's only segment is damaged (a torn first write).
pub(crate) fn unverified_log_id(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= LOG_ID_AT + 8).then(|| word(bytes, LOG_ID_AT))
}

/// Whether `bytes` start with a segment header of format version 1 (a 24-byte payload, checksum
/// seeded with the offset only), which this build refuses with a clear message rather than
/// taking it for a torn write.
pub(crate) fn is_version_1_header(bytes: &[u8]) -> bool {
    const V1_LEN: usize = HEADER_LEN as usize + 24;
    if bytes.len() < V1_LEN || bytes[4] != RecordType::SegmentHeader as u8 || half(bytes, 0) != 24 {
        return false;
    }
    let crc = crc32c::crc32c(&0u64.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &bytes[..12]);
    let crc = crc32c::crc32c_append(crc, &bytes[16..V1_LEN]);
    crc == half(bytes, 12) && bytes[16..24] == SEGMENT_MAGIC && half(bytes, 24) == 1
}

/// A valid record found after damage, and where.
#[derive(Debug)]
pub(crate) struct Probed {
    /// Its file offset.
    pub(crate) offset: u64,
    /// The record.
    pub(crate) decoded: Decoded,
}

/// Every valid record of segment `binding` after damage at `from` (an aligned offset in `bytes`,
/// which start at file offset 0). Valid frames are followed record by record, and probed at every
/// aligned offset across bytes that do not parse, so one damaged record does not hide the ones
/// after it. Recovery uses their batch numbers to tell a torn tail (every one belongs to the
/// unfinished batch) from damage to a synced batch (a later batch follows).
pub(crate) fn records_after_damage(bytes: &[u8], binding: Binding, from: u64) -> Vec<Probed> {
    let mut found = Vec::new();
    let mut offset = align_up(from) + ALIGN;
    while offset + HEADER_LEN <= bytes.len() as u64 {
        match decode(&bytes[offset as usize..], binding, offset) {
            Ok(decoded) => {
                let len = decoded.len as u64;
                found.push(Probed { offset, decoded });
                offset += len;
            }
            Err(_) => offset += ALIGN,
        }
    }
    found
}

#[cfg(test)]
mod tests;
