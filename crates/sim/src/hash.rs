//! Stable 64-bit fingerprints (FNV-1a) that do not change across Rust versions.

use tally_raft::EntryPayload;

/// FNV-1a over `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Fingerprint of a whole payload, distinguishing no-ops and membership changes (for log matching).
pub fn entry_fingerprint(payload: &EntryPayload) -> u64 {
    match payload {
        EntryPayload::Command(data) => fnv1a(data),
        EntryPayload::Noop => 1,
        EntryPayload::Membership(change) => fnv1a(format!("{change:?}").as_bytes()),
    }
}
