//! A conformance suite every [`Disk`] implementation (and the [`Wal`] on it) must pass.
//!
//! `suite(make_disk)` runs each case on fresh storage: `make_disk(name)` must return a handle to
//! the storage called `name`, empty the first time and holding whatever earlier handles wrote
//! the next times (as a process restart would see it). [`RealDisk`](crate::RealDisk) maps the
//! name to a directory, [`FaultDisk`](crate::FaultDisk) to a shared in-memory disk. Cases panic
//! with the case name on failure.

use std::io::ErrorKind;

mod budget_disk;

pub use budget_disk::{BudgetDisk, BudgetFile};

use crate::disk::{Disk, DiskFile};
use crate::types::{HardState, Recovered, SnapshotFile, WalEntry, WalOptions};
use crate::wal::Wal;

/// Segments small enough that the cases roll many of them.
const SMALL: WalOptions = WalOptions { segment_bytes_max: 512 };

/// Runs every case of the suite; see the module documentation for `make_disk`.
pub fn suite<D: Disk>(mut make_disk: impl FnMut(&str) -> D) {
    disk_contract(&mut make_disk);
    new_log_is_empty(&mut make_disk);
    synced_appends_survive_reopen(&mut make_disk);
    unsynced_appends_are_not_recovered(&mut make_disk);
    conflicting_suffix_is_replaced(&mut make_disk);
    hard_state_is_durable_with_its_entries(&mut make_disk);
    segments_roll_and_recover_in_order(&mut make_disk);
    oversized_entry_gets_its_own_segment(&mut make_disk);
    snapshot_and_compaction_keep_the_state(&mut make_disk);
    newer_snapshot_replaces_older_file(&mut make_disk);
    replace_with_snapshot_discards_the_log(&mut make_disk);
}

/// Entries `indexes` of term `term`, with data naming index and term.
pub fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<WalEntry> {
    indexes.map(|index| WalEntry { index, term, data: format!("entry {index} term {term}").into_bytes() }).collect()
}

fn open<D: Disk>(make_disk: &mut impl FnMut(&str) -> D, name: &str, options: WalOptions) -> (Wal<D>, Recovered) {
    Wal::open(make_disk(name), options).unwrap_or_else(|error| panic!("{name}: open failed: {error}"))
}

fn disk_contract<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "disk_contract";
    let mut disk = make_disk(CASE);
    // Phase: create, write, read back.
    let mut file = disk.create("b").expect("create b");
    assert!(file.is_empty(), "{CASE}: new file not empty");
    file.append(b"hello ").expect("append");
    file.append(b"world").expect("append");
    file.write_at(0, b"J").expect("overwrite");
    file.write_at(11, b"!").expect("extend at end");
    assert_eq!(file.len(), 12, "{CASE}: length after writes");
    let mut buf = [0u8; 12];
    file.read_at(0, &mut buf).expect("read");
    assert_eq!(&buf, b"Jello world!", "{CASE}: contents");
    let error = file.read_at(10, &mut buf[..4]).expect_err("read past end");
    assert_eq!(error.kind(), ErrorKind::UnexpectedEof, "{CASE}: read past end");
    file.write_at(13, b"x").expect_err("write past end");
    file.truncate(5).expect("truncate");
    assert_eq!(file.len(), 5, "{CASE}: length after truncate");
    file.sync().expect("sync");
    drop(file);
    // Phase: directory operations.
    assert_eq!(disk.create("b").err().expect("create twice fails").kind(), ErrorKind::AlreadyExists, "{CASE}");
    assert_eq!(disk.open("missing").err().expect("open missing fails").kind(), ErrorKind::NotFound, "{CASE}");
    disk.create("a").expect("create a").append(b"A").expect("append a");
    disk.create("c").expect("create c");
    assert_eq!(disk.list().expect("list"), ["a", "b", "c"], "{CASE}: list is sorted");
    disk.rename("a", "c").expect("rename over c");
    disk.remove("b").expect("remove b");
    disk.sync_dir().expect("sync_dir");
    // Phase: a new handle (a restart) sees the synced result.
    let mut disk = make_disk(CASE);
    assert_eq!(disk.list().expect("list"), ["c"], "{CASE}: after rename and remove");
    let mut file = disk.open("c").expect("open c");
    let mut byte = [0u8; 1];
    file.read_at(0, &mut byte).expect("read c");
    assert_eq!(&byte, b"A", "{CASE}: rename replaced the target");
}

fn new_log_is_empty<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "new_log_is_empty";
    let (wal, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered, Recovered::default(), "{CASE}");
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0), "{CASE}: indexes");
    drop(wal);
    let (_, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered, Recovered::default(), "{CASE}: reopened");
}

