//! The checker on small hand-made histories: a watcher that got exactly the committed changes passes, whatever
//! the reference's pace; a gap, a duplicate, a wrong field, a reordering, a lying progress notice or error, and
//! a watcher left behind at the end all fail.

use std::sync::Arc;

use tally_kv::{ChangeBatch, Command, KeyFilter, KvStore};

use super::{WatchCounts, WatchEvent, WatchExactlyOnce};
use crate::checkers::Violation;

/// The committed log: put k0 at 1, put t1 at 2 (another prefix), a no-op at 3, put k1 at 4, delete k0 at 5, put
/// k0 again at 6. Returns the changes of each entry that changed a key, as the reference records them.
fn committed() -> Vec<Arc<ChangeBatch>> {
    let put = |key: &str, value: &str| Command::Put { key: key.into(), value: value.into(), cas: None };
    let mut store = KvStore::new();
    let log = [
        Some(put("k0", "a")),
        Some(put("t1", "b")),
        None,
        Some(put("k1", "c")),
        Some(Command::Delete { key: b"k0".to_vec(), cas: None }),
        Some(put("k0", "d")),
    ];
    for (position, command) in log.into_iter().enumerate() {
        let index = position as u64 + 1;
        match command {
            Some(command) => {
                store.apply(index, &command.encode());
            }
            None => store.skip(index),
        }
    }
    store.history().batches_from(1).cloned().collect()
}

/// The committed entry at `index`.
fn entry(index: u64) -> Arc<ChangeBatch> {
    committed().into_iter().find(|batch| batch.index == index).expect("a committed entry with changes")
}

/// A checker of one watcher of the prefix `k`, with the reference at `applied`.
fn k_watcher(applied: u64) -> WatchExactlyOnce {
    let mut checker = WatchExactlyOnce::new(vec![KeyFilter::Prefix(b"k".to_vec())]);
    advance(&mut checker, applied).expect("no events yet");
    checker
}

/// Moves the reference of `checker` to `applied`.
fn advance(checker: &mut WatchExactlyOnce, applied: u64) -> Result<(), Violation> {
    let from = checker.reference_applied;
    let batches = committed().into_iter().filter(|batch| batch.index > from && batch.index <= applied);
    checker.advance(batches, applied)
}

/// Records `events` for watcher 0, stopping at the first violation.
fn record_all(checker: &mut WatchExactlyOnce, events: Vec<WatchEvent>) -> Result<(), Violation> {
    events.into_iter().try_for_each(|event| checker.record(0, event))
}

/// A fresh subscription after a read at `from - 1`.
fn fresh(from: u64) -> WatchEvent {
    WatchEvent::Subscribed { from, fresh: true }
}

/// A resume at `from`.
fn resume(from: u64) -> WatchEvent {
    WatchEvent::Subscribed { from, fresh: false }
}

/// Asserts `result` is a violation of `checker` whose detail mentions `words`.
fn assert_broken(result: Result<(), Violation>, checker: &str, words: &str) {
    let error = result.expect_err("a broken contract");
    assert_eq!(error.checker, checker, "{error}");
    assert!(error.detail.contains(words), "{error}");
}

#[test]
fn exactly_the_committed_changes_across_resumes_pass_ahead_of_and_behind_the_reference() {
    // Why: the legal shape of a watcher's life: a fresh start, a delivery, progress past non-matching entries, a
    // slow cut-off and its resume, a compaction and a fresh start after it; events arrive before and after the
    // reference reaches them, and a second watcher on an exact key sees only its key.
    let mut checker = WatchExactlyOnce::new(vec![KeyFilter::Prefix(b"k".to_vec()), KeyFilter::Key(b"k1".to_vec())]);
    checker.record(0, fresh(1)).expect("a fresh start");
    checker.record(0, WatchEvent::Changes(entry(1))).expect("ahead of the reference");
    checker.record(1, fresh(3)).expect("a fresh start after a read at 2");
    advance(&mut checker, 3).expect("entry 1 is k0's put");
    checker.record(0, WatchEvent::Progress(3)).expect("nothing under k in 2..=3");
    checker.record(0, WatchEvent::Slow { resume_from: 4 }).expect("delivered through 3");
    checker.record(0, resume(4)).expect("a resume at the position");
    checker.record(0, WatchEvent::Changes(entry(4))).expect("k1's put");
    checker.record(1, WatchEvent::Changes(entry(4))).expect("k1's put for the exact key");
    checker.record(0, WatchEvent::Changes(entry(5))).expect("k0's delete");
    checker.record(1, WatchEvent::Compacted { oldest: 6 }).expect("its position 5 is below 6");
    advance(&mut checker, 6).expect("the reference passes every delivery");
    checker.record(0, WatchEvent::Changes(entry(6))).expect("k0's new put, behind the reference");
    checker.record(1, fresh(7)).expect("a fresh start after a read at 6");
    checker.finish(&[true, true], 6).expect("both caught up");
    let counts = WatchCounts { batches: 5, progress: 1, fresh: 3, resumes: 1, compacted: 1, slow: 1 };
    assert_eq!(checker.counts(), counts);
    let kept: Vec<u64> = checker.changes.keys().copied().collect();
    assert_eq!(kept, [5, 6], "at the last advance, watcher 1 still needed changes from 5 on");
}

