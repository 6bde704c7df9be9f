use std::collections::BTreeMap;

use proptest::prelude::*;
use tally_kv::{Change, ChangeBatch, HistoryLimits, Versioned};

use super::*;

/// A store's key states, its history and every batch ever made (the truth the history trims away from).
#[derive(Clone)]
struct Log {
    /// Each live key's state.
    keys: BTreeMap<Vec<u8>, Versioned>,
    /// The last entry applied.
    applied: u64,
    /// The bounded history, as the store keeps it.
    history: History,
    /// Every batch, never trimmed.
    all: BTreeMap<u64, Arc<ChangeBatch>>,
}

impl Log {
    fn new(limits: HistoryLimits) -> Log {
        Log { keys: BTreeMap::new(), applied: 0, history: History::new(limits), all: BTreeMap::new() }
    }

    /// Applies one entry: per edit, a put of `Some(value)` or a delete (skipped if the key is absent; so is a
    /// key's second edit, as an entry changes a key at most once). Returns the entry's index.
    fn write(&mut self, edits: &[(&str, Option<&str>)]) -> u64 {
        self.applied += 1;
        let index = self.applied;
        let mut changes: Vec<Change> = Vec::new();
        for &(key, value) in edits {
            let key = key.as_bytes();
            if changes.iter().any(|change| change.key == key) {
                continue;
            }
            let prev = self.keys.get(key).cloned();
            match (value, prev) {
                (None, None) => {}
                (None, Some(prev)) => {
                    self.keys.remove(key);
                    changes.push(Change::delete(key, index, prev));
                }
                (Some(value), prev) => {
                    let value = value.as_bytes().to_vec();
                    let current = match &prev {
                        Some(prev) => {
                            Versioned { value, modify_index: index, version: prev.version + 1, ..prev.clone() }
                        }
                        None => Versioned { value, create_index: index, modify_index: index, version: 1 },
                    };
                    self.keys.insert(key.to_vec(), current.clone());
                    changes.push(Change::put(key, &current, prev));
                }
            }
        }
        if !changes.is_empty() {
            let batch = ChangeBatch { index, changes };
            self.all.insert(index, Arc::new(batch.clone()));
            self.history.append(batch);
        }
        index
    }

    /// Puts `value` under each of `keys` in one entry.
    fn put(&mut self, keys: &[&str], value: &str) -> u64 {
        let edits: Vec<_> = keys.iter().map(|key| (*key, Some(value))).collect();
        self.write(&edits)
    }

    /// Applies `count` entries without key changes.
    fn skip(&mut self, count: u64) {
        self.applied += count;
    }

    /// Publishes the log's current state to `hub`.
    fn publish(&self, hub: &mut WatchHub) {
        hub.publish(&self.history, self.applied);
    }
}

fn config(buffer_bytes: usize) -> WatchConfig {
    WatchConfig { buffer_bytes, ..WatchConfig::default() }
}

fn prefix(prefix: &str) -> KeyFilter {
    KeyFilter::Prefix(prefix.as_bytes().to_vec())
}

/// Deliveries in short: `c3` changes at 3, `p5` progress 5, `slow4` resume from 4, `compacted7` oldest 7.
fn show(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|delivery| match delivery {
            Delivery::Changes { index, changes } => {
                assert_eq!(*index, changes.index, "a delivery's index is its batch's");
                format!("c{index}")
            }
            Delivery::Progress(index) => format!("p{index}"),
            Delivery::Error(WatchError::SlowWatcher { resume_from }) => format!("slow{resume_from}"),
            Delivery::Error(WatchError::Compacted { oldest }) => format!("compacted{oldest}"),
        })
        .collect()
}

/// Takes everything `id` has, publishing whenever catch-up work waits, until nothing more comes.
fn drain(hub: &mut WatchHub, log: &Log, id: WatchId) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        let deliveries = hub.take(id, usize::MAX);
        hub.check_invariants();
        if deliveries.is_empty() && !hub.has_catch_up_work() {
            return seen;
        }
        seen.extend(show(&deliveries));
        log.publish(hub);
    }
    panic!("watch {id} never drained: {seen:?}");
}

