//! The node loop on its own thread: the one place where the Raft core, the write-ahead log and the key/value
//! state machine live.
//!
//! ```text
//!  HTTP handlers ──try_send(Event)──┐
//!  peer inbox ──forward task────────┼──▶ bounded channel ──▶ driver thread:
//!                                   │        1. wait for one event (or the next tick)
//!                                   │        2. drain every event already queued (up to MAX_BATCH)
//!                                   │        3. node.handle(batch): ONE fsync for all proposals of the batch,
//!                                   │           ONE ReadIndex round for all linearizable reads
//!                                   │        4. answer completions through their oneshot channels
//!                                   │        5. publish leader/term/applied for the HTTP side
//! ```
//!
//! The auth state (users, roles, whether auth is on) is published too, before any completion is answered: a
//! client told that its auth change was applied finds it in force on this node's next request.
//!
//! Group commit falls out of the loop: while one batch's fsync runs, new requests queue in the channel, and
//! the next iteration takes them all into the next fsync. The thread blocks only on the channel and on the
//! disk, never on the network (the peer transport's `send` only enqueues).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tally_kv::{AuthState, KvStore, MemberAddress};
use tally_node::{
    Clock, Input, KvQuery, MembershipPolicy, Node, ReadConsistency, Reply, RequestError, RequestId, StorageAlarm,
    WalStorage,
};
use tally_raft::{LogIndex, MembershipChange, Message, NodeId, Role};
use tally_wal::RealDisk;
use tokio::sync::oneshot;

use crate::peer::PeerTransport;

pub(crate) mod watch;

use watch::{WatchMessage, WatchMetrics, WatchRequest, Watchers};

/// Most events taken into one batch (one fsync), so one batch cannot delay ticks for long.
const MAX_BATCH: usize = 4096;

/// Events queued for the node loop before peer messages are dropped.
pub(crate) const EVENT_QUEUE_MAX: usize = 16 * 1024;

/// Client requests queued for the node loop before new ones are refused (`503`): half the queue, so client
/// overload can never crowd out the peer messages (heartbeats, acks) that keep the leader in place.
pub(crate) const CLIENT_QUEUE_MAX: usize = EVENT_QUEUE_MAX / 2;
const _: () = assert!(CLIENT_QUEUE_MAX < EVENT_QUEUE_MAX, "peers must keep a share of the queue");

/// How often requests whose caller gave up (timed out, disconnected) are forgotten.
const ABANDON_SWEEP_INTERVAL: Duration = Duration::from_millis(200);

/// How often the leader's membership policy is asked for a change.
const POLICY_INTERVAL: Duration = Duration::from_millis(100);

/// The node this server drives.
pub(crate) type KvNode = Node<KvStore, WalStorage<RealDisk>, PeerSender, WallClock>;

/// What a write or read request ends with.
pub(crate) type RequestResult = Result<Reply<KvStore>, RequestError>;

