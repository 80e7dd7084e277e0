//! A deterministic synthetic catalog the size of the original project's largest deployment:
//! 40 channels carrying 3,400 (channel, model) pairs in all, with OpenRouter-style ids, a mix
//! of prices, `:free` variants, sizes and contexts. Used by the routing benchmark and the
//! allocation test, so both measure the same shape.

#![allow(dead_code, unreachable_pub)]

use smart_ai_router::channel::Resolved;
use smart_ai_router::config::Config;
use smart_ai_router::snapshot::Snapshot;

/// Channels in the synthetic deployment.
pub const CHANNELS: usize = 40;
/// Models per channel (40 × 85 = 3,400 pairs).
pub const MODELS_PER_CHANNEL: usize = 85;

const FAMILIES: &[(&str, &str, &[u32])] = &[
    ("openai", "gpt-4o", &[0]),
    ("openai", "gpt-4o-mini", &[0]),
    ("openai", "gpt-4.1", &[0]),
    ("openai", "gpt-4.1-mini", &[0]),
    ("anthropic", "claude-3.5-sonnet", &[0]),
    ("anthropic", "claude-3-haiku", &[0]),
    ("google", "gemini-2.0-flash", &[0]),
    ("meta-llama", "llama-3.1", &[8, 70, 405]),
    ("meta-llama", "llama-3.3", &[70]),
    ("qwen", "qwen3", &[8, 14, 30, 32, 235]),
    ("qwen", "qwen2.5", &[7, 14, 32, 72]),
    ("deepseek", "deepseek-r1-distill-llama", &[8, 70]),
    ("mistralai", "mistral-small", &[24]),
    ("mistralai", "mixtral", &[8]),
    ("microsoft", "phi-4", &[14]),
    ("google", "gemma-2", &[9, 27]),
];

/// Every model id the generator can produce, in a fixed order.
pub fn model_pool() -> Vec<String> {
    let mut pool = Vec::new();
    for (vendor, family, sizes) in FAMILIES {
        for &size in sizes.iter() {
            let base = if size == 0 {
                format!("{vendor}/{family}")
            } else {
                format!("{vendor}/{family}-{size}b-instruct")
            };
            for variant in ["", ":free", "-2024-08-06", "-128k", ":nitro"] {
                pool.push(format!("{base}{variant}"));
            }
        }
    }
    pool
}

/// The config text: channel `i` serves 85 models from a rotating window of the pool, with a
/// price that depends on the channel, and an `auto:` group matching ~500 pairs.
pub fn config_text() -> String {
    let pool = model_pool();
    let mut t = String::from(
        "[groups.\"auto:llama\"]\nquery = \"tag:llama,!nitro\"\nstrategy = \"cost_first\"\n\n\
         [groups.\"auto:big-qwen\"]\nquery = \"tag:qwen,>=30b\"\nstrategy = \"quality_first\"\n\n",
    );
    for c in 0..CHANNELS {
        t.push_str(&format!(
            "[providers.p{c}]\nbase_url = \"http://203.0.113.{}:{}/v1\"\n\n",
            c % 250 + 1,
            8000 + c
        ));
    }
    for c in 0..CHANNELS {
        let models: Vec<String> = (0..MODELS_PER_CHANNEL)
            .map(|k| format!("\"{}\"", pool[(c * 7 + k) % pool.len()]))
            .collect();
        t.push_str(&format!(
            "[[channels]]\nid = \"ch-{c}\"\nprovider = \"p{c}\"\napi_key = \"sk-{c}\"\nmodels = [{}]\npricing = {{ input = {:.2}, output = {:.2} }}\npriority = {}\nweight = {}\n{}\n",
            models.join(", "),
            0.1 + (c % 9) as f64 * 0.35,
            0.4 + (c % 9) as f64 * 1.2,
            (c % 3 == 0) as i32,
            1 + c % 4,
            if c % 5 == 0 { "tags = [\"free\"]\n" } else { "" },
        ));
    }
    t
}

/// The synthetic snapshot (every address literal: no DNS).
pub fn snapshot() -> Snapshot {
    let cfg = Config::parse(&config_text(), &|_: &str| None).expect("synthetic config is valid");
    let s = Snapshot::build(&cfg, 1, &Resolved::new(), &Default::default(), 2, 1);
    assert_eq!(s.catalog.entries.len(), CHANNELS * MODELS_PER_CHANNEL);
    s
}
