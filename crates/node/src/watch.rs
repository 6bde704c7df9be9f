//! The watch hub: fans the kv store's change history out to watchers, sans-IO.
//!
//! ```text
//!  driver, after each batch of applies:  publish(&History, applied) ──▶ live watchers: new batches matched
//!                                                │                     once per filter, queued
//!                                                └──────────────────▶ catching-up watchers with empty queues:
//!                                                                      one history page each (bounded work)
//!  driver, on its clock:                 tick(now_ms) ──▶ progress notices for idle, drained, live watchers
//!  per watcher:   subscribe(..) ─▶ WatchId ─▶ take(id, budget_bytes) ─▶ [Delivery] ─▶ the watcher's stream
//! ```
//!
//! The hub owns no threads, no clock and no sockets, and iterates only `BTreeMap`s and `BTreeSet`s, so the
//! server's driver thread and the simulator run the same code and a seed replays one run.
//!
//! # Contract with a watcher
//!
//! - A subscription starts at `from` (inclusive), or at `read_index + 1` without one. Every batch with a change
//!   matching its filter, from there on, is delivered once, in index order, whole (all changes of one entry
//!   together, as [`Delivery::Changes`]): first the backlog `[from, read_index]` out of the history, then live
//!   batches, with no gap and no duplicate between them. A batch with no matching change is not delivered.
//! - [`Delivery::Progress`]`(p)` goes out only when the queue is empty, the watcher is live and nothing was
//!   queued for [`WatchConfig::progress_interval_ms`]: it promises that every matching change up to `p` was
//!   delivered.
//! - A watcher whose queue goes over [`WatchConfig::buffer_bytes`] loses it and gets
//!   [`WatchError::SlowWatcher`] with the index right after the last one delivered; a watcher whose next index
//!   the history no longer covers (trimmed, or replaced by a snapshot install) gets [`WatchError::Compacted`].
//!   Either error is the last delivery: `take` removes the subscription as it hands the error out.

mod config;
mod delivery;
mod subscription;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use tally_kv::{History, KeyFilter};

pub use config::{WatchConfig, WatchFaults};
pub use delivery::{Delivery, SubscribeError, WatchError, WatchId};
use subscription::{Position, Subscription};

/// The watchers of one node and their queues.
///
/// Invariants (checked by [`WatchHub::check_invariants`]): every subscription is in exactly one place by its
/// position (`live` under its filter, or catching up, or failed), catching-up ones are in `refill` exactly when
/// their queue is empty, `pending` holds exactly those with a non-empty queue or an error, no subscription's
/// queue is over the buffer, and there are at most `max_watchers` of them.
#[derive(Debug)]
pub struct WatchHub {
    /// Limits, timings, faults.
    config: WatchConfig,
    /// The applied index of the last publish: live watchers have examined everything up to it.
    applied: u64,
    /// The latest time seen by `subscribe` or `tick`; stamps what publish queues.
    now_ms: u64,
    /// The next id to hand out.
    next_id: u64,
    /// Every subscription, including failed ones whose error was not taken yet.
    subscriptions: BTreeMap<WatchId, Subscription>,
    /// Live subscriptions by filter, so a published batch is matched once per filter, not once per watcher.
    live: BTreeMap<KeyFilter, BTreeSet<WatchId>>,
    /// Catching-up subscriptions with empty queues: the ones `publish` reads history pages for.
    refill: BTreeSet<WatchId>,
    /// The last subscription refilled, so a bounded round starts after it and every one gets its turn.
    refill_cursor: Option<WatchId>,
    /// Subscriptions with something to take: the driver flushes only these.
    pending: BTreeSet<WatchId>,
}

impl WatchHub {
    /// A hub with no watchers, for a store that has applied up to `applied`.
    ///
    /// # Panics
    /// If a limit in `config` is 0.
    pub fn new(config: WatchConfig, applied: u64) -> WatchHub {
        assert!(config.buffer_bytes >= 1, "watch buffer_bytes is 0");
        assert!(config.progress_interval_ms >= 1, "watch progress_interval_ms is 0");
        assert!(config.max_watchers >= 1, "watch max_watchers is 0");
        assert!(config.catch_up_bytes_per_publish >= 1, "watch catch_up_bytes_per_publish is 0");
        WatchHub {
            config,
            applied,
            now_ms: 0,
            next_id: 1,
            subscriptions: BTreeMap::new(),
            live: BTreeMap::new(),
            refill: BTreeSet::new(),
            refill_cursor: None,
            pending: BTreeSet::new(),
        }
    }

