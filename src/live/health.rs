//! Channel and (channel, model) health: what an upstream outcome does to a cooldown
//! (DESIGN.md §6), as a pure state machine over an injected `now`.
//!
//! | outcome | scope | cooldown |
//! |---|---|---|
//! | connect error, reset, timeout, 5xx, 529, stream cut | channel | `base · 2^(n−1)`, capped at `max`, n = consecutive failures |
//! | 429 | channel | `Retry-After` (capped at `retry_after_max`), else the backoff |
//! | 401, 403 | channel | `auth` (long), until a reload changes the key or a probe passes |
//! | 402 | channel | until the next UTC midnight (the daily window) |
//! | 404 naming the model | (channel, model) | `model_missing` |
//! | success | both | healed: failures reset, no cooldown |
//!
//! When a cooldown ends the channel is *half-open*: one trial request per worker may go
//! through; its success heals, its failure backs off again (with a longer backoff).
//!
//! Invariants: no clock reads, no I/O; the same outcome applied to the same state at the same
//! `at` gives the same result on every thread, so a worker's local view and the control
//! thread's merged view agree.

use std::time::{Duration, Instant};

use crate::config::CooldownPolicy;

/// Why a channel or entry is (or was last) out of rotation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Why {
    /// In rotation: no failure since the last success.
    #[default]
    Healthy,
    /// Connect errors, timeouts, 5xx or cut streams.
    Failing,
    /// 429.
    RateLimited,
    /// 401/403: the key was rejected.
    Auth,
    /// 402: no credit or quota left.
    NoCredit,
    /// 404 for the model.
    ModelMissing,
}

impl Why {
    /// Short text for messages and the dry run.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Why::Healthy => "healthy",
            Why::Failing => "failing",
            Why::RateLimited => "rate limited",
            Why::Auth => "API key rejected",
            Why::NoCredit => "out of credit",
            Why::ModelMissing => "model not found upstream",
        }
    }
}

/// What an attempt's outcome means for health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The upstream answered (2xx), or the stream completed.
    Success,
    /// Connect error, reset, timeout, 5xx, 529, stream cut.
    Transient,
    /// 429, with its `Retry-After` if any.
    RateLimited(Option<Duration>),
    /// 401/403.
    Auth,
    /// 402.
    NoCredit,
    /// 404 for the model.
    ModelMissing,
}

impl Outcome {
    /// The health outcome of an upstream status, if it has one (4xx like 400/422 do not).
    pub(crate) fn of_status(status: u16, retry_after: Option<Duration>) -> Option<Outcome> {
        match status {
            200..=399 => Some(Outcome::Success),
            401 | 403 => Some(Outcome::Auth),
            402 => Some(Outcome::NoCredit),
            404 => Some(Outcome::ModelMissing),
            429 => Some(Outcome::RateLimited(retry_after)),
            s if s >= 500 => Some(Outcome::Transient),
            _ => None,
        }
    }

    /// True when the outcome concerns one model of the channel rather than the channel.
    pub(crate) fn is_per_model(self) -> bool {
        matches!(self, Outcome::ModelMissing)
    }
}

/// What happened to an attempt, as health sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// No usable response: a connect error, a reset, a timeout, a malformed head or body, or a
    /// stream that broke off.
    Broken,
    /// An upstream status that moved the request on; `names_model` when its body names the
    /// model asked for (a 404 about the model, not the path).
    Status {
        /// The status.
        status: u16,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The body names the upstream model.
        names_model: bool,
    },
    /// An answer relayed to the client, with the reset of a provider quota it said is spent
    /// (`x-ratelimit-remaining-*: 0`).
    Answered {
        /// The status.
        status: u16,
        /// When the spent quota resets.
        quota_reset: Option<Duration>,
    },
    /// The client left: says nothing about the upstream.
    ClientGone,
}

/// What an [`Event`] does: the outcome applied to health (its scope is
/// [`Outcome::is_per_model`]), and whether the request skips the channel's other models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The health outcome, if any.
    pub outcome: Option<Outcome>,
    /// The channel failed as a whole: the request skips its other models.
    pub whole_channel: bool,
}

