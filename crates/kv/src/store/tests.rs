use super::*;

fn put(key: &str, value: &str, cas: Option<u64>) -> Command {
    Command::Put { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), cas }
}

fn delete(key: &str, cas: Option<u64>) -> Command {
    Command::Delete { key: key.as_bytes().to_vec(), cas }
}

fn keys(page: &[(Vec<u8>, Versioned)]) -> Vec<&[u8]> {
    page.iter().map(|(key, _)| key.as_slice()).collect()
}

/// A store holding `keys` (each written at its position + 1), applied index = key count.
fn store_with(keys: &[&str]) -> KvStore {
    let mut store = KvStore::new();
    for (i, key) in keys.iter().enumerate() {
        store.apply_command(i as u64 + 1, &put(key, "v", None));
    }
    store
}

#[test]
fn new_store_is_empty_at_index_zero() {
    let store = KvStore::new();
    assert_eq!(store, KvStore::default());
    assert!(store.is_empty());
    assert_eq!(store.len(), 0);
    assert_eq!(store.applied_index(), 0);
    assert_eq!(store.get(b"k"), None);
}

#[test]
fn put_creates_then_overwrite_keeps_create_index() {
    // Phase 1: the first put sets both indexes to the entry index.
    let mut store = KvStore::new();
    assert_eq!(store.apply_command(3, &put("k", "a", None)), Response::Put { index: 3 });
    let expected = Versioned { value: b"a".to_vec(), create_index: 3, modify_index: 3, version: 1 };
    assert_eq!(store.get(b"k"), Some(&expected));

    // Phase 2: an overwrite moves only the modify index.
    assert_eq!(store.apply_command(7, &put("k", "b", None)), Response::Put { index: 7 });
    let expected = Versioned { value: b"b".to_vec(), create_index: 3, modify_index: 7, version: 2 };
    assert_eq!(store.get(b"k"), Some(&expected));
    assert_eq!(store.applied_index(), 7);
    assert_eq!(store.len(), 1);
    store.check_invariants();
}

#[test]
fn delete_removes_and_reports_whether_present() {
    let mut store = store_with(&["k"]);
    assert_eq!(store.apply_command(2, &delete("k", None)), Response::Delete { index: 2, deleted: true });
    assert_eq!(store.get(b"k"), None);
    assert_eq!(store.apply_command(3, &delete("k", None)), Response::Delete { index: 3, deleted: false });
    assert!(store.is_empty());
    assert_eq!(store.applied_index(), 3);
}

#[test]
fn delete_prefix_removes_only_matching_keys() {
    // Phase 1: keys under "b/", the prefix itself as a key, and neighbours on both sides of the range.
    let mut store = store_with(&["a", "b", "b/", "b/1", "b/2/x", "b0", "c"]);
    let delete_prefix = |prefix: &str| Command::DeletePrefix { prefix: prefix.as_bytes().to_vec() };

    // Phase 2: one entry removes exactly the keys starting with "b/", and says how many.
    assert_eq!(store.apply_command(8, &delete_prefix("b/")), Response::DeletePrefix { index: 8, deleted: 3 });
    let (left, _) = store.scan(b"", None, 10);
    assert_eq!(keys(&left), [&b"a"[..], b"b", b"b0", b"c"]);
    assert_eq!(store.applied_index(), 8);
    store.check_invariants();

    // Phase 3: nothing matching is still a success; a binary prefix matches bytes, not text.
    assert_eq!(store.apply_command(9, &delete_prefix("zz")), Response::DeletePrefix { index: 9, deleted: 0 });
    assert_eq!(store.apply_command(10, &delete_prefix("b")), Response::DeletePrefix { index: 10, deleted: 2 });
    assert_eq!(keys(&store.scan(b"", None, 10).0), [&b"a"[..], b"c"]);

    // Phase 4: a re-created key starts over, as after a single-key delete.
    store.apply_command(11, &put("b/1", "again", None));
    assert_eq!(store.get(b"b/1").map(|v| (v.create_index, v.version)), Some((11, 1)));
}

