//! `cargo fuzz run security_event`: see [`sessiongate::fuzzing::security_event`] for the input and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sessiongate::fuzzing::security_event(data);
});
