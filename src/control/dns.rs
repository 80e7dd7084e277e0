//! Blocking name resolution off the control loop: each round resolves every host on its own
//! short-lived thread, so one slow or dead resolver entry never delays the others, and answers
//! come back as one batch per host. `[server] hosts_file` (the `/etc/hosts` format) is consulted
//! first and re-read every round: static overrides that can change while the gateway runs.
//! `pub`: the offline `route` command (`main.rs`) resolves with it too.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender};

/// One host's answer.
#[derive(Debug)]
pub struct Answer {
    /// The host name asked for.
    pub host: String,
    /// The port the addresses are for (the channel's).
    pub port: u16,
    /// Every address, or the error.
    pub addrs: Result<Vec<SocketAddr>, String>,
}

/// The resolver front end held by the control thread.
#[derive(Debug)]
pub struct Resolver {
    tx: Sender<Vec<Answer>>,
    rx: Receiver<Vec<Answer>>,
}

impl Resolver {
    /// A resolver with no lookups running.
    pub fn start() -> Resolver {
        let (tx, rx) = crossbeam_channel::unbounded();
        Resolver { tx, rx }
    }

    /// Starts resolving `hosts` (through `hosts_file` first, if given); answers arrive on
    /// [`Resolver::results`].
    pub fn resolve(&self, hosts: Vec<(String, u16)>, hosts_file: Option<PathBuf>) {
        for (host, port) in hosts {
            let tx = self.tx.clone();
            let file = hosts_file.clone();
            let spawned = std::thread::Builder::new()
                .name("sar-dns".into())
                .spawn(move || {
                    let listed = file.as_deref().and_then(|f| from_hosts_file(f, &host));
                    let addrs = match listed {
                        Some(ips) => Ok(ips
                            .into_iter()
                            .map(|ip| SocketAddr::new(ip, port))
                            .collect()),
                        None => (host.as_str(), port)
                            .to_socket_addrs()
                            .map(|it| {
                                let mut v: Vec<SocketAddr> = it.collect();
                                v.dedup();
                                v
                            })
                            .map_err(|e| e.to_string()),
                    };
                    let _ = tx.send(vec![Answer { host, port, addrs }]);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a resolver thread");
            }
        }
    }

    /// Answers as they complete.
    pub fn results(&self) -> &Receiver<Vec<Answer>> {
        &self.rx
    }
}

/// The addresses `hosts_file` gives `host` (`/etc/hosts` format: an address, then names;
/// `#` comments), or `None` when it does not list the host or cannot be read.
#[allow(clippy::disallowed_methods)] // a resolver thread, not the data plane
fn from_hosts_file(file: &Path, host: &str) -> Option<Vec<IpAddr>> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut ips = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|name| name.eq_ignore_ascii_case(host)) && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    (!ips.is_empty()).then_some(ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_hosts_file_lists_addresses_by_name() {
        let f = std::env::temp_dir().join(format!("sar-hosts-{}", std::process::id()));
        std::fs::write(
            &f,
            "# comment\n127.0.0.2 up.test other # trailing\n::1 UP.TEST\nnot-an-ip up.test\n127.0.0.2 up.test\n",
        )
        .unwrap();
        let ips = from_hosts_file(&f, "up.test").expect("listed");
        assert_eq!(
            ips,
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(from_hosts_file(&f, "missing.test"), None);
        assert_eq!(
            from_hosts_file(Path::new("/nonexistent/hosts"), "up.test"),
            None
        );
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn resolves_every_address_off_thread() {
        let r = Resolver::start();
        r.resolve(vec![("localhost".into(), 80)], None);
        let batch = r
            .results()
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer arrives");
        let addrs = batch[0].addrs.as_ref().expect("localhost resolves");
        assert!(addrs.iter().any(|a| a.ip().is_loopback() && a.port() == 80));
    }
}