fn synced_appends_survive_reopen<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "synced_appends_survive_reopen";
    let (mut wal, _) = open(make_disk, CASE, WalOptions::default());
    // Phase: many appends, one sync (group commit).
    for index in 1..=20 {
        wal.append(&entries(index..=index, 1)).expect("append");
    }
    wal.sync().expect("sync");
    drop(wal);
    let (mut wal, recovered) = open(make_disk, CASE, WalOptions::default());
    assert_eq!(recovered.entries, entries(1..=20, 1), "{CASE}");
    assert_eq!(recovered.tail_bytes_discarded, 0, "{CASE}: clean shutdown cuts nothing");
    // Phase: the reopened log continues where it stopped.
    assert_eq!(wal.last_index(), 20, "{CASE}: last index");
    wal.append(&entries(21..=22, 2)).expect("append after reopen");
    wal.sync().expect("sync");
    drop(wal);
    let (_, recovered) = open(make_disk, CASE, WalOptions::default());
    let mut expected = entries(1..=20, 1);
    expected.extend(entries(21..=22, 2));
    assert_eq!(recovered.entries, expected, "{CASE}: after second session");
}

fn unsynced_appends_are_not_recovered<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "unsynced_appends_are_not_recovered";
    let (mut wal, _) = open(make_disk, CASE, SMALL);
    wal.append(&entries(1..=3, 1)).expect("append");
    wal.sync().expect("sync");
    wal.append(&entries(4..=9, 1)).expect("append");
    wal.set_hard_state(HardState { term: 1, vote: 1, commit: 2 }).expect("hard state");
    drop(wal);
    let (_, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered.entries, entries(1..=3, 1), "{CASE}");
    assert_eq!(recovered.hard_state, HardState::default(), "{CASE}: hard state");
}

fn conflicting_suffix_is_replaced<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "conflicting_suffix_is_replaced";
    let (mut wal, _) = open(make_disk, CASE, SMALL);
    wal.append(&entries(1..=12, 1)).expect("append");
    wal.set_hard_state(HardState { term: 1, vote: 0, commit: 3 }).expect("hard state");
    wal.sync().expect("sync");
    // Phase: replace 4.. (spanning several small segments) with a shorter suffix of term 2.
    wal.append(&entries(4..=6, 2)).expect("replace suffix");
    assert_eq!(wal.last_index(), 6, "{CASE}: last index after replace");
    wal.sync().expect("sync");
    drop(wal);
    let (mut wal, recovered) = open(make_disk, CASE, SMALL);
    let mut expected = entries(1..=3, 1);
    expected.extend(entries(4..=6, 2));
    assert_eq!(recovered.entries, expected, "{CASE}");
    // Phase: replace again right after reopening, then extend.
    wal.append(&entries(5..=8, 3)).expect("replace again");
    wal.sync().expect("sync");
    drop(wal);
    let (_, recovered) = open(make_disk, CASE, SMALL);
    expected.truncate(4);
    expected.extend(entries(5..=8, 3));
    assert_eq!(recovered.entries, expected, "{CASE}: second replace");
}

fn hard_state_is_durable_with_its_entries<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "hard_state_is_durable_with_its_entries";
    let (mut wal, _) = open(make_disk, CASE, SMALL);
    wal.set_hard_state(HardState { term: 1, vote: 2, commit: 0 }).expect("hard state");
    wal.append(&entries(1..=5, 1)).expect("append");
    wal.set_hard_state(HardState { term: 1, vote: 2, commit: 4 }).expect("hard state");
    wal.sync().expect("sync");
    wal.set_hard_state(HardState { term: 3, vote: 0, commit: 5 }).expect("hard state");
    wal.sync().expect("sync");
    drop(wal);
    let (wal, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered.hard_state, HardState { term: 3, vote: 0, commit: 5 }, "{CASE}");
    assert_eq!(wal.hard_state(), recovered.hard_state, "{CASE}: wal keeps it");
    assert_eq!(recovered.entries, entries(1..=5, 1), "{CASE}: entries");
}

fn segments_roll_and_recover_in_order<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "segments_roll_and_recover_in_order";
    let (mut wal, _) = open(make_disk, CASE, SMALL);
    for batch in 0..10u64 {
        wal.append(&entries(batch * 10 + 1..=batch * 10 + 10, 1)).expect("append");
        wal.sync().expect("sync");
    }
    drop(wal);
    let segments = make_disk(CASE).list().expect("list").iter().filter(|name| name.ends_with(".wal")).count();
    assert!(segments > 5, "{CASE}: only {segments} segments rolled");
    let (_, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered.entries, entries(1..=100, 1), "{CASE}");
}

