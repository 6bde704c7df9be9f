//! Stopping every node, gracefully or by a crash, loses nothing acknowledged: after a restart of all three
//! from their data dirs, every write is there and the cluster takes new writes.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, NODES, Stop};

/// Keys written before the stop.
const KEYS: usize = 60;

/// Writes `KEYS` keys through every node, stops all three with `how`, restarts them, and checks every key and a
/// new write.
async fn survives_a_full_restart(how: Stop) {
    let start = Instant::now();
    let mut cluster = Cluster::start(&[]).await;
    cluster.wait_for_leader().await;

    // Writes through every node, each acknowledged.
    let mut written = Vec::new();
    for k in 0..KEYS {
        let (key, value) = (format!("key-{k:03}"), format!("value-{k}-{how:?}"));
        let index = cluster.put_retrying(k % NODES, &key, &value, Duration::from_secs(10)).await;
        written.push((key, value, index));
    }

    eprintln!("restart_all ({how:?}): {KEYS} keys written at {}", common::elapsed(start));

    // All three stop: SIGTERM must exit cleanly; SIGKILL keeps only what was fsynced, which covers every ack.
    for i in 0..NODES {
        cluster.stop(i, how);
    }
    for i in 0..NODES {
        cluster.restart(i).await;
    }
    let leader = cluster.wait_for_leader().await;
    eprintln!("restart_all ({how:?}): restarted, {} leads at {}", cluster.nodes[leader].id, common::elapsed(start));

    // Every write is there, read linearizably through every node, with its value and index.
    for (k, (key, value, index)) in written.iter().enumerate() {
        let answer = cluster.read(k % NODES, key, false).await;
        assert_eq!(answer.status, 200, "{key} after a {how:?} restart: {}", answer.text());
        assert_eq!(answer.text(), *value, "{key}");
        assert_eq!(answer.header("x-tally-modify-index"), Some(index.to_string()), "{key}");
    }

    // The restarted cluster takes a new write, above every index before the restart.
    let last_before = written.iter().map(|w| w.2).max().expect("keys written");
    let index = cluster.put_retrying(1, "after-restart", "new", Duration::from_secs(10)).await;
    assert!(index > last_before, "new write at {index} <= {last_before} written before the restart");
    let answer = cluster.read(2, "after-restart", false).await;
    assert_eq!((answer.status, answer.text()), (200, "new".to_string()));
    eprintln!("restart_all ({how:?}): {}", common::elapsed(start));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_survives_a_graceful_restart_of_all_nodes() {
    survives_a_full_restart(Stop::Term).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_crash_of_all_nodes() {
    survives_a_full_restart(Stop::Kill).await;
}
