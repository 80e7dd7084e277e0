//! The Redis key schema of a fleet, and how values are spelled in it. Every key starts with
//! `{prefix}:` — the braces put a fleet's keys in one Redis Cluster hash slot, so the Lua
//! scripts below may touch several of them. README's "Key schema" table mirrors this file.
//!
//! | key | type | holds | lifetime |
//! |---|---|---|---|
//! | `{p}:instances` | sorted set | instance id → last heartbeat (Unix ms) | pruned after 60 s silent |
//! | `{p}:health` | hash | `c\|<channel>` or `m\|<channel>\|<model>` → health | rewritten on change; a recovery deletes the field |
//! | `{p}:health:log` | stream | one entry per health change (`f`, `v`) | capped at ~10,000 |
//! | `{p}:demand:<instance>` | hash | `key\|<name>` / `ch\|<id>` → requests/s | expires 3 syncs after the last |
//! | `{p}:members:<day>` | set | instances that counted anything that day | `retain_days` + 1 |
//! | `{p}:quota:<day>:<instance>` | hash | quota counters of one instance (absolute) | `retain_days` + 1 |
//! | `{p}:usage:<day>:<instance>` | hash | `<group>\|<name>\|<metric>` usage (absolute) | `retain_days` + 1 |
//! | `{p}:grant:<day>` | hash | `<counter>` → granted in all, `<counter>@<instance>` → to one | 2 days |
//!
//! Counters are written as each instance's absolute totals (`HSET`, never `INCRBY`): a push is
//! idempotent, a retried or duplicated one cannot double count, and a Redis that lost its data
//! is whole again after every instance's next push. Fleet totals are sums over the day's
//! members, computed by `SUM` inside Redis.
//!
//! Invariants: pure functions of their arguments; no I/O. Not here: when anything is sent.

use std::time::{Duration, Instant};

use crate::live::health::{Health, Why};
use crate::presets::Endpoint;

/// Longest silence after which an instance no longer counts as live.
pub(crate) const LIVE_FOR_MS: u64 = 60_000;

/// Approximate cap of the health change stream.
pub(crate) const LOG_CAP: u32 = 10_000;

/// Sums the hashes `ARGV[1] .. member` over the members of set `KEYS[1]`, field by field;
/// returns `[field, total, …]`.
pub(crate) const SUM: &str = r#"
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HGETALL', ARGV[1] .. m)
  for i = 1, #h, 2 do
    out[h[i]] = (out[h[i]] or 0) + (tonumber(h[i + 1]) or 0)
  end
