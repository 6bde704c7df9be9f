//! One outbound lane to one peer: a task that owns a TCP connection and writes the lane's queue into it.
//!
//! ```text
//!  lookup_host(peer host:port) ──▶ connect to each address in turn, on every attempt (a peer's IP may change)
//!  connect ──write_all──▶ hello frame (id, client URL, peer URL, cluster token), once per connection
//!  LaneQueue ──pop──▶ wire::encode ──▶ frame::encode ──write_all──▶ TcpStream (TCP_NODELAY)
//!      ▲ messages wait here while disconnected        connect on the first message, reconnect with backoff
//! ```
//!
//! Every connection starts with the hello, so the peer knows this node's URLs before its first message, and a
//! peer configured with a cluster token serves the connection only if the hello carries the same token.
//!
//! With mutual TLS, the connection is a TLS session first: the server name is the host of the peer's URL (which
//! its certificate must list), this node presents its own certificate (the peer binds the connection to the node
//! id it names), and the peer's certificate must name the node id this lane dials (its Common Name), or the
//! attempt fails and is retried with backoff: a certificate valid for the address but of another node is not
//! the peer.
//!
//! The peer's name is looked up again at every connection attempt, so a peer whose address changes (a
//! restarted container) or whose name does not resolve yet is reached once it does. A failed lookup is handled
//! like a failed connect: backoff, and a warning only once a failure streak is long, then quiet until it ends.
//!
//! The connection is write-only: the peer never answers on it (its answers come on its own outbound
//! connection), so a read that returns is the peer closing it (or refusing our token or certificate), and the lane
//! reconnects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tally_raft::{Message, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use super::queue::LaneQueue;
use super::{Lane, PeerConfig, PeerIo, stopped};
use crate::{frame, wire};

