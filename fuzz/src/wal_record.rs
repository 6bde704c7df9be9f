//! `wal_record`: recovery ([`Wal::open`]) over an arbitrary directory of segment and snapshot files, on the
//! in-memory [`FaultDisk`]. Recovery reads every record of every segment (the record decoder, batch replay, the
//! torn-tail rules of `crates/wal/FORMAT.md`) and the newest snapshot.
//!
//! # Input: a disk image
//!
//! ```text
//! byte 0   options: segment_bytes_max = SEGMENT_BYTES_MIN << (bits 0-2)
//! files    up to FILES_MAX of: kind u8, number u64 LE, length u16 LE, contents (cut short by the input's end)
//!          kind bits 0-1: 0 segment-<number>.wal, 1 snapshot-<number>.snap, 2 snapshot-<number>.tmp, 3 a stray file
//!          kind bit 7: recompute checksums (of every record that frames, or of the snapshot), so that mutated
//!          contents reach the parsers behind the CRC32C
//! ```
//!
//! # Oracles
//!
//! - Recovery of an undamaged in-memory disk ends in `Ok` or `Corrupt`, never an I/O error or a panic.
//! - What it returns is consistent: entries consecutive from just after the snapshot, terms never going down,
//!   and the log's own view (`last_index`, `hard_state`, `snapshot_index`) agreeing with it.
//! - Recovery repairs durably: opening again returns the same state with nothing left to cut.
//! - The recovered log takes a write at its end, and the next recovery returns it after the recovered entries.

use tally_wal::{
    Disk, DiskFile, FaultDisk, HardState, Recovered, SEGMENT_BYTES_MIN, SnapshotFile, Wal, WalEntry, WalError,
    WalOptions,
};

use crate::Seed;

/// The most files one input makes.
const FILES_MAX: usize = 8;

/// Bytes before a file's contents: kind, number, length.
const FILE_HEADER_BYTES: usize = 11;

/// File kinds (bits 0-1 of the kind byte).
const SEGMENT: u8 = 0;
const SNAPSHOT: u8 = 1;
const TEMP_SNAPSHOT: u8 = 2;
const STRAY: u8 = 3;

/// Kind bit: recompute the checksums of the file's contents.
const FIX_CHECKSUMS: u8 = 0x80;

/// Bytes of a record header, and the alignment of records (`FORMAT.md`, "Record").
const RECORD_HEADER_BYTES: usize = 16;
const RECORD_ALIGN: usize = 8;
/// The largest record payload: an entry's index and term plus 16 MiB of data.
const RECORD_PAYLOAD_MAX: usize = (16 << 20) + 16;

/// Bytes of a snapshot file's header (`FORMAT.md`, "Snapshot files").
const SNAPSHOT_HEADER_BYTES: usize = 40;

/// Runs one input (see the module documentation); panics on a finding.
pub fn run(data: &[u8]) {
    let Some((&options, image)) = data.split_first() else { return };
    let options = WalOptions { segment_bytes_max: SEGMENT_BYTES_MIN << (options & 7) };
    let disk = FaultDisk::new(0);
    write_image(&disk, image);

    let (wal, recovered) = match Wal::open(disk.clone(), options) {
        Ok(opened) => opened,
        Err(WalError::Corrupt { .. }) => return,
        Err(other) => panic!("recovery from an in-memory disk failed with {other}, not a Corrupt"),
    };
    check_recovered(&wal, &recovered);
    drop(wal);

    // Phase: the repair was durable, so a second recovery finds the same state and nothing to cut.
    let (mut wal, again) = Wal::open(disk.clone(), options)
        .unwrap_or_else(|error| panic!("recovery after a successful recovery failed: {error}"));
    assert_eq!(again.hard_state, recovered.hard_state, "hard state changed across a reopen");
    assert_eq!(again.snapshot, recovered.snapshot, "snapshot changed across a reopen");
    assert!(again.entries == recovered.entries, "entries changed across a reopen");
    assert_eq!(again.tail_bytes_discarded, 0, "a second recovery cut a tail");

    // Phase: the log takes a write at its end, and recovers it.
    let Some(index) = wal.last_index().checked_add(1) else { return };
    let term = last_term(&recovered);
    let entry = WalEntry { index, term, data: b"after recovery".to_vec() };
    wal.append(std::slice::from_ref(&entry)).unwrap_or_else(|error| panic!("append after recovery: {error}"));
    wal.sync().unwrap_or_else(|error| panic!("sync after recovery: {error}"));
    drop(wal);
    let (_, after) = Wal::open(disk, options).unwrap_or_else(|error| panic!("recovery after a write: {error}"));
    let mut expected = recovered.entries;
    expected.push(entry);
    assert!(after.entries == expected, "the write after recovery was not recovered after the recovered entries");
}

