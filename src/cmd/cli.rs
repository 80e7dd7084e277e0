//! Command-line parsing: global flags (`--config`, `--listen`, `--workers`) accepted before or
//! after a subcommand, and the subcommands `check`, `health`, `route`, `import`, `keys` and
//! `mock-upstream`.
//!
//! Invariants: pure: parses strings into [`Cli`], never reads files or the environment itself
//! (the caller passes `SMART_AI_ROUTER_CONFIG`). Errors say which flag and what it takes.

use std::path::PathBuf;
use std::time::Duration;

use lexopt::Arg;

use crate::config::units;

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the gateway.
    Run,
    /// Validate the config, print a summary, exit non-zero on error.
    Check,
    /// Ask a running gateway's `/health` on its own listener; exit non-zero unless 200.
    Health,
    /// Dry-run routing for a model expression.
    Route(RouteArgs),
    /// Run the built-in mock upstream.
    MockUpstream(MockArgs),
    /// Convert the Python original's `router_config.yaml` to TOML.
    Import(ImportArgs),
    /// Manage client keys in the keys file.
    Keys(KeysArgs),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// Options of `route`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteArgs {
    /// The model expression.
    pub expr: String,
    /// Strategy override.
    pub strategy: Option<String>,
    /// Capabilities the imagined request needs (vision, tools, json).
    pub needs: Vec<String>,
    /// Print the `/v1/route` JSON instead of a table.
    pub json: bool,
}

/// Options of `import`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportArgs {
    /// The original's YAML config.
    pub file: PathBuf,
    /// Where to write the TOML (stdout when absent).
    pub out: Option<PathBuf>,
}

/// What `keys` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysAction {
    /// Create a key and print it once.
    Add,
    /// List names, digests, expiry and allowance.
    List,
    /// Remove a key.
    Revoke,
}

/// Options of `keys`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeysArgs {
    /// The action.
    pub action: KeysAction,
    /// The key's name (add, revoke).
    pub name: String,
    /// `--models a,b`: the allowance of a new key.
    pub models: Vec<String>,
    /// `--expires DATE`.
    pub expires: Option<String>,
    /// `--keys-file PATH` (else the config's `[auth] keys_file`).
    pub file: Option<PathBuf>,
    /// `--rps N`, `--rpm N`, `--tpm N`: limits of a new key.
    pub rps: Option<f64>,
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// `--daily-budget X`.
    pub daily_budget: Option<f64>,
}

