//! How requests are ranked: `[routing]` (attempts, ties, cooldowns), the user's weight vectors
//! `[strategies.NAME]`, and the `[groups."auto:NAME"]` a model expression can name.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Checker, raw};
use crate::config::{
    CooldownPolicy, GroupConfig, PanicPolicy, RoutingConfig, StrategyConfig, closest, defaults,
};

/// `[strategies.NAME]`: user-defined weights (a built-in's name cannot be reused).
pub(super) fn strategies(
    c: &mut Checker,
    raw: BTreeMap<String, raw::Strategy>,
) -> Vec<StrategyConfig> {
    let mut strategies = Vec::new();
    for (name, st) in raw {
        let at = |k: &str| format!("strategies.{name}.{k}");
        if crate::strategy::builtin(&name).is_some() {
            c.err(
                format!("strategies.{name}"),
                "this name is a built-in strategy; choose another name for your weights",
            );
        }
        let mut weight = |key: &str, v: Option<f64>| -> f32 {
            match v {
                None => 0.0,
                Some(x) if x.is_finite() && x >= 0.0 => x as f32,
                Some(x) => {
                    c.err(
                        at(key),
                        format!("weights are non-negative numbers, got {x}"),
                    );
                    0.0
                }
            }
        };
        let weights = crate::strategy::Weights {
            cost: weight("cost", st.cost),
            speed: weight("speed", st.speed),
            quality: weight("quality", st.quality),
            reliability: weight("reliability", st.reliability),
            context: weight("context", st.context),
            parameters: weight("parameters", st.parameters),
            free: weight("free", st.free),
            local: weight("local", st.local),
        };
        if weights.sum() <= 0.0 {
            c.err(
                format!("strategies.{name}"),
                "give at least one positive weight (cost, speed, quality, reliability, context, parameters, free, local)",
            );
        }
        strategies.push(StrategyConfig { name, weights });
    }
    strategies
}

/// Why `name` is not a strategy (built-in or of `strategies`), with the closest known name;
/// `None` when it is one.
fn unknown_strategy(name: &str, strategies: &[StrategyConfig]) -> Option<String> {
    if crate::strategy::builtin(name).is_some() || strategies.iter().any(|s| s.name == name) {
        return None;
    }
    let mut known: Vec<&str> = crate::strategy::BUILTIN.iter().map(|(n, _)| *n).collect();
    known.extend(strategies.iter().map(|s| s.name.as_str()));
    Some(match closest(name, &known) {
        Some(k) => format!("unknown strategy \"{name}\"; did you mean \"{k}\"?"),
        None => format!("unknown strategy \"{name}\"; known: {}", known.join(", ")),
    })
}

