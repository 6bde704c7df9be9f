//! The idle run (`--idle`): what `watchers` open but idle watches cost the node serving them, in resident
//! memory.
//!
//! ```text
//!  /metrics ──▶ RSS before, tally_watchers before
//!  open W watchers on bench/w/ (no writes; each still reads its progress events, once a second)
//!  /metrics until tally_watchers = before + opened ──▶ settle (every watcher gets progress events, so its
//!  buffers are in use) ──▶ RSS after ──▶ (after − before) / opened
//!  close the watchers ──▶ /metrics until tally_watchers is back ──▶ RSS after closing (memory kept)
//! ```
//!
//! A node's own limits decide how many open: `--max-watchers` (default 10,000: more answer `503`) and
//! `--max-connections` (default 10,000: past it a connection is closed at once, and this run's own `/metrics`
//! calls need a connection too). The summary says how many opened and the first refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::conn::Dial;
use super::events::StreamEvent;
use super::metrics::NodeMetrics;
use super::stream::WatchStream;
use super::summary::{IdleSummary, json_line};
use super::writers::WRITE_PREFIX;
use super::{ErrorLog, Setup, open_all};

/// How long the node may take to count every watcher that opened.
const COUNT_WAIT: Duration = Duration::from_secs(30);
/// How often `/metrics` is read while waiting.
const POLL: Duration = Duration::from_millis(500);
/// The wait after every watcher is counted, before reading the memory: a few progress rounds, so each
/// watcher's queue, channel and buffers have been used at least once.
const SETTLE: Duration = Duration::from_secs(3);

/// What every idle watcher shares.
struct IdleWatchers {
    /// The node watched.
    url: String,
    /// How connections are opened.
    dial: Arc<Dial>,
    /// Bounds the watchers connecting at once.
    open_gate: Semaphore,
    /// Watchers whose stream the node ended while they were idle.
    dropped: AtomicU64,
    /// Why they were dropped (the first messages).
    errors: ErrorLog,
}

/// The idle run: opens the watchers, reads the node's memory before and after, prints the summary.
///
/// # Errors
/// The node's metrics cannot be read.
pub(super) async fn run(setup: &Setup) -> anyhow::Result<()> {
    let args = &setup.args;
    let before = NodeMetrics::read(&setup.url, &setup.dial).await?;
    eprintln!(
        "bench: watch --idle: {} before: RSS {:.1} MiB, {} watchers; opening {} watchers",
        setup.url,
        mib(before.resident_bytes),
        before.watchers,
        args.watchers
    );
    let watchers = Arc::new(IdleWatchers {
        url: setup.url.clone(),
        dial: Arc::clone(&setup.dial),
        open_gate: Semaphore::new(super::OPEN_PARALLEL),
        dropped: AtomicU64::new(0),
        errors: ErrorLog::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let opened = open_all(args.watchers, |_, report| {
        tasks.spawn(idle_watcher(Arc::clone(&watchers), report, stop_rx.clone()));
    })
    .await;
    if let Some(error) = &opened.first_error {
        eprintln!("bench: watch --idle: {} watchers did not open; the first: {error}", opened.failed);
    }
    let result = measure(setup, before, opened.opened).await;
    let _ = stop_tx.send(true);
    tasks.join_all().await;
    let (counted, after) = result?;
    let closed = settle_back(setup, before.watchers).await?;
    let summary = IdleSummary {
        watchers: u64::from(args.watchers),
        opened: opened.opened,
        node: setup.leader.clone(),
        open_s: (opened.seconds * 10.0).round() / 10.0,
        node_watchers_before: before.watchers,
        node_watchers_after: counted,
        rss_before_bytes: before.resident_bytes,
        rss_after_bytes: after.resident_bytes,
        rss_closed_bytes: closed.resident_bytes,
        dropped: watchers.dropped.load(Ordering::Relaxed),
        ..IdleSummary::default()
    }
    .derived();
    watchers.errors.show();
    println!("{}", summary.human());
    println!("{}", json_line(&summary)?);
    Ok(())
}

/// Waits until the node counts `opened` more watchers than `before`, lets them settle, and reads the metrics:
/// the watchers it counted, and the reading after settling.
///
/// # Errors
/// The metrics cannot be read (the node's connection cap may be full: the message says so).
async fn measure(setup: &Setup, before: NodeMetrics, opened: u64) -> anyhow::Result<(u64, NodeMetrics)> {
    let read = || async {
        NodeMetrics::read(&setup.url, &setup.dial).await.map_err(|error| {
            error.context(format!(
                "with {opened} watchers open (is the node's --max-connections, TALLY_MAX_CONNECTIONS, full?)"
            ))
        })
    };
    let wanted = before.watchers + opened;
    let deadline = Instant::now() + COUNT_WAIT;
    let counted = loop {
        let now = read().await?;
        if now.watchers >= wanted || Instant::now() >= deadline {
            break now.watchers;
        }
        tokio::time::sleep(POLL).await;
    };
    if counted < wanted {
        eprintln!("bench: watch --idle: the node counts {counted} watchers after {COUNT_WAIT:?}, not {wanted}");
    }
    tokio::time::sleep(SETTLE).await;
    Ok((counted, read().await?))
}

/// Waits (a while at most) until the node is back to `watchers` watchers, then reads its metrics.
///
/// # Errors
/// The metrics cannot be read.
async fn settle_back(setup: &Setup, watchers: u64) -> anyhow::Result<NodeMetrics> {
    let deadline = Instant::now() + COUNT_WAIT;
    loop {
        let now = NodeMetrics::read(&setup.url, &setup.dial).await?;
        if now.watchers <= watchers || Instant::now() >= deadline {
            tokio::time::sleep(SETTLE).await;
            return NodeMetrics::read(&setup.url, &setup.dial).await;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One idle watcher: opens its watch (reporting on `report`) and reads it until `stop`; a stream the node
/// ends is counted as dropped.
async fn idle_watcher(
    watchers: Arc<IdleWatchers>,
    report: mpsc::UnboundedSender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) {
    let path = format!("/v1/watch?prefix={WRITE_PREFIX}");
    let opened = {
        let _permit = watchers.open_gate.acquire().await;
        WatchStream::open(&watchers.url, &watchers.dial, &path).await
    };
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(error) => {
            let _ = report.send(Err(error.to_string()));
            return;
        }
    };
    let _ = report.send(Ok(()));
    let mut events = Vec::new();
    loop {
        tokio::select! {
            next = stream.next_events(&mut events) => {
                let why = match next {
                    Ok(true) => events.drain(..).find_map(|event| match event {
                        StreamEvent::Change { .. } | StreamEvent::Progress { .. } => None,
                        StreamEvent::SlowWatcher { resume_from } => Some(format!("slow_watcher at {resume_from}")),
                        StreamEvent::Failed { data } => Some(data),
                    }),
                    Ok(false) => Some("the node ended the stream".to_string()),
                    Err(error) => Some(error.to_string()),
                };
                if let Some(why) = why {
                    watchers.dropped.fetch_add(1, Ordering::Relaxed);
                    watchers.errors.record(&format!("idle watch dropped: {why}"));
                    return;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Bytes in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