#[test]
fn empty_delete_prefix_payload_is_invalid_and_deletes_nothing() {
    let mut store = store_with(&["a", "b"]);
    let before = store.entries.clone();
    let response = store.apply(3, &[1, 8, 0, 0, 0, 0]);
    assert!(
        matches!(&response, Response::Invalid { index: 3, reason } if reason.contains("empty prefix")),
        "{response:?}"
    );
    assert_eq!(store.entries, before);
    assert_eq!(store.applied_index(), 3);
}

#[test]
#[should_panic(expected = "key changed at index 4 while applying 5")]
fn key_changes_outside_the_applied_entry_panic() {
    let mut store = store_with(&["a"]);
    store.skip(5);
    store.write_key(4, b"a", b"late");
}

#[test]
fn recreated_key_gets_new_create_index() {
    let mut store = store_with(&["k"]);
    store.apply_command(2, &delete("k", None));
    store.apply_command(5, &put("k", "again", None));
    let versioned = store.get(b"k").cloned();
    assert_eq!(versioned.map(|v| (v.create_index, v.modify_index)), Some((5, 5)));
}

#[test]
fn put_counts_versions_and_recreate_restarts_at_one() {
    // Phase 1: a create is version 1, each overwrite adds one, whatever the index gaps between them.
    let mut store = KvStore::new();
    let version = |store: &KvStore| store.get(b"k").map(|v| v.version);
    store.apply_command(2, &put("k", "a", None));
    assert_eq!(version(&store), Some(1));
    store.apply_command(3, &put("k", "b", None));
    store.apply_command(9, &put("k", "b", None));
    assert_eq!(version(&store), Some(3));

    // Phase 2: a write that does not happen (failed cas) counts nothing; neither do other keys' writes.
    store.apply_command(10, &put("k", "c", Some(1)));
    store.apply_command(11, &put("other", "x", None));
    assert_eq!(version(&store), Some(3));
    store.check_invariants();

    // Phase 3: a delete forgets the count, so the re-created key starts at 1 again (etcd semantics).
    store.apply_command(12, &delete("k", None));
    assert_eq!(version(&store), None);
    store.apply_command(13, &put("k", "again", None));
    let versioned = store.get(b"k").cloned();
    assert_eq!(versioned.map(|v| (v.create_index, v.modify_index, v.version)), Some((13, 13, 1)));
    store.check_invariants();
}

#[test]
#[should_panic(expected = "version 3 > 2 writes possible between create_index 1 and modify_index 2")]
fn check_invariants_catches_more_versions_than_writes() {
    let mut store = store_with(&["k", "k"]);
    if let Some(versioned) = store.entries.get_mut(b"k".as_slice()) {
        versioned.version = 3;
    }
    store.check_invariants();
}

#[test]
#[should_panic(expected = "version is 0")]
fn check_invariants_catches_version_zero() {
    let mut store = store_with(&["k"]);
    if let Some(versioned) = store.entries.get_mut(b"k".as_slice()) {
        versioned.version = 0;
    }
    store.check_invariants();
}

#[test]
fn cas_zero_only_writes_absent_keys() {
    // Phase 1: cas 0 on an absent key creates it.
    let mut store = KvStore::new();
    assert_eq!(store.apply_command(1, &put("k", "a", Some(0))), Response::Put { index: 1 });
    // Phase 2: cas 0 on a present key fails, reports the current index, changes nothing.
    let before = store.clone();
    assert_eq!(
        store.apply_command(2, &put("k", "b", Some(0))),
        Response::CasFailed { index: 2, current_modify_index: 1 }
    );
    assert_eq!(store.get(b"k"), before.get(b"k"));
    assert_eq!(store.applied_index(), 2);
}

