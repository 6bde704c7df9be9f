//! Running one seed (catching panics: a failed assertion in the core is a violation too) or many seeds in
//! parallel.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tally_raft::{ElectionMode, Faults};

use crate::checkers::{Violation, WatchCounts};
use crate::params::{Profile, SimParams};
use crate::world::{Simulation, Trace};

/// The result of one seed.
#[derive(Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// The violation, if any.
    pub violation: Option<Violation>,
    /// Client operations completed.
    pub ops: u64,
    /// Keys too costly to check for linearizability within the budget.
    pub unchecked_keys: usize,
    /// What the run's watchers saw.
    pub watch: WatchCounts,
    /// The trace, if asked for.
    pub trace: Vec<String>,
}

/// The result of a sweep.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Seeds run.
    pub seeds: u64,
    /// Failing runs, by seed.
    pub failures: Vec<RunReport>,
    /// Client operations completed over all seeds.
    pub ops: u64,
    /// Keys, over all seeds, whose history was too costly to check for linearizability.
    pub unchecked_keys: usize,
    /// What the watchers saw, over all seeds.
    pub watch: WatchCounts,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl SweepReport {
    /// The summary line: `seeds=N violations=V ops=... elapsed=...`.
    pub fn summary(&self) -> String {
        format!(
            "seeds={} violations={} ops={} elapsed={:.1}s",
            self.seeds,
            self.failures.len(),
            self.ops,
            self.elapsed.as_secs_f64()
        )
    }
}

thread_local! {
    /// The message and location of the last panic on this thread, captured by the quiet panic hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records panics of simulation threads instead of printing them: a
/// panic in a run is reported as that seed's violation.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_sim = LAST_PANIC.with(|p| p.borrow().is_some());
            if !in_sim {
                default(info);
                return;
            }
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message} (at {location})")));
        }));
    });
}

/// What a sweep or a single run is made of, besides the seed.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Force the cluster size (3 or 5); else it alternates by seed.
    pub nodes: Option<usize>,
    /// Which mix of runs to draw from.
    pub profile: Profile,
    /// Broken behaviours to switch on (tests and `--fault` only).
    pub faults: Faults,
    /// How the nodes elect their leader.
    pub election: ElectionMode,
    /// Fault switch (tests and `--fault misapply-auth` only): n1 applies auth grants wrongly (see
    /// [`SimParams::misapply_auth`]).
    pub misapply_auth: bool,
    /// Fault switch (tests and `--fault stale-txn-compare` only): every node evaluates transaction compares one
    /// entry late (see [`SimParams::stale_txn_compare`]).
    pub stale_txn_compare: bool,
    /// Fault switch (tests and `--fault watch-skip-after-resume` only): every node's watch hub drops the first
    /// matching batch of a resumed subscription (see [`SimParams::watch_skip_after_resume`]).
    pub watch_skip_after_resume: bool,
    /// Run the watchers the seed draws (on by default; `--no-watchers` turns them off, so a seed found before
    /// watchers existed replays exactly as it did then).
    pub watchers: bool,
    /// Damage a crashing node's last synced batch at the run's drawn rate (on by default; `--no-damage-synced`
    /// turns it off, to tell its violations from others).
    pub damage_synced: bool,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            nodes: None,
            profile: Profile::Mixed,
            faults: Faults::default(),
            election: ElectionMode::Raft,
            misapply_auth: false,
            stale_txn_compare: false,
            watch_skip_after_resume: false,
            watchers: true,
            damage_synced: true,
        }
    }
}

/// Runs `run`, catching a panic (a failed assertion in the core or a checker) as the `assertion` violation.
pub(crate) fn catching_panics<T>(run: impl FnOnce() -> T) -> Result<T, Violation> {
    install_quiet_hook();
    LAST_PANIC.with(|p| *p.borrow_mut() = Some(String::new()));
    let result = panic::catch_unwind(AssertUnwindSafe(run));
    let panic_message = LAST_PANIC.with(|p| p.borrow_mut().take());
    result.map_err(|_| Violation { checker: "assertion", detail: panic_message.unwrap_or_default() })
}

