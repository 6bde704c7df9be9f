//! The inbound side: accept peer connections, admit those that prove they belong to the cluster, and turn their
//! bytes into messages for the node loop.
//!
//! ```text
//!  TcpListener ──accept──▶ one task per connection: read ──▶ FrameDecoder ──▶ wire::decode_frame
//!      ├─ admission::check (token configured: the first frame must be a hello carrying it)
//!      │      └─ refused ──▶ close at once, count, warn (rate-limited); nothing reaches the inbox
//!      ├─ Raft message ──▶ (to == local_id?) ──try_send──▶ bounded inbox (full: drop, Raft tolerates loss)
//!      └─ Hello ──▶ (from != local_id?) ──▶ directory (client and peer URLs)
//! ```
//!
//! Frames of one connection are handled in order, so a message that follows a hello reaches the node loop
//! after the directory holds the hello's URLs. Without a cluster token a hello is not required: a peer that
//! sends none is still served. With one, a connection is held to hello-sized frames and must send its hello
//! within `hello_timeout`, so strangers can neither make this node buffer large frames nor hold connection slots
//! for long. A malformed frame or message closes that connection only; the listener and other connections go
//! on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tally_raft::{Message, NodeId};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::admission::{self, Refusals};
use super::directory::Directory;
use super::stopped;
use crate::frame::{FrameDecoder, FrameError};
use crate::wire::{self, PeerFrame, WireError};

/// The most inbound connections served at once; more are refused (a cluster needs two per peer).
const INBOUND_CONNECTIONS_MAX: usize = 1024;

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
    /// This node has a cluster token, and the connection did not open with a hello carrying it (or a later
    /// hello carried another token). Says why.
    #[error("wrong or missing cluster token: {0}")]
    Unauthenticated(&'static str),
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
    /// The cluster token a connection's hello must carry before anything it sends is served; `None`: serve all.
    pub(crate) token: Option<Arc<str>>,
    /// How long a connection may take to send that hello (unused without a token).
    pub(crate) hello_timeout: Duration,
    /// The connections refused for the token, counted for [`super::PeerTransport::rejected_connections`].
    pub(crate) refusals: Arc<Refusals>,
}

/// Accepts connections until shutdown, then ends every connection task.
pub(crate) async fn accept_loop(listener: TcpListener, inbox: Inbox, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) if connections.len() < INBOUND_CONNECTIONS_MAX => {
                    connections.spawn(read_connection(stream, addr, inbox.clone(), shutdown.clone()));
                }
                Ok((_, addr)) => tracing::warn!(%addr, max = INBOUND_CONNECTIONS_MAX, "refusing peer connection"),
                Err(error) => {
                    tracing::warn!(%error, "peer accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Reads one connection until it closes, breaks, sends something malformed or unauthenticated, or the
/// transport shuts down.
async fn read_connection(mut stream: TcpStream, addr: SocketAddr, inbox: Inbox, mut shutdown: watch::Receiver<bool>) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%addr, %error, "cannot set TCP_NODELAY");
    }
    let mut connection = Connection::new(&inbox);
    let hello_deadline = tokio::time::sleep(inbox.hello_timeout);
    tokio::pin!(hello_deadline);
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    loop {
        let read = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            () = &mut hello_deadline, if !connection.admitted => {
                return inbox.refusals.record(addr, &InboundError::Unauthenticated("it sent no hello in time"));
            }
            read = stream.read(&mut buffer) => read,
        };
        let bytes = match read {
            Ok(0) => return tracing::debug!(%addr, "peer connection closed"),
            Ok(bytes) => bytes,
            Err(error) => return tracing::debug!(%addr, %error, "peer connection broke"),
        };
        connection.decoder.push(&buffer[..bytes]);
        if let Err(error) = connection.deliver_frames(&inbox) {
            if connection.admitted && !matches!(error, InboundError::Unauthenticated(_)) {
                return tracing::warn!(%addr, %error, "closing peer connection");
            }
            // Before admission anything wrong is a stranger's, and is logged at a bounded rate.
            return inbox.refusals.record(addr, &error);
        }
    }
}

/// The decoding state of one inbound connection.
struct Connection {
    /// Cuts frames out of the bytes read.
    decoder: FrameDecoder,
    /// Whether the connection may send anything: from the start without a cluster token, after a hello carrying
    /// it with one. Until then its frames are held to [`wire::HELLO_MAX_BYTES`].
    admitted: bool,
}

impl Connection {
    /// A new connection to `inbox`'s node.
    fn new(inbox: &Inbox) -> Connection {
        let admitted = inbox.token.is_none();
        let max_frame_bytes =
            if admitted { inbox.max_frame_bytes } else { inbox.max_frame_bytes.min(wire::HELLO_MAX_BYTES) };
        Connection { decoder: FrameDecoder::new(max_frame_bytes), admitted }
    }

    /// Decodes and handles every complete frame, in order: messages go to the node loop, hellos to the
    /// directory.
    ///
    /// # Errors
    /// The first malformed frame or message, or the first frame the cluster token forbids: the connection
    /// must be closed. Nothing after it is handled.
    fn deliver_frames(&mut self, inbox: &Inbox) -> Result<(), InboundError> {
        while let Some(payload) = self.decoder.next_frame()? {
            let frame = wire::decode_frame(&payload)?;
            admission::check(&frame, inbox.token.as_deref(), self.admitted).map_err(InboundError::Unauthenticated)?;
            if !self.admitted {
                self.admitted = true;
                self.decoder.set_max_frame_bytes(inbox.max_frame_bytes);
            }
            match frame {
                PeerFrame::Raft(message) => deliver(message, inbox),
                PeerFrame::Hello(hello) => inbox.directory.record(hello),
            }
        }
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
