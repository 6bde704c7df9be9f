//! Property test: crash the fault disk at every sync point of random workloads, and check that
//! recovery returns exactly the state as of the last successful sync: never less than what was
//! acknowledged, never a half batch.
//!
//! A workload is a list of abstract operations turned into concrete WAL calls by a model that
//! keeps the expected state. For a workload with `T` syncs, every `n in 0..T` replays it on a new
//! disk whose `(n + 1)`-th sync fails, then crashes (plainly, or tearing the last write) and
//! recovers. The operation that failed may or may not have become durable (a sync's data can
//! reach the platter before the failure is reported), so its state before and after are both
//! accepted; nothing else is.

use proptest::prelude::*;
use tally_wal::{FaultDisk, HardState, Recovered, SnapshotFile, Wal, WalEntry, WalError, WalOptions};

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
    /// A short form for failure messages: hard state, snapshot position, entry (index, term)s.
    fn summary(&self) -> String {
        let snapshot = self.snapshot.as_ref().map(|s| (s.index, s.term));
        let entries: Vec<(u64, u64)> = self.entries.iter().map(|e| (e.index, e.term)).collect();
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

/// Runs `ops` on `disk`; returns the states recovery may legitimately return after a crash now.
fn run(ops: &[Op], disk: &FaultDisk) -> Vec<State> {
    let Ok((mut wal, recovered)) = Wal::open(disk.clone(), OPTIONS) else {
        return vec![State::default()];
    };
    assert_eq!(State::from_recovered(recovered), State::default(), "new disk not empty");
    let mut model = Model { current: State::default(), durable: State::default(), term: 1 };
    for op in ops {
        let durable_before = model.durable.clone();
        let current_before = model.current.clone();
        let (sync_point, result) = model.apply(op, &mut wal);
        match result {
            Ok(()) if sync_point => model.durable = model.current.clone(),
            Ok(()) => {}
            Err(error) => {
                assert!(error.is_poisoning(), "unexpected error {error}");
                assert!(wal.is_poisoned(), "failed call did not poison the log");
                let refused = wal.append(&[entry(wal.last_index() + 1, model.term, 1)]);
                assert!(matches!(refused, Err(WalError::Poisoned { .. })), "poisoned log accepted an append");
                assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })), "poisoned log accepted a sync");
                let mut candidates = vec![durable_before];
                if sync_point {
                    // Snapshot calls first sync what was pending, then do their own work.
                    candidates.push(current_before);
                    candidates.push(model.current.clone());
                }
                return candidates;
            }
        }
    }
    vec![model.durable]
}

/// Crashes `disk` (maybe tearing a write), recovers, and checks the result against `candidates`;
/// then checks the recovered log accepts and keeps a new entry.
fn crash_and_check(disk: &FaultDisk, candidates: &[State], tear: bool, context: &str) {
    if tear {
        disk.crash_tearing();
    } else {
        disk.crash();
    }
    let (mut wal, recovered) = match Wal::open(disk.clone(), OPTIONS) {
        Ok(opened) => opened,
        Err(error) => panic!("{context}: recovery failed: {error}"),
    };
    let state = State::from_recovered(recovered);
    if !candidates.contains(&state) {
        let expected: Vec<String> = candidates.iter().map(State::summary).collect();
        panic!("{context}: recovered {}\nexpected one of {expected:#?}", state.summary());
    }
    // Phase: the repaired log accepts writes, and a clean restart keeps them.
    let last_term = state.entries.last().map_or(state.snapshot.as_ref().map_or(0, |s| s.term), |e| e.term);
    let next = entry(state.last_index() + 1, last_term.max(state.hard_state.term), 3);
    wal.append(std::slice::from_ref(&next)).expect("append after recovery");
    wal.sync().expect("sync after recovery");
    drop(wal);
    let (_, again) = Wal::open(disk.clone(), OPTIONS).expect("second recovery");
    assert_eq!(again.entries.last(), Some(&next), "{context}: entry appended after recovery lost");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn recovery_returns_the_last_synced_state_at_every_crash_point(
        ops in prop::collection::vec(op(), 1..80),
        seed in any::<u64>(),
    ) {
        // Phase: a run without faults counts the sync points and checks a final crash.
        let disk = FaultDisk::new(seed);
        let candidates = run(&ops, &disk);
        let syncs = disk.syncs();
        crash_and_check(&disk, &candidates, false, "no fault");
        // Phase: fail each sync in turn, then crash plainly and with a torn write.
        for n in 0..syncs {
            for tear in [false, true] {
                let disk = FaultDisk::new(seed ^ n);
                disk.fail_sync_after(n);
                let candidates = run(&ops, &disk);
                crash_and_check(&disk, &candidates, tear, &format!("sync {n} of {syncs} fails, tear {tear}"));
            }
        }
    }
}
