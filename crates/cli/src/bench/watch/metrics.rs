//! What the bench reads from a node's `/metrics` (Prometheus text): its resident memory and how many watchers
//! it serves.

use super::super::conn::{Connection, Dial};

/// The node's resident set size, in bytes.
const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// Watches and blocking reads the node serves now.
const WATCHERS: &str = "tally_watchers";

/// One reading of a node's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NodeMetrics {
    /// `process_resident_memory_bytes`.
    pub(super) resident_bytes: u64,
    /// `tally_watchers`.
    pub(super) watchers: u64,
}

impl NodeMetrics {
    /// Reads the metrics of the node at `url`, on a connection of its own (closed after: a kept-alive idle
    /// connection would be closed by the node's idle timeout between two readings anyway).
    ///
    /// # Errors
    /// The call fails, or the text lacks one of the two metrics.
    pub(super) async fn read(url: &str, dial: &Dial) -> anyhow::Result<NodeMetrics> {
        let fail = |error: &dyn std::fmt::Display| anyhow::anyhow!("cannot read {url}/metrics: {error}");
        let mut connection = Connection::open(url, dial).await.map_err(|e| fail(&e))?;
        let body = connection.get_body("/metrics").await.map_err(|e| fail(&e))?;
        NodeMetrics::parse(&String::from_utf8_lossy(&body))
            .ok_or_else(|| anyhow::anyhow!("{url}/metrics lacks {RESIDENT_MEMORY} or {WATCHERS}: is it a Tally node?"))
    }

    /// The two metrics in a Prometheus text exposition, if both are there.
    fn parse(text: &str) -> Option<NodeMetrics> {
        Some(NodeMetrics { resident_bytes: value_of(text, RESIDENT_MEMORY)?, watchers: value_of(text, WATCHERS)? })
    }
}

/// The value of the sample of metric `name` without labels (the first, if repeated), as a whole number.
fn value_of(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        // A value may be written as a float ("1.2e7"); a timestamp may follow it.
        let number: f64 = value.split_whitespace().next()?.parse().ok()?;
        (number.is_finite() && number >= 0.0).then_some(number.round() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_two_metrics_and_nothing_that_only_starts_like_them() {
        let text = "# HELP process_resident_memory_bytes Resident memory.\n\
            # TYPE process_resident_memory_bytes gauge\n\
            process_resident_memory_bytes_total 1\n\
            process_resident_memory_bytes 52428800\n\
            tally_watchers_max 10000\n\
            tally_watchers 1.0e3 1700000000000\n";
        assert_eq!(NodeMetrics::parse(text), Some(NodeMetrics { resident_bytes: 52_428_800, watchers: 1000 }));
        assert_eq!(NodeMetrics::parse("process_resident_memory_bytes 1\n"), None, "no tally_watchers");
        assert_eq!(value_of("tally_watchers NaN\n", WATCHERS), None);
        assert_eq!(value_of("tally_watchers -1\n", WATCHERS), None);
    }
}
