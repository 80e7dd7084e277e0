//! Sub-scores in [0, 1] (higher is better) and the strategies that weigh them.
//!
//! | score | from |
//! |---|---|
//! | cost | estimated USD for this request: `1 / (1 + cost / $0.001)`; free = 1; unknown price = 0.5 |
//! | speed | live EWMA time to first token (streams) or latency: `1 / (1 + ms / 1000)`; prior 0.5 |
//! | quality | built-in family table, overridden by `model_info.quality` |
//! | reliability | live success EWMA; prior 1.0 |
//! | context | `log2(context / 4k) / log2(2M / 4k)`, clamped; unknown 0.5 |
//! | parameters | `log10(params / 100M) / log10(2T / 100M)`, clamped; unknown 0.5 |
//! | free, local | 1 or 0 |
//!
//! The total is the weighted mean `Σ wᵢ·sᵢ / Σ wᵢ`. Strategies are weight vectors: the built-in
//! ones below and `[strategies.NAME]` from config.
//!
//! Also the router options a request or a group sets ([`Options`]): filters beside the weights.
//!
//! Invariants: pure arithmetic on plain data, no allocation, no clock.

/// Router options: from the request (body fields or `x-router-*` headers) or a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Capabilities every candidate must have.
    pub required: crate::expr::Caps,
    /// Price cap per 1K tokens in USD (entry prices are kept in USD whatever `[pricing]
    /// currency` reports in), compared with the larger of input and output price.
    pub max_cost_per_1k: Option<f64>,
    /// Prefer local endpoints.
    pub prefer_local: Option<bool>,
    /// Provider ids (or kinds) never to use.
    pub exclude_providers: Vec<String>,
}

/// Sub-score weights.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Weights {
    /// Estimated cost of this request.
    pub cost: f32,
    /// Live latency / time to first token.
    pub speed: f32,
    /// Model quality.
    pub quality: f32,
    /// Live success rate.
    pub reliability: f32,
    /// Context length.
    pub context: f32,
    /// Parameter count.
    pub parameters: f32,
    /// Free models.
    pub free: f32,
    /// Local (loopback/LAN) endpoints.
    pub local: f32,
}

#[allow(clippy::too_many_arguments)] // one positional slot per sub-score keeps the table readable
const fn w(
    cost: f32,
    speed: f32,
    quality: f32,
    reliability: f32,
    context: f32,
    parameters: f32,
    free: f32,
    local: f32,
) -> Weights {
    Weights {
        cost,
        speed,
        quality,
        reliability,
        context,
        parameters,
        free,
        local,
    }
}

/// The built-in strategies.
pub(crate) const BUILTIN: &[(&str, Weights)] = &[
    ("balanced", w(0.30, 0.20, 0.20, 0.20, 0.05, 0.05, 0.0, 0.0)),
    ("cost_first", w(0.60, 0.10, 0.10, 0.20, 0.0, 0.0, 0.0, 0.0)),
    ("free_first", w(0.20, 0.10, 0.05, 0.15, 0.0, 0.0, 0.50, 0.0)),
    (
        "local_first",
        w(0.10, 0.15, 0.05, 0.20, 0.0, 0.0, 0.0, 0.50),
    ),
    ("speed_first", w(0.10, 0.60, 0.10, 0.20, 0.0, 0.0, 0.0, 0.0)),
    (
        "quality_first",
        w(0.05, 0.05, 0.50, 0.15, 0.10, 0.15, 0.0, 0.0),
    ),
];

/// A built-in strategy by name.
pub(crate) fn builtin(name: &str) -> Option<Weights> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}

impl Weights {
    /// Sum of the weights.
    pub fn sum(&self) -> f32 {
        self.cost
            + self.speed
            + self.quality
            + self.reliability
            + self.context
            + self.parameters
            + self.free
            + self.local
    }

