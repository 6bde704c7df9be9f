//! Recovery of logs no correct writer produces, but whose checksums pass: what a fuzzer (fuzz/, target
//! `wal_record`) or a damaged disk can hand it. Each must be refused as `Corrupt`, never accepted into a state
//! that trips an assertion later.

use super::*;
use crate::fault_disk::FaultDisk;
use crate::record::{self, Binding, PREAMBLE_LEN};
use crate::segment::{SEQ_MAX, segment_name};
use crate::types::{INDEX_MAX, SnapshotFile, WalEntry, WalOptions};
use crate::wal::Wal;

/// The log id of the logs these tests build by hand.
const LOG: u64 = 0x0010_6001;

/// One segment holding `records` after its header, committed as one batch (batch 1), laid out as the writer does.
fn segment(seq: u64, records: &[Record]) -> Vec<u8> {
    let binding = Binding { log_id: LOG, seq };
    let mut all = vec![Record::SegmentHeader { seq, log_id: LOG, previous: 0, sealed_last: 0 }];
    all.extend_from_slice(records);
    let mut out = Vec::new();
    let mut chain = 0;
    for record in &all {
        let offset = out.len() as u64;
        chain = record::chain(chain, record.as_ref().encode(binding, offset, 1, &mut out));
    }
    let marker = Record::BatchEnd { records: all.len() as u64, previous: 0, chain };
    let offset = out.len() as u64;
    marker.as_ref().encode(binding, offset, 1, &mut out);
    out
}

/// A disk holding segment 1 with `records`, and `snapshot` if given, all durable.
fn disk_with(records: &[Record], snapshot: Option<SnapshotFile>) -> FaultDisk {
    disk_with_segment(1, records, snapshot)
}

/// A disk holding segment `seq` with `records`, and `snapshot` if given, all durable.
fn disk_with_segment(seq: u64, records: &[Record], snapshot: Option<SnapshotFile>) -> FaultDisk {
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create(&segment_name(seq)).expect("create segment");
    file.append(&segment(seq, records)).expect("write segment");
    file.sync().expect("sync segment");
    if let Some(snapshot) = snapshot {
        assert!(snapshot::write_atomic(&mut disk, &snapshot).is_ok(), "write snapshot");
    }
    disk.sync_dir().expect("sync dir");
    disk
}

fn entry(index: u64, term: u64) -> Record {
    Record::Entry(WalEntry { index, term, data: vec![index as u8] })
}

fn hard_state(commit: u64) -> Record {
    Record::HardState(HardState { term: 1, vote: 1, commit })
}

const OPTIONS: WalOptions = WalOptions { segment_bytes_max: 4096 };

#[test]
fn a_hard_state_committing_past_the_last_entry_is_corrupt() {
    // Found by the `wal_record` fuzz target: a hard state with commit 134217727 over six entries was recovered,
    // and the first sync after it failed the writer's assertion "commit > last index".
    let disk = disk_with(&[hard_state(3), entry(1, 1), entry(2, 1)], None);
    let error = Wal::open(disk, OPTIONS).map(|_| ()).expect_err("commit past the log");
    let WalError::Corrupt { file, offset, reason } = error else { panic!("not Corrupt: {error}") };
    assert_eq!((file.as_str(), offset), (segment_name(1).as_str(), PREAMBLE_LEN - 40), "names the hard state record");
    assert!(reason.contains("commits index 3 but the log ends at index 2"), "{reason}");
}

#[test]
fn a_hard_state_committing_the_last_entry_is_recovered() {
    let disk = disk_with(&[hard_state(2), entry(1, 1), entry(2, 1)], None);
    let (mut wal, recovered) = Wal::open(disk, OPTIONS).expect("a sound log");
    assert_eq!(recovered.hard_state.commit, 2);
    assert_eq!(recovered.entries.len(), 2);
    wal.append(&[WalEntry { index: 3, term: 1, data: Vec::new() }]).expect("append");
    wal.sync().expect("the first write after recovery syncs");
}

#[test]
fn a_commit_past_a_snapshot_that_replaces_the_log_is_corrupt() {
    // The snapshot at 2 disagrees with the log (term 9, the log has 1), so it replaces the log: the log then ends
    // at 2, below the commit index 3 the hard state claims. Raft never commits an entry a later snapshot contradicts.
    let snapshot = SnapshotFile { index: 2, term: 9, data: b"state".to_vec() };
    let disk = disk_with(&[hard_state(3), entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)], Some(snapshot));
    let error = Wal::open(disk, OPTIONS).map(|_| ()).expect_err("commit past the snapshot");
    assert!(matches!(&error, WalError::Corrupt { reason, .. } if reason.contains("commits index 3")), "{error}");
}