/// The term of the last entry the recovered log holds (the snapshot's when it holds none).
fn last_term(recovered: &Recovered) -> u64 {
    match (recovered.entries.last(), &recovered.snapshot) {
        (Some(entry), _) => entry.term,
        (None, Some(snapshot)) => snapshot.term,
        (None, None) => 0,
    }
}

/// Checks that what recovery returned is one consistent log, and that the `Wal` agrees with it.
fn check_recovered(wal: &Wal<FaultDisk>, recovered: &Recovered) {
    let (snapshot_index, snapshot_term) = recovered.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
    let mut expected_index = snapshot_index;
    let mut previous_term = snapshot_term;
    for entry in &recovered.entries {
        expected_index += 1;
        assert_eq!(entry.index, expected_index, "recovered entries are not consecutive after the snapshot");
        assert!(entry.term >= previous_term, "entry {} has term {} < {previous_term}", entry.index, entry.term);
        previous_term = entry.term;
    }
    assert_eq!(wal.last_index(), expected_index, "the log's last index disagrees with the recovered entries");
    assert_eq!(wal.snapshot_index(), snapshot_index, "the log's snapshot disagrees with the recovered one");
    assert_eq!(wal.hard_state(), recovered.hard_state, "the log's hard state disagrees with the recovered one");
}

/// Creates the files an image describes, durably.
fn write_image(disk: &FaultDisk, mut image: &[u8]) {
    let mut disk = disk.clone();
    for _ in 0..FILES_MAX {
        let Some((header, rest)) = image.split_first_chunk::<FILE_HEADER_BYTES>() else { break };
        let kind = header[0];
        let number = u64::from_le_bytes(header[1..9].try_into().expect("8 bytes"));
        let length = usize::from(u16::from_le_bytes([header[9], header[10]]));
        let (contents, rest) = rest.split_at(length.min(rest.len()));
        image = rest;
        let mut contents = contents.to_vec();
        let name = match kind & 3 {
            SEGMENT => format!("segment-{number:020}.wal"),
            SNAPSHOT => format!("snapshot-{number:020}.snap"),
            TEMP_SNAPSHOT => format!("snapshot-{number:020}.tmp"),
            _ => format!("stray-{number}"),
        };
        if kind & FIX_CHECKSUMS != 0 {
            match kind & 3 {
                SEGMENT => fix_record_checksums(&mut contents, number),
                SNAPSHOT | TEMP_SNAPSHOT => fix_snapshot_checksum(&mut contents),
                _ => {}
            }
        }
        let Ok(mut file) = disk.create(&name) else { continue }; // a name given twice: the first one wins
        file.append(&contents).expect("append to an in-memory file");
        file.sync().expect("sync an in-memory file");
    }
    disk.sync_dir().expect("sync the in-memory directory");
}

/// The offset just past the record framed at `offset` (a known type, a bounded length that fits), if one is.
fn record_end(contents: &[u8], offset: usize) -> Option<usize> {
    let header = contents.get(offset..offset + RECORD_HEADER_BYTES)?;
    let payload = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(1..=5).contains(&header[4]) || payload > RECORD_PAYLOAD_MAX {
        return None;
    }
    let end = offset + RECORD_HEADER_BYTES + payload.div_ceil(RECORD_ALIGN) * RECORD_ALIGN;
    (end <= contents.len()).then_some(end)
}

/// Where a segment header record holds the log id (`FORMAT.md`, "Record types": after the record header, the
/// magic, version, reserved word and sequence number).
const LOG_ID_AT: usize = RECORD_HEADER_BYTES + 24;