#[test]
fn progress_only_after_queue_drained() {
    let mut log = Log::new(HistoryLimits::DEFAULT);
    let mut hub = WatchHub::new(config(1 << 20), 0);
    let id = hub.subscribe(prefix("a"), false, None, 0, &log.history, 0).expect("subscribe");

    // Phase 1: an idle live watcher gets nothing before the interval, then progress at the applied index.
    hub.tick(999);
    assert_eq!(show(&hub.take(id, usize::MAX)), Vec::<String>::new());
    hub.tick(1000);
    assert_eq!(show(&hub.take(id, usize::MAX)), ["p0"]);

    // Phase 2: while a batch waits in the queue, no progress is queued, however long it waits.
    log.put(&["a"], "1");
    log.publish(&mut hub);
    hub.tick(5000);
    assert_eq!(show(&hub.take(id, usize::MAX)), ["c1"]);

    // Phase 3: drained and idle, the watcher learns that entries 2..4 (unrelated or without changes) hold nothing
    // for it; the next notice waits a full interval.
    log.put(&["b"], "2");
    log.skip(2);
    log.publish(&mut hub);
    hub.tick(5000);
    assert_eq!(show(&hub.take(id, usize::MAX)), ["p4"]);
    hub.tick(5999);
    assert_eq!(show(&hub.take(id, usize::MAX)), Vec::<String>::new());
    hub.tick(6000);
    assert_eq!(show(&hub.take(id, usize::MAX)), ["p4"]);
    hub.check_invariants();
}

#[test]
fn slow_subscriber_gets_resume_index() {
    // Each put of "a" with a 10-byte value counts 128 + 1 + 10 (+ 10 for prev): three queued fill 447 bytes, over
    // 400, so the fourth to arrive finds the watcher slow.
    let mut log = Log::new(HistoryLimits::DEFAULT);
    let mut hub = WatchHub::new(config(400), 0);
    let id = hub.subscribe(prefix("a"), false, None, 0, &log.history, 0).expect("subscribe");

    // Phase 1: the watcher takes entry 1, then stops taking while 2, 3, 4, 5 arrive: the fourth overflows.
    log.put(&["a"], "0123456789");
    log.publish(&mut hub);
    assert_eq!(show(&hub.take(id, 1)), ["c1"]);
    for _ in 0..4 {
        log.put(&["a"], "0123456789");
        log.publish(&mut hub);
        hub.check_invariants();
    }
    assert_eq!(show(&hub.take(id, usize::MAX)), ["slow2"]);
    assert_eq!((hub.len(), hub.take(id, usize::MAX)), (0, Vec::new()));

    // Phase 2: resuming there gets 2 to 5 from the history, then the live 6, each once.
    let id = hub.subscribe(prefix("a"), false, Some(2), log.applied, &log.history, 0).expect("resume");
    assert_eq!(drain(&mut hub, &log, id), ["c2", "c3", "c4", "c5"]);
    log.put(&["a"], "0123456789");
    log.publish(&mut hub);
    assert_eq!(drain(&mut hub, &log, id), ["c6"]);
}

#[test]
fn an_untaken_progress_notice_does_not_make_a_big_batch_slow() {
    // A 2,000-byte batch against a 1,024-byte buffer, arriving while an idle watcher's progress notice waits.
    let mut log = Log::new(HistoryLimits::DEFAULT);
    let mut hub = WatchHub::new(config(1024), 0);
    let id = hub.subscribe(prefix(""), false, None, 0, &log.history, 0).expect("subscribe");
    hub.tick(10_000);
    log.put(&["a"], &"x".repeat(2000));
    log.publish(&mut hub);
    hub.check_invariants();
    assert_eq!(show(&hub.take(id, usize::MAX)), ["c1"]);
}

