//! Failover in both election modes: a calm cluster loses its leader for good, and the survivors elect a new
//! leader that commits, with every checker running. Timing is printed, never asserted (compare the modes
//! with `tally-sim --failover`); what is asserted is behaviour.

use tally_raft::ElectionMode;
use tally_sim::{FailoverReport, failover_sweep};

/// Threads: the CI machine has 2 cores.
const THREADS: usize = 2;

/// Measures 200 failovers in `election` mode and asserts every one elected a new leader that committed.
fn measure(election: ElectionMode) -> FailoverReport {
    let report = failover_sweep(0, 200, None, election, THREADS);
    println!("{}", report.summary());
    if let Some((seed, violation)) = report.failures.first() {
        let mode = format!("{election:?}").to_lowercase();
        panic!(
            "{mode}: seed {seed}: {violation}\n  replay: cargo run --release -p tally-sim -- --failover --seeds 1 \
             --start-seed {seed} --election {mode}"
        );
    }
    report
}

#[test]
fn raft_mode_elects_a_new_leader_after_the_leader_dies() {
    // Why: failover is the point of an election mode; each seed must end with a new leader that commits.
    measure(ElectionMode::Raft);
}

#[test]
fn bully_mode_elects_the_highest_surviving_id_after_the_leader_dies() {
    // Why: the same, plus the bully algorithm's promise kept from the original project: of the live nodes,
    // the highest id leads. Logs rank first, so a survivor that had not received the last entries may lose
    // to a lower id (and a slow answer may let a lower node claim first); in a calm cluster that is rare.
    let report = measure(ElectionMode::Bully);
    let highest = report.samples.iter().filter(|s| s.highest_id_won).count();
    assert!(highest * 10 >= report.samples.len() * 9, "the highest id won only {highest} of {}", report.samples.len());
}
