//! The binary as users run it: `check`, the shipped config files, demo mode, provider keys from
//! the environment, the port-in-use check and graceful shutdown on SIGTERM.

#![allow(clippy::disallowed_methods)] // tests block on processes and sockets

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use simd_json::prelude::*;
use smart_ai_router::config::{Config, defaults};

const BIN: &str = env!("CARGO_BIN_EXE_smart-ai-router");

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A command with an empty environment (no provider keys leak in from the machine) and the
/// admin API on an ephemeral port.
fn bin() -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        // Tests run side by side: the admin API must not contend for its fixed default port.
        .args(["--admin-listen", "127.0.0.1:0"]);
    c
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sar-cli-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("gateway exited early with {status}: {err}");
        }
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            drop(s);
            let mut c = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
            if c.get("/health").status == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "gateway became healthy");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn example_config_parses_and_holds_the_defaults() {
    let cfg = Config::load_file(&repo("configs/example.toml"), &|_: &str| None)
        .expect("example.toml is valid");
    let s = &cfg.server;
    assert_eq!(s.listen.to_string(), defaults::LISTEN);
    assert_eq!(s.workers, defaults::WORKERS);
    assert_eq!(s.tick, defaults::TICK);
    assert_eq!(s.max_header_bytes as u64, defaults::MAX_HEADER_BYTES);
    assert_eq!(s.max_headers, defaults::MAX_HEADERS);
    assert_eq!(s.max_body as u64, defaults::MAX_BODY);
    assert_eq!(s.max_buffered as u64, defaults::MAX_BUFFERED);
    assert_eq!(s.max_validated_body as u64, defaults::MAX_VALIDATED_BODY);
    assert_eq!(s.max_connections, defaults::MAX_CONNECTIONS);
    assert_eq!(s.header_timeout, defaults::HEADER_TIMEOUT);
    assert_eq!(s.body_timeout, defaults::BODY_TIMEOUT);
    assert_eq!(s.idle_timeout, defaults::IDLE_TIMEOUT);
    assert_eq!(s.drain_timeout, defaults::DRAIN_TIMEOUT);
    assert_eq!(s.dns_refresh, defaults::DNS_REFRESH);
    assert!(cfg.auth.keys.is_empty() && !cfg.auth.allow_unauthenticated);
    assert_eq!(cfg.routing.max_attempts, defaults::MAX_ATTEMPTS);
    assert_eq!(cfg.routing.default_strategy, defaults::DEFAULT_STRATEGY);
    assert_eq!(cfg.routing.tie_epsilon, defaults::TIE_EPSILON);
    let cd = cfg.routing.cooldown;
    assert_eq!(
        (
            cd.base,
            cd.max,
            cd.retry_after_max,
            cd.auth,
            cd.model_missing
        ),
        (
            defaults::COOLDOWN_BASE,
            defaults::COOLDOWN_MAX,
            defaults::RETRY_AFTER_MAX,
            defaults::AUTH_COOLDOWN,
            defaults::MODEL_MISSING_COOLDOWN
        )
    );
    assert_eq!(cfg.pricing.currency, defaults::CURRENCY);
    assert_eq!(cfg.groups[0].name, "auto:coding");
    assert_eq!(cfg.strategies[0].name, "cheap_but_good");
    let p = cfg.providers.iter().find(|p| p.id == "openai").unwrap();
    assert_eq!(p.connect_timeout, defaults::CONNECT_TIMEOUT);
    assert_eq!(p.first_byte_timeout, defaults::FIRST_BYTE_TIMEOUT);
    assert_eq!(p.idle_timeout, defaults::UPSTREAM_IDLE_TIMEOUT);
    assert_eq!(p.total_timeout, defaults::TOTAL_TIMEOUT);
    assert_eq!(p.pool_max_idle, defaults::POOL_MAX_IDLE);
    assert_eq!(p.pool_idle_timeout, defaults::POOL_IDLE_TIMEOUT);
    assert_eq!(p.models_path, defaults::MODELS_PATH);
    assert!(p.forward_headers.is_empty());
    assert_eq!(cfg.channels[0].api_key.expose(), "sk-replace-me");
    assert!(cfg.channels[0].discover);
    let d = &cfg.discovery;
    assert_eq!(
        (d.enabled, d.interval, d.timeout, d.concurrency),
        (
            true,
            defaults::DISCOVERY_INTERVAL,
            defaults::DISCOVERY_TIMEOUT,
            defaults::DISCOVERY_CONCURRENCY
        )
    );
    let h = &cfg.health;
    assert_eq!(
        (h.enabled, h.interval, h.timeout),
        (true, defaults::HEALTH_INTERVAL, defaults::HEALTH_TIMEOUT)
    );
    let admin = cfg.admin.as_ref().expect("admin on by default");
    assert_eq!(admin.listen.to_string(), defaults::ADMIN_LISTEN);
    assert!(admin.token.is_none());
    // and the binary's `check` agrees
    let out = bin()
        .args(["check", "--config"])
        .arg(repo("configs/example.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("channel openai-main") && !text.contains("sk-replace-me"),
        "{text}"
    );
}

#[test]
fn check_names_every_bad_key_and_exits_non_zero() {
    let p = temp_file("bad.toml", "[server]\nlisten = \"nowhere\"\nworkrs = 2\n");
    let out = bin()
        .args(["--config"])
        .arg(&p)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`server.workrs`") && err.contains("did you mean `workers`"),
        "{err}"
    );
    let p = temp_file(
        "bad2.toml",
        "[server]\nlisten = \"nowhere\"\n[providers.x]\nkind = \"openai\"\nbase_url = \"ftp://x\"\n[[channels]]\nid = \"c\"\nprovider = \"y\"\nmodels = [\"m\"]\napi_key = \"${NOT_SET_ANYWHERE}\"\n",
    );
    let out = bin()
        .arg("check")
        .env("SMART_AI_ROUTER_CONFIG", &p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("channels[0].api_key") && err.contains("NOT_SET_ANYWHERE"),
        "{err}"
    );
    let p = temp_file(
        "bad3.toml",
        "[server]\nlisten = \"nowhere\"\n[providers.x]\nkind = \"openai\"\nbase_url = \"ftp://x\"\n[[channels]]\nid = \"c\"\nprovider = \"y\"\nmodels = [\"m\"]\n",
    );
    let out = bin()
        .arg("check")
        .env("SMART_AI_ROUTER_CONFIG", &p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "`server.listen`",
        "`providers.x.base_url`",
        "`channels[0].provider`",
    ] {
        assert!(err.contains(key), "{key} missing in {err}");
    }
    // a usage error is exit code 2
    let out = bin().args(["--workers", "lots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_minimal_design_config_works_as_written() {
    let out = bin()
        .args(["check", "--config"])
        .arg(repo("configs/minimal.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Serve it for real when its fixed ports are free on this machine.
    let (Ok(_), Ok(_)) = (
        std::net::TcpListener::bind("127.0.0.1:9000"),
        std::net::TcpListener::bind("127.0.0.1:7601"),
    ) else {
        eprintln!("ports 9000/7601 busy: skipped serving the minimal config");
        return;
    };
    let m = mock(smart_ai_router::mock::MockConfig {
        listen: "127.0.0.1:9000".parse().unwrap(),
        ..Default::default()
    });
    let mut child = Running(
        bin()
            .args(["--config"])
            .arg(repo("configs/minimal.toml"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(7601, &mut child.0);
    let r = Client::connect("127.0.0.1:7601".parse().unwrap()).post(
        "/v1/chat/completions",
        &[],
        &chat_body("gpt-4o", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(m.requests(), 1);
}

#[test]
fn demo_mode_serves_a_completion_through_the_proxy() {
    let port = free_port();
    let mut child = Running(
        bin()
            .args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "2"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut child.0);
    let mut c = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    let h = c.get("/health").json();
    assert_eq!(h["mode"].as_str(), Some("demo"));
    let models = c.get("/v1/models").json();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["owned_by"].as_str() == Some("demo"))
    );
    let r = c.post("/v1/chat/completions", &[], &chat_body("demo-model", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("demo"));
    let r = c.post("/v1/chat/completions", &[], &chat_body("gpt-4o-mini", true));
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    // SIGTERM drains and exits cleanly, and the log announced demo mode
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut log = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("DEMO MODE"), "{log}");
}

#[test]
fn provider_keys_in_the_environment_build_channels() {
    let m = mock_models(&[]);
    let port = free_port();
    let mut child = Running(
        bin()
            .args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "1"])
            .env("OPENAI_API_KEY", "sk-from-env")
            .env("OPENAI_BASE_URL", format!("http://{}/v1", m.addr()))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut child.0);
    let mut c = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(
        c.get("/health").json()["mode"].as_str(),
        Some("environment")
    );
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = drain(&m);
    assert_eq!(
        requests(&ev)[0].header("authorization"),
        Some("Bearer sk-from-env")
    );
    drop(child);
}

#[test]
fn a_taken_port_fails_the_start_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = bin()
        .args(["--listen", &addr.to_string()])
        .env("OPENAI_API_KEY", "sk-x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
    // a second gateway on the first one's port is refused the same way
    let port = free_port();
    let mut first = Running(
        bin()
            .args(["--listen", &format!("127.0.0.1:{port}"), "--workers", "1"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut first.0);
    let out = bin()
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));
}

/// The systemd contract, end to end with the real binary: `READY=1` once serving, SIGHUP →
/// `RELOADING=1` then `READY=1` with the new config in force, SIGTERM → `STOPPING=1`, the
/// in-flight stream finishes, and the process exits 0.
#[test]
fn systemd_notify_reload_on_sighup_and_sigterm_drain() {
    use std::os::unix::net::UnixDatagram;
    let m = mock(smart_ai_router::mock::MockConfig {
        models: vec!["m".into()],
        chunks: 12,
        interval: Duration::from_millis(50),
        ..Default::default()
    });
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sar-notify-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        loop {
            match notify.recv(&mut buf) {
                Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("no notify datagram within 10 s: {e}"),
            }
        }
    };
    let config = |alias: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 1\n\n[discovery]\nenabled = false\n\n\
             [providers.up]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\n\n\
             [[channels]]\nid = \"up\"\nprovider = \"up\"\napi_key = \"k\"\nmodels = [\"m\"]\n\
             aliases = {{ \"{alias}\" = \"m\" }}\n",
            m.addr()
        )
    };
    let cfg_path = dir.join("config.toml");
    std::fs::write(&cfg_path, config("first-alias")).unwrap();
    let mut child = Running(
        bin()
            .arg("--config")
            .arg(&cfg_path)
            .env("NOTIFY_SOCKET", &sock_path)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(next().starts_with("READY=1"));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let status = |model: &str| {
        Client::connect(addr)
            .post("/v1/chat/completions", &[], &chat_body(model, false))
            .status
    };
    assert_eq!(status("first-alias"), 200);
    assert_eq!(status("second-alias"), 404);

    // systemctl reload
    std::fs::write(&cfg_path, config("second-alias")).unwrap();
    let kill = |sig: &str| {
        let pid = child.0.id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    kill("-HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(next().starts_with("READY=1"));
    assert_eq!(status("second-alias"), 200);

    // systemctl stop, with a stream in flight (12 events, 50 ms apart)
    let stream = std::thread::spawn(move || {
        Client::connect(addr).post("/v1/chat/completions", &[], &chat_body("m", true))
    });
    std::thread::sleep(Duration::from_millis(200));
    kill("-TERM");
    assert!(next().starts_with("STOPPING=1"));
    let r = stream.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "{exit}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scripts/install.sh --destdir` stages the binary, a valid starter config, a private key
/// file and the unit with the directives the README promises.
#[test]
fn install_script_stages_a_working_service() {
    let dest = std::env::temp_dir().join(format!(
        "sar-install-{}-{}",
        std::process::id(),
        free_port()
    ));
    let out = Command::new("bash")
        .arg(repo("scripts/install.sh"))
        .args(["--bin", BIN, "--destdir"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dest.join("usr/local/bin/smart-ai-router").exists());
    let unit =
        std::fs::read_to_string(dest.join("etc/systemd/system/smart-ai-router.service")).unwrap();
    for directive in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitMEMLOCK=infinity",
        "LimitNOFILE=",
        "DynamicUser=yes",
        "StateDirectory=smart-ai-router",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(directive), "unit lacks {directive}");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &str| {
        let m = std::fs::metadata(dest.join(p)).unwrap();
        m.permissions().mode() & 0o777
    };
    assert_eq!(mode("etc/smart-ai-router/env"), 0o600);
    // The service's dynamic user must read the config: root-owned, so readable by others.
    assert_eq!(mode("etc/smart-ai-router"), 0o755);
    assert_eq!(mode("etc/smart-ai-router/config.toml"), 0o644);
    // The starter config validates with no key set (demo mode).
    let cfg = dest.join("etc/smart-ai-router/config.toml");
    let check = bin()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _ = std::fs::remove_dir_all(&dest);
}

/// The access log: one line per request from the control thread, with the request id and the
/// W3C trace id — and neither the channel's key nor the client's credentials anywhere in the log.
#[test]
fn the_access_log_names_each_request_and_no_secret() {
    let m = mock(smart_ai_router::mock::MockConfig::default());
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sar-access-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = temp_file(
        "access.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 1\n\n[discovery]\nenabled = false\n\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\naccess = true\n\n\
             [state]\ndir = \"{}\"\n\n\
             [providers.up]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\n\n\
             [[channels]]\nid = \"up\"\nprovider = \"up\"\napi_key = \"sk-channel-secret-42\"\nmodels = [\"m\"]\n",
            dir.display(),
            m.addr()
        ),
    );
    let mut child = Running(
        bin()
            .arg("--config")
            .arg(&cfg)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_healthy(port, &mut child.0);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = Client::connect(addr).post(
        "/v1/chat/completions",
        &[
            ("authorization", "Bearer client-secret-77"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").unwrap().to_string();
    // The line is written within a control-loop turn; then stop and read everything.
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut log = String::new();
    if let Some(e) = child.0.stderr.as_mut() {
        let _ = e.read_to_string(&mut log);
    }
    if let Some(o) = child.0.stdout.as_mut() {
        let _ = o.read_to_string(&mut log);
    }
    let line = log
        .lines()
        .find(|l| l.contains("\"message\":\"request\""))
        .unwrap_or_else(|| panic!("no access line in:\n{log}"));
    assert!(line.contains(&id), "{line}");
    assert!(line.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{line}");
    assert!(line.contains("\"status\":200"), "{line}");
    assert!(
        !log.contains("sk-channel-secret-42"),
        "channel key in the log:\n{log}"
    );
    assert!(
        !log.contains("client-secret-77"),
        "client credential in the log:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
