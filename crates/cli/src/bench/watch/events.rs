//! A lean reader of a watch's Server-Sent Events: only what the bench needs (each change's index, progress,
//! the error that ends a stream), with no allocation per event once its buffers have grown. The full parser
//! is `tally_client::sse`; this one trades its generality for the bench's CPU budget (a thousand streams share
//! the two cores with the cluster they measure).
//!
//! ```text
//!  chunks ──push──▶ split at "\n", found a word at a time (a "\r" before it is dropped; a line cut by a chunk
//!                   boundary waits in `line`)
//!        ──▶ "event: put|delete|progress|error|..."   remembered for the event under way
//!            "data: ..."                               change, progress: its "index":N read at once (no copy);
//!                                                      error, or no event type yet: appended to `data`
//!            "" (blank line)                           dispatch: put/delete ──▶ Change(index from "index":N)
//!                                                                progress   ──▶ Progress(index)
//!                                                                error      ──▶ SlowWatcher(resume_from) | Failed
//!            anything else (id:, comments, retry:)     ignored: the index in the data is the one that counts
//! ```
//!
//! The node always sends `{"index":N,...}` as the data of a change or a progress event (docs/http-api.md,
//! "Watches"); an event without a readable index is an error, after which the scanner refuses everything.

/// The longest line, and the most data in one event: a value is at most 1 MiB, escaped as JSON at most six
/// bytes per byte, plus the rest of the event.
pub(super) const LINE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// What precedes the index in the data of a change or a progress event.
const INDEX_LABEL: &[u8] = b"\"index\":";

/// One event, reduced to what the bench uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum StreamEvent {
    /// A `put` or `delete` of entry `index`.
    Change {
        /// The entry's log index.
        index: u64,
    },
    /// Every change up to `index` was sent.
    Progress {
        /// The index.
        index: u64,
    },
    /// The node cut the stream off because this watcher fell behind; resume from `resume_from`.
    SlowWatcher {
        /// The first index not delivered.
        resume_from: u64,
    },
    /// Any other `error` event (compacted, permission denied): the stream ends; its data as sent.
    Failed {
        /// The event's data.
        data: String,
    },
}

/// Why a stream cannot be read further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ScanError {
    /// A line or one event's data is longer than [`LINE_BYTES_MAX`].
    TooLong,
    /// A change or progress event whose data has no `"index":N`.
    NoIndex {
        /// The data, cut to a readable length.
        data: String,
    },
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::TooLong => write!(f, "an event-stream line is longer than {LINE_BYTES_MAX} bytes"),
            ScanError::NoIndex { data } => write!(f, "an event without an index: {data}"),
        }
    }
}

/// The event type under way (its `event:` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// No `event:` field yet (the standard's "message").
    Message,
    /// `put` or `delete`.
    Change,
    /// `progress`.
    Progress,
    /// `error`.
    Error,
    /// Any other type: ignored.
    Other,
}

/// The incremental scanner of one stream.
///
/// Invariant: `line.len() <= LINE_BYTES_MAX` and `data.len() <= LINE_BYTES_MAX`; once `failed`, no event is
/// emitted again.
#[derive(Debug)]
pub(super) struct EventScanner {
    /// The start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The type of the event under way.
    kind: Kind,
    /// The `data:` values of the event under way, joined with "\n", when they have to be kept: for an error, or
    /// while the event's type is not known yet (its `event:` line may come after its data).
    data: Vec<u8>,
    /// The index read from the first `data:` line of a change or progress event that has one.
    index: Option<u64>,
    /// Whether the event under way has a `data:` field (an event without one is not dispatched).
    has_data: bool,
    /// Set once the stream could not be read: everything after is refused.
    failed: Option<ScanError>,
}

impl EventScanner {
    /// A scanner at the start of a stream.
    pub(super) fn new() -> EventScanner {
        EventScanner {
            line: Vec::new(),
            kind: Kind::Message,
            data: Vec::new(),
            index: None,
            has_data: false,
            failed: None,
        }
    }

