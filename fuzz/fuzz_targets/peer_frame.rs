//! libFuzzer entry point of the `peer_frame` target; the input format and the oracles are in `src/peer_frame.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::peer_frame::run(data));
