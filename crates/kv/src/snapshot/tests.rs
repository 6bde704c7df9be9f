use super::*;
use crate::{Access, AuthCommand, Command, TokenHash};
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
    let hash = TokenHash([7; 32]);
    let auth = [
        AuthCommand::AddRole { name: "root".into() },
        AuthCommand::GrantPermission { role: "root".into(), prefix: Vec::new(), access: Access::Admin },
        AuthCommand::AddRole { name: "app".into() },
        AuthCommand::GrantPermission { role: "app".into(), prefix: b"app/".to_vec(), access: Access::Write },
        AuthCommand::GrantPermission { role: "app".into(), prefix: vec![0xff], access: Access::Read },
        AuthCommand::AddUser { name: "admin".into(), token_hash: hash, roles: vec!["root".into(), "app".into()] },
        AuthCommand::AddUser { name: "alice".into(), token_hash: hash, roles: vec!["app".into()] },
        AuthCommand::Enable,
    ];
    for (i, command) in auth.into_iter().enumerate() {
        let response = store.apply_command(13 + i as u64, &Command::Auth(command));
        assert!(matches!(response, crate::Response::Auth { .. }), "{response:?}");
    }
    store
}

/// The encoding of an auth state with one user (holding `roles`) and the roles `defined`, each granting admin
/// on everything.
fn auth_state(enabled: bool, roles: &[&str], defined: &[&str]) -> Vec<u8> {
    let mut out = vec![u8::from(enabled)];
    out.put_u64(1);
    out.put_bytes(b"u");
    out.put(&[0; 32]);
    out.put_u64(roles.len() as u64);
    for role in roles {
        out.put_bytes(role.as_bytes());
    }
    out.put_u64(defined.len() as u64);
    for role in defined {
        out.put_bytes(role.as_bytes());
        out.put_u64(1);
        out.put_bytes(b"");
        out.put_u8(3);
    }
    out
}

/// The state encoding of an empty store at applied index 5 followed by `auth` as its auth state.
fn state_with_auth(auth: &[u8]) -> Vec<u8> {
    let mut state = Vec::new();
    state.put_u64(5);
    state.put_u64(0);
    ClusterInfo::default().write(&mut state);
    state.extend_from_slice(auth);
    state
}

/// A snapshot of the current version with a valid header and checksum around an arbitrary state encoding.
fn seal(state: &[u8]) -> Vec<u8> {
    seal_version(FORMAT_VERSION, state)
}

