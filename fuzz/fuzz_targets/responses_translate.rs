#![no_main]
//! libFuzzer entry for `responses_translate`; the body and its invariants live in `src/lib.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| smart_ai_router_fuzz::responses_translate(data));
