//! Property tests: crash the fault disk at every sync point of random workloads, with every fault
//! of `FaultDisk`, and check the WAL's contract.
//!
//! A workload is a list of abstract operations turned into concrete WAL calls by a model that
//! keeps the expected state. For a workload with `T` syncs, every `n in 0..T` replays it on a new
//! disk whose `(n + 1)`-th sync fails. The operation that failed may or may not have become durable
//! (a sync's data can reach the platter before the failure is reported), so its state before and
//! after are both accepted.
//!
//! - **(a) Faults of unsynced data only** (any subset of unsynced writes persisting, torn at sectors,
//!   lost or garbage sectors, reordered directory changes; a process crash, with the page cache kept,
//!   followed by a power loss): recovery returns exactly the last synced state or the in-flight
//!   operation's after-state, never an error; and what a recovery returned survives a later power
//!   loss (a node acts on it).
//! - **(b) Damage to synced data** (a latent sector error, bit rot, a misdirected write, damage to
//!   the last synced batch): recovery refuses (`Corrupt` or `Io`) or returns the last synced state, or
//!   that state minus its last batch with `tail_may_be_acknowledged` set; never silently less.

use proptest::prelude::*;
use tally_wal::{FaultDisk, HardState, Recovered, SnapshotFile, Wal, WalEntry, WalError, WalOptions};

/// Proptest cases per property: together they keep `cargo test` near 30 s on two cores.
const CASES: u32 = 160;

/// Small segments, so workloads roll, span and compact many of them.
const OPTIONS: WalOptions = WalOptions { segment_bytes_max: 512 };

#[derive(Clone, Debug)]
enum Op {
    /// Append `count` entries; `back > 0` first replaces up to `back` uncommitted entries.
    Append {
        back: u8,
        count: u8,
        size: u8,
        new_term: bool,
    },
    /// A new hard state: maybe a new term and vote, commit advanced by `advance`% of the way.
    SetHardState {
        new_term: bool,
        vote: bool,
        advance: u8,
    },
    Sync,
    /// Snapshot at a committed index `at`% of the way from the snapshot to the commit index.
    Snapshot {
        at: u8,
        compact: bool,
    },
    /// Replace the log with a leader's snapshot `ahead` entries past the last index, or (if
    /// `behind`) at an uncommitted index of the log.
    Replace {
        ahead: u8,
        behind: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 1u8..8, 0u8..80, any::<bool>()).prop_map(|(back, count, size, new_term)| Op::Append { back, count, size, new_term }),
        3 => (any::<bool>(), any::<bool>(), 0u8..=100).prop_map(|(new_term, vote, advance)| Op::SetHardState { new_term, vote, advance }),
        5 => Just(Op::Sync),
        1 => (0u8..=100, any::<bool>()).prop_map(|(at, compact)| Op::Snapshot { at, compact }),
        1 => (1u8..6, any::<bool>()).prop_map(|(ahead, behind)| Op::Replace { ahead, behind }),
    ]
}

/// What recovery must return (the comparable part of [`Recovered`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    hard_state: HardState,
    snapshot: Option<SnapshotFile>,
    /// Entries after the snapshot.
    entries: Vec<WalEntry>,
}

impl State {
    fn from_recovered(recovered: Recovered) -> State {
        State { hard_state: recovered.hard_state, snapshot: recovered.snapshot, entries: recovered.entries }
    }
    /// A short form for failure messages: hard state, snapshot position, entry (index, term, data length)s.
    fn summary(&self) -> String {
        let snapshot = self.snapshot.as_ref().map(|s| (s.index, s.term));
        let entries: Vec<(u64, u64, usize)> = self.entries.iter().map(|e| (e.index, e.term, e.data.len())).collect();
        format!("{:?} snapshot {snapshot:?} entries {entries:?}", self.hard_state)
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index)
    }
    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_index(), |e| e.index)
    }
    fn term_at(&self, index: u64) -> u64 {
        match self.entries.iter().find(|e| e.index == index) {
            Some(entry) => entry.term,
            None => self.snapshot.as_ref().filter(|s| s.index == index).map_or(0, |s| s.term),
        }
    }
}

