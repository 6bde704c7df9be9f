//! Recovery from specific faults: torn tails, bit rot, failed syncs and writes, interrupted
//! snapshot installs, missing files.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tally_wal::testing::entries;
use tally_wal::{
    Disk, DiskFile, FaultDisk, FaultFile, HardState, RealDisk, SnapshotFile, Wal, WalEntry, WalError, WalOptions,
};

const SMALL: WalOptions = WalOptions { segment_bytes_max: 512 };
const ONE_SEGMENT: WalOptions = WalOptions { segment_bytes_max: 1 << 16 };

/// Offset of the first entry record in a segment: after the header and hard state records.
const FIRST_RECORD_AFTER_PREAMBLE: u64 = 96;

fn segment_names(disk: &FaultDisk) -> Vec<String> {
    disk.file_names().into_iter().filter(|name| name.ends_with(".wal")).collect()
}

#[test]
fn torn_tail_is_repaired_and_the_log_accepts_new_appends() {
    // Segments large enough for a batch of more than the writer's 1 MiB buffer, which it writes before the sync.
    let options = WalOptions { segment_bytes_max: 2 << 20 };
    let mut repaired = 0;
    for seed in 0..32 {
        // Phase: a synced batch, then a batch whose write reaches the page cache and whose fsync never
        // happens (the process dies), then a power loss that tears that write.
        let disk = FaultDisk::new(seed);
        let (mut wal, _) = Wal::open(disk.clone(), options).expect("open");
        wal.append(&entries(1..=5, 1)).expect("append");
        wal.sync().expect("sync");
        let big: Vec<WalEntry> =
            (6..=11).map(|index| WalEntry { index, term: 1, data: vec![index as u8; 180 << 10] }).collect();
        wal.append(&big).expect("append, writing the buffer");
        drop(wal);
        assert!(disk.crash_tearing(), "seed {seed}: no write to tear");
        // Phase: recovery returns exactly the synced prefix and cuts the torn bytes.
        let (mut wal, recovered) = Wal::open(disk.clone(), options).expect("recover");
        assert_eq!(recovered.entries, entries(1..=5, 1), "seed {seed}");
        assert_eq!(recovered.tail_may_be_acknowledged, recovered.tail_bytes_discarded > 0, "seed {seed}");
        repaired += usize::from(recovered.tail_bytes_discarded > 0);
        // Phase: a restart before the node settles its recovery reports the tail again (the marker is durable).
        if recovered.tail_may_be_acknowledged {
            drop(wal);
            disk.crash();
            let (_, again) = Wal::open(disk.clone(), options).expect("recover before settling");
            assert!(again.tail_may_be_acknowledged, "seed {seed}: a restart forgot the unsettled recovery");
            assert_eq!(again.tail_bytes_discarded, 0, "seed {seed}: the repair was not durable");
            (wal, _) = Wal::open(disk.clone(), options).expect("recover once more");
        }
        wal.settle_recovery().expect("settle");
        // Phase: the repaired log takes new entries, which survive a crash; no ghost comes back.
        wal.append(&entries(6..=7, 2)).expect("append after repair");
        wal.sync().expect("sync after repair");
        disk.crash();
        let (_, recovered) = Wal::open(disk.clone(), options).expect("recover again");
        let mut expected = entries(1..=5, 1);
        expected.extend(entries(6..=7, 2));
        assert_eq!(recovered.entries, expected, "seed {seed}: after repair");
        assert_eq!(recovered.tail_bytes_discarded, 0, "seed {seed}: second recovery cut bytes");
        assert!(!recovered.tail_may_be_acknowledged, "seed {seed}: nothing was cut");
    }
    assert!(repaired > 16, "only {repaired} of 32 tears left bytes to cut");
}

#[test]
fn garbage_after_the_last_record_on_a_real_disk_is_cut() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut wal, _) = Wal::open(RealDisk::open(dir.path()).expect("disk"), ONE_SEGMENT).expect("open");
    wal.append(&entries(1..=3, 1)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    // Phase: write garbage right after the last record, as a torn sector would.
    let path = dir.path().join("segment-00000000000000000001.wal");
    let mut bytes = std::fs::read(&path).expect("read segment");
    let end = bytes.iter().rposition(|byte| *byte != 0).expect("records") + 1;
    let end = end.div_ceil(8) * 8;
    bytes[end..end + 10].copy_from_slice(b"\x13garbage!\x07");
    std::fs::write(&path, &bytes).expect("write segment");
    let (_, recovered) = Wal::open(RealDisk::open(dir.path()).expect("disk"), ONE_SEGMENT).expect("recover");
    assert_eq!(recovered.entries, entries(1..=3, 1));
    assert_eq!(recovered.tail_bytes_discarded, 10);
}

