//! libFuzzer entry point of the `http_params` target; the input format and the oracles are in `src/http_params.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::http_params::run(data));
