//! `cargo fuzz run config`: see [`sessiongate::fuzzing::config`] for the input and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sessiongate::fuzzing::config(data);
});
