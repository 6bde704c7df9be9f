//! The hub's limits, timings and test faults.

/// Switches that break the hub on purpose, so the simulator can show that its watch checker catches the bug.
/// All off by default; production code never turns them on (like `tally_raft::Faults`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchFaults {
    /// A subscription with an explicit `from` (a resume) silently drops its first matching batch: the bug of a
    /// watch that resumes one change too late. `watch_exactly_once` must report the gap.
    pub skip_first_after_resume: bool,
}

/// The hub's limits and timings.
///
/// Invariant: every limit is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// A watcher's queue holds at most this many bytes of matching changes before it is dropped as slow (a single
    /// larger batch is still delivered on its own).
    pub buffer_bytes: usize,
    /// An idle, drained watcher gets a progress notice this often, so its client can tell an idle stream from a
    /// dead one.
    pub progress_interval_ms: u64,
    /// At most this many subscriptions at once; more are refused.
    pub max_watchers: usize,
    /// Each `publish` reads at most about this many bytes of history for catching-up watchers (one page more at
    /// most), so a large backlog never stalls the driver; the rest waits for the next publish.
    pub catch_up_bytes_per_publish: usize,
    /// Test faults; all off by default.
    pub faults: WatchFaults,
}

impl Default for WatchConfig {
    /// 1 MiB per watcher, progress every second, 10,000 watchers, 8 MiB of catch-up reading per publish.
    fn default() -> Self {
        WatchConfig {
            buffer_bytes: 1 << 20,
            progress_interval_ms: 1000,
            max_watchers: 10_000,
            catch_up_bytes_per_publish: 8 << 20,
            faults: WatchFaults::default(),
        }
    }
}