#[test]
fn flipped_bit_in_an_old_record_refuses_to_start_naming_file_and_offset() {
    // Phase: a sealed segment (any damage there is corruption).
    let disk = FaultDisk::new(1);
    let (mut wal, _) = Wal::open(disk.clone(), SMALL).expect("open");
    for batch in 0..10 {
        wal.append(&entries(batch * 3 + 1..=batch * 3 + 3, 1)).expect("append");
        wal.sync().expect("sync");
    }
    drop(wal);
    let first = segment_names(&disk)[0].clone();
    disk.flip_bit(&first, FIRST_RECORD_AFTER_PREAMBLE + 20, 3);
    let error = Wal::open(disk.clone(), SMALL).expect_err("must refuse to start");
    let message = error.to_string();
    assert!(
        matches!(&error, WalError::Corrupt { file, offset, .. } if *file == first && *offset == FIRST_RECORD_AFTER_PREAMBLE),
        "{message}"
    );
    assert!(message.contains(&first) && message.contains("offset 96"), "{message}");
    // Phase: the last segment, with later batches after the damage.
    let disk = FaultDisk::new(2);
    let (mut wal, _) = Wal::open(disk.clone(), ONE_SEGMENT).expect("open");
    for batch in 0..4 {
        wal.append(&entries(batch * 3 + 1..=batch * 3 + 3, 1)).expect("append");
        wal.sync().expect("sync");
    }
    drop(wal);
    let only = segment_names(&disk)[0].clone();
    disk.flip_bit(&only, FIRST_RECORD_AFTER_PREAMBLE + 2, 0);
    let error = Wal::open(disk.clone(), ONE_SEGMENT).expect_err("must refuse to start");
    assert!(matches!(&error, WalError::Corrupt { offset, .. } if *offset == FIRST_RECORD_AFTER_PREAMBLE), "{error}");
    assert!(error.to_string().contains("later batch follows"), "{error}");
}

#[test]
fn poisoned_log_refuses_every_write_with_a_clear_error() {
    let disk = FaultDisk::new(3);
    let (mut wal, _) = Wal::open(disk.clone(), SMALL).expect("open");
    wal.append(&entries(1..=2, 1)).expect("append");
    wal.sync().expect("sync");
    // Phase: an fsync fails; the log must not retry it.
    wal.append(&entries(3..=3, 1)).expect("append");
    disk.fail_sync_after(0);
    let error = wal.sync().expect_err("sync must fail");
    assert!(matches!(error, WalError::Io { operation: "fsync", .. }), "{error}");
    assert!(error.is_poisoning() && error.to_string().contains("poisoned"), "{error}");
    assert!(wal.is_poisoned());
    // Phase: every later write refuses, naming the original failure.
    let refusals = [
        wal.append(&entries(4..=4, 1)),
        wal.set_hard_state(HardState { term: 2, vote: 0, commit: 0 }),
        wal.sync(),
        wal.save_snapshot(&SnapshotFile { index: 1, term: 1, data: Vec::new() }),
        wal.compact(0),
        wal.replace_with_snapshot(&SnapshotFile { index: 9, term: 2, data: Vec::new() }),
    ];
    for refusal in refusals {
        let error = refusal.expect_err("poisoned log accepted a write");
        assert!(matches!(&error, WalError::Poisoned { cause } if cause.contains("injected sync failure")), "{error}");
    }
    // Phase: a restart recovers what the last successful sync covered.
    drop(wal);
    disk.crash();
    let (wal, recovered) = Wal::open(disk.clone(), SMALL).expect("recover");
    assert_eq!(recovered.entries, entries(1..=2, 1));
    assert!(!wal.is_poisoned());
}

/// A [`Disk`] whose `write_at` fails from the `n`-th call on (counting from 0).
struct FailingWrites {
    inner: FaultDisk,
    writes: Arc<AtomicU64>,
    fail_from: u64,
}