/// The model: the expected state now and as of the last successful sync.
struct Model {
    current: State,
    durable: State,
    /// The durable state before the last sync that wrote a log batch: the last synced state minus its last
    /// batch (a snapshot saved since is not part of any batch, so it does not move this).
    previous: State,
    /// Whether segments may have been removed (compaction, a replaced log) since the last batch: the cut of
    /// that batch may then lose what earlier batches held too.
    removed: bool,
    /// The term new entries get; never below any term in the log.
    term: u64,
}

fn entry(index: u64, term: u64, size: u8) -> WalEntry {
    let mut data = format!("{index}/{term}:").into_bytes();
    data.resize(data.len() + size as usize, (index % 251) as u8);
    WalEntry { index, term, data }
}

impl Model {
    /// Carries out `op` on `wal` and in the model. Returns whether the op is a sync point.
    fn apply(&mut self, op: &Op, wal: &mut Wal<FaultDisk>) -> (bool, Result<(), WalError>) {
        let current = &mut self.current;
        match *op {
            Op::Append { back, count, size, new_term } => {
                let floor = current.hard_state.commit.max(current.snapshot_index());
                let last = current.last_index();
                let start = last + 1 - u64::from(back).min(last - floor);
                if new_term {
                    self.term += 1;
                }
                let batch: Vec<WalEntry> =
                    (start..start + u64::from(count)).map(|i| entry(i, self.term, size)).collect();
                current.entries.retain(|e| e.index < start);
                current.entries.extend(batch.iter().cloned());
                (false, wal.append(&batch))
            }
            Op::SetHardState { new_term, vote, advance } => {
                let mut hs = current.hard_state;
                if new_term {
                    hs.term += 1;
                    hs.vote = 0;
                }
                if vote && hs.vote == 0 {
                    hs.vote = 1 + hs.term % 3;
                }
                let last = current.last_index();
                if last > hs.commit {
                    hs.commit += (last - hs.commit) * u64::from(advance) / 100;
                }
                current.hard_state = hs;
                (false, wal.set_hard_state(hs))
            }
            Op::Sync => (true, wal.sync()),
            Op::Snapshot { at, compact } => {
                let (from, to) = (current.snapshot_index(), current.hard_state.commit.min(current.last_index()));
                if to <= from {
                    return (false, Ok(()));
                }
                let index = from + 1 + (to - from - 1) * u64::from(at) / 100;
                let snapshot =
                    SnapshotFile { index, term: current.term_at(index), data: format!("state@{index}").into_bytes() };
                current.entries.retain(|e| e.index > index);
                current.snapshot = Some(snapshot.clone());
                let result = wal.save_snapshot(&snapshot);
                (true, result.and_then(|()| if compact { wal.compact(index) } else { Ok(()) }))
            }
            Op::Replace { ahead, behind } => {
                let floor = current.hard_state.commit.max(current.snapshot_index());
                let last = current.last_index();
                let index = if behind && last > floor {
                    floor + 1 + u64::from(ahead) % (last - floor)
                } else {
                    last + u64::from(ahead)
                };
                // A term newer than any in the log, so the log never agrees with it at `index`.
                self.term += 1;
                let snapshot = SnapshotFile { index, term: self.term, data: format!("leader@{index}").into_bytes() };
                current.entries.clear();
                current.snapshot = Some(snapshot.clone());
                (true, wal.replace_with_snapshot(&snapshot))
            }
        }
    }
}

/// What a run leaves: the states recovery may legitimately return after a power loss now (a), and the
/// last synced state with the one before it (b).
struct Run {
    candidates: Vec<State>,
    durable: State,
    previous: State,
    removed: bool,
}

