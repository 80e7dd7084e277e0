//! The packaged starter config (`packaging/config.toml`, installed by the .deb, by
//! `scripts/install.sh` and into the container image) run by the real binary: with no provider
//! key it serves demo mode, with keys in the environment it builds their channels, on a wildcard
//! address (the container's) it wants client keys; and `health`, the container's HEALTHCHECK.
//! `scripts/package.sh` checks the .deb itself (files, metadata, lintian, the unit).

#![allow(clippy::disallowed_methods)] // tests block on processes and sockets

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_smart-ai-router");

fn starter() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml")
}

/// The binary with an empty environment (no provider key leaks in from the machine), its state
/// in `state`, the admin API on an ephemeral port.
fn bin(state: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("XDG_STATE_HOME", state)
        .stdin(Stdio::null())
        .args(["--admin-listen", "127.0.0.1:0"]);
    c
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        Running(cmd.stderr(Stdio::piped()).spawn().unwrap())
    }

    /// Waits until `health` (the subcommand, as a HEALTHCHECK runs it) succeeds.
    fn wait_healthy(&mut self, health: &mut Command) -> Output {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                let mut err = String::new();
                if let Some(e) = self.0.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("gateway exited early with {status}: {err}");
            }
            let out = health.output().unwrap();
            if out.status.success() {
                return out;
            }
            assert!(Instant::now() < deadline, "gateway became healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGTERM, then the exit status and everything logged.
    fn stop(mut self) -> String {
        self.signal("-TERM");
        let status = self.0.wait().unwrap();
        assert!(status.success(), "{status}");
        let mut log = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        log
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_starter_config_serves_demo_mode_without_keys_and_across_a_reload() {
    let state = temp_dir("pkg-demo");
    let check = bin(&state)
        .arg("check")
        .arg("--config")
        .arg(starter())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("demo mode"), "{}", stdout(&check));

    // systemd's notify socket: READY=1 once serving, RELOADING=1 … READY=1 around a reload
    let sock_path = state.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = notify
            .recv(&mut buf)
            .expect("a notify datagram within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let listen = format!("127.0.0.1:{}", wildcard_port());
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", wildcard_port()).parse().unwrap();
    let mut gw = Running::start({
        let mut c = bin(&state);
        c.arg("--config")
            .arg(starter())
            .args(["--listen", &listen, "--admin-listen", &admin.to_string()])
            .env("NOTIFY_SOCKET", &sock_path);
        c
    });
    assert!(next().starts_with("READY=1"));
    let mut health = bin(&state);
    health.args(["health", "--listen", &listen]);
    let h = gw.wait_healthy(&mut health);
    use simd_json::prelude::*;
    let body = simd_json::to_owned_value(&mut h.stdout.clone()).expect("health prints JSON");
    assert_eq!(body["status"].as_str(), Some("ok"), "{}", stdout(&h));

    let addr = listen.parse().unwrap();
    let r =
        Client::connect(addr).post("/v1/chat/completions", &[], &chat_body("demo-model", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("demo"));
    let models = Client::connect(addr).get("/v1/models").json();

    // systemctl reload: the file still declares no channel, so demo mode goes on, same mock
    gw.signal("-HUP");
    assert!(next().starts_with("RELOADING=1"));
    assert!(next().starts_with("READY=1"));
    let snap = Client::connect(admin).get("/admin/snapshot").json();
    assert_eq!(
        snap["reloads"]["applied"].as_u64(),
        Some(1),
        "the reload applied: {snap:?}"
    );
    let r = Client::connect(addr).post("/v1/chat/completions", &[], &chat_body("gpt-4o", true));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("demo"));
    assert_eq!(Client::connect(addr).get("/v1/models").json(), models);

    let log = gw.stop();
    assert!(log.contains("DEMO MODE"), "{log}");
    assert!(log.contains("config reloaded"), "{log}");
    assert!(!log.contains("rejected"), "{log}");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn the_starter_config_builds_channels_from_provider_keys() {
    let state = temp_dir("pkg-env");
    let m = mock_models(&[]);
    let with_key = |c: &mut Command| {
        c.env("OPENAI_API_KEY", "sk-from-env")
            .env("OPENAI_BASE_URL", format!("http://{}/v1", m.addr()));
    };
    let mut check = bin(&state);
    with_key(check.arg("check").arg("--config").arg(starter()));
    let check = check.output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        stdout(&check).contains("channels from OPENAI_API_KEY"),
        "{}",
        stdout(&check)
    );

    let port = wildcard_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = bin(&state);
    with_key(
        cmd.arg("--config")
            .arg(starter())
            .args(["--listen", &listen]),
    );
    let mut gw = Running::start(cmd);
    let mut health = bin(&state);
    health.args(["health", "--listen", &listen]);
    gw.wait_healthy(&mut health);
    let r = Client::connect(listen.parse().unwrap()).post(
        "/v1/chat/completions",
        &[],
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("openai"));
    let ev = drain(&m);
    assert!(
        requests(&ev)
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer sk-from-env"))
    );
    let log = gw.stop();
    assert!(log.contains("OPENAI_API_KEY"), "{log}");
    assert!(
        !log.contains("sk-from-env"),
        "the key is never logged: {log}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// The container's setup: the starter on 0.0.0.0 (SMART_AI_ROUTER_LISTEN) with a keys file in
/// the state volume (SMART_AI_ROUTER_KEYS_FILE). It refuses to start until a key exists, then
/// serves only requests that carry it, and `health` finds it on loopback through the config.
#[test]
fn the_starter_on_a_wildcard_address_wants_client_keys() {
    let state = temp_dir("pkg-wild");
    let port = wildcard_port();
    let keys = state.join("keys.toml");
    let container = |c: &mut Command| {
        c.env("SMART_AI_ROUTER_CONFIG", starter())
            .env("SMART_AI_ROUTER_LISTEN", format!("0.0.0.0:{port}"))
            .env("SMART_AI_ROUTER_KEYS_FILE", &keys);
    };
    let mut check = bin(&state);
    container(check.arg("check"));
    let out = check.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("holds no key"), "{}", stderr(&out));

    let mut add = bin(&state);
    container(add.args(["keys", "add", "me"]));
    let out = add.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).lines().next().unwrap().trim().to_string();
    assert!(key.starts_with("sk-"), "{key}");

    let mut cmd = bin(&state);
    container(&mut cmd);
    let mut gw = Running::start(cmd);
    let mut health = bin(&state);
    container(health.arg("health"));
    gw.wait_healthy(&mut health);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let r =
        Client::connect(addr).post("/v1/chat/completions", &[], &chat_body("demo-model", false));
    assert_eq!(r.status, 401, "{}", r.text());
    let auth = format!("Bearer {key}");
    let r = Client::connect(addr).post(
        "/v1/chat/completions",
        &[("authorization", &auth)],
        &chat_body("demo-model", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    gw.stop();
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_wildcard_listen_flag_needs_client_keys_as_the_config_does() {
    let state = temp_dir("pkg-flag");
    let port = wildcard_port();
    let out = bin(&state)
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .env("OPENAI_API_KEY", "sk-x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("client keys"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn health_fails_when_nothing_answers() {
    let state = temp_dir("pkg-health");
    let out = bin(&state)
        .args(["health", "--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/health"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&state);
}

/// A port free on the wildcard address, outside the kernel's ephemeral range: a port taken
/// with `bind(…:0)` could be handed out again to the next `bind(…:0)` — the demo mock's, or
/// another test's — before the gateway binds it. Each call moves on, so two calls never
/// return the same port.
fn wildcard_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 8_000) as u16;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 8_000, "a free port in 20000–27999");
        let p = 20_000 + (base + n) % 8_000;
        if std::net::TcpListener::bind(("0.0.0.0", p)).is_ok() {
            return p;
        }
    }
}
