//! WAL append + sync throughput on the real disk, next to raw fdatasync probes of the same disk.
//!
//! Run with `cargo bench -p tally-wal`. Everything happens in a temporary directory under
//! cargo's target tmp dir (the same file system as the build). Throughput is in entries/s
//! (criterion's elem/s): one entry is 100 bytes of payload.
//!
//! - `raw_fdatasync/append_100B`: write 100 bytes at the end of a plain file, fdatasync. Each
//!   sync must also persist the new file size (a journal commit on ext4).
//! - `raw_fdatasync/overwrite_100B`: write 100 bytes into a preallocated, zero-filled file,
//!   fdatasync: the fastest durable small write this disk does, and the baseline the WAL
//!   (which preallocates its segments) is measured against.
//! - `wal_append_sync/N`: `Wal::append` of N entries then one `Wal::sync`, default options.
//! - After criterion, a paired report (plain output, lines starting `paired`): fsync latency on a
//!   shared virtual disk swings by 30x with other processes' I/O (here: ~100 µs or ~4 ms), so
//!   benchmarks run seconds apart compare conditions, not code. The report alternates one raw
//!   probe and one WAL operation of the same size and times each, so both see the same disk:
//!   its ratio is the one to hold the WAL to.
//! - Then `open`: the time `Wal::open` takes on a log whose only segment (64 MiB, the default) is
//!   nearly full. Recovery reads it, writes its kept part again and fsyncs it (so a power loss
//!   after a process crash cannot take back what recovery returned): the cost of a restart.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use tally_wal::{RealDisk, SnapshotFile, Wal, WalEntry, WalOptions};

const ENTRY_BYTES: usize = 100;
const PROBE_FILE_BYTES: u64 = 64 << 20;

fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory")
}

fn raw_probes(c: &mut Criterion) {
    let dir = scratch_dir();
    let mut group = c.benchmark_group("raw_fdatasync");
    group.throughput(Throughput::Elements(1));
    let payload = [0x5Au8; ENTRY_BYTES];

    let mut append_file = File::create(dir.path().join("append.probe")).expect("create probe");
    group.bench_function("append_100B", |b| {
        b.iter(|| {
            append_file.write_all(&payload).expect("write");
            append_file.sync_data().expect("fdatasync");
        })
    });

    let mut probe = Probe { file: preallocated(&dir.path().join("overwrite.probe")), offset: 0 };
    group.bench_function("overwrite_100B", |b| b.iter(|| probe.write_and_sync()));
    group.finish();
}

fn preallocated(path: &Path) -> File {
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).expect("create");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..PROBE_FILE_BYTES / zeros.len() as u64 {
        file.write_all(&zeros).expect("zero fill");
    }
    file.sync_all().expect("fsync");
    file
}

fn wal_append_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_sync");
    for batch in [1u64, 16, 256] {
        let dir = scratch_dir();
        let mut writer = Writer::new(dir.path(), batch);
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    writer.append_and_sync();
                }
                let elapsed = start.elapsed();
                writer.compact();
                elapsed
            })
        });
    }
    group.finish();
}

/// One raw probe operation: 100 bytes into preallocated space, fdatasync.
struct Probe {
    file: File,
    offset: u64,
}

impl Probe {
    fn write_and_sync(&mut self) {
        self.file.write_all_at(&[0x5A; ENTRY_BYTES], self.offset).expect("write");
        self.file.sync_data().expect("fdatasync");
        self.offset = (self.offset + 104) % (PROBE_FILE_BYTES - 104);
    }
}

/// One WAL operation: append a batch of entries, sync.
struct Writer {
    wal: Wal<RealDisk>,
    entries: Vec<WalEntry>,
}

impl Writer {
    fn new(dir: &Path, batch: u64) -> Writer {
        let (wal, _) = Wal::open(RealDisk::open(dir).expect("disk"), WalOptions::default()).expect("open wal");
        let entries = (1..=batch).map(|index| WalEntry { index, term: 1, data: vec![0xA5; ENTRY_BYTES] }).collect();
        Writer { wal, entries }
    }

