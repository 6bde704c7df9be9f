//! The key/value state: a byte-ordered map plus the index of the last applied log entry.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::ops::Bound;
use std::sync::Arc;

use crate::{AuthCommand, AuthState, ClusterInfo, Command, MemberAddress, Response};

/// A stored value and its versions.
///
/// Invariant: `1 <= create_index <= modify_index <= applied_index` of the owning store, and
/// `1 <= version <= modify_index - create_index + 1` (each write since creation has its own entry index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value bytes, opaque to the store.
    pub value: Vec<u8>,
    /// Index of the entry that created the key (since its last delete); lets clients tell a
    /// recreated key from one that was only overwritten.
    pub create_index: u64,
    /// Index of the entry that last wrote the key; the value compared by cas.
    pub modify_index: u64,
    /// How many times the key was written since it was created: 1 on create, +1 per overwrite. A delete
    /// removes the key, so a re-created key starts at 1 again (etcd's semantics), which lets a transaction
    /// compare on "written exactly once" or "unchanged since I read version N" without knowing indexes.
    pub version: u64,
}

/// The deterministic key/value state machine, fed committed log entries in log order.
///
/// Invariant: every stored key has `1 <= create_index <= modify_index <= applied_index` and
/// `1 <= version <= modify_index - create_index + 1`; checked per key as it changes, and for the whole
/// store by [`KvStore::check_invariants`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStore {
    /// All live keys. A `BTreeMap` so scans and snapshots iterate in one order on every node.
    pub(crate) entries: BTreeMap<Vec<u8>, Versioned>,
    /// Index of the last entry applied or skipped; 0 before any. Only ever increases, so a
    /// restart or a restored snapshot knows where in the log to resume.
    pub(crate) applied_index: u64,
    /// The cluster's id and member addresses, replicated like keys but outside the key space.
    pub(crate) cluster: ClusterInfo,
    /// Users, roles and whether auth is on, replicated like keys but outside the key space. Shared, copied on
    /// write: the server publishes this `Arc` to its request handlers after each apply without copying the state,
    /// and the next auth change copies it once (`Arc::make_mut`) instead of changing what they read.
    pub(crate) auth: Arc<AuthState>,
}

impl KvStore {
    /// An empty store that has applied nothing.
    pub fn new() -> Self {
        KvStore::default()
    }

    /// Applies the encoded command in entry `index`.
    ///
    /// A payload that does not decode, or decodes to a transaction that breaks [`crate::Txn::validate`],
    /// still advances `applied_index` and yields [`Response::Invalid`], nothing written: the outcome is
    /// deterministic, so every node agrees on it.
    ///
    /// # Panics
    ///
    /// If `index <= applied_index()`: entries are applied once each, in log order. Gaps are
    /// allowed (no-op and membership entries never reach the store).
    pub fn apply(&mut self, index: u64, command: &[u8]) -> Response {
        match Command::decode(command) {
            Ok(command) => self.apply_command(index, &command),
            Err(error) => {
                self.advance(index);
                Response::Invalid { index, reason: error.to_string() }
            }
        }
    }

    /// Applies an already decoded command in entry `index`; same contract as [`KvStore::apply`].
    ///
    /// # Panics
    ///
    /// If `index <= applied_index()`.
    pub fn apply_command(&mut self, index: u64, command: &Command) -> Response {
        self.advance(index);
        let current_modify_index = command.key().and_then(|key| self.get(key)).map_or(0, |v| v.modify_index);
        if let Some(expected) = command.cas() {
            if expected != current_modify_index {
                return Response::CasFailed { index, current_modify_index };
            }
        }
        match command {
            Command::Put { key, value, .. } => {
                self.write_key(index, key, value);
                Response::Put { index }
            }
            Command::Delete { key, .. } => Response::Delete { index, deleted: self.remove_key(index, key).is_some() },
            Command::DeletePrefix { prefix } => {
                Response::DeletePrefix { index, deleted: self.remove_prefix(index, prefix) }
            }
            Command::SetMember { id, peer_url, client_url, incarnation } => {
                let (peer_url, client_url) = (peer_url.clone(), client_url.clone());
                let address = MemberAddress { peer_url, client_url, incarnation: *incarnation };
                self.cluster.members.insert(*id, address);
                Response::Cluster { index }
            }
            Command::RemoveMember { id } => {
                self.cluster.members.remove(id);
                Response::Cluster { index }
            }
            Command::SetClusterId { cluster_id } => {
                self.cluster.cluster_id.get_or_insert_with(|| cluster_id.clone());
                Response::Cluster { index }
            }
            Command::Auth(command) => self.apply_auth(index, command),
            Command::Txn(txn) => self.apply_txn(index, txn),
        }
    }

    /// The cluster's id and member addresses.
    pub fn cluster(&self) -> &ClusterInfo {
        &self.cluster
    }

    /// Users, roles and whether auth is on, shared: cheap to clone, and a new `Arc` after every change (compare
    /// with [`Arc::ptr_eq`] to notice one).
    pub fn auth(&self) -> &Arc<AuthState> {
        &self.auth
    }

    /// Applies an auth command: validated first, so a refused one neither changes nor copies the state.
    fn apply_auth(&mut self, index: u64, command: &AuthCommand) -> Response {
        if let Err(error) = self.auth.validate(command) {
            return Response::AuthRefused { index, error };
        }
        let applied = Arc::make_mut(&mut self.auth).apply(command);
        assert!(applied.is_ok(), "auth command {command:?} passed validation but failed to apply: {applied:?}");
        Response::Auth { index }
    }

