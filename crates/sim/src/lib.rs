//! `tally-sim`: deterministic simulation of Tally clusters.
//!
//! Real `tally-node` instances (the production node loop and Raft core) run against a simulated network,
//! disk and clock. Everything random (delays, loss, duplication, partitions, crashes, clock skew, client
//! behaviour) comes from one `u64` seed, so `tally-sim --seed S --trace` replays a run exactly. After every
//! simulated millisecond the checkers of [`checkers`] run; at the end the client history is checked for
//! linearizability. In half the runs, [`watcher`]s follow key prefixes through the nodes' watch hubs. See
//! [`world`] for the shape of a run and [`sweep`] for running many seeds.
#![deny(missing_docs)]

pub mod checkers;
pub mod client;
pub mod failover;
pub mod hash;
pub mod linearizability;
pub mod network;
pub mod params;
pub mod show;
pub mod state_machine;
pub mod sweep;
pub mod txn_client;
pub mod watcher;
pub mod world;

pub use failover::{FailoverReport, failover_sweep};
pub use params::{Profile, SimParams};
pub use sweep::{RunOptions, RunReport, SweepReport, hunt, run_seed, sweep};
pub use world::{FailoverSample, Outcome, Simulation};
