//! Bad watch input hurts nothing: malformed starts are refused with clear errors, and 10,000 watch
//! connections opened and dropped leave the node ready with no watcher left behind. (Kept apart from
//! bad_input.rs so that the two can grow independently.)

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

/// Watch connections opened in all.
const CONNECTIONS: usize = 10_000;

/// Connections open at once.
const WAVE: usize = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_empty_prefix_bad_from_index() {
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader().await;

    // Phase: an empty prefix is fine, but a from_index of 0, not a number, or in the future is 400 with a
    // message saying what to send instead.
    for (query, says) in [
        ("prefix=&from_index=0", "indexes start at 1"),
        ("prefix=&from_index=-1", "non-negative integer"),
        ("prefix=&from_index=1e3", "non-negative integer"),
        ("prefix=&from_index=999999999", "watch from"),
    ] {
        let answer = cluster.get(leader, &format!("/v1/watch?{query}")).await.expect("answers");
        let message = answer.assert_error(400, "bad_request");
        assert!(message.contains(says), "{query}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_watch_connections_opened_and_dropped() {
    let cluster = Cluster::start(&[]).await;
    let leader = cluster.wait_for_leader().await;
    let url = cluster.url(leader, "/v1/watch?prefix=storm/");

    // Phase: waves of watches, each opened (answer head received) and dropped at once.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("http");
    let started = Instant::now();
    for _ in 0..CONNECTIONS / WAVE {
        let opens = (0..WAVE).map(|_| {
            let request = http.get(&url).timeout(Duration::from_secs(10));
            async move { request.send().await.map(|answer| answer.status().as_u16()) }
        });
        for status in futures_join_all(opens).await {
            assert_eq!(status.expect("the watch opens"), 200);
        }
    }
    eprintln!("{CONNECTIONS} watches opened and dropped in {:?}", started.elapsed());

    // Phase: the node is ready, and every watcher is gone (closed streams are swept within a second).
    assert_eq!(cluster.get(leader, "/readyz").await.expect("readyz").status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.metric(leader, "tally_watchers").await != 0 {
        assert!(Instant::now() < deadline, "watchers left behind");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.put(leader, "storm/after", "ok").await.map(|_| ()), Ok(()));
}

/// Runs `futures` concurrently, in order of results (tokio tasks, so that the test needs no futures crate).
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("joins"));
    }
    results
}
