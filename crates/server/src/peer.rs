//! The tokio peer transport: delivers Raft messages between nodes over TCP (or mutual TLS), binds every
//! inbound connection to the node id it proves, keeps strangers out with the cluster token or certificates, and
//! tells every node the client and peer URLs of its peers.
//!
//! ```text
//!  set_peer(id, peer URL) ──▶ host:port, looked up again at every connection attempt
//!  send(msg) ──Lane::of──▶ control queue ──▶ control task ──[TLS] hello, messages──▶ peer's listener
//!                    └──▶ bulk queue    ──▶ bulk task    ──[TLS] hello, messages──▶ peer's listener
//!  listener ──accept──▶ slot (unadmitted cap, evict oldest) ──▶ connection task ──[TLS handshake]──▶ frames
//!      ──▶ wire::decode_frame ──▶ admission: first a hello (token, node id, certificate), then only its id
//!      ├─ message ──▶ inbox (bounded mpsc) ──▶ node loop
//!      └─ hello   ──▶ directory ──▶ client_url(id), client_urls(), peer_url(id), peer_urls()
//!      refused or mismatched ──▶ closed at once, counted in rejected_connections() / identity_mismatches()
//! ```
//!
//! Every outbound connection opens with a hello carrying this node's id, client URL, peer URL and cluster
//! token ([`PeerIdentity`]), so a node learns a peer's client URL (where followers forward client writes to the
//! leader) and peer URL as soon as that peer sends it anything, and before that message reaches the node loop.
//!
//! **Identity.** Every inbound connection must open with a hello, token or not. The hello binds the connection
//! to its `from`: every later message's `from`, and any later hello's, must be that id, or the connection is
//! closed and the mismatch counted ([`PeerTransport::identity_mismatches`]). With a cluster token the hello must
//! carry it (compared in constant time). With mutual TLS ([`PeerTls`]) the connection must first complete a
//! TLS handshake presenting a client certificate signed by the cluster CA, and the hello's `from` must be the
//! node id that certificate names in its Common Name; the dialling side likewise checks that the certificate of
//! the node it reached names the id it meant to dial. Refusals are counted in
//! [`PeerTransport::rejected_connections`]; see `admission` for the rules. The token alone is a shared secret,
//! sent in clear text without TLS: it keeps out whoever can reach the peer port without knowing it, not an
//! eavesdropper, and any member can still claim another's id; mutual TLS gives each node its own identity.
//!
//! **Limits.** A connection not admitted yet holds one of [`PeerConfig::unadmitted_connections_max`] slots and
//! must be admitted within [`PeerConfig::admission_timeout`], token or not; when those slots are full the
//! oldest unadmitted connection (of the address holding the most) is evicted, so a flood of idle connections
//! never locks a member out. Admitted connections are capped per node id
//! ([`PeerConfig::connections_per_peer_max`], oldest evicted) and in all
//! ([`PeerConfig::admitted_connections_max`], the one silent longest evicted). No cap is per source address:
//! on loopback every node shares 127.0.0.1. See `slots`.
//!
//! Each peer gets two lanes, each with its own bounded queue, task and connection: snapshot chunks go on
//! the `bulk` lane and everything else on the `control` lane, so a multi-megabyte chunk never delays a
//! heartbeat or a vote. Order is kept within a lane, not across lanes (Raft needs neither). Sending never
//! blocks: an overflowing queue drops its oldest message, and a full inbox drops the newest, because Raft
//! tolerates loss and retries on its own. Every drop is counted in [`PeerTransport::dropped_messages`].

