#![no_main]
//! libFuzzer entry for `openai_response`; the body and its invariants live in `src/lib.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| smart_ai_router_fuzz::openai_response(data));
