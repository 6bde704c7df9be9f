//! `kv_snapshot`: a snapshot as a node restores it: the node's envelope ([`decode_snapshot`]: membership, then the
//! state machine's bytes) and the kv store's snapshot inside it ([`KvStore::restore`]).
//!
//! # Input
//!
//! ```text
//! byte 0  flags: 0x01 recompute the kv snapshot's trailing CRC32, so mutated snapshots reach the parser;
//!                0x02 the rest is a node snapshot (membership, then the kv snapshot), else a bare kv snapshot
//! rest    the snapshot
//! ```
//!
//! # Oracles
//!
//! - A restored store re-encodes to exactly its snapshot (the encoding is canonical), keeps its invariants, and
//!   takes the next log entry. A snapshot of the previous format (version 3, still read) re-encodes in the current
//!   one instead, which restores to the same store.
//! - A decoded node envelope re-encodes to bytes that decode to the same membership and state.

use std::collections::BTreeSet;

use tally_kv::{Command, KvStore};
use tally_node::codec::{decode_snapshot, encode_snapshot};
use tally_raft::{Membership, NodeId};

use crate::Seed;

/// Flag: recompute the trailing CRC32 of the kv snapshot.
const FIX_CHECKSUM: u8 = 0x01;

/// Flag: the input is a node snapshot.
const NODE_ENVELOPE: u8 = 0x02;

/// Bytes of the kv snapshot's trailing checksum.
const CHECKSUM_BYTES: usize = 4;

/// Bytes of the kv snapshot's magic, so also the offset of its format version byte.
const MAGIC_BYTES: usize = 4;

/// The previous kv snapshot format version, still read (version 3: entries without a version count).
const PREVIOUS_VERSION: u8 = 3;

/// Runs one input (see the module documentation); panics on a finding.
pub fn run(data: &[u8]) {
    let Some((&flags, snapshot)) = data.split_first() else { return };
    let state = if flags & NODE_ENVELOPE != 0 {
        let Ok((membership, state)) = decode_snapshot(snapshot) else { return };
        let again = encode_snapshot(&membership, &state);
        assert_eq!(decode_snapshot(&again), Ok((membership, state.clone())), "node snapshot round trip");
        state
    } else {
        snapshot.to_vec()
    };
    let mut state = state;
    if flags & FIX_CHECKSUM != 0 {
        fix_checksum(&mut state);
    }
    let Ok(mut store) = KvStore::restore(&state) else { return };
    if state.get(MAGIC_BYTES) == Some(&PREVIOUS_VERSION) {
        let again = KvStore::restore(&store.snapshot());
        assert!(again.as_ref() == Ok(&store), "a version 3 snapshot re-encodes to another state");
    } else {
        assert!(store.snapshot() == state, "a restored store re-encodes to another snapshot");
    }
    store.check_invariants();
    let checksum = store.state_checksum();
    assert_eq!(KvStore::restore(&store.snapshot()).map(|s| s.state_checksum()), Ok(checksum), "checksum changed");

    // Phase: the restored store applies the next entry and stays sound.
    let Some(index) = store.applied_index().checked_add(1) else { return };
    let overwrite = store.scan(b"", None, 1).0.first().map_or_else(|| b"fresh".to_vec(), |(key, _)| key.clone());
    let modify_index = store.get(&overwrite).map_or(0, |versioned| versioned.modify_index);
    let command = Command::Put { key: overwrite, value: b"after restore".to_vec(), cas: Some(modify_index) };
    store.apply_command(index, &command);
    store.check_invariants();
    assert_eq!(KvStore::restore(&store.snapshot()).as_ref(), Ok(&store), "snapshot after a write");
}

/// Rewrites the trailing CRC32 (IEEE) of a kv snapshot to match the bytes before it.
pub fn fix_checksum(snapshot: &mut [u8]) {
    let Some(body) = snapshot.len().checked_sub(CHECKSUM_BYTES) else { return };
    let checksum = crc32fast::hash(&snapshot[..body]);
    snapshot[body..].copy_from_slice(&checksum.to_le_bytes());
}

