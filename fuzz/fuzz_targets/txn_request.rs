//! libFuzzer entry point of the `txn_request` target; the input format and the oracles are in `src/txn_request.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::txn_request::run(data));
