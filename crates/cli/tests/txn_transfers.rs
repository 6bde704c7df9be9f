//! Transfers between accounts with transactions, on a 3-node cluster of `tally node` processes whose leader is
//! SIGKILLed and restarted, twice: the sum of the accounts never changes.
//!
//! Four client tasks each loop: read two accounts (one read-only transaction), then a transaction with two
//! `modify_index ==` compares and two puts; a failed compare means another transfer came first, so read again.
//! An error (a `503` during the election, a `504` or a timeout whose write may or may not have applied) is
//! never retried blindly: the task reads again, and the compares make a transfer that did apply fail. At
//! several points, and at the end on every node, a linearizable read-only transaction lists every account: they
//! must sum to the opening total.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, NODES, Stop};
use tally_client::{Client, ClientConfig, ClientError, Compare, CompareOp, Op, OpResult, Txn};
use tally_raft::SplitMix64;

/// The accounts, `acct/0..ACCOUNTS`.
const ACCOUNTS: u64 = 10;
/// What each account holds at the start.
const OPENING: i64 = 100;
/// The client tasks.
const TASKS: u64 = 4;
/// How long a total may take to read while the cluster elects a leader.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The key of account `i`.
fn account(i: u64) -> String {
    format!("acct/{i}")
}

/// A client of `endpoints` with short timeouts, so a call to a killed leader fails fast.
fn client(endpoints: Vec<String>) -> Client {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        retry_deadline: Duration::from_secs(3),
        ..ClientConfig::default()
    };
    Client::with_config(endpoints, config).expect("valid endpoints")
}

/// What the transfer tasks counted.
#[derive(Default)]
struct Counts {
    /// Transfers whose transaction applied and was acknowledged.
    committed: AtomicU64,
    /// Transfers whose compares failed (another transfer wrote an account in between).
    conflicts: AtomicU64,
    /// Calls that failed (no leader, timeouts, connections cut): followed by a fresh read.
    errors: AtomicU64,
}

/// Panics on an error no transfer should ever get: a refused request (4xx) is a bug, not an outage.
fn check_error(error: &ClientError) {
    if let Some(status) = error.status().filter(|status| (400..500).contains(status)) {
        panic!("a transfer was refused with {status}: {error}");
    }
}

/// The balance and modify index of a `get` result (0 and 0 for an absent account).
fn balance(result: &OpResult) -> (i64, u64) {
    match result {
        OpResult::Get { entry: Some(entry), .. } => {
            let text = std::str::from_utf8(&entry.value).expect("balances are text");
            (text.parse().unwrap_or_else(|_| panic!("account holds {text:?}")), entry.modify_index)
        }
        other => panic!("an account is missing: {other:?}"),
    }
}

