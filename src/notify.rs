//! systemd's readiness protocol (`sd_notify`): `READY=1` once the gateway serves,
//! `RELOADING=1` while a reload runs, `STOPPING=1` when draining starts. Does nothing when not
//! started by systemd (`$NOTIFY_SOCKET` unset).
//!
//! Invariants: best effort and never fatal: a lost datagram only delays systemd's view.
//! Not here: the watchdog (the unit sets none).

#![allow(clippy::disallowed_methods)] // a datagram to a local socket never blocks for long

use std::os::unix::net::UnixDatagram;

/// The gateway serves (also sent at the end of a reload).
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// A reload started; systemd wants the monotonic time with it.
pub(crate) fn reloading() {
    let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0);
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the config"
    ));
}

/// Draining for shutdown.
pub(crate) fn stopping() {
    send("STOPPING=1\nSTATUS=draining in-flight requests");
}

fn send(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        send_to(&path, state);
    }
}

fn send_to(path: &std::ffi::OsStr, state: &str) {
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path);
    let sent = match bytes.strip_prefix(b"@") {
        // Abstract socket: the name after '@' (systemd's default for services).
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        None => sock.send_to(state.as_bytes(), path),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("sar-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        super::send_to(path.as_os_str(), "READY=1");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
