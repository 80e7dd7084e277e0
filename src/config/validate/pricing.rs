//! Money: `[pricing]` (reporting currency, rates per USD, the daily budget) and the price tables
//! of channels and models, whose currencies must have a rate.

use super::{Checker, raw};
use crate::config::{ChannelConfig, Price, PricingConfig, defaults};

/// `[pricing]`: the reporting currency, its rates (or the older `fx`), the daily budget.
pub(super) fn pricing(c: &mut Checker, p: raw::Pricing) -> PricingConfig {
    let currency = p
        .currency
        .unwrap_or_else(|| defaults::CURRENCY.to_string())
        .to_ascii_uppercase();
    let currency_ok = valid_currency(&currency);
    if !currency_ok {
        c.err(
            "pricing.currency",
            format!("\"{currency}\" is not a currency code like \"USD\""),
        );
    }
    let mut rates: Vec<(String, f64)> = vec![("USD".to_string(), 1.0)];
    let mut add = |c: &mut Checker, path: String, code: &str, rate: f64| {
        if rates.iter().any(|(k, _)| k.eq_ignore_ascii_case(code)) {
            c.err(path, format!("{code} is given twice"));
        } else {
            rates.push((code.to_ascii_uppercase(), rate));
        }
    };
    // A rate is a positive finite number under a currency code.
    let checked = |c: &mut Checker, path: &str, code: &str, rate: f64| -> bool {
        if !valid_currency(code) {
            c.err(path, "not a currency code like \"CNY\"");
            false
        } else if !(rate.is_finite() && rate > 0.0) {
            c.err(path, format!("rates are positive numbers, got {rate}"));
            false
        } else {
            true
        }
    };
    if p.rates.is_some() && p.fx.is_some() {
        c.err(
            "pricing.fx",
            "give either rates (units per USD) or fx (the older spelling, value in `currency`), not both",
        );
    }
    for (code, rate) in p.rates.unwrap_or_default() {
        let path = format!("pricing.rates.{code}");
        if !checked(c, &path, &code, rate) {
            continue;
        }
        if code.eq_ignore_ascii_case("USD") {
            // USD is the base every rate is counted in.
            if rate != 1.0 {
                c.err(
                    path,
                    format!("rates are units per USD, so USD is 1, got {rate}"),
                );
            }
            continue;
        }
        add(c, path, &code, rate);
    }
    if let Some(fx) = p.fx {
        // Backwards compatibility: `fx` says what one unit of each currency is worth in
        // `currency`. Rates per USD follow once `currency` itself has a USD rate: 1 when it is
        // USD, else fx's USD entry.
        let mut valid: Vec<(String, f64)> = Vec::new();
        for (code, rate) in fx {
            let path = format!("pricing.fx.{code}");
            if !checked(c, &path, &code, rate) {
                continue;
            }
            if code.eq_ignore_ascii_case(&currency) {
                if rate != 1.0 {
                    c.err(
                        path,
                        format!("{code} is `currency`: it is worth 1 of itself, got {rate}"),
                    );
                }
                continue;
            }
            valid.push((code, rate));
        }
        let own = if currency == "USD" {
            Some(1.0)
        } else {
            valid
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("USD"))
                .map(|(_, r)| *r)
        };
        match own {
            Some(own) => {
                for (code, worth) in valid {
                    if code.eq_ignore_ascii_case("USD") {
                        add(c, "pricing.fx.USD".into(), &currency, own);
                    } else {
                        add(c, format!("pricing.fx.{code}"), &code, own / worth);
                    }
                }
            }
            None if currency_ok => c.err(
                "pricing.fx",
                format!("fx needs a USD entry to relate {currency} to USD, e.g. fx = {{ USD = 7.1 }}, or use rates = {{ {currency} = 7.1 }}"),
            ),
            None => {}
        }
    }
    if currency_ok && !rates.iter().any(|(k, _)| *k == currency) {
        c.err(
            "pricing.currency",
            format!(
                "{currency} needs a rate: list and discovered prices are USD, so add [pricing] rates = {{ {currency} = <{currency} per USD> }}"
            ),
        );
    }
    let daily_budget = match p.daily_budget {
        Some(b) if b.is_finite() && b >= 0.0 => Some(b),
        Some(b) => {
            c.err(
                "pricing.daily_budget",
                format!("a non-negative amount in {currency} per day, got {b}"),
            );
            None
        }
        None => None,
    };
    PricingConfig {
        currency,
        rates,
        daily_budget,
    }
}

