//! Matching events to writes: when each write was acknowledged, by log index, and the delivery latency of each
//! (watcher, event) pair.
//!
//! ```text
//!  writer: PUT ──200, X-Tally-Index: i──▶ AckTable::record(i, acked_us, measured)
//!  watcher: event i received at t ──▶ DeliveryMatcher::received(i, t)
//!             ack of i recorded ──▶ latency = max(0, t - acked_us), if the write is measured
//!             not yet            ──▶ pending (the node may send the event before the writer's task has read the
//!                                    answer); resolved at the watcher's next chunk, or at the end
//! ```
//!
//! The choice for an event that arrives before its write's acknowledgement: both instants are kept and the
//! latency is `max(0, received - acknowledged)`, which is 0 for such an event (it was delivered no later than
//! the write was confirmed). Such events are also counted apart (`early`).
//!
//! Times are microseconds since the run's start, from one monotonic clock shared by every task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most events a watcher keeps waiting for their acknowledgement; past it the oldest is given up
/// (counted as unmatched). Far above what a healthy run needs: an acknowledgement trails its event by the
/// writer's scheduling delay, a few milliseconds.
pub(super) const PENDING_MAX: usize = 1 << 16;

/// The bit of a slot that marks a measured write (sent inside the measured window).
const MEASURED_BIT: u64 = 1 << 63;

/// One write's acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ack {
    /// When the writer had the answer, in microseconds since the run's start.
    pub(super) acked_us: u64,
    /// Whether the write was sent inside the measured window (else: warmup).
    pub(super) measured: bool,
}

impl Ack {
    /// The slot's encoding: never 0 (0 is an empty slot).
    fn encode(self) -> u64 {
        assert!(self.acked_us < MEASURED_BIT - 1, "ack time {} µs out of range", self.acked_us);
        (self.acked_us + 1) | if self.measured { MEASURED_BIT } else { 0 }
    }

    /// The acknowledgement a slot holds, `None` for an empty slot.
    fn decode(slot: u64) -> Option<Ack> {
        (slot != 0).then(|| Ack { acked_us: (slot & !MEASURED_BIT) - 1, measured: slot & MEASURED_BIT != 0 })
    }
}

/// The acknowledgement of every write of the run, by log index, shared by the writers (which record) and the
/// watchers (which look up) without a lock.
///
/// Invariant: the slot of index `i` is `slots[i - after - 1]`; it is written at most once, by the writer
/// whose write got index `i`.
#[derive(Debug)]
pub(super) struct AckTable {
    /// The index every write of the run comes after (the commit index before the watchers opened).
    after: u64,
    /// One slot per index after `after`; 0 until acknowledged.
    slots: Box<[AtomicU64]>,
}

impl AckTable {
    /// A table for the indexes `after + 1 ..= after + capacity`.
    pub(super) fn new(after: u64, capacity: usize) -> AckTable {
        AckTable { after, slots: (0..capacity).map(|_| AtomicU64::new(0)).collect() }
    }

    /// The slot of `index`, if the table covers it.
    fn slot(&self, index: u64) -> Option<&AtomicU64> {
        let offset = index.checked_sub(self.after + 1)?;
        self.slots.get(usize::try_from(offset).ok()?)
    }

    /// Records that the write of `index` was acknowledged; `false` if the table does not cover `index` (the
    /// write cannot be matched and does not count).
    ///
    /// # Panics
    /// If `index` was recorded already: two writes never get one index.
    pub(super) fn record(&self, index: u64, ack: Ack) -> bool {
        let Some(slot) = self.slot(index) else { return false };
        let previous = slot.swap(ack.encode(), Ordering::Release);
        assert!(previous == 0, "index {index} acknowledged twice (before: {:?})", Ack::decode(previous));
        true
    }

    /// The acknowledgement of `index`, if recorded.
    pub(super) fn get(&self, index: u64) -> Option<Ack> {
        Ack::decode(self.slot(index)?.load(Ordering::Acquire))
    }
}