#[test]
fn batch_larger_than_the_buffer_gets_through_alone() {
    // Three 100-byte values make a batch of about 700 bytes, over the 200-byte buffer.
    let mut log = Log::new(HistoryLimits::DEFAULT);
    let big = "x".repeat(100);
    let mut hub = WatchHub::new(config(200), 0);
    let live = hub.subscribe(prefix(""), false, None, 0, &log.history, 0).expect("subscribe");

    // Phase 1: live and from the backlog, the big batch is delivered on its own.
    log.put(&["a", "b", "c"], &big);
    log.publish(&mut hub);
    let backlog = hub.subscribe(prefix(""), false, Some(1), 1, &log.history, 0).expect("subscribe");
    assert_eq!(show(&hub.take(live, usize::MAX)), ["c1"]);
    assert_eq!(show(&hub.take(backlog, usize::MAX)), ["c1"]);

    // Phase 2: but a second batch behind an untaken big one is over the buffer.
    log.put(&["a", "b", "c"], &big);
    log.publish(&mut hub);
    assert_eq!(show(&hub.take(live, usize::MAX)), ["c2"]);
    log.put(&["a"], "small");
    log.publish(&mut hub);
    hub.check_invariants();
    assert_eq!(show(&hub.take(backlog, usize::MAX)), ["slow2"]);
    assert_eq!(show(&hub.take(live, usize::MAX)), ["c3"]);
}

#[test]
fn compacted_below_covered_from() {
    let mut log = Log::new(HistoryLimits { entries_max: 3, bytes_max: usize::MAX });
    let mut hub = WatchHub::new(config(200), 0);
    for value in ["1", "2", "3", "4", "5"] {
        log.put(&["a"], value);
    }
    log.publish(&mut hub);

    // Phase 1: a start below the window is refused with its oldest index; at the window it is fine.
    let refused = hub.subscribe(prefix("a"), false, Some(2), 5, &log.history, 0);
    assert_eq!(refused, Err(SubscribeError::Compacted { from: 2, oldest: 3 }));
    let id = hub.subscribe(prefix("a"), false, Some(3), 5, &log.history, 0).expect("in the window");

    // Phase 2: the watcher reads one page (one batch, as pages are half the 200-byte buffer), stalls, and the
    // history moves past the rest of its backlog.
    for value in ["6", "7", "8"] {
        log.put(&["a"], value);
    }
    log.publish(&mut hub);
    assert_eq!(show(&hub.take(id, usize::MAX)), ["c3"]);
    log.publish(&mut hub);
    assert_eq!(show(&hub.take(id, usize::MAX)), ["compacted6"]);
    assert!(hub.is_empty());
    hub.check_invariants();
}

#[test]
fn snapshot_jump_past_next_index_is_compacted() {
    let mut log = Log::new(HistoryLimits { entries_max: 3, bytes_max: usize::MAX });
    log.put(&["a"], "1");
    let mut hub = WatchHub::new(config(1 << 20), 1);
    let kept = hub.subscribe(prefix("a"), false, None, 1, &log.history, 0).expect("subscribe");
    let lost = hub.subscribe(prefix("a"), false, None, 1, &log.history, 0).expect("subscribe");

    // Phase 1: a snapshot whose history still covers index 2 continues the stream with no gap.
    let mut leader = log.clone();
    leader.put(&["a"], "2");
    leader.put(&["b"], "3");
    leader.publish(&mut hub);
    assert_eq!(show(&hub.take(kept, usize::MAX)), ["c2"]);
    hub.unsubscribe(kept);

    // Phase 2: one whose window starts past the watcher's next index ends the watch with the oldest index.
    for value in ["4", "5", "6", "7"] {
        leader.put(&["a"], value);
    }
    // The watcher `lost` still has c2 queued; the queue is dropped with the error.
    leader.publish(&mut hub);
    assert_eq!(leader.history.covered_from(), 5);
    assert_eq!(show(&hub.take(lost, usize::MAX)), ["compacted5"]);
    hub.check_invariants();
}

