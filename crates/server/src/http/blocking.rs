//! Blocking reads, as in Consul: `GET /v1/kv/{key}?wait_index=N&wait=30s` (and the same on a prefix list) holds
//! the answer until the key or prefix changed after index N, or `wait` ran out, then answers the normal read
//! (docs/http-api.md, "Blocking reads").
//!
//! ```text
//!  one-shot watch from N+1 (the node loop's applied index stands in for a read index)
//!     ├─ compacted (N is older than the history) ───────────────────┐
//!     ├─ a change with index > N already kept, or arriving later ───┼──▶ the normal read, answered
//!     └─ wait (+ up to wait/16 jitter, so clients spread out) ──────┘
//! ```

use std::time::Duration;

use tally_kv::KeyFilter;
use tokio::time::Instant;

use super::params::Params;
use super::watch::subscribe;
use super::{ApiError, AppState};
use crate::driver::watch::{WatchItem, WatchMessage, WatchRequest};

/// The query parameters of a blocking read, accepted by the calls that offer it.
pub(super) const WAIT_PARAMS: [&str; 2] = ["wait_index", "wait"];

/// How long a blocking read waits without `wait`.
const WAIT_DEFAULT: Duration = Duration::from_secs(5 * 60);

/// The longest `wait` accepted.
const WAIT_MAX: Duration = Duration::from_secs(10 * 60);

/// A blocking read's condition: answer once something changed after `index`, or after `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BlockingWait {
    /// The index the caller's last answer reflected (its `X-Tally-Index`).
    index: u64,
    /// How long to wait at most, before jitter.
    wait: Duration,
}

/// The blocking-read parameters, if `wait_index` is given.
///
/// # Errors
/// `400` for `wait` without `wait_index`, a `wait_index` that is not a number, or a `wait` that is not a
/// duration (`500ms`, `30s`, `5m`) of at most 10 minutes.
pub(super) fn parse(params: &Params) -> Result<Option<BlockingWait>, ApiError> {
    let Some(index) = params.u64("wait_index")? else {
        if params.bytes("wait").is_some() {
            return Err(ApiError::bad_request("wait needs wait_index=N (the X-Tally-Index of your last answer)"));
        }
        return Ok(None);
    };
    let wait = match params.bytes("wait") {
        None => WAIT_DEFAULT,
        Some(text) => parse_wait(text)?,
    };
    Ok(Some(BlockingWait { index, wait }))
}

/// A duration: a number and a unit, `ms`, `s`, `m` or `h`, at most [`WAIT_MAX`].
///
/// # Errors
/// `400` naming the value for anything else.
fn parse_wait(text: &[u8]) -> Result<Duration, ApiError> {
    let text = String::from_utf8_lossy(text);
    let bad = || {
        ApiError::bad_request(format!("wait must be a duration of at most 10m such as 500ms, 30s or 5m, got {text:?}"))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let number: u64 = text[..split].parse().map_err(|_| bad())?;
    let unit_ms = match &text[split..] {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let wait = Duration::from_millis(number.checked_mul(unit_ms).ok_or_else(bad)?);
    if wait > WAIT_MAX {
        return Err(bad());
    }
    Ok(wait)
}

/// Waits until a key `filter` follows changed at an index past the caller's, or the wait (with jitter) ran out.
/// Returns at once when the history no longer reaches back to the caller's index (something may have
/// changed; the read tells).
///
/// # Errors
/// `503` when the node serves as many watchers as allowed, or the node loop's own errors.
pub(super) async fn wait_for_change(state: &AppState, filter: KeyFilter, wait: BlockingWait) -> Result<(), ApiError> {
    let request = WatchRequest { filter, prev: false, from: Some(wait.index.saturating_add(1)), read_index: None };
    let mut messages = match subscribe(state, request).await {
        Ok(messages) => messages,
        Err(error) if error.code == "compacted" => return Ok(()),
        Err(error) => return Err(error),
    };
    let deadline = Instant::now() + wait.wait + jitter(wait.wait);
    loop {
        let message = match tokio::time::timeout_at(deadline, messages.recv()).await {
            Err(_) | Ok(None) => return Ok(()),
            Ok(Some(message)) => message,
        };
        match message {
            WatchMessage::End(_) => return Ok(()),
            WatchMessage::Items(items) => {
                let changed = items.iter().any(|item| match item {
                    WatchItem::Changes { batch, .. } => batch.index > wait.index,
                    WatchItem::Progress(_) => false,
                });
                if changed {
                    return Ok(());
                }
            }
        }
    }
}

/// A random extra wait of up to `wait / 16`, so that clients that started together do not all come back at
/// once (Consul does the same).
fn jitter(wait: Duration) -> Duration {
    let span = (wait / 16).as_millis() as u64;
    if span == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(getrandom::u64().unwrap_or(0) % span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_parses_durations_up_to_ten_minutes() {
        assert_eq!(parse_wait(b"30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_wait(b"250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_wait(b"10m"), Ok(Duration::from_secs(600)));
        for bad in [&b"11m"[..], b"30", b"s", b"1d", b"-1s", b""] {
            let error = parse_wait(bad).expect_err("refused");
            assert!(error.message.contains("at most 10m"), "{}", error.message);
        }
    }

    #[test]
    fn wait_needs_wait_index_and_defaults_to_five_minutes() {
        let params = Params::parse(Some("wait_index=7"), &WAIT_PARAMS).expect("parses");
        assert_eq!(parse(&params), Ok(Some(BlockingWait { index: 7, wait: WAIT_DEFAULT })));
        let params = Params::parse(Some("wait=1s"), &WAIT_PARAMS).expect("parses");
        assert!(parse(&params).is_err(), "wait alone is refused");
        assert_eq!(parse(&Params::default()), Ok(None));
        assert!(jitter(Duration::from_secs(16)) < Duration::from_secs(1));
    }
}