    /// Starts a watch of `filter` at `from` (inclusive), or at `read_index + 1` without one. `read_index` is an
    /// index the caller read linearizably (so a watch never starts in the past); `prev` is only remembered for
    /// the consumer ([`WatchHub::wants_prev`]). A backlog is read from `history` at once, one page, and then at
    /// each publish.
    ///
    /// # Errors
    /// [`SubscribeError`]: a start of 0, past `read_index + 1`, or below the history's window; or the hub is full.
    ///
    /// # Panics
    /// If `read_index` is past the last published applied index, `history` holds batches past it (publish after
    /// every apply, before subscribing), or the clock went back.
    pub fn subscribe(
        &mut self,
        filter: KeyFilter,
        prev: bool,
        from: Option<u64>,
        read_index: u64,
        history: &History,
        now_ms: u64,
    ) -> Result<WatchId, SubscribeError> {
        self.advance_clock(now_ms);
        check_history(history, self.applied);
        assert!(read_index <= self.applied, "watch read index {read_index} past the published {}", self.applied);
        let next = read_index + 1;
        let start = match from {
            Some(0) => return Err(SubscribeError::FromZero),
            Some(from) if from > next => return Err(SubscribeError::FromInFuture { from, next }),
            Some(from) => from,
            None => next,
        };
        if start < history.covered_from() {
            return Err(SubscribeError::Compacted { from: start, oldest: history.covered_from() });
        }
        if self.subscriptions.len() >= self.config.max_watchers {
            return Err(SubscribeError::TooManyWatchers { max: self.config.max_watchers });
        }
        let id = WatchId::new(self.next_id);
        self.next_id += 1;
        let skip = from.is_some() && self.config.faults.skip_first_after_resume;
        let position = if start > self.applied { Position::Live } else { Position::CatchingUp { next_index: start } };
        if position == Position::Live {
            self.live.entry(filter.clone()).or_default().insert(id);
        } else {
            self.refill.insert(id);
        }
        let subscription = Subscription::new(filter, prev, position, start, self.now_ms, skip);
        self.subscriptions.insert(id, subscription);
        if self.refill.contains(&id) {
            self.refill_one(id, history);
        }
        Ok(id)
    }

    /// Hands the history's new batches, up to `applied`, to live watchers, and reads a bounded amount of history
    /// for catching-up ones. Call it after every batch of applies (and snapshot installs), and regularly while
    /// watchers catch up: a drained catching-up watcher waits for the next publish.
    ///
    /// # Panics
    /// If `applied` went back, or `history` is not a history of a store at `applied` (a batch past it, or a
    /// window starting past `applied + 1`).
    pub fn publish(&mut self, history: &History, applied: u64) {
        assert!(applied >= self.applied, "watch publish at {applied} after {}", self.applied);
        check_history(history, applied);
        let first_new = self.applied + 1;
        self.applied = applied;
        if first_new < history.covered_from() {
            // A snapshot install (or a trim before this publish) skipped changes no live watcher has seen.
            let ids: Vec<WatchId> = self.live.values().flatten().copied().collect();
            for id in ids {
                self.fail(id, WatchError::Compacted { oldest: history.covered_from() });
            }
        } else {
            self.deliver_live(history, first_new);
        }
        self.refill_round(history);
    }

    /// Hands out `id`'s queued deliveries while fewer than `budget_bytes` were handed out (the one crossing the
    /// budget included; a budget of 0 takes nothing). A failed subscription hands out its error, whatever the
    /// budget, and is removed. An unknown id gets nothing.
    pub fn take(&mut self, id: WatchId, budget_bytes: usize) -> Vec<Delivery> {
        let Some(subscription) = self.subscriptions.get_mut(&id) else { return Vec::new() };
        if let Position::Failed(error) = subscription.position {
            self.unsubscribe(id);
            return vec![Delivery::Error(error)];
        }
        let deliveries = subscription.take(budget_bytes);
        if subscription.queue_is_empty() {
            self.pending.remove(&id);
            if matches!(subscription.position, Position::CatchingUp { .. }) {
                self.refill.insert(id);
            }
        }
        deliveries
    }

