//! What a model can do and how big it is, when neither config (`model_info`) nor discovery says:
//! heuristics from the model id, each rule written down here.
//!
//! * **Parameters** (millions): an id segment like `70b`, `1.5b`, `8x7b` (experts × size),
//!   `360m`; else a small table of public estimates for closed families (marked as guesses).
//! * **Context** (tokens): a segment like `128k`, `32k`, `1m`; else a family table.
//! * **Vision**: `vision`, `-vl`/`vl-`, `llava`, `pixtral`, and families known to take images
//!   (gpt-4o, gpt-4.1, gpt-5, o3, o4, claude-3+, gemini, grok-2-vision …).
//! * **Embedding**: `embed`, `bge-`, `e5-`, `rerank` in the id. Embedding models never serve
//!   chat.
//! * **Tools / JSON mode**: assumed for chat models, except families known to lack them
//!   (`o1-mini`, `o1-preview`, `deepseek-reasoner`, `gemma`, base models) and embeddings.
//! * **Quality**: the first matching pattern of [`QUALITY`]; 0.6 when none matches.
//!
//! Invariants: pure functions of the id (lower-cased); cheap enough to run on 3,400 ids per
//! snapshot build.

/// Parameters in millions from the id, 0 when unknown.
pub(crate) fn params_millions(id: &str) -> u32 {
    let lower = id.to_ascii_lowercase();
    for seg in lower.split(['/', ':', '@', '-', '_', ',', ' ']) {
        if let Some(m) = size_segment(seg) {
            return m;
        }
    }
    const TABLE: &[(&str, u32)] = &[
        // Public estimates for closed models (guesses; config `model_info.params` wins).
        ("gpt-4o-mini", 8_000),
        ("gpt-4.1-nano", 8_000),
        ("gpt-4.1-mini", 30_000),
        ("gpt-4o", 200_000),
        ("gpt-4.1", 200_000),
        ("gpt-4", 1_760_000),
        ("gpt-3.5", 20_000),
        ("claude-3-haiku", 20_000),
        ("claude-3-5-haiku", 20_000),
        ("claude-3.5-haiku", 20_000),
        ("haiku", 20_000),
        ("sonnet", 70_000),
        ("opus", 175_000),
        ("gemini-pro", 70_000),
        ("deepseek-chat", 671_000),
        ("deepseek-v3", 671_000),
        ("deepseek-r1", 671_000),
        ("deepseek-reasoner", 671_000),
    ];
    TABLE
        .iter()
        .find(|(p, _)| lower.contains(p))
        .map_or(0, |(_, m)| *m)
}

/// `70b` → 70000, `1.5b` → 1500, `8x7b` → 56000, `360m` → 360.
fn size_segment(seg: &str) -> Option<u32> {
    let (num, scale) = if let Some(n) = seg.strip_suffix('b') {
        (n, 1000.0)
    } else if let Some(n) = seg.strip_suffix('m') {
        (n, 1.0)
    } else {
        return None;
    };
    let value = match num.split_once('x') {
        Some((n, each)) => n.parse::<f64>().ok()? * each.parse::<f64>().ok()?,
        None => num.parse::<f64>().ok()?,
    };
    if value.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        || !num.bytes().next()?.is_ascii_digit()
    {
        return None;
    }
    let m = value * scale;
    // Below 50M parameters a `m` segment is more likely a version or date than a size.
    (50.0..1e7).contains(&m).then_some(m as u32)
}