    fn append_and_sync(&mut self) {
        self.wal.append(&self.entries).expect("append");
        self.wal.sync().expect("sync");
        let batch = self.entries.len() as u64;
        for entry in &mut self.entries {
            entry.index += batch;
        }
    }

    /// Untimed: keeps the disk footprint bounded, as a node's snapshots would.
    fn compact(&mut self) {
        let last = self.wal.last_index();
        self.wal.save_snapshot(&SnapshotFile { index: last, term: 1, data: Vec::new() }).expect("snapshot");
        self.wal.compact(last).expect("compact");
    }
}

/// Alternates a raw probe writing `raw_bytes` and a WAL batch of `batch` entries, timing each,
/// for about `seconds`; prints both rates and their ratio.
fn paired_report(batch: u64, raw_bytes: usize, seconds: u64) {
    let dir = scratch_dir();
    let file = preallocated(&dir.path().join("paired.probe"));
    let mut writer = Writer::new(&dir.path().join("wal"), batch);
    let payload = vec![0x5Au8; raw_bytes];
    let (mut raw, mut wal, mut pairs, mut offset) = (Duration::ZERO, Duration::ZERO, 0u32, 0u64);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let start = Instant::now();
        file.write_all_at(&payload, offset).expect("write");
        file.sync_data().expect("fdatasync");
        raw += start.elapsed();
        offset = (offset + raw_bytes as u64).next_multiple_of(8) % (PROBE_FILE_BYTES - raw_bytes as u64);
        let start = Instant::now();
        writer.append_and_sync();
        wal += start.elapsed();
        pairs += 1;
    }
    let raw_syncs = f64::from(pairs) / raw.as_secs_f64();
    let wal_syncs = f64::from(pairs) / wal.as_secs_f64();
    println!(
        "paired batch {batch}: raw write {raw_bytes} B + fdatasync {raw_syncs:.0}/s; wal append {batch} x {ENTRY_BYTES} B \
         + sync {wal_syncs:.0}/s = {:.0} entries/s; wal/raw {:.2} ({pairs} pairs)",
        wal_syncs * batch as f64,
        wal_syncs / raw_syncs
    );
}

/// Times `Wal::open` on a default (64 MiB) segment filled to about 60 MiB, `runs` times; prints
/// each and the median.
fn open_report(runs: usize) {
    let dir = scratch_dir();
    let entry_bytes = 64 << 10;
    let (mut wal, _) = Wal::open(RealDisk::open(dir.path()).expect("disk"), WalOptions::default()).expect("open wal");
    let count = (60 << 20) / (entry_bytes + 32);
    for index in 1..=count as u64 {
        wal.append(&[WalEntry { index, term: 1, data: vec![0xA5; entry_bytes] }]).expect("append");
    }
    wal.sync().expect("sync");
    drop(wal);
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let (wal, recovered) =
                Wal::open(RealDisk::open(dir.path()).expect("disk"), WalOptions::default()).expect("open");
            let elapsed = start.elapsed();
            assert_eq!(recovered.entries.len(), count, "entries lost");
            drop(wal);
            elapsed
        })
        .collect();
    times.sort();
    println!(
        "open of a 64 MiB segment holding {} MiB: {times:?}, median {:?}",
        (count * entry_bytes) >> 20,
        times[runs / 2]
    );
}

fn config() -> Criterion {
    Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = raw_probes, wal_append_sync
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Skipped when criterion is only listing or testing the benchmarks (`cargo test --benches`).
    if std::env::args().any(|arg| arg == "--bench") {
        paired_report(1, ENTRY_BYTES, 4);
        // The bytes one 256-entry batch puts on disk: 256 records of 136 B and a 32 B marker.
        paired_report(256, 256 * 136 + 32, 4);
        open_report(3);
    }
}
