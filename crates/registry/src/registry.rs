//! The membership table and the bootstrap claim: pure and deterministic.
//!
//! No clock, no I/O, no randomness: the caller passes the time in milliseconds (from a monotonic clock) and
//! the seed for cluster ids. The same calls give the same answers, which is what the tests rely on.
//!
//! # The bootstrap rule
//!
//! The first node to claim wins and a cluster id is generated for it. Every later claim, by any node, gets
//! the same winner and cluster id, except in one case: the claim may be **taken over** by another node when
//!
//! 1. the claim is not *confirmed*: the winner has not registered or heartbeated since it claimed, and
//! 2. the winner has been silent (no claim, no heartbeat) for a full TTL, i.e. `now_ms >= seen_ms + ttl_ms`.
//!
//! The winner's own heartbeats keep flowing while it starts its cluster, so a winner that is heard from after
//! winning has started (or is starting) the cluster, and its claim stays for the registry's lifetime: handing
//! it to someone else could give two clusters. A winner that died right after claiming is never heard from
//! again, and after one TTL another node may take over; the takeover gets a **new** cluster id, so a stale
//! winner that comes back can tell (its cluster id differs from the registry's) and must not form a cluster.
//!
//! This is race-free because there is one table behind one lock: [`Registry::bootstrap_claim`] takes
//! `&mut self`, so each claim is one check-and-set that no other call can interleave with.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::{Error, NodeId, validate_url};

/// How the table behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// How long an entry (and an unconfirmed claim) lives without a heartbeat. Nodes heartbeat a few times per
    /// TTL, so one lost heartbeat does not drop them.
    pub ttl_ms: u64,
    /// The most live nodes held at once. A bound on memory: a flood of registrations is refused, not stored.
    pub max_nodes: usize,
    /// The seed that cluster ids derive from: fixed in tests for determinism, random in production so two
    /// registries never hand out the same id.
    pub cluster_id_seed: u64,
}

impl RegistryConfig {
    /// The default TTL (the original project's 5 s).
    pub const TTL_MS_DEFAULT: u64 = 5_000;
    /// The default maximum number of live nodes.
    pub const MAX_NODES_DEFAULT: usize = 1_024;

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `ttl_ms` or `max_nodes` is 0.
    pub fn validate(&self) -> Result<(), Error> {
        if self.ttl_ms == 0 {
            return Err(Error::InvalidConfig("ttl_ms must be at least 1".to_string()));
        }
        if self.max_nodes == 0 {
            return Err(Error::InvalidConfig("max_nodes must be at least 1".to_string()));
        }
        Ok(())
    }
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            ttl_ms: RegistryConfig::TTL_MS_DEFAULT,
            max_nodes: RegistryConfig::MAX_NODES_DEFAULT,
            cluster_id_seed: 0,
        }
    }
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's id.
    pub id: NodeId,
    /// Where clients reach the node (validated `http://host:port`).
    pub client_url: String,
    /// Where peers reach the node (validated `http://host:port`).
    pub peer_url: String,
    /// When the node last registered or heartbeated, in the caller's milliseconds.
    pub last_seen_ms: u64,
}

/// The answer to a bootstrap claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The node that may start the cluster.
    pub winner: NodeId,
    /// The id of the cluster the winner starts.
    pub cluster_id: String,
    /// Whether this call created the claim (first claim or takeover).
    pub new: bool,
}

/// The held bootstrap claim.
///
/// Invariant: `claimed_at_ms <= seen_ms <= now_ms_last`.
#[derive(Clone, Debug)]
struct ClaimState {
    /// The winner.
    winner: NodeId,
    /// The cluster id handed out with this claim.
    cluster_id: String,
    /// When the claim was made.
    claimed_at_ms: u64,
    /// When the winner was last heard from (claim or heartbeat).
    seen_ms: u64,
    /// Whether the winner has registered or heartbeated since claiming; a confirmed claim is never taken over.
    confirmed: bool,
}

/// The membership table. Entries expire `ttl_ms` after their last heartbeat: an entry is live while
/// `now_ms < last_seen_ms + ttl_ms`.
///
/// Invariants (asserted by `check_invariants` after every change):
/// - `nodes.len() <= config.max_nodes`;
/// - every key equals its entry's id, and every `last_seen_ms <= now_ms_last`;
/// - time never goes backwards: every call's `now_ms >= now_ms_last`;
/// - a claim is held iff `claims_granted >= 1`.
#[derive(Debug)]
pub struct Registry {
    /// The configuration, checked in [`Registry::new`].
    config: RegistryConfig,
    /// The entries by id; a `BTreeMap` so listings come out in id order, deterministically.
    nodes: BTreeMap<NodeId, NodeEntry>,
    /// The bootstrap claim, once made.
    claim: Option<ClaimState>,
    /// How many claims were granted (first claim plus takeovers); it makes each cluster id distinct.
    claims_granted: u64,
    /// The latest time passed in; time must not go backwards.
    now_ms_last: u64,
}

