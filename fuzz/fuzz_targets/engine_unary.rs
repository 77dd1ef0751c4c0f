#![no_main]

#[path = "../targets_impl/engine_unary.rs"]
mod imp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| imp::run(data));
