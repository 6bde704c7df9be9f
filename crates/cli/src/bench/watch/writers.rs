//! The writers of the delivery run: puts under the watched prefix at an open-loop target rate.
//!
//! ```text
//!  write k (k = 0, 1, 2, ...) is due at start + k / rate; it is measured if due inside [measure_from, end)
//!  `writers` tasks, each on its own keep-alive connection:
//!      loop { k = next ticket; sleep until due (or send at once if late); PUT bench/w/{k mod keys}
//!             200 + X-Tally-Index i ──▶ AckTable::record(i, now, measured) }
//! ```
//!
//! Open loop: when the writes are due does not depend on how fast earlier ones were answered, as long as a
//! writer is free; with every writer busy, due writes wait for one, and the achieved rate falls below the
//! target (reported, not hidden).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::super::conn::{CallError, Connection, Dial};
use super::super::report::{LATENCY_US_MAX, new_histogram};
use super::ErrorLog;
use super::acks::{Ack, AckTable};

/// The keys written: `bench/w/{k mod keys}`.
pub(super) const WRITE_PREFIX: &str = "bench/w/";

/// When the writes are due.
#[derive(Clone, Copy, Debug)]
pub(super) struct Schedule {
    /// Write 0 is due here.
    pub(super) start: Instant,
    /// Writes due from here on are measured.
    pub(super) measure_from: Instant,
    /// No write is due from here on.
    pub(super) end: Instant,
    /// Writes per second.
    pub(super) rate: u64,
}

/// Microseconds from `origin` to `instant` (0 before it): the run's one clock, shared by writers and watchers.
pub(super) fn micros_since(origin: Instant, instant: Instant) -> u64 {
    u64::try_from(instant.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX)
}

impl Schedule {
    /// When write `ticket` is due; `None` from the end on.
    pub(super) fn due(&self, ticket: u64) -> Option<Instant> {
        let nanos = u128::from(ticket) * 1_000_000_000 / u128::from(self.rate.max(1));
        let due = self.start + Duration::from_nanos(u64::try_from(nanos).ok()?);
        (due < self.end).then_some(due)
    }
}

/// What every writer shares.
pub(super) struct Writers {
    /// The origin of every recorded time (the watchers' too).
    pub(super) origin: Instant,
    /// The node written to.
    pub(super) url: String,
    /// How connections are opened.
    pub(super) dial: Arc<Dial>,
    /// When writes are due.
    pub(super) schedule: Schedule,
    /// Distinct keys.
    pub(super) keys: u64,
    /// The value written.
    pub(super) value: bytes::Bytes,
    /// Where acknowledgements go.
    pub(super) acks: Arc<AckTable>,
    /// The next write to send.
    pub(super) next_ticket: AtomicU64,
    /// The highest index acknowledged: the watchers are done when they have seen it.
    pub(super) highest_index: AtomicU64,
    /// Writes acknowledged (warmup included), for the progress line.
    pub(super) acknowledged: AtomicU64,
    /// Failed writes and their first messages.
    pub(super) errors: Arc<ErrorLog>,
}

/// What one writer measured.
pub(super) struct WriterResult {
    /// Latencies (send to answer) of its measured writes, in microseconds.
    pub(super) latencies: Histogram<u64>,
    /// Its measured writes that failed.
    pub(super) errors: u64,
    /// The instant its last measured write was answered.
    pub(super) last_answer: Option<Instant>,
}

/// One writer: takes tickets until none is due any more; a broken connection is opened again.
pub(super) async fn writer(writers: Arc<Writers>) -> WriterResult {
    let mut result = WriterResult { latencies: new_histogram(), errors: 0, last_answer: None };
    let mut connection: Option<Connection> = None;
    let schedule = writers.schedule;
    loop {
        let ticket = writers.next_ticket.fetch_add(1, Ordering::Relaxed);
        let Some(due) = schedule.due(ticket) else { return result };
        let key = ticket % writers.keys;
        tokio::time::sleep_until(due).await;
        let measured = due >= schedule.measure_from;
        let outcome = match connection.as_mut() {
            Some(conn) => put(conn, &writers, key, measured).await,
            None => match Connection::open(&writers.url, &writers.dial).await {
                Ok(mut conn) => {
                    let outcome = put(&mut conn, &writers, key, measured).await;
                    connection = Some(conn);
                    outcome
                }
                Err(error) => Err(error),
            },
        };
        match outcome {
            Ok(latency_us) if measured => {
                result.latencies.saturating_record(latency_us.clamp(1, LATENCY_US_MAX));
                result.last_answer = Some(Instant::now());
            }
            Ok(_) => {}
            Err(error) => {
                if matches!(error, CallError::Connection(_)) {
                    connection = None;
                    tokio::time::sleep(super::super::RECONNECT_PAUSE).await;
                }
                if measured {
                    result.errors += 1;
                    result.last_answer = Some(Instant::now());
                }
                writers.errors.record(&format!("write: {error}"));
            }
        }
    }
}

/// Sends one write and records its acknowledgement; its latency in microseconds.
async fn put(conn: &mut Connection, writers: &Writers, key: u64, measured: bool) -> Result<u64, CallError> {
    let sent = Instant::now();
    let index = conn.put_indexed(&format!("{WRITE_PREFIX}{key}"), &writers.value).await?;
    let answered = Instant::now();
    let acked_us = micros_since(writers.origin, answered);
    if !writers.acks.record(index, Ack { acked_us, measured }) {
        return Err(CallError::Answer(format!(
            "index {index} is outside the table of acknowledgements (another client writes to this cluster?)"
        )));
    }
    writers.highest_index.fetch_max(index, Ordering::Relaxed);
    writers.acknowledged.fetch_add(1, Ordering::Relaxed);
    Ok(u64::try_from((answered - sent).as_micros()).unwrap_or(LATENCY_US_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_due_at_the_rate_until_the_end() {
        let start = Instant::now();
        let schedule = Schedule {
            start,
            measure_from: start + Duration::from_secs(1),
            end: start + Duration::from_secs(3),
            rate: 4,
        };
        assert_eq!(schedule.due(0), Some(start));
        assert_eq!(schedule.due(1), Some(start + Duration::from_millis(250)));
        assert_eq!(schedule.due(11), Some(start + Duration::from_millis(2750)));
        assert_eq!(schedule.due(12), None, "due at the end: not sent");
        assert_eq!(schedule.due(u64::MAX), None);
        assert_eq!(micros_since(start, start + Duration::from_millis(2)), 2_000);
        assert_eq!(micros_since(start + Duration::from_millis(2), start), 0);
    }
}