mod admission;
mod directory;
mod inbound;
mod outbound;
mod queue;
mod slots;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tally_raft::{Message, MessageBody, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use admission::{Gate, Incidents};
use directory::Directory;
pub use inbound::{InboundError, Proof, Refusal};
use outbound::LaneTask;
use queue::LaneQueue;
use slots::Slots;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{ParseError, peer_host_port};
use crate::frame;
use crate::wire::{self, Hello};

/// Limits and timings of the peer transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The largest message payload sent or accepted. It bounds the memory one connection can make this node
    /// allocate, and must exceed the largest snapshot chunk plus its header.
    pub max_frame_bytes: usize,
    /// Messages queued per peer and lane (and in the inbox) before the oldest are dropped: bounds the memory
    /// held for a slow or unreachable peer.
    pub queue_messages_max: usize,
    /// The first pause before reconnecting to a peer, so a restarting peer is reached again quickly.
    pub reconnect_backoff_min: Duration,
    /// The longest pause between reconnection attempts, so a peer that is down is not hammered.
    pub reconnect_backoff_max: Duration,
    /// How long an inbound connection may take to be admitted (complete its TLS handshake, if any, and send a
    /// hello that proves who it is) before it is closed, so that strangers cannot hold the unadmitted slots.
    pub admission_timeout: Duration,
    /// The most inbound connections not admitted yet; when full, one of them is evicted for a newcomer (the
    /// oldest of the address holding the most). Small: a member is admitted within a round trip or two.
    pub unadmitted_connections_max: usize,
    /// The most admitted inbound connections in all; when full, the one silent longest is evicted. A cluster
    /// needs two per peer.
    pub admitted_connections_max: usize,
    /// The most admitted inbound connections bound to one node id; beyond it that id's oldest is evicted. Two
    /// lanes, plus room for reconnections that overlap stale connections not closed yet.
    pub connections_per_peer_max: usize,
}

impl Default for PeerConfig {
    fn default() -> PeerConfig {
        PeerConfig {
            max_frame_bytes: 16 * 1024 * 1024,
            queue_messages_max: 4096,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            admission_timeout: Duration::from_secs(3),
            unadmitted_connections_max: 64,
            admitted_connections_max: 256,
            connections_per_peer_max: 4,
        }
    }
}

/// Who this node is to its peers: what its hello tells them.
///
/// Its `Debug` output hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Where this node serves clients, so followers can forward writes to it when it leads. At most
    /// [`wire::CLIENT_URL_MAX_BYTES`].
    pub client_url: String,
    /// Where this node accepts peer connections, as peers should dial it. At most [`wire::PEER_URL_MAX_BYTES`].
    pub peer_url: String,
    /// The cluster's shared secret: when set, sent in every hello, and required in the hello of every inbound
    /// connection. `None`: no token sent, every connection served. At most [`wire::TOKEN_MAX_BYTES`].
    pub token: Option<String>,
}

impl std::fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let PeerIdentity { client_url, peer_url, token } = self;
        f.debug_struct("PeerIdentity")
            .field("client_url", client_url)
            .field("peer_url", peer_url)
            .field("token", &token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Mutual TLS between peers: every inbound connection must complete a TLS handshake with a client certificate
/// that `server` verifies (rustls' `WebPkiClientVerifier` over the cluster CA), and every outbound one is a TLS
/// session that `client` verifies, presenting this node's certificate. Certificates name their node id in the
/// Subject Common Name (`n1`, `n2`, ...), which binds each connection to one node. Built from PEM files by
/// [`tally_net::tls`] (the server's `--peer-tls-*` flags).
pub use tally_net::tls::TlsPair as PeerTls;

/// A peer connection's byte stream: plain TCP, or a TLS session over it.
pub(crate) trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// Which outbound connection of a peer carries a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Everything small and latency-sensitive: votes, appends, heartbeats and their answers.
    Control,
    /// Snapshot chunks, which may be megabytes and must not delay the control lane.
    Bulk,
}

impl Lane {
    /// The lane that carries `message`.
    pub fn of(message: &Message) -> Lane {
        match message.body {
            MessageBody::InstallSnapshot(_) => Lane::Bulk,
            _ => Lane::Control,
        }
    }
}

