//! `cargo fuzz run revocation_log`: see [`sessiongate::fuzzing::revocation_log`] for the input and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sessiongate::fuzzing::revocation_log(data);
});
