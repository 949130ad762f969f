//! libFuzzer entry point of the `datasets` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::datasets(data);
});
