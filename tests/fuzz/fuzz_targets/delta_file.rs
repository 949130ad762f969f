//! libFuzzer entry point of the `delta_file` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::delta_file(data);
});
