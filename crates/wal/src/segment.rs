//! Segment files: names, and the scan that verifies every record of one segment.

use crate::error::{WalError, corrupt};
use crate::record::{self, Binding, Decoded, FORMAT_VERSION, Record};

/// A segment of the log as the writer tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Sequence number, strictly increasing along the log; also in the file name and header.
    pub(crate) seq: u64,
    /// The file name, derived from `seq`.
    pub(crate) name: String,
    /// The live entries `(first, last)` this segment holds: entries later records did not
    /// replace. `None` when it holds none. Compaction removes a segment only when every live
    /// entry in it is covered by a snapshot.
    pub(crate) live: Option<(u64, u64)>,
}

impl Segment {
    pub(crate) fn new(seq: u64) -> Segment {
        Segment { seq, name: segment_name(seq), live: None }
    }
}

/// The largest segment sequence number recovery accepts. A log rolls at most one segment per write, so no log
/// reaches it; the bound leaves the writer room to count segments up without overflowing, whatever file names a
/// damaged directory holds.
pub(crate) const SEQ_MAX: u64 = u64::MAX / 2;

/// `segment-<seq, 20 digits>.wal`: zero padding makes bytewise name order the log order.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("segment-{seq:020}.wal")
}

/// The sequence number of a segment file name, `None` if `name` is not one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One verified record and where it sits.
#[derive(Debug)]
pub(crate) struct ScannedRecord {
    /// File offset of the record.
    pub(crate) offset: u64,
    /// File offset just past the record (and its padding).
    pub(crate) end: u64,
    /// The decoded record.
    pub(crate) record: Record,
    /// The batch it belongs to.
    pub(crate) batch: u64,
    /// Its checksum, which the batch marker chains.
    pub(crate) checksum: u32,
}

impl ScannedRecord {
    fn new(offset: u64, decoded: Decoded) -> ScannedRecord {
        let end = offset + decoded.len as u64;
        ScannedRecord { offset, end, record: decoded.record, batch: decoded.batch, checksum: decoded.checksum }
    }

    /// The batch open after this record: the next one after a marker, else its own.
    pub(crate) fn open_batch_after(&self) -> u64 {
        match self.record {
            Record::BatchEnd { .. } => self.batch + 1,
            _ => self.batch,
        }
    }
}

/// What recovery knows before it scans a segment, from the segments before it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanContext {
    /// The log id the earlier segments hold; `None` for the first segment scanned.
    pub(crate) log_id: Option<u64>,
    /// The batch open at the end of the previous segment; `None` when unknown (the first segment
    /// scanned, or one after a gap in the sequence numbers).
    pub(crate) open_batch: Option<u64>,
}

/// Everything recovery learns from one segment file.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    /// The file name.
    pub(crate) name: String,
    /// The sequence number from the name (and the header, which must agree).
    pub(crate) seq: u64,
    /// The log id from the header; `None` when the header is not valid (only the last segment may
    /// have a torn header).
    pub(crate) log_id: Option<u64>,
    /// The sequence number of the segment this one followed when it was created, from the header.
    pub(crate) previous: Option<u64>,
    /// The checksum of that segment's last record, from the header.
    pub(crate) sealed_last: Option<u32>,
    /// The valid records, in file order; the first is the segment header.
    pub(crate) records: Vec<ScannedRecord>,
    /// Offset just past the last non-zero byte (at least the end of the last valid record): a
    /// torn tail or damage lies between the two.
    pub(crate) used_end: u64,
    /// Valid records of the unfinished batch found after damage (last segment only): cut with the
    /// torn tail, but recovery reports the hard state they hold.
    pub(crate) after_damage: Vec<ScannedRecord>,
}

