//! libFuzzer entry point of the `safetensors_index` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::safetensors_index(data);
});
