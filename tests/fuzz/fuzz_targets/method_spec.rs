//! libFuzzer entry point of the `method_spec` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::method_spec(data);
});