/// What one watcher matched; summed over watchers at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct MatchCounts {
    /// Events of measured writes (each has a latency).
    pub(super) delivered: u64,
    /// Of those, events received before their write's acknowledgement was recorded (latency 0).
    pub(super) early: u64,
    /// Events of warmup writes (not measured).
    pub(super) warmup: u64,
    /// Events at an index seen already on this watcher (after a resume): not counted again.
    pub(super) duplicates: u64,
    /// Events whose write has no acknowledgement (a failed or timed-out write, another client's write, an index
    /// outside the table), or given up past [`PENDING_MAX`].
    pub(super) unmatched: u64,
}

impl std::ops::AddAssign for MatchCounts {
    fn add_assign(&mut self, other: MatchCounts) {
        self.delivered += other.delivered;
        self.early += other.early;
        self.warmup += other.warmup;
        self.duplicates += other.duplicates;
        self.unmatched += other.unmatched;
    }
}

/// One watcher's matching of its events to acknowledgements.
///
/// Invariant: the indexes in `pending` increase (events arrive in index order, duplicates are dropped), each is
/// at most `highest`, and `pending.len() <= PENDING_MAX`.
#[derive(Debug, Default)]
pub(super) struct DeliveryMatcher {
    /// The highest change index received: a change at or below it is a duplicate.
    highest: u64,
    /// Events received before their acknowledgement: `(index, received_us)`.
    pending: VecDeque<(u64, u64)>,
    /// The counts so far.
    counts: MatchCounts,
}

impl DeliveryMatcher {
    /// The highest change index received.
    pub(super) fn highest(&self) -> u64 {
        self.highest
    }

    /// The counts so far.
    pub(super) fn counts(&self) -> MatchCounts {
        self.counts
    }

    /// Event `index` arrived at `received_us`; a latency for `record` if it matches a measured write now.
    pub(super) fn received(&mut self, acks: &AckTable, index: u64, received_us: u64, record: impl FnMut(u64)) {
        if index <= self.highest {
            // Every event of a put-only workload is alone in its index group, so a repeated index is a resent
            // event, not a second change of the same entry.
            self.counts.duplicates += 1;
            return;
        }
        self.highest = index;
        match acks.get(index) {
            Some(ack) => self.matched(ack, received_us, record),
            None => {
                if self.pending.len() == PENDING_MAX {
                    self.pending.pop_front();
                    self.counts.unmatched += 1;
                }
                self.pending.push_back((index, received_us));
            }
        }
    }

    /// Matches the pending events whose acknowledgement has been recorded since; the others wait (or, if
    /// `last`, count as unmatched: no acknowledgement is coming any more).
    pub(super) fn resolve(&mut self, acks: &AckTable, last: bool, mut record: impl FnMut(u64)) {
        let mut waiting = 0;
        for position in 0..self.pending.len() {
            let (index, received_us) = self.pending[position];
            match acks.get(index) {
                Some(ack) => self.matched(ack, received_us, &mut record),
                None if last => self.counts.unmatched += 1,
                None => {
                    self.pending[waiting] = (index, received_us);
                    waiting += 1;
                }
            }
        }
        self.pending.truncate(waiting);
    }

