//! The cluster helper thread: the only code that talks to Redis. The control thread hands it one
//! [`Round`] at a time (push this instance's changes, pull the fleet's state) and polls for the
//! [`Reply`]; the Redis client blocks, so it runs here and never on the control loop, let alone
//! a worker.
//!
//! A round is one pipelined round trip (plus nothing else): heartbeat, health changes, absolute
//! counters, demand and grants out; live instances, health changes, fleet sums and the other
//! instances' demand in. Connection loss: the round fails, the thread reconnects with
//! exponential backoff (100 ms → 5 s) and says so once; the first round on a new connection
//! reads the whole health table instead of the change stream and is marked `fresh`, so the
//! control thread pushes everything it holds again (Redis may have restarted empty).
//!
//! Invariants: at most one round in flight; every job gets exactly one reply; nothing here
//! logs the Redis URL (it may hold a password). Not here: deciding what to push or what the
//! fleet's state means (`cluster`).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // a blocking helper thread by design

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::Value;

use super::schema::{self, Keys};
use crate::config::RedisUrl;

/// Counter writes of one day and kind.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Quota counters (true) or usage totals (false).
    pub quota: bool,
    /// Field → this instance's absolute value.
    pub fields: Vec<(String, f64)>,
}

/// A request for (or a return of) part of a daily limit.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The counter (quota field).
    pub counter: String,
    /// What this instance believes it holds.
    pub held: f64,
    /// More (positive), a return (negative) or nothing (0: just read).
    pub want: f64,
    /// The configured daily limit.
    pub limit: f64,
}

/// One sync round.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Unix ms at the start of the round.
    pub now_ms: u64,
    /// Today (`YYYY-MM-DD`, UTC).
    pub day: String,
    /// Expiry of day keys.
    pub day_ttl_ms: u64,
    /// Changed health states: field, encoded value, and whether it is the healthy default.
    pub health: Vec<(String, String, bool)>,
    /// Counter writes.
    pub writes: Vec<Writes>,
    /// This instance's whole rate-limit demand (requests/s), or `None` to leave it.
    pub demand: Option<Vec<(String, f64)>>,
    /// Expiry of the demand hash.
    pub demand_ttl_ms: u64,
    /// Grants to ask for.
    pub asks: Vec<Ask>,
    /// Read this instance's own counters of today back (after a restart).
    pub restore: bool,
    /// Other instances whose demand to read.
    pub others: Vec<String>,
}

/// What a round brought back.
#[derive(Debug, Clone, Default)]
pub struct Pulled {
    /// The round ran on a new connection: push everything again.
    pub fresh: bool,
    /// Live instances (this one included).
    pub instances: Vec<String>,
    /// Health changes (fresh: the whole table), field → encoded value.
    pub health: Vec<(String, String)>,
    /// Fleet sums of today's quota counters.
    pub quota: HashMap<String, f64>,
    /// The other instances' demand, summed per field.
    pub demand: HashMap<String, f64>,
    /// Per ask, in order: (held now, granted in all).
    pub grants: Vec<(f64, f64)>,
    /// The day's grant table: `<counter>` → granted in all, `<counter>@<instance>` → held.
    pub granted: HashMap<String, f64>,
    /// This instance's own quota and usage counters of today (`restore`).
    pub restored: Option<(HashMap<String, f64>, HashMap<String, f64>)>,
    /// Round-trip time.
    pub rtt: Duration,
}

/// Work for the helper.
#[derive(Debug)]
pub enum Job {
    /// A sync round; the reply goes to the replies channel.
    Round(Box<Round>),
    /// Fleet usage totals over these days (field → sum), for the admin API.
    Usage(Vec<String>, Sender<Result<HashMap<String, f64>, String>>),
}

/// A round's outcome.
#[derive(Debug)]
pub enum Reply {
    /// The round ran: what it brought back.
    Done(Box<Pulled>),
    /// Not done (nothing it carried can be assumed written).
    Failed(String),
}