/// One task: transfers between random accounts until `stop`.
async fn transfers(client: Client, seed: u64, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut rng = SplitMix64::new(seed);
    while !stop.load(Ordering::Relaxed) {
        let from = rng.next_u64() % ACCOUNTS;
        let to = (from + 1 + rng.next_u64() % (ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + (rng.next_u64() % 5) as i64;
        let (from, to) = (account(from), account(to));
        let read = Txn::new().and_then(Op::get(&from)).and_then(Op::get(&to));
        let read = match client.txn(&read).await {
            Ok(read) => read,
            Err(error) => {
                check_error(&error);
                counts.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let ((from_balance, from_index), (to_balance, to_index)) =
            (balance(&read.results[0]), balance(&read.results[1]));
        let amount = amount.min(from_balance);
        let write = Txn::new()
            .when(Compare::modify_index(&from, CompareOp::Eq, from_index))
            .when(Compare::modify_index(&to, CompareOp::Eq, to_index))
            .and_then(Op::put(&from, (from_balance - amount).to_string()))
            .and_then(Op::put(&to, (to_balance + amount).to_string()));
        match client.txn(&write).await {
            Ok(result) if result.succeeded => counts.committed.fetch_add(1, Ordering::Relaxed),
            Ok(_) => counts.conflicts.fetch_add(1, Ordering::Relaxed),
            Err(error) => {
                // It may or may not have applied (a 504, a cut connection): read again, never resend it.
                check_error(&error);
                tokio::time::sleep(Duration::from_millis(20)).await;
                counts.errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Every account through a linearizable read-only transaction on `client`, retried while the cluster has no
/// leader: `(index, balances)`.
async fn accounts(client: &Client) -> (u64, Vec<i64>) {
    let list = Txn::new().and_then(Op::list("acct/", 100));
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        match client.txn(&list).await {
            Ok(result) => {
                let [OpResult::List { items, more: false, .. }] = result.results.as_slice() else {
                    panic!("a list of every account: {result:?}")
                };
                let balances = items
                    .iter()
                    .map(|item| std::str::from_utf8(&item.value).expect("text").parse().expect("a number"))
                    .collect();
                return (result.index, balances);
            }
            Err(error) => {
                check_error(&error);
                assert!(Instant::now() < deadline, "no linearizable read within {READ_TIMEOUT:?}: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Asserts that the accounts sum to the opening total (`when` names the moment).
async fn assert_total(client: &Client, when: &str, seed: u64) {
    let (index, balances) = accounts(client).await;
    let total: i64 = balances.iter().sum();
    assert_eq!(balances.len() as u64, ACCOUNTS, "{when}: accounts at index {index}: {balances:?} (seed {seed})");
    assert_eq!(total, OPENING * ACCOUNTS as i64, "{when}: balances at index {index}: {balances:?} (seed {seed})");
    assert!(balances.iter().all(|&balance| balance >= 0), "{when}: {balances:?} (seed {seed})");
    eprintln!("{when}: total {total} at index {index}: {balances:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_keep_the_total_while_the_leader_is_killed_and_restarted() {
    let start = Instant::now();
    let seed = std::env::var("TALLY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
    });
    eprintln!("txn_transfers: seed {seed} (TALLY_TEST_SEED={seed} replays the tasks' choices)");
    let mut cluster = Cluster::start(&["--request-timeout-ms", "1000"]).await;
    cluster.wait_for_leader().await;
    let endpoints: Vec<String> = (0..NODES).map(|i| cluster.url(i, "")).collect();
    let shared = client(endpoints.clone());

    // Phase: the accounts open in one transaction, only if none exists yet.
    let open = (0..ACCOUNTS).fold(Txn::new().when(Compare::exists(account(0), false)), |txn, i| {
        txn.and_then(Op::put(account(i), OPENING.to_string()))
    });
    let opened = shared.txn(&open).await.expect("the accounts open");
    assert!(opened.succeeded, "{opened:?}");
    assert_total(&shared, "opened", seed).await;

    // Phase: four tasks transfer, each with its own client of every node.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let client = client(endpoints.clone());
            let seed = seed.wrapping_add(task.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            tokio::spawn(transfers(client, seed, Arc::clone(&stop), Arc::clone(&counts)))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_total(&shared, "transferring", seed).await;

    // Phase: twice, the leader is killed (the others elect a new one and the transfers go on), then restarted
    // (it catches up as a follower).
    for round in 1..=2 {
        let leader = cluster.wait_for_leader().await;
        let committed = counts.committed.load(Ordering::Relaxed);
        cluster.stop(leader, Stop::Kill);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_total(&shared, &format!("round {round}, leader {} killed", cluster.nodes[leader].id), seed).await;
        cluster.restart(leader).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_total(&shared, &format!("round {round}, restarted"), seed).await;
        let progress = counts.committed.load(Ordering::Relaxed) - committed;
        assert!(progress > 0, "round {round}: no transfer committed after the kill (seed {seed})");
    }

    // Phase: the tasks stop; every node answers the same total, linearizably.
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a transfer task panicked");
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        assert_total(&client(vec![endpoint.clone()]), &format!("the end, through {}", cluster.nodes[i].id), seed).await;
    }
    let (committed, conflicts, errors) = (
        counts.committed.load(Ordering::Relaxed),
        counts.conflicts.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
    );
    eprintln!(
        "txn_transfers: {committed} transfers, {conflicts} conflicts, {errors} errors in {}",
        common::elapsed(start)
    );
    assert!(committed > 0, "no transfer committed (seed {seed})");
    cluster.wait_converged(Duration::from_secs(20)).await;
}
