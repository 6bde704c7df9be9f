//! The watch settings of a node: how much change history it keeps, and what it grants each watcher.

use std::time::Duration;

use tally_kv::HistoryLimits;
use tally_node::WatchConfig;

/// How much history a node keeps for watches and blocking reads, and the limits of each watcher
/// (`tally node --watch-*`). A node's own setting: nodes of one cluster may differ.
///
/// Invariant (checked by [`WatchSettings::validate`] at start): every field is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchSettings {
    /// Log entries with key changes kept in the history (`--watch-history-entries`, default 100,000). A watch or
    /// blocking read from an older index answers `410 compacted`.
    pub history_entries_max: usize,
    /// Bytes of changes kept in the history (`--watch-history-bytes`, default 256 MiB), so that large values
    /// cannot make the window cost unbounded memory.
    pub history_bytes_max: usize,
    /// Bytes queued for one watcher before it is cut off with `slow_watcher` (`--watch-buffer-bytes`, default
    /// 1 MiB). The stream's own channel holds about as much again, so a watcher costs at most about twice this.
    pub buffer_bytes: usize,
    /// An idle watcher gets an `event: progress` this often (`--watch-progress-interval`, default 1 s).
    pub progress_interval: Duration,
    /// At most this many watches and blocking reads at once on this node (`--max-watchers`, default 10,000);
    /// more answer `503`.
    pub max_watchers: usize,
}

impl Default for WatchSettings {
    /// The history window of [`HistoryLimits::DEFAULT`] and the hub limits of [`WatchConfig::default`].
    fn default() -> WatchSettings {
        let hub = WatchConfig::default();
        WatchSettings {
            history_entries_max: HistoryLimits::DEFAULT.entries_max,
            history_bytes_max: HistoryLimits::DEFAULT.bytes_max,
            buffer_bytes: hub.buffer_bytes,
            progress_interval: Duration::from_millis(hub.progress_interval_ms),
            max_watchers: hub.max_watchers,
        }
    }
}

impl WatchSettings {
    /// Checks that every limit is at least 1.
    ///
    /// # Errors
    /// A message naming the flag that is 0.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.history_entries_max == 0, "--watch-history-entries"),
            (self.history_bytes_max == 0, "--watch-history-bytes"),
            (self.buffer_bytes == 0, "--watch-buffer-bytes"),
            (self.progress_interval.as_millis() == 0, "--watch-progress-interval"),
            (self.max_watchers == 0, "--max-watchers"),
        ];
        match checks.iter().find(|(is_zero, _)| *is_zero) {
            Some((_, flag)) => Err(format!("{flag} must be at least 1")),
            None => Ok(()),
        }
    }

    /// The store's history window.
    pub fn history_limits(&self) -> HistoryLimits {
        HistoryLimits { entries_max: self.history_entries_max, bytes_max: self.history_bytes_max }
    }

    /// The watch hub's configuration.
    pub fn hub_config(&self) -> WatchConfig {
        WatchConfig {
            buffer_bytes: self.buffer_bytes,
            progress_interval_ms: self.progress_interval.as_millis().max(1) as u64,
            max_watchers: self.max_watchers,
            ..WatchConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issues_and_zero_is_refused() {
        let settings = WatchSettings::default();
        assert_eq!(settings.history_limits(), HistoryLimits::DEFAULT);
        assert_eq!(settings.hub_config().progress_interval_ms, 1000);
        assert!(settings.validate().is_ok());
        let error = WatchSettings { max_watchers: 0, ..settings }.validate().expect_err("0 watchers is refused");
        assert!(error.contains("--max-watchers"), "{error}");
    }
}