    /// Advances the hub's clock to `now_ms` and queues a progress notice, at the applied index, for every live
    /// watcher whose queue is empty and that nothing was queued for in a progress interval. O(watchers).
    ///
    /// # Panics
    /// If the clock went back.
    pub fn tick(&mut self, now_ms: u64) {
        self.advance_clock(now_ms);
        let interval = self.config.progress_interval_ms;
        for (id, subscription) in &mut self.subscriptions {
            let idle = now_ms.saturating_sub(subscription.quiet_since_ms) >= interval;
            if subscription.position == Position::Live && subscription.queue_is_empty() && idle {
                subscription.push_progress(self.applied, now_ms);
                self.pending.insert(*id);
            }
        }
    }

    /// Ends `id` at once, dropping whatever it had queued. Returns whether it existed.
    pub fn unsubscribe(&mut self, id: WatchId) -> bool {
        let Some(subscription) = self.subscriptions.remove(&id) else { return false };
        self.leave_position(id, &subscription);
        self.pending.remove(&id);
        true
    }

    /// How many subscriptions exist, failed ones whose error was not taken yet included.
    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }

    /// The applied index of the last publish.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Whether a publish would read history now: some catching-up watcher has drained its queue. A driver that
    /// publishes only after applies should also publish on its tick while this holds.
    pub fn has_catch_up_work(&self) -> bool {
        !self.refill.is_empty()
    }

    /// The subscriptions with something to take (deliveries or their final error), in id order.
    pub fn pending(&self) -> impl Iterator<Item = WatchId> + '_ {
        self.pending.iter().copied()
    }

    /// The keys `id` follows, if it exists.
    pub fn filter(&self, id: WatchId) -> Option<&KeyFilter> {
        self.subscriptions.get(&id).map(|subscription| &subscription.filter)
    }

    /// Whether `id`'s consumer asked for previous values, if it exists.
    pub fn wants_prev(&self, id: WatchId) -> Option<bool> {
        self.subscriptions.get(&id).map(|subscription| subscription.prev)
    }

    /// Checks every invariant of the hub and its subscriptions, in O(watchers + queued). For tests and the
    /// simulator.
    ///
    /// # Panics
    /// If one is broken, naming it.
    pub fn check_invariants(&self) {
        let count = self.subscriptions.len();
        assert!(count <= self.config.max_watchers, "{count} watchers over max {}", self.config.max_watchers);
        for (id, subscription) in &self.subscriptions {
            assert!(id.get() < self.next_id, "{id} not below the next id {}", self.next_id);
            let in_live = self.live.get(&subscription.filter).is_some_and(|ids| ids.contains(id));
            let failed = matches!(subscription.position, Position::Failed(_));
            let end = match subscription.position {
                Position::Live => self.applied + 1,
                Position::CatchingUp { next_index } => {
                    assert!(next_index <= self.applied, "{id} catches up at {next_index} past {}", self.applied);
                    next_index
                }
                Position::Failed(_) => 0,
            };
            assert_eq!(in_live, subscription.position == Position::Live, "{id} live membership");
            let catching_up = matches!(subscription.position, Position::CatchingUp { .. });
            let waits_for_refill = catching_up && subscription.queue_is_empty();
            assert_eq!(self.refill.contains(id), waits_for_refill, "{id} refill membership");
            let has_pending = failed || !subscription.queue_is_empty();
            assert_eq!(self.pending.contains(id), has_pending, "{id} pending membership");
            subscription.check(end, self.config.buffer_bytes);
        }
        let live: usize = self.live.values().map(BTreeSet::len).sum();
        assert!(self.live.values().all(|ids| !ids.is_empty()), "an empty live group is kept");
        assert!(live <= count, "{live} live members but {count} subscriptions");
        assert!(self.refill.iter().all(|id| self.subscriptions.contains_key(id)), "refill holds a removed id");
        assert!(self.pending.iter().all(|id| self.subscriptions.contains_key(id)), "pending holds a removed id");
    }

    /// Queues the batches from `first_new` on for live watchers, matching each batch once per filter, and drops
    /// the watchers this puts over their buffer.
    fn deliver_live(&mut self, history: &History, first_new: u64) {
        let mut slow = Vec::new();
        for (filter, ids) in &self.live {
            for batch in history.batches_from(first_new) {
                let bytes = batch.matching_bytes(filter);
                if bytes == 0 {
                    continue;
                }
                for id in ids {
                    let Some(subscription) = self.subscriptions.get_mut(id) else { unreachable!("live {id} missing") };
                    if subscription.is_over(self.config.buffer_bytes) {
                        continue;
                    }
                    subscription.push_batch(Arc::clone(batch), bytes, self.now_ms);
                    if subscription.is_over(self.config.buffer_bytes) {
                        slow.push(*id);
                    }
                    if !subscription.queue_is_empty() {
                        self.pending.insert(*id);
                    }
                }
            }
        }
        for id in slow {
            let resume_from = self.subscriptions.get(&id).map_or(0, Subscription::resume_from);
            self.fail(id, WatchError::SlowWatcher { resume_from });
        }
    }

    /// Reads history pages for the drained catching-up watchers, starting after the last one served, until
    /// `catch_up_bytes_per_publish` were scanned or each had its turn.
    fn refill_round(&mut self, history: &History) {
        let mut scanned = 0usize;
        let rounds = self.refill.len();
        for _ in 0..rounds {
            if scanned >= self.config.catch_up_bytes_per_publish {
                break;
            }
            let after = self.refill_cursor.map_or(Bound::Unbounded, Bound::Excluded);
            let next = self.refill.range((after, Bound::Unbounded)).next().or_else(|| self.refill.first());
            let Some(&id) = next else { break };
            self.refill_cursor = Some(id);
            scanned = scanned.saturating_add(self.refill_one(id, history));
        }
    }

    /// Reads one page of history for the drained catching-up `id` and queues its matching batches; the watcher
    /// turns live when the page reaches the end. Returns the bytes scanned.
    fn refill_one(&mut self, id: WatchId, history: &History) -> usize {
        let page_bytes = (self.config.buffer_bytes / 2).max(1);
        let Some(subscription) = self.subscriptions.get_mut(&id) else { unreachable!("refill of missing {id}") };
        let Position::CatchingUp { next_index } = subscription.position else {
            unreachable!("refill of {id} at {:?}", subscription.position)
        };
        assert!(subscription.queue_is_empty(), "refill of {id} with a non-empty queue");
        let page = match history.read(next_index, &subscription.filter, page_bytes) {
            Ok(page) => page,
            Err(compacted) => {
                self.fail(id, WatchError::Compacted { oldest: compacted.oldest });
                return 0;
            }
        };
        for batch in page.batches {
            let bytes = batch.matching_bytes(&subscription.filter);
            subscription.push_batch(batch, bytes, self.now_ms);
        }
        if page.more {
            subscription.position = Position::CatchingUp { next_index: page.next_from };
        } else {
            subscription.position = Position::Live;
            self.live.entry(subscription.filter.clone()).or_default().insert(id);
            self.refill.remove(&id);
        }
        if !subscription.queue_is_empty() {
            self.refill.remove(&id);
            self.pending.insert(id);
        }
        page.scanned_bytes
    }

    /// Ends `id` with `error`: its queue is dropped and the error waits for `take`.
    fn fail(&mut self, id: WatchId, error: WatchError) {
        let Some(mut subscription) = self.subscriptions.remove(&id) else { unreachable!("failing missing {id}") };
        self.leave_position(id, &subscription);
        subscription.fail(error);
        self.subscriptions.insert(id, subscription);
        self.pending.insert(id);
    }

    /// Removes `id` from the live group or the refill set its position puts it in.
    fn leave_position(&mut self, id: WatchId, subscription: &Subscription) {
        if let Some(ids) = self.live.get_mut(&subscription.filter) {
            ids.remove(&id);
            if ids.is_empty() {
                self.live.remove(&subscription.filter);
            }
        }
        self.refill.remove(&id);
    }

    /// Moves the clock to `now_ms`.
    fn advance_clock(&mut self, now_ms: u64) {
        assert!(now_ms >= self.now_ms, "watch clock went back from {} to {now_ms}", self.now_ms);
        self.now_ms = now_ms;
    }
}

/// Asserts that `history` belongs to a store that applied up to `applied`.
fn check_history(history: &History, applied: u64) {
    let covered_from = history.covered_from();
    assert!(covered_from <= applied + 1, "history covers from {covered_from}, past applied {applied} + 1");
    if let Some(last) = history.last_index() {
        assert!(last <= applied, "history holds batch {last} past applied {applied}: publish after every apply");
    }
}

#[cfg(test)]
mod tests;
