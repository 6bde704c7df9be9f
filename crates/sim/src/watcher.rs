//! Simulated watchers: clients of the nodes' watch hubs (runs with [`crate::SimParams::watch`]), as the server's
//! HTTP watch and the `tally` client use them.
//!
//! ```text
//!  Idle ──(pick an up node)──▶ Reading: linearizable KvQuery::Applied read (ReadIndex)
//!    ▲                              │ read index r
//!    │                              ▼
//!    │                         Subscribing ──(next watcher step, hub published)──▶ subscribe(from, r)
//!    │                                                                               │ ok
//!    ├── disconnect (random), node crash, Slow (resume at resume_from) ◀── Connected: take(budget) each ms
//!    └── Compacted (a refused subscribe, or the error): start afresh, from r + 1 of a new read
//! ```
//!
//! A watcher resumes exactly after what it was handed (its last entry, or its last progress notice), as an SSE
//! client resumes with `Last-Event-ID`; a fresh watch starts right after its read's index. It takes with a
//! random budget, and now and then takes nothing for a while, so that its hub cuts it off as slow.

use tally_kv::{HistoryLimits, KeyFilter};
use tally_node::{Delivery, RequestId, WatchConfig, WatchError, WatchId};
use tally_raft::{NodeId, SplitMix64};

use crate::state_machine::SIM_HISTORY_LIMITS;

/// The prefixes watchers follow: everything, the transaction keys, a few of them, the accounts, one hot key and
/// the keys after it.
const PREFIX_FILTERS: [&str; 6] = ["", "t", "t1", "a", "k0", "k"];
/// The exact keys watchers follow.
const KEY_FILTERS: [&str; 4] = ["k0", "k1", "t1", "a3"];

/// The knobs of a run's watchers, drawn from its seed (see [`WatchParams::draw`]).
#[derive(Clone, Debug)]
pub struct WatchParams {
    /// How many watchers.
    pub watchers: usize,
    /// Each node's watch history window, by slot: wide enough that most resumes find their position, narrow
    /// enough that some are compacted (and that snapshots, which carry the history, stay small).
    pub history: Vec<HistoryLimits>,
    /// Probability (per mille, per simulated ms) that a connected watcher disconnects.
    pub disconnect_permille: u64,
    /// Probability (per mille, per simulated ms) that a taking watcher stops taking for a while.
    pub stall_permille: u64,
    /// How long such a stall lasts, in ms.
    pub stall_ms: (u64, u64),
    /// The hubs' configuration (small buffers, so stalls make slow watchers).
    pub hub: WatchConfig,
}

impl WatchParams {
    /// Draws the watcher knobs for `slots` node slots: `None` in half the runs (which then draw nothing more).
    /// `tiny_chunks`: snapshots travel in tiny chunks, so the history (part of every snapshot) is kept smaller.
    pub fn draw(rng: &mut SplitMix64, slots: usize, tiny_chunks: bool) -> Option<WatchParams> {
        if !rng.chance(1, 2) {
            return None;
        }
        let watchers = rng.range(1, 5) as usize;
        let bytes_max = if tiny_chunks { (1 << 10, 4 << 10) } else { (4 << 10, 32 << 10) };
        let history = (0..slots)
            .map(|_| HistoryLimits {
                entries_max: rng.range(16, 256) as usize,
                bytes_max: rng.range(bytes_max.0, bytes_max.1) as usize,
            })
            .collect();
        let hub = WatchConfig {
            buffer_bytes: rng.range(256, 4 << 10) as usize,
            progress_interval_ms: rng.range(10, 200),
            max_watchers: 64,
            catch_up_bytes_per_publish: rng.range(256, 8 << 10) as usize,
            faults: tally_node::WatchFaults::default(),
        };
        Some(WatchParams {
            watchers,
            history,
            disconnect_permille: rng.range(1, 20),
            stall_permille: rng.range(1, 10),
            stall_ms: (5, rng.range(20, 300)),
            hub,
        })
    }

    /// The history window of the node in slot `i`.
    pub fn history_limits(params: Option<&WatchParams>, i: usize) -> HistoryLimits {
        params.map_or(SIM_HISTORY_LIMITS, |watch| watch.history[i])
    }
}