/// One known peer: its address and its two lanes.
struct Peer {
    /// Its current `host:port`; the lane tasks watch it (and look it up at each connection attempt), and end
    /// when it is dropped.
    host_port: watch::Sender<String>,
    /// The control lane's queue.
    control: Arc<LaneQueue>,
    /// The bulk lane's queue.
    bulk: Arc<LaneQueue>,
    /// The two lane tasks, awaited on shutdown.
    tasks: [JoinHandle<()>; 2],
}

impl Peer {
    /// The queue of `lane`.
    fn queue(&self, lane: Lane) -> &LaneQueue {
        match lane {
            Lane::Control => &self.control,
            Lane::Bulk => &self.bulk,
        }
    }
}

/// Sends messages to peers and receives theirs; see the module doc.
///
/// Dropping it without [`PeerTransport::shutdown`] also stops its tasks, without waiting for them.
pub struct PeerTransport {
    /// This node, the `from` of what it sends and the `to` of what it accepts.
    local_id: NodeId,
    /// Limits and timings, copied into every lane task.
    config: PeerConfig,
    /// The runtime the transport was started on, where lane tasks are spawned whatever thread calls
    /// [`PeerTransport::set_peer`].
    runtime: tokio::runtime::Handle,
    /// The known peers, in id order.
    peers: Mutex<BTreeMap<NodeId, Peer>>,
    /// Set to `true` to stop every task.
    shutdown: watch::Sender<bool>,
    /// The listener's task, which owns the inbound connection tasks.
    accept_task: JoinHandle<()>,
    /// Messages dropped: unknown peer, queue overflow, too large, broken write, full inbox.
    dropped: Arc<AtomicU64>,
    /// The framed hello every lane writes first on each connection.
    hello: Arc<[u8]>,
    /// The peers' URLs, filled by the inbound connections from the hellos they receive.
    directory: Arc<Directory>,
    /// The inbound connections refused, and the identity mismatches.
    incidents: Arc<Incidents>,
    /// The inbound connections' slots, and the count of evictions.
    slots: Arc<Slots>,
    /// With mutual TLS, what opens every outbound connection's TLS session.
    connector: Option<TlsConnector>,
}

