//! Deterministic simulation of Tally clusters.
pub mod linearizability;
