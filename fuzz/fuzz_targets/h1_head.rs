#![no_main]
//! libFuzzer entry for `h1_head`; the body and its invariants live in `src/lib.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| smart_ai_router_fuzz::h1_head(data));
