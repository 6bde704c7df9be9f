//! The one way Tally serves HTTP (a node's client port, the registry): a hand-written accept loop over hyper 1
//! with an axum `Router` as the service, optional TLS, limits on every connection, and graceful shutdown.
//!
//! ```text
//!  accept ──open ≥ cap, or per-IP cap──▶ closed at once (refused_*)
//!     │ permit (counted until the connection ends)
//!     ▼
//!  TLS handshake (deadline: the header timeout) ──▶ hyper http1 connection ──▶ Router
//!     header: hyper's header_read_timeout (one deadline per request head; trickled bytes do not extend it)
//!     body:   each request body must arrive within the body timeout, else 408 and the connection closes
//!     idle:   no bytes either way and no request in flight for the idle timeout ──▶ closed
//!     stall:  a request in flight and a write blocked (its client does not read) for the stall timeout (the
//!             body timeout, or the idle timeout if longer) ──▶ closed; a handler still computing its answer, or
//!             a streaming answer with nothing to send, blocks no write and may take as long as it likes
//!  shutdown ──▶ stop accepting ──▶ every connection finishes its request in flight and closes (graceful)
//!           ──▶ connections still open after the drain timeout (a long wait, an open stream) are dropped
//! ```
//!
//! hyper arms its header timer as soon as a connection waits for a request head: also right after accept and
//! between keep-alive requests. So a connection that sends nothing is closed after the shorter of the idle and
//! header timeouts, and the idle timeout should not exceed the header timeout (the defaults are 5 s and 10 s).
//!
//! The connection cap bounds the file descriptors the port can take: by default it is
//! [`DEFAULT_MAX_CONNECTIONS`], and never more than the process's soft `RLIMIT_NOFILE` less
//! [`FD_RESERVE`], so the process always keeps descriptors for its log, its peers and its own calls.
//!
//! Every request carries a [`ConnectionInfo`] extension (remote address, client certificate's Common Name)
//! and axum's `ConnectInfo<SocketAddr>`.

mod activity;
mod body;
mod connection;
mod metrics;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use metrics::ServeMetrics;

/// The connection cap when none is configured (still bounded by the file descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// File descriptors kept for everything but this port: the log's segments and directory, peer connections,
/// outbound calls, the registry's and other ports' listeners.
pub const FD_RESERVE: u64 = 256;
/// The smallest cap derived from a low file descriptor limit.
const MIN_DERIVED_CONNECTIONS: usize = 16;
/// How long the accept loop pauses after an accept error (out of descriptors, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Limits on every connection of a port. Each has a default fit for a database port on a hostile network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a request head may take to arrive, from when the connection starts waiting for it (default
    /// 10 s); also the TLS handshake's deadline. A client that trickles its head is cut off at this deadline.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive completely, from when its head arrived (default 30 s);
    /// past it the request is answered `408` and the connection closed.
    pub body_timeout: Duration,
    /// How long a connection may stay silent (no bytes either way) with no request in flight (default 5 s).
    ///
    /// With a request in flight, silence alone closes nothing: a handler may wait (a blocking read) and a
    /// streaming answer (Server-Sent Events) may be quiet between events for as long as they like. What closes
    /// such a connection is a write blocked (its client stopped reading, the socket's send buffer is full) for
    /// the stall timeout: the body timeout, or this, if longer.
    pub idle_timeout: Duration,
    /// The most connections open at once; `None`: [`DEFAULT_MAX_CONNECTIONS`]. Always bounded by the file
    /// descriptor limit (module doc).
    pub max_connections: Option<usize>,
    /// The most connections open at once from one IP address; `None` (the default): no such cap, since on
    /// loopback or behind a load balancer every client shares one address.
    pub max_connections_per_ip: Option<usize>,
    /// How long shutdown waits for open connections to finish their requests before dropping them
    /// (default 5 s). A stream that is still open then, or a handler still waiting, is dropped with its
    /// connection.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(5),
            max_connections: None,
            max_connections_per_ip: None,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// Checks that every timeout is positive and every cap at least 1.
    ///
    /// # Errors
    /// A message naming the limit.
    pub fn validate(&self) -> Result<(), String> {
        let timeouts = [
            ("header timeout", self.header_timeout),
            ("body timeout", self.body_timeout),
            ("idle timeout", self.idle_timeout),
            ("drain timeout", self.drain_timeout),
        ];
        for (name, timeout) in timeouts {
            if timeout.is_zero() {
                return Err(format!("the {name} must be positive"));
            }
        }
        if self.max_connections == Some(0) || self.max_connections_per_ip == Some(0) {
            return Err("connection caps must be at least 1".to_string());
        }
        Ok(())
    }

    /// The connection cap in force: the configured one (or the default), at most the soft file descriptor
    /// limit less [`FD_RESERVE`].
    pub fn effective_max_connections(&self) -> usize {
        let configured = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        match crate::fd::soft_limit() {
            Some(soft) => {
                let derived = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
                configured.min(derived.max(MIN_DERIVED_CONNECTIONS))
            }
            None => configured,
        }
    }
}

