//! Watch exactly-once: the contract of `tally_node::WatchHub` with a watcher, checked against the one committed
//! order of Raft §5.3. Every watcher, across all its connections (it reconnects to any node, and resumes where
//! it was), must receive exactly the committed changes matching its filter, from where it started: in index
//! order, each entry whole, with no gap and no duplicate, every field equal to the reference's change (key,
//! value, kind, create and modify index, version, previous state).
//!
//! The committed changes come from the reference execution of the log (the serializability checker's reference
//! `KvStore`, fed the original committed commands in index order), handed over as it passes each index
//! ([`WatchExactlyOnce::advance`]). Watchers usually run ahead of it (a fast node delivers before the slowest
//! node applied), so their events wait in a queue per watcher and are verified, in arrival order, once the
//! reference has reached the index each one speaks for.
//!
//! ```text
//!  watcher w: Subscribed(from) ─ Changes(i) ─ Progress(p) ─ Slow(resume_from) ─ Subscribed(resume) ─ Changes(j) …
//!                  │                │              │                │                                   │
//!      position := from    no matching change in [position, i) (gap), i >= position (duplicate, reorder),
//!      (a fresh start:     the entry's changes equal the reference's; position := i + 1
//!       never below        progress p: no matching change in [position, p]; position := max(position, p + 1)
//!       what it saw)       slow: resume_from == position; compacted: position < oldest
//! ```
//!
//! A position carries across resumes: a resume must start exactly there (so a hub that drops or repeats a
//! change after a resume shows as a gap or duplicate). A `Compacted` (an error, or a refused subscription) is
//! legal only if the position really was below the node's oldest index; the watcher then starts afresh after a
//! linearizable read, whose index may not be older than anything the watcher saw before (a watch never starts
//! in the past: reported as `real_time_order`, the property it breaks). At the end of the run every watcher must
//! have caught up: no matching change up to the final applied index left undelivered.
//!
//! Memory: the reference's changes are kept only from the lowest position any watcher can still need.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tally_kv::{Change, ChangeBatch, KeyFilter};

use super::{Check, Violation};
use crate::show::readable;

/// The checker's name in violations.
const NAME: &str = "watch_exactly_once";

/// What a watcher saw, in the order it saw it.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// A subscription started at `from` (inclusive): a resume of the watcher's position, or (`fresh`) a new
    /// watch right after a linearizable read at `from - 1`.
    Subscribed {
        /// The first index the subscription delivers.
        from: u64,
        /// A new watch after a read, rather than a resume.
        fresh: bool,
    },
    /// The node refused to subscribe at `from` (a resume, or `fresh` after a read at `from - 1`): its history
    /// starts at `oldest`.
    Refused {
        /// The start asked for.
        from: u64,
        /// A new watch after a read, rather than a resume.
        fresh: bool,
        /// The oldest index the node's history covers, as it reported.
        oldest: u64,
    },
    /// The changes of one entry (all of them: the watcher picks those matching its filter).
    Changes(Arc<ChangeBatch>),
    /// A progress notice: every matching change up to this index was delivered.
    Progress(u64),
    /// The subscription ended as too slow; the watcher resumes at `resume_from`.
    Slow {
        /// Where the hub says the watcher resumes without loss or repeat.
        resume_from: u64,
    },
    /// The subscription ended because the history no longer covers its next index.
    Compacted {
        /// The oldest index the node's history covers, as it reported.
        oldest: u64,
    },
}

impl WatchEvent {
    /// The reference index this event can be verified at (0: no reference needed).
    fn needs_reference_at(&self) -> u64 {
        match self {
            WatchEvent::Changes(batch) => batch.index,
            WatchEvent::Progress(index) => *index,
            _ => 0,
        }
    }
}

/// How often each kind of event was verified, over all watchers (for the trace and the sweep's report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchCounts {
    /// Entries delivered.
    pub batches: u64,
    /// Progress notices.
    pub progress: u64,
    /// Fresh starts after a read.
    pub fresh: u64,
    /// Resumes at the watcher's position.
    pub resumes: u64,
    /// Compacted errors and refusals.
    pub compacted: u64,
    /// Slow watcher errors.
    pub slow: u64,
}

impl std::ops::Add for WatchCounts {
    type Output = WatchCounts;

    /// The sum of two counts.
    fn add(self, other: WatchCounts) -> WatchCounts {
        WatchCounts {
            batches: self.batches + other.batches,
            progress: self.progress + other.progress,
            fresh: self.fresh + other.fresh,
            resumes: self.resumes + other.resumes,
            compacted: self.compacted + other.compacted,
            slow: self.slow + other.slow,
        }
    }
}