    /// Counts an event whose acknowledgement is known, and records its latency if the write is measured.
    fn matched(&mut self, ack: Ack, received_us: u64, mut record: impl FnMut(u64)) {
        if ack.measured {
            self.counts.delivered += 1;
            self.counts.early += u64::from(received_us < ack.acked_us);
            record(received_us.saturating_sub(ack.acked_us));
        } else {
            self.counts.warmup += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_round_trip_and_empty_slots_read_as_none() {
        for ack in [
            Ack { acked_us: 0, measured: false },
            Ack { acked_us: 0, measured: true },
            Ack { acked_us: 123_456_789, measured: true },
        ] {
            assert_ne!(ack.encode(), 0);
            assert_eq!(Ack::decode(ack.encode()), Some(ack));
        }
        assert_eq!(Ack::decode(0), None);
    }

    #[test]
    fn the_table_covers_exactly_its_indexes() {
        let table = AckTable::new(100, 10);
        let ack = Ack { acked_us: 5, measured: true };
        assert!(!table.record(100, ack), "the index before the run is not a write of it");
        assert!(!table.record(111, ack), "past the capacity");
        assert!(table.record(101, ack));
        assert!(table.record(110, ack));
        assert_eq!((table.get(101), table.get(102), table.get(110)), (Some(ack), None, Some(ack)));
        assert_eq!((table.get(0), table.get(u64::MAX)), (None, None));
    }

    #[test]
    #[should_panic(expected = "acknowledged twice")]
    fn one_index_is_never_acknowledged_twice() {
        let table = AckTable::new(0, 4);
        table.record(1, Ack { acked_us: 1, measured: true });
        table.record(1, Ack { acked_us: 2, measured: true });
    }

    #[test]
    fn latency_is_received_minus_acknowledged_and_never_negative() {
        // Phase 1: acknowledged before the event came: the difference.
        let table = AckTable::new(0, 16);
        let mut matcher = DeliveryMatcher::default();
        let mut latencies = Vec::new();
        table.record(1, Ack { acked_us: 1_000, measured: true });
        matcher.received(&table, 1, 1_700, |l| latencies.push(l));
        assert_eq!(latencies, [700]);

        // Phase 2: the event came first; its acknowledgement is recorded later, with a later instant: 0.
        matcher.received(&table, 2, 2_000, |l| latencies.push(l));
        matcher.resolve(&table, false, |l| latencies.push(l));
        assert_eq!(latencies, [700], "still waiting for the acknowledgement");
        table.record(2, Ack { acked_us: 2_300, measured: true });
        matcher.resolve(&table, false, |l| latencies.push(l));
        assert_eq!(latencies, [700, 0]);
        assert_eq!(matcher.counts().early, 1);

        // Phase 3: a warmup write counts apart, and an index seen before is a duplicate.
        table.record(3, Ack { acked_us: 2_500, measured: false });
        matcher.received(&table, 3, 2_600, |l| latencies.push(l));
        matcher.received(&table, 3, 2_700, |l| latencies.push(l));
        matcher.received(&table, 2, 2_800, |l| latencies.push(l));
        assert_eq!(latencies, [700, 0]);
        let counts = matcher.counts();
        assert_eq!((counts.delivered, counts.warmup, counts.duplicates), (2, 1, 2));

        // Phase 4: an event never acknowledged (another client's write) is unmatched at the end.
        matcher.received(&table, 5, 3_000, |l| latencies.push(l));
        matcher.resolve(&table, true, |l| latencies.push(l));
        assert_eq!((matcher.counts().unmatched, matcher.pending.len(), matcher.highest()), (1, 0, 5));
    }

    #[test]
    fn pending_keeps_its_order_while_resolving_some() {
        let table = AckTable::new(0, 16);
        let mut matcher = DeliveryMatcher::default();
        let mut latencies = Vec::new();
        for index in 1..=5 {
            matcher.received(&table, index, index * 10, |l| latencies.push(l));
        }
        table.record(2, Ack { acked_us: 0, measured: true });
        table.record(4, Ack { acked_us: 1, measured: true });
        matcher.resolve(&table, false, |l| latencies.push(l));
        assert_eq!(latencies, [20, 39]);
        assert_eq!(matcher.pending.iter().map(|&(index, _)| index).collect::<Vec<_>>(), [1, 3, 5]);
    }

    #[test]
    fn pending_is_bounded() {
        let table = AckTable::new(0, 4);
        let mut matcher = DeliveryMatcher::default();
        for index in 1..=(PENDING_MAX as u64 + 3) {
            matcher.received(&table, index, 0, |_| {});
        }
        assert_eq!((matcher.pending.len(), matcher.counts().unmatched), (PENDING_MAX, 3));
    }
}
