#![no_main]

#[path = "../targets_impl/watch_decode.rs"]
mod imp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| imp::run(data));