/// How a port is served.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// TLS on the port; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The limits.
    pub limits: Limits,
    /// Where the counters go (shared with `/metrics`).
    pub metrics: Arc<ServeMetrics>,
}

/// Who is on the other end of a request's connection; every request carries one as an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The Common Name of the client certificate the TLS handshake verified, if one was presented: a user
    /// name or a node id.
    pub client_common_name: Option<String>,
    /// The node id the verified client certificate names, if it is a node's certificate (one with the
    /// serverAuth usage: see [`crate::identity::node_name`]); `None` for a user's certificate.
    pub client_node_name: Option<String>,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (module doc).
///
/// # Errors
/// Invalid limits ([`std::io::ErrorKind::InvalidInput`]). Accept errors are counted and survived, not
/// returned.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    options.limits.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let cap = options.limits.effective_max_connections();
    let local = listener.local_addr().ok();
    tracing::debug!(?local, cap, tls = options.tls.is_some(), "serving HTTP");
    let context = Arc::new(connection::Context {
        router,
        tls: options.tls.map(tokio_rustls::TlsAcceptor::from),
        limits: options.limits,
        metrics: Arc::clone(&options.metrics),
    });
    let counts = Arc::new(Counts::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let Some(permit) = admit(&counts, &context, remote.ip(), cap) else { continue };
                    let _ = stream.set_nodelay(true);
                    let task = connection::run(stream, remote, Arc::clone(&context), permit, stop_rx.clone());
                    connections.spawn(task);
                }
                Err(error) => {
                    options.metrics.count_accept_error();
                    tracing::warn!(%error, "accept failed; pausing before the next accept");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(options.limits.drain_timeout, drain).await.is_err() {
        tracing::warn!(open = connections.len(), "connections still open after the drain timeout: dropping them");
    }
    Ok(())
}

/// Open connections, in total and per address; updated only by the accept loop and by permits' drops.
#[derive(Debug, Default)]
struct Counts {
    /// The counts. A std mutex: held for a few integer updates, never across an `.await`.
    inner: Mutex<CountsInner>,
}

/// See [`Counts`].
#[derive(Debug, Default)]
struct CountsInner {
    /// Open connections.
    total: usize,
    /// Open connections per client address (entries removed at zero).
    per_ip: HashMap<IpAddr, usize>,
}

/// A connection's place under the caps; released when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    /// The counts it holds a place in.
    counts: Arc<Counts>,
    /// The client's address.
    ip: IpAddr,
    /// The gauge to decrement.
    metrics: Arc<ServeMetrics>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut inner = self.counts.inner.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(inner.total > 0, "a permit was released twice");
        inner.total -= 1;
        if let Some(count) = inner.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                inner.per_ip.remove(&self.ip);
            }
        }
        self.metrics.count_closed();
    }
}

/// A permit for a new connection from `ip`, or `None` (counted) when a cap is reached.
fn admit(counts: &Arc<Counts>, context: &connection::Context, ip: IpAddr, cap: usize) -> Option<Permit> {
    let metrics = &context.metrics;
    let mut inner = counts.inner.lock().unwrap_or_else(PoisonError::into_inner);
    if inner.total >= cap {
        metrics.count_refused_cap();
        return None;
    }
    let from_ip = inner.per_ip.get(&ip).copied().unwrap_or(0);
    if context.limits.max_connections_per_ip.is_some_and(|max| from_ip >= max) {
        metrics.count_refused_per_ip();
        return None;
    }
    inner.total += 1;
    *inner.per_ip.entry(ip).or_insert(0) += 1;
    assert!(inner.total <= cap, "open connections {} over the cap {cap}", inner.total);
    metrics.count_opened();
    Some(Permit { counts: Arc::clone(counts), ip, metrics: Arc::clone(metrics) })
}

#[cfg(test)]
mod tests;
