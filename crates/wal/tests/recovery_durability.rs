//! Finding 1 of issue 14: recovery must not trust the page cache. After a process crash (no power
//! loss) the files may hold bytes that never reached the disk: a batch whose fsync failed (Linux
//! marks its pages clean, so a later fsync skips them) or a segment whose creation was never made
//! durable. `Wal::open` must make durable everything it returns before it returns, so a power loss
//! after it cannot take back what the node already acted on.

use tally_wal::testing::entries;
use tally_wal::{FaultDisk, Recovered, Wal, WalEntry, WalOptions};

const ONE_SEGMENT: WalOptions = WalOptions { segment_bytes_max: 1 << 16 };
const SMALL: WalOptions = WalOptions { segment_bytes_max: 512 };

fn open(disk: &FaultDisk, options: WalOptions) -> (Wal<FaultDisk>, Recovered) {
    Wal::open(disk.clone(), options).unwrap_or_else(|error| panic!("open: {error}"))
}

/// A log holding `1..=5` synced and `6..=8` written but with a failed fsync, after a process crash.
fn failed_sync_then_process_crash(seed: u64, options: WalOptions) -> FaultDisk {
    let disk = FaultDisk::new(seed);
    let (mut wal, _) = open(&disk, options);
    wal.append(&entries(1..=5, 1)).expect("append");
    wal.sync().expect("sync");
    wal.append(&entries(6..=8, 1)).expect("append");
    disk.fail_sync_after(0);
    assert!(wal.sync().is_err(), "seed {seed}: the injected fsync failure");
    drop(wal);
    disk.crash_process();
    disk
}

#[test]
fn a_power_loss_after_recovery_returns_what_recovery_returned() {
    for seed in 0..8 {
        // Phase: the restarted process reads the failed batch back from the page cache.
        let disk = failed_sync_then_process_crash(seed, ONE_SEGMENT);
        let (wal, first) = open(&disk, ONE_SEGMENT);
        assert_eq!(first.entries, entries(1..=8, 1), "seed {seed}: the page cache held the whole batch");
        drop(wal);
        // Phase: a power loss after recovery. What recovery returned (and the node acted on) must still be there.
        disk.crash();
        let (_, second) = open(&disk, ONE_SEGMENT);
        assert_eq!(second.entries, first.entries, "seed {seed}: the power loss took back recovered entries");
        assert_eq!(second.hard_state, first.hard_state, "seed {seed}");
    }
}

#[test]
fn a_roll_after_recovery_never_seals_an_unsynced_segment() {
    // Phase: recovery returns the failed batch from the page cache; the log then rolls to new segments.
    let disk = failed_sync_then_process_crash(1, SMALL);
    let (mut wal, first) = open(&disk, SMALL);
    assert_eq!(first.entries, entries(1..=8, 1), "the page cache held the whole batch");
    let mut expected = first.entries.clone();
    let next = expected.last().map_or(1, |entry| entry.index + 1);
    let more = entries(next..=next + 20, 1);
    for entry in &more {
        wal.append(std::slice::from_ref(entry)).expect("append");
        wal.sync().expect("sync, rolling segments");
    }
    expected.extend(more);
    drop(wal);
    // Phase: after a power loss every sealed segment is whole: nothing synced is missing.
    disk.crash();
    let (_, recovered) = open(&disk, SMALL);
    assert_eq!(recovered.entries, expected);
}

#[test]
fn a_segment_whose_creation_was_not_durable_is_made_durable_by_recovery() {
    // Phase: a batch rolls into a new segment, its fsync succeeds but the directory fsync fails (the new
    // name is not durable), then the process dies.
    let disk = FaultDisk::new(3);
    let (mut wal, _) = open(&disk, SMALL);
    wal.append(&entries(1..=3, 1)).expect("append");
    wal.sync().expect("sync");
    let big: Vec<WalEntry> = (4..=9).map(|index| WalEntry { index, term: 1, data: vec![9; 60] }).collect();
    wal.append(&big).expect("append, rolling");
    // The roll fsynced the sealed segment; the sync fsyncs the new one (passes), then the directory (fails).
    disk.fail_sync_after(1);
    assert!(wal.sync().is_err(), "the directory fsync fails");
    drop(wal);
    disk.crash_process();
    let (wal, first) = open(&disk, SMALL);
    assert_eq!(first.entries.len(), 9, "the page cache held the whole batch");
    drop(wal);
    // Phase: a power loss keeps the new segment's name, made durable by recovery.
    disk.crash();
    let (_, second) = open(&disk, SMALL);
    assert_eq!(second.entries, first.entries);
}
