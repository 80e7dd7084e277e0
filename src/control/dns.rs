//! Blocking name resolution off the control loop: each round resolves every host on its own
//! short-lived thread, so one slow or dead resolver entry never delays the others, and answers
//! come back as one batch per host.

use std::net::{SocketAddr, ToSocketAddrs};

use crossbeam_channel::{Receiver, Sender};

/// One host's answer.
#[derive(Debug)]
pub struct Answer {
    /// Host name.
    pub host: String,
    /// Port.
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

    /// Starts resolving `hosts`; answers arrive on [`Resolver::results`].
    pub fn resolve(&self, hosts: Vec<(String, u16)>) {
        for (host, port) in hosts {
            let tx = self.tx.clone();
            let spawned = std::thread::Builder::new()
                .name("sar-dns".into())
                .spawn(move || {
                    let addrs = (host.as_str(), port)
                        .to_socket_addrs()
                        .map(|it| {
                            let mut v: Vec<SocketAddr> = it.collect();
                            v.dedup();
                            v
                        })
                        .map_err(|e| e.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn resolves_every_address_off_thread() {
        let r = Resolver::start();
        r.resolve(vec![("localhost".into(), 80)]);
        let batch = r
            .results()
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer arrives");
        let addrs = batch[0].addrs.as_ref().expect("localhost resolves");
        assert!(addrs.iter().any(|a| a.ip().is_loopback() && a.port() == 80));
    }
}
