//! The numbers a bench run reports: latency percentiles from the merged histogram, throughput, and the CPU
//! time of the bench process itself (so a reader can tell whether the load generator was the bottleneck).

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use nix::sys::resource::{UsageWho, getrusage};
use serde::Serialize;

/// The largest latency recorded, in microseconds (larger ones are clamped to it): one minute.
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// An empty latency histogram: 1 µs to one minute, 3 significant digits.
///
/// # Panics
/// Never: the bounds are constants that hdrhistogram accepts.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant bounds are valid")
}

/// CPU time used by this process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on this process's behalf.
    pub system: Duration,
}

impl CpuTime {
    /// The CPU time of this process (`getrusage(RUSAGE_SELF)`: every thread).
    ///
    /// # Errors
    /// If the kernel refuses (never expected).
    pub fn now() -> anyhow::Result<CpuTime> {
        let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
        let duration = |tv: nix::sys::time::TimeVal| {
            Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap_or(0))
                + Duration::from_micros(u64::try_from(tv.tv_usec()).unwrap_or(0))
        };
        Ok(CpuTime { user: duration(usage.user_time()), system: duration(usage.system_time()) })
    }

    /// The CPU time used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime { user: self.user.saturating_sub(earlier.user), system: self.system.saturating_sub(earlier.system) }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// The median.
    pub p50_us: u64,
    /// The 90th percentile.
    pub p90_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The 99.9th percentile.
    pub p999_us: u64,
    /// The largest.
    pub max_us: u64,
}

impl Percentiles {
    /// The percentiles of `histogram` (all zero if it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50_us: histogram.value_at_quantile(0.5),
            p90_us: histogram.value_at_quantile(0.9),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// The result of a bench run; serialized as the last line of its output.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// `put`, `get`, `mixed` or `txn`.
    pub workload: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// `linearizable` or `stale` (for the reads).
    pub consistency: String,
    /// Distinct keys written and read.
    pub keys: u64,
    /// Bytes per value written.
    pub value_size: usize,
    /// Which node led when the run began, if known.
    pub leader: Option<String>,
    /// The measured time (after the warmup), in seconds.
    pub duration_s: f64,
    /// Requests that succeeded in the measured time.
    pub ops: u64,
    /// Requests that failed in the measured time.
    pub errors: u64,
    /// Transfers whose compares failed in the measured time (`txn` only): each was read and tried again.
    pub retries: u64,
    /// Successful requests per second.
    pub ops_per_s: f64,
    /// Median latency of successful requests.
    pub p50_us: u64,
    /// 90th percentile latency.
    pub p90_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
    /// 99.9th percentile latency.
    pub p999_us: u64,
    /// The largest latency.
    pub max_us: u64,
    /// CPU time of the bench process in user mode during the measured time, in seconds.
    pub cpu_user_s: f64,
    /// CPU time of the bench process in the kernel during the measured time, in seconds.
    pub cpu_sys_s: f64,
    /// User plus kernel CPU time as a percentage of one core over the measured time.
    pub cpu_percent: f64,
}

/// What a run measured, before it is summarized.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The merged latency histogram of successful requests, in microseconds.
    pub latencies: Histogram<u64>,
    /// Failed requests.
    pub errors: u64,
    /// Transfers whose compares failed (`txn`).
    pub retries: u64,
    /// The measured wall time.
    pub elapsed: Duration,
    /// The bench process's CPU time over it.
    pub cpu: CpuTime,
}

