//! libFuzzer entry point of the `kv_snapshot` target; the input format and the oracles are in `src/kv_snapshot.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::kv_snapshot::run(data));
