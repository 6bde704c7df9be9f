//! A parser of Server-Sent Events (`text/event-stream`), pure and incremental: bytes in, events out, no I/O.
//!
//! It follows the WHATWG HTML standard's rules for parsing and interpreting an event stream
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//!
//! ```text
//!  chunks ──push──▶ split lines (CRLF, LF or CR; a CR ending one chunk and a LF starting the next are one
//!                   line ending) ──▶ decode each line as UTF-8 (invalid bytes become U+FFFD; one BOM at the very
//!                   start of the stream is skipped)
//!        ──▶ ""             dispatch: the last event id takes the id buffer's value; an event goes out if the data
//!                           buffer is not empty (its final "\n" removed); data and event type start over
//!            ":..."         a comment, ignored
//!            "name: value"  a field (one space after the colon is dropped; a line without a colon is a field
//!                           with an empty value): event, data (appended, then "\n"), id (ignored if it holds
//!                           NUL), retry (ASCII digits only); any other name is ignored
//! ```
//!
//! An event that the stream's end cuts off (no empty line after it) is never dispatched: callers simply stop
//! pushing. Memory is bounded by a cap ([`SseParser::with_bytes_max`]) on one line and on one event's data;
//! a stream over it is an error ([`SseError`]), after which the parser refuses everything (drop the
//! connection).
//!
//! ```
//! use tally_client::sse::SseParser;
//!
//! let mut parser = SseParser::new();
//! let mut events = Vec::new();
//! for chunk in [&b"event: put\r\nid: 7\r\ndata: {\"ind"[..], &b"ex\":7}\r\n\r"[..], &b"\n: progress\n"[..]] {
//!     for event in parser.push(chunk) {
//!         events.push(event.expect("a valid stream"));
//!     }
//! }
//! assert_eq!(events.len(), 1);
//! assert_eq!((events[0].event.as_str(), events[0].data.as_str()), ("put", "{\"index\":7}"));
//! assert_eq!(parser.last_event_id(), Some("7"));
//! ```

use std::time::Duration;

/// The cap on one line and on one event's data when none is given: 16 MiB, far above any event a Tally node
/// sends (a value is at most 1 MiB, twice that with its previous value, base64 included).
pub const DEFAULT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The event type of an event whose stream named none.
const DEFAULT_EVENT_TYPE: &str = "message";

/// The UTF-8 byte order mark, skipped once at the very start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: the value of its `event` field, or `"message"` if it had none (or an empty one).
    pub event: String,
    /// The values of its `data` fields, joined with `"\n"`.
    pub data: String,
    /// The last event id in effect when it was dispatched: set by the latest `id` field of this event or of
    /// any earlier one (an `id` field persists until another replaces it); `None` if no `id` field came yet
    /// or the latest was empty (the standard's empty last event id, which a client does not send back).
    pub id: Option<String>,
}

/// Why a stream cannot be parsed further.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A line (counted without its line ending) is longer than the cap.
    #[error(
        "a Server-Sent Events line is longer than {bytes_max} bytes (the parser's cap): the server is not \
         sending an event stream, or its events are larger than the cap; drop the connection, or raise the cap"
    )]
    LineTooLong {
        /// The cap.
        bytes_max: usize,
    },
    /// The `data` lines of one event add up to more than the cap.
    #[error(
        "the data of one Server-Sent Event is longer than {bytes_max} bytes (the parser's cap): the server is \
         not sending an event stream, or its events are larger than the cap; drop the connection, or raise the \
         cap"
    )]
    EventTooLarge {
        /// The cap.
        bytes_max: usize,
    },
}

/// An incremental Server-Sent Events parser (module doc). Push the bytes of a stream in any chunks; each
/// [`push`](SseParser::push) returns the events completed so far.
///
/// Invariant: `line.len() <= bytes_max` and `data.len() <= bytes_max`; once `failed` is set, no state changes
/// again.
#[derive(Clone, Debug)]
pub struct SseParser {
    /// The bytes of the line under way (its line ending not yet seen), still undecoded: a multi-byte
    /// character may be cut between chunks.
    line: Vec<u8>,
    /// Whether the last byte pushed was a CR ending a line: a LF right after it belongs to that line ending.
    after_cr: bool,
    /// Whether no line has ended yet: the first line is where a byte order mark may be.
    at_first_line: bool,
    /// The data buffer: each `data` value followed by `"\n"`.
    data: String,
    /// The event type buffer.
    event_type: String,
    /// The last event id buffer: the latest valid `id` value, which persists across events.
    id_buffer: String,
    /// The last event id string: the id buffer's value at the latest dispatch.
    last_event_id: String,
    /// The latest valid `retry` field.
    retry: Option<Duration>,
    /// The cap on `line` and on `data`.
    bytes_max: usize,
    /// The error that stopped the parser, repeated on every later push.
    failed: Option<SseError>,
}