#[test]
fn a_segment_sequence_number_without_room_after_it_is_corrupt() {
    // Found by the `wal_record` fuzz target: a segment named segment-18446744073709551615.wal overflowed the
    // next sequence number ("attempt to add with overflow"; in a release build it would wrap to 0).
    for seq in [u64::MAX, SEQ_MAX + 1] {
        let disk = disk_with_segment(seq, &[hard_state(1), entry(1, 1)], None);
        let error = Wal::open(disk, OPTIONS).map(|_| ()).expect_err("no room after the sequence number");
        let WalError::Corrupt { file, offset, reason } = error else { panic!("not Corrupt: {error}") };
        assert_eq!((file, offset), (segment_name(seq), 0));
        assert!(reason.contains("past the largest a log reaches"), "{reason}");
    }
    // The largest accepted one recovers, and the log still rolls past it.
    let disk = disk_with_segment(SEQ_MAX, &[hard_state(1), entry(1, 1)], None);
    let (mut wal, recovered) = Wal::open(disk, WalOptions { segment_bytes_max: 256 }).expect("room after it");
    assert_eq!(recovered.entries.len(), 1);
    for index in 2..10 {
        wal.append(&[WalEntry { index, term: 1, data: vec![7; 64] }]).expect("append");
        wal.sync().expect("sync, rolling segments");
    }
}

#[test]
fn an_index_without_room_after_it_is_corrupt() {
    // Indexes near u64::MAX overflowed `last + 1` in replay (and `LogIndex::next` in the Raft core above).
    let cases: [&[Record]; 3] = [
        &[hard_state(0), entry(INDEX_MAX + 1, 1)],
        &[hard_state(0), entry(u64::MAX, 1)],
        &[hard_state(0), Record::Reset { index: u64::MAX, term: 1 }, entry(1, 1)],
    ];
    for records in cases {
        let error = Wal::open(disk_with(records, None), OPTIONS).map(|_| ()).expect_err("no room after the index");
        assert!(matches!(&error, WalError::Corrupt { reason, .. } if reason.contains("past the largest")), "{error}");
    }
    // A snapshot file past the bound is not a valid snapshot: skipped, so the reset to 5 has nothing under it.
    let snapshot = SnapshotFile { index: u64::MAX, term: 1, data: Vec::new() };
    let error = Wal::open(disk_with(&[hard_state(0), Record::Reset { index: 5, term: 1 }], Some(snapshot)), OPTIONS)
        .map(|_| ())
        .expect_err("no valid snapshot");
    let WalError::Corrupt { reason, .. } = error else { panic!("not Corrupt: {error}") };
    assert!(reason.contains("there is no valid snapshot"), "{reason}");
    assert!(reason.contains("past the largest the log holds"), "{reason} names the skipped snapshot");
}

#[test]
#[should_panic(expected = "past the largest index")]
fn appending_past_the_largest_index_panics() {
    let snapshot = SnapshotFile { index: INDEX_MAX, term: 1, data: Vec::new() };
    let (mut wal, recovered) = Wal::open(disk_with(&[hard_state(0)], Some(snapshot)), OPTIONS)
        .map_err(|error| error.to_string())
        .expect("a log whose snapshot ends at INDEX_MAX");
    assert_eq!(recovered.snapshot.map(|snapshot| snapshot.index), Some(INDEX_MAX));
    let _ = wal.append(&[WalEntry { index: INDEX_MAX + 1, term: 1, data: Vec::new() }]);
}

