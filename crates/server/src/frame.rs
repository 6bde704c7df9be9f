//! Length-prefixed, checksummed frames on a byte stream.
//!
//! ```text
//! offset size field
//!    0     4  magic    b"TLYP" (Tally peer)
//!    4     1  version  PROTOCOL_VERSION; a peer speaking another version is refused with a clear error
//!    5     4  length   u32 LE, payload bytes, at most the decoder's maximum frame size
//!    9     4  checksum u32 LE, CRC32 of the payload
//!   13     n  payload
//! ```

/// The frame magic: refuses a connection from something that is not a Tally peer at once.
pub const MAGIC: [u8; 4] = *b"TLYP";

/// The peer protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 13;

/// Why a byte stream is not a valid sequence of frames. After any of these the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream does not start with a Tally peer frame.
    #[error("not a Tally peer frame (magic {found:02x?}); is something else connected to the peer port?")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {found}, this node speaks {PROTOCOL_VERSION}; upgrade one of them")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The frame announces more bytes than allowed.
    #[error("frame of {length} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced length.
        length: u64,
        /// The limit.
        max: usize,
    },
    /// The payload does not match its checksum.
    #[error("frame checksum mismatch (stored {stored:08x}, computed {computed:08x}): corrupted in transit")]
    ChecksumMismatch {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
}

/// Wraps `payload` in a frame.
///
/// # Panics
/// If the payload is longer than `u32::MAX` bytes (callers bound messages far below that).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("frame payload fits in u32");
    let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
    frame.extend_from_slice(&MAGIC);
    frame.push(PROTOCOL_VERSION);
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Cuts frames out of a byte stream that arrives in arbitrary pieces.
///
/// Invariant: `buffer` never holds more than `HEADER_BYTES + max_frame_bytes` bytes of one frame, because
/// an oversized frame is refused from its header, before its payload is buffered.
#[derive(Debug)]
pub struct FrameDecoder {
    /// The largest payload accepted.
    max_frame_bytes: usize,
    /// Bytes received; those from `consumed` on are not yet returned as frames.
    buffer: Vec<u8>,
    /// How many leading bytes of `buffer` were already returned as frames. They are dropped lazily (in `push`),
    /// so that taking many frames from one read does not move the rest of the buffer once per frame.
    consumed: usize,
}

impl FrameDecoder {
    /// A decoder accepting payloads of at most `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder { max_frame_bytes, buffer: Vec::new(), consumed: 0 }
    }

    /// Changes the largest payload accepted, from the next frame on (frames already returned are unaffected): a
    /// connection that has not yet proved who it is can be held to small frames, then allowed large ones.
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.max_frame_bytes = max_frame_bytes;
    }

    /// Adds bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// A bad magic, an unsupported version, an oversized frame or a checksum mismatch: close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let pending = &self.buffer[self.consumed..];
        if pending.len() < HEADER_BYTES {
            return Ok(None);
        }
        let header = &pending[..HEADER_BYTES];
        let magic: [u8; 4] = header[0..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        if header[4] != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion { found: header[4] });
        }
        let length = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
        if length > self.max_frame_bytes {
            return Err(FrameError::TooLarge { length: length as u64, max: self.max_frame_bytes });
        }
        let stored = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
        if pending.len() < HEADER_BYTES + length {
            return Ok(None);
        }
        let payload: Vec<u8> = pending[HEADER_BYTES..HEADER_BYTES + length].to_vec();
        self.consumed += HEADER_BYTES + length;
        let computed = crc32fast::hash(&payload);
        if computed != stored {
            return Err(FrameError::ChecksumMismatch { stored, computed });
        }
        Ok(Some(payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let payloads: Vec<Vec<u8>> = vec![b"one".to_vec(), Vec::new(), vec![7; 1000]];
        let stream: Vec<u8> = payloads.iter().flat_map(|p| encode(p)).collect();
        for split in [1, 2, 5, 13, 14, 100, stream.len()] {
            let mut decoder = FrameDecoder::new(4096);
            let mut out = Vec::new();
            for piece in stream.chunks(split) {
                decoder.push(piece);
                while let Some(frame) = decoder.next_frame().expect("valid stream") {
                    out.push(frame);
                }
            }
            assert_eq!(out, payloads, "split every {split} bytes");
        }
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut decoder = FrameDecoder::new(10);
        decoder.push(&encode(&[0; 11])[..HEADER_BYTES]);
        assert_eq!(decoder.next_frame(), Err(FrameError::TooLarge { length: 11, max: 10 }));
    }

    #[test]
    fn a_lowered_limit_applies_from_the_next_frame() {
        let mut decoder = FrameDecoder::new(100);
        decoder.set_max_frame_bytes(10);
        decoder.push(&encode(&[0; 11]));
        assert_eq!(decoder.next_frame(), Err(FrameError::TooLarge { length: 11, max: 10 }));

        let mut decoder = FrameDecoder::new(10);
        decoder.push(&encode(&[0; 5]));
        decoder.push(&encode(&[1; 50]));
        assert_eq!(decoder.next_frame(), Ok(Some(vec![0; 5])));
        decoder.set_max_frame_bytes(100);
        assert_eq!(decoder.next_frame(), Ok(Some(vec![1; 50])));
    }

    #[test]
    fn wrong_magic_version_and_checksum_are_named() {
        let mut decoder = FrameDecoder::new(100);
        decoder.push(b"GET / HTTP/1.1\r\n");
        assert!(matches!(decoder.next_frame(), Err(FrameError::BadMagic { .. })));

        let mut frame = encode(b"hello");
        frame[4] = 9;
        let mut decoder = FrameDecoder::new(100);
        decoder.push(&frame);
        assert_eq!(decoder.next_frame(), Err(FrameError::UnsupportedVersion { found: 9 }));

        let mut frame = encode(b"hello");
        frame[HEADER_BYTES] ^= 1;
        let mut decoder = FrameDecoder::new(100);
        decoder.push(&frame);
        assert!(matches!(decoder.next_frame(), Err(FrameError::ChecksumMismatch { .. })));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut decoder = FrameDecoder::new(64);
            decoder.push(&bytes);
            for _ in 0..4 {
                if !matches!(decoder.next_frame(), Ok(Some(_))) {
                    break;
                }
            }
        }
    }
}
