//! libFuzzer entry point of the `chat_template` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::chat_template(data);
});
