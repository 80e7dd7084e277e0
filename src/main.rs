//! The `smart-ai-router` binary: parse the command line, pick the config (file, environment
//! keys, or demo mode), start logging and the gateway, and wait for a signal.

#![allow(clippy::disallowed_methods)] // main may block: it only waits for signals

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use smart_ai_router::cmd::cli::{self, Command};
use smart_ai_router::config::{Config, ConfigError, ProcessEnv, units};
use smart_ai_router::{bootstrap, logging, mock};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Models the demo channel serves.
const DEMO_MODELS: &[&str] = &["demo-model", "gpt-4o-mini", "gpt-4o"];

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.clone() {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("smart-ai-router {}", smart_ai_router::VERSION);
            ExitCode::SUCCESS
        }
        Command::Check => check(&cli),
        Command::Health => health(&cli),
        Command::Route(args) => route(&cli, &args),
        Command::MockUpstream(args) => mock_upstream(&cli, args),
        Command::Import(args) => import(&args),
        Command::Keys(args) => keys(&cli, &args),
        Command::Run => run(&cli),
    }
}

fn config_path(cli: &cli::Cli) -> Option<std::path::PathBuf> {
    cli.config.clone().or_else(|| {
        std::env::var_os("SMART_AI_ROUTER_CONFIG")
            .filter(|v| !v.is_empty())
            .map(Into::into)
    })
}

fn apply_overrides(cfg: &mut Config, cli: &cli::Cli) -> Result<(), String> {
    if let Some(l) = &cli.listen {
        let listen = units::parse_listen(l).map_err(|e| format!("--listen: {e}"))?;
        // The rule the config applies to server.listen, which this flag bypasses otherwise.
        if cfg.auth.keys.is_empty() && !cfg.auth.allow_unauthenticated && !listen.ip().is_loopback()
        {
            return Err(format!(
                "--listen {listen}: a non-loopback address needs client keys ([auth] keys_file \
                 or [[auth.keys]]) or auth.allow_unauthenticated = true in the config"
            ));
        }
        cfg.server.listen = listen;
    }
    if let Some(w) = cli.workers {
        cfg.server.workers = w;
    }
    match cli.admin_listen.as_deref() {
        None => {}
        Some("off") => cfg.admin = None,
        Some(l) => {
            let listen = units::parse_listen(l).map_err(|e| format!("--admin-listen: {e}"))?;
            let token = cfg.admin.take().and_then(|a| a.token);
            if token.is_none() && !listen.ip().is_loopback() {
                return Err(format!(
                    "--admin-listen {listen}: a non-loopback admin address needs [admin] token"
                ));
            }
            cfg.admin = Some(smart_ai_router::config::AdminConfig { listen, token });
        }
    }
    Ok(())
}

