//! The simulator's own acceptance tests, in both election modes: a sweep of seeds stays clean, a seed replays identically, and every
//! fault switch that breaks the core on purpose is caught by a named checker within a bounded number of seeds.

use tally_raft::{ElectionMode, Faults};
use tally_sim::{Profile, RunOptions, hunt, run_seed, sweep};

/// Threads for sweeps: the CI machine has 2 cores.
const THREADS: usize = 2;

/// Runs a sweep and asserts it is clean, printing each failure with its replay command.
fn assert_clean_sweep(start: u64, count: u64, options: RunOptions) {
    let report = sweep(start, count, options, THREADS);
    let election = match options.election {
        ElectionMode::Raft => "",
        ElectionMode::Bully => " --election bully",
    };
    for failure in &report.failures {
        eprintln!(
            "seed {} ({} nodes): {}\n  replay: cargo run --release -p tally-sim -- --seed {} --trace{election}",
            failure.seed,
            failure.nodes,
            failure.violation.as_ref().map(ToString::to_string).unwrap_or_default(),
            failure.seed
        );
    }
    println!("{:?}: {}", options.election, report.summary());
    assert!(report.failures.is_empty(), "{}", report.summary());
    assert!(report.ops > count * 100, "clients completed only {} ops: the workload is not running", report.ops);
}

#[test]
fn sweep_of_300_seeds_over_3_and_5_nodes_finds_no_violation() {
    // Why: this is the safety net of the whole consensus core; every seed mixes partitions, loss,
    // duplication, reordering, crashes (some mid-Ready), clock skew and snapshots.
    assert_clean_sweep(0, 300, RunOptions::default());
}

#[test]
fn bully_sweep_of_300_seeds_finds_no_violation() {
    // Why: the bully election mode must keep every safety property of Raft under the same fault mix (and
    // elect again once healed: the liveness phase).
    assert_clean_sweep(0, 300, RunOptions { election: ElectionMode::Bully, ..RunOptions::default() });
}

#[test]
fn seeds_that_once_found_bugs_stay_clean() {
    // Why: each of these seeds exposed a real bug in a 10,000-seed sweep (a joining node that lost its
    // membership base across a restart: a WAL gap after a base-only snapshot, and a cluster with no leader
    // because the restarted joiners could not campaign). They replay exactly, so they guard the fixes; without
    // the watchers some of them now draw, which came later and would change their runs.
    for seed in [1932, 2369, 7773] {
        let report = run_seed(seed, RunOptions { watchers: false, ..RunOptions::default() }, false);
        assert!(report.violation.is_none(), "seed {seed}: {:?}", report.violation);
    }
}

#[test]
fn lost_acknowledgements_are_not_committed_on_a_stale_leaders_heartbeat() {
    // Why: chaos seed 2140 (raft) found it in a 2,300-seed sweep. A node whose last synced batch (a term-7 hard
    // state and entry 7@7) was damaged restarted with an older 7@4 at index 7 and, its lost hard state unreadable,
    // a recovery fence of term 7 itself; the term-7 leader still held its old match index of 7 and its heartbeat
    // made the node commit 7@4. Heartbeats in such terms now commit only what an Append verified (`LostAcks`).
    let options = RunOptions { profile: Profile::Chaos, watchers: false, ..RunOptions::default() };
    let report = run_seed(2140, options, false);
    assert!(report.violation.is_none(), "seed 2140: {:?}", report.violation);
}

#[test]
fn chaos_sweep_finds_no_violation() {
    // Why: the chaos profile (crash storms, heavy loss, targeted crashes) is what catches the rare
    // interleavings below; the correct core must survive it too.
    for election in [ElectionMode::Raft, ElectionMode::Bully] {
        let options = RunOptions { profile: Profile::Chaos, election, ..RunOptions::default() };
        let report = sweep(10_000, 60, options, THREADS);
        let first = report.failures.first();
        assert!(first.is_none(), "{election:?} seed {:?}: {:?}", first.map(|f| f.seed), first.map(|f| &f.violation));
    }
}

#[test]
fn same_seed_gives_identical_trace() {
    // Why: a failure is only useful if `--seed S` replays it exactly, in either election mode.
    let bully = RunOptions { election: ElectionMode::Bully, ..RunOptions::default() };
    for (seed, options) in [(3, RunOptions::default()), (8, RunOptions::default()), (5, bully)] {
        let first = run_seed(seed, options, true);
        let second = run_seed(seed, options, true);
        assert!(first.trace.len() > 1_000, "seed {seed}: trace too short ({} lines)", first.trace.len());
        assert_eq!(first.ops, second.ops, "seed {seed}: different op counts");
        let diverged = first.trace.iter().zip(&second.trace).position(|(a, b)| a != b);
        assert_eq!(diverged, None, "seed {seed}: traces diverge at line {diverged:?}");
        assert_eq!(first.trace.len(), second.trace.len(), "seed {seed}: trace lengths differ");
    }
}

/// Hunts for a violation with `faults` on, in chaotic 5-node runs of each election mode, and asserts a
/// checker in `expected` catches it within `max_seeds` seeds.
fn assert_caught(faults: Faults, max_seeds: u64, expected: &[&str]) {
    assert_caught_with(RunOptions { faults, ..RunOptions::default() }, max_seeds, expected);
}

