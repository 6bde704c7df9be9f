//! The node loop's side of watches: the sans-IO [`WatchHub`] and the channel that carries each watcher's
//! deliveries to its HTTP stream.
//!
//! ```text
//!  node.handle(batch) ──▶ publish(history, applied) ──▶ hub queues (bounded per watcher)
//!  every step:  tick (progress, rate-limited) ──▶ flush: hub.take ──try_send──▶ mpsc ──▶ stream task (SSE)
//!  stream gone (receiver dropped) ──▶ found closed at flush or sweep ──▶ unsubscribe
//! ```
//!
//! The node loop never blocks on a watcher: a delivery leaves the hub only when its channel has room, so a
//! watcher that does not read lets its hub queue grow until the hub cuts it off with `slow_watcher`. One place
//! of every channel is kept for that final error, so the error always fits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tally_kv::{ChangeBatch, History, KeyFilter};
use tally_node::{Delivery, SubscribeError, WatchConfig, WatchError, WatchHub, WatchId};
use tokio::sync::mpsc;

/// Messages a watcher's channel holds: a few, so one slow stream task costs little; bytes are bounded by the
/// per-message budget.
const CHANNEL_MESSAGES: usize = 8;

/// How often every watcher's channel is checked for a stream that went away, besides the checks at flush.
const SWEEP_INTERVAL: Duration = Duration::from_millis(200);

/// The most often the hub is ticked for progress notices: a tick costs O(watchers), so it must not run on
/// every batch of a busy node.
const TICK_INTERVAL_MAX: Duration = Duration::from_millis(100);

/// The encoding of one batch for every watcher of one filter and `prev` flag, made by the first stream task
/// that writes it and reused by the others: with many watchers on one prefix, each change is encoded once.
pub(crate) type EncodedSlot = Arc<OnceLock<Bytes>>;

/// One delivery as a stream receives it.
pub(crate) enum WatchItem {
    /// Entry `batch.index` changed keys the watcher follows (the stream picks them with its filter).
    Changes {
        /// All changes of the entry, shared with the history.
        batch: Arc<ChangeBatch>,
        /// Where the encoding for this watcher's filter and `prev` flag goes.
        encoded: EncodedSlot,
    },
    /// Every matching change up to this index was delivered.
    Progress(u64),
}

/// What a watcher's stream receives from the node loop.
pub(crate) enum WatchMessage {
    /// Deliveries in index order.
    Items(Vec<WatchItem>),
    /// The watch ended; nothing follows.
    End(WatchError),
}

/// A watch to start.
#[derive(Clone, Debug)]
pub(crate) struct WatchRequest {
    /// The keys to follow.
    pub(crate) filter: KeyFilter,
    /// Whether the stream shows previous values (only affects how it is encoded).
    pub(crate) prev: bool,
    /// The first index to deliver (inclusive); `None`: the one after the read index.
    pub(crate) from: Option<u64>,
    /// The index of a linearizable read the handler did first, so that a watch on a follower never starts in
    /// the past. `None` (blocking reads): the node's applied index, and a `from` past the next index is moved
    /// back to it (a blocking read may name an index this node has not applied yet; it then sees every change
    /// from here on and skips those not after its index itself).
    pub(crate) read_index: Option<u64>,
}

/// Counters of watches, for `/metrics` and `/v1/cluster`.
#[derive(Debug, Default)]
pub(crate) struct WatchMetrics {
    /// Watches and blocking reads open now.
    pub(crate) watchers: AtomicU64,
    /// Watchers cut off because they fell behind.
    pub(crate) slow_total: AtomicU64,
    /// The oldest index the history covers.
    pub(crate) history_oldest_index: AtomicU64,
}

/// One watcher's way out of the node loop.
struct Outlet {
    /// Its channel.
    sender: mpsc::Sender<WatchMessage>,
    /// Its encoding group's number, so that watchers of one filter and `prev` flag share encodings.
    group: u64,
    /// Its filter and `prev` flag: the group's key.
    group_key: (KeyFilter, bool),
}

/// The hub, the channels, and the bookkeeping around them.
///
/// Invariant: every subscription of the hub has an outlet and every outlet a subscription (checked by
/// [`Watchers::check_invariants`] in debug builds after each step).
pub(crate) struct Watchers {
    /// The watchers and their queues.
    hub: WatchHub,
    /// Each subscription's channel.
    outlets: HashMap<WatchId, Outlet>,
    /// The encoding group of each `(filter, prev)` in use, and how many outlets are in it.
    groups: BTreeMap<(KeyFilter, bool), (u64, usize)>,
    /// The next group number.
    next_group: u64,
    /// Bytes taken from the hub into one message: with [`CHANNEL_MESSAGES`] messages, a channel holds about
    /// the hub's buffer again.
    message_bytes: usize,
    /// When the hub was last ticked.
    last_tick: Option<Instant>,
    /// When closed channels were last looked for.
    last_sweep: Instant,
}

impl Watchers {
    /// No watchers yet, for a node that applied up to `applied`.
    pub(crate) fn new(config: WatchConfig, applied: u64) -> Watchers {
        let message_bytes = (config.buffer_bytes / CHANNEL_MESSAGES).max(1);
        Watchers {
            hub: WatchHub::new(config, applied),
            outlets: HashMap::new(),
            groups: BTreeMap::new(),
            next_group: 1,
            message_bytes,
            last_tick: None,
            last_sweep: Instant::now(),
        }
    }

