//! Snapshot encoding of a whole [`KvStore`], and its logical-state checksum.
//!
//! # Format (version 4)
//!
//! ```text
//! [u8; 4] magic = "TKVS"
//! u8      version = 4
//! u64     applied_index
//! u64     entry_count
//! entry_count times, keys strictly increasing:
//!     u32 key_len, key bytes
//!     u32 value_len, value bytes
//!     u64 create_index
//!     u64 modify_index
//!     u64 version         (since version 4; 1 <= version <= modify_index - create_index + 1)
//! cluster metadata:
//!     u8  has_cluster_id, then (if 1) u32 len + cluster id
//!     u64 member_count
//!     member_count times, ids strictly increasing: u64 id, u32 len + peer URL, u32 len + client URL,
//!         u64 incarnation
//! auth state (version 3): users, roles and whether auth is on, as `auth/state_codec.rs` describes
//! u32     crc32 (IEEE) of every byte before it
//! ```
//!
//! Integers are little-endian. The encoding is canonical: one state has exactly one snapshot, so
//! two nodes in the same state produce identical bytes.
//!
//! # Older versions
//!
//! This build writes version 4 and also reads version 3, which is version 4 without the per-key
//! `version` field. Unlike the earlier format changes, v3 is read rather than refused because real
//! data exists in it: the docker volumes of deployed nodes hold v3 snapshots, and refusing them would
//! make an upgrade wipe the node. A v3 entry restores with `version = 1`, the one value the invariant
//! allows whatever the key's history was; the count is only wrong for keys overwritten before the
//! upgrade, and only until their next write. A restored v3 snapshot re-encodes as v4, so its bytes
//! (and not its state) differ from the input. Versions older than 3 are refused.

use std::collections::BTreeMap;

use crate::codec::{Fnv1a, Reader, Sink};
use std::sync::Arc;

use crate::{AuthState, ClusterInfo, DecodeError, KvStore, Versioned};

/// Identifies a Tally kv snapshot, so a wrong file is named as such rather than as corrupt.
const MAGIC: [u8; 4] = *b"TKVS";
/// The snapshot version this build writes.
const FORMAT_VERSION: u8 = 4;
/// The oldest snapshot version this build reads (see "Older versions" in the module doc).
const OLDEST_READ_VERSION: u8 = 3;
/// Size of the trailing CRC32.
const CHECKSUM_LEN: usize = 4;

