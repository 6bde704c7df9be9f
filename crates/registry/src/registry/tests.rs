//! Unit tests of the table: expiry, heartbeats, leave, limits and the bootstrap rule (grants, takeovers,
//! warm-up and adoption).

use super::*;

const TTL_MS: u64 = 1_000;

/// The first time at which claims are granted without a held claim: the warm-up is one TTL from the start.
const WARM_MS: u64 = TTL_MS;

fn registry() -> Registry {
    Registry::new(RegistryConfig { ttl_ms: TTL_MS, max_nodes: 3, cluster_id_seed: 42 })
}

fn id(s: &str) -> NodeId {
    NodeId::parse(s).expect("a valid test id")
}

fn cluster(s: &str) -> ClusterId {
    ClusterId::parse(s).expect("a valid test cluster id")
}

fn register(registry: &mut Registry, name: &str, port: u16, now_ms: u64) -> bool {
    register_member(registry, name, port, None, now_ms)
}

/// Registers `name` as a member of `cluster_id` (`None`: of no cluster).
fn register_member(registry: &mut Registry, name: &str, port: u16, cluster_id: Option<&str>, now_ms: u64) -> bool {
    let client = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{}", port + 1000);
    registry.register(id(name), &client, &peer, cluster_id.map(cluster), now_ms).expect("registration accepted")
}

/// A claim that must be answered (not refused by the warm-up).
fn claim(registry: &mut Registry, name: &str, now_ms: u64) -> Claim {
    registry.bootstrap_claim(id(name), now_ms).expect("the claim is answered")
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
    let refused = registry.register(id("n4"), "http://h:1", "http://h:2", Some(cluster("c1")), 10);
    assert!(matches!(refused, Err(Error::Full { max_nodes: 3 })), "{refused:?}");
    assert_eq!(live_ids(&mut registry, 10), ["n1", "n2", "n3"], "a refused call changes nothing");
    assert_eq!(registry.current_claim(), None, "a refused registration adopts no claim");
    assert!(!register(&mut registry, "n1", 7001, 10), "heartbeats still work");
    // Once n2 and n3 expire there is room again.
    assert!(register(&mut registry, "n4", 7004, TTL_MS));
}

#[test]
fn bad_urls_are_refused_without_change() {
    let mut registry = registry();
    let error = registry.register(id("n1"), "http://h:1", "ftp://h:2", None, 0).expect_err("bad peer url");
    assert!(error.to_string().contains("peer_url"), "{error}");
    assert!(live_ids(&mut registry, 0).is_empty());
}

#[test]
fn first_claimant_wins_and_everyone_sees_the_same_claim() {
    // Why: many nodes race to start the cluster; one table, one answer.
    let mut registry = registry();
    let first = claim(&mut registry, "n5", WARM_MS);
    assert_eq!(first.winner, id("n5"));
    assert!(first.new);
    for (i, name) in ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"].into_iter().enumerate() {
        let claim = claim(&mut registry, name, WARM_MS + i as u64);
        assert_eq!(claim, Claim { winner: id("n5"), cluster_id: first.cluster_id.clone(), new: false });
    }
    assert_eq!(registry.current_claim().map(|claim| claim.winner), Some(id("n5")));
}

#[test]
fn cluster_ids_are_deterministic_per_seed() {
    let claim = |seed| {
        let mut registry = Registry::new(RegistryConfig { cluster_id_seed: seed, ..RegistryConfig::default() });
        claim(&mut registry, "n1", RegistryConfig::TTL_MS_DEFAULT).cluster_id
    };
    assert_eq!(claim(7), claim(7));
    assert_ne!(claim(7), claim(8));
    assert_eq!(claim(7).as_str().len(), 16);
}

#[test]
fn silent_unconfirmed_winner_is_taken_over_after_exactly_one_ttl() {
    let mut registry = registry();
    let first = claim(&mut registry, "n1", WARM_MS + 100);
    // Within the TTL the claim holds.
    assert_eq!(claim(&mut registry, "n2", WARM_MS + 100 + TTL_MS - 1).winner, id("n1"));
    // A full TTL of silence later, another node takes over with a new cluster id.
    let takeover = claim(&mut registry, "n2", WARM_MS + 100 + TTL_MS);
    assert_eq!(takeover.winner, id("n2"));
    assert!(takeover.new);
    assert_ne!(takeover.cluster_id, first.cluster_id);
    // The old winner, back, sees it lost.
    let back = claim(&mut registry, "n1", WARM_MS + 100 + TTL_MS + 1);
    assert_eq!((back.winner, back.new), (id("n2"), false));
}

#[test]
fn winner_reclaiming_keeps_the_claim_alive() {
    let mut registry = registry();
    let first = claim(&mut registry, "n1", WARM_MS);
    assert_eq!(claim(&mut registry, "n1", WARM_MS + 900), Claim { new: false, ..first.clone() });
    assert_eq!(claim(&mut registry, "n2", WARM_MS + 1_899).winner, id("n1"));
    assert_eq!(claim(&mut registry, "n2", WARM_MS + 1_900).winner, id("n2"));
}

#[test]
fn confirmed_claim_is_never_taken_over() {
    // Why: a winner heard from after claiming may have started the cluster; a second winner could split it.
    let mut registry = registry();
    let first = claim(&mut registry, "n1", WARM_MS);
    register(&mut registry, "n1", 7001, WARM_MS + 10);
    let much_later = 100 * TTL_MS;
    assert!(live_ids(&mut registry, much_later).is_empty(), "n1 itself has expired");
    let claim = claim(&mut registry, "n2", much_later);
    assert_eq!(claim, Claim { new: false, ..first });
}

