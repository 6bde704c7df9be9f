//! Unit tests of the table: expiry, heartbeats, leave, limits and the bootstrap rule.

use super::*;

const TTL_MS: u64 = 1_000;

fn registry() -> Registry {
    Registry::new(RegistryConfig { ttl_ms: TTL_MS, max_nodes: 3, cluster_id_seed: 42 })
}

fn id(s: &str) -> NodeId {
    NodeId::parse(s).expect("a valid test id")
}

fn register(registry: &mut Registry, name: &str, port: u16, now_ms: u64) -> bool {
    let client = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", port + 1000);
    registry.register(id(name), &client, &peer, now_ms).expect("registration accepted")
}

fn live_ids(registry: &mut Registry, now_ms: u64) -> Vec<String> {
    registry.live_nodes(now_ms).into_iter().map(|entry| entry.id.to_string()).collect()
}

#[test]
fn entry_expires_exactly_one_ttl_after_last_heartbeat() {
    let mut registry = registry();
    assert!(register(&mut registry, "n1", 7001, 100));
    // Live up to the last millisecond of the TTL.
    assert_eq!(live_ids(&mut registry, 100 + TTL_MS - 1), ["n1"]);
    // Gone at exactly last_seen + ttl, and purged: registering again is new.
    assert!(live_ids(&mut registry, 100 + TTL_MS).is_empty());
    assert!(register(&mut registry, "n1", 7001, 100 + TTL_MS));
}

#[test]
fn heartbeat_refreshes_the_ttl() {
    let mut registry = registry();
    assert!(register(&mut registry, "n1", 7001, 0));
    assert!(!register(&mut registry, "n1", 7001, 900), "a heartbeat is not new");
    assert_eq!(live_ids(&mut registry, 1_899), ["n1"]);
    let entries = registry.live_nodes(1_899);
    assert_eq!(entries[0].last_seen_ms, 900);
    assert!(live_ids(&mut registry, 1_900).is_empty());
}

#[test]
fn address_change_updates_the_entry() {
    let mut registry = registry();
    register(&mut registry, "n1", 7001, 0);
    assert!(!register(&mut registry, "n1", 7002, 10));
    let entries = registry.live_nodes(10);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].client_url, "http://127.0.0.1:7002");
    assert_eq!(entries[0].peer_url, "http://127.0.0.1:8002");
}

#[test]
fn leave_removes_a_live_node_only() {
    let mut registry = registry();
    register(&mut registry, "n1", 7001, 0);
    register(&mut registry, "n2", 7002, 0);
    assert!(registry.leave(&id("n1")));
    assert!(!registry.leave(&id("n1")), "a second leave finds nothing");
    assert!(!registry.leave(&id("n9")), "never registered");
    assert_eq!(live_ids(&mut registry, 1), ["n2"]);
    // Expired but not yet purged: not live, so leave says so.
    let _ = registry.live_nodes(TTL_MS);
    assert!(!registry.leave(&id("n2")));
}

#[test]
fn listing_is_in_id_order() {
    let mut registry = registry();
    for (name, port) in [("n3", 7003), ("n1", 7001), ("n2", 7002)] {
        register(&mut registry, name, port, 0);
    }
    assert_eq!(live_ids(&mut registry, 0), ["n1", "n2", "n3"]);
}

#[test]
fn full_registry_refuses_new_nodes_but_not_heartbeats() {
    let mut registry = registry();
    for (name, port) in [("n1", 7001), ("n2", 7002), ("n3", 7003)] {
        register(&mut registry, name, port, 0);
    }
    let refused = registry.register(id("n4"), "http://h:1", "http://h:2", 10);
    assert!(matches!(refused, Err(Error::Full { max_nodes: 3 })), "{refused:?}");
    assert_eq!(live_ids(&mut registry, 10), ["n1", "n2", "n3"], "a refused call changes nothing");
    assert!(!register(&mut registry, "n1", 7001, 10), "heartbeats still work");
    // Once n2 and n3 expire there is room again.
    assert!(register(&mut registry, "n4", 7004, TTL_MS));
}