/// A store built by applying `commands` at indexes 1, 2, ...
fn store(commands: &[Command]) -> KvStore {
    let mut store = KvStore::new();
    for (index, command) in (1..).zip(commands) {
        store.apply_command(index, command);
    }
    store
}

/// A version 3 kv snapshot (the format before key versions), written by hand as no encoder makes it any more: applied
/// index 4, key "a" created at 1 and last written at 4 (value "old"), no cluster metadata, auth off.
fn snapshot_v3() -> Vec<u8> {
    let mut out = b"TKVS".to_vec();
    out.push(PREVIOUS_VERSION);
    out.extend_from_slice(&4u64.to_le_bytes()); // applied index
    out.extend_from_slice(&1u64.to_le_bytes()); // one entry
    for field in [&b"a"[..], b"old"] {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&1u64.to_le_bytes()); // create index
    out.extend_from_slice(&4u64.to_le_bytes()); // modify index
    out.push(0); // no cluster id
    out.extend_from_slice(&0u64.to_le_bytes()); // no members
    out.push(0); // auth off
    out.extend_from_slice(&0u64.to_le_bytes()); // no users
    out.extend_from_slice(&0u64.to_le_bytes()); // no roles
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// A put without cas.
fn put(key: &[u8], value: &[u8]) -> Command {
    Command::Put { key: key.to_vec(), value: value.to_vec(), cas: None }
}

/// Snapshots of empty, small, binary and metadata-carrying stores, bare and in a node envelope.
pub fn seeds() -> Vec<Seed> {
    let member = |id, host: &str| Command::SetMember {
        id,
        peer_url: format!("http://{host}:7101"),
        client_url: format!("http://{host}:7001"),
        incarnation: id * 1000 + 7,
    };
    let stores = [
        ("empty", KvStore::new()),
        ("skipped-entries", {
            let mut store = KvStore::new();
            store.skip(5);
            store
        }),
        ("small", store(&[put(b"a", b"1"), put(b"b", b"2"), put(b"a", b"3"), put(b"c", b"")])),
        ("binary", store(&[put(&[0], &[0xff; 8]), put(&[0xff, 0], b"\xc3\x28"), put(b"", b"empty key")])),
        ("deleted", store(&[put(b"x", b"1"), put(b"y", b"2"), Command::Delete { key: b"x".to_vec(), cas: None }])),
        (
            "versions",
            store(&[
                put(b"v", b"1"),
                put(b"v", b"2"),
                put(b"v", b"3"),
                put(b"w", b"1"),
                Command::Delete { key: b"w".to_vec(), cas: None },
                put(b"w", b"again"),
            ]),
        ),
        (
            "cluster",
            store(&[
                Command::SetClusterId { cluster_id: "0123456789abcdef".to_owned() },
                member(1, "10.0.0.1"),
                member(2, "10.0.0.2"),
                member(3, "n3.example"),
                put(b"config/leader", b"n1"),
            ]),
        ),
        (
            "many-keys",
            store(&(0..40u32).map(|i| put(format!("key/{i:03}").as_bytes(), &i.to_le_bytes())).collect::<Vec<_>>()),
        ),
    ];
    let membership =
        Membership { voters: BTreeSet::from([NodeId(1), NodeId(2), NodeId(3)]), learners: BTreeSet::from([NodeId(4)]) };
    let mut seeds = Vec::new();
    for (name, store) in &stores {
        let mut bare = vec![FIX_CHECKSUM];
        bare.extend_from_slice(&store.snapshot());
        seeds.push(Seed::new(name, bare));
    }
    for (name, store) in &stores[..3] {
        let mut wrapped = vec![NODE_ENVELOPE | FIX_CHECKSUM];
        wrapped.extend_from_slice(&encode_snapshot(&membership, &store.snapshot()));
        seeds.push(Seed::new(&format!("node-{name}"), wrapped));
    }
    let mut unchecked = vec![0];
    unchecked.extend_from_slice(&stores[2].1.snapshot());
    seeds.push(Seed::new("small-unfixed", unchecked));
    let mut v3 = vec![FIX_CHECKSUM];
    v3.extend_from_slice(&snapshot_v3());
    seeds.push(Seed::new("v3-previous-format", v3));
    seeds
}
