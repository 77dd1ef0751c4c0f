#![no_main]

#[path = "../targets_impl/status_headers.rs"]
mod imp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| imp::run(data));