#[test]
fn a_gap_fails() {
    // Why: the bug of a watch that resumes one change too late (the fault `watch-skip-after-resume`).
    let mut checker = k_watcher(6);
    let events = vec![fresh(1), WatchEvent::Changes(entry(1)), WatchEvent::Slow { resume_from: 2 }, resume(2)];
    record_all(&mut checker, events).expect("legal so far");
    assert_broken(checker.record(0, WatchEvent::Changes(entry(5))), "watch_exactly_once", "at 4 before it never was");
}

#[test]
fn a_duplicate_fails_even_across_a_resume() {
    // Why: a resume must not repeat what was delivered before it.
    let mut checker = k_watcher(6);
    record_all(&mut checker, vec![fresh(1), WatchEvent::Changes(entry(1)), resume(2)]).expect("legal so far");
    assert_broken(checker.record(0, WatchEvent::Changes(entry(1))), "watch_exactly_once", "delivered again");
}

#[test]
fn a_reordering_fails() {
    // Why: changes go out in index order. The newer entry, delivered first, skipped the older one: a gap there,
    // seen as soon as the reference reaches both.
    let mut checker = k_watcher(0);
    record_all(&mut checker, vec![fresh(4), WatchEvent::Changes(entry(5)), WatchEvent::Changes(entry(4))])
        .expect("waiting for the reference");
    assert_broken(advance(&mut checker, 6), "watch_exactly_once", "entry 5 delivered, but the change at 4");
}

#[test]
fn a_wrong_field_fails() {
    // Why: every field must be the committed one: a version, a value or a previous state from another entry is a
    // broken history even at the right index.
    let mut wrong_version = (*entry(4)).clone();
    wrong_version.changes[0].version = 2;
    let mut wrong_prev = (*entry(6)).clone();
    let old_k0 = tally_kv::Versioned { value: b"a".to_vec(), create_index: 1, modify_index: 1, version: 1 };
    wrong_prev.changes[0].prev = Some(old_k0);
    for (from, wrong) in [(4, wrong_version), (6, wrong_prev)] {
        let mut checker = k_watcher(6);
        checker.record(0, fresh(from)).expect("a fresh start");
        let result = checker.record(0, WatchEvent::Changes(Arc::new(wrong)));
        assert_broken(result, "watch_exactly_once", "but the committed ones are");
    }
}

#[test]
fn a_delivery_of_an_entry_without_a_matching_change_fails() {
    // Why: a watcher of `k` must not get entry 2, which only changed t1.
    let mut checker = k_watcher(6);
    checker.record(0, fresh(2)).expect("a fresh start");
    assert_broken(checker.record(0, WatchEvent::Changes(entry(2))), "watch_exactly_once", "none of its committed");
}

#[test]
fn a_progress_notice_past_an_undelivered_change_fails() {
    // Why: progress p promises every matching change up to p was delivered.
    let mut checker = k_watcher(6);
    record_all(&mut checker, vec![fresh(1), WatchEvent::Changes(entry(1))]).expect("legal so far");
    assert_broken(checker.record(0, WatchEvent::Progress(4)), "watch_exactly_once", "the change at 4");
}

#[test]
fn lying_errors_fail() {
    // Why: a slow cut-off must resume exactly after the last delivery, and a compaction needs the position to be
    // below the history's start, whether it ends a subscription or refuses one.
    let mut checker = k_watcher(6);
    record_all(&mut checker, vec![fresh(1), WatchEvent::Changes(entry(1))]).expect("legal so far");
    assert_broken(checker.record(0, WatchEvent::Slow { resume_from: 3 }), "watch_exactly_once", "resume_from 3");
    let mut checker = k_watcher(6);
    record_all(&mut checker, vec![fresh(1), WatchEvent::Changes(entry(1))]).expect("legal so far");
    assert_broken(checker.record(0, WatchEvent::Compacted { oldest: 2 }), "watch_exactly_once", "still covered");
    let mut checker = k_watcher(6);
    let refused = WatchEvent::Refused { from: 3, fresh: true, oldest: 3 };
    assert_broken(checker.record(0, refused), "watch_exactly_once", "refused as compacted");
}

#[test]
fn a_fresh_start_below_what_the_watcher_saw_is_a_real_time_order_violation() {
    // Why: a watch starts after a linearizable read, which cannot be older than an entry the watcher already saw
    // committed before the read began.
    let mut checker = k_watcher(6);
    let events = vec![fresh(3), WatchEvent::Changes(entry(4)), WatchEvent::Compacted { oldest: 6 }];
    record_all(&mut checker, events).expect("position 5 is below 6");
    assert_broken(checker.record(0, fresh(4)), "real_time_order", "starts in the past");
}

#[test]
fn a_watcher_left_behind_at_the_end_fails() {
    // Why: once the cluster has healed and converged, every watcher must have received every matching change.
    let mut checker = k_watcher(6);
    record_all(&mut checker, vec![fresh(1), WatchEvent::Changes(entry(1)), WatchEvent::Changes(entry(4))])
        .expect("legal so far");
    assert!(checker.lag(0, 6).is_some_and(|lag| lag.contains("index 5")), "entries 5 and 6 are missing");
    assert_broken(checker.finish(&[true], 6), "watch_exactly_once", "the change at index 5");
    assert_broken(checker.finish(&[false], 6), "watch_exactly_once", "not connected");
    record_all(&mut checker, vec![WatchEvent::Changes(entry(5)), WatchEvent::Changes(entry(6))]).expect("legal");
    assert_eq!(checker.lag(0, 6), None, "every change delivered");
}
