//! Every parser of untrusted input: job-route paths and ids, path
//! templates, `Prefer`, `Idempotency-Key`, `wait`, `limit` and `cursor`.
//! Run: `cargo fuzz run parsers fuzz/corpus/parsers fuzz/seeds/parsers`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tower_accepted::fuzzing::parse_everything(data);
});
