//! Segment files: names, and the scan that verifies every record of one segment.

use crate::error::{WalError, corrupt};
use crate::record::{self, Record};

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
}

/// Everything recovery learns from one segment file.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    /// The file name.
    pub(crate) name: String,
    /// The sequence number from the name (and the header, which must agree).
    pub(crate) seq: u64,
    /// The valid records, in file order; the first is the segment header.
    pub(crate) records: Vec<ScannedRecord>,
    /// Offset just past the last non-zero byte (at least the end of the last valid record): a
    /// torn tail or damage lies between the two.
    pub(crate) used_end: u64,
}

/// Verifies every record of segment `name` (contents `bytes`).
///
/// Records must run from offset 0, header first, followed only by zeros (the preallocated
/// space). Non-zero bytes after the valid records are a torn write only in the last segment, and
/// only if what follows them could all belong to the one unfinished batch (no batch marker
/// followed by more records); anything else is corruption.
///
/// # Errors
/// [`WalError::Corrupt`] naming the file and the offset of the first bad record.
pub(crate) fn scan(name: &str, seq: u64, bytes: &[u8], is_last: bool) -> Result<SegmentScan, WalError> {
    let mut records = Vec::new();
    let mut offset = 0u64;
    let mut first_bad = None;
    while offset < bytes.len() as u64 {
        match record::decode(&bytes[offset as usize..], offset) {
            Ok((record, len)) => {
                check_placement(name, seq, offset, &record, records.is_empty())?;
                let end = offset + len as u64;
                records.push(ScannedRecord { offset, end, record });
                offset = end;
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
    if used_end > valid_end {
        let reason =
            first_bad.unwrap_or_else(|| unreachable!("non-zero bytes after {valid_end} in {name} but no bad record"));
        if !is_last {
            return Err(corrupt(name, valid_end, format!("{reason} (only the last segment may end in a torn write)")));
        }
        if let Some(at) = record::record_after_batch_end(bytes, valid_end) {
            return Err(corrupt(
                name,
                valid_end,
                format!("{reason}; a later batch follows (record at offset {at}), so this is damage, not a torn tail"),
            ));
        }
    }
    if !is_last && records.is_empty() {
        return Err(corrupt(name, 0, "sealed segment holds no records"));
    }
    Ok(SegmentScan { name: name.to_owned(), seq, records, used_end })
}

fn check_placement(name: &str, seq: u64, offset: u64, record: &Record, first: bool) -> Result<(), WalError> {
    match (record, first) {
        (Record::SegmentHeader { seq: header_seq }, true) if *header_seq == seq => Ok(()),
        (Record::SegmentHeader { seq: header_seq }, true) => {
            Err(corrupt(name, offset, format!("segment header says sequence {header_seq}, file name says {seq}")))
        }
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
    use crate::types::WalEntry;

    fn segment(seq: u64, records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut all = vec![Record::SegmentHeader { seq }];
        all.extend_from_slice(records);
        for record in &all {
            let offset = out.len() as u64;
            record.as_ref().encode(offset, &mut out);
        }
        out.resize(out.len() + 256, 0);
        out
    }

    fn entry(index: u64) -> Record {
        Record::Entry(WalEntry { index, term: 1, data: vec![7; 10] })
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
        let bytes = segment(3, &[entry(1), entry(2), Record::BatchEnd { records: 3 }]);
        let scan = scan("s", 3, &bytes, false).expect("clean segment");
        assert_eq!(scan.records.len(), 4);
        assert_eq!(scan.records.last().map(|r| r.end), Some(scan.used_end));
    }

    #[test]
    fn garbage_after_the_records_is_a_torn_tail_only_in_the_last_segment() {
        let mut bytes = segment(3, &[entry(1)]);
        let end = segment(3, &[entry(1)]).len() - 256;
        bytes[end + 3] = 0xAB;
        let scan_last = scan("s", 3, &bytes, true).expect("torn tail in the last segment");
        assert_eq!(scan_last.records.last().map(|r| r.end), Some(end as u64));
        assert_eq!(scan_last.used_end, end as u64 + 4);
        let error = scan("s", 3, &bytes, false).expect_err("sealed segment");
        assert!(matches!(error, WalError::Corrupt { offset, .. } if offset == end as u64), "{error}");
    }

    #[test]
    fn damage_followed_by_a_later_batch_is_corruption() {
        let batch_end = Record::BatchEnd { records: 1 };
        let mut bytes = segment(1, &[entry(1), batch_end.clone(), entry(2), batch_end.clone(), entry(3)]);
        let first_entry = record::encoded_len(24);
        bytes[first_entry as usize + 20] ^= 1;
        let error = scan("seg", 1, &bytes, true).expect_err("corruption");
        let WalError::Corrupt { file, offset, reason } = error else { panic!("wrong error") };
        assert_eq!((file.as_str(), offset), ("seg", first_entry));
        assert!(reason.contains("later batch follows"), "{reason}");
    }

    #[test]
    fn damage_in_the_last_batch_is_a_torn_tail() {
        // A write reordered by the disk: the end of the unfinished batch reached the platter,
        // a sector in its middle did not. Nothing after it proves the batch was ever synced.
        let batch_end = Record::BatchEnd { records: 1 };
        let mut bytes = segment(1, &[entry(1), batch_end.clone(), entry(2), entry(3), batch_end]);
        let second_entry = record::encoded_len(24) + record::encoded_len(26) + record::encoded_len(8);
        bytes[second_entry as usize + 20] ^= 1;
        let scan = scan("seg", 1, &bytes, true).expect("torn tail");
        assert_eq!(scan.records.last().map(|r| r.end), Some(second_entry));
    }

    #[test]
    fn header_must_match_the_file_name() {
        let bytes = segment(1, &[]);
        assert!(matches!(scan("seg", 2, &bytes, true), Err(WalError::Corrupt { offset: 0, .. })));
    }
}
