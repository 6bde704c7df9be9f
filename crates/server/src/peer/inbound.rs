//! The inbound side: accept peer connections, admit those that prove which node they are, and turn their bytes
//! into messages for the node loop.
//!
//! ```text
//!  TcpListener ──accept──▶ Slots::open (unadmitted; full: evict one) ──▶ one task per connection:
//!      [mutual TLS: handshake, client certificate verified against the cluster CA ──▶ its node id]
//!      read ──▶ FrameDecoder ──▶ wire::decode_frame
//!      ├─ first frame: a hello that admission::Gate::admit accepts (token, id, certificate) ──▶ bound to its id,
//!      │      Slot::admit (admitted slots), directory (client and peer URLs)
//!      ├─ later frames: from the bound id only (Gate::check_bound)
//!      │      ├─ Raft message ──▶ (to == local_id?) ──try_send──▶ bounded inbox (full: drop, Raft tolerates loss)
//!      │      └─ Hello ──▶ directory
//!      └─ refused, mismatched, evicted, or not admitted within admission_timeout ──▶ closed at once, counted,
//!             warned about (rate-limited); nothing it sent reaches the inbox
//! ```
//!
//! Frames of one connection are handled in order, so a message that follows a hello reaches the node loop
//! after the directory holds the hello's URLs. Until it is admitted, a connection is held to hello-sized frames
//! and must complete its TLS handshake (if any) and send its hello within `admission_timeout`, so strangers can
//! neither make this node buffer large frames nor hold connection slots for long. A malformed frame or message
//! closes that connection only; the listener and other connections go on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tally_raft::{Message, NodeId};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::admission::{Gate, Incidents};
use super::directory::Directory;
use super::slots::{Slot, Slots};
use super::{PeerIo, stopped};
use crate::frame::{FrameDecoder, FrameError};
use crate::wire::{self, PeerFrame, WireError};

/// Bytes read from a connection at a time.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How long to wait after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why an inbound connection is closed by this side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// The byte stream is not a valid sequence of frames.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// A frame's payload is not a valid message.
    #[error("bad message: {0}")]
    Wire(#[from] WireError),
    /// The connection did not prove it belongs to the cluster (see [`Refusal`]).
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// A frame's `from` is not the node id the connection is bound to.
    #[error("identity mismatch: the connection is bound to {bound} by {proof}, and sent a frame from {claimed}")]
    IdentityMismatch {
        /// The id the connection is bound to.
        bound: NodeId,
        /// The id the frame claims to come from.
        claimed: NodeId,
        /// What bound it.
        proof: Proof,
    },
    /// The connection lost its slot to a newer one (see `peer::slots`).
    #[error("evicted to make room for another connection")]
    Evicted,
}

/// What binds a connection to a node id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proof {
    /// The first hello it sent (with the cluster token, if one is configured).
    Hello,
    /// The verified TLS client certificate's Common Name.
    Certificate,
}

impl std::fmt::Display for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proof::Hello => "its hello",
            Proof::Certificate => "its TLS client certificate",
        })
    }
}

/// Why a connection was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// It sent a Raft message before any hello.
    #[error("it sent a message before its hello")]
    NoHello,
    /// It did not complete the TLS handshake and send its hello in time.
    #[error("it was not admitted within {0:?}")]
    TimedOut(Duration),
    /// Its hello carries another cluster token.
    #[error("its hello carries another cluster token")]
    WrongToken,
    /// Its hello carries no cluster token, and this node has one.
    #[error("its hello carries no cluster token")]
    NoToken,
    /// Its hello claims this node's own id.
    #[error("its hello claims this node's own id {0}")]
    OwnId(NodeId),
    /// Its hello claims node id 0, which no node has.
    #[error("its hello claims node id 0, which no node has")]
    ReservedId,
    /// The TLS handshake failed (no client certificate, one from another CA, an expired one, or no TLS at all).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The verified client certificate's Common Name is not a node id (`n1`, `n2`, ...).
    #[error("its TLS client certificate names no node id (Common Name {0:?})")]
    NoCertifiedId(Option<String>),
}

/// What every inbound connection shares.
#[derive(Clone)]
pub(crate) struct Inbox {
    /// Only messages addressed to this node are delivered.
    pub(crate) local_id: NodeId,
    /// Where decoded messages go.
    pub(crate) tx: mpsc::Sender<Message>,
    /// The largest frame payload accepted.
    pub(crate) max_frame_bytes: usize,
    /// The transport's count of dropped messages.
    pub(crate) dropped: Arc<AtomicU64>,
    /// Where hellos go.
    pub(crate) directory: Arc<Directory>,
    /// What a connection must prove to be admitted.
    pub(crate) gate: Gate,
    /// With mutual TLS, the handshake every connection must complete first.
    pub(crate) tls: Option<TlsAcceptor>,
    /// How long a connection may take to be admitted (TLS handshake and hello).
    pub(crate) admission_timeout: Duration,
    /// Refusals and identity mismatches, counted for the transport's metrics.
    pub(crate) incidents: Arc<Incidents>,
    /// The connection slots.
    pub(crate) slots: Arc<Slots>,
}

/// Accepts connections until shutdown, then ends every connection task.
pub(crate) async fn accept_loop(listener: TcpListener, inbox: Inbox, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let slot = inbox.slots.open(addr.ip());
                    connections.spawn(serve_connection(stream, addr, slot, inbox.clone(), shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "peer accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Serves one connection in its `slot` until it closes, breaks, is refused or evicted, or the transport shuts
/// down; counts and logs why this side closed it.
async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    slot: Slot,
    inbox: Inbox,
    shutdown: watch::Receiver<bool>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%addr, %error, "cannot set TCP_NODELAY");
    }
    let error = match read_connection(stream, &slot, &inbox, shutdown).await {
        Ok(()) => return,
        Err(error) => error,
    };
    if matches!(error, InboundError::Evicted) {
        return tracing::debug!(%addr, "peer connection evicted"); // counted by the slots
    }
    // Logged at a bounded rate: without a token or TLS, anyone who reaches the port is admitted.
    inbox.incidents.record(addr, &error, slot.is_admitted());
}

