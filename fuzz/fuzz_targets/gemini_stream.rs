#![no_main]
//! libFuzzer entry for `gemini_stream`; the body and its invariants live in `src/lib.rs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| smart_ai_router_fuzz::gemini_stream(data));
