//! Every default the config applies, with its unit and the reason for its value.
//! `configs/example.toml` repeats these; a test keeps the two in agreement.

use std::time::Duration;

/// Listen address: loopback only, so a config-less start never exposes provider keys.
pub const LISTEN: &str = "127.0.0.1:7601";
/// Worker threads; 0 means one per CPU in the process's affinity mask.
pub const WORKERS: usize = 0;
/// How often a worker polls for a new snapshot and flushes its reports (50 ms): cores agree on
/// cooldowns within one tick, and an idle worker wakes only 20 times a second.
pub const TICK: Duration = Duration::from_millis(50);
/// Largest request head in bytes (16 KiB), like nginx's large_client_header_buffers scale.
pub const MAX_HEADER_BYTES: u64 = 16 * 1024;
/// Most request headers (100); more is a 431.
pub const MAX_HEADERS: usize = 100;
/// Largest request body (32 MiB): room for a long conversation with inline images.
pub const MAX_BODY: u64 = 32 * 1024 * 1024;
/// Request and response body bytes a worker may hold (256 MiB) before it answers new requests
/// 503 `overloaded`: eight requests at the 32 MiB body limit, or four 64 MiB answers.
pub const MAX_BUFFERED: u64 = 256 * 1024 * 1024;
/// Largest 2xx JSON answer validated before the client sees a byte (8 MiB): answers are a few
/// KiB, so a truncated or garbled one fails over to the next channel; larger ones (long
/// embeddings batches) stream through unvalidated rather than wait to be parsed whole.
pub const MAX_VALIDATED_BODY: u64 = 8 * 1024 * 1024;
/// Most open downstream connections per worker; more get a 503 and are closed.
pub const MAX_CONNECTIONS: usize = 8192;
/// Time to receive a whole request head once its first byte arrived (10 s): slowloris guard.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to receive a whole request body after its head (30 s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive: how long an idle client connection stays open between requests (75 s, above
/// the 60 s idle timeout common in load balancers and SDK pools, so the client closes first).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// On shutdown, how long in-flight requests and streams may finish (10 s).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the control thread re-resolves upstream host names (60 s).
pub const DNS_REFRESH: Duration = Duration::from_secs(60);

/// Upstream connect timeout (5 s), per address tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// From request sent to the first response byte (120 s): a non-streamed completion sends
/// nothing until it has generated the whole answer.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest silence between two reads of an upstream response once it started (60 s).
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Whole upstream exchange, streams included (600 s, the OpenAI SDK's own default).
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(600);
/// Idle upstream connections kept per worker and upstream address (64).
pub const POOL_MAX_IDLE: usize = 64;
/// How long an idle upstream connection is kept for reuse (30 s): below the 60 s idle timeout of
/// common provider load balancers, so the gateway never writes into a connection being closed.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Channel priority (higher is tried first).
pub const PRIORITY: i32 = 0;
/// Channel weight among tied candidates.
pub const WEIGHT: f64 = 1.0;
/// Candidates tried per request before giving up (3).
pub const MAX_ATTEMPTS: usize = 3;
/// Strategy when neither the request nor its group names one.
pub const DEFAULT_STRATEGY: &str = "balanced";
/// Scores closer than this are tied and spread by weight (smooth weighted round-robin).
pub const TIE_EPSILON: f32 = 0.01;
/// First backoff after a transient failure (1 s); doubles per consecutive failure.
pub const COOLDOWN_BASE: Duration = Duration::from_secs(1);
/// Longest backoff (5 min).
pub const COOLDOWN_MAX: Duration = Duration::from_secs(300);
/// Longest `Retry-After` honoured (10 min): a provider asking for more is still retried then.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);
/// A channel answering 401/403 stays out this long (1 h) unless a reload changes its key.
pub const AUTH_COOLDOWN: Duration = Duration::from_secs(3600);
/// A (channel, model) answering 404 for the model stays out this long (1 h).
pub const MODEL_MISSING_COOLDOWN: Duration = Duration::from_secs(3600);
/// Panic routing: when every candidate is out only for a transient reason, try them anyway.
pub const PANIC_ROUTING: bool = true;
/// Panic attempts in flight per channel per worker (4).
pub const PANIC_MAX_IN_FLIGHT: usize = 4;
/// How long a request over the panic in-flight cap waits for a slot (2 s).
pub const PANIC_WAIT: Duration = Duration::from_secs(2);
/// Retries on the same channel when it is the last candidate left (1).
pub const SAME_CHANNEL_RETRIES: usize = 1;
/// Backoff before a same-channel retry (50 ms, full jitter).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// How far (as a fraction) a prompt estimate may exceed the largest context before the
/// gateway answers 400 itself rather than letting the largest-context upstream decide (10 %).
pub const CONTEXT_MARGIN: f32 = 0.1;
/// Base currency of prices, scores and budgets.
pub const CURRENCY: &str = "USD";
/// Model discovery runs at start and this often (6 h), with up to 10 % jitter.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Per-channel discovery timeout (10 s).
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Channels discovered at once (4): one slow provider never holds up the others.
pub const DISCOVERY_CONCURRENCY: usize = 4;
/// How often channels out of rotation get a recovery probe (15 s).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(15);
/// Probe timeout (5 s).
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin listener when `[admin]` has no `listen`.
pub const ADMIN_LISTEN: &str = "127.0.0.1:7602";
/// Path of the model list under a provider's base URL.
pub const MODELS_PATH: &str = "/models";

/// `[cluster] sync_interval`: how often the control plane syncs with Redis.
pub const CLUSTER_SYNC: Duration = Duration::from_millis(100);
/// `[cluster] prefix`.
pub const CLUSTER_PREFIX: &str = "sar";

/// `[telemetry] service_name`: the OTLP resource's `service.name`.
pub const TELEMETRY_SERVICE_NAME: &str = "smart-ai-router";
/// `[telemetry] sample_ratio`: every request without a client `traceparent` is traced.
pub const TELEMETRY_SAMPLE_RATIO: f64 = 1.0;
/// `[telemetry] export_interval`: spans are batched and posted this often (2 s; at most 5 s).
pub const TELEMETRY_EXPORT_INTERVAL: Duration = Duration::from_secs(2);
/// `[telemetry] timeout`: one export POST, connect to last response byte (5 s); a slower
/// collector costs dropped batches, never a request.
pub const TELEMETRY_TIMEOUT: Duration = Duration::from_secs(5);
/// `[telemetry] max_queue`: spans held for the next export (8192); more are dropped and counted.
pub const TELEMETRY_MAX_QUEUE: usize = 8192;
