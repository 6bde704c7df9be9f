//! The slow-connection attack (issue 13): 5,000 slow connections (half trickle their headers, half send a head
//! and never finish the body, each reconnecting when cut off) held against ONE node's client port of a
//! 3-node cluster of real processes. Meanwhile writes and reads through the other nodes, and through that
//! node on fresh connections, keep succeeding; that node's open file descriptors (`/proc/PID/fd`) stay under
//! its connection cap; and afterwards writes through it still succeed (its log was never poisoned).
//!
//! The nodes run with `--header-timeout 3s --body-timeout 3s`, so slow connections are cut off and replaced
//! several times within the attack. Every loop is bounded in time; the attack stops by itself.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slow connections held at once.
const ATTACKERS: usize = 5_000;
/// How long the attack lasts.
const ATTACK: Duration = Duration::from_secs(12);
/// Connections being opened at once (the listen backlog must not overflow into SYN retries).
const CONNECTS_IN_FLIGHT: usize = 256;
/// The node's default connection cap (`tally_net::serve::DEFAULT_MAX_CONNECTIONS`).
const DEFAULT_CAP: u64 = 10_000;
/// File descriptors the node keeps beyond its cap (`tally_net::serve::FD_RESERVE`).
const FD_RESERVE: u64 = 256;

/// What the attackers saw.
#[derive(Default)]
struct AttackCounts {
    /// Connections opened.
    opened: AtomicU64,
    /// Connections the server closed on a trickled header.
    cut_header: AtomicU64,
    /// Unfinished bodies answered `408`.
    answered_408: AtomicU64,
    /// Connections that could not be opened.
    connect_failed: AtomicU64,
}

/// One attacker: until `end`, opens a connection and is slow on it (trickling a header if `trickle`, else
/// stalling a body) until the server cuts it off, then opens another.
async fn attacker(
    addr: SocketAddr,
    trickle: bool,
    end: Instant,
    gate: Arc<tokio::sync::Semaphore>,
    counts: Arc<AttackCounts>,
) {
    while Instant::now() < end {
        let stream = {
            let _permit = gate.acquire().await.expect("gate open");
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
        };
        let Ok(Ok(mut stream)) = stream else {
            counts.connect_failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        if trickle {
            let _ = stream.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nhost: x\r\nx-slow: ").await;
            loop {
                if Instant::now() >= end {
                    return;
                }
                let mut byte = [0u8; 64];
                match tokio::time::timeout(Duration::from_millis(1000), stream.read(&mut byte)).await {
                    Ok(Ok(0) | Err(_)) => {
                        counts.cut_header.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        if stream.write_all(b"a").await.is_err() {
                            counts.cut_header.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        } else {
            let head = "PUT /v1/kv/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789";
            let _ = stream.write_all(head.as_bytes()).await;
            let mut answer = Vec::new();
            let left = end.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, stream.read_to_end(&mut answer)).await;
            if answer.starts_with(b"HTTP/1.1 408") {
                counts.answered_408.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count() as u64)
}

/// The soft `RLIMIT_NOFILE` of process `pid`.
fn soft_fd_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc/PID/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files line");
    line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).expect("a number")
}

/// A write then a read of `key` at `base`, on fresh connections, retried (at most 3 attempts each) within a
/// few seconds; `Err` with what happened if it kept failing. The first-attempt failures are counted.
async fn write_and_read(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    first_failures: &AtomicU64,
) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..3 {
        match common::put_on(http, base, key, "v").await {
            Ok(_) => {
                let read = http.get(format!("{base}/v1/kv/{key}")).send().await.map_err(|e| format!("{e:?}"));
                match read {
                    Ok(answer) if answer.status() == 200 => return Ok(()),
                    Ok(answer) => last = format!("read: {}", answer.status()),
                    Err(error) => last = format!("read: {error}"),
                }
            }
            Err(error) => last = format!("write: {error}"),
        }
        if attempt == 0 {
            first_failures.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_slow_connections_do_not_stop_a_node() {
    // The test holds 5,000 sockets itself.
    let limit = tally_net::fd::raise_soft_limit().expect("raise RLIMIT_NOFILE");
    assert!(limit > ATTACKERS as u64 + 1_000, "this test needs a file descriptor limit above {ATTACKERS}: {limit}");
    let started = Instant::now();
    let cluster = Cluster::start(&["--header-timeout", "3s", "--body-timeout", "3s"]).await;
    let target = cluster.wait_for_leader().await;
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != target).collect();
    let pid = cluster.nodes[target].process.as_ref().expect("running").pid();
    let cap = DEFAULT_CAP.min(soft_fd_limit(pid).saturating_sub(FD_RESERVE));
    let addr = cluster.nodes[target].client;
    eprintln!("[{}] attacking {} (pid {pid}, cap {cap})", common::elapsed(started), cluster.nodes[target].id);

    // The attack: 5,000 slow connections, replaced when cut off, for ATTACK.
    let end = Instant::now() + ATTACK;
    let counts = Arc::new(AttackCounts::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut attack = tokio::task::JoinSet::new();
    for i in 0..ATTACKERS {
        attack.spawn(attacker(addr, i % 2 == 0, end, Arc::clone(&gate), Arc::clone(&counts)));
    }

    // Meanwhile: writes and reads through every node on fresh connections, and the target's descriptors.
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let first_failures = AtomicU64::new(0);
    let (mut rounds, mut fds_max) = (0u64, 0u64);
    while Instant::now() < end {
        fds_max = fds_max.max(open_fds(pid));
        for &i in others.iter().chain([&target]) {
            let key = format!("legit/{rounds}/{i}");
            let result = write_and_read(&fresh, &cluster.url(i, ""), &key, &first_failures).await;
            if let Err(error) = result {
                panic!("a write and read through {} failed under the attack: {error}", cluster.nodes[i].id);
            }
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while attack.join_next().await.is_some() {}
    let opened = counts.opened.load(Ordering::Relaxed);
    let (cut, answered_408) = (counts.cut_header.load(Ordering::Relaxed), counts.answered_408.load(Ordering::Relaxed));

    // The numbers, for the record.
    let metrics = cluster.get(target, "/metrics").await.expect("metrics").text();
    let timeouts: Vec<&str> = metrics.lines().filter(|l| l.starts_with("tally_http_connections_")).collect();
    eprintln!(
        "[{}] attack over: {opened} slow connections opened ({} failed to connect), {cut} cut off on a trickled \
         header, {answered_408} unfinished bodies answered 408; {rounds} rounds of writes and reads through every \
         node ({} first attempts retried); the target's descriptors peaked at {fds_max} (cap {cap})\n{}",
        common::elapsed(started),
        counts.connect_failed.load(Ordering::Relaxed),
        first_failures.load(Ordering::Relaxed),
        timeouts.join("\n")
    );

    // The slow connections were cut off and replaced: the timeouts worked under load.
    assert!(opened >= ATTACKERS as u64, "only {opened} slow connections were opened");
    assert!(cut > 0 && answered_408 > 0, "no slow connection was cut off ({cut} headers, {answered_408} bodies)");
    assert!(rounds > 0, "no round of legitimate traffic ran");

    // The target's descriptors stayed under its cap, and it still serves writes (its log is healthy).
    assert!(fds_max < cap, "the target held {fds_max} descriptors, over its cap {cap}");
    let after = write_and_read(&fresh, &cluster.url(target, ""), "after/attack", &first_failures).await;
    assert!(after.is_ok(), "a write through the target failed after the attack: {after:?}");
    assert!(cluster.is_running(target), "the target stopped");
}