/// [`assert_caught`] for any fault switch of `options` (its nodes, profile and election are set here).
fn assert_caught_with(options: RunOptions, max_seeds: u64, expected: &[&str]) {
    let faults = match options {
        RunOptions { misapply_auth: true, .. } => "misapply_auth".to_string(),
        RunOptions { stale_txn_compare: true, .. } => "stale_txn_compare".to_string(),
        RunOptions { watch_skip_after_resume: true, .. } => "watch_skip_after_resume".to_string(),
        _ => format!("{:?}", options.faults),
    };
    for election in [ElectionMode::Raft, ElectionMode::Bully] {
        let options = RunOptions { nodes: Some(5), profile: Profile::Chaos, election, ..options };
        let (found, ran) = hunt(0, max_seeds, options, THREADS);
        let Some(report) = found else { panic!("{election:?}: {faults:?} not caught within {ran} seeds") };
        let violation = report.violation.expect("hunt returns failing runs");
        println!("{election:?}: {faults:?}: caught after {ran} seeds at seed {} by {violation}", report.seed);
        assert!(expected.contains(&violation.checker), "{election:?}: caught by unexpected checker: {violation}");
    }
}

#[test]
fn fault_commit_previous_term_by_count_is_caught() {
    // Raft §5.4.2, Figure 8: committing an older term's entry by counting replicas lets a later leader
    // overwrite a committed entry.
    let faults = Faults { commit_previous_term_by_count: true, ..Faults::default() };
    assert_caught(faults, 3_000, &["leader_completeness", "state_machine_safety", "durability", "assertion"]);
}

#[test]
fn fault_skip_vote_log_check_is_caught() {
    // Raft §5.4.1: electing a candidate whose log is behind loses committed entries. In bully mode the fault
    // also ranks by id alone: the naive bully algorithm, which elects the highest id whatever its log.
    let faults = Faults { skip_vote_log_check: true, ..Faults::default() };
    assert_caught(faults, 200, &["leader_completeness", "state_machine_safety", "durability", "assertion"]);
}

#[test]
fn fault_read_without_quorum_check_is_caught() {
    // Dissertation §6.4: a deposed leader answering reads without a heartbeat round serves stale data: a read
    // index older than one returned before the read began (real time order, seen as the read returns), or an
    // old value (linearizability, checked at the end).
    let faults = Faults { read_without_quorum_check: true, ..Faults::default() };
    assert_caught(faults, 500, &["real_time_order", "linearizability"]);
}

#[test]
fn fault_misapply_auth_is_caught() {
    // One replica applying an auth grant as an admin grant (a privilege escalation on that node only) must be
    // seen: the auth agreement checker compares every node's auth state at each applied index.
    let options = RunOptions { misapply_auth: true, ..RunOptions::default() };
    assert_caught_with(options, 50, &["auth_agreement"]);
}

#[test]
fn fault_stale_txn_compare_is_caught() {
    // Raft §5.3 and §8: every node evaluating a transaction's compares on the state one entry back still agrees
    // with the others (same entries, same states), but not with the committed log: only its reference execution
    // sees the wrong branch (txn_serializability). A node that restored a snapshot evaluates on the restored
    // state instead, so the replicas may also diverge (state_machine_safety). Only runs with transactions (half
    // of them) can show it.
    let options = RunOptions { stale_txn_compare: true, ..RunOptions::default() };
    assert_caught_with(options, 200, &["txn_serializability", "state_machine_safety"]);
}

#[test]
fn fault_watch_skip_after_resume_is_caught() {
    // The watch contract: a resumed watch delivers every matching change from its resume point on. A hub that
    // drops the first one (a watch resuming one change too late) leaves a gap the watch checker sees at the next
    // delivery, at a progress notice that promises the dropped change, or at the end (the watcher never caught
    // up). Only runs with watchers (half of them) can show it.
    let options = RunOptions { watch_skip_after_resume: true, ..RunOptions::default() };
    assert_caught_with(options, 50, &["watch_exactly_once"]);
}

#[test]
fn fault_forget_to_persist_vote_is_caught() {
    // Raft Figure 2: a vote not persisted before answering can be given twice in one term after a restart.
    // A forgotten vote lets a node vote twice in a term: two leaders, or a leader elected by a voter that had
    // already helped elect one with an entry this one lacks.
    let faults = Faults { forget_to_persist_vote: true, ..Faults::default() };
    assert_caught(faults, 1_000, &["election_safety", "leader_completeness", "assertion"]);
}

#[test]
fn fault_skip_protocol_aware_recovery_is_caught() {
    // Protocol-aware recovery: a node whose WAL lost its last synced batch votes (or helps commit) on the
    // strength of what it lost once the recovery is switched off: a second vote in a term elects two leaders, or
    // a leader is elected without a committed entry.
    let faults = Faults { skip_protocol_aware_recovery: true, ..Faults::default() };
    assert_caught_with(
        RunOptions { faults, ..RunOptions::default() },
        3_000,
        &["election_safety", "durability", "leader_completeness", "state_machine_safety", "assertion"],
    );
}