#[test]
fn prefix_filter_skips_unrelated() {
    let mut log = Log::new(HistoryLimits::DEFAULT);
    let mut hub = WatchHub::new(config(1 << 20), 0);
    let app = hub.subscribe(prefix("app/"), false, None, 0, &log.history, 0).expect("subscribe");
    let key = hub.subscribe(KeyFilter::Key(b"app/x".to_vec()), true, None, 0, &log.history, 0).expect("subscribe");

    // Phase 1: entries touching other keys, or keys that merely start alike ("apple"), are not delivered.
    log.put(&["other"], "1");
    log.write(&[("app/x", Some("2")), ("other", Some("2"))]);
    log.write(&[("app/x", None)]);
    log.put(&["apple"], "4");
    log.put(&["app/y"], "5");
    log.publish(&mut hub);
    let deliveries = hub.take(app, usize::MAX);
    assert_eq!(show(&deliveries), ["c2", "c3", "c5"]);
    assert_eq!(drain(&mut hub, &log, key), ["c2", "c3"]);

    // Phase 2: a delivered batch is the whole entry; the filter picks the watcher's changes from it.
    let Delivery::Changes { changes, .. } = &deliveries[0] else { panic!("{deliveries:?}") };
    assert_eq!(changes.changes.len(), 2);
    let filter = hub.filter(app).expect("exists").clone();
    let keys: Vec<&[u8]> = changes.matching(&filter).map(|change| change.key.as_slice()).collect();
    assert_eq!(keys, [b"app/x"]);
    assert_eq!((hub.wants_prev(app), hub.wants_prev(key)), (Some(false), Some(true)));

    // Phase 3: progress covers the skipped entries.
    hub.tick(1000);
    assert_eq!(show(&hub.take(app, usize::MAX)), ["p5"]);
}

#[test]
fn fault_skip_first_after_resume_drops_one_batch() {
    let mut log = Log::new(HistoryLimits::DEFAULT);
    for value in ["1", "2", "3"] {
        log.put(&["a"], value);
    }
    let faulty = WatchConfig { faults: WatchFaults { skip_first_after_resume: true }, ..config(1 << 20) };

    // Phase 1: without the fault, a resume from 1 gets 1, 2, 3.
    let mut hub = WatchHub::new(config(1 << 20), 3);
    let id = hub.subscribe(prefix("a"), false, Some(1), 3, &log.history, 0).expect("subscribe");
    assert_eq!(drain(&mut hub, &log, id), ["c1", "c2", "c3"]);

    // Phase 2: with it, the same resume silently loses entry 1.
    let mut hub = WatchHub::new(faulty, 3);
    let resumed = hub.subscribe(prefix("a"), false, Some(1), 3, &log.history, 0).expect("subscribe");
    assert_eq!(drain(&mut hub, &log, resumed), ["c2", "c3"]);

    // Phase 3: a fresh watch (no explicit start) is not affected.
    let fresh = hub.subscribe(prefix("a"), false, None, 3, &log.history, 0).expect("subscribe");
    log.put(&["a"], "4");
    log.publish(&mut hub);
    assert_eq!(drain(&mut hub, &log, fresh), ["c4"]);
}

#[test]
fn subscribe_refuses_bad_starts_and_too_many_watchers() {
    let mut log = Log::new(HistoryLimits::DEFAULT);
    log.put(&["a"], "1");
    log.skip(2);
    let mut hub = WatchHub::new(WatchConfig { max_watchers: 2, ..WatchConfig::default() }, 3);
    let history = &log.history;
    assert_eq!(hub.subscribe(prefix(""), false, Some(0), 3, history, 0), Err(SubscribeError::FromZero));
    let future = hub.subscribe(prefix(""), false, Some(5), 3, history, 0);
    assert_eq!(future, Err(SubscribeError::FromInFuture { from: 5, next: 4 }));
    hub.subscribe(prefix(""), false, Some(4), 3, history, 0).expect("the next index is allowed");
    hub.subscribe(prefix(""), false, None, 2, history, 0).expect("an older read index is allowed");
    let full = hub.subscribe(prefix(""), false, None, 3, history, 0);
    assert_eq!(full, Err(SubscribeError::TooManyWatchers { max: 2 }));
    assert_eq!(hub.len(), 2);
    hub.check_invariants();
}

