//! `GET /admin/usage`: usage totals over a time range, grouped by channel, model, provider or
//! client key — this instance's from its usage files (`scope=instance`, the default), or the
//! fleet's from Redis (`scope=fleet`, by whole UTC days).
//!
//! Invariants: the query is validated before any work (dates or Unix seconds, `until` after
//! `since`, at most [`USAGE_MAX_DAYS`]); records merged so far reach the files before they are
//! read; reading the files runs on a helper thread, so the control loop keeps publishing,
//! merging and answering meanwhile; waiting on Redis is bounded (10 s).
//! [`today`] is the status page's cheap view: the UTC day's totals per key, channel and model
//! kept in memory by `control::metrics` (no file read).
//!
//! Not here: writing usage files (`control::store`), the record format (`usage`).

use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;

use super::super::{Ctl, State};
use crate::error::Error;
use crate::usage::{GroupBy, Summary, Totals};

/// Longest range `/admin/usage` reads (days of files).
const USAGE_MAX_DAYS: u64 = 366;

const DAY_MS: u64 = 86_400_000;

/// One group's totals (`key` set) or the overall total (`key` absent).
#[derive(Debug, Serialize)]
struct TotalsView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    requests: u64,
    errors: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
    cost: f64,
}

impl<'a> TotalsView<'a> {
    fn of(key: Option<&'a str>, t: &Totals) -> TotalsView<'a> {
        TotalsView {
            key,
            requests: t.requests,
            errors: t.errors,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cached_tokens: t.cached_tokens,
            cost: t.cost,
        }
    }
}

/// The answer of both scopes; `skipped_lines` and `persisted` only for this instance's files.
#[derive(Debug, Serialize)]
pub(super) struct UsageView<'a> {
    /// Unix seconds.
    since: u64,
    /// Unix seconds.
    until: u64,
    scope: &'static str,
    group_by: &'static str,
    currency: String,
    groups: Vec<TotalsView<'a>>,
    total: TotalsView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped_lines: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    persisted: Option<bool>,
}

impl<'a> UsageView<'a> {
    fn of(
        ctl: &Ctl,
        (since, until): (u64, u64),
        scope: &'static str,
        by: GroupBy,
        summary: &'a Summary,
    ) -> UsageView<'a> {
        UsageView {
            since,
            until,
            scope,
            group_by: by.field(),
            currency: ctl.st.borrow().cfg.pricing.currency.clone(),
            groups: summary
                .groups
                .iter()
                .map(|(k, t)| TotalsView::of(Some(k), t))
                .collect(),
            total: TotalsView::of(None, &summary.total),
            skipped_lines: None,
            persisted: None,
        }
    }
}

/// Today's totals (since this process started) by key, channel and model, largest cost
/// first: `{"day","currency","keys":[…],"channels":[…],"models":[…]}`.
#[derive(Debug, Serialize)]
pub(super) struct TodayView<'a> {
    day: String,
    currency: &'a str,
    keys: Vec<TotalsView<'a>>,
    channels: Vec<TotalsView<'a>>,
    models: Vec<TotalsView<'a>>,
}

/// The status page's usage section (see [`TodayView`]).
pub(super) fn today(st: &State) -> TodayView<'_> {
    fn list<'a>(
        m: &'a std::collections::BTreeMap<String, Totals>,
        none: &'static str,
    ) -> Vec<TotalsView<'a>> {
        let mut v: Vec<TotalsView<'a>> = m
            .iter()
            .map(|(k, t)| TotalsView::of(Some(if k.is_empty() { none } else { k }), t))
            .collect();
        v.sort_by(|a, b| b.cost.total_cmp(&a.cost).then(b.requests.cmp(&a.requests)));
        v
    }
    let t = &st.metrics.today;
    let now = crate::clock::now_ms();
    if t.day != now / DAY_MS {
        // No record yet since midnight (UTC): yesterday's totals are not today's.
        return TodayView {
            day: crate::clock::day(now),
            currency: &st.cfg.pricing.currency,
            keys: Vec::new(),
            channels: Vec::new(),
            models: Vec::new(),
        };
    }
    TodayView {
        day: crate::clock::day(t.day * DAY_MS),
        currency: &st.cfg.pricing.currency,
        keys: list(&t.keys, "(no key)"),
        channels: list(&t.channels, "(no channel)"),
        models: list(&t.models, "(no model)"),
    }
}

/// A validated `/admin/usage` query: `[since, until)` in Unix milliseconds.
#[derive(Debug, Clone, Copy)]
struct Query {
    since: u64,
    until: u64,
    by: GroupBy,
    fleet: bool,
}

