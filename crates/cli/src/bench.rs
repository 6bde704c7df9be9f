//! `tally bench`: drives a running cluster with a fixed number of requests in flight and reports throughput,
//! latency percentiles and its own CPU use.
//!
//! ```text
//!  cluster() ──▶ leader known (writes and linearizable reads go straight to it)
//!  preload (get, mixed): list bench/ ──▶ put the missing keys, `concurrency` at a time
//!  preload (txn): the same for the accounts bench/acct/0..keys, 1000 each
//!  N worker tasks, each with its own keep-alive connection to the leader (conn.rs, lean on purpose: the bench
//!  shares the CPU with the cluster) ──▶ loop { key bench/{uniform i}; put | get; record µs } ──▶ histograms
//!                                       (txn: two accounts; transfer 1 under compares from cached balances: txn.rs)
//!  (watch: watchers and open-loop writers of their own: watch.rs)
//!  progress task ──▶ stderr once a second: ops/s, errors
//!  merge histograms ──▶ Summary ──▶ stdout: human lines, then one JSON line (the last line)
//! ```
//!
//! Only requests that start after the warmup are measured. Failed requests are counted, not fatal, and
//! their latency is not recorded; the first few messages are shown. A transfer whose compares failed (another
//! transfer wrote one of its accounts in between) is tried again until it is done: each retry is counted, and the
//! transfer's latency runs from its first attempt.

mod conn;
mod report;
mod txn;
mod watch;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use tally_client::{Client, ClientError, Consistency};
use tally_raft::SplitMix64;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::kv::{Credentials, DEV_ENDPOINTS};
use conn::{CallError, Connection};
use report::{CpuTime, LATENCY_US_MAX, Measured, Summary, new_histogram};

/// The prefix of every key the bench writes.
const KEY_PREFIX: &str = "bench/";
/// The pause before opening a connection again after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// How many error messages are kept to show.
const ERRORS_SHOWN_MAX: usize = 5;
/// Keys per page when looking for the keys a previous run preloaded.
const LIST_PAGE: u32 = 10_000;

/// What each request does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Every request writes.
    Put,
    /// Every request reads (the keys are preloaded).
    Get,
    /// Half reads, half writes, at random.
    Mixed,
    /// Each request moves 1 between two random accounts (preloaded): one transaction writes both under
    /// `modify_index ==` compares on the balances last seen (a read-only transaction reads them the first time).
    Txn,
    /// `--watchers` streams on `bench/w/` and writes at `--rate` under it: how long each event takes to reach
    /// each watcher (`--idle`: what idle watchers cost the node in memory). See `bench/watch.rs`.
    Watch,
}

impl Workload {
    /// Its name on the command line.
    fn as_str(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::Txn => "txn",
            Workload::Watch => "watch",
        }
    }
}

/// `tally bench --workload put|get|mixed --concurrency N --keys N --value-size BYTES --duration SECS`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Client URLs of the cluster's nodes, comma-separated.
    #[arg(long, env = "TALLY_ENDPOINTS", value_delimiter = ',', default_value = DEV_ENDPOINTS)]
    pub endpoints: Vec<String>,
    /// What each request does.
    #[arg(long, value_enum, default_value_t = Workload::Put)]
    pub workload: Workload,
    /// Requests in flight at once (one task each).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Distinct keys, bench/0 .. bench/{N-1}, chosen uniformly (txn: accounts bench/acct/0 .. {N-1}, at least 2).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub value_size: usize,
    /// Seconds measured (after the warmup).
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,
    /// Seconds run before measuring (connections open, caches warm).
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub warmup: u64,
    /// Consistency of the reads, linearizable or stale (for txn: of the read of accounts not seen yet; the
    /// compares make a stale read safe).
    #[arg(long, default_value_t = Consistency::Linearizable)]
    pub consistency: Consistency,
    /// watch: watcher connections, each with one stream of `bench/w/`, all to the leader (see --spread).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub watchers: u32,
    /// watch: writes per second under `bench/w/` (open loop: due on a schedule, not after the previous answer).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub rate: u32,
    /// watch: writes in flight at most (one task and connection each).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub writers: u16,
    /// watch: open the watchers and write nothing; report the leader's resident memory per watcher.
    #[arg(long, conflicts_with = "spread")]
    pub idle: bool,
    /// watch: spread the watchers over every endpoint, round-robin, instead of putting all on the leader.
    #[arg(long)]
    pub spread: bool,
    /// TLS and credentials (https:// endpoints need --cacert).
    #[command(flatten)]
    pub credentials: Credentials,
}

