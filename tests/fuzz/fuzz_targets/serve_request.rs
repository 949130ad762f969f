//! libFuzzer entry point of the `serve_request` target (see the crate docs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    deltaguard_fuzz::serve_request(data);
});
