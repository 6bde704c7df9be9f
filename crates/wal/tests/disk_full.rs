//! A full disk (`ENOSPC`) never poisons the log nor loses a synced batch: the log stops taking what
//! needs new space, says so (`has_space`, `WalError::NoSpace`), and resumes by itself when space returns.

use tally_wal::testing::{BudgetDisk, entries};
use tally_wal::{FaultDisk, SnapshotFile, Wal, WalEntry, WalError, WalOptions};

/// Small segments, so a few entries fill one.
const OPTIONS: WalOptions = WalOptions { segment_bytes_max: 4096 };

fn spare_names(disk: &FaultDisk) -> Vec<String> {
    disk.file_names().into_iter().filter(|name| name.ends_with(".spare")).collect()
}

/// Appends and syncs one entry at a time from `next` on until `stop` says so; returns the next index.
fn fill(
    wal: &mut Wal<BudgetDisk<FaultDisk>>,
    mut next: u64,
    stop: impl Fn(&Wal<BudgetDisk<FaultDisk>>) -> bool,
) -> u64 {
    while !stop(wal) {
        wal.append(&entries(next..=next, 1)).expect("append");
        wal.sync().expect("sync");
        next += 1;
        assert!(next < 10_000, "the condition never came");
    }
    next
}

#[test]
fn a_spare_is_ready_before_the_roll_needs_it() {
    // Phase: fill half a segment: the sync that crosses the middle prepares the spare.
    let disk = BudgetDisk::new(FaultDisk::new(1));
    let (mut wal, _) = Wal::open(disk.clone(), OPTIONS).expect("open");
    assert!(spare_names(disk.inner()).is_empty(), "a new log needs no spare yet");
    let next = fill(&mut wal, 1, |_| !spare_names(disk.inner()).is_empty());
    // Phase: from now on the disk is full, yet the roll into the spare succeeds: it never allocates.
    disk.set_limit(Some(disk.used_bytes()));
    let segments = |disk: &FaultDisk| disk.file_names().iter().filter(|name| name.ends_with(".wal")).count();
    let before = segments(disk.inner());
    let next = fill(&mut wal, next, |_| segments(disk.inner()) > before);
    assert!(!wal.is_poisoned());
    // Phase: the next spare could not be made; the log says so, but nothing is lost.
    let last = next - 1;
    let next = fill(&mut wal, next, |wal| !wal.has_space());
    assert!(spare_names(disk.inner()).is_empty(), "the partial spare was removed: {:?}", disk.inner().file_names());
    assert!(wal.no_space_reason().is_some_and(|reason| reason.contains("no space")), "{:?}", wal.no_space_reason());
    disk.inner().crash();
    let (_, recovered) = Wal::open(disk.clone(), OPTIONS).expect("recover");
    assert_eq!(recovered.entries, entries(1..=next - 1, 1), "last before the roll was {last}");
}

#[test]
fn a_full_disk_refuses_a_roll_with_nothing_written_and_resumes_when_space_returns() {
    // Phase: fill the disk: the spare cannot be made, appends that need a new segment fail.
    let disk = BudgetDisk::new(FaultDisk::new(2));
    let (mut wal, _) = Wal::open(disk.clone(), OPTIONS).expect("open");
    disk.set_limit(Some(disk.used_bytes()));
    let mut next = fill(&mut wal, 1, |wal| !wal.has_space());
    let error = loop {
        match wal.append(&entries(next..=next + 2, 1)) {
            Ok(()) => {
                wal.sync().expect("an append that fits the active segment syncs");
                next += 3;
            }
            Err(error) => break error,
        }
        assert!(next < 10_000, "the segment never filled");
    };
    assert!(matches!(error, WalError::NoSpace { .. }), "{error}");
    assert!(!error.is_poisoning(), "{error}");
    assert!(!wal.is_poisoned());
    assert_eq!(wal.last_index(), next - 1, "nothing of the refused append was taken");
    // A hard state still fits (the room a batch marker needs is always kept), and syncs.
    let mut hard_state = wal.hard_state();
    hard_state.term += 1;
    hard_state.commit = next - 1;
    if wal.set_hard_state(hard_state).is_ok() {
        wal.sync().expect("hard state sync");
    }
    assert!(!wal.ensure_space().expect("retry while full"), "still full");
    // Phase: space returns; the retry prepares the spare and the same append now succeeds.
    disk.set_limit(None);
    assert!(wal.ensure_space().expect("retry"), "space is back");
    assert!(wal.has_space());
    wal.append(&entries(next..=next + 2, 1)).expect("append after space returned");
    wal.sync().expect("sync");
    let last = next + 2;
    // Phase: everything synced survives a crash, the refused append was never half written.
    disk.inner().crash();
    let (_, recovered) = Wal::open(disk.clone(), OPTIONS).expect("recover");
    assert_eq!(recovered.entries, entries(1..=last, 1));
    assert_eq!(recovered.tail_bytes_discarded, 0, "no torn bytes: the refused append wrote nothing");
}

