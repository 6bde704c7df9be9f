//! One watch stream of the bench: its own keep-alive connection to one node (`conn.rs`), the `GET /v1/watch`
//! answer's body read frame by frame, and the lean scanner (`events.rs`) turning frames into events.

use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::super::conn::{CallError, Connection, Dial};
use super::events::{EventScanner, StreamEvent};

/// One open watch.
pub(super) struct WatchStream {
    /// The connection the stream runs on: kept so it stays open while the body streams.
    _connection: Connection,
    /// The event stream.
    body: Incoming,
    /// Turns the body's frames into events.
    scanner: EventScanner,
    /// The index the watch started after (its answer's `X-Tally-Index`).
    start_index: u64,
}

impl WatchStream {
    /// Connects to `url` and starts the watch `path` (`/v1/watch?...`).
    ///
    /// # Errors
    /// The connection fails, or the node answers anything but `200` (`503` past `--max-watchers`, say).
    pub(super) async fn open(url: &str, dial: &Dial, path: &str) -> Result<WatchStream, CallError> {
        let mut connection = Connection::open(url, dial).await?;
        let (start_index, body) = connection.open_stream(path).await?;
        Ok(WatchStream { _connection: connection, body, scanner: EventScanner::new(), start_index })
    }

    /// The index the watch started after: it delivers every change after it.
    pub(super) fn start_index(&self) -> u64 {
        self.start_index
    }

    /// Waits for the next frame of the stream and appends its events (none if it only started one) to
    /// `events`; `Ok(false)` if the node ended the stream. Cancel-safe: nothing is lost if the future is dropped
    /// before it completes.
    ///
    /// # Errors
    /// The connection broke, or the stream cannot be read.
    pub(super) async fn next_events(&mut self, events: &mut Vec<StreamEvent>) -> Result<bool, CallError> {
        loop {
            let frame = match self.body.frame().await {
                None => return Ok(false),
                Some(Err(error)) => return Err(CallError::Connection(format!("watch stream broke: {error}"))),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else { continue }; // trailers: nothing to read
            self.scanner
                .push(&data, |event| events.push(event))
                .map_err(|error| CallError::Connection(format!("watch stream unreadable: {error}")))?;
            return Ok(true);
        }
    }
}