/// Verifies every record of segment `name` (contents `bytes`).
///
/// Records must run from offset 0, header first, followed only by zeros (the preallocated
/// space). Non-zero bytes after the valid records are a torn write only in the last segment, and
/// only if every valid record after them belongs to the batch that was open at the damage (the
/// one unfinished batch); a record of a later batch proves the damaged batch was synced, so that
/// is corruption.
///
/// # Errors
/// [`WalError::Corrupt`] naming the file and the offset of the first bad record.
pub(crate) fn scan(
    name: &str,
    seq: u64,
    bytes: &[u8],
    is_last: bool,
    context: ScanContext,
) -> Result<SegmentScan, WalError> {
    if record::is_version_1_header(bytes) {
        let reason = format!(
            "segment format version 1; this build reads only version {FORMAT_VERSION} and does not convert \
             (see FORMAT.md: no production log uses version 1)"
        );
        return Err(corrupt(name, 0, reason));
    }
    let mut records: Vec<ScannedRecord> = Vec::new();
    let mut log_id = context.log_id;
    let mut previous = None;
    let mut sealed_last = None;
    let mut offset = 0u64;
    let mut first_bad = None;
    while offset < bytes.len() as u64 {
        let binding = Binding { log_id: log_id.unwrap_or(0), seq };
        match record::decode(&bytes[offset as usize..], binding, offset) {
            Ok(decoded) => {
                check_placement(name, seq, offset, &decoded.record, records.is_empty(), context.log_id)?;
                if let Record::SegmentHeader {
                    log_id: header_log_id,
                    previous: header_previous,
                    sealed_last: header_last,
                    ..
                } = decoded.record
                {
                    log_id = Some(header_log_id);
                    previous = Some(header_previous);
                    sealed_last = Some(header_last);
                }
                let scanned = ScannedRecord::new(offset, decoded);
                offset = scanned.end;
                records.push(scanned);
            }
            Err(reason) => {
                first_bad = Some(reason);
                break;
            }
        }
    }
    let valid_end = offset;
    let used_end =
        bytes[valid_end as usize..].iter().rposition(|b| *b != 0).map_or(valid_end, |i| valid_end + i as u64 + 1);
    let mut after_damage = Vec::new();
    if used_end > valid_end {
        let reason =
            first_bad.unwrap_or_else(|| unreachable!("non-zero bytes after {valid_end} in {name} but no bad record"));
        if !is_last {
            return Err(corrupt(name, valid_end, format!("{reason} (only the last segment may end in a torn write)")));
        }
        let log_id = log_id.or_else(|| record::unverified_log_id(bytes)).unwrap_or(0);
        let open_batch = records.last().map(ScannedRecord::open_batch_after).or(context.open_batch);
        after_damage = torn_tail(name, bytes, Binding { log_id, seq }, valid_end, open_batch, &reason)?;
    }
    if !is_last && records.is_empty() {
        return Err(corrupt(name, 0, "sealed segment holds no records"));
    }
    Ok(SegmentScan { name: name.to_owned(), seq, log_id, previous, sealed_last, records, used_end, after_damage })
}

/// Classifies damage at `valid_end` of the last segment: a torn tail if every valid record after
/// it belongs to `open_batch`, the batch open at the damage (unknown: the batch of the first valid
/// record after it). The writer writes a batch only after the previous one's sync returned, so a
/// record of a later batch proves the damaged bytes were synced. Returns the records of the open
/// batch found after the damage.
fn torn_tail(
    name: &str,
    bytes: &[u8],
    binding: Binding,
    valid_end: u64,
    open_batch: Option<u64>,
    reason: &str,
) -> Result<Vec<ScannedRecord>, WalError> {
    let found = record::records_after_damage(bytes, binding, valid_end);
    let Some(open_batch) = open_batch.or_else(|| found.first().map(|probed| probed.decoded.batch)) else {
        return Ok(Vec::new());
    };
    if let Some(later) = found.iter().find(|probed| probed.decoded.batch > open_batch) {
        let reason = format!(
            "{reason}; a later batch follows (a record of batch {} at offset {}, the damaged batch is {open_batch}), \
             so this is damage to a synced batch, not a torn tail",
            later.decoded.batch, later.offset
        );
        return Err(corrupt(name, valid_end, reason));
    }
    Ok(found
        .into_iter()
        .filter(|probed| probed.decoded.batch == open_batch)
        .map(|probed| ScannedRecord::new(probed.offset, probed.decoded))
        .collect())
}

