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

/// The file descriptor limit of the node in [`at_the_cap_the_node_keeps_descriptors_for_its_log`].
const LOW_FD_LIMIT: u64 = 1_024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_node_keeps_descriptors_for_its_log() {
    // A one-node cluster whose process may open only 1,024 files: its connection cap is derived as
    // 1,024 - 256 = 768, so a flood of connections leaves it descriptors for its log.
    tally_net::fd::raise_soft_limit().expect("raise RLIMIT_NOFILE");
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = common::reserve_ports(2);
    let (client, peer) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let data_dir = dir.path().join("n1").display().to_string();
    let cluster = format!("n1=http://{peer}");
    let log = dir.path().join("n1.log");
    let file = std::fs::File::create(&log).expect("log");
    let node = std::process::Command::new("sh")
        .args(["-c", &format!("ulimit -n {LOW_FD_LIMIT} && exec \"$0\" \"$@\""), common::TALLY, "node"])
        .args(["--id", "n1", "--listen-client", &client, "--listen-peer", &peer, "--data-dir", &data_dir])
        .args(["--initial-cluster", &cluster, "--tick-ms", "20", "--header-timeout", "60s", "--idle-timeout", "60s"])
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("clone"))
        .stderr(file)
        .spawn()
        .expect("start tally node");
    let mut node = common::NodeProcess::new(node);
    let pid = node.pid();
    let base = format!("http://{client}");

    // One kept-alive connection opened before the flood carries the writes (a raw one: a pooling client
    // may race a new connection against the idle one, and a new one is refused at the cap).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut held = loop {
        if let Ok(mut stream) = TcpStream::connect(&client).await {
            if put_raw(&mut stream, "first", "v").await.is_ok() {
                break stream;
            }
        }
        assert!(node.exited().is_none(), "the node exited:\n{}", common::tail(&log, 30));
        assert!(Instant::now() < deadline, "the node did not serve:\n{}", common::tail(&log, 30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(soft_fd_limit(pid), LOW_FD_LIMIT, "the node's limit");

    // The flood: 1,500 connections with half a request each; past the cap they are closed at once.
    let mut flood = Vec::new();
    let mut closed_at_once = 0;
    for _ in 0..1_500 {
        let Ok(mut stream) = TcpStream::connect(&client).await else { continue };
        let _ = stream.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nhost: x\r\n").await;
        flood.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for stream in &mut flood {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await {
            closed_at_once += 1;
        }
    }
    let fds_at_cap = open_fds(pid);

    // At the cap, 70 writes of 1 MiB roll the log to a new 64 MiB segment (a new file and a directory sync).
    let value = "x".repeat(1 << 20);
    for i in 0..70 {
        let written = put_raw(&mut held, &format!("big/{i}"), &value).await;
        assert!(written.is_ok(), "write {i} at the cap failed: {written:?}\n{}", common::tail(&log, 30));
    }
    let segments = std::fs::read_dir(dir.path().join("n1"))
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
        .count();
    let fds_max = fds_at_cap.max(open_fds(pid));
    eprintln!(
        "[{}] {} flood connections, {closed_at_once} closed at once by the cap; descriptors {fds_max} of \
         {LOW_FD_LIMIT}; 70 MiB written at the cap, {segments} segments",
        common::elapsed(started),
        flood.len()
    );
    assert!(closed_at_once >= flood.len() - 768, "only {closed_at_once} of {} closed at the cap", flood.len());
    assert!(fds_max < LOW_FD_LIMIT, "the node used {fds_max} of {LOW_FD_LIMIT} descriptors");
    assert!(segments >= 2, "the log did not roll to a second segment ({segments})");

    // The flood ends; fresh connections are served, and the log still takes writes.
    drop(flood);
    let fresh = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::put_on(&fresh, &base, "after", "v").await.is_err() {
        assert!(Instant::now() < deadline, "no write after the flood:\n{}", common::tail(&log, 30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(node.exited().is_none(), "the node stopped:\n{}", common::tail(&log, 30));
}

/// `PUT /v1/kv/{key}` with `value` on a kept-alive `stream`: `Ok` with the answer's head on `200`.
async fn put_raw(stream: &mut TcpStream, key: &str, value: &str) -> Result<String, String> {
    let head = format!("PUT /v1/kv/{key} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", value.len());
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.write_all(value.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let exchange = async {
        loop {
            let n = stream.read(&mut buffer).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("closed after {:?}", String::from_utf8_lossy(&answer)));
            }
            answer.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&answer).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return if head.starts_with("HTTP/1.1 200") { Ok(head.to_string()) } else { Err(text) };
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.map_err(|_| "no answer in 10 s".to_string())?
}