/// What a verified event adds to the counts.
type Counted = fn(&mut WatchCounts);

/// Where a watcher stands after its verified events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// Every matching change in `[start, next)` was delivered exactly once; the next delivery must be `next` or a
    /// later index with nothing matching in between.
    At {
        /// The first index not delivered yet.
        next: u64,
    },
    /// Not started, or ended by a compaction: the next subscription must be fresh, at `floor` or later (everything
    /// below `floor` was committed before the watcher's read began).
    Fresh {
        /// The lowest start a linearizable read allows.
        floor: u64,
    },
}

impl Position {
    /// The lowest index whose changes the watcher may still need.
    fn floor(self) -> u64 {
        match self {
            Position::At { next } => next,
            Position::Fresh { floor } => floor,
        }
    }
}

/// One watcher as the checker follows it.
#[derive(Debug)]
struct WatcherLog {
    /// The keys it follows.
    filter: KeyFilter,
    /// Where its verified events left it.
    position: Position,
    /// Events not verified yet, oldest first, each with the reference's next index when it was recorded (a read
    /// issued after it returns at least that index minus one).
    unverified: VecDeque<(WatchEvent, u64)>,
}

/// The committed changes and every watcher's events waiting for them.
///
/// Invariant: `changes` holds every committed batch with index in `[kept_from, reference_applied]`, and
/// `kept_from` is at most every watcher's position floor.
#[derive(Debug)]
pub struct WatchExactlyOnce {
    /// The watchers, by number.
    watchers: Vec<WatcherLog>,
    /// The reference's changes by index, from `kept_from` on.
    changes: BTreeMap<u64, Arc<ChangeBatch>>,
    /// The index the reference has applied: `changes` is complete up to it.
    reference_applied: u64,
    /// Changes below this index were dropped (no watcher can need them).
    kept_from: u64,
    /// Events verified.
    counts: WatchCounts,
}

impl WatchExactlyOnce {
    /// A checker for watchers following `filters` (watcher `w` follows `filters[w]`); none has started yet.
    pub fn new(filters: Vec<KeyFilter>) -> WatchExactlyOnce {
        let watchers = filters
            .into_iter()
            .map(|filter| WatcherLog { filter, position: Position::Fresh { floor: 1 }, unverified: VecDeque::new() })
            .collect();
        WatchExactlyOnce {
            watchers,
            changes: BTreeMap::new(),
            reference_applied: 0,
            kept_from: 1,
            counts: WatchCounts::default(),
        }
    }

    /// The events verified so far.
    pub fn counts(&self) -> WatchCounts {
        self.counts
    }

    /// Records what watcher `watcher` saw, and verifies what the reference already allows.
    ///
    /// # Errors
    /// A broken contract (see the module documentation).
    pub fn record(&mut self, watcher: usize, event: WatchEvent) -> Check {
        let reference_next = self.reference_applied + 1;
        self.watchers[watcher].unverified.push_back((event, reference_next));
        self.verify(watcher)
    }

    /// The reference applied up to `applied`; `batches` are the changes of the entries it applied since the
    /// last call, in index order. Verifies every watcher's events up to there and drops the changes no watcher
    /// can need any more.
    ///
    /// # Errors
    /// A broken contract (see the module documentation).
    ///
    /// # Panics
    /// If `applied` went back, or a batch is not in `(previous applied, applied]` in increasing order.
    pub fn advance(&mut self, batches: impl IntoIterator<Item = Arc<ChangeBatch>>, applied: u64) -> Check {
        assert!(applied >= self.reference_applied, "reference went back from {} to {applied}", self.reference_applied);
        let mut last = self.reference_applied;
        for batch in batches {
            assert!(batch.index > last && batch.index <= applied, "batch {} outside ({last}, {applied}]", batch.index);
            last = batch.index;
            self.changes.insert(batch.index, batch);
        }
        self.reference_applied = applied;
        for watcher in 0..self.watchers.len() {
            self.verify(watcher)?;
        }
        self.drop_unneeded();
        Ok(())
    }

    /// What keeps `watcher` from having caught up with `applied`, if anything: all its events must be verified
    /// (so the reference must have reached `applied`), and every matching change up to `applied` delivered.
    pub fn lag(&self, watcher: usize, applied: u64) -> Option<String> {
        self.first_undelivered(watcher, applied)
    }