struct FailingFile {
    inner: FaultFile,
    writes: Arc<AtomicU64>,
    fail_from: u64,
}

impl Disk for FailingWrites {
    type File = FailingFile;
    fn create(&mut self, name: &str) -> io::Result<FailingFile> {
        let inner = self.inner.create(name)?;
        Ok(FailingFile { inner, writes: self.writes.clone(), fail_from: self.fail_from })
    }
    fn open(&mut self, name: &str) -> io::Result<FailingFile> {
        let inner = self.inner.open(name)?;
        Ok(FailingFile { inner, writes: self.writes.clone(), fail_from: self.fail_from })
    }
    fn list(&mut self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&mut self) -> io::Result<()> {
        self.inner.sync_dir()
    }
}

impl DiskFile for FailingFile {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.append(data)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.writes.fetch_add(1, Ordering::SeqCst) >= self.fail_from {
            return Err(io::Error::other("injected write failure (disk full)"));
        }
        self.inner.write_at(offset, data)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
}

#[test]
fn failed_write_poisons_the_log() {
    let disk = FaultDisk::new(4);
    let failing = FailingWrites { inner: disk.clone(), writes: Arc::new(AtomicU64::new(0)), fail_from: 2 };
    let (mut wal, _) = Wal::open(failing, SMALL).expect("open (write 0)");
    wal.append(&entries(1..=1, 1)).expect("append");
    wal.sync().expect("sync (write 1)");
    wal.append(&entries(2..=2, 1)).expect("append");
    let error = wal.sync().expect_err("write 2 fails");
    assert!(matches!(error, WalError::Io { operation: "write", .. }), "{error}");
    assert!(matches!(wal.append(&entries(3..=3, 1)), Err(WalError::Poisoned { .. })));
    drop(wal);
    disk.crash();
    let (_, recovered) = Wal::open(disk, SMALL).expect("recover");
    assert_eq!(recovered.entries, entries(1..=1, 1));
}

#[test]
fn snapshot_compaction_and_crash_return_the_same_state() {
    let disk = FaultDisk::new(5);
    let (mut wal, _) = Wal::open(disk.clone(), SMALL).expect("open");
    wal.append(&entries(1..=50, 1)).expect("append");
    let hard_state = HardState { term: 1, vote: 2, commit: 45 };
    wal.set_hard_state(hard_state).expect("hard state");
    wal.sync().expect("sync");
    let segments_before = segment_names(&disk).len();
    let snapshot = SnapshotFile { index: 40, term: 1, data: b"kv@40".to_vec() };
    wal.save_snapshot(&snapshot).expect("snapshot");
    wal.compact(40).expect("compact");
    assert!(segment_names(&disk).len() < segments_before, "nothing compacted");
    wal.append(&entries(51..=55, 1)).expect("append");
    wal.sync().expect("sync");
    // Phase: power loss, not a clean shutdown.
    drop(wal);
    disk.crash();
    let (mut wal, recovered) = Wal::open(disk.clone(), SMALL).expect("recover");
    assert_eq!(recovered.snapshot, Some(snapshot));
    assert_eq!(recovered.entries, entries(41..=55, 1));
    assert_eq!(recovered.hard_state, hard_state);
    // Phase: snapshot and compact again after the restart; the state survives another crash.
    let newer = SnapshotFile { index: 45, term: 1, data: b"kv@45".to_vec() };
    wal.save_snapshot(&newer).expect("snapshot");
    wal.compact(45).expect("compact");
    drop(wal);
    disk.crash();
    let (_, recovered) = Wal::open(disk.clone(), SMALL).expect("recover again");
    assert_eq!(recovered.snapshot, Some(newer));
    assert_eq!(recovered.entries, entries(46..=55, 1));
    assert_eq!(recovered.hard_state, hard_state);
}

/// Syncs of `replace_with_snapshot` on a synced log: snapshot file fsync, directory fsync after
/// the rename, new segment fsync, directory fsync, directory fsync after the removals.
const SYNCS_BEFORE_RESET_IS_DURABLE: u64 = 2;

