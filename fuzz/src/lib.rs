//! Fuzz harnesses for every decoder that reads bytes a stranger (or a damaged disk) controls.
//!
//! ```text
//!  fuzz_targets/T.rs ──libFuzzer bytes──▶ T::run(data): decode with the production code, then check oracles
//!  examples/write_corpus.rs ──T::seeds()──▶ corpus/T/seed-* (real encodings, made by the production encoders)
//!  tests below ──every seed──▶ T::run          (the oracles hold for the seeds, on the stable toolchain too)
//! ```
//!
//! One module per target. Each documents its input layout (a few leading bytes choose options, such as
//! "recompute checksums", so that mutated inputs get past a CRC to the parser behind it) and checks more than
//! "no panic": decoded values re-encode to the same bytes (or at least decode to themselves again), decoders agree
//! with a small reference model, and cutting a stream into other pieces changes nothing.
//!
//! A panic in `run` is a finding: libFuzzer saves the input under `fuzz/artifacts/T/`. Every finding becomes a
//! fix and a unit test next to the decoder it concerns.

pub mod http_params;
pub mod kv_command;
pub mod kv_snapshot;
pub mod peer_frame;
pub mod registry_request;
pub mod txn_request;
pub mod wal_record;

/// One seed input of a target's corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// File name in `corpus/TARGET/` (starts with `seed-`).
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

impl Seed {
    /// A seed called `seed-{name}`.
    pub fn new(name: &str, bytes: Vec<u8>) -> Seed {
        Seed { name: format!("seed-{name}"), bytes }
    }
}

/// A fuzz target: its name (the binary in `fuzz_targets/`), its oracle and its seeds.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The target's name, also its corpus directory.
    pub name: &'static str,
    /// Runs one input; panics on a finding.
    pub run: fn(&[u8]),
    /// The seed corpus.
    pub seeds: fn() -> Vec<Seed>,
}

/// Every target.
pub const TARGETS: [Target; 7] = [
    Target { name: "peer_frame", run: peer_frame::run, seeds: peer_frame::seeds },
    Target { name: "wal_record", run: wal_record::run, seeds: wal_record::seeds },
    Target { name: "kv_command", run: kv_command::run, seeds: kv_command::seeds },
    Target { name: "kv_snapshot", run: kv_snapshot::run, seeds: kv_snapshot::seeds },
    Target { name: "http_params", run: http_params::run, seeds: http_params::seeds },
    Target { name: "registry_request", run: registry_request::run, seeds: registry_request::seeds },
    Target { name: "txn_request", run: txn_request::run, seeds: txn_request::seeds },
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_seed_passes_its_oracles() {
        for target in TARGETS {
            for seed in (target.seeds)() {
                println!("{} {}", target.name, seed.name);
                (target.run)(&seed.bytes);
            }
        }
    }

    #[test]
    fn the_committed_corpus_holds_every_seed() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for target in TARGETS {
            for seed in (target.seeds)() {
                let path = corpus.join(target.name).join(&seed.name);
                let committed = std::fs::read(&path).unwrap_or_else(|error| {
                    panic!("{}: {error}; regenerate with `cargo run --example write_corpus`", path.display())
                });
                assert!(committed == seed.bytes, "{} is stale; run `cargo run --example write_corpus`", path.display());
            }
        }
    }

    #[test]
    fn every_committed_input_passes_its_oracles() {
        // Seeds, and the findings kept as regression inputs next to them.
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for target in TARGETS {
            let Ok(entries) = std::fs::read_dir(corpus.join(target.name)) else { continue };
            for entry in entries {
                let path = entry.expect("corpus entry").path();
                println!("{}", path.display());
                (target.run)(&std::fs::read(&path).expect("corpus file"));
            }
        }
    }

    #[test]
    fn empty_and_tiny_inputs_are_fine() {
        for target in TARGETS {
            for input in [&[][..], &[0], &[0xff], &[0; 16], &[0xff; 16]] {
                (target.run)(input);
            }
        }
    }
}
