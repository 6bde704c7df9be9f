//! Killing the leader (SIGKILL) under a concurrent write load loses no acknowledged write: a new leader takes
//! over, the old node rejoins from its data dir, and every node ends with every acknowledged write and the
//! same state.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, NODES, Stop};

/// Concurrent writers.
const WRITERS: usize = 8;

/// A write the cluster acknowledged with 200.
#[derive(Debug)]
struct Acked {
    /// The key, written only by this write.
    key: String,
    /// Its value.
    value: String,
    /// The log index the cluster answered with.
    index: u64,
}

/// Writes distinct keys `w{writer}-{n}` in a loop, rotating over the nodes, until `stop`; returns the writes
/// answered with 200. Any other outcome (an error, a refused connection, a timeout) leaves the write unknown:
/// it may or may not be applied, and it is not checked.
async fn write_until(http: reqwest::Client, urls: Vec<String>, writer: usize, stop: Arc<AtomicBool>) -> Vec<Acked> {
    let mut acked = Vec::new();
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("w{writer}-{n:06}");
        let value = format!("value of {key}");
        let url = format!("{}/v1/kv/{key}", urls[(writer + n as usize) % urls.len()]);
        let answer = match http.put(url).body(value.clone()).send().await {
            Ok(answer) if answer.status() == 200 => answer,
            _ => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(body) = answer.json::<serde_json::Value>().await else { continue };
        let index = body["index"].as_u64().unwrap_or_else(|| panic!("200 without an index: {body}"));
        acked.push(Acked { key, value, index });
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let start = Instant::now();
    let mut cluster = Cluster::start(&["--request-timeout-ms", "2000"]).await;
    let old_leader = cluster.wait_for_leader().await;
    let old_id = cluster.nodes[old_leader].id.clone();

    // Load: 8 writers on all three nodes, before, during and after the crash.
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = (0..NODES).map(|i| cluster.url(i, "")).collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write_until(cluster.http.clone(), urls.clone(), w, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Crash the leader; the other two elect a new one that accepts writes.
    cluster.stop(old_leader, Stop::Kill);
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, old_leader, "the killed node cannot lead");
    let probe_index = cluster.put_retrying(new_leader, "probe-after-crash", "ok", Duration::from_secs(10)).await;
    eprintln!("crash_leader: {old_id} killed, {} leads at {}", cluster.nodes[new_leader].id, common::elapsed(start));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The old node restarts from its data dir while writes go on.
    cluster.restart(old_leader).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer task"));
    }
    let max_index = acked.iter().map(|a| a.index).max().expect("some writes were acknowledged");
    eprintln!("crash_leader: {} writes acknowledged, max index {max_index}", acked.len());
    assert!(acked.len() >= 50, "too few writes acknowledged to mean anything: {}", acked.len());
    let after_crash = acked.iter().filter(|a| a.index > probe_index).count();
    assert!(after_crash > 0, "no write was acknowledged after the new leader's first write at {probe_index}");

    // Every acknowledged write is on every node, with its value and index.
    for i in 0..NODES {
        cluster.wait_applied(i, max_index, Duration::from_secs(30)).await;
        let items = cluster.stale_scan(i, "w").await;
        for write in &acked {
            let found = items.get(&write.key);
            let expected = (write.value.clone(), write.index);
            assert_eq!(found, Some(&expected), "{} lost or changed acknowledged write {write:?}", cluster.nodes[i].id);
        }
    }

    // With writes stopped, all nodes converge on one applied index and state checksum.
    let views = cluster.wait_converged(Duration::from_secs(20)).await;
    assert!(views[0].applied_index >= max_index, "{views:#?}");
    eprintln!("crash_leader: {}", common::elapsed(start));
}