#[test]
fn bad_urls_are_refused_without_change() {
    let mut registry = registry();
    let error = registry.register(id("n1"), "http://h:1", "ftp://h:2", 0).expect_err("bad peer url");
    assert!(error.to_string().contains("peer_url"), "{error}");
    assert!(live_ids(&mut registry, 0).is_empty());
}

#[test]
fn first_claimant_wins_and_everyone_sees_the_same_claim() {
    // Why: many nodes race to start the cluster; one table, one answer.
    let mut registry = registry();
    let first = registry.bootstrap_claim(id("n5"), 0);
    assert_eq!(first.winner, id("n5"));
    assert!(first.new);
    for (i, name) in ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"].into_iter().enumerate() {
        let claim = registry.bootstrap_claim(id(name), i as u64);
        assert_eq!(claim, Claim { winner: id("n5"), cluster_id: first.cluster_id.clone(), new: false });
    }
    assert_eq!(registry.current_claim().map(|claim| claim.winner), Some(id("n5")));
}

#[test]
fn cluster_ids_are_deterministic_per_seed() {
    let claim = |seed| {
        let mut registry = Registry::new(RegistryConfig { cluster_id_seed: seed, ..RegistryConfig::default() });
        registry.bootstrap_claim(id("n1"), 0).cluster_id
    };
    assert_eq!(claim(7), claim(7));
    assert_ne!(claim(7), claim(8));
    assert_eq!(claim(7).len(), 16);
}

#[test]
fn silent_unconfirmed_winner_is_taken_over_after_exactly_one_ttl() {
    let mut registry = registry();
    let first = registry.bootstrap_claim(id("n1"), 100);
    // Within the TTL the claim holds.
    assert_eq!(registry.bootstrap_claim(id("n2"), 100 + TTL_MS - 1).winner, id("n1"));
    // A full TTL of silence later, another node takes over with a new cluster id.
    let takeover = registry.bootstrap_claim(id("n2"), 100 + TTL_MS);
    assert_eq!(takeover.winner, id("n2"));
    assert!(takeover.new);
    assert_ne!(takeover.cluster_id, first.cluster_id);
    // The old winner, back, sees it lost.
    let back = registry.bootstrap_claim(id("n1"), 100 + TTL_MS + 1);
    assert_eq!((back.winner, back.new), (id("n2"), false));
}

#[test]
fn winner_reclaiming_keeps_the_claim_alive() {
    let mut registry = registry();
    let first = registry.bootstrap_claim(id("n1"), 0);
    assert_eq!(registry.bootstrap_claim(id("n1"), 900), Claim { new: false, ..first.clone() });
    assert_eq!(registry.bootstrap_claim(id("n2"), 1_899).winner, id("n1"));
    assert_eq!(registry.bootstrap_claim(id("n2"), 1_900).winner, id("n2"));
}

#[test]
fn confirmed_claim_is_never_taken_over() {
    // Why: a winner heard from after claiming may have started the cluster; a second winner could split it.
    let mut registry = registry();
    let first = registry.bootstrap_claim(id("n1"), 0);
    register(&mut registry, "n1", 7001, 10);
    let much_later = 100 * TTL_MS;
    assert!(live_ids(&mut registry, much_later).is_empty(), "n1 itself has expired");
    let claim = registry.bootstrap_claim(id("n2"), much_later);
    assert_eq!(claim, Claim { new: false, ..first });
}

#[test]
fn no_claim_before_the_first() {
    assert_eq!(registry().current_claim(), None);
}

#[test]
#[should_panic(expected = "time went backwards")]
fn time_going_backwards_is_a_programmer_error() {
    let mut registry = registry();
    let _ = registry.live_nodes(10);
    let _ = registry.live_nodes(9);
}

#[test]
fn invalid_config_is_reported() {
    let zero_ttl = RegistryConfig { ttl_ms: 0, ..RegistryConfig::default() };
    assert!(matches!(zero_ttl.validate(), Err(Error::InvalidConfig(_))));
    let zero_nodes = RegistryConfig { max_nodes: 0, ..RegistryConfig::default() };
    assert!(matches!(zero_nodes.validate(), Err(Error::InvalidConfig(_))));
    assert!(RegistryConfig::default().validate().is_ok());
}