    /// Starts a watch; its deliveries arrive on the returned receiver.
    ///
    /// # Errors
    /// As [`WatchHub::subscribe`]: compacted, in the future, from 0, or too many watchers.
    pub(crate) fn subscribe(
        &mut self,
        request: WatchRequest,
        history: &History,
        now_ms: u64,
    ) -> Result<mpsc::Receiver<WatchMessage>, SubscribeError> {
        let read_index = request.read_index.unwrap_or(self.hub.applied());
        let from = match request.read_index {
            Some(_) => request.from,
            None => request.from.map(|from| from.min(read_index + 1)),
        };
        let id = self.hub.subscribe(request.filter.clone(), request.prev, from, read_index, history, now_ms)?;
        let (sender, receiver) = mpsc::channel(CHANNEL_MESSAGES);
        let next_group = &mut self.next_group;
        let group_key = (request.filter, request.prev);
        let (group, members) = self.groups.entry(group_key.clone()).or_insert_with(|| {
            *next_group += 1;
            (*next_group - 1, 0)
        });
        *members += 1;
        self.outlets.insert(id, Outlet { sender, group: *group, group_key });
        Ok(receiver)
    }

    /// Hands the history's new changes up to `applied` to the hub. Call after every `node.handle`.
    pub(crate) fn publish(&mut self, history: &History, applied: u64) {
        self.hub.publish(history, applied);
    }

    /// The work after a step: history pages for catching-up watchers, progress notices (at most every
    /// [`TICK_INTERVAL_MAX`]), every pending delivery into its channel, closed channels dropped, metrics.
    pub(crate) fn after_step(&mut self, history: &History, now_ms: u64, metrics: &WatchMetrics) {
        if self.hub.has_catch_up_work() {
            self.hub.publish(history, self.hub.applied());
        }
        if self.last_tick.is_none_or(|at| at.elapsed() >= TICK_INTERVAL_MAX) {
            self.last_tick = Some(Instant::now());
            self.hub.tick(now_ms);
        }
        self.flush(metrics);
        if self.last_sweep.elapsed() >= SWEEP_INTERVAL {
            self.last_sweep = Instant::now();
            let closed: Vec<WatchId> =
                self.outlets.iter().filter(|(_, outlet)| outlet.sender.is_closed()).map(|(&id, _)| id).collect();
            closed.into_iter().for_each(|id| self.remove(id));
        }
        metrics.watchers.store(self.hub.len() as u64, Ordering::Relaxed);
        metrics.history_oldest_index.store(history.covered_from(), Ordering::Relaxed);
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// Whether the loop should come back soon rather than wait for its next tick: a catching-up watcher
    /// waits for history pages.
    pub(crate) fn is_busy(&self) -> bool {
        self.hub.has_catch_up_work()
    }

    /// Moves what each pending watcher has into its channel, while the channel has room for the message and
    /// the final error after it. Batches of one group share one encoding slot.
    fn flush(&mut self, metrics: &WatchMetrics) {
        let pending: Vec<WatchId> = self.hub.pending().collect();
        let mut slots: HashMap<(u64, u64), EncodedSlot> = HashMap::new();
        for id in pending {
            let Some(outlet) = self.outlets.get(&id) else { unreachable!("{id} is pending but has no outlet") };
            if outlet.sender.is_closed() {
                self.remove(id);
                continue;
            }
            // Only this thread sends, so the room seen here can only grow before the send.
            let room = outlet.sender.capacity();
            assert!(room >= 1, "{id}'s channel has no room left for its final error");
            let budget = if room >= 2 { self.message_bytes } else { 0 };
            let group = outlet.group;
            let deliveries = self.hub.take(id, budget);
            let message = match deliveries.as_slice() {
                [] => continue,
                [Delivery::Error(error)] => {
                    if matches!(error, WatchError::SlowWatcher { .. }) {
                        metrics.slow_total.fetch_add(1, Ordering::Relaxed);
                    }
                    WatchMessage::End(*error)
                }
                _ => WatchMessage::Items(deliveries.into_iter().map(|d| item(d, group, &mut slots)).collect()),
            };
            let ended = matches!(message, WatchMessage::End(_));
            let sent = self.outlets.get(&id).map(|outlet| outlet.sender.try_send(message));
            if ended || !matches!(sent, Some(Ok(()))) {
                self.remove(id);
            }
        }
    }

    /// Ends `id`: the hub forgets it and its channel closes (its stream ends after what was sent).
    fn remove(&mut self, id: WatchId) {
        self.hub.unsubscribe(id);
        let Some(outlet) = self.outlets.remove(&id) else { return };
        let Some((_, members)) = self.groups.get_mut(&outlet.group_key) else {
            unreachable!("{id}'s group {} is not known", outlet.group)
        };
        *members -= 1;
        if *members == 0 {
            self.groups.remove(&outlet.group_key);
        }
    }

    /// Checks that hub and outlets agree, and the hub's own invariants.
    ///
    /// # Panics
    /// If they do not.
    #[cfg(debug_assertions)]
    pub(crate) fn check_invariants(&self) {
        self.hub.check_invariants();
        assert_eq!(self.hub.len(), self.outlets.len(), "watch subscriptions and outlets differ in number");
        let grouped: usize = self.groups.values().map(|(_, members)| members).sum();
        assert_eq!(grouped, self.outlets.len(), "encoding groups count {grouped} members");
        assert!(self.outlets.keys().all(|id| self.hub.filter(*id).is_some()), "an outlet without a subscription");
    }
}

/// A hub delivery as a stream item, with the encoding slot of its group and index.
fn item(delivery: Delivery, group: u64, slots: &mut HashMap<(u64, u64), EncodedSlot>) -> WatchItem {
    match delivery {
        Delivery::Changes { index, changes } => {
            let encoded = Arc::clone(slots.entry((group, index)).or_default());
            WatchItem::Changes { batch: changes, encoded }
        }
        Delivery::Progress(index) => WatchItem::Progress(index),
        Delivery::Error(error) => unreachable!("a watch error {error:?} amid other deliveries"),
    }
}