#[test]
fn cas_on_present_key_compares_modify_index() {
    let mut store = store_with(&["k"]);
    store.apply_command(2, &put("k", "b", None));
    // A stale cas (the create index) fails.
    assert_eq!(
        store.apply_command(3, &put("k", "c", Some(1))),
        Response::CasFailed { index: 3, current_modify_index: 2 }
    );
    assert_eq!(store.get(b"k").map(|v| v.value.clone()), Some(b"b".to_vec()));
    // The current modify index succeeds.
    assert_eq!(store.apply_command(4, &put("k", "c", Some(2))), Response::Put { index: 4 });
    assert_eq!(store.get(b"k").map(|v| v.modify_index), Some(4));
}

#[test]
fn cas_on_absent_key_with_nonzero_index_fails() {
    let mut store = KvStore::new();
    assert_eq!(
        store.apply_command(1, &put("k", "a", Some(9))),
        Response::CasFailed { index: 1, current_modify_index: 0 }
    );
    assert_eq!(
        store.apply_command(2, &delete("k", Some(9))),
        Response::CasFailed { index: 2, current_modify_index: 0 }
    );
    assert!(store.is_empty());
}

#[test]
fn cas_delete_compares_modify_index() {
    let mut store = store_with(&["k"]);
    assert_eq!(
        store.apply_command(2, &delete("k", Some(0))),
        Response::CasFailed { index: 2, current_modify_index: 1 }
    );
    assert!(store.get(b"k").is_some());
    assert_eq!(store.apply_command(3, &delete("k", Some(1))), Response::Delete { index: 3, deleted: true });
    // "Only if absent" on an absent key holds, so the delete succeeds as a no-op.
    assert_eq!(store.apply_command(4, &delete("k", Some(0))), Response::Delete { index: 4, deleted: false });
}

#[test]
fn apply_decodes_payload() {
    let mut store = KvStore::new();
    let response = store.apply(1, &put("k", "v", None).encode());
    assert_eq!(response, Response::Put { index: 1 });
    assert_eq!(store.get(b"k").map(|v| v.value.clone()), Some(b"v".to_vec()));
}

#[test]
fn undecodable_payload_is_invalid_and_advances_index() {
    let mut store = KvStore::new();
    let response = store.apply(4, &[1, 9]);
    assert_eq!(response, Response::Invalid { index: 4, reason: "bad command kind tag 9 at offset 1".to_string() });
    assert_eq!(response.index(), 4);
    assert_eq!(store.applied_index(), 4);
    assert!(store.is_empty());
}

#[test]
fn skip_advances_index_only() {
    let mut store = store_with(&["k"]);
    let before = store.get(b"k").cloned();
    store.skip(10);
    assert_eq!(store.applied_index(), 10);
    assert_eq!(store.get(b"k").cloned(), before);
}

#[test]
fn index_gaps_are_allowed() {
    let mut store = KvStore::new();
    store.apply_command(5, &put("a", "1", None));
    store.apply_command(100, &put("b", "2", None));
    assert_eq!(store.applied_index(), 100);
    store.check_invariants();
}

#[test]
#[should_panic(expected = "entry 3 applied out of order: applied_index is already 3")]
fn reapplying_an_index_panics() {
    let mut store = KvStore::new();
    store.apply_command(3, &put("k", "v", None));
    store.apply_command(3, &put("k", "v", None));
}

#[test]
#[should_panic(expected = "entry 2 applied out of order: applied_index is already 5")]
fn going_backwards_panics() {
    let mut store = KvStore::new();
    store.skip(5);
    store.apply(2, &[]);
}

#[test]
#[should_panic(expected = "entry 0 applied out of order")]
fn index_zero_panics() {
    KvStore::new().skip(0);
}

#[test]
#[should_panic(expected = "modify_index 9 > applied_index 1")]
fn check_invariants_catches_future_modify_index() {
    let mut store = store_with(&["k"]);
    if let Some(versioned) = store.entries.get_mut(b"k".as_slice()) {
        versioned.modify_index = 9;
    }
    store.check_invariants();
}