end
local flat = {}
for k, v in pairs(out) do
  flat[#flat + 1] = k
  flat[#flat + 1] = string.format('%.17g', v)
end
return flat
"#;

/// Grants (or, with a negative `want`, takes back) part of a daily limit.
/// `KEYS` = the day's grant hash, the live-instances sorted set; `ARGV` = counter, instance,
/// what the instance believes it holds, want, limit, ttl ms, the day's quota hash prefix, and
/// the heartbeat below which an instance is gone. Returns `[held now, granted in all]`.
///
/// * A Redis that lost its data (the instance's field is missing) first re-learns what the
///   instance holds, within the limit; a field that exists is never raised this way (a lost
///   reply to a give-back must not hand the slice out twice).
/// * When the limit is all granted, slices held by instances that are gone (no heartbeat)
///   come back, less what they spent: a stopped instance cannot strand a budget.
pub const GRANT: &str = r#"
local c, me = ARGV[1], ARGV[2]
local mine_f = c .. '@' .. me
local known, want, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Totals are written whole (not HINCRBYFLOAT), snapped to the limit when within rounding of it:
-- an "all granted" must read as exactly the limit, or the per-instance cap never engages.
local function put(field, v)
  if math.abs(limit - v) <= limit * 1e-9 then v = limit end
  if v < 0 then v = 0 end
  redis.call('HSET', KEYS[1], field, string.format('%.17g', v))
  return v
end
local total = tonumber(redis.call('HGET', KEYS[1], c) or '0')
local raw = redis.call('HGET', KEYS[1], mine_f)
local mine = tonumber(raw or '0')
if not raw and known > 0 then
  local back = math.min(known, math.max(0, limit - total))
  mine = put(mine_f, back)
  total = put(c, total + back)
end
if want > 0 and total + want > limit then
  local all = redis.call('HGETALL', KEYS[1])
  local prefix = c .. '@'
  for i = 1, #all, 2 do
    local f = all[i]
    if #f > #prefix and string.sub(f, 1, #prefix) == prefix then
      local who = string.sub(f, #prefix + 1)
      local beat = redis.call('ZSCORE', KEYS[2], who)
      if who ~= me and (not beat or tonumber(beat) < tonumber(ARGV[8])) then
        local held = tonumber(all[i + 1]) or 0
        local spent = tonumber(redis.call('HGET', ARGV[7] .. who, c) or '0')
        if held > spent then
          put(f, spent)
          total = put(c, total - (held - spent))
        end
      end
    end
  end
end
local give
if want >= 0 then
  give = math.max(0, math.min(want, limit - total))
else
  give = math.max(want, -mine)
end
if give ~= 0 then
  total = put(c, total + give)
  mine = put(mine_f, mine + give)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {string.format('%.17g', mine), string.format('%.17g', total)}
"#;

/// The keys of one fleet.
#[derive(Debug, Clone)]
pub struct Keys {
    base: String,
}

impl Keys {
    /// Keys under `{prefix}:`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            base: format!("{{{prefix}}}:"),
        }
    }

    /// Live instances and their heartbeats.
    pub fn instances(&self) -> String {
        format!("{}instances", self.base)
    }

    /// Current health of every channel and (channel, model) that changed.
    pub(crate) fn health(&self) -> String {
        format!("{}health", self.base)
    }

    /// The stream of health changes.
    pub(crate) fn health_log(&self) -> String {
        format!("{}health:log", self.base)
    }

    /// One instance's rate-limit demand.
    pub(crate) fn demand(&self, instance: &str) -> String {
        format!("{}demand:{instance}", self.base)
    }

    /// Instances that counted something on `day` (`YYYY-MM-DD`).
    pub(crate) fn members(&self, day: &str) -> String {
        format!("{}members:{day}", self.base)
    }

    /// Prefix of the per-instance quota counters of `day` (append the instance).
    pub fn quota_prefix(&self, day: &str) -> String {
        format!("{}quota:{day}:", self.base)
    }

    /// Prefix of the per-instance usage totals of `day` (append the instance).
    pub(crate) fn usage_prefix(&self, day: &str) -> String {
        format!("{}usage:{day}:", self.base)
    }

    /// Grants of `day`.
    pub fn grants(&self, day: &str) -> String {
        format!("{}grant:{day}", self.base)
    }
}

/// What a health field is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// A channel (`c|<channel>`).
    Channel(&'a str),
    /// One model of a channel (`m|<channel>|<model>`).
    Model(&'a str, &'a str),
    /// One endpoint of a channel (`e|<channel>|<endpoint>`; instances that predate it skip
    /// the field, so a rolling upgrade is safe).
    Endpoint(&'a str, Endpoint),
}

/// The health field of a target (channel ids cannot hold `|`; model names can).
pub(crate) fn health_field(t: Target<'_>) -> String {
    match t {
        Target::Channel(c) => format!("c|{c}"),
        Target::Model(c, m) => format!("m|{c}|{m}"),
        Target::Endpoint(c, e) => format!("e|{c}|{}", e.as_str()),
    }
}

/// A health field back to its target (`None`: a kind this version does not know).
pub(crate) fn parse_health_field(f: &str) -> Option<Target<'_>> {
    let (kind, rest) = f.split_once('|')?;
    match kind {
        "c" => Some(Target::Channel(rest)),
        "m" => rest.split_once('|').map(|(c, m)| Target::Model(c, m)),
        "e" => {
            let (c, e) = rest.split_once('|')?;
            Endpoint::parse(e).map(|e| Target::Endpoint(c, e))
        }
        _ => None,
    }
}

/// Converts between this process's `Instant`s and Unix milliseconds (the fleet's shared clock:
/// instances need NTP-synchronised clocks, as any cooldown that crosses machines does).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// An instant …
    pub(crate) at: Instant,
    /// … and the Unix time it was, in ms.
    pub(crate) unix_ms: u64,
}

impl Clock {
    /// The clock now: an instant and its Unix time, read together.
    pub(crate) fn now() -> Clock {
        Clock {
            at: Instant::now(),
            unix_ms: crate::clock::now_ms(),
        }
    }

    /// Unix ms of `t`.
    pub(crate) fn to_unix(self, t: Instant) -> u64 {
        if t >= self.at {
            self.unix_ms + (t - self.at).as_millis() as u64
        } else {
            self.unix_ms
                .saturating_sub((self.at - t).as_millis() as u64)
        }
    }

    /// The instant of Unix ms `ms` (clamped to what an `Instant` can say).
    pub(crate) fn to_instant(self, ms: u64) -> Instant {
        if ms >= self.unix_ms {
            self.at + Duration::from_millis(ms - self.unix_ms)
        } else {
            self.at
                .checked_sub(Duration::from_millis(self.unix_ms - ms))
                .unwrap_or(self.at)
        }
    }
}