    /// End of run, once the reference applied every committed entry: every watcher is connected (`connected[w]`
    /// for watcher `w`), has all its events verified, and was handed every matching change up to `applied` (the
    /// final applied index).
    ///
    /// # Errors
    /// A watcher is not connected or has not caught up.
    pub fn finish(&self, connected: &[bool], applied: u64) -> Check {
        assert_eq!(connected.len(), self.watchers.len(), "one connection state per watcher");
        for (watcher, &is_connected) in connected.iter().enumerate() {
            if !is_connected {
                let what = "it is not connected at the end of the run".to_string();
                return Err(self.broken(watcher, NAME, what));
            }
            if let Some(missing) = self.first_undelivered(watcher, applied) {
                let what = format!("it has not caught up with the final applied index {applied}: {missing}");
                return Err(self.broken(watcher, NAME, what));
            }
        }
        Ok(())
    }

    /// What keeps `watcher` from having caught up with `applied`, if anything.
    fn first_undelivered(&self, watcher: usize, applied: u64) -> Option<String> {
        let log = &self.watchers[watcher];
        if let Some((event, _)) = log.unverified.front() {
            let event = readable(&format!("{event:?}"));
            return Some(format!("{event} is not verified (the reference is at {})", self.reference_applied));
        }
        if self.reference_applied < applied {
            return Some(format!("the reference is at {}", self.reference_applied));
        }
        let Position::At { next } = log.position else { return Some("it is not subscribed".to_string()) };
        self.first_matching(&log.filter, next, applied)
            .map(|index| format!("the change at index {index} was never delivered (its position is {next})"))
    }

    /// Verifies `watcher`'s events in order while the reference allows.
    fn verify(&mut self, watcher: usize) -> Check {
        while let Some((event, reference_next)) = self.watchers[watcher].unverified.front() {
            if event.needs_reference_at() > self.reference_applied {
                return Ok(());
            }
            let (position, counted) = self.step(watcher, event, *reference_next)?;
            counted(&mut self.counts);
            let log = &mut self.watchers[watcher];
            log.position = position;
            log.unverified.pop_front();
        }
        Ok(())
    }

    /// Verifies one event of `watcher` against its position (the reference has reached the event's index);
    /// returns the position after it and what to count. `reference_next` is the reference's next index when the
    /// event was recorded: a read issued after it returns at least `reference_next - 1`.
    fn step(&self, watcher: usize, event: &WatchEvent, reference_next: u64) -> Result<(Position, Counted), Violation> {
        let position = self.watchers[watcher].position;
        match (event, position) {
            (&WatchEvent::Subscribed { from, fresh }, _) => self.check_start(watcher, from, fresh, None),
            (&WatchEvent::Refused { from, fresh, oldest }, _) => {
                self.check_start(watcher, from, fresh, Some(oldest))?;
                Ok((Position::Fresh { floor: from.max(reference_next) }, |c| c.compacted += 1))
            }
            (event, Position::At { next }) => self.check_delivery(watcher, event, next, reference_next),
            (event, Position::Fresh { .. }) => unreachable!("watcher {watcher}: {event:?} outside a subscription"),
        }
    }

    /// Checks a subscription of `watcher` starting at `from` (a resume, or `fresh` after a read at `from - 1`),
    /// refused as compacted below `refused_below` if that is set; returns the position once started.
    fn check_start(
        &self,
        watcher: usize,
        from: u64,
        fresh: bool,
        refused_below: Option<u64>,
    ) -> Result<(Position, Counted), Violation> {
        let position = self.watchers[watcher].position;
        assert!(
            fresh || position == Position::At { next: from },
            "watcher {watcher} resumed at {from} from {position:?}: the simulator resumes at the position"
        );
        let floor = position.floor();
        if fresh && from < floor {
            let what = format!(
                "a new watch after a linearizable read at {} starts in the past: index {} was committed (and seen) \
                 before the read began",
                from - 1,
                floor - 1
            );
            return Err(self.broken(watcher, "real_time_order", what));
        }
        if let Some(oldest) = refused_below.filter(|&oldest| from >= oldest) {
            let what = format!("subscribing at {from} was refused as compacted, but the history starts at {oldest}");
            return Err(self.broken(watcher, NAME, what));
        }
        let counted: Counted = if fresh { |c| c.fresh += 1 } else { |c| c.resumes += 1 };
        Ok((Position::At { next: from }, counted))
    }