/// The one decision of what an attempt's event means for health (DESIGN §6; the table above).
pub(crate) fn verdict(e: Event) -> Verdict {
    match e {
        Event::Broken => Verdict {
            outcome: Some(Outcome::Transient),
            whole_channel: true,
        },
        // Only a 404 that names the model takes that model out; any other 404 (a wrong
        // chat_path, say) is the channel failing — yet the request still tries the channel's
        // other models (a 404 never skips them).
        Event::Status {
            status: 404,
            names_model: false,
            ..
        } => Verdict {
            outcome: Some(Outcome::Transient),
            whole_channel: false,
        },
        Event::Status {
            status,
            retry_after,
            ..
        } => Verdict {
            outcome: Outcome::of_status(status, retry_after),
            whole_channel: status != 404,
        },
        // An answer that says the provider's quota is spent takes the channel out until the
        // reset it names, as a 429 with Retry-After would.
        Event::Answered {
            quota_reset: Some(reset),
            ..
        } => Verdict {
            outcome: Some(Outcome::RateLimited(Some(reset))),
            whole_channel: false,
        },
        Event::Answered { status, .. } => Verdict {
            outcome: Outcome::of_status(status, None),
            whole_channel: false,
        },
        Event::ClientGone => Verdict {
            outcome: None,
            whole_channel: false,
        },
    }
}

/// A cooldown state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Health {
    /// Out of rotation until then.
    pub until: Option<Instant>,
    /// Consecutive failures (0 = healthy).
    pub failures: u16,
    /// Why it is (or was last) out of rotation.
    pub why: Why,
    /// When this state was last changed (the later of two views wins).
    pub updated: Option<Instant>,
}

/// How a health state looks at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// In rotation.
    Ok,
    /// Cooling down until then.
    Cooling(Instant),
    /// Cooldown over after failures: one trial request may go.
    HalfOpen,
}

impl Health {
    /// The state at `now`.
    pub(crate) fn state(&self, now: Instant) -> State {
        match self.until {
            Some(t) if t > now => State::Cooling(t),
            _ if self.failures > 0 => State::HalfOpen,
            _ => State::Ok,
        }
    }

    /// Applies an outcome observed at `at` by an attempt that started at `started`.
    /// `until_midnight` is the time from `at` to the next UTC midnight (the observer reads the
    /// wall clock and ships it with the report, so every view computes the same cooldown).
    ///
    /// Reports arrive out of order (successes wait for a tick, failures do not), so:
    /// * a success heals only if its attempt began after the last recorded failure — a
    ///   request that was already in flight proves nothing about recovery;
    /// * a failure older than the latest update still counts, but only extends the cooldown.
    pub(crate) fn apply(
        &mut self,
        outcome: Outcome,
        started: Instant,
        at: Instant,
        policy: &CooldownPolicy,
        until_midnight: Duration,
    ) {
        let latest = self.updated.map_or(at, |u| u.max(at));
        let why = match outcome {
            Outcome::Success => {
                if self.failures > 0 && self.updated.is_some_and(|u| started < u) {
                    return;
                }
                *self = Health {
                    updated: Some(latest),
                    ..Health::default()
                };
                return;
            }
            Outcome::Transient => Why::Failing,
            Outcome::RateLimited(_) => Why::RateLimited,
            Outcome::Auth => Why::Auth,
            Outcome::NoCredit => Why::NoCredit,
            Outcome::ModelMissing => Why::ModelMissing,
        };
        self.failures = self.failures.saturating_add(1);
        let wait = match outcome {
            Outcome::RateLimited(Some(d)) => d.min(policy.retry_after_max),
            Outcome::Auth => policy.auth,
            Outcome::NoCredit => until_midnight.max(Duration::from_secs(60)),
            Outcome::ModelMissing => policy.model_missing,
            _ => backoff(policy, self.failures),
        };
        let until = at + wait;
        self.until = Some(self.until.map_or(until, |u| u.max(until)));
        // The most severe reason of a cooldown stays visible.
        if self.why == Why::Healthy || at >= latest || why != Why::Failing {
            self.why = why;
        }
        self.updated = Some(latest);
    }
}