/// Rounds to one decimal, for readable JSON.
fn one_decimal(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

impl Summary {
    /// Fills in the measured numbers; `self` carries the run's parameters.
    pub fn with(mut self, measured: &Measured) -> Summary {
        let seconds = measured.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let percentiles = Percentiles::of(&measured.latencies);
        let cpu = (measured.cpu.user + measured.cpu.system).as_secs_f64();
        self.duration_s = (seconds * 1000.0).round() / 1000.0;
        self.ops = measured.latencies.len();
        self.errors = measured.errors;
        self.retries = measured.retries;
        self.ops_per_s = one_decimal(self.ops as f64 / seconds);
        self.p50_us = percentiles.p50_us;
        self.p90_us = percentiles.p90_us;
        self.p99_us = percentiles.p99_us;
        self.p999_us = percentiles.p999_us;
        self.max_us = percentiles.max_us;
        self.cpu_user_s = (measured.cpu.user.as_secs_f64() * 1000.0).round() / 1000.0;
        self.cpu_sys_s = (measured.cpu.system.as_secs_f64() * 1000.0).round() / 1000.0;
        self.cpu_percent = one_decimal(cpu / seconds * 100.0);
        self
    }

    /// The summary for a person, several lines.
    pub fn human(&self) -> String {
        let retries = if self.workload == "txn" {
            format!(", {} retries (failed compares)", self.retries)
        } else {
            String::new()
        };
        format!(
            "{} (concurrency {}, {} keys, {}-byte values, {} reads): {} ops in {:.1} s = {:.1} ops/s, {} errors{retries}\n\
             latency (µs): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n\
             bench CPU: user {:.2} s + sys {:.2} s = {:.1}% of one core",
            self.workload,
            self.concurrency,
            self.keys,
            self.value_size,
            self.consistency,
            self.ops,
            self.duration_s,
            self.ops_per_s,
            self.errors,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.cpu_user_s,
            self.cpu_sys_s,
            self.cpu_percent,
        )
    }

    /// The summary as one JSON object on one line.
    ///
    /// # Errors
    /// Never expected (every field serializes).
    pub fn json_line(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters() -> Summary {
        Summary {
            workload: "put".into(),
            concurrency: 8,
            consistency: "linearizable".into(),
            keys: 100,
            value_size: 64,
            leader: Some("n1".into()),
            ..Summary::default()
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut histogram = new_histogram();
        for latency in 1..=1000 {
            histogram.record(latency).expect("in bounds");
        }
        let p = Percentiles::of(&histogram);
        assert_eq!((p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us), (500, 900, 990, 999, 1000));
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn merged_histograms_count_everything() {
        let (mut a, mut b) = (new_histogram(), new_histogram());
        a.record(100).expect("in bounds");
        b.record(300).expect("in bounds");
        b.saturating_record(LATENCY_US_MAX * 10);
        a.add(&b).expect("same bounds");
        assert_eq!(a.len(), 3);
        assert!(a.max() >= LATENCY_US_MAX, "a huge latency is clamped, not lost");
    }

    #[test]
    fn summary_json_line_has_the_documented_fields() {
        let mut latencies = new_histogram();
        for _ in 0..2000 {
            latencies.record(250).expect("in bounds");
        }
        let cpu = CpuTime { user: Duration::from_millis(1500), system: Duration::from_millis(500) };
        let measured = Measured { latencies, errors: 3, retries: 0, elapsed: Duration::from_secs(4), cpu };
        let summary = parameters().with(&measured);
        let line = summary.json_line().expect("serializes");
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        for field in [
            "ops_per_s",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
            "errors",
            "workload",
            "concurrency",
            "cpu_percent",
        ] {
            assert!(value.get(field).is_some(), "{field} missing from {line}");
        }
        assert_eq!(value["ops_per_s"], 500.0);
        assert_eq!(value["errors"], 3);
        assert_eq!(value["cpu_percent"], 50.0);
        assert_eq!(value["p50_us"], 250);
        assert_eq!(value["workload"], "put");
        assert!(summary.human().contains("500.0 ops/s"), "{}", summary.human());
    }

    #[test]
    fn cpu_time_advances() {
        let before = CpuTime::now().expect("getrusage");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = CpuTime::now().expect("getrusage").since(before);
        assert!(used.user + used.system > Duration::ZERO);
    }
}
