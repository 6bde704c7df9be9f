//! Byte-level helpers shared by the command and snapshot encodings.
//!
//! Integers are fixed-width little-endian; byte strings are a `u32` length followed by the bytes.
//! Fixed widths keep the encoding canonical (one byte string per value), which the snapshot
//! checksum and [`crate::KvStore::state_checksum`] rely on.

use crate::DecodeError;

/// Somewhere encoded bytes go: a buffer, or a running hash that never materialises them.
pub(crate) trait Sink {
    /// Appends `bytes` to the output.
    fn put(&mut self, bytes: &[u8]);

    /// Appends one byte.
    fn put_u8(&mut self, value: u8) {
        self.put(&[value]);
    }

    /// Appends a little-endian `u64`.
    fn put_u64(&mut self, value: u64) {
        self.put(&value.to_le_bytes());
    }

    /// Appends a `u32` length prefix and then `bytes`.
    ///
    /// # Panics
    ///
    /// If `bytes` is longer than `u32::MAX`: size limits are enforced long before this (at the
    /// HTTP layer), so a longer field is a programmer error.
    fn put_bytes(&mut self, bytes: &[u8]) {
        let Ok(len) = u32::try_from(bytes.len()) else {
            panic!("field of {} bytes exceeds the u32 length prefix", bytes.len());
        };
        self.put(&len.to_le_bytes());
        self.put(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// 64-bit FNV-1a, chosen because its output is fixed by its definition, unlike `std`'s
/// `Hasher`s, which may change between Rust versions and would break cross-node comparisons.
pub(crate) struct Fnv1a {
    /// The running hash.
    state: u64,
}

impl Fnv1a {
    /// The FNV-1a 64-bit offset basis.
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    /// The FNV-1a 64-bit prime.
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A hash of the empty input.
    pub(crate) fn new() -> Self {
        Fnv1a { state: Self::OFFSET_BASIS }
    }

    /// The hash of everything put so far.
    pub(crate) fn finish(&self) -> u64 {
        self.state
    }
}

impl Sink for Fnv1a {
    fn put(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.state ^= u64::from(byte);
            self.state = self.state.wrapping_mul(Self::PRIME);
        }
    }
}

/// A cursor over untrusted input. Every read checks the remaining length first, so no input can
/// make it panic or allocate more than the input's own size.
///
/// Invariant: `offset <= bytes.len()`.
pub(crate) struct Reader<'a> {
    /// The whole input, kept so errors can report absolute offsets.
    bytes: &'a [u8],
    /// How many bytes have been consumed.
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    /// How many bytes have been consumed; the offset of the next read.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// Consumes exactly `len` bytes.
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let available = self.bytes.len() - self.offset;
        if len > available {
            return Err(DecodeError::Truncated { offset: self.offset, needed: len, available });
        }
        let taken = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        assert!(
            self.offset <= self.bytes.len(),
            "reader offset {} past input length {}",
            self.offset,
            self.bytes.len()
        );
        Ok(taken)
    }

    /// Consumes exactly `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// Consumes one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Consumes a little-endian `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Consumes a little-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Consumes a `u32` length prefix and that many bytes.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len_offset = self.offset;
        let len = self.u32()?;
        // A length that does not fit usize cannot fit in the input either.
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated {
            offset: len_offset,
            needed: usize::MAX,
            available: self.bytes.len() - self.offset,
        })?;
        self.take(len)
    }

    /// Succeeds only if all input was consumed, so concatenated or padded input is rejected.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        let count = self.bytes.len() - self.offset;
        if count == 0 { Ok(()) } else { Err(DecodeError::TrailingBytes { offset: self.offset, count }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Reference values from the FNV specification's test suite.
        let mut empty = Fnv1a::new();
        empty.put(b"");
        assert_eq!(empty.finish(), 0xcbf2_9ce4_8422_2325);
        let mut a = Fnv1a::new();
        a.put(b"a");
        assert_eq!(a.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut foobar = Fnv1a::new();
        foobar.put(b"foobar");
        assert_eq!(foobar.finish(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn reader_round_trips_what_sink_writes() {
        let mut buf = Vec::new();
        buf.put_u8(7);
        buf.put_u64(u64::MAX - 1);
        buf.put_bytes(b"hello");
        buf.put_bytes(b"");
        let mut reader = Reader::new(&buf);
        assert_eq!(reader.u8(), Ok(7));
        assert_eq!(reader.u64(), Ok(u64::MAX - 1));
        assert_eq!(reader.bytes(), Ok(&b"hello"[..]));
        assert_eq!(reader.bytes(), Ok(&b""[..]));
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn reader_reports_truncation_with_offset() {
        let mut buf = Vec::new();
        buf.put_bytes(b"hello");
        buf.truncate(7);
        let mut reader = Reader::new(&buf);
        assert_eq!(reader.bytes(), Err(DecodeError::Truncated { offset: 4, needed: 5, available: 3 }));
    }

    #[test]
    fn reader_rejects_trailing_bytes() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.u8(), Ok(1));
        assert_eq!(reader.finish(), Err(DecodeError::TrailingBytes { offset: 1, count: 2 }));
    }
}