    /// Reads `chunk`, the next bytes of the stream, and hands each completed event to `emit`.
    ///
    /// # Errors
    /// The stream is not readable (the same error again on every later call).
    pub(super) fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(StreamEvent)) -> Result<(), ScanError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.push_lines(chunk, &mut emit);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// [`push`](Self::push) without the failure latch.
    fn push_lines(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(StreamEvent)) -> Result<(), ScanError> {
        while let Some(end) = find_newline(chunk) {
            let (head, rest) = (&chunk[..end], &chunk[end + 1..]);
            chunk = rest;
            if self.line.is_empty() {
                self.line_done(head, emit)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                append_capped(&mut line, head)?;
                let outcome = self.line_done(&line, emit);
                line.clear();
                self.line = line; // keeps its capacity
                outcome?;
            }
        }
        append_capped(&mut self.line, chunk)
    }

    /// Handles one complete line (without its "\n").
    fn line_done(&mut self, line: &[u8], emit: &mut impl FnMut(StreamEvent)) -> Result<(), ScanError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.dispatch(emit);
        }
        let (name, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &b""[..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match name {
            b"event" => {
                self.kind = match value {
                    b"put" | b"delete" => Kind::Change,
                    b"progress" => Kind::Progress,
                    b"error" => Kind::Error,
                    b"" | b"message" => Kind::Message,
                    _ => Kind::Other,
                }
            }
            b"data" => {
                match self.kind {
                    Kind::Change | Kind::Progress => {
                        if self.index.is_none() {
                            self.index = number_after(value, INDEX_LABEL);
                        }
                    }
                    Kind::Message | Kind::Error => {
                        if self.has_data {
                            append_capped(&mut self.data, b"\n")?;
                        }
                        append_capped(&mut self.data, value)?;
                    }
                    Kind::Other => {}
                }
                self.has_data = true;
            }
            _ => {} // id, retry, comments (empty name) and unknown fields
        }
        Ok(())
    }

    /// Ends the event under way (a blank line): emits it if it is one the bench reads.
    fn dispatch(&mut self, emit: &mut impl FnMut(StreamEvent)) -> Result<(), ScanError> {
        let (kind, has_data, index) = (self.kind, self.has_data, self.index.take());
        self.kind = Kind::Message;
        self.has_data = false;
        let event = match (kind, has_data) {
            (_, false) | (Kind::Message | Kind::Other, true) => None,
            (Kind::Change, true) => Some(StreamEvent::Change { index: self.index(index)? }),
            (Kind::Progress, true) => Some(StreamEvent::Progress { index: self.index(index)? }),
            (Kind::Error, true) => Some(match number_after(&self.data, b"\"resume_from\":") {
                Some(resume_from) if contains(&self.data, b"\"slow_watcher\"") => {
                    StreamEvent::SlowWatcher { resume_from }
                }
                _ => StreamEvent::Failed { data: String::from_utf8_lossy(&self.data).into_owned() },
            }),
        };
        self.data.clear();
        if let Some(event) = event {
            emit(event);
        }
        Ok(())
    }

    /// The index of the event under way: the one read from its data line, or else the one in the data kept
    /// (its `event:` line came after its data).
    fn index(&self, read: Option<u64>) -> Result<u64, ScanError> {
        read.or_else(|| number_after(&self.data, INDEX_LABEL)).ok_or_else(|| ScanError::NoIndex {
            data: String::from_utf8_lossy(&self.data[..self.data.len().min(200)]).into_owned(),
        })
    }
}