    /// Checks what a subscription of `watcher` at position `next` handed out: an entry, a progress notice, or the
    /// error that ended it; returns the position after it.
    fn check_delivery(
        &self,
        watcher: usize,
        event: &WatchEvent,
        next: u64,
        reference_next: u64,
    ) -> Result<(Position, Counted), Violation> {
        let filter = &self.watchers[watcher].filter;
        let what = match *event {
            WatchEvent::Changes(ref batch) => match self.check_batch(filter, batch, next) {
                Ok(()) => return Ok((Position::At { next: batch.index + 1 }, |c| c.batches += 1)),
                Err(what) => what,
            },
            WatchEvent::Progress(index) => match self.first_matching(filter, next, index) {
                None => return Ok((Position::At { next: next.max(index + 1) }, |c| c.progress += 1)),
                Some(missing) => format!(
                    "progress {index} promises every change up to it, but the change at {missing} was never \
                     delivered (position {next})"
                ),
            },
            WatchEvent::Slow { resume_from } if resume_from == next => {
                return Ok((Position::At { next }, |c| c.slow += 1));
            }
            WatchEvent::Slow { resume_from } => format!(
                "cut off as slow with resume_from {resume_from}, but everything before {next} (and nothing after) \
                 was delivered"
            ),
            WatchEvent::Compacted { oldest } if next < oldest => {
                return Ok((Position::Fresh { floor: next.max(reference_next) }, |c| c.compacted += 1));
            }
            WatchEvent::Compacted { oldest } => {
                format!("cut off as compacted (history from {oldest}), but its next index {next} is still covered")
            }
            WatchEvent::Subscribed { .. } | WatchEvent::Refused { .. } => unreachable!("a start is not a delivery"),
        };
        Err(self.broken(watcher, NAME, what))
    }

    /// The violation of `checker` by `watcher`, described by `what`.
    fn broken(&self, watcher: usize, checker: &'static str, what: String) -> Violation {
        let filter = readable(&format!("{:?}", self.watchers[watcher].filter));
        Violation { checker, detail: format!("watcher {watcher} ({filter}): {what}") }
    }

    /// Checks an entry delivered to a watcher of `filter` at position `next` against the reference; `Err`
    /// describes the problem.
    fn check_batch(&self, filter: &KeyFilter, batch: &ChangeBatch, next: u64) -> Result<(), String> {
        let index = batch.index;
        if index < next {
            return Err(format!(
                "entry {index} delivered again or out of order: everything before {next} was delivered"
            ));
        }
        if let Some(missing) = self.first_matching(filter, next, index - 1) {
            return Err(format!("entry {index} delivered, but the change at {missing} before it never was (gap)"));
        }
        let Some(committed) = self.changes.get(&index) else {
            return Err(format!("entry {index} delivered, but the committed entry {index} changed no key"));
        };
        let delivered: Vec<&Change> = batch.matching(filter).collect();
        let expected: Vec<&Change> = committed.matching(filter).collect();
        if expected.is_empty() {
            return Err(format!("entry {index} delivered, but none of its committed changes matches the filter"));
        }
        if delivered != expected {
            return Err(readable(&format!(
                "entry {index} delivered the changes {delivered:?}, but the committed ones are {expected:?}"
            )));
        }
        if batch != committed.as_ref() {
            return Err(readable(&format!("entry {index} delivered as {batch:?}, but committed as {committed:?}")));
        }
        Ok(())
    }

    /// The index of the first committed change matching `filter` in `[from, to]`, if any.
    fn first_matching(&self, filter: &KeyFilter, from: u64, to: u64) -> Option<u64> {
        if from > to {
            return None;
        }
        assert!(from >= self.kept_from, "changes from {from} needed, but only those from {} are kept", self.kept_from);
        assert!(to <= self.reference_applied, "changes up to {to} needed, reference at {}", self.reference_applied);
        self.changes.range(from..=to).find(|(_, batch)| batch.matches(filter)).map(|(&index, _)| index)
    }

    /// Drops the changes below every watcher's floor.
    fn drop_unneeded(&mut self) {
        let floor = self.watchers.iter().map(|log| log.position.floor()).min().unwrap_or(u64::MAX);
        let floor = floor.min(self.reference_applied + 1);
        while let Some(entry) = self.changes.first_entry()
            && *entry.key() < floor
        {
            entry.remove();
        }
        self.kept_from = self.kept_from.max(floor);
    }
}

#[cfg(test)]
mod tests;
