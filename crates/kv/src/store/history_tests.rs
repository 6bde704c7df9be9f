//! The store records every key change in its watch history, one batch per entry.

use super::*;
use crate::history::KeyFilter;

fn put(key: &str, value: &str) -> Command {
    Command::Put { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), cas: None }
}

/// The (index, key, kind, value, version) of every change the history holds from `from` on.
fn changes(store: &KvStore, from: u64) -> Vec<(u64, String, ChangeKind, String, u64)> {
    let page = store.history().read(from, &KeyFilter::Prefix(Vec::new()), usize::MAX).expect("covered");
    let mut out = Vec::new();
    for batch in page.batches {
        for change in &batch.changes {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            out.push((batch.index, text(&change.key), change.kind, text(&change.value), change.version));
        }
    }
    out
}

#[test]
fn every_key_change_lands_in_the_history_once() {
    use ChangeKind::{Delete, Put};
    let mut store = KvStore::new();
    store.apply_command(1, &put("a", "1"));
    store.apply_command(2, &put("a", "2"));
    store.apply_command(3, &put("b/1", "x"));
    store.apply_command(4, &put("b/2", "y"));
    // Phase 1: a failed cas, a delete of an absent key, an undecodable payload and a skip change nothing.
    store.apply_command(5, &Command::Put { key: b"a".to_vec(), value: b"no".to_vec(), cas: Some(99) });
    store.apply_command(6, &Command::Delete { key: b"zz".to_vec(), cas: None });
    store.apply(7, b"\xff");
    store.skip(8);
    // Phase 2: a prefix delete is one batch, in key order; a delete keeps the removed state as prev.
    store.apply_command(9, &Command::DeletePrefix { prefix: b"b/".to_vec() });
    store.apply_command(10, &Command::Delete { key: b"a".to_vec(), cas: None });
    let s = |text: &str| text.to_string();
    assert_eq!(
        changes(&store, 1),
        [
            (1, s("a"), Put, s("1"), 1),
            (2, s("a"), Put, s("2"), 2),
            (3, s("b/1"), Put, s("x"), 1),
            (4, s("b/2"), Put, s("y"), 1),
            (9, s("b/1"), Delete, s(""), 0),
            (9, s("b/2"), Delete, s(""), 0),
            (10, s("a"), Delete, s(""), 0),
        ]
    );
    let batch = store.history().batches_from(10).next().expect("batch 10").clone();
    assert_eq!(batch.changes[0].prev.as_ref().map(|prev| (prev.value.clone(), prev.version)), Some((b"2".to_vec(), 2)));
    let overwrite = store.history().batches_from(2).next().expect("batch 2").clone();
    assert_eq!(overwrite.changes[0].prev.as_ref().map(|prev| prev.value.clone()), Some(b"1".to_vec()));
    assert_eq!(store.history().covered_from(), 1);
    store.check_invariants();
}

#[test]
fn history_survives_snapshot_restore_and_takes_the_restorers_limits() {
    let mut store = KvStore::new();
    for index in 1..=20 {
        store.apply_command(index, &put(&format!("k{}", index % 3), &format!("v{index}")));
    }
    // Phase 1: restored with the default window, the history is the same.
    let snapshot = store.snapshot();
    let restored = KvStore::restore(&snapshot).expect("restores");
    assert_eq!(restored.history(), store.history());
    assert_eq!(changes(&restored, 1), changes(&store, 1));
    restored.check_invariants();

    // Phase 2: a node with a smaller window trims what it restores; the state is the same all the same.
    let small = HistoryLimits { entries_max: 5, bytes_max: usize::MAX };
    let mut trimmed = KvStore::restore_with_history_limits(&snapshot, small).expect("restores");
    assert_eq!(trimmed.history().covered_from(), 16);
    assert_eq!(trimmed.history().len(), 5);
    assert_eq!(trimmed.state_checksum(), store.state_checksum());
    trimmed.check_invariants();

    // Phase 3: it goes on appending after the restore, within its own window.
    trimmed.apply_command(21, &put("k0", "next"));
    assert_eq!(trimmed.history().covered_from(), 17);
    assert_eq!(trimmed.history().last_index(), Some(21));
    trimmed.check_invariants();
}

#[test]
fn a_small_window_trims_and_the_store_stays_consistent() {
    let mut store = KvStore::with_history_limits(HistoryLimits { entries_max: 3, bytes_max: usize::MAX });
    for index in 1..=10 {
        store.apply_command(index, &put("k", &index.to_string()));
        store.check_invariants();
    }
    assert_eq!(store.history().covered_from(), 8);
    assert!(store.history().read(7, &KeyFilter::Key(b"k".to_vec()), usize::MAX).is_err());
    store.set_history_limits(HistoryLimits { entries_max: 1, bytes_max: usize::MAX });
    assert_eq!(store.history().covered_from(), 10);
    store.check_invariants();
}

#[test]
#[should_panic(expected = "is not its state")]
fn check_invariants_catches_a_change_missing_from_the_history() {
    let mut store = KvStore::new();
    store.apply_command(1, &put("k", "a"));
    store.entries.get_mut(&b"k"[..]).expect("k").value = b"changed behind the history's back".to_vec();
    store.check_invariants();
}
