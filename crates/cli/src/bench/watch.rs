//! `tally bench --workload watch`: how fast watch events reach many watchers, and what an idle watcher costs a
//! node.
//!
//! ```text
//!  leader known (cluster()) ──▶ every writer and watcher talks to it (--spread: the watchers go round-robin to
//!  every endpoint); the bench raises its own file descriptor limit
//!  delivery run (delivery.rs): W watchers on bench/w/ ──▶ writers at R writes/s (writers.rs) ──▶ each event
//!      matched by index to its write's acknowledgement (acks.rs) ──▶ latency percentiles, events delivered
//!      against W × writes, slow_watcher cuts
//!  --idle (idle.rs): the leader's /metrics (metrics.rs) ──▶ open W watchers, no writes ──▶ wait until
//!      tally_watchers counts them, settle ──▶ /metrics again ──▶ (after − before) / W
//!  both: human lines, then one JSON line (summary.rs)
//! ```
//!
//! Every watcher has its own keep-alive connection (conn.rs) and reads its stream with a lean scanner
//! (events.rs), so the bench stays light next to the cluster it shares the cores with.

mod acks;
mod delivery;
mod events;
mod idle;
mod metrics;
mod stream;
mod summary;
mod writers;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tally_client::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conn::Dial;
use super::{BenchArgs, ERRORS_SHOWN_MAX};

/// Watchers connecting at once: enough to open thousands in seconds, few enough for the node's accept backlog.
const OPEN_PARALLEL: usize = 64;
/// How long opening every watcher may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(300);
/// File descriptors the bench needs besides one per watcher (writers, metrics, the runtime).
const FD_SPARE: u64 = 256;

/// What both runs start from.
struct Setup {
    /// The command line.
    args: BenchArgs,
    /// A client of the cluster (for its commit index).
    client: Client,
    /// The node every connection goes to: the leader's client URL, if known.
    url: String,
    /// Its id, if known.
    leader: Option<String>,
    /// How connections are opened (TLS, token).
    dial: Arc<Dial>,
}

/// `tally bench --workload watch [--idle]`.
///
/// # Errors
/// Bad endpoints or credentials, a watcher that does not open (delivery run), a node whose metrics cannot be
/// read (idle run).
pub(super) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    raise_fd_limit(u64::from(args.watchers) + u64::from(args.writers) + FD_SPARE);
    let client = args.credentials.builder(args.endpoints.clone()).build()?;
    let dial = Arc::new(Dial::new(args.credentials.tls_config()?, args.credentials.token.as_deref())?);
    let leader = super::find_leader(&client).await;
    let url = client.leader_url().or_else(|| client.endpoints().first().cloned()).unwrap_or_default();
    let setup = Setup { args, client, url, leader, dial };
    if setup.args.idle { idle::run(&setup).await } else { delivery::run(&setup).await }
}

/// Raises the soft limit on open files to the hard one, and warns if it is still below `needed`.
fn raise_fd_limit(needed: u64) {
    match tally_net::fd::raise_soft_limit() {
        Ok(limit) if limit < needed => eprintln!(
            "bench: warning: at most {limit} open files (ulimit -n), {needed} needed: some watchers will not open"
        ),
        Ok(_) => {}
        Err(error) => eprintln!("bench: warning: cannot raise the open file limit: {error}"),
    }
}

/// How opening the watchers went.
#[derive(Debug, Default)]
struct Opened {
    /// Watchers whose watch answered `200`.
    opened: u64,
    /// Watchers that failed to open (or did not report in time).
    failed: u64,
    /// The first failure's message.
    first_error: Option<String>,
    /// Seconds from the first attempt to the last report.
    seconds: f64,
}

