//! libFuzzer entry point of the `tokenizer` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::tokenizer(data);
});