/// The connection's handshake (with mutual TLS) and frames, until it ends: `Ok` when the peer closed it or the
/// transport shut down.
///
/// # Errors
/// Why this side must close it.
async fn read_connection(
    stream: TcpStream,
    slot: &Slot,
    inbox: &Inbox,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), InboundError> {
    let deadline = tokio::time::sleep(inbox.admission_timeout);
    tokio::pin!(deadline);
    let (mut io, certified): (Box<dyn PeerIo>, Option<NodeId>) = match &inbox.tls {
        None => (Box::new(stream), None),
        Some(acceptor) => {
            let tls = tokio::select! {
                _ = stopped(&mut shutdown) => return Ok(()),
                () = &mut deadline => return Err(Refusal::TimedOut(inbox.admission_timeout).into()),
                () = slot.evicted() => return Err(InboundError::Evicted),
                tls = acceptor.accept(stream) => tls.map_err(|e| Refusal::Tls(e.to_string()))?,
            };
            let certified = certified_id(tls.get_ref().1.peer_certificates())?;
            (Box::new(tls), Some(certified))
        }
    };
    let mut connection = Connection::new(inbox, certified);
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    loop {
        let read = tokio::select! {
            _ = stopped(&mut shutdown) => return Ok(()),
            () = &mut deadline, if connection.peer.is_none() => {
                return Err(Refusal::TimedOut(inbox.admission_timeout).into());
            }
            () = slot.evicted() => return Err(InboundError::Evicted),
            read = io.read(&mut buffer) => read,
        };
        let bytes = match read {
            Ok(0) => {
                tracing::debug!(peer = ?connection.peer, "peer connection closed");
                return Ok(());
            }
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(peer = ?connection.peer, %error, "peer connection broke");
                return Ok(());
            }
        };
        connection.decoder.push(&buffer[..bytes]);
        connection.deliver_frames(inbox, slot)?;
    }
}

/// The node id named by the Common Name of the verified client certificate (the first of the chain).
///
/// # Errors
/// If there is none, or its Common Name is not a node id.
fn certified_id(chain: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Result<NodeId, Refusal> {
    let name = chain.and_then(|chain| chain.first()).and_then(|leaf| tally_net::identity::node_name(leaf));
    name.as_deref().and_then(|name| crate::config::parse_node_id(name).ok()).ok_or(Refusal::NoCertifiedId(name))
}

/// The decoding state of one inbound connection.
struct Connection {
    /// Cuts frames out of the bytes read.
    decoder: FrameDecoder,
    /// The node id the connection is bound to, once admitted (by its first hello). Until then its frames are
    /// held to [`wire::HELLO_MAX_BYTES`].
    peer: Option<NodeId>,
    /// With mutual TLS, the node id its verified client certificate names, which its hello must claim.
    certified: Option<NodeId>,
}

impl Connection {
    /// A new connection to `inbox`'s node, whose TLS client certificate names `certified`.
    fn new(inbox: &Inbox, certified: Option<NodeId>) -> Connection {
        let max_frame_bytes = inbox.max_frame_bytes.min(wire::HELLO_MAX_BYTES);
        Connection { decoder: FrameDecoder::new(max_frame_bytes), peer: None, certified }
    }

    /// Decodes and handles every complete frame, in order: the first hello admits the connection, messages go
    /// to the node loop, hellos to the directory.
    ///
    /// # Errors
    /// The first malformed frame or message, or the first frame the admission rules forbid: the connection
    /// must be closed. Nothing after it is handled.
    fn deliver_frames(&mut self, inbox: &Inbox, slot: &Slot) -> Result<(), InboundError> {
        while let Some(payload) = self.decoder.next_frame()? {
            let frame = wire::decode_frame(&payload)?;
            match self.peer {
                Some(bound) => inbox.gate.check_bound(&frame, bound)?,
                None => self.admit(&frame, inbox, slot)?,
            }
            slot.touch();
            match frame {
                PeerFrame::Raft(message) => deliver(message, inbox),
                PeerFrame::Hello(hello) => inbox.directory.record(hello),
            }
        }
        Ok(())
    }

    /// Admits the connection on its first frame, which must be a hello the gate accepts.
    fn admit(&mut self, frame: &PeerFrame, inbox: &Inbox, slot: &Slot) -> Result<(), InboundError> {
        let PeerFrame::Hello(hello) = frame else { return Err(Refusal::NoHello.into()) };
        let peer = inbox.gate.admit(hello, self.certified)?;
        slot.admit(peer).map_err(|_| InboundError::Evicted)?;
        self.peer = Some(peer);
        self.decoder.set_max_frame_bytes(inbox.max_frame_bytes);
        Ok(())
    }
}

/// Hands one message to the node loop, dropping it if it is not for this node or the inbox is full.
fn deliver(message: Message, inbox: &Inbox) {
    if message.to != inbox.local_id {
        tracing::debug!(to = %message.to, local = %inbox.local_id, kind = message.kind(), "dropping misaddressed message");
        return;
    }
    if let Err(error) = inbox.tx.try_send(message) {
        if let mpsc::error::TrySendError::Full(message) = error {
            tracing::debug!(from = %message.from, kind = message.kind(), "inbox full, dropping message");
        }
        inbox.dropped.fetch_add(1, Ordering::Relaxed);
    }
}