/// What every worker shares.
struct Shared {
    /// The client URL every worker connects to: the leader's, if known.
    target: String,
    /// How workers open their connections (TLS, token).
    dial: conn::Dial,
    /// What to do.
    workload: Workload,
    /// Number of keys.
    keys: u64,
    /// The value written.
    value: bytes::Bytes,
    /// Consistency of reads.
    consistency: Consistency,
    /// Requests starting from here on are measured.
    measure_from: Instant,
    /// No request starts from here on.
    end: Instant,
    /// Requests completed (warmup included), for the progress line.
    done: AtomicU64,
    /// Requests failed in the measured time.
    errors: AtomicU64,
    /// Transfers whose compares failed in the measured time (txn only).
    retries: AtomicU64,
    /// The first error messages.
    first_errors: Mutex<Vec<String>>,
    /// The account balances the workers last saw (txn only).
    balances: txn::BalanceCache,
}

/// `tally bench`: preloads if needed, runs the workload, prints the report (JSON last).
///
/// # Errors
/// Bad endpoints, or a preload that fails; failures during the run are counted instead.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.workload != Workload::Txn || args.keys >= 2, "--workload txn needs --keys 2 or more");
    if args.workload == Workload::Watch {
        return watch::run(args).await.map(|()| ExitCode::SUCCESS);
    }
    let client = args.credentials.builder(args.endpoints.clone()).build()?;
    let dial = conn::Dial::new(args.credentials.tls_config()?, args.credentials.token.as_deref())?;
    let leader = find_leader(&client).await;
    let target = client.leader_url().or_else(|| client.endpoints().first().cloned()).unwrap_or_default();
    let value = make_value(args.value_size);
    match args.workload {
        Workload::Put | Workload::Watch => {}
        Workload::Get | Workload::Mixed => {
            preload(&client, KEY_PREFIX, args.keys, &value, usize::from(args.concurrency)).await?;
        }
        Workload::Txn => {
            let opening = txn::OPENING_BALANCE.as_bytes();
            preload(&client, txn::ACCOUNT_PREFIX, args.keys, opening, usize::from(args.concurrency)).await?;
        }
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let shared = Arc::new(Shared {
        target,
        dial,
        workload: args.workload,
        keys: args.keys,
        value: value.into(),
        consistency: args.consistency,
        measure_from,
        end: measure_from + Duration::from_secs(args.duration),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        first_errors: Mutex::new(Vec::new()),
        balances: txn::BalanceCache::default(),
    });
    eprintln!(
        "bench: {} for {} s (warmup {} s), {} in flight, {} keys, {}-byte values",
        args.workload.as_str(),
        args.duration,
        args.warmup,
        args.concurrency,
        args.keys,
        args.value_size
    );
    let progress = tokio::spawn(progress(Arc::clone(&shared), start));
    let mut workers = JoinSet::new();
    for task in 0..args.concurrency {
        workers.spawn(worker(Arc::clone(&shared), u64::from(task)));
    }
    tokio::time::sleep_until(measure_from).await;
    let cpu_before = CpuTime::now()?;
    let mut latencies = new_histogram();
    while let Some(joined) = workers.join_next().await {
        latencies.add(joined?)?;
    }
    let elapsed = measure_from.elapsed();
    let cpu = CpuTime::now()?.since(cpu_before);
    progress.abort();

    let errors = shared.errors.load(Ordering::Relaxed);
    let measured = Measured { latencies, errors, retries: shared.retries.load(Ordering::Relaxed), elapsed, cpu };
    let summary = parameters(&args, leader).with(&measured);
    show_errors(&shared, summary.errors);
    println!("{}", summary.human());
    println!("{}", summary.json_line()?);
    Ok(ExitCode::SUCCESS)
}

/// The run's parameters, before measuring.
fn parameters(args: &BenchArgs, leader: Option<String>) -> Summary {
    Summary {
        workload: args.workload.as_str().into(),
        concurrency: usize::from(args.concurrency),
        consistency: args.consistency.as_str().into(),
        keys: args.keys,
        value_size: args.value_size,
        leader,
        ..Summary::default()
    }
}

