//! Driving the simulated watchers ([`crate::watcher`]) against each node's [`WatchHub`], and handing what they
//! see to the watch checker.
//!
//! ```text
//!  each ms, after the completions:  every running node's hub: publish(history, applied), tick(local clock)
//!                                   every watcher: read ─▶ subscribe ─▶ take(budget) ─▶ watch_exactly_once
//!  a node crashes or restarts:      its hub is dropped (a new one starts with it); its watchers disconnect
//! ```
//!
//! The hubs run only in runs with watchers, and the watchers draw from their own generator, so runs without
//! them replay exactly as before.

use tally_node::{
    Delivery, Input, KvQuery, KvQueryOutput, ReadConsistency, Reply, RequestError, SubscribeError, WatchHub, WatchId,
};
use tally_raft::NodeId;

use super::{Simulation, Slot};
use crate::checkers::{OrderKind, TimedOp, Violation, WatchEvent};
use crate::show::readable;
use crate::state_machine::RecordingKv;
use crate::watcher::{WatchState, Watcher};

/// How often (ms) the O(watchers) invariant checks of each hub run.
const HUB_CHECK_INTERVAL_MS: u64 = 50;

impl Simulation {
    /// A new watch hub for the node just started in slot `i`, in runs with watchers.
    pub(super) fn start_hub(&mut self, i: usize) {
        let Some(watch) = &self.params.watch else { return };
        let Slot::Up(node) = &self.slots[i] else { unreachable!("a hub for node {} that is not up", self.ids[i]) };
        let mut config = watch.hub;
        config.faults.skip_first_after_resume = self.params.watch_skip_after_resume;
        self.hubs[i] = Some(WatchHub::new(config, node.state_machine().kv.applied_index()));
    }

    /// The node in slot `i` went down: its hub goes with it, and its watchers (connected, reading, or about to
    /// subscribe) disconnect.
    pub(crate) fn drop_hub(&mut self, i: usize) {
        self.hubs[i] = None;
        let id = self.ids[i];
        for w in 0..self.watchers.len() {
            if self.watchers[w].node() != Some(id) {
                continue;
            }
            if let WatchState::Reading { request, .. } = self.watchers[w].state {
                self.watch_reads.remove(&request);
            }
            self.idle_watcher(w, "its node went down");
        }
    }

    /// One millisecond of watching: every running node's hub sees what the node applied and the time, then every
    /// watcher acts.
    ///
    /// # Errors
    /// A watcher saw something the watch checker (or the real-time order checker) refuses.
    pub(super) fn drive_watchers(&mut self) -> Result<(), Violation> {
        if self.watchers.is_empty() {
            return Ok(());
        }
        for i in 0..self.slots.len() {
            self.publish_hub(i);
            let now_ms = self.local_time(i);
            let Some(hub) = self.hubs[i].as_mut() else { continue };
            hub.tick(now_ms);
            if self.now % HUB_CHECK_INTERVAL_MS == 0 {
                hub.check_invariants();
            }
        }
        for w in 0..self.watchers.len() {
            match self.watchers[w].state {
                WatchState::Idle { at } if self.now >= at => self.issue_watch_read(w),
                WatchState::Idle { .. } => {}
                WatchState::Reading { node, request, sent_at }
                    if self.now - sent_at > self.params.request_timeout_ms =>
                {
                    self.watch_reads.remove(&request);
                    if let Some(node) = self.node_mut(self.slot_of(node)) {
                        node.abandon(request);
                    }
                    self.idle_watcher(w, "its read timed out");
                }
                WatchState::Reading { .. } => {}
                WatchState::Subscribing { node, read_index } => self.subscribe_watcher(w, node, read_index)?,
                WatchState::Connected { node, id } => self.serve_watcher(w, node, id)?,
            }
        }
        Ok(())
    }

    /// What keeps the watchers from having caught up, if anything (nothing in runs without watchers): every
    /// watcher must be connected and have been handed everything up to the applied index of the one leader (a
    /// progress notice, or a change, at that index). The end of the liveness phase waits for it; the watch checker
    /// verifies the claim at the end of the run, when the reference has applied everything.
    pub(super) fn watchers_lagging(&self) -> Option<String> {
        if self.watchers.is_empty() {
            return None;
        }
        let Some(applied) = self.leader_applied() else { return Some("no leader".to_string()) };
        self.watchers.iter().enumerate().find_map(|(w, watcher)| match watcher.state {
            WatchState::Connected { .. } if watcher.resume_from > Some(applied) => None,
            WatchState::Connected { node, .. } => Some(format!(
                "watcher {w} at {node} resumes from {:?}, the leader applied {applied}",
                watcher.resume_from
            )),
            state => Some(format!("watcher {w} is not connected: {state:?}")),
        })
    }

