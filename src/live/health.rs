//! What an upstream outcome does to health — its **scope** and its cooldown — as one pure
//! function ([`verdict`]), and the cooldown state machine ([`Health`]) over an injected `now`.
//!
//! | outcome | scope | cooldown |
//! |---|---|---|
//! | connect, TLS or proxy error; reset before the request was sent | channel | `base · 2^(n−1)`, capped at `max`, n = consecutive failures |
//! | 401, 403 | channel | `auth` (long), until a reload changes the key or a probe passes |
//! | 402 | channel | until the next UTC midnight (the daily window) |
//! | 429 (or an answer saying the quota is spent) | channel | `Retry-After` (capped at `retry_after_max`), else the backoff |
//! | 5xx, 529, timeout, reset mid-exchange, bad 2xx body, stream cut | (channel, model) | the backoff; a 2nd model of the channel failing within the 1st's window escalates to the channel |
//! | 404 naming the model | (channel, model) | `model_missing` |
//! | 404 not naming the model, 405, 501 | (channel, endpoint) | `model_missing` (then one trial re-checks) |
//! | an encoding the gateway cannot read; the client leaving; 400/422 | none | — |
//! | success | channel, model and endpoint | healed: failures reset, no cooldown |
//!
//! When a cooldown ends the scope is *half-open*: one trial request per worker may go
//! through; its success heals, its failure backs off again (with a longer backoff).
//!
//! Invariants: no clock reads, no I/O; the same outcome applied to the same state at the same
//! `at` gives the same result on every thread, so a worker's local view and the control
//! thread's merged view agree.

use std::time::{Duration, Instant};

use crate::config::CooldownPolicy;

/// Why a channel, entry or (channel, endpoint) is (or was last) out of rotation.
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
    /// The provider does not serve the endpoint (404/405/501 on its path).
    Unsupported,
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
            Why::Unsupported => "endpoint not served by the provider",
        }
    }

    /// A reason that passes by itself (backoff after transient failures): the only kind panic
    /// routing may override.
    pub(crate) fn is_transient(self) -> bool {
        self == Why::Failing
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
    /// 404/405/501 for the endpoint's path.
    Unsupported,
}

impl Outcome {
    /// The outcome of an upstream status that moved the request on, or of a status relayed to
    /// the client (4xx like 400/422 have none).
    fn of_status(status: u16, retry_after: Option<Duration>) -> Option<Outcome> {
        match status {
            200..=399 => Some(Outcome::Success),
            401 | 403 => Some(Outcome::Auth),
            402 => Some(Outcome::NoCredit),
            429 => Some(Outcome::RateLimited(retry_after)),
            s if s >= 500 => Some(Outcome::Transient),
            _ => None,
        }
    }
}

/// What an outcome is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The whole channel (its key, its host).
    Channel,
    /// One model of the channel (one catalog entry).
    Model,
    /// One endpoint of the channel (the request's).
    Endpoint,
}

/// What happened to an attempt, as health sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The channel could not be reached: connect, TLS or proxy errors, or a reset before the
    /// request was sent.
    Unreachable,
    /// No usable response after connecting: a timeout, a reset mid-exchange, a malformed head
    /// or body, a 2xx body that does not parse, or a stream that broke off.
    Broken,
    /// An answer in a form the gateway cannot read (an unsupported `Content-Encoding`): says
    /// nothing about the provider's health, but the channel will answer the same way again.
    Unreadable,
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

/// What an [`Event`] does: the outcome applied to health and its scope, and whether the
/// request skips the channel's other models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The health outcome, if any (a success heals every scope it touched).
    pub outcome: Option<Outcome>,
    /// What the outcome is about.
    pub scope: Scope,
    /// The channel cannot serve this request with any model: the request skips its others.
    pub whole_channel: bool,
}

