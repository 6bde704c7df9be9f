//! The membership table and the bootstrap claim: pure and deterministic.
//!
//! No clock, no I/O, no randomness: the caller passes the time in milliseconds (from a monotonic clock) and
//! the seed for cluster ids. The same calls give the same answers, which is what the tests rely on.
//!
//! # The bootstrap rule
//!
//! At most one cluster may be formed through a registry. The table holds at most one *claim*: a winner, the
//! node that may start the cluster, and the cluster's id. Claims are never released, and a claim comes into
//! being in one of two ways.
//!
//! **Granted.** The first node to claim wins and a cluster id is generated for it. Every later claim, by any
//! node, gets the same winner and cluster id, except in one case: the claim may be **taken over** by another
//! node when
//!
//! 1. the claim is not *confirmed*: neither the winner nor a node carrying the claim's cluster id has
//!    registered or heartbeated since it was made, and
//! 2. the winner has been silent (no claim, no heartbeat) for a full TTL, i.e. `now_ms >= seen_ms + ttl_ms`.
//!
//! The winner's own heartbeats keep flowing while it starts its cluster, so a winner that is heard from after
//! winning has started (or is starting) the cluster, and its claim stays for the registry's lifetime: handing
//! it to someone else could give two clusters. A winner that died right after claiming is never heard from
//! again, and after one TTL another node may take over; the takeover gets a **new** cluster id, so a stale
//! winner that comes back can tell (its cluster id differs from the registry's) and must not form a cluster.
//!
//! **Adopted.** The table lives in memory, so a restarted registry has forgotten the claim while the cluster
//! it formed still runs. Members say which cluster they belong to when they register (`cluster_id`; a node
//! sends it once it is a member, i.e. has the cluster's data). A registration with a cluster id while no claim
//! is held proves a formed cluster exists: the table adopts a **confirmed** claim with that node as winner
//! and that cluster id, so later claimants learn the existing cluster and join it instead of forming a new
//! one. A registration whose cluster id differs from the held claim's leaves the claim as it is (and logs a
//! warning: two clusters use this registry); one carrying the claim's cluster id confirms the claim.
//!
//! **Warm-up.** The time passed in counts from the registry's start. While no claim is held and
//! `now_ms < ttl_ms`, claims are refused with [`Error::WarmingUp`]: members heartbeat several times per TTL,
//! so after a restart every live member of an existing cluster has re-registered (and the claim has been
//! adopted) within one TTL. Without the warm-up, a brand-new node could win a fresh claim in that window and
//! start a second cluster beside the existing one. Once a claim is held, adopted or granted, claims are
//! answered at once; after one TTL without any, the first claimant wins as above.
//!
//! The warm-up protects only the members that are alive and reach the registry within that TTL; a cluster
//! whose members are all down while the registry restarts is not known to it.
//!
//! This is race-free because there is one table behind one lock: [`Registry::bootstrap_claim`] takes
//! `&mut self`, so each claim is one check-and-set that no other call can interleave with.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::{ClusterId, Error, NodeId, validate_url};

/// How the table behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// How long an entry (and an unconfirmed claim) lives without a heartbeat. Nodes heartbeat a few times per
    /// TTL, so one lost heartbeat does not drop them. It is also the warm-up after start during which claims
    /// are refused (see the module doc).
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
    /// The cluster the node said it belongs to in its latest registration; `None` for a node not yet in one.
    pub cluster_id: Option<ClusterId>,
    /// When the node last registered or heartbeated, in the caller's milliseconds.
    pub last_seen_ms: u64,
}

/// The answer to a bootstrap claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The node that may start the cluster.
    pub winner: NodeId,
    /// The id of the cluster the winner starts (or, for an adopted claim, formed).
    pub cluster_id: ClusterId,
    /// Whether this call created the claim (first claim or takeover).
    pub new: bool,
}

