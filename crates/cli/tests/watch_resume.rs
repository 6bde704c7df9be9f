//! Watches are exactly-once across dropped connections, resumes on other nodes, and a leader crash: 3 real
//! node processes, a writer doing puts, txns and prefix deletes under one prefix, and 50 watchers whose
//! connections are dropped at random moments and resumed (`from_index`) against a random node, while the
//! leader is killed and restarted once. Every watcher's sequence must equal the committed changes, read at
//! the end by one watch from index 1.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, NODES, Stop};
use tally_client::{Client, ClientConfig, WatchEvent, WatchOptions};

/// Concurrent watchers.
const WATCHERS: usize = 50;

/// The key the writer writes last: every watcher stops once it saw it.
const END_KEY: &str = "wr/~end";

/// A tiny deterministic generator (xorshift64*), seeded per test run and per task.
struct Rng(u64);

impl Rng {
    /// The next number below `bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

/// One change as a watcher saw it: `(index, kind, key, value)`.
type Seen = (u64, String, String, String);

/// A client of all nodes, with the node `first` preferred.
fn client_at(urls: &[String], first: usize) -> Client {
    let mut endpoints: Vec<String> = urls.to_vec();
    endpoints.rotate_left(first % urls.len());
    let config = ClientConfig { retry_deadline: Duration::from_secs(30), ..ClientConfig::default() };
    Client::with_config(endpoints, config).expect("client")
}

/// Watches `wr/` from index 1 until the end key, dropping its connection after a random number of events
/// and resuming from where it was on a random node; returns every change seen.
async fn watcher(urls: Vec<String>, seed: u64, progress: Arc<std::sync::Mutex<String>>) -> Vec<Seen> {
    let mut rng = Rng(seed | 1);
    let mut seen = Vec::new();
    let mut from = 1;
    loop {
        let mut watch = client_at(&urls, rng.below(urls.len() as u64) as usize)
            .watch(WatchOptions { from_index: Some(from), ..WatchOptions::prefix(b"wr/") });
        let events_before_drop = 1 + rng.below(200);
        for _ in 0..events_before_drop {
            let event = watch.next().await.unwrap_or_else(|e| panic!("watcher (seed {seed}) failed: {e}"));
            *progress.lock().expect("lock") = format!("{} changes, from {from}, last event {event:?}", seen.len());
            let WatchEvent::Changes { index, changes } = event else { continue };
            for change in changes {
                let key = String::from_utf8(change.key).expect("utf-8 keys");
                let value = String::from_utf8(change.value).expect("utf-8 values");
                let done = key == END_KEY;
                seen.push((index, format!("{:?}", change.kind), key, value));
                if done {
                    return seen;
                }
            }
        }
        from = watch.resume_from().unwrap_or(from);
    }
}

/// Writes under `wr/` until `stop`: puts, two-key txns and prefix deletes, on rotating nodes. Failures are
/// fine (the outcome of a write is checked only through the watches).
async fn writer(urls: Vec<String>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http");
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let base = &urls[n as usize % urls.len()];
        let request = match n % 10 {
            7 => http.post(format!("{base}/v1/txn")).body(format!(
                "{{\"compare\":[],\"success\":[{{\"put\":{{\"key\":\"wr/t{}\",\"value\":\"{n}\"}}}},\
                 {{\"put\":{{\"key\":\"wr/u{}\",\"value\":\"{n}\"}}}}]}}",
                n % 5,
                n % 5
            )),
            9 => http.delete(format!("{base}/v1/kv?prefix=wr/k1")),
            _ => http.put(format!("{base}/v1/kv/wr/k{}", n % 20)).body(n.to_string()),
        };
        let _ = request.send().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_watchers_see_every_change_exactly_once_across_resumes_and_a_leader_crash() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_nanos() as u64;
    eprintln!("watch_resume seed {seed}");
    let mut cluster = Cluster::start(&["--watch-progress-interval", "300ms"]).await;
    let leader = cluster.wait_for_leader().await;
    let urls: Vec<String> = (0..NODES).map(|i| cluster.url(i, "")).collect();

    // Phase: the writer and the watchers run; the leader is killed, then restarted.
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(urls.clone(), Arc::clone(&stop)));
    let progress: Vec<_> = (0..WATCHERS).map(|_| Arc::new(std::sync::Mutex::new(String::new()))).collect();
    let watchers: Vec<_> = (0..WATCHERS)
        .map(|w| tokio::spawn(watcher(urls.clone(), seed.wrapping_add(w as u64 * 7919), Arc::clone(&progress[w]))))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop(leader, Stop::Kill);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(leader).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    writing.await.expect("writer");
    let last = cluster.wait_for_leader().await;
    cluster.put_retrying(last, END_KEY, "end", Duration::from_secs(20)).await;

    // Phase: the committed changes, by one uninterrupted watch from index 1.
    let reference = watcher_without_drops(&urls).await;
    assert!(reference.len() > 50, "the writer made too few changes: {}", reference.len());

    // Phase: every watcher saw exactly those, in order: no gap, no duplicate.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (w, handle) in watchers.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(seen) = tokio::time::timeout(left, handle).await else {
            let states: Vec<String> = progress.iter().map(|p| p.lock().expect("lock").clone()).collect();
            panic!("watcher {w} did not finish; reference {} changes; states: {states:#?}", reference.len());
        };
        let seen = seen.expect("joins");
        if seen != reference {
            let first_difference = seen.iter().zip(&reference).position(|(a, b)| a != b);
            cluster.print_logs();
            panic!(
                "watcher {w} (seed {seed}) saw {} changes, the log has {}; first difference at {first_difference:?}",
                seen.len(),
                reference.len()
            );
        }
    }
}

/// One watch of `wr/` from index 1 up to the end key, never dropped on purpose.
async fn watcher_without_drops(urls: &[String]) -> Vec<Seen> {
    let mut watch = client_at(urls, 0).watch(WatchOptions { from_index: Some(1), ..WatchOptions::prefix(b"wr/") });
    let mut seen = Vec::new();
    loop {
        let WatchEvent::Changes { index, changes } = watch.next().await.expect("the reference watch") else { continue };
        for change in changes {
            let key = String::from_utf8(change.key).expect("utf-8 keys");
            let value = String::from_utf8(change.value).expect("utf-8 values");
            let done = key == END_KEY;
            seen.push((index, format!("{:?}", change.kind), key, value));
            if done {
                return seen;
            }
        }
    }
}