/// The helper's settings.
#[derive(Clone)]
pub struct Settings {
    /// The Redis URL (secret).
    pub url: String,
    /// This instance.
    pub instance: String,
    /// Key names.
    pub keys: Keys,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Where the connection goes: one Redis, the primary a set of Sentinels names (asked again on
/// every reconnect, so a failover is followed), or a Redis Cluster.
pub enum Target {
    /// `redis://`, `rediss://`, `redis+unix://`.
    Direct(Box<redis::Client>),
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/<service>[/<db>]` (`rediss+sentinel`
    /// for TLS to the primary); the credentials and db are the primary's. Asked here, with the
    /// round's timeouts (the client's own Sentinel support connects without any).
    Sentinel {
        /// `redis://host:port` of each sentinel.
        sentinels: Vec<String>,
        /// The primary's service name.
        service: String,
        /// `scheme://[auth@]` and `/db` to wrap around the address a sentinel names.
        scheme_auth: String,
        /// The primary's db.
        db: String,
    },
    /// `redis+cluster://[user:password@]host:port[,host:port…]` (`rediss+cluster` for TLS): a
    /// Redis Cluster. Every key of a fleet carries one hash tag, so each round goes to the one
    /// node that owns its slot (redirections are followed).
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// A connection to one Redis or to a cluster.
enum Con {
    One(redis::Connection),
    Many(Box<redis::cluster::ClusterConnection>),
}

/// A pipeline built for both kinds of connection at once (the client has one pipeline type
/// for each and no trait over them; a round is a few dozen commands, ten times a second).
struct Batch {
    one: redis::Pipeline,
    many: redis::cluster::ClusterPipeline,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            one: redis::pipe(),
            many: redis::cluster::cluster_pipe(),
        }
    }

    fn cmd(&mut self, name: &str) -> &mut Batch {
        self.one.cmd(name);
        self.many.cmd(name);
        self
    }

    fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Batch {
        let args = arg.to_redis_args();
        for a in &args {
            self.one.arg(a.as_slice());
            self.many.arg(a.as_slice());
        }
        self
    }

    fn ignore(&mut self) -> &mut Batch {
        self.one.ignore();
        self.many.ignore();
        self
    }

    fn add_command(&mut self, cmd: redis::Cmd) -> &mut Batch {
        self.one.add_command(cmd.clone());
        self.many.add_command(cmd);
        self
    }

    fn query(&self, con: &mut Con) -> redis::RedisResult<Vec<Value>> {
        match con {
            Con::One(c) => self.one.query(c),
            Con::Many(c) => self.many.query(c),
        }
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::Direct(_) => "Target::Direct",
            Target::Sentinel { .. } => "Target::Sentinel",
            Target::Cluster(_) => "Target::Cluster",
        })
    }
}

impl Target {
    /// Builds the client for a `[cluster] redis` URL that config has read (errors never repeat
    /// it: it may hold a password).
    pub(crate) fn new(url: &RedisUrl) -> Result<Target, String> {
        match url {
            RedisUrl::Direct(url) => redis::Client::open(url.expose())
                .map(|c| Target::Direct(Box::new(c)))
                .map_err(|e| format!("not a usable Redis URL ({:?})", e.kind())),
            RedisUrl::Sentinel {
                sentinels,
                service,
                scheme_auth,
                db,
            } => Ok(Target::Sentinel {
                sentinels: sentinels.clone(),
                service: service.clone(),
                scheme_auth: scheme_auth.expose().to_string(),
                db: db.clone(),
            }),
            // Bounded: the client otherwise retries 16 times with sleeps of up to minutes.
            RedisUrl::Cluster(nodes) => {
                redis::cluster::ClusterClient::builder(nodes.iter().map(|n| n.expose()))
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(Duration::from_secs(2))
                    .retries(1)
                    .build()
                    .map(|c| Target::Cluster(Box::new(c)))
                    .map_err(|e| format!("not a usable cluster URL ({:?})", e.kind()))
            }
        }
    }