fn check(cli: &cli::Cli) -> ExitCode {
    let Some(path) = config_path(cli) else {
        eprintln!("error: `check` needs a config file: --config FILE (or SMART_AI_ROUTER_CONFIG)");
        return ExitCode::from(2);
    };
    match Config::load_file(&path, &ProcessEnv) {
        Ok(mut cfg) => {
            if let Err(e) = apply_overrides(&mut cfg, cli) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            println!("config {} is valid", path.display());
            if cfg.declares_no_channels() {
                match env_channels(&mut cfg) {
                    Some(vars) => println!(
                        "no provider or channel in the file: channels from {}",
                        vars.join(", ")
                    ),
                    None => println!(
                        "no provider or channel in the file and no provider key in the \
                         environment: the gateway starts in demo mode"
                    ),
                }
            }
            print!("{}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `health`: `GET /health` on the gateway's own listener, for a container `HEALTHCHECK` in an
/// image without curl. The address is `--listen`, else the config's `server.listen`, else the
/// default; a wildcard address is asked on loopback. Plain HTTP only (not a `[server.tls]`
/// listener). Exit 0 on 200, 1 otherwise.
fn health(cli: &cli::Cli) -> ExitCode {
    use std::io::{Read as _, Write as _};
    let listen = match (&cli.listen, config_path(cli)) {
        (Some(l), _) => units::parse_listen(l).map_err(|e| format!("--listen: {e}")),
        (None, Some(path)) => Config::load_file(&path, &ProcessEnv)
            .map(|c| c.server.listen)
            .map_err(|e| e.to_string()),
        (None, None) => units::parse_listen(smart_ai_router::config::defaults::LISTEN),
    };
    let mut addr = match listen {
        Ok(a) => a,
        Err(e) => {
            eprintln!("health: {}", e.trim_end());
            return ExitCode::from(1);
        }
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let timeout = std::time::Duration::from_secs(3);
    let answer = (|| -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut buf = Vec::new();
        s.take(64 * 1024).read_to_end(&mut buf)?;
        Ok(buf)
    })();
    match answer {
        Ok(buf) => {
            let text = String::from_utf8_lossy(&buf);
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let status = head.lines().next().unwrap_or_default();
            if status.starts_with("HTTP/1.1 200 ") || status.starts_with("HTTP/1.0 200 ") {
                println!("{}", body.trim_end());
                ExitCode::SUCCESS
            } else {
                eprintln!("health: http://{addr}/health answered \"{status}\"");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("health: http://{addr}/health: {e}");
            ExitCode::from(1)
        }
    }
}

fn route(cli: &cli::Cli, args: &cli::RouteArgs) -> ExitCode {
    use smart_ai_router::control;
    let cfg = match config_path(cli) {
        Some(path) => Config::load_file(&path, &ProcessEnv),
        None => match Config::from_environment(&ProcessEnv) {
            Some(c) => Ok(c),
            None => {
                eprintln!(
                    "error: `route` needs a config: --config FILE (or SMART_AI_ROUTER_CONFIG, or provider keys in the environment)"
                );
                return ExitCode::from(2);
            }
        },
    };
    let mut cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(1);
        }
    };
    if cfg.declares_no_channels() {
        env_channels(&mut cfg);
    }
    let tls = match control::build_tls(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // Resolve host names the way the control thread would, waiting at most 3 s.
    let mut resolved = smart_ai_router::channel::Resolved::new();
    let hosts = smart_ai_router::channel::hosts_to_resolve(&cfg);
    if !hosts.is_empty() {
        let resolver = control::dns::Resolver::start();
        resolver.resolve(hosts.clone(), cfg.server.hosts_file.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        for _ in 0..hosts.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(batch) = resolver.results().recv_timeout(left) else {
                break;
            };
            for a in batch {
                if let Ok(addrs) = a.addrs {
                    resolved.insert((a.host, a.port), addrs);
                }
            }
        }
    }
    let snap = smart_ai_router::cmd::route::starting_snapshot(&cfg, &resolved, &tls);
    let mut needs = smart_ai_router::expr::Caps::NONE;
    for n in &args.needs {
        match smart_ai_router::expr::Caps::parse(n) {
            Some(c) => needs = needs.union(c),
            None => {
                eprintln!("error: --needs: unknown capability `{n}`; use vision, tools or json");
                return ExitCode::from(2);
            }
        }
    }
    let ask = smart_ai_router::cmd::route::Query {
        expr: &args.expr,
        needs,
        strategy: args.strategy.as_deref(),
        json: args.json,
    };
    match smart_ai_router::cmd::route::render(&snap, &ask) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `import FILE [-o OUT]`: the TOML goes to OUT or stdout, the report to stderr. Exit 0 even
/// when keys were dropped (they are listed), 1 when FILE cannot be read or converted.
fn keys(cli: &cli::Cli, args: &cli::KeysArgs) -> ExitCode {
    // The config is parsed, not loaded: loading merges (and validates) the keys file this
    // command is about to create or repair.
    let path = match &args.file {
        Some(f) => f.clone(),
        None => {
            let from_config = config_path(cli).and_then(|p| {
                let text = std::fs::read_to_string(&p).ok()?;
                Config::parse(&text, &ProcessEnv).ok()?.auth.keys_file
            });
            match from_config {
                Some(f) => f,
                None => {
                    eprintln!(
                        "error: no keys file: pass --keys-file PATH, or --config FILE whose [auth] sets keys_file"
                    );
                    return ExitCode::from(2);
                }
            }
        }
    };
    let result = match args.action {
        cli::KeysAction::Add => smart_ai_router::cmd::keys::add(
            &path,
            &args.name,
            &args.models,
            args.expires.as_deref(),
            smart_ai_router::cmd::keys::NewLimits {
                rps: args.rps,
                rpm: args.rpm,
                tpm: args.tpm,
                daily_budget: args.daily_budget,
            },
        )
        .map(|key| {
            println!("{key}");
            eprintln!(
                "key \"{}\" added to {}: the key above is shown this once (only its SHA-256 is stored); \
                 running gateways accept it after a reload (SIGHUP or POST /admin/reload)",
                args.name,
                path.display()
            );
        }),
        cli::KeysAction::List => smart_ai_router::cmd::keys::list(&path).map(|t| print!("{t}")),
        cli::KeysAction::Revoke => smart_ai_router::cmd::keys::revoke(&path, &args.name).map(|()| {
            eprintln!(
                "key \"{}\" removed from {}; running gateways refuse it after a reload",
                args.name,
                path.display()
            )
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(not(feature = "import"))]
fn import(_: &cli::ImportArgs) -> ExitCode {
    eprintln!(
        "error: this build lacks `import` (a cargo feature, on by default): rebuild without \
         --no-default-features, or with --features import"
    );
    ExitCode::from(1)
}

#[cfg(feature = "import")]
fn import(args: &cli::ImportArgs) -> ExitCode {
    let yaml = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::from(1);
        }
    };
    let conversion = match smart_ai_router::cmd::import::convert(&yaml) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return ExitCode::from(1);
        }
    };
    for line in &conversion.report {
        eprintln!("import: {line}");
    }
    match &args.out {
        None => print!("{}", conversion.toml),
        Some(out) => {
            if let Err(e) = write_private(out, &conversion.toml) {
                eprintln!("error: cannot write {}: {e}", out.display());
                return ExitCode::from(1);
            }
        }
    }
    let target = args
        .out
        .as_ref()
        .map_or("FILE".to_string(), |o| o.display().to_string());
    eprintln!(
        "import: {} item(s) dropped or changed, listed above; check the result with `smart-ai-router check --config {target}`",
        conversion.report.len()
    );
    ExitCode::SUCCESS
}

/// Writes a file only its owner can read when it is created: it may hold literal API keys.
#[cfg(feature = "import")]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// SIGINT, SIGTERM and SIGHUP, caught from now on (registered before the gateway starts, so
/// a `systemctl reload` right after READY never meets SIGHUP's default action: exit).
fn catch_signals() -> Option<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).ok()
}

/// Blocks until SIGINT or SIGTERM; SIGHUP calls `on_hup` (a reload) and keeps waiting.
fn wait_for_signal(
    signals: Option<signal_hook::iterator::Signals>,
    on_hup: &dyn Fn(),
) -> Option<i32> {
    use signal_hook::consts::SIGHUP;
    let mut signals = signals?;
    for s in signals.forever() {
        if s == SIGHUP {
            tracing::info!("SIGHUP: reloading the config");
            on_hup();
            continue;
        }
        return Some(s);
    }
    None
}

fn mock_upstream(cli: &cli::Cli, args: cli::MockArgs) -> ExitCode {
    let _guard = logging::init(&Config::empty().log);
    let listen = match cli.listen.as_deref().map(units::parse_listen).transpose() {
        Ok(l) => l.unwrap_or_else(|| "127.0.0.1:9000".parse().expect("valid")),
        Err(e) => {
            eprintln!("error: --listen: {e}");
            return ExitCode::from(2);
        }
    };
    let d = mock::MockConfig::default();
    let cfg = mock::MockConfig {
        listen,
        models: args.models,
        latency: args.latency.unwrap_or(d.latency),
        chunks: args.chunks.unwrap_or(d.chunks),
        interval: args.interval.unwrap_or(d.interval),
        status: args.status,
        retry_after: args.retry_after,
        fault: args.reset.then_some(mock::Fault::Reset),
        workers: cli.workers.filter(|w| *w > 0).unwrap_or(1),
        ..d
    };
    match mock::start(cfg) {
        Ok(h) => {
            println!("mock upstream listening on http://{}/v1", h.addr());
            wait_for_signal(catch_signals(), &|| {});
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot start the mock upstream: {e}");
            ExitCode::from(1)
        }
    }
}

/// Demo mode's mock upstream: started the first time a config needs it, then shared with the
/// reload closure (a reload that leaves the file without channels keeps serving the same one).
#[derive(Debug, Clone, Default)]
struct DemoMock(Arc<OnceLock<mock::MockHandle>>);

impl DemoMock {
    /// The demo config on the running mock, starting it first if needed.
    fn config(&self) -> Result<Config, String> {
        if self.0.get().is_none() {
            let h = mock::start(mock::MockConfig {
                models: DEMO_MODELS.iter().map(|m| m.to_string()).collect(),
                chunks: 12,
                interval: std::time::Duration::from_millis(30),
                ..Default::default()
            })
            .map_err(|e| format!("cannot start the demo mock upstream: {e}"))?;
            // Only main (before the control thread exists) and then the control thread get
            // here, one after the other: nothing races for the cell.
            let _ = self.0.set(h);
        }
        let addr = self
            .0
            .get()
            .map(|h| h.addr())
            .ok_or("demo mock not started")?;
        Ok(Config::demo(addr, DEMO_MODELS))
    }

    fn addr(&self) -> Option<std::net::SocketAddr> {
        self.0.get().map(|h| h.addr())
    }
}

/// Channels from provider keys in the environment for a config that declares none; the
/// variables used, or `None` (and the config unchanged) when no key is set.
fn env_channels(cfg: &mut Config) -> Option<Vec<String>> {
    let from = Config::from_environment(&ProcessEnv)?;
    let vars = match &from.source {
        smart_ai_router::config::Source::Environment(v) => v.clone(),
        _ => Vec::new(),
    };
    cfg.adopt_channels(from);
    Some(vars)
}

/// Where a config file's channels came from, when it declares none.
#[derive(Debug)]
enum Filled {
    /// The file declares its own.
    No,
    /// From provider keys in these environment variables.
    Environment(Vec<String>),
    /// Demo mode.
    Demo,
}

/// A config file that declares no provider and no channel (the packaged starter) runs as no
/// file does: channels from provider keys in the environment, else demo mode.
fn fill_channels(cfg: &mut Config, demo: &DemoMock) -> Result<Filled, String> {
    if !cfg.declares_no_channels() {
        return Ok(Filled::No);
    }
    if let Some(vars) = env_channels(cfg) {
        return Ok(Filled::Environment(vars));
    }
    cfg.adopt_channels(demo.config()?);
    Ok(Filled::Demo)
}

fn run(cli: &cli::Cli) -> ExitCode {
    let demo = DemoMock::default();
    let path = config_path(cli);
    let cfg: Result<Config, ConfigError> = match &path {
        Some(path) => Config::load_file(path, &ProcessEnv),
        None => match Config::from_environment(&ProcessEnv) {
            Some(cfg) => Ok(cfg),
            None => match demo.config() {
                Ok(cfg) => Ok(cfg),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            },
        },
    };
    let mut cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(1);
        }
    };
    let filled = match fill_channels(&mut cfg, &demo) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = apply_overrides(&mut cfg, cli) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let _guard = logging::init(&cfg.log);
    let signals = catch_signals();
    // Reloads re-read the same source and re-apply the command-line overrides.
    let loader: Option<smart_ai_router::control::Loader> = match &cfg.source {
        smart_ai_router::config::Source::File(_)
        | smart_ai_router::config::Source::Environment(_) => {
            let source = bootstrap::default_loader(&cfg);
            let cli = cli.clone();
            let demo = demo.clone();
            source.map(|load| -> smart_ai_router::control::Loader {
                Box::new(move || {
                    let mut c = load()?;
                    fill_channels(&mut c, &demo).map_err(|e| vec![e])?;
                    apply_overrides(&mut c, &cli).map_err(|e| vec![e])?;
                    Ok(c)
                })
            })
        }
        _ => None,
    };
    let gateway = match bootstrap::start_with(cfg.clone(), loader) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    banner(&cfg, &gateway, demo.addr(), &filled);
    smart_ai_router::notify::ready();
    let sig = wait_for_signal(signals, &|| gateway.request_reload());
    tracing::info!(signal = ?sig, "shutting down: draining in-flight requests");
    gateway.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn banner(
    cfg: &Config,
    g: &bootstrap::Gateway,
    demo: Option<std::net::SocketAddr>,
    filled: &Filled,
) {
    let board = g.board();
    tracing::info!(
        version = smart_ai_router::VERSION,
        listen = %g.local_addr(),
        workers = board.workers(),
        driver = board.driver.driver.as_str(),
        driver_reason = %board.driver.reason,
        channels = cfg.channels.len(),
        admin = %g.admin_addr().map_or("off".to_string(), |a| a.to_string()),
        "smart-ai-router started"
    );
    match &cfg.source {
        smart_ai_router::config::Source::Demo => tracing::info!(
            mock = %demo.map(|d| d.to_string()).unwrap_or_default(),
            "DEMO MODE: no config and no provider keys in the environment; serving the built-in \
             mock upstream (models: demo-model, gpt-4o-mini, gpt-4o). Set OPENAI_API_KEY or pass \
             --config to serve real providers"
        ),
        smart_ai_router::config::Source::Environment(vars) => tracing::info!(
            vars = %vars.join(","),
            "no config file: channels built from provider keys in these environment variables"
        ),
        smart_ai_router::config::Source::File(p) => {
            tracing::info!(config = %p.display(), "config loaded");
            match filled {
                Filled::No => {}
                Filled::Environment(vars) => tracing::info!(
                    vars = %vars.join(","),
                    "the config file declares no channel: channels built from provider keys in \
                     these environment variables"
                ),
                Filled::Demo => tracing::info!(
                    mock = %demo.map(|d| d.to_string()).unwrap_or_default(),
                    "DEMO MODE: the config file declares no channel and no provider key is in \
                     the environment; serving the built-in mock upstream (models: demo-model, \
                     gpt-4o-mini, gpt-4o). Set OPENAI_API_KEY (under systemd: in \
                     /etc/smart-ai-router/env, then restart) or declare channels"
                ),
            }
        }
        smart_ai_router::config::Source::Inline => {}
    }
    let listen = g.local_addr();
    match (cfg.auth.keys.len(), cfg.auth.allow_unauthenticated) {
        (0, true) if !listen.ip().is_loopback() => tracing::warn!(
            %listen,
            "NO CLIENT AUTHENTICATION: auth.allow_unauthenticated = true and no client key; \
             anyone who reaches this address can spend the provider keys"
        ),
        (0, _) => tracing::info!(
            %listen,
            "no client keys: serving without authentication on a loopback address only \
             (add keys with `smart-ai-router keys add NAME`)"
        ),
        (n, _) => tracing::info!(client_keys = n, "client authentication on"),
    }
    if let Some(t) = &cfg.server.tls {
        tracing::info!(cert = %t.cert.display(), "HTTPS on the client listener");
    }
    for line in cfg.summary().lines() {
        tracing::info!("{line}");
    }
}