/// Options of `mock-upstream` (besides the global `--listen` and `--workers`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MockArgs {
    /// Models served (empty: any).
    pub models: Vec<String>,
    /// Delay before each response head.
    pub latency: Option<Duration>,
    /// Content events per stream.
    pub chunks: Option<usize>,
    /// Delay between stream events.
    pub interval: Option<Duration>,
    /// Injected status for every chat request.
    pub status: Option<u16>,
    /// `Retry-After` seconds for 429s.
    pub retry_after: Option<u32>,
    /// Reset every connection.
    pub reset: bool,
}

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Cli {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--workers N`.
    pub workers: Option<usize>,
    /// `--admin-listen ADDR|off`.
    pub admin_listen: Option<String>,
    /// The subcommand.
    pub command: Command,
}

/// Usage text.
pub const USAGE: &str = "\
smart-ai-router — OpenAI-compatible LLM gateway

USAGE:
    smart-ai-router [--config FILE] [--listen ADDR] [--workers N] [--admin-listen ADDR|off] [COMMAND]

COMMANDS:
    (none)           run the gateway
    check            validate the config and print a summary (exit 1 on error)
    health           GET /health from the gateway running on --listen, else the config's
                     server.listen, else 127.0.0.1:7601 (0.0.0.0 is asked on loopback); exit 0
                     on 200, 1 otherwise (a container HEALTHCHECK needs no curl)
    route EXPR       dry-run routing: ranked candidates with scores and why others were
                     filtered (flags: --strategy NAME, --needs vision,tools, --json)
    import FILE      convert the Python smart-ai-router's router_config.yaml to TOML: the
                     config on stdout (or -o OUT), every key that did not carry over on
                     stderr; exit 1 if FILE is unreadable or not valid YAML
    mock-upstream    run the built-in OpenAI-compatible mock upstream
    keys add NAME    create a client key, print it once, store its SHA-256 in the keys file
                     (flags: --models a,tag:free  --expires 2027-01-01  --rpm N  --tpm N
                     --rps N  --daily-budget 5.0  --keys-file PATH; the file defaults to the config's
                     [auth] keys_file)
    keys list        names, digest prefixes, expiry and allowed models (never a key)
    keys revoke NAME
                     remove a key (running gateways drop it on their next reload)
    help, version    this text; the version

GLOBAL FLAGS (before or after the command):
    -c, --config FILE   TOML config (also $SMART_AI_ROUTER_CONFIG). Without one, channels come
                        from provider keys in the environment (OPENAI_API_KEY, …), else demo mode
    -l, --listen ADDR   listen address, e.g. 127.0.0.1:7601
    -w, --workers N     worker threads (0 = one per CPU)
    --admin-listen ADDR
                        the admin API address (default 127.0.0.1:7602), or `off`

MOCK-UPSTREAM FLAGS:
    --models a,b        models to serve (default: any)
    --latency 20ms      delay before each response
    --chunks N          content events per stream (default 8)
    --interval 20ms     delay between stream events
    --status N          answer every chat request with this status
    --retry-after S     Retry-After seconds on 429
    --reset             reset every connection
";

/// Parses arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, String> {
    let mut cli = Cli {
        config: None,
        listen: None,
        workers: None,
        admin_listen: None,
        command: Command::Run,
    };
    let mut mock = MockArgs::default();
    let mut route = RouteArgs::default();
    let mut import = ImportArgs::default();
    let mut import_file: Option<PathBuf> = None;
    let mut keys_action: Option<KeysAction> = None;
    let mut keys = KeysArgs {
        action: KeysAction::List,
        name: String::new(),
        models: Vec::new(),
        expires: None,
        file: None,
        rps: None,
        rpm: None,
        tpm: None,
        daily_budget: None,
    };
    let mut command: Option<&'static str> = None;
    // lexopt splits the words (`--flag value`, `--flag=value`, `-w4`); the meaning, and every
    // error text, stay here.
    let mut p = lexopt::Parser::from_args(args);
    loop {
        let flag = match p.next() {
            Ok(None) => break,
            Ok(Some(Arg::Short(c))) => format!("-{c}"),
            Ok(Some(Arg::Long(l))) => format!("--{l}"),
            Ok(Some(Arg::Value(v))) => v.to_string_lossy().into_owned(),
            // A value given to a flag that takes none (`--json=x`).
            Err(e) => {
                return Err(format!(
                    "unknown argument ({e}); run `smart-ai-router --help` for usage"
                ));
            }
        };
        let mut value = |name: &str| -> Result<String, String> {
            p.value()
                .map(|v| v.to_string_lossy().into_owned())
                .map_err(|_| format!("{name} needs a value; see --help"))
        };
        match flag.as_str() {
            "-c" | "--config" => cli.config = Some(PathBuf::from(value("--config")?)),
            "-l" | "--listen" => cli.listen = Some(value("--listen")?),
            "-w" | "--workers" => {
                let v = value("--workers")?;
                cli.workers = Some(
                    v.parse()
                        .map_err(|_| format!("--workers takes a number, got \"{v}\""))?,
                );
            }
            "--admin-listen" => cli.admin_listen = Some(value("--admin-listen")?),
            "-h" | "--help" | "help" => command = Some("help"),
            "-V" | "--version" | "version" => command = Some("version"),
            "check" | "health" | "mock-upstream" | "route" | "import" | "keys"
                if command.is_none() =>
            {
                command = Some(match flag.as_str() {
                    "check" => "check",
                    "health" => "health",
                    "route" => "route",
                    "import" => "import",
                    "keys" => "keys",
                    _ => "mock-upstream",
                })
            }
            "add" | "list" | "revoke" if command == Some("keys") && keys_action.is_none() => {
                keys_action = Some(match flag.as_str() {
                    "add" => KeysAction::Add,
                    "list" => KeysAction::List,
                    _ => KeysAction::Revoke,
                })
            }
            "--models" if command == Some("keys") => {
                keys.models = value("--models")?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "--expires" if command == Some("keys") => keys.expires = Some(value("--expires")?),
            "--daily-budget" if command == Some("keys") => {
                let v = value("--daily-budget")?;
                keys.daily_budget = Some(
                    v.parse()
                        .map_err(|_| format!("--daily-budget takes an amount, got \"{v}\""))?,
                );
            }
            "--rps" | "--rpm" | "--tpm" if command == Some("keys") => {
                let v = value(&flag)?;
                let bad = || format!("{flag} takes a positive number, got \"{v}\"");
                match flag.as_str() {
                    "--rps" => keys.rps = Some(v.parse().map_err(|_| bad())?),
                    "--rpm" => keys.rpm = Some(v.parse().map_err(|_| bad())?),
                    _ => keys.tpm = Some(v.parse().map_err(|_| bad())?),
                }
            }
            "--keys-file" if command == Some("keys") => {
                keys.file = Some(PathBuf::from(value("--keys-file")?))
            }
            name if command == Some("keys")
                && keys_action.is_some()
                && keys.name.is_empty()
                && !name.starts_with('-') =>
            {
                keys.name = name.to_string()
            }
            "-o" | "--out" | "--output" if command == Some("import") => {
                import.out = Some(PathBuf::from(value("--out")?))
            }
            file if command == Some("import")
                && import_file.is_none()
                && !file.starts_with('-') =>
            {
                import_file = Some(PathBuf::from(file))
            }
            "--strategy" if command == Some("route") => route.strategy = Some(value("--strategy")?),
            "--needs" if command == Some("route") => {
                route.needs = value("--needs")?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "--json" if command == Some("route") => route.json = true,
            expr if command == Some("route") && route.expr.is_empty() && !expr.starts_with('-') => {
                route.expr = expr.to_string()
            }
            "--models" if command == Some("mock-upstream") => {
                mock.models = value("--models")?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "--latency" if command == Some("mock-upstream") => {
                mock.latency = Some(
                    units::parse_duration(&value("--latency")?)
                        .map_err(|e| format!("--latency: {e}"))?,
                )
            }
            "--interval" if command == Some("mock-upstream") => {
                mock.interval = Some(
                    units::parse_duration(&value("--interval")?)
                        .map_err(|e| format!("--interval: {e}"))?,
                )
            }
            "--chunks" if command == Some("mock-upstream") => {
                let v = value("--chunks")?;
                mock.chunks = Some(
                    v.parse()
                        .map_err(|_| format!("--chunks takes a number, got \"{v}\""))?,
                )
            }
            "--status" if command == Some("mock-upstream") => {
                let v = value("--status")?;
                mock.status = Some(
                    v.parse()
                        .ok()
                        .filter(|s| (100..600).contains(s))
                        .ok_or_else(|| format!("--status takes an HTTP status, got \"{v}\""))?,
                )
            }
            "--retry-after" if command == Some("mock-upstream") => {
                let v = value("--retry-after")?;
                mock.retry_after = Some(
                    v.parse()
                        .map_err(|_| format!("--retry-after takes seconds, got \"{v}\""))?,
                )
            }
            "--reset" if command == Some("mock-upstream") => mock.reset = true,
            other => {
                return Err(format!(
                    "unknown argument \"{other}\"; run `smart-ai-router --help` for usage"
                ));
            }
        }
    }
    cli.command = match command {
        None => Command::Run,
        Some("check") => Command::Check,
        Some("health") => Command::Health,
        Some("route") if route.expr.is_empty() => {
            return Err("route needs a model expression, e.g. `route 'tag:free,qwen3'`".into());
        }
        Some("route") => Command::Route(route),
        Some("import") => match import_file {
            Some(file) => Command::Import(ImportArgs { file, ..import }),
            None => {
                return Err(
                    "import needs the YAML file, e.g. `import config/router_config.yaml -o config.toml`"
                        .into(),
                );
            }
        },
        Some("mock-upstream") => Command::MockUpstream(mock),
        Some("keys") => match keys_action {
            None => return Err("keys needs an action: add NAME, list or revoke NAME".into()),
            Some(action) => {
                if action != KeysAction::List && keys.name.is_empty() {
                    return Err("keys add and keys revoke need the key's NAME".into());
                }
                Command::Keys(KeysArgs { action, ..keys })
            }
        },
        Some("version") => Command::Version,
        _ => Command::Help,
    };
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn global_flags_before_or_after_the_command() {
        let a = p(&["--config", "x.toml", "check"]).unwrap();
        let b = p(&["check", "--config=x.toml"]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.command, Command::Check);
        assert_eq!(a.config.unwrap(), PathBuf::from("x.toml"));
        let h = p(&["health", "--listen", "127.0.0.1:7601"]).unwrap();
        assert_eq!(h.command, Command::Health);
        assert_eq!(h.listen.as_deref(), Some("127.0.0.1:7601"));
        assert!(p(&["health", "extra"]).is_err());
        let r = p(&["-l", "127.0.0.1:1", "-w", "3"]).unwrap();
        assert_eq!(r.command, Command::Run);
        assert_eq!(
            (r.listen.as_deref(), r.workers),
            (Some("127.0.0.1:1"), Some(3))
        );
    }

    #[test]
    fn mock_flags() {
        let c = p(&[
            "mock-upstream",
            "--listen",
            "127.0.0.1:9",
            "--models",
            "a,b",
            "--latency",
            "20ms",
            "--status",
            "503",
        ])
        .unwrap();
        let Command::MockUpstream(m) = c.command else {
            panic!()
        };
        assert_eq!(m.models, ["a", "b"]);
        assert_eq!(m.latency, Some(Duration::from_millis(20)));
        assert_eq!(m.status, Some(503));
    }

    #[test]
    fn route_arguments() {
        let c = p(&[
            "route",
            "tag:free,qwen3",
            "--config",
            "x.toml",
            "--strategy",
            "cost_first",
            "--needs",
            "vision",
            "--json",
        ])
        .unwrap();
        let Command::Route(r) = c.command else {
            panic!()
        };
        assert_eq!(r.expr, "tag:free,qwen3");
        assert_eq!(r.strategy.as_deref(), Some("cost_first"));
        assert_eq!(r.needs, ["vision"]);
        assert!(r.json);
        assert!(p(&["route"]).unwrap_err().contains("model expression"));
    }

    #[test]
    fn import_arguments() {
        let c = p(&["import", "router_config.yaml", "-o", "out.toml"]).unwrap();
        assert_eq!(
            c.command,
            Command::Import(ImportArgs {
                file: PathBuf::from("router_config.yaml"),
                out: Some(PathBuf::from("out.toml")),
            })
        );
        let c = p(&["import", "--out=x.toml", "a.yaml"]).unwrap();
        let Command::Import(i) = c.command else {
            panic!()
        };
        assert_eq!(
            (i.file, i.out),
            (PathBuf::from("a.yaml"), Some(PathBuf::from("x.toml")))
        );
        let c = p(&["import", "a.yaml"]).unwrap();
        assert_eq!(
            c.command,
            Command::Import(ImportArgs {
                file: "a.yaml".into(),
                out: None
            })
        );
        assert!(p(&["import"]).unwrap_err().contains("YAML file"));
        assert!(
            p(&["import", "a.yaml", "b.yaml"])
                .unwrap_err()
                .contains("b.yaml")
        );
        assert!(p(&["-o", "x", "check"]).is_err(), "-o only after import");
    }

    #[test]
    fn errors_name_the_flag() {
        assert!(p(&["--workers", "many"]).unwrap_err().contains("--workers"));
        assert!(p(&["--config"]).unwrap_err().contains("--config"));
        assert!(p(&["--bogus"]).unwrap_err().contains("--bogus"));
        assert!(
            p(&["--models", "a"]).is_err(),
            "mock flags only after mock-upstream"
        );
    }
}
