//! Record framing: the byte layout of one log record (see `FORMAT.md`).
//!
//! ```text
//! offset  size  field
//!   0      4    payload_length  u32 LE, <= PAYLOAD_MAX
//!   4      1    record_type     1..=5
//!   5      7    reserved        zero
//!  12      4    checksum        CRC32C(file offset u64 LE ‖ bytes 0..12 ‖ payload ‖ padding)
//!  16      n    payload
//! 16+n     p    padding         zero, so the next record starts 8-aligned
//! ```

use crate::types::{ENTRY_DATA_MAX, HardState, WalEntry};

/// Bytes of a record header.
pub(crate) const HEADER_LEN: u64 = 16;

/// Every record starts at a multiple of this, so a record never straddles in a way a torn
/// sector could splice into something valid-looking at a shifted offset.
pub(crate) const ALIGN: u64 = 8;

/// The largest payload: an entry's index and term plus its data.
pub(crate) const PAYLOAD_MAX: u64 = ENTRY_DATA_MAX as u64 + 16;

/// Identifies a segment file; also rejects a file that is not ours.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"TALLYWAL";

/// The segment format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Encoded size of the records every segment starts with (header then hard state).
pub(crate) const PREAMBLE_LEN: u64 = HEADER_LEN + 24 + HEADER_LEN + 24;

/// Encoded size of a batch marker; room for one is always kept free in the active segment.
pub(crate) const BATCH_END_LEN: u64 = HEADER_LEN + 8;

/// The kinds of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordType {
    /// First record of every segment: magic, version, sequence number.
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

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// See [`RecordType::SegmentHeader`].
    SegmentHeader {
        /// Must match the sequence number in the file name.
        seq: u64,
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
        /// Records in the batch this marker commits (pairs with the writer's count).
        records: u64,
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
        /// Records in the batch.
        records: u64,
    },
}

impl Record {
    /// This record as a [`RecordRef`], to compare or re-encode it.
    pub(crate) fn as_ref(&self) -> RecordRef<'_> {
        match self {
            Record::SegmentHeader { seq } => RecordRef::SegmentHeader { seq: *seq },
            Record::HardState(hs) => RecordRef::HardState(*hs),
            Record::Entry(entry) => RecordRef::Entry(entry),
            Record::Reset { index, term } => RecordRef::Reset { index: *index, term: *term },
            Record::BatchEnd { records } => RecordRef::BatchEnd { records: *records },
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
            RecordRef::SegmentHeader { .. } | RecordRef::HardState(_) => 24,
            RecordRef::Entry(entry) => 16 + entry.data.len() as u64,
            RecordRef::Reset { .. } => 16,
            RecordRef::BatchEnd { .. } => 8,
        }
    }

    /// The encoded length of this record, padding included.
    pub(crate) fn encoded_len(&self) -> u64 {
        encoded_len(self.payload_len())
    }

    /// Appends this record, as it must sit at file offset `offset`, to `out`.
    pub(crate) fn encode(&self, offset: u64, out: &mut Vec<u8>) {
        assert_eq!(offset % ALIGN, 0, "record offset {offset} not aligned");
        let payload_len = self.payload_len();
        assert!(payload_len <= PAYLOAD_MAX, "record payload {payload_len} > max {PAYLOAD_MAX}");
        let start = out.len();
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.push(self.record_type() as u8);
        out.extend_from_slice(&[0; 7]);
        out.extend_from_slice(&[0; 4]); // checksum, filled in below
        match self {
            RecordRef::SegmentHeader { seq } => {
                out.extend_from_slice(&SEGMENT_MAGIC);
                out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&seq.to_le_bytes());
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
            RecordRef::BatchEnd { records } => out.extend_from_slice(&records.to_le_bytes()),
        }
        out.resize(start + encoded_len(payload_len) as usize, 0);
        assert_eq!((out.len() - start) as u64, self.encoded_len(), "encoded length disagrees with encoded_len");
        let checksum = checksum(offset, &out[start..]);
        out[start + 12..start + 16].copy_from_slice(&checksum.to_le_bytes());
        // Pair assertion: what we wrote must read back as itself (recovery checks it again).
        debug_assert!(
            decode(&out[start..], offset)
                .is_ok_and(|(record, len)| record.as_ref() == *self && len == out.len() - start),
            "record at {offset} does not decode to itself"
        );
    }
}