#[test]
fn groups_share_one_batch() {
    let mut log = Log::new(HistoryLimits::DEFAULT);
    let mut hub = WatchHub::new(config(1 << 20), 0);
    let ids: Vec<WatchId> =
        (0..3).map(|_| hub.subscribe(prefix("a"), false, None, 0, &log.history, 0).expect("subscribe")).collect();
    log.put(&["a"], "1");
    log.publish(&mut hub);
    let batches: Vec<Arc<ChangeBatch>> = ids
        .iter()
        .flat_map(|id| hub.take(*id, usize::MAX))
        .map(|delivery| match delivery {
            Delivery::Changes { changes, .. } => changes,
            other => panic!("{other:?}"),
        })
        .collect();
    let kept = log.history.batches_from(1).next().expect("kept");
    assert!(batches.iter().all(|batch| Arc::ptr_eq(batch, kept)), "one allocation for the history and every queue");
}

#[test]
fn catch_up_reads_are_bounded_and_take_turns() {
    // Pages are one batch (half of a 200-byte buffer), and a publish reads one page in all.
    let mut log = Log::new(HistoryLimits::DEFAULT);
    for value in ["1", "2", "3", "4"] {
        log.put(&["a"], value);
    }
    let mut hub = WatchHub::new(WatchConfig { catch_up_bytes_per_publish: 1, ..config(200) }, 4);
    let ids: Vec<WatchId> =
        (0..3).map(|_| hub.subscribe(prefix("a"), false, Some(1), 4, &log.history, 0).expect("subscribe")).collect();

    // Phase 1: each subscribe read its first page at once.
    for id in &ids {
        assert_eq!(show(&hub.take(*id, usize::MAX)), ["c1"]);
    }
    // Phase 2: then each publish serves one watcher, in turn.
    for id in &ids {
        log.publish(&mut hub);
        assert_eq!(hub.pending().collect::<Vec<_>>(), [*id]);
        assert_eq!(show(&hub.take(*id, usize::MAX)), ["c2"]);
        hub.check_invariants();
    }
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    /// One entry: a put (value length) or a delete of each listed key.
    Write(Vec<(usize, Option<usize>)>),
    /// Entries without changes.
    Skip(u64),
    /// Publish the log.
    Publish,
    /// A new watcher of `FILTERS[filter]`, from `applied + 1 - back` (or the read index without one).
    Subscribe { filter: usize, back: Option<u64> },
    /// Take from watcher `watcher` (modulo their count) with this budget.
    Take { watcher: usize, budget_bytes: usize },
    /// Advance the clock and tick.
    Tick(u64),
    /// Narrow or widen the history (a trim that may outrun watchers, or a jump when not yet published).
    Limit(usize),
    /// Drop a watcher.
    Unsubscribe(usize),
}

const KEYS: [&str; 5] = ["a", "ab", "b", "ba", "c"];
const FILTERS: [&str; 4] = ["", "a", "ab", "b"];

fn arb_op() -> impl Strategy<Value = Op> {
    let edit = (0..KEYS.len(), prop::option::weighted(0.8, 0usize..60));
    prop_oneof![
        8 => prop::collection::vec(edit, 1..4).prop_map(Op::Write),
        1 => (1u64..4).prop_map(Op::Skip),
        4 => Just(Op::Publish),
        2 => (0..FILTERS.len(), prop::option::weighted(0.7, 0u64..15))
            .prop_map(|(filter, back)| Op::Subscribe { filter, back }),
        6 => (0usize..8, prop_oneof![Just(0usize), 1usize..400, Just(usize::MAX)])
            .prop_map(|(watcher, budget_bytes)| Op::Take { watcher, budget_bytes }),
        2 => (0u64..1500).prop_map(Op::Tick),
        1 => (2usize..30).prop_map(Op::Limit),
        1 => (0usize..8).prop_map(Op::Unsubscribe),
    ]
}