/// One input to the node loop.
pub(crate) enum Event {
    /// A message from a peer.
    Peer(Message),
    /// A client write (an encoded `tally_kv::Command`).
    Propose {
        /// The encoded command.
        command: Vec<u8>,
        /// Where the result goes.
        reply: oneshot::Sender<RequestResult>,
    },
    /// A client read.
    Read {
        /// The question.
        query: KvQuery,
        /// How fresh.
        consistency: ReadConsistency,
        /// Where the answer goes.
        reply: oneshot::Sender<RequestResult>,
    },
    /// A membership change (the join call adds learners; the leader's policy does the rest).
    ProposeMembership {
        /// The change.
        change: MembershipChange,
        /// Where the result goes, once the change is applied.
        reply: oneshot::Sender<RequestResult>,
    },
    /// A leadership transfer to another voter.
    TransferLeader {
        /// The new leader.
        to: NodeId,
        /// Accepted (the transfer started) or refused.
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// Start a watch (or a blocking read's one-shot watch); answered at once.
    Watch {
        /// What to watch from where.
        request: WatchRequest,
        /// The channel the deliveries come through, or why the watch was refused.
        reply: oneshot::Sender<Result<tokio::sync::mpsc::Receiver<WatchMessage>, tally_node::SubscribeError>>,
    },
    /// A snapshot of the node's state for `/v1/cluster`.
    Status {
        /// Where it goes.
        reply: oneshot::Sender<NodeStatus>,
    },
    /// Stop the loop.
    Shutdown,
}

/// A member as this node sees it.
#[derive(Clone, Debug)]
pub(crate) struct MemberStatus {
    /// Its id.
    pub(crate) id: NodeId,
    /// Voter (`true`) or learner.
    pub(crate) voter: bool,
    /// The highest log index known to be stored on it (leader only).
    pub(crate) match_index: Option<LogIndex>,
}

/// The node's state, for `/v1/cluster`.
#[derive(Clone, Debug)]
pub(crate) struct NodeStatus {
    /// Its role.
    pub(crate) role: Role,
    /// Its term.
    pub(crate) term: u64,
    /// The leader it knows.
    pub(crate) leader: Option<NodeId>,
    /// Commit index.
    pub(crate) commit_index: LogIndex,
    /// Applied index.
    pub(crate) applied_index: LogIndex,
    /// Last log index.
    pub(crate) last_index: LogIndex,
    /// Index of the latest snapshot.
    pub(crate) snapshot_index: LogIndex,
    /// Fingerprint of the applied state.
    pub(crate) state_checksum: u64,
    /// The members, in id order.
    pub(crate) members: Vec<MemberStatus>,
    /// The cluster's id, once the node that formed it named it.
    pub(crate) cluster_id: Option<String>,
    /// Every member's addresses from the replicated metadata (may include nodes no longer members).
    pub(crate) addresses: BTreeMap<NodeId, MemberAddress>,
    /// The storage failure that stopped the node, if any.
    pub(crate) failure: Option<String>,
    /// This node's storage alarms (`no_space`, `quota`), sorted; empty when healthy.
    pub(crate) alarms: Vec<StorageAlarm>,
}

/// What the node loop publishes after every batch, for the HTTP side to read without a round trip.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// `(leader, is this node the leader)`, updated when it changes.
    leader: RwLock<(Option<NodeId>, bool)>,
    /// The applied index.
    applied_index: AtomicU64,
    /// The highest commit index this node has heard of (its own).
    commit_index: AtomicU64,
    /// Set once the node stopped (storage failure or shutdown).
    stopped: AtomicBool,
    /// Whether this node is a voter or learner in the membership it knows.
    is_member: AtomicBool,
    /// The cluster id from the replicated metadata, once set.
    cluster_id: RwLock<Option<String>>,
    /// Client requests queued and not yet taken by the loop (at most [`CLIENT_QUEUE_MAX`]).
    client_queued: AtomicUsize,
    /// The applied auth state, replaced (never changed in place) whenever an auth command or a snapshot changes
    /// it: a request handler clones the `Arc` and checks against it without asking the node loop.
    auth: RwLock<Arc<AuthState>>,
    /// Counters and gauges for `/metrics`.
    pub(crate) metrics: LoopMetrics,
}

/// What the node loop counts, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct LoopMetrics {
    /// The current term.
    pub(crate) term: AtomicU64,
    /// The last log index.
    pub(crate) last_index: AtomicU64,
    /// Batches handled (each is at most one fsync).
    pub(crate) batches: AtomicU64,
    /// Events handled (requests and peer messages).
    pub(crate) events: AtomicU64,
    /// Client requests waiting for the node.
    pub(crate) in_flight: AtomicU64,
    /// Times this node saw the leader change.
    pub(crate) leader_changes: AtomicU64,
    /// 1 while the disk is full (the `no_space` alarm).
    pub(crate) alarm_no_space: AtomicBool,
    /// 1 while the data is over the quota (the `quota` alarm).
    pub(crate) alarm_quota: AtomicBool,
    /// Bytes of the data directory (log segments and snapshots), measured about once a second.
    pub(crate) storage_bytes: AtomicU64,
    /// The storage quota in bytes (0: none).
    pub(crate) storage_quota_bytes: AtomicU64,
    /// Watchers and the history window.
    pub(crate) watch: WatchMetrics,
}

