//! Model-based test: the `KvStore` against a naive `BTreeMap` model, over random command
//! sequences with few keys (so they collide) and cas values that are sometimes right.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tally_kv::{AuthState, Command, KvStore, Response, Versioned};

/// key -> (value, create_index, modify_index, version).
type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64, u64, u64)>;

/// The naive model of the cluster metadata: the first cluster id, and id -> (peer URL, client URL).
#[derive(Debug, Default)]
struct Meta {
    cluster_id: Option<String>,
    members: BTreeMap<u64, (String, String, u64)>,
    /// The auth state has a model test of its own (`auth_model.rs`); here it is only carried along, for the
    /// rare garbage payload that decodes as an auth command.
    auth: AuthState,
}

/// How a step picks its cas condition.
#[derive(Debug, Clone)]
enum Cas {
    /// No condition.
    None,
    /// "Only if absent".
    Zero,
    /// The key's current modify index in the model (so it succeeds).
    Current,
    /// A small arbitrary index, which sometimes matches by chance.
    Fixed(u64),
}

/// One step of the workload.
#[derive(Debug, Clone)]
enum Step {
    Put {
        key: u8,
        value: u8,
        cas: Cas,
    },
    Delete {
        key: u8,
        cas: Cas,
    },
    /// Delete every key under `k/{n}` (n < 2 matches keys), or under a single key's bytes.
    DeletePrefix {
        prefix: u8,
        whole_key: bool,
    },
    /// A no-op or membership entry.
    Skip,
    /// A payload that does not decode.
    Garbage(Vec<u8>),
    /// Replace the store by a restore of its own snapshot.
    SnapshotRestore,
    /// A cluster metadata command.
    Meta(Command),
}

fn arb_cas() -> impl Strategy<Value = Cas> {
    prop_oneof![
        2 => Just(Cas::None),
        1 => Just(Cas::Zero),
        2 => Just(Cas::Current),
        1 => (0u64..12).prop_map(Cas::Fixed),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..4, any::<u8>(), arb_cas()).prop_map(|(key, value, cas)| Step::Put { key, value, cas }),
        3 => (0u8..4, arb_cas()).prop_map(|(key, cas)| Step::Delete { key, cas }),
        1 => (0u8..4, any::<bool>()).prop_map(|(prefix, whole_key)| Step::DeletePrefix { prefix, whole_key }),
        1 => Just(Step::Skip),
        1 => proptest::collection::vec(any::<u8>(), 0..6).prop_map(Step::Garbage),
        1 => Just(Step::SnapshotRestore),
        1 => arb_meta().prop_map(Step::Meta),
    ]
}

fn arb_meta() -> impl Strategy<Value = Command> {
    let url = || "http://[a-c]{1,3}:[0-9]{1,2}";
    prop_oneof![
        (1u64..4, url(), url(), 0u64..3).prop_map(|(id, peer_url, client_url, incarnation)| Command::SetMember {
            id,
            peer_url,
            client_url,
            incarnation
        }),
        (1u64..4).prop_map(|id| Command::RemoveMember { id }),
        "[a-z]{1,4}".prop_map(|cluster_id| Command::SetClusterId { cluster_id }),
    ]
}

/// Keys share prefixes so scans by prefix are meaningful.
fn key_bytes(key: u8) -> Vec<u8> {
    format!("k/{}", key % 2).into_bytes().into_iter().chain([key]).collect()
}

fn resolve(cas: &Cas, model: &Model, key: &[u8]) -> Option<u64> {
    match cas {
        Cas::None => None,
        Cas::Zero => Some(0),
        Cas::Current => Some(model.get(key).map_or(0, |entry| entry.2)),
        Cas::Fixed(index) => Some(*index),
    }
}

/// The naive model of applying `command` at `index`.
fn model_apply(model: &mut Model, meta: &mut Meta, index: u64, command: &Command) -> Response {
    let (key, cas) = match command {
        Command::Put { key, cas, .. } | Command::Delete { key, cas } => (key.clone(), *cas),
        Command::SetMember { id, peer_url, client_url, incarnation } => {
            meta.members.insert(*id, (peer_url.clone(), client_url.clone(), *incarnation));
            return Response::Cluster { index };
        }
        Command::RemoveMember { id } => {
            meta.members.remove(id);
            return Response::Cluster { index };
        }
        Command::SetClusterId { cluster_id } => {
            if meta.cluster_id.is_none() {
                meta.cluster_id = Some(cluster_id.clone());
            }
            return Response::Cluster { index };
        }
        Command::Auth(command) => {
            return match meta.auth.apply(command) {
                Ok(()) => Response::Auth { index },
                Err(error) => Response::AuthRefused { index, error },
            };
        }
        Command::Txn(_) => unreachable!(
            "transactions have a model test of their own (txn_model.rs), and garbage of \
            at most 6 bytes never decodes as one (14 bytes at least)"
        ),
        Command::DeletePrefix { prefix } => {
            let before = model.len();
            model.retain(|key, _| !key.starts_with(prefix));
            return Response::DeletePrefix { index, deleted: (before - model.len()) as u64 };
        }
    };
    let current = model.get(&key).map_or(0, |entry| entry.2);
    if cas.is_some_and(|cas| cas != current) {
        return Response::CasFailed { index, current_modify_index: current };
    }
    match command {
        Command::Put { value, .. } => {
            let (create, version) = model.get(&key).map_or((index, 1), |entry| (entry.1, entry.3 + 1));
            model.insert(key, (value.clone(), create, index, version));
            Response::Put { index }
        }
        Command::Delete { .. } => Response::Delete { index, deleted: model.remove(&key).is_some() },
        _ => unreachable!("metadata commands returned above"),
    }
}

