//! Findings 2-4 of issue 14: recovery tells a torn tail from damage to a synced batch, reports what
//! a cut tail may have held, binds records to their log and segment, and refuses a lost segment.

use tally_wal::testing::entries;
use tally_wal::{Disk, DiskFile, FaultDisk, HardState, Recovered, SnapshotFile, Wal, WalError, WalOptions};

const ONE_SEGMENT: WalOptions = WalOptions { segment_bytes_max: 1 << 16 };
const SMALL: WalOptions = WalOptions { segment_bytes_max: 512 };
const TINY: WalOptions = WalOptions { segment_bytes_max: 256 };

fn open(disk: &FaultDisk, options: WalOptions) -> (Wal<FaultDisk>, Recovered) {
    Wal::open(disk.clone(), options).unwrap_or_else(|error| panic!("open: {error}"))
}

fn segment_names(disk: &FaultDisk) -> Vec<String> {
    disk.file_names().into_iter().filter(|name| name.ends_with(".wal")).collect()
}

/// The offset just past the last record of segment `name`: records are 8-aligned and end in a
/// non-zero byte within their last 8 bytes (a marker's payload), followed by preallocated zeros.
fn used_end(disk: &FaultDisk, name: &str) -> u64 {
    let bytes = disk.read_file(name).expect("segment");
    let last = bytes.iter().rposition(|byte| *byte != 0).expect("records");
    (last as u64 + 1).next_multiple_of(8)
}

