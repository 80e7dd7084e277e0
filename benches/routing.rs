//! How long does choosing a channel take on a large deployment?
//!
//! The catalog is the size of the original project's largest deployment: 40 channels carrying
//! 3,400 (channel, model) pairs (generator: `tests/common/synthetic.rs`, deterministic). Cases:
//! an exact id served by many channels; `tag:free`; `tag:gpt,4o,!mini` with tools required; and
//! an `auto:` group matching hundreds of pairs. Targets (issue 3): ≤ 2 µs for an exact id,
//! ≤ 20 µs for a 500-candidate group, zero heap allocations (`tests/alloc.rs`).
//!
//! And the control plane's side of it (issue 4): building that snapshot from the config (what a
//! start, a reload, a discovery change or an admin override costs), the carry-over of live
//! state into it, and parsing one provider's 85-model list.

use std::time::Instant;

use bumpalo::Bump;
use criterion::{Criterion, criterion_group, criterion_main};
use smart_ai_router::expr::Caps;
use smart_ai_router::routing::{Ask, Local, rank};
use smart_ai_router::strategy::Options;

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
            allowed: None,
            endpoint: smart_ai_router::presets::Endpoint::Chat,
            fields: smart_ai_router::presets::Fields::NONE,
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

fn control(c: &mut Criterion) {
    use smart_ai_router::catalog::discovered;
    use smart_ai_router::channel::{Overrides, Resolved};
    use smart_ai_router::config::Config;
    use smart_ai_router::snapshot::Snapshot;
    let cfg = Config::parse(&synthetic::config_text(), &|_: &str| None).expect("valid");
    let none = Default::default();
    let old = synthetic::snapshot();
    let mut g = c.benchmark_group("control_3400_pairs");
    g.sample_size(30);
    g.bench_function("snapshot_build", |b| {
        b.iter(|| {
            let s = Snapshot::build_with(
                &cfg,
                2,
                &Resolved::new(),
                &none,
                2,
                2,
                &Default::default(),
                &Overrides::default(),
            );
            std::hint::black_box(s.catalog.entries.len())
        })
    });
    g.bench_function("rebuild_with_carry_over", |b| {
        b.iter(|| {
            let mut s = Snapshot::build_with(
                &cfg,
                2,
                &Resolved::new(),
                &none,
                2,
                2,
                &Default::default(),
                &Overrides::default(),
            );
            s.live = std::sync::Arc::new(old.live_carried_into(&s));
            std::hint::black_box(s.live.entries.len())
        })
    });
    let list = {
        let mut b = b"{\"data\":[".to_vec();
        for (i, m) in synthetic::model_pool().iter().take(85).enumerate() {
            if i > 0 {
                b.push(b',');
            }
            b.extend_from_slice(
                format!(
                    "{{\"id\":\"{m}\",\"context_length\":131072,\"pricing\":{{\"prompt\":\"0.0000002\",\"completion\":\"0.0000008\"}},\"supported_parameters\":[\"tools\"]}}"
                )
                .as_bytes(),
            );
        }
        b.extend_from_slice(b"]}");
        b
    };
    g.bench_function("parse_85_model_list", |b| {
        b.iter(|| std::hint::black_box(discovered::parse(&list).expect("parses").len()))
    });
    g.finish();
}

criterion_group!(benches, bench, control);
criterion_main!(benches);