/// Runs one seed, catching panics (a failed assertion is reported as the `assertion` checker).
pub fn run_seed(seed: u64, options: RunOptions, trace: bool) -> RunReport {
    let mut params = SimParams::from_seed(seed, options.nodes, options.profile, options.election);
    params.faults = options.faults;
    params.misapply_auth = options.misapply_auth;
    params.stale_txn_compare = options.stale_txn_compare;
    params.watch_skip_after_resume = options.watch_skip_after_resume;
    if !options.damage_synced {
        params.damage_synced_permille = 0;
    }
    if !options.watchers {
        params.watch = None;
    }
    let nodes = params.nodes;
    let shared = trace.then(Trace::default);
    match catching_panics(|| Simulation::new(params, shared.clone()).run()) {
        Ok(outcome) => RunReport {
            seed,
            nodes,
            violation: outcome.violation,
            ops: outcome.ops,
            unchecked_keys: outcome.unchecked_keys,
            watch: outcome.watch,
            trace: outcome.trace,
        },
        Err(violation) => RunReport {
            seed,
            nodes,
            violation: Some(violation),
            ops: 0,
            unchecked_keys: 0,
            watch: WatchCounts::default(),
            trace: shared.map(|t| t.lines()).unwrap_or_default(),
        },
    }
}

/// Runs `run(seed)` for seeds `start .. end` on `threads` threads, in seed order per worker; once `failed`
/// holds for a result, workers stop taking seeds if `stop_at_failure`. Returns the results sorted by seed,
/// and how many seeds ran.
pub(crate) fn run_parallel<T: Send>(
    (start, end): (u64, u64),
    threads: usize,
    stop_at_failure: bool,
    failed: impl Fn(&T) -> bool + Sync,
    run: impl Fn(u64) -> T + Sync,
) -> (Vec<(u64, T)>, u64) {
    let next = AtomicU64::new(start);
    let any_failed = AtomicBool::new(false);
    let mut results: Vec<(u64, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while !(stop_at_failure && any_failed.load(Ordering::Relaxed)) {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= end {
                            break;
                        }
                        let result = run(seed);
                        if failed(&result) {
                            any_failed.store(true, Ordering::Relaxed);
                        }
                        mine.push((seed, result));
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("sweep worker panicked outside a run")).collect()
    });
    results.sort_by_key(|(seed, _)| *seed);
    let ran = next.load(Ordering::Relaxed).min(end) - start;
    (results, ran)
}

/// Runs seeds `start .. end` of `options` on `threads` threads (see [`run_parallel`]).
fn run_many(start: u64, end: u64, options: RunOptions, threads: usize, stop_at_failure: bool) -> (Vec<RunReport>, u64) {
    let failed = |r: &RunReport| r.violation.is_some();
    let (results, ran) =
        run_parallel((start, end), threads, stop_at_failure, failed, |seed| run_seed(seed, options, false));
    (results.into_iter().map(|(_, report)| report).collect(), ran)
}

/// Runs seeds `start .. start + count` on `threads` threads.
pub fn sweep(start: u64, count: u64, options: RunOptions, threads: usize) -> SweepReport {
    let began = Instant::now();
    let (reports, _) = run_many(start, start + count, options, threads, false);
    let ops = reports.iter().map(|r| r.ops).sum();
    let unchecked_keys = reports.iter().map(|r| r.unchecked_keys).sum();
    let watch = reports.iter().fold(WatchCounts::default(), |sum, r| sum + r.watch);
    let failures = reports.into_iter().filter(|r| r.violation.is_some()).collect();
    SweepReport { seeds: count, failures, ops, unchecked_keys, watch, elapsed: began.elapsed() }
}

/// Runs seeds from `start` on `threads` threads until one fails or `max_seeds` ran; returns the failing run
/// with the lowest seed among those found, and how many seeds ran.
pub fn hunt(start: u64, max_seeds: u64, options: RunOptions, threads: usize) -> (Option<RunReport>, u64) {
    let (reports, ran) = run_many(start, start + max_seeds, options, threads, true);
    (reports.into_iter().find(|r| r.violation.is_some()), ran)
}