/// A currency code: 3 or 4 ASCII letters.
fn valid_currency(code: &str) -> bool {
    (3..=4).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphabetic())
}

/// A price table (`pricing = { input, output, … }`) at `path`, per 1M tokens.
pub(super) fn price(c: &mut Checker, path: &str, p: raw::Price) -> Option<Price> {
    let before = c.problems.len();
    let mut num = |k: &str, v: Option<f64>| -> Option<f64> {
        match v {
            Some(x) if x.is_finite() && x >= 0.0 => Some(x),
            Some(x) => {
                c.err(
                    format!("{path}.{k}"),
                    format!("prices are non-negative numbers per 1M tokens, got {x}"),
                );
                None
            }
            None => None,
        }
    };
    let input = num("input", p.input);
    let output = num("output", p.output);
    let cached = num("cached", p.cached);
    let cache_write = num("cache_write", p.cache_write);
    let (Some(input), Some(output)) = (input, output) else {
        if c.problems.len() == before {
            c.err(path, "give both input and output prices per 1M tokens, e.g. { input = 0.15, output = 0.6 }");
        }
        return None;
    };
    let currency = p
        .currency
        .unwrap_or_else(|| defaults::CURRENCY.to_string())
        .to_ascii_uppercase();
    if !valid_currency(&currency) {
        c.err(
            format!("{path}.currency"),
            format!("\"{currency}\" is not a currency code like \"USD\""),
        );
        return None;
    }
    Some(Price {
        input,
        output,
        cached,
        cache_write,
        currency,
    })
}