/// The position of the first `\n` in `bytes`: eight bytes at a time (the classic "has a zero byte" test on the
/// word XORed with eight newlines; its lowest flagged byte is always exact), which keeps the bench's cost per
/// event low: a data line is about 200 bytes.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_le_bytes([b'\n'; 8]);
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let mut eight = [0; 8];
        eight.copy_from_slice(word);
        let diff = u64::from_le_bytes(eight) ^ NEWLINES; // a zero byte where the newline is
        let zeros = diff.wrapping_sub(ONES) & !diff & HIGHS;
        if zeros != 0 {
            return Some(offset + (zeros.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words.remainder().iter().position(|&byte| byte == b'\n').map(|position| offset + position)
}

/// Appends `bytes` to `buffer`, refusing to grow it past [`LINE_BYTES_MAX`].
fn append_capped(buffer: &mut Vec<u8>, bytes: &[u8]) -> Result<(), ScanError> {
    if buffer.len() + bytes.len() > LINE_BYTES_MAX {
        return Err(ScanError::TooLong);
    }
    buffer.extend_from_slice(bytes);
    Ok(())
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The decimal number right after the first `label` in `data` (`data` starts with it in every event the node
/// sends, so the search is short).
fn number_after(data: &[u8], label: &[u8]) -> Option<u64> {
    let start = data.windows(label.len()).position(|window| window == label)? + label.len();
    let digits = data[start..].iter().take_while(|byte| byte.is_ascii_digit()).count();
    std::str::from_utf8(&data[start..start + digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `chunks`, pushed in order.
    fn scan(chunks: &[&[u8]]) -> Result<Vec<StreamEvent>, ScanError> {
        let mut scanner = EventScanner::new();
        let mut events = Vec::new();
        for chunk in chunks {
            scanner.push(chunk, |event| events.push(event))?;
        }
        Ok(events)
    }

    /// A stream as the node sends it (crates/server/src/http/sse.rs): a group of two changes at 7, a change at
    /// 8, progress, then the slow-watcher error.
    const STREAM: &[u8] = b"event: put\n\
        data: {\"index\":7,\"key\":\"bench/w/1\",\"value\":\"a\",\"create_index\":7,\"modify_index\":7,\"version\":1}\n\n\
        event: delete\n\
        data: {\"index\":7,\"key\":\"bench/w/2\",\"create_index\":0,\"modify_index\":7,\"version\":0}\n\
        id: 7\n\n\
        event: put\n\
        data: {\"index\":8,\"key\":\"bench/w/1\",\"value\":\"\\\"index\\\":99\",\"create_index\":7,\"modify_index\":8,\"version\":2}\n\
        id: 8\n\n\
        event: progress\ndata: {\"index\":9}\nid: 9\n\n\
        event: error\ndata: {\"code\":\"slow_watcher\",\"resume_from\":10}\n\n";

    fn expected() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Change { index: 7 },
            StreamEvent::Change { index: 7 },
            StreamEvent::Change { index: 8 },
            StreamEvent::Progress { index: 9 },
            StreamEvent::SlowWatcher { resume_from: 10 },
        ]
    }

    #[test]
    fn reads_the_events_the_node_sends() {
        assert_eq!(scan(&[STREAM]), Ok(expected()));
    }

    #[test]
    fn any_split_into_chunks_reads_the_same() {
        // Every cut point, and the byte-at-a-time worst case: lines and events cross chunk boundaries.
        for cut in 0..=STREAM.len() {
            assert_eq!(scan(&[&STREAM[..cut], &STREAM[cut..]]), Ok(expected()), "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(scan(&bytes), Ok(expected()));
    }

    #[test]
    fn crlf_comments_and_unknown_events_are_tolerated() {
        let stream = b": hello\r\nretry: 100\r\nevent: put\r\ndata: {\"index\":3}\r\n\r\n\
            event: other\ndata: {\"index\":4}\n\ndata: {\"index\":5}\n\nevent: put\n\n";
        assert_eq!(scan(&[stream]), Ok(vec![StreamEvent::Change { index: 3 }]));
    }

    #[test]
    fn other_errors_end_the_stream_with_their_data() {
        let stream = b"event: error\ndata: {\"code\":\"compacted\",\"oldest_index\":40}\n\n";
        let data = "{\"code\":\"compacted\",\"oldest_index\":40}".to_string();
        assert_eq!(scan(&[stream]), Ok(vec![StreamEvent::Failed { data }]));
    }

    #[test]
    fn an_event_without_an_index_fails_the_stream_for_good() {
        let mut scanner = EventScanner::new();
        let mut events = Vec::new();
        let error = scanner.push(b"event: put\ndata: {\"key\":\"a\"}\n\n", |e| events.push(e));
        assert!(matches!(error, Err(ScanError::NoIndex { .. })), "{error:?}");
        let again = scanner.push(b"event: put\ndata: {\"index\":1}\n\n", |e| events.push(e));
        assert!(matches!(again, Err(ScanError::NoIndex { .. })), "{again:?}");
        assert!(events.is_empty());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut scanner = EventScanner::new();
        let block = vec![b'x'; 1024 * 1024];
        let mut result = Ok(());
        for _ in 0..=LINE_BYTES_MAX / block.len() {
            result = scanner.push(&block, |_| {});
        }
        assert_eq!(result, Err(ScanError::TooLong));
    }

    #[test]
    fn data_before_its_event_line_is_still_read() {
        let stream = b"data: {\"index\":12}\nevent: put\n\ndata: {\"code\":\"slow_watcher\",\"resume_from\":13}\nevent: error\n\n";
        let expected = vec![StreamEvent::Change { index: 12 }, StreamEvent::SlowWatcher { resume_from: 13 }];
        assert_eq!(scan(&[stream]), Ok(expected));
    }

    #[test]
    fn newlines_are_found_wherever_they_are() {
        // Phase 1: against the plain search, for every length and position, and bytes that trip a naive
        // word test (0x0b = newline + 1, 0x8a = newline with the high bit).
        for length in 0..40 {
            for position in 0..=length {
                let mut bytes: Vec<u8> = (0..length).map(|i| [b'a', 0x0b, 0x8a, 0x00][i % 4]).collect();
                if position < length {
                    bytes[position] = b'\n';
                }
                let plain = bytes.iter().position(|&byte| byte == b'\n');
                assert_eq!(find_newline(&bytes), plain, "length {length}, newline at {position}");
            }
        }
        // Phase 2: the first of several newlines in one word.
        assert_eq!(find_newline(b"ab\n\n\ncdefgh"), Some(2));
        assert_eq!(find_newline(b"abcdefg\n\n"), Some(7));
    }

    #[test]
    fn numbers_after_labels() {
        assert_eq!(number_after(b"{\"index\":123,\"x\":1}", b"\"index\":"), Some(123));
        assert_eq!(number_after(b"{\"index\":}", b"\"index\":"), None);
        assert_eq!(number_after(b"{}", b"\"index\":"), None);
        assert_eq!(number_after(b"{\"index\":99999999999999999999999}", b"\"index\":"), None, "overflow");
    }
}