/// `[routing]`.
pub(super) fn routing(
    c: &mut Checker,
    r: raw::Routing,
    strategies: &[StrategyConfig],
) -> RoutingConfig {
    let default_strategy = r
        .default_strategy
        .unwrap_or_else(|| defaults::DEFAULT_STRATEGY.to_string());
    if let Some(m) = unknown_strategy(&default_strategy, strategies) {
        c.err("routing.default_strategy", m);
    }
    let tie_epsilon = match r.tie_epsilon {
        None => defaults::TIE_EPSILON,
        Some(e) if (0.0..=1.0).contains(&e) => e as f32,
        Some(e) => {
            c.err(
                "routing.tie_epsilon",
                format!("must be between 0 and 1, got {e}"),
            );
            defaults::TIE_EPSILON
        }
    };
    let ms = Duration::from_millis(1);
    let cooldown = CooldownPolicy {
        base: c.duration(
            "routing.cooldown_base",
            r.cooldown_base,
            defaults::COOLDOWN_BASE,
            ms,
        ),
        max: c.duration(
            "routing.cooldown_max",
            r.cooldown_max,
            defaults::COOLDOWN_MAX,
            ms,
        ),
        retry_after_max: c.duration(
            "routing.retry_after_max",
            r.retry_after_max,
            defaults::RETRY_AFTER_MAX,
            ms,
        ),
        auth: c.duration(
            "routing.auth_cooldown",
            r.auth_cooldown,
            defaults::AUTH_COOLDOWN,
            ms,
        ),
        model_missing: c.duration(
            "routing.model_missing_cooldown",
            r.model_missing_cooldown,
            defaults::MODEL_MISSING_COOLDOWN,
            ms,
        ),
    };
    RoutingConfig {
        max_attempts: c.int(
            "routing.max_attempts",
            r.max_attempts,
            defaults::MAX_ATTEMPTS,
            1,
            20,
        ),
        default_strategy,
        tie_epsilon,
        cooldown,
        panic: PanicPolicy {
            enabled: r.panic_routing.unwrap_or(defaults::PANIC_ROUTING),
            max_in_flight: c.int(
                "routing.panic_max_in_flight",
                r.panic_max_in_flight,
                defaults::PANIC_MAX_IN_FLIGHT,
                1,
                1000,
            ) as u32,
            wait: c.duration(
                "routing.panic_wait",
                r.panic_wait,
                defaults::PANIC_WAIT,
                Duration::ZERO,
            ),
        },
        same_channel_retries: c.int(
            "routing.same_channel_retries",
            r.same_channel_retries,
            defaults::SAME_CHANNEL_RETRIES,
            0,
            5,
        ),
        retry_backoff: c.duration(
            "routing.retry_backoff",
            r.retry_backoff,
            defaults::RETRY_BACKOFF,
            Duration::ZERO,
        ),
        context_margin: match r.context_margin {
            None => defaults::CONTEXT_MARGIN,
            Some(m) if (0.0..=10.0).contains(&m) => m as f32,
            Some(m) => {
                c.err(
                    "routing.context_margin",
                    format!("must be a fraction between 0 and 10 (0.1 = 10 %), got {m}"),
                );
                defaults::CONTEXT_MARGIN
            }
        },
    }
}

/// `[groups."auto:NAME"]`.
pub(super) fn groups(
    c: &mut Checker,
    raw: BTreeMap<String, raw::Group>,
    strategies: &[StrategyConfig],
) -> Vec<GroupConfig> {
    let mut groups = Vec::new();
    for (name, g) in raw {
        let at = |k: &str| format!("groups.\"{name}\".{k}");
        if !name.to_ascii_lowercase().starts_with("auto:") || name.len() <= 5 {
            c.err(
                format!("groups.\"{name}\""),
                "group names start with `auto:`, e.g. [groups.\"auto:fast\"]",
            );
        }
        let Some(query) = g.query else {
            c.err(
                at("query"),
                "required key is missing; give the model expression the group stands for",
            );
            continue;
        };
        match crate::expr::parse(&query) {
            Err(e) => c.err(at("query"), e),
            Ok(crate::expr::Expr::Group(_)) => {
                c.err(at("query"), "a group's query cannot be another group")
            }
            Ok(_) => {}
        }
        if let Some(s) = &g.strategy
            && let Some(m) = unknown_strategy(s, strategies)
        {
            c.err(at("strategy"), m);
        }
        let mut options = crate::strategy::Options::default();
        if let Some(caps) = &g.required_capabilities {
            for (i, cap) in caps.iter().enumerate() {
                match crate::expr::Caps::parse(cap) {
                    Some(x) => options.required = options.required.union(x),
                    None => c.err(
                        format!("groups.\"{name}\".required_capabilities[{i}]"),
                        format!("\"{cap}\" is not a capability; use vision, tools or json"),
                    ),
                }
            }
        }
        if let Some(m) = g.max_cost_per_1k {
            if m.is_finite() && m >= 0.0 {
                options.max_cost_per_1k = Some(m);
            } else {
                c.err(
                    at("max_cost_per_1k"),
                    format!("must be a non-negative number, got {m}"),
                );
            }
        }
        options.prefer_local = g.prefer_local;
        options.exclude_providers = g.exclude_providers.unwrap_or_default();
        groups.push(GroupConfig {
            name,
            query,
            strategy: g.strategy,
            options,
        });
    }

    groups
}
