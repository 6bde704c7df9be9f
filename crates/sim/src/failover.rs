//! Failover measurements over many seeds, for comparing the election modes on the same seeds: each seed
//! runs a calm cluster ([`SimParams::for_failover`]), crashes its leader for good, and measures the time
//! until a new leader has committed in its term ([`Simulation::measure_failover`]). The checkers run
//! throughout, so a measurement is also a safety run.

use std::time::{Duration, Instant};

use tally_raft::ElectionMode;

use crate::checkers::Violation;
use crate::params::SimParams;
use crate::sweep::{catching_panics, run_parallel};
use crate::world::{FailoverSample, Simulation};

/// Simulated ms before the leader is crashed, so clients are running and the log holds entries.
const WARMUP_MS: u64 = 1_000;

/// The failovers of a sweep.
#[derive(Debug)]
pub struct FailoverReport {
    /// The election mode measured.
    pub election: ElectionMode,
    /// One sample per seed that elected a new leader, in seed order.
    pub samples: Vec<FailoverSample>,
    /// Seeds that broke a checker or elected no leader in time.
    pub failures: Vec<(u64, Violation)>,
    /// Wall-clock time of the sweep.
    pub elapsed: Duration,
}

impl FailoverReport {
    /// One line: `failover election=bully seeds=N failures=F median_ticks=... p99_ticks=... ...`.
    pub fn summary(&self) -> String {
        let mut ticks: Vec<u64> = self.samples.iter().map(|s| s.ticks).collect();
        ticks.sort_unstable();
        let count = self.samples.len().max(1) as f64;
        let multi_round = self.samples.iter().filter(|s| s.rounds > 1).count();
        let highest = self.samples.iter().filter(|s| s.highest_id_won).count();
        let mode = match self.election {
            ElectionMode::Raft => "raft",
            ElectionMode::Bully => "bully",
        };
        format!(
            "failover election={mode} seeds={} failures={} median_ticks={} p99_ticks={} max_ticks={} \
             multi_round={multi_round} ({:.1}%) highest_id_won={:.1}% elapsed={:.1}s",
            self.samples.len() + self.failures.len(),
            self.failures.len(),
            percentile(&ticks, 50),
            percentile(&ticks, 99),
            ticks.last().copied().unwrap_or(0),
            100.0 * multi_round as f64 / count,
            100.0 * highest as f64 / count,
            self.elapsed.as_secs_f64(),
        )
    }
}

/// The `pct`-th percentile of sorted `values` (nearest rank; 0 if empty).
fn percentile(values: &[u64], pct: usize) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = (values.len() * pct).div_ceil(100).max(1);
    values[rank - 1]
}

/// Measures one failover for each seed `start .. start + count`, on `threads` threads.
pub fn failover_sweep(
    start: u64,
    count: u64,
    nodes: Option<usize>,
    election: ElectionMode,
    threads: usize,
) -> FailoverReport {
    let began = Instant::now();
    let measure = |seed| {
        let params = SimParams::for_failover(seed, nodes, election);
        catching_panics(|| Simulation::new(params, None).measure_failover(WARMUP_MS)).and_then(|result| result)
    };
    let (results, _) = run_parallel((start, start + count), threads, false, |_| false, measure);
    let mut report = FailoverReport { election, samples: Vec::new(), failures: Vec::new(), elapsed: Duration::ZERO };
    for (seed, result) in results {
        match result {
            Ok(sample) => report.samples.push(sample),
            Err(violation) => report.failures.push((seed, violation)),
        }
    }
    report.elapsed = began.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50);
        assert_eq!(percentile(&values, 99), 99);
        assert_eq!(percentile(&values, 100), 100);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
    }
}