#[test]
fn a_member_of_the_claimed_cluster_confirms_the_claim() {
    // Why: a node registering with the claim's cluster id has joined that cluster, so it was formed even if
    // the winner died before its first heartbeat; handing the claim on could start a second one.
    let mut registry = registry();
    let first = claim(&mut registry, "n1", WARM_MS);
    register_member(&mut registry, "n2", 7002, Some(first.cluster_id.as_str()), WARM_MS + 10);
    let claim = claim(&mut registry, "n3", WARM_MS + 10 * TTL_MS);
    assert_eq!(claim, Claim { new: false, ..first });
}

#[test]
fn claims_are_refused_for_one_ttl_after_start() {
    // Why: after a restart the table has forgotten the cluster; its members need a TTL to re-register
    // before a new node may win a claim and start a cluster.
    let mut registry = registry();
    let refused = registry.bootstrap_claim(id("n1"), 0);
    assert!(matches!(refused, Err(Error::WarmingUp { retry_after_ms: TTL_MS })), "{refused:?}");
    let refused = registry.bootstrap_claim(id("n1"), TTL_MS - 1);
    assert!(matches!(refused, Err(Error::WarmingUp { retry_after_ms: 1 })), "{refused:?}");
    let message = refused.map(|_| String::new()).unwrap_or_else(|error| error.to_string());
    assert!(message.contains("less than one TTL ago") && message.contains("retry in 1 ms"), "{message}");
    // A refused claim left nothing behind.
    assert_eq!(registry.current_claim(), None);
    // From exactly one TTL on, the first claimant wins.
    let granted = claim(&mut registry, "n2", TTL_MS);
    assert_eq!((granted.winner, granted.new), (id("n2"), true));
}

#[test]
fn a_member_registering_after_a_restart_restores_the_claim() {
    // Why: the registry restarted (a fresh table) while cluster "c-old" runs. Its members re-register with
    // their cluster id within the warm-up; a brand-new node must then learn that cluster, not win a new one.
    let mut registry = registry();
    register(&mut registry, "n9", 7009, 10);
    assert_eq!(registry.current_claim(), None, "a node of no cluster adopts nothing");
    assert!(register_member(&mut registry, "n2", 7002, Some("c-old"), 20));
    let adopted = Claim { winner: id("n2"), cluster_id: cluster("c-old"), new: false };
    assert_eq!(registry.current_claim(), Some(adopted.clone()));
    // Another member of the same cluster changes nothing.
    register_member(&mut registry, "n1", 7001, Some("c-old"), 30);
    assert_eq!(registry.current_claim(), Some(adopted.clone()));
    // The adoption lifts the warm-up: claims are answered at once, with the existing cluster.
    assert_eq!(claim(&mut registry, "n9", 40), adopted);
    // The adopted claim is confirmed: never taken over, even long after its winner went silent.
    assert_eq!(claim(&mut registry, "n9", 100 * TTL_MS), adopted);
}

#[test]
fn entries_record_the_cluster_id_of_their_latest_registration() {
    let mut registry = registry();
    register(&mut registry, "n1", 7001, 0);
    register_member(&mut registry, "n2", 7002, Some("c1"), 0);
    let cluster_ids = |registry: &mut Registry, now_ms| -> Vec<Option<String>> {
        registry.live_nodes(now_ms).into_iter().map(|entry| entry.cluster_id.map(|c| c.to_string())).collect()
    };
    assert_eq!(cluster_ids(&mut registry, 1), [None, Some("c1".to_string())]);
    // n1 joined c1; its next heartbeat says so.
    register_member(&mut registry, "n1", 7001, Some("c1"), 2);
    assert_eq!(cluster_ids(&mut registry, 2), [Some("c1".to_string()), Some("c1".to_string())]);
}

#[test]
fn a_member_of_another_cluster_does_not_change_the_claim() {
    // Why: two clusters pointed at one registry must not make it hand out a second winner or switch clusters.
    let mut registry = registry();
    let first = claim(&mut registry, "n1", WARM_MS);
    register(&mut registry, "n1", 7001, WARM_MS + 1);
    assert!(register_member(&mut registry, "x1", 7101, Some("other"), WARM_MS + 2));
    assert!(!register_member(&mut registry, "x1", 7101, Some("other"), WARM_MS + 3), "its heartbeats work");
    assert_eq!(registry.current_claim(), Some(Claim { new: false, ..first.clone() }));
    assert_eq!(claim(&mut registry, "n5", WARM_MS + 4), Claim { new: false, ..first });
    // The same holds for an adopted claim.
    let mut restarted = self::registry();
    register_member(&mut restarted, "n1", 7001, Some("c1"), 0);
    register_member(&mut restarted, "x1", 7101, Some("c2"), 1);
    let kept = Claim { winner: id("n1"), cluster_id: cluster("c1"), new: false };
    assert_eq!(restarted.current_claim(), Some(kept.clone()));
    assert_eq!(claim(&mut restarted, "x1", 2), kept);
}

#[test]
fn an_unconfirmed_claim_is_not_confirmed_by_another_cluster() {
    // Why: only the claim's own cluster proves it was formed; a foreign member must not pin a dead winner.
    let mut registry = registry();
    let first = claim(&mut registry, "n1", WARM_MS);
    register_member(&mut registry, "x1", 7101, Some("other"), WARM_MS + 1);
    let takeover = claim(&mut registry, "n2", WARM_MS + TTL_MS);
    assert_eq!((takeover.winner, takeover.new), (id("n2"), true));
    assert_ne!(takeover.cluster_id, first.cluster_id);
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
