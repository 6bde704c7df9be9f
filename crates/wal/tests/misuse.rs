//! Programmer errors are assertion failures, not errors: each of these must panic before
//! anything is written.

use tally_wal::testing::entries;
use tally_wal::{FaultDisk, HardState, SnapshotFile, Wal, WalOptions};

fn wal_with(indexes: std::ops::RangeInclusive<u64>, commit: u64) -> Wal<FaultDisk> {
    let (mut wal, _) = Wal::open(FaultDisk::new(1), WalOptions { segment_bytes_max: 4096 }).expect("open");
    wal.append(&entries(indexes, 2)).expect("append");
    wal.set_hard_state(HardState { term: 2, vote: 1, commit }).expect("hard state");
    wal.sync().expect("sync");
    wal
}

#[test]
#[should_panic(expected = "leaves a gap")]
fn append_with_a_gap_panics() {
    wal_with(1..=3, 0).append(&entries(5..=5, 2)).ok();
}

#[test]
#[should_panic(expected = "replaces committed entries")]
fn replacing_a_committed_entry_panics() {
    wal_with(1..=5, 3).append(&entries(3..=3, 3)).ok();
}

#[test]
#[should_panic(expected = "append term 1 < term 2")]
fn appending_an_older_term_panics() {
    wal_with(1..=5, 0).append(&entries(4..=4, 1)).ok();
}

#[test]
#[should_panic(expected = "not consecutive")]
fn non_consecutive_batch_panics() {
    let mut batch = entries(4..=5, 2);
    batch[1].index = 7;
    wal_with(1..=3, 0).append(&batch).ok();
}

#[test]
#[should_panic(expected = "the log has 2")]
fn snapshot_with_the_wrong_term_panics() {
    wal_with(1..=5, 4).save_snapshot(&SnapshotFile { index: 4, term: 9, data: Vec::new() }).ok();
}

#[test]
#[should_panic(expected = "past the snapshot")]
fn compacting_past_the_snapshot_panics() {
    let mut wal = wal_with(1..=5, 4);
    wal.save_snapshot(&SnapshotFile { index: 2, term: 2, data: Vec::new() }).expect("snapshot");
    wal.compact(3).ok();
}

#[test]
#[should_panic(expected = "commit 9 > last index 5")]
fn commit_past_the_last_index_panics_at_sync() {
    let mut wal = wal_with(1..=5, 0);
    wal.set_hard_state(HardState { term: 2, vote: 1, commit: 9 }).expect("hard state");
    wal.sync().ok();
}

#[test]
#[should_panic(expected = "vote changed within term 2")]
fn changing_the_vote_within_a_term_panics() {
    wal_with(1..=1, 0).set_hard_state(HardState { term: 2, vote: 3, commit: 0 }).ok();
}
