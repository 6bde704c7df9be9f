//! What a watch bench run reports: human lines, then one JSON line (the last line of the output), as the other
//! workloads do (`report.rs`).

use serde::Serialize;

use super::super::report::{CpuTime, Percentiles};
use super::acks::MatchCounts;

/// The delivery run's parameters and results; serialized as the last line of its output.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(super) struct DeliverySummary {
    /// `watch`.
    pub(super) workload: &'static str,
    /// `false`: this is the delivery run.
    pub(super) idle: bool,
    /// Watcher connections (all to `node`, or spread over every endpoint).
    pub(super) watchers: u64,
    /// Whether the watchers were spread over every endpoint (else: all on `node`).
    pub(super) spread: bool,
    /// Writes sent at most at once.
    pub(super) writers: u64,
    /// The target rate of writes per second.
    pub(super) rate_target: u64,
    /// Distinct keys written under the watched prefix.
    pub(super) keys: u64,
    /// Bytes per value written.
    pub(super) value_size: usize,
    /// The node the writers (and, unless spread, the watchers) talk to: the leader, when known.
    pub(super) node: Option<String>,
    /// The measured time: from the start of the window to the last measured write's answer, in seconds.
    pub(super) duration_s: f64,
    /// Writes sent in the measured window and acknowledged.
    pub(super) writes: u64,
    /// Writes sent in the measured window that failed.
    pub(super) write_errors: u64,
    /// Acknowledged writes per second: the achieved rate.
    pub(super) writes_per_s: f64,
    /// Median write latency (send to answer).
    pub(super) write_p50_us: u64,
    /// 99th percentile write latency.
    pub(super) write_p99_us: u64,
    /// `watchers * writes`: every watcher should see every measured write.
    pub(super) events_expected: u64,
    /// (watcher, event) pairs of measured writes received.
    pub(super) events_delivered: u64,
    /// Of those, received before the writer had its answer (latency 0).
    pub(super) events_early: u64,
    /// Events of indexes no acknowledged write had (failed writes, other clients).
    pub(super) events_unmatched: u64,
    /// Events received twice (after a resume).
    pub(super) events_duplicate: u64,
    /// Median delivery latency: event received by a watcher minus write acknowledged, at least 0.
    pub(super) p50_us: u64,
    /// 90th percentile delivery latency.
    pub(super) p90_us: u64,
    /// 99th percentile delivery latency.
    pub(super) p99_us: u64,
    /// 99.9th percentile delivery latency.
    pub(super) p999_us: u64,
    /// The largest delivery latency.
    pub(super) max_us: u64,
    /// `slow_watcher` errors received (each stream was resumed where it was cut).
    pub(super) slow_watcher: u64,
    /// Other broken or failed streams (each resumed too, except for errors that end a watch).
    pub(super) watch_errors: u64,
    /// CPU time of the bench in user mode over the measured time, in seconds.
    pub(super) cpu_user_s: f64,
    /// CPU time of the bench in the kernel over the measured time, in seconds.
    pub(super) cpu_sys_s: f64,
    /// The bench's CPU time as a percentage of one core over the measured time.
    pub(super) cpu_percent: f64,
}

/// What the delivery run measured, before it is summarized.
#[derive(Clone, Debug, Default)]
pub(super) struct DeliveryMeasured {
    /// Measured writes acknowledged and failed.
    pub(super) writes: u64,
    /// Measured writes that failed.
    pub(super) write_errors: u64,
    /// Write latency percentiles.
    pub(super) write_latency: Percentiles,
    /// Delivery latency percentiles.
    pub(super) delivery_latency: Percentiles,
    /// The watchers' counts, summed.
    pub(super) counts: MatchCounts,
    /// `slow_watcher` errors.
    pub(super) slow_watcher: u64,
    /// Other stream failures.
    pub(super) watch_errors: u64,
    /// The measured time, in seconds.
    pub(super) seconds: f64,
    /// The bench's CPU time over it.
    pub(super) cpu: CpuTime,
}

/// Rounds to `decimals` decimals, for readable JSON.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