impl Registry {
    /// An empty table.
    ///
    /// # Panics
    /// If the configuration is invalid (see [`RegistryConfig::validate`]); validate user input first.
    pub fn new(config: RegistryConfig) -> Registry {
        if let Err(error) = config.validate() {
            panic!("Registry::new with an invalid config: {error}");
        }
        Registry { config, nodes: BTreeMap::new(), claim: None, claims_granted: 0, now_ms_last: 0 }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Registers `id`, or refreshes it (a heartbeat). A changed address replaces the old one. Returns whether
    /// the node is new (not live before this call).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a bad URL, [`Error::Full`] for a new node when `max_nodes` are live. The
    /// table is unchanged on error.
    ///
    /// # Panics
    /// If `now_ms` is before the time of an earlier call.
    pub fn register(&mut self, id: NodeId, client_url: &str, peer_url: &str, now_ms: u64) -> Result<bool, Error> {
        validate_url("client_url", client_url)?;
        validate_url("peer_url", peer_url)?;
        self.advance(now_ms);
        self.purge_expired();
        let is_new = !self.nodes.contains_key(&id);
        if is_new && self.nodes.len() >= self.config.max_nodes {
            return Err(Error::Full { max_nodes: self.config.max_nodes });
        }
        if let Some(claim) = self.claim.as_mut().filter(|claim| claim.winner == id) {
            claim.seen_ms = now_ms;
            claim.confirmed = true;
        }
        let entry = NodeEntry {
            id: id.clone(),
            client_url: client_url.to_string(),
            peer_url: peer_url.to_string(),
            last_seen_ms: now_ms,
        };
        self.nodes.insert(id, entry);
        self.check_invariants();
        Ok(is_new)
    }

    /// Removes `id`. Returns whether it was live at the latest time passed to the table (so an entry that has
    /// expired but was not yet purged counts as gone). A held claim is not released: it expires by its own rule.
    pub fn leave(&mut self, id: &NodeId) -> bool {
        self.purge_expired();
        let was_live = self.nodes.remove(id).is_some();
        self.check_invariants();
        was_live
    }

    /// The live nodes in id order. Expired entries are purged.
    ///
    /// # Panics
    /// If `now_ms` is before the time of an earlier call.
    pub fn live_nodes(&mut self, now_ms: u64) -> Vec<NodeEntry> {
        self.advance(now_ms);
        self.purge_expired();
        self.check_invariants();
        self.nodes.values().cloned().collect()
    }

    /// Claims the right to start the cluster for `node_id` (see the module doc for the rule).
    ///
    /// # Panics
    /// If `now_ms` is before the time of an earlier call.
    pub fn bootstrap_claim(&mut self, node_id: NodeId, now_ms: u64) -> Claim {
        self.advance(now_ms);
        let ttl_ms = self.config.ttl_ms;
        let held = self.claim.as_mut().filter(|claim| claim.winner == node_id || !claim.is_takeable(now_ms, ttl_ms));
        if let Some(claim) = held {
            if claim.winner == node_id {
                claim.seen_ms = now_ms;
            }
            let answer = Claim { winner: claim.winner.clone(), cluster_id: claim.cluster_id.clone(), new: false };
            self.check_invariants();
            return answer;
        }
        self.claims_granted += 1;
        let cluster_id = cluster_id(self.config.cluster_id_seed, self.claims_granted);
        if let Some(old) = &self.claim {
            tracing::warn!(old = %old.winner, new = %node_id, "bootstrap claim taken over: the winner was never heard from");
            assert!(old.cluster_id != cluster_id, "takeover reuses cluster id {cluster_id}");
        }
        self.claim = Some(ClaimState {
            winner: node_id.clone(),
            cluster_id: cluster_id.clone(),
            claimed_at_ms: now_ms,
            seen_ms: now_ms,
            confirmed: false,
        });
        self.check_invariants();
        Claim { winner: node_id, cluster_id, new: true }
    }

    /// The held claim, if any (`new` is false). It may be takeable; it is reported until it is taken over.
    pub fn current_claim(&self) -> Option<Claim> {
        self.claim.as_ref().map(|claim| Claim {
            winner: claim.winner.clone(),
            cluster_id: claim.cluster_id.clone(),
            new: false,
        })
    }

    /// Moves the table's time to `now_ms`.
    fn advance(&mut self, now_ms: u64) {
        assert!(now_ms >= self.now_ms_last, "time went backwards: now {now_ms} < last {}", self.now_ms_last);
        self.now_ms_last = now_ms;
    }

    /// Drops the entries that are no longer live at `now_ms_last`.
    fn purge_expired(&mut self) {
        let (now_ms, ttl_ms) = (self.now_ms_last, self.config.ttl_ms);
        self.nodes.retain(|_, entry| now_ms - entry.last_seen_ms < ttl_ms);
    }

    /// Asserts the invariants of [`Registry`]: O(n), so only in debug builds and tests.
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert!(
            self.nodes.len() <= self.config.max_nodes,
            "{} nodes > max {}",
            self.nodes.len(),
            self.config.max_nodes
        );
        for (id, entry) in &self.nodes {
            assert!(*id == entry.id, "entry {} filed under {id}", entry.id);
            assert!(
                entry.last_seen_ms <= self.now_ms_last,
                "{id} seen at {} > now {}",
                entry.last_seen_ms,
                self.now_ms_last
            );
        }
        match &self.claim {
            Some(claim) => {
                assert!(self.claims_granted >= 1, "a claim is held but none was granted");
                assert!(
                    claim.claimed_at_ms <= claim.seen_ms,
                    "claimed at {} > seen {}",
                    claim.claimed_at_ms,
                    claim.seen_ms
                );
                assert!(claim.seen_ms <= self.now_ms_last, "claim seen {} > now {}", claim.seen_ms, self.now_ms_last);
            }
            None => assert!(self.claims_granted == 0, "{} claims granted but none held", self.claims_granted),
        }
    }
}

impl ClaimState {
    /// Whether another node may take the claim over at `now_ms`: unconfirmed, and the winner silent a full TTL.
    fn is_takeable(&self, now_ms: u64, ttl_ms: u64) -> bool {
        !self.confirmed && now_ms - self.seen_ms >= ttl_ms
    }
}

/// The cluster id of the `generation`-th claim: 16 hex digits derived from `seed` (splitmix64).
fn cluster_id(seed: u64, generation: u64) -> String {
    let mut z = seed.wrapping_add(generation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}
