//! Two gateway instances sharing one real `redis-server` (`[cluster]`) behave as one gateway:
//! a cooldown decided on one reaches the other's workers within a second; a client key's
//! `rpm` holds across both within a few percent; a daily budget spent through one blocks the
//! other (at most one request of overshoot each); and Redis killed and restarted under load
//! fails no client request, shows `smart_router_cluster_connected 0` meanwhile, and the
//! fleet's usage totals are whole again after it returns.
//!
//! Each test starts its own `redis-server` on a free loopback port, without persistence (a
//! restart comes back empty, the hardest case for reconciliation). `scripts/test.sh` installs
//! it from Debian's packages; `SAR_REDIS_SERVER` names another binary.

#![cfg(feature = "cluster")]
#![allow(clippy::disallowed_methods)] // tests block on sockets, processes and files

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use simd_json::prelude::*;
use smart_ai_router::bootstrap::Gateway;
use smart_ai_router::mock::{MockConfig, MockHandle};
use smart_ai_router::secret::{digest, hex};

const DRIVER: &str = "io_uring_or_auto";
const KEY: &str = "sk-fleet-team";

/// A `redis-server` on a loopback port, stopped on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
    /// Arguments beyond the defaults (e.g. cluster mode).
    extra: Vec<String>,
    /// This test's key prefix: tests never see each other's keys.
    prefix: String,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Redis {
        let mut r = Redis {
            child: None,
            port: 0,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            dir: temp_dir("redis"),
            prefix: format!("t{}", free_port()),
        };
        // A port found free may be taken by another test's server before ours binds it: our
        // child then exits, and another port is tried.
        for _ in 0..10 {
            r.port = free_port();
            if r.try_start() {
                return r;
            }
        }
        panic!("redis-server did not start");
    }

    fn binary() -> String {
        if let Ok(b) = std::env::var("SAR_REDIS_SERVER") {
            return b;
        }
        for b in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
            if std::path::Path::new(b).exists() {
                return b.into();
            }
        }
        "redis-server".into()
    }

    /// Starts again on the same port, empty.
    fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server restarts on port {}",
            self.port
        );
    }

    /// Starts on `self.port`; false when our server exited (the port was taken).
    fn try_start(&mut self) -> bool {
        let child = Command::new(Self::binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--dir",
            ])
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test.sh installs it; or set SAR_REDIS_SERVER)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited {
                self.child = None;
                return false;
            }
            if self
                .command("PING\r\n")
                .is_some_and(|r| r.starts_with("+PONG"))
            {
                // Answered, and still ours (not another test's server on the same port).
                std::thread::sleep(Duration::from_millis(50));
                return self
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Kills it (SIGKILL: no goodbye to its clients).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One inline command; the raw reply.
    fn command(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(cmd.as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One instance's config: one channel on `mock`, a client key with `key_limits`, and
/// `[cluster]` on `redis` as `name`.
fn instance(mock: &MockHandle, redis: &Redis, name: &str, key_limits: &str, extra: &str) -> String {
    format!(
        r#"[server]
tick = "10ms"
{}
pricing = {{ input = 1000.0, output = 1000.0 }}

[[auth.keys]]
name = "team"
sha256 = "{}"
{key_limits}

[state]
dir = "{}"

[cluster]
redis = "{}"
instance_id = "{name}"
sync_interval = "50ms"
prefix = "{}"
{extra}
"#,
        one_channel(mock.addr(), &["m"]).trim_end(),
        hex(&digest(KEY.as_bytes())),
        temp_dir(&format!("cluster-{name}")).display(),
        redis.url(),
        redis.prefix,
    )
}

/// Two instances on one Redis, both connected and seeing each other.
fn pair(mock: &MockHandle, redis: &Redis, key_limits: &str) -> (Gateway, Gateway) {
    let a = gateway(DRIVER, &instance(mock, redis, "gw-a", key_limits, ""));
    let b = gateway(DRIVER, &instance(mock, redis, "gw-b", key_limits, ""));
    for gw in [&a, &b] {
        eventually(
            Duration::from_secs(10),
            "both instances in the fleet",
            || {
                let c = admin(gw, "GET", "/admin/cluster", None, "").json();
                (c["connected"].as_bool() == Some(true)
                    && c["instances"].as_array().map(|a| a.len()) == Some(2))
                .then_some(())
            },
        );
    }
    (a, b)
}

fn chat(c: &mut Client, headers: &[(&str, &str)]) -> Response {
    let auth = format!("Bearer {KEY}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    c.post("/v1/chat/completions", &all, &chat_body("m", false))
}

fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let text = admin(gw, "GET", "/metrics", None, "").text();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_cooldown_decided_on_one_instance_reaches_the_others_workers_within_a_second() {
    let redis = Redis::start();
    let m = mock(MockConfig::default());
    let (a, b) = pair(&m, &redis, "");
    let mut ca = Client::connect(a.local_addr());
    let mut cb = Client::connect(b.local_addr());
    assert_eq!(
        chat(&mut cb, &[]).status,
        200,
        "B serves while the channel is fine"
    );
    // The channel answers A with a 429 and Retry-After: 30: A cools it down for 30 s.
    let r = chat(
        &mut ca,
        &[("x-mock-status", "429"), ("x-mock-retry-after", "30")],
    );
    let decided = Instant::now();
    assert_eq!(r.status, 429, "{}", r.text());
    // B, idle meanwhile (its own successes after A's 429 would be newer news: the later
    // observation wins, on one instance as across the fleet), learns of it within a second …
    let took = eventually(Duration::from_secs(5), "B sees the cooldown", || {
        let ch = admin(&b, "GET", "/admin/channels/up-1", None, "").json();
        (ch["state"].as_str() == Some("cooling")).then(|| decided.elapsed())
    });
    eprintln!("cooldown propagation A → B: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // … and B's workers route by it: the gateway's own 429 with the time left, the upstream
    // never asked.
    settled(&b);
    drain(&m);
    let r = chat(&mut cb, &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("up-1"), "{}", r.text());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((25..=30).contains(&wait), "Retry-After {wait}");
    assert!(
        requests(&drain(&m)).is_empty(),
        "B sent to a channel the fleet cooled down"
    );
    let ch = admin(&b, "GET", "/admin/channels/up-1", None, "").json();
    assert_eq!(ch["state"].as_str(), Some("cooling"), "{ch:?}");
    // Clearing it on B heals it on A too.
    admin(&b, "DELETE", "/admin/cooldowns/up-1", None, "");
    eventually(Duration::from_secs(2), "A serves again", || {
        (chat(&mut ca, &[]).status == 200).then_some(())
    });
}

#[test]
fn an_endpoint_a_provider_lacks_is_known_to_the_whole_fleet() {
    let redis = Redis::start();
    let m = mock(MockConfig {
        missing_paths: vec!["/responses".into()],
        ..Default::default()
    });
    let (a, b) = pair(&m, &redis, "");
    let auth = format!("Bearer {KEY}");
    let r = Client::connect(a.local_addr()).post(
        "/v1/responses",
        &[("authorization", auth.as_str())],
        r#"{"model":"m","input":"hi"}"#,
    );
    // Served translated to chat after the provider's 404 on /responses.
    assert_eq!(r.status, 200, "{}", r.text());
    // B learns the (channel, endpoint) scope — and only it: its chat still goes through.
    eventually(
        Duration::from_secs(5),
        "B lists the endpoint cooldown",
        || {
            let l = admin(&b, "GET", "/admin/cooldowns", None, "").json();
            l["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| {
                    c["scope"].as_str() == Some("endpoint")
                        && c["endpoint"].as_str() == Some("responses")
                })
                .then_some(())
        },
    );
    let mut cb = Client::connect(b.local_addr());
    assert_eq!(chat(&mut cb, &[]).status, 200);
    // B's workers stop asking the provider's /responses (once the scope reaches them with
    // the next snapshot): a request is then translated at once.
    eventually(
        Duration::from_secs(5),
        "B translates without asking /responses",
        || {
            drain(&m);
            let r = Client::connect(b.local_addr()).post(
                "/v1/responses",
                &[("authorization", auth.as_str())],
                r#"{"model":"m","input":"hi"}"#,
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let paths: Vec<String> = requests(&drain(&m))
                .iter()
                .map(|r| r.path().to_string())
                .collect();
            (paths == ["/v1/chat/completions"]).then_some(())
        },
    );
    // Clearing on B clears it on A.
    admin(&b, "DELETE", "/admin/cooldowns", None, "");
    eventually(Duration::from_secs(5), "A cleared too", || {
        let l = admin(&a, "GET", "/admin/cooldowns", None, "").json();
        l["data"].as_array().unwrap().is_empty().then_some(())
    });
}

#[test]
fn a_keys_rpm_holds_across_two_instances() {
    let redis = Redis::start();
    let m = mock(MockConfig::default());
    // 1,200 per minute = 20/s for the fleet (each instance alone would admit 20/s).
    let (a, b) = pair(&m, &redis, "rpm = 1200");
    // Spend the burst (one minute's worth) through both.
    let spend = |gw: &Gateway| {
        let mut c = Client::connect(gw.local_addr());
        for _ in 0..3_000 {
            if chat(&mut c, &[]).status == 429 {
                return;
            }
        }
        panic!("rpm never refused");
    };
    std::thread::scope(|s| {
        s.spawn(|| spend(&a));
        s.spawn(|| spend(&b));
    });
    // Offer 30/s to each (60/s in all) for 8 s; count what the fleet admits.
    let window = Duration::from_secs(8);
    let admitted = AtomicU64::new(0);
    let offered = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for gw in [&a, &b] {
            let (admitted, offered) = (&admitted, &offered);
            s.spawn(move || {
                let mut c = Client::connect(gw.local_addr());
                let mut n = 0u32;
                while start.elapsed() < window {
                    let due = start + Duration::from_millis(33) * n;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    n += 1;
                    offered.fetch_add(1, Ordering::Relaxed);
                    let r = chat(&mut c, &[]);
                    match r.status {
                        200 => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        429 => assert_eq!(r.error_code(), "rate_limit_exceeded", "{}", r.text()),
                        s => panic!("unexpected status {s}: {}", r.text()),
                    }
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    let rate = admitted / secs;
    eprintln!(
        "fleet rpm 1200 (20/s): admitted {admitted} of {} in {secs:.2} s = {rate:.2}/s ({:+.1} %)",
        offered.load(Ordering::Relaxed),
        (rate / 20.0 - 1.0) * 100.0
    );
    // ±10 % is the target (measured in the closing note); the test leaves room for a noisy box,
    // and still fails when each instance enforces the whole rate (40/s).
    assert!((16.0..=24.0).contains(&rate), "fleet admitted {rate:.2}/s");
}

#[test]
fn a_daily_budget_spent_through_one_instance_blocks_the_other() {
    let redis = Redis::start();
    let m = mock(MockConfig::default());
    // ~27 tokens at 1000 per 1M tokens: ~0.027 a request; the key may spend 0.25 a day.
    let (a, b) = pair(&m, &redis, "daily_budget = 0.25");
    // Spend it through A, a request every 25 ms (slower than a tick plus a control-loop turn:
    // the overshoot each instance may add is what it admits within that time).
    let mut ca = Client::connect(a.local_addr());
    let mut through_a = 0;
    let refused = loop {
        let r = chat(&mut ca, &[]);
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        through_a += 1;
        assert!(through_a < 100, "the budget never ran out");
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(refused.error_code(), "budget_exhausted");
    // Within two sync intervals and a tick, B knows: it refuses without admitting anything.
    std::thread::sleep(Duration::from_millis(300));
    let mut cb = Client::connect(b.local_addr());
    let r = chat(&mut cb, &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "budget_exhausted", "{}", r.text());
    let through_b = 0;
    // The fleet's spend: within the budget but for the last request of each instance.
    let usage = admin(&b, "GET", "/admin/usage?scope=fleet&group_by=key", None, "").json();
    let spent = usage["total"]["cost"].as_f64().expect("fleet cost");
    let per_request = spent / f64::from(through_a + through_b);
    eprintln!(
        "budget 0.25: A admitted {through_a}, B {through_b}; fleet spent {spent:.4} \
         ({per_request:.4} a request)"
    );
    assert!(spent >= 0.25 - per_request, "stopped early: {spent}");
    assert!(spent <= 0.25 + 2.0 * per_request, "overshot: {spent}");
    // Budgets survive a restart: a new instance B' with B's id and a fresh state dir still
    // refuses (the fleet's counters live in Redis).
    drop(b);
    let b2 = gateway(
        DRIVER,
        &instance(&m, &redis, "gw-b", "daily_budget = 0.25", ""),
    );
    let mut c2 = Client::connect(b2.local_addr());
    eventually(
        Duration::from_secs(5),
        "the restarted instance refuses",
        || {
            let r = chat(&mut c2, &[]);
            (r.status == 429).then_some(())
        },
    );
}

#[test]
fn redis_killed_and_restarted_under_load_fails_no_request_and_reconciles_usage() {
    let mut redis = Redis::start();
    let m = mock(MockConfig::default());
    let (a, b) = pair(&m, &redis, "");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for addr in [a.local_addr(), b.local_addr()] {
        for _ in 0..2 {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            load.push(std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    // ~300 requests/s per thread: load, without starving the other tests of
                    // this binary (they measure rates) of the box's two cores.
                    std::thread::sleep(Duration::from_millis(3));
                    let r = chat(&mut c, &[]);
                    if r.status == 200 {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {} {}", r.status, r.text());
                    }
                }
            }));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    redis.kill();
    let killed_at = served.load(Ordering::Relaxed);
    for gw in [&a, &b] {
        eventually(
            Duration::from_secs(5),
            "connected 0 while Redis is down",
            || (metric(gw, "smart_router_cluster_connected") == Some(0.0)).then_some(()),
        );
    }
    std::thread::sleep(Duration::from_millis(1_000));
    let during = served.load(Ordering::Relaxed) - killed_at;
    redis.restart();
    for gw in [&a, &b] {
        eventually(Duration::from_secs(10), "reconnected", || {
            (metric(gw, "smart_router_cluster_connected") == Some(1.0)).then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let served = served.load(Ordering::Relaxed);
    eprintln!("served {served} requests, {during} of them while Redis was down");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "client requests failed");
    assert!(during > 0, "nothing was served while Redis was down");
    // Redis came back empty; both instances pushed their whole day again.
    eventually(Duration::from_secs(5), "fleet usage reconciled", || {
        let u = admin(&a, "GET", "/admin/usage?scope=fleet", None, "").json();
        (u["total"]["requests"].as_u64() == Some(served)).then_some(())
    });
}

#[test]
fn two_instances_spending_one_budget_at_once_overshoot_by_at_most_a_request_each() {
    let redis = Redis::start();
    let m = mock(MockConfig::default());
    let (a, b) = pair(&m, &redis, "daily_budget = 0.5");
    // Both spend it at once, a request every 25 ms each, until each is refused.
    let admitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for gw in [&a, &b] {
            let admitted = &admitted;
            s.spawn(move || {
                let mut c = Client::connect(gw.local_addr());
                for _ in 0..200 {
                    let r = chat(&mut c, &[]);
                    if r.status == 429 {
                        assert_eq!(r.error_code(), "budget_exhausted", "{}", r.text());
                        return;
                    }
                    assert_eq!(r.status, 200, "{}", r.text());
                    admitted.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(25));
                }
                panic!("the budget never ran out");
            });
        }
    });
    let admitted = admitted.load(Ordering::Relaxed);
    // Both instances have pushed their last counts (a few sync intervals).
    std::thread::sleep(Duration::from_millis(300));
    let usage = admin(&a, "GET", "/admin/usage?scope=fleet", None, "").json();
    let spent = usage["total"]["cost"].as_f64().expect("fleet cost");
    let per_request = spent / admitted as f64;
    eprintln!(
        "budget 0.5 spent by two instances at once: {admitted} requests, fleet spent {spent:.4} \
         ({:+.2} requests over)",
        (spent - 0.5) / per_request
    );
    let cluster = admin(&a, "GET", "/admin/cluster", None, "").text();
    assert!(
        spent >= 0.5 - per_request,
        "stopped early: {spent}; {cluster}"
    );
    assert!(
        spent <= 0.5 + 2.0 * per_request,
        "overshot: {spent}; {cluster}"
    );
}

/// A Redis Sentinel (the same binary, `--sentinel`) watching `primary` as `mymaster`.
struct Sentinel {
    child: Child,
    port: u16,
}

impl Sentinel {
    fn start(primary: &Redis) -> Sentinel {
        let port = free_port();
        let conf = primary.dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n",
                primary.dir.display(),
                primary.port
            ),
        )
        .expect("sentinel config written");
        let child = Command::new(Redis::binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        let s = Sentinel { child, port };
        eventually(
            Duration::from_secs(10),
            "the sentinel knows the primary",
            || {
                let mut c = TcpStream::connect(("127.0.0.1", s.port)).ok()?;
                c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                c.write_all(b"SENTINEL get-master-addr-by-name mymaster\r\n")
                    .ok()?;
                let mut buf = [0u8; 512];
                let n = c.read(&mut buf).ok()?;
                String::from_utf8_lossy(&buf[..n])
                    .contains(&primary.port.to_string())
                    .then_some(())
            },
        );
        s
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_instance_finds_its_redis_through_sentinel() {
    let redis = Redis::start();
    let sentinel = Sentinel::start(&redis);
    let m = mock(MockConfig::default());
    let text = instance(&m, &redis, "gw-s", "", "").replace(
        &format!("redis = \"{}\"", redis.url()),
        &format!(
            "redis = \"redis+sentinel://127.0.0.1:{}/mymaster/0\"",
            sentinel.port
        ),
    );
    assert!(text.contains("redis+sentinel://"), "{text}");
    let gw = gateway(DRIVER, &text);
    eventually(
        Duration::from_secs(10),
        "connected through the sentinel",
        || {
            let c = admin(&gw, "GET", "/admin/cluster", None, "").json();
            (c["connected"].as_bool() == Some(true)).then_some(())
        },
    );
    // The heartbeat landed on the primary the sentinel named.
    let reply = redis
        .command(&format!("ZSCORE {{{}}}:instances gw-s\r\n", redis.prefix))
        .expect("primary answers");
    assert!(
        reply.starts_with('$') && !reply.starts_with("$-1"),
        "{reply}"
    );
}

#[test]
fn grants_never_exceed_the_limit_and_come_back_from_instances_that_are_gone() {
    use smart_ai_router::cluster::schema::{GRANT, Keys};
    let redis = Redis::start();
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .expect("test connection");
    let keys = Keys::new(&redis.prefix);
    let now: u64 = 1_800_000_000_000;
    let (day, c) = ("2027-01-15", "key|team|cost");
    let _: () = redis::cmd("ZADD")
        .arg(keys.instances())
        .arg(now)
        .arg("a")
        .arg(now - 120_000)
        .arg("b")
        .query(&mut con)
        .unwrap();
    let grant = |con: &mut redis::Connection, who: &str, held: f64, want: f64| -> (f64, f64) {
        let v: Vec<String> = redis::cmd("EVAL")
            .arg(GRANT)
            .arg(2)
            .arg(keys.grants(day))
            .arg(keys.instances())
            .arg(c)
            .arg(who)
            .arg(held)
            .arg(want)
            .arg(10.0)
            .arg(60_000)
            .arg(keys.quota_prefix(day))
            .arg(now - 60_000)
            .query(con)
            .expect("GRANT runs");
        (v[0].parse().unwrap(), v[1].parse().unwrap())
    };
    assert_eq!(grant(&mut con, "a", 0.0, 6.0), (6.0, 6.0));
    assert_eq!(
        grant(&mut con, "b", 0.0, 6.0),
        (4.0, 10.0),
        "only what is left of the limit"
    );
    assert_eq!(grant(&mut con, "b", 4.0, 1.0), (4.0, 10.0), "nothing left");
    // b is gone (no heartbeat for two minutes) and spent 1 of its 4: a gets the other 3.
    let _: () = redis::cmd("HSET")
        .arg(keys.quota_prefix(day) + "b")
        .arg(c)
        .arg(1.0)
        .query(&mut con)
        .unwrap();
    assert_eq!(grant(&mut con, "a", 6.0, 2.0), (8.0, 9.0));
    // A give-back, then its lost reply: the instance still believes it holds 8; its field
    // exists, so nothing is handed out twice.
    assert_eq!(grant(&mut con, "a", 8.0, -3.0), (5.0, 6.0));
    assert_eq!(grant(&mut con, "a", 8.0, 0.0), (5.0, 6.0));
    // Redis lost the grants: what a holds is learned again, within the limit.
    let _: () = redis::cmd("DEL")
        .arg(keys.grants(day))
        .query(&mut con)
        .unwrap();
    assert_eq!(grant(&mut con, "a", 5.0, 0.0), (5.0, 5.0));
    let _: () = redis::cmd("DEL")
        .arg(keys.grants(day))
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(keys.grants(day))
        .arg(c)
        .arg(8.0)
        .query(&mut con)
        .unwrap();
    assert_eq!(
        grant(&mut con, "a", 5.0, 0.0),
        (2.0, 10.0),
        "re-learned up to the limit only"
    );
}

#[test]
fn an_instance_works_with_a_redis_cluster() {
    // A one-node cluster holding every slot: the fleet's keys share one hash tag, so a round
    // goes to one node whatever the cluster's size.
    let redis = Redis::start_with(&["--cluster-enabled", "yes"]);
    assert!(
        redis
            .command("CLUSTER ADDSLOTSRANGE 0 16383\r\n")
            .is_some_and(|r| r.starts_with("+OK")),
        "slots assigned"
    );
    eventually(Duration::from_secs(10), "the cluster is ok", || {
        redis
            .command("CLUSTER INFO\r\n")
            .filter(|r| r.contains("cluster_state:ok"))
            .map(|_| ())
    });
    let m = mock(MockConfig::default());
    let text = instance(&m, &redis, "gw-c", "", "").replace(
        &format!("redis = \"{}\"", redis.url()),
        &format!("redis = \"redis+cluster://127.0.0.1:{}\"", redis.port),
    );
    assert!(text.contains("redis+cluster://"), "{text}");
    let gw = gateway(DRIVER, &text);
    eventually(Duration::from_secs(10), "connected to the cluster", || {
        let c = admin(&gw, "GET", "/admin/cluster", None, "").json();
        (c["connected"].as_bool() == Some(true)).then_some(())
    });
    let mut c = Client::connect(gw.local_addr());
    assert_eq!(chat(&mut c, &[]).status, 200);
    eventually(Duration::from_secs(5), "usage reached the cluster", || {
        let u = admin(&gw, "GET", "/admin/usage?scope=fleet", None, "").json();
        (u["total"]["requests"].as_u64() == Some(1)).then_some(())
    });
}

#[test]
fn a_redis_that_accepts_and_never_answers_fails_no_request() {
    // A black hole where Redis should be: connections are accepted and then nothing.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming().flatten() {
            count.fetch_add(1, Ordering::Relaxed);
            held.push(s);
        }
    });
    let redis = Redis::start();
    let m = mock(MockConfig::default());
    let text = instance(&m, &redis, "gw-h", "rpm = 60000\ndaily_budget = 100.0", "").replace(
        &format!("redis = \"{}\"", redis.url()),
        &format!("redis = \"redis://127.0.0.1:{port}/0\""),
    );
    let gw = gateway(DRIVER, &text);
    let mut c = Client::connect(gw.local_addr());
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let r = chat(&mut c, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        served += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(served > 0);
    assert_eq!(metric(&gw, "smart_router_cluster_connected"), Some(0.0));
    assert!(
        accepted.load(Ordering::Relaxed) > 0,
        "the gateway did try the black hole"
    );
}
