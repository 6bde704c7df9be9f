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
    // Changing the format must be a deliberate, versioned decision: this pins version 3.
    let mut store = KvStore::new();
    store.apply_command(2, &Command::Put { key: b"k".to_vec(), value: b"v".to_vec(), cas: None });
    let snapshot = store.snapshot();
    let mut expected = b"TKVS\x03".to_vec();
    expected.extend_from_slice(&2u64.to_le_bytes());
    expected.extend_from_slice(&1u64.to_le_bytes());
    expected.extend_from_slice(&entry(b"k", 2, 2));
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
    assert!(matches!(KvStore::restore(b"TKVS\x04rest-of-file"), Err(DecodeError::UnknownVersion { found: 4, .. })));
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