impl PeerTransport {
    /// Starts accepting peer connections on `listener`; received, decoded messages addressed to `local_id`
    /// go to the returned receiver (bounded by `queue_messages_max`; when full, messages are dropped: Raft
    /// tolerates loss). `identity` is what the hello that opens each outbound connection tells the peer; its
    /// token, if any, is also required of every inbound connection. With `tls`, every connection, inbound and
    /// outbound, is mutual TLS and bound to the node id of the peer's certificate; a plain-TCP peer is refused.
    ///
    /// # Panics
    /// Outside a tokio runtime, if a field of `identity` is longer than its limit ([`wire::CLIENT_URL_MAX_BYTES`],
    /// [`wire::PEER_URL_MAX_BYTES`], [`wire::TOKEN_MAX_BYTES`]), or if `config` has a zero limit or timeout, a
    /// `max_frame_bytes` too small for the hello (about 2.3 KiB at most), or
    /// `reconnect_backoff_min > reconnect_backoff_max`.
    pub fn start(
        local_id: NodeId,
        identity: PeerIdentity,
        listener: TcpListener,
        config: PeerConfig,
        tls: Option<PeerTls>,
    ) -> (PeerTransport, mpsc::Receiver<Message>) {
        assert!(config.max_frame_bytes > 0, "max_frame_bytes must be positive");
        assert!(config.queue_messages_max > 0, "queue_messages_max must be positive");
        assert!(!config.admission_timeout.is_zero(), "admission_timeout must be positive");
        assert!(
            config.reconnect_backoff_min <= config.reconnect_backoff_max,
            "reconnect_backoff_min {:?} > reconnect_backoff_max {:?}",
            config.reconnect_backoff_min,
            config.reconnect_backoff_max
        );
        let PeerIdentity { client_url, peer_url, token } = identity;
        // Panics if a field exceeds its limit.
        let hello = wire::encode_hello(&Hello { from: local_id, client_url, peer_url, token: token.clone() });
        assert!(
            hello.len() <= config.max_frame_bytes,
            "max_frame_bytes {} cannot carry the {}-byte hello",
            config.max_frame_bytes,
            hello.len()
        );
        let (inbox_tx, inbox_rx) = mpsc::channel(config.queue_messages_max);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let dropped = Arc::new(AtomicU64::new(0));
        let directory = Arc::new(Directory::new(local_id));
        let incidents = Arc::new(Incidents::default());
        let slots = Slots::new(slots::Limits {
            unadmitted_max: config.unadmitted_connections_max,
            admitted_max: config.admitted_connections_max,
            per_peer_max: config.connections_per_peer_max,
        });
        let inbox = inbound::Inbox {
            local_id,
            tx: inbox_tx,
            max_frame_bytes: config.max_frame_bytes,
            dropped: Arc::clone(&dropped),
            directory: Arc::clone(&directory),
            gate: Gate { local_id, token: token.map(Arc::from) },
            tls: tls.as_ref().map(|tls| TlsAcceptor::from(Arc::clone(&tls.server))),
            admission_timeout: config.admission_timeout,
            incidents: Arc::clone(&incidents),
            slots: Arc::clone(&slots),
        };
        let accept_task = tokio::spawn(inbound::accept_loop(listener, inbox, shutdown_rx));
        let transport = PeerTransport {
            local_id,
            config,
            runtime: tokio::runtime::Handle::current(),
            peers: Mutex::new(BTreeMap::new()),
            shutdown,
            accept_task,
            dropped,
            hello: frame::encode(&hello).into(),
            directory,
            incidents,
            slots,
            connector: tls.map(|tls| TlsConnector::from(tls.client)),
        };
        (transport, inbox_rx)
    }

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// The client URL that node `id` last announced in a hello; `None` if none was received from it yet, and
    /// for this node itself (a hello claiming this node's id is refused). Entries outlive
    /// [`PeerTransport::remove_peer`] and connection losses: the last URL heard stays until a newer one. Only
    /// hellos that admitted their connection (or repeat its id) are heard: with a cluster token, those carrying
    /// it; with mutual TLS, those from the node their certificate names. Without either, anyone who reaches the
    /// peer port can announce URLs for any id.
    pub fn client_url(&self, id: NodeId) -> Option<String> {
        self.directory.client_url(id)
    }

    /// A counter bumped whenever a peer's hello announces new URLs: compare it with an earlier reading to
    /// learn cheaply whether [`PeerTransport::peer_urls`] changed.
    pub fn hello_generation(&self) -> u64 {
        self.directory.generation()
    }

    /// Every client URL learned from peers' hellos, in id order (never this node's own).
    pub fn client_urls(&self) -> BTreeMap<NodeId, String> {
        self.directory.client_urls()
    }

    /// The peer URL that node `id` last announced in a hello, as that node advertises it (not checked here);
    /// same rules as [`PeerTransport::client_url`].
    pub fn peer_url(&self, id: NodeId) -> Option<String> {
        self.directory.peer_url(id)
    }

    /// Every peer URL learned from peers' hellos, in id order (never this node's own); see
    /// [`PeerTransport::peer_url`].
    pub fn peer_urls(&self) -> BTreeMap<NodeId, String> {
        self.directory.peer_urls()
    }

    /// Sets or changes a peer's URL (membership or address changes): `http://host:port`, `tcp://host:port` or
    /// `host:port`. The host is looked up at every connection attempt, so it need not resolve yet, and a change
    /// of the address it resolves to is followed. Connections are made lazily and remade when the `host:port`
    /// changes; messages already queued for the peer are kept. May be called from any thread.
    ///
    /// # Errors
    /// A URL that is not of those forms (see [`peer_host_port`]); the peer is left as it was.
    pub fn set_peer(&self, id: NodeId, peer_url: String) -> Result<(), ParseError> {
        let host_port = peer_host_port(&peer_url)?.to_owned();
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.get(&id) {
            peer.host_port.send_if_modified(|current| {
                let changed = *current != host_port;
                if changed {
                    tracing::debug!(peer = %id, %peer_url, previous = %current, "peer address changed");
                    *current = host_port;
                }
                changed
            });
            return Ok(());
        }
        peers.insert(id, self.spawn_peer(id, host_port));
        Ok(())
    }