/// Asks the cluster for its leader, so requests go straight to it; a failure is only a warning.
async fn find_leader(client: &Client) -> Option<String> {
    match client.cluster().await {
        Ok(view) => {
            let leader = view.leader.clone().or_else(|| client.leader());
            match (&leader, client.leader_url()) {
                (Some(id), Some(url)) => eprintln!("bench: leader {id} at {url}"),
                (Some(id), None) => eprintln!("bench: leader {id} (URL unknown: requests go through {})", view.id),
                (None, _) => eprintln!("bench: no leader known yet; requests go to {}", client.endpoints().join(", ")),
            }
            leader
        }
        Err(error) => {
            eprintln!("bench: cannot ask the cluster for its leader ({error}); going on");
            None
        }
    }
}

/// A value of `size` printable bytes (so `tally list bench/` shows it readably).
fn make_value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The key `bench/{index}`.
fn key(index: u64) -> String {
    format!("{KEY_PREFIX}{index}")
}

/// Writes the keys `{prefix}0..keys` that do not exist yet, `concurrency` at a time.
async fn preload(client: &Client, prefix: &str, keys: u64, value: &[u8], concurrency: usize) -> anyhow::Result<()> {
    let existing = existing_keys(client, prefix, keys).await?;
    let missing: Vec<u64> = (0..keys).filter(|i| !existing.contains(i)).collect();
    if missing.is_empty() {
        eprintln!("bench: all {keys} keys exist already");
        return Ok(());
    }
    eprintln!("bench: preloading {} of {keys} keys under {prefix}", missing.len());
    let started = Instant::now();
    let missing = Arc::new(missing);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (client, missing, next, value) = (client.clone(), Arc::clone(&missing), Arc::clone(&next), value.to_vec());
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            while let Some(&index) = missing.get(next.fetch_add(1, Ordering::Relaxed)) {
                client.put(format!("{prefix}{index}").as_bytes(), &value).await?;
            }
            Ok::<(), ClientError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined?.map_err(|e| anyhow::anyhow!("preload failed: {e}"))?;
    }
    eprintln!("bench: preloaded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The indexes below `keys` of the `{prefix}N` keys that exist.
async fn existing_keys(client: &Client, prefix: &str, keys: u64) -> anyhow::Result<HashSet<u64>> {
    let mut existing = HashSet::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = client.list(prefix.as_bytes(), after.as_deref(), LIST_PAGE, Consistency::Linearizable).await?;
        for item in &page.items {
            let index = item.key.strip_prefix(prefix.as_bytes()).and_then(|i| std::str::from_utf8(i).ok());
            if let Some(index) = index.and_then(|i| i.parse::<u64>().ok()).filter(|&i| i < keys) {
                existing.insert(index);
            }
        }
        match page.items.last() {
            Some(last) if page.more => after = Some(last.key.clone()),
            _ => return Ok(existing),
        }
    }
}

/// One worker: requests back to back on its own connection until the end; returns the latencies of the
/// measured successes. A broken connection is counted as an error and opened again.
async fn worker(shared: Arc<Shared>, task: u64) -> Histogram<u64> {
    let mut histogram = new_histogram();
    let mut rng = SplitMix64::new(task.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(std::process::id()));
    let mut connection: Option<Connection> = None;
    let consistency = shared.consistency.as_str();
    // A transfer whose compares failed, with the time its first attempt started: tried again until it is done,
    // so its latency covers every attempt.
    let mut retry: Option<(Request, Instant)> = None;
    loop {
        if Instant::now() >= shared.end {
            return histogram;
        }
        let (request, started, retried) = match retry.take() {
            Some((request, started)) => (request, started, true),
            None => (next_request(&shared, &mut rng), Instant::now(), false),
        };
        let result = match connection.as_mut() {
            Some(conn) => match request {
                Request::Put(index) => conn.put(&key(index), &shared.value).await.map(|()| Outcome::Done),
                Request::Get(index) => conn.get(&key(index), consistency).await.map(|()| Outcome::Done),
                Request::Transfer(from, to) => txn::transfer(conn, &shared.balances, (from, to), consistency).await,
            },
            None => match Connection::open(&shared.target, &shared.dial).await {
                Ok(conn) => {
                    connection = Some(conn);
                    // Connecting is not a measured request; a transfer being retried keeps its first start.
                    retry = retried.then_some((request, started));
                    continue;
                }
                Err(error) => {
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    Err(error)
                }
            },
        };
        if let Err(CallError::Connection(_)) = &result {
            connection = None;
        }
        let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(LATENCY_US_MAX);
        shared.done.fetch_add(1, Ordering::Relaxed);
        if let Ok(Outcome::Conflict) = result {
            retry = Some((request, started));
        }
        if started < shared.measure_from {
            continue;
        }
        match result {
            Ok(Outcome::Done) => histogram.saturating_record(latency_us.max(1)),
            Ok(Outcome::Conflict) => {
                shared.retries.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => record_error(&shared, &error.to_string()),
        }
    }
}

/// What a request that got its answer came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// It did what it was sent for: measured.
    Done,
    /// A transfer's compares failed, nothing changed: counted as a retry, and tried again.
    Conflict,
}