/// Runs `ops` on `disk`, arming a misdirected write before op `misdirect_at` if given.
fn run(ops: &[Op], disk: &FaultDisk, misdirect_at: Option<usize>) -> Run {
    let Ok((mut wal, recovered)) = Wal::open(disk.clone(), OPTIONS) else {
        return Run {
            candidates: vec![State::default()],
            durable: State::default(),
            previous: State::default(),
            removed: false,
        };
    };
    assert_eq!(State::from_recovered(recovered), State::default(), "new disk not empty");
    let mut model = Model {
        current: State::default(),
        durable: State::default(),
        previous: State::default(),
        removed: false,
        term: 1,
    };
    for (i, op) in ops.iter().enumerate() {
        if misdirect_at == Some(i) {
            disk.misdirect_next_write();
        }
        let durable_before = model.durable.clone();
        let current_before = model.current.clone();
        // Whether this op writes a log batch: a sync of pending records (snapshot calls sync first), or a
        // replaced log. A snapshot file alone is no batch, so it leaves `previous` as it was.
        let batch = matches!(op, Op::Replace { .. })
            || current_before.hard_state != durable_before.hard_state
            || current_before.entries != durable_before.entries;
        let (sync_point, result) = model.apply(op, &mut wal);
        // These calls remove segments after the batch they sync first; a failed one may have removed some.
        let removes = matches!(op, Op::Snapshot { compact: true, .. } | Op::Replace { .. });
        model.removed |= removes;
        match result {
            Ok(()) if sync_point && model.current != model.durable => {
                let durable = std::mem::replace(&mut model.durable, model.current.clone());
                if batch {
                    model.previous = durable;
                    model.removed = removes;
                }
            }
            Ok(()) => {}
            Err(error) => {
                assert!(error.is_poisoning(), "unexpected error {error}");
                assert!(wal.is_poisoned(), "failed call did not poison the log");
                let refused = wal.append(&[entry(wal.last_index() + 1, model.term, 1)]);
                assert!(matches!(refused, Err(WalError::Poisoned { .. })), "poisoned log accepted an append");
                assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })), "poisoned log accepted a sync");
                let mut candidates = vec![durable_before.clone()];
                if sync_point {
                    // Snapshot calls first sync what was pending, then do their own work.
                    candidates.push(current_before);
                    candidates.push(model.current.clone());
                }
                return Run { candidates, durable: durable_before, previous: model.previous, removed: model.removed };
            }
        }
    }
    Run {
        candidates: vec![model.durable.clone()],
        durable: model.durable,
        previous: model.previous,
        removed: model.removed,
    }
}

/// Recovers from `disk` and checks the state is one of `candidates`; returns it with the log.
fn recover(disk: &FaultDisk, candidates: &[State], context: &str) -> (Wal<FaultDisk>, State) {
    let (wal, recovered) = match Wal::open(disk.clone(), OPTIONS) {
        Ok(opened) => opened,
        Err(error) => panic!("{context}: recovery failed: {error}"),
    };
    let state = State::from_recovered(recovered);
    if !candidates.contains(&state) {
        let expected: Vec<String> = candidates.iter().map(State::summary).collect();
        panic!("{context}: recovered {}\nexpected one of {expected:#?}", state.summary());
    }
    (wal, state)
}

/// A power loss, then recovery must return one of `candidates`; then the recovered log accepts a new
/// entry that survives another power loss.
fn power_loss_and_check(disk: &FaultDisk, candidates: &[State], context: &str) {
    disk.power_loss();
    let (mut wal, state) = recover(disk, candidates, context);
    // Phase: the repaired log accepts writes, and a power loss after their sync keeps them.
    let last_term = state.entries.last().map_or(state.snapshot.as_ref().map_or(0, |s| s.term), |e| e.term);
    let next = entry(state.last_index() + 1, last_term.max(state.hard_state.term), 3);
    wal.append(std::slice::from_ref(&next)).expect("append after recovery");
    wal.sync().expect("sync after recovery");
    drop(wal);
    disk.power_loss();
    let (_, again) = Wal::open(disk.clone(), OPTIONS).unwrap_or_else(|e| panic!("{context}: second recovery: {e}"));
    assert_eq!(again.entries.last(), Some(&next), "{context}: entry appended after recovery lost");
}

/// A process crash (the page cache survives), recovery, then a power loss before anything else is
/// written: the second recovery must return what the first returned, since the node acted on it.
fn process_crash_then_power_loss_and_check(disk: &FaultDisk, candidates: &[State], context: &str) {
    disk.crash_process();
    let (wal, first) = recover(disk, candidates, &format!("{context}, process crash"));
    drop(wal);
    disk.power_loss();
    let (_, second) = recover(disk, candidates, &format!("{context}, power loss after the process crash"));
    if second != first {
        panic!(
            "{context}: recovery after a process crash returned {}\nbut after the power loss that followed: {}",
            first.summary(),
            second.summary()
        );
    }
}