fn assert_same(store: &KvStore, model: &Model, meta: &Meta, applied_index: u64) -> Result<(), TestCaseError> {
    store.check_invariants();
    prop_assert_eq!(&store.cluster().cluster_id, &meta.cluster_id);
    let members: BTreeMap<u64, (String, String, u64)> = store
        .cluster()
        .members
        .iter()
        .map(|(id, a)| (*id, (a.peer_url.clone(), a.client_url.clone(), a.incarnation)))
        .collect();
    prop_assert_eq!(&members, &meta.members);
    prop_assert_eq!(store.auth().as_ref(), &meta.auth);
    prop_assert_eq!(store.applied_index(), applied_index);
    prop_assert_eq!(store.len(), model.len());
    let (all, more) = store.scan(b"", None, usize::MAX);
    prop_assert!(!more);
    let expected: Vec<(Vec<u8>, Versioned)> = model
        .iter()
        .map(|(key, (value, create_index, modify_index, version))| {
            let versioned = Versioned {
                value: value.clone(),
                create_index: *create_index,
                modify_index: *modify_index,
                version: *version,
            };
            (key.clone(), versioned)
        })
        .collect();
    prop_assert_eq!(&all, &expected);
    for (key, versioned) in &expected {
        prop_assert_eq!(store.get(key), Some(versioned));
    }
    // A prefix scan with a small limit agrees with filtering the model.
    let prefixed: Vec<_> = expected.iter().filter(|(key, _)| key.starts_with(b"k/1")).cloned().collect();
    let (page, more) = store.scan(b"k/1", None, 1);
    prop_assert_eq!(&page[..], &prefixed[..prefixed.len().min(1)]);
    prop_assert_eq!(more, prefixed.len() > 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn store_matches_naive_model(
        steps in proptest::collection::vec((arb_step(), 1u64..3, any::<bool>()), 1..60),
    ) {
        let mut store = KvStore::new();
        let mut model = Model::new();
        let mut meta = Meta::default();
        let mut index = 0;
        for (step, gap, encoded) in steps {
            index += gap;
            match step {
                Step::Put { key, value, cas } => {
                    let key = key_bytes(key);
                    let cas = resolve(&cas, &model, &key);
                    let command = Command::Put { key, value: vec![value; usize::from(value % 3)], cas };
                    let expected = model_apply(&mut model, &mut meta, index, &command);
                    let actual = if encoded { store.apply(index, &command.encode()) } else { store.apply_command(index, &command) };
                    prop_assert_eq!(actual, expected);
                }
                Step::Delete { key, cas } => {
                    let key = key_bytes(key);
                    let cas = resolve(&cas, &model, &key);
                    let command = Command::Delete { key, cas };
                    let expected = model_apply(&mut model, &mut meta, index, &command);
                    let actual = if encoded { store.apply(index, &command.encode()) } else { store.apply_command(index, &command) };
                    prop_assert_eq!(actual, expected);
                }
                Step::DeletePrefix { prefix, whole_key } => {
                    let prefix = if whole_key { key_bytes(prefix) } else { format!("k/{prefix}").into_bytes() };
                    let command = Command::DeletePrefix { prefix };
                    let expected = model_apply(&mut model, &mut meta, index, &command);
                    let actual = if encoded { store.apply(index, &command.encode()) } else { store.apply_command(index, &command) };
                    prop_assert_eq!(actual, expected);
                }
                Step::Skip => store.skip(index),
                Step::Garbage(bytes) => match Command::decode(&bytes) {
                    Ok(command) => {
                        let expected = model_apply(&mut model, &mut meta, index, &command);
                        prop_assert_eq!(store.apply(index, &bytes), expected);
                    }
                    Err(error) => {
                        let expected = Response::Invalid { index, reason: error.to_string() };
                        prop_assert_eq!(store.apply(index, &bytes), expected);
                    }
                },
                Step::Meta(command) => {
                    let expected = model_apply(&mut model, &mut meta, index, &command);
                    let actual = if encoded { store.apply(index, &command.encode()) } else { store.apply_command(index, &command) };
                    prop_assert_eq!(actual, expected);
                }
                Step::SnapshotRestore => {
                    // No entry is consumed; undo the gap so indexes stay comparable.
                    index -= gap;
                    let checksum = store.state_checksum();
                    let restored = KvStore::restore(&store.snapshot());
                    prop_assert_eq!(restored.as_ref(), Ok(&store));
                    store = restored.map_err(|error| TestCaseError::fail(error.to_string()))?;
                    prop_assert_eq!(store.state_checksum(), checksum);
                }
            }
            assert_same(&store, &model, &meta, index)?;
        }
    }

    #[test]
    fn same_commands_give_same_bytes(
        steps in proptest::collection::vec((0u8..4, any::<u8>(), any::<bool>()), 0..40),
    ) {
        // Two replicas applying the same log must agree byte for byte.
        let mut replicas = [KvStore::new(), KvStore::new()];
        for (i, (key, value, is_put)) in steps.into_iter().enumerate() {
            let key = key_bytes(key);
            let command = if is_put {
                Command::Put { key, value: vec![value], cas: None }
            } else {
                Command::Delete { key, cas: None }
            };
            let payload = command.encode();
            let [a, b] = &mut replicas;
            prop_assert_eq!(a.apply(i as u64 + 1, &payload), b.apply(i as u64 + 1, &payload));
        }
        let [a, b] = &replicas;
        prop_assert_eq!(a.snapshot(), b.snapshot());
        prop_assert_eq!(a.state_checksum(), b.state_checksum());
    }
}
