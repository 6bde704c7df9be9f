//! libFuzzer entry point of the `registry_request` target; the input format and the oracles are in `src/registry_request.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::registry_request::run(data));
