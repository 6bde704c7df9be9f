//! The tokio peer transport: delivers Raft messages between nodes over TCP, and tells every node the client
//! URL of its peers.
//!
//! ```text
//!  send(msg) ──Lane::of──▶ control queue ──▶ control task ──TCP: hello, messages──▶ peer's listener
//!                    └──▶ bulk queue    ──▶ bulk task    ──TCP: hello, messages──▶ peer's listener
//!  listener ──accept──▶ connection task ──frames──▶ wire::decode_frame
//!      ├─ message ──▶ inbox (bounded mpsc) ──▶ node loop
//!      └─ hello   ──▶ client URL directory ──▶ client_url(id), client_urls()
//! ```
//!
//! Every outbound connection opens with a hello carrying this node's id and client URL, so a node learns a
//! peer's client URL (where followers forward client writes to the leader) as soon as that peer sends it
//! anything, and before that message reaches the node loop. A peer that sends no hello is still served.
//!
//! Each peer gets two lanes, each with its own bounded queue, task and connection: snapshot chunks go on
//! the `bulk` lane and everything else on the `control` lane, so a multi-megabyte chunk never delays a
//! heartbeat or a vote. Order is kept within a lane, not across lanes (Raft needs neither). Sending never
//! blocks: an overflowing queue drops its oldest message, and a full inbox drops the newest, because Raft
//! tolerates loss and retries on its own. Every drop is counted in [`PeerTransport::dropped_messages`].

mod directory;
mod inbound;
mod outbound;
mod queue;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tally_raft::{Message, MessageBody, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use directory::ClientUrls;
pub use inbound::InboundError;
use outbound::LaneTask;
use queue::LaneQueue;

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
}

impl Default for PeerConfig {
    fn default() -> PeerConfig {
        PeerConfig {
            max_frame_bytes: 16 * 1024 * 1024,
            queue_messages_max: 4096,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
        }
    }
}

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
    /// Its current address; the lane tasks watch it, and end when it is dropped.
    addr: watch::Sender<SocketAddr>,
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
    /// The peers' client URLs, filled by the inbound connections from the hellos they receive.
    client_urls: Arc<ClientUrls>,
}

impl PeerTransport {
    /// Starts accepting peer connections on `listener`; received, decoded messages addressed to `local_id`
    /// go to the returned receiver (bounded by `queue_messages_max`; when full, messages are dropped: Raft
    /// tolerates loss). `client_url` is this node's advertised client URL, sent to every peer in the hello
    /// that opens each connection.
    ///
    /// # Panics
    /// Outside a tokio runtime, if `client_url` is longer than [`wire::CLIENT_URL_MAX_BYTES`], or if `config`
    /// has a zero limit, a `max_frame_bytes` too small for the hello (about 1 KiB at most), or
    /// `reconnect_backoff_min > reconnect_backoff_max`.
    pub fn start(
        local_id: NodeId,
        client_url: String,
        listener: TcpListener,
        config: PeerConfig,
    ) -> (PeerTransport, mpsc::Receiver<Message>) {
        assert!(config.max_frame_bytes > 0, "max_frame_bytes must be positive");
        assert!(config.queue_messages_max > 0, "queue_messages_max must be positive");
        assert!(
            config.reconnect_backoff_min <= config.reconnect_backoff_max,
            "reconnect_backoff_min {:?} > reconnect_backoff_max {:?}",
            config.reconnect_backoff_min,
            config.reconnect_backoff_max
        );
        // Panics if the URL exceeds CLIENT_URL_MAX_BYTES.
        let hello = wire::encode_hello(&Hello { from: local_id, client_url });
        assert!(
            hello.len() <= config.max_frame_bytes,
            "max_frame_bytes {} cannot carry the {}-byte hello",
            config.max_frame_bytes,
            hello.len()
        );
        let (inbox_tx, inbox_rx) = mpsc::channel(config.queue_messages_max);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let dropped = Arc::new(AtomicU64::new(0));
        let client_urls = Arc::new(ClientUrls::new(local_id));
        let inbox = inbound::Inbox {
            local_id,
            tx: inbox_tx,
            max_frame_bytes: config.max_frame_bytes,
            dropped: Arc::clone(&dropped),
            client_urls: Arc::clone(&client_urls),
        };
        let accept_task = tokio::spawn(inbound::accept_loop(listener, inbox, shutdown_rx));
        let transport = PeerTransport {
            local_id,
            config,
            peers: Mutex::new(BTreeMap::new()),
            shutdown,
            accept_task,
            dropped,
            hello: frame::encode(&hello).into(),
            client_urls,
        };
        (transport, inbox_rx)
    }

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// The client URL that node `id` last announced in a hello; `None` if none was received from it yet, and
    /// for this node itself (a hello claiming this node's id is ignored). Entries outlive
    /// [`PeerTransport::remove_peer`] and connection losses: the last URL heard stays until a newer one.
    pub fn client_url(&self, id: NodeId) -> Option<String> {
        self.client_urls.get(id)
    }

    /// Every client URL learned from peers' hellos, in id order (never this node's own); see
    /// [`PeerTransport::client_url`].
    pub fn client_urls(&self) -> BTreeMap<NodeId, String> {
        self.client_urls.all()
    }

    /// Sets or changes a peer's address (membership or address changes). Connections are made lazily and
    /// remade on a change; messages already queued for the peer are kept.
    pub fn set_peer(&self, id: NodeId, addr: SocketAddr) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.get(&id) {
            peer.addr.send_if_modified(|current| std::mem::replace(current, addr) != addr);
            return;
        }
        peers.insert(id, self.spawn_peer(id, addr));
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

    /// Starts the two lane tasks of a new peer.
    fn spawn_peer(&self, id: NodeId, addr: SocketAddr) -> Peer {
        let (addr_tx, addr_rx) = watch::channel(addr);
        let control = Arc::new(LaneQueue::new(self.config.queue_messages_max, Arc::clone(&self.dropped)));
        let bulk = Arc::new(LaneQueue::new(self.config.queue_messages_max, Arc::clone(&self.dropped)));
        let spawn_lane = |lane: Lane, queue: &Arc<LaneQueue>| {
            let task = LaneTask {
                peer: id,
                lane,
                queue: Arc::clone(queue),
                addr: addr_rx.clone(),
                shutdown: self.shutdown.subscribe(),
                config: self.config,
                dropped: Arc::clone(&self.dropped),
                hello: Arc::clone(&self.hello),
            };
            tokio::spawn(task.run())
        };
        let tasks = [spawn_lane(Lane::Control, &control), spawn_lane(Lane::Bulk, &bulk)];
        Peer { addr: addr_tx, control, bulk, tasks }
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