/// Whether `state` is `durable` with at most its last log batch cut: the snapshot of `durable` or of
/// `previous` (the state before the last batch; the snapshot file is not part of a batch, so a snapshot
/// call may leave the new snapshot with the log as it was before the batch it synced first), the entries
/// after it a prefix of either state's, and a hard state no higher than `durable`'s. Unless segments may
/// have been `removed` since the last batch, the cut keeps everything `previous` held: its hard state
/// (term, vote and commit) and its last index.
fn is_cut_of(state: &State, durable: &State, previous: &State, removed: bool) -> bool {
    let after = state.snapshot_index();
    let prefix_of = |base: &State| {
        let rest: Vec<WalEntry> = base.entries.iter().filter(|e| e.index > after).cloned().collect();
        rest.starts_with(&state.entries)
    };
    // When compaction (or a replaced log) removed the older segments after the last batch, that batch may
    // hold the only copy of the hard state and of entries an earlier batch wrote, so a cut of it loses them
    // too. Recovery flags it (`tail_may_be_acknowledged`), and the node's protocol-aware recovery makes up
    // for it (docs/storage.md); what must never happen is an unflagged loss, or a state that is not a
    // prefix of what was synced.
    let (hs, before) = (state.hard_state, previous.hard_state);
    let keeps_previous = removed
        || ((hs.term, hs.commit) >= (before.term, before.commit)
            && (hs.term > before.term || before.vote == 0 || hs.vote == before.vote)
            && state.last_index() >= previous.last_index());
    (state.snapshot == durable.snapshot || state.snapshot == previous.snapshot)
        && (prefix_of(durable) || prefix_of(previous))
        && hs.term <= durable.hard_state.term
        && hs.commit <= durable.hard_state.commit
        && keeps_previous
}

/// A damaged newest snapshot is skipped; nothing is lost when the log still holds every entry it covered.
fn covers_without_snapshot(state: &State, durable: &State) -> bool {
    let after = durable.snapshot_index();
    let rest: Vec<WalEntry> = state.entries.iter().filter(|e| e.index > after).cloned().collect();
    state.snapshot_index() < after
        && state.entries.first().is_some_and(|e| e.index <= state.snapshot_index() + 1)
        && state.entries.last().is_some_and(|e| e.index >= after)
        && rest == durable.entries
        && state.hard_state == durable.hard_state
}

/// A fault of synced data, chosen from the seed.
#[derive(Clone, Copy, Debug)]
enum Damage {
    LatentSectorError,
    BitRot,
    MisdirectedWrite,
    LastSyncedBatch,
}

/// Applies `damage` (other than a misdirected write, armed during the run) to a file chosen from `pick`.
/// Marks damage to the last segment's header: without the header (its log id) none of the segment's records can
/// be verified, so recovery cuts the whole segment, flagged, and every batch in it is lost, not only the last.
const HEADER_DAMAGE: &str = " (the last segment's header)";

/// Bytes of the segment header record, the first record of a segment.
const SEGMENT_HEADER_BYTES: u64 = 56;

fn header_note(segments: &[&String], name: &String, offset: u64) -> &'static str {
    if segments.last() == Some(&name) && offset < SEGMENT_HEADER_BYTES { HEADER_DAMAGE } else { "" }
}

