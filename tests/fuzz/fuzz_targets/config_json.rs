//! libFuzzer entry point of the `config_json` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::config_json(data);
});