#[test]
fn an_oversized_entry_on_a_full_disk_fails_with_nothing_changed() {
    // Phase: an entry larger than a segment needs its own, larger segment: allocation fails.
    let disk = BudgetDisk::new(FaultDisk::new(3));
    let (mut wal, _) = Wal::open(disk.clone(), OPTIONS).expect("open");
    wal.append(&entries(1..=3, 1)).expect("append");
    wal.sync().expect("sync");
    disk.set_limit(Some(disk.used_bytes() + 1000));
    let big = WalEntry { index: 4, term: 1, data: vec![7; 3 * OPTIONS.segment_bytes_max as usize] };
    let error = wal.append(std::slice::from_ref(&big)).expect_err("no room for a big segment");
    assert!(matches!(error, WalError::NoSpace { .. }), "{error}");
    assert_eq!(wal.last_index(), 3);
    assert!(spare_names(disk.inner()).is_empty(), "{:?}", disk.inner().file_names());
    // Phase: with space it goes through, and survives a crash.
    disk.set_limit(None);
    wal.append(std::slice::from_ref(&big)).expect("append with space");
    wal.sync().expect("sync");
    disk.inner().crash();
    let (_, recovered) = Wal::open(disk.clone(), OPTIONS).expect("recover");
    assert_eq!(recovered.entries.len(), 4);
    assert_eq!(recovered.entries[3], big);
}

#[test]
fn a_snapshot_on_a_full_disk_removes_its_temporary_file_and_poisons_nothing() {
    // Phase: the snapshot file does not fit.
    let disk = BudgetDisk::new(FaultDisk::new(4));
    let (mut wal, _) = Wal::open(disk.clone(), OPTIONS).expect("open");
    wal.append(&entries(1..=5, 1)).expect("append");
    wal.sync().expect("sync");
    disk.set_limit(Some(disk.used_bytes() + 100));
    let snapshot = SnapshotFile { index: 5, term: 1, data: vec![1; 4000] };
    let error = wal.save_snapshot(&snapshot).expect_err("snapshot does not fit");
    assert!(matches!(error, WalError::NoSpace { .. }), "{error}");
    assert!(!wal.is_poisoned());
    assert_eq!(wal.snapshot_index(), 0);
    let names = disk.inner().file_names();
    assert!(!names.iter().any(|name| name.starts_with("snapshot-")), "temporary file left: {names:?}");
    // The log still takes entries.
    wal.append(&entries(6..=6, 1)).expect("append after a failed snapshot");
    wal.sync().expect("sync");
    // Phase: with space the snapshot is saved and compaction works.
    disk.set_limit(None);
    wal.save_snapshot(&snapshot).expect("snapshot with space");
    wal.compact(5).expect("compact");
    disk.inner().crash();
    let (_, recovered) = Wal::open(disk.clone(), OPTIONS).expect("recover");
    assert_eq!(recovered.snapshot.map(|s| s.index), Some(5));
    assert_eq!(recovered.entries, entries(6..=6, 1));
}

#[test]
fn leftover_spares_are_removed_at_open() {
    // Phase: a crash leaves a spare (maybe half renamed or half written); it is never read as log.
    let disk = BudgetDisk::new(FaultDisk::new(5));
    let (mut wal, _) = Wal::open(disk.clone(), OPTIONS).expect("open");
    let next = fill(&mut wal, 1, |_| !spare_names(disk.inner()).is_empty());
    drop(wal);
    disk.inner().crash_process();
    let leftover = spare_names(disk.inner());
    assert_eq!(leftover.len(), 1);
    // Phase: reopen: the leftover is gone (or replaced by a fresh one), the log is intact.
    let (mut wal, recovered) = Wal::open(disk.clone(), OPTIONS).expect("reopen");
    assert_eq!(recovered.entries, entries(1..=next - 1, 1));
    wal.append(&entries(next..=next + 40, 1)).expect("append across a roll");
    wal.sync().expect("sync");
    disk.inner().crash();
    let (_, recovered) = Wal::open(disk.clone(), OPTIONS).expect("recover");
    assert_eq!(recovered.entries, entries(1..=next + 40, 1));
}

#[test]
fn random_budgets_never_poison_nor_lose_a_synced_entry() {
    for seed in 0..40u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut random = move |bound: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % bound
        };
        let disk = BudgetDisk::new(FaultDisk::new(seed));
        let (mut wal, _) = Wal::open(disk.clone(), OPTIONS).expect("open");
        let mut synced = 0u64;
        for _ in 0..200 {
            match random(10) {
                0 => disk.set_limit(None),
                1 => disk.set_limit(Some(disk.used_bytes() + random(6000))),
                2 => {
                    let _ = wal.ensure_space();
                }
                _ => {
                    let count = 1 + random(8);
                    let first = wal.last_index() + 1;
                    if wal.append(&entries(first..=first + count - 1, 1)).is_ok() {
                        wal.sync().unwrap_or_else(|error| panic!("seed {seed}: sync failed: {error}"));
                        synced = first + count - 1;
                    }
                }
            }
            assert!(!wal.is_poisoned(), "seed {seed}: poisoned by a full disk");
        }
        disk.set_limit(None);
        disk.inner().crash();
        let (_, recovered) = Wal::open(disk.clone(), OPTIONS).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(recovered.entries, entries(1..=synced, 1), "seed {seed}");
    }
}