fn oversized_entry_gets_its_own_segment<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "oversized_entry_gets_its_own_segment";
    let (mut wal, _) = open(make_disk, CASE, SMALL);
    let big = vec![WalEntry { index: 1, term: 1, data: vec![0xAB; 3000] }];
    wal.append(&big).expect("append big into the first segment");
    wal.append(&entries(2..=4, 1)).expect("append small");
    wal.append(&[WalEntry { index: 5, term: 1, data: vec![0xCD; 5000] }]).expect("append big after a roll");
    wal.sync().expect("sync");
    drop(wal);
    let (_, recovered) = open(make_disk, CASE, SMALL);
    let mut expected = big;
    expected.extend(entries(2..=4, 1));
    expected.push(WalEntry { index: 5, term: 1, data: vec![0xCD; 5000] });
    assert_eq!(recovered.entries, expected, "{CASE}");
}

fn snapshot_and_compaction_keep_the_state<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "snapshot_and_compaction_keep_the_state";
    let (mut wal, _) = open(make_disk, CASE, SMALL);
    wal.append(&entries(1..=60, 1)).expect("append");
    wal.set_hard_state(HardState { term: 1, vote: 1, commit: 50 }).expect("hard state");
    wal.sync().expect("sync");
    let segments_before = make_disk(CASE).list().expect("list").len();
    let snapshot = SnapshotFile { index: 40, term: 1, data: b"state at 40".to_vec() };
    wal.save_snapshot(&snapshot).expect("snapshot");
    wal.compact(40).expect("compact");
    let segments_after = make_disk(CASE).list().expect("list").len();
    assert!(segments_after < segments_before, "{CASE}: compaction removed nothing");
    assert_eq!(wal.first_index(), 41, "{CASE}: first index");
    drop(wal);
    let (mut wal, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered.snapshot, Some(snapshot), "{CASE}: snapshot");
    assert_eq!(recovered.entries, entries(41..=60, 1), "{CASE}: entries after the snapshot");
    assert_eq!(recovered.hard_state.commit, 50, "{CASE}: hard state");
    // Phase: the compacted log keeps working.
    wal.append(&entries(61..=62, 2)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (_, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered.entries.len(), 22, "{CASE}: after appending to the compacted log");
}

fn newer_snapshot_replaces_older_file<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "newer_snapshot_replaces_older_file";
    let (mut wal, _) = open(make_disk, CASE, SMALL);
    wal.append(&entries(1..=10, 1)).expect("append");
    wal.sync().expect("sync");
    wal.save_snapshot(&SnapshotFile { index: 3, term: 1, data: b"three".to_vec() }).expect("snapshot 3");
    let newest = SnapshotFile { index: 7, term: 1, data: b"seven".to_vec() };
    wal.save_snapshot(&newest).expect("snapshot 7");
    let names = make_disk(CASE).list().expect("list");
    let snapshots: Vec<&String> = names.iter().filter(|name| name.starts_with("snapshot-")).collect();
    assert_eq!(snapshots.len(), 1, "{CASE}: older snapshot files removed: {names:?}");
    drop(wal);
    let (_, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered.snapshot, Some(newest), "{CASE}");
    assert_eq!(recovered.entries, entries(8..=10, 1), "{CASE}: entries");
}

fn replace_with_snapshot_discards_the_log<D: Disk>(make_disk: &mut impl FnMut(&str) -> D) {
    const CASE: &str = "replace_with_snapshot_discards_the_log";
    let (mut wal, _) = open(make_disk, CASE, SMALL);
    wal.append(&entries(1..=30, 1)).expect("append");
    wal.sync().expect("sync");
    // Phase: a leader's snapshot behind our last index, from a newer term, replaces everything.
    let snapshot = SnapshotFile { index: 20, term: 4, data: b"leader state".to_vec() };
    wal.replace_with_snapshot(&snapshot).expect("replace");
    assert_eq!((wal.first_index(), wal.last_index()), (21, 20), "{CASE}: indexes");
    let segments = make_disk(CASE).list().expect("list").iter().filter(|name| name.ends_with(".wal")).count();
    assert_eq!(segments, 1, "{CASE}: old segments removed");
    drop(wal);
    let (mut wal, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered.snapshot.as_ref(), Some(&snapshot), "{CASE}: snapshot");
    assert!(recovered.entries.is_empty(), "{CASE}: no older entries");
    // Phase: the log continues after the snapshot.
    wal.append(&entries(21..=25, 4)).expect("append after snapshot");
    wal.sync().expect("sync");
    let ahead = SnapshotFile { index: 100, term: 5, data: b"far ahead".to_vec() };
    wal.replace_with_snapshot(&ahead).expect("replace ahead of the log");
    wal.append(&entries(101..=101, 5)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let (_, recovered) = open(make_disk, CASE, SMALL);
    assert_eq!(recovered.snapshot, Some(ahead), "{CASE}: second snapshot");
    assert_eq!(recovered.entries, entries(101..=101, 5), "{CASE}: entries after it");
}