/// A snapshot of format `version` with a valid header and checksum around an arbitrary state encoding.
fn seal_version(version: u8, state: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(version);
    out.extend_from_slice(state);
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// A version 4 entry with value "v".
fn entry(key: &[u8], create_index: u64, modify_index: u64, version: u64) -> Vec<u8> {
    let mut out = entry_v3(key, create_index, modify_index);
    out.put_u64(version);
    out
}

/// A version 3 entry with value "v": no version field.
fn entry_v3(key: &[u8], create_index: u64, modify_index: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_bytes(key);
    out.put_bytes(b"v");
    out.put_u64(create_index);
    out.put_u64(modify_index);
    out
}

/// The state encoding (v3 and v4 alike after the entries) of a store at `applied_index` holding `entries`
/// (already encoded), with no cluster metadata and auth off.
fn state_with_entries(applied_index: u64, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut state = Vec::new();
    state.put_u64(applied_index);
    state.put_u64(entries.len() as u64);
    for entry in entries {
        state.extend_from_slice(entry);
    }
    ClusterInfo::default().write(&mut state);
    AuthState::default().write(&mut state);
    state
}

#[test]
fn round_trip_preserves_everything() {
    let store = sample_store();
    let restored = KvStore::restore(&store.snapshot());
    assert_eq!(restored.as_ref(), Ok(&store));
    let restored = restored.unwrap_or_default();
    assert_eq!(restored.applied_index(), 20);
    assert!(restored.auth().is_enabled());
    assert_eq!(restored.auth().access("alice", b"app/x"), Some(Access::Write));
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
    // Changing the format must be a deliberate, versioned decision: this pins version 4.
    let mut store = KvStore::new();
    store.apply_command(2, &Command::Put { key: b"k".to_vec(), value: b"v".to_vec(), cas: None });
    store.apply_command(3, &Command::Put { key: b"k".to_vec(), value: b"v".to_vec(), cas: None });
    let snapshot = store.snapshot();
    let mut expected = b"TKVS\x04".to_vec();
    expected.extend_from_slice(&3u64.to_le_bytes());
    expected.extend_from_slice(&1u64.to_le_bytes());
    expected.extend_from_slice(&entry(b"k", 2, 3, 2));
    expected.push(0); // no cluster id
    expected.extend_from_slice(&0u64.to_le_bytes()); // no member addresses
    expected.push(0); // auth disabled
    expected.extend_from_slice(&0u64.to_le_bytes()); // no users
    expected.extend_from_slice(&0u64.to_le_bytes()); // no roles
    let checksum = crc32fast::hash(&expected);
    expected.extend_from_slice(&checksum.to_le_bytes());
    assert_eq!(snapshot, expected);
    // FNV-1a 64 of the state bytes, computed independently.
    assert_eq!(store.state_checksum(), fnv1a_reference(&expected[5..expected.len() - 4]));
}

#[test]
fn state_checksum_tracks_every_part_of_the_state() {
    let store = sample_store();
    let base = store.state_checksum();
    let mut skipped = store.clone();
    skipped.skip(21);
    assert_ne!(skipped.state_checksum(), base);
    let mut changed = store.clone();
    changed.apply_command(21, &Command::Put { key: b"a".to_vec(), value: b"one".to_vec(), cas: None });
    let mut only_index = store.clone();
    only_index.skip(21);
    assert_ne!(changed.state_checksum(), only_index.state_checksum());
    // The auth state counts too: a lowered permission changes the checksum.
    let mut lowered = store.clone();
    let lower = AuthCommand::GrantPermission { role: "app".into(), prefix: b"app/".to_vec(), access: Access::Read };
    assert!(matches!(lowered.apply_command(21, &Command::Auth(lower)), crate::Response::Auth { .. }));
    let mut skipped = store.clone();
    skipped.skip(21);
    assert_ne!(lowered.state_checksum(), skipped.state_checksum());
}

/// FNV-1a 64 written out independently of `codec::Fnv1a`.
fn fnv1a_reference(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn inconsistent_auth_states_are_rejected() {
    // Phase 1: a consistent one restores.
    let good = state_with_auth(&auth_state(true, &["root"], &["root"]));
    let store = KvStore::restore(&seal(&good)).expect("consistent");
    assert!(store.auth().has_root_admin());

    // Phase 2: a user holding a role that does not exist, and auth enabled with no admin, are not states any
    // log could build.
    let dangling = state_with_auth(&auth_state(false, &["ghost"], &[]));
    assert!(matches!(KvStore::restore(&seal(&dangling)), Err(DecodeError::BadAuthState { offset: 30, .. })));
    let locked_out = state_with_auth(&auth_state(true, &[], &["root"]));
    assert!(matches!(KvStore::restore(&seal(&locked_out)), Err(DecodeError::BadAuthState { .. })));

    // Phase 3: names out of order, a bad access byte, a bad flag.
    let unordered = state_with_auth(&auth_state(false, &["b", "a"], &["a", "b"]));
    assert!(matches!(KvStore::restore(&seal(&unordered)), Err(DecodeError::KeysOutOfOrder { .. })));
    let mut bad_access = auth_state(false, &[], &["r"]);
    *bad_access.last_mut().expect("access byte") = 9;
    assert!(matches!(
        KvStore::restore(&seal(&state_with_auth(&bad_access))),
        Err(DecodeError::BadTag { what: "access", tag: 9, .. })
    ));
    let mut bad_flag = auth_state(false, &[], &[]);
    bad_flag[0] = 2;
    assert!(matches!(
        KvStore::restore(&seal(&state_with_auth(&bad_flag))),
        Err(DecodeError::BadTag { what: "auth enabled flag", tag: 2, .. })
    ));
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
    assert_eq!(KvStore::restore(&seal(&state)), Err(DecodeError::TrailingBytes { offset: 47, count: 1 }));
}

#[test]
fn header_errors_are_named() {
    assert!(matches!(
        KvStore::restore(b"NOPE\x01rest-of-file"),
        Err(DecodeError::BadMagic { found }) if &found == b"NOPE"
    ));
    assert!(matches!(KvStore::restore(b"TKVS\x02rest-of-file"), Err(DecodeError::UnknownVersion { found: 2, .. })));
    assert!(matches!(KvStore::restore(b"TKVS\x05rest-of-file"), Err(DecodeError::UnknownVersion { found: 5, .. })));
    let message = KvStore::restore(b"TKVS\x05rest-of-file").map(|_| ()).expect_err("version 5 is unknown").to_string();
    assert_eq!(message, "unknown snapshot format version 5 (this build reads versions 3 to 4)");
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
        state.extend_from_slice(&entry(keys[0], 1, 1, 1));
        state.extend_from_slice(&entry(keys[1], 1, 1, 1));
        assert!(matches!(KvStore::restore(&seal(&state)), Err(DecodeError::KeysOutOfOrder { .. })));
    }
}

#[test]
fn entries_breaking_the_index_invariant_are_rejected() {
    for (create_index, modify_index) in [(0, 1), (3, 2), (1, 6)] {
        let mut state = Vec::new();
        state.put_u64(5);
        state.put_u64(1);
        state.extend_from_slice(&entry(b"k", create_index, modify_index, 1));
        assert_eq!(
            KvStore::restore(&seal(&state)),
            Err(DecodeError::BadIndexes { offset: 21, create_index, modify_index, applied_index: 5 })
        );
    }
}

#[test]
fn entries_breaking_the_version_invariant_are_rejected() {
    // Phase 1: a version no higher than the number of entries between create and modify restores.
    let state = state_with_entries(5, &[entry(b"k", 2, 4, 3)]);
    let store = KvStore::restore(&seal(&state)).expect("version 3 fits in indexes 2..=4");
    assert_eq!(store.get(b"k").map(|v| v.version), Some(3));

    // Phase 2: version 0 (a key never written) and more writes than entries are both refused by name.
    for (version, create_index, modify_index) in [(0, 2, 4), (4, 2, 4), (2, 3, 3)] {
        let state = state_with_entries(5, &[entry(b"k", create_index, modify_index, version)]);
        assert_eq!(
            KvStore::restore(&seal(&state)),
            Err(DecodeError::BadVersion { offset: 21, version, create_index, modify_index })
        );
    }
}

#[test]
fn snapshot_v3_restores_with_version_one() {
    // Phase 1: a version 3 snapshot, as the docker volumes of nodes from before this format hold, written by
    // hand: its entries have no version field. "a" was overwritten (create 1, modify 4), "b" was not.
    let state = state_with_entries(6, &[entry_v3(b"a", 1, 4), entry_v3(b"b", 6, 6)]);
    let v3 = seal_version(3, &state);
    let store = KvStore::restore(&v3).expect("this build reads version 3");

    // Phase 2: every key restores with version 1, the indexes as stored.
    store.check_invariants();
    assert_eq!(store.applied_index(), 6);
    let versions: Vec<_> = store
        .scan(b"", None, 10)
        .0
        .into_iter()
        .map(|(key, v)| (key, v.create_index, v.modify_index, v.version))
        .collect();
    assert_eq!(versions, [(b"a".to_vec(), 1, 4, 1), (b"b".to_vec(), 6, 6, 1)]);

    // Phase 3: it re-encodes as version 4 (same state, new bytes), and the next write counts from 1.
    let v4 = store.snapshot();
    assert_eq!(v4[4], 4);
    assert_eq!(KvStore::restore(&v4).as_ref(), Ok(&store));
    let mut store = store;
    store.apply_command(7, &Command::Put { key: b"a".to_vec(), value: b"w".to_vec(), cas: None });
    assert_eq!(store.get(b"a").map(|v| v.version), Some(2));
}

#[test]
fn snapshot_v3_is_checked_like_v4() {
    // A v3 entry with bad indexes is refused just the same; a v3 body with a v4 entry in it is not v3.
    let bad = state_with_entries(5, &[entry_v3(b"k", 3, 2)]);
    assert!(matches!(KvStore::restore(&seal_version(3, &bad)), Err(DecodeError::BadIndexes { .. })));
    let v4_body = state_with_entries(5, &[entry(b"k", 1, 1, 1)]);
    assert!(KvStore::restore(&seal_version(3, &v4_body)).is_err());
    // And a v4 header around a v3 body is refused too: the version byte decides the layout.
    let v3_body = state_with_entries(5, &[entry_v3(b"k", 1, 1)]);
    assert!(KvStore::restore(&seal(&v3_body)).is_err());
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
        // The same garbage read as version 3: whatever restores is sound and re-encodes as version 4.
        if let Ok(store) = KvStore::restore(&seal_version(3, &state)) {
            store.check_invariants();
            let again = KvStore::restore(&store.snapshot());
            prop_assert_eq!(again.as_ref(), Ok(&store));
        }
    }
}
