//! `routing:` → `[routing]` and `[strategies.NAME]` (the original's `sorting_strategies`,
//! which it ignored), and `tasks:` → `[discovery]`.

use yaml_rust2::Yaml;

use super::Importer;
use super::render::{toml_float, toml_str, toml_text};
use super::yaml::{as_bool, as_int, describe, key, key_text, number, text};

impl Importer {
    pub(super) fn routing(&mut self, v: &Yaml) {
        let Some(h) = self.mapping("routing", v) else {
            return;
        };
        // Strategies first: default_strategy may name one.
        let mut imported: Vec<(String, String)> = Vec::new();
        if let Some(s) = h.get(&key("sorting_strategies")) {
            imported = self.sorting_strategies(s);
        }
        let no_fallback = h.get(&key("enable_fallback")).and_then(as_bool) == Some(false);
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("routing.{k}");
            match k.as_str() {
                "sorting_strategies" => {}
                "default_strategy" => {
                    let Some(name) = text(val) else {
                        self.note(&at, "not a strategy name; dropped");
                        continue;
                    };
                    let (ours, why) = if let Some((_, new)) = imported.iter().find(|(o, _)| *o == name) {
                        (new.clone(), Some(format!("your sorting_strategies.{name} weights")))
                    } else {
                        match name.as_str() {
                            "balanced" | "cost_first" | "free_first" | "local_first" => {
                                (name.clone(), None)
                            }
                            "speed_optimized" => ("speed_first".to_string(), Some("the built-in equivalent".to_string())),
                            "quality_optimized" => ("quality_first".to_string(), Some("the built-in equivalent".to_string())),
                            "cost_optimized" => {
                                if !self.strategies.iter().any(|(n, _)| n == "cost_optimized") {
                                    // The original's weights for it: cost .7, reliability .2, speed .1.
                                    self.strategies.push((
                                        "cost_optimized".to_string(),
                                        vec![("cost", 0.7), ("speed", 0.1), ("reliability", 0.2)],
                                    ));
                                }
                                ("cost_optimized".to_string(), Some("[strategies.cost_optimized] with the original's weights".to_string()))
                            }
                            _ => ("cost_first".to_string(), Some("the original's fallback for unknown names".to_string())),
                        }
                    };
                    self.routing.push(format!("default_strategy = {}", toml_text(&ours)));
                    if let Some(why) = why {
                        self.note(&at, format!("\"{name}\" → \"{ours}\" ({why})"));
                    }
                }
                "enable_fallback" => {
                    if no_fallback {
                        self.routing.push("max_attempts = 1".to_string());
                        self.note(
                            &at,
                            "false → max_attempts = 1, now honoured (the original always failed over)",
                        );
                    }
                }
                "max_retry_attempts" => {
                    if no_fallback {
                        self.note(&at, "dropped: enable_fallback is false (max_attempts = 1)");
                        continue;
                    }
                    match as_int(val) {
                        Some(n) if n >= 1 => {
                            let n = n.min(20);
                            self.routing.push(format!("max_attempts = {n}"));
                            self.note(
                                &at,
                                format!("→ max_attempts = {n}, now honoured (the original tried every candidate)"),
                            );
                        }
                        _ => self.note(&at, "not a positive integer; dropped"),
                    }
                }
                "health_check_interval" => self.note(
                    &at,
                    "dropped: health probes run per [health] interval (the original ignored this key)",
                ),
                "error_cooldown_period" => self.note(
                    &at,
                    "dropped: failures back off per [routing] cooldown_base/cooldown_max and Retry-After (the original ignored this key)",
                ),
                "model_filters" => self.note(
                    &at,
                    "dropped: embedding models are never routed to chat; context and size filters go in the model expression (e.g. tag:qwen,>=30b) or an [groups.\"auto:NAME\"] query",
                ),
                "error_handling" => self.note(
                    &at,
                    "dropped: how each upstream status is handled is fixed (429 waits Retry-After, 401/403 take the channel out, 5xx back off)",
                ),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    /// `sorting_strategies: {name: [{field, weight, order}]}` → `[strategies.NAME]`; returns
    /// (original name, our name) for each imported one. Names of our built-ins get a suffix:
    /// the validator keeps built-in weights fixed.
    fn sorting_strategies(&mut self, v: &Yaml) -> Vec<(String, String)> {
        let at = "routing.sorting_strategies";
        let Some(h) = self.mapping(at, v) else {
            return Vec::new();
        };
        let mut imported = Vec::new();
        for (k, list) in h {
            let name = key_text(k);
            let path = format!("{at}.{name}");
            let Some(items) = list.as_vec() else {
                self.note(&path, format!("is {}, not a list; dropped", describe(list)));
                continue;
            };
            let mut weights: Vec<(&'static str, f64)> = Vec::new();
            for (j, item) in items.iter().enumerate() {
                let item_at = format!("{path}[{j}]");
                let field = item
                    .as_hash()
                    .and_then(|h| h.get(&key("field")))
                    .and_then(text);
                let weight = item
                    .as_hash()
                    .and_then(|h| h.get(&key("weight")))
                    .and_then(number);
                let order = item
                    .as_hash()
                    .and_then(|h| h.get(&key("order")))
                    .and_then(text)
                    .unwrap_or_else(|| "desc".to_string());
                let ours = field.as_deref().and_then(score_name);
                match (ours, weight) {
                    (Some(_), _) if !order.eq_ignore_ascii_case("desc") => self.note(
                        &item_at,
                        format!("order \"{order}\" dropped: sub-scores only count higher as better"),
                    ),
                    (Some(f), Some(w)) if w.is_finite() && w >= 0.0 => {
                        match weights.iter_mut().find(|(n, _)| *n == f) {
                            Some((_, total)) => *total += w,
                            None => weights.push((f, w)),
                        }
                    }
                    (Some(_), _) => self.note(&item_at, "weight is not a non-negative number; dropped"),
                    (None, _) => self.note(
                        &item_at,
                        format!(
                            "field {:?} is not a sub-score (cost, speed, quality, reliability, context, parameter, free, local); dropped",
                            field.unwrap_or_default()
                        ),
                    ),
                }
            }
            if weights.iter().all(|(_, w)| *w <= 0.0) {
                self.note(&path, "no positive weight left; dropped");
                continue;
            }
            let mut ours = if crate::strategy::builtin(&name).is_some() {
                format!("{name}_imported")
            } else {
                name.clone()
            };
            while self.strategies.iter().any(|(n, _)| *n == ours) {
                ours.push('_');
            }
            weights.sort_by_key(|(f, _)| SCORE_ORDER.iter().position(|s| s == f));
            self.strategies.push((ours.clone(), weights));
            self.note(
                &path,
                format!(
                    "→ [strategies.{ours}], now honoured (the original ignored custom strategies)"
                ),
            );
            imported.push((name, ours));
        }
        imported
    }

    pub(super) fn tasks(&mut self, v: &Yaml) {
        let Some(h) = self.mapping("tasks", v) else {
            return;
        };
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("tasks.{k}");
            match k.as_str() {
                "model_discovery" => self.discovery_task(&at, val),
                "health_check" => self.note(
                    &at,
                    "dropped: channels out of rotation are probed per [health] interval",
                ),
                "api_key_validation" => self.note(
                    &at,
                    "dropped: a 401/403 takes the channel out until a probe passes",
                ),
                "pricing_discovery" | "siliconflow_pricing" | "doubao_pricing" => self.note(
                    &at,
                    "dropped: prices come from the config and from provider model lists",
                ),
                "cache_cleanup" | "stats_report" => self.note(&at, "dropped: no such job here"),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    fn discovery_task(&mut self, at: &str, v: &Yaml) {
        let Some(h) = self.mapping(at, v) else {
            return;
        };
        let disabled = h.get(&key("enabled")).and_then(as_bool) == Some(false);
        for (k, val) in h {
            let k = key_text(k);
            let path = format!("{at}.{k}");
            match k.as_str() {
                "enabled" => {
                    if !disabled {
                        continue;
                    }
                    let bare: Vec<&str> = self
                        .channels
                        .iter()
                        .filter(|c| c.models.is_empty() && c.aliases.is_empty())
                        .map(|c| c.id.as_str())
                        .collect();
                    if bare.is_empty() {
                        self.discovery.push("enabled = false".to_string());
                        self.note(&path, "false → [discovery] enabled = false, now honoured");
                    } else {
                        let list = bare.join(", ");
                        self.note(
                            &path,
                            format!("false not carried over: channels {list} list no models, so discovery stays on"),
                        );
                    }
                }
                "interval_hours" | "interval_minutes" => match number(val) {
                    Some(n) if n.is_finite() && n > 0.0 => {
                        let unit = if k == "interval_hours" { "h" } else { "m" };
                        let value = format!("{}{unit}", toml_float(n).trim_end_matches(".0"));
                        self.discovery.retain(|l| !l.starts_with("interval"));
                        self.discovery
                            .push(format!("interval = {}", toml_str(&value)));
                        self.note(
                            &path,
                            format!("→ [discovery] interval = \"{value}\", now honoured"),
                        );
                    }
                    _ => self.note(&path, "not a positive number; dropped"),
                },
                "run_on_startup" => {
                    if as_bool(val) == Some(false) && !disabled {
                        self.note(&path, "dropped: discovery always runs at start");
                    }
                }
                _ => self.note(&path, "not supported, dropped"),
            }
        }
    }
}

/// Sub-score names in the order `[strategies.*]` lists them.
const SCORE_ORDER: &[&str] = &[
    "cost",
    "speed",
    "quality",
    "reliability",
    "context",
    "parameters",
    "free",
    "local",
];

/// The original's `cost_score`, `parameter_score`, … → our sub-score name.
fn score_name(field: &str) -> Option<&'static str> {
    let f = field.trim().to_ascii_lowercase();
    let f = f.strip_suffix("_score").unwrap_or(&f);
    match f {
        "parameter" | "parameters" | "params" => Some("parameters"),
        other => SCORE_ORDER.iter().find(|s| **s == other).copied(),
    }
}