/// `since=&until=&group_by=&scope=` (dates `YYYY-MM-DD` or Unix seconds; default: today so
/// far, by channel, this instance).
fn query(raw: &str) -> Result<Query, Error> {
    use crate::clock::parse_time;
    let mut since = None;
    let mut until = None;
    let mut by = GroupBy::Channel;
    let mut fleet = false;
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::h1::percent_decode(v.as_bytes());
        let bad = |what: &str| Error::bad_request("invalid_query", what.to_string());
        match k {
            "since" => {
                since =
                    Some(parse_time(&v).ok_or_else(|| {
                        bad("`since` must be a date (YYYY-MM-DD) or Unix seconds")
                    })?)
            }
            "until" => {
                until =
                    Some(parse_time(&v).ok_or_else(|| {
                        bad("`until` must be a date (YYYY-MM-DD) or Unix seconds")
                    })?)
            }
            "group_by" => {
                by = GroupBy::parse(&v)
                    .ok_or_else(|| bad("`group_by` must be channel, model, provider or key"))?
            }
            "scope" => {
                fleet = match &*v {
                    "instance" => false,
                    "fleet" => true,
                    _ => return Err(bad("`scope` must be instance or fleet")),
                }
            }
            _ => {
                return Err(bad(&format!(
                    "unknown query parameter `{}`",
                    crate::error::truncate(k, 40)
                )));
            }
        }
    }
    let now_ms = crate::clock::now_ms();
    let since = since.unwrap_or(now_ms - now_ms % DAY_MS);
    let until = until.unwrap_or(now_ms + 1);
    if until <= since {
        return Err(Error::bad_request(
            "invalid_query",
            "`until` must be after `since`",
        ));
    }
    if (until - since) / DAY_MS > USAGE_MAX_DAYS {
        return Err(Error::bad_request(
            "invalid_query",
            format!("ask for at most {USAGE_MAX_DAYS} days at a time"),
        ));
    }
    Ok(Query {
        since,
        until,
        by,
        fleet,
    })
}

/// `GET /admin/usage?since=&until=&group_by=&scope=`: totals over `[since, until)`, from the
/// usage files or (`scope=fleet`) from the fleet's day totals; the serialized answer.
pub(super) async fn usage(ctl: &Rc<Ctl>, raw_query: &str) -> Result<Vec<u8>, Error> {
    let q = query(raw_query)?;
    if q.fleet {
        #[cfg(feature = "cluster")]
        return fleet_usage(ctl, q).await;
        #[cfg(not(feature = "cluster"))]
        return Err(Error::bad_request(
            "no_cluster",
            "scope=fleet needs a [cluster] section (and this build has no `cluster` feature)",
        ));
    }
    // Records merged so far reach the files first.
    ctl.merge_reports(&mut ctl.st.borrow_mut());
    if let Some(done) = ctl.store.flush() {
        super::super::written(&done, super::super::PROPAGATION_WAIT).await;
    }
    // Day numbers, not milliseconds: bounded by the range check, nothing can overflow.
    let files: Vec<std::path::PathBuf> = (q.since / DAY_MS..=(q.until - 1) / DAY_MS)
        .filter_map(|d| ctl.store.usage_file(&crate::clock::day(d * DAY_MS)))
        .collect();
    // Reading and parsing up to a year of files is slow: a helper thread does it, so the
    // control loop keeps publishing, merging and answering meanwhile.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (since, until, by) = (q.since, q.until, q.by);
    let spawned = std::thread::Builder::new()
        .name("sar-usage-scan".into())
        .spawn(move || {
            let mut summary = Summary::default();
            for path in files {
                if let Ok(text) = std::fs::read(&path) {
                    summary.add_lines(&text, since, until, by);
                }
            }
            let _ = tx.send(summary);
        });
    if spawned.is_err() {
        return Err(Error::internal("could not start the usage scan"));
    }
    let summary = loop {
        match rx.try_recv() {
            Ok(s) => break s,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                monoio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                return Err(Error::internal("the usage scan failed"));
            }
        }
    };
    let mut view = UsageView::of(ctl, (since / 1000, until / 1000), "instance", by, &summary);
    view.skipped_lines = Some(summary.skipped);
    view.persisted = Some(ctl.store.dir().is_some());
    super::serialize(&view)
}

/// `scope=fleet`: the fleet's totals from Redis, by whole UTC days (the fleet keeps day
/// totals, not records): every day `[since, until)` touches.
#[cfg(feature = "cluster")]
async fn fleet_usage(ctl: &Rc<Ctl>, q: Query) -> Result<Vec<u8>, Error> {
    use std::time::Instant;

    use crate::cluster::schema::parse_usage_field;
    use crate::error::Kind;
    let first = q.since / DAY_MS;
    let last = (q.until - 1) / DAY_MS;
    let days: Vec<String> = (first..=last)
        .map(|d| crate::clock::day(d * DAY_MS))
        .collect();
    let rx = match &*ctl.cluster.borrow() {
        None => {
            return Err(Error::bad_request(
                "no_cluster",
                "scope=fleet needs a [cluster] section (this instance runs alone)",
            ));
        }
        Some(f) => f.usage_query(days),
    };
    let Some(rx) = rx else {
        return Err(Error::internal("the cluster helper thread has stopped"));
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let sums = loop {
        match rx.try_recv() {
            Ok(Ok(s)) => break s,
            Ok(Err(e)) => {
                return Err(Error::new(
                    503,
                    Kind::Server,
                    "cluster_unavailable",
                    format!("cannot read the fleet's usage from Redis: {e}"),
                ));
            }
            Err(_) if Instant::now() >= deadline => {
                return Err(Error::new(
                    504,
                    Kind::Server,
                    "cluster_timeout",
                    "Redis did not answer in time",
                ));
            }
            Err(_) => monoio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    let mut summary = Summary::default();
    for (field, v) in &sums {
        let Some((group, name, metric)) = parse_usage_field(field) else {
            continue;
        };
        let t = match group {
            "total" => &mut summary.total,
            g if g == q.by.field() => summary.groups.entry(name.to_string()).or_default(),
            _ => continue,
        };
        t.merge_metric(metric, *v, |a, b| a + b);
    }
    let range = (first * 86_400, (last + 1) * 86_400);
    super::serialize(&UsageView::of(ctl, range, "fleet", q.by, &summary))
}