#[test]
fn damage_in_a_marker_followed_by_a_complete_batch_refuses_to_start() {
    // Phase: three synced batches; remember where the second one's marker ends.
    let disk = FaultDisk::new(1);
    let (mut wal, _) = open(&disk, ONE_SEGMENT);
    wal.append(&entries(1..=3, 1)).expect("append");
    wal.sync().expect("sync");
    wal.append(&entries(4..=6, 1)).expect("append");
    wal.sync().expect("sync");
    let name = segment_names(&disk)[0].clone();
    let second_end = used_end(&disk, &name);
    wal.append(&entries(7..=9, 1)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    // Phase: damage in the last 8 bytes of batch 2's marker (its payload), with batch 3 whole after it. Both
    // batches were acknowledged: cutting them as a torn tail would lose them silently.
    disk.flip_bit(&name, second_end - 8, 0);
    let error = Wal::open(disk.clone(), ONE_SEGMENT).map(|_| ()).expect_err("damage to a synced batch");
    let WalError::Corrupt { file, reason, .. } = &error else { panic!("not Corrupt: {error}") };
    assert_eq!(*file, name);
    assert!(reason.contains("later batch follows"), "{reason}");
}

#[test]
fn damage_in_the_last_batch_is_cut_and_its_hard_state_reported() {
    // Phase: a synced batch, then a last batch with a vote and entries, whose marker is damaged.
    let disk = FaultDisk::new(2);
    let (mut wal, _) = open(&disk, ONE_SEGMENT);
    let before = HardState { term: 1, vote: 1, commit: 2 };
    wal.append(&entries(1..=3, 1)).expect("append");
    wal.set_hard_state(before).expect("hard state");
    wal.sync().expect("sync");
    let voted = HardState { term: 4, vote: 3, commit: 2 };
    wal.set_hard_state(voted).expect("hard state");
    wal.append(&entries(4..=5, 4)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let name = segment_names(&disk)[0].clone();
    disk.flip_bit(&name, used_end(&disk, &name) - 8, 0);
    // Phase: the damage cannot be told from a torn write, so the batch is cut; the node learns that it may
    // have been acknowledged, and the vote it may have cast.
    let (wal, recovered) = open(&disk, ONE_SEGMENT);
    assert_eq!(recovered.entries, entries(1..=3, 1));
    assert_eq!(recovered.hard_state, before);
    assert!(recovered.tail_may_be_acknowledged);
    assert_eq!(recovered.tail_hard_state, Some(voted));
    // Phase: nothing is cut the second time, but until the node settles its recovery, it is reported again.
    drop(wal);
    let (mut wal, again) = open(&disk, ONE_SEGMENT);
    assert!(again.tail_may_be_acknowledged, "a restart forgot the unsettled recovery");
    // The marker keeps the term of what was lost, so the next fence is past it again.
    assert_eq!((again.tail_bytes_discarded, again.tail_hard_state.map(|h| h.term)), (0, Some(voted.term)));
    wal.settle_recovery().expect("settle");
    drop(wal);
    let (_, settled) = open(&disk, ONE_SEGMENT);
    assert!(!settled.tail_may_be_acknowledged);
}

#[test]
fn a_stale_batch_of_a_removed_segment_does_not_verify_in_a_new_one() {
    // Phase: one-entry batches of equal size, so every segment has the same layout; compaction removes the
    // oldest segments.
    let disk = FaultDisk::new(3);
    let (mut wal, _) = open(&disk, SMALL);
    for index in 1..=20 {
        wal.append(&entries(index..=index, 1)).expect("append");
        wal.sync().expect("sync");
    }
    let oldest = segment_names(&disk)[0].clone();
    let stale = disk.read_file(&oldest).expect("oldest segment");
    wal.save_snapshot(&SnapshotFile { index: 15, term: 1, data: b"kv".to_vec() }).expect("snapshot");
    wal.compact(15).expect("compact");
    drop(wal);
    assert!(!segment_names(&disk).contains(&oldest), "compaction kept the oldest segment");
    // Phase: the removed segment's batch at the offset where the active segment ends reappears there (a stale
    // block, a misdirected write). Its checksums were seeded with another segment's sequence number.
    let mut disk_handle = disk.clone();
    let active = segment_names(&disk).pop().expect("active segment");
    let end = used_end(&disk, &active);
    let block = &stale[end as usize..end as usize + 80];
    assert!(block.iter().any(|byte| *byte != 0), "the removed segment holds no batch at {end}");
    let mut file = disk_handle.open(&active).expect("open");
    file.write_at(end, block).expect("write");
    file.sync().expect("sync");
    let (_, recovered) = open(&disk, SMALL);
    assert_eq!(recovered.entries, entries(16..=20, 1), "a stale record was taken for part of the log");
}

#[test]
fn a_lost_segment_is_refused_naming_its_sequence_number() {
    // Phase: entries in the first segment, then segments that hold only hard states (a node voting through
    // many terms), then more entries. No entry is missing if one of the middle segments is lost.
    let mut disk = FaultDisk::new(4);
    let (mut wal, _) = open(&disk, TINY);
    wal.append(&entries(1..=2, 1)).expect("append");
    wal.sync().expect("sync");
    for term in 2..=12 {
        wal.set_hard_state(HardState { term, vote: 1, commit: 0 }).expect("hard state");
        wal.sync().expect("sync");
    }
    wal.append(&entries(3..=3, 12)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let names = segment_names(&disk);
    assert!(names.len() >= 5, "too few segments: {names:?}");
    disk.remove(&names[2]).expect("remove");
    disk.sync_dir().expect("sync dir");
    let error = Wal::open(disk.clone(), TINY).map(|_| ()).expect_err("a lost segment");
    let WalError::Corrupt { file, reason, .. } = &error else { panic!("not Corrupt: {error}") };
    assert_eq!(*file, names[3]);
    assert!(reason.contains("segment 3 is missing"), "{reason}");
}

#[test]
fn a_gap_left_by_compaction_is_accepted() {
    // Phase: a snapshot covers the oldest segments; a crash persisted the removal of the second one but not
    // of the first (directory operations reach the disk in any order).
    let mut disk = FaultDisk::new(5);
    let (mut wal, _) = open(&disk, SMALL);
    for batch in 0..10 {
        wal.append(&entries(batch * 3 + 1..=batch * 3 + 3, 1)).expect("append");
        wal.sync().expect("sync");
    }
    let snapshot = SnapshotFile { index: 20, term: 1, data: b"kv".to_vec() };
    wal.save_snapshot(&snapshot).expect("snapshot");
    drop(wal);
    let names = segment_names(&disk);
    disk.remove(&names[1]).expect("remove");
    disk.sync_dir().expect("sync dir");
    let (_, recovered) = open(&disk, SMALL);
    assert_eq!(recovered.snapshot, Some(snapshot));
    assert_eq!(recovered.entries, entries(21..=30, 1));
}

#[test]
fn a_gap_left_by_replace_with_snapshot_is_accepted() {
    // Phase: the new segment with its reset is durable; the removal of the old segments is not.
    let mut disk = FaultDisk::new(6);
    let (mut wal, _) = open(&disk, SMALL);
    wal.append(&entries(1..=30, 1)).expect("append");
    wal.sync().expect("sync");
    let old = segment_names(&disk);
    assert!(old.len() >= 3, "too few segments: {old:?}");
    // Syncs: snapshot file, directory, new segment, directory; the fifth (after the removals) fails.
    disk.fail_sync_after(4);
    let snapshot = SnapshotFile { index: 40, term: 2, data: b"leader".to_vec() };
    wal.replace_with_snapshot(&snapshot).expect_err("the last directory fsync fails");
    drop(wal);
    disk.crash();
    // Phase: of the old segments only the oldest stays (removed newest first, persisted in any order).
    for name in &old[1..] {
        disk.remove(name).expect("remove");
    }
    disk.sync_dir().expect("sync dir");
    let (_, recovered) = open(&disk, SMALL);
    assert_eq!(recovered.snapshot, Some(snapshot));
    assert!(recovered.entries.is_empty());
}

/// The start of each record of segment `name`: records run from offset 0, each `16 + payload` bytes
/// rounded up to 8, until the preallocated zeros.
fn record_starts(disk: &FaultDisk, name: &str) -> Vec<u64> {
    let bytes = disk.read_file(name).expect("segment");
    let mut starts = Vec::new();
    let mut offset = 0usize;
    while offset + 16 <= bytes.len() && bytes[offset..offset + 16].iter().any(|byte| *byte != 0) {
        starts.push(offset as u64);
        let payload = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        offset += (16 + payload).next_multiple_of(8);
    }
    starts
}

#[test]
fn a_lost_tail_of_a_sealed_segment_is_refused() {
    // Phase: one batch large enough to roll, so its first records end the first segment and the rest (with
    // its marker) start the second; then another batch.
    let mut disk = FaultDisk::new(5);
    let (mut wal, _) = open(&disk, SMALL);
    wal.append(&entries(1..=12, 1)).expect("append");
    wal.sync().expect("sync");
    wal.append(&entries(13..=13, 1)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let names = segment_names(&disk);
    assert!(names.len() >= 2, "the batch did not roll: {names:?}");
    // Phase: the write of the first segment's last record is lost (a misdirected write leaves zeros where
    // it was meant to go). Without a binding, the sealed segment reads as ending one record earlier: here
    // recovery then trips over the hole in the entries elsewhere, but where the lost record replaced entries
    // (a truncation) the batch was replayed without it, silently (crash test seed 9511908413787930801).
    let starts = record_starts(&disk, &names[0]);
    let last = *starts.last().expect("records");
    let end = used_end(&disk, &names[0]);
    let mut file = disk.open(&names[0]).expect("open");
    file.write_at(last, &vec![0; (end - last) as usize]).expect("write");
    file.sync().expect("sync");
    let error = Wal::open(disk.clone(), SMALL).map(|_| ()).expect_err("a lost tail of a sealed segment");
    let WalError::Corrupt { file, reason, .. } = &error else { panic!("not Corrupt: {error}") };
    assert_eq!(*file, names[0]);
    assert!(reason.contains("was lost"), "{reason}");
}
