//! What the hub hands out: subscription ids, deliveries, and the errors that end or refuse a watch.

use std::fmt;
use std::sync::Arc;

use tally_kv::ChangeBatch;

/// Names one subscription of a hub. Ids are never reused by the hub that issued them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(u64);

impl WatchId {
    /// The id numbered `number`; only the hub makes them.
    pub(super) fn new(number: u64) -> WatchId {
        WatchId(number)
    }

    /// The id as a number, for logs.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for WatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watch-{}", self.0)
    }
}

/// Why a subscription ended; always its last delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The watcher did not take its deliveries fast enough and its queue went over the buffer.
    #[error("the watcher fell behind by more than its buffer: resume from index {resume_from}")]
    SlowWatcher {
        /// The index right after the last one delivered: resuming there loses and repeats nothing.
        resume_from: u64,
    },
    /// The history no longer holds the changes the watcher needs next.
    #[error("changes before index {oldest} are no longer kept: read the current value, then watch from its index + 1")]
    Compacted {
        /// The oldest index the history covers now.
        oldest: u64,
    },
}

/// What a watcher gets from [`WatchHub::take`](super::WatchHub::take).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Entry `index` changed at least one key the watcher follows. The batch holds all of the entry's changes,
    /// shared with the history and every other watcher: the consumer picks its own with
    /// [`ChangeBatch::matching`] and its filter ([`WatchHub::filter`](super::WatchHub::filter)).
    Changes {
        /// The entry's log index.
        index: u64,
        /// All changes of the entry.
        changes: Arc<ChangeBatch>,
    },
    /// Every matching change up to this index was delivered.
    Progress(u64),
    /// The subscription ended; nothing follows.
    Error(WatchError),
}

/// Why [`WatchHub::subscribe`](super::WatchHub::subscribe) refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The start index is older than the history.
    #[error(
        "from_index {from} is older than the retained history, which starts at {oldest}: read the current value \
         and watch from its index + 1 (or from {oldest} or later)"
    )]
    Compacted {
        /// The start asked for (or implied).
        from: u64,
        /// The oldest index the history covers.
        oldest: u64,
    },
    /// The node already serves as many watchers as allowed.
    #[error("this node already serves {max} watchers: close unused watches, use another node, or raise the limit")]
    TooManyWatchers {
        /// The limit.
        max: usize,
    },
    /// The start index is past the next entry to commit, so the watch would start in the future.
    #[error("from_index {from} is past the next index {next}: watch from {next} or earlier")]
    FromInFuture {
        /// The start asked for.
        from: u64,
        /// `read_index + 1`, the latest allowed start.
        next: u64,
    },
    /// The start index is 0, which no entry has.
    #[error("from_index 0 is not a log index: indexes start at 1")]
    FromZero,
}
