//! `raw` → validated [`Config`]: one file per table family, each turning its raw tables into the
//! typed parts of `model` with the defaults applied, and reporting every problem to the shared
//! [`Checker`] under its key path (with what to write instead), so one run names them all.
//!
//! ```text
//!   server.rs     [server] [admin] [log] [state] [usage] [discovery] [health]
//!   providers.rs  [providers.ID]                 channels.rs  [[channels]], model_info
//!   pricing.rs    [pricing], prices              routing.rs   [routing] [strategies.*] [groups.*]
//!   auth.rs       [auth], [[auth.keys]], keys files
//!   cluster.rs    [cluster]                      telemetry.rs [telemetry]
//! ```
//!
//! Invariants: nothing here reads a file except [`read_keys_file`]; a table whose values are
//! wrong still yields a value (its defaults) so later checks can go on, but [`build`] returns
//! a [`Config`] only when no problem was found. Not here: `${VAR}` expansion (`env`), unknown
//! keys (`raw` and serde), the config-less modes (`super`).

mod auth;
mod channels;
mod cluster;
mod pricing;
mod providers;
mod routing;
mod server;
mod telemetry;
#[cfg(test)]
mod tests;

use std::time::Duration;

use super::{Config, ConfigError, Problem, RateLimits, Source, raw, units};

pub(crate) use auth::read_keys_file;
#[cfg(feature = "import")]
pub(crate) use providers::{is_managed_header, is_token};

/// Collects the problems of one validation run, and reads the values every table has: durations,
/// sizes and bounded integers, each falling back to its default when wrong.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(
        &mut self,
        path: &str,
        v: Option<raw::DurationValue>,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let d = match v {
            None => return default,
            Some(raw::DurationValue::Text(s)) => match units::parse_duration(&s) {
                Ok(d) => d,
                Err(m) => {
                    self.err(path, m);
                    return default;
                }
            },
            Some(raw::DurationValue::Number(n)) => {
                self.err(
                    path,
                    format!("durations are strings with a unit; write \"{n}s\" or \"{n}ms\""),
                );
                return default;
            }
        };
        if d < min {
            self.err(path, format!("must be at least {min:?}"));
            return default;
        }
        d
    }

    fn size(
        &mut self,
        path: &str,
        v: Option<raw::SizeValue>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let n = match v {
            None => return default,
            Some(raw::SizeValue::Bytes(n)) if n >= 0 => n as u64,
            Some(raw::SizeValue::Bytes(n)) => {
                self.err(path, format!("{n} is negative"));
                return default;
            }
            Some(raw::SizeValue::Text(s)) => match units::parse_size(&s) {
                Ok(n) => n,
                Err(m) => {
                    self.err(path, m);
                    return default;
                }
            },
        };
        if n < min || n > max {
            self.err(
                path,
                format!("must be between {min} and {max} bytes, got {n}"),
            );
            return default;
        }
        n
    }

    fn int(&mut self, path: &str, v: Option<i64>, default: usize, min: i64, max: i64) -> usize {
        match v {
            None => default,
            Some(n) if n >= min && n <= max => n as usize,
            Some(n) => {
                self.err(path, format!("must be between {min} and {max}, got {n}"));
                default
            }
        }
    }
}

/// Validates a whole file's raw tables. Tables are checked in a fixed order (server, providers,
/// channels, pricing, strategies, routing, groups, discovery, health, usage, state, admin, auth,
/// cluster, log, telemetry), so problems come out in that order.
pub(super) fn build(raw: raw::Root) -> Result<Config, ConfigError> {
    let mut c = Checker::default();
    let server = server::server(&mut c, raw.server);
    let providers: Vec<_> = raw
        .providers
        .into_iter()
        .map(|(id, p)| providers::provider(&mut c, id, p))
        .collect();
    let discovery_on = raw.discovery.enabled.unwrap_or(true);
    let channels = channels::channels(&mut c, raw.channels, &providers, discovery_on);
    let pricing = pricing::pricing(&mut c, raw.pricing);
    pricing::check_channel_currencies(&mut c, &channels, &pricing);
    let strategies = routing::strategies(&mut c, raw.strategies);
    let routing = routing::routing(&mut c, raw.routing, &strategies);
    let groups = routing::groups(&mut c, raw.groups, &strategies);
    let discovery = server::discovery(&mut c, raw.discovery);
    let health = server::health(&mut c, raw.health);
    let usage = server::usage(&mut c, raw.usage);
    let state_dir = server::state_dir(&mut c, raw.state);
    let admin = raw
        .admin
        .filter(|a| a.enabled != Some(false))
        .map(|a| server::admin(&mut c, a));
    let auth = auth::auth(&mut c, raw.auth, &server);
    let cluster = raw
        .cluster
        .map(|raw| cluster::cluster(&mut c, raw, &server));
    let log = server::log(&mut c, raw.log);
    let telemetry = raw
        .telemetry
        .and_then(|raw| telemetry::telemetry(&mut c, raw));

    if c.problems.is_empty() {
        Ok(Config {
            server,
            providers,
            channels,
            routing,
            strategies,
            groups,
            pricing,
            discovery,
            health,
            state_dir,
            usage,
            admin,
            log,
            auth,
            cluster,
            telemetry,
            source: Source::Inline,
        })
    } else {
        Err(ConfigError {
            origin: None,
            problems: c.problems,
        })
    }
}

/// Provider ids, channel ids and the cluster prefix: 1-64 letters, digits, '.', '_' or '-'.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Validates `rps`, `rpm` and `tpm` (of a client key or a channel), reporting by field name.
fn rate_spec(
    err: &mut dyn FnMut(&str, String),
    rps: Option<f64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
) -> RateLimits {
    let mut limits = RateLimits::default();
    match rps {
        None => {}
        Some(r) if r.is_finite() && r > 0.0 && r <= 1e6 => limits.rps = Some(r),
        Some(r) => err("rps", format!("requests per second above 0, got {r}")),
    }
    for (field, v, slot) in [("rpm", rpm, &mut limits.rpm), ("tpm", tpm, &mut limits.tpm)] {
        match v {
            None => {}
            Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => *slot = Some(n as u32),
            Some(n) => err(field, format!("a whole number from 1, got {n}")),
        }
    }
    limits
}
