//! `tally node`'s watch flags: the history window and the limits of watchers (docs/http-api.md, "Watches").

use std::time::Duration;

use tally_server::WatchSettings;

use super::parse_duration;

/// How much change history the node keeps, and what each watcher may use.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WatchFlags {
    /// Log entries with key changes kept for watches and blocking reads (default 100,000); an older
    /// `from_index` answers 410 compacted.
    #[arg(long, value_name = "N")]
    pub watch_history_entries: Option<usize>,
    /// Bytes of changes kept in the watch history (default 256 MiB).
    #[arg(long, value_name = "N")]
    pub watch_history_bytes: Option<usize>,
    /// Bytes queued for one watcher before it is cut off with slow_watcher (default 1 MiB).
    #[arg(long, value_name = "N")]
    pub watch_buffer_bytes: Option<usize>,
    /// How often an idle watch gets an `event: progress`, e.g. 1s (default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub watch_progress_interval: Option<Duration>,
    /// The most watches and blocking reads served at once (default 10,000); more answer 503.
    #[arg(long, value_name = "N")]
    pub max_watchers: Option<usize>,
}

impl WatchFlags {
    /// The settings: the flags given, the defaults for the rest.
    ///
    /// # Errors
    /// A limit of 0, naming the flag.
    pub fn settings(&self) -> anyhow::Result<WatchSettings> {
        let defaults = WatchSettings::default();
        let settings = WatchSettings {
            history_entries_max: self.watch_history_entries.unwrap_or(defaults.history_entries_max),
            history_bytes_max: self.watch_history_bytes.unwrap_or(defaults.history_bytes_max),
            buffer_bytes: self.watch_buffer_bytes.unwrap_or(defaults.buffer_bytes),
            progress_interval: self.watch_progress_interval.unwrap_or(defaults.progress_interval),
            max_watchers: self.max_watchers.unwrap_or(defaults.max_watchers),
        };
        settings.validate().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }
}
