#![no_main]
//! libFuzzer entry for `header_policy`; the body and its invariants live in `src/lib.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| smart_ai_router_fuzz::header_policy(data));