/// `base · 2^(failures−1)`, capped at `max`.
pub(crate) fn backoff(policy: &CooldownPolicy, failures: u16) -> Duration {
    let exp = u32::from(failures.saturating_sub(1)).min(30);
    policy
        .base
        .checked_mul(1u32 << exp)
        .unwrap_or(policy.max)
        .min(policy.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CooldownPolicy {
        CooldownPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(30),
            auth: Duration::from_secs(3600),
            model_missing: Duration::from_secs(600),
        }
    }

    #[test]
    fn transient_failures_back_off_exponentially_then_heal() {
        let p = policy();
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.state(t0), State::Ok);
        h.apply(Outcome::Transient, t0, t0, &p, Duration::ZERO);
        assert_eq!(h.state(t0), State::Cooling(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(h.state(t1), State::HalfOpen, "cooldown over: one trial");
        h.apply(Outcome::Transient, t1, t1, &p, Duration::ZERO);
        assert_eq!(
            h.until,
            Some(t1 + Duration::from_secs(2)),
            "the trial failed: longer backoff"
        );
        for _ in 0..20 {
            h.apply(Outcome::Transient, t1, t1, &p, Duration::ZERO);
        }
        assert_eq!(h.until, Some(t1 + Duration::from_secs(60)), "capped");
        h.apply(Outcome::Success, t1, t1, &p, Duration::ZERO);
        assert_eq!(h.state(t1), State::Ok);
        assert_eq!(h.failures, 0);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = policy();
        let t0 = Instant::now();
        let mut h = Health::default();
        let seven = Outcome::RateLimited(Some(Duration::from_secs(7)));
        h.apply(seven, t0, t0, &p, Duration::ZERO);
        assert_eq!(h.until, Some(t0 + Duration::from_secs(7)));
        assert_eq!(h.why, Why::RateLimited);
        let mut h = Health::default();
        let huge = Outcome::RateLimited(Some(Duration::from_secs(9999)));
        h.apply(huge, t0, t0, &p, Duration::ZERO);
        assert_eq!(h.until, Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn out_of_order_reports_do_not_undo_failures() {
        let p = policy();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Health::default();
        // a 429 at t0+10 arrives first …
        h.apply(
            Outcome::RateLimited(Some(Duration::from_secs(30))),
            t0 + ms(5),
            t0 + ms(10),
            &p,
            Duration::ZERO,
        );
        // … then a success of an attempt that started before it, finishing later: ignored
        h.apply(Outcome::Success, t0, t0 + ms(2000), &p, Duration::ZERO);
        assert_eq!(
            h.state(t0 + ms(2500)),
            State::Cooling(t0 + ms(10) + Duration::from_secs(30))
        );
        // a late failure only extends
        h.apply(Outcome::Transient, t0, t0 + ms(1), &p, Duration::ZERO);
        assert_eq!(h.until, Some(t0 + ms(10) + Duration::from_secs(30)));
        assert_eq!(h.why, Why::RateLimited);
        // an attempt started after the failure heals
        h.apply(
            Outcome::Success,
            t0 + Duration::from_secs(31),
            t0 + Duration::from_secs(32),
            &p,
            Duration::ZERO,
        );
        assert_eq!(h.state(t0 + Duration::from_secs(32)), State::Ok);
    }

    #[test]
    fn auth_credit_and_missing_models() {
        let p = policy();
        let t0 = Instant::now();
        let mut h = Health::default();
        h.apply(Outcome::Auth, t0, t0, &p, Duration::ZERO);
        assert_eq!(h.until, Some(t0 + Duration::from_secs(3600)));
        let mut h = Health::default();
        h.apply(Outcome::NoCredit, t0, t0, &p, Duration::from_secs(5000));
        assert_eq!(h.until, Some(t0 + Duration::from_secs(5000)));
        assert!(Outcome::of_status(404, None).unwrap().is_per_model());
        assert_eq!(Outcome::of_status(400, None), None);
        assert_eq!(Outcome::of_status(529, None), Some(Outcome::Transient));
    }

    #[test]
    fn verdicts_follow_the_design_table() {
        let status = |status, names_model| {
            verdict(Event::Status {
                status,
                retry_after: None,
                names_model,
            })
        };
        assert_eq!(
            status(404, true),
            Verdict {
                outcome: Some(Outcome::ModelMissing),
                whole_channel: false
            }
        );
        assert_eq!(
            status(404, false),
            Verdict {
                outcome: Some(Outcome::Transient),
                whole_channel: false
            }
        );
        assert_eq!(status(503, true).outcome, Some(Outcome::Transient));
        assert!(status(503, true).whole_channel);
        assert_eq!(status(401, false).outcome, Some(Outcome::Auth));
        let reset = Duration::from_secs(6);
        assert_eq!(
            verdict(Event::Answered {
                status: 200,
                quota_reset: Some(reset)
            })
            .outcome,
            Some(Outcome::RateLimited(Some(reset)))
        );
        assert_eq!(
            verdict(Event::Answered {
                status: 400,
                quota_reset: None
            })
            .outcome,
            None
        );
        assert_eq!(verdict(Event::ClientGone).outcome, None);
        assert!(verdict(Event::Broken).whole_channel);
    }
}