impl Default for SseParser {
    fn default() -> SseParser {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser for a new stream, with the cap [`DEFAULT_BYTES_MAX`].
    pub fn new() -> SseParser {
        SseParser::with_bytes_max(DEFAULT_BYTES_MAX)
    }

    /// A parser for a new stream whose lines and events' data may each be at most `bytes_max` bytes.
    ///
    /// # Panics
    /// If `bytes_max` is zero (no stream would parse).
    pub fn with_bytes_max(bytes_max: usize) -> SseParser {
        assert!(bytes_max > 0, "an SSE parser's cap must be at least 1 byte");
        SseParser {
            line: Vec::new(),
            after_cr: false,
            at_first_line: true,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
            bytes_max,
            failed: None,
        }
    }

    /// The last event id string: the value of the latest valid `id` field as of the latest dispatch (an empty
    /// line), or `None` if there was none or it was empty. A client resuming the stream sends it back
    /// (`Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        Some(self.last_event_id.as_str()).filter(|id| !id.is_empty())
    }

    /// The reconnection time the stream asked for in its latest valid `retry` field (milliseconds, ASCII
    /// digits only; a value too large for a `u64` is ignored).
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Parses the next `chunk` of the stream and returns the events it completed, in order. If the stream
    /// breaks a cap, the error comes last, after the events completed before it; from then on every push
    /// returns only that error (the stream cannot be resynchronised: drop the connection).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<SseEvent, SseError>> {
        if let Some(error) = &self.failed {
            return vec![Err(error.clone())];
        }
        let mut events = Vec::new();
        if let Err(error) = self.split_lines(chunk, &mut events) {
            self.failed = Some(error.clone());
            events.push(Err(error));
        }
        assert!(self.line.len() <= self.bytes_max, "line under way {} > cap {}", self.line.len(), self.bytes_max);
        assert!(self.data.len() <= self.bytes_max, "data buffer {} > cap {}", self.data.len(), self.bytes_max);
        events
    }

    /// Splits `chunk` into lines, continuing the line under way, and interprets each whole line.
    fn split_lines(&mut self, mut chunk: &[u8], events: &mut Vec<Result<SseEvent, SseError>>) -> Result<(), SseError> {
        if chunk.is_empty() {
            // Nothing to do, and a CR that ended the previous chunk may still meet its LF.
            return Ok(());
        }
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        while let Some(end) = chunk.iter().position(|&byte| byte == b'\r' || byte == b'\n') {
            self.extend_line(&chunk[..end])?;
            let crlf = chunk[end] == b'\r' && chunk.get(end + 1) == Some(&b'\n');
            self.after_cr = chunk[end] == b'\r' && end + 1 == chunk.len();
            chunk = &chunk[end + if crlf { 2 } else { 1 }..];
            if let Some(event) = self.end_line()? {
                events.push(Ok(event));
            }
        }
        self.extend_line(chunk)
    }

    /// Appends `bytes` to the line under way, within the cap.
    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.bytes_max {
            return Err(SseError::LineTooLong { bytes_max: self.bytes_max });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Decodes and interprets the line that just ended; the event it dispatched, if any.
    fn end_line(&mut self) -> Result<Option<SseEvent>, SseError> {
        let mut bytes = std::mem::take(&mut self.line);
        if std::mem::replace(&mut self.at_first_line, false) && bytes.starts_with(BOM) {
            bytes.drain(..BOM.len());
        }
        let line = String::from_utf8_lossy(&bytes);
        let event = self.interpret(&line);
        // Keep the allocation for the next line.
        bytes.clear();
        self.line = bytes;
        event
    }

    /// Interprets one decoded line (module doc).
    fn interpret(&mut self, line: &str) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => self.append_data(value)?,
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// Appends a `data` value and its `"\n"` to the data buffer, within the cap.
    fn append_data(&mut self, value: &str) -> Result<(), SseError> {
        if self.data.len() + value.len() + 1 > self.bytes_max {
            return Err(SseError::EventTooLarge { bytes_max: self.bytes_max });
        }
        self.data.push_str(value);
        self.data.push('\n');
        Ok(())
    }

    /// Dispatches the buffered event (an empty line): sets the last event id, and returns the event unless
    /// its data buffer is empty; the data and event type buffers start over either way.
    fn dispatch(&mut self) -> Option<SseEvent> {
        self.last_event_id.clone_from(&self.id_buffer);
        let event_type = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        let newline = data.pop();
        assert_eq!(newline, Some('\n'), "every data value is followed by a newline in the buffer");
        let event = if event_type.is_empty() { DEFAULT_EVENT_TYPE.to_string() } else { event_type };
        Some(SseEvent { event, data, id: self.last_event_id().map(str::to_string) })
    }
}

#[cfg(test)]
mod tests;
