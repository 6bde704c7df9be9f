//! The fault schedule: partitions of every shape, crashes (between events, or in the middle of a Ready so
//! that the un-synced writes are lost), restarts, and healing for the liveness phase.
//!
//! A crash is a process crash (the page cache survives: the node restarts reading writes that were never
//! durable), a power loss (gentle: nothing unsynced survives; or harsh: any subset of the unsynced writes
//! survives, torn at sectors, with any subset of the directory changes), or a process crash followed by a
//! power loss before the restart. With a small per-run probability the crashing node's last synced batch is
//! damaged, which its recovery cuts as a torn tail although it was acknowledged (protocol-aware recovery).
//!
//! Latent sector errors, bit rot and misdirected writes of synced data are not simulated here: they make
//! a node refuse to start (its log is corrupt), which the simulator cannot heal. The WAL's own tests cover
//! them (`crates/wal/tests/crash.rs`).

use std::collections::BTreeSet;

use tally_raft::NodeId;

use super::{Simulation, Slot};
use crate::checkers::Violation;

impl Simulation {
    /// Maybe changes the partition, maybe crashes a node, as the run's rates say.
    pub(super) fn inject_faults(&mut self) {
        if self.rng.chance(self.params.partition_permille, 1_000) {
            self.change_partition();
        }
        if self.rng.chance(self.params.crash_permille, 1_000) {
            self.crash_someone();
        }
    }

    /// Picks a new partition: heal, a random split (minority/majority), the leader isolated, or one-way links.
    fn change_partition(&mut self) {
        let all = self.ids.clone();
        match self.rng.range(0, 10) {
            0..=3 => {
                self.network.heal();
                self.trace_event(|| "partition healed".to_string());
            }
            4..=6 => {
                let size = self.rng.range(1, all.len() as u64);
                let mut side = BTreeSet::new();
                while side.len() < size as usize {
                    side.insert(all[self.rng.range(0, all.len() as u64) as usize]);
                }
                self.network.partition(&side, &all);
                self.trace_event(|| format!("partition {side:?} | rest"));
            }
            7 | 8 => {
                let Some(leader) = self.current_leader() else { return };
                self.network.partition(&BTreeSet::from([leader]), &all);
                self.trace_event(|| format!("partition: leader {leader} isolated"));
            }
            _ => {
                let from = all[self.rng.range(0, all.len() as u64) as usize];
                let to = all[self.rng.range(0, all.len() as u64) as usize];
                if from != to {
                    self.network.block_one_way(from, to);
                    self.trace_event(|| format!("partition: one-way {from} -> {to} blocked"));
                }
            }
        }
    }

    /// Crashes a running node, the leader more often than not. Some crashes hit in the middle of the node's
    /// next Ready: its sync fails, so nothing of that Ready becomes durable or is sent.
    fn crash_someone(&mut self) {
        let up: Vec<usize> = (0..self.slots.len()).filter(|&i| self.node(i).is_some()).collect();
        if up.is_empty() {
            return;
        }
        let leader = self.current_leader().map(|id| self.slot_of(id));
        let i = match leader {
            Some(l) if self.rng.chance(1, 2) => l,
            _ => up[self.rng.range(0, up.len() as u64) as usize],
        };
        if self.rng.chance(self.params.crash_mid_ready_permille, 1_000) {
            let id = self.ids[i];
            self.trace_event(|| format!("{id}: disk will fail its next sync"));
            self.disks[i].fail_sync_after(0);
            self.dying_disk[i] = true;
        } else {
            self.crash(i, "crash");
        }
    }