    /// Records that entry `index` was applied but carried no key/value command.
    ///
    /// # Panics
    ///
    /// If `index <= applied_index()`.
    pub fn skip(&mut self, index: u64) {
        self.advance(index);
    }

    /// Index of the last entry applied or skipped; 0 before any.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&Versioned> {
        self.entries.get(key)
    }

    /// Keys starting with `prefix`, strictly after `after` if given, in key order, at most
    /// `limit` of them, and whether more matching keys remain past the last one returned.
    ///
    /// `limit == 0` returns no entries, and `more` still says whether any key matches. To page,
    /// pass the last returned key as `after` of the next call.
    pub fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> (Vec<(Vec<u8>, Versioned)>, bool) {
        self.scan_within(prefix, after, limit, usize::MAX)
    }

    /// Like [`KvStore::scan`], but the page also ends once its keys and values add up to `max_bytes` or more
    /// (the entry that crosses the budget is included, so a page is never empty while keys remain): a page of
    /// large values stays bounded in memory.
    pub fn scan_within(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<(Vec<u8>, Versioned)>, bool) {
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut matching =
            self.entries.range::<[u8], _>((start, Bound::Unbounded)).take_while(|(key, _)| key.starts_with(prefix));
        let mut page = Vec::new();
        let mut bytes = 0usize;
        while page.len() < limit && bytes < max_bytes {
            let Some((key, versioned)) = matching.next() else { return (page, false) };
            bytes = bytes.saturating_add(key.len() + versioned.value.len());
            page.push((key.clone(), versioned.clone()));
        }
        let more = matching.next().is_some();
        (page, more)
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no keys are stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks the store invariant for every key, in O(n). Meant for tests and the simulator
    /// after each step; `apply` itself only checks the key it changes.
    ///
    /// # Panics
    ///
    /// If any key breaks `1 <= create_index <= modify_index <= applied_index` or
    /// `1 <= version <= modify_index - create_index + 1`, or the auth state breaks one
    /// of its invariants.
    pub fn check_invariants(&self) {
        for (key, versioned) in &self.entries {
            check_versioned(key, versioned, self.applied_index);
        }
        if let Err(broken) = self.auth.check_invariants() {
            panic!("auth state invariant broken: {broken}");
        }
    }

    /// Moves `applied_index` to `index`, enforcing log order.
    fn advance(&mut self, index: u64) {
        assert!(
            index > self.applied_index,
            "entry {index} applied out of order: applied_index is already {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    /// Creates or overwrites `key` in entry `index` (its conditions, if any, have already passed) and
    /// returns what is now stored.
    ///
    /// One of the two choke points every key mutation goes through (with [`KvStore::remove_key`]): put,
    /// delete, prefix delete and transaction writes alike, so whatever must see every change (the watch
    /// history) hooks in here.
    ///
    /// # Panics
    ///
    /// If `index` is not the entry being applied (`applied_index`).
    pub(crate) fn write_key(&mut self, index: u64, key: &[u8], value: &[u8]) -> &Versioned {
        self.assert_applying(index);
        let versioned = match self.entries.entry(key.to_vec()) {
            Entry::Occupied(existing) => {
                let existing = existing.into_mut();
                existing.value = value.to_vec();
                existing.modify_index = index;
                existing.version += 1;
                existing
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Versioned { value: value.to_vec(), create_index: index, modify_index: index, version: 1 })
            }
        };
        check_versioned(key, versioned, index);
        versioned
    }

    /// Removes `key` in entry `index` and returns what was stored, `None` if it was absent.
    ///
    /// The other choke point of key mutations (see [`KvStore::write_key`]).
    ///
    /// # Panics
    ///
    /// If `index` is not the entry being applied (`applied_index`).
    pub(crate) fn remove_key(&mut self, index: u64, key: &[u8]) -> Option<Versioned> {
        self.assert_applying(index);
        self.entries.remove(key)
    }

    /// Removes every key starting with `prefix` in entry `index`, one by one through
    /// [`KvStore::remove_key`], and returns how many there were.
    pub(crate) fn remove_prefix(&mut self, index: u64, prefix: &[u8]) -> u64 {
        let matching: Vec<Vec<u8>> = self
            .entries
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &matching {
            let removed = self.remove_key(index, key);
            assert!(removed.is_some(), "key {key:?} listed under prefix {prefix:?} was gone before its removal");
        }
        let (_, survivors) = self.scan(prefix, None, 0);
        assert!(!survivors, "keys under prefix {prefix:?} survived its delete");
        matching.len() as u64
    }

    /// Asserts that a key mutation happens in the entry being applied: changes are stamped with the
    /// index of the entry that makes them, never an earlier or later one.
    fn assert_applying(&self, index: u64) {
        assert!(index == self.applied_index, "key changed at index {index} while applying {}", self.applied_index);
    }
}

/// Asserts `1 <= create_index <= modify_index <= applied_index` and
/// `1 <= version <= modify_index - create_index + 1` for one key.
fn check_versioned(key: &[u8], versioned: &Versioned, applied_index: u64) {
    let Versioned { create_index, modify_index, version, .. } = *versioned;
    assert!(create_index >= 1, "key {key:?}: create_index is 0");
    assert!(create_index <= modify_index, "key {key:?}: create_index {create_index} > modify_index {modify_index}");
    assert!(modify_index <= applied_index, "key {key:?}: modify_index {modify_index} > applied_index {applied_index}");
    assert!(version >= 1, "key {key:?}: version is 0");
    let writes_max = modify_index - create_index + 1;
    assert!(
        version <= writes_max,
        "key {key:?}: version {version} > {writes_max} writes possible between create_index {create_index} and \
         modify_index {modify_index}"
    );
}

#[cfg(test)]
mod tests;
mod txn;