/// Where a watcher is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchState {
    /// Not connected; tries again at `at`.
    Idle {
        /// When it picks a node and reads.
        at: u64,
    },
    /// Waiting for its linearizable read of the applied index.
    Reading {
        /// The node asked.
        node: NodeId,
        /// The read's request id.
        request: RequestId,
        /// When it was sent.
        sent_at: u64,
    },
    /// The read returned `read_index`: it subscribes at `node` on the next watcher step (after the hub has seen
    /// everything the node applied).
    Subscribing {
        /// The node that answered.
        node: NodeId,
        /// The read's index.
        read_index: u64,
    },
    /// Subscribed.
    Connected {
        /// The node serving it.
        node: NodeId,
        /// Its subscription there.
        id: WatchId,
    },
}

/// One simulated watcher.
#[derive(Debug)]
pub struct Watcher {
    /// The keys it follows.
    pub filter: KeyFilter,
    /// Where it is in its cycle.
    pub state: WatchState,
    /// Where it resumes: right after what it was handed. `None`: it has no position (not started, or compacted)
    /// and starts afresh after its read.
    pub resume_from: Option<u64>,
    /// It takes nothing before this time (a stall, to make it slow).
    pub stalled_until: u64,
}

impl Watcher {
    /// A watcher with a random filter, not connected, that starts at once.
    pub fn new(rng: &mut SplitMix64) -> Watcher {
        let filter = if rng.chance(2, 3) {
            let prefix = PREFIX_FILTERS[rng.range(0, PREFIX_FILTERS.len() as u64) as usize];
            KeyFilter::Prefix(prefix.as_bytes().to_vec())
        } else {
            let key = KEY_FILTERS[rng.range(0, KEY_FILTERS.len() as u64) as usize];
            KeyFilter::Key(key.as_bytes().to_vec())
        };
        Watcher { filter, state: WatchState::Idle { at: 0 }, resume_from: None, stalled_until: 0 }
    }

    /// The node it is connected to, reading from, or about to subscribe at.
    pub fn node(&self) -> Option<NodeId> {
        match self.state {
            WatchState::Idle { .. } => None,
            WatchState::Reading { node, .. }
            | WatchState::Subscribing { node, .. }
            | WatchState::Connected { node, .. } => Some(node),
        }
    }

    /// Learns from a delivery where it would resume; returns whether the delivery ended the subscription.
    pub fn learn(&mut self, delivery: &Delivery) -> bool {
        match delivery {
            Delivery::Changes { index, .. } => self.resume_from = Some(index + 1),
            Delivery::Progress(index) => self.resume_from = self.resume_from.max(Some(index + 1)),
            Delivery::Error(WatchError::SlowWatcher { resume_from }) => self.resume_from = Some(*resume_from),
            Delivery::Error(WatchError::Compacted { .. }) => self.resume_from = None,
        }
        matches!(delivery, Delivery::Error(_))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tally_kv::ChangeBatch;
    use tally_node::{Delivery, WatchError};
    use tally_raft::SplitMix64;

    use super::Watcher;

    #[test]
    fn a_watcher_resumes_right_after_what_it_was_handed() {
        // Why: the resume point is what makes a resumed watch lose and repeat nothing; progress notices move it
        // forward, never back, and a compaction takes it away.
        let mut watcher = Watcher::new(&mut SplitMix64::new(1));
        watcher.resume_from = Some(3);
        let batch = Arc::new(ChangeBatch { index: 7, changes: Vec::new() });
        assert!(!watcher.learn(&Delivery::Changes { index: 7, changes: batch }));
        assert_eq!(watcher.resume_from, Some(8));
        assert!(!watcher.learn(&Delivery::Progress(5)));
        assert_eq!(watcher.resume_from, Some(8), "an older progress notice does not move it back");
        assert!(!watcher.learn(&Delivery::Progress(9)));
        assert_eq!(watcher.resume_from, Some(10));
        assert!(watcher.learn(&Delivery::Error(WatchError::SlowWatcher { resume_from: 10 })));
        assert_eq!(watcher.resume_from, Some(10));
        assert!(watcher.learn(&Delivery::Error(WatchError::Compacted { oldest: 12 })));
        assert_eq!(watcher.resume_from, None);
    }
}
