//! The retry policy, as pure functions: which failures may be retried, where, and after how long. See the
//! crate doc for the policy in words.

use std::time::Duration;

use crate::error::{ApiError, code};

/// Whether a request changes state; it decides what is safe to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A read: retrying it can do no harm.
    Read,
    /// A write (put, delete, cas, prefix delete, a transaction with a write, leader transfer): retried only when
    /// it certainly was not applied.
    Write,
}

/// How one attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection could not be made: nothing was sent.
    Connect(String),
    /// No answer within the request timeout.
    Timeout,
    /// The connection broke after the request was (perhaps) sent.
    Interrupted(String),
    /// The node answered with an error.
    Api(ApiError),
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Give up: the failure is final or retrying is not safe.
    No,
    /// Try the next endpoint at once.
    Elsewhere,
    /// Wait for the backoff, then try again (on the leader if known, else the next endpoint).
    AfterBackoff,
}

/// The retry decision for a `kind` request that failed with `failure`.
///
/// Safe to retry: anything that never reached a node (connect failures); answers that say nothing was
/// written (`503 no_leader`/`unavailable`, `502 forward_failed`); and for reads, timeouts and broken
/// connections. Never: 4xx answers, and writes whose outcome is unknown (`504`, timeouts, broken
/// connections).
pub(crate) fn decide(kind: Kind, failure: &Failure) -> Retry {
    match failure {
        Failure::Connect(_) => Retry::Elsewhere,
        Failure::Timeout | Failure::Interrupted(_) => match kind {
            Kind::Read => Retry::Elsewhere,
            Kind::Write => Retry::No,
        },
        Failure::Api(error) => match error.code.as_str() {
            code::NO_LEADER | code::UNAVAILABLE | code::FORWARD_FAILED => Retry::AfterBackoff,
            code::TIMEOUT if kind == Kind::Read => Retry::Elsewhere,
            _ => Retry::No,
        },
    }
}

/// Exponential backoff between retries: `min`, doubling up to `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The next pause.
    next: Duration,
    /// The longest pause.
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and capped at `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { next: min.min(max), max }
    }

    /// The next pause; the one after is twice as long, up to the maximum.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> Failure {
        let body = format!(r#"{{"error": {{"code": "{code}", "message": "m"}}}}"#);
        Failure::Api(ApiError::from_response("e", status, None, body.as_bytes()))
    }

    #[test]
    fn retries_only_what_is_safe() {
        let cases = [
            (Failure::Connect("refused".into()), Retry::Elsewhere, Retry::Elsewhere),
            (Failure::Timeout, Retry::Elsewhere, Retry::No),
            (Failure::Interrupted("reset".into()), Retry::Elsewhere, Retry::No),
            (api(503, code::NO_LEADER), Retry::AfterBackoff, Retry::AfterBackoff),
            (api(503, code::UNAVAILABLE), Retry::AfterBackoff, Retry::AfterBackoff),
            (api(502, code::FORWARD_FAILED), Retry::AfterBackoff, Retry::AfterBackoff),
            (api(504, code::TIMEOUT), Retry::Elsewhere, Retry::No),
            (api(400, code::BAD_REQUEST), Retry::No, Retry::No),
            (api(404, code::NOT_FOUND), Retry::No, Retry::No),
            (api(412, code::CAS_FAILED), Retry::No, Retry::No),
            (api(413, code::TOO_LARGE), Retry::No, Retry::No),
            (api(500, "internal"), Retry::No, Retry::No),
            (api(503, "http_503"), Retry::No, Retry::No),
        ];
        for (failure, read, write) in cases {
            assert_eq!(decide(Kind::Read, &failure), read, "read failing with {failure:?}");
            assert_eq!(decide(Kind::Write, &failure), write, "write failing with {failure:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
        let pauses: Vec<u128> = (0..5).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 300, 300]);
    }
}
