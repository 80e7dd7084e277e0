//! smart-ai-router: an OpenAI-compatible LLM gateway, thread-per-core.
//!
//! ```text
//!                  ┌──────────────────────── control thread ─────────────────────────┐
//!   config.toml ──►│ load + validate ─► resolve DNS ─► build Snapshot{epoch}          │
//!   signals        │ merge worker reports ─► publish to every worker (latest wins)    │
//!                  └───────┬───────────────────────────────────────────▲─────────────┘
//!           Arc<Snapshot>  │ crossbeam, try_recv on a tick     reports │ crossbeam
//!         ┌────────────────┼────────────────┬──────────────────────────┘
//!    worker 0          worker 1   …     worker N-1        (one per core, pinned)
//!    monoio io_uring loop · own SO_REUSEPORT listener · Rc<Snapshot> · upstream pool
//! ```
//!
//! One request never leaves the worker that accepted it: `server` reads the head, asks the
//! handler (`api`) to judge it — route, key, allowance — before reading the body within limits,
//! `api` reads what routing needs from a simd-json parse of a copy of the body
//! (`providers::openai::ingress`), `proxy` runs the request's session — admit, plan (`routing`
//! orders the candidate channels), attempt through `upstream` pools, relay (SSE event by event,
//! translated by `providers` when families differ), finish (the usage record) — and `server`
//! writes the answer.
//!
//! # Invariants
//! * The data plane (`worker`, `server`, `api`, `proxy`, `upstream`, `providers`, `routing`,
//!   `catalog`, `h1`) never blocks and never locks: `clippy.toml` bans mutexes, blocking DNS,
//!   `thread::sleep`, blocking channel receives and file reads, and this crate denies the lint.
//!   Only code off the data plane opts out, each with its reason on the attribute: `control`
//!   (and its `store` and `dns` helpers), `cluster::helper` (the Redis client's thread),
//!   `telemetry` (the OTLP exporter's thread),
//!   `bootstrap`, `notify`, `cmd::keys`, the config and certificate readers, and `main`.
//! * A [`snapshot::Snapshot`] is immutable and published whole, stamped with an epoch.
//! * Request bodies pass through byte for byte except targeted edits (the `model` value, router
//!   fields, and on OpenAI-family streams the `stream_options` the gateway writes itself).
//! * Every error a client sees is OpenAI-shaped with the right status ([`error::Error`]).
//! * Secrets never reach logs, files or admin output ([`secret::Secret`] redacts itself).
//! * A request is judged on its head — framing and size, route, key, and a Gemini path's model
//!   allowance — before any body byte is read or `100 Continue` sent (`api::Gateway`'s
//!   `judge`, through the `server::Handler` trait).
//! * Usage is never optional: every answer is accounted, with its own usage or the gateway's
//!   estimate (`usage_estimated`), so budgets, quotas and `tpm` always act.
//! * Memory is bounded per worker: the bytes of bodies held count against
//!   `server.max_buffered`; over it new requests get 503 `overloaded`.
//! * Every upstream outcome is judged at its true scope — channel, (channel, model) or
//!   (channel, endpoint) — by one pure function, `live::health::verdict` (README "Routing"
//!   has the table): one model's 5xx or one missing endpoint never benches a channel. When
//!   nothing is left the answer says why: 429 with `Retry-After` when only rate limits stand in
//!   the way, 400 `context_length_exceeded` when only context does, panic routing when only
//!   transient backoffs do, else 503 with `Retry-After` when the recovery time is known.
//! * Client headers reach upstreams only from an allow-list plus the provider's
//!   `forward_headers` ([`h1::forwarding`]); the operator's account facts
//!   (`x-ratelimit-*`, organisation) never reach clients.
//!
//! # Layers
//! Every top-level module has a rank in `tests/layers.rs` and names only modules of lower rank
//! (the test fails on an edge that runs up; `scripts/layers.sh` prints the graph):
//!
//! | layer | modules (low to high) |
//! |---|---|
//! | leaf | `json`, `clock`, `secret`, `tokens`, `trace`, `expr`; `h1`, `error`, `strategy`; `metrics` |
//! | model | `presets`, `pricing`, `config`, `channel`, `catalog`, `live`, `auth`, `snapshot` |
//! | core | `routing`, `providers`, `limits`, `usage`, `ledger` |
//! | data plane | `upstream`, `worker`, `server`, `proxy`, `api` |
//! | control | `notify`, `logging`, `mock`, `cluster`, `telemetry`, `control` |
//! | entry | `bootstrap`, `cmd` (`cli`, `import`, `keys`, `route`) |
//!
//! Placements the code argues for:
//! * `metrics` is a leaf, not control: workers record into its histogram and store its gauges
//!   block, so it sits below them; the families that read control state stay in `control`.
//! * `ledger` (the day's quota and budget counters) is pure core, not control: it does no I/O,
//!   and both `cluster` (whose `Fleet` judges a counter fleet-wide) and `control` (which feeds
//!   it usage records) build on it, so neither has to import the other's internals.
//! * `presets` (what a provider `kind` means) and `channel` (a channel as the data plane uses
//!   it, TLS and proxy-tunnel settings as plain data) are model modules of their own: `config`
//!   and `catalog` need them, and `upstream` only runs the handshakes they describe.
//! * `live` (health and latency state, and the one `health::verdict` of what an attempt's
//!   outcome does) is model, not data plane: snapshots carry it and routing reads it.
//! * `server` is generic over a `Handler` (the API): it owns connections and framing, `api`
//!   owns meaning, and the worker thread's accept loop lives in `server::accept`.
//! * `mock` sits in the control layer: it runs its own threads on the worker runtime.
//! * `trace` (W3C trace context and the sampling decision) is a leaf: workers use it and the
//!   usage record carries its ids; `telemetry` (spans from usage records, the exporter thread)
//!   is control: only the control thread feeds it, so exporting never touches a worker.
//!
//! # Public surface
//! Items are `pub(crate)` unless something outside the crate names them: the integration
//! tests (`tests/`), the benches, the fuzz targets (`fuzz/`, which replay through
//! `tests/fuzz_corpus.rs`), `perf/loadgen.rs`, or the binary (`main.rs`). Modules no such
//! caller needs are crate-private as a whole (`api`, `auth`, `clock`, `ledger`, `limits`,
//! `live`, `metrics`, `pricing`, `server`, `tokens`, `upstream`, `usage`); the compiler's
//! `unreachable_pub` lint keeps the rest honest.

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub(crate) mod api;
pub(crate) mod auth;
pub mod bootstrap;
pub mod catalog;
pub mod channel;
pub(crate) mod clock;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod control;
pub mod error;
pub mod expr;
pub mod h1;
pub mod json;
pub(crate) mod ledger;
pub(crate) mod limits;
pub(crate) mod live;
pub mod logging;
pub(crate) mod metrics;
pub mod mock;
pub mod notify;
pub mod presets;
pub(crate) mod pricing;
pub mod providers;
pub mod proxy;
pub mod routing;
pub mod secret;
pub(crate) mod server;
pub mod snapshot;
pub mod strategy;
pub mod telemetry;
pub(crate) mod tokens;
pub(crate) mod trace;
pub(crate) mod upstream;
pub(crate) mod usage;
pub mod worker;

/// The crate version, as reported by `GET /` and the startup banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