/// Every channel and model price is in a currency `[pricing]` has a rate for.
pub(super) fn check_channel_currencies(
    c: &mut Checker,
    channels: &[ChannelConfig],
    pricing: &PricingConfig,
) {
    for (i, ch) in channels.iter().enumerate() {
        let prices = ch
            .pricing
            .iter()
            .map(|p| (format!("channels[{i}].pricing"), p))
            .chain(ch.model_info.iter().filter_map(|(m, info)| {
                info.pricing
                    .as_ref()
                    .map(|p| (format!("channels[{i}].model_info.\"{m}\".pricing"), p))
            }));
        for (path, p) in prices {
            if pricing.rate(&p.currency).is_none() {
                c.err(
                    format!("{path}.currency"),
                    format!(
                        "no rate for \"{}\"; add it to [pricing] rates (units per USD), e.g. rates = {{ {} = 7.1 }}",
                        p.currency, p.currency
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{MINIMAL, env, problems};
    use crate::config::{Config, PricingConfig, Problem};

    fn pricing(table: &str) -> Result<PricingConfig, Vec<Problem>> {
        let text = format!("{MINIMAL}\n[pricing]\n{table}\n");
        Config::parse(&text, &env(&[]))
            .map(|c| c.pricing)
            .map_err(|e| e.problems)
    }

    #[test]
    fn pricing_rates_budget_and_the_older_fx_spelling() {
        let p = pricing("").unwrap();
        assert_eq!(
            (p.currency.as_str(), p.rates.clone(), p.daily_budget),
            ("USD", vec![("USD".to_string(), 1.0)], None)
        );
        let p = pricing("currency = \"cny\"\nrates = { CNY = 7.1, eur = 0.92 }\ndaily_budget = 50")
            .unwrap();
        assert_eq!(p.currency, "CNY");
        assert_eq!(p.rate("cny"), Some(7.1));
        assert_eq!(p.rate("EUR"), Some(0.92));
        assert_eq!(p.rate("USD"), Some(1.0));
        assert_eq!(p.rate("GBP"), None);
        assert_eq!(p.daily_budget, Some(50.0));
        assert!((p.daily_budget_usd().unwrap() - 50.0 / 7.1).abs() < 1e-12);
        assert!((p.from_usd(2.0) - 14.2).abs() < 1e-12);
        assert!((p.to_usd(0.92, "EUR").unwrap() - 1.0).abs() < 1e-12);
        // fx (one unit is worth this much of `currency`) still works, as rates per USD
        let p = pricing("fx = { CNY = 0.125 }").unwrap();
        assert_eq!(p.rate("CNY"), Some(8.0));
        let p = pricing("currency = \"CNY\"\nfx = { USD = 7.0, EUR = 7.7 }").unwrap();
        assert_eq!(p.rate("CNY"), Some(7.0));
        assert!((p.rate("EUR").unwrap() - 7.0 / 7.7).abs() < 1e-12);
        assert_eq!(p.from_usd(1.0), 7.0);
        // a price in a currency with a rate is accepted, its cache-write price kept
        let text = format!(
            "{MINIMAL}pricing = {{ input = 1, output = 2, cache_write = 1.25, currency = \"eur\" }}\n[pricing]\nrates = {{ EUR = 0.9 }}\n"
        );
        let c = Config::parse(&text, &env(&[])).unwrap();
        let price = c.channels[0].pricing.as_ref().unwrap();
        assert_eq!(
            (price.cache_write, price.currency.as_str()),
            (Some(1.25), "EUR")
        );
    }

    #[test]
    fn pricing_problems_name_their_keys() {
        let paths = |table: &str| -> Vec<String> {
            pricing(table)
                .unwrap_err()
                .into_iter()
                .map(|p| p.path)
                .collect()
        };
        assert_eq!(paths("rates = { CNY = -7 }"), ["pricing.rates.CNY"]);
        assert_eq!(paths("rates = { CNY = nan }"), ["pricing.rates.CNY"]);
        assert_eq!(paths("rates = { \"C1\" = 7 }"), ["pricing.rates.C1"]);
        assert_eq!(paths("rates = { USD = 2 }"), ["pricing.rates.USD"]);
        assert_eq!(paths("rates = { CNY = 7, cny = 7 }"), ["pricing.rates.cny"]);
        assert_eq!(paths("daily_budget = -1"), ["pricing.daily_budget"]);
        assert_eq!(paths("daily_budget = inf"), ["pricing.daily_budget"]);
        assert_eq!(paths("currency = \"US$\""), ["pricing.currency"]);
        // the reporting currency needs a way to USD
        let p = pricing("currency = \"EUR\"").unwrap_err();
        assert_eq!(p[0].path, "pricing.currency");
        assert!(p[0].message.contains("rates = { EUR ="), "{p:?}");
        assert_eq!(
            paths("currency = \"EUR\"\nfx = { CNY = 0.13 }"),
            ["pricing.fx", "pricing.currency"]
        );
        assert_eq!(paths("fx = { CNY = 0 }"), ["pricing.fx.CNY"]);
        assert_eq!(paths("fx = { USD = 2 }"), ["pricing.fx.USD"]);
        assert_eq!(
            paths("rates = { CNY = 7 }\nfx = { CNY = 0.14 }"),
            ["pricing.fx", "pricing.fx.CNY"]
        );
        let p = pricing("budget = 1").unwrap_err();
        assert_eq!(p[0].path, "pricing.budget");
        assert!(p[0].message.contains("daily_budget"), "{p:?}");
        // prices: a currency without a rate, and cache-write prices, name the key
        let p = problems(&format!(
            "{MINIMAL}model_info = {{ \"gpt-4o\" = {{ pricing = {{ input = 1, output = 2, cache_write = -1 }} }} }}\n"
        ));
        assert_eq!(
            p[0].path,
            "channels[0].model_info.\"gpt-4o\".pricing.cache_write"
        );
        let p = problems(&format!(
            "{MINIMAL}pricing = {{ input = 1, output = 2, currency = \"EUR\" }}\n"
        ));
        assert_eq!(p[0].path, "channels[0].pricing.currency");
        assert!(p[0].message.contains("rates = { EUR = "), "{p:?}");
    }
}