fn check_placement(
    name: &str,
    seq: u64,
    offset: u64,
    record: &Record,
    first: bool,
    log_id: Option<u64>,
) -> Result<(), WalError> {
    match (record, first) {
        (Record::SegmentHeader { seq: header_seq, .. }, true) if *header_seq != seq => {
            Err(corrupt(name, offset, format!("segment header says sequence {header_seq}, file name says {seq}")))
        }
        (Record::SegmentHeader { log_id: header_log_id, .. }, true) => match log_id {
            Some(expected) if expected != *header_log_id => Err(corrupt(
                name,
                offset,
                format!("segment of another log: log id {header_log_id:#018x}, the log's is {expected:#018x}"),
            )),
            _ => Ok(()),
        },
        (Record::SegmentHeader { .. }, false) => {
            Err(corrupt(name, offset, "segment header in the middle of a segment"))
        }
        (_, true) => Err(corrupt(name, offset, "segment does not start with a segment header")),
        (_, false) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BATCH_END_LEN;
    use crate::types::WalEntry;

    const LOG: u64 = 77;

    /// Segment `seq` holding its header and `records`, batches numbered from 1 (a marker closes one).
    fn segment(seq: u64, records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut all = vec![Record::SegmentHeader { seq, log_id: LOG, previous: seq - 1, sealed_last: 0 }];
        all.extend_from_slice(records);
        let mut batch = 1;
        for record in &all {
            let offset = out.len() as u64;
            record.as_ref().encode(Binding { log_id: LOG, seq }, offset, batch, &mut out);
            if matches!(record, Record::BatchEnd { .. }) {
                batch += 1;
            }
        }
        out.resize(out.len() + 256, 0);
        out
    }

    fn entry(index: u64) -> Record {
        Record::Entry(WalEntry { index, term: 1, data: vec![7; 10] })
    }

    fn batch_end(records: u64) -> Record {
        Record::BatchEnd { records, previous: 0, chain: 0 }
    }

    const HEADER_END: u64 = record::PREAMBLE_LEN - record::HEADER_LEN - 24;
    const ENTRY_LEN: u64 = record::HEADER_LEN + 16 + 16;

    fn context() -> ScanContext {
        ScanContext::default()
    }

    #[test]
    fn names_sort_in_sequence_order() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name("segment-1.wal"), None);
        assert_eq!(parse_segment_name("snapshot-00000000000000000001.snap"), None);
    }

    #[test]
    fn clean_segment_ends_at_the_zeros() {
        let bytes = segment(3, &[entry(1), entry(2), batch_end(3)]);
        let scan = scan("s", 3, &bytes, false, context()).expect("clean segment");
        assert_eq!(scan.records.len(), 4);
        assert_eq!(scan.records.last().map(|r| r.end), Some(scan.used_end));
        assert_eq!((scan.log_id, scan.previous), (Some(LOG), Some(2)));
    }

    #[test]
    fn garbage_after_the_records_is_a_torn_tail_only_in_the_last_segment() {
        let mut bytes = segment(3, &[entry(1)]);
        let end = segment(3, &[entry(1)]).len() - 256;
        bytes[end + 3] = 0xAB;
        let scan_last = scan("s", 3, &bytes, true, context()).expect("torn tail in the last segment");
        assert_eq!(scan_last.records.last().map(|r| r.end), Some(end as u64));
        assert_eq!(scan_last.used_end, end as u64 + 4);
        let error = scan("s", 3, &bytes, false, context()).expect_err("sealed segment");
        assert!(matches!(error, WalError::Corrupt { offset, .. } if offset == end as u64), "{error}");
    }

    #[test]
    fn damage_followed_by_a_later_batch_is_corruption() {
        let mut bytes = segment(1, &[entry(1), batch_end(2), entry(2), batch_end(1), entry(3)]);
        bytes[HEADER_END as usize + 20] ^= 1;
        let error = scan("seg", 1, &bytes, true, context()).expect_err("corruption");
        let WalError::Corrupt { file, offset, reason } = error else { panic!("wrong error") };
        assert_eq!((file.as_str(), offset), ("seg", HEADER_END));
        assert!(reason.contains("later batch follows"), "{reason}");
    }

    #[test]
    fn damage_in_a_marker_followed_by_one_complete_batch_is_corruption() {
        // Finding 2 of issue 14: damage in batch k's marker, then the complete batch k+1 and nothing after it.
        // Version 1 took this for a torn tail (no marker followed by more records) and cut both batches.
        let mut bytes = segment(1, &[entry(1), batch_end(2), entry(2), batch_end(1)]);
        let marker = HEADER_END + ENTRY_LEN;
        bytes[marker as usize + 20] ^= 1;
        let error = scan("seg", 1, &bytes, true, context()).expect_err("corruption");
        assert!(matches!(&error, WalError::Corrupt { offset, .. } if *offset == marker), "{error}");
    }

    #[test]
    fn damage_in_the_last_batch_is_a_torn_tail() {
        // A write reordered by the disk: the end of the unfinished batch reached the platter,
        // a sector in its middle did not. Nothing after it belongs to a later batch.
        let mut bytes = segment(1, &[entry(1), batch_end(2), entry(2), entry(3), batch_end(2)]);
        let second_entry = HEADER_END + ENTRY_LEN + BATCH_END_LEN;
        bytes[second_entry as usize + 20] ^= 1;
        let scan = scan("seg", 1, &bytes, true, context()).expect("torn tail");
        assert_eq!(scan.records.last().map(|r| r.end), Some(second_entry));
        let found: Vec<u64> = scan.after_damage.iter().map(|record| record.offset).collect();
        assert_eq!(found, [second_entry + ENTRY_LEN, second_entry + 2 * ENTRY_LEN], "the rest of the open batch");
    }

    #[test]
    fn header_must_match_the_file_name_and_the_log() {
        // The header's checksum is seeded with the sequence number of its file: in another file it is damage.
        let bytes = segment(1, &[entry(1), batch_end(2)]);
        assert!(matches!(scan("seg", 2, &bytes, false, context()), Err(WalError::Corrupt { offset: 0, .. })));
        let other_log = ScanContext { log_id: Some(LOG + 1), open_batch: None };
        let error = scan("seg", 1, &bytes, true, other_log).expect_err("another log's segment");
        assert!(error.to_string().contains("segment of another log"), "{error}");
    }
}