impl Published {
    /// The leader this node knows of.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.leader.read().unwrap_or_else(std::sync::PoisonError::into_inner).0
    }

    /// Whether this node is the leader.
    pub(crate) fn is_leader(&self) -> bool {
        self.leader.read().unwrap_or_else(std::sync::PoisonError::into_inner).1
    }

    /// The applied index.
    pub(crate) fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Relaxed)
    }

    /// The commit index.
    pub(crate) fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Relaxed)
    }

    /// Whether this node is a voter or learner in the membership it knows.
    pub(crate) fn is_member(&self) -> bool {
        self.is_member.load(Ordering::Relaxed)
    }

    /// The cluster id, once named.
    pub(crate) fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The applied auth state, as of the last batch of the node loop.
    pub(crate) fn auth(&self) -> Arc<AuthState> {
        Arc::clone(&self.auth.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether the node loop stopped.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Reserves a place in the queue for one client request; `false` if [`CLIENT_QUEUE_MAX`] are queued.
    pub(crate) fn admit_client_request(&self) -> bool {
        if self.client_queued.fetch_add(1, Ordering::Relaxed) >= CLIENT_QUEUE_MAX {
            self.client_queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Releases the place of a client request the loop took (or that could not be queued).
    pub(crate) fn release_client_request(&self) {
        self.client_queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records that the node loop stopped.
    pub(crate) fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// Sends the node's messages through the peer transport.
pub(crate) struct PeerSender(pub(crate) Arc<PeerTransport>);

impl tally_node::Transport for PeerSender {
    fn send(&mut self, message: Message) {
        self.0.send(message);
    }
}

/// Milliseconds of wall-clock time at start plus the monotonic time since: never goes back, and differs
/// across restarts (read contexts are derived from it and must never repeat).
pub(crate) struct WallClock {
    /// Wall-clock milliseconds at start.
    base_ms: u64,
    /// The monotonic start.
    start: Instant,
}

impl WallClock {
    /// A clock starting now.
    pub(crate) fn new() -> WallClock {
        let base_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        WallClock { base_ms, start: Instant::now() }
    }
}

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        self.base_ms + self.start.elapsed().as_millis() as u64
    }
}

/// A request in flight: where its completion goes.
type Waiter = oneshot::Sender<RequestResult>;

/// The node loop. Runs until `Shutdown` or until every event sender is gone.
pub(crate) struct Driver {
    /// The node.
    node: KvNode,
    /// Events.
    events: Receiver<Event>,
    /// What the HTTP side reads.
    published: Arc<Published>,
    /// Requests in flight.
    waiters: HashMap<RequestId, Waiter>,
    /// The next request id.
    next_request: RequestId,
    /// When the last sweep for abandoned requests ran.
    last_sweep: Instant,
    /// The leader's membership policy, when membership is managed (discovery); `None` for a static cluster.
    policy: Option<MembershipPolicy>,
    /// When the policy was last asked.
    last_policy_run: Instant,
    /// Peer URLs given at start (`--initial-cluster`), used until the replicated metadata has an address.
    static_peers: BTreeMap<NodeId, String>,
    /// The peer URL last handed to the transport for each node.
    peer_urls_set: BTreeMap<NodeId, String>,
    /// The replicated addresses as of the last sync; `None` before the first.
    addresses_synced: Option<BTreeMap<u64, MemberAddress>>,
    /// The transport's hello generation as of the last sync of hello addresses.
    hello_generation_synced: u64,
    /// The peer URL each peer's hello announced, as of the last sync of hello addresses.
    hello_urls_seen: BTreeMap<NodeId, String>,
    /// The watches served from this node's history.
    watchers: Watchers,
}

impl Driver {
    /// A loop over `node`, fed by `events`. `static_peers` are the peer URLs given at start; `policy` manages
    /// membership when set.
    pub(crate) fn new(
        node: KvNode,
        events: Receiver<Event>,
        published: Arc<Published>,
        static_peers: BTreeMap<NodeId, String>,
        policy: Option<MembershipPolicy>,
    ) -> Driver {
        let mut driver = Driver {
            node,
            events,
            published,
            waiters: HashMap::new(),
            next_request: 1,
            last_sweep: Instant::now(),
            policy,
            last_policy_run: Instant::now(),
            static_peers,
            peer_urls_set: BTreeMap::new(),
            addresses_synced: None,
            hello_generation_synced: 0,
            hello_urls_seen: BTreeMap::new(),
            watchers: Watchers::new(tally_node::WatchConfig::default(), 0),
        };
        driver.watchers = Watchers::new(tally_node::WatchConfig::default(), driver.node.raft().applied_index().0);
        driver.sync_peer_addresses();
        driver.publish();
        driver
    }

    /// The same loop, serving watches with `config` instead of the defaults.
    pub(crate) fn with_watches(mut self, config: tally_node::WatchConfig) -> Driver {
        self.watchers = Watchers::new(config, self.node.raft().applied_index().0);
        self
    }

    /// Runs the loop on the calling thread until shutdown.
    pub(crate) fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            let mut wait = Duration::from_millis(self.node.until_next_tick_ms().max(1));
            if self.watchers.is_busy() {
                wait = wait.min(Duration::from_millis(2));
            }
            match self.events.recv_timeout(wait) {
                Ok(event) => batch.push(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < MAX_BATCH {
                match self.events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            if !self.step(&mut batch) {
                break;
            }
        }
        self.fail_all(RequestError::Stopped("the node is shutting down".to_string()));
        self.published.stopped.store(true, Ordering::Relaxed);
    }

    /// Feeds one batch of events to the node and answers what completed; `false` on shutdown.
    fn step(&mut self, batch: &mut Vec<Event>) -> bool {
        self.published.metrics.batches.fetch_add(1, Ordering::Relaxed);
        self.published.metrics.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut inputs = Vec::with_capacity(batch.len() + 1);
        inputs.push(Input::Tick);
        let mut keep_running = true;
        let mut statuses = Vec::new();
        let now_ms = self.node.clock_mut().now_ms();
        for event in batch.drain(..) {
            if !matches!(event, Event::Peer(_) | Event::Shutdown) {
                self.published.release_client_request();
            }
            match event {
                Event::Peer(message) => {
                    if let Some(policy) = self.policy.as_mut() {
                        policy.heard_from(message.from, now_ms);
                    }
                    inputs.push(Input::Message(message));
                }
                Event::ProposeMembership { change, reply } => {
                    let id = self.register(reply);
                    inputs.push(Input::ProposeMembership { id, change });
                }
                Event::Propose { command, reply } => {
                    let id = self.register(reply);
                    inputs.push(Input::Propose { id, command });
                }
                Event::Read { query, consistency, reply } => {
                    let id = self.register(reply);
                    inputs.push(Input::Read { id, query, consistency });
                }
                Event::TransferLeader { to, reply } => {
                    // Transfers are rare: carry out what is batched so far, then the transfer.
                    self.handle(std::mem::take(&mut inputs));
                    let _ = reply.send(self.node.transfer_leader(to));
                }
                Event::Watch { request, reply } => {
                    let history = self.node.state_machine().history();
                    let _ = reply.send(self.watchers.subscribe(request, history, now_ms));
                }
                Event::Status { reply } => statuses.push(reply),
                Event::Shutdown => keep_running = false,
            }
        }
        self.handle(inputs);
        self.run_policy(now_ms);
        self.answer_completions();
        self.sync_peer_addresses();
        self.sync_hello_addresses();
        if !statuses.is_empty() {
            let status = self.status();
            for reply in statuses {
                let _ = reply.send(status.clone());
            }
        }
        if self.last_sweep.elapsed() >= ABANDON_SWEEP_INTERVAL {
            self.sweep_abandoned();
        }
        // Publish first: a watch stream re-checks its caller's permission against the published auth state when a
        // delivery arrives, so that state must already include every auth change applied with the deliveries.
        self.publish();
        let now_ms = self.node.clock_mut().now_ms();
        self.watchers.after_step(self.node.state_machine().history(), now_ms, &self.published.metrics.watch);
        keep_running
    }

    /// Gives inputs to the node; after a storage failure, fails every request instead.
    fn handle(&mut self, inputs: Vec<Input<KvQuery>>) {
        if inputs.is_empty() {
            return;
        }
        if self.node.has_failed() {
            // The node refuses input; answer the requests of this batch (they are registered).
            self.answer_completions();
            self.fail_all(RequestError::Stopped(self.failure_text()));
            return;
        }
        let result = self.node.handle(inputs);
        self.watchers.publish(self.node.state_machine().history(), self.node.raft().applied_index().0);
        if let Err(error) = result {
            tracing::error!(%error, "storage failed: the node stops serving; restart it to recover from its log");
            self.answer_completions();
            self.fail_all(RequestError::Stopped(error.to_string()));
            self.published.stopped.store(true, Ordering::Relaxed);
        }
    }

    /// Asks the membership policy (every [`POLICY_INTERVAL`]) for a change and proposes it. Nobody waits for
    /// it: a refused or lost change is simply asked for again later.
    fn run_policy(&mut self, now_ms: u64) {
        let Some(policy) = self.policy.as_mut() else { return };
        if self.last_policy_run.elapsed() < POLICY_INTERVAL || self.node.has_failed() {
            return;
        }
        self.last_policy_run = Instant::now();
        let Some(change) = policy.next_change(self.node.raft(), now_ms) else { return };
        tracing::info!(?change, "membership: proposing a change");
        let id = self.next_request;
        self.next_request += 1;
        self.handle(vec![Input::ProposeMembership { id, change }]);
    }

    /// Hands the transport every member's peer URL: from the replicated metadata, else from the static list.
    /// Addresses of nodes that left are kept (a few strings): a node that was removed may still need its
    /// removal, and one that rejoins comes back with its address.
    fn sync_peer_addresses(&mut self) {
        let members = &self.node.state_machine().cluster().members;
        if self.addresses_synced.as_ref() == Some(members) {
            return; // the common case, checked without allocating
        }
        // Only the entries that changed since the last sync: an old replicated address must not override a
        // newer one a peer announced in its hello.
        let previous = self.addresses_synced.replace(members.clone()).unwrap_or_default();
        let first_sync = previous.is_empty() && self.peer_urls_set.is_empty();
        let me = self.node.raft().id();
        let mut wanted: Vec<(NodeId, String)> = Vec::new();
        if first_sync {
            wanted.extend(self.static_peers.iter().map(|(&id, url)| (id, url.clone())));
        }
        for (&id, address) in self.node.state_machine().cluster().members.iter() {
            if previous.get(&id) != Some(address) {
                wanted.push((NodeId(id), address.peer_url.clone()));
            }
        }
        for (id, url) in wanted {
            if id == me || self.peer_urls_set.get(&id) == Some(&url) {
                continue;
            }
            match self.node.transport_mut().0.set_peer(id, url.clone()) {
                Ok(()) => tracing::info!(peer = %id, %url, "peer address"),
                Err(error) => tracing::warn!(peer = %id, %url, %error, "ignoring a bad peer address"),
            }
            self.peer_urls_set.insert(id, url);
        }
    }

    /// Uses the peer URLs that peers announce in their hellos, whenever one changes: a node says where it is
    /// now, which may be newer than the replicated address (its address changed and the cluster has not
    /// recorded it yet, e.g. most nodes moved at once and no leader can commit anything), and a joiner knows
    /// nobody's address until the leader's snapshot brings the replicated ones. Only nodes that passed the
    /// peer port's token check get this far.
    fn sync_hello_addresses(&mut self) {
        let transport = &self.node.transport_mut().0;
        let generation = transport.hello_generation();
        if generation == self.hello_generation_synced {
            return;
        }
        self.hello_generation_synced = generation;
        for (id, url) in transport.peer_urls() {
            // Only what a peer announced anew: an old hello must not undo a newer replicated address.
            if self.hello_urls_seen.get(&id) == Some(&url) {
                continue;
            }
            self.hello_urls_seen.insert(id, url.clone());
            if self.peer_urls_set.get(&id) == Some(&url) {
                continue;
            }
            match transport.set_peer(id, url.clone()) {
                Ok(()) => tracing::info!(peer = %id, %url, "peer address (from its hello)"),
                Err(error) => tracing::warn!(peer = %id, %url, %error, "ignoring a bad peer address from a hello"),
            }
            self.peer_urls_set.insert(id, url);
        }
    }

    /// Remembers a waiter under a new request id.
    fn register(&mut self, waiter: Waiter) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.waiters.insert(id, waiter);
        id
    }

    /// Sends every completion to its waiter (a waiter that gave up is simply gone), after publishing the auth
    /// state those completions may have changed.
    fn answer_completions(&mut self) {
        self.publish_auth();
        for completion in self.node.take_completions() {
            if let Some(reply) = self.waiters.remove(&completion.id) {
                let _ = reply.send(completion.result);
            }
        }
    }

    /// Fails every request in flight.
    fn fail_all(&mut self, error: RequestError) {
        for (_, reply) in self.waiters.drain() {
            let _ = reply.send(Err(error.clone()));
        }
    }

    /// Tells the node to forget requests whose caller is gone, so reads waiting for a read index that never
    /// comes (leadership changed) do not pile up.
    fn sweep_abandoned(&mut self) {
        self.last_sweep = Instant::now();
        let gone: Vec<RequestId> =
            self.waiters.iter().filter(|(_, reply)| reply.is_closed()).map(|(&id, _)| id).collect();
        for id in gone {
            self.waiters.remove(&id);
            self.node.abandon(id);
        }
    }

    /// Publishes the auth state if it changed: the store replaces its `Arc` on every change, so a pointer
    /// comparison tells.
    fn publish_auth(&self) {
        let current = self.node.state_machine().auth();
        let published = &self.published.auth;
        if Arc::ptr_eq(&published.read().unwrap_or_else(std::sync::PoisonError::into_inner), current) {
            return;
        }
        let (enabled, users, roles) = (current.is_enabled(), current.users().len(), current.roles().len());
        tracing::info!(enabled, users, roles, "auth state changed");
        *published.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(current);
    }

    /// Publishes leader, applied and commit index, and the auth state.
    fn publish(&self) {
        self.publish_auth();
        let raft = self.node.raft();
        let leader = (raft.leader_id(), raft.is_leader());
        let published = &self.published;
        if *published.leader.read().unwrap_or_else(std::sync::PoisonError::into_inner) != leader {
            *published.leader.write().unwrap_or_else(std::sync::PoisonError::into_inner) = leader;
            published.metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
            match leader.0 {
                Some(id) if leader.1 => tracing::info!(term = raft.term().0, "this node ({id}) is now the leader"),
                Some(id) => tracing::info!(term = raft.term().0, "following leader {id}"),
                None => tracing::info!(term = raft.term().0, "no leader known (election in progress)"),
            }
        }
        published.is_member.store(raft.membership().contains(raft.id()), Ordering::Relaxed);
        let cluster_id = &self.node.state_machine().cluster().cluster_id;
        if published.cluster_id.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            != cluster_id.as_ref()
        {
            *published.cluster_id.write().unwrap_or_else(std::sync::PoisonError::into_inner) = cluster_id.clone();
        }
        published.applied_index.store(raft.applied_index().0, Ordering::Relaxed);
        published.commit_index.store(raft.commit_index().0, Ordering::Relaxed);
        let metrics = &published.metrics;
        metrics.term.store(raft.term().0, Ordering::Relaxed);
        metrics.last_index.store(raft.last_index().0, Ordering::Relaxed);
        metrics.in_flight.store(self.waiters.len() as u64, Ordering::Relaxed);
        self.publish_storage(metrics);
    }

    /// Publishes the storage alarms and sizes, and logs an alarm when it is raised or cleared.
    fn publish_storage(&self, metrics: &LoopMetrics) {
        let alarms = self.node.storage_alarms();
        for (alarm, flag) in
            [(StorageAlarm::NoSpace, &metrics.alarm_no_space), (StorageAlarm::Quota, &metrics.alarm_quota)]
        {
            let raised = alarms.contains(&alarm);
            if flag.swap(raised, Ordering::Relaxed) != raised {
                if raised {
                    tracing::warn!(
                        alarm = alarm.as_str(),
                        "storage alarm raised: refusing writes while leader, serving reads"
                    );
                } else {
                    tracing::info!(alarm = alarm.as_str(), "storage alarm cleared: taking writes again");
                }
            }
        }
        metrics.storage_bytes.store(self.node.storage_bytes().unwrap_or(0), Ordering::Relaxed);
        metrics.storage_quota_bytes.store(self.node.storage_quota_bytes(), Ordering::Relaxed);
    }

    /// The node's state for `/v1/cluster`.
    fn status(&self) -> NodeStatus {
        let raft = self.node.raft();
        let mut matches = if raft.is_leader() { raft.match_indexes() } else { Default::default() };
        if raft.is_leader() {
            matches.insert(raft.id(), raft.last_index());
        }
        let membership = raft.membership();
        let members = membership
            .members()
            .map(|id| MemberStatus { id, voter: membership.is_voter(id), match_index: matches.get(&id).copied() })
            .collect();
        NodeStatus {
            role: raft.role(),
            term: raft.term().0,
            leader: raft.leader_id(),
            commit_index: raft.commit_index(),
            applied_index: raft.applied_index(),
            last_index: raft.last_index(),
            snapshot_index: raft.snapshot().meta.index,
            state_checksum: tally_node::StateMachine::state_checksum(self.node.state_machine()),
            members,
            cluster_id: self.node.state_machine().cluster().cluster_id.clone(),
            addresses: self
                .node
                .state_machine()
                .cluster()
                .members
                .iter()
                .map(|(&id, address)| (NodeId(id), address.clone()))
                .collect(),
            failure: self.node.has_failed().then(|| self.failure_text()),
            alarms: self.node.storage_alarms(),
        }
    }

    /// Why the node stopped.
    fn failure_text(&self) -> String {
        "the node's storage failed; restart it to recover from its log".to_string()
    }
}

/// Queues an event for the node loop; `false` if the queue is full or the loop is gone.
pub(crate) fn offer(events: &SyncSender<Event>, event: Event) -> bool {
    match events.try_send(event) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_requests_can_fill_only_half_of_the_queue() {
        let published = Published::default();
        for _ in 0..CLIENT_QUEUE_MAX {
            assert!(published.admit_client_request());
        }
        assert!(!published.admit_client_request(), "a full client share must refuse");
        published.release_client_request();
        assert!(published.admit_client_request(), "a released place is free again");
    }
}