#[test]
fn interrupted_replace_with_snapshot_follows_the_raft_rule() {
    for (term, kept) in [(1, entries(21..=30, 1)), (2, Vec::new())] {
        let disk = FaultDisk::new(6);
        let (mut wal, _) = Wal::open(disk.clone(), SMALL).expect("open");
        wal.append(&entries(1..=30, 1)).expect("append");
        wal.sync().expect("sync");
        // Phase: the snapshot becomes durable, the reset record does not.
        let snapshot = SnapshotFile { index: 20, term, data: b"leader".to_vec() };
        disk.fail_sync_after(SYNCS_BEFORE_RESET_IS_DURABLE);
        wal.replace_with_snapshot(&snapshot).expect_err("fails after the snapshot is durable");
        drop(wal);
        disk.crash();
        // Phase: entries after the snapshot survive only if the log agrees with it at its index.
        let (mut wal, recovered) = Wal::open(disk.clone(), SMALL).expect("recover");
        assert_eq!(recovered.snapshot, Some(snapshot), "term {term}");
        assert_eq!(recovered.entries, kept, "term {term}");
        // Phase: what recovery decided is durable: new entries do not revive the old log.
        let next = wal.last_index() + 1;
        wal.append(&entries(next..=next, 3)).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (_, recovered) = Wal::open(disk.clone(), SMALL).expect("reopen");
        let mut expected = kept.clone();
        expected.extend(entries(next..=next, 3));
        assert_eq!(recovered.entries, expected, "term {term}: after appending");
    }
}

#[test]
fn missing_segment_refuses_to_start() {
    let mut disk = FaultDisk::new(7);
    let (mut wal, _) = Wal::open(disk.clone(), SMALL).expect("open");
    for batch in 0..10 {
        wal.append(&entries(batch * 3 + 1..=batch * 3 + 3, 1)).expect("append");
        wal.sync().expect("sync");
    }
    drop(wal);
    let names = segment_names(&disk);
    assert!(names.len() >= 4, "too few segments: {names:?}");
    disk.remove(&names[1]).expect("remove");
    disk.sync_dir().expect("sync dir");
    let error = Wal::open(disk.clone(), SMALL).expect_err("must refuse to start");
    assert!(matches!(&error, WalError::Corrupt { file, .. } if *file == names[2]), "{error}");
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn corrupt_snapshot_after_compaction_refuses_to_start() {
    let disk = FaultDisk::new(8);
    let (mut wal, _) = Wal::open(disk.clone(), SMALL).expect("open");
    wal.append(&entries(1..=40, 1)).expect("append");
    wal.set_hard_state(HardState { term: 1, vote: 0, commit: 40 }).expect("hard state");
    wal.sync().expect("sync");
    wal.save_snapshot(&SnapshotFile { index: 30, term: 1, data: b"kv".to_vec() }).expect("snapshot");
    wal.compact(30).expect("compact");
    drop(wal);
    let snapshot = disk.file_names().into_iter().find(|name| name.ends_with(".snap")).expect("snapshot file");
    disk.flip_bit(&snapshot, 41, 0);
    let error = Wal::open(disk, SMALL).expect_err("must refuse to start");
    let message = error.to_string();
    assert!(matches!(error, WalError::Corrupt { .. }), "{message}");
    assert!(message.contains("no valid snapshot") && message.contains(&snapshot), "{message}");
}

#[test]
fn unfinished_batch_spanning_segments_is_cut_whole() {
    let disk = FaultDisk::new(9);
    let (mut wal, _) = Wal::open(disk.clone(), SMALL).expect("open");
    wal.append(&entries(1..=3, 1)).expect("append");
    wal.sync().expect("sync");
    let segments_synced = segment_names(&disk).len();
    // Phase: a batch that rolls several segments (each roll fsyncs the sealed one), never synced.
    wal.append(&entries(4..=30, 1)).expect("append");
    assert!(segment_names(&disk).len() > segments_synced + 2, "batch did not roll");
    drop(wal);
    disk.crash();
    let (mut wal, recovered) = Wal::open(disk.clone(), SMALL).expect("recover");
    assert_eq!(recovered.entries, entries(1..=3, 1));
    assert!(recovered.tail_bytes_discarded > 0, "nothing cut");
    // Phase: the cut is durable: a shorter log written now never shows the old batch.
    wal.append(&entries(4..=5, 2)).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    disk.crash();
    let (_, recovered) = Wal::open(disk.clone(), SMALL).expect("recover again");
    let mut expected = entries(1..=3, 1);
    expected.extend(entries(4..=5, 2));
    assert_eq!(recovered.entries, expected);
}
