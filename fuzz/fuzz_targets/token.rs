//! `cargo fuzz run token`: see [`sessiongate::fuzzing::token`] for the input and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sessiongate::fuzzing::token(data);
});