#[test]
fn scan_filters_by_prefix_in_key_order() {
    let store = store_with(&["b/2", "a", "b/1", "b", "c/1", "b/3"]);
    let (page, more) = store.scan(b"b/", None, 10);
    assert_eq!(keys(&page), [&b"b/1"[..], b"b/2", b"b/3"]);
    assert!(!more);
    assert_eq!(page[0].1.create_index, 3);
    let (all, more) = store.scan(b"", None, 100);
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].0, b"a");
    assert!(!more);
}

#[test]
fn scan_limit_reports_more_honestly() {
    let store = store_with(&["p1", "p2", "p3", "q"]);
    let (page, more) = store.scan(b"p", None, 2);
    assert_eq!(keys(&page), [&b"p1"[..], b"p2"]);
    assert!(more);
    // Exactly at the limit: nothing more with the prefix, even though "q" follows.
    let (page, more) = store.scan(b"p", None, 3);
    assert_eq!(page.len(), 3);
    assert!(!more);
    // Limit 0 returns nothing but still says whether anything matches.
    assert_eq!(store.scan(b"p", None, 0), (vec![], true));
    assert_eq!(store.scan(b"z", None, 0), (vec![], false));
}

#[test]
fn scan_within_ends_a_page_at_its_byte_budget() {
    // Each key is 2 bytes and each value 1 byte ("v"): 3 bytes per entry.
    let store = store_with(&["p1", "p2", "p3", "p4"]);
    let (page, more) = store.scan_within(b"p", None, 100, 6);
    assert_eq!(keys(&page), [&b"p1"[..], b"p2"]);
    assert!(more);
    // The entry that crosses the budget is included, so a page is never empty while keys remain.
    let (page, more) = store.scan_within(b"p", Some(b"p2"), 100, 1);
    assert_eq!(keys(&page), [&b"p3"[..]]);
    assert!(more);
    let (page, more) = store.scan_within(b"p", Some(b"p3"), 100, 1_000);
    assert_eq!(keys(&page), [&b"p4"[..]]);
    assert!(!more);
}

#[test]
fn scan_after_pages_through_keys() {
    let store = store_with(&["p1", "p2", "p3", "p4", "p5"]);
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (page, more) = store.scan(b"p", after.as_deref(), 2);
        seen.extend(page.iter().map(|(key, _)| key.clone()));
        after = page.last().map(|(key, _)| key.clone());
        if !more {
            break;
        }
    }
    let expected: Vec<Vec<u8>> = ["p1", "p2", "p3", "p4", "p5"].iter().map(|k| k.as_bytes().to_vec()).collect();
    assert_eq!(seen, expected);
}

#[test]
fn scan_after_outside_prefix() {
    let store = store_with(&["a", "b1", "b2", "c"]);
    // `after` before the prefix range: scan starts at the prefix.
    let (page, more) = store.scan(b"b", Some(b"a"), 10);
    assert_eq!(keys(&page), [&b"b1"[..], b"b2"]);
    assert!(!more);
    // `after` beyond the prefix range: nothing.
    assert_eq!(store.scan(b"b", Some(b"c"), 10), (vec![], false));
    // `after` equal to a key that need not exist: strictly after it.
    let (page, _) = store.scan(b"b", Some(b"b10"), 10);
    assert_eq!(keys(&page), [&b"b2"[..]]);
    // `after` equal to the prefix itself excludes a key equal to the prefix.
    let store = store_with(&["b", "b1"]);
    let (page, _) = store.scan(b"b", Some(b"b"), 10);
    assert_eq!(keys(&page), [&b"b1"[..]]);
}

#[test]
fn scan_handles_binary_keys() {
    let mut store = KvStore::new();
    for (i, key) in [vec![0xff], vec![0xff, 0x00], vec![0xff, 0xff], vec![0x00]].into_iter().enumerate() {
        let command = Command::Put { key, value: vec![], cas: None };
        store.apply_command(i as u64 + 1, &command);
    }
    let (page, more) = store.scan(&[0xff], None, 10);
    assert_eq!(keys(&page), [&[0xff][..], &[0xff, 0x00], &[0xff, 0xff]]);
    assert!(!more);
}