/// Rewrites the checksum of every record that frames, at every aligned offset, as format version 2 seeds it: CRC32C
/// of the log id (the one the segment header at offset 0 holds), the segment's sequence number `seq`, the record's
/// file offset, its header before the checksum, and its payload and padding.
pub fn fix_record_checksums(contents: &mut [u8], seq: u64) {
    let log_id = contents.get(LOG_ID_AT..LOG_ID_AT + 8).map_or(0, |bytes| {
        u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
    });
    let mut offset = 0;
    while offset + RECORD_HEADER_BYTES <= contents.len() {
        let Some(end) = record_end(contents, offset) else {
            offset += RECORD_ALIGN;
            continue;
        };
        let mut seed = [0u8; 24];
        seed[..8].copy_from_slice(&log_id.to_le_bytes());
        seed[8..16].copy_from_slice(&seq.to_le_bytes());
        seed[16..].copy_from_slice(&(offset as u64).to_le_bytes());
        let crc = crc32c::crc32c(&seed);
        let crc = crc32c::crc32c_append(crc, &contents[offset..offset + 12]);
        let crc = crc32c::crc32c_append(crc, &contents[offset + RECORD_HEADER_BYTES..end]);
        contents[offset + 12..offset + 16].copy_from_slice(&crc.to_le_bytes());
        offset = end;
    }
}

