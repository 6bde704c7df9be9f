//! Who may use the peer port: the cluster token check, and the count of connections refused by it.
//!
//! A node configured with a cluster token serves an inbound connection only once its first frame is a hello
//! carrying the same token, and closes it at the first frame that breaks that rule: anything before the hello,
//! or any hello (first or later) with another token or none. Without a token every connection is served, with or
//! without a hello.
//!
//! Tokens are compared in time that does not depend on where they differ, so that the time a refusal takes does
//! not tell a stranger how much of a guess was right. Refusals are counted, and logged as a warning at most once
//! per [`REFUSAL_WARNING_INTERVAL`] (the others at debug level), so a stranger hammering the port cannot flood
//! the log.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::wire::PeerFrame;

/// The shortest time between two warnings about refused connections.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Whether `frame` may be served on a connection of a node whose cluster token is `expected`; `admitted` tells
/// whether an earlier frame of the connection was a hello carrying the token.
///
/// # Errors
/// Why the connection must be closed instead.
pub(crate) fn check(frame: &PeerFrame, expected: Option<&str>, admitted: bool) -> Result<(), &'static str> {
    let Some(expected) = expected else {
        return Ok(());
    };
    match frame {
        PeerFrame::Hello(hello) => match &hello.token {
            Some(token) if crate::auth::token_matches(expected, token) => Ok(()),
            Some(_) => Err("its hello carries another cluster token"),
            None => Err("its hello carries no cluster token"),
        },
        PeerFrame::Raft(_) if admitted => Ok(()),
        PeerFrame::Raft(_) => Err("it sent a message before the hello that must carry the cluster token"),
    }
}

/// The connections refused for a wrong or missing token, shared by the inbound connections and the transport.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// How many so far.
    count: AtomicU64,
    /// What bounds the warnings.
    log: Mutex<RefusalLog>,
}

/// When a refusal was last warned about, and how many were logged quietly since.
#[derive(Debug, Default)]
struct RefusalLog {
    /// The last warning; `None` before the first.
    last_warning: Option<Instant>,
    /// Refusals logged at debug level since that warning, reported with the next one.
    quiet: u64,
}

impl Refusals {
    /// How many connections were refused so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Counts and logs the refusal of the connection from `addr`, for `reason`.
    pub(crate) fn record(&self, addr: SocketAddr, reason: &dyn Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.last_warning.is_some_and(|at| now.duration_since(at) < REFUSAL_WARNING_INTERVAL) {
            log.quiet += 1;
            return tracing::debug!(%addr, %reason, "peer connection refused: wrong or missing cluster token");
        }
        let quiet = std::mem::take(&mut log.quiet);
        log.last_warning = Some(now);
        drop(log);
        tracing::warn!(
            %reason,
            refused_quietly_since_last_warning = quiet,
            "peer connection from {addr} refused: wrong or missing cluster token"
        );
    }
}

#[cfg(test)]
mod tests {
    use tally_raft::{LogIndex, Message, MessageBody, NodeId, Term};

    use super::*;
    use crate::wire::Hello;

    fn hello(token: Option<&str>) -> PeerFrame {
        PeerFrame::Hello(Hello {
            from: NodeId(2),
            client_url: "http://b:7001".to_owned(),
            peer_url: "http://b:7101".to_owned(),
            token: token.map(str::to_owned),
        })
    }

    fn message() -> PeerFrame {
        let body = MessageBody::Heartbeat { commit: LogIndex(0), read_seq: 0 };
        PeerFrame::Raft(Message { from: NodeId(2), to: NodeId(1), term: Term(1), body })
    }

    #[test]
    fn without_a_token_everything_is_served() {
        for frame in [hello(None), hello(Some("any")), message()] {
            assert_eq!(check(&frame, None, false), Ok(()), "{frame:?}");
        }
    }

    #[test]
    fn with_a_token_only_hellos_carrying_it_and_what_follows_them_are_served() {
        let expected = Some("secret");
        assert_eq!(check(&hello(Some("secret")), expected, false), Ok(()));
        assert_eq!(check(&message(), expected, true), Ok(()));
        assert_eq!(check(&hello(Some("secret")), expected, true), Ok(()));
        assert!(check(&message(), expected, false).is_err(), "a message before the hello");
        for admitted in [false, true] {
            assert!(check(&hello(Some("guess")), expected, admitted).is_err(), "another token");
            assert!(check(&hello(None), expected, admitted).is_err(), "no token");
        }
    }

    #[test]
    fn every_refusal_is_counted_even_when_not_warned_about() {
        let refusals = Refusals::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        for _ in 0..5 {
            refusals.record(addr, &"test");
        }
        assert_eq!(refusals.count(), 5);
        let log = refusals.log.lock().expect("not poisoned");
        assert!(log.last_warning.is_some());
        assert_eq!(log.quiet, 4, "one warning, four quiet");
    }
}