/// CRC32C over the record's position, its header before the checksum, and everything after it.
fn checksum(offset: u64, record: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&offset.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &record[..12]);
    crc32c::crc32c_append(crc, &record[16..])
}

/// Decodes the record at the start of `bytes`, which sits at file offset `offset`. Returns the
/// record and its encoded length, or why the bytes are not a valid record.
pub(crate) fn decode(bytes: &[u8], offset: u64) -> Result<(Record, usize), String> {
    let (record_type, payload, len) = decode_frame(bytes, offset)?;
    let record = parse_payload(record_type, payload)?;
    Ok((record, len))
}

/// Checks framing and checksum only: cheap rejections first, so scanning garbage is fast.
fn decode_frame(bytes: &[u8], offset: u64) -> Result<(RecordType, &[u8], usize), String> {
    if (bytes.len() as u64) < HEADER_LEN {
        return Err(format!("record header cut short: {} of {HEADER_LEN} bytes", bytes.len()));
    }
    let Some(record_type) = RecordType::from_byte(bytes[4]) else {
        return Err(format!("invalid record type {}", bytes[4]));
    };
    if bytes[5..12].iter().any(|byte| *byte != 0) {
        return Err("reserved header bytes are not zero".to_owned());
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
    let stored = u32::from_le_bytes([record[12], record[13], record[14], record[15]]);
    let computed = checksum(offset, record);
    if stored != computed {
        return Err(format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    let payload_end = (HEADER_LEN + payload_len) as usize;
    Ok((record_type, &record[HEADER_LEN as usize..payload_end], len as usize))
}

fn word(payload: &[u8], i: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&payload[i * 8..i * 8 + 8]);
    u64::from_le_bytes(bytes)
}

fn parse_payload(record_type: RecordType, payload: &[u8]) -> Result<Record, String> {
    let expect = |len: usize| {
        if payload.len() == len {
            Ok(())
        } else {
            Err(format!("{record_type:?} payload of {} bytes, expected {len}", payload.len()))
        }
    };
    Ok(match record_type {
        RecordType::SegmentHeader => {
            expect(24)?;
            if payload[..8] != SEGMENT_MAGIC {
                return Err("segment header magic is not TALLYWAL".to_owned());
            }
            let version = u32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]]);
            if version != FORMAT_VERSION {
                return Err(format!("segment format version {version}, this build reads {FORMAT_VERSION}"));
            }
            Record::SegmentHeader { seq: word(payload, 2) }
        }
        RecordType::HardState => {
            expect(24)?;
            Record::HardState(HardState { term: word(payload, 0), vote: word(payload, 1), commit: word(payload, 2) })
        }
        RecordType::Entry => {
            if payload.len() < 16 {
                return Err(format!("entry payload of {} bytes, expected at least 16", payload.len()));
            }
            let data = payload[16..].to_vec();
            Record::Entry(WalEntry { index: word(payload, 0), term: word(payload, 1), data })
        }
        RecordType::Reset => {
            expect(16)?;
            Record::Reset { index: word(payload, 0), term: word(payload, 1) }
        }
        RecordType::BatchEnd => {
            expect(8)?;
            Record::BatchEnd { records: word(payload, 0) }
        }
    })
}

/// Evidence that damage at `from` (an aligned offset in `bytes`, which starts at file offset 0)
/// is not a torn tail: the offset of a valid record that follows a valid batch marker after the
/// damage. A torn write can only damage the last, unfinished batch (the one after it is written
/// only once it was synced), so a complete batch marker followed by more records proves the
/// damaged bytes were once synced. `None` when everything valid after the damage could still be
/// the one unfinished batch.
///
/// Valid frames are followed record by record, and probed at every aligned offset across bytes
/// that do not parse, so one damaged record does not hide the ones after it.
pub(crate) fn record_after_batch_end(bytes: &[u8], from: u64) -> Option<u64> {
    let mut seen_batch_end = false;
    let mut offset = align_up(from) + ALIGN;
    while offset + HEADER_LEN <= bytes.len() as u64 {
        match decode_frame(&bytes[offset as usize..], offset) {
            Ok((record_type, _, len)) => {
                if seen_batch_end {
                    return Some(offset);
                }
                seen_batch_end = record_type == RecordType::BatchEnd;
                offset += len as u64;
            }
            Err(_) => offset += ALIGN,
        }
    }
    None
}

#[cfg(test)]
mod tests;
