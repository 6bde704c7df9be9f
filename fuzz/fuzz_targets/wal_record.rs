//! libFuzzer entry point of the `wal_record` target; the input format and the oracles are in `src/wal_record.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tally_fuzz::wal_record::run(data));
