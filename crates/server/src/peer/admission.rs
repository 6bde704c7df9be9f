//! Who may use the peer port: the rules that admit an inbound connection and bind it to one node id, and the
//! counts of connections refused by them.
//!
//! Every inbound connection must open with a hello, whether or not a cluster token is configured (every Tally
//! node sends one first on each connection). The hello admits the connection only if
//! - it carries the cluster token, when this node has one (compared in constant time);
//! - its `from` is a real node id (not 0) and not this node's own;
//! - with mutual TLS, its `from` is the node id named by the Common Name of the client certificate the TLS
//!   handshake verified: the certificate proves who dials, the hello can only repeat it.
//!
//! From then on the connection is bound to that id: every message's `from`, and the `from` of any later hello,
//! must equal it, and any later hello must carry the token again. Anything else closes the connection before
//! what it sent reaches the node loop. So a peer can speak only for the node it proved to be (with a token:
//! any member of the cluster can still claim any id, as the token is shared; with mutual TLS the id is each
//! node's own).
//!
//! A frame whose `from` differs from the id the connection is bound to (by its hello or its certificate) is
//! counted as an identity mismatch; every other refusal (no hello, or none in time, a wrong or missing token,
//! a failed TLS handshake, a certificate naming no node, a malformed frame before admission) as a refused
//! connection. Every closing, counted or not (a malformed frame from an admitted connection is logged only), is
//! warned about at most once per [`REFUSAL_WARNING_INTERVAL`] (the others at debug level), so a stranger
//! hammering the port cannot flood the log. Tokens are compared in time that does not depend on where they
//! differ, so the time a refusal takes does not tell a stranger how much of a guess was right.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tally_raft::NodeId;

use super::inbound::{InboundError, Proof, Refusal};
use crate::wire::{Hello, PeerFrame};

/// The shortest time between two warnings about refused connections.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What every inbound connection must prove, the same for all of them.
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    /// This node: a hello claiming its id is refused.
    pub(crate) local_id: NodeId,
    /// The cluster token every hello must carry; `None`: no token required.
    pub(crate) token: Option<std::sync::Arc<str>>,
}

impl Gate {
    /// The id that `hello`, the first frame of a connection, binds the connection to. `certified` is the
    /// node id the connection's verified TLS client certificate names (`None` without TLS).
    ///
    /// # Errors
    /// Why the connection must be closed instead.
    pub(crate) fn admit(&self, hello: &Hello, certified: Option<NodeId>) -> Result<NodeId, InboundError> {
        self.check_token(hello)?;
        let from = hello.from;
        if from == NodeId(0) {
            return Err(Refusal::ReservedId.into());
        }
        if from == self.local_id {
            return Err(Refusal::OwnId(from).into());
        }
        match certified {
            Some(bound) if bound != from => {
                Err(InboundError::IdentityMismatch { bound, claimed: from, proof: Proof::Certificate })
            }
            _ => Ok(from),
        }
    }

    /// Whether `frame` may be served on a connection bound to `bound` (by its first hello).
    ///
    /// # Errors
    /// Why the connection must be closed instead.
    pub(crate) fn check_bound(&self, frame: &PeerFrame, bound: NodeId) -> Result<(), InboundError> {
        let claimed = match frame {
            PeerFrame::Hello(hello) => {
                self.check_token(hello)?;
                hello.from
            }
            PeerFrame::Raft(message) => message.from,
        };
        if claimed != bound {
            return Err(InboundError::IdentityMismatch { bound, claimed, proof: Proof::Hello });
        }
        Ok(())
    }

    /// Whether `hello` carries this node's cluster token, if it has one.
    fn check_token(&self, hello: &Hello) -> Result<(), Refusal> {
        let Some(expected) = &self.token else { return Ok(()) };
        match &hello.token {
            Some(token) if crate::auth::token_matches(expected, token) => Ok(()),
            Some(_) => Err(Refusal::WrongToken),
            None => Err(Refusal::NoToken),
        }
    }
}

/// The connections refused and the identity mismatches, shared by the inbound connections and the transport.
#[derive(Debug, Default)]
pub(crate) struct Incidents {
    /// Connections refused before or at admission (see the module doc).
    refused: AtomicU64,
    /// Frames whose `from` differed from the id their connection is bound to.
    mismatched: AtomicU64,
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

impl Incidents {
    /// How many connections were refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// How many identity mismatches closed a connection so far.
    pub(crate) fn mismatched(&self) -> u64 {
        self.mismatched.load(Ordering::Relaxed)
    }

