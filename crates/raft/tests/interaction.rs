//! Data-driven interaction tests of the Raft core, in the style of etcd-io/raft's `interaction_test.go` and
//! toydb's goldenscript: each `testdata/<name>.txt` script drives an in-memory cluster with commands
//! (`add-nodes 3`, `campaign 1`, `stabilize`, `partition 1 | 2,3`, `raft-log 2`, ...) and holds the
//! expected output inline. `REWRITE=1 cargo test -p tally-raft --test interaction` regenerates the outputs;
//! review the diff like code.
//!
//! - `script`: the file format, the runner and the diff;
//! - `handler`: the commands, each documented in its `match` arm;
//! - `env`: the simulated cluster (nodes, disks, network, state machines) and its safety checks.

#[path = "interaction/env.rs"]
mod env;
#[path = "interaction/handler.rs"]
mod handler;
#[path = "interaction/script.rs"]
mod script;

/// One test per script, so a failure names its scenario and `cargo test -p tally-raft --test interaction
/// election` runs just one.
macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                script::run_file(stringify!($name));
            }
        )*

        /// Every script that has a test.
        const SCRIPTS: &[&str] = &[$(stringify!($name)),*];
    };
}

scripts!(
    single_node,
    election,
    pre_vote,
    check_quorum,
    replication,
    conflict,
    commit_previous_term,
    read_index,
    membership,
    leader_transfer,
    snapshot,
    crash_restart,
    hold_back,
    membership_uncommitted,
    empty_node_vote,
    bully_election,
    bully_highest_dies,
    bully_higher_returns,
    bully_partitioned_highest,
    bully_two_highest,
    bully_cut_off_highest,
    bully_refused_highest,
    forged_acks,
    recovery_vote,
    recovery_commit,
    recovery_stale_leader,
    recovery_liveness,
    pre_vote_live_leader,
    removed_voter,
    removed_voter_new_leader,
    removed_voter_later_term,
    removed_voter_departing_term,
);

/// A script nobody runs is a test that silently stopped existing.
#[test]
fn every_script_has_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    for entry in std::fs::read_dir(&dir).expect("testdata exists") {
        let path = entry.expect("readable directory").path();
        if path.extension().is_some_and(|e| e == "txt") {
            let name = path.file_stem().expect("a file name").to_string_lossy().into_owned();
            assert!(SCRIPTS.contains(&name.as_str()), "{} has no test: add it to scripts!()", path.display());
        }
    }
}
