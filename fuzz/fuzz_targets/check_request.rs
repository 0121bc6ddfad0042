//! `cargo fuzz run check_request`: see [`sessiongate::fuzzing::check_request`] for the input and its invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sessiongate::fuzzing::check_request(data);
});
