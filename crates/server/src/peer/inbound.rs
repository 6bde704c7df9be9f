//! The inbound side: accept peer connections and turn their bytes into messages for the node loop.
//!
//! ```text
//!  TcpListener ──accept──▶ one task per connection: read ──▶ FrameDecoder ──▶ wire::decode_frame
//!      ├─ Raft message ──▶ (to == local_id?) ──try_send──▶ bounded inbox (full: drop, Raft tolerates loss)
//!      └─ Hello ──▶ (from != local_id?) ──▶ client URL directory
//! ```
//!
//! Frames of one connection are handled in order, so a message that follows a hello reaches the node loop
//! after the directory holds the hello's URL. A hello is not required: a peer that sends none is still served.
//! A malformed frame or message closes that connection only; the listener and other connections go on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tally_raft::{Message, NodeId};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::directory::ClientUrls;
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
    pub(crate) client_urls: Arc<ClientUrls>,
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

/// Reads one connection until it closes, breaks, sends something malformed, or the transport shuts down.
async fn read_connection(mut stream: TcpStream, addr: SocketAddr, inbox: Inbox, mut shutdown: watch::Receiver<bool>) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%addr, %error, "cannot set TCP_NODELAY");
    }
    let mut decoder = FrameDecoder::new(inbox.max_frame_bytes);
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    loop {
        let read = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            read = stream.read(&mut buffer) => read,
        };
        let bytes = match read {
            Ok(0) => return tracing::debug!(%addr, "peer connection closed"),
            Ok(bytes) => bytes,
            Err(error) => return tracing::debug!(%addr, %error, "peer connection broke"),
        };
        decoder.push(&buffer[..bytes]);
        if let Err(error) = deliver_frames(&mut decoder, &inbox) {
            return tracing::warn!(%addr, %error, "closing peer connection");
        }
    }
}

/// Decodes and handles every complete frame in `decoder`, in order: messages go to the node loop, hellos to
/// the directory.
///
/// # Errors
/// The first malformed frame or message: the connection must be closed.
fn deliver_frames(decoder: &mut FrameDecoder, inbox: &Inbox) -> Result<(), InboundError> {
    while let Some(payload) = decoder.next_frame()? {
        match wire::decode_frame(&payload)? {
            PeerFrame::Raft(message) => deliver(message, inbox),
            PeerFrame::Hello(hello) => inbox.client_urls.record(hello),
        }
    }
    Ok(())
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
