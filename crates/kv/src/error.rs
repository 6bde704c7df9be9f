//! Errors from decoding untrusted bytes (command payloads and snapshots).

/// Why a command payload or a snapshot could not be decoded.
///
/// Decoding is deterministic: the same bytes give the same error on every node, so a bad command
/// payload becomes a [`crate::Response::Invalid`] answer rather than a local failure.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before a field was complete.
    #[error("truncated at offset {offset}: needed {needed} bytes, {available} available")]
    Truncated {
        /// Where the incomplete field starts, so a corrupted file can be inspected there.
        offset: usize,
        /// How many bytes the field needs.
        needed: usize,
        /// How many bytes were left at `offset`.
        available: usize,
    },
    /// The leading format byte names a format this build does not know (likely a newer one).
    #[error("unknown {what} format version {found} (this build reads {})", versions_read(*oldest, *expected))]
    UnknownVersion {
        /// Which encoding: "command" or "snapshot".
        what: &'static str,
        /// The version byte found.
        found: u8,
        /// The oldest version this build still reads.
        oldest: u8,
        /// The version this build writes, the newest it reads.
        expected: u8,
    },
    /// A tag byte (command kind, option flag) has no meaning.
    #[error("bad {what} tag {tag} at offset {offset}")]
    BadTag {
        /// Which tag was being read, e.g. "command kind".
        what: &'static str,
        /// The byte found.
        tag: u8,
        /// Where it was found.
        offset: usize,
    },
    /// Bytes remain after a complete value: the encoding is not canonical, or was concatenated.
    #[error("{count} trailing bytes at offset {offset}")]
    TrailingBytes {
        /// Where the extra bytes start.
        offset: usize,
        /// How many extra bytes there are.
        count: usize,
    },
    /// A text field (URL, cluster id) is not UTF-8.
    #[error("text at offset {offset} is not UTF-8")]
    BadUtf8 {
        /// Where the field starts.
        offset: usize,
    },
    /// A text field is longer than its limit.
    #[error("text at offset {offset} is {len} bytes, over the limit of {max}")]
    TextTooLong {
        /// Where the field starts.
        offset: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list's count is over its hard cap, so decoding stops before reading (or allocating for) its items.
    #[error("{what}: {count} at offset {offset}, over the limit of {max}")]
    TooMany {
        /// Which list, e.g. "txn success ops".
        what: &'static str,
        /// The count found.
        count: u64,
        /// The cap.
        max: usize,
        /// Where the count starts.
        offset: usize,
    },
    /// A prefix delete names the empty prefix, which would delete every key: refused so that no
    /// mistake deletes everything.
    #[error(
        "prefix delete at offset {offset} has an empty prefix; name the keys to delete by a non-empty \
         prefix (deleting every key at once is not offered)"
    )]
    EmptyPrefix {
        /// Where the prefix field starts.
        offset: usize,
    },
    /// The input does not start with the snapshot magic bytes: it is not a Tally kv snapshot.
    #[error("bad snapshot magic {found:?}")]
    BadMagic {
        /// The first bytes found instead.
        found: [u8; 4],
    },
    /// The stored CRC32 does not match the contents: the snapshot was corrupted.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum stored at the end of the snapshot.
        stored: u32,
        /// The checksum of the bytes actually read.
        computed: u32,
    },
    /// Snapshot keys are not strictly increasing, so the encoding is not the canonical one.
    #[error("snapshot key at offset {offset} is not greater than the previous key")]
    KeysOutOfOrder {
        /// Where the offending key starts.
        offset: usize,
    },
    /// A snapshot entry breaks `1 <= create_index <= modify_index <= applied_index`.
    #[error(
        "snapshot entry at offset {offset} has create_index {create_index}, \
         modify_index {modify_index}, applied_index {applied_index}"
    )]
    BadIndexes {
        /// Where the offending entry starts.
        offset: usize,
        /// The entry's create index.
        create_index: u64,
        /// The entry's modify index.
        modify_index: u64,
        /// The snapshot's applied index.
        applied_index: u64,
    },
    /// A snapshot entry's write count breaks `1 <= version <= modify_index - create_index + 1`: more writes than
    /// there were entries between its creation and its last write, or none at all.
    #[error(
        "snapshot entry at offset {offset} has version {version}, create_index {create_index}, \
         modify_index {modify_index}"
    )]
    BadVersion {
        /// Where the offending entry starts.
        offset: usize,
        /// The entry's version (its write count).
        version: u64,
        /// The entry's create index.
        create_index: u64,
        /// The entry's modify index.
        modify_index: u64,
    },
    /// The snapshot's auth state breaks an invariant of the auth store (e.g. a user holding a role that does not
    /// exist, or auth enabled with no admin): it is not a state that applying commands could have built.
    #[error("snapshot auth state at offset {offset} is inconsistent: {detail}")]
    BadAuthState {
        /// Where the auth state starts.
        offset: usize,
        /// Which invariant is broken.
        detail: String,
    },
}

/// The versions `oldest..=newest` in words, for [`DecodeError::UnknownVersion`].
fn versions_read(oldest: u8, newest: u8) -> String {
    if oldest == newest { format!("only version {newest}") } else { format!("versions {oldest} to {newest}") }
}
