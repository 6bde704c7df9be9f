//! `tally-sim`: run a sweep of seeds, or replay one seed with a trace.

use std::process::ExitCode;

use clap::Parser;
use tally_raft::Faults;
use tally_sim::{run_seed, sweep};

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
    /// Worker threads for a sweep.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let nodes = args.nodes.as_deref().map(|n| n.parse::<usize>().expect("validated by clap"));
    if let Some(seed) = args.seed {
        let report = run_seed(seed, nodes, Faults::default(), args.trace);
        for line in &report.trace {
            println!("{line}");
        }
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
    let report = sweep(args.start_seed, args.seeds, nodes, Faults::default(), args.threads);
    for failure in &report.failures {
        let violation = failure.violation.as_ref().expect("failures have a violation");
        println!(
            "FAIL seed={} nodes={} {violation}\n  replay: cargo run --release -p tally-sim -- --seed {} --trace",
            failure.seed, failure.nodes, failure.seed
        );
    }
    println!("{}", report.summary());
    if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