    /// Forgets a peer: its lane tasks end and the messages queued for it are dropped.
    pub fn remove_peer(&self, id: NodeId) {
        let removed = self.peers.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        drop(removed);
    }

    /// Non-blocking send: enqueues `message` on its lane of `message.to`. Dropped (counted) if the peer is
    /// unknown; a full queue drops its oldest message instead.
    pub fn send(&self, message: Message) {
        debug_assert_eq!(message.from, self.local_id, "sending a message from another node");
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        match peers.get(&message.to) {
            Some(peer) => peer.queue(Lane::of(&message)).push(message),
            None => {
                tracing::debug!(to = %message.to, kind = message.kind(), "dropping message to unknown peer");
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many messages were dropped so far, for metrics.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many inbound connections were refused so far (no hello or none in time, a wrong or missing cluster
    /// token, a hello claiming this node's id, a failed TLS handshake, a certificate naming no node), for
    /// metrics.
    pub fn rejected_connections(&self) -> u64 {
        self.incidents.refused()
    }

    /// How many inbound connections were closed so far because a frame's `from` was not the node id the
    /// connection is bound to (by its hello or its certificate), for metrics.
    pub fn identity_mismatches(&self) -> u64 {
        self.incidents.mismatched()
    }

    /// How many inbound connections were evicted so far to make room for newer ones, for metrics.
    pub fn evicted_connections(&self) -> u64 {
        self.slots.evicted()
    }

    /// How many inbound connections hold a slot now: (not admitted yet, admitted).
    pub fn inbound_connections(&self) -> (usize, usize) {
        self.slots.occupied()
    }

    /// Stops every task (listener, inbound connections, lanes) and waits for them to end.
    ///
    /// # Panics
    /// Re-raises the panic of a task that panicked.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        let peers = std::mem::take(&mut *self.peers.lock().unwrap_or_else(PoisonError::into_inner));
        let lane_tasks = peers.into_values().flat_map(|peer| peer.tasks);
        for task in std::iter::once(self.accept_task).chain(lane_tasks) {
            if let Err(error) = task.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
    }

    /// Starts the two lane tasks of a new peer, on the transport's runtime.
    fn spawn_peer(&self, id: NodeId, host_port: String) -> Peer {
        let (host_port_tx, host_port_rx) = watch::channel(host_port);
        let control = Arc::new(LaneQueue::new(self.config.queue_messages_max, Arc::clone(&self.dropped)));
        let bulk = Arc::new(LaneQueue::new(self.config.queue_messages_max, Arc::clone(&self.dropped)));
        let spawn_lane = |lane: Lane, queue: &Arc<LaneQueue>| {
            let task = LaneTask {
                peer: id,
                lane,
                queue: Arc::clone(queue),
                host_port: host_port_rx.clone(),
                shutdown: self.shutdown.subscribe(),
                config: self.config,
                dropped: Arc::clone(&self.dropped),
                hello: Arc::clone(&self.hello),
                tls: self.connector.clone(),
            };
            self.runtime.spawn(task.run())
        };
        let tasks = [spawn_lane(Lane::Control, &control), spawn_lane(Lane::Bulk, &bulk)];
        Peer { host_port: host_port_tx, control, bulk, tasks }
    }
}

impl tally_node::Transport for PeerTransport {
    fn send(&mut self, message: Message) {
        PeerTransport::send(self, message);
    }
}

/// Resolves once the transport shuts down (the flag turns `true` or its sender is dropped).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = shutdown.wait_for(|stop| *stop).await;
}