/// A client of the hub that checks what it receives against every batch ever made, and resumes as a real one
/// would: from `resume_from` after a slow error, afresh after a compacted one.
struct Watcher {
    filter: KeyFilter,
    /// Its current subscription.
    id: WatchId,
    /// The first index it has not accounted for: everything matching below it was delivered exactly once.
    expected_next: u64,
}

/// The hub, the log and the watchers of one model run.
struct Run {
    log: Log,
    hub: WatchHub,
    watchers: Vec<Watcher>,
    now_ms: u64,
}

impl Run {
    /// Whether some batch in `[from, to]` matches `filter`, according to the truth.
    fn matching_between(&self, filter: &KeyFilter, from: u64, to: u64) -> Option<u64> {
        self.log.all.range(from..=to.max(from)).find(|(_, batch)| batch.matches(filter)).map(|(index, _)| *index)
    }

    /// Subscribes `filter` from `from` (after a publish, as the driver does), falling back to a fresh start
    /// when the history no longer covers it. Returns the watcher, or `None` when the hub is full.
    fn subscribe(&mut self, filter: KeyFilter, from: Option<u64>) -> Option<Watcher> {
        self.log.publish(&mut self.hub);
        let read_index = self.log.applied;
        let history = &self.log.history;
        match self.hub.subscribe(filter.clone(), false, from, read_index, history, self.now_ms) {
            Ok(id) => Some(Watcher { filter, id, expected_next: from.unwrap_or(read_index + 1) }),
            Err(SubscribeError::Compacted { from: start, oldest }) => {
                assert!(start < oldest && oldest == history.covered_from(), "compacted {start} < {oldest}");
                self.subscribe(filter, None)
            }
            Err(SubscribeError::FromInFuture { from, next }) => {
                assert!(from > next && next == read_index + 1, "from {from} in the future of {next}");
                None
            }
            Err(SubscribeError::TooManyWatchers { .. }) => None,
            Err(other) => panic!("unexpected {other}"),
        }
    }