impl DeliverySummary {
    /// Fills in the measured numbers; `self` carries the parameters.
    pub(super) fn with(mut self, measured: &DeliveryMeasured) -> DeliverySummary {
        let seconds = measured.seconds.max(f64::MIN_POSITIVE);
        self.workload = "watch";
        self.duration_s = round(seconds, 3);
        self.writes = measured.writes;
        self.write_errors = measured.write_errors;
        self.writes_per_s = round(measured.writes as f64 / seconds, 1);
        self.write_p50_us = measured.write_latency.p50_us;
        self.write_p99_us = measured.write_latency.p99_us;
        self.events_expected = self.watchers * measured.writes;
        self.events_delivered = measured.counts.delivered;
        self.events_early = measured.counts.early;
        self.events_unmatched = measured.counts.unmatched;
        self.events_duplicate = measured.counts.duplicates;
        let latency = measured.delivery_latency;
        (self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us) =
            (latency.p50_us, latency.p90_us, latency.p99_us, latency.p999_us, latency.max_us);
        self.slow_watcher = measured.slow_watcher;
        self.watch_errors = measured.watch_errors;
        self.cpu_user_s = round(measured.cpu.user.as_secs_f64(), 3);
        self.cpu_sys_s = round(measured.cpu.system.as_secs_f64(), 3);
        self.cpu_percent = round((measured.cpu.user + measured.cpu.system).as_secs_f64() / seconds * 100.0, 1);
        self
    }

    /// The share of expected events delivered, in percent (100 when none was expected).
    fn delivered_percent(&self) -> f64 {
        match self.events_expected {
            0 => 100.0,
            expected => self.events_delivered as f64 / expected as f64 * 100.0,
        }
    }

    /// The summary for a person, several lines.
    pub(super) fn human(&self) -> String {
        format!(
            "watch ({} watchers {}, {} writers to {}, target {} writes/s, {} keys, {}-byte values): {} writes in \
             {:.1} s = {:.1} writes/s, {} write errors\n\
             write latency (µs): p50 {}  p99 {}\n\
             delivered {} of {} events ({:.2}%), {} before their write's answer, {} slow_watcher, {} other stream \
             errors, {} unmatched, {} duplicates\n\
             delivery latency (µs): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n\
             bench CPU: user {:.2} s + sys {:.2} s = {:.1}% of one core",
            self.watchers,
            if self.spread { "spread over every endpoint" } else { "on the same node" },
            self.writers,
            self.node.as_deref().unwrap_or("the first endpoint"),
            self.rate_target,
            self.keys,
            self.value_size,
            self.writes,
            self.duration_s,
            self.writes_per_s,
            self.write_errors,
            self.write_p50_us,
            self.write_p99_us,
            self.events_delivered,
            self.events_expected,
            self.delivered_percent(),
            self.events_early,
            self.slow_watcher,
            self.watch_errors,
            self.events_unmatched,
            self.events_duplicate,
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
}

/// The idle run's parameters and results; serialized as the last line of its output.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(super) struct IdleSummary {
    /// `watch`.
    pub(super) workload: &'static str,
    /// `true`: this is the idle (memory) run.
    pub(super) idle: bool,
    /// Watchers asked for.
    pub(super) watchers: u64,
    /// Watchers that opened (answered `200`).
    pub(super) opened: u64,
    /// The node measured (every watcher is on it; the leader, when known).
    pub(super) node: Option<String>,
    /// Seconds from the first connection to the last watcher open.
    pub(super) open_s: f64,
    /// The node's `tally_watchers` before.
    pub(super) node_watchers_before: u64,
    /// The node's `tally_watchers` with every opened watcher counted.
    pub(super) node_watchers_after: u64,
    /// The node's resident memory before the watchers opened.
    pub(super) rss_before_bytes: u64,
    /// The node's resident memory with the watchers open (after they settled).
    pub(super) rss_after_bytes: u64,
    /// `rss_after_bytes - rss_before_bytes` (0 if memory shrank).
    pub(super) rss_added_bytes: u64,
    /// `rss_added_bytes / opened`.
    pub(super) bytes_per_watcher: u64,
    /// The node's resident memory after the watchers closed again.
    pub(super) rss_closed_bytes: u64,
    /// Watchers that the node cut off while they were idle.
    pub(super) dropped: u64,
}

impl IdleSummary {
    /// Fills in what follows from the readings.
    pub(super) fn derived(mut self) -> IdleSummary {
        self.workload = "watch";
        self.idle = true;
        self.rss_added_bytes = self.rss_after_bytes.saturating_sub(self.rss_before_bytes);
        self.bytes_per_watcher = self.rss_added_bytes.checked_div(self.opened).unwrap_or(0);
        self
    }

