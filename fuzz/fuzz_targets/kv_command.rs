//! libFuzzer entry point of the `kv_command` target; the input format and the oracles are in `src/kv_command.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::kv_command::run(data));