/// Context length in tokens from the id, 0 when unknown.
pub(crate) fn context_tokens(id: &str) -> u32 {
    let lower = id.to_ascii_lowercase();
    for seg in lower.split(['/', ':', '@', '-', '_', ',', ' ']) {
        if let Some(k) = seg.strip_suffix('k')
            && let Ok(n) = k.parse::<u32>()
            && (2..=10_000).contains(&n)
        {
            return n * 1000;
        }
        if let Some(m) = seg.strip_suffix('m')
            && let Ok(n) = m.parse::<u32>()
            && (1..=10).contains(&n)
        {
            return n * 1_000_000;
        }
    }
    const TABLE: &[(&str, u32)] = &[
        ("gpt-4.1", 1_047_576),
        ("gpt-4o", 128_000),
        ("gpt-4-turbo", 128_000),
        ("gpt-5", 400_000),
        ("o4-mini", 200_000),
        ("o3", 200_000),
        ("o1", 200_000),
        ("gpt-4", 8_192),
        ("gpt-3.5", 16_385),
        ("claude", 200_000),
        ("gemini-1.5-pro", 2_000_000),
        ("gemini", 1_000_000),
        ("deepseek", 64_000),
        ("llama-3.1", 128_000),
        ("llama-3.2", 128_000),
        ("llama-3.3", 128_000),
        ("llama3.1", 128_000),
        ("llama3.2", 128_000),
        ("llama3.3", 128_000),
        ("qwen2.5", 32_768),
        ("qwen3", 32_768),
        ("qwen-max", 32_768),
        ("qwen-plus", 131_072),
        ("qwen-turbo", 1_000_000),
        ("mistral-large", 128_000),
        ("mistral-small", 32_000),
        ("glm-4", 128_000),
        ("grok", 131_072),
    ];
    TABLE
        .iter()
        .find(|(p, _)| lower.contains(p))
        .map_or(0, |(_, t)| *t)
}

/// True for embedding / rerank models.
pub(crate) fn is_embedding(id: &str) -> bool {
    let lower = id.to_ascii_lowercase();
    ["embed", "bge-", "/e5-", "rerank"]
        .iter()
        .any(|p| lower.contains(p))
        || lower.starts_with("e5-")
}

/// True when the id suggests image input.
pub(crate) fn has_vision(id: &str) -> bool {
    let lower = id.to_ascii_lowercase();
    const PATTERNS: &[&str] = &[
        "vision",
        "-vl",
        "vl-",
        "llava",
        "pixtral",
        "gpt-4o",
        "gpt-4.1",
        "gpt-4-turbo",
        "gpt-5",
        "o3",
        "o4-mini",
        "claude-3",
        "claude-sonnet-4",
        "claude-opus-4",
        "claude-4",
        "gemini",
        "qvq",
        "minicpm-v",
        "internvl",
        "glm-4v",
    ];
    // Text-only members of otherwise multimodal families.
    const TEXT_ONLY: &[&str] = &["o3-mini", "o1-mini", "claude-3-5-haiku", "claude-3.5-haiku"];
    !is_embedding(id)
        && !TEXT_ONLY.iter().any(|p| lower.contains(p))
        && PATTERNS.iter().any(|p| lower.contains(p))
}

/// True when the id suggests tool calling (and JSON mode) works.
pub(crate) fn has_tools(id: &str) -> bool {
    let lower = id.to_ascii_lowercase();
    const LACKING: &[&str] = &[
        "o1-mini",
        "o1-preview",
        "deepseek-reasoner",
        "gemma",
        "-base",
        "instruct-base",
        "text-davinci",
        "babbage",
        "davinci-002",
    ];
    !is_embedding(id) && !LACKING.iter().any(|p| lower.contains(p))
}

