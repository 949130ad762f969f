//! libFuzzer entry point of the `gguf` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::gguf(data);
});