/// The held bootstrap claim.
///
/// Invariants: `claimed_at_ms <= seen_ms <= now_ms_last`; an adopted claim is confirmed.
#[derive(Clone, Debug)]
struct ClaimState {
    /// The winner.
    winner: NodeId,
    /// The cluster id handed out with this claim, or adopted from a member's registration.
    cluster_id: ClusterId,
    /// When the claim was made.
    claimed_at_ms: u64,
    /// When the winner was last heard from (claim or heartbeat).
    seen_ms: u64,
    /// Whether the cluster is known to be started: the winner, or a node carrying the cluster id, registered
    /// or heartbeated since the claim was made. A confirmed claim is never taken over.
    confirmed: bool,
    /// Whether the claim was adopted from a member's registration rather than granted to a claimant; only
    /// for the invariants (an adopted claim never counts in `claims_granted`).
    adopted: bool,
}

/// The membership table. Entries expire `ttl_ms` after their last heartbeat: an entry is live while
/// `now_ms < last_seen_ms + ttl_ms`.
///
/// Invariants (asserted by `check_invariants` after every change):
/// - `nodes.len() <= config.max_nodes`;
/// - every key equals its entry's id, and every `last_seen_ms <= now_ms_last`;
/// - time never goes backwards: every call's `now_ms >= now_ms_last`;
/// - claims are never released: no claim is held iff none was granted (`claims_granted == 0`) or adopted;
/// - an adopted claim is confirmed and `claims_granted == 0` (adoption needs no claim held, and a confirmed
///   claim is never taken over); a granted one means `claims_granted >= 1`.
///
/// Time: every `now_ms` is milliseconds since the registry started, from a monotonic clock; the warm-up
/// (see the module doc) depends on that origin.
#[derive(Debug)]
pub struct Registry {
    /// The configuration, checked in [`Registry::new`].
    config: RegistryConfig,
    /// The entries by id; a `BTreeMap` so listings come out in id order, deterministically.
    nodes: BTreeMap<NodeId, NodeEntry>,
    /// The bootstrap claim, once granted or adopted.
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

    /// Registers `id`, or refreshes it (a heartbeat). A changed address or cluster id replaces the old one.
    /// `cluster_id` is the cluster the node is a member of, if any; it may adopt or confirm the claim (see the
    /// module doc). Returns whether the node is new (not live before this call).
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a bad URL, [`Error::Full`] for a new node when `max_nodes` are live. The
    /// table is unchanged on error (in particular, no claim is adopted).
    ///
    /// # Panics
    /// If `now_ms` is before the time of an earlier call.
    pub fn register(
        &mut self,
        id: NodeId,
        client_url: &str,
        peer_url: &str,
        cluster_id: Option<ClusterId>,
        now_ms: u64,
    ) -> Result<bool, Error> {
        validate_url("client_url", client_url)?;
        validate_url("peer_url", peer_url)?;
        self.advance(now_ms);
        self.purge_expired();
        let previous = self.nodes.get(&id);
        let is_new = previous.is_none();
        if is_new && self.nodes.len() >= self.config.max_nodes {
            return Err(Error::Full { max_nodes: self.config.max_nodes });
        }
        let cluster_id_changed = previous.map(|entry| &entry.cluster_id) != Some(&cluster_id);
        self.note_member(&id, cluster_id.as_ref(), cluster_id_changed, now_ms);
        let entry = NodeEntry {
            id: id.clone(),
            client_url: client_url.to_string(),
            peer_url: peer_url.to_string(),
            cluster_id,
            last_seen_ms: now_ms,
        };
        self.nodes.insert(id, entry);
        self.check_invariants();
        Ok(is_new)
    }