    /// End of run (the reference applied everything): every watcher is connected and caught up with the leader's
    /// applied index.
    ///
    /// # Errors
    /// One is not.
    pub(super) fn check_watchers_final(&mut self) -> Result<(), Violation> {
        let changes = self.txn_serializability.take_new_changes();
        let reference = self.txn_serializability.applied_index();
        self.watch_exactly_once.advance(changes, reference)?;
        if self.watchers.is_empty() {
            return Ok(());
        }
        let counts = self.watch_exactly_once.counts();
        self.trace_event(|| format!("watchers: {counts:?}"));
        let applied = self.leader_applied().expect("converged: one leader");
        let connected: Vec<bool> =
            self.watchers.iter().map(|watcher| matches!(watcher.state, WatchState::Connected { .. })).collect();
        self.watch_exactly_once.finish(&connected, applied)
    }

    /// The earliest call among the watchers' reads in flight.
    pub(super) fn oldest_watch_read(&self) -> Option<u64> {
        self.watchers
            .iter()
            .filter_map(|watcher| match watcher.state {
                WatchState::Reading { sent_at, .. } => Some(sent_at),
                _ => None,
            })
            .min()
    }

    /// Records how watcher `w`'s read ended: its index is a linearizable read (real-time order), where a fresh
    /// watch starts.
    ///
    /// # Errors
    /// The read's index is older than one returned before it was called, or it answered something else.
    pub(super) fn complete_watch_read(
        &mut self,
        w: usize,
        result: Result<Reply<RecordingKv>, RequestError>,
    ) -> Result<(), Violation> {
        let WatchState::Reading { node, request, sent_at } = self.watchers[w].state else {
            unreachable!("watcher {w} got a read answer while {:?}", self.watchers[w].state)
        };
        match result {
            Ok(Reply::Read { index, output: KvQueryOutput::Applied }) => {
                let op = TimedOp { request, call: sent_at, ret: self.now, index: index.0, kind: OrderKind::Read };
                self.real_time_order.record(op)?;
                self.watchers[w].state = WatchState::Subscribing { node, read_index: index.0 };
                Ok(())
            }
            Ok(other) => {
                let detail = format!("a read of the applied index answered with {other:?}");
                Err(Violation { checker: "kv_response", detail })
            }
            Err(error) => {
                self.idle_watcher(w, &format!("its read failed: {error}"));
                Ok(())
            }
        }
    }

    /// The applied index of the one leader, if there is one.
    fn leader_applied(&self) -> Option<u64> {
        let leader = self.current_leader()?;
        self.node(self.slot_of(leader)).map(|node| node.state_machine().kv.applied_index())
    }

    /// Hands node `i`'s hub what the node applied since its last publish.
    fn publish_hub(&mut self, i: usize) {
        let (Slot::Up(node), Some(hub)) = (&self.slots[i], self.hubs[i].as_mut()) else { return };
        let kv = &node.state_machine().kv;
        hub.publish(kv.history(), kv.applied_index());
    }

    /// Watcher `w` reads the applied index, linearizably, at a random running node.
    fn issue_watch_read(&mut self, w: usize) {
        let up: Vec<usize> = (0..self.slots.len()).filter(|&i| self.node(i).is_some()).collect();
        if up.is_empty() {
            self.watchers[w].state = WatchState::Idle { at: self.now + 10 };
            return;
        }
        let i = up[self.watch_rng.range(0, up.len() as u64) as usize];
        let (node, request) = (self.ids[i], self.next_request);
        self.next_request += 1;
        self.watch_reads.insert(request, w);
        self.watchers[w].state = WatchState::Reading { node, request, sent_at: self.now };
        self.trace_event(|| format!("watcher {w}: reads the applied index at {node}"));
        let read = Input::Read { id: request, query: KvQuery::Applied, consistency: ReadConsistency::Linearizable };
        let handled = self.node_mut(i).expect("picked among running nodes").handle(vec![read]);
        if handled.is_err() {
            self.crash(i, "sync failed on a watcher's read");
        }
    }