    /// Crashes the node in slot `i`: a process crash or a power loss (see the module documentation); in-flight
    /// messages to it vanish, and its clients' requests end: writes as indeterminate, reads as discarded.
    pub(crate) fn crash(&mut self, i: usize, why: &str) {
        let Slot::Up(node) = std::mem::replace(&mut self.slots[i], Slot::Empty) else {
            unreachable!("crashing a node that is not up");
        };
        // What it applied since the last step still counts: the entries were committed.
        let applied = node.state_machine().take_applied();
        if !applied.is_empty() {
            self.unrecorded.push((node.raft().id(), node.raft().term(), applied));
        }
        drop(node);
        let mut how = self.maybe_damage_last_synced_batch(i);
        if !how.is_empty() {
            // Nothing written after the damaged batch may survive, or the damage would be followed by a
            // later batch: corruption of synced data, which recovery rightly refuses (the WAL tests cover it).
            self.disks[i].crash();
            how += "; power loss (nothing unsynced survives)";
        } else if self.rng.chance(self.params.process_crash_permille, 1_000) {
            self.disks[i].crash_process();
            how += "; process crash (page cache kept)";
            if self.rng.chance(self.params.power_loss_after_process_crash_permille, 1_000) {
                how += &format!(", then {}", self.power_loss(i));
            }
        } else {
            how += &format!("; {}", self.power_loss(i));
        }
        let id = self.ids[i];
        let downtime = self.rng.range(self.params.downtime_ms.0, self.params.downtime_ms.1 + 1);
        self.slots[i] = Slot::Down { restart_at: self.now + downtime };
        self.trace_event(|| format!("{id}: {why}{how}; down for {downtime} ms"));
        self.network.drop_to(id);
        self.fail_requests_at(id);
        self.drop_hub(i);
    }

    /// A power loss of node `i`'s disk, harsh or gentle as the run's rate says; returns how it went.
    fn power_loss(&mut self, i: usize) -> String {
        if self.rng.chance(self.params.torn_write_permille, 1_000) {
            format!("power loss ({})", self.disks[i].power_loss())
        } else {
            self.disks[i].crash();
            "power loss (nothing unsynced kept)".to_string()
        }
    }

    /// With the run's probability, damages the last synced write of node `i`'s newest segment (after it was
    /// acknowledged); returns a note for the trace.
    fn maybe_damage_last_synced_batch(&mut self, i: usize) -> String {
        if !self.rng.chance(self.params.damage_synced_permille, 1_000) {
            return String::new();
        }
        // One storage fault at a time: a node still recovering what it lost (its recovery marker is on its disk,
        // or it is down with damage and has not written the marker yet) may hold the only other copy of an entry
        // this node acknowledged; losing both is beyond any replication.
        let marked = |disk: &tally_wal::FaultDisk| disk.file_names().iter().any(|name| name.ends_with(".mark"));
        let recovering = |j: usize| self.damaged_down[j] || marked(&self.disks[j]);
        if (0..self.disks.len()).any(|j| j != i && recovering(j)) {
            return String::new();
        }
        let disk = &self.disks[i];
        let Some(segment) = disk.file_names().into_iter().rfind(|name| name.ends_with(".wal")) else {
            return String::new();
        };
        match disk.damage_last_synced_write(&segment) {
            Some((lo, hi)) => {
                self.damaged_down[i] = true;
                format!("; last synced batch damaged ({segment} bytes {lo}..{hi})")
            }
            None => String::new(),
        }
    }

    /// Restarts the nodes whose downtime is over.
    pub(super) fn restart_due(&mut self) -> Result<(), Violation> {
        for i in 0..self.slots.len() {
            if matches!(self.slots[i], Slot::Down { restart_at, .. } if restart_at <= self.now) {
                self.restarts[i] += 1;
                self.start_node(i)?;
                let id = self.ids[i];
                self.trace_event(|| format!("{id}: restarted from its disk"));
            }
        }
        Ok(())
    }

    /// Liveness phase: heal the network, stop losing and duplicating messages, restart everyone.
    pub(super) fn heal_everything(&mut self) -> Result<(), Violation> {
        self.network.heal();
        self.network.loss_permille = 0;
        self.network.duplicate_permille = 0;
        for i in 0..self.slots.len() {
            if self.dying_disk[i] && self.node(i).is_some() {
                self.crash(i, "disk replaced before healing"); // its injected sync failure is cleared
            }
            if let Slot::Down { restart_at, .. } = &mut self.slots[i] {
                *restart_at = self.now;
            }
        }
        self.restart_due()
    }

    /// The node that is leader in the highest term, if any.
    pub(crate) fn current_leader(&self) -> Option<NodeId> {
        (0..self.slots.len())
            .filter_map(|i| self.node(i))
            .filter(|n| n.raft().is_leader())
            .max_by_key(|n| n.raft().term())
            .map(|n| n.raft().id())
    }
}
