#![no_main]
//! libFuzzer entry for `anthropic_stream`; the body and its invariants live in `src/lib.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| smart_ai_router_fuzz::anthropic_stream(data));