impl KvStore {
    /// Encodes the whole state, including `applied_index`, deterministically.
    ///
    /// # Panics
    ///
    /// If a key or value is longer than `u32::MAX` bytes (the HTTP layer's limits are far lower).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put(&MAGIC);
        out.put_u8(FORMAT_VERSION);
        self.write_state(&mut out);
        let checksum = crc32fast::hash(&out);
        out.put(&checksum.to_le_bytes());
        // Pair assertion: what was written must read back to the same state.
        debug_assert_eq!(KvStore::restore(&out).as_ref(), Ok(self));
        out
    }

    /// Decodes a snapshot made by [`KvStore::snapshot`].
    ///
    /// # Errors
    ///
    /// Wrong magic, unknown version, checksum mismatch, truncation, trailing bytes, keys out of
    /// order, or an entry whose indexes or version break the store invariant. Never panics, whatever
    /// the input.
    pub fn restore(bytes: &[u8]) -> Result<KvStore, DecodeError> {
        // The header is read before the checksum is checked so that a file that is not a
        // snapshot, or is a newer one, is reported as such rather than as corrupt.
        read_header(&mut Reader::new(bytes))?;
        let body = verify_checksum(bytes)?;
        let mut reader = Reader::new(body);
        let format_version = read_header(&mut reader)?;
        let applied_index = reader.u64()?;
        let entry_count = reader.u64()?;
        let mut entries = BTreeMap::new();
        let mut previous_key: Option<&[u8]> = None;
        for _ in 0..entry_count {
            let offset = reader.offset();
            let (key, versioned) = read_entry(&mut reader, format_version)?;
            if previous_key.is_some_and(|previous| previous >= key) {
                return Err(DecodeError::KeysOutOfOrder { offset });
            }
            check_indexes(&versioned, applied_index, offset)?;
            previous_key = Some(key);
            entries.insert(key.to_vec(), versioned);
        }
        let cluster = ClusterInfo::read(&mut reader)?;
        let auth = Arc::new(AuthState::read(&mut reader)?);
        reader.finish()?;
        let store = KvStore { entries, applied_index, cluster, auth };
        store.check_invariants();
        Ok(store)
    }

    /// A 64-bit FNV-1a hash of the logical state (applied index, every key, value, index and version, the
    /// cluster metadata and the auth state), for convergence checks: two nodes with equal state always get equal checksums,
    /// and different states collide only by chance (about 2^-64). Streams the canonical
    /// encoding without allocating it, and is stable across Rust versions and platforms.
    pub fn state_checksum(&self) -> u64 {
        let mut hash = Fnv1a::new();
        self.write_state(&mut hash);
        hash.finish()
    }

    /// Writes the canonical state encoding: everything between the header and the CRC.
    fn write_state(&self, sink: &mut impl Sink) {
        sink.put_u64(self.applied_index);
        sink.put_u64(self.entries.len() as u64);
        for (key, versioned) in &self.entries {
            sink.put_bytes(key);
            sink.put_bytes(&versioned.value);
            sink.put_u64(versioned.create_index);
            sink.put_u64(versioned.modify_index);
            sink.put_u64(versioned.version);
        }
        self.cluster.write(sink);
        self.auth.write(sink);
    }
}

/// Reads and checks the magic and version; returns the version, one this build reads.
fn read_header(reader: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let magic = reader.array::<4>()?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    let version = reader.u8()?;
    if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(DecodeError::UnknownVersion {
            what: "snapshot",
            found: version,
            oldest: OLDEST_READ_VERSION,
            expected: FORMAT_VERSION,
        });
    }
    Ok(version)
}

/// Checks the trailing CRC32 and returns the bytes it covers.
fn verify_checksum(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let Some(body_len) = bytes.len().checked_sub(CHECKSUM_LEN) else {
        return Err(DecodeError::Truncated { offset: 0, needed: CHECKSUM_LEN, available: bytes.len() });
    };
    let (body, stored) = bytes.split_at(body_len);
    let mut stored_bytes = [0; CHECKSUM_LEN];
    stored_bytes.copy_from_slice(stored);
    let stored = u32::from_le_bytes(stored_bytes);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    Ok(body)
}

/// Reads one entry: key, value, create index, modify index and (from format version 4) version.
/// A version 3 entry has no version field and gets 1 (see "Older versions" in the module doc).
fn read_entry<'a>(reader: &mut Reader<'a>, format_version: u8) -> Result<(&'a [u8], Versioned), DecodeError> {
    let key = reader.bytes()?;
    let value = reader.bytes()?.to_vec();
    let create_index = reader.u64()?;
    let modify_index = reader.u64()?;
    let version = if format_version >= 4 { reader.u64()? } else { 1 };
    let versioned = Versioned { value, create_index, modify_index, version };
    Ok((key, versioned))
}

/// Rejects an entry that breaks `1 <= create_index <= modify_index <= applied_index` or
/// `1 <= version <= modify_index - create_index + 1`, so a restored store always satisfies the store
/// invariant.
fn check_indexes(versioned: &Versioned, applied_index: u64, offset: usize) -> Result<(), DecodeError> {
    let Versioned { create_index, modify_index, version, .. } = *versioned;
    if !(1 <= create_index && create_index <= modify_index && modify_index <= applied_index) {
        return Err(DecodeError::BadIndexes { offset, create_index, modify_index, applied_index });
    }
    if !(1 <= version && version <= modify_index - create_index + 1) {
        return Err(DecodeError::BadVersion { offset, version, create_index, modify_index });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