/// The next request of the workload, drawn by `rng`.
fn next_request(shared: &Shared, rng: &mut SplitMix64) -> Request {
    let index = rng.next_u64() % shared.keys;
    match shared.workload {
        Workload::Put => Request::Put(index),
        Workload::Get => Request::Get(index),
        Workload::Mixed if rng.next_u64() & 1 == 0 => Request::Put(index),
        Workload::Mixed => Request::Get(index),
        // A second account, different from the first: one of the other keys - 1, uniformly.
        Workload::Txn => Request::Transfer(index, (index + 1 + rng.next_u64() % (shared.keys - 1)) % shared.keys),
        Workload::Watch => unreachable!("the watch workload has its own driver (bench/watch.rs)"),
    }
}

/// What one worker request does.
#[derive(Clone, Copy, Debug)]
enum Request {
    /// Write the key `bench/{index}`.
    Put(u64),
    /// Read the key `bench/{index}`.
    Get(u64),
    /// Move 1 from the first account to the second (different) one.
    Transfer(u64, u64),
}

/// Counts a failed request and keeps its message if it is among the first.
fn record_error(shared: &Shared, error: &str) {
    shared.errors.fetch_add(1, Ordering::Relaxed);
    let mut first = shared.first_errors.lock().unwrap_or_else(PoisonError::into_inner);
    if first.len() < ERRORS_SHOWN_MAX {
        first.push(error.to_string());
    }
}

/// Prints the first error messages to stderr.
fn show_errors(shared: &Shared, errors: u64) {
    let first = shared.first_errors.lock().unwrap_or_else(PoisonError::into_inner);
    if first.is_empty() {
        return;
    }
    eprintln!("bench: {errors} requests failed; the first:");
    for message in first.iter() {
        eprintln!("  {message}");
    }
}

/// Prints a progress line on stderr once a second until aborted.
async fn progress(shared: Arc<Shared>, start: Instant) {
    let mut ticker = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_done = 0;
    loop {
        let now = ticker.tick().await;
        let done = shared.done.load(Ordering::Relaxed);
        let phase = if now <= shared.measure_from { " (warmup)" } else { "" };
        eprintln!(
            "[{:>4.0}s] {:>8} ops/s, {} errors{phase}",
            (now - start).as_secs_f64(),
            done - last_done,
            shared.errors.load(Ordering::Relaxed)
        );
        last_done = done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A parser for the bench arguments alone.
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn parses_the_documented_flags() {
        let args = Wrapper::try_parse_from([
            "bench",
            "--workload",
            "mixed",
            "--concurrency",
            "32",
            "--keys",
            "500",
            "--value-size",
            "1024",
            "--duration",
            "5",
            "--warmup",
            "0",
            "--consistency",
            "stale",
        ])
        .expect("valid")
        .bench;
        assert_eq!((args.workload, args.concurrency, args.keys, args.value_size), (Workload::Mixed, 32, 500, 1024));
        assert_eq!((args.duration, args.warmup, args.consistency), (5, 0, Consistency::Stale));
        let txn = Wrapper::try_parse_from(["bench", "--workload", "txn"]).expect("valid").bench;
        assert_eq!(txn.workload, Workload::Txn);
        for bad in [&["bench", "--concurrency", "0"][..], &["bench", "--keys", "0"], &["bench", "--workload", "scan"]] {
            assert!(Wrapper::try_parse_from(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn keys_are_uniform_over_the_range() {
        let mut rng = SplitMix64::new(7);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[(rng.next_u64() % 10) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
        assert_eq!(key(42), "bench/42");
        assert_eq!(make_value(28), b"abcdefghijklmnopqrstuvwxyzab");
    }
}
