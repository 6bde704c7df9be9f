//! One watcher's state inside the [`WatchHub`](super::WatchHub): where it is in the log, and its bounded queue.

use std::collections::VecDeque;
use std::sync::Arc;

use tally_kv::{ChangeBatch, KeyFilter};

use super::delivery::{Delivery, WatchError};

/// The bytes a queued progress notice counts for against the buffer: small, but not free, so even a watcher
/// that only ever gets progress notices has a bounded queue.
pub(super) const PROGRESS_BYTES: usize = 16;

/// How far a subscription has examined the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Position {
    /// Everything up to the hub's applied index was examined; new batches are matched as they are published.
    Live,
    /// Everything below `next_index` (which is `<=` the hub's applied index) was examined; the rest is read from
    /// the history a page at a time, whenever the queue is empty.
    CatchingUp {
        /// The first index not examined yet.
        next_index: u64,
    },
    /// Ended: the queue was dropped, and `take` hands out this error and removes the subscription.
    Failed(WatchError),
}

/// One queued delivery and the bytes it counts for.
#[derive(Debug, Clone)]
enum Queued {
    /// A batch with at least one matching change, and the matching changes' bytes.
    Batch(Arc<ChangeBatch>, usize),
    /// A progress notice: everything up to this index was delivered.
    Progress(u64),
}

impl Queued {
    /// The log index this delivery speaks for.
    fn index(&self) -> u64 {
        match self {
            Queued::Batch(batch, _) => batch.index,
            Queued::Progress(index) => *index,
        }
    }

    /// The bytes it counts for against the buffer.
    fn bytes(&self) -> usize {
        match self {
            Queued::Batch(_, bytes) => *bytes,
            Queued::Progress(_) => PROGRESS_BYTES,
        }
    }
}

/// One watcher.
///
/// Invariants (checked by [`Subscription::check`]): `queue_bytes` is the sum of the queue's bytes; queued
/// indexes never decrease, a batch's is above everything before it, and all are above `delivered_through` and
/// below the position; a progress notice is only ever first in the queue (it is queued only into an empty one);
/// a failed subscription's queue is empty; the queue is within the buffer unless it holds one delivery.
#[derive(Debug)]
pub(super) struct Subscription {
    /// The keys it follows.
    pub(super) filter: KeyFilter,
    /// Whether its consumer sends previous values; the hub keeps it only for the consumer's encoder.
    pub(super) prev: bool,
    /// How far the log was examined.
    pub(super) position: Position,
    /// Deliveries not taken yet, oldest first.
    queue: VecDeque<Queued>,
    /// The sum of the queue's bytes, compared with the buffer on every push.
    queue_bytes: usize,
    /// The highest index handed out by `take` (a batch's or a progress notice's), or the start index - 1: a slow
    /// watcher resumes right after it.
    delivered_through: u64,
    /// When something was last queued: a progress notice needs the queue empty and this long ago.
    pub(super) quiet_since_ms: u64,
    /// The test fault `skip_first_after_resume`: drop the next matching batch instead of queueing it.
    skip_next: bool,
}

impl Subscription {
    /// A subscription whose first index to deliver is `start`.
    pub(super) fn new(
        filter: KeyFilter,
        prev: bool,
        position: Position,
        start: u64,
        now_ms: u64,
        skip_next: bool,
    ) -> Subscription {
        assert!(start >= 1, "subscription starts at index 0");
        let delivered_through = start - 1;
        let queue = VecDeque::new();
        Subscription {
            filter,
            prev,
            position,
            queue,
            queue_bytes: 0,
            delivered_through,
            quiet_since_ms: now_ms,
            skip_next,
        }
    }

    /// Whether nothing waits to be taken (a failed subscription's error aside).
    pub(super) fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the queue is over `buffer_bytes`, judged without its newest delivery: a batch larger than the
    /// buffer still gets in behind a queue within the buffer (and through on its own), and the watcher is slow
    /// only if it has not taken what was queued before it when the next delivery comes.
    pub(super) fn is_over(&self, buffer_bytes: usize) -> bool {
        let newest = self.queue.back().map_or(0, Queued::bytes);
        self.queue.len() > 1 && self.queue_bytes - newest > buffer_bytes
    }