#[test]
fn a_reset_disagreeing_with_the_snapshot_at_its_index_is_replaced() {
    // Found by the `wal_record` fuzz target: the log was reset to (30, term 2308) and the snapshot ends at
    // (30, term 4). Recovery kept the log as agreeing, the writer then appended entry 31 at the snapshot's term
    // 4, and the next recovery refused to start ("entry 31 has term 4 < previous term 2308"). Raft's rule: the
    // log does not hold the snapshot's last entry with its term, so the snapshot replaces it.
    let snapshot = SnapshotFile { index: 30, term: 4, data: b"state".to_vec() };
    let disk = disk_with(&[hard_state(0), Record::Reset { index: 30, term: 2308 }], Some(snapshot));
    let (mut wal, recovered) = Wal::open(disk.clone(), OPTIONS).expect("the snapshot replaces the log");
    assert!(recovered.entries.is_empty());
    let next = WalEntry { index: 31, term: 4, data: b"next".to_vec() };
    wal.append(std::slice::from_ref(&next)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (_, again) = Wal::open(disk, OPTIONS).expect("the write after recovery recovers");
    assert_eq!(again.entries, [next]);

    // A reset with the snapshot's own term agrees, and keeps what follows it.
    let snapshot = SnapshotFile { index: 30, term: 4, data: b"state".to_vec() };
    let records = [hard_state(0), Record::Reset { index: 30, term: 4 }, entry(31, 4)];
    let (_, recovered) = Wal::open(disk_with(&records, Some(snapshot)), OPTIONS).expect("agrees");
    assert_eq!(recovered.entries.len(), 1);
}

#[test]
fn entries_after_the_snapshot_with_a_lower_term_are_replaced() {
    // Found by the `wal_record` fuzz target: the log restarts at entry 8 (its older segments compacted away, so
    // the term of entry 7 is unknown) with term 1, under a snapshot ending at (7, term 5). Recovery kept entries
    // whose terms go down from the snapshot's, which no Raft log has. The log cannot hold the snapshot's last
    // entry, so the snapshot replaces it.
    let snapshot = SnapshotFile { index: 7, term: 5, data: b"state".to_vec() };
    let disk = disk_with(&[hard_state(0), entry(8, 1), entry(9, 1)], Some(snapshot));
    let (mut wal, recovered) = Wal::open(disk.clone(), OPTIONS).expect("the snapshot replaces the log");
    assert!(recovered.entries.is_empty(), "{:?}", recovered.entries);
    assert_eq!(wal.last_index(), 7);
    let next = WalEntry { index: 8, term: 5, data: b"next".to_vec() };
    wal.append(std::slice::from_ref(&next)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    assert_eq!(Wal::open(disk, OPTIONS).expect("reopen").1.entries, [next]);

    // The same log with entries of the snapshot's term or later agrees, and keeps them.
    let snapshot = SnapshotFile { index: 7, term: 5, data: b"state".to_vec() };
    let disk = disk_with(&[hard_state(0), entry(8, 5), entry(9, 6)], Some(snapshot));
    assert_eq!(Wal::open(disk, OPTIONS).expect("agrees").1.entries.len(), 2);
}

#[test]
fn a_reset_to_index_0_with_a_term_is_corrupt() {
    // Found by the `wal_record` fuzz target: a log reset to (0, term 4) with no snapshot was recovered as empty;
    // the writer then appended entry 1 at term 0, and the next recovery refused it ("entry 1 has term 0 <
    // previous term 4"). A reset to the empty prefix has term 0, as the writer asserts.
    let disk = disk_with(&[hard_state(0), Record::Reset { index: 0, term: 4 }], None);
    let error = Wal::open(disk, OPTIONS).map(|_| ()).expect_err("a term for index 0");
    let WalError::Corrupt { offset, reason, .. } = error else { panic!("not Corrupt: {error}") };
    assert_eq!(offset, PREAMBLE_LEN, "names the reset record");
    assert!(reason.contains("reset to index 0 with term 4"), "{reason}");

    // The reset a joining node's first snapshot writes, to (0, term 0), is sound.
    let disk = disk_with(&[hard_state(0), Record::Reset { index: 0, term: 0 }, entry(1, 1)], None);
    assert_eq!(Wal::open(disk, OPTIONS).expect("a reset to the empty prefix").1.entries.len(), 1);
}

#[test]
fn a_version_1_log_is_refused_with_a_clear_message() {
    // A version 1 segment header: 24-byte payload, checksum seeded with the offset only. Its checksum fails
    // under version 2's rules, so without the check the only segment of a v1 log would be cut as a torn write.
    let mut header = vec![24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    header.extend_from_slice(b"TALLYWAL");
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&1u64.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&0u64.to_le_bytes()), &header[..12]);
    let crc = crc32c::crc32c_append(crc, &header[16..]);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create(&segment_name(1)).expect("create");
    file.append(&header).expect("write");
    file.append(&[0; 256]).expect("preallocate");
    file.sync().expect("sync");
    disk.sync_dir().expect("sync dir");
    let error = Wal::open(disk, OPTIONS).map(|_| ()).expect_err("a v1 log");
    let WalError::Corrupt { offset, reason, .. } = error else { panic!("not Corrupt: {error}") };
    assert_eq!(offset, 0);
    assert!(reason.contains("format version 1"), "{reason}");
}

#[test]
fn a_marker_that_does_not_chain_its_batch_is_corrupt() {
    // Records that verify one by one but were not written as one batch (a marker whose chain or count does not
    // match the records before it) are damage the checksums alone cannot see.
    let binding = Binding { log_id: LOG, seq: 1 };
    let records =
        [Record::SegmentHeader { seq: 1, log_id: LOG, previous: 0, sealed_last: 0 }, hard_state(0), entry(1, 1)];
    let mut bytes = Vec::new();
    for record in &records {
        let offset = bytes.len() as u64;
        record.as_ref().encode(binding, offset, 1, &mut bytes);
    }
    let offset = bytes.len() as u64;
    Record::BatchEnd { records: 3, previous: 0, chain: 12345 }.as_ref().encode(binding, offset, 1, &mut bytes);
    let mut disk = FaultDisk::new(1);
    let mut file = disk.create(&segment_name(1)).expect("create");
    file.append(&bytes).expect("write");
    file.sync().expect("sync");
    disk.sync_dir().expect("sync dir");
    let error = Wal::open(disk, OPTIONS).map(|_| ()).expect_err("a marker chaining other records");
    assert!(matches!(&error, WalError::Corrupt { reason, .. } if reason.contains("chains")), "{error}");
}
