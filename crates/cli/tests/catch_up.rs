//! A follower that was down catches up when it returns: from the leader's log when the log still holds what
//! it missed, from a snapshot installed by the leader when the log was compacted past it.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, NODES, Stop};

/// `(key, value)` pairs `{prefix}{n}` for `n` in `0..count`.
fn writes(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count).map(|n| (format!("{prefix}{n:04}"), format!("value of {prefix}{n}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_a_little_behind_catches_up_from_the_log() {
    let start = Instant::now();
    let mut cluster = Cluster::start(&["--snapshot-interval-entries", "100000"]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % NODES;

    // Some writes everyone has, then the follower stops (gracefully) and misses a few more.
    let before = writes("before-", 5);
    cluster.put_all(leader, &before, 1).await;
    cluster.stop(follower, Stop::Term);
    let missed = writes("missed-", 20);
    let last = *cluster.put_all(leader, &missed, 4).await.iter().max().expect("indexes");

    // Back up, it gets what it missed from the log: no snapshot anywhere.
    cluster.restart(follower).await;
    let view = cluster.wait_applied(follower, last, Duration::from_secs(20)).await;
    assert_eq!(view.snapshot_index, 0, "caught up by log, yet a snapshot: {view:?}");
    for (key, value) in before.iter().chain(&missed) {
        let answer = cluster.read(follower, key, true).await;
        assert_eq!((answer.status, answer.text()), (200, value.clone()), "stale read of {key} on the follower");
    }
    for i in 0..NODES {
        assert_eq!(cluster.view_of(i).await.snapshot_index, 0, "{} took a snapshot", cluster.nodes[i].id);
    }
    cluster.wait_converged(Duration::from_secs(20)).await;
    eprintln!("catch_up (log): {}", common::elapsed(start));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_catches_up_from_an_installed_snapshot() {
    let start = Instant::now();
    let keep = 10;
    let mut cluster =
        Cluster::start(&["--snapshot-interval-entries", "50", "--snapshot-keep-entries", &keep.to_string()]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % NODES;

    // The follower crashes early, then misses 500 writes: the leader snapshots every 50 and keeps 10 entries.
    let behind = cluster.view_of(follower).await.applied_index;
    cluster.stop(follower, Stop::Kill);
    let missed = writes("bulk-", 500);
    let last = *cluster.put_all(leader, &missed, 8).await.iter().max().expect("indexes");
    let leader_view = cluster.view_of(leader).await;
    assert!(
        leader_view.snapshot_index > behind + keep + 1,
        "the leader's log must be compacted past the follower (at {behind}) for this test: {leader_view:?}"
    );

    // Back up, it can only catch up by a snapshot from the leader.
    cluster.restart(follower).await;
    let view = cluster.wait_applied(follower, last, Duration::from_secs(30)).await;
    assert!(view.snapshot_index > 0, "caught up without a snapshot? {view:?}");
    let items = cluster.stale_scan(follower, "bulk-").await;
    assert_eq!(items.len(), missed.len(), "keys on the follower after the snapshot");
    for (key, value) in &missed {
        assert_eq!(items.get(key).map(|(v, _)| v), Some(value), "{key} on the follower");
    }
    cluster.wait_converged(Duration::from_secs(20)).await;
    eprintln!("catch_up (snapshot): {}", common::elapsed(start));
}
