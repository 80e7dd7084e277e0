//! How long does choosing a channel take on a large deployment?
//!
//! The catalog is the size of the original project's largest deployment: 40 channels carrying
//! 3,400 (channel, model) pairs (generator: `tests/common/synthetic.rs`, deterministic). Cases:
//! an exact id served by many channels; `tag:free`; `tag:gpt,4o,!mini` with tools required; and
//! an `auto:` group matching hundreds of pairs. Targets (issue 3): ≤ 2 µs for an exact id,
//! ≤ 20 µs for a 500-candidate group, zero heap allocations (`tests/alloc.rs`).

use std::time::Instant;

use bumpalo::Bump;
use criterion::{Criterion, criterion_group, criterion_main};
use smart_ai_router::catalog::Caps;
use smart_ai_router::routing::{Ask, Local, Options, rank};

#[path = "../tests/common/synthetic.rs"]
mod synthetic;

fn bench(c: &mut Criterion) {
    let snap = synthetic::snapshot();
    let options = Options::default();
    let mut arena = Bump::with_capacity(1 << 20);
    let mut local = Local::default();
    let mut g = c.benchmark_group("rank_3400_pairs");
    for (name, model, needs) in [
        ("exact_id", "openai/gpt-4o-mini", Caps::NONE),
        ("tag_free", "tag:free", Caps::NONE),
        ("tag_gpt_4o_not_mini_tools", "tag:gpt,4o,!mini", Caps::TOOLS),
        ("auto_group", "auto:llama", Caps::NONE),
    ] {
        let ask = Ask {
            model,
            needs,
            prompt_tokens: 1000,
            max_tokens: Some(500),
            stream: false,
            strategy: None,
            options: &options,
        };
        arena.reset();
        let n = rank(&snap, &mut local, &ask, Instant::now(), &arena, false)
            .expect("routes")
            .matched;
        eprintln!("{name}: {n} candidates scored");
        g.bench_function(name, |b| {
            b.iter(|| {
                arena.reset();
                let r =
                    rank(&snap, &mut local, &ask, Instant::now(), &arena, false).expect("routes");
                std::hint::black_box(r.candidates.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