/// Rewrites a snapshot file's checksum: CRC32C of its bytes 0..12 and 16..end.
pub fn fix_snapshot_checksum(contents: &mut [u8]) {
    if contents.len() < SNAPSHOT_HEADER_BYTES {
        return;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&contents[..12]), &contents[16..]);
    contents[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// A segment without its preallocated zeros: up to the end of the last record that frames.
fn trim_segment(contents: &[u8]) -> Vec<u8> {
    let mut end = 0;
    while let Some(next) = record_end(contents, end) {
        end = next;
    }
    contents[..end].to_vec()
}

/// The image of what `disk` holds now, segments trimmed of their zeros, every file with `flags` in its kind.
fn image_of(disk: &FaultDisk, options: u8, flags: u8) -> Vec<u8> {
    let mut image = vec![options];
    for name in disk.file_names() {
        let contents = disk.read_file(&name).expect("listed file exists");
        let (kind, number, contents) = if let Some(seq) = number_in(&name, "segment-", ".wal") {
            (SEGMENT, seq, trim_segment(&contents))
        } else if let Some(index) = number_in(&name, "snapshot-", ".snap") {
            (SNAPSHOT, index, contents)
        } else if let Some(index) = number_in(&name, "snapshot-", ".tmp") {
            (TEMP_SNAPSHOT, index, contents)
        } else {
            (STRAY, 0, contents)
        };
        push_file(&mut image, kind | flags, number, &contents);
    }
    image
}

/// Appends one file to an image.
fn push_file(image: &mut Vec<u8>, kind: u8, number: u64, contents: &[u8]) {
    let length = u16::try_from(contents.len()).expect("seed files are under 64 KiB");
    image.push(kind);
    image.extend_from_slice(&number.to_le_bytes());
    image.extend_from_slice(&length.to_le_bytes());
    image.extend_from_slice(contents);
}

/// The number in a file name `{prefix}{number}{suffix}`.
fn number_in(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

/// A log on a fresh disk with 256-byte segments, built by `build`, then its image.
fn seed(name: &str, flags: u8, build: impl FnOnce(&mut Wal<FaultDisk>, &FaultDisk)) -> Seed {
    let disk = FaultDisk::new(7);
    let options = WalOptions { segment_bytes_max: SEGMENT_BYTES_MIN };
    let (mut wal, _) = Wal::open(disk.clone(), options).expect("open a fresh log");
    build(&mut wal, &disk);
    drop(wal);
    Seed::new(name, image_of(&disk, 0, flags))
}

/// `count` entries from `first`, of `term`.
fn entries(first: u64, count: u64, term: u64) -> Vec<WalEntry> {
    (first..first + count)
        .map(|index| WalEntry { index, term, data: format!("e{index}t{term}").into_bytes() })
        .collect()
}

/// Appends and syncs, as the node does with one batch.
fn batch(wal: &mut Wal<FaultDisk>, hard_state: HardState, new: &[WalEntry]) {
    wal.append(new).expect("append");
    wal.set_hard_state(hard_state).expect("hard state");
    wal.sync().expect("sync");
}

/// Zeroes the last record of the last segment (a batch marker), as if the write had stopped just before it.
fn drop_batch_end(disk: &FaultDisk) {
    let Some(name) = disk.file_names().into_iter().rfind(|name| name.starts_with("segment-")) else { return };
    let contents = disk.read_file(&name).expect("listed file exists");
    let end = trim_segment(&contents).len();
    let mut start = 0;
    while let Some(next) = record_end(&contents, start).filter(|next| *next < end) {
        start = next;
    }
    for (offset, byte) in (start..end).zip(&contents[start..end]) {
        for bit in (0..8).filter(|bit| byte & (1 << bit) != 0) {
            disk.flip_bit(&name, offset as u64, bit);
        }
    }
}

/// Logs written by the WAL itself: fresh, rolled, truncated, snapshotted, torn and damaged.
pub fn seeds() -> Vec<Seed> {
    let hs = |term, vote, commit| HardState { term, vote, commit };
    let mut seeds = vec![Seed::new("empty-directory", vec![0])];
    seeds.push(seed("fresh-log", FIX_CHECKSUMS, |_, _| {}));
    seeds.push(seed("one-batch", FIX_CHECKSUMS, |wal, _| batch(wal, hs(1, 1, 0), &entries(1, 3, 1))));
    seeds.push(seed("many-segments", FIX_CHECKSUMS, |wal, _| {
        for round in 0..6 {
            batch(wal, hs(1 + round / 2, 1, 2 * round), &entries(1 + 3 * round, 3, 1 + round / 2));
        }
    }));
    seeds.push(seed("suffix-replaced", FIX_CHECKSUMS, |wal, _| {
        batch(wal, hs(1, 1, 1), &entries(1, 4, 1));
        batch(wal, hs(2, 2, 1), &entries(3, 3, 2));
    }));
    seeds.push(seed("snapshot-and-compaction", FIX_CHECKSUMS, |wal, _| {
        for round in 0..4 {
            batch(wal, hs(1, 1, 3 * round), &entries(1 + 3 * round, 3, 1));
        }
        let snapshot = SnapshotFile { index: 7, term: 1, data: b"state at 7".to_vec() };
        wal.save_snapshot(&snapshot).expect("snapshot");
        wal.compact(7).expect("compact");
        batch(wal, hs(1, 1, 9), &entries(13, 1, 1));
    }));
    seeds.push(seed("replaced-by-snapshot", FIX_CHECKSUMS, |wal, _| {
        batch(wal, hs(1, 1, 2), &entries(1, 3, 1));
        let snapshot = SnapshotFile { index: 30, term: 4, data: b"leader's state".to_vec() };
        wal.replace_with_snapshot(&snapshot).expect("replace");
        batch(wal, hs(4, 2, 30), &entries(31, 2, 4));
    }));
    seeds.push(seed("unfinished-batch", 0, |wal, disk| {
        // The second batch's records reach the file, its fsync fails, and the disk keeps them whole.
        batch(wal, hs(1, 1, 1), &entries(1, 2, 1));
        wal.append(&entries(3, 2, 1)).expect("append");
        disk.fail_sync_after(0);
        let _refused = wal.sync();
        drop_batch_end(disk);
    }));
    seeds.push(seed("torn-write", 0, |wal, disk| {
        batch(wal, hs(1, 1, 1), &entries(1, 2, 1));
        wal.append(&entries(3, 2, 1)).expect("append");
        disk.fail_sync_after(0);
        let _refused = wal.sync();
        disk.crash_tearing();
    }));
    seeds.push(seed("flipped-bit", 0, |wal, disk| {
        batch(wal, hs(1, 1, 1), &entries(1, 2, 1));
        batch(wal, hs(1, 1, 2), &entries(3, 2, 1));
        disk.flip_bit("segment-00000000000000000001.wal", 100, 3);
    }));
    seeds.push(seed("leftovers", FIX_CHECKSUMS, |wal, disk| {
        batch(wal, hs(1, 1, 1), &entries(1, 2, 1));
        let mut disk = disk.clone();
        disk.create("snapshot-00000000000000000002.tmp").expect("create").append(b"half a snapshot").expect("write");
        disk.create("notes.txt").expect("create").append(b"not ours").expect("write");
        disk.sync_dir().expect("sync dir");
    }));
    seeds
}
