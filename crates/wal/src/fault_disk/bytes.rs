//! File contents with an implicit zero tail, so preallocated space costs no memory.

/// File contents: `head` followed by zeros up to `len`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Bytes {
    /// Invariant: `head.len() as u64 <= len`.
    pub(super) head: Vec<u8>,
    /// The file length; bytes from `head.len()` on are zeros.
    pub(super) len: u64,
}

impl Bytes {
    pub(super) fn read(&self, offset: u64, buf: &mut [u8]) {
        assert!(offset + buf.len() as u64 <= self.len, "read past end: {offset}+{} > {}", buf.len(), self.len);
        let head_len = self.head.len() as u64;
        let from_head = head_len.saturating_sub(offset).min(buf.len() as u64) as usize;
        if from_head > 0 {
            buf[..from_head].copy_from_slice(&self.head[offset as usize..offset as usize + from_head]);
        }
        buf[from_head..].fill(0);
    }

    pub(super) fn write(&mut self, offset: u64, data: &[u8]) {
        assert!(offset <= self.len, "write at {offset} past end {}", self.len);
        let end = offset + data.len() as u64;
        let head_len = self.head.len() as u64;
        if offset >= head_len && data.iter().all(|byte| *byte == 0) {
            // Zeros beyond the head are already zeros: only the length moves.
            self.len = self.len.max(end);
            return;
        }
        if (self.head.len() as u64) < end {
            self.head.resize(end as usize, 0);
        }
        self.head[offset as usize..end as usize].copy_from_slice(data);
        self.len = self.len.max(end);
    }

    pub(super) fn write_zeros(&mut self, start: u64, end: u64) {
        assert!(start <= self.len, "zero fill at {start} past end {}", self.len);
        let head_len = self.head.len() as u64;
        if start < head_len {
            let stop = end.min(head_len);
            self.head[start as usize..stop as usize].fill(0);
        }
        self.len = self.len.max(end);
    }

    pub(super) fn set_len(&mut self, len: u64) {
        if (self.head.len() as u64) > len {
            self.head.truncate(len as usize);
        }
        self.len = len;
        debug_assert!(self.head.len() as u64 <= self.len, "head passes the length");
    }

    pub(super) fn to_vec(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        out.resize(self.len as usize, 0);
        out
    }
}