    /// The same weights with local models preferred: the local weight becomes as large as all
    /// the others together.
    pub fn preferring_local(mut self) -> Weights {
        let others = self.sum() - self.local;
        self.local = self.local.max(others.max(1.0));
        self
    }

    /// Weighted mean of `s`.
    pub fn total(&self, s: &SubScores) -> f32 {
        let sum = self.sum();
        if sum <= 0.0 {
            return 0.0;
        }
        (self.cost * s.cost
            + self.speed * s.speed
            + self.quality * s.quality
            + self.reliability * s.reliability
            + self.context * s.context
            + self.parameters * s.parameters
            + self.free * s.free
            + self.local * s.local)
            / sum
    }
}

/// One candidate's sub-scores.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SubScores {
    /// See the module table.
    pub cost: f32,
    /// See the module table.
    pub speed: f32,
    /// See the module table.
    pub quality: f32,
    /// See the module table.
    pub reliability: f32,
    /// See the module table.
    pub context: f32,
    /// See the module table.
    pub parameters: f32,
    /// See the module table.
    pub free: f32,
    /// See the module table.
    pub local: f32,
}

/// The reference request cost for the cost score: a request costing this much scores 0.5.
pub(crate) const COST_REFERENCE_USD: f64 = 0.001;

/// Cost score from an estimated cost in USD (`None`: price unknown).
pub(crate) fn cost_score(usd: Option<f64>) -> f32 {
    match usd {
        None => 0.5,
        Some(c) if c <= 0.0 => 1.0,
        Some(c) => (1.0 / (1.0 + c / COST_REFERENCE_USD)) as f32,
    }
}

/// Speed score from a live latency or TTFT in milliseconds (`None`: no data yet).
pub(crate) fn speed_score(ms: Option<f32>) -> f32 {
    match ms {
        None => 0.5,
        Some(ms) => 1.0 / (1.0 + ms.max(0.0) / 1000.0),
    }
}

/// Context score from a context length in tokens (0: unknown).
pub(crate) fn context_score(tokens: u32) -> f32 {
    if tokens == 0 {
        return 0.5;
    }
    let x = ((tokens as f32) / 4096.0).log2() / (2_000_000.0f32 / 4096.0).log2();
    x.clamp(0.0, 1.0)
}

/// Parameter score from millions of parameters (0: unknown).
pub(crate) fn parameter_score(millions: u32) -> f32 {
    if millions == 0 {
        return 0.5;
    }
    let x = ((millions as f32) / 100.0).log10() / (2_000_000.0f32 / 100.0).log10();
    x.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_strategies_are_normalised_and_distinct() {
        for (name, w) in BUILTIN {
            assert!((w.sum() - 1.0).abs() < 1e-4, "{name}: {}", w.sum());
        }
        assert_ne!(builtin("cost_first"), builtin("speed_first"));
        assert!(builtin("nope").is_none());
    }

    #[test]
    fn scores_are_monotonic_and_bounded() {
        assert_eq!(cost_score(Some(0.0)), 1.0);
        assert!(cost_score(Some(0.0001)) > cost_score(Some(0.01)));
        assert_eq!(cost_score(None), 0.5);
        assert!(speed_score(Some(100.0)) > speed_score(Some(2000.0)));
        assert!(context_score(1_000_000) > context_score(8_000));
        assert_eq!(context_score(1), 0.0);
        assert_eq!(context_score(100_000_000), 1.0);
        assert!(parameter_score(70_000) > parameter_score(8_000));
    }

    #[test]
    fn total_is_a_weighted_mean() {
        let w = Weights {
            cost: 1.0,
            speed: 3.0,
            ..Default::default()
        };
        let s = SubScores {
            cost: 1.0,
            speed: 0.0,
            ..Default::default()
        };
        assert!((w.total(&s) - 0.25).abs() < 1e-6);
        let local = Weights::default().preferring_local();
        assert!(local.local > 0.0);
    }
}
