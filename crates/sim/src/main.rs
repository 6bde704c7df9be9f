//! `tally-sim`: run a sweep of seeds, or replay one seed with a trace.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tally_raft::{ElectionMode, Faults};
use tally_sim::{Profile, RunOptions, failover_sweep, run_seed, sweep};

/// Deterministic simulation of Tally clusters under faults.
#[derive(Parser, Debug)]
#[command(name = "tally-sim", version)]
struct Args {
    /// Run this many seeds (a sweep).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed of the sweep.
    #[arg(long, default_value_t = 0)]
    start_seed: u64,
    /// Replay exactly this seed (ignores --seeds).
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster size: 3 or 5 (default: alternate by seed).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["3", "5"]))]
    nodes: Option<String>,
    /// With --seed: print the trace of the run.
    #[arg(long)]
    trace: bool,
    /// Break the core on purpose (to show the checkers catch it): commit-previous-term, skip-vote-log-check,
    /// read-without-quorum, forget-vote, skip-recovery (ignore a WAL tail that may have been acknowledged); or
    /// misapply-auth (n1 applies auth grants as admin grants), stale-txn-compare (every node evaluates a
    /// transaction's compares on the state one entry back; only runs with transactions can show it),
    /// watch-skip-after-resume (every node's watch hub drops the first matching change of a resumed watch; only
    /// runs with watchers can show it).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(FAULTS))]
    fault: Option<String>,
    /// Which mix of runs: `mixed` (calm, harsh and chaotic) or `chaos` (every run chaotic).
    #[arg(long, default_value = "mixed", value_parser = clap::builder::PossibleValuesParser::new(["mixed", "chaos"]))]
    profile: String,
    /// How the nodes elect their leader: `raft` or `bully`.
    #[arg(long, default_value = "raft", value_parser = clap::builder::PossibleValuesParser::new(["raft", "bully"]))]
    election: String,
    /// Measure failovers instead of running the safety sweep: each seed crashes the leader of a calm cluster
    /// and counts the ticks until a new leader commits (compare `--election raft` and `bully`).
    #[arg(long)]
    failover: bool,
    /// Never damage a crashing node's last synced batch (by default runs do, at a rate drawn from the seed: the
    /// case protocol-aware recovery exists for).
    #[arg(long)]
    no_damage_synced: bool,
    /// Run no watchers, whatever the seed draws (so a seed found before watchers existed replays as it did then).
    #[arg(long)]
    no_watchers: bool,
    /// Worker threads for a sweep.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
}

/// Names of the fault switches.
const FAULTS: [&str; 8] = [
    "commit-previous-term",
    "skip-vote-log-check",
    "read-without-quorum",
    "forget-vote",
    "skip-recovery",
    "misapply-auth",
    "stale-txn-compare",
    "watch-skip-after-resume",
];

/// The fault switches for a `--fault` name.
fn faults(name: Option<&str>) -> Faults {
    let mut faults = Faults::default();
    match name {
        None => {}
        Some("commit-previous-term") => faults.commit_previous_term_by_count = true,
        Some("skip-vote-log-check") => faults.skip_vote_log_check = true,
        Some("read-without-quorum") => faults.read_without_quorum_check = true,
        Some("forget-vote") => faults.forget_to_persist_vote = true,
        Some("skip-recovery") => faults.skip_protocol_aware_recovery = true,
        // State machine and watch hub faults, not core ones: see `RunOptions::misapply_auth`, `stale_txn_compare`
        // and `watch_skip_after_resume`.
        Some("misapply-auth" | "stale-txn-compare" | "watch-skip-after-resume") => {}
        Some(other) => unreachable!("clap admitted unknown fault {other}"),
    }
    faults
}

/// The flags besides the seed that a replay needs to reproduce a run of this sweep.
fn replay_flags(args: &Args) -> String {
    let mut flags = String::new();
    if let Some(nodes) = &args.nodes {
        flags += &format!(" --nodes {nodes}");
    }
    if args.profile != "mixed" {
        flags += &format!(" --profile {}", args.profile);
    }
    if let Some(fault) = &args.fault {
        flags += &format!(" --fault {fault}");
    }
    if args.election != "raft" {
        flags += &format!(" --election {}", args.election);
    }
    if args.no_damage_synced {
        flags += " --no-damage-synced";
    }
    if args.no_watchers {
        flags += " --no-watchers";
    }
    flags
}

fn main() -> ExitCode {
    let args = Args::parse();
    let profile = if args.profile == "chaos" { Profile::Chaos } else { Profile::Mixed };
    let nodes = args.nodes.as_deref().map(|n| n.parse::<usize>().expect("validated by clap"));
    let election = if args.election == "bully" { ElectionMode::Bully } else { ElectionMode::Raft };
    let misapply_auth = args.fault.as_deref() == Some("misapply-auth");
    let stale_txn_compare = args.fault.as_deref() == Some("stale-txn-compare");
    let watch_skip_after_resume = args.fault.as_deref() == Some("watch-skip-after-resume");
    let options = RunOptions {
        nodes,
        profile,
        faults: faults(args.fault.as_deref()),
        election,
        misapply_auth,
        stale_txn_compare,
        watch_skip_after_resume,
        damage_synced: !args.no_damage_synced,
        watchers: !args.no_watchers,
    };
    if args.failover {
        let report = failover_sweep(args.start_seed, args.seeds, nodes, election, args.threads);
        for (seed, violation) in &report.failures {
            println!("FAIL seed={seed} {violation}");
        }
        println!("{}", report.summary());
        return if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    if let Some(seed) = args.seed {
        let report = run_seed(seed, options, args.trace);
        let mut out = std::io::stdout().lock();
        for line in &report.trace {
            if writeln!(out, "{line}").is_err() {
                return ExitCode::SUCCESS; // the reader went away (e.g. `| head`): nothing left to say
            }
        }
        drop(out);
        return match report.violation {
            None => {
                println!("seed={seed} nodes={} ops={} ok", report.nodes, report.ops);
                ExitCode::SUCCESS
            }
            Some(violation) => {
                println!("seed={seed} nodes={} VIOLATION {violation}", report.nodes);
                ExitCode::FAILURE
            }
        };
    }
    let report = sweep(args.start_seed, args.seeds, options, args.threads);
    for failure in &report.failures {
        let violation = failure.violation.as_ref().expect("failures have a violation");
        println!(
            "FAIL seed={} nodes={} {violation}\n  replay: cargo run --release -p tally-sim -- --seed {} --trace{}",
            failure.seed,
            failure.nodes,
            failure.seed,
            replay_flags(&args)
        );
    }
    if report.unchecked_keys > 0 {
        println!(
            "note: {} key histories exceeded the linearizability search budget (not checked)",
            report.unchecked_keys
        );
    }
    let watch = report.watch;
    if watch.fresh > 0 {
        println!(
            "watchers: {} entries and {} progress notices checked; {} fresh starts, {} resumes, {} compacted, {} slow",
            watch.batches, watch.progress, watch.fresh, watch.resumes, watch.compacted, watch.slow
        );
    }
    println!("{}", report.summary());
    if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