/// Spawns `count` watchers with `spawn(id, report)`, each sending one report on `report` once its watch
/// opened or failed, and waits for every report (or the timeout), printing progress.
async fn open_all(count: u32, mut spawn: impl FnMut(usize, mpsc::UnboundedSender<Result<(), String>>)) -> Opened {
    let started = Instant::now();
    let (report, mut reports) = mpsc::unbounded_channel();
    for id in 0..count as usize {
        spawn(id, report.clone());
    }
    drop(report);
    let mut outcome = Opened::default();
    let mut next_note = started + Duration::from_secs(2);
    let deadline = started + OPEN_TIMEOUT;
    while outcome.opened + outcome.failed < u64::from(count) {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(Ok(()))) => outcome.opened += 1,
            Ok(Some(Err(error))) => {
                outcome.failed += 1;
                outcome.first_error.get_or_insert(error);
            }
            Ok(None) | Err(_) => {
                let missing = u64::from(count) - outcome.opened - outcome.failed;
                outcome.failed += missing;
                outcome.first_error.get_or_insert_with(|| format!("{missing} watchers did not report in time"));
                break;
            }
        }
        if Instant::now() >= next_note {
            eprintln!("bench: watch: {} open, {} failed", outcome.opened, outcome.failed);
            next_note += Duration::from_secs(2);
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    eprintln!("bench: watch: {} of {count} watchers open in {:.1} s", outcome.opened, outcome.seconds);
    outcome
}

/// Failures counted, and the first few messages kept to show.
#[derive(Debug, Default)]
struct ErrorLog {
    /// Every failure, and the first [`ERRORS_SHOWN_MAX`] messages.
    inner: Mutex<(u64, Vec<String>)>,
}

impl ErrorLog {
    /// Counts a failure and keeps its message if it is among the first.
    fn record(&self, message: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.0 += 1;
        if inner.1.len() < ERRORS_SHOWN_MAX {
            inner.1.push(message.to_string());
        }
    }

    /// Failures so far.
    fn count(&self) -> u64 {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// Prints the first messages to stderr.
    fn show(&self) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.1.is_empty() {
            return;
        }
        eprintln!("bench: {} failures; the first:", inner.0);
        for message in &inner.1 {
            eprintln!("  {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::Workload;
    use super::*;

    /// A parser for the bench arguments alone.
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn parses_the_watch_flags_and_their_defaults() {
        let args = Wrapper::try_parse_from(["bench", "--workload", "watch"]).expect("valid").bench;
        assert_eq!(
            (args.workload, args.watchers, args.rate, args.writers, args.idle),
            (Workload::Watch, 1000, 5000, 64, false)
        );
        let args = Wrapper::try_parse_from([
            "bench",
            "--workload",
            "watch",
            "--watchers",
            "10000",
            "--rate",
            "200",
            "--writers",
            "8",
            "--idle",
        ])
        .expect("valid")
        .bench;
        assert_eq!((args.watchers, args.rate, args.writers, args.idle), (10_000, 200, 8, true));
        let spread = Wrapper::try_parse_from(["bench", "--workload", "watch", "--spread"]).expect("valid").bench;
        assert!(spread.spread && !spread.idle);
        for bad in [
            &["bench", "--idle", "--spread"][..],
            &["bench", "--watchers", "0"],
            &["bench", "--rate", "0"],
            &["bench", "--writers", "0"],
            &["bench", "--idle", "yes"],
        ] {
            assert!(Wrapper::try_parse_from(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_error_log_counts_all_and_keeps_the_first() {
        let log = ErrorLog::default();
        for i in 0..ERRORS_SHOWN_MAX + 3 {
            log.record(&format!("failure {i}"));
        }
        assert_eq!(log.count(), (ERRORS_SHOWN_MAX + 3) as u64);
        let inner = log.inner.lock().expect("not poisoned");
        assert_eq!(inner.1.len(), ERRORS_SHOWN_MAX);
        assert_eq!(inner.1[0], "failure 0");
    }

    #[tokio::test]
    async fn opening_counts_reports_and_keeps_the_first_failure() {
        let outcome = open_all(5, |id, report| {
            let result = if id % 2 == 0 { Ok(()) } else { Err(format!("watcher {id} refused")) };
            report.send(result).expect("the receiver waits");
        })
        .await;
        assert_eq!((outcome.opened, outcome.failed), (3, 2));
        assert_eq!(outcome.first_error.as_deref(), Some("watcher 1 refused"));
        // A watcher that never reports (its task ended without a word) fails the wait instead of hanging it.
        let silent = open_all(2, |id, report| {
            if id == 0 {
                report.send(Ok(())).expect("the receiver waits");
            }
        })
        .await;
        assert_eq!((silent.opened, silent.failed), (1, 1));
    }
}