    /// Watcher `w` subscribes at `node`, whose read returned `read_index`: at its resume point, or afresh.
    ///
    /// # Errors
    /// The watch checker refuses the start (a refusal as compacted that was not).
    fn subscribe_watcher(&mut self, w: usize, node: NodeId, read_index: u64) -> Result<(), Violation> {
        let i = self.slot_of(node);
        let now_ms = self.local_time(i);
        let prev = self.watch_rng.chance(1, 2);
        // Published again right before: a read handled this step may have let the node apply more.
        self.publish_hub(i);
        let (Slot::Up(running), Some(hub)) = (&self.slots[i], self.hubs[i].as_mut()) else {
            unreachable!("watcher {w} subscribes at {node}, which is down")
        };
        let watcher = &mut self.watchers[w];
        let from = watcher.resume_from;
        let start = from.unwrap_or(read_index + 1);
        let fresh = from.is_none();
        let history = running.state_machine().kv.history();
        match hub.subscribe(watcher.filter.clone(), prev, from, read_index, history, now_ms) {
            Ok(id) => {
                watcher.resume_from = Some(start);
                watcher.state = WatchState::Connected { node, id };
                self.trace_event(|| format!("watcher {w}: subscribed at {node} from {start} (fresh: {fresh}) as {id}"));
                self.watch_exactly_once.record(w, WatchEvent::Subscribed { from: start, fresh })
            }
            Err(SubscribeError::Compacted { from, oldest: claimed }) => {
                // The checker judges the refusal by where the node's history really starts, not by the hub's word.
                let oldest = history.covered_from();
                watcher.resume_from = None;
                self.idle_watcher(w, &format!("subscribing at {from} was refused: history from {claimed}"));
                self.watch_exactly_once.record(w, WatchEvent::Refused { from, fresh, oldest })
            }
            Err(SubscribeError::FromInFuture { from, next }) => {
                // The watcher was handed index `from - 1` before its read began, so a linearizable read cannot
                // return less.
                let detail = format!(
                    "watcher {w}'s linearizable read at {node} returned index {read_index}, but the watcher had been \
                     handed index {} (committed) before the read began: it may not resume at {from}, past {next}",
                    from - 1
                );
                Err(Violation { checker: "real_time_order", detail })
            }
            Err(other) => unreachable!("watcher {w} refused by {node}: {other}"),
        }
    }

    /// Connected watcher `w` disconnects at random, or takes what its hub has for it (nothing while stalled).
    ///
    /// # Errors
    /// The watch checker refuses a delivery.
    fn serve_watcher(&mut self, w: usize, node: NodeId, id: WatchId) -> Result<(), Violation> {
        let i = self.slot_of(node);
        let Some(watch) = &self.params.watch else { unreachable!("watchers in a run without watch knobs") };
        let (disconnect_permille, stall_permille, stall_ms) =
            (watch.disconnect_permille, watch.stall_permille, watch.stall_ms);
        // Where the node's history really starts: a compaction error is judged by it, not by the hub's word (a
        // hub that cut a watcher off as compacted while the history still covered it would make it skip changes).
        let Slot::Up(running) = &self.slots[i] else {
            unreachable!("watcher {w} is connected to {node}, which is down")
        };
        let real_oldest = running.state_machine().kv.history().covered_from();
        let hub = self.hubs[i].as_mut().expect("a connected watcher's node is up");
        if !self.quiesced && self.watch_rng.chance(disconnect_permille, 1_000) {
            hub.unsubscribe(id);
            self.idle_watcher(w, "it disconnected");
            return Ok(());
        }
        let watcher = &mut self.watchers[w];
        let budget = if self.quiesced {
            usize::MAX
        } else if self.now < watcher.stalled_until {
            0
        } else if self.watch_rng.chance(stall_permille, 1_000) {
            watcher.stalled_until = self.now + self.watch_rng.range(stall_ms.0, stall_ms.1);
            0
        } else if self.watch_rng.chance(1, 4) {
            usize::MAX
        } else {
            self.watch_rng.range(1, 2_048) as usize
        };
        let deliveries = hub.take(id, budget);
        for delivery in deliveries {
            let ended = self.watchers[w].learn(&delivery);
            let event = match delivery {
                Delivery::Changes { changes, .. } => WatchEvent::Changes(changes),
                Delivery::Progress(index) => WatchEvent::Progress(index),
                Delivery::Error(tally_node::WatchError::SlowWatcher { resume_from }) => {
                    WatchEvent::Slow { resume_from }
                }
                Delivery::Error(tally_node::WatchError::Compacted { .. }) => {
                    WatchEvent::Compacted { oldest: real_oldest }
                }
            };
            if self.trace.is_some() {
                let line = readable(&format!("watcher {w}: {event:?}"));
                self.trace_event(|| line);
            }
            self.watch_exactly_once.record(w, event)?;
            if ended {
                self.idle_watcher(w, "its subscription ended");
            }
        }
        Ok(())
    }

    /// Watcher `w` is no longer connected (or reading); it tries again a little later.
    fn idle_watcher(&mut self, w: usize, why: &str) {
        let at = self.now + self.watch_rng.range(1, 20);
        self.watchers[w].state = WatchState::Idle { at };
        self.trace_event(|| format!("watcher {w}: idle until {at}: {why}"));
    }
}

/// The watchers of a run with `count` of them, drawn from `rng`.
pub(super) fn new_watchers(count: usize, rng: &mut tally_raft::SplitMix64) -> Vec<Watcher> {
    (0..count).map(|_| Watcher::new(rng)).collect()
}