/// Bytes of queued frames gathered into one write.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// How long data written to a peer may stay unacknowledged before the connection is dropped (`TCP_USER_TIMEOUT`)
/// and made again: well above a healthy round trip, well below the kernel's default of many minutes.
const UNACKED_DATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection attempt to one address may take before it counts as failed (an unreachable host may
/// never answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a name lookup may take before it counts as failed (a DNS server may never answer).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The most addresses of one name tried per attempt, so a name resolving to many cannot stall the lane.
const RESOLVED_ADDRESSES_MAX: usize = 8;

/// Failed attempts in a row before a warning (with the default backoff, a few seconds of failing): a peer
/// that is restarting, or not started yet, does not warrant one.
const FAILURES_BEFORE_WARNING: u32 = 8;

/// Everything one lane's task needs.
pub(crate) struct LaneTask {
    /// The peer this lane writes to, for logs.
    pub(crate) peer: NodeId,
    /// Which lane, for logs.
    pub(crate) lane: Lane,
    /// The messages to write.
    pub(crate) queue: Arc<LaneQueue>,
    /// The peer's `host:port`, looked up at each connection attempt; a change reconnects, the sender's drop
    /// (peer removed) ends the task.
    pub(crate) host_port: watch::Receiver<String>,
    /// Set to `true` (or dropped) when the transport shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Frame limit and backoff bounds.
    pub(crate) config: PeerConfig,
    /// The transport's count of dropped messages.
    pub(crate) dropped: Arc<AtomicU64>,
    /// The framed hello that opens every connection, encoded once for the whole transport.
    pub(crate) hello: Arc<[u8]>,
    /// With mutual TLS, what opens every connection's TLS session.
    pub(crate) tls: Option<TlsConnector>,
}

/// Why a connection ended.
enum Exit {
    /// The transport shut down or the peer was removed: end the task.
    Stop,
    /// The connection broke or the address changed: connect again.
    Reconnect,
}

/// How a connection attempt ended.
enum Attempt {
    /// Connected to this address of the peer (and, with TLS, verified it is the peer).
    Connected(Box<dyn PeerIo>, SocketAddr),
    /// Failed: back off and try again.
    Failed(DialError),
    /// The peer's address changed meanwhile: try the new one at once.
    Moved,
    /// The transport shut down or the peer was removed: end the task.
    Stop,
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    /// The name did not resolve (or resolved to nothing).
    #[error("cannot resolve {host_port}: {source}")]
    Resolve {
        /// What was looked up.
        host_port: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// No address of the name accepted the connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The TLS handshake failed (e.g. the peer's certificate is not signed by the cluster CA, does not list the
    /// host dialled, or has expired; or the peer refused this node's certificate).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// The address.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The peer's verified certificate names another node than the one dialled.
    #[error("the certificate of {addr} names {found:?}, not {expected}")]
    WrongPeer {
        /// The address.
        addr: SocketAddr,
        /// The node dialled.
        expected: NodeId,
        /// The Common Name its certificate carries, if any.
        found: Option<String>,
    },
}

impl LaneTask {
    /// Connects, writes, reconnects with backoff, until shutdown or the peer's removal.
    pub(crate) async fn run(mut self) {
        let mut backoff = self.config.reconnect_backoff_min;
        let mut failures = 0u32;
        loop {
            if !self.wait_for_message().await {
                return;
            }
            let host_port = self.host_port.borrow_and_update().clone();
            let exit = match self.connect(&host_port).await {
                Attempt::Connected(stream, addr) => {
                    if failures >= FAILURES_BEFORE_WARNING {
                        tracing::info!(peer = %self.peer, lane = ?self.lane, %host_port, "peer reachable again");
                    }
                    failures = 0;
                    self.serve(stream, addr, &mut backoff).await
                }
                Attempt::Failed(error) => {
                    failures = failures.saturating_add(1);
                    self.log_failure(&error, failures);
                    Exit::Reconnect
                }
                Attempt::Moved => continue,
                Attempt::Stop => Exit::Stop,
            };
            if matches!(exit, Exit::Stop) || !self.pause(backoff).await {
                return;
            }
            backoff = backoff.saturating_mul(2).min(self.config.reconnect_backoff_max);
        }
    }

    /// Logs the `failures`-th failed attempt in a row: a warning for the one that makes the streak long, debug
    /// for the others, so a peer that stays down costs one warning per lane and not one per attempt.
    fn log_failure(&self, error: &DialError, failures: u32) {
        if failures == FAILURES_BEFORE_WARNING {
            tracing::warn!(peer = %self.peer, lane = ?self.lane, %error, failures, "cannot reach peer; retrying");
        } else {
            tracing::debug!(peer = %self.peer, lane = ?self.lane, %error, failures, "peer connect failed");
        }
    }

    /// Waits until there is something to send, so connections are made lazily; `false` if the lane must stop.
    async fn wait_for_message(&mut self) -> bool {
        loop {
            tokio::select! {
                _ = stopped(&mut self.shutdown) => return false,
                changed = self.host_port.changed() => if changed.is_err() { return false },
                () = self.queue.wait_nonempty() => return true,
            }
        }
    }

    /// One connection attempt: resolves `host_port` and tries its addresses in turn, until connected, failed,
    /// the peer's address changes, or the lane must stop.
    async fn connect(&mut self, host_port: &str) -> Attempt {
        tokio::select! {
            _ = stopped(&mut self.shutdown) => Attempt::Stop,
            changed = self.host_port.changed() => if changed.is_ok() { Attempt::Moved } else { Attempt::Stop },
            result = open(host_port, self.peer, self.tls.as_ref()) => match result {
                Ok((stream, addr)) => Attempt::Connected(stream, addr),
                Err(error) => Attempt::Failed(error),
            },
        }
    }

    /// Waits `backoff` before the next attempt, cut short by an address change; `false` if the lane must stop.
    async fn pause(&mut self, backoff: Duration) -> bool {
        tokio::select! {
            _ = stopped(&mut self.shutdown) => false,
            changed = self.host_port.changed() => changed.is_ok(),
            () = tokio::time::sleep(backoff) => true,
        }
    }

    /// Writes the hello, then queued messages, into `stream` until it breaks, the address changes, or the
    /// lane stops. Resets `backoff` once a message is written (the hello does not count), so a peer that
    /// accepts and closes at once is still backed off.
    async fn serve(&mut self, stream: Box<dyn PeerIo>, addr: SocketAddr, backoff: &mut Duration) -> Exit {
        tracing::debug!(peer = %self.peer, lane = ?self.lane, %addr, "peer connected");
        let (mut reader, mut writer) = tokio::io::split(stream);
        let hello = Arc::clone(&self.hello);
        match self.write_frame(&mut writer, &hello).await {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                tracing::debug!(peer = %self.peer, lane = ?self.lane, %error, "peer hello write failed");
                return Exit::Reconnect;
            }
            None => return Exit::Stop,
        }
        let mut probe = [0u8; 64];
        loop {
            tokio::select! {
                _ = stopped(&mut self.shutdown) => return Exit::Stop,
                changed = self.host_port.changed() => {
                    return if changed.is_ok() { Exit::Reconnect } else { Exit::Stop };
                }
                read = reader.read(&mut probe) => {
                    if closed_by_peer(&read) {
                        tracing::debug!(peer = %self.peer, lane = ?self.lane, %addr, "peer closed connection");
                        return Exit::Reconnect;
                    }
                }
                message = self.queue.pop() => {
                    match self.write_batch(&mut writer, message).await {
                        Some(true) => *backoff = self.config.reconnect_backoff_min,
                        Some(false) => {}
                        None => return Exit::Reconnect,
                    }
                }
            }
        }
    }

    /// Writes `first` and whatever else is queued already (up to [`WRITE_BATCH_BYTES`]) in one write, so a
    /// busy lane costs one syscall per batch rather than per message. `Some(true)` if anything was written,
    /// `Some(false)` if everything was dropped as too large, `None` if the connection broke (or the lane is
    /// stopping; the next select sees that).
    async fn write_batch(&mut self, writer: &mut WriteHalf<Box<dyn PeerIo>>, first: Message) -> Option<bool> {
        let mut buffer = Vec::new();
        let mut count = 0u64;
        let mut next = Some(first);
        while let Some(message) = next {
            if let Some(frame) = self.encode(&message) {
                buffer.extend_from_slice(&frame);
                count += 1;
            }
            next = if buffer.len() < WRITE_BATCH_BYTES { self.queue.try_pop() } else { None };
        }
        if buffer.is_empty() {
            return Some(false);
        }
        match self.write_frame(writer, &buffer).await? {
            Ok(()) => Some(true),
            Err(error) => {
                tracing::debug!(peer = %self.peer, lane = ?self.lane, %error, "peer write failed");
                self.dropped.fetch_add(count, Ordering::Relaxed);
                None
            }
        }
    }

    /// Writes one whole frame (out of any TLS buffer too); `None` if the lane is stopping first.
    async fn write_frame(
        &mut self,
        writer: &mut WriteHalf<Box<dyn PeerIo>>,
        frame: &[u8],
    ) -> Option<std::io::Result<()>> {
        let write = async {
            writer.write_all(frame).await?;
            writer.flush().await
        };
        tokio::select! {
            _ = stopped(&mut self.shutdown) => None,
            result = write => Some(result),
        }
    }

    /// The message's frame, or `None` (counted, logged) if the peer would refuse it as too large.
    fn encode(&self, message: &Message) -> Option<Vec<u8>> {
        let payload = wire::encode(message);
        if payload.len() > self.config.max_frame_bytes {
            tracing::warn!(
                peer = %self.peer,
                kind = message.kind(),
                bytes = payload.len(),
                max = self.config.max_frame_bytes,
                "dropping message larger than the frame limit"
            );
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(frame::encode(&payload))
    }
}

/// Connects to `peer` at `host_port`: over TCP, then with `tls` a TLS session whose server certificate must
/// name `peer`.
///
/// # Errors
/// Why no connection to the peer was made.
async fn open(
    host_port: &str,
    peer: NodeId,
    tls: Option<&TlsConnector>,
) -> Result<(Box<dyn PeerIo>, SocketAddr), DialError> {
    let (stream, addr) = dial(host_port).await?;
    tune(&stream, peer, addr);
    let Some(connector) = tls else { return Ok((Box::new(stream), addr)) };
    let tls_error = |source| DialError::Tls { addr, source };
    let server_name = server_name(host_port).map_err(|e| tls_error(std::io::Error::other(e)))?;
    let handshake = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, stream));
    let session = handshake.await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())).map_err(tls_error)?;
    let chain = session.get_ref().1.peer_certificates();
    let found = chain.and_then(|chain| chain.first()).and_then(|leaf| tally_net::identity::node_name(leaf));
    if found.as_deref().and_then(|name| crate::config::parse_node_id(name).ok()) != Some(peer) {
        return Err(DialError::WrongPeer { addr, expected: peer, found });
    }
    Ok((Box::new(session), addr))
}

