//! Snapshot files: layout, atomic write, and loading the newest valid one.
//!
//! ```text
//! offset  size  field
//!   0      8    magic           "TALLYSNP"
//!   8      4    format_version  u32 LE = 1
//!  12      4    checksum        CRC32C(bytes 0..12 ‖ bytes 16..end)
//!  16      8    index           u64 LE, must match the file name
//!  24      8    term            u64 LE
//!  32      8    data_length     u64 LE; the file is exactly 40 + data_length bytes
//!  40      n    data
//! ```

use std::io;

use crate::disk::{Disk, DiskFile};
use crate::types::{INDEX_MAX, SNAPSHOT_DATA_MAX, SnapshotFile};

const MAGIC: [u8; 8] = *b"TALLYSNP";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 40;

/// `snapshot-<index, 20 digits>.snap`: name order is index order.
pub(crate) fn snapshot_name(index: u64) -> String {
    format!("snapshot-{index:020}.snap")
}

/// The temporary name a snapshot is written under before the rename makes it visible.
pub(crate) fn temp_name(index: u64) -> String {
    format!("snapshot-{index:020}.tmp")
}

fn parse_index(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The index of a snapshot file name, `None` if `name` is not one.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<u64> {
    parse_index(name, ".snap")
}

/// Whether `name` is a leftover temporary snapshot file (recovery removes those).
pub(crate) fn is_temp_name(name: &str) -> bool {
    parse_index(name, ".tmp").is_some()
}

fn checksum(header: &[u8], data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[..12]);
    let crc = crc32c::crc32c_append(crc, &header[16..HEADER_LEN as usize]);
    crc32c::crc32c_append(crc, data)
}

fn encode_header(snapshot: &SnapshotFile) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&snapshot.index.to_le_bytes());
    header.extend_from_slice(&snapshot.term.to_le_bytes());
    header.extend_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    let crc = checksum(&header, &snapshot.data);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

fn word(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Decodes and verifies the contents of snapshot file `name`, or says why they are invalid.
pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<SnapshotFile, String> {
    if (bytes.len() as u64) < HEADER_LEN {
        return Err(format!("{} bytes, shorter than the {HEADER_LEN}-byte header", bytes.len()));
    }
    if bytes[..8] != MAGIC {
        return Err("magic is not TALLYSNP".to_owned());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(format!("format version {version}, this build reads {VERSION}"));
    }
    let data_len = word(bytes, 32);
    if data_len > SNAPSHOT_DATA_MAX || HEADER_LEN + data_len != bytes.len() as u64 {
        return Err(format!("data length {data_len} does not match the file length {}", bytes.len()));
    }
    let (header, data) = bytes.split_at(HEADER_LEN as usize);
    let stored = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    let computed = checksum(header, data);
    if stored != computed {
        return Err(format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    let index = word(header, 16);
    if index > INDEX_MAX {
        return Err(format!("index {index} is past the largest the log holds, {INDEX_MAX}"));
    }
    if parse_snapshot_name(name) != Some(index) {
        return Err(format!("holds index {index}, which does not match its name"));
    }
    Ok(SnapshotFile { index, term: word(header, 24), data: data.to_vec() })
}

/// A failed step of a snapshot write: the call and the file, for [`crate::WalError::Io`].
pub(crate) struct WriteFailure {
    pub(crate) operation: &'static str,
    pub(crate) file: String,
    pub(crate) source: io::Error,
}

fn step<T>(result: io::Result<T>, operation: &'static str, file: &str) -> Result<T, WriteFailure> {
    result.map_err(|source| WriteFailure { operation, file: file.to_owned(), source })
}

/// Writes `snapshot` atomically: a temporary file, fsync, rename over the final name, directory
/// fsync. After success the snapshot survives any crash; after a failure (or a crash during it)
/// recovery sees either no new snapshot or the complete new one, never a partial one.
pub(crate) fn write_atomic<D: Disk>(disk: &mut D, snapshot: &SnapshotFile) -> Result<(), WriteFailure> {
    let temp = temp_name(snapshot.index);
    let name = snapshot_name(snapshot.index);
    if step(disk.list(), "list", "<directory>")?.contains(&temp) {
        step(disk.remove(&temp), "remove", &temp)?;
    }
    let mut file = step(disk.create(&temp), "create", &temp)?;
    let header = encode_header(snapshot);
    step(file.append(&header), "write", &temp)?;
    step(file.append(&snapshot.data), "write", &temp)?;
    let expected = HEADER_LEN + snapshot.data.len() as u64;
    assert_eq!(file.len(), expected, "snapshot file {temp} has {} bytes, wrote {expected}", file.len());
    step(file.sync(), "fsync", &temp)?;
    drop(file);
    step(disk.rename(&temp, &name), "rename", &temp)?;
    step(disk.sync_dir(), "fsync", "<directory>")
}

/// Loads the newest snapshot among `names` that verifies. Returns it and a note on every newer
/// snapshot file that did not verify (for error messages: recovery never deletes those).
///
/// # Errors
/// Only I/O errors; invalid snapshot files are skipped and noted.
pub(crate) fn load_newest<D: Disk>(disk: &mut D, names: &[String]) -> io::Result<(Option<SnapshotFile>, String)> {
    let mut candidates: Vec<(u64, &String)> =
        names.iter().filter_map(|name| parse_snapshot_name(name).map(|index| (index, name))).collect();
    candidates.sort();
    let mut notes = String::new();
    for (_, name) in candidates.iter().rev() {
        let mut file = disk.open(name)?;
        let mut bytes = vec![0; file.len() as usize];
        file.read_at(0, &mut bytes)?;
        match decode(name, &bytes) {
            Ok(snapshot) => return Ok((Some(snapshot), notes)),
            Err(reason) => notes.push_str(&format!("; skipped invalid snapshot {name}: {reason}")),
        }
    }
    Ok((None, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let snapshot = SnapshotFile { index: 7, term: 3, data: b"state".to_vec() };
        let mut bytes = encode_header(&snapshot);
        bytes.extend_from_slice(&snapshot.data);
        let name = snapshot_name(7);
        assert_eq!(decode(&name, &bytes), Ok(snapshot));
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(decode(&name, &damaged).is_err(), "flip at {at} not detected");
        }
        assert!(decode(&name, &bytes[..bytes.len() - 1]).is_err(), "short file not detected");
        assert!(decode(&snapshot_name(8), &bytes).is_err(), "misnamed file not detected");
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_snapshot_name(&snapshot_name(12)), Some(12));
        assert!(is_temp_name(&temp_name(12)));
        assert!(!is_temp_name(&snapshot_name(12)));
    }
}