    /// The summary for a person, several lines.
    pub(super) fn human(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        format!(
            "watch --idle on {}: {} of {} watchers open in {:.1} s (tally_watchers {} -> {}), {} cut off while idle\n\
             node memory (RSS): {:.1} MiB before, {:.1} MiB with the watchers open: +{:.1} MiB, {:.2} KiB per \
             watcher; {:.1} MiB after they closed",
            self.node.as_deref().unwrap_or("the first endpoint"),
            self.opened,
            self.watchers,
            self.open_s,
            self.node_watchers_before,
            self.node_watchers_after,
            self.dropped,
            mib(self.rss_before_bytes),
            mib(self.rss_after_bytes),
            mib(self.rss_added_bytes),
            self.bytes_per_watcher as f64 / 1024.0,
            mib(self.rss_closed_bytes),
        )
    }
}

/// A summary as one JSON object on one line.
///
/// # Errors
/// Never expected (every field serializes).
pub(super) fn json_line(summary: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string(summary)?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn delivery_summary_counts_every_pair() {
        let counts = MatchCounts { delivered: 9_990, early: 10, warmup: 5, duplicates: 1, unmatched: 2 };
        let measured = DeliveryMeasured {
            writes: 1_000,
            write_errors: 1,
            write_latency: Percentiles { p50_us: 900, p99_us: 4_000, ..Percentiles::default() },
            delivery_latency: Percentiles { p50_us: 300, p90_us: 600, p99_us: 2_000, p999_us: 3_000, max_us: 9_000 },
            counts,
            slow_watcher: 3,
            watch_errors: 0,
            seconds: 2.0,
            cpu: CpuTime { user: Duration::from_millis(300), system: Duration::from_millis(100) },
        };
        let parameters = DeliverySummary { watchers: 10, writers: 8, rate_target: 500, ..DeliverySummary::default() };
        let summary = parameters.with(&measured);
        assert_eq!((summary.events_expected, summary.events_delivered), (10_000, 9_990));
        assert_eq!((summary.writes_per_s, summary.cpu_percent), (500.0, 20.0));
        let line = json_line(&summary).expect("serializes");
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!((value["workload"].as_str(), value["idle"].as_bool()), (Some("watch"), Some(false)));
        assert_eq!((value["p99_us"].as_u64(), value["slow_watcher"].as_u64()), (Some(2_000), Some(3)));
        assert!(summary.human().contains("delivered 9990 of 10000 events (99.90%)"), "{}", summary.human());
    }

    #[test]
    fn idle_summary_divides_the_growth_by_the_watchers_opened() {
        let summary = IdleSummary {
            watchers: 10_000,
            opened: 8_000,
            rss_before_bytes: 50 << 20,
            rss_after_bytes: (50 << 20) + 8_000 * 4_096,
            ..IdleSummary::default()
        }
        .derived();
        assert_eq!((summary.rss_added_bytes, summary.bytes_per_watcher), (8_000 * 4_096, 4_096));
        assert!(summary.human().contains("4.00 KiB per watcher"), "{}", summary.human());
        let shrank = IdleSummary { opened: 0, rss_before_bytes: 10, rss_after_bytes: 5, ..IdleSummary::default() };
        assert_eq!(shrank.derived().bytes_per_watcher, 0, "no watcher, no division");
        let value: serde_json::Value = serde_json::from_str(&json_line(&summary).expect("JSON")).expect("JSON");
        assert_eq!(value["idle"].as_bool(), Some(true));
    }
}