fn damage_synced(disk: &FaultDisk, damage: Damage, pick: u64) -> Option<String> {
    let names: Vec<String> =
        disk.file_names().into_iter().filter(|n| n.ends_with(".wal") || n.ends_with(".snap")).collect();
    let segments: Vec<&String> = names.iter().filter(|n| n.ends_with(".wal")).collect();
    match damage {
        Damage::LatentSectorError | Damage::BitRot => {
            let name = names.get((pick % names.len().max(1) as u64) as usize)?;
            let bytes = disk.read_file(name)?;
            let used: Vec<usize> = (0..bytes.len()).filter(|i| bytes[*i] != 0).collect();
            let offset = *used.get(((pick >> 8) % used.len().max(1) as u64) as usize)? as u64;
            if matches!(damage, Damage::BitRot) {
                disk.flip_bit(name, offset, (pick >> 40) as u8 % 8);
            } else {
                disk.latent_sector_error(name, offset);
            }
            Some(format!("{damage:?} in {name} at {offset}{}", header_note(&segments, name, offset)))
        }
        Damage::LastSyncedBatch => {
            let name = segments.last()?;
            let range = disk.damage_last_synced_write(name)?;
            Some(format!("{damage:?} in {name} at {range:?}"))
        }
        Damage::MisdirectedWrite => unreachable!("armed during the run"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn recovery_returns_the_last_synced_state_after_any_loss_of_unsynced_data(
        ops in prop::collection::vec(op(), 1..80),
        seed in any::<u64>(),
    ) {
        // Phase: a run without faults counts the sync points and checks a final power loss.
        let disk = FaultDisk::new(seed);
        let candidates = run(&ops, &disk, None).candidates;
        let syncs = disk.syncs();
        power_loss_and_check(&disk, &candidates, &format!("no fault, seed {seed}"));
        // Phase: fail each sync in turn, then lose power, or crash the process and then lose power.
        for n in 0..syncs {
            let disk = FaultDisk::new(seed ^ n);
            disk.fail_sync_after(n);
            let candidates = run(&ops, &disk, None).candidates;
            power_loss_and_check(&disk, &candidates, &format!("sync {n} of {syncs} fails, power loss"));
            let disk = FaultDisk::new(seed ^ n);
            disk.fail_sync_after(n);
            let candidates = run(&ops, &disk, None).candidates;
            process_crash_then_power_loss_and_check(&disk, &candidates, &format!("sync {n} of {syncs} fails"));
        }
    }

    #[test]
    fn recovery_after_damage_to_synced_data_refuses_or_flags_what_it_cut(
        ops in prop::collection::vec(op(), 1..80),
        seed in any::<u64>(),
        damage in prop_oneof![
            Just(Damage::LatentSectorError), Just(Damage::BitRot), Just(Damage::MisdirectedWrite), Just(Damage::LastSyncedBatch)
        ],
    ) {
        let disk = FaultDisk::new(seed);
        let misdirect_at = matches!(damage, Damage::MisdirectedWrite).then(|| (seed % ops.len() as u64) as usize);
        let Run { durable, previous, removed, .. } = run(&ops, &disk, misdirect_at);
        let what = match damage {
            Damage::MisdirectedWrite => disk.misdirections().first().map(|m| format!("{m:?}")),
            _ => damage_synced(&disk, damage, seed.rotate_left(17)),
        };
        let Some(what) = what else { return Ok(()) }; // nothing to damage
        // A write misdirected away from the last segment leaves zeros where it was meant to go: when that was
        // the last batch, nothing is left to cut or to contradict, and recovery reads the end of the log there
        // (FORMAT.md, "What recovery cannot tell apart"). It must still be a cut of that batch only.
        let last_segment = disk.file_names().into_iter().filter(|n| n.ends_with(".wal")).max();
        let lost_tail_write = disk.misdirections().first().is_some_and(|m| Some(&m.intended_file) == last_segment.as_ref());
        disk.power_loss();
        let context = format!("{what}, seed {seed}");
        match Wal::open(disk.clone(), OPTIONS) {
            Err(WalError::Corrupt { .. } | WalError::Io { .. }) => {} // refused: the operator is told
            Err(error) => panic!("{context}: unexpected error {error}"),
            Ok((_, recovered)) => {
                let flagged = recovered.tail_may_be_acknowledged;
                let state = State::from_recovered(recovered);
                let removed = removed || what.ends_with(HEADER_DAMAGE);
                let last_batch_cut = (flagged || lost_tail_write) && is_cut_of(&state, &durable, &previous, removed);
                if state != durable && !last_batch_cut && !covers_without_snapshot(&state, &durable) {
                    panic!(
                        "{context}: recovered {} (tail_may_be_acknowledged {flagged})\nsynced {}\nbefore its last batch {}",
                        state.summary(),
                        durable.summary(),
                        previous.summary()
                    );
                }
            }
        }
    }
}