    /// Where a watcher that lost this subscription resumes: right after the last index delivered.
    pub(super) fn resume_from(&self) -> u64 {
        self.delivered_through + 1
    }

    /// Queues a batch whose matching changes count `bytes` (unless the fault drops it).
    pub(super) fn push_batch(&mut self, batch: Arc<ChangeBatch>, bytes: usize, now_ms: u64) {
        assert!(bytes > 0, "batch {} queued with no matching bytes", batch.index);
        if std::mem::take(&mut self.skip_next) {
            return;
        }
        // A progress notice not yet taken says less than this batch will (everything up to a higher index was
        // delivered): it is dropped rather than counted against the buffer in front of the batch.
        if matches!(self.queue.front(), Some(Queued::Progress(_))) {
            let dropped = self.queue.pop_front().map_or(0, |queued| queued.bytes());
            self.queue_bytes -= dropped;
        }
        self.push(Queued::Batch(batch, bytes), now_ms);
    }

    /// Queues a progress notice for `index`.
    pub(super) fn push_progress(&mut self, index: u64, now_ms: u64) {
        self.push(Queued::Progress(index), now_ms);
    }

    /// Ends the subscription with `error`, dropping its queue.
    pub(super) fn fail(&mut self, error: WatchError) {
        self.queue.clear();
        self.queue_bytes = 0;
        self.position = Position::Failed(error);
    }

    /// Hands out queued deliveries while fewer than `budget_bytes` were handed out (the one that crosses the
    /// budget included, so any budget above 0 makes progress).
    pub(super) fn take(&mut self, budget_bytes: usize) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        let mut taken = 0usize;
        while taken < budget_bytes {
            let Some(queued) = self.queue.pop_front() else { break };
            let bytes = queued.bytes();
            assert!(
                bytes <= self.queue_bytes,
                "queue holds {} bytes, less than its {bytes}-byte item",
                self.queue_bytes
            );
            self.queue_bytes -= bytes;
            taken = taken.saturating_add(bytes);
            self.delivered_through = self.delivered_through.max(queued.index());
            deliveries.push(match queued {
                Queued::Batch(changes, _) => Delivery::Changes { index: changes.index, changes },
                Queued::Progress(index) => Delivery::Progress(index),
            });
        }
        deliveries
    }

    /// Checks the invariants; `end` is the first index the position has not examined.
    ///
    /// # Panics
    /// If one is broken, naming it.
    pub(super) fn check(&self, end: u64, buffer_bytes: usize) {
        let bytes: usize = self.queue.iter().map(Queued::bytes).sum();
        assert_eq!(self.queue_bytes, bytes, "queue_bytes {} but the queue holds {bytes}", self.queue_bytes);
        let mut last = self.delivered_through;
        for (position, queued) in self.queue.iter().enumerate() {
            let index = queued.index();
            let in_order = match queued {
                Queued::Batch(..) => index > last,
                Queued::Progress(_) => index >= last,
            };
            assert!(in_order, "queued index {index} at {position} after {last}");
            let is_progress = matches!(queued, Queued::Progress(_));
            assert!(!is_progress || position == 0, "progress {index} queued behind {position} deliveries");
            assert!(index < end, "queued index {index} not below the examined end {end}");
            last = index;
        }
        if matches!(self.position, Position::Failed(_)) {
            assert!(self.queue.is_empty(), "failed subscription keeps {} deliveries", self.queue.len());
        }
        assert!(!self.is_over(buffer_bytes), "queue of {} bytes over the {buffer_bytes}-byte buffer", self.queue_bytes);
    }

    /// Queues one delivery.
    fn push(&mut self, queued: Queued, now_ms: u64) {
        self.queue_bytes = self.queue_bytes.saturating_add(queued.bytes());
        self.queue.push_back(queued);
        self.quiet_since_ms = now_ms;
    }
}