    /// A connection with `timeout` on connect, reads and writes.
    fn connect(&mut self, timeout: Duration) -> redis::RedisResult<Con> {
        let c = match self {
            Target::Direct(c) => c.get_connection_with_timeout(timeout)?,
            Target::Sentinel {
                sentinels,
                service,
                scheme_auth,
                db,
            } => {
                // The first sentinel that names a primary wins; each is asked with the timeout.
                let mut last = None;
                let mut primary = None;
                for s in sentinels.iter() {
                    let asked = redis::Client::open(s.as_str())
                        .and_then(|c| c.get_connection_with_timeout(timeout))
                        .and_then(|mut c| {
                            c.set_read_timeout(Some(timeout))?;
                            c.set_write_timeout(Some(timeout))?;
                            redis::cmd("SENTINEL")
                                .arg("get-master-addr-by-name")
                                .arg(service.as_str())
                                .query::<Vec<String>>(&mut c)
                        });
                    match asked {
                        Ok(addr) if addr.len() == 2 => {
                            primary = Some(format!("{scheme_auth}{}:{}/{db}", addr[0], addr[1]));
                            break;
                        }
                        Ok(_) => {
                            last = Some(redis::RedisError::from((
                                redis::ErrorKind::Client,
                                "no sentinel knows the service",
                            )))
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let Some(primary) = primary else {
                    return Err(last.unwrap_or_else(|| {
                        redis::RedisError::from((redis::ErrorKind::Client, "no sentinel answered"))
                    }));
                };
                redis::Client::open(primary.as_str())?.get_connection_with_timeout(timeout)?
            }
            Target::Cluster(c) => {
                let c = c.get_connection()?;
                c.set_read_timeout(Some(timeout))?;
                c.set_write_timeout(Some(timeout))?;
                return Ok(Con::Many(Box::new(c)));
            }
        };
        c.set_read_timeout(Some(timeout))?;
        c.set_write_timeout(Some(timeout))?;
        Ok(Con::One(c))
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Starts the helper thread.
pub fn spawn(
    settings: Settings,
    jobs: Receiver<Job>,
    replies: Sender<Reply>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sar-cluster".into())
        .spawn(move || Helper::new(settings).run(&jobs, &replies))
}

struct Helper {
    s: Settings,
    target: Option<Target>,
    con: Option<Con>,
    /// The connection is new: its first round reads everything.
    fresh: bool,
    /// Last health change seen.
    cursor: String,
    /// No connection attempt before this.
    retry_at: Instant,
    backoff: Duration,
    /// The last failure was logged (log once per outage).
    down_logged: bool,
    /// A round has succeeded since the start.
    ever_up: bool,
    /// The latest failure, in words (never the URL).
    last_error: String,
}

impl Helper {
    fn new(s: Settings) -> Helper {
        Helper {
            target: RedisUrl::parse(&s.url).and_then(|u| Target::new(&u)).ok(),
            s,
            con: None,
            fresh: true,
            cursor: "0-0".into(),
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
            down_logged: false,
            ever_up: false,
            last_error: String::new(),
        }
    }

    fn run(mut self, jobs: &Receiver<Job>, replies: &Sender<Reply>) {
        loop {
            match jobs.recv_timeout(Duration::from_secs(1)) {
                Ok(Job::Round(r)) => {
                    let reply = match self.round(&r) {
                        Ok(p) => Reply::Done(Box::new(p)),
                        Err(e) => Reply::Failed(e),
                    };
                    if replies.send(reply).is_err() {
                        return;
                    }
                }
                Ok(Job::Usage(days, tx)) => {
                    let _ = tx.send(self.usage(&days));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// The connection, (re)connecting when the backoff allows.
    fn connection(&mut self) -> Result<&mut Con, String> {
        if self.con.is_none() {
            if Instant::now() < self.retry_at {
                return Err(format!("waiting to reconnect after: {}", self.last_error));
            }
            let Some(target) = &mut self.target else {
                return Err("the Redis URL is not usable".into());
            };
            let t = self.s.timeout;
            match target.connect(t) {
                Ok(c) => {
                    self.con = Some(c);
                    self.fresh = true;
                }
                Err(e) => return Err(self.down(&e)),
            }
        }
        self.con.as_mut().ok_or_else(|| "no connection".into())
    }

    /// Notes a failure: drops the connection when it is broken and schedules a reconnect.
    /// Any failure drops the connection: an I/O error obviously, but also a server error — a
    /// replica after a failover (READONLY), a Redis loading its data (LOADING), out of memory —
    /// is best met by connecting afresh (Sentinel then names the new primary). Logged once per
    /// outage; the backoff grows until a round succeeds.
    fn down(&mut self, e: &redis::RedisError) -> String {
        let msg = format!("{:?}: {e}", e.kind());
        self.last_error.clone_from(&msg);
        self.con = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        if !self.down_logged {
            self.down_logged = true;
            tracing::warn!(error = %msg, "cluster: Redis unreachable or failing; serving with local state and reconnecting with backoff");
        }
        msg
    }

    fn round(&mut self, r: &Round) -> Result<Pulled, String> {
        let started = Instant::now();
        let fresh = {
            self.connection()?;
            self.fresh
        };
        let k = &self.s.keys;
        let me = self.s.instance.as_str();
        let mut p = Batch::new();
        // Pushes (replies ignored).
        p.cmd("ZADD")
            .arg(k.instances())
            .arg(r.now_ms)
            .arg(me)
            .ignore();
        p.cmd("ZREMRANGEBYSCORE")
            .arg(k.instances())
            .arg("-inf")
            .arg(format!("({}", r.now_ms.saturating_sub(schema::LIVE_FOR_MS)))
            .ignore();
        for (f, v, healthy) in &r.health {
            // The table holds states worth knowing on joining: a healthy one is the default.
            if *healthy {
                p.cmd("HDEL").arg(k.health()).arg(f).ignore();
            } else {
                p.cmd("HSET").arg(k.health()).arg(f).arg(v).ignore();
            }
            p.cmd("XADD")
                .arg(k.health_log())
                .arg("MAXLEN")
                .arg("~")
                .arg(schema::LOG_CAP)
                .arg("*")
                .arg("f")
                .arg(f)
                .arg("v")
                .arg(v)
                .ignore();
        }
        for w in r.writes.iter().filter(|w| !w.fields.is_empty()) {
            let key = if w.quota {
                k.quota_prefix(&w.day)
            } else {
                k.usage_prefix(&w.day)
            } + me;
            let mut hset = redis::cmd("HSET");
            hset.arg(&key);
            for (f, v) in &w.fields {
                hset.arg(f).arg(v.to_string());
            }
            p.add_command(hset).ignore();
            p.cmd("PEXPIRE").arg(&key).arg(r.day_ttl_ms).ignore();
            p.cmd("SADD").arg(k.members(&w.day)).arg(me).ignore();
            p.cmd("PEXPIRE")
                .arg(k.members(&w.day))
                .arg(r.day_ttl_ms)
                .ignore();
        }
        if let Some(demand) = &r.demand {
            let key = k.demand(me);
            p.cmd("DEL").arg(&key).ignore();
            if !demand.is_empty() {
                let mut hset = redis::cmd("HSET");
                hset.arg(&key);
                for (f, v) in demand {
                    hset.arg(f).arg(v.to_string());
                }
                p.add_command(hset).ignore();
                p.cmd("PEXPIRE").arg(&key).arg(r.demand_ttl_ms).ignore();
            }
        }
        for a in &r.asks {
            p.cmd("EVAL")
                .arg(schema::GRANT)
                .arg(2)
                .arg(k.grants(&r.day))
                .arg(k.instances())
                .arg(&a.counter)
                .arg(me)
                .arg(a.held.to_string())
                .arg(a.want.to_string())
                .arg(a.limit.to_string())
                .arg(2 * 86_400_000u64)
                .arg(k.quota_prefix(&r.day))
                .arg(r.now_ms.saturating_sub(schema::LIVE_FOR_MS));
        }
        // Pulls.
        p.cmd("ZRANGEBYSCORE")
            .arg(k.instances())
            .arg(r.now_ms.saturating_sub(schema::LIVE_FOR_MS))
            .arg("+inf");
        if fresh {
            p.cmd("XREVRANGE")
                .arg(k.health_log())
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            p.cmd("HGETALL").arg(k.health());
        } else {
            p.cmd("XREAD")
                .arg("COUNT")
                .arg(schema::LOG_CAP)
                .arg("STREAMS")
                .arg(k.health_log())
                .arg(&self.cursor);
        }
        p.cmd("EVAL")
            .arg(schema::SUM)
            .arg(1)
            .arg(k.members(&r.day))
            .arg(k.quota_prefix(&r.day));
        p.cmd("HGETALL").arg(k.grants(&r.day));
        for o in &r.others {
            p.cmd("HGETALL").arg(k.demand(o));
        }
        if r.restore {
            p.cmd("HGETALL").arg(k.quota_prefix(&r.day) + me);
            p.cmd("HGETALL").arg(k.usage_prefix(&r.day) + me);
        }
        let con = self.connection()?;
        let values: Vec<Value> = match p.query(con) {
            Ok(v) => v,
            Err(e) => return Err(self.down(&e)),
        };
        let mut it = values.into_iter();
        let mut next = || it.next().unwrap_or(Value::Nil);
        let mut out = Pulled {
            fresh,
            ..Pulled::default()
        };
        for _ in &r.asks {
            let v = strings(&next());
            let num = |i: usize| v.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            out.grants.push((num(0), num(1)));
        }
        out.instances = strings(&next());
        if fresh {
            // An empty log (a Redis that restarted empty) starts from the beginning.
            self.cursor = stream_entries(&next())
                .last()
                .map_or_else(|| "0-0".to_string(), |e| e.0.clone());
            out.health = pairs(&next());
        } else {
            // [[stream, [[id, [f, v, …]], …]]] or nil
            // RESP2: [[stream, entries]]; RESP3 (`?protocol=resp3`): {stream: entries}.
            let entries = match next() {
                Value::Array(streams) => match streams.into_iter().next() {
                    Some(Value::Array(mut s)) if s.len() == 2 => s.pop(),
                    _ => None,
                },
                Value::Map(m) => m.into_iter().next().map(|(_, v)| v),
                _ => None,
            };
            if let Some(entries) = entries {
                for (id, fields) in stream_entries(&entries) {
                    let m: HashMap<String, String> = fields.into_iter().collect();
                    if let (Some(f), Some(v)) = (m.get("f"), m.get("v")) {
                        out.health.push((f.clone(), v.clone()));
                    }
                    self.cursor = id;
                }
            }
        }
        out.quota = numbers(pairs(&next()));
        out.granted = numbers(pairs(&next()));
        for _ in &r.others {
            for (f, v) in numbers(pairs(&next())) {
                *out.demand.entry(f).or_default() += v;
            }
        }
        if r.restore {
            let q = numbers(pairs(&next()));
            let u = numbers(pairs(&next()));
            out.restored = Some((q, u));
        }
        if self.down_logged || !self.ever_up {
            tracing::info!(instance = %self.s.instance, "cluster: in sync with Redis");
        }
        self.fresh = false;
        self.ever_up = true;
        self.down_logged = false;
        self.backoff = BACKOFF_MIN;
        out.rtt = started.elapsed();
        Ok(out)
    }

    /// Sums here, not in a script: a month of days must not hold Redis up for the fleet's
    /// sync rounds.
    fn usage(&mut self, days: &[String]) -> Result<HashMap<String, f64>, String> {
        let k = self.s.keys.clone();
        let mut p = Batch::new();
        for d in days {
            p.cmd("SMEMBERS").arg(k.members(d));
        }
        let members: Vec<Value> = match p.query(self.connection()?) {
            Ok(v) => v,
            Err(e) => return Err(self.down(&e)),
        };
        let mut p = Batch::new();
        let mut any = false;
        for (d, m) in days.iter().zip(&members) {
            for instance in strings(m) {
                p.cmd("HGETALL").arg(k.usage_prefix(d) + &instance);
                any = true;
            }
        }
        if !any {
            return Ok(HashMap::new());
        }
        let values: Vec<Value> = match p.query(self.connection()?) {
            Ok(v) => v,
            Err(e) => return Err(self.down(&e)),
        };
        let mut out: HashMap<String, f64> = HashMap::new();
        for v in values {
            for (f, n) in numbers(pairs(&v)) {
                *out.entry(f).or_default() += n;
            }
        }
        Ok(out)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// An array of strings.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) | Value::Set(a) => a.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// A flat `[k, v, k, v …]` array or a map.
fn pairs(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Array(a) => a
            .chunks_exact(2)
            .filter_map(|c| Some((text(&c[0])?, text(&c[1])?)))
            .collect(),
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => Vec::new(),
    }
}

fn numbers(p: Vec<(String, String)>) -> HashMap<String, f64> {
    p.into_iter()
        .filter_map(|(k, v)| Some((k, v.parse::<f64>().ok().filter(|x| x.is_finite())?)))
        .collect()
}

/// `[[id, [f, v, …]], …]`.
fn stream_entries(v: &Value) -> Vec<(String, Vec<(String, String)>)> {
    let Value::Array(a) = v else {
        return Vec::new();
    };
    a.iter()
        .filter_map(|e| match e {
            Value::Array(e) if e.len() == 2 => Some((text(&e[0])?, pairs(&e[1]))),
            _ => None,
        })
        .collect()
}