fn why_code(w: Why) -> u8 {
    match w {
        Why::Healthy => 0,
        Why::Failing => 1,
        Why::RateLimited => 2,
        Why::Auth => 3,
        Why::NoCredit => 4,
        Why::ModelMissing => 5,
        Why::Unsupported => 6,
    }
}

fn why_of(c: u8) -> Option<Why> {
    Some(match c {
        0 => Why::Healthy,
        1 => Why::Failing,
        2 => Why::RateLimited,
        3 => Why::Auth,
        4 => Why::NoCredit,
        5 => Why::ModelMissing,
        6 => Why::Unsupported,
        _ => return None,
    })
}

/// A health state as `<until ms or 0>|<failures>|<why>|<updated ms>|<instance>`.
pub(crate) fn encode_health(h: &Health, clock: &Clock, instance: &str) -> String {
    format!(
        "{}|{}|{}|{}|{instance}",
        h.until.map_or(0, |u| clock.to_unix(u)),
        h.failures,
        why_code(h.why),
        h.updated.map_or(0, |u| clock.to_unix(u)),
    )
}

/// A health value back, with the instance that wrote it.
pub(crate) fn decode_health<'v>(v: &'v str, clock: &Clock) -> Option<(Health, &'v str)> {
    let mut it = v.splitn(5, '|');
    let until: u64 = it.next()?.parse().ok()?;
    let failures: u16 = it.next()?.parse().ok()?;
    let why = why_of(it.next()?.parse().ok()?)?;
    let updated: u64 = it.next()?.parse().ok()?;
    let instance = it.next()?;
    Some((
        Health {
            until: (until > 0).then(|| clock.to_instant(until)),
            failures,
            why,
            updated: (updated > 0).then(|| clock.to_instant(updated)),
        },
        instance,
    ))
}

/// The usage field of a group (`channel`, `model`, `provider`, `key`, or `total` with an empty
/// name) and a metric.
pub(crate) fn usage_field(group: &str, name: &str, metric: &str) -> String {
    format!("{group}|{name}|{metric}")
}

/// A usage field back to (group, name, metric); names may hold `|`.
pub(crate) fn parse_usage_field(f: &str) -> Option<(&str, &str, &str)> {
    let (group, rest) = f.split_once('|')?;
    let (name, metric) = rest.rsplit_once('|')?;
    Some((group, name, metric))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_round_trips_through_its_redis_spelling() {
        let clock = Clock::now();
        let h = Health {
            until: Some(clock.at + Duration::from_millis(1500)),
            failures: 3,
            why: Why::RateLimited,
            updated: Some(clock.at),
        };
        let v = encode_health(&h, &clock, "gw-1:8080");
        let (back, who) = decode_health(&v, &clock).expect("decodes");
        assert_eq!(who, "gw-1:8080");
        assert_eq!(back.failures, 3);
        assert_eq!(back.why, Why::RateLimited);
        let until = back.until.expect("until");
        assert!(until >= clock.at + Duration::from_millis(1499));
        assert!(until <= clock.at + Duration::from_millis(1501));
        assert_eq!(
            decode_health(&encode_health(&Health::default(), &clock, "x"), &clock)
                .expect("healthy decodes")
                .0,
            Health::default()
        );
        for bad in [
            "",
            "1|2|3",
            "1|2|9|4|x",
            "1|2|7|4|x",
            "a|2|1|4|x",
            "1|99999999|1|4|x",
        ] {
            assert!(decode_health(bad, &clock).is_none(), "{bad}");
        }
    }

    #[test]
    fn fields_split_where_names_cannot_hold_the_separator() {
        assert_eq!(health_field(Target::Channel("ch-1")), "c|ch-1");
        let f = health_field(Target::Model("ch-1", "a|b/c"));
        assert_eq!(parse_health_field(&f), Some(Target::Model("ch-1", "a|b/c")));
        let f = health_field(Target::Endpoint("ch-1", Endpoint::Responses));
        assert_eq!(f, "e|ch-1|responses");
        assert_eq!(
            parse_health_field(&f),
            Some(Target::Endpoint("ch-1", Endpoint::Responses))
        );
        // kinds (or endpoints) a newer instance may write are skipped, not misread
        assert_eq!(parse_health_field("x|y"), None);
        assert_eq!(parse_health_field("e|ch-1|images"), None);
        assert_eq!(
            parse_usage_field(&usage_field("key", "team|a", "cost")),
            Some(("key", "team|a", "cost"))
        );
        assert_eq!(
            parse_usage_field("total||requests"),
            Some(("total", "", "requests"))
        );
        assert_eq!(Keys::new("sar").health(), "{sar}:health");
    }
}