/// The TLS server name of `host_port` (`host:port`, `[v6]:port`): a DNS name or an IP address.
///
/// # Errors
/// If the host is neither.
fn server_name(host_port: &str) -> Result<ServerName<'static>, String> {
    let host = host_port.rsplit_once(':').map_or(host_port, |(host, _)| host);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?} is no TLS server name: {e}"))
}

/// Sets the socket options of a connection to `peer` at `addr`.
fn tune(stream: &TcpStream, peer: NodeId, addr: SocketAddr) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %addr, %error, "cannot set TCP_NODELAY");
    }
    // A connection whose other end vanished without a word (its container moved to another network, its host
    // lost power) would otherwise take the kernel's retransmission timeout, many minutes, to fail, while what
    // this node sends piles up in it. With heartbeats always in flight, a user timeout closes it within
    // seconds, and the lane reconnects, looking the peer's name up again.
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(UNACKED_DATA_TIMEOUT)) {
        tracing::debug!(%peer, %addr, %error, "cannot set TCP_USER_TIMEOUT");
    }
}

/// Resolves `host_port` and connects to the first of its addresses that accepts.
///
/// # Errors
/// The lookup's failure, or the last address's.
async fn dial(host_port: &str) -> Result<(TcpStream, SocketAddr), DialError> {
    let resolve_error = |source| DialError::Resolve { host_port: host_port.to_owned(), source };
    let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(host_port))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .map_err(resolve_error)?;
    let mut last_error = None;
    for addr in addrs.take(RESOLVED_ADDRESSES_MAX) {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        match connected {
            Ok(stream) => return Ok((stream, addr)),
            Err(source) => last_error = Some(DialError::Connect { addr, source }),
        }
    }
    Err(last_error.unwrap_or_else(|| resolve_error(std::io::Error::other("the name has no address"))))
}

/// Whether a read on the write-only connection means it is gone (end of stream or an error).
fn closed_by_peer(read: &std::io::Result<usize>) -> bool {
    matches!(read, Ok(0) | Err(_))
}
