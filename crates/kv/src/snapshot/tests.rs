use super::*;
use crate::Command;
use proptest::prelude::*;

fn sample_store() -> KvStore {
    let mut store = KvStore::new();
    let commands = [("b", &b"two"[..]), ("a", b"one"), ("c", b""), ("b", b"two again")];
    for (i, (key, value)) in commands.iter().enumerate() {
        let command = Command::Put { key: key.as_bytes().to_vec(), value: value.to_vec(), cas: None };
        store.apply_command(i as u64 + 1, &command);
    }
    store.apply_command(9, &Command::Delete { key: b"c".to_vec(), cas: None });
    store.apply_command(10, &Command::SetClusterId { cluster_id: "c-1".to_string() });
    let member = Command::SetMember {
        id: 3,
        peer_url: "http://p:1".to_string(),
        client_url: "http://c:2".to_string(),
        incarnation: 0xfeed,
    };
    store.apply_command(11, &member);
    store.skip(12);
    store
}

/// A snapshot with a valid header and checksum around an arbitrary state encoding.
fn seal(state: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT_VERSION);
    out.extend_from_slice(state);
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

fn entry(key: &[u8], create_index: u64, modify_index: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_bytes(key);
    out.put_bytes(b"v");
    out.put_u64(create_index);
    out.put_u64(modify_index);
    out
}

#[test]
fn round_trip_preserves_everything() {
    let store = sample_store();
    let restored = KvStore::restore(&store.snapshot());
    assert_eq!(restored.as_ref(), Ok(&store));
    let restored = restored.unwrap_or_default();
    assert_eq!(restored.applied_index(), 12);
    assert_eq!(restored.state_checksum(), store.state_checksum());
    assert_eq!(restored.snapshot(), store.snapshot());
}

#[test]
fn empty_store_round_trips() {
    let store = KvStore::new();
    assert_eq!(KvStore::restore(&store.snapshot()), Ok(store));
}

#[test]
fn snapshot_bytes_are_pinned() {
    // Changing the format must be a deliberate, versioned decision: this pins version 2.
    let mut store = KvStore::new();
    store.apply_command(2, &Command::Put { key: b"k".to_vec(), value: b"v".to_vec(), cas: None });
    let snapshot = store.snapshot();
    let mut expected = b"TKVS\x02".to_vec();
    expected.extend_from_slice(&2u64.to_le_bytes());
    expected.extend_from_slice(&1u64.to_le_bytes());
    expected.extend_from_slice(&entry(b"k", 2, 2));
    expected.push(0); // no cluster id
    expected.extend_from_slice(&0u64.to_le_bytes()); // no member addresses
    let checksum = crc32fast::hash(&expected);
    expected.extend_from_slice(&checksum.to_le_bytes());
    assert_eq!(snapshot, expected);
    // FNV-1a 64 of the state bytes, computed independently.
    assert_eq!(store.state_checksum(), 0x16e4_e5e6_e4eb_68ab);
}

#[test]
fn state_checksum_tracks_every_part_of_the_state() {
    let store = sample_store();
    let base = store.state_checksum();
    let mut skipped = store.clone();
    skipped.skip(13);
    assert_ne!(skipped.state_checksum(), base);
    let mut changed = store.clone();
    changed.apply_command(13, &Command::Put { key: b"a".to_vec(), value: b"one".to_vec(), cas: None });
    let mut only_index = store.clone();
    only_index.skip(13);
    assert_ne!(changed.state_checksum(), only_index.state_checksum());
}

#[test]
fn every_corrupted_byte_is_detected() {
    let snapshot = sample_store().snapshot();
    for position in 0..snapshot.len() {
        let mut corrupted = snapshot.clone();
        corrupted[position] ^= 0x01;
        assert!(KvStore::restore(&corrupted).is_err(), "flipped bit at {position} went undetected");
    }
}

#[test]
fn every_truncation_is_detected() {
    let snapshot = sample_store().snapshot();
    for len in 0..snapshot.len() {
        assert!(KvStore::restore(&snapshot[..len]).is_err(), "truncation to {len} went undetected");
    }
}

#[test]
fn trailing_bytes_are_detected() {
    let mut snapshot = sample_store().snapshot();
    snapshot.push(0);
    assert!(KvStore::restore(&snapshot).is_err());
    // Even with a checksum that covers them, extra bytes are rejected by name.
    let mut state = Vec::new();
    KvStore::new().write_state(&mut state);
    state.push(0);
    assert_eq!(KvStore::restore(&seal(&state)), Err(DecodeError::TrailingBytes { offset: 30, count: 1 }));
}

#[test]
fn header_errors_are_named() {
    assert!(matches!(
        KvStore::restore(b"NOPE\x01rest-of-file"),
        Err(DecodeError::BadMagic { found }) if &found == b"NOPE"
    ));
    assert!(matches!(KvStore::restore(b"TKVS\x03rest-of-file"), Err(DecodeError::UnknownVersion { found: 3, .. })));
    assert!(matches!(KvStore::restore(b"TK"), Err(DecodeError::Truncated { offset: 0, .. })));
    let mut snapshot = sample_store().snapshot();
    let last = snapshot.len() - 1;
    snapshot[last] ^= 0xff;
    assert!(matches!(KvStore::restore(&snapshot), Err(DecodeError::ChecksumMismatch { .. })));
}

#[test]
fn non_canonical_key_order_is_rejected() {
    for keys in [[&b"b"[..], b"a"], [b"a", b"a"]] {
        let mut state = Vec::new();
        state.put_u64(5);
        state.put_u64(2);
        state.extend_from_slice(&entry(keys[0], 1, 1));
        state.extend_from_slice(&entry(keys[1], 1, 1));
        assert!(matches!(KvStore::restore(&seal(&state)), Err(DecodeError::KeysOutOfOrder { .. })));
    }
}

#[test]
fn entries_breaking_the_index_invariant_are_rejected() {
    for (create_index, modify_index) in [(0, 1), (3, 2), (1, 6)] {
        let mut state = Vec::new();
        state.put_u64(5);
        state.put_u64(1);
        state.extend_from_slice(&entry(b"k", create_index, modify_index));
        assert_eq!(
            KvStore::restore(&seal(&state)),
            Err(DecodeError::BadIndexes { offset: 21, create_index, modify_index, applied_index: 5 })
        );
    }
}

#[test]
fn huge_entry_count_is_truncation() {
    let mut state = Vec::new();
    state.put_u64(5);
    state.put_u64(u64::MAX);
    assert!(matches!(KvStore::restore(&seal(&state)), Err(DecodeError::Truncated { offset: 21, .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = KvStore::restore(&bytes);
    }

    #[test]
    fn random_sealed_state_never_panics(state in proptest::collection::vec(any::<u8>(), 0..96)) {
        // A valid checksum around garbage exercises the parser beyond the CRC check.
        if let Ok(store) = KvStore::restore(&seal(&state)) {
            store.check_invariants();
            prop_assert_eq!(store.snapshot(), seal(&state));
        }
    }
}