    /// Checks one watcher's deliveries against the truth, and resumes it after an error.
    fn receive(&mut self, slot: usize, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            let watcher = &self.watchers[slot];
            let (filter, expected) = (watcher.filter.clone(), watcher.expected_next);
            match delivery {
                Delivery::Changes { index, changes } => {
                    assert!(index >= expected, "{:?}: duplicate {index}, expected {expected}", filter);
                    let gap = self.matching_between(&filter, expected, index - 1).filter(|gap| *gap < index);
                    assert_eq!(gap, None, "{filter:?}: {index} delivered before {gap:?}");
                    assert_eq!(Some(&changes), self.log.all.get(&index), "{filter:?}: batch {index} differs");
                    assert!(changes.matches(&filter), "{filter:?}: batch {index} matches nothing");
                    self.watchers[slot].expected_next = index + 1;
                }
                Delivery::Progress(index) => {
                    assert!(index <= self.log.applied, "progress {index} past applied {}", self.log.applied);
                    let gap = self.matching_between(&filter, expected, index).filter(|gap| *gap <= index);
                    assert_eq!(gap, None, "{filter:?}: progress {index} before {gap:?} was delivered");
                    self.watchers[slot].expected_next = expected.max(index + 1);
                }
                Delivery::Error(WatchError::SlowWatcher { resume_from }) => {
                    assert_eq!(resume_from, expected, "{filter:?}: slow watcher resumes elsewhere");
                    self.resume(slot, Some(resume_from));
                    return;
                }
                Delivery::Error(WatchError::Compacted { oldest }) => {
                    assert!(expected < oldest, "{filter:?}: compacted at {oldest} but it needs {expected}");
                    self.resume(slot, None);
                    return;
                }
            }
        }
    }

    /// Replaces watcher `slot`'s subscription after an error.
    fn resume(&mut self, slot: usize, from: Option<u64>) {
        let filter = self.watchers[slot].filter.clone();
        let watcher = self.subscribe(filter, from).expect("the errored subscription freed a place");
        if from.is_some() && watcher.expected_next != self.watchers[slot].expected_next {
            // The resume fell back to a fresh start: the watcher re-read its keys.
            assert!(self.watchers[slot].expected_next < self.log.history.covered_from());
        }
        self.watchers[slot] = watcher;
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Write(edits) => {
                let values: Vec<String> = edits
                    .iter()
                    .map(|(_, len)| len.map(|len| "v".repeat(len)))
                    .map(Option::unwrap_or_default)
                    .collect();
                let edits: Vec<(&str, Option<&str>)> = edits
                    .iter()
                    .zip(&values)
                    .map(|((key, len), value)| (KEYS[*key], len.map(|_| value.as_str())))
                    .collect();
                self.log.write(&edits);
            }
            Op::Skip(count) => self.log.skip(count),
            Op::Publish => self.log.publish(&mut self.hub),
            Op::Subscribe { filter, back } => {
                let from = back.map(|back| (self.log.applied + 1).saturating_sub(back).max(1));
                if let Some(watcher) = self.subscribe(prefix(FILTERS[filter]), from) {
                    self.watchers.push(watcher);
                }
            }
            Op::Take { watcher, budget_bytes } if !self.watchers.is_empty() => {
                let slot = watcher % self.watchers.len();
                let deliveries = self.hub.take(self.watchers[slot].id, budget_bytes);
                self.receive(slot, deliveries);
            }
            Op::Tick(ms) => {
                self.now_ms += ms;
                self.hub.tick(self.now_ms);
            }
            Op::Limit(entries_max) => {
                self.log.history.set_limits(HistoryLimits { entries_max, bytes_max: usize::MAX });
            }
            Op::Unsubscribe(watcher) if !self.watchers.is_empty() => {
                let slot = watcher % self.watchers.len();
                assert!(self.hub.unsubscribe(self.watchers.remove(slot).id));
            }
            Op::Take { .. } | Op::Unsubscribe(_) => {}
        }
    }

    /// Publishes and takes until every watcher is live and drained, then checks each is caught up to applied.
    fn finish(&mut self) {
        for _ in 0..10_000 {
            self.log.publish(&mut self.hub);
            for slot in 0..self.watchers.len() {
                let deliveries = self.hub.take(self.watchers[slot].id, usize::MAX);
                self.receive(slot, deliveries);
            }
            self.hub.check_invariants();
            if !self.hub.has_catch_up_work() && self.hub.pending().next().is_none() {
                break;
            }
        }
        self.now_ms += self.hub.config.progress_interval_ms;
        self.hub.tick(self.now_ms);
        for slot in 0..self.watchers.len() {
            let deliveries = self.hub.take(self.watchers[slot].id, usize::MAX);
            assert_eq!(show(&deliveries), [format!("p{}", self.log.applied)], "watcher {slot} is not caught up");
            self.receive(slot, deliveries);
            assert_eq!(self.watchers[slot].expected_next, self.log.applied + 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn backlog_then_live_has_no_gap_or_duplicate(ops in prop::collection::vec(arb_op(), 1..200)) {
        let config = WatchConfig { buffer_bytes: 1000, catch_up_bytes_per_publish: 700, max_watchers: 6, ..WatchConfig::default() };
        let mut run = Run {
            log: Log::new(HistoryLimits { entries_max: 12, bytes_max: usize::MAX }),
            hub: WatchHub::new(config, 0),
            watchers: Vec::new(),
            now_ms: 0,
        };
        for op in ops {
            run.apply(op);
            run.hub.check_invariants();
            run.log.history.check_invariants();
        }
        run.finish();
    }
}
