//! Ranking allocates nothing on the heap: everything it builds lives in the per-request arena
//! or on the stack. Proved with a counting global allocator over the synthetic 40-channel /
//! 3,400-pair catalog, for every benchmarked case. (One test in this binary, so no other test
//! thread allocates meanwhile.)

use std::alloc::System;
use std::time::Instant;

use bumpalo::Bump;
use smart_ai_router::expr::Caps;
use smart_ai_router::routing::{Ask, Local, rank};
use smart_ai_router::strategy::Options;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[path = "common/synthetic.rs"]
mod synthetic;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn ranking_never_touches_the_heap() {
    let snap = synthetic::snapshot();
    let options = Options::default();
    let cases: [(&str, Caps); 8] = [
        ("openai/gpt-4o-mini", Caps::NONE),
        ("tag:free", Caps::NONE),
        ("tag:gpt,4o,!mini", Caps::TOOLS),
        ("auto:llama", Caps::NONE),
        ("auto:big-qwen", Caps::NONE),
        ("tag:qwen3,>=30B", Caps::NONE),
        ("qwen3->8b", Caps::NONE),
        ("tag:llama,ctx>=100k", Caps::NONE),
    ];
    let mut arena = Bump::with_capacity(1 << 20);
    let mut local = Local::default();
    for (model, needs) in cases {
        let ask = Ask {
            model,
            needs,
            prompt_tokens: 1000,
            max_tokens: Some(500),
            stream: false,
            strategy: None,
            options: &options,
            allowed: None,
            endpoint: smart_ai_router::presets::Endpoint::Chat,
            fields: smart_ai_router::presets::Fields::NONE,
        };
        // Warm-up: the worker view is sized once per catalog, the arena grows once.
        arena.reset();
        let n = rank(&snap, &mut local, &ask, Instant::now(), &arena, false)
            .expect("the case routes")
            .candidates
            .len();
        assert!(n > 0, "{model} has candidates");
        let region = Region::new(GLOBAL);
        for _ in 0..200 {
            arena.reset();
            let r = rank(&snap, &mut local, &ask, Instant::now(), &arena, false).expect("routes");
            std::hint::black_box(r.candidates.len());
        }
        let change = region.change();
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{model}: ranking allocated on the heap"
        );
    }
}