/// Quality prior by family: first match wins (more specific patterns first).
pub(crate) const QUALITY: &[(&str, f32)] = &[
    ("gpt-4o-mini", 0.78),
    ("gpt-4.1-nano", 0.72),
    ("gpt-4.1-mini", 0.82),
    ("gpt-5-nano", 0.80),
    ("gpt-5-mini", 0.88),
    ("gpt-5", 0.96),
    ("o4-mini", 0.90),
    ("o3-mini", 0.88),
    ("o3", 0.95),
    ("o1", 0.92),
    ("gpt-4.1", 0.90),
    ("gpt-4o", 0.88),
    ("gpt-4", 0.85),
    ("gpt-3.5", 0.70),
    ("claude-opus-4", 0.96),
    ("claude-sonnet-4", 0.94),
    ("claude-3-7-sonnet", 0.92),
    ("claude-3.7-sonnet", 0.92),
    ("claude-3-5-sonnet", 0.90),
    ("claude-3.5-sonnet", 0.90),
    ("claude-3-opus", 0.88),
    ("haiku", 0.75),
    ("claude", 0.85),
    ("gemini-2.5-pro", 0.94),
    ("gemini-2.5-flash", 0.86),
    ("gemini-2.0-flash", 0.80),
    ("gemini-1.5-pro", 0.84),
    ("gemini-1.5-flash", 0.72),
    ("gemini", 0.78),
    ("deepseek-r1", 0.90),
    ("deepseek-reasoner", 0.90),
    ("deepseek-v3", 0.87),
    ("deepseek-chat", 0.87),
    ("qwen3-235b", 0.88),
    ("qwen-max", 0.85),
    ("qwen3", 0.78),
    ("qwen2.5-72b", 0.80),
    ("qwen-plus", 0.80),
    ("qwen", 0.70),
    ("llama-3.1-405b", 0.84),
    ("llama-3.3-70b", 0.80),
    ("llama-3.1-70b", 0.78),
    ("70b", 0.76),
    ("llama", 0.65),
    ("mistral-large", 0.82),
    ("grok-3", 0.88),
    ("grok", 0.80),
    ("glm-4", 0.72),
    ("moonshot", 0.72),
    ("8b", 0.58),
    ("7b", 0.56),
];

/// Quality prior for an id.
pub(crate) fn quality(id: &str) -> f32 {
    let lower = id.to_ascii_lowercase();
    QUALITY
        .iter()
        .find(|(p, _)| lower.contains(p))
        .map_or(0.6, |(_, q)| *q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_heuristics() {
        assert_eq!(params_millions("Qwen/Qwen2.5-72B-Instruct"), 72_000);
        assert_eq!(params_millions("qwen/qwen3-30b-a3b:free"), 30_000);
        assert_eq!(params_millions("Qwen2.5-1.5B"), 1_500);
        assert_eq!(params_millions("mixtral-8x7b"), 56_000);
        assert_eq!(params_millions("smollm-360m"), 360);
        assert_eq!(params_millions("gpt-4o-mini"), 8_000);
        assert_eq!(params_millions("my-model"), 0);
        assert_eq!(
            params_millions("moonshot-v1-8k"),
            0,
            "8k is a context, not a size"
        );
    }

    #[test]
    fn context_heuristics() {
        assert_eq!(context_tokens("moonshot-v1-128k"), 128_000);
        assert_eq!(context_tokens("doubao-1.5-pro-256k"), 256_000);
        assert_eq!(context_tokens("gpt-4o-mini"), 128_000);
        assert_eq!(context_tokens("claude-3-5-sonnet-20241022"), 200_000);
        assert_eq!(context_tokens("unknown"), 0);
        assert_eq!(context_tokens("minimax-text-01-1m"), 1_000_000);
    }

    #[test]
    fn capability_heuristics() {
        assert!(has_vision("gpt-4o") && has_vision("Qwen/Qwen2-VL-72B") && has_vision("llava:13b"));
        assert!(!has_vision("gpt-3.5-turbo") && !has_vision("text-embedding-3-small"));
        assert!(has_vision("o3") && !has_vision("o3-mini"));
        assert!(is_embedding("text-embedding-3-small") && is_embedding("BAAI/bge-m3"));
        assert!(has_tools("gpt-4o-mini") && !has_tools("deepseek-reasoner"));
        assert!(!has_tools("text-embedding-3-small"));
        assert_eq!(quality("gpt-4o-mini"), 0.78);
        assert_eq!(quality("gpt-4o"), 0.88);
        assert_eq!(quality("zzz"), 0.6);
    }
}
