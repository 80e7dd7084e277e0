//! How long does reading a chat request cost the gateway?
//!
//! Every proxied request pays for `providers::openai::ingress::extract`: copy the body (simd-json rewrites its
//! input), build a tape, read `model`/`stream`, and find the `model` value's byte span for the
//! rewrite. This bench measures that on realistic bodies of 1 KiB, 32 KiB and 1 MiB (a long
//! conversation), against simd-json's owned-value parse as the baseline a naive design would use.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smart_ai_router::providers::openai::ingress::{JsonScratch, extract};

fn body(size: usize) -> Vec<u8> {
    let mut messages = String::new();
    let mut i = 0;
    while messages.len() < size {
        if i > 0 {
            messages.push(',');
        }
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push_str(&format!(
            r#"{{"role":"{role}","content":"Message {i}: explain the \"thread-per-core\" model and io_uring in detail, with examples.\nLine two."}}"#
        ));
        i += 1;
    }
    format!(
        r#"{{"model":"gpt-4o-mini","messages":[{messages}],"temperature":0.2,"stream":true,"stream_options":{{"include_usage":true}},"tools":[{{"type":"function","function":{{"name":"get_weather","parameters":{{"type":"object"}}}}}}]}}"#
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat_request_parse");
    for (name, size) in [("1KiB", 1024), ("32KiB", 32 * 1024), ("1MiB", 1024 * 1024)] {
        let b = body(size);
        g.throughput(Throughput::Bytes(b.len() as u64));
        let mut scratch = JsonScratch::default();
        g.bench_with_input(BenchmarkId::new("extract", name), &b, |bench, b| {
            bench.iter(|| extract(b, &mut scratch).expect("valid body"))
        });
        g.bench_with_input(
            BenchmarkId::new("owned_value_baseline", name),
            &b,
            |bench, b| {
                bench.iter(|| {
                    let mut copy = b.clone();
                    simd_json::to_owned_value(&mut copy).expect("valid body")
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