/// The one decision of what an attempt's event means for health (DESIGN §6; the table above).
pub(crate) fn verdict(e: Event) -> Verdict {
    let v = |outcome, scope, whole_channel| Verdict {
        outcome,
        scope,
        whole_channel,
    };
    match e {
        Event::Unreachable => v(Some(Outcome::Transient), Scope::Channel, true),
        // Timeouts and broken exchanges are the model's until a second model shows the
        // channel is the problem (escalation, in `live`); the request may try its other models.
        Event::Broken => v(Some(Outcome::Transient), Scope::Model, false),
        Event::Unreadable => v(None, Scope::Channel, true),
        Event::Status {
            status: 404,
            names_model: true,
            ..
        } => v(Some(Outcome::ModelMissing), Scope::Model, false),
        // A 404 that does not name the model is about the path: the provider lacks the
        // endpoint, which says nothing about its chat (or any other endpoint).
        Event::Status {
            status: 404 | 405 | 501,
            ..
        } => v(Some(Outcome::Unsupported), Scope::Endpoint, true),
        Event::Status {
            status,
            retry_after,
            ..
        } => match Outcome::of_status(status, retry_after) {
            Some(o @ Outcome::Transient) => v(Some(o), Scope::Model, false),
            o => v(o, Scope::Channel, true),
        },
        // An answer that says the provider's quota is spent takes the channel out until the
        // reset it names, as a 429 with Retry-After would.
        Event::Answered {
            quota_reset: Some(reset),
            ..
        } => v(
            Some(Outcome::RateLimited(Some(reset))),
            Scope::Channel,
            false,
        ),
        Event::Answered { status, .. } => match Outcome::of_status(status, None) {
            Some(o @ Outcome::Transient) => v(Some(o), Scope::Model, false),
            o => v(o, Scope::Channel, false),
        },
        Event::ClientGone => v(None, Scope::Channel, false),
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
            Outcome::Unsupported => Why::Unsupported,
        };
        self.failures = self.failures.saturating_add(1);
        let wait = match outcome {
            Outcome::RateLimited(Some(d)) => d.min(policy.retry_after_max),
            Outcome::Auth => policy.auth,
            Outcome::NoCredit => until_midnight.max(Duration::from_secs(60)),
            Outcome::ModelMissing | Outcome::Unsupported => policy.model_missing,
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
        let mut h = Health::default();
        h.apply(Outcome::Unsupported, t0, t0, &p, Duration::ZERO);
        assert_eq!(
            h.until,
            Some(t0 + Duration::from_secs(600)),
            "re-checked after model_missing"
        );
        assert_eq!(h.why, Why::Unsupported);
        assert_eq!(Outcome::of_status(400, None), None);
        assert_eq!(Outcome::of_status(529, None), Some(Outcome::Transient));
    }

    fn status(status: u16, names_model: bool) -> Verdict {
        verdict(Event::Status {
            status,
            retry_after: None,
            names_model,
        })
    }

    #[test]
    fn each_outcome_has_its_true_scope() {
        let v = |outcome, scope, whole_channel| Verdict {
            outcome: Some(outcome),
            scope,
            whole_channel,
        };
        // the model: a 404 naming it, 5xx and 529, timeouts and broken exchanges
        assert_eq!(
            status(404, true),
            v(Outcome::ModelMissing, Scope::Model, false)
        );
        assert_eq!(
            status(500, false),
            v(Outcome::Transient, Scope::Model, false)
        );
        assert_eq!(
            status(503, true),
            v(Outcome::Transient, Scope::Model, false)
        );
        assert_eq!(
            status(529, false),
            v(Outcome::Transient, Scope::Model, false)
        );
        assert_eq!(
            verdict(Event::Broken),
            v(Outcome::Transient, Scope::Model, false)
        );
        // the endpoint: a path the provider does not serve
        for s in [404, 405, 501] {
            assert_eq!(
                status(s, false),
                v(Outcome::Unsupported, Scope::Endpoint, true),
                "{s}"
            );
        }
        // the channel: unreachable, the key, the credit, the rate limit
        assert_eq!(
            verdict(Event::Unreachable),
            v(Outcome::Transient, Scope::Channel, true)
        );
        assert_eq!(status(401, false), v(Outcome::Auth, Scope::Channel, true));
        assert_eq!(status(403, false), v(Outcome::Auth, Scope::Channel, true));
        assert_eq!(
            status(402, false),
            v(Outcome::NoCredit, Scope::Channel, true)
        );
        let ra = Some(Duration::from_secs(3));
        assert_eq!(
            verdict(Event::Status {
                status: 429,
                retry_after: ra,
                names_model: false
            }),
            v(Outcome::RateLimited(ra), Scope::Channel, true)
        );
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
                status: 200,
                quota_reset: None
            })
            .outcome,
            Some(Outcome::Success)
        );
        // nothing: a client error relayed, the client leaving, an unreadable encoding
        assert_eq!(
            verdict(Event::Answered {
                status: 400,
                quota_reset: None
            })
            .outcome,
            None
        );
        assert_eq!(verdict(Event::ClientGone).outcome, None);
        let unreadable = verdict(Event::Unreadable);
        assert_eq!(unreadable.outcome, None);
        assert!(
            unreadable.whole_channel,
            "the channel would answer the same way again"
        );
    }
}