    /// Counts and logs the closing of the connection from `addr` for `error`: an identity mismatch, or a
    /// refusal if the connection was not `admitted` yet (a malformed frame from an admitted connection is a
    /// member's bug or an admitted stranger's noise: logged, not counted).
    pub(crate) fn record(&self, addr: SocketAddr, error: &InboundError, admitted: bool) {
        match error {
            InboundError::IdentityMismatch { .. } => self.mismatched.fetch_add(1, Ordering::Relaxed),
            _ if admitted => 0,
            _ => self.refused.fetch_add(1, Ordering::Relaxed),
        };
        let now = Instant::now();
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.last_warning.is_some_and(|at| now.duration_since(at) < REFUSAL_WARNING_INTERVAL) {
            log.quiet += 1;
            return tracing::debug!(%addr, %error, admitted, "peer connection closed");
        }
        let quiet = std::mem::take(&mut log.quiet);
        log.last_warning = Some(now);
        drop(log);
        tracing::warn!(%error, admitted, closed_quietly_since_last_warning = quiet, "peer connection from {addr} closed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tally_raft::{LogIndex, Message, MessageBody, Term};

    use super::*;

    const LOCAL: NodeId = NodeId(1);
    const PEER: NodeId = NodeId(2);

    fn hello(from: NodeId, token: Option<&str>) -> Hello {
        Hello {
            from,
            client_url: "http://b:7001".to_owned(),
            peer_url: "http://b:7101".to_owned(),
            token: token.map(str::to_owned),
        }
    }

    fn message(from: NodeId) -> PeerFrame {
        let body = MessageBody::Heartbeat { commit: LogIndex(0), read_seq: 0 };
        PeerFrame::Raft(Message { from, to: LOCAL, term: Term(1), body })
    }

    fn gate(token: Option<&str>) -> Gate {
        Gate { local_id: LOCAL, token: token.map(Arc::from) }
    }

    #[test]
    fn without_a_token_any_hello_from_another_real_node_admits_and_binds() {
        let gate = gate(None);
        for token in [None, Some("any")] {
            assert_eq!(gate.admit(&hello(PEER, token), None).ok(), Some(PEER));
        }
        assert!(matches!(gate.admit(&hello(LOCAL, None), None), Err(InboundError::Refused(Refusal::OwnId(LOCAL)))));
        assert!(matches!(gate.admit(&hello(NodeId(0), None), None), Err(InboundError::Refused(Refusal::ReservedId))));
    }

    #[test]
    fn with_a_token_only_hellos_carrying_it_admit() {
        let gate = gate(Some("secret"));
        assert_eq!(gate.admit(&hello(PEER, Some("secret")), None).ok(), Some(PEER));
        assert!(matches!(
            gate.admit(&hello(PEER, Some("guess")), None),
            Err(InboundError::Refused(Refusal::WrongToken))
        ));
        assert!(matches!(gate.admit(&hello(PEER, None), None), Err(InboundError::Refused(Refusal::NoToken))));
        // A later hello must carry it too.
        assert!(gate.check_bound(&PeerFrame::Hello(hello(PEER, Some("secret"))), PEER).is_ok());
        let later = gate.check_bound(&PeerFrame::Hello(hello(PEER, None)), PEER);
        assert!(matches!(later, Err(InboundError::Refused(Refusal::NoToken))));
    }

    #[test]
    fn a_certificate_binds_the_id_the_hello_must_repeat() {
        let gate = gate(None);
        assert_eq!(gate.admit(&hello(PEER, None), Some(PEER)).ok(), Some(PEER));
        let other = gate.admit(&hello(NodeId(3), None), Some(PEER));
        let mismatch = InboundError::IdentityMismatch { bound: PEER, claimed: NodeId(3), proof: Proof::Certificate };
        assert_eq!(other.err().map(|e| e.to_string()), Some(mismatch.to_string()));
    }

    #[test]
    fn a_bound_connection_serves_only_frames_from_its_id() {
        let gate = gate(None);
        assert!(gate.check_bound(&message(PEER), PEER).is_ok());
        assert!(gate.check_bound(&PeerFrame::Hello(hello(PEER, None)), PEER).is_ok());
        for frame in [message(NodeId(3)), PeerFrame::Hello(hello(NodeId(3), None))] {
            let refused = gate.check_bound(&frame, PEER);
            assert!(
                matches!(refused, Err(InboundError::IdentityMismatch { bound: PEER, claimed: NodeId(3), .. })),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn refusals_and_mismatches_are_counted_apart_and_every_closing_is_rate_limited() {
        let incidents = Incidents::default();
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        for _ in 0..5 {
            incidents.record(addr, &InboundError::Refused(Refusal::NoHello), false);
        }
        let mismatch = InboundError::IdentityMismatch { bound: PEER, claimed: NodeId(3), proof: Proof::Hello };
        incidents.record(addr, &mismatch, true);
        let malformed = InboundError::Wire(crate::wire::WireError::TrailingBytes { count: 1 });
        incidents.record(addr, &malformed, true);
        assert_eq!((incidents.refused(), incidents.mismatched()), (5, 1), "an admitted malformed frame is not counted");
        let log = incidents.log.lock().expect("not poisoned");
        assert!(log.last_warning.is_some());
        assert_eq!(log.quiet, 6, "one warning, six quiet");
    }
}