    /// What a registration by `id` (member of `cluster_id`, if any) tells about the claim: the winner's
    /// heartbeat and a member of the claim's cluster confirm it, a member with no claim held adopts one, and a
    /// member of another cluster is warned about (only when its recorded cluster id changes, not on every
    /// heartbeat).
    fn note_member(&mut self, id: &NodeId, cluster_id: Option<&ClusterId>, cluster_id_changed: bool, now_ms: u64) {
        let Some(claim) = self.claim.as_mut() else {
            if let Some(cluster_id) = cluster_id {
                tracing::info!(winner = %id, %cluster_id, "claim adopted: a member of a formed cluster registered");
                self.claim = Some(ClaimState {
                    winner: id.clone(),
                    cluster_id: cluster_id.clone(),
                    claimed_at_ms: now_ms,
                    seen_ms: now_ms,
                    confirmed: true,
                    adopted: true,
                });
            }
            return;
        };
        if claim.winner == *id {
            claim.seen_ms = now_ms;
            claim.confirmed = true;
        }
        match cluster_id {
            Some(cluster_id) if *cluster_id == claim.cluster_id => claim.confirmed = true,
            Some(cluster_id) if cluster_id_changed => tracing::warn!(
                node = %id,
                node_cluster_id = %cluster_id,
                claim_cluster_id = %claim.cluster_id,
                "a node of another cluster registered: two clusters use this registry; the claim is kept"
            ),
            Some(_) | None => {}
        }
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
    /// # Errors
    /// [`Error::WarmingUp`] while no claim is held and `now_ms < ttl_ms` (less than one TTL since the
    /// registry started); nothing but the table's time changes.
    ///
    /// # Panics
    /// If `now_ms` is before the time of an earlier call.
    pub fn bootstrap_claim(&mut self, node_id: NodeId, now_ms: u64) -> Result<Claim, Error> {
        self.advance(now_ms);
        let ttl_ms = self.config.ttl_ms;
        if self.claim.is_none() && now_ms < ttl_ms {
            let retry_after_ms = ttl_ms - now_ms;
            assert!(retry_after_ms >= 1, "warming up with retry_after_ms {retry_after_ms}");
            return Err(Error::WarmingUp { retry_after_ms });
        }
        let held = self.claim.as_mut().filter(|claim| claim.winner == node_id || !claim.is_takeable(now_ms, ttl_ms));
        if let Some(claim) = held {
            if claim.winner == node_id {
                claim.seen_ms = now_ms;
            }
            let answer = Claim { winner: claim.winner.clone(), cluster_id: claim.cluster_id.clone(), new: false };
            self.check_invariants();
            return Ok(answer);
        }
        self.claims_granted += 1;
        let cluster_id = cluster_id(self.config.cluster_id_seed, self.claims_granted);
        if let Some(old) = &self.claim {
            tracing::warn!(old = %old.winner, new = %node_id, "bootstrap claim taken over: the winner was never heard from");
            assert!(!old.confirmed, "takeover of the confirmed claim of {}", old.winner);
            assert!(old.cluster_id != cluster_id, "takeover reuses cluster id {cluster_id}");
        }
        self.claim = Some(ClaimState {
            winner: node_id.clone(),
            cluster_id: cluster_id.clone(),
            claimed_at_ms: now_ms,
            seen_ms: now_ms,
            confirmed: false,
            adopted: false,
        });
        self.check_invariants();
        Ok(Claim { winner: node_id, cluster_id, new: true })
    }

    /// The held claim, if any (`new` is false), granted or adopted. It may be takeable; it is reported until it
    /// is taken over.
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
                if claim.adopted {
                    assert!(claim.confirmed, "the adopted claim of {} is unconfirmed", claim.winner);
                    assert!(self.claims_granted == 0, "{} claims granted beside an adopted one", self.claims_granted);
                } else {
                    assert!(self.claims_granted >= 1, "a granted claim is held but none was granted");
                }
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

/// The cluster id of the `generation`-th granted claim: 16 hex digits derived from `seed` (splitmix64).
fn cluster_id(seed: u64, generation: u64) -> ClusterId {
    let mut z = seed.wrapping_add(generation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let hex = format!("{:016x}", z ^ (z >> 31));
    match ClusterId::parse(&hex) {
        Ok(cluster_id) => cluster_id,
        Err(error) => unreachable!("generated cluster id {hex:?} is invalid: {error}"),
    }
}
